/* workqueue.h - a rate-limited work queue with client-go's semantics.
 *
 * Provides: a queue of string keys on the loop thread. A key is queued at
 * most once however often it is added; a key being processed (between get
 * and done) is never handed out again until done; a key added while
 * processing is queued again after done. Per-item exponential backoff
 * (base 5 ms doubling to 1000 s) combined with an overall token bucket
 * (10/s, burst 100): add_rate_limited waits the larger of the two.
 * add_after delays a key; forget resets its failures. Shutdown stops handing
 * keys out. Uses: loop.
 */
#ifndef KLUA_WORKQUEUE_H
#define KLUA_WORKQUEUE_H

#include "loop.h"

#include <stddef.h>
#include <stdint.h>

typedef struct workqueue workqueue;

typedef struct workqueue_opts {
    uint64_t base_delay_ms;   /* default 5 */
    uint64_t max_delay_ms;    /* default 1000000 */
    double qps;               /* default 10; <0 disables the bucket */
    int burst;                /* default 100 */
} workqueue_opts;

/* opts may be NULL for the defaults. name is copied (metrics, logs). */
workqueue *workqueue_new(loop *l, const char *name, const workqueue_opts *opts);
void workqueue_free(workqueue *q);

/* Called (from the loop, deferred) whenever keys may be ready to get. */
void workqueue_set_ready_cb(workqueue *q, void (*cb)(void *ud), void *ud);

void workqueue_add(workqueue *q, const char *key);
void workqueue_add_after(workqueue *q, const char *key, uint64_t delay_ms);
void workqueue_add_rate_limited(workqueue *q, const char *key);
void workqueue_forget(workqueue *q, const char *key);
unsigned workqueue_num_requeues(const workqueue *q, const char *key);
/* The delay add_rate_limited would use now, and records the failure. */
uint64_t workqueue_when(workqueue *q, const char *key);

/* The next ready key, or NULL if none (or shutting down). The string stays
 * valid until workqueue_done(q, key). */
const char *workqueue_get(workqueue *q);
void workqueue_done(workqueue *q, const char *key);

size_t workqueue_len(const workqueue *q);          /* queued, ready keys */
size_t workqueue_processing(const workqueue *q);   /* handed out, not done */
size_t workqueue_waiting(const workqueue *q);      /* delayed keys */
void workqueue_shutdown(workqueue *q);
int workqueue_shutting_down(const workqueue *q);

#endif
