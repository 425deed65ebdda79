/* lua_patguard.h - the cost probe run before Lua's pattern functions.
 *
 * Provides: lua_patguard_check(), which walks the backtracking search that
 * string.find/match/gmatch/gsub would do with the arguments on L's stack,
 * counting steps, and raises a clear error when the call would take more
 * than LUA_HOST_PATTERN_STEPS steps (or, for a plain find, more than
 * LUA_HOST_PLAIN_FIND_MAX byte comparisons). It needs no host: only the
 * arguments and the limits in lua_host.h.
 * Uses: lua_host.h (the limits), Lua.
 */
#ifndef KLUA_LUA_PATGUARD_H
#define KLUA_LUA_PATGUARD_H

#include <lua.h>

enum { LUA_PATGUARD_FIND, LUA_PATGUARD_MATCH, LUA_PATGUARD_GMATCH, LUA_PATGUARD_GSUB };

/* Refuse (raise) when the search `kind` over the arguments at 1.. (those
 * of the string function named fname) would cost too much. Anything
 * invalid is left for the real function to report. */
void lua_patguard_check(lua_State *L, int kind, const char *fname);

#endif
