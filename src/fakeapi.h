/* fakeapi.h - the HTTP side of `klua test`'s in-process fake API server.
 *
 * Provides: fakeapi, a plain HTTP/1.1 server on 127.0.0.1 (an ephemeral
 * port) that runs on the event loop. It parses requests (keep-alive,
 * Content-Length bodies, Expect: 100-continue) and hands each to a handler,
 * which answers at once or turns the connection into a stream (chunked
 * transfer encoding, for watches) that it feeds later with
 * fakeapi_stream_send. What the answers mean (the Kubernetes semantics, the
 * ctx:http stand-in reached as an HTTP proxy) lives in the handler
 * (testkit_fake.c and lua/lib/klua/fakeapi.lua); this file is transport only.
 * Uses: loop, buf, err, sockets.
 */
#ifndef KLUA_FAKEAPI_H
#define KLUA_FAKEAPI_H

#include "buf.h"
#include "err.h"
#include "loop.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fakeapi fakeapi;

typedef struct fakeapi_request {
    const char *method;       /* "GET", "CONNECT", ... */
    const char *target;       /* "/api/v1/...?..." or, through the proxy, "http://host/path" */
    const char *host;         /* the Host header, or "" */
    const char *content_type; /* or "" */
    const char *headers;      /* every header line, "Name: value\r\n"... */
    const char *body;
    size_t body_len;
} fakeapi_request;

typedef struct fakeapi_response {
    int status;               /* 0 = 500 */
    const char *content_type; /* NULL = application/json */
    kl_buf headers;           /* extra header lines, each ending "\r\n" */
    kl_buf body;
    int stream;               /* 1: keep the connection as a chunked stream */
} fakeapi_response;

/* Called for each request; fills resp (its buffers are freed by the
 * server). stream_id identifies the connection should resp->stream be set.
 * closed(ud, id) tells that a stream's connection went away. */
typedef struct fakeapi_handler {
    void (*handle)(void *ud, const fakeapi_request *req, uint64_t stream_id,
                   fakeapi_response *resp);
    void (*closed)(void *ud, uint64_t stream_id);
    void *ud;
} fakeapi_handler;

/* Listen on 127.0.0.1:0. Returns NULL with err set. */
fakeapi *fakeapi_start(loop *l, const fakeapi_handler *h, kl_err *err);
int fakeapi_port(const fakeapi *s);
/* Write one chunk to stream id. Returns 0, or -1 if the stream is gone. */
int fakeapi_stream_send(fakeapi *s, uint64_t id, const char *data, size_t len);
/* Requests answered and chunks written so far: `klua test` watches it to
 * tell when the system has gone quiet. */
unsigned long fakeapi_activity(const fakeapi *s);
/* Closes every connection (no closed callbacks) and the listener. */
void fakeapi_free(fakeapi *s);

#endif
