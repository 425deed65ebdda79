/* informer_object.c - one object from the API server into the cache.
 *
 * Provides: (informer_int.h) decoding an object once, from the tokens of a
 * LIST page or watch event or from raw JSON, into a store object kept as
 * the transform says; skipping one that cannot be decoded (a warning, the
 * skipped-objects counter, the skip handler); putting it in the store or
 * removing it and calling the handlers while the store holds the new
 * state; the klua_cache_objects gauge.
 * Uses: informer_int, store, store_transform, rywcache (a watched write
 * caught up), watchframe (what can be read of an undecodable object),
 * json, metrics, log.
 */
#include "informer_int.h"

#include "rywcache.h"

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "watchframe.h"

#include <stdlib.h>
#include <string.h>

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
void informer_apply_upsert(informer *inf, store_obj *o)
{
    const store_obj *cur = store_get(inf->store, o->key);
    if (cur && cur->rv && o->rv && !strcmp(cur->rv, o->rv)) {
        store_obj_free(o);
        return;
    }
    store_obj *old = NULL;
    const store_obj *in = store_put(inf->store, o, &old); /* o itself, or its copy */
    if (!in) {
        kl_log(KL_LOG_ERROR, "cache insert failed", "resource", inf->res.resource, "key", o->key,
               NULL);
        store_obj_free(o);
        return;
    }
    rywcache_observe(inf->store, in->key, in);  /* the watch caught up with a write? */
    if (old)
        notify_update(inf, old, in);
    else
        notify_add(inf, in);
    store_obj_free(old);
}

void informer_apply_delete(informer *inf, const char *key, store_obj *final)
{
    store_obj *old = store_remove(inf->store, key);
    rywcache_observe(inf->store, key, NULL);
    if (old || final)
        notify_delete(inf, final ? final : old);
    store_obj_free(old);
}

/* Tell the cache gauge how the store's size changed since the last call. */
void informer_note_size(informer *inf)
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
char *informer_ident_key(const watchframe_ident *id)
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
void informer_skip_object(informer *inf, const char *raw, size_t len, const char *why,
                        watchframe_ident *id)
{
    if (watchframe_ident_read(raw, len, id) != 0)
        memset(id, 0, sizeof *id);
    char *key = informer_ident_key(id);
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
store_obj *informer_obj_from_tokens(informer *inf, const json_doc *d, int root, kl_err *err)
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
store_obj *informer_obj_from_raw(informer *inf, const char *raw, size_t len, kl_err *err)
{
    json_doc d = {0};
    store_obj *o = NULL;
    if (json_parse(&d, raw, len, err) != 0)
        kl_err_wrap(err, "cannot cache object");
    else
        o = informer_obj_from_tokens(inf, &d, 0, err);
    json_doc_free(&d);
    return o;
}
