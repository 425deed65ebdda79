/* test_loop.c - unit tests for the event loop (src/loop.c).
 *
 * Covers timer ordering, cancellation (also from inside a callback),
 * zero-delay timers, fd readiness on a pipe, signal delivery through
 * signalfd, loop_run/loop_stop, the per-iteration clock and an injected
 * clock that a test moves by hand.
 */
#include "harness.h"
#include "loop.h"

#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* A log of which callbacks ran, in order. */
typedef struct tlog {
    int seq[2048];
    int n;
} tlog;

typedef struct tarm {
    tlog *log;
    int tag;
    loop_timer_id cancel_me;   /* a timer this callback cancels */
    loop_timer_id *self;       /* its own id, cancelled from inside too */
} tarm;

static void record(loop *l, void *ud)
{
    tarm *a = ud;
    if (a->log->n < 2048)
        a->log->seq[a->log->n++] = a->tag;
    if (a->cancel_me)
        loop_timer_cancel(l, a->cancel_me);
    if (a->self)
        loop_timer_cancel(l, *a->self);
}

/* Run the loop until n callbacks are logged or ms pass. */
static void run_until(loop *l, tlog *log, int n, int ms)
{
    uint64_t deadline = loop_time_ms() + (uint64_t)ms;
    while (log->n < n && loop_time_ms() < deadline)
        loop_run_once(l, 10);
}

TEST(timers_fire_in_due_order)
{
    loop *l = loop_new(NULL);
    tlog log = {.n = 0};
    tarm a[6] = {{&log, 30, 0, NULL}, {&log, 10, 0, NULL}, {&log, 20, 0, NULL},
                 {&log, 0, 0, NULL},  {&log, 11, 0, NULL}, {&log, 12, 0, NULL}};
    uint64_t t0 = loop_time_ms();
    loop_timer_id ids[6];
    ids[0] = loop_timer_add(l, 30, record, &a[0]);
    ids[1] = loop_timer_add(l, 10, record, &a[1]);
    ids[2] = loop_timer_add(l, 20, record, &a[2]);
    ids[3] = loop_timer_add(l, 0, record, &a[3]);
    ids[4] = loop_timer_add(l, 10, record, &a[4]);   /* same due as tag 10: after it */
    ids[5] = loop_timer_add(l, 10, record, &a[5]);
    for (int i = 0; i < 6; i++) {
        CHECK(ids[i] != 0);
        for (int j = 0; j < i; j++)
            CHECK(ids[i] != ids[j]);
    }
    run_until(l, &log, 6, 1000);
    int want[6] = {0, 10, 11, 12, 20, 30};
    CHECK(log.n == 6);
    for (int i = 0; i < 6 && i < log.n; i++)
        CHECK(log.seq[i] == want[i]);
    CHECK(loop_time_ms() - t0 >= 30);   /* the 30 ms timer did not fire early */
    loop_free(l);
}

TEST(cancelled_timer_never_fires)
{
    loop *l = loop_new(NULL);
    tlog log = {.n = 0};
    tarm a = {&log, 1, 0, NULL}, b = {&log, 2, 0, NULL};
    loop_timer_id ia = loop_timer_add(l, 5, record, &a);
    loop_timer_id ib = loop_timer_add(l, 5, record, &b);
    loop_timer_cancel(l, ia);
    loop_timer_cancel(l, ia);        /* twice: no-op */
    loop_timer_cancel(l, 0);         /* never valid: no-op */
    loop_timer_cancel(l, 999999);    /* unknown: no-op */
    run_until(l, &log, 1, 1000);
    for (int i = 0; i < 5; i++)
        loop_run_once(l, 5);
    CHECK(log.n == 1);
    CHECK(log.seq[0] == 2);
    /* Cancelling a timer that already fired does not touch a newer one. */
    loop_timer_cancel(l, ib);
    tarm c = {&log, 3, 0, NULL};
    loop_timer_id ic = loop_timer_add(l, 0, record, &c);
    CHECK(ic > ib);
    loop_timer_cancel(l, ib);
    run_until(l, &log, 2, 1000);
    CHECK(log.n == 2 && log.seq[1] == 3);
    loop_free(l);
}

TEST(cancel_from_inside_a_callback)
{
    loop *l = loop_new(NULL);
    tlog log = {.n = 0};
    loop_timer_id ia = 0;
    tarm b = {&log, 2, 0, NULL}, c = {&log, 3, 0, NULL};
    loop_timer_id ib = loop_timer_add(l, 20, record, &b);
    loop_timer_add(l, 30, record, &c);
    tarm a = {&log, 1, ib, &ia};     /* cancels b, and itself (already fired) */
    ia = loop_timer_add(l, 10, record, &a);
    run_until(l, &log, 2, 1000);
    for (int i = 0; i < 3; i++)
        loop_run_once(l, 10);
    CHECK(log.n == 2);
    CHECK(log.seq[0] == 1 && log.seq[1] == 3);
    /* Same due time, same batch: the first one cancels the second. */
    log.n = 0;
    tarm d = {&log, 4, 0, NULL}, e = {&log, 5, 0, NULL};
    loop_timer_add(l, 0, record, &d);
    d.cancel_me = loop_timer_add(l, 0, record, &e);
    loop_run_once(l, 0);
    loop_run_once(l, 0);
    CHECK(log.n == 1 && log.seq[0] == 4);
    loop_free(l);
}

typedef struct rearm {
    int count;
} rearm;

static void rearm_cb(loop *l, void *ud)
{
    rearm *r = ud;
    if (++r->count < 3)
        loop_timer_add(l, 0, rearm_cb, r);
}

TEST(zero_delay_runs_on_the_next_iteration)
{
    loop *l = loop_new(NULL);
    rearm r = {0};
    loop_timer_add(l, 0, rearm_cb, &r);
    /* A zero-delay timer added from a callback waits for the next
     * iteration, so a self-rearming callback cannot starve the loop. */
    loop_run_once(l, 0);
    CHECK(r.count == 1);
    loop_run_once(l, 0);
    CHECK(r.count == 2);
    /* A pending zero-delay timer cuts a long wait short. */
    uint64_t t0 = loop_time_ms();
    loop_run_once(l, 5000);
    CHECK(r.count == 3);
    CHECK(loop_time_ms() - t0 < 1000);
    loop_free(l);
}

TEST(many_timers_with_half_cancelled)
{
    loop *l = loop_new(NULL);
    static tlog log;
    static tarm arms[1000];
    loop_timer_id ids[1000];
    log.n = 0;
    srand(7);
    for (int i = 0; i < 1000; i++) {
        arms[i] = (tarm){&log, i, 0, NULL};
        ids[i] = loop_timer_add(l, (uint64_t)(rand() % 40), record, &arms[i]);
    }
    for (int i = 0; i < 1000; i += 2)
        loop_timer_cancel(l, ids[i]);
    run_until(l, &log, 500, 2000);
    loop_run_once(l, 50);
    CHECK(log.n == 500);
    int odd = 1;
    for (int i = 0; i < log.n; i++)
        if (log.seq[i] % 2 == 0)
            odd = 0;
    CHECK(odd);
    loop_free(l);
}

typedef struct fdlog {
    int calls, events, bytes;
    int other_fd;        /* removed from inside the callback when >= 0 */
    int remove_self;
} fdlog;

static void on_fd(loop *l, int fd, int events, void *ud)
{
    fdlog *f = ud;
    f->calls++;
    f->events |= events;
    if (events & LOOP_READ) {
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0)
            f->bytes += (int)n;
    }
    if (f->other_fd >= 0)
        loop_fd_del(l, f->other_fd);
    if (f->remove_self)
        loop_fd_del(l, fd);
}

TEST(fd_readiness_on_a_pipe)
{
    loop *l = loop_new(NULL);
    int p[2];
    CHECK(pipe(p) == 0);
    fdlog r = {0, 0, 0, -1, 0}, w = {0, 0, 0, -1, 1};
    CHECK(loop_fd_add(l, p[0], LOOP_READ, on_fd, &r) == 0);
    CHECK(loop_fd_add(l, p[0], LOOP_READ, on_fd, &r) == -1);   /* already watched */
    loop_run_once(l, 20);
    CHECK(r.calls == 0);                /* nothing to read yet */
    CHECK(write(p[1], "hello", 5) == 5);
    loop_run_once(l, 1000);
    CHECK(r.calls == 1 && r.bytes == 5 && r.events == LOOP_READ);
    /* Writable at once; the callback removes its own watch. */
    CHECK(loop_fd_add(l, p[1], LOOP_WRITE, on_fd, &w) == 0);
    loop_run_once(l, 1000);
    loop_run_once(l, 20);
    CHECK(w.calls == 1 && w.events == LOOP_WRITE);
    /* Switch the read end to write interest only: no more read events. */
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(loop_fd_mod(l, p[0], 0) == 0);
    loop_run_once(l, 20);
    CHECK(r.calls == 1);
    CHECK(loop_fd_mod(l, p[0], LOOP_READ) == 0);
    loop_run_once(l, 1000);
    CHECK(r.calls == 2 && r.bytes == 6);
    /* Closing the writer hangs the reader up: reported as an error. */
    close(p[1]);
    r.events = 0;
    r.remove_self = 1;
    loop_run_once(l, 1000);
    CHECK(r.events & LOOP_ERROR);
    CHECK(loop_fd_mod(l, p[0], LOOP_READ) == -1);   /* gone */
    close(p[0]);
    loop_free(l);
}

TEST(fd_removed_by_an_earlier_callback_is_not_dispatched)
{
    loop *l = loop_new(NULL);
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    fdlog fa = {0, 0, 0, b[0], 0}, fb = {0, 0, 0, a[0], 0};
    loop_fd_add(l, a[0], LOOP_READ, on_fd, &fa);
    loop_fd_add(l, b[0], LOOP_READ, on_fd, &fb);
    CHECK(write(a[1], "1", 1) == 1 && write(b[1], "2", 1) == 1);
    loop_run_once(l, 1000);
    /* Both were ready in the same batch; whichever ran first removed the
     * other, which must then not run. */
    CHECK(fa.calls + fb.calls == 1);
    loop_fd_del(l, a[0]);
    loop_fd_del(l, b[0]);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    loop_free(l);
}

typedef struct siglog {
    int signo, count;
} siglog;

static void on_sig(loop *l, int signo, void *ud)
{
    siglog *s = ud;
    s->signo = signo;
    s->count++;
}

TEST(signal_delivered_through_the_loop)
{
    loop *l = loop_new(NULL);
    siglog s = {0, 0};
    CHECK(loop_signal(l, SIGUSR1, on_sig, &s) == 0);
    CHECK(loop_signal(l, SIGUSR2, on_sig, &s) == 0);
    raise(SIGUSR1);                 /* blocked: stays pending until read */
    CHECK(s.count == 0);
    loop_run_once(l, 1000);
    CHECK(s.count == 1 && s.signo == SIGUSR1);
    raise(SIGUSR2);
    loop_run_once(l, 1000);
    CHECK(s.count == 2 && s.signo == SIGUSR2);
    CHECK(loop_signal(l, 0, on_sig, &s) == -1);
    loop_free(l);
}

static void stop_cb(loop *l, void *ud)
{
    (*(int *)ud)++;
    loop_stop(l);
}

TEST(run_until_stopped)
{
    loop *l = loop_new(NULL);
    int fired = 0;
    loop_timer_add(l, 10, stop_cb, &fired);
    CHECK(loop_run(l) == 0);
    CHECK(fired == 1);
    CHECK(loop_stopped(l));
    /* A new run does not end at once because of the old stop. */
    loop_timer_add(l, 10, stop_cb, &fired);
    CHECK(loop_run(l) == 0);
    CHECK(fired == 2);
    loop_free(l);
}

typedef struct nest {
    int rc, inner_fired;
} nest;

static void inner_cb(loop *l, void *ud)
{
    (void)l;
    ((nest *)ud)->inner_fired++;
}

static void nesting_cb(loop *l, void *ud)
{
    nest *n = ud;
    loop_timer_add(l, 0, inner_cb, n);
    n->rc = loop_run_once(l, 0);   /* a callback trying to drive the loop */
    loop_stop(l);
}

TEST(a_callback_cannot_run_the_loop_nested)
{
    loop *l = loop_new(NULL);
    nest n = {0, 0};
    loop_timer_add(l, 0, nesting_cb, &n);
    CHECK(loop_run(l) == 0);
    CHECK(n.rc == -1);
    CHECK(n.inner_fired == 0);   /* nothing ran under the callback's frame */
    loop_free(l);
}

typedef struct clk {
    uint64_t a, b, c;
} clk;

static void clock_cb(loop *l, void *ud)
{
    clk *k = ud;
    k->a = loop_now_ms(l);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    k->b = loop_now_ms(l);
    k->c = loop_time_ms();
}

TEST(clock_is_cached_per_iteration)
{
    loop *l = loop_new(NULL);
    clk k = {0, 0, 0};
    loop_timer_add(l, 0, clock_cb, &k);
    loop_run_once(l, 100);
    CHECK(k.a != 0 && k.a == k.b);
    CHECK(k.c >= k.a + 20);
    /* Outside an iteration, timers are armed against a fresh clock. */
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK(loop_now_ms(l) >= k.c + 30);
    loop_free(l);
}

static uint64_t fake_now(void *ud) { return *(uint64_t *)ud; }

TEST(injected_clock_decides_when_timers_are_due)
{
    loop *l = loop_new(NULL);
    uint64_t now = 5000;
    loop_set_clock(l, fake_now, &now);
    CHECK(loop_now_ms(l) == 5000);
    tlog log = {.n = 0};
    tarm a = {&log, 1, 0, NULL}, b = {&log, 2, 0, NULL}, c = {&log, 3, 0, NULL};
    loop_timer_add(l, 100, record, &a);
    loop_timer_add(l, 3600 * 1000, record, &b);   /* an hour */
    loop_timer_add(l, 0, record, &c);
    loop_run_once(l, 0);
    CHECK(log.n == 1 && log.seq[0] == 3);          /* zero delay: next iteration */
    /* Real time passing does not matter, only the injected clock. */
    struct timespec ts = {0, 120 * 1000 * 1000};
    nanosleep(&ts, NULL);
    loop_run_once(l, 0);
    CHECK(log.n == 1);
    now += 99;
    loop_run_once(l, 0);
    CHECK(log.n == 1);                             /* not a millisecond early */
    now += 1;
    loop_run_once(l, 0);
    CHECK(log.n == 2 && log.seq[1] == 1);
    CHECK(loop_now_ms(l) == 5100);
    now += 3600 * 1000;                            /* an hour passes at once */
    loop_run_once(l, 0);
    CHECK(log.n == 3 && log.seq[2] == 2);
    /* Back to the monotonic clock: a timer now counts in real time. */
    loop_set_clock(l, NULL, NULL);
    CHECK(loop_now_ms(l) != now);
    uint64_t t0 = loop_time_ms();
    tarm d = {&log, 4, 0, NULL};
    loop_timer_add(l, 20, record, &d);
    run_until(l, &log, 4, 1000);
    CHECK(log.n == 4 && loop_time_ms() - t0 >= 20);
    loop_free(l);
}

/* A callback that takes 50 ms of the injected clock, then arms a timer. */
typedef struct slow_arm {
    loop *l;
    uint64_t *now;
    uint64_t armed_at;
} slow_arm;

static void noop_timer(loop *l, void *ud) { (void)l; (void)ud; }

static void slow_then_arm(loop *l, void *ud)
{
    slow_arm *s = ud;
    *s->now += 50;                      /* a slow reconcile */
    s->armed_at = *s->now;
    loop_timer_add(l, 100, noop_timer, NULL);
}

TEST(timer_armed_late_in_an_iteration_is_not_early)
{
    loop *l = loop_new(NULL);
    uint64_t now = 1000, due = 0;
    loop_set_clock(l, fake_now, &now);
    slow_arm s = {l, &now, 0};
    loop_timer_add(l, 0, slow_then_arm, &s);
    loop_run_once(l, 0);
    CHECK(s.armed_at == 1050);
    CHECK(loop_next_due(l, &due) == 0);
    CHECK(due == 1150);                 /* 100 ms after it was armed, not after 1000 */
    loop_free(l);
}

int main(void)
{
    RUN(timers_fire_in_due_order);
    RUN(cancelled_timer_never_fires);
    RUN(cancel_from_inside_a_callback);
    RUN(zero_delay_runs_on_the_next_iteration);
    RUN(many_timers_with_half_cancelled);
    RUN(fd_readiness_on_a_pipe);
    RUN(fd_removed_by_an_earlier_callback_is_not_dispatched);
    RUN(signal_delivered_through_the_loop);
    RUN(run_until_stopped);
    RUN(a_callback_cannot_run_the_loop_nested);
    RUN(clock_is_cached_per_iteration);
    RUN(injected_clock_decides_when_timers_are_due);
    RUN(timer_armed_late_in_an_iteration_is_not_early);
    DONE();
}
