/* http.h - asynchronous HTTP(S) on the event loop (libcurl multi).
 *
 * Provides: one http_client per loop; http_start() begins a transfer and
 * returns at once; completion (and, for streams, each body chunk) arrives
 * through callbacks on the loop thread. Keep-alive and TLS session reuse
 * come from sharing one multi handle. gzip is accepted, except for streamed
 * bodies (on_data). TLS is verified
 * unless the request says insecure. Credentials passed in opts are never
 * logged (libcurl verbose mode is never enabled).
 * Uses: loop, buf, err, libcurl.
 */
#ifndef KLUA_HTTP_H
#define KLUA_HTTP_H

#include "buf.h"
#include "err.h"
#include "loop.h"

#include <stddef.h>

typedef struct http_client http_client;
typedef struct http_request http_request;

typedef struct http_header {
    char *name;    /* lower-cased */
    char *value;
} http_header;

typedef struct http_response {
    int curl_code;        /* 0 = the exchange completed (any HTTP status) */
    char error[256];      /* libcurl's message when curl_code != 0 */
    long status;          /* HTTP status, 0 if none was received */
    http_header *headers; /* of the final response */
    size_t nheaders;
    kl_buf body;          /* whole body, unless streamed to on_data */
    double total_s;       /* elapsed seconds */
} http_response;

/* Look a response header up by name (case-insensitive); NULL if absent. */
const char *http_response_header(const http_response *r, const char *name);

typedef struct http_tls {
    const char *ca_file;
    const char *ca_pem; size_t ca_pem_len;       /* in-memory CA bundle */
    const char *cert_file, *key_file;
    const char *cert_pem; size_t cert_pem_len;   /* in-memory client cert */
    const char *key_pem; size_t key_pem_len;
    int insecure;                                /* skip verification */
    const char *server_name;                     /* verify against this name (tls-server-name) */
} http_tls;

typedef struct http_request_opts {
    const char *method;            /* GET, POST, PUT, PATCH, DELETE, ... */
    const char *url;
    const char *const *headers;    /* NULL-terminated "Name: value" list, or NULL */
    const char *body; size_t body_len;  /* copied by http_start */
    long timeout_ms;               /* whole transfer; 0 = none (watches) */
    long connect_timeout_ms;       /* 0 = 10 s */
    long low_speed_time_s;         /* abort if < 1 byte/s for this long; 0 = off */
    const http_tls *tls;           /* NULL = system CAs, verified */
    const char *username, *password; /* basic auth, or NULL */
    /* Streaming: when set and the status is 2xx, body bytes go here instead
     * of into resp->body. Return non-zero to abort the transfer. */
    int (*on_data)(void *ud, long status, const char *data, size_t len);
    int stream_all;                /* on_data gets the body of every status, not only 2xx */
    /* Always called exactly once, unless the request is cancelled. resp is
     * valid during the call only. */
    void (*on_done)(void *ud, http_response *resp);
    void *ud;
} http_request_opts;

http_client *http_client_new(loop *l, kl_err *err);
void http_client_free(http_client *c);   /* cancels what is in flight */

/* Begin a transfer. Returns a handle valid until on_done runs or
 * http_cancel() is called; NULL on immediate failure (err set). */
http_request *http_start(http_client *c, const http_request_opts *opts, kl_err *err);
/* Abort; on_done is not called afterwards. */
void http_cancel(http_request *r);

/* Transfers currently in flight (for tests and metrics). */
size_t http_in_flight(const http_client *c);

#endif
