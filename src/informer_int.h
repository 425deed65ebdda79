/* informer_int.h - the state the informer modules share (internal).
 *
 * Provides: struct informer (the reflector's state, its store, handlers
 * and listeners), the keyset a relist fills with the keys it has seen, and
 * the functions the informer_* files call across one another. Only the
 * informer_* files include this header; everything else uses informer.h.
 *
 * The files, lowest first: informer_object (decode or skip an object, put
 * it in the store or remove it, tell the handlers), informer_sync (the
 * relist's keyset, vanished objects, the end of a sync, synced listeners),
 * informer_list (the paged LIST), informer_watch (the watch, the streaming
 * list, relist and backoff: the state machine), informer.c (the public
 * lifecycle, handlers and listeners) and informer_registry (shared
 * informers). Everything runs on the loop thread.
 * Uses: informer.h, store, store_transform, json, buf, err, loop, kube,
 * watchframe.
 */
#ifndef KLUA_INFORMER_INT_H
#define KLUA_INFORMER_INT_H

#include "informer.h"

#include "buf.h"
#include "err.h"
#include "json.h"
#include "loop.h"
#include "watchframe.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { INF_STOPPED, INF_LISTING, INF_WATCHING, INF_WAITING } inf_state;

typedef struct handler_slot {
    int id;
    int active;
    informer_handler h;
} handler_slot;

/* A listener for the first sync (informer_add_synced_listener). */
typedef struct synced_listener {
    int id;
    void (*cb)(void *ud, informer *inf);   /* NULL once removed while firing */
    void *ud;
    struct synced_listener *next;
} synced_listener;

/* A listener for failures retrying will not fix. */
typedef struct failed_listener {
    int id;
    informer_failed_cb cb;
    void *ud;
    struct failed_listener *next;
} failed_listener;

/* A set of keys seen during a relist, to find the ones that vanished. */
typedef struct keyset {
    char **slots;
    size_t cap, len;
} keyset;

struct informer {
    kube_client *client;
    kube_resource res;
    char *ns;
    char *selector;
    char *api_version;       /* res as "group/version", for items lacking it */
    char *metric_res;        /* "group/version/resource", the metrics' label */
    size_t reported;         /* objects counted in klua_cache_objects */
    informer_skip_cb on_skip;
    void *skip_ud;
    store *store;
    handler_slot *handlers;
    size_t nhandlers;
    int next_handler_id;
    inf_state state;
    int synced;
    int relisting;           /* this LIST replaces an existing store */
    char *last_rv;           /* last resourceVersion seen (list, event or bookmark) */
    store_transform transform; /* what the cache keeps of each object */
    kl_buf scratch;          /* the kept JSON of the object being built */
    json_doc page;           /* tokens of the LIST page being read */
    int watch_list;          /* try the streaming list (sendInitialEvents) */
    int streaming;           /* a streaming list is delivering its initial events */
    char *continue_token;
    keyset seen;
    kube_call *call;
    loop_timer_id timer;
    uint64_t backoff_ms;
    uint64_t healthy_since;  /* when the current watch started */
    unsigned watch_events;   /* events on the current watch */
    int dispatching;         /* handlers being called: defer compaction */
    synced_listener *listeners;
    int next_listener_id;
    int firing_listeners;    /* listeners being called: defer unlinking */
    failed_listener *failed_listeners;
    int next_failed_id;
    int failure_reported;    /* a 400/403/404 run was reported */
};

/* informer_object.c */
/* Put o in the store and tell the handlers; takes o. */
void informer_apply_upsert(informer *inf, store_obj *o);
/* Remove key from the store and tell the handlers (final: the last state
 * the server sent, or NULL for the cached one). */
void informer_apply_delete(informer *inf, const char *key, store_obj *final);
/* Tell the cache gauge how the store's size changed since the last call. */
void informer_note_size(informer *inf);
/* "ns/name" or "name" for id; caller owns it. NULL when unknown. */
char *informer_ident_key(const watchframe_ident *id);
/* Log, count and report an object that cannot be cached; *id receives
 * what could be read of it (free with watchframe_ident_free). */
void informer_skip_object(informer *inf, const char *raw, size_t len, const char *why,
                          watchframe_ident *id);
/* The store object for a token, or raw JSON, kept as the transform says;
 * caller owns it. NULL with err set. */
store_obj *informer_obj_from_tokens(informer *inf, const json_doc *d, int root, kl_err *err);
store_obj *informer_obj_from_raw(informer *inf, const char *raw, size_t len, kl_err *err);

/* informer_sync.c */
void informer_keyset_clear(keyset *ks);
int informer_keyset_add(keyset *ks, const char *key);   /* -1 without memory */
/* Unlinks the synced listeners removed while they were being called. */
void informer_prune_listeners(informer *inf);
/* The first LIST (or streaming list) is in the store: vanished objects of
 * a relist become deletes, the synced listeners hear of it. */
void informer_finish_sync(informer *inf);

/* informer_list.c */
/* A paged LIST (or, when on, the streaming list) from the start or the
 * continue token. */
void informer_start_list(informer *inf);

/* informer_watch.c */
void informer_start_watch(informer *inf);        /* from inf->last_rv */
void informer_start_watch_list(informer *inf);   /* the streaming list */
/* WAITING with jittered exponential backoff, then a LIST or a WATCH. */
void informer_retry_later(informer *inf, const char *why);
/* Tell the failed listeners about a 400/403/404, once per run of them. */
void informer_report_failure(informer *inf, const kube_result *res);
/* Remember rv (NULL or "" ignored) as the last resourceVersion seen. */
void informer_set_rv(informer *inf, const char *rv);

#endif
