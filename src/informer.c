/* informer.c - reflector, store and handlers for one watched resource.
 *
 * Provides: see informer.h; this file holds the lifecycle (new, start,
 * stop, free), the handlers and the synced and failed listeners. The
 * reflector itself is in informer_list.c (paged LIST) and informer_watch.c
 * (watch, streaming list, relist, backoff), the objects' way into the store
 * in informer_object.c, the end of a sync in informer_sync.c, the shared
 * informers in informer_registry.c. Everything runs on the loop thread;
 * handlers are called synchronously while the store holds the new state.
 * Uses: informer_int, rest, kube, store, store_transform, loop, json,
 * metrics, health (list/watch failures for /healthz), rywcache.
 */
#include "informer_int.h"

#include "rywcache.h"

#include "health.h"
#include "json.h"
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

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
    informer_keyset_clear(&inf->seen);
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
    informer_start_list(inf);
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
        informer_prune_listeners(inf);
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
