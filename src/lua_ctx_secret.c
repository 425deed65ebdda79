/* lua_ctx_secret.c - named secrets (see lua_ctx_secret.h).
 *
 * Provides: lua_ctx_shared_set_secret, lua_ctx_shared_add_secret_file,
 * lua_ctx_secret_get, lua_ctx_secret_find, lua_ctx_push_redacted,
 * lua_ctx_shared_redact, lua_ctx_secrets_free.
 * Uses: util (kl_read_file), log, buf, err.
 */
#include "lua_ctx_secret.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct lua_ctx_secret {
    char *name;
    char *value;              /* NUL-terminated; wiped before free */
    size_t len;
    char *path;               /* NULL: given as a value, never re-read */
    struct stat seen;         /* the file when value was read */
    int warned;               /* a failed re-read was reported */
};

static void wipe(char *p, size_t n)
{
    if (!p)
        return;
    volatile char *v = p;
    while (n--)
        *v++ = 0;
    free(p);
}

static lua_ctx_secret *find(const lua_ctx_shared *s, const char *name)
{
    for (size_t i = 0; i < s->nsecrets; i++)
        if (strcmp(s->secrets[i].name, name) == 0)
            return &s->secrets[i];
    return NULL;
}

/* The entry for name, created empty if new. NULL when out of memory. */
static lua_ctx_secret *entry(lua_ctx_shared *s, const char *name)
{
    lua_ctx_secret *e = find(s, name);
    if (e)
        return e;
    lua_ctx_secret *n = realloc(s->secrets, (s->nsecrets + 1) * sizeof *n);
    if (!n)
        return NULL;
    s->secrets = n;
    e = &n[s->nsecrets];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name)))
        return NULL;
    s->nsecrets++;
    return e;
}

static void set_value(lua_ctx_secret *e, char *value, size_t len)
{
    wipe(e->value, e->len);
    e->value = value;
    e->len = len;
}

int lua_ctx_shared_set_secret(lua_ctx_shared *s, const char *name, const char *value)
{
    lua_ctx_secret *e = entry(s, name);
    char *v = strdup(value);
    if (!e || !v) {
        free(v);
        return -1;
    }
    set_value(e, v, strlen(v));
    free(e->path);
    e->path = NULL;
    return 0;
}

/* Read the secret's file; trailing newlines and spaces are not part of
 * the value (editors and `echo` add them). The caller owns *out. */
static int read_secret(const char *name, const char *path, struct stat *st, char **out,
                       size_t *outlen, kl_err *err)
{
    kl_buf b = KL_BUF_INIT;
    kl_err rerr = {0};
    if (stat(path, st) != 0)
        return kl_err_set(err, KL_EIO, "secret %s: %s: %s", name, path, strerror(errno));
    if (kl_read_file(path, LUA_CTX_SECRET_MAX, &b, &rerr) != 0) {
        wipe(b.data, b.cap);
        return kl_err_set(err, rerr.code, "secret %s: %s", name, rerr.msg);
    }
    size_t n = b.len;
    while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' || b.data[n - 1] == ' '))
        b.data[--n] = '\0';
    if (n == 0) {
        wipe(b.data, b.cap);
        return kl_err_set(err, KL_EINVAL, "secret %s: %s is empty", name, path);
    }
    *out = b.data;
    *outlen = n;
    return 0;
}

int lua_ctx_shared_add_secret_file(lua_ctx_shared *s, const char *name, const char *path,
                                   kl_err *err)
{
    struct stat st;
    char *value = NULL;
    size_t len = 0;
    if (!*name)
        return kl_err_set(err, KL_EINVAL, "a secret needs a name (NAME=FILE)");
    if (read_secret(name, path, &st, &value, &len, err) != 0)
        return -1;
    lua_ctx_secret *e = entry(s, name);
    char *p = strdup(path);
    if (!e || !p) {
        free(p);
        wipe(value, len);
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    set_value(e, value, len);
    free(e->path);
    e->path = p;
    e->seen = st;
    e->warned = 0;
    return 0;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

const char *lua_ctx_secret_get(lua_ctx_shared *s, const char *name, size_t *len)
{
    lua_ctx_secret *e = find(s, name);
    if (!e || !e->value)
        return NULL;
    struct stat st;
    if (e->path && !(stat(e->path, &st) == 0 && same_file(&st, &e->seen))) {
        kl_err err = {0};
        char *value = NULL;
        size_t n = 0;
        if (read_secret(name, e->path, &st, &value, &n, &err) == 0) {
            set_value(e, value, n);
            e->seen = st;
            if (e->warned)
                kl_log(KL_LOG_INFO, "secret readable again", "secret", name, "file", e->path,
                       NULL);
            e->warned = 0;
            kl_log(KL_LOG_V1, "secret file changed: read again", "secret", name, "file",
                   e->path, NULL);
        } else if (!e->warned) {
            e->warned = 1;
            kl_log(KL_LOG_WARN, "cannot read the secret's file again; keeping the last value",
                   "secret", name, "error", err.msg, NULL);
        }
    }
    *len = e->len;
    return e->value;
}

size_t lua_ctx_secret_find(const lua_ctx_shared *s, const char *text, size_t n, size_t *len)
{
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t hit = 0;
        for (size_t k = 0; k < s->nsecrets; k++) {
            const lua_ctx_secret *e = &s->secrets[k];
            if (e->len >= LUA_CTX_SECRET_REDACT_MIN && e->len <= n - i && e->len > hit &&
                e->value[0] == text[i] && memcmp(text + i, e->value, e->len) == 0)
                hit = e->len;
        }
        if (hit) {
            *len = hit;
            return i;
        }
    }
    return n;
}

const char *lua_ctx_push_redacted(lua_State *L, const lua_ctx_shared *s, const char *text,
                                  size_t n, size_t max)
{
    size_t keep = n > max ? max : n;
    while (keep < n && keep > 0 && ((unsigned char)text[keep] & 0xC0) == 0x80)
        keep--;                                          /* a UTF-8 boundary */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    while (i < keep) {
        size_t len;
        /* searched in the whole text: a secret across the cut is found too */
        size_t at = i + lua_ctx_secret_find(s, text + i, n - i, &len);
        if (at >= keep) {
            luaL_addlstring(&b, text + i, keep - i);
            i = keep;
            break;
        }
        luaL_addlstring(&b, text + i, at - i);
        luaL_addstring(&b, LUA_CTX_REDACTED);
        i = at + len;
    }
    if (i < n)
        luaL_addstring(&b, "...(cut)");
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

void lua_ctx_shared_redact(const lua_ctx_shared *s, const char *text, char *out, size_t outsz)
{
    size_t n = strlen(text), o = 0, i = 0;
    if (!outsz)
        return;
    while (i < n && o + 1 < outsz) {
        size_t len;
        size_t at = i + lua_ctx_secret_find(s, text + i, n - i, &len);
        size_t copy = at - i < outsz - 1 - o ? at - i : outsz - 1 - o;
        memcpy(out + o, text + i, copy);
        o += copy;
        if (at >= n || copy < at - i)
            break;
        size_t r = strlen(LUA_CTX_REDACTED);
        if (r > outsz - 1 - o)
            r = outsz - 1 - o;
        memcpy(out + o, LUA_CTX_REDACTED, r);
        o += r;
        i = at + len;
    }
    out[o] = '\0';
}

void lua_ctx_secrets_free(lua_ctx_shared *s)
{
    for (size_t i = 0; i < s->nsecrets; i++) {
        free(s->secrets[i].name);
        free(s->secrets[i].path);
        wipe(s->secrets[i].value, s->secrets[i].len);
    }
    free(s->secrets);
    s->secrets = NULL;
    s->nsecrets = 0;
}
