/* lua_decl_cache.c - the `cache` key of a controller declaration.
 *
 * Provides: lua_decl_cache_read (lua_decl_cache.h).
 * Uses: store_transform, Lua (raw reads only: a declaration's tables run no
 * metamethods).
 */
#include "lua_decl_cache.h"

#include <stdio.h>
#include <string.h>

static int fail(store_transform *out, char *msg, size_t msglen, const char *text)
{
    store_transform_clear(out);
    snprintf(msg, msglen, "%s", text);
    return -1;
}

/* keep = { "path", ... } at the top of the stack. */
static int read_keep(lua_State *L, store_transform *out, char *msg, size_t msglen)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0)
        return fail(out, msg, msglen, "cache.keep must be a non-empty list of dotted paths "
                                      "such as \"spec\" or \"metadata.annotations\"");
    for (lua_Integer i = 1; i <= n; i++) {
        kl_err err = {0};
        int ty = lua_rawgeti(L, -1, i);
        int rc = ty == LUA_TSTRING ? store_transform_keep(out, lua_tostring(L, -1), &err) : -1;
        lua_pop(L, 1);
        if (rc != 0) {
            char text[200];
            snprintf(text, sizeof text, "cache.keep[%lld]: %.160s", (long long)i,
                     ty == LUA_TSTRING ? err.msg : "must be a string (a dotted path)");
            return fail(out, msg, msglen, text);
        }
    }
    return 0;
}

int lua_decl_cache_read(lua_State *L, int t, store_transform *out, char *msg, size_t msglen)
{
    store_transform_clear(out);
    lua_pushliteral(L, "cache");
    int ty = lua_rawget(L, t); /* [cache] */
    int rc = 0;
    if (ty == LUA_TNIL)
        goto done;
    if (ty != LUA_TTABLE) {
        rc = fail(out, msg, msglen, "cache must be a table: { managed_fields = true, "
                                    "keep = { \"spec\", ... } }");
        goto done;
    }
    int c = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, c)) { /* [cache, k, v] */
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!k || (strcmp(k, "managed_fields") && strcmp(k, "keep"))) {
            lua_pop(L, 1);
            rc = fail(out, msg, msglen, "unknown field in cache (known: managed_fields, keep)");
            goto done;
        }
    }
    lua_pushliteral(L, "managed_fields");
    ty = lua_rawget(L, c);
    if (ty != LUA_TNIL && ty != LUA_TBOOLEAN) {
        lua_pop(L, 1);
        rc = fail(out, msg, msglen, "cache.managed_fields must be true or false");
        goto done;
    }
    out->managed_fields = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_pushliteral(L, "keep");
    ty = lua_rawget(L, c); /* [cache, keep] */
    if (ty == LUA_TTABLE)
        rc = read_keep(L, out, msg, msglen);
    else if (ty != LUA_TNIL)
        rc = fail(out, msg, msglen, "cache.keep must be a list of dotted paths");
    lua_pop(L, 1);
done:
    lua_pop(L, 1);
    return rc;
}
