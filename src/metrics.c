/* metrics.c - see metrics.h.
 *
 * Provides: the registry, its text rendering and the default registry with
 * controller-runtime's families. Uses: buf, err, metrics_process.
 *
 * A family keeps its series in an array searched linearly with a hash of
 * the label values in front of the string compares: families hold a handful
 * of series (controllers x results), so this beats a hash table on both
 * code size and speed.
 */
#include "metrics.h"

#include "metrics_process.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    struct {
        metrics_collect_fn fn;
        void *ud;
    } collectors[METRICS_MAX_COLLECTORS];
    size_t ncollectors;
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
    uint64_t h = KL_FNV_OFFSET;
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *v = val_at(values, i);
        h = kl_fnv1a_more(h, v, strlen(v) + 1);
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

size_t metrics_remove_where(metrics_registry *r, const char *label, const char *value)
{
    size_t n = 0;
    for (size_t i = 0; r && i < r->nf; i++) {
        metrics_family *m = r->f[i];
        size_t li = 0;
        while (li < m->nlabels && strcmp(m->labels[li], label) != 0)
            li++;
        if (li == m->nlabels)
            continue;
        size_t j = 0;
        for (size_t k = 0; k < m->ns; k++) {
            if (strcmp(m->s[k].values[li], value) == 0) {
                free_strv(m->s[k].values, m->nlabels);
                free(m->s[k].buckets);
                n++;
            } else {
                m->s[j++] = m->s[k];
            }
        }
        m->ns = j;
    }
    return n;
}

int metrics_collector_add(metrics_registry *r, metrics_collect_fn fn, void *ud)
{
    if (!r || !fn || r->ncollectors == METRICS_MAX_COLLECTORS)
        return -1;
    r->collectors[r->ncollectors].fn = fn;
    r->collectors[r->ncollectors++].ud = ud;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static metrics_clock_fn clock_fn = mono_ns;

void metrics_set_clock(metrics_clock_fn now_ns) { clock_fn = now_ns ? now_ns : mono_ns; }
uint64_t metrics_now_ns(void) { return clock_fn(); }

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

int metrics_render(metrics_registry *r, kl_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    for (size_t i = 0; r && i < r->ncollectors; i++)
        r->collectors[i].fn(r, r->collectors[i].ud);
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
