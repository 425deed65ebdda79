/* controller.h - one controller per script: informers -> workqueue ->
 * reconcile coroutines.
 *
 * Provides: a controller built from a loaded script (lua_host). It resolves
 * the watched and owned kinds through discovery (asynchronously: starting
 * and replacing wait for discovery as any other I/O, never blocking the
 * loop), shares informers through the registry, maps events on owned
 * objects back to the owner's key
 * (ownerReferences whose kind and group match the watched kind), and once
 * its caches have synced hands keys to at most `workers` reconciles at a
 * time, each a coroutine. Outcomes follow sample-controller: nil -> forget;
 * { requeue_after = s } -> forget + add_after; { requeue = true } or an
 * error -> add_rate_limited. An error is logged once with the script's
 * file:line and recorded as a Warning Event (reason ReconcileError); when
 * the resource has a status subresource and the object has
 * status.conditions, an error_condition=False condition ("Ready" unless
 * declared otherwise or false; reason ReconcileError) says so too, and is
 * removed again by the next successful reconcile (a condition of that type
 * the script wrote for this generation, and other types, are the
 * script's). Updates reach the workqueue through the declared predicates
 * (controller_binding, predicate.h). A result
 * other than those above (a string, unknown keys, a negative
 * requeue_after) is an error naming the script's reconcile or finalize.
 * When the script declares finalize, its finalizer (`finalizer`, default
 * "klua.dev/<name>") is added before reconcile; an object being deleted
 * goes to finalize, never to reconcile, and loses the finalizer once
 * finalize returns nil. Without finalize, reconcile sees deleting objects.
 * A finalizer this process declared before and no longer does (the
 * finalizers book, controller_finalizers.h) is taken off objects being
 * deleted first, with a warning naming it; at the first sync, klua.dev/...
 * finalizers that no script declares are reported.
 *
 * Hot reload: controller_replace swaps in a newly loaded script between
 * reconciles. Reconciles in flight finish on the old Lua state, which is
 * freed when its last one ends; the workqueue (with its processing set, so
 * a key never runs twice at once) is kept; informers for the new
 * declaration are taken from the registry before the old ones are
 * released, so an unchanged watch keeps its cache (no LIST); every cached
 * key is enqueued again. Metrics go to metrics_default().
 * Uses: controller_version (script versions, klua.runner), controller_binding
 * (resolving kinds, informers, owner mapping), controller_status (Ready),
 * controller_result (what a reconcile's result means),
 * controller_gate (leader election), lua_host, lua_ctx, lua_json,
 * discovery, informer, rest, store, workqueue, loop, metrics, log.
 */
#ifndef KLUA_CONTROLLER_H
#define KLUA_CONTROLLER_H

#include "controller_finalizers.h"
#include "controller_gate.h"
#include "discovery.h"
#include "err.h"
#include "informer.h"
#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "rest.h"

#include <stddef.h>

typedef struct controller controller;

typedef struct controller_deps {
    loop *l;
    kube_client *kc;
    discovery *disco;
    informer_registry *reg;
    lua_ctx_shared *shared;
    const char *namespace;   /* --namespace: overrides the script's, or NULL */
    int workers;             /* --workers: overrides the script's; 0 = keep */
    /* Optional: called on the loop when the controller's caches have synced
     * and it starts dispatching (again after a reload that needed a new
     * informer). */
    void (*on_synced)(void *ud, controller *c);
    void *synced_ud;
    /* Optional: reconciles start only while this gate is open (NULL = no
     * gate; see controller_gate.h). */
    controller_gate *gate;
    /* Optional: the finalizers of every controller of the process (NULL =
     * only the script's own finalizer is managed). */
    controller_finalizers *finalizers;
    /* --remove-orphan-finalizers (read by whoever makes the book). */
    int remove_orphan_finalizers;
} controller_deps;

/* done(ud, c, NULL) when a start or replace has taken effect, or
 * done(ud, c, err) saying why not. Called exactly once per accepted call,
 * from a loop callback (never from inside the call); never after
 * controller_free. done may free c. */
typedef void (*controller_done_cb)(void *ud, controller *c, const kl_err *err);

/* Build a controller from a loaded script (no I/O); takes ownership of h
 * on success. */
controller *controller_new(lua_host *h, const controller_deps *d, kl_err *err);
/* Resolve the watched and owned kinds through discovery, then take the
 * informers and begin; dispatching starts once they have synced. Returns
 * -1 (no callback) when it cannot begin; else done follows: an unknown
 * kind is an error naming the script, "lua/x.lua: watch: no resource for
 * kind ...". A failed controller is the caller's to free. */
int controller_start(controller *c, controller_done_cb done, void *ud, kl_err *err);
/* Replace the script with h (loaded, declaring the same controller name)
 * once h's kinds are resolved. Returns -1 when the name differs, the
 * controller is not started, or a start or replace is already waiting; h
 * stays the caller's and there is no callback. Else it takes ownership of
 * h and done follows; on failure (an unknown kind, memory) the old script
 * keeps running and h is freed. */
int controller_replace(controller *c, lua_host *h, controller_done_cb done, void *ud,
                       kl_err *err);
/* A start or replace is waiting for discovery. */
int controller_pending(const controller *c);
int controller_synced(const controller *c);
/* Stop taking keys; reconciles in flight go on. */
void controller_shutdown(controller *c);
size_t controller_active(const controller *c);   /* reconciles in flight (all versions) */
const char *controller_name(const controller *c);
const lua_controller_decl *controller_decl(const controller *c);
int controller_workers(const controller *c);
const char *controller_script(const controller *c);
const lua_host *controller_host(const controller *c);   /* the current script */
/* Cancels reconciles still in flight and a start or replace still waiting
 * (no callback), releases informers, frees the host. */
void controller_free(controller *c);

#endif
