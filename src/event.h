/* event.h - Kubernetes Events (events.k8s.io/v1) about objects.
 *
 * Provides: event_recorder, one per process, which knows the API client
 * and the reporting instance (the host name); event_build() writes one
 * Event as JSON, event_post() creates it fire and forget (failures are
 * logged at -v 1). Both the ctx (ctx:event) and the controller (the
 * ReconcileError Warning) use it, so every Event klua writes has one shape.
 * Uses: rest (kube_create), buf, json (escaping), util (RFC 3339), log.
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
} event_object;

/* kc may be NULL (tests, `klua check`): event_post then does nothing. */
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

/* Build and create the Event without waiting for the answer. */
void event_post(event_recorder *r, const event_object *o, const char *type, const char *reason,
                const char *action, const char *note);

#endif
