/* webhook_patch.h - the JSON Patch between two JSON documents.
 *
 * Provides: webhook_patch_diff(), which appends to out an RFC 6902 JSON
 * Patch (a JSON array of operations) that turns the document `from` into
 * the document `to`: object members that went away are removed, new ones
 * added, changed ones replaced (objects on both sides are compared member
 * by member, so a patch touches only what changed); an array that differs
 * in any element is replaced whole (a correct patch, and what an admission
 * chain expects from a defaulting webhook). Paths are RFC 6901 JSON
 * Pointers ('~' written "~0", '/' written "~1"). Values are compared by
 * meaning, not bytes: strings after unescaping, numbers by value (1 and
 * 1.0 are equal), members in any order; a member that is null in `from`
 * and absent from `to` is unchanged (Kubernetes reads null as absent, and
 * klua.json drops null members, so a handler's round trip would otherwise
 * remove every null, e.g. metadata.creationTimestamp on CREATE). An empty
 * patch is "[]".
 * Uses: json, buf, err.
 */
#ifndef KLUA_WEBHOOK_PATCH_H
#define KLUA_WEBHOOK_PATCH_H

#include "buf.h"
#include "err.h"

#include <stddef.h>

/* Returns 0 with the patch appended to out, or -1 with err ("from: ...",
 * "to: ..." for a document that does not parse; memory). *nops receives
 * the number of operations (may be NULL). */
int webhook_patch_diff(const char *from, size_t from_len, const char *to, size_t to_len,
                       kl_buf *out, size_t *nops, kl_err *err);

/* Append s (n bytes) as one RFC 6901 reference token: '~' -> "~0",
 * '/' -> "~1". */
int webhook_patch_escape(kl_buf *out, const char *s, size_t n);

#endif
