/* controller_binding.h - what one version of a controller watches.
 *
 * Provides: controller_binding, a declaration's watched and owned kinds
 * resolved to resources (through discovery, asynchronously: resolving
 * never blocks the loop) and then bound to informers shared through the
 * registry. Events on the watched kind enqueue the object's key; events on
 * an owned kind enqueue the keys of its owners of the watched kind
 * (metadata.ownerReferences whose kind and group match; handleObject in
 * sample-controller). Each informer's first sync is reported too, so the
 * controller can start dispatching when its caches are complete. The
 * binding also answers ctx:get / ctx:list's cache lookups. Updates pass
 * through the declared predicates first (predicate.h: the watched kind's
 * default drops status-only writes); watches[i] are secondary kinds whose
 * objects the script's map function turns into keys of the watched kind.
 * Uses: discovery (resolving kinds), informer (registry, handlers, synced
 * listeners), predicate (filters, map functions), store, rest
 * (kube_resource), lua_host (the declaration), json (owner references),
 * log, buf, err.
 */
#ifndef KLUA_CONTROLLER_BINDING_H
#define KLUA_CONTROLLER_BINDING_H

#include "discovery.h"
#include "err.h"
#include "informer.h"
#include "lua_host.h"
#include "rest.h"
#include "store.h"

#include <stddef.h>

/* What the binding tells its controller, on the loop. enqueue's from is
 * the object whose add or update (with a new resourceVersion) the key comes
 * from, so the controller can tell the echo of its own write
 * (controller_echo.h); NULL for deletes, resyncs and replays. */
typedef struct controller_binding_events {
    void (*enqueue)(void *ud, const char *key, const store_obj *from);
    void (*synced)(void *ud);     /* one of its informers has synced */
    void *ud;
} controller_binding_events;

typedef struct controller_binding controller_binding;
typedef struct controller_binding_resolve controller_binding_resolve;

/* done(ud, b, NULL) with a resolved binding (the caller's; free it with
 * controller_binding_free), or done(ud, NULL, err) naming the script and
 * the field: "lua/x.lua: owns[1]: no resource for kind ...". */
typedef void (*controller_binding_resolved_cb)(void *ud, controller_binding *b,
                                               const kl_err *err);

/* Resolve what decl watches and owns; ns (the informers' namespace, may be
 * NULL) and decl's kinds are copied, script names the script in errors.
 * done is called exactly once, from a loop callback, unless cancelled.
 * NULL when out of memory (done is never called). */
controller_binding_resolve *controller_binding_resolve_start(discovery *d,
                                                             const lua_controller_decl *decl,
                                                             const char *script, const char *ns,
                                                             controller_binding_resolved_cb done,
                                                             void *ud);
void controller_binding_resolve_cancel(controller_binding_resolve *r);

/* Take the informers (label selector for the watched kind: may be NULL)
 * and add handlers reporting to ev. h is the script the binding was
 * resolved for (its predicates and map functions; it must outlive b). An
 * informer that has synced replays its cache as adds, which enqueues every
 * key. A LIST or WATCH the server refuses (400, 403, 404) is logged once
 * per run of failures, naming the script. On failure the binding holds
 * what it took; controller_binding_free releases it. */
int controller_binding_start(controller_binding *b, informer_registry *reg, lua_host *h,
                             const char *selector, const controller_binding_events *ev,
                             kl_err *err);
/* What the watched kind's cache keeps (the declaration's cache key); read by
 * controller_binding_start only, so t need live until then. */
void controller_binding_set_cache(controller_binding *b, const store_transform *t);
/* Every informer of a started binding has synced. */
int controller_binding_synced(const controller_binding *b);
/* The watched resource and its cache (NULL before start). */
const kube_resource *controller_binding_watch_resource(const controller_binding *b);
const store *controller_binding_watch_store(const controller_binding *b);
/* The cache holding apiVersion/kind (the watched or an owned kind), or NULL;
 * *res receives the resource (valid while b lives). */
const store *controller_binding_cache(const controller_binding *b, const char *api_version,
                                      const char *kind, const kube_resource **res);
/* The resources resolved, by index: 0 the watched one, then the owned ones;
 * NULL past the end (for the ctx's resource cache). */
const kube_resource *controller_binding_resource(const controller_binding *b, size_t i);
/* Releases the informers (unused ones stop) and frees b. NULL is a no-op. */
void controller_binding_free(controller_binding *b);

#endif
