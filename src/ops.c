/* ops.c - see ops.h.
 *
 * Provides: the request parser and the ops server. Uses: loop (fd watches,
 * timers), metrics (rendering), buf, err, log.
 *
 * A connection moves through three states: reading (parse what came in,
 * answer one request at a time), writing (an answer is queued; reading
 * stops, which is the backpressure on pipelining clients) and lingering
 * (after an answer that ends the connection: our side is shut down and
 * input is drained for a moment, so that a client still sending its
 * oversized request reads our 4xx instead of a reset).
 *
 * Slow clients: a request has a deadline from its start (the accept, or
 * its first byte on a kept-alive connection) until its answer is sent,
 * which reading does not move; silence for the idle timeout also ends a
 * connection. At the connection limit a newcomer makes room: a lingering
 * connection goes first, then the longest-idle keep-alive one, then the
 * one whose request has taken longest (past a short grace, so a burst of
 * fresh clients is queued rather than cut). So a few dozen clients that
 * trickle bytes cannot hold every slot and keep /healthz from answering.
 */
#include "ops.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINGER_MS 1000
#define ACCEPT_RETRY_MS 100
#define ACCEPT_BATCH 16      /* accepts per wake-up: let the accepted be read first */

/* ---- the request parser ------------------------------------------------ */

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* One line of buf[pos..end): sets *line_end (before CR LF / LF) and
 * returns the offset after the LF, or 0 when there is no LF yet. A CR
 * anywhere else is malformed: *bad is set. */
static size_t next_line(const char *buf, size_t pos, size_t end, size_t *line_end, int *bad)
{
    const char *lf = memchr(buf + pos, '\n', end - pos);
    if (!lf)
        return 0;
    size_t e = (size_t)(lf - buf);
    *line_end = e > pos && buf[e - 1] == '\r' ? e - 1 : e;
    if (memchr(buf + pos, '\r', *line_end - pos))
        *bad = 1;
    return e + 1;
}

static int ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* Connection: a comma-separated token list; "close" wins over "keep-alive". */
static void parse_connection(const char *v, size_t n, int *close_seen, int *keep_seen)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (ieq(v + s, i - s, "close"))
            *close_seen = 1;
        else if (ieq(v + s, i - s, "keep-alive"))
            *keep_seen = 1;
        while (i < n && v[i] != ',')
            i++;
    }
}

/* The request line "METHOD SP target SP HTTP/1.x". Returns 0 or a status. */
static int parse_request_line(const char *b, size_t n, ops_request *req)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)b[i]))
        i++;
    if (i == 0 || i > 32 || i >= n || b[i] != ' ')
        return 400;
    req->method = b;
    req->method_len = i;
    size_t ts = ++i;
    while (i < n && (unsigned char)b[i] > 0x20 && (unsigned char)b[i] < 0x7f)
        i++;
    if (i == ts || i >= n || b[i] != ' ')
        return 400;
    const char *t = b + ts;
    size_t tn = i - ts;
    i++;
    if (n - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 || b[i + 6] != '.' ||
        b[i + 5] < '0' || b[i + 5] > '9' || b[i + 7] < '0' || b[i + 7] > '9')
        return 400;
    if (b[i + 5] != '1')
        return 505;
    req->minor = b[i + 7] - '0';
    /* absolute-form (a proxy-style request): keep only its path */
    if (tn > 7 && (strncasecmp(t, "http://", 7) == 0 ||
                   (tn > 8 && strncasecmp(t, "https://", 8) == 0))) {
        const char *host = memchr(t, '/', tn) + 2;
        const char *p = memchr(host, '/', tn - (size_t)(host - t));
        if (!p) {
            const char *q = memchr(host, '?', tn - (size_t)(host - t));
            req->path = "/";
            req->path_len = 1;
            if (q) {
                req->query = q + 1;
                req->query_len = tn - (size_t)(q + 1 - t);
            }
            return 0;
        }
        tn -= (size_t)(p - t);
        t = p;
    } else if (t[0] != '/' && !(tn == 1 && t[0] == '*')) {
        return 400;
    }
    const char *q = memchr(t, '?', tn);
    req->path = t;
    req->path_len = q ? (size_t)(q - t) : tn;
    if (q) {
        req->query = q + 1;
        req->query_len = tn - req->path_len - 1;
    }
    return 0;
}

/* "Content-Length: digits": 0 or a status; a repeat must agree. */
static int parse_content_length(const char *v, size_t n, size_t limit, int *seen, size_t *out)
{
    if (n == 0)
        return 400;
    size_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 400;
        if (x > limit)
            continue;   /* keep scanning for junk; the value is too big anyway */
        x = x * 10 + (size_t)(v[i] - '0');
    }
    if (*seen && *out != x)
        return 400;
    *seen = 1;
    *out = x;
    return x > limit ? 413 : 0;
}

int ops_request_parse(const char *buf, size_t len, size_t limit, ops_request *req)
{
    if (limit == 0)
        limit = OPS_MAX_REQUEST;
    memset(req, 0, sizeof *req);
    size_t end = len < limit ? len : limit;   /* the head must fit in the limit */
    size_t pos = 0, le = 0;
    int bad = 0;
    /* RFC 9112 2.2: ignore empty lines before the request line */
    while (pos < end && (buf[pos] == '\n' || (buf[pos] == '\r' && pos + 1 < end && buf[pos + 1] == '\n')))
        pos += buf[pos] == '\r' ? 2 : 1;
    size_t next = next_line(buf, pos, end, &le, &bad);
    if (!next)
        return len >= limit ? 431 : OPS_PARSE_AGAIN;
    if (bad)
        return 400;
    int rc = parse_request_line(buf + pos, le - pos, req);
    if (rc)
        return rc;
    int close_seen = 0, keep_seen = 0, cl_seen = 0, nheaders = 0;
    size_t cl = 0;
    for (;;) {
        pos = next;
        next = next_line(buf, pos, end, &le, &bad);
        if (!next)
            return len >= limit ? 431 : OPS_PARSE_AGAIN;
        if (bad)
            return 400;
        if (le == pos)
            break;   /* the empty line that ends the head */
        if (++nheaders > OPS_MAX_HEADERS)
            return 431;
        const char *h = buf + pos;
        size_t hn = le - pos, i = 0;
        while (i < hn && is_tchar((unsigned char)h[i]))
            i++;
        /* no name, obsolete line folding, or space before the colon */
        if (i == 0 || i >= hn || h[i] != ':')
            return 400;
        size_t vs = i + 1, ve = hn;
        while (vs < ve && (h[vs] == ' ' || h[vs] == '\t'))
            vs++;
        while (ve > vs && (h[ve - 1] == ' ' || h[ve - 1] == '\t'))
            ve--;
        for (size_t k = vs; k < ve; k++)
            if (((unsigned char)h[k] < 0x20 && h[k] != '\t') || h[k] == 0x7f)
                return 400;
        if (ieq(h, i, "content-length")) {
            if ((rc = parse_content_length(h + vs, ve - vs, limit, &cl_seen, &cl)))
                return rc;
        } else if (ieq(h, i, "transfer-encoding")) {
            return 501;
        } else if (ieq(h, i, "connection")) {
            parse_connection(h + vs, ve - vs, &close_seen, &keep_seen);
        }
    }
    req->content_length = cl;
    if (cl > limit - next)
        return 413;
    req->total_len = next + cl;
    if (len < req->total_len)
        return OPS_PARSE_AGAIN;
    req->keep_alive = !close_seen && (req->minor >= 1 || keep_seen);
    return OPS_PARSE_DONE;
}

/* ---- the server -------------------------------------------------------- */

typedef struct ops_conn ops_conn;

struct ops_conn {
    ops_server *s;
    int fd;
    kl_buf in, out;          /* owned */
    size_t out_off;          /* bytes of out already sent */
    int closing;             /* end the connection once out is sent */
    int lingering;           /* our side shut down; draining input */
    loop_timer_id timer;     /* idle, request or linger deadline */
    uint64_t last_active;    /* loop ms, to pick the idlest for eviction */
    uint64_t req_start;      /* loop ms when the current request began; 0 when idle */
    unsigned long served;    /* requests answered: only a keep-alive connection
                              * (served > 0, nothing pending) counts as idle */
    ops_conn *prev, *next;
};

struct ops_server {
    loop *l;
    int lfd;
    int port;
    int paused;              /* listening fd not watched (full, or EMFILE) */
    int freeing;             /* ops_free is closing everything */
    loop_timer_id retry;     /* accept failed (EMFILE...): try again later */
    loop_timer_id full;      /* full of fresh connections: look again after the grace */
    metrics_registry *registry;
    ops_ready_fn ready, live;
    void *ready_ud, *live_ud;
    size_t max_conns, nconns;
    unsigned idle_ms, request_ms, grace_ms;
    ops_conn *conns;         /* owned, doubly linked */
};

static void on_conn(loop *l, int fd, int events, void *ud);

static void resume_accept(ops_server *s)
{
    if (s->paused && loop_fd_mod(s->l, s->lfd, LOOP_READ) == 0)
        s->paused = 0;
}

static void pause_accept(ops_server *s)
{
    if (!s->paused && loop_fd_mod(s->l, s->lfd, 0) == 0)
        s->paused = 1;
}

static void conn_close(ops_conn *c)
{
    ops_server *s = c->s;
    loop_timer_cancel(s->l, c->timer);
    loop_fd_del(s->l, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    kl_buf_free(&c->in);
    kl_buf_free(&c->out);
    free(c);
    if (!s->retry && !s->freeing)
        resume_accept(s);
}

static void on_conn_timer(loop *l, void *ud)
{
    ops_conn *c = ud;
    c->timer = 0;
    conn_close(c);
}

static void set_timer(ops_conn *c, uint64_t ms)
{
    loop_timer_cancel(c->s->l, c->timer);
    c->timer = loop_timer_add(c->s->l, ms, on_conn_timer, c);
    c->last_active = loop_now_ms(c->s->l);
}

/* Arm c's deadline after activity: idle_ms of silence at most, and, while
 * a request is in progress, never past its deadline (req_start +
 * request_ms), which activity does not move. */
static void arm(ops_conn *c)
{
    uint64_t now = loop_now_ms(c->s->l), ms = c->s->idle_ms;
    if (c->req_start) {
        uint64_t end = c->req_start + c->s->request_ms;
        uint64_t left = end > now ? end - now : 0;
        if (left < ms)
            ms = left;
    }
    set_timer(c, ms);
}

/* Queue a whole response on c->out. */
static int respond(ops_conn *c, int status, const char *ctype, const char *body, size_t blen,
                   int head_only, int keep_alive, int http10)
{
    int rc = kl_buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                           "Content-Length: %zu\r\nX-Content-Type-Options: nosniff\r\n",
                           status, kl_http_reason(status), ctype, blen);
    if (status == 405)
        rc |= kl_buf_puts(&c->out, "Allow: GET, HEAD\r\n");
    if (!keep_alive)
        rc |= kl_buf_puts(&c->out, "Connection: close\r\n");
    else if (http10)
        rc |= kl_buf_puts(&c->out, "Connection: keep-alive\r\n");
    rc |= kl_buf_puts(&c->out, "\r\n");
    if (!head_only)
        rc |= kl_buf_append(&c->out, body, blen);
    if (!keep_alive)
        c->closing = 1;
    return rc ? -1 : 0;
}

#define TEXT "text/plain; charset=utf-8"

static int respond_text(ops_conn *c, int status, const char *body, const ops_request *r)
{
    int head = r && ieq(r->method, r->method_len, "HEAD");
    int keep = r ? r->keep_alive : 0;
    return respond(c, status, TEXT, body, strlen(body), head, keep, r && r->minor == 0);
}

static int path_is(const ops_request *r, const char *p)
{
    return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

/* Answer one parsed request. 0, or -1 when out of memory. */
static int handle(ops_conn *c, const ops_request *r)
{
    ops_server *s = c->s;
    int head = ieq(r->method, r->method_len, "HEAD");
    if (!head && !ieq(r->method, r->method_len, "GET"))
        return respond_text(c, 405, "method not allowed\n", r);
    int live = path_is(r, "/healthz");
    if (live || path_is(r, "/readyz")) {
        ops_ready_fn check = live ? s->live : s->ready;
        kl_buf why = KL_BUF_INIT;
        if (kl_buf_puts(&why, live ? "unhealthy\n" : "not ready\n") != 0)
            return -1;
        size_t intro = why.len;
        int rc;
        if (!check || check(live ? s->live_ud : s->ready_ud, &why)) {
            rc = respond_text(c, 200, "ok", r);
        } else {
            rc = why.data[why.len - 1] != '\n' && why.len > intro ? kl_buf_putc(&why, '\n') : 0;
            if (rc == 0)
                rc = respond(c, 503, TEXT, why.data, why.len, head, r->keep_alive, r->minor == 0);
        }
        kl_buf_free(&why);
        return rc;
    }
    if (path_is(r, "/metrics")) {
        kl_buf body = KL_BUF_INIT;
        metrics_registry *reg = s->registry ? s->registry : metrics_default();
        int rc;
        if (metrics_render(reg, &body) != 0)
            rc = respond_text(c, 500, "cannot render metrics: out of memory\n", r);
        else
            rc = respond(c, 200, METRICS_CONTENT_TYPE, body.data ? body.data : "", body.len,
                         head, r->keep_alive, r->minor == 0);
        kl_buf_free(&body);
        return rc;
    }
    return respond_text(c, 404, "404 page not found\n", r);
}

/* Parse and answer requests while nothing is waiting to be sent. */
static int process(ops_conn *c)
{
    while (!c->closing && c->out.len == 0 && c->in.len > 0) {
        ops_request r;
        int st = ops_request_parse(c->in.data, c->in.len, OPS_MAX_REQUEST, &r);
        if (st == OPS_PARSE_AGAIN)
            break;
        if (st != OPS_PARSE_DONE) {
            char msg[64];
            snprintf(msg, sizeof msg, "%s\n", kl_http_reason(st));
            kl_buf_reset(&c->in);
            return respond_text(c, st, msg, NULL);
        }
        int rc = handle(c, &r);
        c->served++;
        kl_buf_consume(&c->in, r.total_len);
        if (rc)
            return -1;
    }
    return 0;
}

/* Shut our side and drain the client's input for a moment before closing. */
static void start_linger(ops_conn *c)
{
    shutdown(c->fd, SHUT_WR);
    c->lingering = 1;
    kl_buf_free(&c->in);
    if (loop_fd_mod(c->s->l, c->fd, LOOP_READ) != 0) {
        conn_close(c);
        return;
    }
    set_timer(c, LINGER_MS);
}

/* Send what is queued; then go on reading, or end the connection.
 * May free c. */
static void flush(ops_conn *c)
{
    for (;;) {
        while (c->out_off < c->out.len) {
            ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                             MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (loop_fd_mod(c->s->l, c->fd, LOOP_WRITE) != 0)
                    conn_close(c);
                else
                    arm(c);
                return;
            }
            if (n <= 0) {
                conn_close(c);
                return;
            }
            c->out_off += (size_t)n;
        }
        kl_buf_reset(&c->out);
        c->out_off = 0;
        /* an answer is out: the next request, if begun, starts its clock now */
        c->req_start = c->in.len > 0 ? loop_now_ms(c->s->l) : 0;
        if (c->closing) {
            start_linger(c);
            return;
        }
        /* pipelined requests already buffered */
        if (process(c) != 0) {
            conn_close(c);
            return;
        }
        if (c->out.len == 0)
            break;
    }
    if (loop_fd_mod(c->s->l, c->fd, LOOP_READ) != 0) {
        conn_close(c);
        return;
    }
    arm(c);
    /* an idle keep-alive connection can now make room for a waiting one */
    if (c->in.len == 0 && !c->s->retry)
        resume_accept(c->s);
}

static void on_readable(ops_conn *c)
{
    int eof = 0;
    while (c->in.len < OPS_MAX_REQUEST) {
        size_t room = OPS_MAX_REQUEST - c->in.len;
        if (kl_buf_reserve(&c->in, room) != 0) {
            conn_close(c);
            return;
        }
        ssize_t n = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            conn_close(c);
            return;
        }
        if (n == 0) {
            eof = 1;
            break;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        if (!c->req_start)
            c->req_start = loop_now_ms(c->s->l); /* the first byte of a request */
    }
    if (process(c) != 0) {
        conn_close(c);
        return;
    }
    if (eof) {
        /* the client sent all it will: answer what was complete, then end */
        if (c->out.len == 0) {
            conn_close(c);
            return;
        }
        c->closing = 1;
    }
    if (c->out.len > 0)
        flush(c);
    else
        arm(c);
}

static void on_conn(loop *l, int fd, int events, void *ud)
{
    ops_conn *c = ud;
    if (c->lingering) {
        char sink[4096];
        ssize_t n;
        while ((n = recv(fd, sink, sizeof sink, 0)) > 0)
            ;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_close(c);
        return;
    }
    if (events & LOOP_WRITE) {
        flush(c);
        return;
    }
    if (events & LOOP_READ) {
        on_readable(c);
        return;
    }
    if (events & LOOP_ERROR)
        conn_close(c);
}

/* At the limit: close one connection to make room, if one may go (see
 * the top of the file). -1 when none may. */
static int evict(ops_server *s)
{
    ops_conn *linger = NULL, *idle = NULL, *slow = NULL;
    uint64_t now = loop_now_ms(s->l);
    for (ops_conn *c = s->conns; c; c = c->next) {
        if (c->lingering)
            linger = c;
        else if (!c->req_start && c->out.len == 0)
            idle = !idle || c->last_active < idle->last_active ? c : idle;
        else if (c->req_start + s->grace_ms <= now)
            slow = !slow || c->req_start < slow->req_start ? c : slow;
    }
    ops_conn *victim = linger ? linger : idle ? idle : slow;
    if (!victim)
        return -1;
    conn_close(victim);
    return 0;
}

static void on_retry(loop *l, void *ud)
{
    ops_server *s = ud;
    s->retry = 0;
    resume_accept(s);
}

static void on_full_timer(loop *l, void *ud)
{
    ops_server *s = ud;
    s->full = 0;
    if (!s->retry)
        resume_accept(s);
}

static void on_accept(loop *l, int lfd, int events, void *ud)
{
    ops_server *s = ud;
    for (int batch = 0; batch < ACCEPT_BATCH; batch++) {
        if (s->nconns >= s->max_conns && evict(s) != 0) {
            /* resumed when a connection ends, or once the grace has made
             * one of them evictable */
            pause_accept(s);
            if (!s->full)
                s->full = loop_timer_add(l, s->grace_ms, on_full_timer, s);
            return;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* level-triggered: without a pause this would spin */
                kl_log(KL_LOG_WARN, "ops server cannot accept a connection", "error",
                       strerror(errno), NULL);
                pause_accept(s);
                if (!s->retry)
                    s->retry = loop_timer_add(l, ACCEPT_RETRY_MS, on_retry, s);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ops_conn *c = calloc(1, sizeof *c);
        if (!c || loop_fd_add(l, fd, LOOP_READ, on_conn, c) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        c->req_start = loop_now_ms(l); /* a new connection owes its first request */
        arm(c);
    }
}

/* "host:port", ":port", "[v6]:port" -> host (may be "") and port. */
static int split_addr(const char *addr, char *host, size_t hostcap, char *port, size_t portcap)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon[1] == '\0')
        return -1;
    const char *h = addr;
    size_t hn = (size_t)(colon - addr);
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    } else if (memchr(h, ':', hn)) {
        return -1;   /* a bare IPv6 address needs brackets */
    }
    size_t pn = strlen(colon + 1);
    if (hn >= hostcap || pn >= portcap)
        return -1;
    for (size_t i = 0; i < pn; i++)
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            return -1;
    long p = strtol(colon + 1, NULL, 10);   /* all digits, checked above */
    if (pn > 5 || p < 0 || p > 65535)
        return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    memcpy(port, colon + 1, pn + 1);
    return 0;
}

static int listen_on(const struct sockaddr *sa, socklen_t salen, int family, int *out_errno)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *out_errno = errno;
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)   /* ":port" serves IPv4 too, through mapped addresses */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, sa, salen) != 0 || listen(fd, 128) != 0) {
        *out_errno = errno;
        close(fd);
        return -1;
    }
    return fd;
}

/* Bind host:port; "" host = every interface (IPv6 dual-stack, else IPv4). */
static int bind_addr(const char *host, const char *port, int *out_errno)
{
    int fd = -1;
    if (!*host) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT,
                                  .sin6_port = htons((uint16_t)strtol(port, NULL, 10))};
        fd = listen_on((struct sockaddr *)&a6, sizeof a6, AF_INET6, out_errno);
        if (fd >= 0 || (*out_errno != EAFNOSUPPORT && *out_errno != EADDRNOTAVAIL))
            return fd;
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY),
                                 .sin_port = a6.sin6_port};
        return listen_on((struct sockaddr *)&a4, sizeof a4, AF_INET, out_errno);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);   /* start-up only: may block */
    if (gai != 0) {
        *out_errno = 0;
        return -2;
    }
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = listen_on(ai->ai_addr, ai->ai_addrlen, ai->ai_family, out_errno);
    freeaddrinfo(res);
    return fd;
}

int ops_start(loop *l, const ops_opts *o, ops_server **out, kl_err *err)
{
    *out = NULL;
    const char *addr = o->addr;
    if (!addr || !*addr || strcmp(addr, "0") == 0)
        return 0;
    char host[256], port[8];
    if (split_addr(addr, host, sizeof host, port, sizeof port) != 0)
        return kl_err_set(err, KL_EINVAL,
                          "metrics address \"%s\": want host:port, :port or 0 (disabled)", addr);
    int e = 0;
    int fd = bind_addr(host, port, &e);
    if (fd == -2)
        return kl_err_set(err, KL_EINVAL, "metrics address \"%s\": unknown host %s", addr, host);
    if (fd < 0)
        return kl_err_set(err, KL_EIO, "metrics address \"%s\": cannot listen: %s", addr,
                          strerror(e));
    ops_server *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return kl_err_set(err, KL_ENOMEM, "metrics address \"%s\": out of memory", addr);
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    s->l = l;
    s->lfd = fd;
    s->registry = o->registry;
    s->ready = o->ready;
    s->ready_ud = o->ready_ud;
    s->live = o->live;
    s->live_ud = o->live_ud;
    s->max_conns = o->max_conns ? o->max_conns : 64;
    s->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : 30000;
    s->request_ms = o->request_timeout_ms ? o->request_timeout_ms : 10000;
    /* a request younger than this is not "slow" yet: a burst of fresh
     * clients waits for room instead of cutting each other off */
    s->grace_ms = o->evict_grace_ms             ? o->evict_grace_ms
                  : s->request_ms / 10 < 100  ? 100
                  : s->request_ms / 10 > 1000 ? 1000
                                              : s->request_ms / 10;
    if (loop_fd_add(l, fd, LOOP_READ, on_accept, s) != 0) {
        close(fd);
        free(s);
        return kl_err_set(err, KL_EIO, "metrics address \"%s\": cannot watch the socket", addr);
    }
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%d", s->port);
    kl_log(KL_LOG_INFO, "serving metrics and health probes", "addr", addr, "port", pbuf, NULL);
    *out = s;
    return 0;
}

int ops_port(const ops_server *s)
{
    return s ? s->port : 0;
}

void ops_set_ready(ops_server *s, ops_ready_fn ready, void *ud)
{
    if (!s)
        return;
    s->ready = ready;
    s->ready_ud = ud;
}

size_t ops_connections(const ops_server *s)
{
    return s ? s->nconns : 0;
}

void ops_free(ops_server *s)
{
    if (!s)
        return;
    s->freeing = 1;
    loop_timer_cancel(s->l, s->retry);
    loop_timer_cancel(s->l, s->full);
    while (s->conns)
        conn_close(s->conns);
    loop_fd_del(s->l, s->lfd);
    close(s->lfd);
    free(s);
}
