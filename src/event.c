/* event.c - Kubernetes Events (see event.h).
 *
 * Provides: event_recorder, event_build, event_post (with series).
 * Uses: rest (kube_create, kube_patch), json (string escaping), util
 * (kl_rfc3339), buf, log.
 *
 * The series are a list, newest first: a controller raises few distinct
 * Events at a time, and the list is pruned of idle ones on every post.
 */
#include "event.h"

#include "json.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOTE_MAX 1024

typedef struct ev_series ev_series;

struct event_recorder {
    kube_client *kc;
    char hostname[128];      /* reportingInstance */
    ev_series *series;
    size_t nseries;
    long warned[4];          /* HTTP statuses already logged at warning level */
};

/* One Event and the repeats that became its series. */
struct ev_series {
    ev_series *next;
    event_recorder *r;
    char *key;               /* object, type, reason, note, controller */
    char *ns, *name;         /* the Event's */
    long count;              /* occurrences so far */
    long written;            /* the count the API server has (1 once created) */
    long sending;            /* the count in flight */
    int created, failed;
    double last_ms;          /* last occurrence (monotonic) */
    double write_ms;         /* last series write (monotonic) */
    char observed[64];       /* last occurrence, RFC 3339 with microseconds */
    kube_call *call;         /* the create or patch in flight */
};

event_recorder *event_recorder_new(kube_client *kc, kl_err *err)
{
    event_recorder *r = calloc(1, sizeof *r);
    if (!r) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    r->kc = kc;
    const char *pod = getenv("POD_NAME");
    if (pod && *pod)
        snprintf(r->hostname, sizeof r->hostname, "%s", pod);
    else if (gethostname(r->hostname, sizeof r->hostname - 1) != 0 || !r->hostname[0])
        snprintf(r->hostname, sizeof r->hostname, "klua");
    return r;
}

static void series_free(ev_series *e)
{
    if (e->call)
        kube_cancel(e->call);
    free(e->key);
    free(e->ns);
    free(e->name);
    free(e);
}

void event_recorder_free(event_recorder *r)
{
    if (!r)
        return;
    while (r->series) {
        ev_series *e = r->series;
        r->series = e->next;
        series_free(e);
    }
    free(r);
}

size_t event_recorder_series(const event_recorder *r) { return r ? r->nseries : 0; }

/* ,"key":"value" (the comma when asked). Non-zero when out of memory. */
static int put_field(kl_buf *b, const char *key, const char *value, int comma)
{
    int bad = comma ? kl_buf_putc(b, ',') : 0;
    bad |= json_escape_append(b, key, strlen(key));
    bad |= kl_buf_putc(b, ':');
    bad |= json_escape_append(b, value ? value : "", value ? strlen(value) : 0);
    return bad;
}

/* The note, cut to NOTE_MAX bytes on a UTF-8 boundary. */
static size_t note_len(const char *note)
{
    size_t n = strlen(note);
    if (n <= NOTE_MAX)
        return n;
    n = NOTE_MAX;
    while (n > 0 && ((unsigned char)note[n] & 0xC0) == 0x80)
        n--;
    return n;
}

const char *event_namespace(const event_object *o)
{
    return o->ns && *o->ns ? o->ns : "default";
}

int event_build(const event_recorder *r, kl_buf *b, const event_object *o, const char *type,
                const char *reason, const char *action, const char *note)
{
    struct timespec ts;
    char when[64], gen[300];
    clock_gettime(CLOCK_REALTIME, &ts);
    kl_rfc3339(&ts, 6, when, sizeof when);
    /* client-go's naming: "<name>.<unix nanoseconds in hex>" (generateName
     * would not validate with a trailing dot). */
    snprintf(gen, sizeof gen, "%.200s.%llx", o->name ? o->name : "object",
             (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    int bad = kl_buf_puts(b, "{\"apiVersion\":\"events.k8s.io/v1\",\"kind\":\"Event\","
                             "\"metadata\":{");
    bad |= put_field(b, "name", gen, 0);
    bad |= put_field(b, "namespace", event_namespace(o), 1);
    bad |= kl_buf_puts(b, "},\"regarding\":{");
    bad |= put_field(b, "apiVersion", o->api_version, 0);
    bad |= put_field(b, "kind", o->kind, 1);
    bad |= put_field(b, "name", o->name, 1);
    if (o->ns && *o->ns)
        bad |= put_field(b, "namespace", o->ns, 1);
    if (o->uid && *o->uid)
        bad |= put_field(b, "uid", o->uid, 1);
    if (o->rv && *o->rv)
        bad |= put_field(b, "resourceVersion", o->rv, 1);
    bad |= kl_buf_putc(b, '}');
    bad |= put_field(b, "reason", reason, 1);
    bad |= kl_buf_puts(b, ",\"note\":");
    bad |= json_escape_append(b, note ? note : "", note ? note_len(note) : 0);
    bad |= put_field(b, "type", type, 1);
    bad |= put_field(b, "action", action, 1);
    char reporter[160];
    snprintf(reporter, sizeof reporter, "klua.dev/%.140s",
             o->controller && *o->controller ? o->controller : "klua");
    bad |= put_field(b, "reportingController", reporter, 1);
    bad |= put_field(b, "reportingInstance", r->hostname, 1);
    bad |= put_field(b, "eventTime", when, 1);
    bad |= kl_buf_putc(b, '}');
    if (bad)
        return -1;
    return 0;
}

static char events_group[] = "events.k8s.io", events_version[] = "v1", events_name[] = "events",
            events_kind[] = "Event";
static const kube_resource events_res = {events_group, events_version, events_name, events_kind,
                                         1, 0};

const kube_resource *event_resource(void) { return &events_res; }

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A failed write: warning once per status, then -v 1. */
static void log_failure(event_recorder *r, const ev_series *e, kube_result *res)
{
    int level = KL_LOG_V1;
    size_t n = sizeof r->warned / sizeof r->warned[0];
    for (size_t i = 0; i < n; i++) {
        if (r->warned[i] == res->http_code + 1)
            break;
        if (!r->warned[i]) {
            r->warned[i] = res->http_code + 1;
            level = KL_LOG_WARN;
            break;
        }
    }
    char code[16];
    snprintf(code, sizeof code, "%ld", res->http_code);
    kl_log(level, "event not recorded", "event", e->name, "code", code, "reason", res->reason,
           "message", res->message, NULL);
}

static void write_series(ev_series *e);

static void on_series_written(void *ud, kube_result *res)
{
    ev_series *e = ud;
    e->call = NULL;
    if (!kube_result_ok(res)) {
        log_failure(e->r, e, res);
        e->failed = 1;      /* no more writes; a new Event after the window */
        return;
    }
    e->created = 1;
    e->written = e->sending;
    write_series(e);        /* occurrences that came meanwhile */
}

/* Send the series count when it moved, unless a write is in flight or the
 * last one was less than EVENT_SERIES_GAP_S ago (the first series write,
 * count 2, goes at once). */
static void write_series(ev_series *e)
{
    if (e->call || !e->created || e->failed || e->count <= e->written)
        return;
    double now = mono_ms();
    if (e->written >= 2 && now - e->write_ms < EVENT_SERIES_GAP_S * 1e3)
        return;
    char body[160];
    int n = snprintf(body, sizeof body, "{\"series\":{\"count\":%ld,\"lastObservedTime\":\"%s\"}}",
                     e->count, e->observed);
    e->sending = e->count;
    e->write_ms = now;
    e->call = kube_patch(e->r->kc, &events_res, e->ns, e->name, KUBE_PATCH_MERGE, body,
                         (size_t)n, NULL, on_series_written, e);
}

/* Forget series idle for longer than the window (and the oldest idle past
 * the cap); series with a write in flight stay. */
static void prune(event_recorder *r, double now)
{
    size_t i = 0;
    for (ev_series **pp = &r->series; *pp;) {
        ev_series *e = *pp;
        int old = now - e->last_ms > EVENT_SERIES_WINDOW_S * 1e3 || i >= EVENT_SERIES_MAX;
        if (old && !e->call) {
            *pp = e->next;
            series_free(e);
            r->nseries--;
        } else {
            pp = &e->next;
            i++;
        }
    }
}

/* The series key; NULL without memory. */
static char *series_key(const event_object *o, const char *type, const char *reason,
                        const char *note)
{
    kl_buf k = KL_BUF_INIT;
    const char *parts[] = {o->api_version, o->kind, o->ns, o->name, o->uid, type, reason, note,
                           o->controller};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        kl_buf_puts(&k, parts[i] ? parts[i] : "");
        kl_buf_putc(&k, '\x1f');
    }
    return kl_buf_take(&k);   /* NULL when an append failed */
}

void event_post(event_recorder *r, const event_object *o, const char *type, const char *reason,
                const char *action, const char *note)
{
    if (!r || !r->kc)
        return;
    double now = mono_ms();
    prune(r, now);
    char *key = series_key(o, type, reason, note);
    if (!key) {
        kl_log(KL_LOG_V1, "event not recorded", "reason", reason, "message", "out of memory",
               NULL);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (ev_series *e = r->series; e; e = e->next) {
        if (strcmp(e->key, key) != 0 || e->failed)
            continue;
        free(key);
        e->count++;
        e->last_ms = now;
        kl_rfc3339(&ts, 6, e->observed, sizeof e->observed);
        write_series(e);
        return;
    }
    kl_buf b = KL_BUF_INIT;
    ev_series *e = calloc(1, sizeof *e);
    if (!e || event_build(r, &b, o, type, reason, action, note) != 0 ||
        !(e->ns = strdup(event_namespace(o)))) {
        kl_log(KL_LOG_V1, "event not recorded", "reason", reason, "message", "out of memory",
               NULL);
        free(key);
        free(e);
        kl_buf_free(&b);
        return;
    }
    /* the name event_build chose: "metadata":{"name":"<it>" */
    const char *p = strstr(b.data, "\"name\":\"");
    const char *q = p ? strchr(p + 8, '"') : NULL;
    e->name = q ? strndup(p + 8, (size_t)(q - p - 8)) : NULL;
    e->key = key;
    e->r = r;
    e->count = 1;
    e->sending = 1;
    e->last_ms = now;
    kl_rfc3339(&ts, 6, e->observed, sizeof e->observed);
    if (e->name)
        e->call = kube_create(r->kc, &events_res, e->ns, b.data, b.len, NULL, on_series_written,
                              e);
    kl_buf_free(&b);
    if (!e->call) {
        kl_log(KL_LOG_V1, "event not recorded", "reason", reason, "message",
               e->name ? "cannot start the API request" : "out of memory", NULL);
        series_free(e);
        return;
    }
    e->next = r->series;
    r->series = e;
    r->nseries++;
}
