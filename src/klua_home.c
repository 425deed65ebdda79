/* klua_home.c - where klua's own source tree is; see klua_home.h. */
#include "klua_home.h"

#include "buf.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int has_types(const char *dir)
{
    kl_buf b = KL_BUF_INIT;
    kl_buf_printf(&b, "%s/lua/types/klua.lua", dir);
    int ok = !kl_buf_failed(&b) && access(b.data, R_OK) == 0;
    kl_buf_free(&b);
    return ok;
}

char *klua_home_dir(kl_err *err)
{
    const char *env = getenv("KLUA_HOME");
    if (env && *env) {
        char *r = realpath(env, NULL);
        if (!r || !has_types(r)) {
            free(r);
            kl_err_set(err, KL_EINVAL, "KLUA_HOME=%s has no lua/types/klua.lua", env);
            return NULL;
        }
        return r;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        kl_err_set(err, KL_EIO, "cannot find klua's own path: %s", strerror(errno));
        return NULL;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    for (int up = 1; up <= 2; up++) {
        kl_buf b = KL_BUF_INIT;
        kl_buf_puts(&b, exe);
        for (int i = 0; i < up; i++)
            kl_buf_puts(&b, "/..");
        char *r = kl_buf_failed(&b) ? NULL : realpath(b.data, NULL);
        kl_buf_free(&b);
        if (r && has_types(r))
            return r;
        free(r);
    }
    kl_err_set(err, KL_EINVAL, "klua's lua/types not found beside %s (set KLUA_HOME to a klua "
               "checkout)", exe);
    return NULL;
}

char *klua_rel_path(const char *from, const char *to, kl_err *err)
{
    char *f = realpath(from, NULL), *t = realpath(to, NULL);
    kl_buf b = KL_BUF_INIT;
    char *out = NULL;
    if (!f || !t) {
        kl_err_set(err, KL_EIO, "%s: %s", !f ? from : to, strerror(errno));
        goto done;
    }
    /* the longest common prefix that ends at a path component */
    size_t i = 0, common = 0;
    while (f[i] && f[i] == t[i]) {
        i++;
        if (f[i - 1] == '/')
            common = i;
    }
    if ((f[i] == '\0' && (t[i] == '/' || t[i] == '\0')) || (t[i] == '\0' && f[i] == '/'))
        common = i;
    const char *fr = f + common, *tr = t + common;
    if (*fr == '/')
        fr++;
    if (*tr == '/')
        tr++;
    for (const char *p = fr; *p;) {
        kl_buf_puts(&b, b.len ? "/.." : "..");
        p = strchr(p, '/');
        if (!p)
            break;
        p++;
    }
    if (*tr) {
        if (b.len)
            kl_buf_putc(&b, '/');
        kl_buf_puts(&b, tr);
    }
    if (!b.len)
        kl_buf_putc(&b, '.');
    if (!(out = kl_buf_take(&b)))
        kl_err_set(err, KL_ENOMEM, "out of memory");
done:
    kl_buf_free(&b);
    free(f);
    free(t);
    return out;
}
