/* discovery.c - one asynchronous discovery service with one cache (see
 * discovery.h).
 *
 * Provides: discovery_new/free, discovery_find, discovery_find_resource,
 * discovery_lookup/cancel, discovery_get_stats.
 * Uses: kube (kube_request), rest (kube_resource), json (APIResourceList),
 * loop (timers: deferred answers, rate-bounded refreshes), util (FNV-1a),
 * buf, err.
 *
 * Shape: one gv_entry per group version asked about, holding its current
 * records and the lookups waiting for its next fetch; one hash map from
 * string keys to values serves every index: "g\x1fGV" -> gv_entry,
 * "k\x1fGV\x1fKIND" and "r\x1fGV\x1fRESOURCE" -> kube_resource. Records live
 * in d->records until discovery_free, so pointers handed out stay valid
 * across refreshes. Answers from the cache are delivered from a zero-delay
 * timer (d->ready), so a callback never runs inside discovery_lookup.
 */
#include "discovery.h"

#include "json.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 700

/* ---- a small chained hash map: string keys, borrowed values ---- */

typedef struct map_node {
    uint64_t h;
    char *key;            /* owned */
    void *val;            /* borrowed */
    struct map_node *next;
} map_node;

typedef struct map {
    map_node **b;
    size_t nb, n;
} map;

static map_node **map_slot(const map *m, const char *key, uint64_t h)
{
    map_node **p = &m->b[h & (m->nb - 1)];
    while (*p && ((*p)->h != h || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

static void *map_get(const map *m, const char *key)
{
    if (!m->nb)
        return NULL;
    map_node **p = map_slot(m, key, kl_fnv1a(key, strlen(key)));
    return *p ? (*p)->val : NULL;
}

static int map_grow(map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    map_node **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        while (m->b[i]) {
            map_node *n = m->b[i];
            m->b[i] = n->next;
            n->next = b[n->h & (nb - 1)];
            b[n->h & (nb - 1)] = n;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

/* Insert or replace. */
static int map_put(map *m, const char *key, void *val)
{
    if ((m->n + 1 > m->nb * 2 || !m->nb) && map_grow(m) != 0)
        return -1;
    uint64_t h = kl_fnv1a(key, strlen(key));
    map_node **p = map_slot(m, key, h);
    if (*p) {
        (*p)->val = val;
        return 0;
    }
    map_node *n = calloc(1, sizeof *n);
    if (!n || !(n->key = strdup(key))) {
        free(n);
        return -1;
    }
    n->h = h;
    n->val = val;
    *p = n;
    m->n++;
    return 0;
}

static void map_del(map *m, const char *key)
{
    if (!m->nb)
        return;
    map_node **p = map_slot(m, key, kl_fnv1a(key, strlen(key)));
    if (*p) {
        map_node *n = *p;
        *p = n->next;
        free(n->key);
        free(n);
        m->n--;
    }
}

static void map_free(map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        while (m->b[i]) {
            map_node *n = m->b[i];
            m->b[i] = n->next;
            free(n->key);
            free(n);
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* ---- state ---- */

typedef struct gv_entry {
    struct discovery *d;
    char *gv, *group, *version;    /* owned; group "" for the core group */
    const kube_resource **res;     /* current records (owned array, borrowed records) */
    size_t n;
    int fetched;                   /* a fetch has completed: res is an answer */
    uint64_t last_start_ms;        /* when the last fetch was sent, 0 = never */
    kube_call *call;               /* the fetch in flight */
    loop_timer_id timer;           /* a fetch waiting for the rate bound */
    discovery_req *waiters;        /* answered by the next completed fetch */
    uint64_t retry_ms;             /* backoff for patient lookups after a transient failure */
    int warned;                    /* "waiting for the API server" logged since the last answer */
    struct gv_entry *next;         /* every entry, for discovery_free */
} gv_entry;

struct discovery_req {
    discovery *d;
    gv_entry *e;                   /* NULL for an answer decided at once */
    char *kind;                    /* owned */
    discovery_cb cb;
    void *ud;
    const kube_resource *r;        /* a decided answer (on d->ready) */
    int patient;                   /* a transient failure retries instead of answering */
    kl_err err;
    discovery_req *next, **pprev;  /* on e->waiters or d->ready */
};

struct discovery {
    kube_client *c;
    loop *l;
    uint64_t refresh_ms;
    map idx;
    gv_entry *entries;
    kube_resource **records;       /* every record ever made; owned */
    size_t nrecords, caprecords;
    discovery_req *ready;          /* answers waiting for ready_timer */
    loop_timer_id ready_timer;
    discovery_stats stats;
};

static void req_link(discovery_req **head, discovery_req *r)
{
    r->next = *head;
    r->pprev = head;
    if (*head)
        (*head)->pprev = &r->next;
    *head = r;
}

static void req_unlink(discovery_req *r)
{
    if (!r->pprev)
        return;
    *r->pprev = r->next;
    if (r->next)
        r->next->pprev = r->pprev;
    r->next = NULL;
    r->pprev = NULL;
}

/* Move every request of *from to *batch in the order they were made (lists
 * are built at the head), so answers come first in, first out. *batch must
 * stay where it is while it is walked: a callback may cancel a request of
 * it, which unlinks it through pprev. */
static void take_in_order(discovery_req **from, discovery_req **batch)
{
    discovery_req *r = *from, *rev = NULL;
    *from = NULL;
    while (r) {
        discovery_req *next = r->next;
        r->next = rev;
        rev = r;
        r = next;
    }
    *batch = rev;
    for (discovery_req **pp = batch; *pp; pp = &(*pp)->next)
        (*pp)->pprev = pp;
}

static void req_free(discovery_req *r)
{
    req_unlink(r);
    free(r->kind);
    free(r);
}

/* ---- keys ---- */

static int key_of(char *out, char tag, const char *gv, const char *name)
{
    int n = name ? snprintf(out, KEY_MAX, "%c\x1f%s\x1f%s", tag, gv, name)
                 : snprintf(out, KEY_MAX, "%c\x1f%s", tag, gv);
    return n > 0 && n < KEY_MAX ? 0 : -1;
}

static gv_entry *entry_get(const discovery *d, const char *api_version)
{
    char key[KEY_MAX];
    return key_of(key, 'g', api_version, NULL) == 0 ? map_get(&d->idx, key) : NULL;
}

static const kube_resource *find_by(discovery *d, char tag, const char *av, const char *name)
{
    char key[KEY_MAX];
    if (!av || !name || key_of(key, tag, av, name) != 0)
        return NULL;
    return map_get(&d->idx, key);
}

const kube_resource *discovery_find(discovery *d, const char *api_version, const char *kind)
{
    return find_by(d, 'k', api_version, kind);
}

const kube_resource *discovery_find_resource(discovery *d, const char *api_version,
                                             const char *resource)
{
    return find_by(d, 'r', api_version, resource);
}

discovery_stats discovery_get_stats(const discovery *d) { return d->stats; }

/* ---- new / free ---- */

discovery *discovery_new(kube_client *c, const discovery_opts *o, kl_err *err)
{
    discovery *d = calloc(1, sizeof *d);
    if (!d) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    d->c = c;
    d->l = kube_client_loop(c);
    d->refresh_ms = o && o->refresh_ms ? o->refresh_ms : DISCOVERY_REFRESH_MS;
    return d;
}

static void entry_free(gv_entry *e)
{
    if (e->call)
        kube_cancel(e->call);
    if (e->timer)
        loop_timer_cancel(e->d->l, e->timer);
    while (e->waiters)
        req_free(e->waiters);
    free(e->res);
    free(e->gv);
    free(e->group);
    free(e->version);
    free(e);
}

void discovery_free(discovery *d)
{
    if (!d)
        return;
    if (d->ready_timer)
        loop_timer_cancel(d->l, d->ready_timer);
    while (d->ready)
        req_free(d->ready);
    while (d->entries) {
        gv_entry *e = d->entries;
        d->entries = e->next;
        entry_free(e);
    }
    map_free(&d->idx);
    for (size_t i = 0; i < d->nrecords; i++) {
        kube_resource_free(d->records[i]);
        free(d->records[i]);
    }
    free(d->records);
    free(d);
}

/* ---- answers ---- */

static void on_ready(loop *l, void *ud)
{
    (void)l;
    discovery *d = ud;
    d->ready_timer = 0;
    /* Take the batch: callbacks may add new answers (next turn) or cancel
     * requests of this batch (they unlink themselves from it). */
    discovery_req *batch;
    take_in_order(&d->ready, &batch);
    while (batch) {
        discovery_req *r = batch;
        req_unlink(r);
        r->cb(r->ud, r->r, r->r ? NULL : &r->err);
        free(r->kind);
        free(r);
    }
}

/* Answer r from the next loop turn. */
static void defer_answer(discovery_req *r)
{
    discovery *d = r->d;
    req_unlink(r);
    req_link(&d->ready, r);
    if (!d->ready_timer)
        d->ready_timer = loop_timer_add(d->l, 0, on_ready, d);
}

static void set_not_found(kl_err *err, const char *kind, const char *av)
{
    kl_err_set(err, KL_EINVAL, "no resource for kind %s in %s (is the CRD installed?)", kind, av);
}

/* ---- parsing an APIResourceList ---- */

static kube_resource *record_new(const gv_entry *e, const json_doc *doc, int t)
{
    kube_resource *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    int ns = json_obj_get(doc, t, "namespaced");
    r->resource = json_str_dup(doc, json_obj_get(doc, t, "name"));
    r->kind = json_str_dup(doc, json_obj_get(doc, t, "kind"));
    r->group = strdup(e->group);
    r->version = strdup(e->version);
    r->namespaced = ns >= 0 && doc->toks[ns].type == JSON_TRUE;
    if (!r->resource || !r->kind || !r->group || !r->version) {
        kube_resource_free(r);
        free(r);
        return NULL;
    }
    return r;
}

static int same_record(const kube_resource *a, const kube_resource *b)
{
    return a && b && !strcmp(a->resource, b->resource) && !strcmp(a->kind, b->kind) &&
           a->namespaced == b->namespaced && a->has_status == b->has_status;
}

static int records_add(discovery *d, kube_resource *r)
{
    if (d->nrecords == d->caprecords) {
        size_t cap = d->caprecords ? d->caprecords * 2 : 64;
        kube_resource **n = realloc(d->records, cap * sizeof *n);
        if (!n)
            return -1;
        d->records = n;
        d->caprecords = cap;
    }
    d->records[d->nrecords++] = r;
    return 0;
}

/* Parse doc into fresh records (res, *n; owned by the caller until
 * committed). Subresources ("x/status") are joined through a name map of
 * this list, not by scanning it again per resource. */
static int parse_list(const gv_entry *e, const json_doc *doc, kube_resource ***out, size_t *n)
{
    int list = json_obj_get(doc, 0, "resources");
    size_t cap = list >= 0 ? (size_t)doc->toks[list].size : 0;
    kube_resource **res = calloc(cap ? cap : 1, sizeof *res);
    map names = {0};
    size_t k = 0;
    if (!res)
        return -1;
    for (int t = json_first(doc, list); t >= 0; t = json_next(doc, t)) {
        int nt = json_obj_get(doc, t, "name");
        size_t len = 0;
        const char *raw = nt >= 0 ? json_raw(doc, nt, &len) : NULL;
        if (!raw || memchr(raw, '/', len) || doc->toks[t].type != JSON_OBJECT)
            continue;
        kube_resource *r = record_new(e, doc, t);
        if (!r)
            goto oom;
        res[k++] = r;
        if (!map_get(&names, r->resource) && map_put(&names, r->resource, r) != 0)
            goto oom;
    }
    for (int t = json_first(doc, list); t >= 0; t = json_next(doc, t)) {
        char *name = json_str_dup(doc, json_obj_get(doc, t, "name"));
        char *slash = name ? strchr(name, '/') : NULL;
        if (slash && !strcmp(slash, "/status")) {
            *slash = '\0';
            kube_resource *r = map_get(&names, name);
            if (r)
                r->has_status = 1;
        }
        free(name);
    }
    map_free(&names);
    *out = res;
    *n = k;
    return 0;
oom:
    map_free(&names);
    for (size_t i = 0; i < k; i++) {
        kube_resource_free(res[i]);
        free(res[i]);
    }
    free(res);
    return -1;
}

/* Make res (n fresh records) the entry's answer: unchanged records keep
 * their old pointers, the indexes point at the new set. */
static int commit_list(gv_entry *e, kube_resource **res, size_t n)
{
    discovery *d = e->d;
    char key[KEY_MAX];
    const kube_resource **cur = calloc(n ? n : 1, sizeof *cur);
    if (!cur)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        kube_resource *r = res[i];
        const kube_resource *old = discovery_find(d, e->gv, r->kind);
        if (same_record(old, r)) {
            kube_resource_free(r);
            free(r);
            res[i] = NULL;
            cur[k++] = old;
        } else if (records_add(d, r) == 0) {
            res[i] = NULL;
            cur[k++] = r;
        } else {
            goto oom;
        }
    }
    for (size_t i = 0; i < e->n; i++) {
        if (key_of(key, 'k', e->gv, e->res[i]->kind) == 0)
            map_del(&d->idx, key);
        if (key_of(key, 'r', e->gv, e->res[i]->resource) == 0)
            map_del(&d->idx, key);
    }
    free(e->res);
    e->res = cur;
    e->n = k;
    /* The first resource of a kind wins, as the list orders them. */
    for (size_t i = k; i-- > 0;) {
        if (key_of(key, 'k', e->gv, cur[i]->kind) != 0 ||
            map_put(&d->idx, key, (void *)cur[i]) != 0 ||
            key_of(key, 'r', e->gv, cur[i]->resource) != 0 ||
            map_put(&d->idx, key, (void *)cur[i]) != 0)
            return -1;   /* a lookup of this one misses and is refreshed later */
    }
    return 0;
oom:
    for (size_t i = 0; i < n; i++) {
        if (res[i]) {
            kube_resource_free(res[i]);
            free(res[i]);
        }
    }
    free(cur);
    return -1;
}

/* ---- fetching ---- */

static void start_fetch(gv_entry *e);

static void on_fetch_timer(loop *l, void *ud)
{
    (void)l;
    gv_entry *e = ud;
    e->timer = 0;
    start_fetch(e);
}

/* Fetch e now, or when the rate bound allows; nothing if already coming. */
static void schedule_fetch(gv_entry *e)
{
    if (e->call || e->timer)
        return;
    uint64_t now = loop_now_ms(e->d->l);
    uint64_t at = e->last_start_ms ? e->last_start_ms + e->d->refresh_ms : now;
    if (at <= now)
        start_fetch(e);
    else
        e->timer = loop_timer_add(e->d->l, at - now, on_fetch_timer, e);
}

/* client-go's reflector backoff: 800 ms doubling to 30 s, with up to +100%
 * jitter, capped at 30 s. */
#define RETRY_START_MS 800
#define RETRY_MAX_MS 30000

/* Patient lookups kept after a transient failure wait for a retry. */
static void schedule_retry(gv_entry *e, const kl_err *err)
{
    e->retry_ms = e->retry_ms ? e->retry_ms * 2 : RETRY_START_MS;
    if (e->retry_ms > RETRY_MAX_MS)
        e->retry_ms = RETRY_MAX_MS;
    uint64_t delay = e->retry_ms + kl_rand_below(e->retry_ms + 1);
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    if (!e->warned) {
        char ms[32];
        snprintf(ms, sizeof ms, "%llu", (unsigned long long)delay);
        kl_log(KL_LOG_WARN, "waiting for the API server: discovery failed, retrying",
               "groupVersion", e->gv, "error", err->msg, "retry_ms", ms, NULL);
        e->warned = 1;
    }
    if (!e->call && !e->timer)
        e->timer = loop_timer_add(e->d->l, delay, on_fetch_timer, e);
}

/* Answer every lookup waiting on e: from its records, or with err. With
 * transient set (no answer, 429, 5xx), patient lookups stay and retry. */
static void answer_waiters(gv_entry *e, const kl_err *err, int transient)
{
    discovery_req *batch, *kept = NULL;
    take_in_order(&e->waiters, &batch);
    while (batch) {
        discovery_req *r = batch;
        req_unlink(r);
        if (err && transient && r->patient) {
            req_link(&kept, r);
            continue;
        }
        const kube_resource *res = err ? NULL : discovery_find(e->d, e->gv, r->kind);
        kl_err nf = {0};
        if (!err && !res)
            set_not_found(&nf, r->kind, e->gv);
        r->cb(r->ud, res, res ? NULL : err ? err : &nf);
        free(r->kind);
        free(r);
    }
    if (!kept)
        return;
    while (kept) {
        discovery_req *r = kept;
        req_unlink(r);
        req_link(&e->waiters, r);
    }
    schedule_retry(e, err);
}

static void on_fetched(void *ud, kube_result *res)
{
    gv_entry *e = ud;
    e->call = NULL;
    const kube_rest_config *k = kube_client_config(e->d->c);
    kl_err err = {0};
    int failed = 0;
    if (kube_result_ok(res)) {
        json_doc doc = {0};
        kl_err perr = {0};
        kube_resource **list = NULL;
        size_t n = 0;
        if (json_parse(&doc, res->body.data ? res->body.data : "", res->body.len, &perr) != 0 ||
            doc.toks[0].type != JSON_OBJECT) {
            failed = kl_err_set(&err, KL_EAPI, "discovery GET %s%s%s: not a JSON object: %s",
                                k->server, *e->group ? "/apis/" : "/api/", e->gv, perr.msg);
        } else if (parse_list(e, &doc, &list, &n) != 0 || commit_list(e, list, n) != 0) {
            failed = kl_err_set(&err, KL_ENOMEM, "discovery: out of memory");
        }
        free(list);
        json_doc_free(&doc);
    } else if (res->http_code == 404) {
        /* Not served (a group that does not exist, a CRD being deleted):
         * an empty answer, cached like any other. */
        if (commit_list(e, NULL, 0) != 0)
            failed = kl_err_set(&err, KL_ENOMEM, "discovery: out of memory");
    } else {
        failed = kl_err_set(&err, res->http_code == 0 ? KL_EIO : KL_EAPI,
                            "discovery GET %s%s%s failed: %s", k->server,
                            *e->group ? "/apis/" : "/api/", e->gv, res->message);
    }
    int transient = failed && (res->http_code == 0 || res->http_code == 429 ||
                               res->http_code >= 500);
    if (!failed) {
        e->fetched = 1;
        e->retry_ms = 0;
        e->warned = 0;
    }
    answer_waiters(e, failed ? &err : NULL, transient);
}

static void start_fetch(gv_entry *e)
{
    kl_buf path = KL_BUF_INIT;
    e->last_start_ms = loop_now_ms(e->d->l);
    if (kl_buf_printf(&path, *e->group ? "/apis/%s" : "/api/%s", e->gv) == 0)
        e->call = kube_request(e->d->c, "GET", path.data, NULL, NULL, 0, on_fetched, e);
    kl_buf_free(&path);
    if (e->call) {
        e->d->stats.fetches++;
        return;
    }
    kl_err err = {0};
    kl_err_set(&err, KL_ENOMEM, "discovery: cannot start a request: out of memory");
    answer_waiters(e, &err, 0);
}

/* ---- lookups ---- */

/* Split "group/version" or "version"; 0 if valid. */
static int split_api_version(const char *av, char *group, size_t gsz, char *version, size_t vsz)
{
    const char *slash = strchr(av, '/');
    const char *v = slash ? slash + 1 : av;
    size_t glen = slash ? (size_t)(slash - av) : 0;
    if ((slash && glen == 0) || !*v || strchr(v, '/') || glen >= gsz || strlen(v) >= vsz)
        return -1;
    for (const char *p = av; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '/'))
            return -1;
    memcpy(group, av, glen);
    group[glen] = '\0';
    snprintf(version, vsz, "%s", v);
    return 0;
}

static gv_entry *entry_make(discovery *d, const char *av, const char *group, const char *version)
{
    char key[KEY_MAX];
    gv_entry *e = calloc(1, sizeof *e);
    if (!e || key_of(key, 'g', av, NULL) != 0)
        goto fail;
    e->d = d;
    e->gv = strdup(av);
    e->group = strdup(group);
    e->version = strdup(version);
    if (!e->gv || !e->group || !e->version || map_put(&d->idx, key, e) != 0)
        goto fail;
    e->next = d->entries;
    d->entries = e;
    return e;
fail:
    if (e) {
        free(e->gv);
        free(e->group);
        free(e->version);
        free(e);
    }
    return NULL;
}

discovery_req *discovery_lookup(discovery *d, const char *api_version, const char *kind,
                                discovery_cb cb, void *ud)
{
    discovery_req *r = calloc(1, sizeof *r);
    if (!r || !(r->kind = strdup(kind ? kind : ""))) {
        free(r);
        return NULL;
    }
    r->d = d;
    r->cb = cb;
    r->ud = ud;
    char group[256], version[64];
    if (!api_version || split_api_version(api_version, group, sizeof group, version,
                                          sizeof version) != 0) {
        kl_err_set(&r->err, KL_EINVAL, "invalid apiVersion \"%.200s\"",
                   api_version ? api_version : "");
        defer_answer(r);
        return r;
    }
    gv_entry *e = entry_get(d, api_version);
    if (!e && !(e = entry_make(d, api_version, group, version))) {
        free(r->kind);
        free(r);
        return NULL;
    }
    if (e->fetched && (r->r = discovery_find(d, api_version, r->kind)) != NULL) {
        d->stats.hits++;
        defer_answer(r);
        return r;
    }
    /* Not fetched yet, or a kind the cached answer lacks: the next fetch. */
    d->stats.waits++;
    r->e = e;
    req_link(&e->waiters, r);
    schedule_fetch(e);
    return r;
}

discovery_req *discovery_lookup_patient(discovery *d, const char *api_version, const char *kind,
                                        discovery_cb cb, void *ud)
{
    discovery_req *r = discovery_lookup(d, api_version, kind, cb, ud);
    if (r)
        r->patient = 1;
    return r;
}

void discovery_cancel(discovery_req *r)
{
    if (!r)
        return;
    gv_entry *e = r->e;
    req_free(r);
    /* Nobody waits any more: a scheduled (not yet sent) refresh can go. */
    if (e && !e->waiters && e->timer) {
        loop_timer_cancel(e->d->l, e->timer);
        e->timer = 0;
    }
}
