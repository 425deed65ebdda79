/* lua_sandbox.h - the safe standard library of a script's state (internal).
 *
 * Provides: lua_sandbox_open() (base without dofile/loadfile, coroutine,
 * table, string, math, utf8, os.time/clock/date/difftime; no io, debug or
 * package; print and warn through klua's log; the guards of lua_guard),
 * lua_sandbox_seal() (library tables become read-only views, and a copy of
 * the globals becomes the pristine base every module environment falls
 * back to), and module environments: lua_sandbox_set_private_env() gives
 * a main chunk its own globals, so that what a script does to its globals
 * cannot change klua's modules or its own lib modules.
 * Uses: lua_guard, lua_host_int, log, Lua.
 */
#ifndef KLUA_LUA_SANDBOX_H
#define KLUA_LUA_SANDBOX_H

#include <lua.h>

/* Protected (they raise memory errors). Open first, add further globals
 * (require), then seal: what is global at sealing time is what modules see. */
int lua_sandbox_open(lua_State *L);
int lua_sandbox_seal(lua_State *L);

/* Give the function at the top (a main chunk) a private environment. */
void lua_sandbox_set_private_env(lua_State *L);

#endif
