/* controller_binding.c - what one version of a controller watches (see
 * controller_binding.h).
 *
 * Provides: controller_binding (resolve, start, caches, free) and the
 * owned-kind mapping (owner references back to the watched kind's keys).
 * Uses: discovery (discovery_lookup_patient: a kind waits for an API server
 * that is away, as informers do), informer (registry, handlers,
 * synced listeners), store, rest (kube_resource), json, buf, err.
 *
 * Every kind is looked up at once; the first failure cancels the others
 * and reports; the last answer completes the binding. The binding lives on
 * the heap because informers hold it as their handlers' ud.
 */
#include "controller_binding.h"

#include "buf.h"
#include "json.h"
#include "log.h"
#include "predicate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A secondary kind: owns[i] (mapped back by owner references) or
 * watches[i] (mapped by the script's function). */
typedef struct owned {
    char *api_version, *kind;     /* as declared */
    char *ns, *selector;          /* watches[i]'s own, or NULL */
    size_t watches_index;         /* 0 for owns[i]; i + 1 for watches[i] */
    const lua_predicate *pred;    /* the declaration's (in h), set by start */
    struct controller_binding *b;
    kube_resource res;
    informer *inf;
    int handler;
    int synced_listener;          /* 0 = none */
    int failed_listener;          /* 0 = none */
} owned;

struct controller_binding {
    char *api_version, *kind;     /* the watched kind, as declared */
    kube_resource watch_res;
    informer *watch_inf;
    int watch_handler;
    int watch_synced_listener;    /* 0 = none */
    int watch_failed_listener;    /* 0 = none */
    owned *owns;                  /* owns, then watches */
    size_t nowns;
    char *ns;                     /* informer namespace, or NULL */
    informer_registry *reg;       /* set by start */
    const store_transform *cache; /* read by start only; NULL = the default */
    lua_host *h;                  /* the script (predicates, maps), set by start */
    int fn_failed;                /* a predicate or map failed: reported once */
    controller_binding_events ev;
};

typedef struct slot {
    struct controller_binding_resolve *r;
    size_t i;                     /* 0: watch, i: owns[i - 1] */
    discovery_req *req;
} slot;

struct controller_binding_resolve {
    controller_binding *b;
    char *script;
    slot *slots;
    size_t nslots, pending;
    controller_binding_resolved_cb done;
    void *ud;
};

/* ---- free ---- */

static void release(controller_binding *b, informer *inf, int handler, int listener,
                    int failed_listener)
{
    if (!inf)
        return;
    if (listener > 0)
        informer_remove_synced_listener(inf, listener);
    if (failed_listener > 0)
        informer_remove_failed_listener(inf, failed_listener);
    informer_remove_handler(inf, handler);
    informer_registry_release(b->reg, inf);
}

void controller_binding_free(controller_binding *b)
{
    if (!b)
        return;
    release(b, b->watch_inf, b->watch_handler, b->watch_synced_listener,
            b->watch_failed_listener);
    for (size_t i = 0; i < b->nowns; i++) {
        release(b, b->owns[i].inf, b->owns[i].handler, b->owns[i].synced_listener,
                b->owns[i].failed_listener);
        kube_resource_free(&b->owns[i].res);
        free(b->owns[i].api_version);
        free(b->owns[i].kind);
        free(b->owns[i].ns);
        free(b->owns[i].selector);
    }
    free(b->owns);
    kube_resource_free(&b->watch_res);
    free(b->api_version);
    free(b->kind);
    free(b->ns);
    free(b);
}

/* ---- resolving ---- */

static controller_binding *binding_new(const lua_controller_decl *decl, const char *ns)
{
    controller_binding *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    int bad = !(b->api_version = strdup(decl->watch.api_version)) ||
              !(b->kind = strdup(decl->watch.kind)) || (ns && *ns && !(b->ns = strdup(ns)));
    size_t n = decl->nowns + decl->nwatches;
    if (!bad && n) {
        bad = !(b->owns = calloc(n, sizeof *b->owns));
        for (size_t i = 0; !bad && i < n; i++) {
            owned *o = &b->owns[i];
            const lua_typeref *t = i < decl->nowns ? &decl->owns[i]
                                                   : &decl->watches[i - decl->nowns].type;
            b->nowns++;
            o->b = b;
            bad = !(o->api_version = strdup(t->api_version)) || !(o->kind = strdup(t->kind));
            if (!bad && i >= decl->nowns) {
                const lua_mapped_watch *w = &decl->watches[i - decl->nowns];
                o->watches_index = i - decl->nowns + 1;
                bad = (w->namespace && !(o->ns = strdup(w->namespace))) ||
                      (w->selector && !(o->selector = strdup(w->selector)));
            }
        }
    }
    if (bad) {
        controller_binding_free(b);
        return NULL;
    }
    return b;
}

void controller_binding_resolve_cancel(controller_binding_resolve *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nslots; i++)
        discovery_cancel(r->slots[i].req);
    controller_binding_free(r->b);
    free(r->slots);
    free(r->script);
    free(r);
}

static void on_lookup(void *ud, const kube_resource *res, const kl_err *err)
{
    slot *s = ud;
    controller_binding_resolve *r = s->r;
    controller_binding *b = r->b;
    controller_binding_resolved_cb done = r->done;
    void *done_ud = r->ud;
    s->req = NULL;
    kube_resource *dst = s->i == 0 ? &b->watch_res : &b->owns[s->i - 1].res;
    kl_err e = {0};
    if (!res) {
        char what[32];
        const owned *o = s->i ? &b->owns[s->i - 1] : NULL;
        if (!o)
            snprintf(what, sizeof what, "watch");
        else if (o->watches_index)
            snprintf(what, sizeof what, "watches[%zu]", o->watches_index);
        else
            snprintf(what, sizeof what, "owns[%zu]", s->i);
        kl_err_set(&e, err->code, "%s: %s: %s", r->script, what, err->msg);
    } else if (kube_resource_copy(dst, res) != 0) {
        kl_err_set(&e, KL_ENOMEM, "%s: out of memory", r->script);
    } else if (--r->pending > 0) {
        return;
    } else {
        r->b = NULL;          /* the caller's now */
        controller_binding_resolve_cancel(r);
        done(done_ud, b, NULL);
        return;
    }
    controller_binding_resolve_cancel(r);   /* the other lookups, and b */
    done(done_ud, NULL, &e);
}

controller_binding_resolve *controller_binding_resolve_start(discovery *d,
                                                             const lua_controller_decl *decl,
                                                             const char *script, const char *ns,
                                                             controller_binding_resolved_cb done,
                                                             void *ud)
{
    controller_binding_resolve *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->done = done;
    r->ud = ud;
    r->nslots = decl->nowns + decl->nwatches + 1;
    r->b = binding_new(decl, ns);
    r->slots = calloc(r->nslots, sizeof *r->slots);
    r->script = strdup(script ? script : "");
    if (!r->b || !r->slots || !r->script)
        goto fail;
    for (size_t i = 0; i < r->nslots; i++) {
        slot *s = &r->slots[i];
        const lua_typeref *t = i == 0                ? &decl->watch
                               : i <= decl->nowns    ? &decl->owns[i - 1]
                                                     : &decl->watches[i - 1 - decl->nowns].type;
        s->r = r;
        s->i = i;
        if (!(s->req = discovery_lookup_patient(d, t->api_version, t->kind, on_lookup, s)))
            goto fail;
        r->pending++;
    }
    return r;
fail:
    controller_binding_resolve_cancel(r);
    return NULL;
}

/* ---- events ---- */

/* A failing predicate or map is reported once per binding (that is, per
 * loaded version of the script): it runs on every event. */
static void fn_failed(controller_binding *b, const kl_err *err)
{
    if (b->fn_failed)
        return;
    b->fn_failed = 1;
    kl_log(KL_LOG_ERROR, "script function failed (reported once for this version)", "file",
           lua_host_path(b->h), "error", err->msg, NULL);
}

static int passes(controller_binding *b, const lua_predicate *p, const store_obj *old,
                  const store_obj *cur)
{
    kl_err err = {0};
    int pass = predicate_passes(b->h, p, old, cur, &err);
    if (err.msg[0])
        fn_failed(b, &err);
    return pass;
}

static void on_add(void *ud, const store_obj *o)
{
    controller_binding *b = ud;
    b->ev.enqueue(b->ev.ud, o->key, o);
}

/* An update that carries a new resourceVersion may be the echo of a write;
 * one without (a resync) is not. */
static const store_obj *changed(const store_obj *old, const store_obj *cur)
{
    return old && old->rv && cur->rv && strcmp(old->rv, cur->rv) != 0 ? cur : NULL;
}

static void on_update(void *ud, const store_obj *old, const store_obj *cur)
{
    controller_binding *b = ud;
    if (passes(b, &lua_host_decl(b->h)->watch.predicate, old, cur))
        b->ev.enqueue(b->ev.ud, cur->key, changed(old, cur));
}

static void on_delete(void *ud, const store_obj *o)
{
    controller_binding *b = ud;
    b->ev.enqueue(b->ev.ud, o->key, NULL);
}

static int same_group(const char *a, const char *b)
{
    const char *sa = strchr(a, '/'), *sb = strchr(b, '/');
    size_t la = sa ? (size_t)(sa - a) : 0, lb = sb ? (size_t)(sb - b) : 0;
    return la == lb && strncmp(a, b, la) == 0;
}

/* handleObject: enqueue the owners of an owned object that are of the
 * watched kind. */
static void enqueue_owners(controller_binding *b, const store_obj *o, const store_obj *from)
{
    json_doc d = {0};
    if (!o || json_parse(&d, o->json, o->json_len, NULL) != 0)
        goto done;
    int refs = json_path(&d, 0, "metadata.ownerReferences");
    for (int r = json_first(&d, refs); r >= 0; r = json_next(&d, r)) {
        if (!json_str_eq(&d, json_obj_get(&d, r, "kind"), b->kind))
            continue;
        char *av = json_str_dup(&d, json_obj_get(&d, r, "apiVersion"));
        char *name = json_str_dup(&d, json_obj_get(&d, r, "name"));
        if (av && name && same_group(av, b->api_version)) {
            char key[STORE_KEY_MAX];
            if (store_key(key, sizeof key, b->watch_res.namespaced ? o->ns : NULL, name) == 0)
                b->ev.enqueue(b->ev.ud, key, from);
        }
        free(av);
        free(name);
    }
done:
    json_doc_free(&d);
}

typedef struct emit_to {
    controller_binding *b;
    const store_obj *from;
} emit_to;

static void emit_key(void *ud, const char *key)
{
    emit_to *t = ud;
    t->b->ev.enqueue(t->b->ev.ud, key, t->from);
}

/* The keys a secondary object maps to: its owners, or watches[i].map(obj).
 * from: the event's object (enqueue's). */
static void enqueue_mapped(owned *ow, const store_obj *o, const store_obj *from)
{
    controller_binding *b = ow->b;
    if (!ow->watches_index) {
        enqueue_owners(b, o, from);
        return;
    }
    const lua_mapped_watch *w = &lua_host_decl(b->h)->watches[ow->watches_index - 1];
    kl_err err = {0};
    emit_to t = {b, from};
    if (predicate_map(b->h, w->map_ref, o, emit_key, &t, &err) < 0)
        fn_failed(b, &err);
}

static void on_owned_add(void *ud, const store_obj *o) { enqueue_mapped(ud, o, o); }
static void on_owned_update(void *ud, const store_obj *old, const store_obj *cur)
{
    owned *ow = ud;
    if (!passes(ow->b, ow->pred, old, cur))
        return;
    const store_obj *from = changed(old, cur);
    enqueue_mapped(ow, old, from);
    enqueue_mapped(ow, cur, from);
}
static void on_owned_delete(void *ud, const store_obj *o) { enqueue_mapped(ud, o, NULL); }

static void on_informer_synced(void *ud, informer *inf)
{
    (void)inf;
    controller_binding *b = ud;
    b->ev.synced(b->ev.ud);
}

/* A LIST or WATCH the API server refuses (400, 403, 404): the informer
 * retries with backoff; say once which script needs what. */
static void on_informer_failed(void *ud, informer *inf, long code, const char *message)
{
    controller_binding *b = ud;
    const kube_resource *r = informer_resource(inf);
    char c[16];
    snprintf(c, sizeof c, "%ld", code);
    kl_log(KL_LOG_ERROR,
           code == 403 ? "cannot list or watch (forbidden: check klua's RBAC); retrying"
                       : "cannot list or watch; retrying",
           "file", lua_host_path(b->h), "resource", r->resource, "group", r->group, "code", c,
           "error", message, NULL);
}

/* ---- start and caches ---- */

void controller_binding_set_cache(controller_binding *b, const store_transform *t) { b->cache = t; }

int controller_binding_start(controller_binding *b, informer_registry *reg, lua_host *h,
                             const char *selector, const controller_binding_events *ev,
                             kl_err *err)
{
    informer_handler wh = {on_add, on_update, on_delete, b};
    const lua_controller_decl *decl = lua_host_decl(h);
    b->reg = reg;
    b->h = h;
    b->ev = *ev;
    b->watch_inf = informer_registry_get_cached(reg, &b->watch_res, b->ns, selector, b->cache);
    if (!b->watch_inf)
        return kl_err_set(err, KL_ENOMEM, "cannot start the informer for %s", b->kind);
    b->watch_handler = informer_add_handler(b->watch_inf, &wh);
    b->watch_synced_listener = informer_add_synced_listener(b->watch_inf, on_informer_synced, b);
    b->watch_failed_listener = informer_add_failed_listener(b->watch_inf, on_informer_failed, b);
    if (b->watch_synced_listener < 0 || b->watch_failed_listener < 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->nowns; i++) {
        owned *o = &b->owns[i];
        informer_handler oh = {on_owned_add, on_owned_update, on_owned_delete, o};
        o->pred = o->watches_index ? &decl->watches[o->watches_index - 1].type.predicate
                                   : &decl->owns[i].predicate;
        if (!(o->inf = informer_registry_get(reg, &o->res, o->ns ? o->ns : b->ns, o->selector)))
            return kl_err_set(err, KL_ENOMEM, "cannot start the informer for %s", o->kind);
        o->handler = informer_add_handler(o->inf, &oh);
        o->synced_listener = informer_add_synced_listener(o->inf, on_informer_synced, b);
        o->failed_listener = informer_add_failed_listener(o->inf, on_informer_failed, b);
        if (o->synced_listener < 0 || o->failed_listener < 0)
            return kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    return 0;
}

int controller_binding_synced(const controller_binding *b)
{
    if (!b || !b->watch_inf || !informer_has_synced(b->watch_inf))
        return 0;
    for (size_t i = 0; i < b->nowns; i++)
        if (!b->owns[i].inf || !informer_has_synced(b->owns[i].inf))
            return 0;
    return 1;
}

const kube_resource *controller_binding_watch_resource(const controller_binding *b)
{
    return &b->watch_res;
}

const store *controller_binding_watch_store(const controller_binding *b)
{
    return b && b->watch_inf ? informer_store(b->watch_inf) : NULL;
}

const store *controller_binding_cache(const controller_binding *b, const char *api_version,
                                      const char *kind, const kube_resource **res)
{
    if (!strcmp(kind, b->kind) && !strcmp(api_version, b->api_version)) {
        *res = &b->watch_res;
        return b->watch_inf ? informer_store(b->watch_inf) : NULL;
    }
    for (size_t i = 0; i < b->nowns; i++) {
        /* a cache filtered by a watches[i] selector or namespace is not the kind's */
        if (b->owns[i].selector || b->owns[i].ns)
            continue;
        if (!strcmp(kind, b->owns[i].kind) && !strcmp(api_version, b->owns[i].api_version)) {
            *res = &b->owns[i].res;
            return b->owns[i].inf ? informer_store(b->owns[i].inf) : NULL;
        }
    }
    return NULL;
}

const kube_resource *controller_binding_resource(const controller_binding *b, size_t i)
{
    if (i == 0)
        return &b->watch_res;
    return i <= b->nowns ? &b->owns[i - 1].res : NULL;
}
