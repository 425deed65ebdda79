/* lua_host.c - the lifecycle of one sandboxed Lua state per script (see
 * lua_host.h): new and free, loading a script, protected host calls,
 * tasks (coroutines anchored by registry refs, released in one place),
 * resuming them under the limits, and one-line error text.
 * Uses: lua_alloc, lua_budget, lua_sandbox, lua_require, lua_deps,
 * lua_decl, lua_host_int, log, err, Lua.
 *
 * Limits are enforced only while script code runs (h->enforce): the host's
 * own bookkeeping (creating a task, formatting an error) must not fail
 * because the script filled its quota.
 */
#include "lua_host.h"

#include "log.h"
#include "lua_alloc.h"
#include "lua_budget.h"
#include "lua_decl.h"
#include "lua_deps.h"
#include "lua_host_int.h"
#include "lua_require.h"
#include "lua_sandbox.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int host_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    kl_log(KL_LOG_ERROR, "unprotected Lua error", "error", msg ? msg : "?", NULL);
    abort();
    return 0;
}

/* Protected: the sandbox, then require, then seal (modules see require). */
static int open_state(lua_State *L)
{
    lua_sandbox_open(L);
    lua_require_open(L);
    return lua_sandbox_seal(L);
}

/* ---- lifecycle ---- */

lua_host *lua_host_new(const lua_host_opts *opts, kl_err *err)
{
    lua_host *h = calloc(1, sizeof *h);
    if (!h) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    h->mem_limit = opts && opts->mem_limit ? opts->mem_limit : LUA_HOST_DEFAULT_MEM_LIMIT;
    h->budget = opts && opts->budget ? opts->budget : LUA_HOST_DEFAULT_BUDGET;
    h->run_ms = opts && opts->run_ms ? opts->run_ms : LUA_HOST_DEFAULT_RUN_MS;
    h->on_warn = opts ? opts->on_warn : NULL;
    h->warn_ud = opts ? opts->warn_ud : NULL;
    lua_decl_reset(h);
    if (opts && opts->scripts_dir) {
        size_t n = strlen(opts->scripts_dir) + 5;
        h->libdir = malloc(n);
        if (h->libdir)
            snprintf(h->libdir, n, "%s/lib", opts->scripts_dir);
    }
    h->L = lua_newstate(lua_alloc_fn, h);
    if (!h->L || (opts && opts->scripts_dir && !h->libdir)) {
        kl_err_set(err, KL_ENOMEM, "out of memory creating a Lua state");
        lua_host_free(h);
        return NULL;
    }
    lua_atpanic(h->L, host_panic);
    if (lua_host_call(h, open_state, NULL, err) != LUA_OK) {
        lua_host_free(h);
        return NULL;
    }
    return h;
}

void lua_host_free(lua_host *h)
{
    if (!h)
        return;
    if (h->L) {
        h->enforce = 0;
        h->cur = NULL;
        lua_close(h->L);
    }
    h->L = NULL;
    lua_decl_reset(h);
    lua_host_deps_free(h->deps, h->ndeps);
    free(h->path);
    free(h->libdir);
    free(h);
}

lua_State *lua_host_state(lua_host *h) { return h->L; }
const lua_controller_decl *lua_host_decl(const lua_host *h) { return &h->decl; }
const char *lua_host_path(const lua_host *h) { return h->path ? h->path : "?"; }
size_t lua_host_mem_used(const lua_host *h) { return h->mem_used; }

void lua_host_work(lua_State *L, uint64_t units)
{
    if (lua_host_is_host(L))
        lua_budget_charge(L, units);
}

int lua_host_call(lua_host *h, lua_CFunction f, void *ud, kl_err *err)
{
    int saved = h->enforce;
    h->enforce = 0;
    lua_State *L = h->L;
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, ud);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        kl_err_set(err, st == LUA_ERRMEM ? KL_ENOMEM : KL_EINVAL, "%s", m ? m : "Lua error");
        lua_pop(L, 1);
    }
    h->enforce = saved;
    return st;
}

/* ---- tasks ---- */

lua_State *lua_host_task_new(lua_host *h, int *ref)
{
    lua_State *co = lua_newthread(h->L);                 /* [co] */
    *ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    return co;
}

void lua_host_task_release(lua_host *h, lua_State *co, int ref)
{
    if (co && lua_status(co) == LUA_YIELD) {
        /* Closing a suspended task runs its pending __close handlers, which
         * are script code: they run under limits of their own. A task that
         * died of an error is left to the collector, which closes nothing
         * (as Lua does for a coroutine that dies). */
        lua_host_budget b = {0};
        lua_budget_begin(h, co, &b);
        lua_resetthread(co);
        lua_budget_end(h, &b);
        lua_sethook(co, NULL, 0, 0);
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

int lua_host_resume(lua_host *h, lua_State *co, int nargs, int *nres, lua_host_budget *b)
{
    lua_host_budget *saved_cur = h->cur;
    uint64_t saved_start = h->cur_start_ns;
    lua_State *saved_running = h->running;
    lua_budget_begin(h, co, b);
    int st = lua_resume(co, h->L, nargs, nres);
    lua_budget_end(h, b);
    h->cur = saved_cur;
    h->cur_start_ns = saved_start;
    h->running = saved_running;
    return st;
}

static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r' || *s == '\t')
            *s = ' ';
}

/* Describe a non-string error value at the top of L, with the place it
 * was raised (where, or the script's path). */
static void describe_value(lua_host *h, lua_State *L, const char *where, char *out, size_t outsz)
{
    const char *at = where && *where ? where : lua_host_path(h);
    int t = lua_type(L, -1);
    if (t == LUA_TNUMBER) {
        if (lua_isinteger(L, -1))
            snprintf(out, outsz, "%s: error %lld", at, (long long)lua_tointeger(L, -1));
        else
            snprintf(out, outsz, "%s: error %g", at, lua_tonumber(L, -1));
    } else if (t == LUA_TTABLE) {
        /* A klua.Error raised as is: error(err). Raw reads, no metamethods. */
        lua_pushliteral(L, "reason");
        lua_rawget(L, -2);
        lua_pushliteral(L, "message");
        lua_rawget(L, -3);
        const char *reason = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (reason || msg)
            snprintf(out, outsz, "%s: %s: %s", at, reason ? reason : "Error", msg ? msg : "");
        else
            snprintf(out, outsz, "%s: error raised with a table value (use error(\"text\"))", at);
        lua_pop(L, 2);
    } else {
        snprintf(out, outsz, "%s: error raised with a %s value (use error(\"text\"))", at,
                 lua_typename(L, t));
    }
}

void lua_host_error(lua_host *h, lua_State *co, int status, const lua_host_budget *b,
                    char *out, size_t outsz)
{
    int saved = h->enforce;
    h->enforce = 0;
    if (b && b->killed) {
        snprintf(out, outsz, "%s", h->kill_msg);
    } else if (status == LUA_ERRMEM) {
        char where[256];
        if (!lua_host_where(co, 0, where, sizeof where))
            snprintf(where, sizeof where, "%s", lua_host_path(h));
        snprintf(out, outsz, "%s: memory limit exceeded (%zu MiB; see --lua-memory)", where,
                 h->mem_limit >> 20);
    } else if (lua_type(co, -1) == LUA_TSTRING) {
        const char *m = lua_tostring(co, -1);
        /* "error in error handling" and the like carry no place. */
        if (status == LUA_ERRERR || !strchr(m, ':'))
            snprintf(out, outsz, "%s: %s", lua_host_path(h), m);
        else
            snprintf(out, outsz, "%s", m);
    } else {
        /* The coroutine's stack is not unwound after an error: the frame
         * that raised is still there. */
        char where[256] = "";
        lua_host_where(co, 0, where, sizeof where);
        describe_value(h, co, where, out, outsz);
    }
    one_line(out);
    h->enforce = saved;
}

/* ---- loading ---- */

/* __newindex of the globals table while the top level runs: a global
 * assigned there is usually a forgotten `local`. */
static int global_assign(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        char where[256], msg[200];
        if (!lua_host_where(L, 1, where, sizeof where))
            snprintf(where, sizeof where, "%s", h->path ? h->path : "?");
        snprintf(msg, sizeof msg, "assigns the global '%.100s' (declare it local)",
                 lua_tostring(L, 2));
        lua_host_warning(h, where, msg);
    }
    lua_rawset(L, 1);
    return 0;
}

/* Message handler of the top-level run: keep strings (error() already
 * put the place in front), describe other values with the place. */
static int load_msgh(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING)
        return 1;
    lua_host *h = lua_host_of(L);
    char where[256] = "", msg[512];
    lua_host_where(L, 1, where, sizeof where);
    describe_value(h, L, where, msg, sizeof msg);
    lua_pushstring(L, msg);
    return 1;
}

/* Protected: set or clear the globals' __newindex watcher. */
static int watch_globals(lua_State *L)
{
    int on = lua_touserdata(L, 1) != NULL;
    lua_pushglobaltable(L);
    if (on) {
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, global_assign);
        lua_setfield(L, -2, "__newindex");
    } else {
        lua_pushnil(L);
    }
    lua_setmetatable(L, -2);
    return 0;
}

int lua_host_load(lua_host *h, const char *path, kl_err *err)
{
    lua_State *L = h->L;
    char *src = NULL;
    size_t len = 0;
    int rc = -1, top = lua_gettop(L);
    lua_host_budget b = {0};
    lua_decl_reset(h);
    free(h->path);
    h->path = strdup(path);
    if (!h->path) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto done;
    }
    if (lua_deps_read(path, &src, &len, err) != 0)
        goto done;
    if (lua_deps_add(h, path, src, len) != 0) {
        kl_err_set(err, KL_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    static char on;
    if (lua_host_call(h, watch_globals, &on, err) != LUA_OK)
        goto done;
    lua_pushcfunction(L, load_msgh);                     /* [msgh] */
    lua_pushfstring(L, "@%s", path);                     /* [msgh, name] */
    h->enforce = 1;
    int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
    if (st == LUA_OK) {
        /* The top level runs under the same limits as a reconcile. */
        lua_remove(L, -2);                               /* [msgh, chunk] */
        lua_budget_begin(h, L, &b);
        st = lua_pcall(L, 0, 1, top + 1);
        lua_budget_end(h, &b);
        lua_sethook(L, NULL, 0, 0);
    }
    h->enforce = 0;
    kl_err ignored = {0};
    lua_host_call(h, watch_globals, NULL, &ignored);
    if (st != LUA_OK) {
        char msg[512];
        lua_host_error(h, L, st, &b, msg, sizeof msg);
        kl_err_set(err, KL_EINVAL, "%s", msg);
        goto done;
    }
    rc = lua_decl_validate(h, lua_gettop(L), src, err);
done:
    if (rc != 0)
        lua_decl_reset(h);
    lua_settop(L, top);
    free(src);
    return rc;
}
