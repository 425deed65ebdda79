/* controller.c - one controller per script (see controller.h).
 *
 * Provides: controller_new/start/replace/shutdown/free, the dispatcher and
 * the reconciles.
 * Uses: controller_version (loaded versions and their runner),
 * controller_binding (kinds resolved through discovery, informers, owner
 * mapping), controller_result (what a result means), controller_status
 * (the Ready condition), controller_gate (leader election), lua_host
 * (tasks, budget), lua_ctx (ctx, events), lua_json (objects to Lua),
 * store, workqueue, metrics, loop, log.
 *
 * Vocabulary from sample-controller: enqueue, handleObject (owners, in
 * controller_binding), processNextWorkItem (dispatch), syncHandler (the
 * reconcile coroutine). Each reconcile record owns its coroutine (a
 * registry ref), its ctx (a registry ref) and a copy of its key;
 * end_reconcile() is the one place that releases them and calls
 * workqueue_done. A reconcile belongs to the script version it started on;
 * a replaced version is kept on the retired list until its last reconcile
 * ends. Start and replace wait for discovery as any other I/O: the
 * controller holds at most one such pending operation (c->op) and finishes
 * it in on_resolved.
 */
#include "controller.h"
#include "rywcache.h"

#include "controller_binding.h"
#include "controller_echo.h"
#include "controller_result.h"
#include "controller_status.h"
#include "controller_version.h"
#include "event.h"
#include "log.h"
#include "lua_json.h"
#include "metrics.h"
#include "store.h"
#include "workqueue.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECONCILE_HELD_MAX 4

typedef struct reconcile {
    struct controller *c;
    controller_version *v;
    char *key;
    lua_State *co;
    int co_ref, ctx_ref;
    lua_ctx *ctx;
    lua_host_budget budget;
    const char *stale[8];         /* finalizers to take off (deleting objects) */
    size_t nstale;
    uint64_t started_ns;
    char *ns, *name, *uid, *rv;   /* the object as it was when we started */
    /* Events for this key that came while it ran, held until it ends: an
     * echo of its own write is known only once the write has answered. */
    char *held[RECONCILE_HELD_MAX][2];   /* uid, resourceVersion */
    size_t nheld;
    struct reconcile *next;
} reconcile;

/* A start or replace waiting for discovery. */
typedef struct pending_op {
    controller_binding_resolve *resolve;
    lua_host *h;               /* replace: the new script (owned); NULL for start */
    controller_done_cb done;
    void *ud;
} pending_op;

struct controller {
    controller_deps d;
    controller_version *cur;    /* the script new reconciles run on */
    controller_version *retired; /* replaced versions with reconciles in flight */
    char *name;                /* the controller's name (fixed for its life) */
    controller_binding *b;     /* what cur watches; NULL until started */
    pending_op *op;
    workqueue *q;
    int workers;
    size_t active;
    int started, synced, stopping;
    int scanned;               /* orphan finalizers looked for (first sync) */
    controller_version *declared_v; /* whose finalizer the book counts, or NULL */
    loop_timer_id dispatch_timer, sync_timer;
    reconcile *running;
    controller_echo *echo;     /* what its reconciles wrote, to know the echoes */
    int gate_joined;           /* a member of d.gate */
};

static void dispatch(controller *c);
static void schedule_sync_check(controller *c);

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- handlers ---- */

static reconcile *running_key(controller *c, const char *key)
{
    for (reconcile *rc = c->running; rc; rc = rc->next)
        if (!strcmp(rc->key, key))
            return rc;
    return NULL;
}

/* Keep an event for rc's own key until rc ends; 0 when there is no room
 * (the key is then queued as before: dirty while it runs). */
static int hold(reconcile *rc, const store_obj *from)
{
    if (rc->nheld == RECONCILE_HELD_MAX)
        return 0;
    char *uid = strdup(from->uid), *rv = strdup(from->rv);
    if (!uid || !rv) {
        free(uid);
        free(rv);
        return 0;
    }
    rc->held[rc->nheld][0] = uid;
    rc->held[rc->nheld][1] = rv;
    rc->nheld++;
    return 1;
}

static int is_echo(controller *c, const char *key, const char *uid, const char *rv)
{
    if (!controller_echo_is(c->echo, key, uid, rv))
        return 0;
    metrics_reconcile_echo_skipped(c->name);
    if (kl_log_enabled(KL_LOG_V2))
        kl_log(KL_LOG_V2, "event is the echo of this controller's own write", "controller",
               c->name, "key", key, "resourceVersion", rv, NULL);
    return 1;
}

/* An event for key; from: the object whose add or update it was, or NULL.
 * The echo of a reconcile's own write does not queue its key again: that
 * reconcile saw the state (the write's answer), and a requeue_after or a
 * backoff it asked for stands. */
static void enqueue(void *ud, const char *key, const store_obj *from)
{
    controller *c = ud;
    if (c->stopping)
        return;
    if (from && from->uid && from->rv) {
        if (is_echo(c, key, from->uid, from->rv))
            return;
        reconcile *rc = running_key(c, key);
        if (rc && hold(rc, from))
            return;
    }
    workqueue_add(c->q, key);
}

/* rc is ending: the events it held queue its key again unless each was the
 * echo of a write it (or an earlier reconcile of the key) made. */
static void release_held(reconcile *rc)
{
    controller *c = rc->c;
    int requeue = 0;
    for (size_t i = 0; i < rc->nheld; i++) {
        if (!is_echo(c, rc->key, rc->held[i][0], rc->held[i][1]))
            requeue = 1;
        free(rc->held[i][0]);
        free(rc->held[i][1]);
    }
    rc->nheld = 0;
    if (requeue && !c->stopping)
        workqueue_add(c->q, rc->key);   /* still processing: queued again when done */
}

static void on_informer_synced(void *ud) { schedule_sync_check(ud); }

/* A reconcile's write answered o: its echo will not queue the key again. */
static void wrote(void *ud, const char *ns, const char *name, const store_obj *o)
{
    controller *c = ud;
    char key[STORE_KEY_MAX];
    if (!o->uid || !o->rv || !name || store_key(key, sizeof key, ns, name) != 0)
        return;
    if (controller_echo_wrote(c->echo, key, o->uid, o->rv) != 0)
        kl_log(KL_LOG_V1, "write not noted: its echo will queue the key again", "controller",
               c->name, "key", key, NULL);
}

/* The cache lookup behind ctx:get / ctx:list. */
static const store *cache_lookup(void *ud, const char *api_version, const char *kind,
                                 const kube_resource **res)
{
    controller *c = ud;
    return c->b ? controller_binding_cache(c->b, api_version, kind, res) : NULL;
}

static void sync_ready(controller *c, const char *key, const char *errmsg)
{
    if (c->b)
        controller_status_sync_ready(c->d.kc, controller_binding_watch_resource(c->b),
                                     controller_binding_watch_store(c->b), key,
                                     c->cur->decl->error_condition, errmsg);
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
    for (size_t i = 0; i < rc->nheld; i++) {
        free(rc->held[i][0]);
        free(rc->held[i][1]);
    }
    free(rc->key);
    free(rc->ns);
    free(rc->name);
    free(rc->uid);
    free(rc->rv);
    free(rc);
}

static void retire_done(controller *c, controller_version *v)
{
    for (controller_version **p = &c->retired; *p; p = &(*p)->next) {
        if (*p == v) {
            *p = v->next;
            controller_version_free(v, 0);
            return;
        }
    }
}

/* Release everything a reconcile holds; the one exit of every reconcile.
 * result: the metrics result ("success", "error", ...), NULL if cancelled. */
static void end_reconcile(reconcile *rc, int done, const char *result)
{
    controller *c = rc->c;
    controller_version *v = rc->v;
    lua_State *L = lua_host_state(v->h);
    if (rc->ctx)
        lua_ctx_end(rc->ctx);
    if (done)
        release_held(rc);
    if (rc->co_ref != LUA_NOREF)
        lua_host_task_release(v->h, rc->co, rc->co_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rc->ctx_ref);
    for (reconcile **p = &c->running; *p; p = &(*p)->next) {
        if (*p == rc) {
            *p = rc->next;
            break;
        }
    }
    c->active--;
    v->active--;
    metrics_active_workers_add(c->name, -1);
    if (result) {
        double secs = (double)(mono_ns() - rc->started_ns) / 1e9;
        metrics_reconcile_done(c->name, result, secs);
        metrics_lua_memory(c->name, lua_host_mem_used(v->h));
        metrics_lua_instructions(c->name, rc->budget.instructions);
        if (kl_log_enabled(KL_LOG_V1)) {
            char ms[32];
            snprintf(ms, sizeof ms, "%.1f", secs * 1e3);
            kl_log(KL_LOG_V1, "reconciled", "controller", c->name, "key", rc->key, "result",
                   result, KL_LOG_RAW "duration_ms", ms, NULL);
        }
    }
    if (done)
        workqueue_done(c->q, rc->key);
    free_reconcile(rc);
    if (v != c->cur && v->active == 0)
        retire_done(c, v);
    if (done)
        schedule_dispatch(c);
}

static void backoff(controller *c, const char *key)
{
    workqueue_add_rate_limited(c->q, key);
}

static void record_error(reconcile *rc, const char *raw)
{
    controller *c = rc->c;
    const lua_controller_decl *decl = rc->v->decl;
    char msg[4096];   /* the log line, the Event and the condition carry no secret */
    if (c->d.shared)
        lua_ctx_shared_redact(c->d.shared, raw, msg, sizeof msg);
    else
        snprintf(msg, sizeof msg, "%s", raw);
    kl_log(KL_LOG_ERROR, "reconcile failed", "controller", c->name, "key", rc->key, "error", msg,
           NULL);
    event_object o = {decl->watch.api_version, decl->watch.kind, rc->ns, rc->name, rc->uid,
                      rc->rv, c->name};
    if (c->d.shared)
        event_post(lua_ctx_shared_events(c->d.shared), &o, "Warning", "ReconcileError",
                   "Reconcile", msg);
    sync_ready(c, rc->key, msg);
    backoff(c, rc->key);
}

/* Act on the reconcile's result; returns the metrics result. */
static const char *handle_result(reconcile *rc, int nres)
{
    controller *c = rc->c;
    controller_version *v = rc->v;
    controller_result r;
    controller_result_read(rc->co, nres, lua_host_path(v->h), v->reconcile_line,
                           v->finalize_line, &r);
    switch (r.kind) {
    case CONTROLLER_RESULT_DONE:
        workqueue_forget(c->q, rc->key);
        sync_ready(c, rc->key, NULL);
        return "success";
    case CONTROLLER_RESULT_REQUEUE_AFTER:
        workqueue_forget(c->q, rc->key);
        workqueue_add_after(c->q, rc->key, r.after_ms);
        sync_ready(c, rc->key, NULL);
        return "requeue_after";
    case CONTROLLER_RESULT_REQUEUE:
        backoff(c, rc->key);
        return "requeue";
    default:
        record_error(rc, r.msg);
        return "error";
    }
}

/* Run the coroutine until it waits or ends. */
static void step(reconcile *rc, int nargs)
{
    controller_version *v = rc->v;
    int nres = 0;
    int st = lua_host_resume(v->h, rc->co, nargs, &nres, &rc->budget);
    if (st == LUA_YIELD && lua_ctx_waiting(rc->ctx))
        return;
    const char *result = "error";
    if (st == LUA_YIELD) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s:%d: reconcile yielded outside a ctx call (coroutine.yield "
                                  "cannot be used at the top of a reconcile)",
                 lua_host_path(v->h), v->reconcile_line);
        record_error(rc, msg);
    } else if (st == LUA_OK) {
        result = handle_result(rc, nres);
    } else {
        char msg[512];
        lua_host_error(v->h, rc->co, st, &rc->budget, msg, sizeof msg);
        record_error(rc, msg);
    }
    end_reconcile(rc, 1, result);
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, rc->v->runner_ref); /* [ud, runner] */
    lua_ctx_cache cache = {cache_lookup, wrote, c};
    rc->ctx = lua_ctx_push(L, c->d.shared, &cache, c->name, a->obj->ns, a->obj->name, resume_cb,
                           rc);                          /* [ud, runner, ctx] */
    lua_pushvalue(L, -1);
    rc->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    kl_err err = {0};
    if (lua_json_push(L, a->obj->json, a->obj->json_len, &err) != 0)
        return luaL_error(L, "cached object %s: %s", a->obj->key, err.msg);
    if (rc->nstale) {
        lua_createtable(L, (int)rc->nstale, 0);          /* [ud, runner, ctx, obj, stale] */
        for (size_t i = 0; i < rc->nstale; i++) {
            lua_pushstring(L, rc->stale[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
    } else {
        lua_pushnil(L);
    }
    lua_xmove(L, rc->co, 4);                             /* co: [runner, ctx, obj, stale] */
    lua_ctx_bind(rc->ctx, rc->co);
    return 0;
}

static char *dup0(const char *s) { return strdup(s ? s : ""); }

static void start_reconcile(controller *c, const char *key)
{
    const store *st = controller_binding_watch_store(c->b);
    const store_obj *obj = NULL;
    if (!rywcache_lookup(st, key, &obj))  /* this process's own write first, as ctx:get */
        obj = store_get(st, key);
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
        kl_log(KL_LOG_ERROR, "out of memory starting a reconcile", "controller", c->name, "key",
               key, NULL);
        backoff(c, key);
        workqueue_done(c->q, key);
        return;
    }
    rc->c = c;
    rc->v = c->cur;
    rc->co_ref = rc->ctx_ref = LUA_NOREF;
    rc->started_ns = mono_ns();
    rc->next = c->running;
    c->running = rc;
    c->active++;
    rc->v->active++;
    metrics_active_workers_add(c->name, 1);
    if (obj->deleting && c->d.finalizers)
        rc->nstale = controller_finalizers_stale(c->d.finalizers, rc->v->decl->watch.api_version,
                                                 rc->v->decl->watch.kind, rc->stale,
                                                 sizeof rc->stale / sizeof *rc->stale);
    start_args a = {rc, obj};
    kl_err err = {0};
    if (lua_host_call(rc->v->h, setup_reconcile, &a, &err) != LUA_OK) {
        record_error(rc, err.msg);
        end_reconcile(rc, 1, "error");
        return;
    }
    step(rc, 3);
}

/* processNextWorkItem, as many times as workers allow. */
static void dispatch(controller *c)
{
    int open = !c->d.gate || controller_gate_is_open(c->d.gate);
    while (!c->stopping && c->synced && open && c->active < (size_t)c->workers) {
        const char *key = workqueue_get(c->q);
        if (!key)
            break;
        start_reconcile(c, key);
    }
}

static void on_ready(void *ud) { dispatch(ud); }

/* ---- lifecycle ---- */

/* Dispatching starts from here: at start (informers another controller
 * already synced), and after each informer's first sync. Not a poll: the
 * informers' synced listeners schedule it, so reconciles start on the loop
 * turn after the last cache is complete. */
static void on_sync_check(loop *l, void *ud)
{
    (void)l;
    controller *c = ud;
    c->sync_timer = 0;
    if (c->stopping || c->synced || !controller_binding_synced(c->b))
        return;
    c->synced = 1;
    if (!c->scanned && c->d.finalizers) {
        /* before the first dispatch: orphans to remove are booked by then */
        c->scanned = 1;
        const lua_controller_decl *decl = c->cur->decl;
        controller_finalizers_scan(c->d.finalizers, controller_binding_watch_store(c->b),
                                   decl->watch.api_version, decl->watch.kind);
    }
    if (c->d.on_synced)
        c->d.on_synced(c->d.synced_ud, c);
    dispatch(c);
}

/* Deferred to a zero-delay timer rather than checked here: the informer
 * calls its listeners in the middle of finishing its LIST, which is no
 * place to start reconciles. */
static void schedule_sync_check(controller *c)
{
    if (!c->sync_timer)
        c->sync_timer = loop_timer_add(c->d.l, 0, on_sync_check, c);
}

static void wait_for_sync(controller *c)
{
    c->synced = 0;
    schedule_sync_check(c);
}

static void on_gate_open(void *ud) { schedule_dispatch(ud); }

/* The book counts the finalizer of the version new reconciles run on. */
static void undeclare(controller *c)
{
    const lua_controller_decl *d = c->declared_v ? c->declared_v->decl : NULL;
    if (d)
        controller_finalizers_undeclare(c->d.finalizers, d->finalizer, d->watch.api_version,
                                        d->watch.kind);
    c->declared_v = NULL;
}

static int declare(controller *c, controller_version *v)
{
    undeclare(c);
    const lua_controller_decl *d = v->decl;
    if (!c->d.finalizers || !d->has_finalize)
        return 0;
    if (controller_finalizers_declare(c->d.finalizers, d->finalizer, d->watch.api_version,
                                      d->watch.kind) != 0)
        return -1;
    c->declared_v = v;
    return 0;
}

controller *controller_new(lua_host *h, const controller_deps *d, kl_err *err)
{
    controller *c = calloc(1, sizeof *c);
    if (!c) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    c->d = *d;
    if (d->gate) {
        /* Keys queued while it was closed wait for a dispatch. */
        if (controller_gate_join(d->gate, on_gate_open, c) != 0)
            goto fail_mem;
        c->gate_joined = 1;
    }
    const lua_controller_decl *decl = lua_host_decl(h);
    c->workers = d->workers > 0 ? d->workers : decl->workers > 0 ? decl->workers : 1;
    if (!(c->name = strdup(decl->name)))
        goto fail_mem;
    c->q = workqueue_new(d->l, decl->name, NULL);
    if (!c->q || !(c->echo = controller_echo_new()))
        goto fail_mem;
    if (!(c->cur = controller_version_new(h, decl->finalizer, err)))
        goto fail;
    if (declare(c, c->cur) != 0) {
        controller_version_free(c->cur, 1);   /* h stays the caller's */
        c->cur = NULL;
        goto fail_mem;
    }
    return c;
fail_mem:
    kl_err_set(err, KL_ENOMEM, "out of memory");
fail:
    controller_free(c);   /* c->cur is NULL: h stays the caller's */
    return NULL;
}

/* Start: b resolved, take its informers. */
static int start_now(controller *c, controller_binding *b, kl_err *err)
{
    c->b = b;     /* freed with c, whatever happens next */
    workqueue_set_ready_cb(c->q, on_ready, c);
    metrics_controller_started(c->name, c->workers);
    c->started = 1;
    controller_binding_events ev = {enqueue, on_informer_synced, c};
    controller_binding_set_cache(b, &c->cur->decl->cache);
    if (controller_binding_start(b, c->d.reg, c->cur->h, c->cur->decl->selector, &ev, err) != 0)
        return kl_err_wrap(err, "%s", controller_script(c));
    wait_for_sync(c);
    return 0;
}

/* Replace: nb resolved for h; h is ours (freed on failure). */
static int replace_now(controller *c, lua_host *h, controller_binding *nb, kl_err *err)
{
    const lua_controller_decl *decl = lua_host_decl(h);
    controller_version *v = controller_version_new(h, decl->finalizer, err);
    if (!v) {
        controller_binding_free(nb);
        lua_host_free(h);
        return -1;
    }
    /* The new references first: an informer both versions use never drops
     * to zero references, so it keeps running and keeps its cache. */
    controller_binding_events ev = {enqueue, on_informer_synced, c};
    controller_binding_set_cache(nb, &decl->cache);
    /* The new script has seen nothing: the replay below reaches it whole
     * (an old version's reconcile still running may note writes again:
     * their echoes are then the only events those keys skip). */
    controller_echo_clear(c->echo);
    if (controller_binding_start(nb, c->d.reg, h, decl->selector, &ev, err) != 0) {
        controller_binding_free(nb);
        controller_version_free(v, 0);
        return kl_err_wrap(err, "%s", lua_host_path(h));
    }
    controller_binding *old = c->b;
    c->b = nb;
    controller_binding_free(old);
    controller_version *prev = c->cur;
    c->cur = v;
    if (declare(c, v) != 0)
        kl_log(KL_LOG_ERROR, "out of memory recording a finalizer", "controller", c->name, NULL);
    if (prev->active == 0) {
        controller_version_free(prev, 0);
    } else {
        prev->next = c->retired;
        c->retired = prev;
    }
    c->workers = c->d.workers > 0 ? c->d.workers : decl->workers > 0 ? decl->workers : 1;
    metrics_controller_started(c->name, c->workers);
    if (!controller_binding_synced(c->b))
        wait_for_sync(c);
    schedule_dispatch(c);
    return 0;
}

static void on_resolved(void *ud, controller_binding *b, const kl_err *err)
{
    controller *c = ud;
    pending_op *op = c->op;
    c->op = NULL;
    controller_done_cb done = op->done;
    void *done_ud = op->ud;
    lua_host *h = op->h;
    free(op);
    kl_err e = {0};
    int rc = 0;
    if (!b) {
        e = *err;
        rc = -1;
        lua_host_free(h);
    } else if (c->stopping) {
        rc = kl_err_set(&e, KL_ECANCEL, "%s: stopped while resolving its kinds",
                        h ? lua_host_path(h) : controller_script(c));
        controller_binding_free(b);
        lua_host_free(h);
    } else if (h) {
        rc = replace_now(c, h, b, &e);
    } else {
        rc = start_now(c, b, &e);
    }
    done(done_ud, c, rc == 0 ? NULL : &e);   /* last: done may free c */
}

static int begin_op(controller *c, lua_host *h, controller_done_cb done, void *ud, kl_err *err)
{
    if (c->op || c->stopping)
        return kl_err_set(err, KL_ESTATE, "%s: %s", c->name,
                          c->op ? "a start or reload is already waiting for discovery"
                                : "the controller is stopping");
    pending_op *op = calloc(1, sizeof *op);
    const lua_controller_decl *decl = h ? lua_host_decl(h) : c->cur->decl;
    const char *ns = c->d.namespace && *c->d.namespace ? c->d.namespace : decl->namespace;
    if (op)
        op->resolve = controller_binding_resolve_start(
            c->d.disco, decl, h ? lua_host_path(h) : controller_script(c), ns, on_resolved, c);
    if (!op || !op->resolve) {
        free(op);
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    op->h = h;
    op->done = done;
    op->ud = ud;
    c->op = op;
    return 0;
}

int controller_start(controller *c, controller_done_cb done, void *ud, kl_err *err)
{
    if (c->started)
        return kl_err_set(err, KL_ESTATE, "%s: already started", c->name);
    return begin_op(c, NULL, done, ud, err);
}

int controller_replace(controller *c, lua_host *h, controller_done_cb done, void *ud,
                       kl_err *err)
{
    const lua_controller_decl *decl = lua_host_decl(h);
    if (strcmp(decl->name, c->name) != 0)
        return kl_err_set(err, KL_EINVAL, "%s: the controller name changed from %s to %s",
                          lua_host_path(h), c->name, decl->name);
    if (!c->started)
        return kl_err_set(err, KL_ESTATE, "%s: not started", c->name);
    return begin_op(c, h, done, ud, err);
}

int controller_pending(const controller *c) { return c->op != NULL; }
int controller_synced(const controller *c) { return c->synced; }
size_t controller_active(const controller *c) { return c->active; }
const char *controller_name(const controller *c) { return c->name; }
const lua_controller_decl *controller_decl(const controller *c) { return c->cur->decl; }
int controller_workers(const controller *c) { return c->workers; }
const char *controller_script(const controller *c) { return lua_host_path(c->cur->h); }
const lua_host *controller_host(const controller *c) { return c->cur->h; }

lua_host *controller_webhook_host(controller *c, lua_ctx_cache *cache)
{
    cache->lookup = cache_lookup;
    cache->wrote = NULL;    /* an admission review's writes are no reconcile's */
    cache->ud = c;
    return c->cur->h;
}

void controller_shutdown(controller *c)
{
    c->stopping = 1;
    undeclare(c);   /* a renamed script's successor may take the finalizer off */
    if (c->q)
        workqueue_shutdown(c->q);
}

void controller_free(controller *c)
{
    if (!c)
        return;
    if (c->gate_joined)
        controller_gate_leave(c->d.gate, c);
    undeclare(c);
    c->stopping = 1;
    if (c->op) {
        controller_binding_resolve_cancel(c->op->resolve);
        lua_host_free(c->op->h);
        free(c->op);
        c->op = NULL;
    }
    while (c->running)
        end_reconcile(c->running, 0, NULL);
    if (c->dispatch_timer)
        loop_timer_cancel(c->d.l, c->dispatch_timer);
    if (c->sync_timer)
        loop_timer_cancel(c->d.l, c->sync_timer);
    controller_binding_free(c->b);
    if (c->q)
        workqueue_free(c->q);
    while (c->retired) {
        controller_version *v = c->retired;
        c->retired = v->next;
        controller_version_free(v, 0);
    }
    controller_version_free(c->cur, 0);
    controller_echo_free(c->echo);
    metrics_controller_removed(c->name);
    free(c->name);
    free(c);
}
