/* lua_host_int.h - the state the lua_* host modules share (internal).
 *
 * Provides: struct lua_host (one per script: the Lua state, the memory
 * cap, the running task's budget, the declaration, the files read),
 * lua_host_of() to find it from any thread of its state (the allocator's
 * user data), and small helpers every layer above needs: the thread CPU
 * clock, "file:line" of the running Lua code, and warning delivery.
 * Only the lua_* host modules include this header; everything else uses
 * lua_host.h.
 *
 * The modules above it, lowest first: lua_budget (instruction budget, CPU
 * deadline, kill), lua_alloc (allocator, memory cap), lua_patguard
 * (pattern cost probe), lua_guard (guarded C functions), lua_sandbox (safe
 * standard library, read-only views, module environments), lua_deps (files
 * read and their hashes), lua_require, lua_decl (declaration validation),
 * and lua_host.c (lifecycle: new, load, call, tasks, error text) on top.
 * Uses: lua_host.h, Lua.
 */
#ifndef KLUA_LUA_HOST_INT_H
#define KLUA_LUA_HOST_INT_H

#include "lua_host.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

struct lua_host {
    lua_State *L;
    char *path;                  /* the script file */
    char *libdir;                /* <scripts>/lib */
    size_t mem_used, mem_limit;
    int enforce;                 /* limits apply (script code is running) */
    uint64_t budget, run_ms;
    lua_host_budget *cur;        /* the running task's accounting */
    uint64_t cur_start_ns;       /* CPU clock when the current resume began */
    uint64_t unclocked;          /* work counted since the CPU clock was last read */
    lua_State *running;          /* the thread of the run that runs now, or NULL */
    char kill_msg[512];
    char kill_why[160];          /* the kill's reason, for kill_msg */
    int kill_unplaced;           /* kill_msg still lacks the script's file:line */
    const char *src;             /* the script's text while validating */
    lua_controller_decl decl;
    lua_host_dep *deps;          /* files read: the script, then lib modules */
    size_t ndeps;
    lua_host_warn_fn on_warn;
    void *warn_ud;
};

/* The host owning L (its state or any of its threads). */
static inline lua_host *lua_host_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* CPU time of this thread, in nanoseconds. */
uint64_t lua_host_cpu_ns(void);

/* "file:line" of the innermost Lua function on L's stack at or above
 * level into out; 0 when there is none. */
int lua_host_where(lua_State *L, int level, char *out, size_t outsz);

/* Hand a warning to the host's on_warn (or the log). */
void lua_host_warning(lua_host *h, const char *where, const char *msg);

#endif
