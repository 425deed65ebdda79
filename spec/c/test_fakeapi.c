/* test_fakeapi.c - the HTTP side of klua test's fake API server (fakeapi.c),
 * driven by klua's own libcurl client (http.c) on one loop: request
 * parsing with bodies, keep-alive, a large body sent with Expect:
 * 100-continue, extra headers, and a chunked stream fed after the answer.
 */
#include "harness.h"

#include "fakeapi.h"
#include "http.h"
#include "loop.h"

#include <stdlib.h>

typedef struct seen {
    int n;
    char method[16], target[256], ctype[64];
    size_t body_len;
    char body_head[32];
    uint64_t stream_id;
    int closed;
} seen;

static void handle(void *ud, const fakeapi_request *req, uint64_t id, fakeapi_response *resp)
{
    seen *s = ud;
    s->n++;
    snprintf(s->method, sizeof s->method, "%s", req->method);
    snprintf(s->target, sizeof s->target, "%s", req->target);
    snprintf(s->ctype, sizeof s->ctype, "%s", req->content_type);
    s->body_len = req->body_len;
    int head = (int)(req->body_len < 31 ? req->body_len : 31);
    snprintf(s->body_head, sizeof s->body_head, "%.*s", head, req->body);
    if (!strcmp(req->target, "/watch")) {
        resp->status = 200;
        resp->stream = 1;
        s->stream_id = id;
        kl_buf_puts(&resp->body, "first\n");
        return;
    }
    resp->status = !strcmp(req->target, "/missing") ? 404 : 201;
    kl_buf_puts(&resp->headers, "X-Fake: yes\r\n");
    kl_buf_printf(&resp->body, "{\"n\":%d}", s->n);
}

static void closed(void *ud, uint64_t id)
{
    seen *s = ud;
    if (id == s->stream_id)
        s->closed = 1;
}

typedef struct answer {
    int done;
    long status;
    char body[256];
    char header[64];
    char streamed[256];
    size_t nstreamed;
} answer;

static void on_done(void *ud, http_response *r)
{
    answer *a = ud;
    a->done = 1;
    a->status = r->status;
    snprintf(a->body, sizeof a->body, "%.*s", (int)r->body.len, r->body.data ? r->body.data : "");
    const char *h = http_response_header(r, "X-Fake");
    snprintf(a->header, sizeof a->header, "%s", h ? h : "");
}

static int on_data(void *ud, long status, const char *data, size_t len)
{
    answer *a = ud;
    size_t room = sizeof a->streamed - 1 - a->nstreamed;
    if (len > room)
        len = room;
    memcpy(a->streamed + a->nstreamed, data, len);
    a->nstreamed += len;
    a->streamed[a->nstreamed] = '\0';
    return 0;
}

static void wait_for(loop *l, const int *flag)
{
    for (int i = 0; i < 2000 && !*flag; i++)
        loop_run_once(l, 5);
}

TEST(answers_requests_with_bodies_on_one_connection)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = http_client_new(l, &err);
    seen s = {0};
    fakeapi_handler fh = {handle, closed, &s};
    fakeapi *f = fakeapi_start(l, &fh, &err);
    CHECK(f && fakeapi_port(f) > 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/x?y=1", fakeapi_port(f));
    const char *hdrs[] = {"Content-Type: application/merge-patch+json", NULL};
    for (int i = 1; i <= 2; i++) {
        answer a = {0};
        http_request_opts o = {0};
        o.method = "PATCH";
        o.url = url;
        o.headers = hdrs;
        o.body = "{\"a\":1}";
        o.body_len = 7;
        o.on_done = on_done;
        o.ud = &a;
        CHECK(http_start(h, &o, &err) != NULL);
        wait_for(l, &a.done);
        CHECK(a.status == 201);
        CHECK_STR(a.header, "yes");
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%d}", i);
        CHECK_STR(a.body, want);
        CHECK_STR(s.method, "PATCH");
        CHECK_STR(s.target, "/api/v1/x?y=1");
        CHECK_STR(s.ctype, "application/merge-patch+json");
        CHECK_STR(s.body_head, "{\"a\":1}");
    }
    CHECK(fakeapi_activity(f) == 2);
    http_client_free(h);
    fakeapi_free(f);
    loop_free(l);
}

TEST(takes_a_large_body_sent_with_expect_continue)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = http_client_new(l, &err);
    seen s = {0};
    fakeapi_handler fh = {handle, closed, &s};
    fakeapi *f = fakeapi_start(l, &fh, &err);
    size_t n = 3 << 20; /* libcurl asks for 100-continue above 1 MiB */
    char *body = malloc(n);
    memset(body, 'x', n);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", fakeapi_port(f));
    answer a = {0};
    http_request_opts o = {0};
    o.method = "POST";
    o.url = url;
    o.body = body;
    o.body_len = n;
    o.on_done = on_done;
    o.ud = &a;
    CHECK(http_start(h, &o, &err) != NULL);
    wait_for(l, &a.done);
    CHECK(a.status == 201);
    CHECK(s.body_len == n);
    free(body);
    http_client_free(h);
    fakeapi_free(f);
    loop_free(l);
}

TEST(streams_chunks_after_the_answer_and_reports_the_close)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = http_client_new(l, &err);
    seen s = {0};
    fakeapi_handler fh = {handle, closed, &s};
    fakeapi *f = fakeapi_start(l, &fh, &err);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/watch", fakeapi_port(f));
    answer a = {0};
    http_request_opts o = {0};
    o.method = "GET";
    o.url = url;
    o.on_data = on_data;
    o.on_done = on_done;
    o.ud = &a;
    http_request *req = http_start(h, &o, &err);
    CHECK(req != NULL);
    for (int i = 0; i < 2000 && !strstr(a.streamed, "first\n"); i++)
        loop_run_once(l, 5);
    CHECK_STR(a.streamed, "first\n");
    CHECK(fakeapi_stream_send(f, s.stream_id, "second\n", 7) == 0);
    for (int i = 0; i < 2000 && !strstr(a.streamed, "second\n"); i++)
        loop_run_once(l, 5);
    CHECK_STR(a.streamed, "first\nsecond\n");
    CHECK(!a.done);
    CHECK(fakeapi_stream_send(f, 999999, "x", 1) == -1); /* no such stream */
    http_cancel(req);
    for (int i = 0; i < 2000 && !s.closed; i++)
        loop_run_once(l, 5);
    CHECK(s.closed);
    http_client_free(h);
    fakeapi_free(f);
    loop_free(l);
}

int main(void)
{
    RUN(answers_requests_with_bodies_on_one_connection);
    RUN(takes_a_large_body_sent_with_expect_continue);
    RUN(streams_chunks_after_the_answer_and_reports_the_close);
    DONE();
}
