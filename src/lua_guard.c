/* lua_guard.c - guarded standard functions (see lua_guard.h).
 *
 * What a count hook cannot see is bounded here: C functions whose work
 * does not grow with memory (string.rep of empty strings, table.move,
 * table.insert/remove on huge borders, table.sort, plain and pattern
 * searches) refuse inputs over fixed caps, and pattern calls are first run
 * through lua_patguard's step-counting probe. What they do is charged to
 * the run's budget in units of about one Lua instruction (an element moved
 * or compared, a probe step, 16 bytes scanned), so a loop of such calls is
 * cut at the deadline like a loop of instructions.
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

/* Work of n element steps (about one Lua instruction each) for the run. */
static void charge_n(lua_State *L, lua_Integer n)
{
    if (n > 0)
        lua_budget_charge(L, (uint64_t)n);
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
        charge_n(L, n);                                  /* the bytes: by the allocator */
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
    if (e >= f)
        charge_n(L, e - f + 1);
    return lua_guard_call_original(L);
}

/* #t of the table argument, refused over the per-call limit; `what` names
 * the function in the message. */
static lua_Integer checked_len(lua_State *L, const char *what)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n > LUA_HOST_TABLE_OP_MAX)
        return luaL_error(L, "%s: #t is %I, more than klua's limit of %d", what,
                          (LUAI_UACINT)n, LUA_HOST_TABLE_OP_MAX);
    return n;
}

/* table.insert(t, pos, v) and table.remove(t, pos) shift #t - pos
 * elements; #t of a sparse table can be huge without the memory to match.
 * Appending and removing the last element shift nothing. */
static int safe_insert(lua_State *L)
{
    lua_Integer n = checked_len(L, "table.insert/remove");
    if (lua_gettop(L) >= 3 && lua_isinteger(L, 2))
        charge_n(L, n - lua_tointeger(L, 2) + 1);
    return lua_guard_call_original(L);
}

static int safe_remove(lua_State *L)
{
    lua_Integer n = checked_len(L, "table.insert/remove");
    if (lua_isinteger(L, 2))
        charge_n(L, n - lua_tointeger(L, 2));
    return lua_guard_call_original(L);
}

/* About n log2 n comparisons (a Lua comparator's own instructions count
 * on top, through the hook). */
static int safe_sort(lua_State *L)
{
    lua_Integer n = checked_len(L, "table.sort");
    lua_Integer lg = 1;
    while (lg < 63 && ((lua_Integer)1 << lg) < n)
        lg++;
    charge_n(L, n * lg);
    return lua_guard_call_original(L);
}

/* Lua 5.4's posrelatI/getendpos: a 1-based position from an argument. */
static lua_Integer rel_pos(lua_Integer pos, size_t len)
{
    if (pos >= 0)
        return pos;
    if (-pos > (lua_Integer)len)
        return 0;
    return (lua_Integer)len + pos + 1;
}

/* table.unpack(t [, i [, j]]) and string.byte(s [, i [, j]]) push j-i+1
 * values (up to a million) in one call. */
static int safe_unpack(lua_State *L)
{
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer j = lua_isnoneornil(L, 3) ? (lua_Integer)luaL_len(L, 1) : luaL_checkinteger(L, 3);
    if (j >= i && (lua_Number)j - (lua_Number)i < (lua_Number)LUA_HOST_TABLE_OP_MAX)
        charge_n(L, j - i + 1);
    return lua_guard_call_original(L);
}

static int safe_byte(lua_State *L)
{
    size_t len;
    luaL_checklstring(L, 1, &len);
    lua_Integer i = rel_pos(luaL_optinteger(L, 2, 1), len);
    lua_Integer j = rel_pos(luaL_optinteger(L, 3, i), len);
    if (j > (lua_Integer)len)
        j = (lua_Integer)len;
    if (j >= i)
        charge_n(L, j - i + 1);
    return lua_guard_call_original(L);
}

/* string.char(...) and utf8.char(...): one step per argument. */
static int safe_char(lua_State *L)
{
    charge_n(L, lua_gettop(L));
    return lua_guard_call_original(L);
}

/* utf8.len, utf8.codepoint, utf8.offset scan the string in C, and one
 * step of a utf8.codes loop may skip any number of continuation bytes:
 * charged by the string's length (16 bytes a step), whatever the
 * positions. */
static int safe_utf8_scan(lua_State *L)
{
    size_t len;
    luaL_checklstring(L, 1, &len);
    charge_n(L, (lua_Integer)(len / 16) + 1);
    return lua_guard_call_original(L);
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
 * result), and a coroutine that died of a kill is never closed (neither by
 * coroutine.close nor by a coroutine.wrap function, here or in a later
 * run). */
static int xpcall_guard(lua_State *L)
{
    if (lua_budget_killed(L)) {
        lua_pushstring(L, lua_host_of(L)->kill_msg);
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

static int dead_of_error(lua_State *co)
{
    int st = lua_status(co);
    return st != LUA_OK && st != LUA_YIELD;
}

static int safe_coclose(lua_State *L)
{
    if (lua_budget_killed(L))
        return lua_budget_raise(L);
    lua_State *co = lua_tothread(L, 1);
    if (co && dead_of_error(co) && lua_budget_tainted(co)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "coroutine.close: this coroutine was stopped by klua's limits; its "
                           "__close handlers do not run");
        return 2;
    }
    return lua_guard_call_original(L);
}

/* coroutine.resume and coroutine.wrap, written again so that the coroutine
 * runs under the run's hook (lua_budget_inherit), the run knows which
 * thread runs (a kill found by the allocator stops that one), and a kill
 * inside the coroutine stops the caller too. Resume co from L with narg
 * values from L's top; returns the number of results moved to L, or -1
 * with the error value pushed on L. */
static int resume_from(lua_State *L, lua_State *co, int narg)
{
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    lua_budget_inherit(L, co);
    lua_State *prev = lua_budget_switch(L, co);
    int nres = 0;
    int st = lua_resume(co, L, narg, &nres);
    lua_budget_switch(L, prev);
    if (st == LUA_OK || st == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    lua_xmove(co, L, 1);
    return -1;
}

static int safe_coresume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    if (lua_budget_killed(L))
        return lua_budget_raise(L);
    int r = resume_from(L, co, lua_gettop(L) - 1);
    if (lua_budget_killed(L))
        return lua_budget_raise(L);
    if (r < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;                                        /* [false, err] */
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(r + 1));
    return r + 1;                                        /* [true, results...] */
}

/* The function coroutine.wrap returns: resumes its coroutine (upvalue 1)
 * and raises its errors, with the caller's place in front of a string. A
 * coroutine that died of an error has its to-be-closed variables closed
 * first, as Lua's wrap does, unless a kill stopped it. */
static int wrap_call(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    if (lua_budget_killed(L))
        return lua_budget_raise(L);
    int r = resume_from(L, co, lua_gettop(L));
    if (lua_budget_killed(L))
        return lua_budget_raise(L);
    if (r >= 0)
        return r;
    int st = lua_status(co);
    if (dead_of_error(co) && !lua_budget_tainted(co)) {
        st = lua_resetthread(co);
        lua_xmove(co, L, 1);
        if (lua_budget_killed(L))
            return lua_budget_raise(L);
    }
    if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

static int safe_cowrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);                    /* [f, co] (co has L's hook) */
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_call, 1);                   /* [f, wrapped] */
    return 1;
}

/* Pattern functions: the probe's steps are charged, twice when the real
 * search runs after it. */
static void charge_probe(lua_State *L, unsigned long steps, int refused)
{
    lua_budget_charge(L, refused ? steps : 2 * (uint64_t)steps);
}

static int safe_find(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_FIND, "string.find", charge_probe);
    return lua_guard_call_original(L);
}

static int safe_match(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_MATCH, "string.match", charge_probe);
    return lua_guard_call_original(L);
}

static int safe_gmatch(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_GMATCH, "string.gmatch", charge_probe);
    return lua_guard_call_original(L);
}

static int safe_gsub(lua_State *L)
{
    lua_patguard_check(L, LUA_PATGUARD_GSUB, "string.gsub", charge_probe);
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
    lua_guard_wrap_field(L, "byte", safe_byte);
    lua_guard_wrap_field(L, "char", safe_char);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);                    /* [table] */
    lua_guard_wrap_field(L, "move", safe_move);
    lua_guard_wrap_field(L, "insert", safe_insert);
    lua_guard_wrap_field(L, "remove", safe_remove);
    lua_guard_wrap_field(L, "sort", safe_sort);
    lua_guard_wrap_field(L, "unpack", safe_unpack);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_UTF8LIBNAME);                   /* [utf8] */
    lua_guard_wrap_field(L, "len", safe_utf8_scan);
    lua_guard_wrap_field(L, "codepoint", safe_utf8_scan);
    lua_guard_wrap_field(L, "offset", safe_utf8_scan);
    lua_guard_wrap_field(L, "codes", safe_utf8_scan);
    lua_guard_wrap_field(L, "char", safe_char);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_COLIBNAME);                     /* [coroutine] */
    lua_guard_wrap_field(L, "close", safe_coclose);
    lua_guard_wrap_field(L, "resume", safe_coresume);
    lua_pushcfunction(L, safe_cowrap);
    lua_setfield(L, -2, "wrap");
    lua_pop(L, 1);
    if (luaL_loadbufferx(L, xpcall_src, sizeof xpcall_src - 1, "=klua.xpcall", "t") != LUA_OK)
        return lua_error(L);
    lua_getglobal(L, "xpcall");
    lua_pushcfunction(L, make_xpcall_guard);
    lua_call(L, 2, 1);
    lua_setglobal(L, "xpcall");
    return 0;
}
