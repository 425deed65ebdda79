/* informer.c - reflector, store and handlers for one watched resource.
 *
 * Provides: see informer.h. The reflector is a small state machine on the
 * loop: LISTING (paged LIST) -> WATCHING -> (watch ended) WATCHING again from
 * the last resourceVersion, or LISTING again after 410 Gone, or WAITING
 * (backoff) after an error. Everything runs on the loop thread; handlers are
 * called synchronously while the store holds the new state.
 * Uses: rest, kube, store, loop, watchframe (events, shallow reading of
 * LIST pages), json, metrics, health (list/watch failures for /healthz), log.
 *
 * A LIST page is read item by item (watchframe_item) rather than decoded
 * whole, so that one item json.c cannot decode costs that item only.
 */
#include "informer.h"

#include "rywcache.h"

#include "json.h"
#include "log.h"
#include "health.h"
#include "metrics.h"
#include "util.h"
#include "watchframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_PAGE 500
#define BACKOFF_START_MS 800
#define BACKOFF_MAX_MS 30000
#define HEALTHY_RESET_MS 120000
#define SHORT_WATCH_MS 1000

typedef enum { INF_STOPPED, INF_LISTING, INF_WATCHING, INF_WAITING } inf_state;

typedef struct handler_slot {
    int id;
    int active;
    informer_handler h;
} handler_slot;

/* A listener for the first sync (informer_add_synced_listener). */
typedef struct synced_listener {
    int id;
    void (*cb)(void *ud, informer *inf);   /* NULL once removed while firing */
    void *ud;
    struct synced_listener *next;
} synced_listener;

/* A listener for failures retrying will not fix. */
typedef struct failed_listener {
    int id;
    informer_failed_cb cb;
    void *ud;
    struct failed_listener *next;
} failed_listener;

/* A set of keys seen during a relist, to find the ones that vanished. */
typedef struct keyset {
    char **slots;
    size_t cap, len;
} keyset;

struct informer {
    kube_client *client;
    kube_resource res;
    char *ns;
    char *selector;
    char *api_version;       /* res as "group/version", for items lacking it */
    char *metric_res;        /* "group/version/resource", the metrics' label */
    size_t reported;         /* objects counted in klua_cache_objects */
    informer_skip_cb on_skip;
    void *skip_ud;
    store *store;
    handler_slot *handlers;
    size_t nhandlers;
    int next_handler_id;
    inf_state state;
    int synced;
    int relisting;           /* this LIST replaces an existing store */
    char *last_rv;           /* last resourceVersion seen (list, event or bookmark) */
    store_transform transform; /* what the cache keeps of each object */
    kl_buf scratch;          /* the kept JSON of the object being built */
    json_doc page;           /* tokens of the LIST page being read */
    int watch_list;          /* try the streaming list (sendInitialEvents) */
    int streaming;           /* a streaming list is delivering its initial events */
    char *continue_token;
    keyset seen;
    kube_call *call;
    loop_timer_id timer;
    uint64_t backoff_ms;
    uint64_t healthy_since;  /* when the current watch started */
    unsigned watch_events;   /* events on the current watch */
    int dispatching;         /* handlers being called: defer compaction */
    synced_listener *listeners;
    int next_listener_id;
    int firing_listeners;    /* listeners being called: defer unlinking */
    failed_listener *failed_listeners;
    int next_failed_id;
    int failure_reported;    /* a 400/403/404 run was reported */
};

static void start_list(informer *inf);
static void start_watch(informer *inf);

/* --- keyset ------------------------------------------------------------- */

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void keyset_clear(keyset *ks)
{
    for (size_t i = 0; i < ks->cap; i++)
        free(ks->slots[i]);
    free(ks->slots);
    memset(ks, 0, sizeof *ks);
}

static int keyset_add(keyset *ks, const char *key)
{
    if ((ks->len + 1) * 2 > ks->cap) {
        size_t ncap = ks->cap ? ks->cap * 2 : 1024;
        char **ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < ks->cap; i++) {
            if (!ks->slots[i])
                continue;
            size_t j = hash_str(ks->slots[i]) & (ncap - 1);
            while (ns[j])
                j = (j + 1) & (ncap - 1);
            ns[j] = ks->slots[i];
        }
        free(ks->slots);
        ks->slots = ns;
        ks->cap = ncap;
    }
    size_t j = hash_str(key) & (ks->cap - 1);
    while (ks->slots[j]) {
        if (!strcmp(ks->slots[j], key))
            return 0;
        j = (j + 1) & (ks->cap - 1);
    }
    if (!(ks->slots[j] = strdup(key)))
        return -1;
    ks->len++;
    return 0;
}

static int keyset_has(const keyset *ks, const char *key)
{
    if (!ks->cap)
        return 0;
    size_t j = hash_str(key) & (ks->cap - 1);
    while (ks->slots[j]) {
        if (!strcmp(ks->slots[j], key))
            return 1;
        j = (j + 1) & (ks->cap - 1);
    }
    return 0;
}

/* --- handlers ----------------------------------------------------------- */

static void notify_add(informer *inf, const store_obj *o)
{
    inf->dispatching++;
    for (size_t i = 0; i < inf->nhandlers; i++)
        if (inf->handlers[i].active && inf->handlers[i].h.on_add)
            inf->handlers[i].h.on_add(inf->handlers[i].h.ud, o);
    inf->dispatching--;
}

static void notify_update(informer *inf, const store_obj *old, const store_obj *cur)
{
    inf->dispatching++;
    for (size_t i = 0; i < inf->nhandlers; i++)
        if (inf->handlers[i].active && inf->handlers[i].h.on_update)
            inf->handlers[i].h.on_update(inf->handlers[i].h.ud, old, cur);
    inf->dispatching--;
}

static void notify_delete(informer *inf, const store_obj *o)
{
    inf->dispatching++;
    for (size_t i = 0; i < inf->nhandlers; i++)
        if (inf->handlers[i].active && inf->handlers[i].h.on_delete)
            inf->handlers[i].h.on_delete(inf->handlers[i].h.ud, o);
    inf->dispatching--;
}

/* Put o in the store and tell the handlers; takes o. Unchanged objects
 * (same resourceVersion) are dropped quietly: a relist or a rewatch must
 * not reconcile what did not change. */
static void apply_upsert(informer *inf, store_obj *o)
{
    const store_obj *cur = store_get(inf->store, o->key);
    if (cur && cur->rv && o->rv && !strcmp(cur->rv, o->rv)) {
        store_obj_free(o);
        return;
    }
    store_obj *old = NULL;
    if (store_put(inf->store, o, &old) != 0) {
        kl_log(KL_LOG_ERROR, "cache insert failed", "resource", inf->res.resource, "key", o->key,
               NULL);
        store_obj_free(o);
        return;
    }
    rywcache_observe(inf->store, o->key, o);    /* the watch caught up with a write? */
    if (old)
        notify_update(inf, old, o);
    else
        notify_add(inf, o);
    store_obj_free(old);
}

static void apply_delete(informer *inf, const char *key, store_obj *final)
{
    store_obj *old = store_remove(inf->store, key);
    rywcache_observe(inf->store, key, NULL);
    if (old || final)
        notify_delete(inf, final ? final : old);
    store_obj_free(old);
}

static void set_rv(informer *inf, const char *rv)
{
    if (!rv || !*rv)
        return;
    char *c = strdup(rv);
    if (!c)
        return;
    free(inf->last_rv);
    inf->last_rv = c;
}

/* Tell the cache gauge how the store's size changed since the last call. */
static void note_size(informer *inf)
{
    size_t n = store_len(inf->store);
    if (n != inf->reported)
        metrics_cache_objects_add(inf->metric_res, n >= inf->reported
                                                       ? (long)(n - inf->reported)
                                                       : -(long)(inf->reported - n));
    inf->reported = n;
}

/* "ns/name" or "name", the store's key for what id names; caller owns it.
 * NULL when the name is unknown or memory is short. */
static char *ident_key(const watchframe_ident *id)
{
    kl_buf b = KL_BUF_INIT;
    if (!id->name || !id->name[0])
        return NULL;
    if (id->namespace && id->namespace[0] ? kl_buf_printf(&b, "%s/%s", id->namespace, id->name)
                                          : kl_buf_puts(&b, id->name)) {
        kl_buf_free(&b);
        return NULL;
    }
    return kl_buf_take(&b);
}

/* An object (raw JSON) that cannot be decoded or cached: log it once, count
 * it, tell the skip handler. *id receives what could be read of it (caller
 * frees it with watchframe_ident_free). */
static void skip_object(informer *inf, const char *raw, size_t len, const char *why,
                        watchframe_ident *id)
{
    if (watchframe_ident_read(raw, len, id) != 0)
        memset(id, 0, sizeof *id);
    char *key = ident_key(id);
    if (key)
        kl_log(KL_LOG_WARN, "skipping an object that cannot be decoded", "resource",
               inf->res.resource, "object", key, "reason", why, NULL);
    else
        kl_log(KL_LOG_WARN, "skipping an object that cannot be decoded", "resource",
               inf->res.resource, "resourceVersion",
               id->resource_version ? id->resource_version : "unknown", "reason", why, NULL);
    free(key);
    metrics_informer_skipped(inf->metric_res, 1);
    if (inf->on_skip) {
        informer_skipped sk = {id->namespace, id->name, id->uid, id->resource_version, why};
        inf->on_skip(inf->skip_ud, inf, &sk);
    }
}

/* The store object for the object token root of d, kept as the transform
 * says. Objects from a list of a built-in type carry no apiVersion/kind:
 * they are added so Lua always sees a whole object. Caller owns the result;
 * NULL with err set. */
static store_obj *obj_from_tokens(informer *inf, const json_doc *d, int root, kl_err *err)
{
    kl_buf_reset(&inf->scratch);
    if (store_transform_apply(&inf->transform, d, root, inf->api_version, inf->res.kind,
                              &inf->scratch) != 0) {
        if (kl_buf_failed(&inf->scratch))
            kl_err_set(err, KL_ENOMEM, "cannot cache object: out of memory");
        else
            kl_err_set(err, KL_EINVAL, "cannot cache object: not a JSON object");
        return NULL;
    }
    return store_obj_from_doc(d, root, inf->scratch.data, inf->scratch.len, err);
}

/* The same from raw JSON: one item of a LIST page read shallowly, or the
 * object of an event that could not be decoded whole. */
static store_obj *obj_from_raw(informer *inf, const char *raw, size_t len, kl_err *err)
{
    json_doc d = {0};
    store_obj *o = NULL;
    if (json_parse(&d, raw, len, err) != 0)
        kl_err_wrap(err, "cannot cache object");
    else
        o = obj_from_tokens(inf, &d, 0, err);
    json_doc_free(&d);
    return o;
}

/* --- backoff ------------------------------------------------------------ */

static void on_backoff_timer(loop *l, void *ud)
{
    (void)l;
    informer *inf = ud;
    inf->timer = 0;
    if (inf->state != INF_WAITING)
        return;
    if (inf->last_rv && !inf->relisting && inf->synced)
        start_watch(inf);
    else
        start_list(inf);
}

/* Tell the failed listeners about a 400/403/404, once per run of them. */
static void report_failure(informer *inf, const kube_result *res)
{
    long code = res->http_code;
    if ((code != 400 && code != 403 && code != 404) || inf->failure_reported)
        return;
    inf->failure_reported = 1;
    for (failed_listener *l = inf->failed_listeners; l; l = l->next)
        l->cb(l->ud, inf, code, res->message[0] ? res->message : res->reason);
}

static void retry_later(informer *inf, const char *why)
{
    loop *l = kube_client_loop(inf->client);
    if (inf->backoff_ms == 0)
        inf->backoff_ms = BACKOFF_START_MS;
    else if (inf->backoff_ms < BACKOFF_MAX_MS)
        inf->backoff_ms *= 2;
    if (inf->backoff_ms > BACKOFF_MAX_MS)
        inf->backoff_ms = BACKOFF_MAX_MS;
    /* jitter: up to +100% as client-go's wait.Jitter(1.0) */
    uint64_t delay = inf->backoff_ms + kl_rand_below(inf->backoff_ms + 1);
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    char ms[32];
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)delay);
    kl_log(KL_LOG_WARN, "watch or list failed, retrying", "resource", inf->res.resource,
           "reason", why, "retry_ms", ms, NULL);
    inf->state = INF_WAITING;
    health_informer_failed(inf, inf->metric_res);
    inf->timer = loop_timer_add(l, delay, on_backoff_timer, inf);
}

/* --- LIST ----------------------------------------------------------------- */

struct vanished {
    informer *inf;
    char **keys;
    size_t n, cap;
};

static int collect_vanished(void *ud, const store_obj *o)
{
    struct vanished *v = ud;
    if (keyset_has(&v->inf->seen, o->key))
        return 0;
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 16;
        char **nk = realloc(v->keys, ncap * sizeof *nk);
        if (!nk)
            return 1;
        v->keys = nk;
        v->cap = ncap;
    }
    if (!(v->keys[v->n] = strdup(o->key)))
        return 1;
    v->n++;
    return 0;
}

/* Unlinks the listeners removed while they were being called. */
static void prune_listeners(informer *inf)
{
    synced_listener **pp = &inf->listeners;
    while (*pp) {
        synced_listener *l = *pp;
        if (l->cb) {
            pp = &l->next;
        } else {
            *pp = l->next;
            free(l);
        }
    }
}

static void fire_synced_listeners(informer *inf)
{
    inf->firing_listeners = 1;
    for (synced_listener *l = inf->listeners; l; l = l->next)
        if (l->cb)
            l->cb(l->ud, inf);
    inf->firing_listeners = 0;
    prune_listeners(inf);
}

/* The first LIST (or streaming list) is in the store: vanished objects of a
 * relist become deletes, the synced listeners hear of it. */
static void finish_sync(informer *inf)
{
    if (inf->relisting) {
        /* Objects missing from the new list vanished while we were not
         * watching: their final state is unknown, the last cached one is
         * what handlers get. Collect first: the store must not change
         * while it is being visited. */
        struct vanished v = {inf, NULL, 0, 0};
        store_each(inf->store, collect_vanished, &v);
        for (size_t i = 0; i < v.n; i++) {
            kl_log(KL_LOG_V1, "object vanished during relist", "resource", inf->res.resource, "key",
                   v.keys[i], NULL);
            apply_delete(inf, v.keys[i], NULL);
            free(v.keys[i]);
        }
        free(v.keys);
        note_size(inf);
    }
    keyset_clear(&inf->seen);
    inf->relisting = 0;
    inf->failure_reported = 0;
    health_informer_ok(inf);
    int first = !inf->synced;
    inf->synced = 1;
    if (first) {
        char n[32];
        snprintf(n, sizeof n, "%zu", store_len(inf->store));
        kl_log(KL_LOG_V1, "cache synced", "resource", inf->res.resource, "objects", n, NULL);
        fire_synced_listeners(inf);
    }
}

static void finish_list(informer *inf)
{
    json_doc_free(&inf->page);
    finish_sync(inf);
    start_watch(inf);
}

/* metadata.continue and metadata.resourceVersion of a LIST page, each
 * malloc'd or NULL. -1 when the page is not a JSON object with a decodable
 * metadata (or memory is short). */
static int list_page_meta(const char *body, size_t len, char **cont, char **rv)
{
    const char *meta;
    size_t mlen;
    json_doc d = {0};
    int rc = -1;
    *cont = *rv = NULL;
    int found = watchframe_member(body, len, "metadata", &meta, &mlen);
    if (found == 1)
        return 0;
    if (found < 0 || json_parse(&d, meta, mlen, NULL) != 0)
        goto done;
    int c = json_obj_get(&d, 0, "continue"), r = json_obj_get(&d, 0, "resourceVersion");
    if ((c >= 0 && d.toks[c].type == JSON_STRING && !(*cont = json_str_dup(&d, c))) ||
        (r >= 0 && d.toks[r].type == JSON_STRING && !(*rv = json_str_dup(&d, r))))
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        free(*cont);
        free(*rv);
        *cont = *rv = NULL;
    }
    json_doc_free(&d);
    return rc;
}

/* One item of a LIST page: into the store, or skipped when it cannot be
 * cached (its key, when readable, still counts as seen, so a relist keeps
 * its older cached version). o NULL: raw[0..rlen) and why say what failed. */
static void list_item(informer *inf, store_obj *o, const char *raw, size_t rlen,
                      const char *why)
{
    if (!o) {
        watchframe_ident id;
        skip_object(inf, raw, rlen, why, &id);
        char *key = ident_key(&id);
        if (key && inf->relisting)
            keyset_add(&inf->seen, key);
        free(key);
        watchframe_ident_free(&id);
        return;
    }
    if (inf->relisting)
        keyset_add(&inf->seen, o->key);
    apply_upsert(inf, o);
}

/* The common case: the page decodes whole, and its tokens serve the page's
 * metadata and every item (one pass over the bytes). 1 when the page does
 * not decode (an item too deep, say): the shallow reader below takes over. */
static int list_page_tokens(informer *inf, const char *body, size_t len, char **cont, char **rv)
{
    json_doc *d = &inf->page;
    *cont = *rv = NULL;
    if (json_parse(d, body, len, NULL) != 0 || d->toks[0].type != JSON_OBJECT)
        return 1;
    int meta = json_obj_get(d, 0, "metadata");
    int c = json_obj_get(d, meta, "continue"), r = json_obj_get(d, meta, "resourceVersion");
    if ((c >= 0 && d->toks[c].type == JSON_STRING && !(*cont = json_str_dup(d, c))) ||
        (r >= 0 && d->toks[r].type == JSON_STRING && !(*rv = json_str_dup(d, r)))) {
        free(*cont);
        *cont = NULL;
        return -1;
    }
    int items = json_obj_get(d, 0, "items");
    if (items >= 0 && d->toks[items].type != JSON_ARRAY && d->toks[items].type != JSON_NULL) {
        free(*cont);
        free(*rv);
        *cont = *rv = NULL;
        return -1;
    }
    for (int it = json_first(d, items); it >= 0; it = json_next(d, it)) {
        kl_err err = {0};
        store_obj *o = obj_from_tokens(inf, d, it, &err);
        size_t rlen;
        const char *raw = o ? NULL : json_raw(d, it, &rlen);
        list_item(inf, o, raw, o ? 0 : rlen, err.msg);
    }
    return 0;
}

/* Put every item of a LIST page in the store; an item that cannot be
 * decoded is skipped (its key, when readable, still counts as seen, so a
 * relist keeps its older cached version). -1 when the items array itself
 * is malformed. */
static int list_page_items(informer *inf, const char *body, size_t len)
{
    const char *items, *raw;
    size_t ilen, rlen, pos = 0;
    int found = watchframe_member(body, len, "items", &items, &ilen), more;
    if (found == 1)
        return 0; /* "items": omitted when empty by some servers */
    if (found < 0)
        return -1;
    if (ilen == 4 && !memcmp(items, "null", 4))
        return 0;
    while ((more = watchframe_item(items, ilen, &pos, &raw, &rlen)) == 0) {
        kl_err err = {0};
        store_obj *o = obj_from_raw(inf, raw, rlen, &err);
        list_item(inf, o, raw, rlen, err.msg);
    }
    return more < 0 ? -1 : 0;
}

static void on_list_page(void *ud, kube_result *res)
{
    informer *inf = ud;
    inf->call = NULL;
    if (!kube_result_ok(res)) {
        if (kube_result_is(res, "Gone") || kube_result_is(res, "Expired")) {
            /* the continue token (or the RV) expired: start over, fresh */
            free(inf->continue_token);
            inf->continue_token = NULL;
            keyset_clear(&inf->seen);
            start_list(inf);
            return;
        }
        char why[160];
        snprintf(why, sizeof why, "list: %.150s", res->message[0] ? res->message : res->reason);
        report_failure(inf, res);
        free(inf->continue_token);
        inf->continue_token = NULL;
        retry_later(inf, why);
        return;
    }
    const char *body = res->body.data ? res->body.data : "";
    char *cont = NULL, *rv = NULL;
    int tk = list_page_tokens(inf, body, res->body.len, &cont, &rv);
    if (tk < 0) {
        retry_later(inf, "list: the response's items are malformed");
        return;
    }
    if (tk == 1 && list_page_meta(body, res->body.len, &cont, &rv) != 0) {
        retry_later(inf, "list: the response is not a list");
        return;
    }
    if (tk == 1 && list_page_items(inf, body, res->body.len) != 0) {
        free(cont);
        free(rv);
        retry_later(inf, "list: the response's items are malformed");
        return;
    }
    note_size(inf);
    free(inf->continue_token);
    inf->continue_token = (cont && *cont) ? cont : NULL;
    if (!inf->continue_token)
        free(cont);
    if (inf->continue_token) {
        free(rv);
        start_list(inf);
        return;
    }
    set_rv(inf, rv);
    free(rv);
    finish_list(inf);
}

static void start_watch_list(informer *inf);

static void start_list(informer *inf)
{
    inf->state = INF_LISTING;
    /* objects kept from before (a relist, or a first sync cut short) may
     * have vanished meanwhile */
    if (!inf->continue_token && (inf->synced || store_len(inf->store) > 0)) {
        inf->relisting = 1;
        if (inf->synced)
            metrics_informer_relist(inf->metric_res);
    }
    if (inf->watch_list && !inf->continue_token) {
        start_watch_list(inf);
        return;
    }
    kube_list_opts o = {0};
    o.label_selector = inf->selector;
    o.limit = LIST_PAGE;
    o.continue_token = inf->continue_token;
    health_informer_attempt(inf);
    /* RV unset: a consistent (quorum) read, which pages properly. */
    inf->call = kube_list(inf->client, &inf->res, inf->ns, &o, on_list_page, inf);
    if (!inf->call)
        retry_later(inf, "list could not start");
}

/* --- WATCH ---------------------------------------------------------------- */

static void on_watch_event(void *ud, const watch_event *ev)
{
    informer *inf = ud;
    kl_err err = {0};
    inf->watch_events++;
    inf->failure_reported = 0;
    health_informer_ok(inf);
    switch (ev->type) {
    case WATCH_ADDED:
    case WATCH_MODIFIED:
    case WATCH_DELETED: {
        /* An undecodable event may still hold an object store.c can decode
         * (the event adds one level of nesting): try it first. */
        store_obj *o = ev->object_tok >= 0 ? obj_from_tokens(inf, &ev->doc, ev->object_tok, &err)
                                           : obj_from_raw(inf, ev->object, ev->object_len, &err);
        if (!o) {
            watchframe_ident id;
            skip_object(inf, ev->object, ev->object_len, ev->undecodable ? ev->message : err.msg,
                        &id);
            set_rv(inf, id.resource_version);
            char *key = ident_key(&id);
            if (key && ev->type == WATCH_DELETED)
                apply_delete(inf, key, NULL);
            else if (key && inf->streaming && inf->relisting)
                keyset_add(&inf->seen, key); /* as a LIST page does: the older version stays */
            free(key);
            watchframe_ident_free(&id);
        } else if (ev->type == WATCH_DELETED) {
            set_rv(inf, o->rv);
            apply_delete(inf, o->key, o);
            store_obj_free(o);
        } else {
            set_rv(inf, o->rv);
            if (inf->streaming && inf->relisting)
                keyset_add(&inf->seen, o->key);
            apply_upsert(inf, o);
        }
        note_size(inf);
        break;
    }
    case WATCH_BOOKMARK:
        set_rv(inf, ev->resource_version);
        if (inf->streaming && ev->initial_events_end) {
            /* the streaming list is complete: synced, and the same stream
             * goes on as the watch */
            inf->streaming = 0;
            finish_sync(inf);
        }
        break;
    case WATCH_ERROR:
        if (ev->code == 410) {
            kl_log(KL_LOG_INFO, "watch expired (410 Gone), relisting", "resource",
                   inf->res.resource, NULL);
            inf->relisting = 1;
            /* done follows; it sees relisting and lists again */
        } else {
            kl_log(KL_LOG_WARN, "watch error", "resource", inf->res.resource, "message",
                   ev->message ? ev->message : "", NULL);
        }
        break;
    }
}

static void on_watch_done(void *ud, kube_result *res)
{
    informer *inf = ud;
    inf->call = NULL;
    metrics_informer_watch_restart(inf->metric_res);
    uint64_t now = loop_now_ms(kube_client_loop(inf->client));
    if (inf->streaming) {
        inf->streaming = 0;
        if (!kube_result_ok(res) && res->http_code >= 400 && res->http_code < 500 &&
            res->http_code != 403 && res->http_code != 429) {
            /* a server without the streaming list refuses its parameters:
             * paged LIST from now on, at once */
            kl_log(KL_LOG_INFO, "streaming list refused, using paged LIST", "resource",
                   inf->res.resource, "reason", res->message[0] ? res->message : res->reason,
                   NULL);
            inf->watch_list = 0;
            keyset_clear(&inf->seen);
            start_list(inf);
            return;
        }
        if (kube_result_ok(res) && !kube_result_is(res, "Gone") &&
            !kube_result_is(res, "Expired")) {
            retry_later(inf, "the streaming list ended before its initial events did");
            return;
        }
    }
    if (inf->relisting || kube_result_is(res, "Gone") || kube_result_is(res, "Expired")) {
        inf->relisting = 1;
        inf->backoff_ms = 0;
        start_list(inf);
        return;
    }
    if (!kube_result_ok(res)) {
        char why[160];
        snprintf(why, sizeof why, "watch: %.150s", res->message[0] ? res->message : res->reason);
        report_failure(inf, res);
        retry_later(inf, why);
        return;
    }
    /* A watch that ends at once without events is an error in disguise. */
    if (inf->watch_events == 0 && now - inf->healthy_since < SHORT_WATCH_MS) {
        retry_later(inf, "watch closed immediately");
        return;
    }
    if (now - inf->healthy_since >= HEALTHY_RESET_MS)
        inf->backoff_ms = 0;
    start_watch(inf);
}

static void start_watch(informer *inf)
{
    inf->state = INF_WATCHING;
    inf->watch_events = 0;
    inf->healthy_since = loop_now_ms(kube_client_loop(inf->client));
    kube_watch_opts o = {0};
    o.label_selector = inf->selector;
    o.resource_version = inf->last_rv;
    o.allow_bookmarks = 1;
    o.timeout_seconds = 300 + (int)kl_rand_below(300);
    health_informer_attempt(inf);
    inf->call = kube_watch_resource(inf->client, &inf->res, inf->ns, &o, on_watch_event,
                                    on_watch_done, inf);
    if (!inf->call)
        retry_later(inf, "watch could not start");
}

/* The streaming list: a watch whose initial events are the current state,
 * ended by a bookmark annotated k8s.io/initial-events-end; from
 * resourceVersion unset, it is as fresh as a quorum LIST. */
static void start_watch_list(informer *inf)
{
    inf->state = INF_LISTING;
    inf->streaming = 1;
    inf->watch_events = 0;
    inf->healthy_since = loop_now_ms(kube_client_loop(inf->client));
    kube_watch_opts o = {0};
    o.label_selector = inf->selector;
    o.allow_bookmarks = 1;
    o.send_initial_events = 1;
    o.timeout_seconds = 300 + (int)kl_rand_below(300);
    health_informer_attempt(inf);
    inf->call = kube_watch_resource(inf->client, &inf->res, inf->ns, &o, on_watch_event,
                                    on_watch_done, inf);
    if (!inf->call) {
        inf->streaming = 0;
        retry_later(inf, "streaming list could not start");
    }
}

/* --- public --------------------------------------------------------------- */

informer *informer_new(kube_client *c, const kube_resource *r, const char *ns,
                       const char *label_selector)
{
    informer *inf = calloc(1, sizeof *inf);
    if (!inf)
        return NULL;
    inf->client = c;
    inf->store = store_new();
    if (!inf->store || kube_resource_copy(&inf->res, r) != 0)
        goto fail;
    if (ns && *ns && !(inf->ns = strdup(ns)))
        goto fail;
    if (label_selector && *label_selector && !(inf->selector = strdup(label_selector)))
        goto fail;
    if (!(inf->api_version = kube_resource_api_version(r)))
        goto fail;
    kl_buf m = KL_BUF_INIT;
    if (kl_buf_printf(&m, "%s/%s", inf->api_version, r->resource) != 0) {
        kl_buf_free(&m);
        goto fail;
    }
    inf->metric_res = kl_buf_take(&m);
    inf->next_handler_id = 1;
    const char *wl = getenv("KLUA_WATCH_LIST");
    inf->watch_list = !(wl && !strcmp(wl, "0"));
    return inf;
fail:
    informer_free(inf);
    return NULL;
}

void informer_stop(informer *inf)
{
    if (!inf)
        return;
    if (inf->call)
        kube_cancel(inf->call);
    inf->call = NULL;
    if (inf->timer)
        loop_timer_cancel(kube_client_loop(inf->client), inf->timer);
    inf->timer = 0;
    inf->state = INF_STOPPED;
    inf->streaming = 0;
    health_informer_forget(inf);
}

void informer_free(informer *inf)
{
    if (!inf)
        return;
    informer_stop(inf);
    if (inf->reported && inf->metric_res)
        metrics_cache_objects_add(inf->metric_res, -(long)inf->reported);
    rywcache_forget_store(inf->store);
    store_free(inf->store);
    kube_resource_free(&inf->res);
    keyset_clear(&inf->seen);
    free(inf->ns);
    free(inf->selector);
    free(inf->api_version);
    free(inf->metric_res);
    free(inf->last_rv);
    free(inf->continue_token);
    store_transform_clear(&inf->transform);
    kl_buf_free(&inf->scratch);
    json_doc_free(&inf->page);
    free(inf->handlers);
    while (inf->listeners) {
        synced_listener *l = inf->listeners;
        inf->listeners = l->next;
        free(l);
    }
    while (inf->failed_listeners) {
        failed_listener *l = inf->failed_listeners;
        inf->failed_listeners = l->next;
        free(l);
    }
    free(inf);
}

struct replay {
    const informer_handler *h;
};

static int replay_add(void *ud, const store_obj *o)
{
    struct replay *r = ud;
    if (r->h->on_add)
        r->h->on_add(r->h->ud, o);
    return 0;
}

int informer_add_handler(informer *inf, const informer_handler *h)
{
    handler_slot *n = realloc(inf->handlers, (inf->nhandlers + 1) * sizeof *n);
    if (!n)
        return -1;
    inf->handlers = n;
    handler_slot *s = &inf->handlers[inf->nhandlers++];
    s->id = inf->next_handler_id++;
    s->active = 1;
    s->h = *h;
    if (inf->synced) {
        struct replay r = {&s->h};
        store_each(inf->store, replay_add, &r);
    }
    return s->id;
}

void informer_remove_handler(informer *inf, int id)
{
    for (size_t i = 0; i < inf->nhandlers; i++)
        if (inf->handlers[i].id == id)
            inf->handlers[i].active = 0;
    if (inf->dispatching)
        return;
    size_t j = 0;
    for (size_t i = 0; i < inf->nhandlers; i++)
        if (inf->handlers[i].active)
            inf->handlers[j++] = inf->handlers[i];
    inf->nhandlers = j;
}

int informer_start(informer *inf)
{
    if (inf->state != INF_STOPPED)
        return 0;
    metrics_informer_skipped(inf->metric_res, 0);
    start_list(inf);
    return 0;
}

void informer_set_watch_list(informer *inf, int on) { inf->watch_list = on != 0; }

int informer_set_transform(informer *inf, const store_transform *t)
{
    store_transform c;
    if (inf->state != INF_STOPPED || inf->synced || store_transform_copy(&c, t) != 0)
        return -1;
    store_transform_clear(&inf->transform);
    inf->transform = c;
    return 0;
}

void informer_set_skip_handler(informer *inf, informer_skip_cb cb, void *ud)
{
    inf->on_skip = cb;
    inf->skip_ud = ud;
}

int informer_has_synced(const informer *inf) { return inf->synced; }
const store *informer_store(const informer *inf) { return inf->store; }
const kube_resource *informer_resource(const informer *inf) { return &inf->res; }

/* The listener is owned by inf until removed (or inf is freed). */
int informer_add_synced_listener(informer *inf, void (*cb)(void *ud, informer *inf), void *ud)
{
    synced_listener *l = malloc(sizeof *l);
    if (!l || !cb) {
        free(l);
        return -1;
    }
    l->id = ++inf->next_listener_id;
    l->cb = cb;
    l->ud = ud;
    l->next = inf->listeners;
    inf->listeners = l;
    return l->id;
}

void informer_remove_synced_listener(informer *inf, int id)
{
    for (synced_listener *l = inf->listeners; l; l = l->next)
        if (l->id == id)
            l->cb = NULL;
    if (!inf->firing_listeners)
        prune_listeners(inf);
}

int informer_add_failed_listener(informer *inf, informer_failed_cb cb, void *ud)
{
    failed_listener *l = malloc(sizeof *l);
    if (!l || !cb) {
        free(l);
        return -1;
    }
    l->id = ++inf->next_failed_id;
    l->cb = cb;
    l->ud = ud;
    l->next = inf->failed_listeners;
    inf->failed_listeners = l;
    return l->id;
}

void informer_remove_failed_listener(informer *inf, int id)
{
    for (failed_listener **p = &inf->failed_listeners; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            failed_listener *l = *p;
            *p = l->next;
            free(l);
            return;
        }
    }
}

/* --- registry --------------------------------------------------------------- */

typedef struct reg_entry {
    informer *inf;
    unsigned refs;
} reg_entry;

struct informer_registry {
    kube_client *client;
    reg_entry *entries;
    size_t n;
    informer_skip_cb on_skip;
    void *skip_ud;
    informer_new_cb on_new;      /* klua run --record */
    void *new_ud;
};

informer_registry *informer_registry_new(kube_client *c)
{
    informer_registry *reg = calloc(1, sizeof *reg);
    if (reg)
        reg->client = c;
    return reg;
}

void informer_registry_free(informer_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        informer_free(reg->entries[i].inf);
    free(reg->entries);
    free(reg);
}

static int str_same(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

informer *informer_registry_get(informer_registry *reg, const kube_resource *r, const char *ns,
                                const char *label_selector)
{
    return informer_registry_get_cached(reg, r, ns, label_selector, NULL);
}

informer *informer_registry_get_cached(informer_registry *reg, const kube_resource *r,
                                       const char *ns, const char *label_selector,
                                       const store_transform *t)
{
    static const store_transform dflt = STORE_TRANSFORM_DEFAULT;
    if (!t)
        t = &dflt;
    for (size_t i = 0; i < reg->n; i++) {
        informer *inf = reg->entries[i].inf;
        if (!strcmp(inf->res.group, r->group) && !strcmp(inf->res.version, r->version) &&
            !strcmp(inf->res.resource, r->resource) && str_same(inf->ns, ns) &&
            str_same(inf->selector, label_selector) && store_transform_same(&inf->transform, t)) {
            reg->entries[i].refs++;
            return inf;
        }
    }
    reg_entry *n = realloc(reg->entries, (reg->n + 1) * sizeof *n);
    if (!n)
        return NULL;
    reg->entries = n;
    informer *inf = informer_new(reg->client, r, ns, label_selector);
    if (!inf)
        return NULL;
    if (informer_set_transform(inf, t) != 0) {
        informer_free(inf);
        return NULL;
    }
    informer_set_skip_handler(inf, reg->on_skip, reg->skip_ud);
    if (reg->on_new)
        reg->on_new(reg->new_ud, inf);
    reg->entries[reg->n].inf = inf;
    reg->entries[reg->n].refs = 1;
    reg->n++;
    informer_start(inf);
    return inf;
}

void informer_registry_release(informer_registry *reg, informer *inf)
{
    for (size_t i = 0; i < reg->n; i++) {
        if (reg->entries[i].inf != inf)
            continue;
        if (--reg->entries[i].refs == 0) {
            informer_free(inf);
            reg->entries[i] = reg->entries[--reg->n];
        }
        return;
    }
}

void informer_registry_set_new_listener(informer_registry *reg, informer_new_cb cb, void *ud)
{
    reg->on_new = cb;
    reg->new_ud = ud;
}

void informer_registry_set_skip_handler(informer_registry *reg, informer_skip_cb cb, void *ud)
{
    reg->on_skip = cb;
    reg->skip_ud = ud;
    for (size_t i = 0; i < reg->n; i++)
        informer_set_skip_handler(reg->entries[i].inf, cb, ud);
}
