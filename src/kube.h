/* kube.h - the Kubernetes transport: one client per API server.
 *
 * Provides: kube_client, which turns a kube_rest_config into authenticated
 * HTTP exchanges on the loop: bearer token (static, token file re-read every
 * minute, or exec credential plugin cached until expirationTimestamp and
 * re-run on 401; the plugin runs on the loop, one run shared by every call
 * that needs it meanwhile, its failure failing them and backed off),
 * client certificates, basic auth; User-Agent klua/VERSION;
 * client-side throttling (token bucket: qps, burst); retries with jittered
 * backoff on connection errors, 429 and 5xx, honouring Retry-After (only
 * for requests that are safe to repeat: GET, and any verb on a connection
 * error before a response). Non-2xx answers become a kube_result with the
 * Status object's reason and message.
 * Uses: http, loop, kubeconfig, json, buf, err.
 */
#ifndef KLUA_KUBE_H
#define KLUA_KUBE_H

#include "buf.h"
#include "err.h"
#include "http.h"
#include "kubeconfig.h"
#include "loop.h"
#include "watchframe.h"

#include <stdint.h>

typedef struct kube_client kube_client;
typedef struct kube_call kube_call;

typedef struct kube_client_opts {
    double qps;          /* default 50 */
    int burst;           /* default 100 */
    int max_retries;     /* default 5 */
    long timeout_ms;     /* per request, default 30000; watches have none */
} kube_client_opts;

/* The outcome of one API call. http_code 0 means no HTTP answer (then
 * reason is "ConnectionError" or "Timeout" and message says why). */
typedef struct kube_result {
    long http_code;
    char reason[64];      /* Status.reason: NotFound, Conflict, AlreadyExists, Gone,
                             Expired, Forbidden, Unauthorized, Invalid, ... ; "" on 2xx */
    char message[1024];   /* Status.message, or a transport description */
    kl_buf body;          /* response body (2xx: the object or list; else the Status) */
    const http_response *http; /* the raw response during the callback (headers), or NULL */
} kube_result;

int kube_result_ok(const kube_result *r);                 /* 2xx */
int kube_result_is(const kube_result *r, const char *reason); /* reason match, or by code:
                         "NotFound" 404, "Conflict" 409, "AlreadyExists" 409+reason,
                         "Gone" 410, "Forbidden" 403, "Unauthorized" 401, "Invalid" 422 */

typedef void (*kube_done_cb)(void *ud, kube_result *res);   /* res valid during the call */
typedef void (*kube_event_cb)(void *ud, const watch_event *ev);

/* Takes ownership of *cfg's contents (cfg is zeroed). */
kube_client *kube_client_new(loop *l, http_client *h, kube_rest_config *cfg,
                             const kube_client_opts *opts, kl_err *err);
void kube_client_free(kube_client *c);
const kube_rest_config *kube_client_config(const kube_client *c);
loop *kube_client_loop(kube_client *c);

/* An API call. path_query starts with "/" (e.g. "/api/v1/namespaces?limit=5").
 * content_type may be NULL (application/json). done is called exactly once
 * unless cancelled. */
kube_call *kube_request(kube_client *c, const char *method, const char *path_query,
                        const char *content_type, const char *body, size_t body_len,
                        kube_done_cb done, void *ud);
/* A watch: events are delivered one by one as they arrive; done is called
 * once when the stream ends (res->http_code 200 and reason "" for a normal
 * end, else the error). A 410 arrives either as an ERROR event or as done
 * with reason "Gone"/"Expired". */
kube_call *kube_watch(kube_client *c, const char *path_query, kube_event_cb on_event,
                      kube_done_cb done, void *ud);
void kube_cancel(kube_call *call);   /* no callback afterwards */

/* Request counters (for tests and /metrics): total requests sent, and LIST
 * requests (GET on a collection without watch=1, or a streaming list: a
 * watch with sendInitialEvents=true). */
typedef struct kube_stats {
    unsigned long requests;
    unsigned long lists;
    unsigned long watches;
    unsigned long retries;
} kube_stats;
kube_stats kube_client_stats(const kube_client *c);

/* Building blocks, exposed for unit tests (spec/c/test_kube.c). */

/* Client-side throttling: a token bucket of `burst` tokens refilled at `qps`
 * per second. kube_bucket_reserve takes one token and returns how long the
 * request must wait (ms) before it may go; waiting requests reserve tokens
 * ahead, so they leave in order, qps apart. qps <= 0 disables throttling. */
typedef struct kube_bucket {
    double qps;
    double burst;
    double tokens;        /* may go negative: reserved by waiting requests */
    uint64_t last_ms;
} kube_bucket;
void kube_bucket_init(kube_bucket *b, double qps, int burst, uint64_t now_ms);
uint64_t kube_bucket_reserve(kube_bucket *b, uint64_t now_ms);

/* Retry-After (delta seconds or an HTTP date) in ms, capped at 60 s; -1 if
 * value is NULL or not understood. now is Unix seconds (for the date form). */
long kube_retry_after_ms(const char *value, long now);
/* 1 when an answer may be retried: a connection error that cannot have
 * reached the server (any verb), another connection error (GET only), 429
 * and 500/502/503/504 (GET, or any verb with Retry-After). curl_code is
 * libcurl's code (0 = an HTTP answer came), status the HTTP status. */
int kube_retryable(const char *method, int curl_code, long status, int has_retry_after);
/* Jittered exponential backoff before retry number attempt (0-based):
 * 200 ms doubling, plus up to 50% jitter, capped at 10 s. */
uint64_t kube_backoff_ms(int attempt);
/* Fill r from a non-2xx answer: the Status object's reason and message, or
 * (body not a Status) a reason from the code and the body's first 200 bytes. */
void kube_result_set_status(kube_result *r, long code, const char *body, size_t len);

#endif
