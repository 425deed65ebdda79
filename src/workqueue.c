/* workqueue.c - client-go's rate-limited work queue, on the loop thread.
 *
 * Provides: workqueue_* (workqueue.h). Semantics follow client-go's
 * workqueue package (queue.go, delaying_queue.go, default_rate_limiters.go):
 *   - a FIFO of ready keys; the dirty set (keys queued or to be queued);
 *     the processing set (handed out by get, not yet done);
 *   - add of a dirty key is a no-op; add of a processing key only marks it
 *     dirty, and done() queues it again;
 *   - add_after: one loop timer per waiting key; a second add_after for a
 *     key already waiting keeps whichever due time is earlier;
 *   - when(): max(per-item base * 2^failures capped at max, token bucket
 *     delay computed as golang.org/x/time/rate's Reserve().Delay()).
 * Single-threaded, no locks: "workers" are Lua coroutines the caller drives.
 * The ready callback runs from a zero-delay loop timer (at most one pending)
 * so the dispatcher never re-enters itself from inside add() or done().
 * Uses: loop, metrics (workqueue_* counted here, as client-go does).
 *
 * Every key has at most one item, found by a chained hash table; the item
 * carries all of the key's state (flags, failures, timer) and is freed as
 * soon as none of it is left. A drained burst gives its memory back
 * (give_back_burst: malloc_trim, glibc's).
 */
#include "workqueue.h"

#include "metrics.h"
#include "util.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

enum {
    WQ_DIRTY = 1,       /* queued, or to be queued again at done() */
    WQ_QUEUED = 2,      /* in the FIFO */
    WQ_PROCESSING = 4,  /* handed out by get() */
    WQ_WAITING = 8      /* a delay timer is pending */
};

typedef struct wq_item {
    struct wq_item *hnext;  /* hash chain */
    struct wq_item *qnext;  /* FIFO link while WQ_QUEUED */
    size_t hash;
    unsigned flags;
    unsigned failures;      /* since the last forget() */
    uint64_t added_ns, started_ns; /* metrics: when it became dirty, when handed out */
    loop_timer_id timer;    /* while WQ_WAITING */
    uint64_t due_ms;        /* while WQ_WAITING, in loop_now_ms() time */
    workqueue *q;           /* for the timer callback */
    char key[];
} wq_item;

struct workqueue {
    loop *l;
    char *name;
    workqueue_opts opts;
    wq_item **buckets;
    size_t nbuckets, nitems;
    wq_item *head, *tail;   /* FIFO of ready keys */
    size_t nqueued, nprocessing, nwaiting;
    int shutting_down;
    /* token bucket, as golang.org/x/time/rate.Limiter */
    double tokens;
    uint64_t last_ms;
    void (*ready_cb)(void *ud);
    void *ready_ud;
    loop_timer_id ready_timer;
};

static size_t hash_str(const char *s)
{
    uint64_t h = kl_fnv1a(s, strlen(s));
    return (size_t)(h ^ (h >> 29));
}

static wq_item *find(const workqueue *q, const char *key, size_t h)
{
    for (wq_item *it = q->buckets[h & (q->nbuckets - 1)]; it; it = it->hnext)
        if (it->hash == h && strcmp(it->key, key) == 0)
            return it;
    return NULL;
}

static void grow(workqueue *q)
{
    size_t n = q->nbuckets * 2;
    wq_item **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < q->nbuckets; i++) {
        wq_item *it = q->buckets[i];
        while (it) {
            wq_item *next = it->hnext;
            it->hnext = b[it->hash & (n - 1)];
            b[it->hash & (n - 1)] = it;
            it = next;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = n;
}

/* The item for key, created if absent; NULL only when out of memory.
 * The queue owns items. */
static wq_item *intern(workqueue *q, const char *key)
{
    size_t h = hash_str(key);
    wq_item *it = find(q, key, h);
    if (it)
        return it;
    size_t n = strlen(key);
    it = calloc(1, sizeof *it + n + 1);
    if (!it)
        return NULL;
    memcpy(it->key, key, n + 1);
    it->hash = h;
    it->q = q;
    if (q->nitems >= q->nbuckets)
        grow(q);
    size_t b = h & (q->nbuckets - 1);
    it->hnext = q->buckets[b];
    q->buckets[b] = it;
    q->nitems++;
    return it;
}

/* A queue that held a burst of keys (an initial sync: one per cached
 * object) and has drained gives that memory back: its table shrinks to the
 * start size, and the heap pages the burst's items occupied go back to the
 * kernel (glibc keeps freed pages below live ones mapped until trimmed).
 * Once per burst of at least 1,024 keys, never in steady state. */
static void give_back_burst(workqueue *q)
{
    wq_item **b = calloc(16, sizeof *b);
    if (b) {
        free(q->buckets);
        q->buckets = b;
        q->nbuckets = 16;
    }
    malloc_trim(0);
}

/* Free the item once nothing about its key is left to remember. */
static void release_if_idle(workqueue *q, wq_item *it)
{
    if (it->flags || it->failures)
        return;
    wq_item **pp = &q->buckets[it->hash & (q->nbuckets - 1)];
    while (*pp != it)
        pp = &(*pp)->hnext;
    *pp = it->hnext;
    q->nitems--;
    free(it);
    if (q->nitems == 0 && q->nbuckets >= 1024)
        give_back_burst(q);
}

static void ready_fire(loop *l, void *ud)
{
    workqueue *q = ud;
    q->ready_timer = 0;
    if (q->ready_cb && !q->shutting_down && q->head)
        q->ready_cb(q->ready_ud);
}

/* Tell the dispatcher, later, that a key is ready (coalesced). */
static void notify(workqueue *q)
{
    if (q->ready_cb && !q->ready_timer && !q->shutting_down)
        q->ready_timer = loop_timer_add(q->l, 0, ready_fire, q);
}

static void enqueue(workqueue *q, wq_item *it)
{
    it->flags |= WQ_QUEUED;
    it->qnext = NULL;
    if (q->tail)
        q->tail->qnext = it;
    else
        q->head = it;
    q->tail = it;
    q->nqueued++;
    notify(q);
}

workqueue *workqueue_new(loop *l, const char *name, const workqueue_opts *opts)
{
    workqueue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->l = l;
    q->name = strdup(name ? name : "");
    q->nbuckets = 16;
    q->buckets = calloc(q->nbuckets, sizeof *q->buckets);
    if (!q->name || !q->buckets) {
        workqueue_free(q);
        return NULL;
    }
    /* Zero fields take client-go's defaults (DefaultControllerRateLimiter). */
    workqueue_opts o = opts ? *opts : (workqueue_opts){0, 0, 0, 0};
    if (!o.base_delay_ms)
        o.base_delay_ms = 5;
    if (!o.max_delay_ms)
        o.max_delay_ms = 1000000;
    if (o.qps == 0)
        o.qps = 10;
    if (o.burst <= 0)
        o.burst = 100;
    q->opts = o;
    q->tokens = o.burst; /* a new limiter starts full */
    q->last_ms = loop_now_ms(l);
    return q;
}

/* The key no longer waits: its timer has fired or been cancelled. */
static void end_wait(workqueue *q, wq_item *it)
{
    it->flags &= ~(unsigned)WQ_WAITING;
    it->timer = 0;
    q->nwaiting--;
}

static void cancel_timers(workqueue *q)
{
    for (size_t i = 0; i < q->nbuckets; i++)
        for (wq_item *it = q->buckets[i]; it; it = it->hnext)
            if (it->flags & WQ_WAITING) {
                loop_timer_cancel(q->l, it->timer);
                end_wait(q, it);
            }
    if (q->ready_timer)
        loop_timer_cancel(q->l, q->ready_timer);
    q->ready_timer = 0;
}

void workqueue_free(workqueue *q)
{
    if (!q)
        return;
    if (q->buckets) {
        cancel_timers(q);
        for (size_t i = 0; i < q->nbuckets; i++) {
            wq_item *it = q->buckets[i];
            while (it) {
                wq_item *next = it->hnext;
                free(it);
                it = next;
            }
        }
    }
    free(q->buckets);
    free(q->name);
    free(q);
}

void workqueue_set_ready_cb(workqueue *q, void (*cb)(void *ud), void *ud)
{
    q->ready_cb = cb;
    q->ready_ud = ud;
    if (q->head)
        notify(q);
}

void workqueue_add(workqueue *q, const char *key)
{
    if (q->shutting_down)
        return;
    wq_item *it = intern(q, key);
    if (!it || (it->flags & WQ_DIRTY))
        return;
    it->flags |= WQ_DIRTY;
    if (it->flags & WQ_PROCESSING) {
        it->added_ns = metrics_workqueue_add(q->name);
        return; /* done() queues it again */
    }
    enqueue(q, it);
    it->added_ns = metrics_workqueue_add(q->name);
}

static void delay_fire(loop *l, void *ud)
{
    wq_item *it = ud;
    workqueue *q = it->q;
    end_wait(q, it);
    /* add() keeps the item (it becomes dirty) unless shutting down, where
     * no timer is left pending anyway. */
    workqueue_add(q, it->key);
    release_if_idle(q, it);
}

void workqueue_add_after(workqueue *q, const char *key, uint64_t delay_ms)
{
    if (q->shutting_down)
        return;
    metrics_workqueue_retry(q->name);   /* client-go counts every AddAfter */
    if (delay_ms == 0) {
        workqueue_add(q, key);
        return;
    }
    wq_item *it = intern(q, key);
    if (!it)
        return;
    uint64_t due = loop_now_ms(q->l) + delay_ms;
    if (it->flags & WQ_WAITING) {
        if (due >= it->due_ms)
            return; /* the earlier due time stands */
        loop_timer_cancel(q->l, it->timer);
        end_wait(q, it);
    }
    it->timer = loop_timer_add(q->l, delay_ms, delay_fire, it);
    if (!it->timer) {
        release_if_idle(q, it);
        return;
    }
    it->due_ms = due;
    it->flags |= WQ_WAITING;
    q->nwaiting++;
}

/* golang.org/x/time/rate: tokens refill at qps up to burst; a reservation
 * takes one token, possibly going negative, and waits until it is repaid. */
static uint64_t bucket_delay(workqueue *q)
{
    if (q->opts.qps < 0)
        return 0;
    uint64_t now = loop_now_ms(q->l);
    if (now > q->last_ms) {
        q->tokens += (double)(now - q->last_ms) / 1000.0 * q->opts.qps;
        if (q->tokens > q->opts.burst)
            q->tokens = q->opts.burst;
        q->last_ms = now;
    }
    q->tokens -= 1;
    if (q->tokens >= 0)
        return 0;
    double ms = -q->tokens / q->opts.qps * 1000.0;
    return (uint64_t)(ms + 0.999999); /* round up: never early */
}

static uint64_t item_delay(workqueue *q, wq_item *it)
{
    unsigned exp = it->failures++;
    uint64_t d = q->opts.base_delay_ms;
    for (unsigned i = 0; i < exp; i++) {
        if (d >= q->opts.max_delay_ms)
            break;
        d *= 2;
    }
    return d > q->opts.max_delay_ms ? q->opts.max_delay_ms : d;
}

uint64_t workqueue_when(workqueue *q, const char *key)
{
    wq_item *it = intern(q, key);
    uint64_t item = it ? item_delay(q, it) : q->opts.max_delay_ms;
    uint64_t bucket = bucket_delay(q);
    return item > bucket ? item : bucket;
}

void workqueue_add_rate_limited(workqueue *q, const char *key)
{
    if (q->shutting_down)
        return;
    workqueue_add_after(q, key, workqueue_when(q, key));
}

void workqueue_forget(workqueue *q, const char *key)
{
    wq_item *it = find(q, key, hash_str(key));
    if (!it)
        return;
    it->failures = 0;
    release_if_idle(q, it);
}

unsigned workqueue_num_requeues(const workqueue *q, const char *key)
{
    wq_item *it = find(q, key, hash_str(key));
    return it ? it->failures : 0;
}

const char *workqueue_get(workqueue *q)
{
    if (q->shutting_down || !q->head)
        return NULL;
    wq_item *it = q->head;
    q->head = it->qnext;
    if (!q->head)
        q->tail = NULL;
    q->nqueued--;
    it->flags &= ~(unsigned)(WQ_QUEUED | WQ_DIRTY);
    it->flags |= WQ_PROCESSING;
    q->nprocessing++;
    it->started_ns = metrics_workqueue_get(q->name, it->added_ns);
    return it->key; /* the item lives at least until done() */
}

void workqueue_done(workqueue *q, const char *key)
{
    wq_item *it = find(q, key, hash_str(key));
    if (!it || !(it->flags & WQ_PROCESSING))
        return;
    it->flags &= ~(unsigned)WQ_PROCESSING;
    q->nprocessing--;
    metrics_workqueue_done(q->name, it->started_ns);
    if ((it->flags & WQ_DIRTY) && !q->shutting_down)
        enqueue(q, it);
    else
        release_if_idle(q, it);
}

size_t workqueue_len(const workqueue *q) { return q->nqueued; }
size_t workqueue_processing(const workqueue *q) { return q->nprocessing; }
size_t workqueue_waiting(const workqueue *q) { return q->nwaiting; }
int workqueue_shutting_down(const workqueue *q) { return q->shutting_down; }

void workqueue_shutdown(workqueue *q)
{
    q->shutting_down = 1;
    cancel_timers(q);
}
