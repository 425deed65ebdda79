/* lua_deps.c - files a script's code came from, and their hashes (see
 * lua_deps.h).
 * Uses: lua_host_int, util, buf, err.
 */
#include "lua_deps.h"

#include "buf.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int lua_deps_read(const char *path, char **out, size_t *len, kl_err *err)
{
    kl_buf b = KL_BUF_INIT;
    if (kl_read_file(path, LUA_DEPS_MAX_SOURCE, &b, err) != 0) {
        kl_buf_free(&b);
        return -1;
    }
    *len = b.len;
    *out = kl_buf_take(&b);
    return *out ? 0 : kl_err_set(err, KL_ENOMEM, "%s: out of memory", path);
}

int lua_host_file_hash(const char *path, uint64_t *out)
{
    char *src = NULL;
    size_t len = 0;
    kl_err err = {0};
    if (lua_deps_read(path, &src, &len, &err) != 0)
        return -1;
    *out = kl_fnv1a(src, len);
    free(src);
    return 0;
}

/* Remember that the script's code came from path (bytes src). A file read
 * twice (a module reloaded after a failed require) keeps its first entry.
 * Returns -1 when out of memory: a dependency hot reload cannot see would
 * silently stop reloads of this script, so the caller fails instead. */
int lua_deps_add(lua_host *h, const char *path, const char *src, size_t len)
{
    for (size_t i = 0; i < h->ndeps; i++)
        if (!strcmp(h->deps[i].path, path))
            return 0;
    lua_host_dep *nd = realloc(h->deps, (h->ndeps + 1) * sizeof *nd);
    if (!nd)
        return -1;
    h->deps = nd;
    nd[h->ndeps].path = strdup(path);
    nd[h->ndeps].hash = kl_fnv1a(src, len);
    if (!nd[h->ndeps].path)
        return -1;
    h->ndeps++;
    return 0;
}

const lua_host_dep *lua_host_deps(const lua_host *h, size_t *n)
{
    *n = h->ndeps;
    return h->deps;
}

int lua_host_deps_changed(const lua_host_dep *deps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        if (lua_host_file_hash(deps[i].path, &x) != 0 || x != deps[i].hash)
            return 1;
    }
    return 0;
}

int lua_host_deps_copy(const lua_host_dep *deps, size_t n, lua_host_dep **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    lua_host_dep *c = calloc(n, sizeof *c);
    if (!c)
        return -1;
    for (size_t i = 0; i < n; i++) {
        c[i].hash = deps[i].hash;
        if (!(c[i].path = strdup(deps[i].path))) {
            lua_host_deps_free(c, i);
            return -1;
        }
    }
    *out = c;
    return 0;
}

void lua_host_deps_free(lua_host_dep *deps, size_t n)
{
    for (size_t i = 0; deps && i < n; i++)
        free(deps[i].path);
    free(deps);
}
