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
#include "lua_decl_cache.h"

#include "log.h"
#include "lua_json.h"
#include "luamods.h"
#include "util.h"

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
#define CLOCK_EVERY 10           /* hook calls between CPU clock reads */
#define MAX_SOURCE (8u << 20)    /* largest script or module file */
#define MAX_CAPTURES 32          /* LUA_MAXCAPTURES of lstrlib.c */
#define MATCH_DEPTH 200          /* MAXCCALLS of lstrlib.c */

struct lua_host {
    lua_State *L;
    char *path;                  /* the script file */
    char *libdir;                /* <scripts>/lib */
    size_t mem_used, mem_limit;
    int enforce;                 /* limits apply (script code is running) */
    uint64_t budget, run_ms;
    lua_host_budget *cur;        /* the running task's accounting */
    uint64_t cur_start_ns;       /* CPU clock when the current resume began */
    unsigned hook_calls;
    char kill_msg[512];
    const char *src;             /* the script's text while validating */
    lua_controller_decl decl;
    lua_host_dep *deps;          /* files read: the script, then lib modules */
    size_t ndeps;
    lua_host_warn_fn on_warn;
    void *warn_ud;
};

static char loaded_key;          /* registry: modules loaded by require */
static char base_key;            /* registry: the pristine globals (modules' __index) */
static char readonly_key;        /* registry: weak set of read-only library views */

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
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

/* "file:line" of the innermost Lua function on L's stack at or above
 * level, or 0 when there is none. */
static int lua_where(lua_State *L, int level, char *out, size_t outsz)
{
    lua_Debug ar;
    for (int i = level; i < level + 64 && lua_getstack(L, i, &ar); i++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(out, outsz, "%s:%d", ar.short_src, ar.currentline);
            return 1;
        }
    }
    return 0;
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
        const char *why = NULL;
        char what[160];
        if (b->instructions > h->budget) {
            snprintf(what, sizeof what, "instruction budget exceeded (%llu instructions; "
                     "see --lua-budget)", (unsigned long long)h->budget);
            why = what;
        } else if (++h->hook_calls % CLOCK_EVERY == 0) {
            uint64_t ran = cpu_ns() - h->cur_start_ns;
            if (ran > h->run_ms * 1000000ull) {
                snprintf(what, sizeof what, "deadline exceeded (ran %llu ms without waiting; "
                         "see --lua-timeout)", (unsigned long long)(ran / 1000000ull));
                why = what;
            }
        }
        if (!why)
            return;
        b->killed = 1;
        char where[256];
        if (lua_where(L, 0, where, sizeof where))
            snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", where, why);
        else
            snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", h->path ? h->path : "?", why);
        /* From now on fire on every instruction of every thread that runs. */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushstring(L, h->kill_msg);
    lua_error(L);
}

/* Limits on for script code in L until limits_off(). */
static void limits_on(lua_host *h, lua_State *L, lua_host_budget *b)
{
    h->cur = b;
    h->cur_start_ns = cpu_ns();
    h->hook_calls = 0;
    h->enforce = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, b->killed ? 1 : HOOK_EVERY);
}

static void limits_off(lua_host *h, lua_host_budget *b)
{
    b->run_ns += cpu_ns() - h->cur_start_ns;
    h->enforce = 0;
    h->cur = NULL;
}

/* ---- the sandbox: guarded functions ---- */

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

/* Call the original function (upvalue 1) with every argument. */
static int call_original(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
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
        /* Lua 5.4.4 loops n times even when nothing is copied. */
        if (total == 0) {
            lua_pushliteral(L, "");
            return 1;
        }
    }
    return call_original(L);
}

/* table.move(a1, f, e, t [, a2]): a C loop of e-f+1 steps, none of which
 * the hook sees when the tables have no Lua metamethods. */
static int safe_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f && ((lua_Number)e - (lua_Number)f + 1) > (lua_Number)LUA_HOST_TABLE_OP_MAX)
        return luaL_error(L, "table.move: %f elements are more than klua's limit of %d per call",
                          (double)e - (double)f + 1, LUA_HOST_TABLE_OP_MAX);
    return call_original(L);
}

/* Refuses a table whose #t is over the per-call limit, then calls the
 * original; `what` names the function in the message. */
static int len_checked_call(lua_State *L, const char *what)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n > LUA_HOST_TABLE_OP_MAX)
        return luaL_error(L, "%s: #t is %I, more than klua's limit of %d", what,
                          (LUAI_UACINT)n, LUA_HOST_TABLE_OP_MAX);
    return call_original(L);
}

/* table.insert(t, pos, v) and table.remove(t, pos) shift #t - pos
 * elements; #t of a sparse table can be huge without the memory to match. */
static int safe_shift(lua_State *L)
{
    return len_checked_call(L, "table.insert/remove");
}

static int safe_sort(lua_State *L)
{
    return len_checked_call(L, "table.sort");
}

/* Finalizers run with hooks off: an endless loop in __gc would hang klua,
 * so a metatable with __gc is refused (Lua only honours a __gc present
 * when setmetatable is called). */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int t = lua_rawget(L, 2);
        lua_pop(L, 1);
        if (t != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in klua "
                                 "(they would run outside the instruction budget)");
    }
    return call_original(L);
}

static int is_readonly(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &readonly_key);
    lua_pushvalue(L, idx);
    int ro = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return ro;
}

static int safe_rawset(lua_State *L)
{
    if (is_readonly(L, 1))
        return luaL_error(L, "rawset: klua's library tables are read-only");
    return call_original(L);
}

/* An error raised by the budget hook propagates with hooks disabled (Lua
 * clears allowhook while a hook runs), so Lua code that runs during that
 * propagation is out of the hook's reach: xpcall's message handler, and
 * the __close handlers of a coroutine that died of it. Once a task is
 * killed, the handler is not called (the kill message stands in for its
 * result) and coroutine.close refuses. */
static int xpcall_guard(lua_State *L)
{
    lua_host *h = host_of(L);
    if (h->cur && h->cur->killed) {
        lua_pushstring(L, h->kill_msg);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int make_xpcall_guard(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TFUNCTION)
        lua_pushcclosure(L, xpcall_guard, 1);
    return 1;
}

/* xpcall stays a Lua function tail-calling the real one: a C wrapper would
 * make ctx calls (which yield) fail inside xpcall. */
static const char xpcall_src[] =
    "local xpcall, guard = ...\n"
    "return function(f, msgh, ...) return xpcall(f, guard(msgh), ...) end\n";

static int safe_coclose(lua_State *L)
{
    lua_host *h = host_of(L);
    if (h->cur && h->cur->killed) {
        lua_pushstring(L, h->kill_msg);
        return lua_error(L);
    }
    return call_original(L);
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

static void host_warning(lua_host *h, const char *where, const char *msg)
{
    if (h->on_warn)
        h->on_warn(h->warn_ud, where, msg);
    else
        kl_log(KL_LOG_WARN, "script warning", "at", where, "msg", msg, NULL);
}

/* warn(msg1, ...): Lua's warn, reported with the caller's file:line.
 * Control messages ("@on", "@off") are accepted and ignored. */
static int host_warn(lua_State *L)
{
    lua_host *h = host_of(L);
    int n = lua_gettop(L);
    luaL_checkstring(L, 1);
    for (int i = 2; i <= n; i++)
        luaL_checkstring(L, i);
    if (n == 1 && lua_tostring(L, 1)[0] == '@')
        return 0;
    lua_concat(L, n);
    char where[256];
    if (!lua_where(L, 1, where, sizeof where))
        snprintf(where, sizeof where, "%s", h->path ? h->path : "?");
    host_warning(h, where, lua_tostring(L, -1));
    return 0;
}

/* __newindex of the globals table while the top level runs: a global
 * assigned there is usually a forgotten `local`. */
static int global_assign(lua_State *L)
{
    lua_host *h = host_of(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        char where[256], msg[200];
        if (!lua_where(L, 1, where, sizeof where))
            snprintf(where, sizeof where, "%s", h->path ? h->path : "?");
        snprintf(msg, sizeof msg, "assigns the global '%.100s' (declare it local)",
                 lua_tostring(L, 2));
        host_warning(h, where, msg);
    }
    lua_rawset(L, 1);
    return 0;
}

/* ---- the sandbox: pattern probe ----
 *
 * Lua's matcher (lstrlib.c) backtracks: ".-.-.-x" over a long subject takes
 * time exponential in the pattern, all inside one C call the count hook
 * cannot interrupt. Before a pattern call runs, this probe walks the same
 * backtracking search (written from the Lua 5.4 manual's pattern rules and
 * lstrlib's search order) counting steps, and gives up past a limit; then
 * the call is refused. A malformed pattern stops the probe quietly: the
 * real call raises its own error at the same point. */

enum { PROBE_OK, PROBE_COSTLY, PROBE_MALFORMED };
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

typedef struct probe {
    const char *src_init, *src_end, *p_end;
    unsigned long steps, limit;
    int depth, level, state;
    struct {
        const char *init;
        ptrdiff_t len;
    } cap[MAX_CAPTURES];
} probe;

static int probe_step(probe *ms, unsigned long n)
{
    ms->steps += n;
    if (ms->steps > ms->limit && ms->state == PROBE_OK)
        ms->state = PROBE_COSTLY;
    return ms->state == PROBE_OK;
}

static int probe_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    default: return cl == c;
    }
    if (isupper(cl))
        res = !res;
    return res != 0;
}

/* End of the single-character class at p, or NULL if malformed. */
static const char *probe_class_end(probe *ms, const char *p)
{
    char c = *p++;
    if (c == '%')
        return p >= ms->p_end ? NULL : p + 1;
    if (c == '[') {
        if (*p == '^')
            p++;
        do {
            if (p >= ms->p_end)
                return NULL;
            c = *p++;
            if (c == '%' && p < ms->p_end)
                p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static int probe_bracket(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (p[1] == '^') {
        sig = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == '%') {
            p++;
            if (probe_class(c, (unsigned char)*p))
                return sig;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return sig;
        } else if ((unsigned char)*p == c) {
            return sig;
        }
    }
    return !sig;
}

static int probe_single(probe *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return probe_class(c, (unsigned char)p[1]);
    case '[': return probe_bracket(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *probe_match(probe *ms, const char *s, const char *p);

static const char *probe_max_expand(probe *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (probe_single(ms, s + i, p, ep)) {
        i++;
        if (!probe_step(ms, 1))
            return NULL;
    }
    for (; i >= 0; i--) {
        const char *r = probe_match(ms, s + i, ep + 1);
        if (r || ms->state != PROBE_OK)
            return r;
    }
    return NULL;
}

static const char *probe_min_expand(probe *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = probe_match(ms, s, ep + 1);
        if (r || ms->state != PROBE_OK)
            return r;
        if (!probe_single(ms, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *probe_capture(probe *ms, const char *s, const char *p, ptrdiff_t what)
{
    if (ms->level >= MAX_CAPTURES) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    ms->cap[ms->level].init = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    const char *r = probe_match(ms, s, p);
    if (!r)
        ms->level--;
    return r;
}

static const char *probe_end_capture(probe *ms, const char *s, const char *p)
{
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    ms->cap[l].len = s - ms->cap[l].init;
    const char *r = probe_match(ms, s, p);
    if (!r)
        ms->cap[l].len = CAP_UNFINISHED;
    return r;
}

static const char *probe_balance(probe *ms, const char *s, const char *p)
{
    if (p >= ms->p_end - 1) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    if (s >= ms->src_end || *s != *p)
        return NULL;
    int b = *p, e = p[1], cont = 1;
    while (++s < ms->src_end) {
        if (!probe_step(ms, 1))
            return NULL;
        if (*s == e) {
            if (--cont == 0)
                return s + 1;
        } else if (*s == b) {
            cont++;
        }
    }
    return NULL;
}

static const char *probe_backref(probe *ms, const char *s, int l)
{
    l -= '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    size_t len = (size_t)ms->cap[l].len;
    if (!probe_step(ms, len / 16))
        return NULL;
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *probe_match(probe *ms, const char *s, const char *p)
{
    if (ms->depth++ >= MATCH_DEPTH) {
        ms->state = PROBE_MALFORMED;   /* "pattern too complex": Lua raises too */
        return NULL;
    }
    for (;;) {
        if (!probe_step(ms, 1)) {
            s = NULL;
            break;
        }
        if (p == ms->p_end)
            break;
        const char *ep;
        if (*p == '(') {
            s = p[1] == ')' ? probe_capture(ms, s, p + 2, CAP_POSITION)
                            : probe_capture(ms, s, p + 1, CAP_UNFINISHED);
            break;
        }
        if (*p == ')') {
            s = probe_end_capture(ms, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == ms->p_end) {
            s = s == ms->src_end ? s : NULL;
            break;
        }
        if (*p == '%' && p[1] == 'b') {
            s = probe_balance(ms, s, p + 2);
            if (s) {
                p += 4;
                continue;
            }
            break;
        }
        if (*p == '%' && p[1] == 'f') {
            p += 2;
            if (*p != '[' || !(ep = probe_class_end(ms, p))) {
                ms->state = PROBE_MALFORMED;
                s = NULL;
                break;
            }
            int prev = s == ms->src_init ? 0 : (unsigned char)s[-1];
            int cur = s < ms->src_end ? (unsigned char)*s : 0;
            if (!probe_bracket(prev, p, ep - 1) && probe_bracket(cur, p, ep - 1)) {
                p = ep;
                continue;
            }
            s = NULL;
            break;
        }
        if (*p == '%' && isdigit((unsigned char)p[1])) {
            s = probe_backref(ms, s, (unsigned char)p[1]);
            if (s) {
                p += 2;
                continue;
            }
            break;
        }
        if (!(ep = probe_class_end(ms, p))) {
            ms->state = PROBE_MALFORMED;
            s = NULL;
            break;
        }
        if (!probe_single(ms, s, p, ep)) {
            if (*ep == '*' || *ep == '?' || *ep == '-') {
                p = ep + 1;
                continue;
            }
            s = NULL;
            break;
        }
        if (*ep == '?') {
            const char *r = probe_match(ms, s + 1, ep + 1);
            if (r || ms->state != PROBE_OK) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (*ep == '+') {
            s = probe_max_expand(ms, s + 1, p, ep);
            break;
        }
        if (*ep == '*') {
            s = probe_max_expand(ms, s, p, ep);
            break;
        }
        if (*ep == '-') {
            s = probe_min_expand(ms, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    ms->depth--;
    return ms->state == PROBE_OK ? s : NULL;
}

/* One match attempt at s (lstrlib's reprepstate + match). */
static const char *probe_try(probe *ms, const char *s, const char *p)
{
    ms->level = 0;
    ms->depth = 0;
    return probe_match(ms, s, p);
}

/* Lua 5.4's posrelatI: a 1-based start from an optional argument. */
static size_t probe_init(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

enum { SEARCH_FIND, SEARCH_MATCH, SEARCH_GMATCH, SEARCH_GSUB };

/* Refuse (raise) when the search `kind` of pattern p over s would take
 * more than the step limit. The arguments are those of the string
 * function; anything invalid is left for the real function to report. */
static void probe_or_raise(lua_State *L, int kind, const char *fname)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, 1, &ls);
    const char *p = lua_tolstring(L, 2, &lp);
    if (!s || !p)
        return;
    lua_Integer pos = 1;
    if (kind != SEARCH_GSUB && !lua_isnoneornil(L, 3)) {
        int ok;
        pos = lua_tointegerx(L, 3, &ok);
        if (!ok)
            return;
    }
    size_t init = probe_init(pos, ls);
    if (init > ls + 1) {
        if (kind != SEARCH_GMATCH)
            return;
        init = ls + 1;
    }
    if (kind == SEARCH_FIND && (lua_toboolean(L, 4) || !strpbrk(p, "^$*+?.([%-") ||
                                strlen(p) != lp)) {
        /* A plain search: memchr + memcmp at each position. (A pattern with
         * an embedded NUL is treated the same, which only overestimates.) */
        size_t rest = ls - (init - 1);
        if (lp > 0 && lp <= rest &&
            (unsigned long long)(rest - lp + 1) * lp > LUA_HOST_PLAIN_FIND_MAX)
            luaL_error(L, "%s: a plain search for %d bytes in %d bytes is more work than klua "
                          "allows in one call", fname, (int)lp, (int)rest);
        return;
    }
    probe ms = {0};
    ms.src_init = s;
    ms.src_end = s + ls;
    ms.limit = LUA_HOST_PATTERN_STEPS;
    int anchor = kind != SEARCH_GMATCH && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    ms.p_end = p + lp;
    const char *src = s + init - 1, *last = NULL;
    if (kind == SEARCH_FIND || kind == SEARCH_MATCH) {
        do {
            if (probe_try(&ms, src, p) || ms.state != PROBE_OK)
                break;
        } while (src++ < ms.src_end && !anchor);
    } else {
        lua_Integer max_n = (lua_Integer)ls + 1;
        if (kind == SEARCH_GSUB && !lua_isnoneornil(L, 4)) {
            int ok;
            max_n = lua_tointegerx(L, 4, &ok);
            if (!ok)
                return;
        }
        for (lua_Integer n = 0; n < max_n && ms.state == PROBE_OK;) {
            const char *e = probe_try(&ms, src, p);
            if (e && e != last) {
                n++;
                src = last = e;
            } else if (src < ms.src_end) {
                src++;
            } else {
                break;
            }
            if (anchor)
                break;
        }
    }
    if (ms.state == PROBE_COSTLY) {
        char shown[64];
        snprintf(shown, sizeof shown, "%s", lua_tostring(L, 2));
        luaL_error(L, "%s: the pattern \"%s\" needs more than %d matching steps on this "
                      "%d-byte subject; simplify the pattern or shorten the subject",
                   fname, shown, (int)LUA_HOST_PATTERN_STEPS, (int)ls);
    }
}

static int safe_find(lua_State *L)
{
    probe_or_raise(L, SEARCH_FIND, "string.find");
    return call_original(L);
}

static int safe_match(lua_State *L)
{
    probe_or_raise(L, SEARCH_MATCH, "string.match");
    return call_original(L);
}

static int safe_gmatch(lua_State *L)
{
    probe_or_raise(L, SEARCH_GMATCH, "string.gmatch");
    return call_original(L);
}

static int safe_gsub(lua_State *L)
{
    probe_or_raise(L, SEARCH_GSUB, "string.gsub");
    return call_original(L);
}

/* ---- the sandbox: read-only library views and module environments ---- */

static int ro_newindex(lua_State *L)
{
    return luaL_error(L, "%s is read-only in klua (klua's modules use it too); keep your own "
                         "functions in a local table", lua_tostring(L, lua_upvalueindex(1)));
}

/* The iterator of pairs() over a view: walks the library table (upvalue)
 * without handing it out. */
static int ro_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1)))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int ro_pairs(lua_State *L)
{
    lua_getmetatable(L, 1);                              /* [view, mt] */
    lua_getfield(L, -1, "__index");                      /* [view, mt, lib] */
    lua_pushcclosure(L, ro_next, 1);                     /* [view, mt, next] */
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replace the table at the top with an empty view of it: reads go to the
 * table, writes raise, the metatable is hidden. Registers the view in the
 * read-only set (rawset refuses it). */
static void make_readonly(lua_State *L, const char *name)
{
    /* [lib] */
    lua_newtable(L);                                     /* [lib, view] */
    lua_createtable(L, 0, 4);                            /* [lib, view, mt] */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, ro_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);                             /* [lib, view] */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &readonly_key);    /* [lib, view, set] */
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_remove(L, -2);                                   /* [view] */
}

/* Push a fresh environment for a module or klua's own code: its own
 * globals, falling back to the pristine ones (which it cannot change). */
static void push_private_env(lua_State *L)
{
    lua_createtable(L, 0, 2);                            /* [env] */
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_createtable(L, 0, 2);                            /* [env, mt] */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &base_key);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);                             /* [env] */
}

/* Give the function at the top (a main chunk) a private environment. */
static void set_private_env(lua_State *L)
{
    push_private_env(L);
    if (!lua_setupvalue(L, -2, 1))                       /* _ENV is a main chunk's upvalue 1 */
        lua_pop(L, 1);
}

int lua_host_load_internal(lua_host *h, lua_State *L, const char *src, size_t len,
                           const char *chunkname)
{
    (void)h;
    int st = luaL_loadbufferx(L, src, len, chunkname, "t");
    if (st == LUA_OK)
        set_private_env(L);
    return st;
}

/* ---- files and dependencies ---- */

/* The file at path, whole (caller frees *out). */
static int read_file(const char *path, char **out, size_t *len, kl_err *err)
{
    kl_buf b = KL_BUF_INIT;
    if (kl_read_file(path, MAX_SOURCE, &b, err) != 0) {
        kl_buf_free(&b);
        return -1;
    }
    *len = b.len;
    *out = kl_buf_take(&b);
    return *out ? 0 : kl_err_set(err, KL_ENOMEM, "%s: out of memory", path);
}

int lua_host_file_hash(const char *path, uint64_t *out)
{
    char *src = NULL;
    size_t len = 0;
    kl_err err = {0};
    if (read_file(path, &src, &len, &err) != 0)
        return -1;
    *out = kl_fnv1a(src, len);
    free(src);
    return 0;
}

/* Remember that the script's code came from path (bytes src). A file read
 * twice (a module reloaded after a failed require) keeps its first entry.
 * Returns -1 when out of memory: a dependency hot reload cannot see would
 * silently stop reloads of this script, so the caller fails instead. */
static int add_dep(lua_host *h, const char *path, const char *src, size_t len)
{
    for (size_t i = 0; i < h->ndeps; i++)
        if (!strcmp(h->deps[i].path, path))
            return 0;
    lua_host_dep *nd = realloc(h->deps, (h->ndeps + 1) * sizeof *nd);
    if (!nd)
        return -1;
    h->deps = nd;
    nd[h->ndeps].path = strdup(path);
    nd[h->ndeps].hash = kl_fnv1a(src, len);
    if (!nd[h->ndeps].path)
        return -1;
    h->ndeps++;
    return 0;
}

const lua_host_dep *lua_host_deps(const lua_host *h, size_t *n)
{
    *n = h->ndeps;
    return h->deps;
}

int lua_host_deps_changed(const lua_host_dep *deps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        if (lua_host_file_hash(deps[i].path, &x) != 0 || x != deps[i].hash)
            return 1;
    }
    return 0;
}

int lua_host_deps_copy(const lua_host_dep *deps, size_t n, lua_host_dep **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    lua_host_dep *c = calloc(n, sizeof *c);
    if (!c)
        return -1;
    for (size_t i = 0; i < n; i++) {
        c[i].hash = deps[i].hash;
        if (!(c[i].path = strdup(deps[i].path))) {
            lua_host_deps_free(c, i);
            return -1;
        }
    }
    *out = c;
    return 0;
}

void lua_host_deps_free(lua_host_dep *deps, size_t n)
{
    for (size_t i = 0; deps && i < n; i++)
        free(deps[i].path);
    free(deps);
}

/* ---- require ---- */

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
 * Pushes the loaded chunk (with its own environment) and its file name,
 * or raises. */
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
        if (add_dep(h, path, src, len) != 0) {
            free(src);
            luaL_error(L, "cannot load module '%s': out of memory", name);
        }
        lua_pushfstring(L, "@%s", path);                 /* [chunkname] */
        int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
        free(src);
        if (st != LUA_OK)
            lua_error(L);
        lua_remove(L, -2);                               /* [chunk] */
        set_private_env(L);
        lua_pushstring(L, path);                         /* [chunk, path] */
        return;
    }
    for (const struct klua_luamod *m = klua_luamods; m->name; m++) {
        if (strcmp(m->name, name) != 0)
            continue;
        if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK)
            lua_error(L);
        set_private_env(L);
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

/* ---- opening the sandbox ---- */

/* Wrap the field `name` of the table at the top with f (which gets the
 * original as upvalue 1). */
static void wrap_field(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

static void wrap_global(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getglobal(L, name);
    lua_pushcclosure(L, f, 1);
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
    wrap_global(L, "load", safe_load);
    wrap_global(L, "setmetatable", safe_setmetatable);
    wrap_global(L, "rawset", safe_rawset);
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setglobal(L, "collectgarbage");
    lua_pushcfunction(L, host_print);
    lua_setglobal(L, "print");
    lua_pushcfunction(L, host_warn);
    lua_setglobal(L, "warn");
    lua_pushcfunction(L, host_require);
    lua_setglobal(L, "require");

    /* The string table is also the string metatable's __index: wrap there,
     * so that ("x"):rep() is guarded as much as string.rep(). */
    lua_getglobal(L, LUA_STRLIBNAME);                    /* [string] */
    wrap_field(L, "rep", safe_rep);
    wrap_field(L, "find", safe_find);
    wrap_field(L, "match", safe_match);
    wrap_field(L, "gmatch", safe_gmatch);
    wrap_field(L, "gsub", safe_gsub);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);                    /* [table] */
    wrap_field(L, "move", safe_move);
    wrap_field(L, "insert", safe_shift);
    wrap_field(L, "remove", safe_shift);
    wrap_field(L, "sort", safe_sort);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_COLIBNAME);                     /* [coroutine] */
    wrap_field(L, "close", safe_coclose);
    lua_pop(L, 1);
    if (luaL_loadbufferx(L, xpcall_src, sizeof xpcall_src - 1, "=klua.xpcall", "t") != LUA_OK)
        return lua_error(L);
    lua_getglobal(L, "xpcall");
    lua_pushcfunction(L, make_xpcall_guard);
    lua_call(L, 2, 1);
    lua_setglobal(L, "xpcall");
    /* getmetatable("") returns false: the string metatable stays as is. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {                       /* ["", mt] */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* Library tables become read-only views. */
    lua_newtable(L);                                     /* [set] */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &readonly_key);
    static const char *const ro_libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                          LUA_UTF8LIBNAME, LUA_COLIBNAME, LUA_OSLIBNAME, NULL};
    for (const char *const *n = ro_libs; *n; n++) {
        lua_getglobal(L, *n);
        make_readonly(L, *n);
        lua_setglobal(L, *n);
    }
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);

    /* The pristine globals, for modules and klua's own code: a copy, so that
     * the script reassigning its globals does not reach them. */
    lua_newtable(L);                                     /* [base] */
    lua_pushglobaltable(L);                              /* [base, G] */
    lua_pushnil(L);
    while (lua_next(L, -2)) {                            /* [base, G, k, v] */
        lua_pushvalue(L, -2);
        lua_insert(L, -2);                               /* [base, G, k, k, v] */
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);                                       /* [base] */
    lua_pushnil(L);
    lua_setfield(L, -2, "_G");
    make_readonly(L, "_G");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &base_key);
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
    store_transform_clear(&d->cache);
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
    h->on_warn = opts ? opts->on_warn : NULL;
    h->warn_ud = opts ? opts->warn_ud : NULL;
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
    lua_host_deps_free(h->deps, h->ndeps);
    free(h->path);
    free(h->libdir);
    free(h);
}

lua_State *lua_host_state(lua_host *h) { return h->L; }
const lua_controller_decl *lua_host_decl(const lua_host *h) { return &h->decl; }
const char *lua_host_path(const lua_host *h) { return h->path ? h->path : "?"; }
size_t lua_host_mem_used(const lua_host *h) { return h->mem_used; }

int lua_host_charge(lua_State *L, size_t n)
{
    lua_host *h = host_of(L);
    if (n > h->mem_limit || h->mem_used > h->mem_limit - n)
        return -1;
    h->mem_used += n;
    return 0;
}

void lua_host_discharge(lua_State *L, size_t n)
{
    lua_host *h = host_of(L);
    h->mem_used -= n;
}

size_t lua_host_mem_room(lua_State *L)
{
    lua_host *h = host_of(L);
    return h->mem_used >= h->mem_limit ? 0 : h->mem_limit - h->mem_used;
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
        limits_on(h, co, &b);
        lua_resetthread(co);
        limits_off(h, &b);
        lua_sethook(co, NULL, 0, 0);
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

int lua_host_resume(lua_host *h, lua_State *co, int nargs, int *nres, lua_host_budget *b)
{
    lua_host_budget *saved_cur = h->cur;
    uint64_t saved_start = h->cur_start_ns;
    limits_on(h, co, b);
    int st = lua_resume(co, h->L, nargs, nres);
    limits_off(h, b);
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
        if (!lua_where(co, 0, where, sizeof where))
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
        lua_where(co, 0, where, sizeof where);
        describe_value(h, co, where, out, outsz);
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

/* Levenshtein distance, capped: only small distances matter here. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 30 || lb > 30)
        return 99;
    int d[31][31];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            /* a swap of two neighbours counts as one edit */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static int validate_decl(lua_host *h, int t, kl_err *err)
{
    static const char *const known[] = {"name",     "watch",    "owns",      "namespace",
                                        "selector", "workers",  "reconcile", "finalize",
                                        "cache",    NULL};
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
            const char *near = NULL;
            for (const char *const *p = known; *p && !near; p++)
                if (edit_distance(k, *p) <= 2)
                    near = *p;
            char hint[64] = "";
            if (near)
                snprintf(hint, sizeof hint, "did you mean \"%s\"? ", near);
            int rc = decl_fail(h, err, k, "unknown field \"%s\" in the controller table (%sknown: "
                                          "name, watch, owns, namespace, selector, workers, "
                                          "reconcile, finalize, cache)", k, hint);
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
        if (ty != LUA_TNUMBER || !isnum || !(w >= 1 && w <= 1024) || w != (lua_Number)(int)w)
            return decl_fail(h, err, "workers", "workers must be an integer from 1 to 1024", NULL,
                             NULL);
        d->workers = (int)w;
    } else {
        lua_pop(L, 1);
    }

    char cmsg[256];
    if (lua_decl_cache_read(L, t, &d->cache, cmsg, sizeof cmsg) != 0)
        return decl_fail(h, err, "cache", "%s", cmsg, NULL);

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

/* Message handler of the top-level run: keep strings (error() already
 * put the place in front), describe other values with the place. */
static int load_msgh(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING)
        return 1;
    lua_host *h = host_of(L);
    char where[256] = "", msg[512];
    lua_where(L, 1, where, sizeof where);
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
    decl_reset(h);
    free(h->path);
    h->path = strdup(path);
    if (!h->path) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto done;
    }
    if (read_file(path, &src, &len, err) != 0)
        goto done;
    if (add_dep(h, path, src, len) != 0) {
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
        limits_on(h, L, &b);
        st = lua_pcall(L, 0, 1, top + 1);
        limits_off(h, &b);
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
