/* test_watchframe.c - unit tests for src/watchframe.c: framing whatever the
 * chunk boundaries, strings with braces and escapes, errors (garbage,
 * oversize, stream ending mid-event, handler stop) and watch_event_parse
 * for every event type, an undecodable (too deep) object as an event of its
 * own, and the shallow reader. Uses: harness.h, watchframe, json, buf, err. */
#include "harness.h"
#include "watchframe.h"

#include <stdlib.h>
#include <string.h>

/* What the callback saw: frames joined with '|', and where they pointed. */
typedef struct seen {
    kl_buf frames;
    int count;
    int stop_after;            /* stop when count reaches this (0: never) */
    const char *chunk;         /* the chunk being fed, to spot zero-copy frames */
    size_t chunk_len;
    int in_chunk;              /* frames that pointed into the chunk */
} seen;

static int on_frame(void *ud, const char *doc, size_t len)
{
    seen *s = ud;
    if (s->count++)
        kl_buf_putc(&s->frames, '|');
    kl_buf_append(&s->frames, doc, len);
    if (s->chunk && doc >= s->chunk && doc + len <= s->chunk + s->chunk_len)
        s->in_chunk++;
    return s->stop_after && s->count >= s->stop_after;
}

static const char *frames_of(seen *s) { return s->frames.data ? s->frames.data : ""; }

static int feed(watchframe *wf, seen *s, const char *data, size_t len, kl_err *err)
{
    s->chunk = data;
    s->chunk_len = len;
    return watchframe_feed(wf, data, len, err);
}

static const char ev1[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a{b}\","
                          "\"resourceVersion\":\"10\"},\"data\":{\"k\":\"q\\\"}]\\\\\"}}}";
static const char ev2[] = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"c\","
                          "\"resourceVersion\":\"11\"},\"list\":[1,[2,{}],\"]\"]}}";

TEST(several_in_one_chunk)
{
    seen s = {0};
    kl_err err;
    watchframe *wf = watchframe_new(0, on_frame, &s);
    kl_buf in = KL_BUF_INIT;
    kl_buf_printf(&in, "%s\n%s\r\n  %s\n[1,\"]\"]", ev1, ev2, ev1);
    CHECK(feed(wf, &s, in.data, in.len, &err) == 0);
    CHECK(s.count == 4);
    CHECK(s.in_chunk == 4); /* no copies when a value lies in one chunk */
    kl_buf want = KL_BUF_INIT;
    kl_buf_printf(&want, "%s|%s|%s|[1,\"]\"]", ev1, ev2, ev1);
    CHECK_STR(frames_of(&s), want.data);
    CHECK(watchframe_finish(wf, &err) == 0);
    watchframe_free(wf);
    kl_buf_free(&want);
    kl_buf_free(&in);
    kl_buf_free(&s.frames);
}

TEST(split_at_every_boundary)
{
    kl_buf in = KL_BUF_INIT, want = KL_BUF_INIT;
    kl_buf_printf(&in, "%s\n%s\n", ev1, ev2);
    kl_buf_printf(&want, "%s|%s", ev1, ev2);
    int bad = 0;
    for (size_t cut = 0; cut <= in.len; cut++) {
        seen s = {0};
        kl_err err;
        watchframe *wf = watchframe_new(0, on_frame, &s);
        if (feed(wf, &s, in.data, cut, &err) != 0 ||
            feed(wf, &s, in.data + cut, in.len - cut, &err) != 0 ||
            watchframe_finish(wf, &err) != 0 || s.count != 2 ||
            strcmp(frames_of(&s), want.data) != 0)
            bad++;
        watchframe_free(wf);
        kl_buf_free(&s.frames);
    }
    CHECK(bad == 0);
    /* and three pieces, every pair of cuts across the first event */
    bad = 0;
    for (size_t a = 0; a < sizeof ev1; a += 3) {
        for (size_t b = a; b <= in.len; b += 7) {
            seen s = {0};
            kl_err err;
            watchframe *wf = watchframe_new(0, on_frame, &s);
            if (feed(wf, &s, in.data, a, &err) != 0 || feed(wf, &s, in.data + a, b - a, &err) != 0 ||
                feed(wf, &s, in.data + b, in.len - b, &err) != 0 ||
                strcmp(frames_of(&s), want.data) != 0)
                bad++;
            watchframe_free(wf);
            kl_buf_free(&s.frames);
        }
    }
    CHECK(bad == 0);
    kl_buf_free(&in);
    kl_buf_free(&want);
}

TEST(byte_by_byte)
{
    seen s = {0};
    kl_err err;
    watchframe *wf = watchframe_new(0, on_frame, &s);
    kl_buf in = KL_BUF_INIT, want = KL_BUF_INIT;
    kl_buf_printf(&in, "\n\n%s   \t%s\n\n", ev2, ev1);
    kl_buf_printf(&want, "%s|%s", ev2, ev1);
    int rc = 0;
    for (size_t i = 0; i < in.len; i++)
        rc |= feed(wf, &s, in.data + i, 1, &err);
    CHECK(rc == 0);
    CHECK_STR(frames_of(&s), want.data);
    CHECK(watchframe_finish(wf, &err) == 0);
    watchframe_free(wf);
    kl_buf_free(&in);
    kl_buf_free(&want);
    kl_buf_free(&s.frames);
}

TEST(garbage_between_events)
{
    seen s = {0};
    kl_err err;
    watchframe *wf = watchframe_new(0, on_frame, &s);
    const char in[] = "{\"a\":1}\nxyz{\"b\":2}";
    CHECK(feed(wf, &s, in, sizeof in - 1, &err) == -1);
    CHECK(err.code == KL_EINVAL);
    CHECK_STR(err.msg, "watch stream: unexpected byte 0x78 at offset 8 between events");
    CHECK(s.count == 1);
    /* the framer refuses to go on after an error */
    CHECK(feed(wf, &s, "{}", 2, &err) == -1 && err.code == KL_ESTATE);
    watchframe_free(wf);
    kl_buf_free(&s.frames);
    /* a top-level scalar is garbage too; the offset counts earlier chunks */
    s = (seen){0};
    wf = watchframe_new(0, on_frame, &s);
    CHECK(feed(wf, &s, "{}\n", 3, &err) == 0);
    CHECK(feed(wf, &s, " 42", 3, &err) == -1);
    CHECK_STR(err.msg, "watch stream: unexpected byte 0x34 at offset 4 between events");
    watchframe_free(wf);
    kl_buf_free(&s.frames);
}

TEST(oversize)
{
    seen s = {0};
    kl_err err;
    /* in one chunk */
    watchframe *wf = watchframe_new(16, on_frame, &s);
    CHECK(feed(wf, &s, "{\"a\":\"0123456\"}", 15, &err) == 0); /* 15 bytes fit */
    CHECK(feed(wf, &s, "{\"a\":\"01234567890\"}", 19, &err) == -1);
    CHECK_STR(err.msg, "watch stream: an event is larger than the limit of 16 bytes");
    CHECK(s.count == 1);
    watchframe_free(wf);
    /* growing across chunks, never complete: refused before it is buffered */
    wf = watchframe_new(16, on_frame, &s);
    CHECK(feed(wf, &s, "{\"a\":\"0123", 10, &err) == 0);
    CHECK(feed(wf, &s, "456789", 6, &err) == 0); /* 16 bytes pending: still fits */
    CHECK(feed(wf, &s, "0", 1, &err) == -1 && err.code == KL_EINVAL);
    watchframe_free(wf);
    /* completing in a later chunk */
    wf = watchframe_new(16, on_frame, &s);
    CHECK(feed(wf, &s, "{\"a\":\"0123", 10, &err) == 0);
    CHECK(feed(wf, &s, "4567\"}", 6, &err) == 0); /* exactly 16 */
    CHECK(feed(wf, &s, "{\"a\":\"0123", 10, &err) == 0);
    CHECK(feed(wf, &s, "45678\"}", 7, &err) == -1);
    CHECK(s.count == 2);
    watchframe_free(wf);
    kl_buf_free(&s.frames);
}

TEST(finish_with_partial)
{
    seen s = {0};
    kl_err err;
    watchframe *wf = watchframe_new(0, on_frame, &s);
    CHECK(feed(wf, &s, "{\"a\":1}\n{\"b\":", 13, &err) == 0);
    CHECK(s.count == 1);
    CHECK(watchframe_finish(wf, &err) == -1);
    CHECK_STR(err.msg, "watch stream ended in the middle of an event (5 bytes pending)");
    watchframe_free(wf);
    /* an unclosed string is pending too */
    wf = watchframe_new(0, on_frame, &s);
    CHECK(feed(wf, &s, "{\"}", 3, &err) == 0);
    CHECK(watchframe_finish(wf, &err) == -1);
    watchframe_free(wf);
    /* trailing whitespace is not */
    wf = watchframe_new(0, on_frame, &s);
    CHECK(feed(wf, &s, "{}\n\n  ", 6, &err) == 0);
    CHECK(watchframe_finish(wf, &err) == 0);
    watchframe_free(wf);
    kl_buf_free(&s.frames);
}

TEST(handler_stop)
{
    seen s = {0};
    s.stop_after = 1;
    kl_err err;
    watchframe *wf = watchframe_new(0, on_frame, &s);
    CHECK(feed(wf, &s, "{}{}{}", 6, &err) == -1);
    CHECK(err.code == KL_ECANCEL);
    CHECK(s.count == 1);
    watchframe_free(wf);
    kl_buf_free(&s.frames);
}

TEST(event_types)
{
    watch_event ev;
    kl_err err;
    CHECK(watch_event_parse(ev1, sizeof ev1 - 1, &ev, &err) == 0);
    CHECK(ev.type == WATCH_ADDED);
    CHECK_STR(ev.resource_version, "10");
    CHECK(ev.object_len > 0 && ev.object[0] == '{' && ev.object[ev.object_len - 1] == '}');
    CHECK(ev.object == strstr(ev1, "{\"metadata\""));
    CHECK(ev.object_len == strlen(ev.object) - 1);
    CHECK(ev.reason == NULL && ev.code == 0 && !ev.initial_events_end);
    watch_event_free(&ev);

    CHECK(watch_event_parse(ev2, sizeof ev2 - 1, &ev, &err) == 0);
    CHECK(ev.type == WATCH_MODIFIED);
    CHECK_STR(ev.resource_version, "11");
    watch_event_free(&ev);

    const char del[] = "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\","
                       "\"resourceVersion\":\"12\"}}}";
    CHECK(watch_event_parse(del, sizeof del - 1, &ev, &err) == 0);
    CHECK(ev.type == WATCH_DELETED);
    CHECK_STR(ev.resource_version, "12");
    watch_event_free(&ev);

    const char gone[] = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                        "\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource "
                        "version: 1 (5000)\",\"reason\":\"Expired\",\"code\":410}}\n";
    CHECK(watch_event_parse(gone, sizeof gone - 1, &ev, &err) == 0);
    CHECK(ev.type == WATCH_ERROR);
    CHECK(ev.code == 410);
    CHECK_STR(ev.reason, "Expired");
    CHECK_STR(ev.message, "too old resource version: 1 (5000)");
    CHECK(ev.resource_version == NULL);
    watch_event_free(&ev);

    const char bm[] = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
                      "\"metadata\":{\"resourceVersion\":\"777\",\"creationTimestamp\":null,"
                      "\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}}";
    CHECK(watch_event_parse(bm, sizeof bm - 1, &ev, &err) == 0);
    CHECK(ev.type == WATCH_BOOKMARK);
    CHECK_STR(ev.resource_version, "777");
    CHECK(ev.initial_events_end == 1);
    watch_event_free(&ev);

    const char bm2[] = "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"778\","
                       "\"annotations\":{\"k8s.io/initial-events-end\":\"false\"}}}}";
    CHECK(watch_event_parse(bm2, sizeof bm2 - 1, &ev, &err) == 0);
    CHECK(ev.type == WATCH_BOOKMARK && ev.initial_events_end == 0);
    CHECK_STR(ev.resource_version, "778");
    watch_event_free(&ev);
}

TEST(event_errors)
{
    watch_event ev;
    kl_err err;
    const char unk[] = "{\"type\":\"UPSERTED\",\"object\":{}}";
    CHECK(watch_event_parse(unk, sizeof unk - 1, &ev, &err) == -1);
    CHECK_STR(err.msg, "watch event: unknown type \"UPSERTED\"");
    CHECK(ev.resource_version == NULL);
    const char noobj[] = "{\"type\":\"ADDED\"}";
    CHECK(watch_event_parse(noobj, sizeof noobj - 1, &ev, &err) == -1);
    CHECK_STR(err.msg, "watch event: ADDED without an \"object\"");
    const char notype[] = "{\"object\":{}}";
    CHECK(watch_event_parse(notype, sizeof notype - 1, &ev, &err) == -1);
    CHECK_STR(err.msg, "watch event: no \"type\" string");
    /* invalid inside the object: that object is undecodable, the event is not */
    const char bad[] = "{\"type\":\"ADDED\",\"object\":{]}";
    CHECK(watch_event_parse(bad, sizeof bad - 1, &ev, &err) == 0);
    CHECK(ev.undecodable == 1 && ev.type == WATCH_ADDED && ev.object_len == 2);
    CHECK_STR(ev.message, "invalid JSON at byte 26: expected a string key");
    watch_event_free(&ev);
    /* invalid outside it: the stream is bad */
    const char bad2[] = "{\"type\":\"ADDED\",\"object\":{},}";
    CHECK(watch_event_parse(bad2, sizeof bad2 - 1, &ev, &err) == -1);
    CHECK(strstr(err.msg, "watch event: invalid JSON") == err.msg);
    CHECK(watch_event_parse("[1]", 3, &ev, &err) == -1);
    CHECK_STR(err.msg, "watch event: not a JSON object");
}

/* {"a":{"a":...{"a":1}...}} nested n maps deep, inside object text. */
static void nest(kl_buf *b, int n)
{
    for (int i = 0; i < n; i++)
        kl_buf_puts(b, "{\"a\":");
    kl_buf_puts(b, "1");
    for (int i = 0; i < n; i++)
        kl_buf_putc(b, '}');
}

TEST(deep_object_is_an_undecodable_event_not_a_bad_stream)
{
    kl_buf b = KL_BUF_INIT;
    kl_buf_puts(&b, "{\"type\":\"MODIFIED\",\"object\":{\"apiVersion\":\"x/v1\","
                    "\"metadata\":{\"name\":\"deep\",\"namespace\":\"ns1\",\"uid\":\"u-1\","
                    "\"resourceVersion\":\"42\",\"managedFields\":[{\"fieldsV1\":");
    nest(&b, JSON_MAX_DEPTH + 5);
    kl_buf_puts(&b, "}]},\"spec\":");
    nest(&b, 10000); /* far past any limit: stepping over it must not recurse */
    kl_buf_puts(&b, "}}");
    watch_event ev;
    kl_err err = {0};
    CHECK(watch_event_parse(b.data, b.len, &ev, &err) == 0);
    CHECK(ev.type == WATCH_MODIFIED && ev.undecodable == 1);
    CHECK(ev.message && strstr(ev.message, "deeper") != NULL);
    CHECK_STR(ev.ident.namespace, "ns1");
    CHECK_STR(ev.ident.name, "deep");
    CHECK_STR(ev.ident.uid, "u-1");
    CHECK_STR(ev.resource_version, "42");
    CHECK(ev.object && ev.object[0] == '{' && ev.object[ev.object_len - 1] == '}');
    watch_event_free(&ev);
    CHECK(ev.ident.name == NULL && ev.message == NULL);

    /* a deep BOOKMARK or ERROR is not an object to skip: the stream is bad */
    kl_buf_reset(&b);
    kl_buf_puts(&b, "{\"type\":\"BOOKMARK\",\"object\":");
    nest(&b, JSON_MAX_DEPTH + 1);
    kl_buf_puts(&b, "}");
    CHECK(watch_event_parse(b.data, b.len, &ev, &err) == -1);
    kl_buf_free(&b);
}

TEST(shallow_member_and_items)
{
    const char *v;
    size_t n, pos = 0;
    const char obj[] =
        " { \"a\" : [1, {\"b\":\"}\\\"]\"}] , \"k\":\"v\",\"n\": -1.5e3 ,\"t\":true} ";
    CHECK(watchframe_member(obj, sizeof obj - 1, "k", &v, &n) == 0 && n == 3 &&
          !memcmp(v, "\"v\"", 3));
    CHECK(watchframe_member(obj, sizeof obj - 1, "n", &v, &n) == 0 && n == 6 &&
          !memcmp(v, "-1.5e3", 6));
    CHECK(watchframe_member(obj, sizeof obj - 1, "t", &v, &n) == 0 && n == 4);
    CHECK(watchframe_member(obj, sizeof obj - 1, "b", &v, &n) == 1); /* only the top level */
    CHECK(watchframe_member(obj, sizeof obj - 1, "a", &v, &n) == 0 && v[0] == '[');
    const char *arr = v;
    size_t alen = n;
    CHECK(watchframe_item(arr, alen, &pos, &v, &n) == 0 && n == 1 && v[0] == '1');
    CHECK(watchframe_item(arr, alen, &pos, &v, &n) == 0 && n == 12 && v[0] == '{');
    CHECK(watchframe_item(arr, alen, &pos, &v, &n) == 1);
    CHECK(watchframe_item(arr, alen, &pos, &v, &n) == 1);
    pos = 0;
    CHECK(watchframe_item(" [ ] ", 5, &pos, &v, &n) == 1 && pos > 0);
    CHECK(watchframe_item(" [ ] ", 5, &pos, &v, &n) == 1);
    pos = 0;
    CHECK(watchframe_item("[1 2]", 5, &pos, &v, &n) == 0);
    CHECK(watchframe_item("[1 2]", 5, &pos, &v, &n) == -1);
    pos = 0;
    CHECK(watchframe_item("[{\"a\":1", 8, &pos, &v, &n) == -1); /* cut short */
    CHECK(watchframe_member("{}", 2, "a", &v, &n) == 1);
    CHECK(watchframe_member("[]", 2, "a", &v, &n) == -1);
    CHECK(watchframe_member("{\"a\" 1}", 7, "a", &v, &n) == -1);
    CHECK(watchframe_member("{\"a\":\"x", 7, "a", &v, &n) == -1);
    CHECK(watchframe_member("{\"x\":1 \"a\":2}", 13, "a", &v, &n) == -1);

    watchframe_ident id;
    const char o[] = "{\"metadata\":{\"name\":\"n\\u0041\",\"namespace\":7}}";
    CHECK(watchframe_ident_read(o, sizeof o - 1, &id) == 0);
    CHECK_STR(id.name, "nA");
    CHECK(id.namespace == NULL && id.uid == NULL && id.resource_version == NULL);
    watchframe_ident_free(&id);
    CHECK(watchframe_ident_read("garbage", 7, &id) == 0 && id.name == NULL);
}

int main(void)
{
    RUN(several_in_one_chunk);
    RUN(split_at_every_boundary);
    RUN(byte_by_byte);
    RUN(garbage_between_events);
    RUN(oversize);
    RUN(finish_with_partial);
    RUN(handler_stop);
    RUN(event_types);
    RUN(event_errors);
    RUN(deep_object_is_an_undecodable_event_not_a_bad_stream);
    RUN(shallow_member_and_items);
    DONE();
}
