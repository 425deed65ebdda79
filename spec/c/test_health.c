/* test_health.c - unit tests for liveness (src/health.c): the loop
 * heartbeat goes stale when timers stop being served, an informer that
 * cannot list or watch fails /healthz only past the threshold, a long
 * running attempt (a quiet watch stream) counts as working, a success or a
 * stop clears it. Time is injected (the loop's and health's clocks). */
#include "harness.h"
#include "health.h"
#include "loop.h"

#include <stdlib.h>

static uint64_t now;
static uint64_t clock_ms(void) { return now; }
static uint64_t loop_clock(void *ud) { (void)ud; return now; }

/* health_check's verdict; *why gets the reasons (caller frees). */
static int check(const health_opts *o, char **why)
{
    kl_buf b = KL_BUF_INIT;
    int ok = health_check((void *)o, &b);
    *why = kl_buf_take(&b);
    return ok;
}

TEST(loop_heartbeat_goes_stale_when_timers_stop)
{
    kl_err err;
    loop *l = loop_new(&err);
    now = 1000;
    health_set_clock(clock_ms);
    loop_set_clock(l, loop_clock, NULL);
    health_opts o = {.stall_ms = 5000};
    char *why;
    CHECK(check(&o, &why) == 1);   /* not started: not judged */
    free(why);
    CHECK(health_heartbeat_start(l) == 0);
    for (int i = 0; i < 10; i++) {  /* a loop serving its timers stays healthy */
        now += 1000;
        loop_run_once(l, 0);
        CHECK(check(&o, &why) == 1);
        free(why);
    }
    now += 5001;                     /* no iteration ran meanwhile: stuck */
    CHECK(check(&o, &why) == 0);
    CHECK(why && strstr(why, "event loop: no heartbeat for 5001 ms (over --healthz-loop-stall 5 s)"));
    free(why);
    loop_run_once(l, 0);             /* it runs again: the beat is fresh */
    CHECK(check(&o, &why) == 1);
    free(why);
    health_reset();
    loop_free(l);
    health_set_clock(NULL);
}

TEST(informer_failing_longer_than_the_threshold)
{
    int a, b;
    now = 50000;
    health_set_clock(clock_ms);
    health_opts o = {.informer_ms = 10000};
    char *why;
    health_informer_attempt(&a);     /* all well: nothing recorded */
    health_informer_ok(&a);
    health_informer_failed(&a, "v1/configmaps");
    now += 5000;
    health_informer_attempt(&a);
    health_informer_failed(&a, "v1/configmaps");   /* still failing since 50 s */
    CHECK(check(&o, &why) == 1);
    free(why);
    now += 5001;
    CHECK(check(&o, &why) == 0);
    CHECK(why && strstr(why, "informer v1/configmaps: cannot list or watch for 10 s "
                             "(over --healthz-informer-failure 10 s)\n"));
    free(why);
    /* an attempt running past the grace (a connected, quiet watch) works */
    health_informer_attempt(&a);
    now += HEALTH_ATTEMPT_GRACE_MS;
    CHECK(check(&o, &why) == 0);
    free(why);
    now += 1;
    CHECK(check(&o, &why) == 1);
    free(why);
    /* a second informer failing; the first one recovers */
    health_informer_failed(&b, "github.klua.dev/v1/comments");
    now += 10001;
    health_informer_ok(&a);
    CHECK(check(&o, &why) == 0);
    CHECK(why && strstr(why, "github.klua.dev/v1/comments") && !strstr(why, "configmaps"));
    free(why);
    health_informer_forget(&b);      /* stopped: no longer judged */
    CHECK(check(&o, &why) == 1);
    free(why);
    health_reset();
    health_set_clock(NULL);
}

TEST(defaults_apply_without_options)
{
    int a;
    now = 1;
    health_set_clock(clock_ms);
    health_informer_failed(&a, "v1/secrets");
    char *why;
    now += HEALTH_INFORMER_MS;
    CHECK(check(NULL, &why) == 1);
    free(why);
    now += 1;
    CHECK(check(NULL, &why) == 0);
    free(why);
    health_reset();
    health_set_clock(NULL);
}

int main(void)
{
    RUN(loop_heartbeat_goes_stale_when_timers_stop);
    RUN(informer_failing_longer_than_the_threshold);
    RUN(defaults_apply_without_options);
    DONE();
}
