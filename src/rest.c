/* rest.c - Kubernetes resources and verbs on top of kube_client (see rest.h).
 *
 * Provides: kube_resource (copy, free, apiVersion), path and query
 * building, and the verbs as thin wrappers over kube_request and
 * kube_watch. Resources come from discovery.c.
 * Uses: kube (transport), json (escaping), buf, err.
 */
#include "rest.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
