/* lua_budget.h - the instruction budget and CPU deadline of a run (internal).
 *
 * Provides: lua_budget_begin/end around every stretch of script code (a
 * resume, a load, closing a task): while on, a count hook adds to the
 * task's lua_host_budget and reads the thread's CPU clock now and then;
 * past the budget or the deadline (run_ms per resume) the run is killed:
 * b->killed is set, h->kill_msg says where and why, and the hook raises
 * that message from then on. lua_budget_killed() and lua_budget_raise()
 * let guarded C functions refuse to work for a killed run.
 * Uses: lua_host_int, Lua.
 */
#ifndef KLUA_LUA_BUDGET_H
#define KLUA_LUA_BUDGET_H

#include "lua_host_int.h"

#include <lua.h>

/* Limits on for script code in L (accounting into b) until lua_budget_end. */
void lua_budget_begin(lua_host *h, lua_State *L, lua_host_budget *b);
void lua_budget_end(lua_host *h, lua_host_budget *b);

/* 1 when the running task has been killed. */
int lua_budget_killed(lua_State *L);
/* Raise the kill message (does not return). */
int lua_budget_raise(lua_State *L);

#endif
