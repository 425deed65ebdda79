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
 * Uses: buf, err.
 *
 * Wiring (who calls what today, all on the default registry):
 *   controller.c  metrics_controller_started(name, workers) when it starts and
 *                   after a hot reload; metrics_active_workers_add(name, +1 / -1)
 *                   around a reconcile; when a reconcile ends,
 *                   metrics_reconcile_done(name, result, seconds),
 *                   metrics_workqueue_work_duration(name, seconds) and
 *                   metrics_lua_memory(name, bytes); metrics_workqueue_add(name)
 *                   and metrics_workqueue_depth(name, len) on each enqueue;
 *                   metrics_workqueue_retry(name) + metrics_workqueue_add(name)
 *                   on a rate-limited re-add.
 *   informer.c    metrics_cache_objects_add(resource, +n / -n) as its store
 *                   grows and shrinks (and when the informer is freed);
 *                   metrics_informer_skipped(resource, 0) when it starts, then
 *                   (resource, 1) per object it skips.
 *   reload.c      metrics_script_reload(controller, ok) per hot reload.
 *   run.c         adds its own API request/list/watch counters to
 *                   metrics_default(); metrics_default_free() at exit, after
 *                   the ops server stopped.
 *   ops.c         renders metrics_default() per scrape of /metrics (when it
 *                   was given no registry of its own).
 * Nothing calls metrics_workqueue_queue_duration or metrics_rest_request
 * yet, so workqueue_queue_duration_seconds and rest_client_requests_total
 * have no series (and are left out of /metrics).
 */
#ifndef KLUA_METRICS_H
#define KLUA_METRICS_H

#include "buf.h"
#include "err.h"

#include <stddef.h>

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

/* Append the whole registry in text format 0.0.4 to out. 0 or -1 (ENOMEM). */
int metrics_render(const metrics_registry *r, kl_buf *out);

/* ---- the process-wide registry ----------------------------------------- */

/* Created on first use with the families below; NULL only when out of
 * memory (the helpers then do nothing). The registry owns everything. */
metrics_registry *metrics_default(void);
/* Free the default registry (at exit, so leak checks stay clean). A later
 * metrics_default() starts a fresh one. */
void metrics_default_free(void);

/* Families of the default registry (label names in braces):
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
 *   rest_client_requests_total{code,method,host}                 counter
 *   klua_cache_objects{resource}                                 gauge
 *   klua_informer_objects_skipped_total{resource}                counter
 *   klua_lua_memory_bytes{controller}                            gauge
 *   klua_script_reloads_total{controller,result}                 counter
 * The workqueue's "name" label is the controller's name, as in
 * controller-runtime. */

/* Sets max_concurrent_reconciles, zeroes active_workers and creates the
 * reconcile_total series of every result (and errors_total) at 0, so rate()
 * works from the first scrape. */
void metrics_controller_started(const char *controller, int max_workers);
void metrics_active_workers_add(const char *controller, int delta);
/* result: "success", "error", "requeue" or "requeue_after"; "error" also
 * counts in reconcile_errors_total. seconds: the reconcile's wall time. */
void metrics_reconcile_done(const char *controller, const char *result, double seconds);
void metrics_workqueue_add(const char *controller);
void metrics_workqueue_retry(const char *controller);
void metrics_workqueue_depth(const char *controller, size_t depth);
void metrics_workqueue_queue_duration(const char *controller, double seconds);
void metrics_workqueue_work_duration(const char *controller, double seconds);
/* status 0 (no HTTP answer) is recorded as code "<error>", like client-go.
 * host is "host:port" without credentials. */
void metrics_rest_request(long status, const char *method, const char *host);
/* resource: "group/version/resource" (core: "v1/pods"). Informers of one
 * resource (other namespaces, other selectors) add up in one series. */
void metrics_cache_objects_add(const char *resource, long delta);
/* n objects of resource that an informer could not decode and skipped;
 * n 0 creates the series at 0 (an informer does so when it starts). */
void metrics_informer_skipped(const char *resource, unsigned n);
void metrics_lua_memory(const char *controller, size_t bytes);
/* ok != 0 -> result "success", else "error". */
void metrics_script_reload(const char *controller, int ok);

#endif
