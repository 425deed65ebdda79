/* test_http.c - unit tests for the asynchronous HTTP client (src/http.c).
 *
 * Starts spec/support/httpecho.py on 127.0.0.1 (one plain port and two TLS
 * ports whose certificates come from a throw-away CA made with the openssl
 * CLI in a temp dir) and drives real transfers through the loop: methods and
 * bodies, headers, streaming, gzip, concurrency, timeouts, refused
 * connections, cancellation from every kind of callback, TLS verification
 * with a file or in-memory CA, tls-server-name, and 1000 sequential GETs
 * over keep-alive (timed, printed as a TAP comment).
 */
#include "harness.h"
#include "http.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

static loop *L;
static http_client *C;
static pid_t srv_pid = -1;
static int srv_stdin = -1;
static int port_plain, port_tls, port_sn;   /* sn: cert for kubernetes.klua.test only */
static int port_mtls;                        /* requires a client certificate */
static int port_sn6;                         /* the sn cert on [::1]; 0 = no IPv6 */
static char certdir[64];

/* ---- fixture: certificates and the echo server -------------------------- */

static int sh(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) && WEXITSTATUS(rc) == 0 ? 0 : -1;
}

static void certpath(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", certdir, name);
}

static int make_certs(void)
{
    char cmd[1024];
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
    snprintf(certdir, sizeof certdir, "/tmp/klua-http-XXXXXX");
    if (!mkdtemp(certdir))
        return -1;
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 %s -keyout ca.key -out ca.crt -subj /CN=klua-test-ca"
             " >/dev/null 2>&1"
             " && openssl req -x509 %s -keyout srv.key -out srv.crt -subj /CN=127.0.0.1"
             " -CA ca.crt -CAkey ca.key -addext subjectAltName=IP:127.0.0.1"
             " -addext basicConstraints=critical,CA:FALSE >/dev/null 2>&1"
             " && openssl req -x509 %s -keyout sn.key -out sn.crt -subj /CN=kubernetes.klua.test"
             " -CA ca.crt -CAkey ca.key -addext subjectAltName=DNS:kubernetes.klua.test"
             " -addext basicConstraints=critical,CA:FALSE >/dev/null 2>&1"
             " && openssl req -x509 %s -keyout cli.key -out cli.crt -subj /CN=klua-test-client"
             " -CA ca.crt -CAkey ca.key -addext extendedKeyUsage=clientAuth"
             " -addext basicConstraints=critical,CA:FALSE >/dev/null 2>&1",
             certdir, key, key, key, key);
    return sh(cmd);
}

static void remove_certs(void)
{
    static const char *names[] = {"ca.key", "ca.crt", "srv.key", "srv.crt", "sn.key", "sn.crt", "cli.key", "cli.crt"};
    char p[128];
    if (!certdir[0])
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        certpath(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(certdir);
}

static void stop_server(void)
{
    if (srv_pid > 0) {
        kill(srv_pid, SIGTERM);
        waitpid(srv_pid, NULL, 0);
        srv_pid = -1;
    }
    if (srv_stdin >= 0) {
        close(srv_stdin);
        srv_stdin = -1;
    }
    remove_certs();
}

static int start_server(void)
{
    int out[2], in[2];
    char script[512], srvc[128], srvk[128], snc[128], snk[128], ca[128];
    /* Tests run from the repository root; fall back to this file's place. */
    snprintf(script, sizeof script, "spec/support/httpecho.py");
    if (access(script, R_OK) != 0) {
        const char *f = __FILE__, *slash = strrchr(f, '/');
        int dl = slash ? (int)(slash - f) : 1;
        snprintf(script, sizeof script, "%.*s/../support/httpecho.py", dl, slash ? f : ".");
    }
    certpath(srvc, sizeof srvc, "srv.crt");
    certpath(srvk, sizeof srvk, "srv.key");
    certpath(snc, sizeof snc, "sn.crt");
    certpath(snk, sizeof snk, "sn.key");
    certpath(ca, sizeof ca, "ca.crt");
    if (pipe(out) < 0 || pipe(in) < 0)
        return -1;
    srv_pid = fork();
    if (srv_pid < 0)
        return -1;
    if (srv_pid == 0) {
        /* The server also exits when its stdin closes, i.e. when this test
         * process dies for any reason; PDEATHSIG is a second belt. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execlp("python3", "python3", script, "--tls", srvc, srvk, "--tls", snc, snk, "--mtls", srvc, srvk, ca,
               "--tls6", snc, snk, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    srv_stdin = in[1];
    FILE *f = fdopen(out[0], "r");
    char line[128];
    int ok = f && fgets(line, sizeof line, f) &&
             sscanf(line, "%d %d %d %d %d", &port_plain, &port_tls, &port_sn, &port_mtls,
                    &port_sn6) == 5;
    if (f)
        fclose(f);
    return ok ? 0 : -1;
}

/* ---- helpers ------------------------------------------------------------- */

typedef struct res {
    int done, chunks;
    long status;
    int curl_code;
    char error[256];
    kl_buf body;               /* copy of resp->body */
    kl_buf streamed;           /* what on_data saw */
    const char *want_header;   /* copied into header[] by on_done */
    char header[128];
    int has_header;
    uint64_t first_chunk_ms, done_ms;
    int abort_at;              /* on_data returns 1 on this chunk (1-based) */
    /* cross-request actions from inside callbacks */
    http_request *self;
    http_request *cancel_on_first;
    int cancel_self_at;
    http_request *(*start_on_first)(struct res *);
} res;

static void res_free(res *r)
{
    kl_buf_free(&r->body);
    kl_buf_free(&r->streamed);
}

static void on_done(void *ud, http_response *resp)
{
    res *r = ud;
    r->done++;
    r->done_ms = loop_time_ms();
    r->status = resp->status;
    r->curl_code = resp->curl_code;
    snprintf(r->error, sizeof r->error, "%s", resp->error);
    if (resp->body.len)
        kl_buf_append(&r->body, resp->body.data, resp->body.len);
    if (r->want_header) {
        const char *v = http_response_header(resp, r->want_header);
        r->has_header = v != NULL;
        snprintf(r->header, sizeof r->header, "%s", v ? v : "");
    }
}

static int on_data(void *ud, long status, const char *data, size_t len)
{
    res *r = ud;
    if (r->chunks++ == 0) {
        r->first_chunk_ms = loop_time_ms();
        if (r->cancel_on_first)
            http_cancel(r->cancel_on_first);
        if (r->start_on_first)
            r->start_on_first(r);
    }
    kl_buf_append(&r->streamed, data, len);
    if (r->cancel_self_at && r->chunks == r->cancel_self_at)
        http_cancel(r->self);
    return r->abort_at && r->chunks == r->abort_at ? 1 : 0;
}

static void url(char *out, size_t n, int tls, int port, const char *path)
{
    snprintf(out, n, "%s://127.0.0.1:%d%s", tls ? "https" : "http", port, path);
}

/* Start a request with defaults filled in; returns the handle. */
static http_request *go(const char *method, const char *u, const char *body, res *r,
                        const http_tls *tls, const char *const *headers, int stream)
{
    http_request_opts o = {0};
    o.method = method;
    o.url = u;
    o.body = body;
    o.body_len = body ? strlen(body) : 0;
    o.tls = tls;
    o.headers = headers;
    o.on_done = on_done;
    o.on_data = stream ? on_data : NULL;
    o.ud = r;
    kl_err err = {0};
    http_request *h = http_start(C, &o, &err);
    if (!h)
        printf("#   http_start failed: %s\n", err.msg);
    r->self = h;
    return h;
}

static void run_until_done(res **rs, int n, int ms)
{
    uint64_t deadline = loop_time_ms() + (uint64_t)ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++)
            if (!rs[i]->done)
                all = 0;
        if (all || loop_time_ms() >= deadline)
            return;
        loop_run_once(L, 20);
    }
}

static void run_for(int ms)
{
    uint64_t deadline = loop_time_ms() + (uint64_t)ms;
    while (loop_time_ms() < deadline)
        loop_run_once(L, 10);
}

static void fetch(const char *method, const char *u, const char *body, res *r, const http_tls *tls)
{
    go(method, u, body, r, tls, NULL, 0);
    res *one[1] = {r};
    run_until_done(one, 1, 5000);
}

static int contains(const kl_buf *b, const char *s)
{
    return b->data && strstr(b->data, s) != NULL;
}

/* ---- tests ------------------------------------------------------------------ */

TEST(get_echoes_request_headers)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/echo");
    const char *hdrs[] = {"X-Klua: yes", "Accept: application/json", NULL};
    res r = {.want_header = "X-ECHO"};
    go("GET", u, NULL, &r, NULL, hdrs, 0);
    res *one[1] = {&r};
    run_until_done(one, 1, 5000);
    CHECK(r.done == 1);
    CHECK(r.status == 200 && r.curl_code == 0);
    CHECK(contains(&r.body, "\"method\": \"GET\""));
    CHECK(contains(&r.body, "\"x-klua\": \"yes\""));
    CHECK(contains(&r.body, "\"accept\": \"application/json\""));
    CHECK(contains(&r.body, "\"accept-encoding\": \"")); /* gzip offered */
    CHECK(r.has_header);
    CHECK_STR(r.header, "padded value");                /* value trimmed */
    CHECK(http_in_flight(C) == 0);
    res_free(&r);
}

TEST(basic_auth_is_sent)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/echo");
    res r = {0};
    http_request_opts o = {.method = "GET", .url = u, .username = "user", .password = "pass",
                           .on_done = on_done, .ud = &r};
    CHECK(http_start(C, &o, NULL) != NULL);
    res *one[1] = {&r};
    run_until_done(one, 1, 5000);
    CHECK(contains(&r.body, "\"authorization\": \"Basic dXNlcjpwYXNz\""));
    res_free(&r);
}

TEST(bodies_are_echoed_for_every_method)
{
    static const char *methods[] = {"POST", "PUT", "PATCH", "DELETE"};
    char u[128], want[64], body[64];
    url(u, sizeof u, 0, port_plain, "/echo");
    for (int i = 0; i < 4; i++) {
        res r = {0};
        snprintf(body, sizeof body, "payload for %s", methods[i]);
        fetch(methods[i], u, body, &r, NULL);
        snprintf(want, sizeof want, "\"method\": \"%s\"", methods[i]);
        CHECK(r.status == 200);
        CHECK(contains(&r.body, want));
        snprintf(want, sizeof want, "\"body\": \"payload for %s\"", methods[i]);
        CHECK(contains(&r.body, want));
        res_free(&r);
    }
    /* An empty POST still sends Content-Length: 0; HEAD gets no body. */
    res p = {0}, h = {0};
    fetch("POST", u, NULL, &p, NULL);
    CHECK(p.status == 200 && contains(&p.body, "\"content-length\": \"0\""));
    fetch("HEAD", u, NULL, &h, NULL);
    CHECK(h.done == 1 && h.status == 200 && h.body.len == 0);
    res_free(&p);
    res_free(&h);
}

TEST(redirects_are_not_followed)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/redirect");
    res r = {.want_header = "location"};
    fetch("GET", u, NULL, &r, NULL);
    CHECK(r.status == 302);
    CHECK_STR(r.header, "/echo");
    res_free(&r);
}

TEST(only_the_final_header_block_is_kept)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/early");
    res r = {.want_header = "x-final"};
    fetch("GET", u, NULL, &r, NULL);
    CHECK(r.status == 200);
    CHECK(r.has_header);
    CHECK(r.body.len == 5 && strcmp(r.body.data, "final") == 0);
    res_free(&r);
    res e = {.want_header = "x-early"};   /* only in the 103 block */
    fetch("GET", u, NULL, &e, NULL);
    CHECK(e.done == 1 && !e.has_header);
    res_free(&e);
}

TEST(stream_delivers_chunks_as_they_arrive)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/stream?n=5&ms=60");
    res r = {0};
    go("GET", u, NULL, &r, NULL, NULL, 1);
    res *one[1] = {&r};
    run_until_done(one, 1, 5000);
    CHECK(r.done == 1 && r.status == 200 && r.curl_code == 0);
    CHECK(r.chunks >= 3);   /* one per server flush, give or take coalescing */
    CHECK(r.streamed.len > 0 && strcmp(r.streamed.data, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n") == 0);
    CHECK(r.body.len == 0);  /* streamed, not buffered */
    CHECK(r.done_ms >= r.first_chunk_ms + 200);   /* the first chunk came early */
    res_free(&r);
}

TEST(non_2xx_stream_is_buffered)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/stream/500");
    res r = {0};
    go("GET", u, NULL, &r, NULL, NULL, 1);
    res *one[1] = {&r};
    run_until_done(one, 1, 5000);
    CHECK(r.status == 500);
    CHECK(r.chunks == 0);
    CHECK(r.body.len && strcmp(r.body.data, "stream refused with 500") == 0);
    res_free(&r);
}

TEST(on_data_abort_reports_write_error)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/stream?n=5&ms=30");
    res r = {.abort_at = 2};
    go("GET", u, NULL, &r, NULL, NULL, 1);
    res *one[1] = {&r};
    run_until_done(one, 1, 5000);
    CHECK(r.done == 1);
    CHECK(r.chunks == 2);
    CHECK(r.curl_code == CURLE_WRITE_ERROR);
    CHECK(r.error[0] != '\0');
    res_free(&r);
}

TEST(gzip_is_decoded)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/gzip");
    res r = {.want_header = "content-encoding"};
    fetch("GET", u, NULL, &r, NULL);
    CHECK(r.status == 200);
    CHECK_STR(r.header, "gzip");
    CHECK(r.body.len == 1100);
    CHECK(r.body.len && strncmp(r.body.data, "hello gzip hello gzip ", 22) == 0);
    res_free(&r);
}

TEST(twenty_concurrent_requests)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/slow?ms=300");
    static res rs[20];
    res *ptrs[20];
    uint64_t t0 = loop_time_ms();
    for (int i = 0; i < 20; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        ptrs[i] = &rs[i];
        go("GET", u, NULL, &rs[i], NULL, NULL, 0);
    }
    CHECK(http_in_flight(C) == 20);
    run_until_done(ptrs, 20, 10000);
    uint64_t took = loop_time_ms() - t0;
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        if (rs[i].done == 1 && rs[i].status == 200 && contains(&rs[i].body, "slow"))
            ok++;
        res_free(&rs[i]);
    }
    CHECK(ok == 20);
    CHECK(took < 3000);   /* in series it would take 6 s */
    CHECK(http_in_flight(C) == 0);
    printf("# 20 concurrent 300 ms requests took %llu ms\n", (unsigned long long)took);
}

TEST(timeout)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/slow?ms=3000");
    res r = {0};
    http_request_opts o = {.url = u, .timeout_ms = 200, .on_done = on_done, .ud = &r};
    uint64_t t0 = loop_time_ms();
    CHECK(http_start(C, &o, NULL) != NULL);
    res *one[1] = {&r};
    run_until_done(one, 1, 5000);
    CHECK(r.done == 1);
    CHECK(r.curl_code == CURLE_OPERATION_TIMEDOUT);
    CHECK(r.error[0] != '\0');
    CHECK(loop_time_ms() - t0 < 2000);
    res_free(&r);
}

TEST(connection_refused)
{
    /* A port that was free a moment ago: nobody listens there. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    char u[128], port[16];
    url(u, sizeof u, 0, ntohs(a.sin_port), "/echo");
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    res r = {0};
    fetch("GET", u, NULL, &r, NULL);
    CHECK(r.done == 1);
    CHECK(r.curl_code == CURLE_COULDNT_CONNECT);
    CHECK(r.status == 0);
    CHECK(strstr(r.error, "127.0.0.1") != NULL && strstr(r.error, port) != NULL);
    printf("# refused: %s\n", r.error);
    res_free(&r);
}

TEST(cancel_in_flight)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/slow?ms=300");
    res a = {0}, b = {0};
    http_request *ha = go("GET", u, NULL, &a, NULL, NULL, 0);
    http_request *hb = go("GET", u, NULL, &b, NULL, NULL, 0);
    http_cancel(hb);            /* before the loop ever ran */
    CHECK(http_in_flight(C) == 1);
    run_for(80);                /* a is connected and waiting now */
    http_cancel(ha);
    CHECK(http_in_flight(C) == 0);
    run_for(500);
    CHECK(a.done == 0 && b.done == 0);
    res_free(&a);
    res_free(&b);
}

static res started_from_callback;

static http_request *start_small(res *unused)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/small");
    return go("GET", u, NULL, &started_from_callback, NULL, NULL, 0);
}

TEST(cancel_and_start_from_inside_on_data)
{
    char su[128], lu[128];
    url(su, sizeof su, 0, port_plain, "/stream?n=6&ms=60");
    url(lu, sizeof lu, 0, port_plain, "/slow?ms=500");
    memset(&started_from_callback, 0, sizeof started_from_callback);
    res victim = {0}, s = {.cancel_self_at = 3, .start_on_first = start_small};
    s.cancel_on_first = go("GET", lu, NULL, &victim, NULL, NULL, 0);
    go("GET", su, NULL, &s, NULL, NULL, 1);
    res *one[1] = {&started_from_callback};
    run_until_done(one, 1, 5000);
    run_for(700);
    CHECK(started_from_callback.done == 1 && started_from_callback.status == 200);
    CHECK(victim.done == 0);      /* cancelled by the other request's on_data */
    CHECK(s.done == 0);           /* cancelled itself */
    CHECK(s.chunks == 3);         /* and saw nothing after that */
    CHECK(http_in_flight(C) == 0);
    res_free(&victim);
    res_free(&s);
    res_free(&started_from_callback);
}

typedef struct chain {
    res r;
    http_request *cancel;   /* cancelled from on_done */
    res next;               /* started from on_done */
    int next_started;
} chain;

static void chain_done(void *ud, http_response *resp)
{
    chain *ch = ud;
    on_done(&ch->r, resp);
    http_cancel(ch->cancel);
    http_cancel(ch->r.self);    /* its own handle, inside on_done: a no-op */
    char u[128];
    url(u, sizeof u, 0, port_plain, "/small");
    ch->next_started = go("GET", u, NULL, &ch->next, NULL, NULL, 0) != NULL;
}

TEST(cancel_and_start_from_inside_on_done)
{
    char u[128], lu[128];
    url(u, sizeof u, 0, port_plain, "/small");
    url(lu, sizeof lu, 0, port_plain, "/slow?ms=400");
    chain ch = {0};
    res victim = {0};
    ch.cancel = go("GET", lu, NULL, &victim, NULL, NULL, 0);
    http_request_opts o = {.url = u, .on_done = chain_done, .ud = &ch};
    ch.r.self = http_start(C, &o, NULL);
    res *one[1] = {&ch.next};
    run_until_done(one, 1, 5000);
    run_for(600);
    CHECK(ch.r.done == 1 && ch.next_started);
    CHECK(ch.next.done == 1 && ch.next.status == 200);
    CHECK(victim.done == 0);
    CHECK(http_in_flight(C) == 0);
    res_free(&ch.r);
    res_free(&ch.next);
    res_free(&victim);
}

TEST(freeing_the_client_cancels_everything)
{
    kl_err err = {0};
    http_client *c2 = http_client_new(L, &err);
    CHECK(c2 != NULL);
    char u[128];
    url(u, sizeof u, 0, port_plain, "/slow?ms=300");
    res rs[3] = {{0}};
    http_request_opts o = {.url = u, .on_done = on_done};
    for (int i = 0; i < 3; i++) {
        o.ud = &rs[i];
        CHECK(http_start(c2, &o, NULL) != NULL);
    }
    CHECK(http_in_flight(c2) == 3);
    run_for(60);
    http_client_free(c2);
    run_for(400);   /* nothing of c2 may fire now (ASan would catch it) */
    for (int i = 0; i < 3; i++)
        CHECK(rs[i].done == 0);
}

TEST(keep_alive_1000_sequential_gets)
{
    char u[128];
    url(u, sizeof u, 0, port_plain, "/small");
    int ports[8], nports = 0, ok = 0;
    uint64_t t0 = loop_time_ms();
    for (int i = 0; i < 1000; i++) {
        res r = {.want_header = "x-client-port"};
        fetch("GET", u, NULL, &r, NULL);
        if (r.status == 200 && r.body.len == 2)
            ok++;
        int p = (int)strtol(r.header, NULL, 10), seen = 0;
        for (int j = 0; j < nports; j++)
            seen |= ports[j] == p;
        if (!seen && nports < 8)
            ports[nports++] = p;
        res_free(&r);
    }
    uint64_t took = loop_time_ms() - t0;
    CHECK(ok == 1000);
    CHECK(nports == 1);   /* every request reused the first connection */
    printf("# 1000 sequential GETs over keep-alive: %llu ms (%.1f us each), %d connection(s)\n",
           (unsigned long long)took, (double)took /* ms per 1000 = us each */, nports);
}

/* ---- TLS ------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    kl_buf b = KL_BUF_INIT;
    char chunk[4096];
    size_t n;
    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        kl_buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return kl_buf_take(&b);
}

TEST(https_with_a_private_ca)
{
    char u[128], ca[128];
    url(u, sizeof u, 1, port_tls, "/small");
    certpath(ca, sizeof ca, "ca.crt");
    size_t pem_len = 0;
    char *pem = slurp(ca, &pem_len);
    CHECK(pem != NULL);

    http_tls by_file = {.ca_file = ca};
    res a = {0};
    fetch("GET", u, NULL, &a, &by_file);
    CHECK(a.curl_code == 0 && a.status == 200);

    http_tls by_pem = {.ca_pem = pem, .ca_pem_len = pem_len};
    res b = {0};
    fetch("GET", u, NULL, &b, &by_pem);
    CHECK(b.curl_code == 0 && b.status == 200);

    res c = {0};   /* system CAs only: the private CA is unknown */
    fetch("GET", u, NULL, &c, NULL);
    CHECK(c.done == 1 && c.curl_code == CURLE_PEER_FAILED_VERIFICATION && c.status == 0);
    CHECK(c.error[0] != '\0');
    printf("# no CA: %s\n", c.error);

    http_tls insecure = {.insecure = 1};
    res d = {0};
    fetch("GET", u, NULL, &d, &insecure);
    CHECK(d.curl_code == 0 && d.status == 200);

    res_free(&a); res_free(&b); res_free(&c); res_free(&d);
    free(pem);
}

TEST(tls_server_name)
{
    char u[128], ca[128], want[96];
    url(u, sizeof u, 1, port_sn, "/echo");
    certpath(ca, sizeof ca, "ca.crt");

    /* The certificate names kubernetes.klua.test, not 127.0.0.1. */
    http_tls plain = {.ca_file = ca};
    res a = {0};
    fetch("GET", u, NULL, &a, &plain);
    CHECK(a.done == 1 && a.curl_code == CURLE_PEER_FAILED_VERIFICATION);

    http_tls named = {.ca_file = ca, .server_name = "kubernetes.klua.test"};
    res b = {0};
    fetch("GET", u, NULL, &b, &named);
    CHECK(b.curl_code == 0 && b.status == 200);
    /* The Host header still names the real server. */
    snprintf(want, sizeof want, "\"host\": \"127.0.0.1:%d\"", port_sn);
    CHECK(contains(&b.body, want));

    http_tls wrong = {.ca_file = ca, .server_name = "other.klua.test"};
    res c = {0};
    fetch("GET", u, NULL, &c, &wrong);
    CHECK(c.done == 1 && c.curl_code == CURLE_PEER_FAILED_VERIFICATION);

    res_free(&a); res_free(&b); res_free(&c);

    /* An IPv6 literal URL: brackets in the rewritten URL and CONNECT_TO. */
    if (!port_sn6) {
        printf("# no IPv6 loopback here: the [::1] case is not checked\n");
        return;
    }
    char u6[128];
    snprintf(u6, sizeof u6, "https://[::1]:%d/echo", port_sn6);
    res d = {0};
    fetch("GET", u6, NULL, &d, &named);
    CHECK(d.curl_code == 0 && d.status == 200);
    snprintf(want, sizeof want, "\"host\": \"[::1]:%d\"", port_sn6);
    CHECK(contains(&d.body, want));
    if (d.curl_code)
        printf("# [::1]: %s\n", d.error);
    res_free(&d);
}

TEST(client_certificates)
{
    char u[128], ca[128], crt[128], key[128];
    url(u, sizeof u, 1, port_mtls, "/small");
    certpath(ca, sizeof ca, "ca.crt");
    certpath(crt, sizeof crt, "cli.crt");
    certpath(key, sizeof key, "cli.key");

    http_tls none = {.ca_file = ca};
    res a = {0};
    fetch("GET", u, NULL, &a, &none);
    CHECK(a.done == 1 && a.curl_code != 0 && a.status == 0);

    http_tls files = {.ca_file = ca, .cert_file = crt, .key_file = key};
    res b = {0};
    fetch("GET", u, NULL, &b, &files);
    CHECK(b.curl_code == 0 && b.status == 200);

    size_t cl = 0, kl = 0;
    char *cpem = slurp(crt, &cl), *kpem = slurp(key, &kl);
    http_tls mem = {.ca_file = ca, .cert_pem = cpem, .cert_pem_len = cl,
                    .key_pem = kpem, .key_pem_len = kl};
    res c = {0};
    fetch("GET", u, NULL, &c, &mem);
    CHECK(c.curl_code == 0 && c.status == 200);
    if (c.curl_code)
        printf("# in-memory client cert: %s\n", c.error);

    res_free(&a); res_free(&b); res_free(&c);
    free(cpem);
    free(kpem);
}

int main(void)
{
    kl_err err = {0};
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_server);
    if (make_certs() < 0)
        printf("# could not create test certificates with openssl in %s\n", certdir);
    if (start_server() < 0) {
        printf("Bail out! cannot start spec/support/httpecho.py\n");
        return 1;
    }
    L = loop_new(&err);
    C = http_client_new(L, &err);
    if (!L || !C) {
        printf("Bail out! %s\n", err.msg);
        return 1;
    }
    RUN(get_echoes_request_headers);
    RUN(basic_auth_is_sent);
    RUN(bodies_are_echoed_for_every_method);
    RUN(redirects_are_not_followed);
    RUN(only_the_final_header_block_is_kept);
    RUN(stream_delivers_chunks_as_they_arrive);
    RUN(non_2xx_stream_is_buffered);
    RUN(on_data_abort_reports_write_error);
    RUN(gzip_is_decoded);
    RUN(twenty_concurrent_requests);
    RUN(timeout);
    RUN(connection_refused);
    RUN(cancel_in_flight);
    RUN(cancel_and_start_from_inside_on_data);
    RUN(cancel_and_start_from_inside_on_done);
    RUN(freeing_the_client_cancels_everything);
    RUN(keep_alive_1000_sequential_gets);
    RUN(https_with_a_private_ca);
    RUN(tls_server_name);
    RUN(client_certificates);
    http_client_free(C);
    loop_free(L);
    stop_server();
    DONE();
}
