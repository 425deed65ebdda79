/* informer.h - reflector + store + handlers for one watched resource.
 *
 * Provides: an informer that syncs with a streaming list (a WATCH with
 * sendInitialEvents=true, resourceVersionMatch=NotOlderThan, synced at the
 * bookmark annotated k8s.io/initial-events-end, the same stream going on as
 * the watch) when the API server supports it; a server that refuses it
 * (4xx) gets paged LISTs from then on, as does KLUA_WATCH_LIST=0 in the
 * environment. Otherwise it LISTs in pages, then WATCHes from the list's
 * resourceVersion with bookmarks and a random 5-10 minute timeout, rewatches
 * from the last resourceVersion when a watch ends, relists on 410 Gone
 * (emitting deletes for vanished objects and updates for changed ones), and
 * backs off with jitter on errors (800 ms doubling to 30 s, reset after 2
 * minutes of health), as client-go's reflector does. Handlers see add,
 * update and delete. A registry shares one informer per (resource,
 * namespace, label selector) among controllers, counting references.
 *
 * An object the informer cannot decode (nested deeper than JSON_MAX_DEPTH,
 * invalid inside, without metadata.name) costs that object only: it is
 * skipped in a LIST page and in a watch stream, while the stream and every
 * other object go on. Each skip logs one warning naming the object
 * (namespace/name, else the resource and resourceVersion), counts in
 * klua_informer_objects_skipped_total{resource} and calls the skip handler,
 * if one is set. A skipped ADDED/MODIFIED leaves the cache as it was (an
 * older, decodable version stays); a skipped DELETED still removes the
 * object by its key when the key can be read.
 * Every object is decoded once: the tokens of a LIST page or of a watch
 * event give the store its metadata and the transform (store_transform.h:
 * by default metadata.managedFields is not kept) its spans.
 * Uses: rest, kube, store, store_transform, loop, watchframe, metrics, log.
 */
#ifndef KLUA_INFORMER_H
#define KLUA_INFORMER_H

#include "rest.h"
#include "store.h"
#include "store_transform.h"

typedef struct informer informer;

typedef struct informer_handler {
    void (*on_add)(void *ud, const store_obj *obj);
    void (*on_update)(void *ud, const store_obj *old, const store_obj *cur);
    void (*on_delete)(void *ud, const store_obj *obj);   /* last known state */
    void *ud;
} informer_handler;

/* ns NULL or "" = all namespaces; selector NULL = everything. */
informer *informer_new(kube_client *c, const kube_resource *r, const char *ns,
                       const char *label_selector);
void informer_free(informer *inf);      /* stops it first */
/* Returns a handler id (>0). Added after sync, it gets an add per cached object. */
int informer_add_handler(informer *inf, const informer_handler *h);
void informer_remove_handler(informer *inf, int id);
/* What the cache keeps of each object (copied); before informer_start
 * only (-1 after it, or without memory). The default drops managedFields. */
int informer_set_transform(informer *inf, const store_transform *t);
/* Streaming list on (the default, unless KLUA_WATCH_LIST=0) or off. */
void informer_set_watch_list(informer *inf, int on);
int informer_start(informer *inf);      /* begins the first LIST */
void informer_stop(informer *inf);
int informer_has_synced(const informer *inf);
const store *informer_store(const informer *inf);
const kube_resource *informer_resource(const informer *inf);
/* Synced listeners (a shared informer serves several controllers): cb is
 * called once when the first LIST has been put in the store;
 * added after that, it is not called (check informer_has_synced). Returns
 * an id (>0) for informer_remove_synced_listener, or -1 without memory. */
int informer_add_synced_listener(informer *inf, void (*cb)(void *ud, informer *inf), void *ud);
void informer_remove_synced_listener(informer *inf, int id);

/* Failures that retrying alone will not fix: a LIST or WATCH answered 400,
 * 403 or 404 (a selector the server refuses, missing RBAC, a kind gone).
 * The informer keeps retrying with backoff; cb is called once per run of
 * such failures (again only after a LIST or WATCH has succeeded). cb must
 * not free the informer or change its listeners. Returns an id (>0), or -1
 * without memory. */
typedef void (*informer_failed_cb)(void *ud, informer *inf, long code, const char *message);
int informer_add_failed_listener(informer *inf, informer_failed_cb cb, void *ud);
void informer_remove_failed_listener(informer *inf, int id);

/* What is known of a skipped object. Strings are NULL when they could not
 * be read; all are valid only during the call. */
typedef struct informer_skipped {
    const char *namespace;        /* NULL or "" when cluster-scoped or unknown */
    const char *name;
    const char *uid;
    const char *resource_version;
    const char *reason;           /* why it could not be decoded, one line */
} informer_skipped;
typedef void (*informer_skip_cb)(void *ud, informer *inf, const informer_skipped *s);
/* Called once per skipped object (after the warning is logged), e.g. to
 * record a Warning Event on it. cb NULL removes it. The callback must not
 * free the informer. */
void informer_set_skip_handler(informer *inf, informer_skip_cb cb, void *ud);

/* Shared informers. */
typedef struct informer_registry informer_registry;
informer_registry *informer_registry_new(kube_client *c);
void informer_registry_free(informer_registry *reg);
/* Get or create (and start) the shared informer; each get needs a release. */
informer *informer_registry_get(informer_registry *reg, const kube_resource *r, const char *ns,
                                const char *label_selector);
/* The same, for objects kept as t says (NULL: the default); informers are
 * shared only among callers that keep the same. */
informer *informer_registry_get_cached(informer_registry *reg, const kube_resource *r,
                                       const char *ns, const char *label_selector,
                                       const store_transform *t);
void informer_registry_release(informer_registry *reg, informer *inf); /* stops at zero */
/* cb(ud, inf) for each informer the registry creates from now on, before
 * it starts (klua run --record adds its handler there). */
typedef void (*informer_new_cb)(void *ud, informer *inf);
void informer_registry_set_new_listener(informer_registry *reg, informer_new_cb cb, void *ud);
/* The skip handler of every informer the registry holds or will create. */
void informer_registry_set_skip_handler(informer_registry *reg, informer_skip_cb cb, void *ud);

#endif
