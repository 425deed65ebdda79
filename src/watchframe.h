/* watchframe.h - splits a Kubernetes watch stream into events.
 *
 * Provides: a framer fed with arbitrary chunks of an HTTP body (as libcurl
 * hands them over) that calls back once per complete top-level JSON value,
 * whatever the chunk boundaries (partial values, several values in one
 * chunk, a value split across many chunks). It tracks strings and escapes,
 * so braces in strings are safe, and does not rely on newlines. And
 * watch_event_parse(), which reads {"type":..., "object":...}: an event
 * whose object cannot be decoded (nested deeper than JSON_MAX_DEPTH, or
 * invalid inside) is still an event, marked undecodable, so that one such
 * object costs that object only and never the stream.
 * Also a shallow reader of JSON text (watchframe_member, watchframe_item,
 * watchframe_ident_read) that steps over values without decoding them, at any
 * depth, for LIST pages that hold an undecodable item.
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

/* What can be read of an object's metadata without decoding the object. */
typedef struct watchframe_ident {
    char *namespace, *name, *uid, *resource_version; /* malloc'd; NULL when unreadable */
} watchframe_ident;

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
    /* ADDED, MODIFIED or DELETED whose object could not be decoded: object
     * and object_len still span its raw bytes, message says why (malloc'd),
     * and what could be read without decoding it is in ident. */
    int undecodable;
    watchframe_ident ident;         /* all NULL unless undecodable */
    /* The event's tokens (owned by ev) and the index of its object token,
     * so that the object is read without a second parse; object_tok is -1
     * and doc empty when undecodable. */
    json_doc doc;
    int object_tok;
} watch_event;

/* -1 (err set) when doc is not an event at all; an event with an object that
 * cannot be decoded is 0 with ev->undecodable set (see above). */
int watch_event_parse(const char *doc, size_t len, watch_event *ev, kl_err *err);
void watch_event_free(watch_event *ev);   /* frees the malloc'd strings */

/* ---- shallow reading --------------------------------------------------- */
/* These locate values in JSON text by tracking strings, escapes and
 * brackets only, so they work at any nesting depth; they check structure
 * only as far as they read, and what they return is raw JSON text (decode
 * it with json_parse). */

/* The value of member key (compared byte for byte with the raw key) of the
 * object that spans obj[0..len); *val points into obj. 0 when found, 1 when
 * absent, -1 when obj is not a well-formed object as far as it was read. */
int watchframe_member(const char *obj, size_t len, const char *key, const char **val,
                      size_t *vlen);
/* The array's elements one by one: *pos starts at 0 and is advanced; 0 with
 * *val and *vlen set, 1 after the last element, -1 on malformed text. */
int watchframe_item(const char *arr, size_t len, size_t *pos, const char **val, size_t *vlen);
/* metadata.namespace, .name, .uid and .resourceVersion of an object that
 * may be too deep to decode, each malloc'd or NULL when it cannot be read
 * (watchframe_ident_free frees them; *id is zeroed first). 0, or -1 only
 * when out of memory. */
int watchframe_ident_read(const char *obj, size_t len, watchframe_ident *id);
void watchframe_ident_free(watchframe_ident *id);

#endif
