/* lua_ctx.c - the ctx object (see lua_ctx.h).
 *
 * Provides: lua_ctx_shared (new, free, --allow-env), lua_ctx_push and the
 * Context metatable, lua_ctx_bind/end/waiting.
 * Uses: lua_ctx_kube and lua_ctx_io (the methods), lua_ctx_secret (secrets), lua_ctx_op (plumbing), event
 * (the recorder).
 *
 * The ctx is split by area: lua_ctx_op (the call in flight: yield, resume,
 * continuation), lua_ctx_kube (Kubernetes verbs), lua_ctx_io (http, sleep,
 * environment, logs), lua_ctx_secret (secrets), lua_ctx_discovery (kinds
 * to resources, through the discovery service).
 * This file puts them together into the object a reconcile receives.
 */
#include "lua_ctx.h"

#include "lua_ctx_io.h"
#include "lua_ctx_kube.h"
#include "lua_ctx_op.h"
#include "lua_ctx_secret.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared ---- */

lua_ctx_shared *lua_ctx_shared_new(loop *l, kube_client *kc, http_client *http, kl_err *err)
{
    lua_ctx_shared *s = calloc(1, sizeof *s);
    if (!s) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    s->l = l;
    s->kc = kc;
    s->http = http;
    if (!(s->events = event_recorder_new(kc, err))) {
        free(s);
        return NULL;
    }
    return s;
}

void lua_ctx_shared_free(lua_ctx_shared *s)
{
    if (!s)
        return;
    lua_ctx_secrets_free(s);
    for (size_t i = 0; i < s->nenv_allow; i++)
        free(s->env_allow[i]);
    free(s->env_allow);
    for (size_t i = 0; i < s->nenv_refused; i++)
        free(s->env_refused[i]);
    free(s->env_refused);
    event_recorder_free(s->events);
    free(s);
}

event_recorder *lua_ctx_shared_events(lua_ctx_shared *s) { return s->events; }

void lua_ctx_shared_set_discovery(lua_ctx_shared *s, discovery *d) { s->disco = d; }

int lua_ctx_shared_allow_env(lua_ctx_shared *s, const char *pattern)
{
    char **n = realloc(s->env_allow, (s->nenv_allow + 1) * sizeof *n);
    if (!n)
        return -1;
    s->env_allow = n;
    if (!(n[s->nenv_allow] = strdup(pattern)))
        return -1;
    s->nenv_allow++;
    return 0;
}

/* ---- the object ---- */

static int ctx_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)  /* a method */
        return 1;
    lua_pop(L, 1);
    lua_getiuservalue(L, 1, 1);                          /* [ud, k, fields] */
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int ctx_newindex(lua_State *L)
{
    return luaL_error(L, "ctx is read-only");
}

static int ctx_gc(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    lua_ctx_end(c);
    lua_ctx_reset(c);
    kl_buf_free(&c->body);
    kl_buf_free(&c->selector);
    kl_buf_free(&c->rbody);
    kl_buf_free(&c->rheaders);
    return 0;
}

static int ctx_tostring(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    lua_pushfstring(L, "ctx(%s %s%s%s)", c->controller, c->ns, c->ns[0] ? "/" : "", c->name);
    return 1;
}

lua_ctx *lua_ctx_push(lua_State *L, lua_ctx_shared *s, const lua_ctx_cache *cache,
                      const char *controller, const char *ns, const char *name,
                      void (*resume)(void *ud), void *ud)
{
    luaL_checkstack(L, 8, "ctx");
    lua_ctx *c = lua_newuserdatauv(L, sizeof *c, 1);     /* [c] */
    memset(c, 0, sizeof *c);
    c->s = s;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);  /* [c, main] */
    c->L = lua_tothread(L, -1);
    lua_pop(L, 1);                                       /* [c] */
    if (cache)
        c->cache = *cache;
    c->resume = resume;
    c->resume_ud = ud;
    snprintf(c->controller, sizeof c->controller, "%s", controller);
    snprintf(c->ns, sizeof c->ns, "%s", ns ? ns : "");
    snprintf(c->name, sizeof c->name, "%s", name);
    if (luaL_newmetatable(L, LUA_CTX_MT)) {                  /* [c, mt] */
        lua_createtable(L, 0, 16);                       /* [c, mt, methods] */
        luaL_setfuncs(L, lua_ctx_kube_methods, 0);
        luaL_setfuncs(L, lua_ctx_io_methods, 0);
        lua_pushcclosure(L, ctx_index, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ctx_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, ctx_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, ctx_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "klua.Context");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);                             /* [c] */
    lua_createtable(L, 0, 5);                            /* [c, fields] */
    if (c->ns[0])
        lua_pushfstring(L, "%s/%s", c->ns, c->name);
    else
        lua_pushstring(L, c->name);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, c->ns);
    lua_setfield(L, -2, "namespace");
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->controller);
    lua_setfield(L, -2, "controller");
    lua_createtable(L, 0, 4);                            /* [c, fields, log] */
    for (const luaL_Reg *f = lua_ctx_log_funcs; f->name; f++) {
        lua_pushvalue(L, -3);   /* the ctx itself: a stored ctx.log keeps it alive */
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "log");
    lua_setiuservalue(L, -2, 1);                         /* [c] */
    return c;
}

void lua_ctx_bind(lua_ctx *c, lua_State *co) { c->co = co; }

void lua_ctx_end(lua_ctx *c)
{
    lua_ctx_cancel(c);
    lua_ctx_release(c);
    c->ended = 1;
    c->co = NULL;
}

int lua_ctx_waiting(const lua_ctx *c) { return c->waiting; }
