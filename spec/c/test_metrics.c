/* test_metrics.c - unit tests for the Prometheus registry (src/metrics.c).
 *
 * Covers the exact text format (HELP/TYPE lines, family order, label
 * escaping, number formatting), histogram buckets (cumulative, +Inf, _sum,
 * _count), the update rules (counters never go down, wrong type, label
 * arity by position), registration errors, and the default registry's
 * controller-runtime families through the helper functions.
 */
#include "harness.h"
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

#define V(...) ((const char *const[]){__VA_ARGS__})
#define LN(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Render r into a string the caller frees. */
static char *render(metrics_registry *r)
{
    kl_buf b = KL_BUF_INIT;
    if (metrics_render(r, &b) != 0) {
        kl_buf_free(&b);
        return NULL;
    }
    return kl_buf_take(&b);
}

TEST(counter_and_gauge_format_exactly)
{
    metrics_registry *r = metrics_registry_new();
    kl_err err;
    metrics_family *c = metrics_counter_new(r, "demo_requests_total", "Requests served.",
                                            LN("code", "method"), &err);
    metrics_family *g = metrics_gauge_new(r, "demo_temperature", "Degrees.", NULL, &err);
    CHECK(c && g);
    CHECK(metrics_counter_add(c, V("200", "GET"), 1) == 0);
    CHECK(metrics_counter_add(c, V("200", "GET"), 2) == 0);
    CHECK(metrics_counter_add(c, V("404", "GET"), 1) == 0);
    CHECK(metrics_gauge_set(g, NULL, 21.5) == 0);
    CHECK(metrics_gauge_add(g, NULL, -1.25) == 0);
    char *s = render(r);
    /* families sorted by name; series in first-use order */
    CHECK_STR(s, "# HELP demo_requests_total Requests served.\n"
                 "# TYPE demo_requests_total counter\n"
                 "demo_requests_total{code=\"200\",method=\"GET\"} 3\n"
                 "demo_requests_total{code=\"404\",method=\"GET\"} 1\n"
                 "# HELP demo_temperature Degrees.\n"
                 "# TYPE demo_temperature gauge\n"
                 "demo_temperature 20.25\n");
    free(s);
    CHECK(metrics_value(c, V("200", "GET")) == 3);
    CHECK(metrics_value(c, V("GET", "200")) == -1);   /* values go by position */
    metrics_registry_free(r);
}

TEST(unlabelled_family_renders_zero_and_labelled_empty_family_is_omitted)
{
    metrics_registry *r = metrics_registry_new();
    metrics_counter_new(r, "a_total", "A.", NULL, NULL);
    metrics_counter_new(r, "b_total", "B.", LN("x"), NULL);
    char *s = render(r);
    CHECK_STR(s, "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n");
    free(s);
    metrics_registry_free(r);
}

TEST(label_values_and_help_are_escaped)
{
    metrics_registry *r = metrics_registry_new();
    metrics_family *g = metrics_gauge_new(r, "esc", "Back\\slash and\nnewline \"kept\".",
                                          LN("v"), NULL);
    CHECK(metrics_gauge_set(g, V("a\"b\\c\nd"), 1) == 0);
    CHECK(metrics_gauge_set(g, V(NULL), 2) == 0);   /* NULL value = "" */
    char *s = render(r);
    CHECK_STR(s, "# HELP esc Back\\\\slash and\\nnewline \"kept\".\n"
                 "# TYPE esc gauge\n"
                 "esc{v=\"a\\\"b\\\\c\\nd\"} 1\n"
                 "esc{v=\"\"} 2\n");
    free(s);
    metrics_registry_free(r);
}

TEST(numbers_format_as_prometheus_parses_them)
{
    metrics_registry *r = metrics_registry_new();
    metrics_family *g = metrics_gauge_new(r, "n", "N.", LN("k"), NULL);
    metrics_gauge_set(g, V("int"), 1234567);
    metrics_gauge_set(g, V("frac"), 0.1);
    metrics_gauge_set(g, V("tiny"), 1e-9);
    metrics_gauge_set(g, V("neg"), -3);
    metrics_gauge_set(g, V("inf"), INFINITY);
    metrics_gauge_set(g, V("ninf"), -INFINITY);
    metrics_gauge_set(g, V("nan"), NAN);
    metrics_gauge_set(g, V("third"), 1.0 / 3.0);
    char *s = render(r);
    CHECK_STR(s, "# HELP n N.\n# TYPE n gauge\n"
                 "n{k=\"int\"} 1234567\n"
                 "n{k=\"frac\"} 0.1\n"
                 "n{k=\"tiny\"} 1e-09\n"
                 "n{k=\"neg\"} -3\n"
                 "n{k=\"inf\"} +Inf\n"
                 "n{k=\"ninf\"} -Inf\n"
                 "n{k=\"nan\"} NaN\n"
                 "n{k=\"third\"} 0.3333333333333333\n");
    free(s);
    metrics_registry_free(r);
}

TEST(histogram_buckets_are_cumulative_with_inf_sum_and_count)
{
    metrics_registry *r = metrics_registry_new();
    const double b[] = {0.1, 1, 5};
    metrics_family *h = metrics_histogram_new(r, "lat_seconds", "Latency.", LN("op"), b, 3, NULL);
    CHECK(h != NULL);
    CHECK(metrics_histogram_observe(h, V("get"), 0.05) == 0);
    CHECK(metrics_histogram_observe(h, V("get"), 0.1) == 0);   /* le is inclusive */
    CHECK(metrics_histogram_observe(h, V("get"), 2) == 0);
    CHECK(metrics_histogram_observe(h, V("get"), 100) == 0);
    CHECK(metrics_histogram_observe(h, V("get"), NAN) == -1);
    char *s = render(r);
    CHECK_STR(s, "# HELP lat_seconds Latency.\n"
                 "# TYPE lat_seconds histogram\n"
                 "lat_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
                 "lat_seconds_bucket{op=\"get\",le=\"1\"} 2\n"
                 "lat_seconds_bucket{op=\"get\",le=\"5\"} 3\n"
                 "lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
                 "lat_seconds_sum{op=\"get\"} 102.15\n"
                 "lat_seconds_count{op=\"get\"} 4\n");
    free(s);
    CHECK(metrics_value(h, V("get")) == 4);
    metrics_registry_free(r);
}

TEST(histogram_without_labels_renders_empty_buckets)
{
    metrics_registry *r = metrics_registry_new();
    const double b[] = {1, INFINITY};   /* a trailing +Inf is accepted, not doubled */
    CHECK(metrics_histogram_new(r, "h", "H.", NULL, b, 2, NULL) != NULL);
    char *s = render(r);
    CHECK_STR(s, "# HELP h H.\n# TYPE h histogram\n"
                 "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
    free(s);
    metrics_registry_free(r);
}

TEST(update_rules)
{
    metrics_registry *r = metrics_registry_new();
    metrics_family *c = metrics_counter_new(r, "c_total", "C.", LN("x"), NULL);
    metrics_family *g = metrics_gauge_new(r, "g", "G.", NULL, NULL);
    CHECK(metrics_counter_add(c, V("a"), -1) == -1);    /* counters never go down */
    CHECK(metrics_counter_add(c, V("a"), NAN) == -1);
    CHECK(metrics_gauge_set(c, V("a"), 1) == -1);       /* wrong type */
    CHECK(metrics_counter_add(g, NULL, 1) == -1);
    CHECK(metrics_histogram_observe(g, NULL, 1) == -1);
    CHECK(metrics_value(c, V("a")) == -1);              /* nothing was created */
    CHECK(metrics_counter_add(c, V("a"), 0) == 0);
    CHECK(metrics_value(c, V("a")) == 0);
    CHECK(metrics_remove(c, V("a")) == 0);
    CHECK(metrics_remove(c, V("a")) == -1);
    CHECK(metrics_value(c, V("a")) == -1);
    /* the cap on series per family */
    char v[16];
    int failed = 0;
    for (int i = 0; i < METRICS_MAX_SERIES + 5; i++) {
        snprintf(v, sizeof v, "%d", i);
        if (metrics_counter_add(c, V(v), 1) != 0)
            failed++;
    }
    CHECK(failed == 5);
    CHECK(metrics_counter_add(c, V("0"), 1) == 0);      /* existing series still update */
    metrics_registry_free(r);
}

TEST(registration_errors)
{
    metrics_registry *r = metrics_registry_new();
    kl_err err;
    CHECK(metrics_counter_new(r, "ok_total", "x", NULL, &err) != NULL);
    CHECK(metrics_counter_new(r, "ok_total", "x", NULL, &err) == NULL);
    CHECK(strstr(err.msg, "registered twice") != NULL);
    CHECK(metrics_gauge_new(r, "9bad", "x", NULL, &err) == NULL);
    CHECK(metrics_gauge_new(r, "bad-name", "x", NULL, &err) == NULL);
    CHECK(metrics_gauge_new(r, "g", "x", LN("bad-label"), &err) == NULL);
    CHECK(metrics_gauge_new(r, "g", "x", LN("__reserved"), &err) == NULL);
    CHECK(metrics_gauge_new(r, "g", "x", LN("a", "a"), &err) == NULL);
    const double b[] = {1, 1};
    CHECK(metrics_histogram_new(r, "h", "x", NULL, b, 2, &err) == NULL);
    CHECK(metrics_histogram_new(r, "h", "x", LN("le"), NULL, 0, &err) == NULL);
    CHECK(metrics_gauge_new(r, "ns:sub_g", "x", LN("a"), &err) != NULL);   /* colons ok */
    CHECK(metrics_find(r, "ns:sub_g") != NULL);
    CHECK(metrics_find(r, "g") == NULL);
    metrics_registry_free(r);
}

TEST(default_registry_has_controller_runtime_families)
{
    metrics_default_free();
    metrics_controller_started("comment", 4);
    metrics_active_workers_add("comment", 1);
    metrics_reconcile_done("comment", "success", 0.02);
    metrics_reconcile_done("comment", "error", 0.5);
    metrics_active_workers_add("comment", -1);
    metrics_workqueue_add("comment");
    metrics_workqueue_retry("comment");
    metrics_workqueue_depth("comment", 7);
    metrics_workqueue_queue_duration("comment", 0.003);
    metrics_workqueue_work_duration("comment", 0.2);
    metrics_rest_request(200, "GET", "127.0.0.1:6443");
    metrics_rest_request(0, "PATCH", "127.0.0.1:6443");
    metrics_cache_objects_add("github.klua.dev/v1/comments", 12);
    metrics_cache_objects_add("github.klua.dev/v1/comments", 3); /* a second informer */
    metrics_cache_objects_add("github.klua.dev/v1/comments", -3);
    metrics_informer_skipped("v1/configmaps", 0);
    metrics_informer_skipped("v1/configmaps", 1);
    metrics_lua_memory("comment", 65536);
    metrics_script_reload("comment", 0);
    metrics_registry *r = metrics_default();
    CHECK(r != NULL);
    char *s = render(r);
    CHECK(s != NULL);
    const char *want[] = {
        "# TYPE controller_runtime_reconcile_total counter\n",
        "controller_runtime_reconcile_total{controller=\"comment\",result=\"success\"} 1\n",
        "controller_runtime_reconcile_total{controller=\"comment\",result=\"error\"} 1\n",
        "controller_runtime_reconcile_total{controller=\"comment\",result=\"requeue\"} 0\n",
        "controller_runtime_reconcile_total{controller=\"comment\",result=\"requeue_after\"} 0\n",
        "controller_runtime_reconcile_errors_total{controller=\"comment\"} 1\n",
        "# TYPE controller_runtime_reconcile_time_seconds histogram\n",
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"comment\",le=\"0.025\"} 1\n",
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"comment\",le=\"60\"} 2\n",
        "controller_runtime_reconcile_time_seconds_count{controller=\"comment\"} 2\n",
        "controller_runtime_active_workers{controller=\"comment\"} 0\n",
        "controller_runtime_max_concurrent_reconciles{controller=\"comment\"} 4\n",
        "workqueue_depth{name=\"comment\",controller=\"comment\"} 7\n",
        "workqueue_adds_total{name=\"comment\",controller=\"comment\"} 1\n",
        "workqueue_retries_total{name=\"comment\",controller=\"comment\"} 1\n",
        "workqueue_queue_duration_seconds_bucket{name=\"comment\",controller=\"comment\",le=\"0.01\"} 1\n",
        "workqueue_work_duration_seconds_count{name=\"comment\",controller=\"comment\"} 1\n",
        "rest_client_requests_total{code=\"200\",method=\"GET\",host=\"127.0.0.1:6443\"} 1\n",
        "rest_client_requests_total{code=\"<error>\",method=\"PATCH\",host=\"127.0.0.1:6443\"} 1\n",
        "klua_cache_objects{resource=\"github.klua.dev/v1/comments\"} 12\n",
        "klua_informer_objects_skipped_total{resource=\"v1/configmaps\"} 1\n",
        "klua_lua_memory_bytes{controller=\"comment\"} 65536\n",
        "klua_script_reloads_total{controller=\"comment\",result=\"error\"} 1\n",
    };
    for (size_t i = 0; s && i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(s, want[i]))
            printf("#   missing: %s", want[i]);
        CHECK(strstr(s, want[i]) != NULL);
    }
    /* HELP precedes TYPE for every family, and sorted by name */
    CHECK(s && strstr(s, "# HELP workqueue_depth Current depth of workqueue\n"
                         "# TYPE workqueue_depth gauge\n"));
    CHECK(s && strstr(s, "klua_cache_objects") < strstr(s, "rest_client_requests_total"));
    free(s);
    metrics_default_free();
    /* a fresh default after free starts empty */
    s = render(metrics_default());
    CHECK(s && strstr(s, "controller_runtime_reconcile_total") == NULL);
    free(s);
    metrics_default_free();
}

int main(void)
{
    RUN(counter_and_gauge_format_exactly);
    RUN(unlabelled_family_renders_zero_and_labelled_empty_family_is_omitted);
    RUN(label_values_and_help_are_escaped);
    RUN(numbers_format_as_prometheus_parses_them);
    RUN(histogram_buckets_are_cumulative_with_inf_sum_and_count);
    RUN(histogram_without_labels_renders_empty_buckets);
    RUN(update_rules);
    RUN(registration_errors);
    RUN(default_registry_has_controller_runtime_families);
    DONE();
}
