/* test_workqueue.c - client-go workqueue semantics on the loop: dedup,
 * processing/dirty, delays, rate limiting, shutdown. Run under ASan, the
 * shutdown and free paths also prove no timer or item leaks.
 *
 * Time is the loop's injected clock (loop_set_clock), moved by hand: delays
 * and backoff are asserted to the millisecond, never against the wall clock
 * (a loaded machine running ASan would make those flaky). */
#include "harness.h"
#include "loop.h"
#include "workqueue.h"

typedef struct fake_clock {
    uint64_t ms;
} fake_clock;

static fake_clock clk;

static uint64_t fake_now(void *ud) { return ((fake_clock *)ud)->ms; }

static loop *new_loop(void)
{
    kl_err err;
    loop *l = loop_new(&err);
    if (!l) {
        printf("# loop_new: %s\n", err.msg);
        return NULL;
    }
    clk.ms = 1000000;   /* any start: only differences matter */
    loop_set_clock(l, fake_now, &clk);
    return l;
}

/* Move the clock on by ms, then run one iteration: what is due fires. */
static void advance(loop *l, uint64_t ms)
{
    clk.ms += ms;
    loop_run_once(l, 0);
}

static int ready_calls;
static void on_ready(void *ud) { ready_calls++; }

TEST(repeated_adds_collapse)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    workqueue_add(q, "ns/a");
    workqueue_add(q, "ns/b");
    workqueue_add(q, "ns/a");
    workqueue_add(q, "ns/a");
    CHECK(workqueue_len(q) == 2);
    CHECK_STR(workqueue_get(q), "ns/a"); /* FIFO */
    CHECK_STR(workqueue_get(q), "ns/b");
    CHECK(workqueue_get(q) == NULL);
    CHECK(workqueue_processing(q) == 2);
    workqueue_done(q, "ns/a");
    workqueue_done(q, "ns/b");
    CHECK(workqueue_processing(q) == 0);
    CHECK(workqueue_len(q) == 0);
    workqueue_free(q);
    loop_free(l);
}

TEST(processing_key_is_not_handed_out_twice)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    workqueue_add(q, "k");
    const char *k = workqueue_get(q);
    CHECK_STR(k, "k");
    workqueue_add(q, "k");  /* re-added while processing: only marked dirty */
    workqueue_add(q, "k");
    CHECK(workqueue_len(q) == 0);
    CHECK(workqueue_get(q) == NULL);
    CHECK_STR(k, "k");      /* the pointer stays valid until done */
    workqueue_done(q, k);
    CHECK(workqueue_len(q) == 1); /* processed again after done */
    k = workqueue_get(q);
    CHECK_STR(k, "k");
    workqueue_done(q, k);
    CHECK(workqueue_len(q) == 0);
    CHECK(workqueue_get(q) == NULL);
    workqueue_free(q);
    loop_free(l);
}

TEST(ready_callback_is_deferred_and_coalesced)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    ready_calls = 0;
    workqueue_set_ready_cb(q, on_ready, NULL);
    workqueue_add(q, "a");
    workqueue_add(q, "b");
    workqueue_add(q, "c");
    CHECK(ready_calls == 0); /* never called from inside add */
    for (int i = 0; i < 5 && ready_calls == 0; i++)
        loop_run_once(l, 10);
    CHECK(ready_calls == 1);
    loop_run_once(l, 0);
    CHECK(ready_calls == 1);
    workqueue_free(q);
    loop_free(l);
}

TEST(add_after_fires_after_the_delay_not_before)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    workqueue_add_after(q, "k", 200);
    CHECK(workqueue_waiting(q) == 1);
    loop_run_once(l, 0);
    CHECK(workqueue_len(q) == 0);
    CHECK(workqueue_get(q) == NULL);
    advance(l, 199);
    CHECK(workqueue_len(q) == 0);  /* not a millisecond early */
    CHECK(workqueue_waiting(q) == 1);
    advance(l, 1);
    CHECK(workqueue_len(q) == 1);  /* and due exactly at 200 */
    CHECK(workqueue_waiting(q) == 0);
    CHECK_STR(workqueue_get(q), "k");
    workqueue_done(q, "k");
    /* zero delay is a plain add */
    workqueue_add_after(q, "z", 0);
    CHECK(workqueue_len(q) == 1);
    workqueue_free(q);
    loop_free(l);
}

TEST(add_after_keeps_the_earlier_due_time)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    workqueue_add_after(q, "late-then-early", 400);
    workqueue_add_after(q, "late-then-early", 30);
    workqueue_add_after(q, "early-then-late", 30);
    workqueue_add_after(q, "early-then-late", 400);
    CHECK(workqueue_waiting(q) == 2);
    advance(l, 29);
    CHECK(workqueue_len(q) == 0);
    advance(l, 1);
    CHECK(workqueue_len(q) == 2);     /* both at 30, not 400 */
    CHECK(workqueue_waiting(q) == 0); /* nothing else left to fire */
    CHECK_STR(workqueue_get(q), "late-then-early");
    CHECK_STR(workqueue_get(q), "early-then-late");
    workqueue_done(q, "late-then-early");
    workqueue_done(q, "early-then-late");
    advance(l, 1000);                 /* the 400 ms timers are gone for good */
    CHECK(workqueue_len(q) == 0);
    workqueue_free(q);
    loop_free(l);
}

TEST(backoff_doubles_per_failure_and_forget_resets)
{
    loop *l = new_loop();
    workqueue_opts o = {5, 1000, 1e9, 1000000}; /* a bucket that never limits */
    workqueue *q = workqueue_new(l, "test", &o);
    CHECK(workqueue_when(q, "k") == 5);
    CHECK(workqueue_when(q, "k") == 10);
    CHECK(workqueue_when(q, "k") == 20);
    CHECK(workqueue_when(q, "k") == 40);
    CHECK(workqueue_num_requeues(q, "k") == 4);
    CHECK(workqueue_when(q, "other") == 5); /* per item */
    for (int i = 0; i < 20; i++)
        workqueue_when(q, "k");
    CHECK(workqueue_when(q, "k") == 1000); /* capped at max */
    workqueue_forget(q, "k");
    CHECK(workqueue_num_requeues(q, "k") == 0);
    CHECK(workqueue_when(q, "k") == 5);
    workqueue_forget(q, "k");
    workqueue_forget(q, "other");
    workqueue_free(q);
    loop_free(l);
}

TEST(add_rate_limited_waits_exactly_the_backoff)
{
    loop *l = new_loop();
    workqueue_opts o = {5, 1000, 1e9, 1000000};
    workqueue *q = workqueue_new(l, "test", &o);
    /* failures 1, 2, 3, 4: ready after 5, 10, 20, 40 ms, not a ms before */
    uint64_t want[4] = {5, 10, 20, 40};
    for (int i = 0; i < 4; i++) {
        workqueue_add_rate_limited(q, "r");
        CHECK(workqueue_waiting(q) == 1);
        CHECK(workqueue_len(q) == 0);
        advance(l, want[i] - 1);
        CHECK(workqueue_len(q) == 0);
        advance(l, 1);
        CHECK(workqueue_len(q) == 1);
        CHECK_STR(workqueue_get(q), "r");
        CHECK(workqueue_num_requeues(q, "r") == (unsigned)i + 1);
        workqueue_done(q, "r");
    }
    /* success forgets: the next failure starts at the base again */
    workqueue_forget(q, "r");
    workqueue_add_rate_limited(q, "r");
    advance(l, 4);
    CHECK(workqueue_len(q) == 0);
    advance(l, 1);
    CHECK(workqueue_len(q) == 1);
    workqueue_free(q);
    loop_free(l);
}

TEST(token_bucket_limits_when_burst_is_spent)
{
    loop *l = new_loop();
    workqueue_opts o = {1, 1000, 10, 2};
    workqueue *q = workqueue_new(l, "test", &o);
    /* per-item delay is 1 ms for each new key; the bucket decides the rest */
    CHECK(workqueue_when(q, "a") == 1);
    CHECK(workqueue_when(q, "b") == 1);
    CHECK(workqueue_when(q, "c") == 100);   /* one token at 10/s is 100 ms */
    CHECK(workqueue_when(q, "d") == 200);   /* reservations queue up behind each other */
    /* 150 ms later 1.5 tokens came back: the debt is 0.5, the next waits 150 */
    clk.ms += 150;
    CHECK(workqueue_when(q, "e") == 150);
    /* a long pause refills to the burst, no further */
    clk.ms += 60000;
    CHECK(workqueue_when(q, "f") == 1);
    CHECK(workqueue_when(q, "g") == 1);
    CHECK(workqueue_when(q, "h") == 100);
    workqueue_free(q);
    loop_free(l);
}

TEST(defaults_match_client_go)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    CHECK(workqueue_when(q, "k") == 5);
    for (int i = 0; i < 99; i++) /* burst 100: 100 reservations are free */
        workqueue_when(q, "k");
    workqueue_forget(q, "k");
    CHECK(workqueue_when(q, "k") == 100); /* the 101st waits 100 ms at 10 qps */
    workqueue_forget(q, "k");
    for (int i = 0; i < 40; i++)
        workqueue_when(q, "k");
    CHECK(workqueue_when(q, "k") == 1000000); /* per item: capped at 1000 s */
    workqueue_free(q);
    loop_free(l);
}

TEST(shutdown_stops_gets_and_cancels_timers)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    ready_calls = 0;
    workqueue_set_ready_cb(q, on_ready, NULL);
    workqueue_add(q, "queued");
    workqueue_add(q, "busy");
    workqueue_add_after(q, "later", 20);
    workqueue_add_rate_limited(q, "failing");
    CHECK_STR(workqueue_get(q), "queued");
    CHECK(workqueue_waiting(q) == 2);
    workqueue_shutdown(q);
    CHECK(workqueue_shutting_down(q));
    CHECK(workqueue_waiting(q) == 0);
    CHECK(workqueue_get(q) == NULL);
    workqueue_add(q, "new");
    workqueue_add_after(q, "new2", 1);
    CHECK(workqueue_waiting(q) == 0);
    size_t len = workqueue_len(q);
    for (int i = 0; i < 10; i++)
        advance(l, 100000);  /* far past every delay that was pending */
    CHECK(workqueue_len(q) == len); /* no timer fired into the queue */
    CHECK(ready_calls == 0);
    CHECK(workqueue_get(q) == NULL);
    workqueue_done(q, "queued"); /* in-flight work may still finish */
    CHECK(workqueue_processing(q) == 0);
    workqueue_free(q);
    loop_free(l);
}

/* A burst of keys drained (the queue then gives its memory back) leaves a
 * queue that dedups, orders and tracks keys as before, through another burst. */
TEST(a_drained_burst_leaves_a_working_queue)
{
    loop *l = new_loop();
    workqueue *q = workqueue_new(l, "test", NULL);
    char key[32];
    int ok = 1;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3000; i++) {
            snprintf(key, sizeof key, "ns/k%d", i);
            workqueue_add(q, key);
            workqueue_add(q, key);
        }
        ok &= workqueue_len(q) == 3000;
        for (int i = 0; i < 3000; i++) {
            snprintf(key, sizeof key, "ns/k%d", i);
            const char *k = workqueue_get(q);
            ok &= k && strcmp(k, key) == 0;
            workqueue_done(q, key);
        }
        ok &= workqueue_len(q) == 0 && workqueue_processing(q) == 0;
    }
    CHECK(ok);
    workqueue_add(q, "ns/a");
    workqueue_add(q, "ns/a");
    CHECK(workqueue_len(q) == 1);
    CHECK_STR(workqueue_get(q), "ns/a");
    workqueue_done(q, "ns/a");
    workqueue_free(q);
    loop_free(l);
}

int main(void)
{
    RUN(repeated_adds_collapse);
    RUN(processing_key_is_not_handed_out_twice);
    RUN(ready_callback_is_deferred_and_coalesced);
    RUN(add_after_fires_after_the_delay_not_before);
    RUN(add_after_keeps_the_earlier_due_time);
    RUN(backoff_doubles_per_failure_and_forget_resets);
    RUN(add_rate_limited_waits_exactly_the_backoff);
    RUN(token_bucket_limits_when_burst_is_spent);
    RUN(defaults_match_client_go);
    RUN(shutdown_stops_gets_and_cancels_timers);
    RUN(a_drained_burst_leaves_a_working_queue);
    DONE();
}
