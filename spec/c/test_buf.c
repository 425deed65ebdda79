/* test_buf.c - the byte buffer (src/buf.c): growth, NUL termination, URL
 * encoding, and the sticky error: after one failed append later appends do
 * nothing, the buffer says it failed, and take hands out nothing. A failure
 * is provoked without an allocator hook: an append of SIZE_MAX bytes cannot
 * fit and fails before allocating. */
#include "harness.h"
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>

TEST(appends_grow_and_stay_terminated)
{
    kl_buf b = KL_BUF_INIT;
    CHECK(kl_buf_puts(&b, "abc") == 0);
    CHECK(kl_buf_putc(&b, '-') == 0);
    CHECK(kl_buf_printf(&b, "%d/%s", 42, "x") == 0);
    for (int i = 0; i < 1000; i++)
        CHECK(kl_buf_putc(&b, 'z') == 0);
    CHECK(b.len == 3 + 1 + 4 + 1000);
    CHECK(b.data[b.len] == '\0');
    CHECK(strncmp(b.data, "abc-42/xzz", 10) == 0);
    CHECK(!kl_buf_failed(&b));
    kl_buf_consume(&b, 4);
    CHECK(strncmp(b.data, "42/x", 4) == 0 && b.len == 1004);
    kl_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0);
}

TEST(urlenc_escapes_all_but_unreserved)
{
    kl_buf b = KL_BUF_INIT;
    CHECK(kl_buf_put_urlenc(&b, "a b/c?d=e&f~g.h_i-j%") == 0);
    CHECK_STR(b.data, "a%20b%2Fc%3Fd%3De%26f~g.h_i-j%25");
    kl_buf_free(&b);
}

TEST(a_failed_append_is_sticky)
{
    kl_buf b = KL_BUF_INIT;
    CHECK(kl_buf_puts(&b, "before") == 0);
    CHECK(kl_buf_append(&b, "x", SIZE_MAX) == -1);    /* cannot fit */
    CHECK(kl_buf_failed(&b));
    CHECK_STR(b.data, "before");                      /* nothing half-written */
    /* every later append refuses, whatever its size */
    CHECK(kl_buf_puts(&b, "after") == -1);
    CHECK(kl_buf_putc(&b, '!') == -1);
    CHECK(kl_buf_printf(&b, "%d", 7) == -1);
    CHECK(kl_buf_put_urlenc(&b, "a b") == -1);
    CHECK(kl_buf_reserve(&b, 1) == -1);
    CHECK(kl_buf_append(&b, "y", 1) == -1);
    CHECK_STR(b.data, "before");
    CHECK(kl_buf_failed(&b));
    /* so a caller checks once per message, and take gives it nothing */
    CHECK(kl_buf_take(&b) == NULL);
    CHECK(b.data == NULL && !kl_buf_failed(&b));      /* freed, usable again */
    CHECK(kl_buf_puts(&b, "again") == 0);
    char *s = kl_buf_take(&b);
    CHECK_STR(s, "again");
    free(s);
}

TEST(reset_and_free_clear_the_failure)
{
    kl_buf b = KL_BUF_INIT;
    CHECK(kl_buf_reserve(&b, SIZE_MAX) == -1);
    CHECK(kl_buf_failed(&b));
    kl_buf_reset(&b);                                 /* a new message */
    CHECK(!kl_buf_failed(&b));
    CHECK(kl_buf_puts(&b, "ok") == 0);
    CHECK_STR(b.data, "ok");
    CHECK(kl_buf_printf(&b, "%s", "") == 0);
    CHECK(kl_buf_append(&b, "z", SIZE_MAX - 1) == -1);
    kl_buf_free(&b);
    CHECK(!kl_buf_failed(&b));
    CHECK(kl_buf_putc(&b, 'q') == 0 && b.len == 1);
    kl_buf_free(&b);
}

TEST(take_of_an_empty_buffer_is_an_empty_string)
{
    kl_buf b = KL_BUF_INIT;
    char *s = kl_buf_take(&b);
    CHECK(s != NULL && s[0] == '\0');
    free(s);
}

int main(void)
{
    RUN(appends_grow_and_stay_terminated);
    RUN(urlenc_escapes_all_but_unreserved);
    RUN(a_failed_append_is_sticky);
    RUN(reset_and_free_clear_the_failure);
    RUN(take_of_an_empty_buffer_is_an_empty_string);
    DONE();
}
