/* lua_require.h - `require` for scripts (internal).
 *
 * Provides: lua_require_open(), which sets the global `require`: it
 * resolves a module name only to <scripts>/lib/?.lua, <scripts>/lib/?/
 * init.lua or klua's embedded modules (text chunks only, each run in its
 * own environment), caches results, refuses loops, and records each file
 * it reads as a dependency of the script (lua_deps).
 * Uses: lua_sandbox (module environments), lua_deps, lua_json (klua.json),
 * luamods, lua_host_int, Lua.
 */
#ifndef KLUA_LUA_REQUIRE_H
#define KLUA_LUA_REQUIRE_H

#include <lua.h>

/* Protected (may raise a memory error). */
int lua_require_open(lua_State *L);

#endif
