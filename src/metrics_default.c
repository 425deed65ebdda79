/* metrics_default.c - the process-wide registry (see metrics.h).
 *
 * Provides: metrics_default() with controller-runtime's and client-go's
 * family names, klua's own families, and the one-call helpers the runtime
 * calls where things happen. Uses: metrics (the registry),
 * metrics_process (process_* at scrape time).
 *
 * The workqueues' in-flight items (for unfinished_work_seconds and
 * longest_running_processor_seconds) are kept here as start times per
 * queue name: client-go keeps them in its queue; keeping them beside the
 * gauges lets workqueue.c stay a single call per event.
 */
#include "metrics.h"

#include "metrics_process.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KLUA_VERSION
#define KLUA_VERSION "dev"
#endif

/* controller-runtime's reconcile_time_seconds buckets */
static const double reconcile_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6,
    0.7,   0.8,  0.9,   1.0,  1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5,
    6,     7,    8,     9,    10,   15,  20,   25,  30,  40,  50,  60};
/* controller-runtime's workqueue buckets: ExponentialBuckets(10e-9, 10, 12) */
static const double workqueue_buckets[] = {1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3,
                                           1e-2, 1e-1, 1,    10,   100,  1000};
/* client-go's rest_client_request_duration_seconds buckets */
static const double rest_buckets[] = {0.005, 0.025, 0.1, 0.25, 0.5, 1.0,
                                      2.0,   4.0,   8.0, 15.0, 30.0, 60.0};

/* The start times of a workqueue's items being processed. */
typedef struct inflight {
    char *name;
    uint64_t *starts;
    size_t n, cap;
} inflight;

static struct {
    metrics_registry *r;
    metrics_family *reconcile_total, *reconcile_errors, *reconcile_time, *active_workers,
        *max_concurrent, *wq_depth, *wq_adds, *wq_retries, *wq_queue_dur, *wq_work_dur,
        *wq_unfinished, *wq_longest, *rest_requests, *rest_duration, *leader, *cache_objects,
        *lua_memory, *lua_instructions, *script_reloads, *echoes, *skipped, *relists, *watch_restarts,
        *http_requests, *build_info, *api[3], *p_cpu, *p_rss, *p_vsize, *p_start, *p_fds,
        *p_maxfds;
    inflight *q;
    size_t nq;
} dflt;

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define N(x) (sizeof(x) / sizeof((x)[0]))

/* ---- the workqueues' items in flight ----------------------------------- */

static inflight *inflight_find(const char *name, int create)
{
    for (size_t i = 0; i < dflt.nq; i++)
        if (strcmp(dflt.q[i].name, name) == 0)
            return &dflt.q[i];
    if (!create)
        return NULL;
    inflight *nq = realloc(dflt.q, (dflt.nq + 1) * sizeof *nq);
    if (!nq)
        return NULL;
    dflt.q = nq;
    inflight *q = &dflt.q[dflt.nq];
    memset(q, 0, sizeof *q);
    if (!(q->name = strdup(name)))
        return NULL;
    dflt.nq++;
    return q;
}

static void inflight_drop(const char *name)
{
    inflight *q = inflight_find(name, 0);
    if (!q)
        return;
    free(q->name);
    free(q->starts);
    *q = dflt.q[--dflt.nq];
}

static void inflight_free_all(void)
{
    for (size_t i = 0; i < dflt.nq; i++) {
        free(dflt.q[i].name);
        free(dflt.q[i].starts);
    }
    free(dflt.q);
}

/* At scrape time: unfinished work (the sum of the ages of the items being
 * processed) and the oldest one's age, per queue. */
static void collect_workqueues(metrics_registry *r, void *ud)
{
    (void)r;
    (void)ud;
    uint64_t now = metrics_now_ns();
    for (size_t i = 0; i < dflt.nq; i++) {
        const inflight *q = &dflt.q[i];
        double sum = 0, longest = 0;
        for (size_t j = 0; j < q->n; j++) {
            double age = now > q->starts[j] ? (double)(now - q->starts[j]) / 1e9 : 0;
            sum += age;
            if (age > longest)
                longest = age;
        }
        metrics_gauge_set(dflt.wq_unfinished, L(q->name, q->name), sum);
        metrics_gauge_set(dflt.wq_longest, L(q->name, q->name), longest);
    }
}

static void collect_process(metrics_registry *r, void *ud)
{
    (void)r;
    (void)ud;
    metrics_process p;
    metrics_process_read(&p);   /* a field it could not read stays 0 */
    /* a counter never goes down: CPU time only grows, so add the growth */
    double was = metrics_value(dflt.p_cpu, NULL);
    if (p.cpu_seconds > was)
        metrics_counter_add(dflt.p_cpu, NULL, p.cpu_seconds - (was > 0 ? was : 0));
    metrics_gauge_set(dflt.p_rss, NULL, p.resident_bytes);
    metrics_gauge_set(dflt.p_vsize, NULL, p.virtual_bytes);
    metrics_gauge_set(dflt.p_start, NULL, p.start_time_seconds);
    metrics_gauge_set(dflt.p_fds, NULL, p.open_fds);
    metrics_gauge_set(dflt.p_maxfds, NULL, p.max_fds);
}

/* ---- building it -------------------------------------------------------- */

static void build_controller_families(metrics_registry *r)
{
    kl_err *e = NULL;   /* the names are valid; only memory can fail */
    const char *const *ctl = L("controller"), *const *wq = L("name", "controller");
    dflt.reconcile_total = metrics_counter_new(r, "controller_runtime_reconcile_total",
        "Total number of reconciliations per controller", L("controller", "result"), e);
    dflt.reconcile_errors = metrics_counter_new(r, "controller_runtime_reconcile_errors_total",
        "Total number of reconciliation errors per controller", ctl, e);
    dflt.reconcile_time = metrics_histogram_new(r, "controller_runtime_reconcile_time_seconds",
        "Length of time per reconciliation per controller", ctl, reconcile_buckets,
        N(reconcile_buckets), e);
    dflt.active_workers = metrics_gauge_new(r, "controller_runtime_active_workers",
        "Number of currently used workers per controller", ctl, e);
    dflt.max_concurrent = metrics_gauge_new(r, "controller_runtime_max_concurrent_reconciles",
        "Maximum number of concurrent reconciles per controller", ctl, e);
    dflt.wq_depth = metrics_gauge_new(r, "workqueue_depth", "Current depth of workqueue", wq, e);
    dflt.wq_adds = metrics_counter_new(r, "workqueue_adds_total",
        "Total number of adds handled by workqueue", wq, e);
    dflt.wq_retries = metrics_counter_new(r, "workqueue_retries_total",
        "Total number of retries handled by workqueue", wq, e);
    dflt.wq_queue_dur = metrics_histogram_new(r, "workqueue_queue_duration_seconds",
        "How long in seconds an item stays in workqueue before being requested", wq,
        workqueue_buckets, N(workqueue_buckets), e);
    dflt.wq_work_dur = metrics_histogram_new(r, "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.", wq, workqueue_buckets,
        N(workqueue_buckets), e);
    dflt.wq_unfinished = metrics_gauge_new(r, "workqueue_unfinished_work_seconds",
        "How many seconds of work has been done that is in progress and hasn't been observed "
        "by work_duration. Large values indicate stuck threads. One can deduce the number of "
        "stuck threads by observing the rate at which this increases.", wq, e);
    dflt.wq_longest = metrics_gauge_new(r, "workqueue_longest_running_processor_seconds",
        "How many seconds has the longest running processor for workqueue been running.", wq, e);
}

static void build_client_families(metrics_registry *r)
{
    kl_err *e = NULL;
    dflt.rest_requests = metrics_counter_new(r, "rest_client_requests_total",
        "Number of HTTP requests, partitioned by status code, method, and host.",
        L("code", "method", "host"), e);
    dflt.rest_duration = metrics_histogram_new(r, "rest_client_request_duration_seconds",
        "Request latency in seconds. Broken down by verb, and host.", L("verb", "host"),
        rest_buckets, N(rest_buckets), e);
    dflt.leader = metrics_gauge_new(r, "leader_election_master_status",
        "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
        "1 indicates master. 'name' is the string used to identify the lease. Please make sure "
        "to group by name.", L("name"), e);
    dflt.api[METRICS_API_REQUEST] = metrics_counter_new(r, "klua_api_requests_total",
        "Requests klua sent to the Kubernetes API server.", NULL, e);
    dflt.api[METRICS_API_LIST] = metrics_counter_new(r, "klua_api_list_requests_total",
        "LIST requests klua sent to the Kubernetes API server.", NULL, e);
    dflt.api[METRICS_API_WATCH] = metrics_counter_new(r, "klua_api_watch_requests_total",
        "WATCH requests klua sent to the Kubernetes API server.", NULL, e);
    dflt.p_cpu = metrics_counter_new(r, "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.", NULL, e);
    dflt.p_rss = metrics_gauge_new(r, "process_resident_memory_bytes",
        "Resident memory size in bytes.", NULL, e);
    dflt.p_vsize = metrics_gauge_new(r, "process_virtual_memory_bytes",
        "Virtual memory size in bytes.", NULL, e);
    dflt.p_start = metrics_gauge_new(r, "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.", NULL, e);
    dflt.p_fds = metrics_gauge_new(r, "process_open_fds", "Number of open file descriptors.",
        NULL, e);
    dflt.p_maxfds = metrics_gauge_new(r, "process_max_fds",
        "Maximum number of open file descriptors.", NULL, e);
}

static void build_klua_families(metrics_registry *r)
{
    kl_err *e = NULL;
    const char *const *ctl = L("controller"), *const *res = L("resource");
    dflt.build_info = metrics_gauge_new(r, "klua_build_info",
        "A metric with a constant '1' value labeled by the version klua was built from.",
        L("version"), e);
    dflt.cache_objects = metrics_gauge_new(r, "klua_cache_objects",
        "Number of objects in the informer cache per resource", res, e);
    dflt.skipped = metrics_counter_new(r, "klua_informer_objects_skipped_total",
        "Objects an informer could not decode and left out of its cache, per resource", res, e);
    dflt.relists = metrics_counter_new(r, "klua_informer_relists_total",
        "LISTs an informer made again after its first sync (410 Gone, errors), per resource",
        res, e);
    dflt.watch_restarts = metrics_counter_new(r, "klua_informer_watch_restarts_total",
        "Watches that ended (timeout, error, 410) and were started again, per resource", res, e);
    dflt.lua_memory = metrics_gauge_new(r, "klua_lua_memory_bytes",
        "Bytes allocated by the Lua state of each controller", ctl, e);
    dflt.lua_instructions = metrics_counter_new(r, "klua_lua_instructions_total",
        "Lua instructions run by each controller's reconciles (counted in steps of 1000)", ctl,
        e);
    dflt.script_reloads = metrics_counter_new(r, "klua_script_reloads_total",
        "Script hot reloads per controller and result (success or error)",
        L("controller", "result"), e);
    dflt.echoes = metrics_counter_new(r, "klua_reconcile_echoes_skipped_total",
        "Watch events that only brought back a reconcile's own write, and so did not queue "
        "its key again, per controller", ctl, e);
    dflt.http_requests = metrics_counter_new(r, "klua_http_requests_total",
        "Outbound ctx:http requests per controller and HTTP status code (<error>: no answer)",
        L("controller", "code"), e);
}

static int default_build(metrics_registry *r)
{
    build_controller_families(r);
    build_client_families(r);
    build_klua_families(r);
    const metrics_family *all[] = {
        dflt.reconcile_total, dflt.reconcile_errors, dflt.reconcile_time, dflt.active_workers,
        dflt.max_concurrent, dflt.wq_depth, dflt.wq_adds, dflt.wq_retries, dflt.wq_queue_dur,
        dflt.wq_work_dur, dflt.wq_unfinished, dflt.wq_longest, dflt.rest_requests,
        dflt.rest_duration, dflt.leader, dflt.cache_objects, dflt.lua_memory,
        dflt.lua_instructions, dflt.script_reloads, dflt.echoes, dflt.skipped, dflt.relists,
        dflt.watch_restarts, dflt.http_requests, dflt.build_info, dflt.api[0], dflt.api[1],
        dflt.api[2], dflt.p_cpu, dflt.p_rss, dflt.p_vsize, dflt.p_start, dflt.p_fds,
        dflt.p_maxfds};
    for (size_t i = 0; i < N(all); i++)
        if (!all[i])
            return -1;
    if (metrics_gauge_set(dflt.build_info, L(KLUA_VERSION), 1) != 0 ||
        metrics_collector_add(r, collect_process, NULL) != 0 ||
        metrics_collector_add(r, collect_workqueues, NULL) != 0)
        return -1;
    return 0;
}

metrics_registry *metrics_default(void)
{
    if (dflt.r)
        return dflt.r;
    metrics_registry *r = metrics_registry_new();
    if (!r || default_build(r) != 0) {
        metrics_registry_free(r);
        memset(&dflt, 0, sizeof dflt);
        return NULL;
    }
    dflt.r = r;
    return r;
}

void metrics_default_free(void)
{
    metrics_registry_free(dflt.r);
    inflight_free_all();
    memset(&dflt, 0, sizeof dflt);
}

/* ---- controllers -------------------------------------------------------- */

void metrics_controller_started(const char *controller, int max_workers)
{
    if (!metrics_default())
        return;
    static const char *const results[] = {"success", "error", "requeue", "requeue_after"};
    for (size_t i = 0; i < N(results); i++)
        metrics_counter_add(dflt.reconcile_total, L(controller, results[i]), 0);
    metrics_counter_add(dflt.reconcile_errors, L(controller), 0);
    metrics_counter_add(dflt.echoes, L(controller), 0);
    metrics_gauge_set(dflt.max_concurrent, L(controller), max_workers);
    metrics_gauge_add(dflt.active_workers, L(controller), 0);
    const char *const *wq = L(controller, controller);
    metrics_gauge_add(dflt.wq_depth, wq, 0);
    metrics_counter_add(dflt.wq_adds, wq, 0);
    metrics_counter_add(dflt.wq_retries, wq, 0);
    metrics_gauge_add(dflt.wq_unfinished, wq, 0);
    metrics_gauge_add(dflt.wq_longest, wq, 0);
    inflight_find(controller, 1);
}

void metrics_controller_removed(const char *controller)
{
    if (!dflt.r || !controller)
        return;
    metrics_remove_where(dflt.r, "controller", controller);
    metrics_remove_where(dflt.r, "name", controller);   /* a workqueue of that name */
    inflight_drop(controller);
}

void metrics_active_workers_add(const char *controller, int delta)
{
    if (metrics_default())
        metrics_gauge_add(dflt.active_workers, L(controller), delta);
}

void metrics_reconcile_done(const char *controller, const char *result, double seconds)
{
    if (!metrics_default())
        return;
    metrics_counter_add(dflt.reconcile_total, L(controller, result), 1);
    if (result && strcmp(result, "error") == 0)
        metrics_counter_add(dflt.reconcile_errors, L(controller), 1);
    metrics_histogram_observe(dflt.reconcile_time, L(controller), seconds);
}

/* ---- workqueues --------------------------------------------------------- */

uint64_t metrics_workqueue_add(const char *name)
{
    if (metrics_default()) {
        metrics_counter_add(dflt.wq_adds, L(name, name), 1);
        metrics_gauge_add(dflt.wq_depth, L(name, name), 1);
    }
    return metrics_now_ns();
}

uint64_t metrics_workqueue_get(const char *name, uint64_t added_ns)
{
    uint64_t now = metrics_now_ns();
    if (!metrics_default())
        return now;
    double waited = now > added_ns ? (double)(now - added_ns) / 1e9 : 0;
    metrics_histogram_observe(dflt.wq_queue_dur, L(name, name), waited);
    metrics_gauge_add(dflt.wq_depth, L(name, name), -1);
    inflight *q = inflight_find(name, 1);
    if (q && q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 8;
        uint64_t *ns = realloc(q->starts, cap * sizeof *ns);
        if (ns) {
            q->starts = ns;
            q->cap = cap;
        }
    }
    if (q && q->n < q->cap)
        q->starts[q->n++] = now;
    return now;
}

void metrics_workqueue_done(const char *name, uint64_t started_ns)
{
    if (!metrics_default())
        return;
    uint64_t now = metrics_now_ns();
    double took = now > started_ns ? (double)(now - started_ns) / 1e9 : 0;
    metrics_histogram_observe(dflt.wq_work_dur, L(name, name), took);
    inflight *q = inflight_find(name, 0);
    for (size_t i = 0; q && i < q->n; i++)
        if (q->starts[i] == started_ns) {
            q->starts[i] = q->starts[--q->n];
            break;
        }
}

void metrics_workqueue_retry(const char *name)
{
    if (metrics_default())
        metrics_counter_add(dflt.wq_retries, L(name, name), 1);
}

/* ---- clients ------------------------------------------------------------ */

/* host[:port] of a URL: no scheme, no user:password@, no path. */
static void url_host(const char *url, char *out, size_t outsz)
{
    const char *s = url ? url : "";
    const char *p = strstr(s, "://");
    s = p ? p + 3 : s;
    size_t n = strcspn(s, "/?#");
    const char *at = memchr(s, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    snprintf(out, outsz, "%.*s", (int)(n < outsz ? n : outsz - 1), s);
}

static void status_code(long status, char out[24])
{
    if (status > 0)
        snprintf(out, 24, "%ld", status);
    else
        snprintf(out, 24, "<error>");
}

void metrics_rest_request(long status, const char *method, const char *server, double seconds)
{
    if (!metrics_default())
        return;
    char code[24], host[256];
    status_code(status, code);
    url_host(server, host, sizeof host);
    metrics_counter_add(dflt.rest_requests, L(code, method, host), 1);
    if (seconds >= 0)
        metrics_histogram_observe(dflt.rest_duration, L(method, host), seconds);
}

void metrics_api_count(metrics_api_kind kind)
{
    if (metrics_default() && (unsigned)kind < N(dflt.api))
        metrics_counter_add(dflt.api[kind], NULL, 1);
}

void metrics_leader_status(const char *lease_name, int leading)
{
    if (metrics_default())
        metrics_gauge_set(dflt.leader, L(lease_name), leading ? 1 : 0);
}

void metrics_http_request(const char *controller, long status)
{
    if (!metrics_default())
        return;
    char code[24];
    status_code(status, code);
    metrics_counter_add(dflt.http_requests, L(controller, code), 1);
}

/* ---- informers ---------------------------------------------------------- */

void metrics_cache_objects_add(const char *resource, long delta)
{
    if (metrics_default())
        metrics_gauge_add(dflt.cache_objects, L(resource), (double)delta);
}

void metrics_informer_skipped(const char *resource, unsigned n)
{
    if (!metrics_default())
        return;
    metrics_counter_add(dflt.skipped, L(resource), (double)n);
    if (n == 0) {
        metrics_counter_add(dflt.relists, L(resource), 0);
        metrics_counter_add(dflt.watch_restarts, L(resource), 0);
    }
}

void metrics_informer_relist(const char *resource)
{
    if (metrics_default())
        metrics_counter_add(dflt.relists, L(resource), 1);
}

void metrics_informer_watch_restart(const char *resource)
{
    if (metrics_default())
        metrics_counter_add(dflt.watch_restarts, L(resource), 1);
}

/* ---- scripts ------------------------------------------------------------ */

void metrics_lua_memory(const char *controller, size_t bytes)
{
    if (metrics_default())
        metrics_gauge_set(dflt.lua_memory, L(controller), (double)bytes);
}

void metrics_lua_instructions(const char *controller, uint64_t n)
{
    if (metrics_default())
        metrics_counter_add(dflt.lua_instructions, L(controller), (double)n);
}

void metrics_reconcile_echo_skipped(const char *controller)
{
    if (metrics_default())
        metrics_counter_add(dflt.echoes, L(controller), 1);
}

void metrics_script_reload(const char *controller, int ok)
{
    if (metrics_default())
        metrics_counter_add(dflt.script_reloads, L(controller, ok ? "success" : "error"), 1);
}
