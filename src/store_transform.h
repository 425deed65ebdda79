/* store_transform.h - what the cache keeps of each object.
 *
 * Provides: store_transform, a script's `cache = { ... }` declaration as
 * data: by default metadata.managedFields is dropped from cached objects
 * (most controllers never read it, and it is often a third of an object);
 * `managed_fields = true` keeps it; `keep = { "spec", "metadata.labels" }`
 * keeps only those dotted paths plus what klua itself needs (apiVersion,
 * kind, metadata name, namespace, uid, resourceVersion, generation,
 * deletionTimestamp, finalizers, ownerReferences, labels).
 * store_transform_apply writes the kept JSON from an object's tokens (spans
 * of the original bytes copied, nothing decoded or re-encoded) and, for LIST
 * items of built-in types, puts apiVersion and kind first when they are
 * missing. store_transform_same tells whether two informers keep the same.
 * Uses: json, buf, err.
 */
#ifndef KLUA_STORE_TRANSFORM_H
#define KLUA_STORE_TRANSFORM_H

#include "buf.h"
#include "err.h"
#include "json.h"

#include <stddef.h>

#define STORE_TRANSFORM_MAX_PATH 256   /* longest dotted path in keep */

typedef struct store_transform {
    int managed_fields;   /* 1: keep metadata.managedFields */
    char **keep;          /* dotted paths (owned), NULL: the whole object */
    size_t nkeep;
} store_transform;

#define STORE_TRANSFORM_DEFAULT {0, NULL, 0}

/* Deep copy (dst is overwritten); -1 when out of memory (dst left empty). */
int store_transform_copy(store_transform *dst, const store_transform *src);
/* Add one dotted path to keep. -1 (err says why) on an empty or too long
 * path, an empty segment, or out of memory. */
int store_transform_keep(store_transform *t, const char *path, kl_err *err);
void store_transform_clear(store_transform *t);   /* back to the default */
int store_transform_same(const store_transform *a, const store_transform *b);

/* Appends the kept JSON of the object at token root of d to out. t NULL is
 * the default. api_version and kind (either may be NULL) are written first
 * when the object has no member of that name. -1 when out of memory (out
 * failed) or root is not an object. */
int store_transform_apply(const store_transform *t, const json_doc *d, int root,
                          const char *api_version, const char *kind, kl_buf *out);

#endif
