/* leader.c - leader election on a Lease (see leader.h).
 *
 * Provides: leader_elector and the pure helpers of leader.h.
 * Uses: rest (get/create/update), kube (results), json, loop
 * (timers), log, metrics (leader_election_master_status), buf, err.
 *
 * One attempt is a GET of the Lease followed, when we may take it, by a
 * create or an update; at most one request is in flight. The attempt is
 * client-go's tryAcquireOrRenew; the timers around it are its acquire loop
 * (retry period with jitter, factor 1.2) and its renew loop (retry period,
 * lost after the renew deadline). Our renew deadline runs from the last
 * successful renewal, which is stricter than client-go's (from the start
 * of the renew round): with lease > renew we stop acting before a
 * standby can judge the lease expired.
 */
#include "leader.h"

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define RELEASE_TIMEOUT_MS 5000
#define JITTER_FACTOR 1.2

struct leader_elector {
    loop *l;
    kube_client *kc;
    kube_resource res;
    char *ns, *name, *identity;
    long lease_ms, renew_ms, retry_ms;
    leader_config cb;             /* on_started, on_stopped, ud */

    kube_call *call;              /* the request in flight, or NULL */
    loop_timer_id try_timer;      /* the next attempt */
    loop_timer_id deadline_timer; /* leading: renew deadline */
    loop_timer_id release_timer;  /* releasing: give up waiting */
    int started, leading, stopped, releasing;

    leader_record observed;       /* the record as we last saw it */
    uint64_t observed_ms;         /* when it last changed, by our clock */
    int have_observed;
    kl_buf metadata;              /* raw metadata of the Lease last read or written */
    leader_record pending;        /* the record being written */

    void (*release_done)(void *ud);
    void *release_ud;
};

/* ---- pure parts ---- */

int leader_validate(long lease_ms, long renew_ms, long retry_ms, kl_err *err)
{
    if (lease_ms < 1 || renew_ms < 1 || retry_ms < 1)
        return kl_err_set(err, KL_EINVAL, "leader election durations must be positive");
    if (lease_ms <= renew_ms)
        return kl_err_set(err, KL_EINVAL,
                          "--leader-lease-duration (%ld ms) must be greater than "
                          "--leader-renew-deadline (%ld ms)",
                          lease_ms, renew_ms);
    if ((double)renew_ms <= JITTER_FACTOR * (double)retry_ms)
        return kl_err_set(err, KL_EINVAL,
                          "--leader-renew-deadline (%ld ms) must be greater than 1.2 x "
                          "--leader-retry-period (%ld ms)",
                          renew_ms, retry_ms);
    return 0;
}

void leader_record_free(leader_record *r)
{
    free(r->holder);
    free(r->acquire_time);
    free(r->renew_time);
    memset(r, 0, sizeof *r);
}

static int str_eq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

int leader_record_equal(const leader_record *a, const leader_record *b)
{
    return str_eq(a->holder, b->holder) && a->lease_seconds == b->lease_seconds &&
           str_eq(a->acquire_time, b->acquire_time) && str_eq(a->renew_time, b->renew_time) &&
           a->transitions == b->transitions;
}

static int record_copy(leader_record *dst, const leader_record *src)
{
    leader_record r = {0};
    r.lease_seconds = src->lease_seconds;
    r.transitions = src->transitions;
    if ((src->holder && !(r.holder = strdup(src->holder))) ||
        (src->acquire_time && !(r.acquire_time = strdup(src->acquire_time))) ||
        (src->renew_time && !(r.renew_time = strdup(src->renew_time)))) {
        leader_record_free(&r);
        return -1;
    }
    leader_record_free(dst);
    *dst = r;
    return 0;
}

/* A string field of spec, or NULL when absent or null. */
static int spec_str(const json_doc *d, int spec, const char *key, char **out)
{
    int t = json_obj_get(d, spec, key);
    *out = NULL;
    if (t < 0 || d->toks[t].type == JSON_NULL)
        return 0;
    return (*out = json_str_dup(d, t)) ? 0 : -1;
}

static long spec_int(const json_doc *d, int spec, const char *key)
{
    int64_t v = 0;
    int t = json_obj_get(d, spec, key);
    if (t < 0 || json_get_int64(d, t, &v) != 0)
        return 0;
    return (long)v;
}

int leader_lease_parse(const char *json, size_t len, leader_record *rec, kl_buf *metadata,
                       kl_err *err)
{
    json_doc d = {0};
    leader_record r = {0};
    int rc = -1;
    if (json_parse(&d, json, len, err) != 0)
        goto out;
    int meta = json_obj_get(&d, 0, "metadata");
    if (meta < 0 || d.toks[meta].type != JSON_OBJECT) {
        kl_err_set(err, KL_EINVAL, "the Lease has no metadata");
        goto out;
    }
    int spec = json_obj_get(&d, 0, "spec");
    if (spec >= 0 && d.toks[spec].type == JSON_OBJECT) {
        if (spec_str(&d, spec, "holderIdentity", &r.holder) != 0 ||
            spec_str(&d, spec, "acquireTime", &r.acquire_time) != 0 ||
            spec_str(&d, spec, "renewTime", &r.renew_time) != 0) {
            kl_err_set(err, KL_ENOMEM, "out of memory");
            goto out;
        }
        r.lease_seconds = spec_int(&d, spec, "leaseDurationSeconds");
        r.transitions = spec_int(&d, spec, "leaseTransitions");
    }
    size_t mlen = 0;
    const char *mraw = json_raw(&d, meta, &mlen);
    if (metadata && kl_buf_append(metadata, mraw, mlen) != 0) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto out;
    }
    leader_record_free(rec);
    *rec = r;
    memset(&r, 0, sizeof r);
    rc = 0;
out:
    leader_record_free(&r);
    json_doc_free(&d);
    return rc;
}

static int put_str_field(kl_buf *out, const char *key, const char *val, int *first)
{
    if (!val)
        return 0;
    int rc = kl_buf_printf(out, "%s\"%s\":", *first ? "" : ",", key);
    *first = 0;
    return rc == 0 ? json_escape_append(out, val, strlen(val)) : -1;
}

int leader_lease_json(const char *metadata, const char *ns, const char *name,
                      const leader_record *rec, kl_buf *out)
{
    int first = 1;
    if (kl_buf_puts(out, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                         "\"metadata\":") != 0)
        return -1;
    if (metadata && *metadata) {
        if (kl_buf_puts(out, metadata) != 0)
            return -1;
    } else if (kl_buf_puts(out, "{\"name\":") != 0 || json_escape_append(out, name, strlen(name)) ||
               kl_buf_puts(out, ",\"namespace\":") != 0 ||
               json_escape_append(out, ns, strlen(ns)) != 0 || kl_buf_putc(out, '}') != 0) {
        return -1;
    }
    if (kl_buf_puts(out, ",\"spec\":{") != 0 ||
        put_str_field(out, "holderIdentity", rec->holder ? rec->holder : "", &first) != 0 ||
        kl_buf_printf(out, ",\"leaseDurationSeconds\":%ld", rec->lease_seconds) != 0 ||
        put_str_field(out, "acquireTime", rec->acquire_time, &first) != 0 ||
        put_str_field(out, "renewTime", rec->renew_time, &first) != 0 ||
        kl_buf_printf(out, ",\"leaseTransitions\":%ld}}", rec->transitions) != 0)
        return -1;
    return 0;
}

int leader_held_by_other(const leader_record *cur, const char *identity, uint64_t observed_ms,
                         uint64_t now_ms)
{
    if (!cur->holder || !cur->holder[0] || !strcmp(cur->holder, identity))
        return 0;
    uint64_t lease = cur->lease_seconds > 0 ? (uint64_t)cur->lease_seconds * 1000 : 0;
    return observed_ms + lease > now_ms;
}

void leader_format_time(int64_t unix_us, char out[32])
{
    time_t secs = (time_t)(unix_us / 1000000);
    long us = (long)(unix_us % 1000000);
    if (us < 0) {
        us += 1000000;
        secs--;
    }
    struct timespec ts = {.tv_sec = secs, .tv_nsec = us * 1000};
    kl_rfc3339(&ts, 6, out, 32);
}

char *leader_identity_new(void)
{
    char host[256] = "";
    const char *base = getenv("POD_NAME");
    if (!base || !*base) {
        if (gethostname(host, sizeof host - 1) != 0 || !host[0])
            snprintf(host, sizeof host, "klua");
        base = host;
    }
    uint64_t v = kl_rand_u64();
    unsigned char rnd[8];
    memcpy(rnd, &v, sizeof rnd);
    size_t n = strlen(base) + 1 + 2 * sizeof rnd + 1;
    char *id = malloc(n);
    if (!id)
        return NULL;
    size_t off = (size_t)snprintf(id, n, "%s_", base);
    for (size_t i = 0; i < sizeof rnd && off + 2 < n; i++)
        off += (size_t)snprintf(id + off, n - off, "%02x", rnd[i]);
    return id;
}

/* ---- the elector ---- */

static void try_now(loop *l, void *ud);
static void attempt_done(leader_elector *e, int ok);
static void release_write(leader_elector *e);
static void release_finish(leader_elector *e);

static void now_rfc3339(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    leader_format_time((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, out);
}

static void log_lease(int level, const leader_elector *e, const char *what)
{
    char msg[768];
    snprintf(msg, sizeof msg, "leader election: %s lease %s/%s as %s", what, e->ns, e->name,
             e->identity);
    kl_log(level, msg, NULL);
}

static void log_api_error(const leader_elector *e, const char *what, const kube_result *res)
{
    char code[16], lease[512];
    snprintf(code, sizeof code, "%ld", res->http_code);
    snprintf(lease, sizeof lease, "%s/%s", e->ns, e->name);
    kl_log(KL_LOG_WARN, what, "lease", lease, "code", code, "reason", res->reason, "error",
           res->message, NULL);
}

leader_elector *leader_new(loop *l, kube_client *kc, const leader_config *cfg, kl_err *err)
{
    leader_elector *e = calloc(1, sizeof *e);
    if (!e) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    e->l = l;
    e->kc = kc;
    e->cb = *cfg;
    e->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : LEADER_LEASE_MS;
    e->renew_ms = cfg->renew_ms > 0 ? cfg->renew_ms : LEADER_RENEW_MS;
    e->retry_ms = cfg->retry_ms > 0 ? cfg->retry_ms : LEADER_RETRY_MS;
    if (leader_validate(e->lease_ms, e->renew_ms, e->retry_ms, err) != 0)
        goto fail;
    if (!(e->ns = strdup(cfg->ns)) || !(e->name = strdup(cfg->name)) ||
        !(e->identity = strdup(cfg->identity))) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    static const kube_resource lease = {"coordination.k8s.io", "v1", "leases", "Lease", 1, 0};
    if (kube_resource_copy(&e->res, &lease) != 0) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    return e;
fail:
    leader_free(e);
    return NULL;
}

void leader_start(leader_elector *e)
{
    if (e->started || e->stopped)
        return;
    e->started = 1;
    metrics_leader_status(e->name, 0);
    e->try_timer = loop_timer_add(e->l, 0, try_now, e);
}

int leader_is_leader(const leader_elector *e) { return e && e->leading; }

/* Renewals have failed for the renew deadline: we are no longer leader. */
static void on_deadline(loop *l, void *ud)
{
    (void)l;
    leader_elector *e = ud;
    e->deadline_timer = 0;
    if (!e->leading)
        return;
    e->leading = 0;
    metrics_leader_status(e->name, 0);
    e->stopped = 1;
    if (e->call) {
        kube_cancel(e->call);
        e->call = NULL;
    }
    if (e->try_timer) {
        loop_timer_cancel(e->l, e->try_timer);
        e->try_timer = 0;
    }
    char ms[32];
    snprintf(ms, sizeof ms, "%ld", e->renew_ms);
    char msg[768];
    snprintf(msg, sizeof msg, "leader election: lost lease %s/%s as %s", e->ns, e->name,
             e->identity);
    kl_log(KL_LOG_ERROR, msg, "reason", "no renewal succeeded within the renew deadline",
           "renewDeadlineMs", ms, NULL);
    if (e->cb.on_stopped)
        e->cb.on_stopped(e->cb.ud);
    if (e->releasing)
        release_finish(e);   /* nothing left to release */
}

static void arm_deadline(leader_elector *e)
{
    if (e->deadline_timer)
        loop_timer_cancel(e->l, e->deadline_timer);
    e->deadline_timer = loop_timer_add(e->l, (uint64_t)e->renew_ms, on_deadline, e);
}

/* Remember what the server holds now; its change time is ours. */
static int observe(leader_elector *e, const leader_record *cur)
{
    if (e->have_observed && leader_record_equal(&e->observed, cur))
        return 0;
    if (record_copy(&e->observed, cur) != 0)
        return -1;
    e->have_observed = 1;
    e->observed_ms = loop_time_ms();
    return 0;
}

/* Parse the lease in res into *cur (caller frees it, also on failure),
 * keep its metadata for the next update and observe it; logs msg on failure. */
static int parse_observed(leader_elector *e, const kube_result *res, leader_record *cur,
                          const char *msg)
{
    kl_err err = {0};
    kl_buf_reset(&e->metadata);
    if (leader_lease_parse(res->body.data, res->body.len, cur, &e->metadata, &err) != 0 ||
        observe(e, cur) != 0) {
        kl_log(KL_LOG_WARN, msg, "error", err.msg, NULL);
        return -1;
    }
    return 0;
}

static void on_written(void *ud, kube_result *res)
{
    leader_elector *e = ud;
    e->call = NULL;
    if (!kube_result_ok(res)) {
        if (res->http_code == 409)
            kl_log(KL_LOG_V1, "leader election: another candidate wrote the lease first", NULL);
        else
            log_api_error(e, "leader election: cannot write the lease", res);
        attempt_done(e, 0);
        return;
    }
    leader_record cur = {0};
    int ok = parse_observed(e, res, &cur, "leader election: cannot read the written lease") == 0;
    leader_record_free(&cur);
    attempt_done(e, ok);
}

/* The lease is ours to take or renew: write e->pending. */
static void write_pending(leader_elector *e, int create)
{
    kl_buf body = KL_BUF_INIT;
    if (leader_lease_json(create ? NULL : e->metadata.data, e->ns, e->name, &e->pending, &body) !=
        0) {
        kl_buf_free(&body);
        attempt_done(e, 0);
        return;
    }
    kube_write_opts wo = {0};
    wo.field_manager = "klua";
    e->call = create ? kube_create(e->kc, &e->res, e->ns, body.data, body.len, &wo, on_written, e)
                     : kube_update(e->kc, &e->res, e->ns, e->name, body.data, body.len, &wo,
                                   on_written, e);
    kl_buf_free(&body);
    if (!e->call)
        attempt_done(e, 0);
}

/* tryAcquireOrRenew after the GET. */
static void on_got(void *ud, kube_result *res)
{
    leader_elector *e = ud;
    e->call = NULL;
    char now[32];
    now_rfc3339(now);
    leader_record_free(&e->pending);
    e->pending.lease_seconds = (e->lease_ms + 999) / 1000;
    if (res->http_code == 404) {
        if (!(e->pending.holder = strdup(e->identity)) || !(e->pending.acquire_time = strdup(now)) ||
            !(e->pending.renew_time = strdup(now))) {
            attempt_done(e, 0);
            return;
        }
        write_pending(e, 1);
        return;
    }
    if (!kube_result_ok(res)) {
        log_api_error(e, "leader election: cannot read the lease", res);
        attempt_done(e, 0);
        return;
    }
    leader_record cur = {0};
    if (parse_observed(e, res, &cur, "leader election: cannot read the lease") != 0) {
        leader_record_free(&cur);
        attempt_done(e, 0);
        return;
    }
    if (leader_held_by_other(&cur, e->identity, e->observed_ms, loop_time_ms())) {
        if (kl_log_enabled(KL_LOG_V1))
            kl_log(KL_LOG_V1, "leader election: the lease is held by another candidate", "holder",
                   cur.holder, NULL);
        leader_record_free(&cur);
        attempt_done(e, 0);
        return;
    }
    int ours = cur.holder && !strcmp(cur.holder, e->identity);
    /* Renewing keeps acquireTime and the count; taking it over counts one. */
    const char *acquired = ours && cur.acquire_time ? cur.acquire_time : now;
    e->pending.transitions = ours ? cur.transitions : cur.transitions + 1;
    int ok = (e->pending.holder = strdup(e->identity)) &&
             (e->pending.acquire_time = strdup(acquired)) && (e->pending.renew_time = strdup(now));
    leader_record_free(&cur);
    if (!ok) {
        attempt_done(e, 0);
        return;
    }
    write_pending(e, 0);
}

static void try_now(loop *l, void *ud)
{
    (void)l;
    leader_elector *e = ud;
    e->try_timer = 0;
    if (e->stopped || e->call)
        return;
    e->call = kube_get(e->kc, &e->res, e->ns, e->name, NULL, on_got, e);
    if (!e->call)
        attempt_done(e, 0);
}

/* client-go's wait.Jitter(retry, 1.2): retry plus up to 1.2 x retry. */
static uint64_t jittered(long retry_ms)
{
    unsigned short r = (unsigned short)kl_rand_below(65536);
    return (uint64_t)retry_ms + (uint64_t)((double)retry_ms * JITTER_FACTOR * (r / 65536.0));
}

static void attempt_done(leader_elector *e, int ok)
{
    if (ok) {
        arm_deadline(e);   /* the deadline counts from the last renewal */
        if (!e->leading && !e->releasing) {
            e->leading = 1;
            metrics_leader_status(e->name, 1);
            log_lease(KL_LOG_INFO, e, "acquired");
            if (e->cb.on_started)
                e->cb.on_started(e->cb.ud);
        } else if (!e->leading) {
            e->leading = 1;   /* took it while shutting down: give it back below */
        }
    }
    if (e->releasing) {
        release_write(e);
        return;
    }
    if (e->stopped)
        return;
    e->try_timer = loop_timer_add(e->l, e->leading ? (uint64_t)e->retry_ms : jittered(e->retry_ms),
                                  try_now, e);
}

/* ---- release ---- */

static void release_finish(leader_elector *e)
{
    if (e->release_timer) {
        loop_timer_cancel(e->l, e->release_timer);
        e->release_timer = 0;
    }
    if (e->call) {
        kube_cancel(e->call);
        e->call = NULL;
    }
    void (*done)(void *) = e->release_done;
    e->release_done = NULL;
    if (done)
        done(e->release_ud);
}

static void on_released(void *ud, kube_result *res)
{
    leader_elector *e = ud;
    e->call = NULL;
    if (kube_result_ok(res))
        log_lease(KL_LOG_INFO, e, "released");
    else
        log_api_error(e, "leader election: cannot release the lease", res);
    release_finish(e);
}

static void on_release_timeout(loop *l, void *ud)
{
    (void)l;
    leader_elector *e = ud;
    e->release_timer = 0;
    kl_log(KL_LOG_WARN, "leader election: gave up releasing the lease", NULL);
    release_finish(e);
}

/* client-go's release(): holder "", 1 s, renewTime now, transitions kept. */
static void release_write(leader_elector *e)
{
    if (!e->leading || e->call) {
        if (!e->call)
            release_finish(e);
        return;
    }
    e->leading = 0;
    metrics_leader_status(e->name, 0);
    if (e->deadline_timer) {
        loop_timer_cancel(e->l, e->deadline_timer);
        e->deadline_timer = 0;
    }
    char now[32];
    now_rfc3339(now);
    leader_record rec = {0};
    rec.holder = "";
    rec.lease_seconds = 1;
    rec.acquire_time = now;
    rec.renew_time = now;
    rec.transitions = e->observed.transitions;
    kl_buf body = KL_BUF_INIT;
    kube_write_opts wo = {0};
    wo.field_manager = "klua";
    if (leader_lease_json(e->metadata.data, e->ns, e->name, &rec, &body) == 0)
        e->call = kube_update(e->kc, &e->res, e->ns, e->name, body.data, body.len, &wo,
                              on_released, e);
    kl_buf_free(&body);
    if (!e->call)
        release_finish(e);
}

void leader_release(leader_elector *e, void (*done)(void *ud), void *ud)
{
    if (!e || e->releasing) {
        if (done)
            done(ud);
        return;
    }
    e->releasing = 1;
    e->stopped = 1;
    e->release_done = done;
    e->release_ud = ud;
    if (e->try_timer) {
        loop_timer_cancel(e->l, e->try_timer);
        e->try_timer = 0;
    }
    if (e->call) {
        /* An attempt is on its way: its answer decides whether there is
         * anything to release (attempt_done calls release_write). */
        e->release_timer = loop_timer_add(e->l, RELEASE_TIMEOUT_MS, on_release_timeout, e);
        return;
    }
    if (!e->leading) {
        release_finish(e);
        return;
    }
    e->release_timer = loop_timer_add(e->l, RELEASE_TIMEOUT_MS, on_release_timeout, e);
    release_write(e);
}

void leader_free(leader_elector *e)
{
    if (!e)
        return;
    if (e->call)
        kube_cancel(e->call);
    if (e->try_timer)
        loop_timer_cancel(e->l, e->try_timer);
    if (e->deadline_timer)
        loop_timer_cancel(e->l, e->deadline_timer);
    if (e->release_timer)
        loop_timer_cancel(e->l, e->release_timer);
    kube_resource_free(&e->res);
    leader_record_free(&e->observed);
    leader_record_free(&e->pending);
    kl_buf_free(&e->metadata);
    free(e->ns);
    free(e->name);
    free(e->identity);
    free(e);
}
