/* lua_guard.c - guarded standard functions (see lua_guard.h).
 *
 * What a count hook cannot see is bounded here: C functions whose work
 * does not grow with memory (string.rep of empty strings, table.move,
 * table.insert/remove on huge borders, table.sort, plain and pattern
 * searches) refuse inputs over fixed caps, and pattern calls are first run
 * through lua_patguard's step-counting probe.
 * Uses: lua_budget, lua_patguard, lua_host_int, Lua.
 */
#include "lua_guard.h"

#include "lua_budget.h"
#include "lua_host_int.h"
#include "lua_patguard.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

static int safe_load(lua_State *L)
{
    /* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t". */
    int n = lua_gettop(L);
    const char *mode = luaL_optstring(L, 3, "t");
    if (!strchr(mode, 't'))
        return luaL_error(L, "load: only text chunks can be loaded in klua");
    lua_pushvalue(L, lua_upvalueindex(1));               /* [args.., load] */
    lua_pushvalue(L, 1);
    if (n >= 2)
        lua_pushvalue(L, 2);
    else
        lua_pushnil(L);
    lua_pushliteral(L, "t");
    int nargs = 3;
    if (n >= 4) {
        lua_pushvalue(L, 4);
        nargs = 4;
    }
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - n;
}

static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage(\"%s\") is not allowed in klua (only \"count\")", opt);
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

/* Call the original function (upvalue 1) with every argument. */
int lua_guard_call_original(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int safe_rep(lua_State *L)
{
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n > 0) {
        /* Computed in long double to avoid overflow; exactness is not needed. */
        long double total = (long double)l * n + (long double)lsep * (n - 1);
        if (total > LUA_HOST_REP_MAX) {
            char msg[160]; /* lua_pushfstring has no %Lf */
            snprintf(msg, sizeof msg, "string.rep: the result would be %.0Lf bytes, more than "
                     "klua's limit of %u bytes", total, (unsigned)LUA_HOST_REP_MAX);
            return luaL_error(L, "%s", msg);
        }
        /* Lua 5.4.4 loops n times even when nothing is copied. */
        if (total == 0) {
            lua_pushliteral(L, "");
            return 1;
        }
    }
    return lua_guard_call_original(L);
}

/* table.move(a1, f, e, t [, a2]): a C loop of e-f+1 steps, none of which
 * the hook sees when the tables have no Lua metamethods. */
static int safe_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f && ((lua_Number)e - (lua_Number)f + 1) > (lua_Number)LUA_HOST_TABLE_OP_MAX)
        return luaL_error(L, "table.move: %f elements are more than klua's limit of %d per call",
                          (double)e - (double)f + 1, LUA_HOST_TABLE_OP_MAX);
    return lua_guard_call_original(L);
}

/* Refuses a table whose #t is over the per-call limit, then calls the
 * original; `what` names the function in the message. */
static int len_checked_call(lua_State *L, const char *what)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n > LUA_HOST_TABLE_OP_MAX)
        return luaL_error(L, "%s: #t is %I, more than klua's limit of %d", what,
                          (LUAI_UACINT)n, LUA_HOST_TABLE_OP_MAX);
    return lua_guard_call_original(L);
}

/* table.insert(t, pos, v) and table.remove(t, pos) shift #t - pos
 * elements; #t of a sparse table can be huge without the memory to match. */
static int safe_shift(lua_State *L)
{
    return len_checked_call(L, "table.insert/remove");
}

static int safe_sort(lua_State *L)
{
    return len_checked_call(L, "table.sort");
}

/* Finalizers run with hooks off: an endless loop in __gc would hang klua,
 * so a metatable with __gc is refused (Lua only honours a __gc present
 * when setmetatable is called). */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int t = lua_rawget(L, 2);
        lua_pop(L, 1);
        if (t != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in klua "
                                 "(they would run outside the instruction budget)");
    }
    return lua_guard_call_original(L);
}

/* An error raised by the budget hook propagates with hooks disabled (Lua
 * clears allowhook while a hook runs), so Lua code that runs during that
 * propagation is out of the hook's reach: xpcall's message handler, and
 * the __close handlers of a coroutine that died of it. Once a task is
 * killed, the handler is not called (the kill message stands in for its
 * result) and coroutine.close refuses. */
static int xpcall_guard(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    if (h->cur && h->cur->killed) {
        lua_pushstring(L, h->kill_msg);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int make_xpcall_guard(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TFUNCTION)
        lua_pushcclosure(L, xpcall_guard, 1);
    return 1;
}

/* xpcall stays a Lua function tail-calling the real one: a C wrapper would
 * make ctx calls (which yield) fail inside xpcall. */
static const char xpcall_src[] =
    "local xpcall, guard = ...\n"
    "return function(f, msgh, ...) return xpcall(f, guard(msgh), ...) end\n";

static int safe_coclose(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    if (h->cur && h->cur->killed) {
        lua_pushstring(L, h->kill_msg);
        return lua_error(L);
    }
    return lua_guard_call_original(L);
}

static int safe_find(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_FIND, "string.find");
    return lua_guard_call_original(L);
}

static int safe_match(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_MATCH, "string.match");
    return lua_guard_call_original(L);
}

static int safe_gmatch(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_GMATCH, "string.gmatch");
    return lua_guard_call_original(L);
}

static int safe_gsub(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_GSUB, "string.gsub");
    return lua_guard_call_original(L);
}

void lua_guard_wrap_field(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

void lua_guard_wrap_global(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getglobal(L, name);
    lua_pushcclosure(L, f, 1);
    lua_setglobal(L, name);
}

int lua_guard_install(lua_State *L)
{
    lua_guard_wrap_global(L, "load", safe_load);
    lua_guard_wrap_global(L, "setmetatable", safe_setmetatable);
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setglobal(L, "collectgarbage");
    /* The string table is also the string metatable's __index: wrap there,
     * so that ("x"):rep() is guarded as much as string.rep(). */
    lua_getglobal(L, LUA_STRLIBNAME);                    /* [string] */
    lua_guard_wrap_field(L, "rep", safe_rep);
    lua_guard_wrap_field(L, "find", safe_find);
    lua_guard_wrap_field(L, "match", safe_match);
    lua_guard_wrap_field(L, "gmatch", safe_gmatch);
    lua_guard_wrap_field(L, "gsub", safe_gsub);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);                    /* [table] */
    lua_guard_wrap_field(L, "move", safe_move);
    lua_guard_wrap_field(L, "insert", safe_shift);
    lua_guard_wrap_field(L, "remove", safe_shift);
    lua_guard_wrap_field(L, "sort", safe_sort);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_COLIBNAME);                     /* [coroutine] */
    lua_guard_wrap_field(L, "close", safe_coclose);
    lua_pop(L, 1);
    if (luaL_loadbufferx(L, xpcall_src, sizeof xpcall_src - 1, "=klua.xpcall", "t") != LUA_OK)
        return lua_error(L);
    lua_getglobal(L, "xpcall");
    lua_pushcfunction(L, make_xpcall_guard);
    lua_call(L, 2, 1);
    lua_setglobal(L, "xpcall");
    return 0;
}
