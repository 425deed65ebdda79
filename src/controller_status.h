/* controller_status.h - the error condition klua writes after a reconcile.
 *
 * Provides: controller_status_sync_ready. After a failed reconcile, an
 * object whose resource has a status subresource and whose status has
 * conditions gets <type>=False (the script's error_condition, "Ready" by
 * default) with reason ReconcileError and the error as its message
 * (lastTransitionTime kept while it stays False); after a successful one,
 * a condition klua set that way is removed. A condition of that type the
 * script wrote itself (another reason) for the object's generation (its
 * observedGeneration, or none) is never overwritten. Other condition
 * types belong to the script and are left alone. The write is a
 * merge patch of /status that carries the cached resourceVersion, fire and
 * forget: a conflict means the object changed and the next reconcile
 * decides again. Nothing is written when nothing would change.
 * Uses: rest (kube_patch), store (the cached object), json, buf, util (time),
 * log.
 */
#ifndef KLUA_CONTROLLER_STATUS_H
#define KLUA_CONTROLLER_STATUS_H

#include "rest.h"
#include "store.h"

/* ctype: the condition type (NULL: error_condition = false, nothing is
 * written); errmsg: the reconcile's error, or NULL after a success. kc may
 * be NULL (no writes). */
void controller_status_sync_ready(kube_client *kc, const kube_resource *res, const store *st,
                                  const char *key, const char *ctype, const char *errmsg);

#endif
