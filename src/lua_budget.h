/* lua_budget.h - the instruction budget and CPU deadline of a run (internal).
 *
 * Provides: lua_budget_begin/end around every stretch of script code (a
 * resume, a load, closing a task). While on, one meter counts the run's
 * work (instructions through a count hook, C work the guarded functions
 * charge, bytes allocated) into the task's lua_host_budget and reads the
 * thread's CPU clock every so much work; past the budget or the deadline
 * (run_ms per resume) the run is killed: b->killed is set, h->kill_msg
 * says where and why, and every thread of the run that executes another
 * instruction raises it (see lua_budget.c).
 * Uses: lua_host_int, Lua.
 */
#ifndef KLUA_LUA_BUDGET_H
#define KLUA_LUA_BUDGET_H

#include "lua_host_int.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on for script code in L (accounting into b) until lua_budget_end. */
void lua_budget_begin(lua_host *h, lua_State *L, lua_host_budget *b);
void lua_budget_end(lua_host *h, lua_host_budget *b);

/* 1 when the running task has been killed. */
int lua_budget_killed(lua_State *L);
/* Raise the kill message in L, whose every later instruction raises it
 * again (does not return). */
int lua_budget_raise(lua_State *L);

/* Charge `units` of C work (about one Lua instruction each) to the running
 * task, reading the clock when due; raises the kill when the run is (or
 * gets) killed. No-op outside a run. */
void lua_budget_charge(lua_State *L, uint64_t units);

/* The allocator's side: count `bytes` handed out. Returns 1 when the run
 * is killed (the allocator then refuses to grow), else 0. */
int lua_budget_alloc(lua_host *h, size_t bytes);

/* Before co runs under L's run: give it the run's hook if it has none
 * (made outside any run), or the every-instruction one if killed. */
void lua_budget_inherit(lua_State *L, lua_State *co);

/* co starts (or stops) running for the run: returns the thread that ran
 * before, to switch back to. */
lua_State *lua_budget_switch(lua_State *L, lua_State *co);

/* 1 when co was running when a kill hit (its hook fires every instruction):
 * an error raised by the hook leaves a dead coroutine's __close handlers
 * to run with hooks off, so such a coroutine is never closed. */
int lua_budget_tainted(lua_State *co);

#endif
