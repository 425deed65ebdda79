/* webhook_server.h - the HTTPS server the API server calls webhooks on.
 *
 * Provides: webhook_server, TLS 1.2+ (OpenSSL, on non-blocking sockets
 * driven by the loop: the handshake, reads and writes resume when the
 * socket is ready, and nothing blocks) serving POSTs whose bodies go to
 * webhook_review_handle(). Requests are parsed by ops_request_parse
 * (ops.h, fuzzed) with a bound on the whole request (max_request), a
 * deadline for each request to arrive whole (request_timeout_ms: a slow
 * or silent client is closed), a cap on connections (a newcomer past it
 * is closed at once), keep-alive. Other methods get 405; a malformed
 * request gets its status and the connection closes.
 *
 * Certificates: tls.crt and tls.key in cert_dir (the layout of a
 * kubernetes.io/tls Secret and of cert-manager's Certificates). They are
 * checked for changes at most once a second, when a connection arrives;
 * changed files are loaded into a new TLS context used by new connections
 * (cert-manager rotation needs no restart). Files that do not load keep
 * the previous context (logged once per change).
 * Metrics (metrics_default): controller_runtime_webhook_requests_total
 * {code,webhook} and controller_runtime_webhook_latency_seconds{webhook},
 * controller-runtime's names.
 * Uses: webhook_review, ops (request parser), metrics, loop, buf, err, log,
 * OpenSSL.
 */
#ifndef KLUA_WEBHOOK_SERVER_H
#define KLUA_WEBHOOK_SERVER_H

#include "err.h"
#include "loop.h"
#include "webhook_review.h"

#include <stddef.h>

#define WEBHOOK_MAX_REQUEST (4u << 20)   /* bytes: reviews carry two objects of up to ~1.5 MiB */

typedef struct webhook_server_opts {
    const char *addr;               /* "127.0.0.1:9443", ":9443", "[::1]:0" (0 = ephemeral) */
    const char *cert_dir;           /* holds tls.crt and tls.key */
    webhook_handlers handlers;
    size_t max_conns;               /* 0 = 64 */
    size_t max_request;             /* 0 = WEBHOOK_MAX_REQUEST */
    unsigned request_timeout_ms;    /* 0 = 10000 */
    unsigned idle_timeout_ms;       /* keep-alive idle; 0 = 60000 */
} webhook_server_opts;

typedef struct webhook_server webhook_server;

/* Load the certificate, bind and serve on l. err: "webhook server: ...". */
webhook_server *webhook_server_start(loop *l, const webhook_server_opts *o, kl_err *err);
int webhook_server_port(const webhook_server *s);
size_t webhook_server_connections(const webhook_server *s);
unsigned long webhook_server_requests(const webhook_server *s);   /* answered so far */
/* Close every connection and the socket; NULL is fine. */
void webhook_server_free(webhook_server *s);

#endif
