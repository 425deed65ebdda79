/* lua_host.h - one sandboxed Lua state per script.
 *
 * Provides: lua_host, a lua_State with klua's safe standard library (base
 * without dofile/loadfile and with a text-only load, coroutine, table,
 * string with a capped string.rep, math, utf8, os.time/clock/date/difftime;
 * no io, debug or package.loadlib), a `require` that resolves only
 * <scripts>/lib/?.lua, <scripts>/lib/?/init.lua and klua's embedded modules
 * (text chunks only), a memory cap (custom allocator), and an instruction
 * budget plus a Lua running-time deadline per task enforced by a count hook
 * whose error pcall cannot swallow. lua_host_load() runs a script and
 * validates the controller it declares (errors as "file:line: message").
 * Uses: lua_json, luamods, log, err, Lua 5.4.
 */
#ifndef KLUA_LUA_HOST_H
#define KLUA_LUA_HOST_H

#include "err.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#define LUA_HOST_DEFAULT_MEM_LIMIT (64u << 20)
#define LUA_HOST_DEFAULT_BUDGET 100000000ull  /* instructions per task */
#define LUA_HOST_DEFAULT_RUN_MS 10000ull      /* Lua running time per task */
#define LUA_HOST_REP_MAX (16u << 20)          /* string.rep result bytes */

typedef struct lua_host_opts {
    const char *scripts_dir;   /* where lib/ is; NULL = the script's folder */
    size_t mem_limit;          /* bytes; 0 = default */
    uint64_t budget;           /* instructions per task; 0 = default */
    uint64_t run_ms;           /* ms of Lua execution per task; 0 = default */
} lua_host_opts;

typedef struct lua_typeref {
    char *api_version;
    char *kind;
} lua_typeref;

/* What a script declares (all strings owned by the host). */
typedef struct lua_controller_decl {
    char *name;                /* "comment"; default: file name without .lua */
    lua_typeref watch;
    lua_typeref *owns;
    size_t nowns;
    char *namespace;           /* or NULL */
    char *selector;            /* or NULL */
    int workers;               /* 0 = not set (the caller's default applies) */
    int has_finalize;
    int reconcile_ref;         /* registry refs to the functions */
    int finalize_ref;          /* LUA_NOREF without finalize */
} lua_controller_decl;

typedef struct lua_host lua_host;

/* Per-task accounting, owned by the caller (one per reconcile). */
typedef struct lua_host_budget {
    uint64_t instructions;     /* counted so far */
    uint64_t run_ns;           /* Lua running time so far */
    int killed;                /* the budget or deadline was hit */
} lua_host_budget;

lua_host *lua_host_new(const lua_host_opts *opts, kl_err *err);
void lua_host_free(lua_host *h);
lua_State *lua_host_state(lua_host *h);

/* Run the script file `path` (text only) under a budget and validate the
 * controller table it returns. err: "path:line: message". */
int lua_host_load(lua_host *h, const char *path, kl_err *err);
const lua_controller_decl *lua_host_decl(const lua_host *h);
const char *lua_host_path(const lua_host *h);   /* the script's path */

/* Tasks: a coroutine anchored in the registry. lua_host_task_new pushes
 * nothing and returns the thread (NULL on memory failure); *ref anchors it
 * until lua_host_task_release. */
lua_State *lua_host_task_new(lua_host *h, int *ref);
void lua_host_task_release(lua_host *h, lua_State *co, int ref);

/* Resume co with nargs values on its stack, counting against b. Returns
 * LUA_OK (finished, *nres results on co), LUA_YIELD, or an error status;
 * then lua_host_error() describes it. */
int lua_host_resume(lua_host *h, lua_State *co, int nargs, int *nres, lua_host_budget *b);

/* One line describing the error status/value left on co by a failed
 * resume: "lua/x.lua:12: message". Writes into out (NUL-terminated). */
void lua_host_error(lua_host *h, lua_State *co, int status, const lua_host_budget *b,
                    char *out, size_t outsz);

/* Run f(L) protected, with the memory cap relaxed (host bookkeeping must
 * not fail because the script used its memory). Returns the lua_pcall
 * status; on error the message is copied to err. */
int lua_host_call(lua_host *h, lua_CFunction f, void *ud, kl_err *err);

size_t lua_host_mem_used(const lua_host *h);

#endif
