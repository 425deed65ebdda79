/* lua_host.h - one sandboxed Lua state per script.
 *
 * Provides: lua_host, a lua_State with klua's safe standard library (base
 * without dofile/loadfile and with a text-only load, coroutine, table,
 * string, math, utf8, os.time/clock/date/difftime; no io, debug or
 * package.loadlib), a `require` that resolves only <scripts>/lib/?.lua,
 * <scripts>/lib/?/init.lua and klua's embedded modules (text chunks only),
 * a memory cap (custom allocator), and an instruction budget per task plus
 * a CPU-time deadline per resume, enforced by a count hook whose error
 * pcall cannot swallow. lua_host_load() runs a script and validates the
 * controller it declares (errors as "file:line: message").
 *
 * What a count hook cannot see is bounded separately: C functions whose
 * work does not grow with memory (string.rep of empty strings, table.move,
 * table.insert/remove on huge borders, table.sort, plain and pattern
 * searches) refuse inputs over fixed caps, and pattern calls are first run
 * through a step-counting matcher; __gc metamethods (run with hooks off)
 * are refused. The work such calls do (probe steps, elements moved or
 * sorted, bytes scanned, bytes allocated, klua.json bytes) is charged to
 * the same instruction budget, and the CPU clock is read as it accrues, so
 * a run ends within about one guarded call of its deadline.
 *
 * A kill (budget or deadline) ends the whole run, not one coroutine: every
 * coroutine of the task, whatever catches the error (pcall, xpcall and its
 * handler, __close, metamethods, callbacks of gsub or sort), raises it
 * again at its next instruction, and a coroutine that died of a kill is
 * never closed (its __close handlers would run with hooks off). The library tables a script sees (string, table, math, utf8,
 * coroutine, os) are read-only views, and every required module runs in
 * its own environment, so a script cannot break klua's modules (or its own
 * lib modules) by reassigning a global or a library function.
 *
 * The host remembers which files it read (the script and each lib module,
 * with a hash of their bytes) so hot reload can tell which scripts a
 * change affects (lua_host_deps, lua_host_deps_changed).
 *
 * Implemented by the lua_* host modules (lua_host_int.h lists them, lowest
 * first); this header is the contract the rest of klua uses.
 * Uses: lua_json, luamods, log, err, Lua 5.4.
 */
#ifndef KLUA_LUA_HOST_H
#define KLUA_LUA_HOST_H

#include "err.h"
#include "store_transform.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#define LUA_HOST_DEFAULT_MEM_LIMIT (64u << 20)
#define LUA_HOST_DEFAULT_BUDGET 100000000ull  /* instructions per task */
#define LUA_HOST_DEFAULT_RUN_MS 200ull        /* CPU ms per resume (between waits) */
#define LUA_HOST_REP_MAX (16u << 20)          /* string.rep result bytes */
#define LUA_HOST_PATTERN_STEPS 10000000ul     /* matcher steps per pattern call */
#define LUA_HOST_PLAIN_FIND_MAX 1000000000ull /* byte comparisons per plain find */
#define LUA_HOST_TABLE_OP_MAX (1 << 24)       /* elements moved/shifted/sorted per call */

/* A warning from a script: Lua's warn() or a load-time finding such as a
 * global assignment. where is "file:line". */
typedef void (*lua_host_warn_fn)(void *ud, const char *where, const char *msg);

typedef struct lua_host_opts {
    const char *scripts_dir;   /* where lib/ is; NULL = the script's folder */
    size_t mem_limit;          /* bytes; 0 = default */
    uint64_t budget;           /* instructions per task; 0 = default */
    uint64_t run_ms;           /* CPU ms per resume; 0 = default */
    lua_host_warn_fn on_warn;  /* NULL = log at warn level */
    void *warn_ud;
} lua_host_opts;

/* Which updates of a watched object enqueue (predicate = ...): any of
 * the bits that matches, or the function (registry ref) returning true. */
enum {
    LUA_PRED_ANY = 1,          /* "any": every update */
    LUA_PRED_GENERATION = 2,   /* "generation": generation, deletionTimestamp or finalizers */
    LUA_PRED_LABELS = 4,       /* "labels" */
    LUA_PRED_ANNOTATIONS = 8,  /* "annotations" */
    LUA_PRED_CHANGED = 16      /* the watched kind's default: anything but status,
                                * metadata.resourceVersion and metadata.managedFields */
};

typedef struct lua_predicate {
    unsigned bits;             /* LUA_PRED_* */
    int fn_ref;                /* function(old, new), or LUA_NOREF */
} lua_predicate;

typedef struct lua_typeref {
    char *api_version;
    char *kind;
    lua_predicate predicate;   /* the default for its place when not declared */
} lua_typeref;

/* watches[i]: a secondary kind mapped to keys of the watched kind. */
typedef struct lua_mapped_watch {
    lua_typeref type;
    char *namespace;           /* or NULL (the controller's) */
    char *selector;            /* or NULL */
    int map_ref;               /* function(obj) -> { "ns/name", ... } */
} lua_mapped_watch;

/* What a script declares (all strings owned by the host). */
typedef struct lua_controller_decl {
    char *name;                /* "comment"; default: file name without .lua */
    lua_typeref watch;
    lua_typeref *owns;
    size_t nowns;
    lua_mapped_watch *watches;
    size_t nwatches;
    char *namespace;           /* or NULL */
    char *selector;            /* or NULL */
    int workers;               /* 0 = not set (the caller's default applies) */
    store_transform cache;     /* what the cache keeps (cache = {...}) */
    char *finalizer;           /* "klua.dev/<name>" unless declared */
    char *error_condition;     /* "Ready" unless declared; NULL for false */
    int has_finalize;
    int reconcile_ref;         /* registry refs to the functions */
    int finalize_ref;          /* LUA_NOREF without finalize */
    /* Webhook handlers (webhook.h), each LUA_NOREF when not declared:
     * validate(ctx, req), mutate(ctx, req), convert(ctx, obj, to_version). */
    int validate_ref, mutate_ref, convert_ref;
} lua_controller_decl;

typedef struct lua_host lua_host;

/* Per-task accounting, owned by the caller (one per reconcile). */
typedef struct lua_host_budget {
    uint64_t instructions;     /* counted so far */
    uint64_t run_ns;           /* CPU time spent in Lua so far */
    int killed;                /* the budget or deadline was hit */
} lua_host_budget;

/* A file the script's code came from, and a hash of its bytes then. */
typedef struct lua_host_dep {
    char *path;
    uint64_t hash;
} lua_host_dep;

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

/* C memory a script makes klua hold on its behalf (encode output, HTTP
 * request and response bodies, log lines) counts against the same cap as
 * the script's Lua memory. L is the host's state or one of its tasks.
 * lua_host_charge returns 0, or -1 (charging nothing) when n more bytes
 * would pass the cap; the cap applies even while host bookkeeping runs
 * relaxed. Every successful charge is paired with a lua_host_discharge of
 * the same n by the owner of the buffer, on every path. */
int lua_host_charge(lua_State *L, size_t n);
void lua_host_discharge(lua_State *L, size_t n);
/* Bytes the script may still allocate (0 when at or over the cap). */
size_t lua_host_mem_room(lua_State *L);

/* 1 when L is a lua_host's state or one of its threads (a module such as
 * klua.json may also be opened in a plain Lua state). */
int lua_host_is_host(lua_State *L);

/* Work a C function does for the script that the count hook cannot see
 * (bytes encoded, elements copied): `units` of about one Lua instruction
 * each go to the running task's instruction budget, and the CPU deadline
 * is checked when due. Raises the kill error when the task is (or gets)
 * killed; call it where a Lua error is acceptable, before or after the
 * work. No-op outside a task and for a state that is not a host's. */
void lua_host_work(lua_State *L, uint64_t units);

/* Load a chunk of klua's own Lua code (text) into L with a private
 * environment, so that what a script does to its globals cannot change it.
 * Pushes the function, or the error message (returns the load status). */
int lua_host_load_internal(lua_host *h, lua_State *L, const char *src, size_t len,
                           const char *chunkname);

/* The files read so far: [0] is the script, then lib modules in the order
 * they were required (also those required later, during reconciles). The
 * array stays owned by the host. */
const lua_host_dep *lua_host_deps(const lua_host *h, size_t *n);
/* 1 when any of deps now has other bytes (or is gone), else 0. */
int lua_host_deps_changed(const lua_host_dep *deps, size_t n);
/* Hash of a file's bytes (FNV-1a 64); -1 when it cannot be read. */
int lua_host_file_hash(const char *path, uint64_t *out);
/* Copy deps (caller frees with lua_host_deps_free). */
int lua_host_deps_copy(const lua_host_dep *deps, size_t n, lua_host_dep **out);
void lua_host_deps_free(lua_host_dep *deps, size_t n);

#endif
