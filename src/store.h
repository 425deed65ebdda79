/* store.h - the informer cache: objects by key, with indexes.
 *
 * Provides: store_obj, one cached object kept as its exact JSON bytes plus
 * the few metadata fields needed for keys and indexes (that is all the
 * memory an object costs beyond its JSON); a store keyed by "ns/name" (or
 * "name" when cluster-scoped) with indexes by namespace, by label (key=value)
 * and by owner reference uid. Readers get const pointers: the store is only
 * changed by its reflector; Lua receives decoded copies, never these bytes.
 * A stored object lives in the store's arena (store_arena.h) and may move
 * there when the store changes (see store_put).
 * Uses: json, labels, store_arena, err.
 */
#ifndef KLUA_STORE_H
#define KLUA_STORE_H

#include "err.h"
#include "json.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_obj {
    char *key;           /* "ns/name" or "name" */
    char *ns;            /* "" when cluster-scoped */
    char *name;
    char *uid;
    char *rv;            /* metadata.resourceVersion (opaque) */
    char *labels;        /* nlabels pairs "key\0value\0" one after another (labels.h) */
    char **owner_uids;   /* metadata.ownerReferences[].uid */
    char *json;          /* the object as the API server sent it */
    long long generation;
    uint32_t json_len;   /* objects are far below 4 GiB (etcd's limit is 1.5 MiB) */
    uint32_t nlabels;
    uint32_t nowners;
    uint8_t deleting;    /* metadata.deletionTimestamp is set */
    uint8_t held;        /* store.c's own: where the block lives */
    uint16_t units;      /* store.c's own: the block's size in 8-byte units, in an arena */
} store_obj;

/* Build from one object's JSON (copied). Errors name what is missing. */
store_obj *store_obj_new(const char *json, size_t len, kl_err *err);
/* The same from an object already tokenized: the metadata is read from the
 * object token root of d, and json[0..len) (copied) is what the store keeps,
 * e.g. store_transform_apply's output for that object. */
store_obj *store_obj_from_doc(const json_doc *d, int root, const char *json, size_t len,
                              kl_err *err);
void store_obj_free(store_obj *o);
const char *store_obj_label(const store_obj *o, const char *key); /* NULL if absent */

typedef struct store store;

store *store_new(void);
void store_free(store *s);        /* frees every object */

/* Insert or replace by key; the store takes o and returns the object it
 * holds now: o itself, or its copy in the store's arena (o is freed then).
 * *old (if non-NULL) receives the replaced object, now owned by the caller
 * (NULL if new); with old NULL the store frees it. Objects the store holds
 * may move (to pack memory) at the next put or remove: a pointer from
 * store_put, store_get or a visit is good until the store next changes.
 * NULL (out of memory): the store is unchanged and the caller keeps o. */
const store_obj *store_put(store *s, store_obj *o, store_obj **old);
/* Remove by key; returns the object (caller owns) or NULL. */
store_obj *store_remove(store *s, const char *key);
const store_obj *store_get(const store *s, const char *key);
size_t store_len(const store *s);

/* The key the store files ns/name under: "ns/name", or "name" when ns is
 * NULL or "" (cluster-scoped). Returns 0, or -1 when it does not fit in
 * cap bytes (out then holds a truncated key that matches nothing). */
int store_key(char *out, size_t cap, const char *ns, const char *name);
#define STORE_KEY_MAX 600   /* a 253-byte name under a 253-byte namespace, with room */

/* Iteration: cb returns non-zero to stop. ns NULL = every namespace.
 * cb must not change the store (no put/remove during a visit). */
typedef int (*store_visit_cb)(void *ud, const store_obj *o);
void store_each(const store *s, store_visit_cb cb, void *ud);
void store_each_in_namespace(const store *s, const char *ns, store_visit_cb cb, void *ud);
/* Objects matching a label selector (labels.h syntax) in ns (NULL = all). -1 on
 * a malformed selector (err says why). Uses the label index for key=value terms. */
int store_each_selected(const store *s, const char *ns, const char *selector, store_visit_cb cb,
                        void *ud, kl_err *err);
void store_each_owned_by(const store *s, const char *owner_uid, store_visit_cb cb, void *ud);

/* Approximate bytes held (objects + indexes), for the memory figures. */
size_t store_bytes(const store *s);

#endif
