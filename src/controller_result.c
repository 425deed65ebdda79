/* controller_result.c - what a reconcile's result means (see
 * controller_result.h).
 *
 * Provides: controller_result_read.
 * Uses: Lua 5.4 (raw table access).
 */
#include "controller_result.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define WANT "want nil, { requeue_after = seconds } or { requeue = true }"

/* The table at idx has only requeue_after and requeue: 0, else -1 with msg. */
static int only_known_keys(lua_State *co, int idx, const char *where, controller_result *out)
{
    lua_pushnil(co);
    while (lua_next(co, idx)) {
        lua_pop(co, 1);
        const char *k = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
        if (!k || (strcmp(k, "requeue_after") != 0 && strcmp(k, "requeue") != 0)) {
            snprintf(out->msg, sizeof out->msg,
                     "%s returned a table with the unknown key %s%s%s; " WANT, where,
                     k ? "\"" : "(a ", k ? k : luaL_typename(co, -1), k ? "\"" : ")");
            lua_pop(co, 1);
            return -1;
        }
    }
    return 0;
}

void controller_result_read(lua_State *co, int nres, const char *path, int reconcile_line,
                            int finalize_line, controller_result *out)
{
    int top = lua_gettop(co);
    int idx = top - nres + 1;
    int t = nres > 0 ? lua_type(co, idx) : LUA_TNIL;
    const char *fn = nres > 1 && lua_type(co, idx + 1) == LUA_TSTRING ? lua_tostring(co, idx + 1)
                                                                      : "reconcile";
    int line = !strcmp(fn, "finalize") ? finalize_line : reconcile_line;
    char where[300];
    snprintf(where, sizeof where, "%s:%d: %s", path, line, fn);
    memset(out, 0, sizeof *out);
    out->kind = CONTROLLER_RESULT_INVALID;
    if (t == LUA_TNIL) {
        out->kind = CONTROLLER_RESULT_DONE;
        return;
    }
    if (t != LUA_TTABLE) {
        snprintf(out->msg, sizeof out->msg, "%s returned a %s; " WANT, where, lua_typename(co, t));
        return;
    }
    if (only_known_keys(co, idx, where, out) != 0)
        return;
    lua_pushliteral(co, "requeue_after");
    int ta = lua_rawget(co, idx);
    lua_pushliteral(co, "requeue");
    lua_rawget(co, idx);
    int requeue = lua_toboolean(co, -1);
    if (ta == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(co, -2);
        if (!(s >= 0 && s < 1e9)) {
            snprintf(out->msg, sizeof out->msg, "%s returned requeue_after = %g; want seconds >= 0",
                     where, (double)s);
        } else {
            out->kind = CONTROLLER_RESULT_REQUEUE_AFTER;
            out->after_ms = (uint64_t)(s * 1000.0);
        }
    } else if (ta != LUA_TNIL) {
        snprintf(out->msg, sizeof out->msg, "%s returned requeue_after as a %s; want a number",
                 where, lua_typename(co, ta));
    } else {
        out->kind = requeue ? CONTROLLER_RESULT_REQUEUE : CONTROLLER_RESULT_DONE;
    }
    lua_settop(co, top);
}
