/* fakeapi.c - a small HTTP/1.1 server on the loop for `klua test` (see fakeapi.h).
 *
 * Provides: fakeapi_*. Uses: loop, buf, err, util (reason phrases), sockets.
 *
 * Only what libcurl sends to a local server is understood: one request at a
 * time per connection, Content-Length bodies, Expect: 100-continue. Output
 * is buffered per connection and written as the socket accepts it.
 */
#include "fakeapi.h"

#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (64 * 1024 * 1024)

typedef struct conn {
    struct conn *next;
    fakeapi *s;
    int fd;
    uint64_t id;
    kl_buf in, out;
    int streaming;      /* the answer is a chunked stream that never ends */
    int continued;      /* 100 Continue already sent for the request in `in` */
    int want_write;
} conn;

struct fakeapi {
    loop *l;
    int fd;
    int port;
    fakeapi_handler h;
    conn *conns;
    uint64_t next_id;
    unsigned long activity;
};

static void conn_close(conn *c, int notify)
{
    fakeapi *s = c->s;
    for (conn **p = &s->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    loop_fd_del(s->l, c->fd);
    close(c->fd);
    if (notify && c->streaming && s->h.closed)
        s->h.closed(s->h.ud, c->id);
    kl_buf_free(&c->in);
    kl_buf_free(&c->out);
    free(c);
}

/* Write what the socket takes; watch for writability while some is left.
 * Returns -1 when the connection failed (and was closed). */
static int conn_flush(conn *c)
{
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(c, 1);
            return -1;
        }
        kl_buf_consume(&c->out, (size_t)n);
    }
    int want = c->out.len > 0;
    if (want != c->want_write) {
        c->want_write = want;
        loop_fd_mod(c->s->l, c->fd, LOOP_READ | (want ? LOOP_WRITE : 0));
    }
    return 0;
}

/* The value of header name in the head [p, end), copied into out. */
static int header_value(const char *head, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= outsz)
                n = outsz - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
        p = strstr(p, "\r\n");
    }
    out[0] = '\0';
    return 0;
}

static void respond(conn *c, const fakeapi_request *req, fakeapi_response *r)
{
    int status = r->status ? r->status : 500;
    kl_buf *o = &c->out;
    kl_buf_printf(o, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, kl_http_reason(status),
                  r->content_type ? r->content_type : "application/json");
    if (r->headers.len)
        kl_buf_append(o, r->headers.data, r->headers.len);
    if (r->stream) {
        kl_buf_puts(o, "Transfer-Encoding: chunked\r\n\r\n");
        c->streaming = 1;
        if (r->body.len) { /* the first events, as one chunk */
            kl_buf_printf(o, "%zx\r\n", r->body.len);
            kl_buf_append(o, r->body.data, r->body.len);
            kl_buf_puts(o, "\r\n");
        }
    } else {
        kl_buf_printf(o, "Content-Length: %zu\r\n\r\n", r->body.len);
        if (r->body.len && strcmp(req->method, "HEAD") != 0)
            kl_buf_append(o, r->body.data, r->body.len);
    }
}

/* Parse and answer every complete request in c->in. Returns -1 when the
 * connection was closed. */
static int conn_serve(conn *c)
{
    fakeapi *s = c->s;
    while (!c->streaming && c->in.len > 0) {
        char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in.len > MAX_HEAD) {
                conn_close(c, 1);
                return -1;
            }
            return 0;
        }
        size_t head_len = (size_t)(end - c->in.data) + 4;
        char *head = strndup(c->in.data, head_len);
        if (!head) {
            conn_close(c, 1);
            return -1;
        }
        char clen[32], expect[32], host[256], ctype[256];
        header_value(head, "Content-Length", clen, sizeof clen);
        header_value(head, "Expect", expect, sizeof expect);
        header_value(head, "Host", host, sizeof host);
        header_value(head, "Content-Type", ctype, sizeof ctype);
        char *cend = NULL;
        unsigned long long blen = clen[0] ? strtoull(clen, &cend, 10) : 0;
        if ((clen[0] && *cend) || blen > MAX_BODY) {
            free(head);
            conn_close(c, 1);
            return -1;
        }
        if (c->in.len < head_len + blen) {
            if (!c->continued && !strcasecmp(expect, "100-continue")) {
                c->continued = 1;
                kl_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            }
            free(head);
            return conn_flush(c);
        }
        /* "METHOD TARGET HTTP/1.1" */
        char *sp1 = strchr(head, ' ');
        char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        char *eol = strstr(head, "\r\n");
        if (!sp1 || !sp2 || sp2 > eol) {
            free(head);
            conn_close(c, 1);
            return -1;
        }
        *sp1 = '\0';
        *sp2 = '\0';
        fakeapi_request req = {head, sp1 + 1, host, ctype, eol + 2, c->in.data + head_len,
                               (size_t)blen};
        /* The handler may need the body NUL-terminated. */
        char *body = strndup(req.body, req.body_len);
        if (!body) {
            free(head);
            conn_close(c, 1);
            return -1;
        }
        req.body = body;
        fakeapi_response r = {0};
        s->activity++;
        s->h.handle(s->h.ud, &req, c->id, &r);
        respond(c, &req, &r);
        kl_buf_free(&r.headers);
        kl_buf_free(&r.body);
        free(body);
        free(head);
        kl_buf_consume(&c->in, head_len + (size_t)blen);
        c->continued = 0;
        if (kl_buf_failed(&c->out)) {
            conn_close(c, 1);
            return -1;
        }
        if (conn_flush(c) != 0)
            return -1;
    }
    return 0;
}

static void on_conn(loop *l, int fd, int events, void *ud)
{
    conn *c = ud;
    if (events & LOOP_WRITE && conn_flush(c) != 0)
        return;
    if (!(events & (LOOP_READ | LOOP_ERROR)))
        return;
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(c, 1);
            return;
        }
        if (c->streaming)
            continue; /* a watch client sends nothing more that matters */
        if (kl_buf_append(&c->in, buf, (size_t)n) != 0) {
            conn_close(c, 1);
            return;
        }
    }
    conn_serve(c);
}

static void on_accept(loop *l, int lfd, int events, void *ud)
{
    fakeapi *s = ud;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        c->id = ++s->next_id;
        if (loop_fd_add(l, fd, LOOP_READ, on_conn, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
    }
}

fakeapi *fakeapi_start(loop *l, const fakeapi_handler *h, kl_err *err)
{
    fakeapi *s = calloc(1, sizeof *s);
    if (!s) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    s->l = l;
    s->h = *h;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->fd, 64) != 0 || getsockname(s->fd, (struct sockaddr *)&a, &al) != 0) {
        kl_err_set(err, KL_EIO, "fake API server: cannot listen on 127.0.0.1: %s",
                   strerror(errno));
        goto fail;
    }
    s->port = ntohs(a.sin_port);
    if (loop_fd_add(l, s->fd, LOOP_READ, on_accept, s) != 0) {
        kl_err_set(err, KL_EIO, "fake API server: cannot watch the listening socket");
        goto fail;
    }
    return s;
fail:
    if (s->fd >= 0)
        close(s->fd);
    free(s);
    return NULL;
}

int fakeapi_port(const fakeapi *s) { return s->port; }

unsigned long fakeapi_activity(const fakeapi *s) { return s->activity; }

int fakeapi_stream_send(fakeapi *s, uint64_t id, const char *data, size_t len)
{
    for (conn *c = s->conns; c; c = c->next) {
        if (c->id != id || !c->streaming)
            continue;
        kl_buf_printf(&c->out, "%zx\r\n", len);
        kl_buf_append(&c->out, data, len);
        kl_buf_puts(&c->out, "\r\n");
        s->activity++;
        if (kl_buf_failed(&c->out)) {
            conn_close(c, 1);
            return -1;
        }
        return conn_flush(c);
    }
    return -1;
}

void fakeapi_free(fakeapi *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns, 0);
    loop_fd_del(s->l, s->fd);
    close(s->fd);
    free(s);
}
