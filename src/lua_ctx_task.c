/* lua_ctx_task.c - ctx:spawn and ctx:wait (see lua_ctx_task.h).
 *
 * Provides: lua_ctx_task_methods, lua_ctx_task_setup, lua_ctx_tasks_run,
 * lua_ctx_for_thread, lua_ctx_tasks_end.
 * Uses: lua_ctx_op (the call slot), the sandbox's coroutine.resume (run
 * budget and kills), Lua.
 *
 * A task is a full userdata holding its call slot (a lua_ctx); user value
 * 1 is its thread, 2 its results table ({n = count, ...}) or its error
 * value. The reconcile's ctx keeps its tasks alive in its user value 2 and
 * lists them in C (c->tasks), newest first.
 */
#include "lua_ctx_task.h"

#include <stdio.h>
#include <string.h>

#define TASK_MT "klua.Task"

enum { TASK_WAITING = 1, TASK_READY, TASK_DONE, TASK_FAILED };

static char resume_key;   /* registry: the sandbox's coroutine.resume */


/* The answer of a task's call is in: mark it and wake the reconcile if
 * it waits in a ctx call (it runs the task when resumed). */
static void task_ready(void *ud)
{
    lua_ctx *t = ud;
    t->task_state = TASK_READY;
    lua_ctx *c = t->parent;
    if (c && c->waiting && !c->in_lua && !c->ended && !c->done)
        c->resume(c->resume_ud);
}

static int task_gc(lua_State *L)
{
    lua_ctx *t = luaL_checkudata(L, 1, TASK_MT);
    if (t->parent) {                                     /* still listed */
        for (lua_ctx **pp = &t->parent->tasks; *pp; pp = &(*pp)->next_task)
            if (*pp == t) {
                *pp = t->next_task;
                break;
            }
        t->parent = NULL;
    }
    lua_ctx_free_buffers(t);
    return 0;
}

static int task_tostring(lua_State *L)
{
    lua_ctx *t = luaL_checkudata(L, 1, TASK_MT);
    static const char *const names[] = {"", "running", "running", "done", "failed"};
    lua_pushfstring(L, "task(%s)", names[t->task_state >= 0 && t->task_state <= 4
                                         ? t->task_state : 0]);
    return 1;
}

/* Record how the task's resume went; the resume results are on L's top
 * (nres values: true, results... or false, err). */
static void settle(lua_State *L, lua_ctx *t, int tidx, lua_State *co, int nres)
{
    int st = lua_status(co);
    int base = lua_gettop(L) - nres + 1;
    if (st == LUA_YIELD && t->waiting) {
        t->task_state = TASK_WAITING;                    /* its call is in flight */
        lua_settop(L, base - 1);
        return;
    }
    if (st == LUA_YIELD) {                               /* coroutine.yield at its top */
        lua_ctx_cancel(t);
        t->task_state = TASK_FAILED;
        lua_settop(L, base - 1);
        luaL_where(L, 1);
        lua_pushstring(L, "a task cannot yield outside a ctx call (coroutine.yield at the top "
                          "of a ctx:spawn function)");
        lua_concat(L, 2);
        lua_setiuservalue(L, tidx, 2);
        return;
    }
    if (lua_toboolean(L, base)) {                        /* finished */
        t->task_state = TASK_DONE;
        int n = nres - 1;
        lua_createtable(L, n, 1);                        /* [.., true, r..., res] */
        for (int i = 1; i <= n; i++) {
            lua_pushvalue(L, base + i);
            lua_rawseti(L, -2, i);
        }
        lua_pushinteger(L, n);
        lua_setfield(L, -2, "n");
    } else {
        t->task_state = TASK_FAILED;
        lua_pushvalue(L, base + 1);                      /* [.., false, err, err] */
    }
    lua_setiuservalue(L, tidx, 2);
    lua_settop(L, base - 1);
}

/* Resume task t (userdata at tidx) with the nargs values on L's top. */
static void resume_task(lua_State *L, lua_ctx *t, int tidx, int nargs)
{
    luaL_checkstack(L, nargs + 4, "ctx:spawn");
    int top = lua_gettop(L) - nargs;
    lua_getiuservalue(L, tidx, 1);                       /* [.., args, co] */
    lua_State *co = lua_tothread(L, -1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &resume_key);      /* [.., args, co, resume] */
    lua_insert(L, top + 1);
    lua_insert(L, top + 2);                              /* [.., resume, co, args] */
    t->task_state = TASK_WAITING;
    lua_call(L, nargs + 1, LUA_MULTRET);                 /* a kill raises through here */
    settle(L, t, tidx, co, lua_gettop(L) - top);
}

/* The task userdata for t (pushed), from the reconcile ctx's user value 2. */
static void push_task(lua_State *L, lua_ctx *c, lua_ctx *t)
{
    (void)c;
    lua_rawgetp(L, LUA_REGISTRYINDEX, t);                /* [.., task] */
}

void lua_ctx_tasks_run(lua_State *L, lua_ctx *c)
{
    for (int again = 1; again;) {
        again = 0;
        for (lua_ctx *t = c->tasks; t; t = t->next_task) {
            if (t->task_state != TASK_READY)
                continue;
            push_task(L, c, t);
            resume_task(L, t, lua_gettop(L), 0);
            lua_pop(L, 1);
            again = 1;
            break;                                       /* the list may have changed */
        }
    }
}

lua_ctx *lua_ctx_for_thread(lua_State *L, lua_ctx *c)
{
    if (L == c->co || !c->tasks)
        return c;
    for (lua_ctx *t = c->tasks; t; t = t->next_task)
        if (t->co == L)
            return t;
    return c;
}

void lua_ctx_tasks_end(lua_ctx *c)
{
    while (c->tasks) {
        lua_ctx *t = c->tasks;
        c->tasks = t->next_task;
        lua_ctx_cancel(t);
        lua_ctx_release(t);
        t->ended = 1;
        t->co = NULL;
        t->parent = NULL;
        if (c->L) {                                      /* unanchor: GC may take it */
            lua_pushnil(c->L);
            lua_rawsetp(c->L, LUA_REGISTRYINDEX, t);
        }
    }
}

/* ctx:spawn(fn, ...) -> task */
static int l_spawn(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (c->ended)
        return luaL_error(L, "this ctx belongs to a reconcile that has ended");
    if (L != c->co)
        return luaL_error(L, "ctx:spawn must be called from the reconcile itself, not from a "
                             "task or a coroutine it created");
    int nargs = lua_gettop(L) - 2;
    lua_ctx *t = lua_newuserdatauv(L, sizeof *t, 2);     /* [ctx, fn, args, t] */
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TASK_MT);
    int tidx = lua_gettop(L);
    lua_State *co = lua_newthread(L);                    /* [.., t, co] */
    lua_setiuservalue(L, tidx, 1);                       /* [.., t] */
    lua_pushvalue(L, 2);
    lua_xmove(L, co, 1);                                 /* co: [fn] */
    t->s = c->s;
    t->cache = c->cache;
    t->L = c->L;
    t->co = co;
    t->resume = task_ready;
    t->resume_ud = t;
    memcpy(t->controller, c->controller, sizeof t->controller);
    memcpy(t->ns, c->ns, sizeof t->ns);
    memcpy(t->name, c->name, sizeof t->name);
    /* anchored by the registry until the reconcile ends (lua_ctx_tasks_end) */
    lua_pushvalue(L, tidx);
    lua_rawsetp(L, LUA_REGISTRYINDEX, t);
    t->parent = c;
    t->next_task = c->tasks;
    c->tasks = t;
    for (int i = 0; i < nargs; i++)                      /* [.., t, args] */
        lua_pushvalue(L, 3 + i);
    resume_task(L, t, tidx, nargs);                      /* runs to its first wait */
    lua_settop(L, tidx);
    return 1;
}

static lua_ctx *check_task(lua_State *L, lua_ctx *c, int i)
{
    lua_ctx *t = luaL_checkudata(L, i, TASK_MT);
    if (t->parent != c)
        luaL_argerror(L, i, "not a task of this reconcile (or already waited for)");
    return t;
}

static int wait_k(lua_State *L, int status, lua_KContext k)
{
    (void)status;
    lua_ctx *c = (lua_ctx *)k;
    int n = (int)lua_tointeger(L, -1);                   /* [ctx, tasks..., n] */
    lua_pop(L, 1);
    c->waiting = 0;
    lua_ctx_tasks_run(L, c);
    int pending = 0;
    for (int i = 2; i <= n + 1; i++) {
        lua_ctx *t = check_task(L, c, i);
        if (t->task_state != TASK_DONE && t->task_state != TASK_FAILED)
            pending = 1;
    }
    if (pending) {
        if (!lua_isyieldable(L))
            return luaL_error(L, "ctx:wait cannot wait here (inside a metamethod, iterator or "
                                 "sort function)");
        lua_pushinteger(L, n);
        c->waiting = 1;
        c->done = 0;
        return lua_yieldk(L, 0, k, wait_k);
    }
    /* a failed task's error, as it was raised (its file:line in front) */
    for (int i = 2; i <= n + 1; i++) {
        lua_ctx *t = lua_touserdata(L, i);
        if (t->task_state == TASK_FAILED) {
            lua_getiuservalue(L, i, 2);
            return lua_error(L);
        }
    }
    int out = 0;
    luaL_checkstack(L, n + 8, "ctx:wait");
    for (int i = 2; i <= n + 1; i++) {
        lua_getiuservalue(L, i, 2);                      /* [.., res] */
        int res = lua_gettop(L);
        lua_getfield(L, res, "n");
        int m = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (n == 1) {                                    /* one task: all its results */
            luaL_checkstack(L, m + 2, "ctx:wait");
            for (int j = 1; j <= m; j++)
                lua_rawgeti(L, res, j);
            lua_remove(L, res);
            return m;
        }
        lua_rawgeti(L, res, 1);                          /* several: the first of each */
        lua_remove(L, res);
        out++;
    }
    return out;
}

/* ctx:wait(t1, t2, ...) -> the results */
static int l_wait(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    if (c->ended)
        return luaL_error(L, "this ctx belongs to a reconcile that has ended");
    if (L != c->co)
        return luaL_error(L, "ctx:wait must be called from the reconcile itself");
    if (c->waiting)
        return luaL_error(L, "ctx is busy with another call");
    int n = lua_gettop(L) - 1;
    if (n < 1)
        return luaL_error(L, "ctx:wait needs at least one task");
    for (int i = 2; i <= n + 1; i++)
        check_task(L, c, i);
    lua_ctx_reset(c);
    lua_pushinteger(L, n);
    return wait_k(L, LUA_OK, (lua_KContext)c);
}

const luaL_Reg lua_ctx_task_methods[] = {
    {"spawn", l_spawn},
    {"wait", l_wait},
    {NULL, NULL},
};

void lua_ctx_task_setup(lua_State *L)
{
    lua_getglobal(L, "coroutine");                       /* [co] */
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "resume");                   /* [co, resume] */
    else
        lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &resume_key);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, TASK_MT)) {
        lua_pushcfunction(L, task_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, task_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, TASK_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}
