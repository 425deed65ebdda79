/* event.c - Kubernetes Events (see event.h).
 *
 * Provides: event_recorder, event_build, event_post.
 * Uses: rest (kube_create), json (string escaping), util (kl_rfc3339),
 * buf, log.
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

struct event_recorder {
    kube_client *kc;
    char hostname[128];      /* reportingInstance */
};

event_recorder *event_recorder_new(kube_client *kc, kl_err *err)
{
    event_recorder *r = calloc(1, sizeof *r);
    if (!r) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    r->kc = kc;
    if (gethostname(r->hostname, sizeof r->hostname - 1) != 0 || !r->hostname[0])
        snprintf(r->hostname, sizeof r->hostname, "klua");
    return r;
}

void event_recorder_free(event_recorder *r) { free(r); }

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
    bad |= put_field(b, "reportingController", "klua.dev/klua", 1);
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

static void on_event_posted(void *ud, kube_result *res)
{
    (void)ud;
    if (!kube_result_ok(res)) {
        char code[16];
        snprintf(code, sizeof code, "%ld", res->http_code);
        kl_log(KL_LOG_V1, "event not recorded", "code", code, "reason", res->reason, "message",
               res->message, NULL);
    }
}

void event_post(event_recorder *r, const event_object *o, const char *type, const char *reason,
                const char *action, const char *note)
{
    if (!r || !r->kc)
        return;
    kl_buf b = KL_BUF_INIT;
    if (event_build(r, &b, o, type, reason, action, note) == 0)
        kube_create(r->kc, &events_res, event_namespace(o), b.data, b.len, NULL, on_event_posted,
                    NULL);
    else
        kl_log(KL_LOG_V1, "event not recorded", "reason", reason, "message", "out of memory",
               NULL);
    kl_buf_free(&b);
}
