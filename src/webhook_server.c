/* webhook_server.c - the HTTPS webhook server (see webhook_server.h).
 *
 * Each connection is a small state machine over a non-blocking socket:
 * HANDSHAKE (SSL_accept) -> READ (SSL_read until a whole request is in,
 * parsed by ops_request_parse) -> WRITE (SSL_write of the answer) -> READ
 * again (keep-alive) or closed. An SSL call that wants the other direction
 * re-arms the loop's watch for it; one timer per connection closes it
 * when a request does not arrive whole in time or it idles too long.
 * Uses: webhook_review, ops, metrics, util, loop, buf, err, log, OpenSSL.
 */
#include "webhook_server.h"

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define CERT_CHECK_MS 1000

enum { C_HANDSHAKE, C_READ, C_WRITE };

typedef struct conn conn;

typedef struct cert_stamp {
    struct timespec crt_mtime, key_mtime;
    off_t crt_size, key_size;
    ino_t crt_ino, key_ino;
} cert_stamp;

struct webhook_server {
    loop *l;
    int fd, port;
    webhook_server_opts o;
    char *cert_dir;
    SSL_CTX *ctx;
    cert_stamp stamp;
    uint64_t cert_checked_ms;
    conn *conns;
    size_t nconns;
    unsigned long requests;
};

struct conn {
    webhook_server *s;
    conn *prev, *next;
    int fd, state, close_after;
    int failed;                  /* a fatal TLS error: no close_notify */
    SSL *ssl;
    kl_buf in, out;
    size_t out_off;
    loop_timer_id timer;
};

/* ---- the socket BIO ----
 * OpenSSL's own socket BIO writes with write(2): a peer that has gone away
 * would raise SIGPIPE and kill klua. This one sends with MSG_NOSIGNAL (the
 * ops server does the same) and reports EAGAIN as a retry. */

static BIO_METHOD *sock_method;

static int sock_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(fd, buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO *sock_bio(int fd)
{
    if (!sock_method) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "klua-socket");
        if (!m || !BIO_meth_set_write(m, sock_write) || !BIO_meth_set_read(m, sock_read) ||
            !BIO_meth_set_ctrl(m, sock_ctrl) || !BIO_meth_set_create(m, sock_create)) {
            BIO_meth_free(m);
            return NULL;
        }
        sock_method = m;   /* one per process, like OpenSSL's own methods */
    }
    BIO *b = BIO_new(sock_method);
    if (b)
        BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}

/* ---- certificates ---- */

static int stamp_files(const char *dir, cert_stamp *st)
{
    char p[4096];
    struct stat a, b;
    snprintf(p, sizeof p, "%s/tls.crt", dir);
    if (stat(p, &a) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/tls.key", dir);
    if (stat(p, &b) != 0)
        return -1;
    memset(st, 0, sizeof *st);
    st->crt_mtime = a.st_mtim;
    st->key_mtime = b.st_mtim;
    st->crt_size = a.st_size;
    st->key_size = b.st_size;
    st->crt_ino = a.st_ino;
    st->key_ino = b.st_ino;
    return 0;
}

static int stamp_eq(const cert_stamp *a, const cert_stamp *b)
{
    return a->crt_mtime.tv_sec == b->crt_mtime.tv_sec &&
           a->crt_mtime.tv_nsec == b->crt_mtime.tv_nsec &&
           a->key_mtime.tv_sec == b->key_mtime.tv_sec &&
           a->key_mtime.tv_nsec == b->key_mtime.tv_nsec && a->crt_size == b->crt_size &&
           a->key_size == b->key_size && a->crt_ino == b->crt_ino && a->key_ino == b->key_ino;
}

static SSL_CTX *load_ctx(const char *dir, kl_err *err)
{
    char crt[4096], key[4096], why[256] = "";
    snprintf(crt, sizeof crt, "%s/tls.crt", dir);
    snprintf(key, sizeof key, "%s/tls.key", dir);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        kl_err_set(err, KL_ENOMEM, "webhook server: cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    const char *bad = NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1)
        bad = crt;
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        bad = key;
    else if (SSL_CTX_check_private_key(ctx) != 1)
        bad = "tls.key (it does not match tls.crt)";
    if (bad) {
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        kl_err_set(err, KL_ETLS, "webhook server: cannot load %s: %s", bad, why);
        return NULL;
    }
    return ctx;
}

/* New connections use the files' current contents. */
static void maybe_reload_cert(webhook_server *s)
{
    uint64_t now = loop_now_ms(s->l);
    if (now - s->cert_checked_ms < CERT_CHECK_MS)
        return;
    s->cert_checked_ms = now;
    cert_stamp st;
    if (stamp_files(s->cert_dir, &st) != 0 || stamp_eq(&st, &s->stamp))
        return;
    s->stamp = st;
    kl_err err = {0};
    SSL_CTX *ctx = load_ctx(s->cert_dir, &err);
    if (!ctx) {
        kl_log(KL_LOG_WARN, "webhook certificate changed but does not load; keeping the "
                            "previous one", "error", err.msg, NULL);
        return;
    }
    SSL_CTX_free(s->ctx);   /* connections hold their own reference */
    s->ctx = ctx;
    kl_log(KL_LOG_INFO, "webhook certificate reloaded", "dir", s->cert_dir, NULL);
}

/* ---- connections ---- */

static void conn_close(conn *c)
{
    webhook_server *s = c->s;
    loop_timer_cancel(s->l, c->timer);
    loop_fd_del(s->l, c->fd);
    if (c->ssl) {
        if (c->state != C_HANDSHAKE && !c->failed)
            SSL_shutdown(c->ssl);   /* best effort: one non-blocking close_notify */
        SSL_free(c->ssl);
    }
    ERR_clear_error();
    close(c->fd);
    kl_buf_free(&c->in);
    kl_buf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c);
}

static void on_timeout(loop *l, void *ud)
{
    conn *c = ud;
    (void)l;
    c->timer = 0;
    kl_log(KL_LOG_V1, "webhook connection timed out", NULL);
    conn_close(c);
}

static void arm_timer(conn *c, unsigned ms)
{
    loop_timer_cancel(c->s->l, c->timer);
    c->timer = loop_timer_add(c->s->l, ms, on_timeout, c);
}

static void respond(conn *c, int status, const char *body, size_t len, int close_after)
{
    kl_buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                  status, kl_http_reason(status),
                  status == 200 ? "application/json" : "text/plain", len,
                  close_after ? "Connection: close\r\n" : "");
    kl_buf_append(&c->out, body, len);
    c->close_after |= close_after;
}

/* controller-runtime's webhook metrics, so its dashboards work: requests
 * by HTTP code and path, and latency by path. A path that is no webhook
 * counts as "other" (a scanner cannot grow the series without bound). */
static void observe(const ops_request *req, int http_code, double seconds)
{
    static const double buckets[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
    metrics_registry *reg = metrics_default();
    if (!reg)
        return;
    metrics_family *total = metrics_find(reg, "controller_runtime_webhook_requests_total");
    metrics_family *lat = metrics_find(reg, "controller_runtime_webhook_latency_seconds");
    if (!total) {
        static const char *const labels[] = {"code", "webhook", NULL};
        total = metrics_counter_new(reg, "controller_runtime_webhook_requests_total",
                                    "Total number of admission requests by HTTP status code.",
                                    labels, NULL);
    }
    if (!lat) {
        static const char *const labels[] = {"webhook", NULL};
        lat = metrics_histogram_new(reg, "controller_runtime_webhook_latency_seconds",
                                    "Histogram of the latency of processing admission requests",
                                    labels, buckets, sizeof buckets / sizeof buckets[0], NULL);
    }
    webhook_op op;
    char name[WEBHOOK_MAX_NAME], path[WEBHOOK_MAX_NAME + 16] = "other", code[16];
    if (webhook_route(req->path, req->path_len, &op, name) == 0)
        snprintf(path, sizeof path, "%.*s", (int)req->path_len, req->path);
    snprintf(code, sizeof code, "%d", http_code);
    const char *tv[] = {code, path}, *lv[] = {path};
    if (total)
        metrics_counter_add(total, tv, 1);
    if (lat)
        metrics_histogram_observe(lat, lv, seconds);
}

/* Answer the request at the start of c->in (whole). */
static void serve(conn *c, const ops_request *req)
{
    webhook_server *s = c->s;
    const char *body = c->in.data + req->total_len - req->content_length;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int http_code = 200;
    if (req->method_len != 4 || memcmp(req->method, "POST", 4) != 0) {
        static const char msg[] = "webhooks take POST\n";
        respond(c, 405, msg, sizeof msg - 1, !req->keep_alive);
        http_code = 405;
    } else {
        kl_buf ans = KL_BUF_INIT;
        int st = webhook_review_handle(&s->o.handlers, req->path, req->path_len, body,
                                       req->content_length, &ans);
        if (kl_buf_failed(&ans)) {
            respond(c, 500, "out of memory\n", 14, 1);
            http_code = 500;
        } else
            respond(c, 200, ans.data, ans.len, !req->keep_alive);
        kl_buf_free(&ans);
        if (kl_log_enabled(KL_LOG_V1)) {
            char code[16], path[128];
            snprintf(code, sizeof code, "%d", st);
            snprintf(path, sizeof path, "%.*s", (int)(req->path_len < 100 ? req->path_len : 100),
                     req->path);
            kl_log(KL_LOG_V1, "webhook request", "path", path, "status", code, NULL);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    observe(req, http_code,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    s->requests++;
    kl_buf_consume(&c->in, req->total_len);
}

static void drive(conn *c);

static void on_io(loop *l, int fd, int events, void *ud)
{
    (void)l;
    (void)fd;
    (void)events;
    drive(ud);
}

/* 1: wait for the event the SSL call wants; 0: go on; -1: close. */
static int ssl_wait(conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return loop_fd_mod(c->s->l, c->fd, LOOP_READ) == 0 ? 1 : -1;
    if (e == SSL_ERROR_WANT_WRITE)
        return loop_fd_mod(c->s->l, c->fd, LOOP_WRITE) == 0 ? 1 : -1;
    c->failed = e != SSL_ERROR_ZERO_RETURN;
    ERR_clear_error();
    return -1;
}

/* Parse what is in; 1 when a request was answered (now writing), 0 when
 * more bytes are needed, -1 on memory failure. */
static int try_request(conn *c)
{
    webhook_server *s = c->s;
    if (!c->in.len)
        return 0;
    ops_request req;
    int st = ops_request_parse(c->in.data, c->in.len, s->o.max_request, &req);
    if (st == OPS_PARSE_AGAIN)
        return 0;
    if (st == OPS_PARSE_DONE) {
        serve(c, &req);
    } else {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "malformed request (%d)\n", st);
        respond(c, st, msg, (size_t)n, 1);
        kl_buf_reset(&c->in);
    }
    if (kl_buf_failed(&c->out))
        return -1;
    c->state = C_WRITE;
    c->out_off = 0;
    return 1;
}

static void drive(conn *c)
{
    for (;;) {
        if (c->state == C_HANDSHAKE) {
            int rc = SSL_accept(c->ssl);
            if (rc != 1) {
                if (ssl_wait(c, rc) < 0)
                    goto close;
                return;
            }
            c->state = C_READ;
        }
        if (c->state == C_READ) {
            int got = try_request(c);
            if (got < 0)
                goto close;
            if (got == 0) {
                if (kl_buf_reserve(&c->in, READ_CHUNK) != 0)
                    goto close;
                size_t room = c->in.cap - c->in.len - 1;
                int n = SSL_read(c->ssl, c->in.data + c->in.len, (int)room);
                if (n <= 0) {
                    if (ssl_wait(c, n) < 0)
                        goto close;
                    return;
                }
                if (c->in.len == 0)   /* a request begins: it must arrive in time */
                    arm_timer(c, c->s->o.request_timeout_ms);
                c->in.len += (size_t)n;
                c->in.data[c->in.len] = '\0';
                continue;
            }
        }
        if (c->state == C_WRITE) {
            while (c->out_off < c->out.len) {
                size_t left = c->out.len - c->out_off;
                int n = SSL_write(c->ssl, c->out.data + c->out_off,
                                  (int)(left > (1u << 30) ? 1u << 30 : left));
                if (n <= 0) {
                    if (ssl_wait(c, n) < 0)
                        goto close;
                    return;
                }
                c->out_off += (size_t)n;
            }
            if (c->close_after)
                goto close;
            kl_buf_reset(&c->out);
            c->out_off = 0;
            c->state = C_READ;
            arm_timer(c, c->in.len ? c->s->o.request_timeout_ms : c->s->o.idle_timeout_ms);
            if (loop_fd_mod(c->s->l, c->fd, LOOP_READ) != 0)
                goto close;
        }
    }
close:
    conn_close(c);
}

static void on_accept(loop *l, int lfd, int events, void *ud)
{
    webhook_server *s = ud;
    (void)events;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        maybe_reload_cert(s);
        if (s->nconns >= s->o.max_conns) {
            kl_log(KL_LOG_WARN, "webhook server: too many connections; closing a new one", NULL);
            close(fd);
            continue;
        }
        /* Go's servers (controller-runtime's among them) set this too: a TLS
         * handshake is several small records, and Nagle's algorithm would
         * hold one back for the peer's delayed ACK (40 ms). */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        BIO *bio = NULL;
        if (!c || !(c->ssl = SSL_new(s->ctx)) || !(bio = sock_bio(fd))) {
            if (c)
                SSL_free(c->ssl);
            free(c);
            close(fd);
            ERR_clear_error();
            continue;
        }
        SSL_set_bio(c->ssl, bio, bio);   /* the SSL owns the BIO */
        c->s = s;
        c->fd = fd;
        c->state = C_HANDSHAKE;
        if (loop_fd_add(l, fd, LOOP_READ, on_io, c) != 0) {
            SSL_free(c->ssl);
            free(c);
            close(fd);
            continue;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        arm_timer(c, s->o.request_timeout_ms);
        drive(c);
    }
}

/* ---- the listening socket ---- */

static int split_addr(const char *a, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(a, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= pcap)
        return -1;
    const char *h = a;
    size_t hn = (size_t)(colon - a);
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    if (hn >= hcap)
        return -1;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    return 0;
}

/* The first address of the list that binds and listens; -1 with *e. */
static int listen_first(const struct addrinfo *ai, int wildcard, int *e)
{
    for (; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            *e = errno;
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (wildcard && ai->ai_family == AF_INET6)   /* IPv4 mapped in too */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
            return fd;
        *e = errno;
        close(fd);
    }
    return -1;
}

/* ":port" is every interface: IPv6 with IPv4 mapped in (dual-stack and
 * IPv6-only pod networks), else IPv4, as the ops server does. */
static int bind_listen(const char *addr, kl_err *err)
{
    char host[256], port[8];
    if (split_addr(addr, host, sizeof host, port, sizeof port) != 0)
        return kl_err_set(err, KL_EINVAL, "webhook address \"%s\": want host:port or :port", addr);
    int wildcard = !*host, fd = -1, e = EADDRNOTAVAIL;
    static const int families[] = {AF_INET6, AF_INET};
    for (int i = 0; i < (wildcard ? 2 : 1) && fd < 0; i++) {
        struct addrinfo hints = {.ai_family = wildcard ? families[i] : AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        if (getaddrinfo(wildcard ? NULL : host, port, &hints, &res) != 0) {  /* start-up */
            if (!wildcard)
                return kl_err_set(err, KL_EINVAL, "webhook address \"%s\": unknown host", addr);
            continue;
        }
        fd = listen_first(res, wildcard, &e);
        freeaddrinfo(res);
    }
    if (fd < 0)
        return kl_err_set(err, KL_EIO, "webhook address \"%s\": cannot listen: %s", addr,
                          strerror(e));
    return fd;
}

webhook_server *webhook_server_start(loop *l, const webhook_server_opts *o, kl_err *err)
{
    if (!o->addr || !*o->addr || !o->cert_dir || !*o->cert_dir) {
        kl_err_set(err, KL_EINVAL, "webhook server: an address and a certificate folder are "
                                   "needed (--webhook-addr, --webhook-cert-dir or --dev)");
        return NULL;
    }
    webhook_server *s = calloc(1, sizeof *s);
    if (!s || !(s->cert_dir = strdup(o->cert_dir))) {
        free(s);
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    s->l = l;
    s->fd = -1;
    s->o = *o;
    s->o.cert_dir = s->cert_dir;
    if (!s->o.max_conns)
        s->o.max_conns = 64;
    if (!s->o.max_request)
        s->o.max_request = WEBHOOK_MAX_REQUEST;
    if (!s->o.request_timeout_ms)
        s->o.request_timeout_ms = 10000;
    if (!s->o.idle_timeout_ms)
        s->o.idle_timeout_ms = 60000;
    stamp_files(s->cert_dir, &s->stamp);
    s->cert_checked_ms = loop_now_ms(l);
    if (!(s->ctx = load_ctx(s->cert_dir, err)))
        goto fail;
    if ((s->fd = bind_listen(o->addr, err)) < 0)
        goto fail;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    if (loop_fd_add(l, s->fd, LOOP_READ, on_accept, s) != 0) {
        kl_err_set(err, KL_EIO, "webhook server: cannot watch the socket");
        goto fail;
    }
    return s;
fail:
    if (s->fd >= 0)
        close(s->fd);
    SSL_CTX_free(s->ctx);
    free(s->cert_dir);
    free(s);
    return NULL;
}

int webhook_server_port(const webhook_server *s) { return s ? s->port : 0; }
size_t webhook_server_connections(const webhook_server *s) { return s ? s->nconns : 0; }
unsigned long webhook_server_requests(const webhook_server *s) { return s ? s->requests : 0; }

void webhook_server_free(webhook_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    loop_fd_del(s->l, s->fd);
    close(s->fd);
    SSL_CTX_free(s->ctx);
    free(s->cert_dir);
    free(s);
}
