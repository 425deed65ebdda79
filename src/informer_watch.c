/* informer_watch.c - the reflector's state machine: watch, relist, backoff.
 *
 * Provides: (informer_int.h) the WATCH from the last resourceVersion, with
 * bookmarks and a random 5-10 minute timeout, and the streaming list (a
 * WATCH with sendInitialEvents whose initial-events-end bookmark ends the
 * sync, the same stream going on as the watch). The states: LISTING ->
 * WATCHING -> (watch ended) WATCHING again from the last resourceVersion,
 * or LISTING again after 410 Gone, or WAITING (backoff: 800 ms doubling to
 * 30 s with jitter, reset after 2 minutes of health) after an error. A
 * server that refuses the streaming list (4xx) gets paged LISTs from then
 * on. 400/403/404 runs reach the failed listeners.
 * Uses: informer_int, kube, loop, store, watchframe (events), metrics,
 * health, util (jitter), log.
 */
#include "informer_int.h"

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_START_MS 800
#define BACKOFF_MAX_MS 30000
#define HEALTHY_RESET_MS 120000
#define SHORT_WATCH_MS 1000

static void on_backoff_timer(loop *l, void *ud)
{
    (void)l;
    informer *inf = ud;
    inf->timer = 0;
    if (inf->state != INF_WAITING)
        return;
    if (inf->last_rv && !inf->relisting && inf->synced)
        informer_start_watch(inf);
    else
        informer_start_list(inf);
}

/* Tell the failed listeners about a 400/403/404, once per run of them. */
void informer_report_failure(informer *inf, const kube_result *res)
{
    long code = res->http_code;
    if ((code != 400 && code != 403 && code != 404) || inf->failure_reported)
        return;
    inf->failure_reported = 1;
    for (failed_listener *l = inf->failed_listeners; l; l = l->next)
        l->cb(l->ud, inf, code, res->message[0] ? res->message : res->reason);
}

void informer_retry_later(informer *inf, const char *why)
{
    loop *l = kube_client_loop(inf->client);
    if (inf->backoff_ms == 0)
        inf->backoff_ms = BACKOFF_START_MS;
    else if (inf->backoff_ms < BACKOFF_MAX_MS)
        inf->backoff_ms *= 2;
    if (inf->backoff_ms > BACKOFF_MAX_MS)
        inf->backoff_ms = BACKOFF_MAX_MS;
    /* jitter: up to +100% as client-go's wait.Jitter(1.0) */
    uint64_t delay = inf->backoff_ms + kl_rand_below(inf->backoff_ms + 1);
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    char ms[32];
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)delay);
    kl_log(KL_LOG_WARN, "watch or list failed, retrying", "resource", inf->res.resource,
           "reason", why, "retry_ms", ms, NULL);
    inf->state = INF_WAITING;
    health_informer_failed(inf, inf->metric_res);
    inf->timer = loop_timer_add(l, delay, on_backoff_timer, inf);
}

void informer_set_rv(informer *inf, const char *rv)
{
    if (!rv || !*rv)
        return;
    char *c = strdup(rv);
    if (!c)
        return;
    free(inf->last_rv);
    inf->last_rv = c;
}

static void on_watch_event(void *ud, const watch_event *ev)
{
    informer *inf = ud;
    kl_err err = {0};
    inf->watch_events++;
    inf->failure_reported = 0;
    health_informer_ok(inf);
    switch (ev->type) {
    case WATCH_ADDED:
    case WATCH_MODIFIED:
    case WATCH_DELETED: {
        /* An undecodable event may still hold an object store.c can decode
         * (the event adds one level of nesting): try it first. */
        store_obj *o = ev->object_tok >= 0 ? informer_obj_from_tokens(inf, &ev->doc, ev->object_tok, &err)
                                           : informer_obj_from_raw(inf, ev->object, ev->object_len, &err);
        if (!o) {
            watchframe_ident id;
            informer_skip_object(inf, ev->object, ev->object_len, ev->undecodable ? ev->message : err.msg,
                        &id);
            informer_set_rv(inf, id.resource_version);
            char *key = informer_ident_key(&id);
            if (key && ev->type == WATCH_DELETED)
                informer_apply_delete(inf, key, NULL);
            else if (key && inf->streaming && inf->relisting)
                informer_keyset_add(&inf->seen, key); /* as a LIST page does: the older version stays */
            free(key);
            watchframe_ident_free(&id);
        } else if (ev->type == WATCH_DELETED) {
            informer_set_rv(inf, o->rv);
            informer_apply_delete(inf, o->key, o);
            store_obj_free(o);
        } else {
            informer_set_rv(inf, o->rv);
            if (inf->streaming && inf->relisting)
                informer_keyset_add(&inf->seen, o->key);
            informer_apply_upsert(inf, o);
        }
        informer_note_size(inf);
        break;
    }
    case WATCH_BOOKMARK:
        informer_set_rv(inf, ev->resource_version);
        if (inf->streaming && ev->initial_events_end) {
            /* the streaming list is complete: synced, and the same stream
             * goes on as the watch */
            inf->streaming = 0;
            informer_finish_sync(inf);
        }
        break;
    case WATCH_ERROR:
        if (ev->code == 410) {
            kl_log(KL_LOG_INFO, "watch expired (410 Gone), relisting", "resource",
                   inf->res.resource, NULL);
            inf->relisting = 1;
            /* done follows; it sees relisting and lists again */
        } else {
            kl_log(KL_LOG_WARN, "watch error", "resource", inf->res.resource, "message",
                   ev->message ? ev->message : "", NULL);
        }
        break;
    }
}

static void on_watch_done(void *ud, kube_result *res)
{
    informer *inf = ud;
    inf->call = NULL;
    metrics_informer_watch_restart(inf->metric_res);
    uint64_t now = loop_now_ms(kube_client_loop(inf->client));
    if (inf->streaming) {
        inf->streaming = 0;
        if (!kube_result_ok(res) && res->http_code >= 400 && res->http_code < 500 &&
            res->http_code != 403 && res->http_code != 429) {
            /* a server without the streaming list refuses its parameters:
             * paged LIST from now on, at once */
            kl_log(KL_LOG_INFO, "streaming list refused, using paged LIST", "resource",
                   inf->res.resource, "reason", res->message[0] ? res->message : res->reason,
                   NULL);
            inf->watch_list = 0;
            informer_keyset_clear(&inf->seen);
            informer_start_list(inf);
            return;
        }
        if (kube_result_ok(res) && !kube_result_is(res, "Gone") &&
            !kube_result_is(res, "Expired")) {
            informer_retry_later(inf, "the streaming list ended before its initial events did");
            return;
        }
    }
    if (inf->relisting || kube_result_is(res, "Gone") || kube_result_is(res, "Expired")) {
        inf->relisting = 1;
        inf->backoff_ms = 0;
        informer_start_list(inf);
        return;
    }
    if (!kube_result_ok(res)) {
        char why[160];
        snprintf(why, sizeof why, "watch: %.150s", res->message[0] ? res->message : res->reason);
        informer_report_failure(inf, res);
        informer_retry_later(inf, why);
        return;
    }
    /* A watch that ends at once without events is an error in disguise. */
    if (inf->watch_events == 0 && now - inf->healthy_since < SHORT_WATCH_MS) {
        informer_retry_later(inf, "watch closed immediately");
        return;
    }
    if (now - inf->healthy_since >= HEALTHY_RESET_MS)
        inf->backoff_ms = 0;
    informer_start_watch(inf);
}

void informer_start_watch(informer *inf)
{
    inf->state = INF_WATCHING;
    inf->watch_events = 0;
    inf->healthy_since = loop_now_ms(kube_client_loop(inf->client));
    kube_watch_opts o = {0};
    o.label_selector = inf->selector;
    o.resource_version = inf->last_rv;
    o.allow_bookmarks = 1;
    o.timeout_seconds = 300 + (int)kl_rand_below(300);
    health_informer_attempt(inf);
    inf->call = kube_watch_resource(inf->client, &inf->res, inf->ns, &o, on_watch_event,
                                    on_watch_done, inf);
    if (!inf->call)
        informer_retry_later(inf, "watch could not start");
}

/* The streaming list: a watch whose initial events are the current state,
 * ended by a bookmark annotated k8s.io/initial-events-end; from
 * resourceVersion unset, it is as fresh as a quorum LIST. */
void informer_start_watch_list(informer *inf)
{
    inf->state = INF_LISTING;
    inf->streaming = 1;
    inf->watch_events = 0;
    inf->healthy_since = loop_now_ms(kube_client_loop(inf->client));
    kube_watch_opts o = {0};
    o.label_selector = inf->selector;
    o.allow_bookmarks = 1;
    o.send_initial_events = 1;
    o.timeout_seconds = 300 + (int)kl_rand_below(300);
    health_informer_attempt(inf);
    inf->call = kube_watch_resource(inf->client, &inf->res, inf->ns, &o, on_watch_event,
                                    on_watch_done, inf);
    if (!inf->call) {
        inf->streaming = 0;
        informer_retry_later(inf, "streaming list could not start");
    }
}
