/* kube.c - the Kubernetes transport (see kube.h).
 *
 * Provides: kube_client (auth, throttling, retries, Status decoding),
 * kube_request, kube_watch, and the small building
 * blocks exposed for tests (token bucket, Retry-After, retry policy).
 * Uses: http (transfers), loop (timers for throttling and backoff),
 * watchframe (watch stream framing), execcred (exec plugins), json, buf,
 * err, log, metrics (rest_client_requests_total at each answer).
 *
 * A call's life: kube_request allocates a kube_call and schedules it on a
 * loop timer (delay = the token bucket's answer, 0 if a token is free), so
 * `done` never runs before kube_request has returned. The timer sends it;
 * the answer either finishes the call (done, then free) or schedules a retry
 * after a backoff. Every credential is put into a header buffer for one
 * send and scrubbed at once; nothing that logs or builds a message ever
 * sees it.
 *
 * Exec plugin credentials, like client-go: a call that finds no fresh
 * credential starts the plugin (execcred_start, on the loop) or, when a run
 * is in flight, joins it; either way it waits (flag cred_wait, no timer, no
 * transfer) while everything else on the loop goes on. When the run ends,
 * every waiting call is sent again from a timer: with the new credential,
 * or failed with the plugin's error. A failed run is logged once (again
 * only when the message changes) and starts a backoff (500 ms doubling to
 * 30 s) during which calls fail at once with the same error instead of
 * spawning the plugin in a hot loop; the first call after it runs the
 * plugin again.
 */
#include "kube.h"

#include "execcred.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef KLUA_VERSION
#define KLUA_VERSION "dev"
#endif

#define TOKEN_FILE_MAX_AGE_MS 60000   /* bound service-account tokens rotate */
#define RETRY_AFTER_CAP_MS 60000
#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 10000
#define EXEC_BACKOFF_BASE_MS 500      /* after a failed plugin run */
#define EXEC_BACKOFF_CAP_MS 30000

struct kube_client {
    loop *l;
    http_client *h;
    kube_rest_config cfg;        /* owned */
    kube_client_opts opts;
    http_tls tls;                /* points into cfg */
    kube_bucket bucket;
    kube_stats stats;
    char *file_token;            /* owned; from cfg.token_file */
    uint64_t file_token_ms;      /* when it was read (loop_time_ms) */
    execcred cred;               /* owned; exec plugin result, cached */
    unsigned cred_gen;           /* bumped whenever the credential is refreshed */
    execcred_proc *cred_run;     /* the plugin run in flight, shared by every waiting call */
    int cred_failures;           /* failed plugin runs in a row (backoff) */
    uint64_t cred_retry_ms;      /* after a failure, no new run before this (loop_time_ms) */
    char cred_error[1024];       /* the last failed run's message; "" after a success */
    int token_stale;             /* a 401 says: re-read the token file now */
    char *ca_pem;                /* owned; CA file contents for provideClusterInfo */
    size_t ca_len;
    kube_call *calls;            /* in flight, for kube_client_free */
};

struct kube_call {
    kube_client *c;
    kube_call *prev, *next;
    char *method, *path, *content_type; /* owned */
    char *body;                  /* owned */
    size_t body_len;
    int is_watch;
    kube_done_cb done;
    kube_event_cb on_event;
    void *ud;
    http_request *req;           /* while a transfer runs */
    struct timespec sent;        /* when the transfer started (-v 2 lines) */
    loop_timer_id timer;         /* while waiting (throttle, backoff) */
    int attempt;                 /* retries so far */
    int auth_retried;            /* a 401 already made us refresh credentials */
    unsigned cred_gen;           /* c->cred_gen when this attempt was sent */
    int cred_wait;               /* waiting for c->cred_run */
    int cred_ran;                /* the run it waited for has ended: use its outcome */
    int cancelled;               /* kube_cancel from inside one of our callbacks */
    int in_cb;
    watchframe *wf;              /* watches */
    int stream_bad;              /* the stream had garbage; err in werr */
    kl_err werr;
    /* A failure found before any transfer (credentials): reported from send. */
};

/* ---- small building blocks ---------------------------------------------- */

void kube_bucket_init(kube_bucket *b, double qps, int burst, uint64_t now_ms)
{
    b->qps = qps;
    b->burst = burst > 0 ? burst : 1;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

uint64_t kube_bucket_reserve(kube_bucket *b, uint64_t now_ms)
{
    if (b->qps <= 0)
        return 0;
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->qps / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
    b->tokens -= 1.0;
    if (b->tokens >= 0)
        return 0;
    /* Wait until the refill has paid back this request's debt. */
    double ms = -b->tokens * 1000.0 / b->qps;
    return (uint64_t)(ms + 0.999);
}

long kube_retry_after_ms(const char *value, long now)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return -1;
    long ms;
    if (*value >= '0' && *value <= '9') {
        char *end;
        errno = 0;
        long s = strtol(value, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (errno || *end)
            return -1;
        ms = s > RETRY_AFTER_CAP_MS / 1000 ? RETRY_AFTER_CAP_MS : s * 1000;
    } else {
        time_t t = curl_getdate(value, NULL);
        if (t == (time_t)-1)
            return -1;
        long d = (long)t - now;
        ms = d <= 0 ? 0 : d > RETRY_AFTER_CAP_MS / 1000 ? RETRY_AFTER_CAP_MS : d * 1000;
    }
    return ms;
}

int kube_retryable(const char *method, int curl_code, long status, int has_retry_after)
{
    int is_get = method && strcmp(method, "GET") == 0;
    if (curl_code != 0 && status == 0) {
        /* These fail before a byte is sent: repeating cannot do anything twice. */
        if (curl_code == CURLE_COULDNT_CONNECT || curl_code == CURLE_COULDNT_RESOLVE_HOST)
            return 1;
        /* TLS trouble will not go away by asking again. */
        if (curl_code == CURLE_PEER_FAILED_VERIFICATION || curl_code == CURLE_SSL_CACERT_BADFILE ||
            curl_code == CURLE_SSL_CERTPROBLEM || curl_code == CURLE_SSL_CONNECT_ERROR ||
            curl_code == CURLE_URL_MALFORMAT || curl_code == CURLE_UNSUPPORTED_PROTOCOL)
            return 0;
        return is_get;
    }
    if (status == 429 || status == 500 || status == 502 || status == 503 || status == 504)
        return is_get || has_retry_after;
    return 0;
}

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    if (!rnd_state)
        rnd_state = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9e3779b97f4a7c15ull;
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

uint64_t kube_backoff_ms(int attempt)
{
    uint64_t d = BACKOFF_BASE_MS;
    for (int i = 0; i < attempt && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    /* Jitter spreads the retries of many callers that failed together. */
    d += rnd() % (d / 2 + 1);
    return d > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : d;
}

static const struct {
    long code;
    const char *reason;
} code_reasons[] = {
    {400, "BadRequest"}, {401, "Unauthorized"}, {403, "Forbidden"}, {404, "NotFound"},
    {405, "MethodNotAllowed"}, {406, "NotAcceptable"}, {409, "Conflict"}, {410, "Gone"},
    {413, "RequestEntityTooLarge"}, {415, "UnsupportedMediaType"}, {422, "Invalid"},
    {429, "TooManyRequests"}, {500, "InternalError"}, {503, "ServiceUnavailable"},
    {504, "Timeout"},
};

static const char *reason_for_code(long code)
{
    for (size_t i = 0; i < sizeof code_reasons / sizeof code_reasons[0]; i++)
        if (code_reasons[i].code == code)
            return code_reasons[i].reason;
    return code >= 500 ? "InternalError" : "Unknown";
}

static long code_for_reason(const char *reason)
{
    for (size_t i = 0; i < sizeof code_reasons / sizeof code_reasons[0]; i++)
        if (strcmp(code_reasons[i].reason, reason) == 0)
            return code_reasons[i].code;
    return 0;
}

int kube_result_ok(const kube_result *r) { return r->http_code >= 200 && r->http_code < 300; }

int kube_result_is(const kube_result *r, const char *reason)
{
    if (strcmp(r->reason, reason) == 0)
        return 1;
    if (r->http_code == 0)
        return 0;
    /* Expired and Gone both mean "your resourceVersion is too old". */
    if (strcmp(reason, "Gone") == 0 || strcmp(reason, "Expired") == 0)
        return r->http_code == 410;
    /* As client-go: an AlreadyExists answer is not a Conflict. */
    if (strcmp(reason, "Conflict") == 0)
        return r->http_code == 409 && strcmp(r->reason, "AlreadyExists") != 0;
    long code = code_for_reason(reason);
    return code != 0 && r->http_code == code;
}

/* Copy at most max bytes, turning control characters into spaces so the
 * message stays one line. */
static void one_line(char *dst, size_t cap, const char *src, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    dst[n] = '\0';
    while (n > 0 && dst[n - 1] == ' ')
        dst[--n] = '\0';
}

void kube_result_set_status(kube_result *r, long code, const char *body, size_t len)
{
    json_doc doc = {0};
    r->http_code = code;
    r->reason[0] = r->message[0] = '\0';
    if (body && len > 0 && json_parse(&doc, body, len, NULL) == 0 &&
        doc.toks[0].type == JSON_OBJECT && json_str_eq(&doc, json_obj_get(&doc, 0, "kind"), "Status")) {
        kl_buf b = KL_BUF_INIT;
        int t = json_obj_get(&doc, 0, "reason");
        if (t >= 0 && json_str_append(&doc, t, &b) == 0 && b.len > 0)
            one_line(r->reason, sizeof r->reason, b.data, b.len, sizeof r->reason - 1);
        kl_buf_reset(&b);
        t = json_obj_get(&doc, 0, "message");
        if (t >= 0 && json_str_append(&doc, t, &b) == 0 && b.len > 0)
            one_line(r->message, sizeof r->message, b.data, b.len, sizeof r->message - 1);
        kl_buf_free(&b);
    } else if (body && len > 0) {
        one_line(r->message, sizeof r->message, body, len, 200);
    }
    if (!r->reason[0])
        snprintf(r->reason, sizeof r->reason, "%s", reason_for_code(code));
    if (!r->message[0])
        snprintf(r->message, sizeof r->message, "the server answered HTTP %ld (%s)", code,
                 r->reason);
    json_doc_free(&doc);
}

/* ---- client ------------------------------------------------------------- */

kube_client *kube_client_new(loop *l, http_client *h, kube_rest_config *cfg,
                             const kube_client_opts *opts, kl_err *err)
{
    if (!cfg->server || !*cfg->server) {
        kl_err_set(err, KL_EINVAL, "%s: no server URL for the API server",
                   cfg->source ? cfg->source : "kubeconfig");
        return NULL;
    }
    kube_client *c = calloc(1, sizeof *c);
    if (!c) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    c->l = l;
    c->h = h;
    c->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    if (opts)
        c->opts = *opts;
    if (c->opts.qps == 0)
        c->opts.qps = 50;
    if (c->opts.burst <= 0)
        c->opts.burst = 100;
    if (c->opts.max_retries == 0)
        c->opts.max_retries = 5;
    if (c->opts.max_retries < 0)
        c->opts.max_retries = 0;
    if (c->opts.timeout_ms == 0)
        c->opts.timeout_ms = 30000;
    kube_bucket_init(&c->bucket, c->opts.qps, c->opts.burst, loop_time_ms());

    kube_rest_config *k = &c->cfg;
    c->tls.ca_file = k->ca_file;
    c->tls.ca_pem = k->ca_data;
    c->tls.ca_pem_len = k->ca_data_len;
    c->tls.cert_file = k->cert_file;
    c->tls.key_file = k->key_file;
    c->tls.cert_pem = k->cert_data;
    c->tls.cert_pem_len = k->cert_data_len;
    c->tls.key_pem = k->key_data;
    c->tls.key_pem_len = k->key_data_len;
    c->tls.insecure = k->insecure;
    c->tls.server_name = k->tls_server_name;
    return c;
}

static void call_free(kube_call *call);

void kube_client_free(kube_client *c)
{
    if (!c)
        return;
    while (c->calls) {
        c->calls->in_cb = 0;     /* freeing the client from its own callback is misuse */
        kube_cancel(c->calls);
    }
    execcred_cancel(c->cred_run);
    execcred_free(&c->cred);
    if (c->file_token) {
        memset(c->file_token, 0, strlen(c->file_token));
        free(c->file_token);
    }
    free(c->ca_pem);
    kube_rest_config_free(&c->cfg);
    free(c);
}

const kube_rest_config *kube_client_config(const kube_client *c) { return &c->cfg; }
loop *kube_client_loop(kube_client *c) { return c->l; }
kube_stats kube_client_stats(const kube_client *c) { return c->stats; }

/* Read a small file whole; caller frees. */
static char *read_file(const char *path, size_t *len, kl_err *err)
{
    kl_buf b = KL_BUF_INIT;
    if (kl_read_file(path, 1u << 20, &b, err) != 0) {
        kl_buf_free(&b);
        return NULL;
    }
    if (len)
        *len = b.len;
    return kl_buf_take(&b);
}

/* The token from cfg.token_file, re-read when older than a minute (or when
 * force is set after a 401). A read failure keeps the previous token. */
static int file_token(kube_client *c, kl_err *err)
{
    uint64_t now = loop_time_ms();
    if (c->file_token && !c->token_stale && now - c->file_token_ms < TOKEN_FILE_MAX_AGE_MS)
        return 0;
    c->token_stale = 0;
    c->cred_gen++;
    kl_err rerr = {0};
    size_t len = 0;
    char *t = read_file(c->cfg.token_file, &len, &rerr);
    if (!t) {
        if (c->file_token) {
            kl_log(KL_LOG_WARN, "cannot re-read the token file; keeping the previous token",
                   "file", c->cfg.token_file, "error", rerr.msg, NULL);
            c->file_token_ms = now;
            return 0;
        }
        return kl_err_set(err, KL_EIO, "%s (tokenFile in %s)", rerr.msg,
                          c->cfg.source ? c->cfg.source : "kubeconfig");
    }
    while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
        t[--len] = '\0';
    char where[320];
    snprintf(where, sizeof where, "token file %s", c->cfg.token_file);
    if (kubeconfig_check_token(t, len, where, err) != 0) {
        memset(t, 0, len);
        free(t);
        return -1;
    }
    if (c->file_token) {
        memset(c->file_token, 0, strlen(c->file_token));
        free(c->file_token);
    }
    c->file_token = t;
    c->file_token_ms = now;
    return 0;
}

static void call_send(loop *l, void *ud);

/* A plugin run ended: keep the credential or the error, then send every
 * call that waited for it again (from timers: no callback of theirs runs
 * here). */
static void on_exec_done(void *ud, int rc, execcred *cred, const kl_err *err)
{
    kube_client *c = ud;
    c->cred_run = NULL;
    if (rc == 0) {
        execcred_free(&c->cred);
        c->cred = *cred;
        memset(cred, 0, sizeof *cred);
        c->cred_gen++;
        if (c->cred_error[0])
            kl_log(KL_LOG_INFO, "exec credential plugin works again", "command",
                   c->cfg.exec->command, NULL);
        c->cred_error[0] = '\0';
        c->cred_failures = 0;
    } else {
        uint64_t backoff = EXEC_BACKOFF_CAP_MS;
        if (c->cred_failures < 16)
            backoff = (uint64_t)EXEC_BACKOFF_BASE_MS << c->cred_failures;
        if (backoff > EXEC_BACKOFF_CAP_MS)
            backoff = EXEC_BACKOFF_CAP_MS;
        c->cred_failures++;
        c->cred_retry_ms = loop_time_ms() + backoff;
        /* Once, not once per waiting call or per run of the same failure. */
        if (strcmp(c->cred_error, err->msg) != 0)
            kl_log(KL_LOG_WARN, "exec credential plugin failed", "error", err->msg, NULL);
        snprintf(c->cred_error, sizeof c->cred_error, "%s", err->msg);
    }
    for (kube_call *call = c->calls; call; call = call->next) {
        if (!call->cred_wait)
            continue;
        call->cred_wait = 0;
        call->cred_ran = 1;
        call->timer = loop_timer_add(c->l, 0, call_send, call);
    }
}

/* Start the plugin (the caller found no fresh credential and no run). */
static int exec_start(kube_client *c, kl_err *err)
{
    execcred_free(&c->cred);
    c->cred_gen++;
    execcred_cluster cl = {0};
    if (c->cfg.exec->provide_cluster_info) {
        cl.server = c->cfg.server;
        cl.tls_server_name = c->cfg.tls_server_name;
        cl.insecure = c->cfg.insecure;
        if (c->cfg.ca_data) {
            cl.ca_pem = c->cfg.ca_data;
            cl.ca_len = c->cfg.ca_data_len;
        } else if (c->cfg.ca_file) {
            if (!c->ca_pem)
                c->ca_pem = read_file(c->cfg.ca_file, &c->ca_len, NULL);
            cl.ca_pem = c->ca_pem;
            cl.ca_len = c->ca_len;
        }
    }
    kl_log(KL_LOG_V2, "running exec credential plugin", "command", c->cfg.exec->command, NULL);
    kl_err serr = {0};
    c->cred_run = execcred_start(c->l, c->cfg.exec, &cl, NULL, on_exec_done, c, &serr);
    if (!c->cred_run) {
        on_exec_done(c, -1, NULL, &serr);   /* logged and backed off like a failed run */
        return kl_err_set(err, serr.code, "%s", serr.msg);
    }
    return 0;
}

/* The exec plugin's credential for call: 0 when c->cred may be used, 1
 * when the call must wait for a run (now in flight), -1 with err set when
 * it fails (the plugin's error). */
static int exec_token(kube_client *c, kube_call *call, kl_err *err)
{
    int ran = call->cred_ran;
    call->cred_ran = 0;
    int have = c->cred.token || c->cred.cert_pem;
    /* A credential the call waited for is used even if it is already stale:
     * else a plugin handing out short-lived tokens would be run for ever. */
    if (have && (ran || execcred_fresh(&c->cred, (int64_t)time(NULL))))
        return 0;
    if (c->cred_run)
        return 1;
    if (c->cred_error[0] && (ran || loop_time_ms() < c->cred_retry_ms))
        return kl_err_set(err, KL_EIO, "%s", c->cred_error);
    return exec_start(c, err) == 0 ? 1 : -1;
}

/* The bearer token for the next send (borrowed), or NULL for none: 0, or 1
 * when the call must wait for the exec plugin, or -1. */
static int current_token(kube_client *c, kube_call *call, const char **tok, kl_err *err)
{
    *tok = NULL;
    if (c->cfg.exec) {
        int r = exec_token(c, call, err);
        if (r == 0)
            *tok = c->cred.token;
        return r;
    }
    if (c->cfg.token_file) {
        if (file_token(c, err) != 0)
            return -1;
        *tok = c->file_token;
        return 0;
    }
    *tok = c->cfg.token;
    return 0;
}

/* ---- calls -------------------------------------------------------------- */

static void call_unlink(kube_call *call)
{
    kube_client *c = call->c;
    if (call->prev)
        call->prev->next = call->next;
    else if (c->calls == call)
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

static void call_free(kube_call *call)
{
    call_unlink(call);
    if (call->wf)
        watchframe_free(call->wf);
    free(call->method);
    free(call->path);
    free(call->content_type);
    free(call->body);
    free(call);
}

/* Deliver res to the caller and free the call. */
static void call_finish(kube_call *call, kube_result *res)
{
    call_unlink(call);
    if (call->done) {
        call->in_cb = 1;
        call->done(call->ud, res);
    }
    kl_buf_free(&res->body);
    call_free(call);
}

static void conn_error(kube_call *call, const http_response *resp, kube_result *res)
{
    const kube_rest_config *k = &call->c->cfg;
    const char *msg = resp->error[0] ? resp->error : curl_easy_strerror(resp->curl_code);
    const char *src = k->source ? k->source : "the kubeconfig";
    res->http_code = 0;
    snprintf(res->reason, sizeof res->reason, "ConnectionError");
    switch (resp->curl_code) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(res->reason, sizeof res->reason, "Timeout");
        snprintf(res->message, sizeof res->message, "request to %s timed out: %s", k->server, msg);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(res->message, sizeof res->message,
                 "TLS verification of %s failed: %s (check certificate-authority in %s)",
                 k->server, msg, src);
        break;
    case CURLE_SSL_CERTPROBLEM:
        snprintf(res->message, sizeof res->message,
                 "client certificate for %s cannot be used: %s (check client-certificate and "
                 "client-key in %s)", k->server, msg, src);
        break;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(res->message, sizeof res->message, "TLS handshake with %s failed: %s",
                 k->server, msg);
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(res->message, sizeof res->message, "cannot connect to %s: %s", k->server, msg);
        break;
    default:
        snprintf(res->message, sizeof res->message, "request to %s failed: %s", k->server, msg);
        break;
    }
}

static void call_schedule(kube_call *call, uint64_t delay_ms);

static int on_frame(void *ud, const char *doc, size_t len)
{
    kube_call *call = ud;
    watch_event ev;
    memset(&ev, 0, sizeof ev);
    if (watch_event_parse(doc, len, &ev, &call->werr) != 0) {
        call->stream_bad = 1;
        return 1;
    }
    if (call->on_event) {
        call->in_cb = 1;
        call->on_event(call->ud, &ev);
        call->in_cb = 0;
    }
    watch_event_free(&ev);
    return call->cancelled;
}

static int on_data(void *ud, long status, const char *data, size_t len)
{
    kube_call *call = ud;
    if (call->cancelled || call->stream_bad)
        return 1;
    if (watchframe_feed(call->wf, data, len, &call->werr) != 0) {
        if (!call->cancelled)
            call->stream_bad = 1;
        return 1;
    }
    return call->cancelled;
}

static void on_done(void *ud, http_response *resp)
{
    kube_call *call = ud;
    kube_client *c = call->c;
    kube_result res;
    memset(&res, 0, sizeof res);
    call->req = NULL;
    if (call->cancelled) {
        call_free(call);
        return;
    }
    metrics_rest_request(resp->status, call->method, c->cfg.server,
                         call->is_watch ? -1 : resp->total_s);
    res.http = resp;
    int has_ra = 0;
    long ra_ms = -1;
    if (resp->status != 0) {
        ra_ms = kube_retry_after_ms(http_response_header(resp, "retry-after"), (long)time(NULL));
        has_ra = ra_ms >= 0;
    }
    if (kl_log_enabled(KL_LOG_V2)) {   /* the path carries no credential */
        char st[32], ms[32];
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        snprintf(st, sizeof st, "%ld", resp->status);
        snprintf(ms, sizeof ms, "%.1f", (double)(now.tv_sec - call->sent.tv_sec) * 1e3 +
                                            (double)(now.tv_nsec - call->sent.tv_nsec) / 1e6);
        kl_log(KL_LOG_V2, "api request", "method", call->method, "path", call->path,
               KL_LOG_RAW "status", st, KL_LOG_RAW "duration_ms", ms, NULL);
    }

    /* The credential was refused: refresh it once and try again. */
    if (resp->status == 401 && !call->auth_retried && (c->cfg.exec || c->cfg.token_file)) {
        call->auth_retried = 1;
        /* Several calls may bounce with the same old credential: refresh once. */
        if (call->cred_gen == c->cred_gen) {
            if (c->cfg.exec)
                execcred_free(&c->cred);
            else
                c->token_stale = 1;
        }
        call_schedule(call, 0);
        return;
    }
    /* Watches are not retried here: the reflector rewatches with its own backoff. */
    if (!call->is_watch && call->attempt < c->opts.max_retries &&
        kube_retryable(call->method, resp->status ? 0 : resp->curl_code, resp->status, has_ra)) {
        uint64_t d = has_ra ? (uint64_t)ra_ms : kube_backoff_ms(call->attempt);
        call->attempt++;
        c->stats.retries++;
        kl_log(KL_LOG_V2, "retrying API request", "method", call->method, "path", call->path, NULL);
        call_schedule(call, d);
        return;
    }

    if (resp->status == 0 || (resp->curl_code != 0 && !call->is_watch)) {
        conn_error(call, resp, &res);
    } else if (resp->status >= 200 && resp->status < 300) {
        res.http_code = resp->status;
        if (call->is_watch) {
            kl_err ferr = {0};
            if (call->stream_bad) {
                res.http_code = 0;
                snprintf(res.reason, sizeof res.reason, "ConnectionError");
                snprintf(res.message, sizeof res.message, "watch stream from %s is not valid: %s",
                         c->cfg.server, call->werr.msg);
            } else if (resp->curl_code != 0) {
                conn_error(call, resp, &res);
                snprintf(res.message, sizeof res.message, "watch stream from %s broke: %s",
                         c->cfg.server, resp->error[0] ? resp->error
                                                       : curl_easy_strerror(resp->curl_code));
            } else if (watchframe_finish(call->wf, &ferr) != 0) {
                res.http_code = 0;
                snprintf(res.reason, sizeof res.reason, "ConnectionError");
                snprintf(res.message, sizeof res.message, "watch stream from %s ended mid-event",
                         c->cfg.server);
            }
        }
        /* Take the body over: large lists are not copied again. */
        res.body = resp->body;
        memset(&resp->body, 0, sizeof resp->body);
    } else {
        kube_result_set_status(&res, resp->status, resp->body.data, resp->body.len);
        res.body = resp->body;
        memset(&resp->body, 0, sizeof resp->body);
    }
    call_finish(call, &res);
}

/* Send one attempt. Runs from a loop timer, so calling done here is safe. */
static void call_send(loop *l, void *ud)
{
    kube_call *call = ud;
    kube_client *c = call->c;
    kube_result res;
    kl_err err = {0};
    const char *tok = NULL;
    kl_buf url = KL_BUF_INIT, auth = KL_BUF_INIT, ua = KL_BUF_INIT, ct = KL_BUF_INIT;
    const char *headers[6];
    int nh = 0;
    http_tls tls = c->tls;

    call->timer = 0;
    memset(&res, 0, sizeof res);
    int tr = current_token(c, call, &tok, &err);
    if (tr == 1) {
        call->cred_wait = 1;    /* on_exec_done sends it again */
        goto out;
    }
    if (tr != 0) {
        res.http_code = 0;
        snprintf(res.reason, sizeof res.reason, "Unauthorized");
        snprintf(res.message, sizeof res.message, "%s", err.msg);
        call_finish(call, &res);
        goto out;
    }
    call->cred_gen = c->cred_gen;
    if (c->cfg.exec && c->cred.cert_pem) {
        tls.cert_file = tls.key_file = NULL;
        tls.cert_pem = c->cred.cert_pem;
        tls.cert_pem_len = c->cred.cert_len;
        tls.key_pem = c->cred.key_pem;
        tls.key_pem_len = c->cred.key_len;
    }
    int bad = kl_buf_puts(&url, c->cfg.server) | kl_buf_puts(&url, call->path);
    bad |= kl_buf_puts(&ua, "User-Agent: klua/" KLUA_VERSION);
    headers[nh++] = ua.data;
    headers[nh++] = "Accept: application/json";
    if (call->body) {
        bad |= kl_buf_printf(&ct, "Content-Type: %s",
                             call->content_type ? call->content_type : "application/json");
        headers[nh++] = ct.data;
    }
    if (tok && *tok) {
        bad |= kl_buf_puts(&auth, "Authorization: Bearer ") | kl_buf_puts(&auth, tok);
        headers[nh++] = auth.data;
    }
    headers[nh] = NULL;
    if (bad) {
        res.http_code = 0;
        snprintf(res.reason, sizeof res.reason, "ConnectionError");
        snprintf(res.message, sizeof res.message, "out of memory");
        call_finish(call, &res);
        goto out;
    }
    http_request_opts o = {0};
    o.method = call->method;
    o.url = url.data;
    o.headers = headers;
    o.body = call->body;
    o.body_len = call->body_len;
    o.timeout_ms = call->is_watch ? 0 : c->opts.timeout_ms;
    o.tls = &tls;
    o.username = c->cfg.username;
    o.password = c->cfg.password;
    o.on_done = on_done;
    o.ud = call;
    if (call->is_watch) {
        o.on_data = on_data;
        if (!call->wf)
            call->wf = watchframe_new(0, on_frame, call);
    }
    c->stats.requests++;
    metrics_api_count(METRICS_API_REQUEST);
    clock_gettime(CLOCK_MONOTONIC, &call->sent);
    call->req = http_start(c->h, &o, &err);
    if (!call->req) {
        res.http_code = 0;
        snprintf(res.reason, sizeof res.reason, "ConnectionError");
        snprintf(res.message, sizeof res.message, "cannot send a request to %s: %s",
                 c->cfg.server, err.msg);
        call_finish(call, &res);
    }
out:
    if (auth.data)
        memset(auth.data, 0, auth.len);   /* http_start copied it */
    kl_buf_free(&auth);
    kl_buf_free(&url);
    kl_buf_free(&ua);
    kl_buf_free(&ct);
}

static void call_schedule(kube_call *call, uint64_t delay_ms)
{
    kube_client *c = call->c;
    /* Retries are throttled too; a watch counts once, at its start. */
    if (!call->is_watch || call->attempt == 0)
        delay_ms += kube_bucket_reserve(&c->bucket, loop_time_ms());
    call->timer = loop_timer_add(c->l, delay_ms, call_send, call);
}

/* Is path_query a GET on a collection (a LIST)? Segments after the group
 * version: [namespaces NS] resource [name [subresource]]. */
static int is_list_path(const char *pq)
{
    if (strstr(pq, "watch=1") || strstr(pq, "watch=true"))
        return 0;
    const char *q = strchr(pq, '?');
    size_t plen = q ? (size_t)(q - pq) : strlen(pq);
    const char *segs[8];
    size_t lens[8];
    int n = 0;
    for (size_t i = 0; i < plen && n < 8;) {
        while (i < plen && pq[i] == '/')
            i++;
        if (i >= plen)
            break;
        size_t s = i;
        while (i < plen && pq[i] != '/')
            i++;
        segs[n] = pq + s;
        lens[n++] = i - s;
    }
    int skip;
    if (n >= 1 && lens[0] == 3 && memcmp(segs[0], "api", 3) == 0)
        skip = 2;
    else if (n >= 1 && lens[0] == 4 && memcmp(segs[0], "apis", 4) == 0)
        skip = 3;
    else
        return 0;
    if (n - skip >= 3 && lens[skip] == 10 && memcmp(segs[skip], "namespaces", 10) == 0)
        skip += 2;
    return n - skip == 1;
}

static kube_call *call_new(kube_client *c, const char *method, const char *path_query,
                           const char *content_type, const char *body, size_t body_len)
{
    kube_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->c = c;
    call->method = strdup(method);
    call->path = strdup(path_query);
    call->content_type = content_type ? strdup(content_type) : NULL;
    if (body) {
        call->body = malloc(body_len + 1);
        if (call->body) {
            memcpy(call->body, body, body_len);
            call->body[body_len] = '\0';
        }
        call->body_len = body_len;
    }
    if (!call->method || !call->path || (content_type && !call->content_type) ||
        (body && !call->body)) {
        call_free(call);
        return NULL;
    }
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    return call;
}

kube_call *kube_request(kube_client *c, const char *method, const char *path_query,
                        const char *content_type, const char *body, size_t body_len,
                        kube_done_cb done, void *ud)
{
    kube_call *call = call_new(c, method, path_query, content_type, body, body_len);
    if (!call)
        return NULL;
    call->done = done;
    call->ud = ud;
    if (strcmp(method, "GET") == 0 && is_list_path(path_query)) {
        c->stats.lists++;
        metrics_api_count(METRICS_API_LIST);
    }
    call_schedule(call, 0);
    return call;
}

kube_call *kube_watch(kube_client *c, const char *path_query, kube_event_cb on_event,
                      kube_done_cb done, void *ud)
{
    kube_call *call = call_new(c, "GET", path_query, NULL, NULL, 0);
    if (!call)
        return NULL;
    call->is_watch = 1;
    call->on_event = on_event;
    call->done = done;
    call->ud = ud;
    call->wf = watchframe_new(0, on_frame, call);
    if (!call->wf) {
        call_free(call);
        return NULL;
    }
    c->stats.watches++;
    if (strstr(path_query, "sendInitialEvents=true")) {
        c->stats.lists++; /* a streaming list is a LIST as well */
        metrics_api_count(METRICS_API_LIST);
    }
    metrics_api_count(METRICS_API_WATCH);
    call_schedule(call, 0);
    return call;
}

void kube_cancel(kube_call *call)
{
    if (!call)
        return;
    if (call->in_cb) {
        /* Inside on_event: stop the stream when the callback returns; on_done
         * will then free the call without calling done. */
        call->cancelled = 1;
        return;
    }
    if (call->timer)
        loop_timer_cancel(call->c->l, call->timer);
    if (call->req)
        http_cancel(call->req);
    call_free(call);
}

/* ---- synchronous helper ------------------------------------------------- */
