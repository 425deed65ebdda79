/* lua_ctx_task.h - parallel calls inside one reconcile: ctx:spawn, ctx:wait.
 *
 * Provides: lua_ctx_task_methods (spawn, wait) for the Context metatable,
 * and the hooks the rest of the ctx calls: lua_ctx_tasks_run (resume the
 * tasks whose call has its answer; run by the reconcile's thread whenever
 * it is resumed), lua_ctx_for_thread (the call slot of the thread a ctx
 * method runs in) and lua_ctx_tasks_end (cancel them all).
 *
 * A task is a coroutine with its own call slot (a lua_ctx whose parent is
 * the reconcile's), so each task can have one call in flight while the
 * reconcile and the other tasks have theirs. A task's call yields to the
 * reconcile's thread, which resumes it (through the sandbox's guarded
 * coroutine.resume, so the run's instruction budget, CPU deadline and kill
 * cover every task) when the answer is in: the answer wakes the reconcile
 * if it waits in a ctx call. Tasks not waited for are cancelled when the
 * reconcile ends.
 * Uses: lua_ctx_op (the struct, plumbing), Lua.
 */
#ifndef KLUA_LUA_CTX_TASK_H
#define KLUA_LUA_CTX_TASK_H

#include "lua_ctx_op.h"

#include <lauxlib.h>

extern const luaL_Reg lua_ctx_task_methods[];

/* Called once when the Context metatable is made (L's registry). */
void lua_ctx_task_setup(lua_State *L);
/* Resume every task whose call has its answer, until none is ready. */
void lua_ctx_tasks_run(lua_State *L, lua_ctx *c);
/* The slot for calls made by thread L with the reconcile's ctx c: c itself,
 * or the task's slot when L is one of c's tasks (raises otherwise, through
 * the caller's checks). */
lua_ctx *lua_ctx_for_thread(lua_State *L, lua_ctx *c);
/* Cancel every task's call and forget the tasks (the reconcile ended). */
void lua_ctx_tasks_end(lua_ctx *c);

#endif
