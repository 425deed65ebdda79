/* controller_echo.h - a controller's own writes, known again when the watch
 * brings them back.
 *
 * Provides: a per-controller book of the objects its reconciles wrote
 * (uid and the resourceVersion the API server answered), each under the
 * key of the reconcile that wrote it. An add or update event whose object
 * has exactly that uid and resourceVersion, and which would enqueue that
 * same key, is the echo of the reconcile's own write: the reconcile has
 * already seen that state (the write's answer), so running it again only
 * repeats it, and would skip a requeue_after or backoff the reconcile
 * asked for. Anything else, another writer's change, the same object
 * mapped to another key, another controller's queue, is not an echo.
 * resourceVersions are compared for equality only (opaque). Entries go
 * after CONTROLLER_ECHO_MAX_AGE_MS (an echo later than that costs one
 * reconcile, no more) and past CONTROLLER_ECHO_MAX the oldest go first.
 * Single-threaded: the event loop's thread only.
 * Uses: util (hashing).
 */
#ifndef KLUA_CONTROLLER_ECHO_H
#define KLUA_CONTROLLER_ECHO_H

#include <stddef.h>

#define CONTROLLER_ECHO_MAX_AGE_MS 10000
#define CONTROLLER_ECHO_MAX 8192

typedef struct controller_echo controller_echo;

controller_echo *controller_echo_new(void);
void controller_echo_free(controller_echo *e);

/* The reconcile of key wrote the object uid, which now has resourceVersion
 * rv. Returns 0, or -1 (memory: that echo will then cost a reconcile). */
int controller_echo_wrote(controller_echo *e, const char *key, const char *uid, const char *rv);

/* 1 when an event for object uid at rv that enqueues key is the echo of a
 * write recorded for key, else 0. An entry answers every event with its
 * version (one update may enqueue the same key twice: the old object's
 * owners and the new one's). */
int controller_echo_is(controller_echo *e, const char *key, const char *uid, const char *rv);

/* Forget every entry (a new version of the script: it has seen nothing). */
void controller_echo_clear(controller_echo *e);

size_t controller_echo_len(const controller_echo *e);

#endif
