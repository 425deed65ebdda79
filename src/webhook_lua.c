/* webhook_lua.c - webhook handlers run in a script's Lua state (see
 * webhook_lua.h).
 *
 * One call: a task of the script's host gets the handler, a read-only ctx
 * and its arguments; it is resumed once under the host's limits; the
 * results are moved to the host's main state and read there under a
 * protected call (so a memory error while reading them is an error, not a
 * crash); the task, the ctx and the req table are released on every path.
 * Uses: webhook_review, webhook_patch, lua_host, lua_ctx (and the method tables of
 * lua_ctx_kube and lua_ctx_io), lua_json, json, log.
 */
#include "webhook_lua.h"

#include "json.h"
#include "log.h"
#include "lua_ctx_io.h"
#include "lua_ctx_kube.h"
#include "lua_json.h"
#include "webhook_patch.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct call {
    webhook_lua *w;
    const char *controller;
    webhook_target t;
    webhook_op op;
    int fn_ref;
    const webhook_admission *adm;      /* validate, mutate */
    const char *obj, *desired;         /* convert */
    size_t obj_len;
    lua_State *co;
    int co_ref, ctx_ref, req_ref;
    lua_ctx *ctx;
    int nres;
    webhook_verdict *v;                /* admission outcome */
    kl_buf *out;                       /* conversion output */
    char msg[600];                     /* why the call failed */
} call;

static const char *op_name(webhook_op op)
{
    return op == WEBHOOK_VALIDATE ? "validate" : op == WEBHOOK_MUTATE ? "mutate" : "convert";
}

/* ---- the read-only ctx ---- */

static int is_one_of(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(k, *list))
            return 1;
    return 0;
}

static int proxy_refuse(lua_State *L)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "webhook handlers cannot %s (ctx:%s)", lua_tostring(L, lua_upvalueindex(2)),
                    lua_tostring(L, lua_upvalueindex(1)));
    lua_concat(L, 2);
    return lua_error(L);
}

static int proxy_done(lua_State *L, int status, lua_KContext k)
{
    (void)status;
    (void)k;
    return lua_gettop(L);
}

/* ctx:get(...) on the proxy: the real method with the real ctx as self. */
static int proxy_call(lua_State *L)
{
    if (lua_gettop(L) < 1)
        lua_pushnil(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_replace(L, 1);                                   /* [ctx, args...] */
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);                                    /* [method, ctx, args...] */
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, proxy_done);
    return proxy_done(L, LUA_OK, 0);
}

static int in_reg(const char *k, const luaL_Reg *r)
{
    for (; r->name; r++)
        if (!strcmp(k, r->name))
            return 1;
    return 0;
}

/* An allowlist: the cache reads, the clock, getenv/secret and the ctx's
 * fields pass through; every other method of the ctx's modules is refused
 * (a write verb of lua_ctx_kube: "cannot write"; an I/O call of
 * lua_ctx_io: "cannot wait"), so a verb added there later is refused too. */
static int proxy_index(lua_State *L)
{
    static const char *const reads[] = {"get", "list", "now", "getenv", "secret", "log", "key",
                                        "namespace", "name", "controller", NULL};
    const char *k = lua_tostring(L, 2);
    if (!k)
        return 0;
    if (!is_one_of(k, reads)) {
        int write = in_reg(k, lua_ctx_kube_methods);
        if (!write && !in_reg(k, lua_ctx_io_methods))
            return 0;
        lua_pushvalue(L, 2);
        lua_pushstring(L, write ? "write" : "wait");
        lua_pushcclosure(L, proxy_refuse, 2);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));               /* [t, k, ctx] */
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);                                 /* [t, k, ctx, v] */
    if (lua_type(L, -1) == LUA_TFUNCTION)
        lua_pushcclosure(L, proxy_call, 2);              /* [t, k, closure(ctx, v)] */
    return 1;
}

static int proxy_newindex(lua_State *L)
{
    return luaL_error(L, "the webhook ctx is read-only");
}

/* Push a table standing for the ctx at idx: reads pass through, writes
 * and waits raise. */
static void push_proxy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 0);                            /* [p] */
    lua_createtable(L, 0, 3);                            /* [p, mt] */
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, proxy_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, proxy_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "klua.WebhookContext");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);                             /* [p] */
}

/* ---- setting a call up ---- */

static void no_resume(void *ud) { (void)ud; }

static void push_json_field(lua_State *L, const char *key, const char *json, size_t len)
{
    if (!json)
        return;
    kl_err err = {0};
    if (lua_json_push(L, json, len, &err) != 0)
        luaL_error(L, "request %s: %s", key, err.msg);
    lua_setfield(L, -2, key);
}

static void push_req(lua_State *L, const webhook_admission *a)
{
    lua_createtable(L, 0, 11);                           /* [req] */
    lua_pushstring(L, a->uid);
    lua_setfield(L, -2, "uid");
    lua_pushstring(L, a->operation);
    lua_setfield(L, -2, "operation");
    lua_pushstring(L, a->ns);
    lua_setfield(L, -2, "namespace");
    lua_pushstring(L, a->name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, a->dry_run);
    lua_setfield(L, -2, "dryRun");
    lua_createtable(L, 0, 2);
    lua_pushstring(L, a->api_version);
    lua_setfield(L, -2, "apiVersion");
    lua_pushstring(L, a->kind);
    lua_setfield(L, -2, "kind");
    lua_setfield(L, -2, "kind");
    push_json_field(L, "object", a->object, a->object_len);
    push_json_field(L, "oldObject", a->old_object, a->old_object_len);
    push_json_field(L, "userInfo", a->user_info, a->user_info_len);
    lua_createtable(L, 0, 0);
    lua_json_mark_array(L, -1);
    lua_setfield(L, -2, "warnings");
}

/* Protected, on the host's main state: the task with [fn, ctx, args...]. */
static int setup(lua_State *L)
{
    call *c = lua_touserdata(L, 1);
    luaL_checkstack(L, 10, "webhook");
    c->co = lua_host_task_new(c->t.host, &c->co_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_ref);        /* [ud, fn] */
    const char *ns = c->adm ? c->adm->ns : "", *name = c->adm ? c->adm->name : "";
    c->ctx = lua_ctx_push(L, c->w->shared, &c->t.cache, c->controller, ns, name, no_resume,
                          NULL);                         /* [ud, fn, ctx] */
    lua_pushvalue(L, -1);
    c->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    push_proxy(L, -1);                                   /* [ud, fn, ctx, proxy] */
    lua_remove(L, -2);                                   /* [ud, fn, proxy] */
    int nargs = 2;
    if (c->adm) {
        push_req(L, c->adm);                             /* [ud, fn, proxy, req] */
        lua_pushvalue(L, -1);
        c->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        kl_err err = {0};
        if (lua_json_push(L, c->obj, c->obj_len, &err) != 0)
            return luaL_error(L, "object: %s", err.msg);
        lua_pushstring(L, c->desired);                   /* [ud, fn, proxy, obj, to] */
        nargs = 3;
    }
    lua_xmove(L, c->co, nargs + 1);
    lua_ctx_bind(c->ctx, c->co);
    return 0;
}

/* ---- reading results (protected, on the main state) ---- */

static void take_warnings(lua_State *L, call *c)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->req_ref);
    lua_getfield(L, -1, "warnings");
    if (lua_istable(L, -1)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && i <= 64; i++) {
            lua_rawgeti(L, -1, i);
            const char *s = lua_tostring(L, -1);
            if (s && webhook_verdict_warn(c->v, s) != 0)
                luaL_error(L, "out of memory");
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
}

static int fail(lua_State *L, call *c, const char *fmt, const char *a)
{
    snprintf(c->msg, sizeof c->msg, fmt, lua_host_path(c->t.host), op_name(c->op), a);
    return luaL_error(L, "%s", c->msg);
}

static void take_mutation(lua_State *L, call *c)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->req_ref);
    lua_getfield(L, -1, "object");
    if (!c->adm->object) {
        lua_pop(L, 2);
        return;
    }
    if (!lua_istable(L, -1))
        fail(L, c, "%s: %s left req.object %s; change it in place", "not a table");
    kl_buf js = KL_BUF_INIT, patch = KL_BUF_INIT;
    kl_err err = {0};
    size_t nops = 0;
    int rc = lua_json_encode(L, -1, &js, &err);
    if (rc == 0)
        rc = webhook_patch_diff(c->adm->object, c->adm->object_len, js.data, js.len, &patch,
                                &nops, &err);
    kl_buf_free(&js);
    if (rc == 0 && nops > 0 && !(c->v->patch = kl_buf_take(&patch)))
        rc = kl_err_set(&err, KL_ENOMEM, "out of memory");
    kl_buf_free(&patch);
    lua_pop(L, 2);
    if (rc != 0)
        fail(L, c, "%s: %s: req.object: %s", err.msg);
}

static int take_admission(lua_State *L)
{
    call *c = lua_touserdata(L, 1);
    luaL_checkstack(L, c->nres + 8, "webhook");
    lua_xmove(c->co, L, c->nres);                        /* [ud, results...] */
    int first = c->nres ? lua_type(L, 2) : LUA_TNONE;
    if (first == LUA_TBOOLEAN && !lua_toboolean(L, 2)) {
        c->v->allowed = 0;
        c->v->code = 403;
        const char *m = c->nres >= 2 ? lua_tostring(L, 3) : NULL;
        char dflt[200];
        snprintf(dflt, sizeof dflt, "denied by %s's %s", c->controller, op_name(c->op));
        if (!(c->v->message = strdup(m && *m ? m : dflt)))
            return luaL_error(L, "out of memory");
    } else if (first == LUA_TBOOLEAN || (c->op == WEBHOOK_MUTATE && first <= LUA_TNIL)) {
        c->v->allowed = 1;
        if (c->op == WEBHOOK_MUTATE)
            take_mutation(L, c);
    } else if (c->op == WEBHOOK_VALIDATE) {
        fail(L, c, "%s: %s returned %s; return true, or false and a message",
             first == LUA_TNONE ? "nothing" : lua_typename(L, first));
    } else {
        fail(L, c, "%s: %s returned %s; return nothing (allow), or false and a message",
             lua_typename(L, first));
    }
    take_warnings(L, c);
    return 0;
}

static int take_conversion(lua_State *L)
{
    call *c = lua_touserdata(L, 1);
    luaL_checkstack(L, c->nres + 8, "webhook");
    lua_xmove(c->co, L, c->nres);                        /* [ud, results...] */
    if (c->nres < 1 || !lua_istable(L, 2)) {
        const char *m = c->nres >= 2 ? lua_tostring(L, 3) : NULL;
        if (m)
            return fail(L, c, "%s: %s: %s", m);
        return fail(L, c, "%s: %s returned %s; return the object in to_version",
                    c->nres ? lua_typename(L, lua_type(L, 2)) : "nothing");
    }
    lua_getfield(L, 2, "apiVersion");
    const char *av = lua_tostring(L, -1);
    if (!av) {
        lua_pushstring(L, c->desired);
        lua_setfield(L, 2, "apiVersion");
    } else if (strcmp(av, c->desired) != 0) {
        char what[300];
        snprintf(what, sizeof what, "apiVersion \"%.100s\", not \"%.100s\"", av, c->desired);
        return fail(L, c, "%s: %s returned an object with %s", what);
    }
    lua_pop(L, 1);
    kl_err err = {0};
    if (lua_json_encode(L, 2, c->out, &err) != 0)
        return fail(L, c, "%s: %s: the object it returned: %s", err.msg);
    return 0;
}

/* ---- one call ---- */

static void release(call *c)
{
    lua_State *L = lua_host_state(c->t.host);
    if (c->ctx)
        lua_ctx_end(c->ctx);
    if (c->co)
        lua_host_task_release(c->t.host, c->co, c->co_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, c->ctx_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, c->req_ref);
}

/* Run the call; 0, or -1 with c->msg. */
static int run(call *c, lua_CFunction take)
{
    kl_err err = {0};
    c->co_ref = c->ctx_ref = c->req_ref = LUA_NOREF;
    const lua_controller_decl *d = lua_host_decl(c->t.host);
    c->fn_ref = c->op == WEBHOOK_VALIDATE ? d->validate_ref
              : c->op == WEBHOOK_MUTATE   ? d->mutate_ref
                                          : d->convert_ref;
    if (c->fn_ref == LUA_NOREF) {
        snprintf(c->msg, sizeof c->msg, "controller %s (%s) declares no %s handler",
                 c->controller, lua_host_path(c->t.host), op_name(c->op));
        return -1;
    }
    int rc = -1;
    if (lua_host_call(c->t.host, setup, c, &err) != LUA_OK) {
        snprintf(c->msg, sizeof c->msg, "%s: %s: %s", lua_host_path(c->t.host), op_name(c->op),
                 err.msg);
        goto out;
    }
    lua_host_budget b = {0};
    int nargs = lua_gettop(c->co) - 1;
    int st = lua_host_resume(c->t.host, c->co, nargs, &c->nres, &b);
    if (st == LUA_YIELD) {
        snprintf(c->msg, sizeof c->msg, "%s: %s waited (a ctx call that needs the API server, "
                 "or coroutine.yield): webhook handlers cannot wait; read only cached kinds",
                 lua_host_path(c->t.host), op_name(c->op));
        goto out;
    }
    if (st != LUA_OK) {
        char why[512];
        lua_host_error(c->t.host, c->co, st, &b, why, sizeof why);
        snprintf(c->msg, sizeof c->msg, "%s failed: %s", op_name(c->op), why);
        goto out;
    }
    c->msg[0] = '\0';
    if (lua_host_call(c->t.host, take, c, &err) != LUA_OK) {
        if (!c->msg[0])
            snprintf(c->msg, sizeof c->msg, "%s: %s: %s", lua_host_path(c->t.host),
                     op_name(c->op), err.msg);
        goto out;
    }
    rc = 0;
out:
    release(c);
    return rc;
}

static int find(call *c, const char *name)
{
    if (c->w->find(c->w->find_ud, name, &c->t) != 0) {
        snprintf(c->msg, sizeof c->msg, "no controller named \"%s\" runs here", name);
        return -1;
    }
    return 0;
}

static int admit(void *ud, webhook_op op, const char *name, const webhook_admission *req,
                 webhook_verdict *v)
{
    call c = {0};
    c.w = ud;
    c.controller = name;
    c.op = op;
    c.adm = req;
    c.v = v;
    int rc = find(&c, name);
    if (rc == 0) {
        const lua_controller_decl *d = lua_host_decl(c.t.host);
        if (strcmp(d->watch.kind, req->kind) != 0 ||
            strcmp(d->watch.api_version, req->api_version) != 0) {
            snprintf(c.msg, sizeof c.msg, "controller %s handles %s %s, not %s %s", name,
                     d->watch.api_version, d->watch.kind, req->api_version, req->kind);
            v->code = 400;
            rc = -1;
        } else {
            rc = run(&c, take_admission);
        }
    }
    if (rc != 0) {
        free(v->message);
        v->message = strdup(c.msg);
        v->allowed = 0;
        if (!v->code || v->code == 403)
            v->code = 500;
        kl_log(KL_LOG_WARN, "webhook handler failed", "controller", name, "handler",
               op_name(op), "error", c.msg, NULL);
    }
    return rc;
}

/* A ConversionReview object must be of the script's kind and group (any
 * version of it: that is what conversion is for). */
static int same_group_kind(call *c, const char *obj, size_t len)
{
    const lua_controller_decl *d = lua_host_decl(c->t.host);
    json_doc doc = {0};
    char *av = NULL, *kind = NULL;
    int ok = 0;
    if (json_parse(&doc, obj, len, NULL) == 0) {
        av = json_str_dup(&doc, json_obj_get(&doc, 0, "apiVersion"));
        kind = json_str_dup(&doc, json_obj_get(&doc, 0, "kind"));
    }
    if (av && kind) {
        const char *slash = strrchr(av, '/'), *wslash = strrchr(d->watch.api_version, '/');
        size_t gl = slash ? (size_t)(slash - av) : 0;
        size_t wl = wslash ? (size_t)(wslash - d->watch.api_version) : 0;
        ok = gl == wl && memcmp(av, d->watch.api_version, gl) == 0 &&
             strcmp(kind, d->watch.kind) == 0;
    }
    if (!ok)
        snprintf(c->msg, sizeof c->msg, "controller %s converts %s %s (any version), not %s %s",
                 c->controller, d->watch.api_version, d->watch.kind, av ? av : "?",
                 kind ? kind : "?");
    free(av);
    free(kind);
    json_doc_free(&doc);
    return ok ? 0 : -1;
}

static int convert(void *ud, const char *name, const char *desired, const char *obj,
                   size_t obj_len, kl_buf *out, char *msg, size_t msgsz)
{
    call c = {0};
    c.w = ud;
    c.controller = name;
    c.op = WEBHOOK_CONVERT;
    c.obj = obj;
    c.obj_len = obj_len;
    c.desired = desired;
    c.out = out;
    int rc = find(&c, name);
    if (rc == 0 && (rc = same_group_kind(&c, obj, obj_len)) == 0)
        rc = run(&c, take_conversion);
    if (rc != 0) {
        snprintf(msg, msgsz, "%s", c.msg);
        kl_log(KL_LOG_WARN, "webhook handler failed", "controller", name, "handler", "convert",
               "error", c.msg, NULL);
    }
    return rc;
}

webhook_handlers webhook_lua_handlers(webhook_lua *w)
{
    webhook_handlers h = {admit, convert, w};
    return h;
}
