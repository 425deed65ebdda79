/* health.h - liveness: is this process still doing its job?
 *
 * Provides: the answer behind /healthz. Two things make a process unhealthy
 * enough that a restart is the cure:
 *   - the event loop stopped serving its timers: a heartbeat timer records
 *     the time every HEALTH_BEAT_MS; a heartbeat older than stall_ms means
 *     the loop is stuck (a loop blocked outright cannot answer /healthz at
 *     all, which a kubelet's probe timeout counts as a failure too);
 *   - an informer has been unable to list or watch for longer than
 *     informer_ms: from its first failed attempt until a LIST completes or a
 *     watch delivers an event. An attempt that has been running longer than
 *     HEALTH_ATTEMPT_GRACE_MS (a watch stream that connected and is quiet)
 *     counts as working.
 * State is process-wide (one loop, one thread), kept only for informers
 * that are failing, so the informers' one-line calls cost a test of a
 * counter while all is well.
 * Uses: loop (the heartbeat timer), buf.
 */
#ifndef KLUA_HEALTH_H
#define KLUA_HEALTH_H

#include "buf.h"
#include "loop.h"

#include <stdint.h>

#define HEALTH_BEAT_MS 1000
#define HEALTH_ATTEMPT_GRACE_MS 15000
#define HEALTH_STALL_MS 5000        /* --healthz-loop-stall default */
#define HEALTH_INFORMER_MS 180000   /* --healthz-informer-failure default */

typedef struct health_opts {
    uint64_t stall_ms;      /* 0 = HEALTH_STALL_MS */
    uint64_t informer_ms;   /* 0 = HEALTH_INFORMER_MS */
} health_opts;

/* Start the heartbeat on l (a timer every HEALTH_BEAT_MS); stopped by
 * health_reset or when l is freed. Before it starts, the loop is not judged. */
int health_heartbeat_start(loop *l);

/* Informer reports; who identifies the informer (its address), resource
 * names it in the reasons (copied). */
void health_informer_failed(const void *who, const char *resource);
void health_informer_attempt(const void *who);   /* a LIST or WATCH starts */
void health_informer_ok(const void *who);        /* a LIST completed, a watch event came */
void health_informer_forget(const void *who);    /* stopped or freed */

/* An ops_ready_fn for /healthz: ud is a const health_opts * (or NULL for
 * the defaults). Non-zero when healthy; else the reasons go to why, one per
 * line, e.g. "informer v1/configmaps: cannot list or watch for 190 s (over
 * --healthz-informer-failure 180 s)". */
int health_check(void *ud, kl_buf *why);

/* Forget everything (at exit, and between tests); stops the heartbeat. */
void health_reset(void);

/* The clock (CLOCK_MONOTONIC ms unless a test installs its own; NULL
 * restores it). */
typedef uint64_t (*health_clock_fn)(void);
void health_set_clock(health_clock_fn now_ms);

#endif
