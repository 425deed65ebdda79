/* metrics.c - see metrics.h.
 *
 * Provides: the registry, its text rendering and the default registry with
 * controller-runtime's families. Uses: buf, err.
 *
 * A family keeps its series in an array searched linearly with a hash of
 * the label values in front of the string compares: families hold a handful
 * of series (controllers x results), so this beats a hash table on both
 * code size and speed.
 */
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    uint64_t hash;
    char **values;        /* nlabels strings, owned */
    double value;         /* counter, gauge; histogram: sum */
    uint64_t count;       /* histogram: observations */
    uint64_t *buckets;    /* histogram: nbounds + 1 per-bucket counts (not cumulative) */
} series;

struct metrics_family {
    char *name, *help;
    metrics_type type;
    size_t nlabels;
    char **labels;
    double *bounds;       /* histogram upper bounds, +Inf not included */
    size_t nbounds;
    series *s;
    size_t ns, cap;
};

struct metrics_registry {
    metrics_family **f;
    size_t nf, cap;
};

/* ---- names ------------------------------------------------------------- */

static int valid_name(const char *s, int metric)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (metric && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- registry ---------------------------------------------------------- */

metrics_registry *metrics_registry_new(void)
{
    return calloc(1, sizeof(metrics_registry));
}

static void family_free(metrics_family *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ns; i++) {
        free_strv(m->s[i].values, m->nlabels);
        free(m->s[i].buckets);
    }
    free(m->s);
    free_strv(m->labels, m->nlabels);
    free(m->bounds);
    free(m->name);
    free(m->help);
    free(m);
}

void metrics_registry_free(metrics_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nf; i++)
        family_free(r->f[i]);
    free(r->f);
    free(r);
}

metrics_family *metrics_find(const metrics_registry *r, const char *name)
{
    for (size_t i = 0; r && name && i < r->nf; i++)
        if (strcmp(r->f[i]->name, name) == 0)
            return r->f[i];
    return NULL;
}

metrics_type metrics_family_type(const metrics_family *m)
{
    return m->type;
}

static metrics_family *family_new(metrics_registry *r, metrics_type type, const char *name,
                                  const char *help, const char *const *labels,
                                  const double *buckets, size_t nbuckets, kl_err *err)
{
    metrics_family *m = NULL;
    if (!r || !valid_name(name, 1)) {
        kl_err_set(err, KL_EINVAL, "metrics: invalid metric name \"%s\"", name ? name : "");
        goto fail;
    }
    if (metrics_find(r, name)) {
        kl_err_set(err, KL_EINVAL, "metrics: metric %s registered twice", name);
        goto fail;
    }
    size_t nl = 0;
    while (labels && labels[nl]) {
        const char *ln = labels[nl];
        /* "__" names are reserved for Prometheus; "le" is the bucket label */
        if (!valid_name(ln, 0) || strncmp(ln, "__", 2) == 0 ||
            (type == METRICS_HISTOGRAM && strcmp(ln, "le") == 0)) {
            kl_err_set(err, KL_EINVAL, "metrics: %s: invalid label name \"%s\"", name, ln);
            goto fail;
        }
        for (size_t j = 0; j < nl; j++)
            if (strcmp(labels[j], ln) == 0) {
                kl_err_set(err, KL_EINVAL, "metrics: %s: label %s given twice", name, ln);
                goto fail;
            }
        nl++;
    }
    if (type == METRICS_HISTOGRAM) {
        if (nbuckets && isinf(buckets[nbuckets - 1]) && buckets[nbuckets - 1] > 0)
            nbuckets--;
        for (size_t i = 0; i < nbuckets; i++)
            if (isnan(buckets[i]) || isinf(buckets[i]) || (i && buckets[i] <= buckets[i - 1])) {
                kl_err_set(err, KL_EINVAL, "metrics: %s: buckets must increase strictly", name);
                goto fail;
            }
    }
    if (r->nf == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        metrics_family **nf = realloc(r->f, cap * sizeof *nf);
        if (!nf)
            goto nomem;
        r->f = nf;
        r->cap = cap;
    }
    m = calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    m->type = type;
    m->name = dupstr(name);
    m->help = dupstr(help ? help : "");
    m->labels = nl ? calloc(nl, sizeof(char *)) : NULL;
    if (!m->name || !m->help || (nl && !m->labels))
        goto nomem;
    for (; m->nlabels < nl; m->nlabels++)
        if (!(m->labels[m->nlabels] = dupstr(labels[m->nlabels])))
            goto nomem;
    if (type == METRICS_HISTOGRAM && nbuckets) {
        if (!(m->bounds = malloc(nbuckets * sizeof(double))))
            goto nomem;
        memcpy(m->bounds, buckets, nbuckets * sizeof(double));
        m->nbounds = nbuckets;
    }
    r->f[r->nf++] = m;
    return m;
nomem:
    kl_err_set(err, KL_ENOMEM, "metrics: out of memory registering %s", name);
fail:
    family_free(m);
    return NULL;
}

metrics_family *metrics_counter_new(metrics_registry *r, const char *name, const char *help,
                                    const char *const *labels, kl_err *err)
{
    return family_new(r, METRICS_COUNTER, name, help, labels, NULL, 0, err);
}

metrics_family *metrics_gauge_new(metrics_registry *r, const char *name, const char *help,
                                  const char *const *labels, kl_err *err)
{
    return family_new(r, METRICS_GAUGE, name, help, labels, NULL, 0, err);
}

metrics_family *metrics_histogram_new(metrics_registry *r, const char *name, const char *help,
                                      const char *const *labels, const double *buckets,
                                      size_t nbuckets, kl_err *err)
{
    return family_new(r, METRICS_HISTOGRAM, name, help, labels, buckets, nbuckets, err);
}

/* ---- series ------------------------------------------------------------ */

static const char *val_at(const char *const *values, size_t i)
{
    return values && values[i] ? values[i] : "";
}

/* FNV-1a over the values, each followed by a 0 byte so ("ab","") and
 * ("a","b") differ. */
static uint64_t hash_values(const metrics_family *m, const char *const *values)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < m->nlabels; i++) {
        for (const unsigned char *p = (const unsigned char *)val_at(values, i); *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h *= 1099511628211ULL;
    }
    return h;
}

static long find_series(const metrics_family *m, const char *const *values, uint64_t h)
{
    for (size_t i = 0; i < m->ns; i++) {
        if (m->s[i].hash != h)
            continue;
        size_t j = 0;
        while (j < m->nlabels && strcmp(m->s[i].values[j], val_at(values, j)) == 0)
            j++;
        if (j == m->nlabels)
            return (long)i;
    }
    return -1;
}

/* The series for values, created at zero on first use; NULL on failure.
 * The pointer is valid until the next series is created in m. */
static series *get_series(metrics_family *m, const char *const *values)
{
    uint64_t h = hash_values(m, values);
    long i = find_series(m, values, h);
    if (i >= 0)
        return &m->s[i];
    if (m->ns >= METRICS_MAX_SERIES)
        return NULL;
    if (m->ns == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        series *ns = realloc(m->s, cap * sizeof *ns);
        if (!ns)
            return NULL;
        m->s = ns;
        m->cap = cap;
    }
    series s = {.hash = h};
    if (m->nlabels && !(s.values = calloc(m->nlabels, sizeof(char *))))
        goto fail;
    for (size_t j = 0; j < m->nlabels; j++)
        if (!(s.values[j] = dupstr(val_at(values, j))))
            goto fail;
    if (m->type == METRICS_HISTOGRAM && !(s.buckets = calloc(m->nbounds + 1, sizeof(uint64_t))))
        goto fail;
    m->s[m->ns] = s;
    return &m->s[m->ns++];
fail:
    free_strv(s.values, m->nlabels);
    return NULL;
}

/* Counters and gauges: add v to the series' value, or set it to v. */
static int update_value(metrics_family *m, metrics_type type, const char *const *values,
                        double v, int set)
{
    if (!m || m->type != type)
        return -1;
    series *s = get_series(m, values);
    if (!s)
        return -1;
    s->value = set ? v : s->value + v;
    return 0;
}

int metrics_counter_add(metrics_family *m, const char *const *values, double v)
{
    return v >= 0 ? update_value(m, METRICS_COUNTER, values, v, 0) : -1;
}

int metrics_gauge_set(metrics_family *m, const char *const *values, double v)
{
    return update_value(m, METRICS_GAUGE, values, v, 1);
}

int metrics_gauge_add(metrics_family *m, const char *const *values, double v)
{
    return update_value(m, METRICS_GAUGE, values, v, 0);
}

int metrics_histogram_observe(metrics_family *m, const char *const *values, double v)
{
    if (!m || m->type != METRICS_HISTOGRAM || isnan(v))
        return -1;
    series *s = get_series(m, values);
    if (!s)
        return -1;
    size_t b = 0;   /* first bucket whose bound is >= v; nbounds = +Inf */
    while (b < m->nbounds && v > m->bounds[b])
        b++;
    s->buckets[b]++;
    s->count++;
    s->value += v;
    return 0;
}

int metrics_remove(metrics_family *m, const char *const *values)
{
    if (!m)
        return -1;
    long i = find_series(m, values, hash_values(m, values));
    if (i < 0)
        return -1;
    free_strv(m->s[i].values, m->nlabels);
    free(m->s[i].buckets);
    memmove(&m->s[i], &m->s[i + 1], (m->ns - (size_t)i - 1) * sizeof(series));
    m->ns--;
    return 0;
}

double metrics_value(const metrics_family *m, const char *const *values)
{
    if (!m)
        return -1;
    long i = find_series(m, values, hash_values(m, values));
    if (i < 0)
        return -1;
    return m->type == METRICS_HISTOGRAM ? (double)m->s[i].count : m->s[i].value;
}

/* ---- rendering --------------------------------------------------------- */

/* Numbers as Prometheus parses them: integers without a fraction, others in
 * the shortest %g form that reads back to the same double. */
static int put_double(kl_buf *b, double v)
{
    if (isnan(v))
        return kl_buf_puts(b, "NaN");
    if (isinf(v))
        return kl_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    if (v == 0)
        return kl_buf_putc(b, '0');   /* also -0 */
    if (v == floor(v) && fabs(v) < 1e15)
        return kl_buf_printf(b, "%.0f", v);
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return kl_buf_puts(b, tmp);
}

/* HELP text escapes \ and newline; label values also escape ". */
static int put_escaped(kl_buf *b, const char *s, int quote)
{
    for (const char *p = s; *p; p++) {
        const char *e = NULL;
        if (*p == '\\')
            e = "\\\\";
        else if (*p == '\n')
            e = "\\n";
        else if (quote && *p == '"')
            e = "\\\"";
        if (e ? kl_buf_puts(b, e) : kl_buf_putc(b, *p))
            return -1;
    }
    return 0;
}

/* name{l1="v1",...[,le="x"]} value\n; suffix is appended to the name. */
static int put_sample(kl_buf *b, const metrics_family *m, const series *s, const char *suffix,
                      const char *le, double v)
{
    int rc = kl_buf_puts(b, m->name) | kl_buf_puts(b, suffix);
    if (m->nlabels || le) {
        rc |= kl_buf_putc(b, '{');
        for (size_t i = 0; i < m->nlabels; i++) {
            rc |= kl_buf_printf(b, "%s%s=\"", i ? "," : "", m->labels[i]);
            rc |= put_escaped(b, s->values[i], 1);
            rc |= kl_buf_putc(b, '"');
        }
        if (le)
            rc |= kl_buf_printf(b, "%sle=\"%s\"", m->nlabels ? "," : "", le);
        rc |= kl_buf_putc(b, '}');
    }
    rc |= kl_buf_putc(b, ' ');
    rc |= put_double(b, v);
    rc |= kl_buf_putc(b, '\n');
    return rc ? -1 : 0;
}

static int put_histogram(kl_buf *b, const metrics_family *m, const series *s)
{
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; i <= m->nbounds; i++) {
        kl_buf le = KL_BUF_INIT;
        cum += s->buckets[i];
        rc |= put_double(&le, i < m->nbounds ? m->bounds[i] : INFINITY);
        rc |= le.data ? put_sample(b, m, s, "_bucket", le.data, (double)cum) : -1;
        kl_buf_free(&le);
    }
    rc |= put_sample(b, m, s, "_sum", NULL, s->value);
    rc |= put_sample(b, m, s, "_count", NULL, (double)s->count);
    return rc ? -1 : 0;
}

static int family_cmp(const void *a, const void *b)
{
    const metrics_family *fa = *(const metrics_family *const *)a;
    const metrics_family *fb = *(const metrics_family *const *)b;
    return strcmp(fa->name, fb->name);
}

int metrics_render(const metrics_registry *r, kl_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    if (!r || r->nf == 0)
        return kl_buf_reserve(out, 0);
    /* sort a copy: rendering must not reorder what callers hold */
    metrics_family **sorted = malloc(r->nf * sizeof *sorted);
    if (!sorted)
        return -1;
    memcpy(sorted, r->f, r->nf * sizeof *sorted);
    qsort(sorted, r->nf, sizeof *sorted, family_cmp);
    for (size_t i = 0; i < r->nf && rc == 0; i++) {
        const metrics_family *m = sorted[i];
        if (m->ns == 0 && m->nlabels)
            continue;
        rc |= kl_buf_printf(out, "# HELP %s ", m->name);
        rc |= put_escaped(out, m->help, 0);
        rc |= kl_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
        if (m->ns == 0) {
            /* a family without labels always has its one series, at zero */
            series zero = {0};
            if (m->type == METRICS_HISTOGRAM) {
                uint64_t *tmp = calloc(m->nbounds + 1, sizeof(uint64_t));
                zero.buckets = tmp;
                rc |= tmp ? put_histogram(out, m, &zero) : -1;
                free(tmp);
            } else {
                rc |= put_sample(out, m, &zero, "", NULL, 0);
            }
            continue;
        }
        for (size_t j = 0; j < m->ns && rc == 0; j++)
            rc |= m->type == METRICS_HISTOGRAM ? put_histogram(out, m, &m->s[j])
                                               : put_sample(out, m, &m->s[j], "", NULL, m->s[j].value);
    }
    free(sorted);
    return rc ? -1 : 0;
}

/* ---- the default registry ---------------------------------------------- */

/* controller-runtime's reconcile_time_seconds buckets */
static const double reconcile_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6,
    0.7,   0.8,  0.9,   1.0,  1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5,
    6,     7,    8,     9,    10,   15,  20,   25,  30,  40,  50,  60};
/* controller-runtime's workqueue buckets: ExponentialBuckets(10e-9, 10, 12) */
static const double workqueue_buckets[] = {1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3,
                                           1e-2, 1e-1, 1,    10,   100,  1000};

static struct {
    metrics_registry *r;
    metrics_family *reconcile_total, *reconcile_errors, *reconcile_time, *active_workers,
        *max_concurrent, *wq_depth, *wq_adds, *wq_retries, *wq_queue_dur, *wq_work_dur,
        *rest_requests, *cache_objects, *lua_memory, *script_reloads, *skipped;
} dflt;

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define N(x) (sizeof(x) / sizeof((x)[0]))

static int default_build(metrics_registry *r)
{
    kl_err *e = NULL;   /* the names below are valid; only memory can fail */
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
    dflt.rest_requests = metrics_counter_new(r, "rest_client_requests_total",
        "Number of HTTP requests, partitioned by status code, method, and host.",
        L("code", "method", "host"), e);
    dflt.cache_objects = metrics_gauge_new(r, "klua_cache_objects",
        "Number of objects in the informer cache per resource", L("resource"), e);
    dflt.skipped = metrics_counter_new(r, "klua_informer_objects_skipped_total",
        "Objects an informer could not decode and left out of its cache, per resource",
        L("resource"), e);
    dflt.lua_memory = metrics_gauge_new(r, "klua_lua_memory_bytes",
        "Bytes allocated by the Lua state of each controller", ctl, e);
    dflt.script_reloads = metrics_counter_new(r, "klua_script_reloads_total",
        "Script hot reloads per controller and result (success or error)",
        L("controller", "result"), e);
    metrics_family *all[] = {dflt.reconcile_total, dflt.reconcile_errors, dflt.reconcile_time,
                             dflt.active_workers, dflt.max_concurrent, dflt.wq_depth,
                             dflt.wq_adds, dflt.wq_retries, dflt.wq_queue_dur, dflt.wq_work_dur,
                             dflt.rest_requests, dflt.cache_objects, dflt.lua_memory,
                             dflt.script_reloads, dflt.skipped};
    for (size_t i = 0; i < N(all); i++)
        if (!all[i])
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
    memset(&dflt, 0, sizeof dflt);
}

void metrics_controller_started(const char *controller, int max_workers)
{
    if (!metrics_default())
        return;
    static const char *const results[] = {"success", "error", "requeue", "requeue_after"};
    for (size_t i = 0; i < N(results); i++)
        metrics_counter_add(dflt.reconcile_total, L(controller, results[i]), 0);
    metrics_counter_add(dflt.reconcile_errors, L(controller), 0);
    metrics_gauge_set(dflt.max_concurrent, L(controller), max_workers);
    metrics_gauge_set(dflt.active_workers, L(controller), 0);
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

void metrics_workqueue_add(const char *controller)
{
    if (metrics_default())
        metrics_counter_add(dflt.wq_adds, L(controller, controller), 1);
}

void metrics_workqueue_retry(const char *controller)
{
    if (metrics_default())
        metrics_counter_add(dflt.wq_retries, L(controller, controller), 1);
}

void metrics_workqueue_depth(const char *controller, size_t depth)
{
    if (metrics_default())
        metrics_gauge_set(dflt.wq_depth, L(controller, controller), (double)depth);
}

void metrics_workqueue_queue_duration(const char *controller, double seconds)
{
    if (metrics_default())
        metrics_histogram_observe(dflt.wq_queue_dur, L(controller, controller), seconds);
}

void metrics_workqueue_work_duration(const char *controller, double seconds)
{
    if (metrics_default())
        metrics_histogram_observe(dflt.wq_work_dur, L(controller, controller), seconds);
}

void metrics_rest_request(long status, const char *method, const char *host)
{
    if (!metrics_default())
        return;
    char code[24];
    if (status > 0)
        snprintf(code, sizeof code, "%ld", status);
    else
        snprintf(code, sizeof code, "<error>");
    metrics_counter_add(dflt.rest_requests, L(code, method, host), 1);
}

void metrics_cache_objects_add(const char *resource, long delta)
{
    if (metrics_default())
        metrics_gauge_add(dflt.cache_objects, L(resource), (double)delta);
}

void metrics_informer_skipped(const char *resource, unsigned n)
{
    if (metrics_default())
        metrics_counter_add(dflt.skipped, L(resource), (double)n);
}

void metrics_lua_memory(const char *controller, size_t bytes)
{
    if (metrics_default())
        metrics_gauge_set(dflt.lua_memory, L(controller), (double)bytes);
}

void metrics_script_reload(const char *controller, int ok)
{
    if (metrics_default())
        metrics_counter_add(dflt.script_reloads, L(controller, ok ? "success" : "error"), 1);
}
