/* controller.c - one controller per script (see controller.h).
 *
 * Provides: controller_new/start/shutdown/free and the dispatcher.
 * Uses: lua_host (state, tasks, budget), lua_ctx (ctx, events), lua_json
 * (objects to Lua), informer/store (cache), workqueue, rest (discovery),
 * json (owner references), loop, log.
 *
 * Vocabulary from sample-controller: enqueue, handleObject (owners),
 * processNextWorkItem (dispatch), syncHandler (the reconcile coroutine).
 * Each reconcile record owns its coroutine (a registry ref), its ctx (a
 * registry ref) and a copy of its key; end_reconcile() is the one place
 * that releases them and calls workqueue_done.
 */
#include "controller.h"

#include "json.h"
#include "log.h"
#include "lua_json.h"
#include "store.h"
#include "workqueue.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_POLL_MS 50

/* The coroutine body: finalizer handling around the script's functions.
 * Chunk arguments (bound once): reconcile, finalize, finalizer name. */
static const char runner_src[] =
    "local reconcile, finalize, finalizer = ...\n"
    "local function index_of(list, v)\n"
    "  for i, x in ipairs(list or {}) do if x == v then return i end end\n"
    "end\n"
    "local function failed(what, err)\n"
    "  if err.code == 404 then return nil end\n"
    "  if err.code == 409 or err.code == 422 then return { requeue = true } end\n"
    "  error(what .. ': ' .. tostring(err), 0)\n"
    "end\n"
    "return function(ctx, obj)\n"
    "  if not finalize then return reconcile(ctx, obj) end\n"
    "  local md = obj.metadata\n"
    "  local idx = index_of(md.finalizers, finalizer)\n"
    "  if md.deletionTimestamp == nil then\n"
    "    if not idx then\n"
    "      local test = { op = 'test', path = '/metadata/resourceVersion', value = md.resourceVersion }\n"
    "      local add\n"
    "      if md.finalizers and #md.finalizers > 0 then\n"
    "        add = { op = 'add', path = '/metadata/finalizers/-', value = finalizer }\n"
    "      else\n"
    "        add = { op = 'add', path = '/metadata/finalizers', value = { finalizer } }\n"
    "      end\n"
    "      local updated, err = ctx:patch(obj, { test, add }, { type = 'json' })\n"
    "      if not updated then return failed('adding finalizer ' .. finalizer, err) end\n"
    "      obj = updated\n"
    "    end\n"
    "    return reconcile(ctx, obj)\n"
    "  end\n"
    "  if not idx then return nil end\n"
    "  local r = finalize(ctx, obj)\n"
    "  if r ~= nil then return r end\n"
    "  local path = '/metadata/finalizers/' .. (idx - 1)\n"
    "  local ok, err = ctx:patch(obj, { { op = 'test', path = path, value = finalizer },\n"
    "                                   { op = 'remove', path = path } }, { type = 'json' })\n"
    "  if not ok then return failed('removing finalizer ' .. finalizer, err) end\n"
    "  return nil\n"
    "end\n";

typedef struct reconcile {
    struct controller *c;
    char *key;
    lua_State *co;
    int co_ref, ctx_ref;
    lua_ctx *ctx;
    lua_host_budget budget;
    char *ns, *name, *uid, *rv;   /* the object as it was when we started */
    struct reconcile *next;
} reconcile;

typedef struct owned {
    kube_resource res;
    informer *inf;
    int handler;
} owned;

struct controller {
    lua_host *h;
    controller_deps d;
    const lua_controller_decl *decl;
    kube_resource watch_res;
    informer *watch_inf;
    int watch_handler;
    owned *owns;
    size_t nowns;
    char *ns;                  /* informer namespace, or NULL */
    workqueue *q;
    int workers;
    size_t active;
    int synced, stopping;
    int runner_ref;
    char finalizer[128];
    loop_timer_id dispatch_timer, sync_timer;
    reconcile *running;
};

static void dispatch(controller *c);

/* ---- setup ---- */

typedef struct runner_setup {
    controller *c;
} runner_setup;

static int setup_runner(lua_State *L)
{
    runner_setup *s = lua_touserdata(L, 1);
    controller *c = s->c;
    if (luaL_loadbufferx(L, runner_src, sizeof runner_src - 1, "=klua.controller", "t") != LUA_OK)
        return lua_error(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->decl->reconcile_ref);
    if (c->decl->has_finalize)
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->decl->finalize_ref);
    else
        lua_pushnil(L);
    lua_pushstring(L, c->finalizer);
    lua_call(L, 3, 1);                                   /* [runner] */
    c->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int lookup(const controller_deps *d, const char *script, const char *what,
                  const lua_typeref *t, kube_resource *out, kl_err *err)
{
    kl_err e = {0};
    if (kube_discovery_lookup(d->disco, t->api_version, t->kind, out, &e) != 0)
        return kl_err_set(err, KL_EINVAL, "%s: %s: %s", script, what, e.msg);
    if (d->shared)
        lua_ctx_shared_add_resource(d->shared, out);
    return 0;
}

controller *controller_new(lua_host *h, const controller_deps *d, kl_err *err)
{
    controller *c = calloc(1, sizeof *c);
    if (!c) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    c->h = h;
    c->d = *d;
    c->decl = lua_host_decl(h);
    c->runner_ref = LUA_NOREF;
    const char *script = lua_host_path(h);
    c->workers = d->workers > 0 ? d->workers : c->decl->workers > 0 ? c->decl->workers : 1;
    snprintf(c->finalizer, sizeof c->finalizer, "klua.dev/%s", c->decl->name);
    const char *ns = d->namespace && *d->namespace ? d->namespace : c->decl->namespace;
    if (ns && *ns && !(c->ns = strdup(ns)))
        goto fail_mem;
    if (lookup(d, script, "watch", &c->decl->watch, &c->watch_res, err) != 0)
        goto fail;
    if (c->decl->nowns) {
        c->owns = calloc(c->decl->nowns, sizeof *c->owns);
        if (!c->owns)
            goto fail_mem;
        c->nowns = c->decl->nowns;
        for (size_t i = 0; i < c->nowns; i++) {
            char what[32];
            snprintf(what, sizeof what, "owns[%zu]", i + 1);
            if (lookup(d, script, what, &c->decl->owns[i], &c->owns[i].res, err) != 0)
                goto fail;
        }
    }
    c->q = workqueue_new(d->l, c->decl->name, NULL);
    if (!c->q)
        goto fail_mem;
    runner_setup rs = {c};
    if (lua_host_call(h, setup_runner, &rs, err) != LUA_OK)
        goto fail;
    return c;
fail_mem:
    kl_err_set(err, KL_ENOMEM, "out of memory");
fail:
    c->h = NULL; /* not ours on failure */
    controller_free(c);
    return NULL;
}

/* ---- handlers ---- */

static void enqueue(controller *c, const char *key)
{
    if (!c->stopping)
        workqueue_add(c->q, key);
}

static void on_add(void *ud, const store_obj *o) { enqueue(ud, o->key); }
static void on_update(void *ud, const store_obj *old, const store_obj *cur)
{
    (void)old;
    enqueue(ud, cur->key);
}
static void on_delete(void *ud, const store_obj *o) { enqueue(ud, o->key); }

static int same_group(const char *a, const char *b)
{
    const char *sa = strchr(a, '/'), *sb = strchr(b, '/');
    size_t la = sa ? (size_t)(sa - a) : 0, lb = sb ? (size_t)(sb - b) : 0;
    return la == lb && strncmp(a, b, la) == 0;
}

/* handleObject: enqueue the owners of an owned object that are of the
 * watched kind. */
static void enqueue_owners(controller *c, const store_obj *o)
{
    json_doc d = {0};
    if (!o || json_parse(&d, o->json, o->json_len, NULL) != 0)
        goto done;
    int refs = json_path(&d, 0, "metadata.ownerReferences");
    for (int r = json_first(&d, refs); r >= 0; r = json_next(&d, r)) {
        if (!json_str_eq(&d, json_obj_get(&d, r, "kind"), c->decl->watch.kind))
            continue;
        char *av = json_str_dup(&d, json_obj_get(&d, r, "apiVersion"));
        char *name = json_str_dup(&d, json_obj_get(&d, r, "name"));
        if (av && name && same_group(av, c->decl->watch.api_version)) {
            kl_buf key = KL_BUF_INIT;
            if (c->watch_res.namespaced)
                kl_buf_printf(&key, "%s/%s", o->ns, name);
            else
                kl_buf_puts(&key, name);
            if (key.data)
                enqueue(c, key.data);
            kl_buf_free(&key);
        }
        free(av);
        free(name);
    }
done:
    json_doc_free(&d);
}

static void on_owned_add(void *ud, const store_obj *o) { enqueue_owners(ud, o); }
static void on_owned_update(void *ud, const store_obj *old, const store_obj *cur)
{
    enqueue_owners(ud, old);
    enqueue_owners(ud, cur);
}
static void on_owned_delete(void *ud, const store_obj *o) { enqueue_owners(ud, o); }

/* The cache lookup behind ctx:get / ctx:list. */
static const store *cache_lookup(void *ud, const char *api_version, const char *kind,
                                 const kube_resource **res)
{
    controller *c = ud;
    if (!strcmp(kind, c->decl->watch.kind) && !strcmp(api_version, c->decl->watch.api_version)) {
        *res = &c->watch_res;
        return c->watch_inf ? informer_store(c->watch_inf) : NULL;
    }
    for (size_t i = 0; i < c->nowns; i++) {
        if (!strcmp(kind, c->decl->owns[i].kind) &&
            !strcmp(api_version, c->decl->owns[i].api_version)) {
            *res = &c->owns[i].res;
            return c->owns[i].inf ? informer_store(c->owns[i].inf) : NULL;
        }
    }
    return NULL;
}

/* ---- reconciles ---- */

static void on_dispatch_timer(loop *l, void *ud)
{
    (void)l;
    controller *c = ud;
    c->dispatch_timer = 0;
    dispatch(c);
}

static void schedule_dispatch(controller *c)
{
    if (!c->dispatch_timer)
        c->dispatch_timer = loop_timer_add(c->d.l, 0, on_dispatch_timer, c);
}

static void free_reconcile(reconcile *rc)
{
    free(rc->key);
    free(rc->ns);
    free(rc->name);
    free(rc->uid);
    free(rc->rv);
    free(rc);
}

/* Release everything a reconcile holds; the one exit of every reconcile. */
static void end_reconcile(reconcile *rc, int done)
{
    controller *c = rc->c;
    lua_State *L = lua_host_state(c->h);
    if (rc->ctx)
        lua_ctx_end(rc->ctx);
    if (rc->co_ref != LUA_NOREF)
        lua_host_task_release(c->h, rc->co, rc->co_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rc->ctx_ref);
    for (reconcile **p = &c->running; *p; p = &(*p)->next) {
        if (*p == rc) {
            *p = rc->next;
            break;
        }
    }
    c->active--;
    if (done)
        workqueue_done(c->q, rc->key);
    free_reconcile(rc);
    if (done)
        schedule_dispatch(c);
}

static void record_error(reconcile *rc, const char *msg)
{
    controller *c = rc->c;
    kl_log(KL_LOG_ERROR, "reconcile failed", "controller", c->decl->name, "key", rc->key, "error",
           msg, NULL);
    lua_ctx_object_ref o = {c->decl->watch.api_version, c->decl->watch.kind, rc->ns, rc->name,
                            rc->uid, rc->rv};
    if (c->d.shared)
        lua_ctx_post_event(c->d.shared, &o, "Warning", "ReconcileError", "Reconcile", msg);
    workqueue_add_rate_limited(c->q, rc->key);
}

/* Read the reconcile's result (raw access: no script code runs here). */
static void handle_result(reconcile *rc, int nres)
{
    controller *c = rc->c;
    lua_State *co = rc->co;
    int idx = lua_gettop(co) - nres + 1;
    int t = nres > 0 ? lua_type(co, idx) : LUA_TNIL;
    if (t == LUA_TNIL) {
        workqueue_forget(c->q, rc->key);
        return;
    }
    char msg[512];
    if (t != LUA_TTABLE) {
        snprintf(msg, sizeof msg, "%s: reconcile returned a %s; want nil, { requeue_after = "
                                  "seconds } or { requeue = true }",
                 lua_host_path(c->h), lua_typename(co, t));
        record_error(rc, msg);
        return;
    }
    lua_pushliteral(co, "requeue_after");
    int ta = lua_rawget(co, idx);
    lua_pushliteral(co, "requeue");
    lua_rawget(co, idx);
    int requeue = lua_toboolean(co, -1);
    if (ta == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(co, -2);
        if (!(s >= 0 && s < 1e9)) {
            snprintf(msg, sizeof msg, "%s: reconcile returned requeue_after = %g; want seconds >= 0",
                     lua_host_path(c->h), (double)s);
            record_error(rc, msg);
        } else {
            workqueue_forget(c->q, rc->key);
            workqueue_add_after(c->q, rc->key, (uint64_t)(s * 1000.0));
        }
    } else if (ta != LUA_TNIL) {
        snprintf(msg, sizeof msg, "%s: reconcile returned requeue_after as a %s; want a number",
                 lua_host_path(c->h), lua_typename(co, ta));
        record_error(rc, msg);
    } else if (requeue) {
        workqueue_add_rate_limited(c->q, rc->key);
    } else {
        workqueue_forget(c->q, rc->key);
    }
    lua_pop(co, 2);
}

/* Run the coroutine until it waits or ends. */
static void step(reconcile *rc, int nargs)
{
    controller *c = rc->c;
    int nres = 0;
    int st = lua_host_resume(c->h, rc->co, nargs, &nres, &rc->budget);
    if (st == LUA_YIELD && lua_ctx_waiting(rc->ctx))
        return;
    if (st == LUA_YIELD) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: reconcile yielded outside a ctx call (coroutine.yield "
                                  "cannot be used at the top of a reconcile)", lua_host_path(c->h));
        record_error(rc, msg);
    } else if (st == LUA_OK) {
        handle_result(rc, nres);
    } else {
        char msg[512];
        lua_host_error(c->h, rc->co, st, &rc->budget, msg, sizeof msg);
        record_error(rc, msg);
    }
    end_reconcile(rc, 1);
}

static void resume_cb(void *ud) { step(ud, 0); }

typedef struct start_args {
    reconcile *rc;
    const store_obj *obj;
} start_args;

/* Protected: create the coroutine and push runner, ctx, obj onto it. */
static int setup_reconcile(lua_State *L)
{
    start_args *a = lua_touserdata(L, 1);
    reconcile *rc = a->rc;
    controller *c = rc->c;
    rc->co = lua_newthread(L);                           /* [ud, co] */
    rc->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->runner_ref);    /* [ud, runner] */
    lua_ctx_cache cache = {cache_lookup, c};
    rc->ctx = lua_ctx_push(L, c->d.shared, &cache, c->decl->name, a->obj->ns, a->obj->name,
                           resume_cb, rc);               /* [ud, runner, ctx] */
    lua_pushvalue(L, -1);
    rc->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    kl_err err = {0};
    if (lua_json_push(L, a->obj->json, a->obj->json_len, &err) != 0)
        return luaL_error(L, "cached object %s: %s", a->obj->key, err.msg);
    lua_xmove(L, rc->co, 3);                             /* co: [runner, ctx, obj] */
    lua_ctx_bind(rc->ctx, rc->co);
    return 0;
}

static char *dup0(const char *s) { return strdup(s ? s : ""); }

static void start_reconcile(controller *c, const char *key)
{
    const store_obj *obj = store_get(informer_store(c->watch_inf), key);
    if (!obj) {
        /* Gone from the cache: level-based, nothing to reconcile. */
        workqueue_forget(c->q, key);
        workqueue_done(c->q, key);
        return;
    }
    reconcile *rc = calloc(1, sizeof *rc);
    if (rc) {
        rc->key = strdup(key);
        rc->ns = dup0(obj->ns);
        rc->name = dup0(obj->name);
        rc->uid = dup0(obj->uid);
        rc->rv = dup0(obj->rv);
    }
    if (!rc || !rc->key || !rc->ns || !rc->name || !rc->uid || !rc->rv) {
        if (rc)
            free_reconcile(rc);
        kl_log(KL_LOG_ERROR, "out of memory starting a reconcile", "controller", c->decl->name,
               "key", key, NULL);
        workqueue_add_rate_limited(c->q, key);
        workqueue_done(c->q, key);
        return;
    }
    rc->c = c;
    rc->co_ref = rc->ctx_ref = LUA_NOREF;
    rc->next = c->running;
    c->running = rc;
    c->active++;
    start_args a = {rc, obj};
    kl_err err = {0};
    if (lua_host_call(c->h, setup_reconcile, &a, &err) != LUA_OK) {
        record_error(rc, err.msg);
        end_reconcile(rc, 1);
        return;
    }
    step(rc, 2);
}

/* processNextWorkItem, as many times as workers allow. */
static void dispatch(controller *c)
{
    while (!c->stopping && c->synced && c->active < (size_t)c->workers) {
        const char *key = workqueue_get(c->q);
        if (!key)
            break;
        start_reconcile(c, key);
    }
}

static void on_ready(void *ud) { dispatch(ud); }

/* ---- lifecycle ---- */

static int all_synced(const controller *c)
{
    if (!c->watch_inf || !informer_has_synced(c->watch_inf))
        return 0;
    for (size_t i = 0; i < c->nowns; i++)
        if (!c->owns[i].inf || !informer_has_synced(c->owns[i].inf))
            return 0;
    return 1;
}

static void on_sync_poll(loop *l, void *ud)
{
    controller *c = ud;
    c->sync_timer = 0;
    if (c->stopping)
        return;
    if (!all_synced(c)) {
        c->sync_timer = loop_timer_add(l, SYNC_POLL_MS, on_sync_poll, c);
        return;
    }
    c->synced = 1;
    dispatch(c);
}

int controller_start(controller *c, kl_err *err)
{
    informer_handler wh = {on_add, on_update, on_delete, c};
    informer_handler oh = {on_owned_add, on_owned_update, on_owned_delete, c};
    workqueue_set_ready_cb(c->q, on_ready, c);
    c->watch_inf = informer_registry_get(c->d.reg, &c->watch_res, c->ns, c->decl->selector);
    if (!c->watch_inf)
        return kl_err_set(err, KL_ENOMEM, "%s: cannot start the informer for %s",
                          lua_host_path(c->h), c->decl->watch.kind);
    c->watch_handler = informer_add_handler(c->watch_inf, &wh);
    for (size_t i = 0; i < c->nowns; i++) {
        c->owns[i].inf = informer_registry_get(c->d.reg, &c->owns[i].res, c->ns, NULL);
        if (!c->owns[i].inf)
            return kl_err_set(err, KL_ENOMEM, "%s: cannot start the informer for %s",
                              lua_host_path(c->h), c->decl->owns[i].kind);
        c->owns[i].handler = informer_add_handler(c->owns[i].inf, &oh);
    }
    c->sync_timer = loop_timer_add(c->d.l, 0, on_sync_poll, c);
    return 0;
}

int controller_synced(const controller *c) { return c->synced; }
size_t controller_active(const controller *c) { return c->active; }
const char *controller_name(const controller *c) { return c->decl->name; }
const lua_controller_decl *controller_decl(const controller *c) { return c->decl; }
int controller_workers(const controller *c) { return c->workers; }
const char *controller_script(const controller *c) { return lua_host_path(c->h); }

void controller_shutdown(controller *c)
{
    c->stopping = 1;
    if (c->q)
        workqueue_shutdown(c->q);
}

void controller_free(controller *c)
{
    if (!c)
        return;
    c->stopping = 1;
    while (c->running)
        end_reconcile(c->running, 0);
    if (c->dispatch_timer)
        loop_timer_cancel(c->d.l, c->dispatch_timer);
    if (c->sync_timer)
        loop_timer_cancel(c->d.l, c->sync_timer);
    if (c->watch_inf) {
        informer_remove_handler(c->watch_inf, c->watch_handler);
        informer_registry_release(c->d.reg, c->watch_inf);
    }
    for (size_t i = 0; i < c->nowns; i++) {
        if (c->owns[i].inf) {
            informer_remove_handler(c->owns[i].inf, c->owns[i].handler);
            informer_registry_release(c->d.reg, c->owns[i].inf);
        }
        kube_resource_free(&c->owns[i].res);
    }
    free(c->owns);
    kube_resource_free(&c->watch_res);
    if (c->q)
        workqueue_free(c->q);
    if (c->h && c->runner_ref != LUA_NOREF)
        luaL_unref(lua_host_state(c->h), LUA_REGISTRYINDEX, c->runner_ref);
    lua_host_free(c->h);
    free(c->ns);
    free(c);
}
