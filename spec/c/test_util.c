/* test_util.c - the shared helpers: hashing, file reading, timestamps,
 * reason phrases, random numbers. */
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

TEST(fnv1a_known_values)
{
    /* Reference values of FNV-1a 64. */
    CHECK(kl_fnv1a("", 0) == 0xcbf29ce484222325ull);
    CHECK(kl_fnv1a("a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(kl_fnv1a("foobar", 6) == 0x85944171f73967e8ull);
    CHECK(kl_fnv1a_more(kl_fnv1a("foo", 3), "bar", 3) == kl_fnv1a("foobar", 6));
}

static char *tmpfile_with(const char *content, size_t n)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/klua-util-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (write(fd, content, n) != (ssize_t)n) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

TEST(read_file_whole_and_capped)
{
    char *p = tmpfile_with("hello\nworld", 11);
    CHECK(p != NULL);
    kl_buf b = KL_BUF_INIT;
    kl_err err = {0};
    CHECK(kl_read_file(p, 100, &b, &err) == 0);
    CHECK(b.len == 11);
    CHECK_STR(b.data, "hello\nworld");
    kl_buf_reset(&b);
    CHECK(kl_read_file(p, 5, &b, &err) == -1);
    CHECK(errno == EFBIG);
    CHECK(strstr(err.msg, "larger than 5 bytes") != NULL);
    CHECK(b.len == 0);
    unlink(p);
    CHECK(kl_read_file(p, 100, &b, &err) == -1);
    CHECK(errno == ENOENT);
    CHECK(strstr(err.msg, p) != NULL);
    kl_buf_free(&b);
    /* an empty file reads as an empty string, not NULL */
    p = tmpfile_with("", 0);
    CHECK(kl_read_file(p, 100, &b, &err) == 0);
    CHECK(b.data != NULL && b.len == 0 && b.data[0] == '\0');
    unlink(p);
    kl_buf_free(&b);
}

TEST(read_file_small_file_small_buffer)
{
    char *p = tmpfile_with("x", 1);
    kl_buf b = KL_BUF_INIT;
    CHECK(kl_read_file(p, 8u << 20, &b, NULL) == 0);
    CHECK(b.cap <= 8192);   /* the cap is a limit, not an allocation size */
    unlink(p);
    kl_buf_free(&b);
}

TEST(rfc3339)
{
    char out[40];
    struct timespec t = {.tv_sec = 1136214245, .tv_nsec = 123456789};
    CHECK_STR(kl_rfc3339(&t, 0, out, sizeof out), "2006-01-02T15:04:05Z");
    CHECK_STR(kl_rfc3339(&t, 3, out, sizeof out), "2006-01-02T15:04:05.123Z");
    CHECK_STR(kl_rfc3339(&t, 6, out, sizeof out), "2006-01-02T15:04:05.123456Z");
    CHECK_STR(kl_rfc3339(&t, 9, out, sizeof out), "2006-01-02T15:04:05.123456789Z");
    kl_rfc3339_now(0, out, sizeof out);
    CHECK(strlen(out) == 20 && out[19] == 'Z');
}

TEST(http_reason)
{
    CHECK_STR(kl_http_reason(404), "Not Found");
    CHECK_STR(kl_http_reason(200), "OK");
    CHECK_STR(kl_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(kl_http_reason(299), "Unknown");
}

TEST(rand_range_and_spread)
{
    int seen[10] = {0};
    for (int i = 0; i < 10000; i++) {
        uint64_t r = kl_rand_below(10);
        CHECK(r < 10);
        if (r < 10)
            seen[r]++;
    }
    for (int i = 0; i < 10; i++)
        CHECK(seen[i] > 500);   /* expected 1000 each; far from a stuck generator */
    CHECK(kl_rand_below(0) == 0);
    CHECK(kl_rand_u64() != kl_rand_u64());
}

int main(void)
{
    RUN(fnv1a_known_values);
    RUN(read_file_whole_and_capped);
    RUN(read_file_small_file_small_buffer);
    RUN(rfc3339);
    RUN(http_reason);
    RUN(rand_range_and_spread);
    DONE();
}
