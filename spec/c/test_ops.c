/* test_ops.c - unit tests for the ops HTTP server (src/ops.c).
 *
 * The request parser on bytes (complete, incomplete, malformed, limits),
 * then the server on a real loop with plain client sockets on 127.0.0.1:
 * /healthz, /readyz before and after the readiness callback turns, /metrics
 * (content type and the registry's exact text), 404, 405, HEAD, keep-alive
 * and pipelining, oversized requests answered and closed, the idle timeout,
 * many connections beyond the limit, clients that trickle bytes (the
 * request deadline, /healthz answering while they hold every slot), and
 * the listen address forms.
 */
#include "harness.h"
#include "ops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the parser ------------------------------------------------------- */

static int parse(const char *s, ops_request *r)
{
    return ops_request_parse(s, strlen(s), 0, r);
}

static int span_is(const char *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

TEST(parser_complete_and_incomplete)
{
    ops_request r;
    const char *req = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nNEXT";
    CHECK(parse(req, &r) == OPS_PARSE_DONE);
    CHECK(span_is(r.method, r.method_len, "GET"));
    CHECK(span_is(r.path, r.path_len, "/metrics"));
    CHECK(span_is(r.query, r.query_len, "x=1"));
    CHECK(r.minor == 1 && r.keep_alive == 1);
    CHECK(r.total_len == strlen(req) - 4);   /* the next request starts at NEXT */
    /* every strict prefix of the head needs more bytes */
    size_t head = strlen(req) - 4;
    int again = 1;
    for (size_t i = 0; i < head; i++)
        if (ops_request_parse(req, i, 0, &r) != OPS_PARSE_AGAIN)
            again = 0;
    CHECK(again);
    /* bare LF line ends and leading empty lines are tolerated */
    CHECK(parse("\r\n\nGET / HTTP/1.0\nConnection: Keep-Alive\n\n", &r) == OPS_PARSE_DONE);
    CHECK(r.minor == 0 && r.keep_alive == 1);
    CHECK(parse("GET / HTTP/1.0\r\n\r\n", &r) == OPS_PARSE_DONE && r.keep_alive == 0);
    CHECK(parse("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", &r) == 0 &&
          r.keep_alive == 0);
    /* absolute-form keeps the path */
    CHECK(parse("GET http://h:8080/readyz?v=1 HTTP/1.1\r\n\r\n", &r) == 0 &&
          span_is(r.path, r.path_len, "/readyz") && span_is(r.query, r.query_len, "v=1"));
    CHECK(parse("GET http://h:8080 HTTP/1.1\r\n\r\n", &r) == 0 && span_is(r.path, r.path_len, "/"));
}

TEST(parser_bodies_and_limits)
{
    ops_request r;
    const char *req = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    CHECK(parse(req, &r) == OPS_PARSE_DONE && r.content_length == 5 &&
          r.total_len == strlen(req));
    CHECK(ops_request_parse(req, strlen(req) - 1, 0, &r) == OPS_PARSE_AGAIN);
    CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &r) == 400);
    CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", &r) == 0);
    CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &r) == 400);
    CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", &r) == 413);
    CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 9000\r\n\r\n", &r) == 413);
    CHECK(parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r) == 501);
    /* a head that does not fit: 431 as soon as the limit is reached */
    char big[OPS_MAX_REQUEST + 100];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    CHECK(ops_request_parse(big, OPS_MAX_REQUEST - 1, 0, &r) == OPS_PARSE_AGAIN);
    CHECK(ops_request_parse(big, OPS_MAX_REQUEST, 0, &r) == 431);
    CHECK(ops_request_parse(big, sizeof big, 0, &r) == 431);
    /* too many headers */
    kl_buf b = KL_BUF_INIT;
    kl_buf_puts(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= OPS_MAX_HEADERS; i++)
        kl_buf_printf(&b, "X-%d: y\r\n", i);
    kl_buf_puts(&b, "\r\n");
    CHECK(ops_request_parse(b.data, b.len, 0, &r) == 431);
    kl_buf_free(&b);
}

TEST(parser_rejects_malformed)
{
    ops_request r;
    const char *bad[] = {
        "GET\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET nopath HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTQ/1.1\r\n\r\n",
        "GET / HTTP/1.x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",          /* space before the colon */
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", /* obsolete line folding */
        "GET / HTTP/1.1\r\n: empty\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",           /* bare CR */
        "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = parse(bad[i], &r);
        if (st != 400)
            printf("#   case %zu: %d\n", i, st);
        CHECK(st == 400);
    }
    CHECK(parse("GET / HTTP/2.0\r\n\r\n", &r) == 505);
    CHECK(parse("GET / HTTP/0.9\r\n\r\n", &r) == 505);
}

/* ---- the server ------------------------------------------------------- */

typedef struct readiness {
    int ready;
    int calls;
} readiness;

static int ready_cb(void *ud, kl_buf *why)
{
    readiness *rd = ud;
    rd->calls++;
    if (!rd->ready) {
        kl_buf_puts(why, "informer github.klua.dev/v1/comments not synced\n");
        kl_buf_puts(why, "informer v1/configmaps not synced");
    }
    return rd->ready;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Send all of s while the loop runs (the server reads as we write). */
static int send_all(loop *l, int fd, const char *s, size_t n)
{
    size_t off = 0;
    uint64_t deadline = loop_time_ms() + 3000;
    while (off < n && loop_time_ms() < deadline) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            return -1;
        loop_run_once(l, 1);
    }
    return off == n ? 0 : -1;
}

/* Complete responses at the start of raw (Content-Length framed; HEAD
 * answers have no body). */
static int count_responses(const kl_buf *raw, int head)
{
    int n = 0;
    size_t pos = 0;
    while (raw->data && pos < raw->len) {
        const char *end = strstr(raw->data + pos, "\r\n\r\n");
        if (!end)
            break;
        const char *cl = strstr(raw->data + pos, "Content-Length: ");
        size_t len = cl && cl < end ? (size_t)strtoul(cl + 16, NULL, 10) : 0;
        size_t next = (size_t)(end + 4 - raw->data) + (head ? 0 : len);
        if (next > raw->len)
            break;
        n++;
        pos = next;
    }
    return n;
}

/* Run the loop and read fd until n responses arrived (or, n < 0, until the
 * server closes). Sets *eof when the server closed. */
static void read_until(loop *l, int fd, int n, int head, kl_buf *raw, int *eof, int ms)
{
    uint64_t deadline = loop_time_ms() + (uint64_t)ms;
    *eof = 0;
    while (loop_time_ms() < deadline) {
        loop_run_once(l, 5);
        char tmp[65536];
        ssize_t r;
        while ((r = recv(fd, tmp, sizeof tmp, 0)) > 0)
            kl_buf_append(raw, tmp, (size_t)r);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            *eof = 1;
            return;
        }
        if (n >= 0 && count_responses(raw, head) >= n)
            return;
    }
}

/* One request on a fresh connection; the raw response in *raw. */
static void fetch(loop *l, int port, const char *req, kl_buf *raw, int *eof)
{
    int fd = connect_to(port);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(send_all(l, fd, req, strlen(req)) == 0);
    read_until(l, fd, 1, strncmp(req, "HEAD", 4) == 0, raw, eof, 3000);
    close(fd);
}

static const char *body_of(const kl_buf *raw)
{
    const char *e = raw->data ? strstr(raw->data, "\r\n\r\n") : NULL;
    return e ? e + 4 : "";
}

static int starts(const kl_buf *raw, const char *prefix)
{
    return raw->data && strncmp(raw->data, prefix, strlen(prefix)) == 0;
}

typedef struct srv {
    loop *l;
    ops_server *s;
    readiness rd;
    metrics_registry *reg;
} srv;

static int srv_start_req(srv *v, size_t max_conns, unsigned idle_ms, unsigned request_ms)
{
    kl_err err;
    memset(v, 0, sizeof *v);
    v->l = loop_new(&err);
    v->reg = metrics_registry_new();
    metrics_family *c = metrics_counter_new(v->reg, "klua_test_total", "A test counter.",
                                            (const char *const[]){"k", NULL}, &err);
    metrics_counter_add(c, (const char *const[]){"v\"1"}, 3);
    ops_opts o = {.addr = "127.0.0.1:0", .registry = v->reg, .ready = ready_cb,
                  .ready_ud = &v->rd, .max_conns = max_conns, .idle_timeout_ms = idle_ms,
                  .request_timeout_ms = request_ms};
    if (!v->l || ops_start(v->l, &o, &v->s, &err) != 0 || !v->s) {
        printf("# ops_start: %s\n", err.msg);
        return -1;
    }
    return ops_port(v->s);
}

static int srv_start(srv *v, size_t max_conns, unsigned idle_ms)
{
    return srv_start_req(v, max_conns, idle_ms, 0);
}

static void srv_stop(srv *v)
{
    ops_free(v->s);
    metrics_registry_free(v->reg);
    loop_free(v->l);
}

TEST(healthz_readyz_metrics_404_405_head)
{
    srv v;
    int port = srv_start(&v, 0, 0);
    CHECK(port > 0);
    if (port <= 0)
        return;
    kl_buf raw = KL_BUF_INIT;
    int eof;

    fetch(v.l, port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    CHECK(raw.data && strstr(raw.data, "Content-Type: text/plain; charset=utf-8\r\n"));
    CHECK_STR(body_of(&raw), "ok");
    kl_buf_reset(&raw);

    fetch(v.l, port, "GET /readyz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK_STR(body_of(&raw), "not ready\ninformer github.klua.dev/v1/comments not synced\n"
                             "informer v1/configmaps not synced\n");
    kl_buf_reset(&raw);
    v.rd.ready = 1;
    fetch(v.l, port, "GET /readyz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    CHECK_STR(body_of(&raw), "ok");
    CHECK(v.rd.calls == 2);
    kl_buf_reset(&raw);

    fetch(v.l, port, "GET /metrics HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    CHECK(raw.data &&
          strstr(raw.data, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK_STR(body_of(&raw), "# HELP klua_test_total A test counter.\n"
                             "# TYPE klua_test_total counter\n"
                             "klua_test_total{k=\"v\\\"1\"} 3\n");
    kl_buf_reset(&raw);

    fetch(v.l, port, "GET /nope HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 404 Not Found\r\n"));
    kl_buf_reset(&raw);
    fetch(v.l, port, "GET /healthz/more HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 404 "));
    kl_buf_reset(&raw);

    fetch(v.l, port, "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(raw.data && strstr(raw.data, "\r\nAllow: GET, HEAD\r\n"));
    kl_buf_reset(&raw);

    fetch(v.l, port, "HEAD /healthz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    CHECK(raw.data && strstr(raw.data, "Content-Length: 2\r\n"));
    CHECK_STR(body_of(&raw), "");
    kl_buf_free(&raw);
    srv_stop(&v);
}

static int unhealthy_cb(void *ud, kl_buf *why)
{
    int *healthy = ud;
    if (!*healthy)
        kl_buf_puts(why, "event loop: no heartbeat for 6000 ms (over --healthz-loop-stall 5 s)");
    return *healthy;
}

/* /healthz says what its liveness callback says, with the reasons. */
TEST(healthz_fails_with_the_liveness_reasons)
{
    kl_err err;
    int healthy = 0;
    loop *l = loop_new(&err);
    ops_server *s = NULL;
    ops_opts o = {.addr = "127.0.0.1:0", .live = unhealthy_cb, .live_ud = &healthy};
    CHECK(l && ops_start(l, &o, &s, &err) == 0 && s);
    if (!s) {
        loop_free(l);
        return;
    }
    kl_buf raw = KL_BUF_INIT;
    int eof;
    fetch(l, ops_port(s), "GET /healthz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK_STR(body_of(&raw), "unhealthy\nevent loop: no heartbeat for 6000 ms (over "
                             "--healthz-loop-stall 5 s)\n");
    kl_buf_reset(&raw);
    fetch(l, ops_port(s), "GET /readyz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));   /* readiness is another question */
    kl_buf_reset(&raw);
    healthy = 1;
    fetch(l, ops_port(s), "GET /healthz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    CHECK_STR(body_of(&raw), "ok");
    kl_buf_free(&raw);
    ops_free(s);
    loop_free(l);
}

TEST(keep_alive_pipelining_and_close)
{
    srv v;
    int port = srv_start(&v, 0, 0);
    if (port <= 0) {
        CHECK(0);
        return;
    }
    int fd = connect_to(port), eof;
    kl_buf raw = KL_BUF_INIT;
    /* three pipelined requests in one write, answered in order */
    const char *reqs = "GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                       "GET /metrics HTTP/1.1\r\n\r\n";
    CHECK(send_all(v.l, fd, reqs, strlen(reqs)) == 0);
    read_until(v.l, fd, 3, 0, &raw, &eof, 3000);
    CHECK(!eof && count_responses(&raw, 0) == 3);
    const char *a = raw.data ? strstr(raw.data, "200 OK") : NULL;
    const char *b = raw.data ? strstr(raw.data, "404 Not Found") : NULL;
    const char *c = b ? strstr(b, "klua_test_total") : NULL;
    CHECK(a && b && c && a < b);
    /* the connection is still open: one more, with Connection: close */
    kl_buf_reset(&raw);
    const char *last = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    CHECK(send_all(v.l, fd, last, strlen(last)) == 0);
    read_until(v.l, fd, -1, 0, &raw, &eof, 3000);
    CHECK(eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    CHECK(raw.data && strstr(raw.data, "\r\nConnection: close\r\n"));
    close(fd);
    /* HTTP/1.0 without keep-alive: answered, then closed */
    kl_buf_reset(&raw);
    fd = connect_to(port);
    CHECK(send_all(v.l, fd, "GET /healthz HTTP/1.0\r\n\r\n", 25) == 0);
    read_until(v.l, fd, -1, 0, &raw, &eof, 3000);
    CHECK(eof && starts(&raw, "HTTP/1.1 200 OK\r\n"));
    close(fd);
    for (int i = 0; i < 50 && ops_connections(v.s) > 0; i++)
        loop_run_once(v.l, 5);
    CHECK(ops_connections(v.s) == 0);
    kl_buf_free(&raw);
    srv_stop(&v);
}

TEST(oversized_and_malformed_requests_are_answered_then_closed)
{
    srv v;
    int port = srv_start(&v, 0, 0);
    if (port <= 0) {
        CHECK(0);
        return;
    }
    kl_buf raw = KL_BUF_INIT;
    int eof;
    /* a head that never ends: 431 once 8 KiB are in, then the server closes */
    size_t n = OPS_MAX_REQUEST + 4096;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big, "GET /healthz HTTP/1.1\r\nX-Big: ", 30);
    int fd = connect_to(port);
    send_all(v.l, fd, big, n);   /* may fail part-way once the server closes */
    read_until(v.l, fd, -1, 0, &raw, &eof, 3000);
    CHECK(eof);
    CHECK(starts(&raw, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    CHECK(raw.data && strstr(raw.data, "\r\nConnection: close\r\n"));
    close(fd);
    free(big);
    kl_buf_reset(&raw);

    fd = connect_to(port);
    const char *bad = "GET / HTTP/1.1\r\nBad Header: x\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
    CHECK(send_all(v.l, fd, bad, strlen(bad)) == 0);
    read_until(v.l, fd, -1, 0, &raw, &eof, 3000);
    CHECK(eof && starts(&raw, "HTTP/1.1 400 Bad Request\r\n"));
    CHECK(count_responses(&raw, 0) == 1);   /* nothing after a malformed request */
    close(fd);
    kl_buf_reset(&raw);

    fd = connect_to(port);
    const char *huge = "POST /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
    CHECK(send_all(v.l, fd, huge, strlen(huge)) == 0);
    read_until(v.l, fd, -1, 0, &raw, &eof, 3000);
    CHECK(eof && starts(&raw, "HTTP/1.1 413 "));
    close(fd);
    kl_buf_free(&raw);
    srv_stop(&v);
}

TEST(idle_connections_time_out)
{
    srv v;
    int port = srv_start(&v, 0, 100);
    if (port <= 0) {
        CHECK(0);
        return;
    }
    int fd = connect_to(port), eof;
    kl_buf raw = KL_BUF_INIT;
    send_all(v.l, fd, "GET /hea", 8);   /* a slow client that stops mid-request */
    uint64_t t0 = loop_time_ms();
    read_until(v.l, fd, -1, 0, &raw, &eof, 3000);
    CHECK(eof);
    CHECK(loop_time_ms() - t0 >= 80);
    CHECK(raw.len == 0);
    close(fd);
    kl_buf_free(&raw);
    srv_stop(&v);
}

TEST(many_connections_beyond_the_limit_are_all_served)
{
    srv v;
    int port = srv_start(&v, 4, 0);
    if (port <= 0) {
        CHECK(0);
        return;
    }
    enum { N = 40 };
    int fds[N], eof, served = 0;
    size_t most = 0;
    kl_buf raw[N];
    /* all connect and send before the server accepts any of them */
    for (int i = 0; i < N; i++) {
        raw[i] = (kl_buf)KL_BUF_INIT;
        fds[i] = connect_to(port);
        CHECK(fds[i] >= 0);
        send(fds[i], "GET /healthz HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
    }
    uint64_t deadline = loop_time_ms() + 5000;
    while (served < N && loop_time_ms() < deadline) {
        loop_run_once(v.l, 5);
        if (ops_connections(v.s) > most)
            most = ops_connections(v.s);
        served = 0;
        for (int i = 0; i < N; i++) {
            char tmp[1024];
            ssize_t r;
            while ((r = recv(fds[i], tmp, sizeof tmp, 0)) > 0)
                kl_buf_append(&raw[i], tmp, (size_t)r);
            served += count_responses(&raw[i], 0) == 1;
        }
    }
    CHECK(served == N);
    CHECK(most <= 4);
    for (int i = 0; i < N; i++) {
        CHECK(starts(&raw[i], "HTTP/1.1 200 OK\r\n"));
        close(fds[i]);
        kl_buf_free(&raw[i]);
    }
    /* and the server still answers afterwards */
    kl_buf r1 = KL_BUF_INIT;
    fetch(v.l, port, "GET /healthz HTTP/1.1\r\n\r\n", &r1, &eof);
    CHECK(starts(&r1, "HTTP/1.1 200 OK\r\n"));
    kl_buf_free(&r1);
    srv_stop(&v);
}

/* Slowloris: clients that send one byte now and then. */
typedef struct trickler {
    int fds[16];
    int n;
    uint64_t next_ms;
    unsigned every_ms;
    int closed;   /* how many the server has closed */
} trickler;

static void trickle(trickler *t)
{
    if (loop_time_ms() < t->next_ms)
        return;
    t->next_ms = loop_time_ms() + t->every_ms;
    t->closed = 0;
    for (int i = 0; i < t->n; i++) {
        char tmp[256];
        if (t->fds[i] < 0 || recv(t->fds[i], tmp, sizeof tmp, 0) == 0 ||
            send(t->fds[i], "a", 1, MSG_NOSIGNAL) != 1)
            t->closed++;
    }
}

static void trickle_start(trickler *t, srv *v, int port, int n, unsigned every_ms)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->every_ms = every_ms;
    for (int i = 0; i < n; i++) {
        t->fds[i] = connect_to(port);
        CHECK(t->fds[i] >= 0);
        if (t->fds[i] >= 0)
            send(t->fds[i], "GET /healthz HTTP/1.1\r\nX-Slow: ", 30, MSG_NOSIGNAL);
    }
    /* until the server holds them all */
    uint64_t deadline = loop_time_ms() + 3000;
    while (ops_connections(v->s) < (size_t)n && loop_time_ms() < deadline)
        loop_run_once(v->l, 5);
    CHECK(ops_connections(v->s) == (size_t)n);
}

static void trickle_stop(trickler *t)
{
    for (int i = 0; i < t->n; i++)
        if (t->fds[i] >= 0)
            close(t->fds[i]);
}

TEST(request_deadline_is_not_extended_by_trickling)
{
    srv v;
    int port = srv_start_req(&v, 0, 30000, 300);
    if (port <= 0) {
        CHECK(0);
        return;
    }
    trickler t;
    uint64_t t0 = loop_time_ms();
    trickle_start(&t, &v, port, 1, 20);
    /* one byte every 20 ms would reset an idle timer for ever */
    while (t.closed == 0 && loop_time_ms() - t0 < 5000) {
        loop_run_once(v.l, 5);
        trickle(&t);
    }
    uint64_t took = loop_time_ms() - t0;
    CHECK(t.closed == 1);
    CHECK(took >= 250 && took < 2000);
    CHECK(ops_connections(v.s) == 0);
    trickle_stop(&t);
    srv_stop(&v);
}

TEST(trickling_clients_cannot_keep_healthz_from_answering)
{
    srv v;
    int port = srv_start_req(&v, 8, 30000, 5000);
    if (port <= 0) {
        CHECK(0);
        return;
    }
    trickler t;
    trickle_start(&t, &v, port, 8, 50); /* every slot, each sending a byte per 50 ms */
    uint64_t warm = loop_time_ms() + 700; /* past the eviction grace (500 ms) */
    while (loop_time_ms() < warm) {
        loop_run_once(v.l, 5);
        trickle(&t);
    }
    CHECK(ops_connections(v.s) == 8);
    for (int probe = 0; probe < 3; probe++) {
        int fd = connect_to(port);
        CHECK(fd >= 0);
        kl_buf raw = KL_BUF_INIT;
        send(fd, "GET /healthz HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
        uint64_t t0 = loop_time_ms();
        while (count_responses(&raw, 0) < 1 && loop_time_ms() - t0 < 2000) {
            loop_run_once(v.l, 5);
            trickle(&t);
            char tmp[1024];
            ssize_t r;
            while ((r = recv(fd, tmp, sizeof tmp, 0)) > 0)
                kl_buf_append(&raw, tmp, (size_t)r);
        }
        CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
        CHECK(loop_time_ms() - t0 < 1000); /* a probe's timeout is 1 s by default */
        CHECK(ops_connections(v.s) <= 8);
        close(fd);
        kl_buf_free(&raw);
    }
    trickle_stop(&t);
    srv_stop(&v);
}

TEST(listen_address_forms)
{
    kl_err err;
    loop *l = loop_new(&err);
    ops_server *s = (ops_server *)1;
    ops_opts o = {.addr = "0"};
    CHECK(ops_start(l, &o, &s, &err) == 0 && s == NULL);   /* disabled */
    o.addr = "";
    CHECK(ops_start(l, &o, &s, &err) == 0 && s == NULL);
    const char *bad[] = {"8080", "127.0.0.1", "127.0.0.1:", ":99999", ":80x", "::1:80",
                         "no.such.host.invalid:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.addr = bad[i];
        CHECK(ops_start(l, &o, &s, &err) == -1 && s == NULL);
        CHECK(strstr(err.msg, "metrics address \"") == err.msg);
        CHECK(strstr(err.msg, bad[i]) != NULL);
    }
    o.addr = ":0";   /* every interface, ephemeral port */
    CHECK(ops_start(l, &o, &s, &err) == 0 && s != NULL);
    int port = ops_port(s);
    CHECK(port > 0);
    /* the same port again: in use, said plainly */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    ops_server *s2 = NULL;
    o.addr = addr;
    CHECK(ops_start(l, &o, &s2, &err) == -1 && s2 == NULL);
    CHECK(strstr(err.msg, "cannot listen") != NULL);
    /* reachable over IPv4 loopback */
    kl_buf raw = KL_BUF_INIT;
    int eof;
    fetch(l, port, "GET /healthz HTTP/1.1\r\n\r\n", &raw, &eof);
    CHECK(starts(&raw, "HTTP/1.1 200 OK\r\n"));
    kl_buf_free(&raw);
    ops_free(s);
    o.addr = "localhost:0";
    CHECK(ops_start(l, &o, &s, &err) == 0 && ops_port(s) > 0);
    ops_free(s);
    CHECK(ops_port(NULL) == 0);
    metrics_default_free();   /* the /healthz above never touched it, but be tidy */
    loop_free(l);
}

int main(void)
{
    RUN(parser_complete_and_incomplete);
    RUN(parser_bodies_and_limits);
    RUN(parser_rejects_malformed);
    RUN(healthz_readyz_metrics_404_405_head);
    RUN(healthz_fails_with_the_liveness_reasons);
    RUN(keep_alive_pipelining_and_close);
    RUN(oversized_and_malformed_requests_are_answered_then_closed);
    RUN(idle_connections_time_out);
    RUN(many_connections_beyond_the_limit_are_all_served);
    RUN(request_deadline_is_not_extended_by_trickling);
    RUN(trickling_clients_cannot_keep_healthz_from_answering);
    RUN(listen_address_forms);
    DONE();
}
