/* test_metrics.c - unit tests for the Prometheus registry (src/metrics.c).
 *
 * Covers the exact text format (HELP/TYPE lines, family order, label
 * escaping, number formatting), histogram buckets (cumulative, +Inf, _sum,
 * _count), the update rules (counters never go down, wrong type, label
 * arity by position), registration errors, and the default registry's
 * controller-runtime families through the helper functions, workqueue
 * unfinished work measured at scrape time, removal of a controller's
 * series, and the process_* figures read from /proc.
 */
#include "harness.h"
#include "metrics.h"
#include "metrics_process.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

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

static uint64_t fake_ns;
static uint64_t fake_clock(void) { return fake_ns; }

TEST(default_registry_has_controller_runtime_families)
{
    metrics_default_free();
    metrics_set_clock(fake_clock);
    fake_ns = 1000000000ull;
    metrics_controller_started("comment", 4);
    metrics_active_workers_add("comment", 1);
    metrics_reconcile_done("comment", "success", 0.02);
    metrics_reconcile_done("comment", "error", 0.5);
    metrics_active_workers_add("comment", -1);
    uint64_t added = metrics_workqueue_add("comment");
    metrics_workqueue_add("comment");
    metrics_workqueue_retry("comment");
    fake_ns += 3000000;                               /* 3 ms in the queue */
    uint64_t started = metrics_workqueue_get("comment", added);
    fake_ns += 200000000;                             /* 200 ms of work */
    metrics_workqueue_done("comment", started);
    metrics_rest_request(200, "GET", "https://127.0.0.1:6443", 0.004);
    metrics_rest_request(0, "PATCH", "https://u:secret@127.0.0.1:6443/prefix", 1.5);
    metrics_rest_request(200, "GET", "https://127.0.0.1:6443", -1);   /* a watch */
    metrics_api_count(METRICS_API_LIST);
    metrics_leader_status("klua", 1);
    metrics_http_request("comment", 201);
    metrics_http_request("comment", 0);
    metrics_cache_objects_add("github.klua.dev/v1/comments", 12);
    metrics_cache_objects_add("github.klua.dev/v1/comments", 3); /* a second informer */
    metrics_cache_objects_add("github.klua.dev/v1/comments", -3);
    metrics_informer_skipped("v1/configmaps", 0);
    metrics_informer_skipped("v1/configmaps", 1);
    metrics_informer_relist("v1/configmaps");
    metrics_informer_watch_restart("v1/configmaps");
    metrics_informer_watch_restart("v1/configmaps");
    metrics_lua_memory("comment", 65536);
    metrics_lua_instructions("comment", 5000);
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
        "workqueue_depth{name=\"comment\",controller=\"comment\"} 1\n",
        "workqueue_adds_total{name=\"comment\",controller=\"comment\"} 2\n",
        "workqueue_retries_total{name=\"comment\",controller=\"comment\"} 1\n",
        "workqueue_queue_duration_seconds_bucket{name=\"comment\",controller=\"comment\",le=\"0.001\"} 0\n",
        "workqueue_queue_duration_seconds_bucket{name=\"comment\",controller=\"comment\",le=\"0.01\"} 1\n",
        "workqueue_queue_duration_seconds_sum{name=\"comment\",controller=\"comment\"} 0.003\n",
        "workqueue_work_duration_seconds_sum{name=\"comment\",controller=\"comment\"} 0.2\n",
        "workqueue_unfinished_work_seconds{name=\"comment\",controller=\"comment\"} 0\n",
        "workqueue_longest_running_processor_seconds{name=\"comment\",controller=\"comment\"} 0\n",
        "rest_client_requests_total{code=\"200\",method=\"GET\",host=\"127.0.0.1:6443\"} 2\n",
        "rest_client_requests_total{code=\"<error>\",method=\"PATCH\",host=\"127.0.0.1:6443\"} 1\n",
        "rest_client_request_duration_seconds_count{verb=\"GET\",host=\"127.0.0.1:6443\"} 1\n",
        "rest_client_request_duration_seconds_bucket{verb=\"PATCH\",host=\"127.0.0.1:6443\",le=\"2\"} 1\n",
        "klua_api_list_requests_total 1\n",
        "klua_api_watch_requests_total 0\n",
        "leader_election_master_status{name=\"klua\"} 1\n",
        "klua_http_requests_total{controller=\"comment\",code=\"201\"} 1\n",
        "klua_http_requests_total{controller=\"comment\",code=\"<error>\"} 1\n",
        "klua_cache_objects{resource=\"github.klua.dev/v1/comments\"} 12\n",
        "klua_informer_objects_skipped_total{resource=\"v1/configmaps\"} 1\n",
        "klua_informer_relists_total{resource=\"v1/configmaps\"} 1\n",
        "klua_informer_watch_restarts_total{resource=\"v1/configmaps\"} 2\n",
        "klua_lua_memory_bytes{controller=\"comment\"} 65536\n",
        "klua_lua_instructions_total{controller=\"comment\"} 5000\n",
        "klua_script_reloads_total{controller=\"comment\",result=\"error\"} 1\n",
        "klua_build_info{version=\"" KLUA_VERSION "\"} 1\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
    };
    for (size_t i = 0; s && i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(s, want[i]))
            printf("#   missing: %s", want[i]);
        CHECK(strstr(s, want[i]) != NULL);
    }
    /* credentials in a server URL never reach a label */
    CHECK(s && strstr(s, "secret") == NULL && strstr(s, "prefix") == NULL);
    /* HELP precedes TYPE for every family, and sorted by name */
    CHECK(s && strstr(s, "# HELP workqueue_depth Current depth of workqueue\n"
                         "# TYPE workqueue_depth gauge\n"));
    CHECK(s && strstr(s, "klua_cache_objects") < strstr(s, "rest_client_requests_total"));
    free(s);
    metrics_default_free();
    metrics_set_clock(NULL);
    /* a fresh default after free starts empty */
    s = render(metrics_default());
    CHECK(s && strstr(s, "controller_runtime_reconcile_total") == NULL);
    free(s);
    metrics_default_free();
}

/* client-go's unfinished_work_seconds and longest_running_processor_seconds:
 * the items handed out and not done yet, measured at scrape time. */
TEST(workqueue_unfinished_work_is_measured_at_scrape)
{
    metrics_default_free();
    metrics_set_clock(fake_clock);
    fake_ns = 5000000000ull;
    metrics_controller_started("q", 2);
    uint64_t a = metrics_workqueue_get("q", metrics_workqueue_add("q"));
    fake_ns += 1000000000ull;
    uint64_t b = metrics_workqueue_get("q", metrics_workqueue_add("q"));
    fake_ns += 500000000ull;                /* a: 1.5 s, b: 0.5 s */
    char *s = render(metrics_default());
    CHECK(s && strstr(s, "workqueue_unfinished_work_seconds{name=\"q\",controller=\"q\"} 2\n"));
    CHECK(s && strstr(s, "workqueue_longest_running_processor_seconds{name=\"q\",controller=\"q\"} 1.5\n"));
    CHECK(s && strstr(s, "workqueue_depth{name=\"q\",controller=\"q\"} 0\n"));
    free(s);
    metrics_workqueue_done("q", a);
    s = render(metrics_default());
    CHECK(s && strstr(s, "workqueue_unfinished_work_seconds{name=\"q\",controller=\"q\"} 0.5\n"));
    CHECK(s && strstr(s, "workqueue_longest_running_processor_seconds{name=\"q\",controller=\"q\"} 0.5\n"));
    free(s);
    metrics_workqueue_done("q", b);
    s = render(metrics_default());
    CHECK(s && strstr(s, "workqueue_unfinished_work_seconds{name=\"q\",controller=\"q\"} 0\n"));
    free(s);
    metrics_default_free();
    metrics_set_clock(NULL);
}

/* A removed controller's series go, every family; others stay. */
TEST(removed_controller_leaves_no_series)
{
    metrics_default_free();
    const char *names[] = {"gone", "stays"};
    for (int i = 0; i < 2; i++) {
        metrics_controller_started(names[i], 1);
        metrics_reconcile_done(names[i], "success", 0.01);
        metrics_workqueue_done(names[i], metrics_workqueue_get(names[i], metrics_workqueue_add(names[i])));
        metrics_workqueue_retry(names[i]);
        metrics_lua_memory(names[i], 1);
        metrics_lua_instructions(names[i], 1000);
        metrics_http_request(names[i], 200);
        metrics_script_reload(names[i], 1);
    }
    metrics_cache_objects_add("v1/configmaps", 1);
    metrics_controller_removed("gone");
    char *s = render(metrics_default());
    CHECK(s && strstr(s, "\"gone\"") == NULL);
    CHECK(s && strstr(s, "controller_runtime_reconcile_total{controller=\"stays\",result=\"success\"} 1\n"));
    CHECK(s && strstr(s, "workqueue_work_duration_seconds_count{name=\"stays\",controller=\"stays\"} 1\n"));
    CHECK(s && strstr(s, "klua_http_requests_total{controller=\"stays\",code=\"200\"} 1\n"));
    CHECK(s && strstr(s, "klua_cache_objects{resource=\"v1/configmaps\"} 1\n"));
    free(s);
    /* the generic form counts what it dropped */
    metrics_registry *r = metrics_registry_new();
    metrics_family *f = metrics_counter_new(r, "x_total", "x", (const char *const[]){"a", "b", NULL}, NULL);
    metrics_counter_add(f, (const char *const[]){"1", "2"}, 1);
    metrics_counter_add(f, (const char *const[]){"1", "3"}, 1);
    metrics_counter_add(f, (const char *const[]){"2", "1"}, 1);
    CHECK(metrics_remove_where(r, "a", "1") == 2);
    CHECK(metrics_remove_where(r, "c", "1") == 0);
    CHECK(metrics_value(f, (const char *const[]){"2", "1"}) == 1);
    metrics_registry_free(r);
    metrics_default_free();
}

TEST(process_metrics_read_this_process)
{
    metrics_process p;
    CHECK(metrics_process_read(&p) == 0);
    CHECK(p.resident_bytes > 1e5);
    CHECK(p.virtual_bytes >= p.resident_bytes);
    CHECK(p.open_fds >= 3);
    CHECK(p.max_fds >= p.open_fds);
    CHECK(p.start_time_seconds > 1.6e9 && p.start_time_seconds <= (double)time(NULL) + 1);
    CHECK(p.cpu_seconds >= 0);
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
    RUN(workqueue_unfinished_work_is_measured_at_scrape);
    RUN(removed_controller_leaves_no_series);
    RUN(process_metrics_read_this_process);
    DONE();
}
