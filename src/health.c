/* health.c - see health.h.
 *
 * Provides: the loop heartbeat, the failing-informer table and
 * health_check. Uses: loop, buf.
 */
#include "health.h"

#include <stdlib.h>
#include <string.h>

typedef struct failing {
    const void *who;
    char *resource;
    uint64_t since_ms;      /* first failure since the last success */
    uint64_t attempt_ms;    /* the running attempt's start, 0 if none */
} failing;

static uint64_t mono_ms(void) { return loop_time_ms(); }

static struct {
    health_clock_fn now;
    loop *l;
    loop_timer_id timer;
    uint64_t beat_ms;       /* 0 = no heartbeat yet */
    failing *f;
    size_t n, cap;
} st;

static uint64_t now_ms(void) { return st.now ? st.now() : mono_ms(); }

void health_set_clock(health_clock_fn fn) { st.now = fn; }

static void beat(loop *l, void *ud)
{
    (void)ud;
    st.beat_ms = now_ms();
    st.timer = loop_timer_add(l, HEALTH_BEAT_MS, beat, NULL);
}

int health_heartbeat_start(loop *l)
{
    if (st.l && st.timer)
        loop_timer_cancel(st.l, st.timer);
    st.l = l;
    st.beat_ms = now_ms();
    st.timer = loop_timer_add(l, HEALTH_BEAT_MS, beat, NULL);
    return st.timer ? 0 : -1;
}

static failing *find(const void *who)
{
    for (size_t i = 0; i < st.n; i++)
        if (st.f[i].who == who)
            return &st.f[i];
    return NULL;
}

static void drop(failing *e)
{
    free(e->resource);
    *e = st.f[--st.n];
}

void health_informer_failed(const void *who, const char *resource)
{
    failing *e = find(who);
    if (e) {
        e->attempt_ms = 0;
        return;
    }
    if (st.n == st.cap) {
        size_t cap = st.cap ? st.cap * 2 : 8;
        failing *nf = realloc(st.f, cap * sizeof *nf);
        if (!nf)
            return;   /* out of memory: this failure goes unjudged */
        st.f = nf;
        st.cap = cap;
    }
    char *res = strdup(resource ? resource : "?");
    if (!res)
        return;
    st.f[st.n++] = (failing){who, res, now_ms(), 0};
}

void health_informer_attempt(const void *who)
{
    if (st.n == 0)
        return;
    failing *e = find(who);
    if (e)
        e->attempt_ms = now_ms();
}

void health_informer_ok(const void *who)
{
    if (st.n == 0)
        return;
    failing *e = find(who);
    if (e)
        drop(e);
}

void health_informer_forget(const void *who) { health_informer_ok(who); }

int health_check(void *ud, kl_buf *why)
{
    const health_opts *o = ud;
    uint64_t stall = o && o->stall_ms ? o->stall_ms : HEALTH_STALL_MS;
    uint64_t limit = o && o->informer_ms ? o->informer_ms : HEALTH_INFORMER_MS;
    uint64_t now = now_ms();
    int ok = 1;
    if (st.timer && now > st.beat_ms && now - st.beat_ms > stall) {
        ok = 0;
        kl_buf_printf(why, "event loop: no heartbeat for %llu ms (over --healthz-loop-stall "
                      "%llu s)\n", (unsigned long long)(now - st.beat_ms),
                      (unsigned long long)(stall / 1000));
    }
    for (size_t i = 0; i < st.n; i++) {
        const failing *e = &st.f[i];
        if (now - e->since_ms <= limit)
            continue;
        if (e->attempt_ms && now - e->attempt_ms > HEALTH_ATTEMPT_GRACE_MS)
            continue;   /* a stream that has been open a while: it works, quietly */
        ok = 0;
        kl_buf_printf(why, "informer %s: cannot list or watch for %llu s (over "
                      "--healthz-informer-failure %llu s)\n", e->resource,
                      (unsigned long long)((now - e->since_ms) / 1000),
                      (unsigned long long)(limit / 1000));
    }
    return ok;
}

void health_reset(void)
{
    if (st.l && st.timer)
        loop_timer_cancel(st.l, st.timer);
    for (size_t i = 0; i < st.n; i++)
        free(st.f[i].resource);
    free(st.f);
    health_clock_fn keep = st.now;
    memset(&st, 0, sizeof st);
    st.now = keep;
}
