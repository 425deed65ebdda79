/* watchframe.c - splits a Kubernetes watch stream into events (see watchframe.h).
 *
 * Provides: the chunk-fed framer and watch_event_parse.
 * Uses: buf (the carry-over of a value split across chunks), err, json
 * (watch_event_parse).
 *
 * The framer only tracks strings, escapes and bracket depth; it does not
 * validate JSON (json_parse does that on each frame). A value that lies
 * wholly inside one chunk is handed to the callback as a pointer into the
 * chunk, so the common case copies nothing; only a value split across chunks
 * is gathered in wf->carry.
 */
#include "watchframe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WATCHFRAME_DEFAULT_MAX ((size_t)64 << 20)

struct watchframe {
    size_t max_doc;
    watchframe_cb cb;
    void *ud;
    kl_buf carry;      /* owned: the start of a value begun in an earlier chunk */
    size_t depth;      /* open brackets; > 0 while inside a value */
    int in_str, esc;   /* inside a string / right after a backslash in one */
    int broken;        /* an error was returned; the stream cannot be resynchronised */
    uint64_t offset;   /* bytes fed before the current chunk, for messages */
};

/* Caller owns the result (watchframe_free); NULL when out of memory. */
watchframe *watchframe_new(size_t max_doc, watchframe_cb cb, void *ud)
{
    watchframe *wf = calloc(1, sizeof *wf);
    if (!wf)
        return NULL;
    wf->max_doc = max_doc ? max_doc : WATCHFRAME_DEFAULT_MAX;
    wf->cb = cb;
    wf->ud = ud;
    return wf;
}

void watchframe_free(watchframe *wf)
{
    if (!wf)
        return;
    kl_buf_free(&wf->carry);
    free(wf);
}

static int too_big(watchframe *wf, kl_err *err)
{
    wf->broken = 1;
    return kl_err_set(err, KL_EINVAL, "watch stream: an event is larger than the limit of %zu bytes",
                      wf->max_doc);
}

/* Adds len bytes to the carry buffer, within the limit (carry.len <=
 * max_doc always, so the subtraction cannot wrap). */
static int carry_add(watchframe *wf, const char *p, size_t len, kl_err *err)
{
    if (len > wf->max_doc - wf->carry.len)
        return too_big(wf, err);
    if (kl_buf_append(&wf->carry, p, len) != 0) {
        wf->broken = 1;
        return kl_err_set(err, KL_ENOMEM, "watch stream: out of memory");
    }
    return 0;
}

/* Hands one complete value to the callback: straight from the chunk when it
 * all lies there, else from the carry buffer. */
static int emit(watchframe *wf, const char *data, size_t start, size_t end, kl_err *err)
{
    const char *doc = data + start;
    size_t len = end - start;
    if (wf->carry.len > 0) {
        if (carry_add(wf, doc, len, err) != 0)
            return -1;
        doc = wf->carry.data;
        len = wf->carry.len;
    } else if (len > wf->max_doc) {
        return too_big(wf, err);
    }
    int stop = wf->cb(wf->ud, doc, len);
    kl_buf_reset(&wf->carry);
    if (stop) {
        wf->broken = 1;
        return kl_err_set(err, KL_ECANCEL, "watch stream: stopped by the event handler");
    }
    return 0;
}

int watchframe_feed(watchframe *wf, const char *data, size_t len, kl_err *err)
{
    if (wf->broken)
        return kl_err_set(err, KL_ESTATE, "watch stream: fed again after an error");
    size_t i = 0, start = 0; /* start: where the current value began in this chunk */
    int rc = -1;
    while (i < len) {
        if (wf->depth == 0) {
            unsigned char c = (unsigned char)data[i];
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                i++;
                continue;
            }
            if (c != '{' && c != '[') {
                wf->broken = 1;
                kl_err_set(err, KL_EINVAL,
                           "watch stream: unexpected byte 0x%02x at offset %llu between events",
                           c, (unsigned long long)(wf->offset + i));
                goto out;
            }
            start = i++;
            wf->depth = 1;
            continue;
        }
        if (wf->in_str) {
            /* Strings are most of the bytes: skip their plain runs fast. */
            if (wf->esc) {
                wf->esc = 0;
                i++;
                continue;
            }
            while (i < len && data[i] != '"' && data[i] != '\\')
                i++;
            if (i == len)
                break;
            if (data[i] == '\\')
                wf->esc = 1;
            else
                wf->in_str = 0;
            i++;
            continue;
        }
        char c = data[i++];
        if (c == '"') {
            wf->in_str = 1;
        } else if (c == '{' || c == '[') {
            wf->depth++;
        } else if ((c == '}' || c == ']') && --wf->depth == 0) {
            if (emit(wf, data, start, i, err) != 0)
                goto out;
        }
    }
    if (wf->depth > 0) {
        /* The value goes on in the next chunk: keep what we have. The start
         * is 0 when the value began in an earlier chunk. */
        size_t part = len - (wf->carry.len > 0 ? 0 : start);
        if (carry_add(wf, data + (len - part), part, err) != 0)
            goto out;
    }
    rc = 0;
out:
    wf->offset += len;
    return rc;
}

int watchframe_finish(watchframe *wf, kl_err *err)
{
    if (wf->depth > 0)
        return kl_err_set(err, KL_EIO,
                          "watch stream ended in the middle of an event (%zu bytes pending)",
                          wf->carry.len);
    return 0;
}

/* ---- events ---- */

static const struct {
    const char *name;
    watch_type type;
} watch_types[] = {
    {"ADDED", WATCH_ADDED},       {"MODIFIED", WATCH_MODIFIED}, {"DELETED", WATCH_DELETED},
    {"BOOKMARK", WATCH_BOOKMARK}, {"ERROR", WATCH_ERROR},
};

void watch_event_free(watch_event *ev)
{
    free((char *)ev->resource_version);
    free((char *)ev->reason);
    free((char *)ev->message);
    ev->resource_version = ev->reason = ev->message = NULL;
}

/* Fills *ev; ev->object points into doc, the strings are owned by ev
 * (watch_event_free). On error *ev holds nothing to free. */
int watch_event_parse(const char *doc, size_t len, watch_event *ev, kl_err *err)
{
    json_doc jd = {0};
    int rc = -1;
    memset(ev, 0, sizeof *ev);
    if (json_parse(&jd, doc, len, err) != 0) {
        kl_err_wrap(err, "watch event");
        goto out;
    }
    if (jd.toks[0].type != JSON_OBJECT) {
        kl_err_set(err, KL_EINVAL, "watch event: not a JSON object");
        goto out;
    }
    int t = json_obj_get(&jd, 0, "type");
    if (t < 0 || jd.toks[t].type != JSON_STRING) {
        kl_err_set(err, KL_EINVAL, "watch event: no \"type\" string");
        goto out;
    }
    size_t i, ntypes = sizeof watch_types / sizeof watch_types[0];
    for (i = 0; i < ntypes; i++)
        if (json_str_eq(&jd, t, watch_types[i].name))
            break;
    if (i == ntypes) {
        size_t n = jd.toks[t].end - jd.toks[t].start;
        kl_err_set(err, KL_EINVAL, "watch event: unknown type \"%.*s\"", n > 40 ? 40 : (int)n,
                   doc + jd.toks[t].start);
        goto out;
    }
    ev->type = watch_types[i].type;
    int obj = json_obj_get(&jd, 0, "object");
    if (obj < 0 || jd.toks[obj].type != JSON_OBJECT) {
        kl_err_set(err, KL_EINVAL, "watch event: %s without an \"object\"", watch_types[i].name);
        goto out;
    }
    ev->object = json_raw(&jd, obj, &ev->object_len);
    int rv = json_path(&jd, obj, "metadata.resourceVersion");
    if (rv >= 0 && jd.toks[rv].type == JSON_STRING &&
        !(ev->resource_version = json_str_dup(&jd, rv)))
        goto nomem;
    if (ev->type == WATCH_ERROR) {
        int64_t code = 0;
        if (json_get_int64(&jd, json_obj_get(&jd, obj, "code"), &code) == 0)
            ev->code = (long)code;
        int r = json_obj_get(&jd, obj, "reason"), m = json_obj_get(&jd, obj, "message");
        if (r >= 0 && jd.toks[r].type == JSON_STRING && !(ev->reason = json_str_dup(&jd, r)))
            goto nomem;
        if (m >= 0 && jd.toks[m].type == JSON_STRING && !(ev->message = json_str_dup(&jd, m)))
            goto nomem;
    } else if (ev->type == WATCH_BOOKMARK) {
        int ann = json_path(&jd, obj, "metadata.annotations");
        ev->initial_events_end =
            json_str_eq(&jd, json_obj_get(&jd, ann, "k8s.io/initial-events-end"), "true");
    }
    rc = 0;
    goto out;
nomem:
    kl_err_set(err, KL_ENOMEM, "watch event: out of memory");
out:
    if (rc != 0) {
        watch_event_free(ev);
        memset(ev, 0, sizeof *ev);
    }
    json_doc_free(&jd);
    return rc;
}
