/* rest.c - Kubernetes resources and verbs on top of kube_client (see rest.h).
 *
 * Provides: discovery (which group versions the server serves, from /api
 * and /apis, and each group version's resource list, all cached) mapping
 * apiVersion + kind to a kube_resource; path and query building; the verbs
 * as thin wrappers over kube_request and kube_watch.
 * Uses: kube (transport), json (discovery documents), buf, err.
 */
#include "rest.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One group version's resources, as discovered. */
typedef struct gv_entry {
    char *gv;                  /* "v1" or "group/version"; owned */
    kube_resource *res;        /* owned, n of them */
    size_t n;
    struct gv_entry *next;
} gv_entry;

struct kube_discovery {
    kube_client *c;
    int served_loaded;         /* /api and /apis were read */
    char **served;             /* group versions the server serves; owned */
    size_t nserved;
    gv_entry *gvs;             /* resource lists, fetched on demand */
};

/* ---- resources ---------------------------------------------------------- */

void kube_resource_free(kube_resource *r)
{
    if (!r)
        return;
    free(r->group);
    free(r->version);
    free(r->resource);
    free(r->kind);
    memset(r, 0, sizeof *r);
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

int kube_resource_copy(kube_resource *dst, const kube_resource *src)
{
    kube_resource t = {0};
    t.group = dup_or_empty(src->group);
    t.version = dup_or_empty(src->version);
    t.resource = dup_or_empty(src->resource);
    t.kind = dup_or_empty(src->kind);
    t.namespaced = src->namespaced;
    t.has_status = src->has_status;
    if (!t.group || !t.version || !t.resource || !t.kind) {
        kube_resource_free(&t);
        return -1;
    }
    *dst = t;
    return 0;
}

char *kube_resource_api_version(const kube_resource *r)
{
    kl_buf b = KL_BUF_INIT;
    int bad = 0;
    if (r->group && *r->group)
        bad |= kl_buf_printf(&b, "%s/", r->group);
    bad |= kl_buf_puts(&b, r->version ? r->version : "");
    if (bad) {
        kl_buf_free(&b);
        return NULL;
    }
    return kl_buf_take(&b);
}

int kube_resource_path(const kube_resource *r, const char *ns, const char *name,
                       const char *subresource, kl_buf *out)
{
    int bad = 0;
    if (!r->resource || !*r->resource || (subresource && *subresource && !(name && *name)))
        return -1;
    if (r->group && *r->group)
        bad |= kl_buf_printf(out, "/apis/%s/%s", r->group, r->version);
    else
        bad |= kl_buf_printf(out, "/api/%s", r->version);
    if (r->namespaced && ns && *ns) {
        bad |= kl_buf_puts(out, "/namespaces/");
        bad |= kl_buf_put_urlenc(out, ns);
    }
    bad |= kl_buf_putc(out, '/');
    bad |= kl_buf_puts(out, r->resource);
    if (name && *name) {
        bad |= kl_buf_putc(out, '/');
        bad |= kl_buf_put_urlenc(out, name);
    }
    if (subresource && *subresource) {
        bad |= kl_buf_putc(out, '/');
        bad |= kl_buf_puts(out, subresource);
    }
    return bad ? -1 : 0;
}

/* ---- queries ------------------------------------------------------------ */

static int q_add(kl_buf *b, int *first, const char *key, const char *value)
{
    if (!value)
        return 0;
    int bad = kl_buf_putc(b, *first ? '?' : '&');
    *first = 0;
    bad |= kl_buf_puts(b, key);
    bad |= kl_buf_putc(b, '=');
    bad |= kl_buf_put_urlenc(b, value);
    return bad;
}

static int q_add_long(kl_buf *b, int *first, const char *key, long v)
{
    char n[32];
    snprintf(n, sizeof n, "%ld", v);
    return q_add(b, first, key, n);
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

int kube_list_path(const kube_resource *r, const char *ns, const kube_list_opts *o, kl_buf *out)
{
    int first = 1, bad = kube_resource_path(r, ns, NULL, NULL, out);
    if (bad || !o)
        return bad;
    bad |= q_add(out, &first, "labelSelector", nonempty(o->label_selector));
    bad |= q_add(out, &first, "fieldSelector", nonempty(o->field_selector));
    if (o->limit > 0)
        bad |= q_add_long(out, &first, "limit", o->limit);
    bad |= q_add(out, &first, "continue", nonempty(o->continue_token));
    bad |= q_add(out, &first, "resourceVersion", o->resource_version);
    bad |= q_add(out, &first, "resourceVersionMatch", nonempty(o->resource_version_match));
    return bad ? -1 : 0;
}

int kube_watch_path(const kube_resource *r, const char *ns, const kube_watch_opts *o,
                    kl_buf *out)
{
    int first = 1, bad = kube_resource_path(r, ns, NULL, NULL, out);
    if (bad)
        return -1;
    bad |= q_add(out, &first, "watch", "1");
    if (o) {
        bad |= q_add(out, &first, "labelSelector", nonempty(o->label_selector));
        bad |= q_add(out, &first, "fieldSelector", nonempty(o->field_selector));
        bad |= q_add(out, &first, "resourceVersion", o->resource_version);
        if (o->allow_bookmarks)
            bad |= q_add(out, &first, "allowWatchBookmarks", "true");
        if (o->timeout_seconds > 0)
            bad |= q_add_long(out, &first, "timeoutSeconds", o->timeout_seconds);
        if (o->send_initial_events) {
            /* The server insists on this pairing. */
            bad |= q_add(out, &first, "sendInitialEvents", "true");
            bad |= q_add(out, &first, "resourceVersionMatch", "NotOlderThan");
        }
    }
    return bad ? -1 : 0;
}

int kube_write_path(const kube_resource *r, const char *ns, const char *name,
                    const kube_write_opts *o, int apply, kl_buf *out)
{
    int first = 1;
    int bad = kube_resource_path(r, ns, name, o ? o->subresource : NULL, out);
    if (bad)
        return -1;
    const char *fm = o && o->field_manager && *o->field_manager ? o->field_manager : "klua";
    bad |= q_add(out, &first, "fieldManager", fm);
    if (apply && o && o->force)
        bad |= q_add(out, &first, "force", "true");
    if (o && o->dry_run)
        bad |= q_add(out, &first, "dryRun", "All");
    return bad ? -1 : 0;
}

int kube_delete_body(const kube_delete_opts *o, kl_buf *out)
{
    if (!o)
        return 0;
    int bad = 0, any = 0;
    const char *pp = nonempty(o->propagation_policy);
    const char *uid = nonempty(o->precondition_uid), *rv = nonempty(o->precondition_rv);
    if (!pp && !uid && !rv && o->grace_period_seconds < 0)
        return 0;
    bad |= kl_buf_puts(out, "{\"apiVersion\":\"v1\",\"kind\":\"DeleteOptions\"");
    if (pp) {
        bad |= kl_buf_puts(out, ",\"propagationPolicy\":");
        bad |= json_escape_append(out, pp, strlen(pp));
    }
    if (o->grace_period_seconds >= 0)
        bad |= kl_buf_printf(out, ",\"gracePeriodSeconds\":%ld", o->grace_period_seconds);
    if (uid || rv) {
        bad |= kl_buf_puts(out, ",\"preconditions\":{");
        if (uid) {
            bad |= kl_buf_puts(out, "\"uid\":");
            bad |= json_escape_append(out, uid, strlen(uid));
            any = 1;
        }
        if (rv) {
            bad |= kl_buf_puts(out, any ? ",\"resourceVersion\":" : "\"resourceVersion\":");
            bad |= json_escape_append(out, rv, strlen(rv));
        }
        bad |= kl_buf_putc(out, '}');
    }
    bad |= kl_buf_putc(out, '}');
    return bad ? -1 : 0;
}

const char *kube_patch_content_type(kube_patch_type t)
{
    switch (t) {
    case KUBE_PATCH_JSON: return "application/json-patch+json";
    case KUBE_PATCH_STRATEGIC: return "application/strategic-merge-patch+json";
    case KUBE_PATCH_APPLY: return "application/apply-patch+yaml"; /* JSON is YAML */
    case KUBE_PATCH_MERGE:
    default: return "application/merge-patch+json";
    }
}

/* ---- verbs -------------------------------------------------------------- */

kube_call *kube_get(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                    const char *subresource, kube_done_cb done, void *ud)
{
    kl_buf p = KL_BUF_INIT;
    kube_call *call = NULL;
    if (kube_resource_path(r, ns, name, subresource, &p) == 0)
        call = kube_request(c, "GET", p.data, NULL, NULL, 0, done, ud);
    kl_buf_free(&p);
    return call;
}

kube_call *kube_list(kube_client *c, const kube_resource *r, const char *ns,
                     const kube_list_opts *o, kube_done_cb done, void *ud)
{
    kl_buf p = KL_BUF_INIT;
    kube_call *call = NULL;
    if (kube_list_path(r, ns, o, &p) == 0)
        call = kube_request(c, "GET", p.data, NULL, NULL, 0, done, ud);
    kl_buf_free(&p);
    return call;
}

kube_call *kube_create(kube_client *c, const kube_resource *r, const char *ns, const char *json,
                       size_t len, const kube_write_opts *o, kube_done_cb done, void *ud)
{
    kl_buf p = KL_BUF_INIT;
    kube_call *call = NULL;
    kube_write_opts w = o ? *o : (kube_write_opts){0};
    w.subresource = NULL;     /* a create goes to the collection */
    if (kube_write_path(r, ns, NULL, &w, 0, &p) == 0)
        call = kube_request(c, "POST", p.data, NULL, json, len, done, ud);
    kl_buf_free(&p);
    return call;
}

kube_call *kube_update(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                       const char *json, size_t len, const kube_write_opts *o, kube_done_cb done,
                       void *ud)
{
    kl_buf p = KL_BUF_INIT;
    kube_call *call = NULL;
    if (name && *name && kube_write_path(r, ns, name, o, 0, &p) == 0)
        call = kube_request(c, "PUT", p.data, NULL, json, len, done, ud);
    kl_buf_free(&p);
    return call;
}

kube_call *kube_patch(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                      kube_patch_type type, const char *patch, size_t len,
                      const kube_write_opts *o, kube_done_cb done, void *ud)
{
    kl_buf p = KL_BUF_INIT;
    kube_call *call = NULL;
    if (name && *name && kube_write_path(r, ns, name, o, type == KUBE_PATCH_APPLY, &p) == 0)
        call = kube_request(c, "PATCH", p.data, kube_patch_content_type(type), patch, len, done,
                            ud);
    kl_buf_free(&p);
    return call;
}

kube_call *kube_delete(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                       const kube_delete_opts *o, kube_done_cb done, void *ud)
{
    kl_buf p = KL_BUF_INIT, b = KL_BUF_INIT;
    kube_call *call = NULL;
    if (name && *name && kube_resource_path(r, ns, name, NULL, &p) == 0 &&
        kube_delete_body(o, &b) == 0)
        call = kube_request(c, "DELETE", p.data, NULL, b.len ? b.data : NULL, b.len, done, ud);
    kl_buf_free(&p);
    kl_buf_free(&b);
    return call;
}

kube_call *kube_watch_resource(kube_client *c, const kube_resource *r, const char *ns,
                               const kube_watch_opts *o, kube_event_cb on_event,
                               kube_done_cb done, void *ud)
{
    kl_buf p = KL_BUF_INIT;
    kube_call *call = NULL;
    if (kube_watch_path(r, ns, o, &p) == 0)
        call = kube_watch(c, p.data, on_event, done, ud);
    kl_buf_free(&p);
    return call;
}

/* ---- discovery ---------------------------------------------------------- */

kube_discovery *kube_discovery_new(kube_client *c)
{
    kube_discovery *d = calloc(1, sizeof *d);
    if (d)
        d->c = c;
    return d;
}

void kube_discovery_invalidate(kube_discovery *d)
{
    for (size_t i = 0; i < d->nserved; i++)
        free(d->served[i]);
    free(d->served);
    d->served = NULL;
    d->nserved = 0;
    d->served_loaded = 0;
    while (d->gvs) {
        gv_entry *e = d->gvs;
        d->gvs = e->next;
        for (size_t i = 0; i < e->n; i++)
            kube_resource_free(&e->res[i]);
        free(e->res);
        free(e->gv);
        free(e);
    }
}

void kube_discovery_free(kube_discovery *d)
{
    if (!d)
        return;
    kube_discovery_invalidate(d);
    free(d);
}

static int served_add(kube_discovery *d, const json_doc *doc, int tok)
{
    char *s = json_str_dup(doc, tok);
    char **n = s ? realloc(d->served, (d->nserved + 1) * sizeof *n) : NULL;
    if (!n) {
        free(s);
        return -1;
    }
    d->served = n;
    d->served[d->nserved++] = s;
    return 0;
}

/* GET path synchronously and parse it; on success *body and *doc are the
 * caller's (free both). */
static int fetch_json(kube_discovery *d, const char *path, kube_result *res, json_doc *doc,
                      kl_err *err)
{
    const kube_rest_config *k = kube_client_config(d->c);
    if (kube_request_sync(d->c, "GET", path, NULL, NULL, 0, res) != 0) {
        return kl_err_set(err, res->http_code == 0 ? KL_EIO : KL_EAPI,
                          "discovery GET %s%s failed: %s", k->server, path, res->message);
    }
    kl_err perr = {0};
    if (json_parse(doc, res->body.data ? res->body.data : "", res->body.len, &perr) != 0 ||
        doc->toks[0].type != JSON_OBJECT)
        return kl_err_set(err, KL_EAPI, "discovery GET %s%s: not a JSON object: %s", k->server,
                          path, perr.msg);
    return 0;
}

/* /api (core versions) and /apis (every group's versions). */
static int load_served(kube_discovery *d, kl_err *err)
{
    kube_result res;
    json_doc doc = {0};
    int rc = -1;
    if (fetch_json(d, "/api", &res, &doc, err) != 0)
        goto out;
    int vs = json_obj_get(&doc, 0, "versions");
    for (int t = json_first(&doc, vs); t >= 0; t = json_next(&doc, t))
        if (served_add(d, &doc, t) != 0)
            goto oom;
    kl_buf_free(&res.body);
    if (fetch_json(d, "/apis", &res, &doc, err) != 0)
        goto out;
    int groups = json_obj_get(&doc, 0, "groups");
    for (int g = json_first(&doc, groups); g >= 0; g = json_next(&doc, g)) {
        int versions = json_obj_get(&doc, g, "versions");
        for (int v = json_first(&doc, versions); v >= 0; v = json_next(&doc, v)) {
            int gv = json_obj_get(&doc, v, "groupVersion");
            if (gv >= 0 && served_add(d, &doc, gv) != 0)
                goto oom;
        }
    }
    d->served_loaded = 1;
    rc = 0;
    goto out;
oom:
    kl_err_set(err, KL_ENOMEM, "discovery: out of memory");
out:
    kl_buf_free(&res.body);
    json_doc_free(&doc);
    return rc;
}

/* Turn an APIResourceList into kube_resources. "x/status" entries mark x as
 * having a status subresource; other subresources are skipped. */
static int parse_resources(const json_doc *doc, const char *group, const char *version,
                           gv_entry *e)
{
    int list = json_obj_get(doc, 0, "resources");
    size_t cap = list >= 0 ? doc->toks[list].size : 0;
    e->res = calloc(cap ? cap : 1, sizeof *e->res);
    if (!e->res)
        return -1;
    /* Two passes: the order of entries in the list is not promised. */
    for (int t = json_first(doc, list); t >= 0; t = json_next(doc, t)) {
        char *name = json_str_dup(doc, json_obj_get(doc, t, "name"));
        if (!name)
            continue;
        if (strchr(name, '/')) {
            free(name);
            continue;
        }
        kube_resource *r = &e->res[e->n];
        r->resource = name;
        r->kind = json_str_dup(doc, json_obj_get(doc, t, "kind"));
        r->group = strdup(group);
        r->version = strdup(version);
        r->namespaced = json_obj_get(doc, t, "namespaced") >= 0 &&
                        doc->toks[json_obj_get(doc, t, "namespaced")].type == JSON_TRUE;
        e->n++;
        if (!r->kind || !r->group || !r->version)
            return -1;
    }
    for (int t = json_first(doc, list); t >= 0; t = json_next(doc, t)) {
        int nt = json_obj_get(doc, t, "name");
        size_t len = 0;
        const char *raw = nt >= 0 ? json_raw(doc, nt, &len) : NULL;
        /* raw includes the quotes: "x/status" */
        if (!raw || len < 10 || memcmp(raw + len - 8, "/status\"", 8) != 0)
            continue;
        for (size_t i = 0; i < e->n; i++)
            if (strlen(e->res[i].resource) == len - 9 &&
                memcmp(e->res[i].resource, raw + 1, len - 9) == 0)
                e->res[i].has_status = 1;
    }
    return 0;
}

/* *missing is set when the server answered 404 (not an error: the kind is unknown). */
static gv_entry *fetch_gv(kube_discovery *d, const char *api_version, const char *group,
                          const char *version, int *missing, kl_err *err)
{
    kl_buf path = KL_BUF_INIT;
    kube_result res;
    json_doc doc = {0};
    gv_entry *e = calloc(1, sizeof *e);
    memset(&res, 0, sizeof res);
    if (!e || kl_buf_printf(&path, *group ? "/apis/%s" : "/api/%s", api_version) != 0)
        goto oom;
    if (fetch_json(d, path.data, &res, &doc, err) != 0) {
        /* Listed in /apis but gone (a CRD being deleted, a stale list): the
         * same answer as a group version that is not served at all. */
        *missing = res.http_code == 404;
        goto fail;
    }
    e->gv = strdup(api_version);
    if (!e->gv || parse_resources(&doc, group, version, e) != 0)
        goto oom;
    e->next = d->gvs;
    d->gvs = e;
    goto out;
oom:
    kl_err_set(err, KL_ENOMEM, "discovery: out of memory");
fail:
    if (e) {
        for (size_t i = 0; i < e->n; i++)
            kube_resource_free(&e->res[i]);
        free(e->res);
        free(e->gv);
        free(e);
    }
    e = NULL;
out:
    kl_buf_free(&path);
    kl_buf_free(&res.body);
    json_doc_free(&doc);
    return e;
}

int kube_discovery_lookup(kube_discovery *d, const char *api_version, const char *kind,
                          kube_resource *out, kl_err *err)
{
    char group[256] = "", version[64];
    const char *slash = strchr(api_version, '/');
    memset(out, 0, sizeof *out);
    if (slash) {
        size_t n = (size_t)(slash - api_version);
        if (n == 0 || n >= sizeof group || strlen(slash + 1) >= sizeof version || !slash[1])
            return kl_err_set(err, KL_EINVAL, "invalid apiVersion \"%.200s\"", api_version);
        memcpy(group, api_version, n);
        group[n] = '\0';
        snprintf(version, sizeof version, "%s", slash + 1);
    } else {
        if (!*api_version || strlen(api_version) >= sizeof version)
            return kl_err_set(err, KL_EINVAL, "invalid apiVersion \"%.200s\"", api_version);
        snprintf(version, sizeof version, "%s", api_version);
    }

    gv_entry *e = d->gvs;
    while (e && strcmp(e->gv, api_version) != 0)
        e = e->next;
    if (!e) {
        if (!d->served_loaded && load_served(d, err) != 0)
            return -1;
        int served = 0;
        for (size_t i = 0; i < d->nserved && !served; i++)
            served = strcmp(d->served[i], api_version) == 0;
        int missing = 0;
        if (served)
            e = fetch_gv(d, api_version, group, version, &missing, err);
        if (!e && served && !missing)
            return -1;
    }
    for (size_t i = 0; e && i < e->n; i++)
        if (strcmp(e->res[i].kind, kind) == 0) {
            if (kube_resource_copy(out, &e->res[i]) != 0)
                return kl_err_set(err, KL_ENOMEM, "discovery: out of memory");
            return 0;
        }
    return kl_err_set(err, KL_EINVAL, "no resource for kind %s in %s (is the CRD installed?)",
                      kind, api_version);
}
