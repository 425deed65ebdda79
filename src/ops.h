/* ops.h - the operations HTTP server: /metrics, /healthz, /readyz.
 *
 * Provides: a small HTTP/1.1 server on the event loop. It never blocks:
 * non-blocking accept and I/O, a per-connection read buffer bounded at
 * OPS_MAX_REQUEST bytes (a bigger request head gets 431, a bigger body
 * 413, then the connection is closed), a request deadline that reading
 * does not extend (from the accept, or from the first byte of a later
 * request, until the answer is sent), an idle timeout, a bounded number of
 * connections (when full, a newcomer makes room: the oldest idle
 * keep-alive connection is closed, else the one whose request has taken
 * longest, once that is past a short grace; else accepting pauses until
 * one ends), and keep-alive with pipelined requests answered in order.
 * Clients that trickle bytes (slowloris) therefore hold a slot for at most
 * the request timeout, and lose it sooner to a newcomer such as a probe.
 *   GET /metrics   the registry in Prometheus text format 0.0.4
 *   GET /healthz   200 "ok" while the liveness callback says so (health.h:
 *                  the loop's heartbeat, informers able to list and watch),
 *                  else 503 with its reasons
 *   GET /readyz    200 "ok" once the readiness callback says so, else 503
 *                  with the callback's reasons (the informers not synced)
 * HEAD works on each; other methods get 405, other paths 404.
 *
 * The request parser is exposed (ops_request_parse) so that it can be
 * fuzzed and tested on bytes directly.
 * Uses: loop, metrics, buf, err, log.
 */
#ifndef KLUA_OPS_H
#define KLUA_OPS_H

#include "buf.h"
#include "err.h"
#include "loop.h"
#include "metrics.h"

#include <stddef.h>

#define OPS_MAX_REQUEST 8192   /* bytes: request line + headers + body */
#define OPS_MAX_HEADERS 64

/* ---- the request parser ------------------------------------------------ */

/* A parsed request head. The pointers point into the buffer that was
 * parsed and are valid as long as it is. */
typedef struct ops_request {
    const char *method; size_t method_len;
    const char *path; size_t path_len;    /* target up to '?' (absolute-form: its path) */
    const char *query; size_t query_len;  /* after '?', or NULL */
    int minor;                            /* HTTP/1.minor */
    int keep_alive;                       /* per version and Connection header */
    size_t content_length;                /* body bytes that follow the head */
    size_t total_len;                     /* bytes of the whole request: head + body */
} ops_request;

enum { OPS_PARSE_DONE = 0, OPS_PARSE_AGAIN = 1 };

/* Parse the request at the start of buf[0..len). limit bounds the whole
 * request (0 = OPS_MAX_REQUEST). Returns OPS_PARSE_DONE (req filled; the
 * next request starts at buf + req->total_len), OPS_PARSE_AGAIN (need more
 * bytes; never when len >= limit), or the HTTP status to answer before
 * closing: 400 malformed, 413 body over the limit, 431 head over the limit
 * or too many headers, 501 Transfer-Encoding (not supported), 505 not
 * HTTP/1.x. Leading empty lines are skipped, as RFC 9112 allows. */
int ops_request_parse(const char *buf, size_t len, size_t limit, ops_request *req);

/* ---- the server -------------------------------------------------------- */

/* Readiness: return non-zero when ready. When not, append the reasons to
 * why, one per line (e.g. "informer github.klua.dev/v1/comments not synced");
 * they become /readyz's 503 body. Runs on the loop thread per request. */
typedef int (*ops_ready_fn)(void *ud, kl_buf *why);

typedef struct ops_opts {
    /* "127.0.0.1:8080", ":8080" (every interface), "[::1]:8080",
     * "localhost:8080"; port 0 = ephemeral (see ops_port); "0", "" or NULL
     * disables the server. */
    const char *addr;
    metrics_registry *registry;    /* NULL = metrics_default() at each scrape */
    ops_ready_fn ready;            /* NULL = always ready */
    void *ready_ud;
    ops_ready_fn live;             /* /healthz, same contract; NULL = always healthy */
    void *live_ud;
    size_t max_conns;              /* 0 = 64 */
    unsigned idle_timeout_ms;      /* 0 = 30000: silence, idle keep-alive included */
    unsigned request_timeout_ms;   /* 0 = 10000: one request, from its start to
                                    * its answer sent; reading does not extend it */
    unsigned evict_grace_ms;       /* 0 = request_timeout_ms / 10, within 100..1000:
                                    * how long a request must have taken before a
                                    * newcomer may evict its connection */
} ops_opts;

typedef struct ops_server ops_server;

/* Bind, listen and serve on l. *out is the server (caller owns it; free
 * with ops_free), or NULL when opts->addr disables it; both return 0.
 * -1 with err: "metrics address \"x\": ..." (bad address, cannot bind). */
int ops_start(loop *l, const ops_opts *opts, ops_server **out, kl_err *err);
/* The bound port (useful with port 0); 0 for a NULL server. */
int ops_port(const ops_server *s);
/* Replace the readiness callback (e.g. once the informers exist). */
void ops_set_ready(ops_server *s, ops_ready_fn ready, void *ud);
/* Connections currently open (tests). */
size_t ops_connections(const ops_server *s);
/* Close every connection and the listening socket, free s. NULL is fine. */
void ops_free(ops_server *s);

#endif
