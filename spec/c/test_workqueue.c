/* test_workqueue.c - client-go workqueue semantics on the loop: dedup,
 * processing/dirty, delays, rate limiting, shutdown. Run under ASan, the
 * shutdown and free paths also prove no timer or item leaks. */
#include "harness.h"
#include "loop.h"
#include "workqueue.h"

static loop *new_loop(void)
{
    kl_err err;
    loop *l = loop_new(&err);
    if (!l)
        printf("# loop_new: %s\n", err.msg);
    return l;
}

/* Run the loop until the queue has n ready keys or ms pass. */
static void run_until_len(loop *l, workqueue *q, size_t n, uint64_t ms)
{
    uint64_t end = loop_time_ms() + ms;
    while (workqueue_len(q) < n && loop_time_ms() < end)
        loop_run_once(l, 5);
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
    uint64_t t0 = loop_now_ms(l); /* delays count from the loop's clock */
    workqueue_add_after(q, "k", 200);
    CHECK(workqueue_waiting(q) == 1);
    loop_run_once(l, 0);
    CHECK(workqueue_len(q) == 0);
    CHECK(workqueue_get(q) == NULL);
    run_until_len(l, q, 1, 50);
    CHECK(workqueue_len(q) == 0);  /* not before */
    run_until_len(l, q, 1, 1000);
    CHECK(workqueue_len(q) == 1);
    CHECK(loop_time_ms() - t0 >= 200);
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
    uint64_t t0 = loop_time_ms();
    workqueue_add_after(q, "late-then-early", 400);
    workqueue_add_after(q, "late-then-early", 30);
    workqueue_add_after(q, "early-then-late", 30);
    workqueue_add_after(q, "early-then-late", 400);
    CHECK(workqueue_waiting(q) == 2);
    run_until_len(l, q, 2, 1000);
    CHECK(workqueue_len(q) == 2);
    CHECK(loop_time_ms() - t0 < 350);
    CHECK(workqueue_waiting(q) == 0); /* nothing else left to fire */
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

    /* add_rate_limited waits that long, then the key is ready */
    workqueue_forget(q, "r");
    workqueue_add_rate_limited(q, "r");
    CHECK(workqueue_waiting(q) == 1);
    CHECK(workqueue_len(q) == 0);
    run_until_len(l, q, 1, 1000);
    CHECK_STR(workqueue_get(q), "r");
    CHECK(workqueue_num_requeues(q, "r") == 1);
    workqueue_done(q, "r");
    workqueue_free(q);
    loop_free(l);
}

TEST(token_bucket_limits_when_burst_is_spent)
{
    loop *l = new_loop();
    workqueue_opts o = {1, 1000, 10, 2};
    workqueue *q = workqueue_new(l, "test", &o);
    /* per-item delay is 1 ms for each new key; the bucket decides the rest */
    CHECK(workqueue_when(q, "a") <= 1);
    CHECK(workqueue_when(q, "b") <= 1);
    uint64_t third = workqueue_when(q, "c");
    printf("# third delay with qps 10 burst 2: %llu ms\n", (unsigned long long)third);
    CHECK(third > 50 && third <= 100);  /* one token at 10/s is 100 ms */
    uint64_t fourth = workqueue_when(q, "d");
    CHECK(fourth > third);              /* reservations queue up behind each other */
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
    CHECK(workqueue_when(q, "k") >= 90); /* the 101st waits ~100 ms at 10 qps */
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
        loop_run_once(l, 5);
    CHECK(workqueue_len(q) == len); /* no timer fired into the queue */
    CHECK(ready_calls == 0);
    CHECK(workqueue_get(q) == NULL);
    workqueue_done(q, "queued"); /* in-flight work may still finish */
    CHECK(workqueue_processing(q) == 0);
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
    RUN(token_bucket_limits_when_burst_is_spent);
    RUN(defaults_match_client_go);
    RUN(shutdown_stops_gets_and_cancels_timers);
    DONE();
}
