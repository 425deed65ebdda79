/* lua_guard.h - guarded versions of the standard functions a count hook
 * cannot see into (internal).
 *
 * Provides: lua_guard_install(), which replaces, in the globals and the
 * library tables of a fresh state: load (text chunks only), setmetatable
 * (no __gc), collectgarbage ("count" only), string.rep/find/match/gmatch/
 * gsub (size caps and the pattern cost probe), table.move/insert/remove/
 * sort (element caps), coroutine.close and xpcall (a killed run cannot run
 * Lua code while its error unwinds), coroutine.resume/wrap (the run's
 * hook and kill reach every coroutine). The work of these and of
 * string.byte/char, table.unpack and utf8.len/codepoint/offset/codes/char
 * is charged to the run's budget (lua_budget_charge) before or after the
 * call. lua_guard_wrap_global/field wrap a function with a C closure that
 * gets the original as upvalue 1.
 * Uses: lua_budget, lua_patguard, lua_host_int, Lua.
 */
#ifndef KLUA_LUA_GUARD_H
#define KLUA_LUA_GUARD_H

#include <lua.h>

/* Protected (may raise a memory error): install the guards in L's globals
 * and the library tables (before they become read-only views). */
int lua_guard_install(lua_State *L);

/* Wrap the global `name` / the field `name` of the table at the top with
 * f, which gets the original as upvalue 1. */
void lua_guard_wrap_global(lua_State *L, const char *name, lua_CFunction f);
void lua_guard_wrap_field(lua_State *L, const char *name, lua_CFunction f);

/* The body of a wrapper: call the original (upvalue 1) with every argument. */
int lua_guard_call_original(lua_State *L);

#endif
