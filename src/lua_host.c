/* lua_host.c - one sandboxed Lua state per script (see lua_host.h).
 *
 * Provides: the sandbox (read-only library views, guarded C functions, a
 * step-counting pattern probe), `require` with per-module environments and
 * dependency tracking, the memory cap, the instruction budget and CPU
 * deadline hook, script loading and controller validation, tasks
 * (coroutines anchored by registry refs, released in one place).
 * Uses: lua_json (klua.json), luamods (embedded modules), log, err, Lua.
 *
 * Limits are enforced only while script code runs (h->enforce): the host's
 * own bookkeeping (creating a task, formatting an error) must not fail
 * because the script filled its quota. A budget kill sets b->killed and the
 * hook then fires on every instruction, raising again each time, so a
 * script's pcall can catch the error but cannot run on: the coroutine
 * unwinds to the host.
 *
 * The deadline is CPU time of this thread, not wall time: on a busy
 * machine a preempted reconcile must not be killed for time it did not
 * use, while an endless loop burns CPU and is cut after run_ms.
 */
#include "lua_host.h"

#include "log.h"
#include "lua_json.h"
#include "luamods.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOOK_EVERY 1000          /* instructions between hook calls */
#define MAX_SOURCE (8u << 20)    /* largest script or module file */

struct lua_host {
    lua_State *L;
    char *path;                  /* the script file */
    char *libdir;                /* <scripts>/lib */
    size_t mem_used, mem_limit;
    int enforce;                 /* limits apply (script code is running) */
    uint64_t budget, run_ms;
    lua_host_budget *cur;        /* the running task's accounting */
    uint64_t cur_start_ns;
    char kill_msg[300];
    const char *src;             /* the script's text while validating */
    lua_controller_decl decl;
};

static char loaded_key;          /* registry: modules loaded by require */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- memory ---- */

/* Fails only when growing past the cap while script code runs; when ptr is
 * NULL, osize is a type tag, not a size. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lua_host *h = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        h->mem_used -= old;
        return NULL;
    }
    if (nsize > old && h->enforce && h->mem_used - old + nsize > h->mem_limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    h->mem_used = h->mem_used - old + nsize;
    return p;
}

static int host_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    kl_log(KL_LOG_ERROR, "unprotected Lua error", "error", msg ? msg : "?", NULL);
    abort();
    return 0;
}

/* ---- budget ---- */

static lua_host *host_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_host *h = host_of(L);
    lua_host_budget *b = h->cur;
    if (!b)
        return;
    b->instructions += HOOK_EVERY;
    if (!b->killed) {
        uint64_t ran = b->run_ns + (now_ns() - h->cur_start_ns);
        const char *why = NULL;
        char what[96];
        if (b->instructions > h->budget) {
            snprintf(what, sizeof what, "instruction budget exceeded (%llu instructions)",
                     (unsigned long long)h->budget);
            why = what;
        } else if (ran > h->run_ms * 1000000ull) {
            snprintf(what, sizeof what, "deadline exceeded (ran %llu ms of Lua)",
                     (unsigned long long)(ran / 1000000ull));
            why = what;
        }
        if (!why)
            return;
        b->killed = 1;
        lua_Debug d;
        if (lua_getstack(L, 0, &d) && lua_getinfo(L, "Sl", &d) && d.currentline > 0)
            snprintf(h->kill_msg, sizeof h->kill_msg, "%s:%d: %s", d.short_src, d.currentline,
                     why);
        else
            snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", h->path ? h->path : "?", why);
        /* From now on fire on every instruction of every thread that runs. */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushstring(L, h->kill_msg);
    lua_error(L);
}

/* ---- the sandbox ---- */

static int safe_load(lua_State *L)
{
    /* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t". */
    int n = lua_gettop(L);
    const char *mode = luaL_optstring(L, 3, "t");
    if (!strchr(mode, 't'))
        return luaL_error(L, "load: only text chunks can be loaded in klua");
    lua_pushvalue(L, lua_upvalueindex(1));               /* [args.., load] */
    lua_pushvalue(L, 1);
    if (n >= 2)
        lua_pushvalue(L, 2);
    else
        lua_pushnil(L);
    lua_pushliteral(L, "t");
    int nargs = 3;
    if (n >= 4) {
        lua_pushvalue(L, 4);
        nargs = 4;
    }
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - n;
}

static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage(\"%s\") is not allowed in klua (only \"count\")", opt);
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

static int safe_rep(lua_State *L)
{
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n > 0) {
        /* Computed in long double to avoid overflow; exactness is not needed. */
        long double total = (long double)l * n + (long double)lsep * (n - 1);
        if (total > LUA_HOST_REP_MAX) {
            char msg[160]; /* lua_pushfstring has no %Lf */
            snprintf(msg, sizeof msg, "string.rep: the result would be %.0Lf bytes, more than "
                     "klua's limit of %u bytes", total, (unsigned)LUA_HOST_REP_MAX);
            return luaL_error(L, "%s", msg);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int host_print(lua_State *L)
{
    lua_host *h = host_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        luaL_tolstring(L, i, NULL);
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    kl_log(KL_LOG_INFO, "print", "script", h->path ? h->path : "?", "msg", lua_tostring(L, -1),
           NULL);
    return 0;
}

static int read_file(const char *path, char **out, size_t *len, kl_err *err)
{
    int rc = -1;
    char *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kl_err_set(err, KL_EIO, "%s: %s", path, strerror(errno));
    data = malloc(MAX_SOURCE + 1);
    if (!data) {
        kl_err_set(err, KL_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t n = fread(data, 1, MAX_SOURCE + 1, f);
    if (ferror(f)) {
        kl_err_set(err, KL_EIO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (n > MAX_SOURCE) {
        kl_err_set(err, KL_EINVAL, "%s: file larger than %u bytes", path, MAX_SOURCE);
        goto done;
    }
    data[n] = '\0';
    *out = data;
    *len = n;
    data = NULL;
    rc = 0;
done:
    free(data);
    fclose(f);
    return rc;
}

static int valid_module_name(const char *s)
{
    if (!*s || *s == '.')
        return 0;
    for (const char *p = s; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
            return 0;
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return 0;
    }
    return 1;
}

/* Find a module's source: lib/ first, then klua's embedded modules.
 * Pushes the loaded chunk and its file name, or raises. */
static void load_module(lua_State *L, lua_host *h, const char *name)
{
    char rel[512], path[1024];
    size_t n = strlen(name);
    if (n >= sizeof rel)
        luaL_error(L, "module name '%s' is too long", name);
    for (size_t i = 0; i <= n; i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    const char *forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
    for (size_t i = 0; i < 2 && h->libdir; i++) {
        snprintf(path, sizeof path, forms[i], h->libdir, rel);
        char *src = NULL;
        size_t len = 0;
        kl_err err = {0};
        if (read_file(path, &src, &len, &err) != 0) {
            if (err.code == KL_EIO && access(path, F_OK) != 0)
                continue;
            luaL_error(L, "cannot read module '%s': %s", name, err.msg);
        }
        lua_pushfstring(L, "@%s", path);                 /* [chunkname] */
        int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
        free(src);
        if (st != LUA_OK)
            lua_error(L);
        lua_remove(L, -2);                               /* [chunk] */
        lua_pushstring(L, path);                         /* [chunk, path] */
        return;
    }
    for (const struct klua_luamod *m = klua_luamods; m->name; m++) {
        if (strcmp(m->name, name) != 0)
            continue;
        if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK)
            lua_error(L);
        lua_pushstring(L, m->chunkname + 1);
        return;
    }
    luaL_error(L, "module '%s' not found (looked in %s/%s.lua, %s/%s/init.lua and klua's modules)",
               name, h->libdir ? h->libdir : "lib", rel, h->libdir ? h->libdir : "lib", rel);
}

static int host_require(lua_State *L)
{
    lua_host *h = host_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (!valid_module_name(name))
        return luaL_error(L, "require: invalid module name '%s'", name);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key);      /* [name, loaded] */
    lua_pushvalue(L, 1);
    int t = lua_rawget(L, 2);                            /* [name, loaded, mod] */
    if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == &loaded_key)
        return luaL_error(L, "require: module '%s' requires itself (a loop)", name);
    if (t != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    if (strcmp(name, "klua.json") == 0) {
        luaopen_klua_json(L);                            /* [name, loaded, mod] */
    } else {
        load_module(L, h, name);                         /* [name, loaded, chunk, path] */
        lua_pushvalue(L, 1);
        lua_pushlightuserdata(L, &loaded_key);           /* "loading" mark */
        lua_rawset(L, 2);
        lua_pushvalue(L, 1);
        lua_insert(L, -2);                               /* [name, loaded, chunk, name, path] */
        int st = lua_pcall(L, 2, 1, 0);                  /* [name, loaded, mod|err] */
        if (st != LUA_OK) {
            lua_pushvalue(L, 1);
            lua_pushnil(L);
            lua_rawset(L, 2);
            return lua_error(L);
        }
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);                                    /* loaded[name] = mod */
    return 1;
}

static void set_global_fn(lua_State *L, const char *name, lua_CFunction f, int nup)
{
    lua_pushcclosure(L, f, nup);
    lua_setglobal(L, name);
}

static int open_sandbox(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
        {NULL, NULL},
    };
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    /* os: only the clock functions. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);      /* [os] */
    lua_createtable(L, 0, 4);                            /* [os, safe] */
    static const char *const os_keep[] = {"time", "clock", "date", "difftime", NULL};
    for (const char *const *k = os_keep; *k; k++) {
        lua_getfield(L, -2, *k);
        lua_setfield(L, -2, *k);
    }
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);

    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    lua_getglobal(L, "load");
    set_global_fn(L, "load", safe_load, 1);
    set_global_fn(L, "collectgarbage", safe_collectgarbage, 0);
    set_global_fn(L, "print", host_print, 0);
    set_global_fn(L, "require", host_require, 0);

    lua_getglobal(L, LUA_STRLIBNAME);                    /* [string] */
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, safe_rep, 1);
    lua_setfield(L, -2, "rep");
    lua_pop(L, 1);
    /* getmetatable("") returns false: the string metatable stays as is. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {                       /* ["", mt] */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
    return 0;
}

/* ---- lifecycle ---- */

static void decl_free(lua_controller_decl *d);

/* Drop the declaration and the registry refs it holds. */
static void decl_reset(lua_host *h)
{
    if (h->L) {
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.reconcile_ref);
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.finalize_ref);
    }
    decl_free(&h->decl);
}

static void decl_free(lua_controller_decl *d)
{
    free(d->name);
    free(d->watch.api_version);
    free(d->watch.kind);
    for (size_t i = 0; i < d->nowns; i++) {
        free(d->owns[i].api_version);
        free(d->owns[i].kind);
    }
    free(d->owns);
    free(d->namespace);
    free(d->selector);
    memset(d, 0, sizeof *d);
    d->reconcile_ref = d->finalize_ref = LUA_NOREF;
}

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
    decl_free(&h->decl);
    if (opts && opts->scripts_dir) {
        size_t n = strlen(opts->scripts_dir) + 5;
        h->libdir = malloc(n);
        if (h->libdir)
            snprintf(h->libdir, n, "%s/lib", opts->scripts_dir);
    }
    h->L = lua_newstate(host_alloc, h);
    if (!h->L || (opts && opts->scripts_dir && !h->libdir)) {
        kl_err_set(err, KL_ENOMEM, "out of memory creating a Lua state");
        lua_host_free(h);
        return NULL;
    }
    lua_atpanic(h->L, host_panic);
    if (lua_host_call(h, open_sandbox, NULL, err) != LUA_OK) {
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
    decl_free(&h->decl);
    free(h->path);
    free(h->libdir);
    free(h);
}

lua_State *lua_host_state(lua_host *h) { return h->L; }
const lua_controller_decl *lua_host_decl(const lua_host *h) { return &h->decl; }
const char *lua_host_path(const lua_host *h) { return h->path ? h->path : "?"; }
size_t lua_host_mem_used(const lua_host *h) { return h->mem_used; }

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
    if (co)
        lua_resetthread(co);    /* closes pending to-be-closed variables */
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

int lua_host_resume(lua_host *h, lua_State *co, int nargs, int *nres, lua_host_budget *b)
{
    lua_host_budget *saved_cur = h->cur;
    uint64_t saved_start = h->cur_start_ns;
    h->cur = b;
    h->cur_start_ns = now_ns();
    h->enforce = 1;
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, b->killed ? 1 : HOOK_EVERY);
    int st = lua_resume(co, h->L, nargs, nres);
    b->run_ns += now_ns() - h->cur_start_ns;
    h->enforce = 0;
    h->cur = saved_cur;
    h->cur_start_ns = saved_start;
    return st;
}

static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r' || *s == '\t')
            *s = ' ';
}

void lua_host_error(lua_host *h, lua_State *co, int status, const lua_host_budget *b,
                    char *out, size_t outsz)
{
    int saved = h->enforce;
    h->enforce = 0;
    if (b && b->killed) {
        snprintf(out, outsz, "%s", h->kill_msg);
    } else if (status == LUA_ERRMEM) {
        snprintf(out, outsz, "%s: memory limit exceeded (%zu MiB)", lua_host_path(h),
                 h->mem_limit >> 20);
    } else {
        int t = lua_type(co, -1);
        if (t == LUA_TSTRING) {
            snprintf(out, outsz, "%s", lua_tostring(co, -1));
        } else if (t == LUA_TNUMBER) {
            if (lua_isinteger(co, -1))
                snprintf(out, outsz, "%s: error %lld", lua_host_path(h),
                         (long long)lua_tointeger(co, -1));
            else
                snprintf(out, outsz, "%s: error %g", lua_host_path(h), lua_tonumber(co, -1));
        } else if (t == LUA_TTABLE) {
            /* A klua.Error raised as is: error(err). Raw reads, no metamethods. */
            lua_pushliteral(co, "reason");
            lua_rawget(co, -2);
            lua_pushliteral(co, "message");
            lua_rawget(co, -3);
            const char *reason = lua_type(co, -2) == LUA_TSTRING ? lua_tostring(co, -2) : NULL;
            const char *msg = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
            if (reason || msg)
                snprintf(out, outsz, "%s: %s: %s", lua_host_path(h), reason ? reason : "Error",
                         msg ? msg : "");
            else
                snprintf(out, outsz, "%s: error raised with a table value (use error(\"text\"))",
                         lua_host_path(h));
            lua_pop(co, 2);
        } else {
            snprintf(out, outsz, "%s: error raised with a %s value (use error(\"text\"))",
                     lua_host_path(h), lua_typename(co, t));
        }
    }
    one_line(out);
    h->enforce = saved;
}

/* ---- loading and validation ---- */

/* Line of the first `key =` (not `==`) in the source, 0 if none. A plain
 * scan is enough to point the user at the right place. */
static int find_key_line(const char *src, const char *key)
{
    size_t kl = strlen(key);
    int line = 1;
    for (const char *p = src; *p; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (strncmp(p, key, kl) != 0)
            continue;
        if (p > src && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.'))
            continue;
        const char *q = p + kl;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '=' && q[1] != '=')
            return line;
    }
    return 0;
}

/* Line of the last line starting with `return`, or 1. */
static int return_line(const char *src)
{
    int line = 1, found = 1;
    const char *p = src;
    while (*p) {
        const char *q = p;
        while (*q == ' ' || *q == '\t')
            q++;
        if (strncmp(q, "return", 6) == 0 && !isalnum((unsigned char)q[6]) && q[6] != '_')
            found = line;
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
        line++;
    }
    return found;
}

static int decl_fail(lua_host *h, kl_err *err, const char *key, const char *fmt, const char *a,
                     const char *b)
{
    int line = key ? find_key_line(h->src, key) : 0;
    if (!line)
        line = return_line(h->src);
    char msg[400];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return kl_err_set(err, KL_EINVAL, "%s:%d: %s", h->path, line, msg);
}

static int valid_api_version(const char *s)
{
    const char *slash = strchr(s, '/');
    const char *ver = slash ? slash + 1 : s;
    if (slash) {
        if (slash == s)
            return 0;
        for (const char *p = s; p < slash; p++)
            if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' ||
                  *p == '-'))
                return 0;
    }
    if (ver[0] != 'v' || !isdigit((unsigned char)ver[1]))
        return 0;
    for (const char *p = ver + 1; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p)))
            return 0;
    return 1;
}

static int valid_kind(const char *s)
{
    if (!isupper((unsigned char)s[0]))
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p))
            return 0;
    return 1;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (const char *p = s; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

/* Read t[field] as an optional string; -1 if present with another type. */
static int opt_string(lua_State *L, int t, const char *field, char **out)
{
    lua_pushstring(L, field);
    int ty = lua_rawget(L, t);
    int rc = 0;
    if (ty == LUA_TSTRING) {
        *out = strdup(lua_tostring(L, -1));
        rc = *out ? 0 : -1;
    } else if (ty != LUA_TNIL) {
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

/* The typeref at index idx; what names it in messages ("watch", "owns[2]"). */
static int read_typeref(lua_host *h, int idx, const char *what, const char *key, lua_typeref *out,
                        kl_err *err)
{
    lua_State *L = h->L;
    if (lua_type(L, idx) != LUA_TTABLE)
        return decl_fail(h, err, key, "%s must be a table { apiVersion = \"...\", kind = \"...\" }",
                         what, NULL);
    if (opt_string(L, idx, "apiVersion", &out->api_version) != 0 || !out->api_version)
        return decl_fail(h, err, key, "%s.apiVersion must be a string such as \"v1\" or "
                                      "\"github.klua.dev/v1\"", what, NULL);
    if (!valid_api_version(out->api_version))
        return decl_fail(h, err, key, "%s.apiVersion \"%s\" is not a valid apiVersion "
                                      "(\"v1\" or \"group/version\")", what, out->api_version);
    if (opt_string(L, idx, "kind", &out->kind) != 0 || !out->kind)
        return decl_fail(h, err, key, "%s.kind must be a string such as \"ConfigMap\"", what, NULL);
    if (!valid_kind(out->kind))
        return decl_fail(h, err, key, "%s.kind \"%s\" is not a valid kind (CamelCase, such as "
                                      "\"ConfigMap\")", what, out->kind);
    return 0;
}

static int read_function(lua_host *h, int t, const char *field, int *ref)
{
    lua_State *L = h->L;
    lua_pushstring(L, field);
    int ty = lua_rawget(L, t);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (ty != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return -1;
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static int validate_decl(lua_host *h, int t, kl_err *err)
{
    static const char *const known[] = {"name",     "watch",    "owns",      "namespace",
                                        "selector", "workers",  "reconcile", "finalize", NULL};
    lua_State *L = h->L;
    lua_controller_decl *d = &h->decl;
    if (lua_type(L, t) != LUA_TTABLE)
        return decl_fail(h, err, NULL, "the script must return a table declaring a controller "
                                       "(it returned %s)", lua_typename(L, lua_type(L, t)), NULL);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return decl_fail(h, err, NULL, "the controller table has a non-string key", NULL, NULL);
        }
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (const char *const *p = known; *p; p++)
            ok |= strcmp(*p, k) == 0;
        if (!ok) {
            int rc = decl_fail(h, err, k, "unknown field \"%s\" in the controller table (known: "
                                          "name, watch, owns, namespace, selector, workers, "
                                          "reconcile, finalize)", k, NULL);
            lua_pop(L, 1);
            return rc;
        }
    }
    if (opt_string(L, t, "name", &d->name) != 0)
        return decl_fail(h, err, "name", "name must be a string", NULL, NULL);
    if (!d->name) {
        const char *base = strrchr(h->path, '/');
        base = base ? base + 1 : h->path;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".lua") == 0)
            n -= 4;
        d->name = strndup(base, n);
        if (!d->name)
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        for (char *p = d->name; *p; p++)
            *p = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
    }
    if (!valid_name(d->name))
        return decl_fail(h, err, "name", "controller name \"%s\" must be lower-case letters, digits, "
                                         "'-' or '.' (at most 63)", d->name, NULL);

    lua_pushliteral(L, "watch");
    lua_rawget(L, t);
    int rc = lua_isnil(L, -1)
                 ? decl_fail(h, err, NULL, "the controller has no watch = { apiVersion = ..., "
                                           "kind = ... }", NULL, NULL)
                 : read_typeref(h, lua_gettop(L), "watch", "watch", &d->watch, err);
    lua_pop(L, 1);
    if (rc != 0)
        return -1;

    lua_pushliteral(L, "owns");
    int ty = lua_rawget(L, t);
    if (ty != LUA_TNIL && ty != LUA_TTABLE) {
        lua_pop(L, 1);
        return decl_fail(h, err, "owns", "owns must be a list of { apiVersion = ..., kind = ... }",
                         NULL, NULL);
    }
    if (ty == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        d->owns = n ? calloc(n, sizeof *d->owns) : NULL;
        if (n && !d->owns) {
            lua_pop(L, 1);
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            char what[32];
            snprintf(what, sizeof what, "owns[%zu]", i + 1);
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            d->nowns = i + 1;
            rc = read_typeref(h, lua_gettop(L), what, "owns", &d->owns[i], err);
            lua_pop(L, 1);
            if (rc != 0) {
                lua_pop(L, 1);
                return -1;
            }
        }
    }
    lua_pop(L, 1);

    if (opt_string(L, t, "namespace", &d->namespace) != 0)
        return decl_fail(h, err, "namespace", "namespace must be a string", NULL, NULL);
    if (opt_string(L, t, "selector", &d->selector) != 0)
        return decl_fail(h, err, "selector", "selector must be a label selector string", NULL,
                         NULL);

    lua_pushliteral(L, "workers");
    ty = lua_rawget(L, t);
    if (ty != LUA_TNIL) {
        int isnum = 0;
        lua_Number w = lua_tonumberx(L, -1, &isnum);
        lua_pop(L, 1);
        if (ty != LUA_TNUMBER || !isnum || w != (lua_Number)(int)w || w < 1 || w > 1024)
            return decl_fail(h, err, "workers", "workers must be an integer from 1 to 1024", NULL,
                             NULL);
        d->workers = (int)w;
    } else {
        lua_pop(L, 1);
    }

    rc = read_function(h, t, "reconcile", &d->reconcile_ref);
    if (rc == 0)
        return decl_fail(h, err, NULL, "the controller has no reconcile function", NULL, NULL);
    if (rc < 0)
        return decl_fail(h, err, "reconcile", "reconcile must be a function(ctx, obj)", NULL, NULL);
    rc = read_function(h, t, "finalize", &d->finalize_ref);
    if (rc < 0)
        return decl_fail(h, err, "finalize", "finalize must be a function(ctx, obj)", NULL, NULL);
    d->has_finalize = rc == 1;
    return 0;
}

int lua_host_load(lua_host *h, const char *path, kl_err *err)
{
    lua_State *L = h->L;
    char *src = NULL;
    size_t len = 0;
    int rc = -1, top = lua_gettop(L);
    lua_host_budget b = {0};
    decl_reset(h);
    free(h->path);
    h->path = strdup(path);
    if (!h->path) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto done;
    }
    if (read_file(path, &src, &len, err) != 0)
        goto done;
    h->enforce = 1;
    lua_pushfstring(L, "@%s", path);
    int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
    if (st == LUA_OK) {
        /* The top level runs under the same budget as a reconcile. */
        h->cur = &b;
        h->cur_start_ns = now_ns();
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
        st = lua_pcall(L, 0, 1, 0);
        lua_sethook(L, NULL, 0, 0);
        h->cur = NULL;
    }
    h->enforce = 0;
    if (st != LUA_OK) {
        char msg[512];
        lua_host_error(h, L, st, &b, msg, sizeof msg);
        kl_err_set(err, KL_EINVAL, "%s", msg);
        goto done;
    }
    h->src = src;
    rc = validate_decl(h, lua_gettop(L), err);
    h->src = NULL;
done:
    if (rc != 0)
        decl_reset(h);
    lua_settop(L, top);
    free(src);
    return rc;
}
