/* controller.c - one controller per script (see controller.h).
 *
 * Provides: controller_new/start/shutdown/free, the dispatcher, and
 * controller_gate (leader election holds dispatching behind it).
 * Uses: lua_host (state, tasks, budget), lua_ctx (ctx, events), lua_json
 * (objects to Lua), informer/store (cache), workqueue, rest (discovery),
 * json (owner references), loop, log.
 *
 * Vocabulary from sample-controller: enqueue, handleObject (owners),
 * processNextWorkItem (dispatch), syncHandler (the reconcile coroutine).
 * Each reconcile record owns its coroutine (a registry ref), its ctx (a
 * registry ref) and a copy of its key; end_reconcile() is the one place
 * that releases them and calls workqueue_done. A reconcile belongs to the
 * script version (script_ver) it started on; a replaced version is kept on
 * the retired list until its last reconcile ends.
 */
#include "controller.h"

#include "json.h"
#include "log.h"
#include "lua_json.h"
#include "metrics.h"
#include "store.h"
#include "workqueue.h"
#include "util.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The coroutine body: finalizer handling around the script's functions.
 * Chunk arguments (bound once): reconcile, finalize, finalizer name.
 * Returns the script's result and which function gave it. It runs in a
 * private environment: the script's globals cannot change ipairs or error. */
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
    "  if not finalize then return (reconcile(ctx, obj)), 'reconcile' end\n"
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
    "    return (reconcile(ctx, obj)), 'reconcile'\n"
    "  end\n"
    "  if not idx then return nil end\n"
    "  local r = finalize(ctx, obj)\n"
    "  if r ~= nil then return r, 'finalize' end\n"
    "  local path = '/metadata/finalizers/' .. (idx - 1)\n"
    "  local ok, err = ctx:patch(obj, { { op = 'test', path = path, value = finalizer },\n"
    "                                   { op = 'remove', path = path } }, { type = 'json' })\n"
    "  if not ok then return failed('removing finalizer ' .. finalizer, err) end\n"
    "  return nil\n"
    "end\n";

/* One loaded script: its Lua state, declaration and runner. */
typedef struct script_ver {
    lua_host *h;
    const lua_controller_decl *decl;
    int runner_ref;
    int reconcile_line, finalize_line;   /* where the functions are defined */
    size_t active;                       /* reconciles running on this version */
    struct script_ver *next;             /* on the retired list */
} script_ver;

typedef struct reconcile {
    struct controller *c;
    script_ver *v;
    char *key;
    lua_State *co;
    int co_ref, ctx_ref;
    lua_ctx *ctx;
    lua_host_budget budget;
    uint64_t started_ns;
    char *ns, *name, *uid, *rv;   /* the object as it was when we started */
    struct reconcile *next;
} reconcile;

typedef struct owned {
    kube_resource res;
    informer *inf;
    int handler;
    int synced_listener;       /* informer_add_synced_listener id, 0 = none */
} owned;

/* What a declaration watches: resolved resources, then informers. */
typedef struct binding {
    kube_resource watch_res;
    informer *watch_inf;
    int watch_handler;
    int watch_synced_listener; /* informer_add_synced_listener id, 0 = none */
    owned *owns;
    size_t nowns;
    char *ns;                  /* informer namespace, or NULL */
} binding;

struct controller {
    controller_deps d;
    script_ver *cur;           /* the script new reconciles run on */
    script_ver *retired;       /* replaced versions with reconciles in flight */
    char *name;                /* the controller's name (fixed for its life) */
    binding b;
    workqueue *q;
    int workers;
    size_t active;
    int started, synced, stopping;
    char finalizer[128];
    loop_timer_id dispatch_timer, sync_timer;
    reconcile *running;
    struct controller *gate_next;   /* the other controllers behind d.gate */
};

struct controller_gate {
    int open;
    controller *members;   /* borrowed: each controller unlinks itself when freed */
};

static void dispatch(controller *c);
static void on_add(void *ud, const store_obj *o);
static void on_update(void *ud, const store_obj *old, const store_obj *cur);
static void on_delete(void *ud, const store_obj *o);
static void on_owned_add(void *ud, const store_obj *o);
static void on_owned_update(void *ud, const store_obj *old, const store_obj *cur);
static void on_owned_delete(void *ud, const store_obj *o);
static void on_informer_synced(void *ud, informer *inf);

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- script versions ---- */

typedef struct runner_setup {
    controller *c;
    script_ver *v;
} runner_setup;

static int function_line(lua_State *L, int ref)
{
    if (ref == LUA_NOREF)
        return 0;
    lua_Debug ar;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    return lua_getinfo(L, ">S", &ar) ? ar.linedefined : 0;
}

static int setup_runner(lua_State *L)
{
    runner_setup *s = lua_touserdata(L, 1);
    script_ver *v = s->v;
    if (lua_host_load_internal(v->h, L, runner_src, sizeof runner_src - 1, "=klua.controller") !=
        LUA_OK)
        return lua_error(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->decl->reconcile_ref);
    if (v->decl->has_finalize)
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->decl->finalize_ref);
    else
        lua_pushnil(L);
    lua_pushstring(L, s->c->finalizer);
    lua_call(L, 3, 1);                                   /* [runner] */
    v->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    v->reconcile_line = function_line(L, v->decl->reconcile_ref);
    v->finalize_line = function_line(L, v->decl->finalize_ref);
    return 0;
}

/* A version for h (not owned on failure). */
static script_ver *version_new(controller *c, lua_host *h, kl_err *err)
{
    script_ver *v = calloc(1, sizeof *v);
    if (!v) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    v->h = h;
    v->decl = lua_host_decl(h);
    v->runner_ref = LUA_NOREF;
    runner_setup rs = {c, v};
    if (lua_host_call(h, setup_runner, &rs, err) != LUA_OK) {
        free(v);
        return NULL;
    }
    return v;
}

/* Free v and its host (keep_host: the host goes back to the caller). */
static void version_free(script_ver *v, int keep_host)
{
    if (!v)
        return;
    if (v->runner_ref != LUA_NOREF)
        luaL_unref(lua_host_state(v->h), LUA_REGISTRYINDEX, v->runner_ref);
    if (!keep_host)
        lua_host_free(v->h);
    free(v);
}

/* ---- bindings ---- */

static int lookup(const controller_deps *d, const char *script, const char *what,
                  const lua_typeref *t, kube_resource *out, kl_err *err)
{
    kl_err e = {0};
    if (kube_discovery_lookup(d->disco, t->api_version, t->kind, out, &e) != 0) {
        /* A CRD installed since start-up: ask the server again, once. */
        kube_discovery_invalidate(d->disco);
        kl_err e2 = {0};
        if (kube_discovery_lookup(d->disco, t->api_version, t->kind, out, &e2) != 0)
            return kl_err_set(err, KL_EINVAL, "%s: %s: %s", script, what, e.msg);
    }
    if (d->shared)
        lua_ctx_shared_add_resource(d->shared, out);
    return 0;
}

static void binding_free(controller *c, binding *b)
{
    if (b->watch_inf) {
        if (b->watch_synced_listener > 0)
            informer_remove_synced_listener(b->watch_inf, b->watch_synced_listener);
        informer_remove_handler(b->watch_inf, b->watch_handler);
        informer_registry_release(c->d.reg, b->watch_inf);
    }
    for (size_t i = 0; i < b->nowns; i++) {
        if (b->owns[i].inf) {
            if (b->owns[i].synced_listener > 0)
                informer_remove_synced_listener(b->owns[i].inf, b->owns[i].synced_listener);
            informer_remove_handler(b->owns[i].inf, b->owns[i].handler);
            informer_registry_release(c->d.reg, b->owns[i].inf);
        }
        kube_resource_free(&b->owns[i].res);
    }
    free(b->owns);
    kube_resource_free(&b->watch_res);
    free(b->ns);
    memset(b, 0, sizeof *b);
}

/* Resolve what decl watches (discovery; no informers yet). */
static int binding_resolve(controller *c, const lua_controller_decl *decl, const char *script,
                           binding *b, kl_err *err)
{
    memset(b, 0, sizeof *b);
    const char *ns = c->d.namespace && *c->d.namespace ? c->d.namespace : decl->namespace;
    if (ns && *ns && !(b->ns = strdup(ns)))
        goto oom;
    if (lookup(&c->d, script, "watch", &decl->watch, &b->watch_res, err) != 0)
        goto fail;
    if (decl->nowns) {
        if (!(b->owns = calloc(decl->nowns, sizeof *b->owns)))
            goto oom;
        b->nowns = decl->nowns;
        for (size_t i = 0; i < b->nowns; i++) {
            char what[32];
            snprintf(what, sizeof what, "owns[%zu]", i + 1);
            if (lookup(&c->d, script, what, &decl->owns[i], &b->owns[i].res, err) != 0)
                goto fail;
        }
    }
    return 0;
oom:
    kl_err_set(err, KL_ENOMEM, "out of memory");
fail:
    binding_free(c, b);
    return -1;
}

/* Take the informers (shared through the registry) and add our handlers;
 * an informer that has synced replays its cache as adds, which enqueues
 * every key. */
static int binding_start(controller *c, binding *b, const lua_controller_decl *decl,
                         const char *script, kl_err *err)
{
    informer_handler wh = {on_add, on_update, on_delete, c};
    informer_handler oh = {on_owned_add, on_owned_update, on_owned_delete, c};
    b->watch_inf = informer_registry_get(c->d.reg, &b->watch_res, b->ns, decl->selector);
    if (!b->watch_inf)
        return kl_err_set(err, KL_ENOMEM, "%s: cannot start the informer for %s", script,
                          decl->watch.kind);
    b->watch_handler = informer_add_handler(b->watch_inf, &wh);
    b->watch_synced_listener = informer_add_synced_listener(b->watch_inf, on_informer_synced, c);
    if (b->watch_synced_listener < 0)
        return kl_err_set(err, KL_ENOMEM, "%s: out of memory", script);
    for (size_t i = 0; i < b->nowns; i++) {
        b->owns[i].inf = informer_registry_get(c->d.reg, &b->owns[i].res, b->ns, NULL);
        if (!b->owns[i].inf)
            return kl_err_set(err, KL_ENOMEM, "%s: cannot start the informer for %s", script,
                              decl->owns[i].kind);
        b->owns[i].handler = informer_add_handler(b->owns[i].inf, &oh);
        b->owns[i].synced_listener =
            informer_add_synced_listener(b->owns[i].inf, on_informer_synced, c);
        if (b->owns[i].synced_listener < 0)
            return kl_err_set(err, KL_ENOMEM, "%s: out of memory", script);
    }
    return 0;
}

/* ---- construction ---- */

controller *controller_new(lua_host *h, const controller_deps *d, kl_err *err)
{
    controller *c = calloc(1, sizeof *c);
    if (!c) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    c->d = *d;
    if (d->gate) {
        c->gate_next = d->gate->members;
        d->gate->members = c;
    }
    const lua_controller_decl *decl = lua_host_decl(h);
    c->workers = d->workers > 0 ? d->workers : decl->workers > 0 ? decl->workers : 1;
    snprintf(c->finalizer, sizeof c->finalizer, "klua.dev/%s", decl->name);
    if (!(c->name = strdup(decl->name)))
        goto fail_mem;
    if (binding_resolve(c, decl, lua_host_path(h), &c->b, err) != 0)
        goto fail;
    c->q = workqueue_new(d->l, decl->name, NULL);
    if (!c->q)
        goto fail_mem;
    if (!(c->cur = version_new(c, h, err)))
        goto fail;
    return c;
fail_mem:
    kl_err_set(err, KL_ENOMEM, "out of memory");
fail:
    controller_free(c);   /* c->cur is NULL: h stays the caller's */
    return NULL;
}

/* ---- handlers ---- */

static void note_depth(controller *c)
{
    metrics_workqueue_depth(c->name, workqueue_len(c->q));
}

static void enqueue(controller *c, const char *key)
{
    if (c->stopping)
        return;
    workqueue_add(c->q, key);
    metrics_workqueue_add(c->name);
    note_depth(c);
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
    const lua_controller_decl *decl = c->cur->decl;
    json_doc d = {0};
    if (!o || json_parse(&d, o->json, o->json_len, NULL) != 0)
        goto done;
    int refs = json_path(&d, 0, "metadata.ownerReferences");
    for (int r = json_first(&d, refs); r >= 0; r = json_next(&d, r)) {
        if (!json_str_eq(&d, json_obj_get(&d, r, "kind"), decl->watch.kind))
            continue;
        char *av = json_str_dup(&d, json_obj_get(&d, r, "apiVersion"));
        char *name = json_str_dup(&d, json_obj_get(&d, r, "name"));
        if (av && name && same_group(av, decl->watch.api_version)) {
            kl_buf key = KL_BUF_INIT;
            if (c->b.watch_res.namespaced)
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
    const lua_controller_decl *decl = c->cur->decl;
    if (!strcmp(kind, decl->watch.kind) && !strcmp(api_version, decl->watch.api_version)) {
        *res = &c->b.watch_res;
        return c->b.watch_inf ? informer_store(c->b.watch_inf) : NULL;
    }
    for (size_t i = 0; i < c->b.nowns && i < decl->nowns; i++) {
        if (!strcmp(kind, decl->owns[i].kind) && !strcmp(api_version, decl->owns[i].api_version)) {
            *res = &c->b.owns[i].res;
            return c->b.owns[i].inf ? informer_store(c->b.owns[i].inf) : NULL;
        }
    }
    return NULL;
}

/* ---- the Ready condition ---- */

static void on_ready_patched(void *ud, kube_result *res)
{
    (void)ud;
    if (!kube_result_ok(res)) {
        char code[16];
        snprintf(code, sizeof code, "%ld", res->http_code);
        /* 409: the object changed meanwhile; the next reconcile decides again. */
        kl_log(KL_LOG_V1, "Ready condition not updated", "code", code, "reason", res->reason, NULL);
    }
}

static int str_tok_eq(const json_doc *d, int obj, const char *key, const char *want)
{
    return json_str_eq(d, json_obj_get(d, obj, key), want);
}

/* 1 if s[0..sn) occurs in h[0..n). glibc's memmem goes byte by byte
 * (about 5 instructions a byte); memchr on a first byte that is rare in
 * Kubernetes JSON ('\\', 'R') skips ahead many bytes at a time. */
static int has_bytes(const char *h, size_t n, const char *s, size_t sn)
{
    const char *p = h, *end = h + n;
    while (sn > 0 && (size_t)(end - p) >= sn &&
           (p = memchr(p, s[0], (size_t)(end - p) - sn + 1)) != NULL) {
        if (memcmp(p, s, sn) == 0)
            return 1;
        p++;
    }
    return 0;
}

/* 0 when the object's JSON certainly holds no string (key or value) equal
 * to s: short of a \u escape, such a string appears byte for byte. This
 * spares parsing the whole object after every successful reconcile, the
 * common case, in which nothing of ours can be there to take back. */
static int may_hold_string(const store_obj *o, const char *s)
{
    return has_bytes(o->json, o->json_len, s, strlen(s)) ||
           has_bytes(o->json, o->json_len, "\\u", 2);
}

/* After a reconcile: errmsg set -> make sure Ready=False/ReconcileError
 * carries it; errmsg NULL -> drop a Ready condition klua set earlier. Only
 * for objects with status.conditions, and only through /status. */
static void sync_ready(controller *c, const char *key, const char *errmsg)
{
    if (!c->d.kc || !c->b.watch_res.has_status || !c->b.watch_inf)
        return;
    const store_obj *o = store_get(informer_store(c->b.watch_inf), key);
    if (!o || o->deleting)
        return;
    /* An error needs status.conditions; taking one back needs ours. */
    if (!may_hold_string(o, errmsg ? "conditions" : "ReconcileError"))
        return;
    json_doc d = {0};
    kl_buf body = KL_BUF_INIT;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", errmsg ? errmsg : "");
    if (json_parse(&d, o->json, o->json_len, NULL) != 0)
        goto done;
    int conds = json_path(&d, 0, "status.conditions");
    if (conds < 0 || d.toks[conds].type != JSON_ARRAY)
        goto done;
    int ready = -1;
    for (int i = json_first(&d, conds); i >= 0; i = json_next(&d, i))
        if (d.toks[i].type == JSON_OBJECT && str_tok_eq(&d, i, "type", "Ready"))
            ready = i;
    int was_false = ready >= 0 && str_tok_eq(&d, ready, "status", "False");
    int ours = ready >= 0 && str_tok_eq(&d, ready, "reason", "ReconcileError");
    if (errmsg && was_false && ours && str_tok_eq(&d, ready, "message", msg))
        goto done;              /* already says so: writing again would loop */
    if (!errmsg && !ours)
        goto done;              /* nothing of ours to take back */
    kl_buf_puts(&body, "{\"metadata\":{\"resourceVersion\":");
    json_escape_append(&body, o->rv, strlen(o->rv));
    kl_buf_puts(&body, "},\"status\":{\"conditions\":[");
    int first = 1;
    for (int i = json_first(&d, conds); i >= 0; i = json_next(&d, i)) {
        if (i == ready)
            continue;
        size_t len;
        const char *raw = json_raw(&d, i, &len);
        if (!first)
            kl_buf_putc(&body, ',');
        kl_buf_append(&body, raw, len);
        first = 0;
    }
    if (errmsg) {
        char when[40];
        kl_rfc3339_now(0, when, sizeof when);
        if (!first)
            kl_buf_putc(&body, ',');
        kl_buf_puts(&body, "{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"ReconcileError\","
                           "\"message\":");
        json_escape_append(&body, msg, strlen(msg));
        kl_buf_printf(&body, ",\"observedGeneration\":%lld,\"lastTransitionTime\":",
                      o->generation);
        int lt = was_false ? json_obj_get(&d, ready, "lastTransitionTime") : -1;
        if (lt >= 0 && d.toks[lt].type == JSON_STRING) {
            size_t len;
            const char *raw = json_raw(&d, lt, &len);
            kl_buf_append(&body, raw, len);
        } else {
            json_escape_append(&body, when, strlen(when));
        }
        kl_buf_putc(&body, '}');
    }
    kl_buf_puts(&body, "]}}");
    if (body.data) {
        kube_write_opts wo = {0};
        wo.subresource = "status";
        kube_patch(c->d.kc, &c->b.watch_res, o->ns, o->name, KUBE_PATCH_MERGE, body.data,
                   body.len, &wo, on_ready_patched, NULL);
    }
done:
    kl_buf_free(&body);
    json_doc_free(&d);
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

static void retire_done(controller *c, script_ver *v)
{
    for (script_ver **p = &c->retired; *p; p = &(*p)->next) {
        if (*p == v) {
            *p = v->next;
            version_free(v, 0);
            return;
        }
    }
}

/* Release everything a reconcile holds; the one exit of every reconcile.
 * result: the metrics result ("success", "error", ...), NULL if cancelled. */
static void end_reconcile(reconcile *rc, int done, const char *result)
{
    controller *c = rc->c;
    script_ver *v = rc->v;
    lua_State *L = lua_host_state(v->h);
    if (rc->ctx)
        lua_ctx_end(rc->ctx);
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
        metrics_workqueue_work_duration(c->name, secs);
        metrics_lua_memory(c->name, lua_host_mem_used(v->h));
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
    metrics_workqueue_retry(c->name);
    metrics_workqueue_add(c->name);
}

static void record_error(reconcile *rc, const char *msg)
{
    controller *c = rc->c;
    const lua_controller_decl *decl = rc->v->decl;
    kl_log(KL_LOG_ERROR, "reconcile failed", "controller", c->name, "key", rc->key, "error", msg,
           NULL);
    lua_ctx_object_ref o = {decl->watch.api_version, decl->watch.kind, rc->ns, rc->name,
                            rc->uid, rc->rv};
    if (c->d.shared)
        lua_ctx_post_event(c->d.shared, &o, "Warning", "ReconcileError", "Reconcile", msg);
    sync_ready(c, rc->key, msg);
    backoff(c, rc->key);
}

/* Read the reconcile's result (raw access: no script code runs here).
 * The runner returns (result, "reconcile" | "finalize"). Returns the
 * metrics result. */
static const char *handle_result(reconcile *rc, int nres)
{
    controller *c = rc->c;
    script_ver *v = rc->v;
    lua_State *co = rc->co;
    int idx = lua_gettop(co) - nres + 1;
    int t = nres > 0 ? lua_type(co, idx) : LUA_TNIL;
    const char *fn = nres > 1 && lua_type(co, idx + 1) == LUA_TSTRING ? lua_tostring(co, idx + 1)
                                                                      : "reconcile";
    int line = !strcmp(fn, "finalize") ? v->finalize_line : v->reconcile_line;
    const char *path = lua_host_path(v->h);
    const char *want = "want nil, { requeue_after = seconds } or { requeue = true }";
    char msg[512];
    if (t == LUA_TNIL) {
        workqueue_forget(c->q, rc->key);
        sync_ready(c, rc->key, NULL);
        return "success";
    }
    if (t != LUA_TTABLE) {
        snprintf(msg, sizeof msg, "%s:%d: %s returned a %s; %s", path, line, fn,
                 lua_typename(co, t), want);
        record_error(rc, msg);
        return "error";
    }
    lua_pushnil(co);
    while (lua_next(co, idx)) {
        lua_pop(co, 1);
        const char *k = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
        if (!k || (strcmp(k, "requeue_after") != 0 && strcmp(k, "requeue") != 0)) {
            snprintf(msg, sizeof msg, "%s:%d: %s returned a table with the unknown key %s%s%s; %s",
                     path, line, fn, k ? "\"" : "(a ", k ? k : luaL_typename(co, -1),
                     k ? "\"" : ")", want);
            lua_pop(co, 1);
            record_error(rc, msg);
            return "error";
        }
    }
    lua_pushliteral(co, "requeue_after");
    int ta = lua_rawget(co, idx);
    lua_pushliteral(co, "requeue");
    lua_rawget(co, idx);
    int requeue = lua_toboolean(co, -1);
    const char *result = "error";
    if (ta == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(co, -2);
        if (!(s >= 0 && s < 1e9)) {
            snprintf(msg, sizeof msg, "%s:%d: %s returned requeue_after = %g; want seconds >= 0",
                     path, line, fn, (double)s);
            record_error(rc, msg);
        } else {
            workqueue_forget(c->q, rc->key);
            workqueue_add_after(c->q, rc->key, (uint64_t)(s * 1000.0));
            sync_ready(c, rc->key, NULL);
            result = "requeue_after";
        }
    } else if (ta != LUA_TNIL) {
        snprintf(msg, sizeof msg, "%s:%d: %s returned requeue_after as a %s; want a number", path,
                 line, fn, lua_typename(co, ta));
        record_error(rc, msg);
    } else if (requeue) {
        backoff(c, rc->key);
        result = "requeue";
    } else {
        workqueue_forget(c->q, rc->key);
        sync_ready(c, rc->key, NULL);
        result = "success";
    }
    lua_pop(co, 2);
    return result;
}

/* Run the coroutine until it waits or ends. */
static void step(reconcile *rc, int nargs)
{
    script_ver *v = rc->v;
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
    lua_ctx_cache cache = {cache_lookup, c};
    rc->ctx = lua_ctx_push(L, c->d.shared, &cache, c->name, a->obj->ns, a->obj->name, resume_cb,
                           rc);                          /* [ud, runner, ctx] */
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
    const store_obj *obj = store_get(informer_store(c->b.watch_inf), key);
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
    start_args a = {rc, obj};
    kl_err err = {0};
    if (lua_host_call(rc->v->h, setup_reconcile, &a, &err) != LUA_OK) {
        record_error(rc, err.msg);
        end_reconcile(rc, 1, "error");
        return;
    }
    step(rc, 2);
}

/* processNextWorkItem, as many times as workers allow. */
static void dispatch(controller *c)
{
    while (!c->stopping && c->synced && (!c->d.gate || c->d.gate->open) &&
           c->active < (size_t)c->workers) {
        const char *key = workqueue_get(c->q);
        if (!key)
            break;
        start_reconcile(c, key);
    }
    note_depth(c);
}

static void on_ready(void *ud) { dispatch(ud); }

/* ---- lifecycle ---- */

static int all_synced(const controller *c)
{
    if (!c->b.watch_inf || !informer_has_synced(c->b.watch_inf))
        return 0;
    for (size_t i = 0; i < c->b.nowns; i++)
        if (!c->b.owns[i].inf || !informer_has_synced(c->b.owns[i].inf))
            return 0;
    return 1;
}

/* Dispatching starts from here: at start (informers another controller
 * already synced), and after each informer's first sync. Not a poll: the
 * informers' synced listeners schedule it, so reconciles start on the loop
 * turn after the last cache is complete. */
static void on_sync_check(loop *l, void *ud)
{
    (void)l;
    controller *c = ud;
    c->sync_timer = 0;
    if (c->stopping || c->synced || !all_synced(c))
        return;
    c->synced = 1;
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

static void on_informer_synced(void *ud, informer *inf)
{
    (void)inf;
    schedule_sync_check(ud);
}

static void wait_for_sync(controller *c)
{
    c->synced = 0;
    schedule_sync_check(c);
}

int controller_start(controller *c, kl_err *err)
{
    workqueue_set_ready_cb(c->q, on_ready, c);
    metrics_controller_started(c->name, c->workers);
    c->started = 1;
    if (binding_start(c, &c->b, c->cur->decl, lua_host_path(c->cur->h), err) != 0)
        return -1;
    wait_for_sync(c);
    return 0;
}

int controller_replace(controller *c, lua_host *h, kl_err *err)
{
    const lua_controller_decl *decl = lua_host_decl(h);
    if (strcmp(decl->name, c->name) != 0)
        return kl_err_set(err, KL_EINVAL, "%s: the controller name changed from %s to %s",
                          lua_host_path(h), c->name, decl->name);
    binding nb;
    if (binding_resolve(c, decl, lua_host_path(h), &nb, err) != 0)
        return -1;
    script_ver *v = version_new(c, h, err);
    if (!v) {
        binding_free(c, &nb);
        return -1;
    }
    /* The new references first: an informer both versions use never drops
     * to zero references, so it keeps running and keeps its cache. */
    if (c->started && binding_start(c, &nb, decl, lua_host_path(h), err) != 0) {
        binding_free(c, &nb);
        version_free(v, 1);
        return -1;
    }
    binding old = c->b;
    c->b = nb;
    binding_free(c, &old);
    script_ver *prev = c->cur;
    c->cur = v;
    if (prev->active == 0) {
        version_free(prev, 0);
    } else {
        prev->next = c->retired;
        c->retired = prev;
    }
    c->workers = c->d.workers > 0 ? c->d.workers : decl->workers > 0 ? decl->workers : 1;
    if (c->started) {
        metrics_controller_started(c->name, c->workers);
        /* metrics_controller_started zeroes the gauge; put back what runs */
        metrics_active_workers_add(c->name, (int)c->active);
        if (!all_synced(c))
            wait_for_sync(c);
        schedule_dispatch(c);
    }
    return 0;
}

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
    cache->ud = c;
    return c->cur->h;
}

void controller_shutdown(controller *c)
{
    c->stopping = 1;
    if (c->q)
        workqueue_shutdown(c->q);
}

controller_gate *controller_gate_new(int open)
{
    controller_gate *g = calloc(1, sizeof *g);
    if (g)
        g->open = open;
    return g;
}

void controller_gate_set(controller_gate *g, int open)
{
    g->open = open;
    /* Keys queued meanwhile wait for a dispatch: ask for one. Closing
     * lets reconciles in flight finish. */
    for (controller *c = g->members; open && c; c = c->gate_next)
        schedule_dispatch(c);
}

int controller_gate_is_open(const controller_gate *g) { return g->open; }

void controller_gate_free(controller_gate *g) { free(g); }

void controller_free(controller *c)
{
    if (!c)
        return;
    if (c->d.gate) {
        controller **p = &c->d.gate->members;
        while (*p && *p != c)
            p = &(*p)->gate_next;
        if (*p)
            *p = c->gate_next;
    }
    c->stopping = 1;
    while (c->running)
        end_reconcile(c->running, 0, NULL);
    if (c->dispatch_timer)
        loop_timer_cancel(c->d.l, c->dispatch_timer);
    if (c->sync_timer)
        loop_timer_cancel(c->d.l, c->sync_timer);
    binding_free(c, &c->b);
    if (c->q)
        workqueue_free(c->q);
    while (c->retired) {
        script_ver *v = c->retired;
        c->retired = v->next;
        version_free(v, 0);
    }
    version_free(c->cur, 0);
    free(c->name);
    free(c);
}
