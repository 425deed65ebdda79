/* controller_status.h - the Ready condition klua writes after a reconcile.
 *
 * Provides: controller_status_sync_ready. After a failed reconcile, an
 * object whose resource has a status subresource and whose status has
 * conditions gets Ready=False with reason ReconcileError and the error as
 * its message (lastTransitionTime kept while it stays False); after a
 * successful one, a Ready condition klua set that way is removed. Other
 * condition types belong to the script and are left alone. The write is a
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

/* errmsg: the reconcile's error, or NULL after a success. kc may be NULL
 * (no writes). */
void controller_status_sync_ready(kube_client *kc, const kube_resource *res, const store *st,
                                  const char *key, const char *errmsg);

#endif
