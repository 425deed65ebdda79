/* rywcache.h - read your own writes: what this process wrote, until the
 * watch brings it.
 *
 * Provides: a per-process overlay over the informer stores. When a ctx
 * write (create, update, patch, apply, patch_status, delete) returns, the
 * object it answered (or, after a delete, the absence) is recorded for its
 * store and key; cached reads (ctx:get, ctx:list) consult the overlay
 * first, so a reconcile never reads the state its own write replaced. An
 * entry is dropped when the watch supersedes it: an event for that key
 * carrying the written resourceVersion (compared for equality only: it is
 * opaque), a delete event, or an object with another uid (deleted and
 * created again); after a delete, the delete event or a new uid. Entries
 * older than RYWCACHE_MAX_AGE_MS are dropped too (a relist may skip the
 * written version). With no entries, the informer's hook costs one test.
 * Single-threaded: the event loop's thread only.
 * Uses: store (store_obj), log.
 */
#ifndef KLUA_RYWCACHE_H
#define KLUA_RYWCACHE_H

#include "store.h"

#include <stddef.h>

#define RYWCACHE_MAX_AGE_MS 30000
#define RYWCACHE_MAX_ENTRIES 4096   /* past this, the oldest goes */
#define RYWCACHE_SEEN_MAX 8         /* events noted per pending write */

/* A write to key of st is being sent: what the watch brings for that key
 * meanwhile is noted, so that an answer the watch has already delivered
 * (and perhaps passed) is not laid over the store. NULL (memory, or key
 * NULL) is allowed everywhere a pending write is taken. */
typedef struct ryw_pending ryw_pending;
ryw_pending *rywcache_begin(const store *st, const char *key);
/* The write was cancelled: forget it. */
void rywcache_abandon(ryw_pending *p);
/* A write answered this object (JSON, copied) for a key of st; takes p.
 * Returns 0, or -1 when it cannot be recorded (memory, undecodable: reads
 * then show the cache as it is). An object still being deleted
 * (deletionTimestamp set) is recorded as present. */
int rywcache_record(const store *st, ryw_pending *p, const char *json, size_t len);
/* The same for an object the caller decoded (store_obj_new); takes o. */
int rywcache_record_obj(const store *st, ryw_pending *p, store_obj *o);
/* A delete succeeded (or found nothing) for key; uid may be NULL; takes p. */
int rywcache_record_delete(const store *st, ryw_pending *p, const char *key, const char *uid);
/* The overlay's answer for key: 0 when there is none (read the store);
 * else 1 with *obj the written object, or NULL after a delete. */
int rywcache_lookup(const store *st, const char *key, const store_obj **obj);
/* Each written object of st (not deletes), for lists. cb returns non-zero
 * to stop. */
void rywcache_each(const store *st, int (*cb)(void *ud, const store_obj *o), void *ud);
/* The informer's hook: the store now holds cur for key (NULL: removed). */
void rywcache_observe(const store *st, const char *key, const store_obj *cur);
/* The store is going away: forget its entries. */
void rywcache_forget_store(const store *st);
size_t rywcache_len(void);

#endif
