/* watchframe.c - splits a Kubernetes watch stream into events (see watchframe.h).
 *
 * Provides: the chunk-fed framer, watch_event_parse and the shallow reader.
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
#include <stdio.h>
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
            i = json_scan_string(data, i, len);
            while (i < len && data[i] != '"' && data[i] != '\\') /* a control byte */
                i = json_scan_string(data, i + 1, len);
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

/* ---- shallow reading ---- */

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    return i;
}

/* One past the end of the value that starts at s[i], or 0 when it is
 * malformed or cut short. Containers are matched by counting brackets
 * outside strings: no recursion, no depth limit. */
static size_t value_end(const char *s, size_t len, size_t i)
{
    if (i >= len)
        return 0;
    if (s[i] == '"') {
        for (i++; i < len; i++) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                return i + 1;
        }
        return 0;
    }
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        int in_str = 0;
        for (; i < len; i++) {
            char c = s[i];
            if (in_str) {
                if (c == '\\')
                    i++;
                else if (c == '"')
                    in_str = 0;
            } else if (c == '"') {
                in_str = 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return i + 1;
            }
        }
        return 0;
    }
    size_t start = i; /* a number, true, false or null */
    while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
           s[i] != '\n' && s[i] != '\r' && s[i] != '\t' && s[i] != '"' && s[i] != '{' &&
           s[i] != '[')
        i++;
    return i > start ? i : 0;
}

/* The member key (NULL: none, so every member is stepped over and the
 * object's top level checked) of obj; see watchframe_member. */
static int member_scan(const char *obj, size_t len, const char *key, const char **val,
                       size_t *vlen)
{
    size_t klen = key ? strlen(key) : 0, i = skip_ws(obj, len, 0);
    if (i >= len || obj[i] != '{')
        return -1;
    i = skip_ws(obj, len, i + 1);
    if (i < len && obj[i] == '}')
        return 1;
    for (;;) {
        if (i >= len || obj[i] != '"')
            return -1;
        size_t kend = value_end(obj, len, i);
        if (!kend)
            return -1;
        int match = key && kend - i - 2 == klen && memcmp(obj + i + 1, key, klen) == 0;
        i = skip_ws(obj, len, kend);
        if (i >= len || obj[i] != ':')
            return -1;
        i = skip_ws(obj, len, i + 1);
        size_t vend = value_end(obj, len, i);
        if (!vend)
            return -1;
        if (match) {
            *val = obj + i;
            *vlen = vend - i;
            return 0;
        }
        i = skip_ws(obj, len, vend);
        if (i < len && obj[i] == '}')
            return 1;
        if (i >= len || obj[i] != ',')
            return -1;
        i = skip_ws(obj, len, i + 1);
    }
}

int watchframe_member(const char *obj, size_t len, const char *key, const char **val,
                      size_t *vlen)
{
    return member_scan(obj, len, key, val, vlen);
}

int watchframe_item(const char *arr, size_t len, size_t *pos, const char **val, size_t *vlen)
{
    size_t i = skip_ws(arr, len, *pos);
    if (*pos == 0) {
        if (i >= len || arr[i] != '[')
            return -1;
        i = skip_ws(arr, len, i + 1);
    } else if (i < len && arr[i] == ',') {
        i = skip_ws(arr, len, i + 1);
    } else if (i >= len || arr[i] != ']') {
        return -1;
    } else {
        return 1;
    }
    if (i < len && arr[i] == ']' && *pos == 0) {
        *pos = i; /* > 0: the next call sees the ']' again */
        return 1;
    }
    size_t end = value_end(arr, len, i);
    if (!end)
        return -1;
    *val = arr + i;
    *vlen = end - i;
    *pos = end;
    return 0;
}

/* The string member key of obj, decoded, into *out (NULL when absent or
 * not a string). -1 only when out of memory. */
static int str_member(const char *obj, size_t len, const char *key, char **out)
{
    const char *v;
    size_t vlen;
    json_doc d = {0};
    *out = NULL;
    if (!obj || watchframe_member(obj, len, key, &v, &vlen) != 0 || v[0] != '"')
        return 0;
    if (json_parse(&d, v, vlen, NULL) == 0 && !(*out = json_str_dup(&d, 0))) {
        json_doc_free(&d);
        return -1;
    }
    json_doc_free(&d);
    return 0;
}

void watchframe_ident_free(watchframe_ident *id)
{
    free(id->namespace);
    free(id->name);
    free(id->uid);
    free(id->resource_version);
    memset(id, 0, sizeof *id);
}

int watchframe_ident_read(const char *obj, size_t len, watchframe_ident *id)
{
    const char *meta = NULL;
    size_t mlen = 0;
    memset(id, 0, sizeof *id);
    if (watchframe_member(obj, len, "metadata", &meta, &mlen) != 0)
        return 0;
    if (str_member(meta, mlen, "namespace", &id->namespace) != 0 ||
        str_member(meta, mlen, "name", &id->name) != 0 ||
        str_member(meta, mlen, "uid", &id->uid) != 0 ||
        str_member(meta, mlen, "resourceVersion", &id->resource_version) != 0) {
        watchframe_ident_free(id);
        return -1;
    }
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
    watchframe_ident_free(&ev->ident);
    json_doc_free(&ev->doc);
    ev->object_tok = -1;
}

/* The event in doc could not be decoded as a whole (why): if it still reads
 * as an ADDED, MODIFIED or DELETED event with an object, fill *ev as an
 * undecodable event and return 0, so the caller skips that one object and
 * the stream goes on. Otherwise -1: the stream itself is bad. */
static int parse_undecodable(const char *doc, size_t len, watch_event *ev, const char *why,
                             kl_err *err)
{
    const char *t, *obj;
    size_t tlen, olen;
    char type[16];
    if (member_scan(doc, len, NULL, &t, &tlen) != 1 || /* the event's own level is sound */
        watchframe_member(doc, len, "type", &t, &tlen) != 0 ||
        watchframe_member(doc, len, "object", &obj, &olen) != 0 || obj[0] != '{' ||
        tlen < 2 || tlen - 2 >= sizeof type)
        return kl_err_set(err, KL_EINVAL, "watch event: %s", why);
    memcpy(type, t + 1, tlen - 2); /* the known names need no unescaping */
    type[tlen - 2] = '\0';
    if (!strcmp(type, "ADDED"))
        ev->type = WATCH_ADDED;
    else if (!strcmp(type, "MODIFIED"))
        ev->type = WATCH_MODIFIED;
    else if (!strcmp(type, "DELETED"))
        ev->type = WATCH_DELETED;
    else
        return kl_err_set(err, KL_EINVAL, "watch event: %s", why);
    ev->undecodable = 1;
    ev->object = obj;
    ev->object_len = olen;
    if (watchframe_ident_read(obj, olen, &ev->ident) != 0 || !(ev->message = strdup(why)) ||
        (ev->ident.resource_version &&
         !(ev->resource_version = strdup(ev->ident.resource_version))))
        return kl_err_set(err, KL_ENOMEM, "watch event: out of memory");
    return 0;
}

/* Fills *ev; ev->object points into doc, the strings are owned by ev
 * (watch_event_free). On error *ev holds nothing to free. */
int watch_event_parse(const char *doc, size_t len, watch_event *ev, kl_err *err)
{
    json_doc jd = {0};
    int rc = -1;
    memset(ev, 0, sizeof *ev);
    ev->object_tok = -1;
    kl_err perr = {0};
    if (json_parse(&jd, doc, len, &perr) != 0) {
        rc = parse_undecodable(doc, len, ev, perr.msg, err);
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
    ev->object_tok = obj;
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
    ev->doc = jd; /* the tokens go with the event */
    memset(&jd, 0, sizeof jd);
    goto out;
nomem:
    kl_err_set(err, KL_ENOMEM, "watch event: out of memory");
out:
    if (rc != 0) {
        watch_event_free(ev);
        memset(ev, 0, sizeof *ev);
        ev->object_tok = -1;
    }
    json_doc_free(&jd);
    return rc;
}
