/* informer.h - reflector + store + handlers for one watched resource.
 *
 * Provides: an informer that LISTs in pages, then WATCHes from the list's
 * resourceVersion with bookmarks and a random 5-10 minute timeout, rewatches
 * from the last resourceVersion when a watch ends, relists on 410 Gone
 * (emitting deletes for vanished objects and updates for changed ones), and
 * backs off with jitter on errors (800 ms doubling to 30 s, reset after 2
 * minutes of health), as client-go's reflector does. Handlers see add,
 * update and delete. A registry shares one informer per (resource,
 * namespace, label selector) among controllers, counting references.
 * Uses: rest, kube, store, loop, watchframe, log.
 */
#ifndef KLUA_INFORMER_H
#define KLUA_INFORMER_H

#include "rest.h"
#include "store.h"

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

/* Shared informers. */
typedef struct informer_registry informer_registry;
informer_registry *informer_registry_new(kube_client *c);
void informer_registry_free(informer_registry *reg);
/* Get or create (and start) the shared informer; each get needs a release. */
informer *informer_registry_get(informer_registry *reg, const kube_resource *r, const char *ns,
                                const char *label_selector);
void informer_registry_release(informer_registry *reg, informer *inf); /* stops at zero */

#endif
