/* controller_finalizers.h - the finalizers this process manages.
 *
 * Provides: controller_finalizers, a book of finalizer names per watched
 * kind (API group + kind): which ones a running script version declares
 * (it has finalize), which ones a version of this process declared before
 * and no longer does (a script renamed without an explicit finalizer, a
 * reload that dropped finalize: klua put them on objects, so klua takes
 * them off objects being deleted), and the orphans klua.dev/...
 * finalizers found on objects at start-up that no script declares, which
 * are reported once per name and, with --remove-orphan-finalizers, taken
 * off objects being deleted too. Finalizers this process never declared
 * and was not told to remove are never touched.
 * Uses: store (scanning cached objects), json, log, err.
 */
#ifndef KLUA_CONTROLLER_FINALIZERS_H
#define KLUA_CONTROLLER_FINALIZERS_H

#include "store.h"

#include <stddef.h>

typedef struct controller_finalizers controller_finalizers;

controller_finalizers *controller_finalizers_new(int remove_orphans);
void controller_finalizers_free(controller_finalizers *f);

/* A script version that runs declares name (it has finalize) for the kind
 * apiVersion/kind; undeclare when it stops running. Counted: two versions
 * may declare the same name for a moment. -1 without memory. */
int controller_finalizers_declare(controller_finalizers *f, const char *name,
                                  const char *api_version, const char *kind);
void controller_finalizers_undeclare(controller_finalizers *f, const char *name,
                                     const char *api_version, const char *kind);

/* The names to take off objects of apiVersion/kind being deleted: put
 * there by this process and no longer declared, or orphans to remove.
 * Fills out (at most max, pointers valid until the book changes); returns
 * how many. */
size_t controller_finalizers_stale(const controller_finalizers *f, const char *api_version,
                                   const char *kind, const char **out, size_t max);

/* At start-up, once a controller's cache of apiVersion/kind is complete:
 * report each klua.dev/... finalizer on its objects that no script
 * declares (once per name, with how many objects carry it), and with
 * remove_orphans book it for removal from objects being deleted. */
void controller_finalizers_scan(controller_finalizers *f, const store *st,
                                const char *api_version, const char *kind);

#endif
