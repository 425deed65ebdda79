/* lua_patguard.h - the cost probe run before Lua's pattern functions.
 *
 * Provides: lua_patguard_check(), which walks the backtracking search that
 * string.find/match/gmatch/gsub would do with the arguments on L's stack,
 * counting steps, and raises a clear error when the call would take more
 * than LUA_HOST_PATTERN_STEPS steps (or, for a plain find, more than
 * LUA_HOST_PLAIN_FIND_MAX byte comparisons), and reports the work it
 * found so the caller can charge it. It needs no host: only the arguments
 * and the limits in lua_host.h.
 * Uses: lua_host.h (the limits), Lua.
 */
#ifndef KLUA_LUA_PATGUARD_H
#define KLUA_LUA_PATGUARD_H

#include <lua.h>

enum { LUA_PATGUARD_FIND, LUA_PATGUARD_MATCH, LUA_PATGUARD_GMATCH, LUA_PATGUARD_GSUB };

/* Told the work a check found: steps of the search (for a plain find, 1
 * per 16 byte comparisons at worst), and whether the call is refused. It
 * may raise (then the call is not made). */
typedef void (*lua_patguard_charge_fn)(lua_State *L, unsigned long work, int refused);

/* Refuse (raise) when the search `kind` over the arguments at 1.. (those
 * of the string function named fname) would cost too much; charge is told
 * the work first. Anything invalid is left for the real function to
 * report. */
void lua_patguard_check(lua_State *L, int kind, const char *fname, lua_patguard_charge_fn charge);

#endif
