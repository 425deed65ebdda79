/* test_lua_ctx.c - the ctx's secrets: files read again when they change,
 * values kept when a re-read fails, and redaction of secret values from
 * text klua writes (logs, Events, conditions). */
#include "harness.h"

#include "loop.h"
#include "lua_ctx.h"
#include "lua_ctx_secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    rename(tmp, path);   /* a new file, as a Secret volume's symlink swap makes */
}

static lua_ctx_shared *new_shared(loop **l)
{
    kl_err err = {0};
    *l = loop_new(&err);
    return *l ? lua_ctx_shared_new(*l, NULL, NULL, &err) : NULL;
}

TEST(a_secret_file_is_read_again_when_it_changes)
{
    char dir[] = "/tmp/klua-secret-XXXXXX", path[600];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/token", dir);
    write_file(path, "first-value\n");
    loop *l = NULL;
    lua_ctx_shared *s = new_shared(&l);
    kl_err err = {0};
    CHECK(s && lua_ctx_shared_add_secret_file(s, "tok", path, &err) == 0);
    size_t n = 0;
    CHECK_STR(lua_ctx_secret_get(s, "tok", &n), "first-value");   /* newline trimmed */
    CHECK(n == 11);
    CHECK(lua_ctx_secret_get(s, "other", &n) == NULL);
    write_file(path, "second-value-longer");
    CHECK_STR(lua_ctx_secret_get(s, "tok", &n), "second-value-longer");
    /* gone or empty: the last value stays (and one warning is logged) */
    CHECK(unlink(path) == 0);
    CHECK_STR(lua_ctx_secret_get(s, "tok", &n), "second-value-longer");
    write_file(path, "\n");
    CHECK_STR(lua_ctx_secret_get(s, "tok", &n), "second-value-longer");
    write_file(path, "third");
    CHECK_STR(lua_ctx_secret_get(s, "tok", &n), "third");
    /* errors name the secret and the file, never a value */
    write_file(path, "");
    CHECK(lua_ctx_shared_add_secret_file(s, "empty", path, &err) != 0);
    CHECK(strstr(err.msg, "secret empty") && strstr(err.msg, path));
    CHECK(lua_ctx_shared_add_secret_file(s, "none", "/nonexistent/x", &err) != 0);
    CHECK(strstr(err.msg, "secret none: /nonexistent/x") != NULL);
    unlink(path);
    rmdir(dir);
    lua_ctx_shared_free(s);
    loop_free(l);
}

TEST(secret_values_are_redacted_from_text)
{
    loop *l = NULL;
    lua_ctx_shared *s = new_shared(&l);
    CHECK(s && lua_ctx_shared_set_secret(s, "a", "hunter22") == 0);
    CHECK(lua_ctx_shared_set_secret(s, "b", "hunter22-extended") == 0);
    CHECK(lua_ctx_shared_set_secret(s, "short", "ab") == 0);    /* too short to redact */
    char out[256];
    lua_ctx_shared_redact(s, "token hunter22 and hunter22-extended, ab", out, sizeof out);
    CHECK_STR(out, "token [redacted] and [redacted], ab");
    lua_ctx_shared_redact(s, "nothing here", out, sizeof out);
    CHECK_STR(out, "nothing here");
    /* cut to the buffer, never leaving a secret's prefix behind a cut */
    char small[12];
    lua_ctx_shared_redact(s, "xx hunter22 yy", small, sizeof small);
    CHECK(strstr(small, "hunt") == NULL && strlen(small) == sizeof small - 1);
    /* a replaced secret: the old value is no longer known */
    CHECK(lua_ctx_shared_set_secret(s, "a", "newvalue") == 0);
    lua_ctx_shared_redact(s, "hunter22 newvalue", out, sizeof out);
    CHECK_STR(out, "hunter22 [redacted]");
    lua_ctx_shared_free(s);
    loop_free(l);
}

int main(void)
{
    RUN(a_secret_file_is_read_again_when_it_changes);
    RUN(secret_values_are_redacted_from_text);
    DONE();
}
