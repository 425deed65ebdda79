/* event.h - Kubernetes Events (events.k8s.io/v1) about objects.
 *
 * Provides: event_recorder, one per process, which knows the API client
 * and the reporting instance ($POD_NAME, else the host name); event_build()
 * writes one Event as JSON; event_post() records one without waiting.
 * Both the ctx (ctx:event) and the controller (the ReconcileError Warning)
 * use it, so every Event klua writes has one shape: reportingController
 * "klua.dev/<controller>".
 *
 * Repeats are aggregated as client-go's tools/events does: a repeat of the
 * same (object, type, reason, note, controller) within
 * EVENT_SERIES_WINDOW_S of the previous one is an occurrence of the first
 * Event's series, not a new Event. The second occurrence patches
 * series {count, lastObservedTime} onto it; later ones are counted and
 * written at most once per EVENT_SERIES_GAP_S (with the next occurrence
 * after the gap), so a hot loop costs one Event and a trickle of patches.
 * A failed write is logged once per HTTP status at warning level (later
 * ones at -v 1); it never fails the caller.
 * Uses: rest (kube_create, kube_patch), buf, json (escaping), util (RFC
 * 3339), log.
 */
#ifndef KLUA_EVENT_H
#define KLUA_EVENT_H

#include "buf.h"
#include "err.h"
#include "rest.h"

typedef struct event_recorder event_recorder;

/* The object an Event is about (borrowed strings; any may be NULL but
 * api_version, kind and name). */
typedef struct event_object {
    const char *api_version, *kind, *ns, *name, *uid, *rv;
    const char *controller;    /* reportingController klua.dev/<controller>; NULL: "klua" */
} event_object;

#define EVENT_SERIES_WINDOW_S 360   /* client-go's finishTime: 6 minutes */
#define EVENT_SERIES_GAP_S 30       /* between two series writes of one Event */
#define EVENT_SERIES_MAX 4096       /* series remembered; past it the oldest idle goes */

/* kc may be NULL (tests, `klua check`): event_post then does nothing.
 * Freeing cancels the writes in flight. */
event_recorder *event_recorder_new(kube_client *kc, kl_err *err);
void event_recorder_free(event_recorder *r);

/* Append the Event's JSON to out. note is cut to 1 KB on a UTF-8 boundary.
 * The Event's namespace is the object's, or "default" for cluster-scoped
 * objects (event_namespace). Returns 0, or -1 when out ran out of memory. */
int event_build(const event_recorder *r, kl_buf *out, const event_object *o, const char *type,
                const char *reason, const char *action, const char *note);
const char *event_namespace(const event_object *o);
/* The events.k8s.io/v1 resource (static). */
const kube_resource *event_resource(void);
/* Series remembered now (tests). */
size_t event_recorder_series(const event_recorder *r);

/* Record the Event (a new one, or an occurrence of a series) without
 * waiting for the API server. */
void event_post(event_recorder *r, const event_object *o, const char *type, const char *reason,
                const char *action, const char *note);

#endif
