/* metrics.h - a small Prometheus registry: counters, gauges, histograms.
 *
 * Provides: a registry of metric families, each with a fixed list of label
 * names; a series is found (and created on first use) by its label values.
 * metrics_render() writes the Prometheus text exposition format 0.0.4
 * (# HELP, # TYPE, escaped label values, histogram _bucket{le=...}, _sum,
 * _count), families sorted by name as client_golang does, series in the
 * order they were first touched. A family with labels but no series yet is
 * left out, like an empty client_golang *Vec.
 *
 * metrics_default() is the process-wide registry with controller-runtime's
 * family names, so existing dashboards work, plus klua_* families. The
 * helpers below update it; they never fail visibly (a metric must never break
 * a reconcile) and are cheap enough to call on every event.
 *
 * Single-threaded: everything runs on the loop thread; there is no locking.
 * Uses: buf, err, metrics_process (process_* at scrape time).
 *
 * Counted where it happens (no polling): each helper below is one call at
 * the place the event occurs:
 *   kube.c        metrics_rest_request per HTTP answer (every attempt, as
 *                   client-go counts), metrics_api_count per send / LIST / WATCH.
 *   workqueue.c   metrics_workqueue_add (returns the add time the item keeps),
 *                   _get (queue duration, in-flight start), _done (work
 *                   duration), _retry (every add_after, as client-go counts).
 *   controller.c  metrics_controller_started when it starts or is replaced,
 *                   metrics_active_workers_add around a reconcile,
 *                   metrics_reconcile_done, metrics_lua_memory and
 *                   metrics_lua_instructions when one ends,
 *                   metrics_controller_removed from controller_free (a removed
 *                   script's series disappear).
 *   informer.c    metrics_cache_objects_add, metrics_informer_skipped,
 *                   metrics_informer_relist, metrics_informer_watch_restart.
 *   leader.c      metrics_leader_status as the lease is taken and lost.
 *   lua_ctx_io.c  metrics_http_request per ctx:http answer.
 *   reload.c      metrics_script_reload per hot reload.
 *   ops.c         metrics_render per scrape; the render runs the registry's
 *                   collectors first (process_* from /proc, the workqueues'
 *                   unfinished work and longest running processor).
 *   run.c         metrics_default_free() at exit, after the ops server stopped.
 */
#ifndef KLUA_METRICS_H
#define KLUA_METRICS_H

#include "buf.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct metrics_registry metrics_registry;
typedef struct metrics_family metrics_family;

typedef enum { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_type;

/* The text format's content type, for the Content-Type header of /metrics. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A series per family is capped (label values from the outside world, such
 * as hosts, must not grow memory without bound); updates of a new series
 * beyond the cap are dropped and return -1. */
#define METRICS_MAX_SERIES 2048

/* Caller owns the registry; NULL when out of memory. */
metrics_registry *metrics_registry_new(void);
/* Frees the registry and every family in it. NULL is fine. */
void metrics_registry_free(metrics_registry *r);

/* Create a family in r, which owns it (the pointer stays valid until the
 * registry is freed). labels is a NULL-terminated list of label names, or
 * NULL for none; name, help and labels are copied. Fails on an invalid or
 * duplicate name, an invalid label name, or (histograms) a label "le".
 * buckets: strictly increasing upper bounds; +Inf is always added, so a
 * trailing +Inf may be given or not. */
metrics_family *metrics_counter_new(metrics_registry *r, const char *name, const char *help,
                                    const char *const *labels, kl_err *err);
metrics_family *metrics_gauge_new(metrics_registry *r, const char *name, const char *help,
                                  const char *const *labels, kl_err *err);
metrics_family *metrics_histogram_new(metrics_registry *r, const char *name, const char *help,
                                      const char *const *labels, const double *buckets,
                                      size_t nbuckets, kl_err *err);
/* The family called name, or NULL. */
metrics_family *metrics_find(const metrics_registry *r, const char *name);
metrics_type metrics_family_type(const metrics_family *m);

/* Updates. values holds exactly one value per label name of the family, in
 * the same order (NULL when it has none; a NULL entry counts as ""); they
 * are copied when the series is created. Each returns 0, or -1 when the
 * family has another type, a counter would go down, or the series cannot be
 * created (memory, METRICS_MAX_SERIES). */
int metrics_counter_add(metrics_family *m, const char *const *values, double v);
int metrics_gauge_set(metrics_family *m, const char *const *values, double v);
int metrics_gauge_add(metrics_family *m, const char *const *values, double v);
int metrics_histogram_observe(metrics_family *m, const char *const *values, double v);
/* Drop one series (e.g. of a controller that was removed). 0 if it existed. */
int metrics_remove(metrics_family *m, const char *const *values);

/* Read back (tests, /readyz-style summaries): a counter's or gauge's value,
 * a histogram's observation count; -1 when the series does not exist. */
double metrics_value(const metrics_family *m, const char *const *values);

/* Drop every series of every family of r whose label `label` has the value
 * value (families without that label are left alone). Returns how many. */
size_t metrics_remove_where(metrics_registry *r, const char *label, const char *value);

/* A collector refreshes values computed at scrape time (e.g. from /proc);
 * metrics_render runs each before writing. At most METRICS_MAX_COLLECTORS. */
#define METRICS_MAX_COLLECTORS 8
typedef void (*metrics_collect_fn)(metrics_registry *r, void *ud);
int metrics_collector_add(metrics_registry *r, metrics_collect_fn fn, void *ud);

/* Run the collectors, then append the whole registry in text format 0.0.4
 * to out. 0 or -1 (ENOMEM). */
int metrics_render(metrics_registry *r, kl_buf *out);

/* The clock behind durations measured here (CLOCK_MONOTONIC nanoseconds);
 * tests install their own, NULL restores it. */
typedef uint64_t (*metrics_clock_fn)(void);
void metrics_set_clock(metrics_clock_fn now_ns);
uint64_t metrics_now_ns(void);

/* ---- the process-wide registry ----------------------------------------- */

/* Created on first use with the families below; NULL only when out of
 * memory (the helpers then do nothing). The registry owns everything. */
metrics_registry *metrics_default(void);
/* Free the default registry (at exit, so leak checks stay clean). A later
 * metrics_default() starts a fresh one. */
void metrics_default_free(void);

/* Families of the default registry (label names in braces), with
 * controller-runtime's / client-go's names and semantics:
 *   controller_runtime_reconcile_total{controller,result}        counter
 *   controller_runtime_reconcile_errors_total{controller}        counter
 *   controller_runtime_reconcile_time_seconds{controller}        histogram
 *   controller_runtime_active_workers{controller}                gauge
 *   controller_runtime_max_concurrent_reconciles{controller}     gauge
 *   workqueue_depth{name,controller}                             gauge
 *   workqueue_adds_total{name,controller}                        counter
 *   workqueue_retries_total{name,controller}                     counter
 *   workqueue_queue_duration_seconds{name,controller}            histogram
 *   workqueue_work_duration_seconds{name,controller}             histogram
 *   workqueue_unfinished_work_seconds{name,controller}           gauge (at scrape)
 *   workqueue_longest_running_processor_seconds{name,controller} gauge (at scrape)
 *   rest_client_requests_total{code,method,host}                 counter
 *   rest_client_request_duration_seconds{verb,host}              histogram
 *   leader_election_master_status{name}                          gauge
 *   process_cpu_seconds_total, process_resident_memory_bytes,
 *   process_virtual_memory_bytes, process_open_fds, process_max_fds,
 *   process_start_time_seconds                                   (at scrape)
 * and klua's own:
 *   klua_build_info{version}                                     gauge, 1
 *   klua_lua_memory_bytes{controller}                            gauge
 *   klua_lua_instructions_total{controller}                      counter
 *   klua_script_reloads_total{controller,result}                 counter
 *   klua_reconcile_echoes_skipped_total{controller}              counter
 *   klua_http_requests_total{controller,code}                    counter (ctx:http)
 *   klua_cache_objects{resource}                                 gauge
 *   klua_informer_objects_skipped_total{resource}                counter
 *   klua_informer_relists_total{resource}                        counter
 *   klua_informer_watch_restarts_total{resource}                 counter
 *   klua_api_requests_total, klua_api_list_requests_total,
 *   klua_api_watch_requests_total                                counter
 * The workqueue's "name" label is the controller's name, as in
 * controller-runtime. */

/* Sets max_concurrent_reconciles and creates, at 0, the reconcile_total
 * series of every result, errors_total, active_workers and the workqueue's
 * gauges and counters, so rate() works from the first scrape. A running
 * controller (a replaced script) keeps its active_workers. */
void metrics_controller_started(const char *controller, int max_workers);
/* Every series of the controller (label controller or, for workqueues,
 * name) goes: a removed script leaves nothing behind. */
void metrics_controller_removed(const char *controller);
void metrics_active_workers_add(const char *controller, int delta);
/* result: "success", "error", "requeue" or "requeue_after"; "error" also
 * counts in reconcile_errors_total. seconds: the reconcile's wall time. */
void metrics_reconcile_done(const char *controller, const char *result, double seconds);
/* The workqueue called name (the controller's name), as client-go counts:
 * add: a key became dirty (adds +1, depth +1); returns the time to hand to
 * _get. get: depth -1, observes the queue duration since added_ns and
 * returns the start time to hand to _done, which observes the work
 * duration. Between get and done the item counts in unfinished work. */
uint64_t metrics_workqueue_add(const char *name);
uint64_t metrics_workqueue_get(const char *name, uint64_t added_ns);
void metrics_workqueue_done(const char *name, uint64_t started_ns);
void metrics_workqueue_retry(const char *name);
/* status 0 (no HTTP answer) is recorded as code "<error>", like client-go.
 * server: the API server's URL; its host[:port] is the label (no
 * credentials, no path). seconds < 0 (a watch stream) is not observed in
 * the duration histogram. */
void metrics_rest_request(long status, const char *method, const char *server, double seconds);
typedef enum { METRICS_API_REQUEST, METRICS_API_LIST, METRICS_API_WATCH } metrics_api_kind;
void metrics_api_count(metrics_api_kind kind);
/* resource: "group/version/resource" (core: "v1/pods"). Informers of one
 * resource (other namespaces, other selectors) add up in one series. */
void metrics_cache_objects_add(const char *resource, long delta);
/* n objects of resource that an informer could not decode and skipped;
 * n 0 creates the series at 0 (an informer does so when it starts, and its
 * relist and watch restart series with it). */
void metrics_informer_skipped(const char *resource, unsigned n);
void metrics_informer_relist(const char *resource);
void metrics_informer_watch_restart(const char *resource);
void metrics_leader_status(const char *lease_name, int leading);
void metrics_lua_memory(const char *controller, size_t bytes);
void metrics_lua_instructions(const char *controller, uint64_t n);
/* status 0: no HTTP answer ("<error>"). */
void metrics_http_request(const char *controller, long status);
/* A watch event was the echo of the controller's own write (controller_echo.h). */
void metrics_reconcile_echo_skipped(const char *controller);
/* ok != 0 -> result "success", else "error". */
void metrics_script_reload(const char *controller, int ok);

#endif
