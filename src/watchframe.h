/* watchframe.h - splits a Kubernetes watch stream into events.
 *
 * Provides: a framer fed with arbitrary chunks of an HTTP body (as libcurl
 * hands them over) that calls back once per complete top-level JSON value,
 * whatever the chunk boundaries (partial values, several values in one
 * chunk, a value split across many chunks). It tracks strings and escapes,
 * so braces in strings are safe, and does not rely on newlines. And
 * watch_event_parse(), which reads {"type":..., "object":...}.
 * Uses: buf, err, json.
 */
#ifndef KLUA_WATCHFRAME_H
#define KLUA_WATCHFRAME_H

#include "buf.h"
#include "err.h"
#include "json.h"

#include <stddef.h>

typedef struct watchframe watchframe;

/* Called with one whole JSON value (not NUL-terminated; valid during the
 * call). Return 0 to go on, non-zero to stop feeding (feed returns -1 with
 * err->code = KL_ECANCEL). */
typedef int (*watchframe_cb)(void *ud, const char *doc, size_t len);

/* max_doc: the largest value accepted (bytes); 0 means 64 MiB. */
watchframe *watchframe_new(size_t max_doc, watchframe_cb cb, void *ud);
/* -1 on garbage between values, an oversized value or a callback stop. */
int watchframe_feed(watchframe *wf, const char *data, size_t len, kl_err *err);
/* -1 if a partial value is pending (the stream ended mid-event). */
int watchframe_finish(watchframe *wf, kl_err *err);
void watchframe_free(watchframe *wf);

typedef enum {
    WATCH_ADDED, WATCH_MODIFIED, WATCH_DELETED, WATCH_BOOKMARK, WATCH_ERROR
} watch_type;

typedef struct watch_event {
    watch_type type;
    const char *object;     /* raw JSON of "object" (points into the doc) */
    size_t object_len;
    const char *resource_version; /* object's metadata.resourceVersion, malloc'd or NULL */
    /* ERROR events: the Status object's fields */
    long code;              /* e.g. 410 */
    const char *reason;     /* malloc'd or NULL, e.g. "Expired" / "Gone" */
    const char *message;    /* malloc'd or NULL */
    int initial_events_end; /* BOOKMARK with k8s.io/initial-events-end=true */
} watch_event;

int watch_event_parse(const char *doc, size_t len, watch_event *ev, kl_err *err);
void watch_event_free(watch_event *ev);   /* frees the malloc'd strings */

#endif
