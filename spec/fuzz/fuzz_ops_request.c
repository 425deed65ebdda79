/* fuzz_ops_request.c - libFuzzer target for the ops server (src/ops.c).
 *
 * Two modes, chosen by the low bit of the first byte.
 *
 * Even: the request parser (ops_request_parse). The first byte picks a size
 * limit, the rest is the request bytes; every answer is checked against the
 * parser's promises: spans inside the buffer, total_len within both the
 * input and the limit, AGAIN never at the limit, errors only from the
 * documented set, and a prefix of a complete request never parsed as
 * complete with a different length.
 *
 * Odd: the server itself, on a real loop with loopback clients, with a
 * connection limit of 4, a 4 ms request deadline, a 12 ms idle timeout and a
 * 1 ms eviction grace (short, so that deadlines pass within a run).
 * The input is a script of client actions (connect, send a slice of the
 * input, run the loop once, wait 1-4 ms so deadlines pass, close). After
 * every step the server holds at most 4 connections, and everything a client
 * receives starts as an HTTP/1.1 response. At the end, with the script's
 * clients still connected, a fresh /healthz must be answered 200 within a
 * second (neither slow clients nor a full server may keep it out), and once
 * every client has closed the server must let go of every connection.
 *
 * Uses: ops, loop, metrics. Only LLVMFuzzerTestOneInput is exported.
 */
#include "ops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- parser mode ------------------------------------------------------- */

static void inside(const char *base, size_t len, const char *p, size_t n)
{
    if (p && (p < base || n > len || (size_t)(p - base) > len - n))
        abort();
}

static void fuzz_parser(const uint8_t *data, size_t size)
{
    /* small limits reach the 413/431 paths; 0 means the default */
    size_t limit = data[0] < 16 ? 0 : (size_t)data[0] * 8;
    size_t eff = limit ? limit : OPS_MAX_REQUEST;
    size_t n = size - 1;
    /* a private copy without slack, so ASan sees reads past the end */
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    memcpy(buf, data + 1, n);
    ops_request r;
    int st = ops_request_parse(buf, n, limit, &r);
    switch (st) {
    case OPS_PARSE_DONE:
        if (r.total_len == 0 || r.total_len > n || r.total_len > eff)
            abort();
        inside(buf, n, r.method, r.method_len);
        inside(buf, n, r.query, r.query_len);
        if (r.path_len == 0)
            abort();
        uintptr_t pp = (uintptr_t)r.path, pb = (uintptr_t)buf;
        if (pp >= pb && pp < pb + n)
            inside(buf, n, r.path, r.path_len);
        else if (r.path_len != 1 || r.path[0] != '/')   /* absolute-form without a path */
            abort();
        /* exactly the request: parsing only its bytes gives the same answer */
        if (ops_request_parse(buf, r.total_len, limit, &r) != OPS_PARSE_DONE)
            abort();
        break;
    case OPS_PARSE_AGAIN:
        if (n >= eff)
            abort();
        break;
    case 400: case 413: case 431: case 501: case 505:
        break;
    default:
        abort();
    }
    free(buf);
}

/* ---- server mode ------------------------------------------------------- */

#define MAX_CONNS 4
#define MAX_CLIENTS 8

static loop *g_loop;
static ops_server *g_srv;
static metrics_registry *g_reg;
static int g_port;

static int server_once(void)
{
    if (g_srv)
        return 0;
    kl_err err;
    g_loop = loop_new(&err);
    g_reg = metrics_registry_new();
    ops_opts o = {.addr = "127.0.0.1:0", .registry = g_reg, .max_conns = MAX_CONNS,
                  .idle_timeout_ms = 12, .request_timeout_ms = 4, .evict_grace_ms = 1};
    if (!g_loop || !g_reg || ops_start(g_loop, &o, &g_srv, &err) != 0 || !g_srv)
        abort();
    g_port = ops_port(g_srv);
    return 0;
}

static int connect_nb(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct client {
    int fd;
    size_t got;       /* bytes received so far */
    char head[9];     /* the first bytes received */
} client;

/* Read what is there; the first bytes must open an HTTP/1.1 response. */
static void client_read(client *c)
{
    char buf[4096];
    ssize_t n;
    while (c->fd >= 0 && (n = recv(c->fd, buf, sizeof buf, 0)) > 0) {
        for (ssize_t i = 0; i < n && c->got < 9; i++)
            c->head[c->got++] = buf[i];
        if (c->got >= 9 && memcmp(c->head, "HTTP/1.1 ", 9) != 0)
            abort();
    }
}

static void check_limit(void)
{
    if (ops_connections(g_srv) > MAX_CONNS)
        abort();
}

static void spin(int ms)
{
    uint64_t end = loop_time_ms() + (uint64_t)ms;
    do {
        loop_run_once(g_loop, 0);
        check_limit();
    } while (loop_time_ms() < end);
}

static void fuzz_server(const uint8_t *data, size_t size)
{
    client cl[MAX_CLIENTS];
    int n = 0;
    server_once();
    size_t i = 1;
    while (i < size) {
        uint8_t op = data[i++];
        client *c = n ? &cl[(op >> 3) % n] : NULL;
        switch (op & 7) {
        case 0:
        case 1:
            if (n < MAX_CLIENTS && (cl[n].fd = connect_nb()) >= 0) {
                cl[n].got = 0;
                n++;
            }
            break;
        case 2:
        case 3: { /* send the next 1..32 bytes of the input */
            size_t k = i < size ? (size_t)(data[i++] & 31) + 1 : 0;
            if (k > size - i)
                k = size - i;
            if (c && c->fd >= 0 && k)
                (void)send(c->fd, data + i, k, MSG_NOSIGNAL);
            i += k;
            break;
        }
        case 4:
            loop_run_once(g_loop, 0);
            break;
        case 5: /* let time pass: deadlines fire */
            spin(1 + (op >> 3) % 4);
            break;
        case 6:
            if (c && c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
            }
            break;
        default:
            if (c)
                client_read(c);
            break;
        }
        check_limit();
    }
    /* liveness: a probe gets through, whatever the script's clients do */
    int pfd = connect_nb();
    if (pfd < 0)
        abort();
    const char req[] = "GET /healthz HTTP/1.1\r\n\r\n";
    char head[12];
    size_t sent = 0, got = 0;
    uint64_t end = loop_time_ms() + 1000;
    while (got < sizeof head && loop_time_ms() < end) {
        if (sent < sizeof req - 1) {
            ssize_t w = send(pfd, req + sent, sizeof req - 1 - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        loop_run_once(g_loop, 0);
        check_limit();
        for (int j = 0; j < n; j++)
            client_read(&cl[j]);
        char buf[64];
        ssize_t r = recv(pfd, buf, sizeof buf, 0);
        for (ssize_t j = 0; j < r && got < sizeof head; j++)
            head[got++] = buf[j];
    }
    if (got < sizeof head || memcmp(head, "HTTP/1.1 200", sizeof head) != 0)
        abort(); /* /healthz was kept out */
    close(pfd);
    for (int j = 0; j < n; j++)
        if (cl[j].fd >= 0)
            close(cl[j].fd);
    /* every connection is let go once its client has gone */
    end = loop_time_ms() + 2000;
    while (ops_connections(g_srv) > 0 && loop_time_ms() < end)
        loop_run_once(g_loop, 0);
    if (ops_connections(g_srv) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_server(data, size);
    else
        fuzz_parser(data, size);
    return 0;
}
