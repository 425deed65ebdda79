/* informer_list.c - the paged LIST.
 *
 * Provides: (informer_int.h) informer_start_list: a LIST in pages of 500
 * (RV unset: a consistent read), following continue tokens, then the
 * watch from the list's resourceVersion; the streaming list instead when
 * it is on. A LIST page is decoded once and its tokens serve every item;
 * a page that does not decode (an item too deep, say) is read item by item
 * (watchframe_item), so that one item json.c cannot decode costs that item
 * only. An expired continue token starts over; other errors back off.
 * Uses: informer_int, kube, store, json, watchframe, metrics, health.
 */
#include "informer_int.h"

#include "health.h"
#include "json.h"
#include "metrics.h"
#include "watchframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_PAGE 500

static void finish_list(informer *inf)
{
    json_doc_free(&inf->page);
    informer_finish_sync(inf);
    informer_start_watch(inf);
}

/* metadata.continue and metadata.resourceVersion of a LIST page, each
 * malloc'd or NULL. -1 when the page is not a JSON object with a decodable
 * metadata (or memory is short). */
static int list_page_meta(const char *body, size_t len, char **cont, char **rv)
{
    const char *meta;
    size_t mlen;
    json_doc d = {0};
    int rc = -1;
    *cont = *rv = NULL;
    int found = watchframe_member(body, len, "metadata", &meta, &mlen);
    if (found == 1)
        return 0;
    if (found < 0 || json_parse(&d, meta, mlen, NULL) != 0)
        goto done;
    int c = json_obj_get(&d, 0, "continue"), r = json_obj_get(&d, 0, "resourceVersion");
    if ((c >= 0 && d.toks[c].type == JSON_STRING && !(*cont = json_str_dup(&d, c))) ||
        (r >= 0 && d.toks[r].type == JSON_STRING && !(*rv = json_str_dup(&d, r))))
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        free(*cont);
        free(*rv);
        *cont = *rv = NULL;
    }
    json_doc_free(&d);
    return rc;
}

/* One item of a LIST page: into the store, or skipped when it cannot be
 * cached (its key, when readable, still counts as seen, so a relist keeps
 * its older cached version). o NULL: raw[0..rlen) and why say what failed. */
static void list_item(informer *inf, store_obj *o, const char *raw, size_t rlen,
                      const char *why)
{
    if (!o) {
        watchframe_ident id;
        informer_skip_object(inf, raw, rlen, why, &id);
        char *key = informer_ident_key(&id);
        if (key && inf->relisting)
            informer_keyset_add(&inf->seen, key);
        free(key);
        watchframe_ident_free(&id);
        return;
    }
    if (inf->relisting)
        informer_keyset_add(&inf->seen, o->key);
    informer_apply_upsert(inf, o);
}

/* The common case: the page decodes whole, and its tokens serve the page's
 * metadata and every item (one pass over the bytes). 1 when the page does
 * not decode (an item too deep, say): the shallow reader below takes over. */
static int list_page_tokens(informer *inf, const char *body, size_t len, char **cont, char **rv)
{
    json_doc *d = &inf->page;
    *cont = *rv = NULL;
    if (json_parse(d, body, len, NULL) != 0 || d->toks[0].type != JSON_OBJECT)
        return 1;
    int meta = json_obj_get(d, 0, "metadata");
    int c = json_obj_get(d, meta, "continue"), r = json_obj_get(d, meta, "resourceVersion");
    if ((c >= 0 && d->toks[c].type == JSON_STRING && !(*cont = json_str_dup(d, c))) ||
        (r >= 0 && d->toks[r].type == JSON_STRING && !(*rv = json_str_dup(d, r)))) {
        free(*cont);
        *cont = NULL;
        return -1;
    }
    int items = json_obj_get(d, 0, "items");
    if (items >= 0 && d->toks[items].type != JSON_ARRAY && d->toks[items].type != JSON_NULL) {
        free(*cont);
        free(*rv);
        *cont = *rv = NULL;
        return -1;
    }
    for (int it = json_first(d, items); it >= 0; it = json_next(d, it)) {
        kl_err err = {0};
        store_obj *o = informer_obj_from_tokens(inf, d, it, &err);
        size_t rlen;
        const char *raw = o ? NULL : json_raw(d, it, &rlen);
        list_item(inf, o, raw, o ? 0 : rlen, err.msg);
    }
    return 0;
}

/* Put every item of a LIST page in the store; an item that cannot be
 * decoded is skipped (its key, when readable, still counts as seen, so a
 * relist keeps its older cached version). -1 when the items array itself
 * is malformed. */
static int list_page_items(informer *inf, const char *body, size_t len)
{
    const char *items, *raw;
    size_t ilen, rlen, pos = 0;
    int found = watchframe_member(body, len, "items", &items, &ilen), more;
    if (found == 1)
        return 0; /* "items": omitted when empty by some servers */
    if (found < 0)
        return -1;
    if (ilen == 4 && !memcmp(items, "null", 4))
        return 0;
    while ((more = watchframe_item(items, ilen, &pos, &raw, &rlen)) == 0) {
        kl_err err = {0};
        store_obj *o = informer_obj_from_raw(inf, raw, rlen, &err);
        list_item(inf, o, raw, rlen, err.msg);
    }
    return more < 0 ? -1 : 0;
}

static void on_list_page(void *ud, kube_result *res)
{
    informer *inf = ud;
    inf->call = NULL;
    if (!kube_result_ok(res)) {
        if (kube_result_is(res, "Gone") || kube_result_is(res, "Expired")) {
            /* the continue token (or the RV) expired: start over, fresh */
            free(inf->continue_token);
            inf->continue_token = NULL;
            informer_keyset_clear(&inf->seen);
            informer_start_list(inf);
            return;
        }
        char why[160];
        snprintf(why, sizeof why, "list: %.150s", res->message[0] ? res->message : res->reason);
        informer_report_failure(inf, res);
        free(inf->continue_token);
        inf->continue_token = NULL;
        informer_retry_later(inf, why);
        return;
    }
    const char *body = res->body.data ? res->body.data : "";
    char *cont = NULL, *rv = NULL;
    int tk = list_page_tokens(inf, body, res->body.len, &cont, &rv);
    if (tk < 0) {
        informer_retry_later(inf, "list: the response's items are malformed");
        return;
    }
    if (tk == 1 && list_page_meta(body, res->body.len, &cont, &rv) != 0) {
        informer_retry_later(inf, "list: the response is not a list");
        return;
    }
    if (tk == 1 && list_page_items(inf, body, res->body.len) != 0) {
        free(cont);
        free(rv);
        informer_retry_later(inf, "list: the response's items are malformed");
        return;
    }
    informer_note_size(inf);
    free(inf->continue_token);
    inf->continue_token = (cont && *cont) ? cont : NULL;
    if (!inf->continue_token)
        free(cont);
    if (inf->continue_token) {
        free(rv);
        informer_start_list(inf);
        return;
    }
    informer_set_rv(inf, rv);
    free(rv);
    finish_list(inf);
}

void informer_start_list(informer *inf)
{
    inf->state = INF_LISTING;
    /* objects kept from before (a relist, or a first sync cut short) may
     * have vanished meanwhile */
    if (!inf->continue_token && (inf->synced || store_len(inf->store) > 0)) {
        inf->relisting = 1;
        if (inf->synced)
            metrics_informer_relist(inf->metric_res);
    }
    if (inf->watch_list && !inf->continue_token) {
        informer_start_watch_list(inf);
        return;
    }
    kube_list_opts o = {0};
    o.label_selector = inf->selector;
    o.limit = LIST_PAGE;
    o.continue_token = inf->continue_token;
    health_informer_attempt(inf);
    /* RV unset: a consistent (quorum) read, which pages properly. */
    inf->call = kube_list(inf->client, &inf->res, inf->ns, &o, on_list_page, inf);
    if (!inf->call)
        informer_retry_later(inf, "list could not start");
}
