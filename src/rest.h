/* rest.h - Kubernetes resources and verbs on top of kube_client.
 *
 * Provides: kube_resource (what discovery.c maps apiVersion + kind to: a
 * resource name, scope and status subresource); path building; and the
 * verbs get, list, create, update, patch (merge, json, apply), delete, the
 * status subresource and watch, as thin asynchronous wrappers.
 * Uses: kube, json, buf, err.
 */
#ifndef KLUA_REST_H
#define KLUA_REST_H

#include "kube.h"

typedef struct kube_resource {
    char *group;       /* "" for the core group */
    char *version;
    char *resource;    /* plural, e.g. "comments" */
    char *kind;
    int namespaced;
    int has_status;    /* a status subresource exists */
} kube_resource;

int kube_resource_copy(kube_resource *dst, const kube_resource *src);
void kube_resource_free(kube_resource *r);
/* "github.klua.dev/v1" or "v1". Caller frees. */
char *kube_resource_api_version(const kube_resource *r);

/* Path: /api/v1/namespaces/NS/pods/NAME/status ; ns NULL/"" = all namespaces
 * (for namespaced resources) ; name NULL = the collection. */
int kube_resource_path(const kube_resource *r, const char *ns, const char *name,
                       const char *subresource, kl_buf *out);

typedef struct kube_list_opts {
    const char *label_selector;
    const char *field_selector;
    long limit;                   /* 0 = none */
    const char *continue_token;
    const char *resource_version; /* NULL = unset */
    const char *resource_version_match; /* NotOlderThan | Exact */
} kube_list_opts;

typedef struct kube_watch_opts {
    const char *label_selector;
    const char *field_selector;
    const char *resource_version;
    int allow_bookmarks;
    long timeout_seconds;          /* server-side timeout; 0 = none */
    int send_initial_events;
} kube_watch_opts;

typedef enum { KUBE_PATCH_MERGE, KUBE_PATCH_JSON, KUBE_PATCH_STRATEGIC, KUBE_PATCH_APPLY } kube_patch_type;

typedef struct kube_write_opts {
    const char *field_manager;     /* default "klua" */
    int force;                     /* apply only */
    int dry_run;
    const char *subresource;       /* e.g. "status", or NULL */
} kube_write_opts;

typedef struct kube_delete_opts {
    const char *propagation_policy; /* Foreground | Background | Orphan, or NULL */
    const char *precondition_uid;
    const char *precondition_rv;
    long grace_period_seconds;      /* -1 = unset */
} kube_delete_opts;

kube_call *kube_get(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                    const char *subresource, kube_done_cb done, void *ud);
kube_call *kube_list(kube_client *c, const kube_resource *r, const char *ns,
                     const kube_list_opts *o, kube_done_cb done, void *ud);
kube_call *kube_create(kube_client *c, const kube_resource *r, const char *ns, const char *json,
                       size_t len, const kube_write_opts *o, kube_done_cb done, void *ud);
kube_call *kube_update(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                       const char *json, size_t len, const kube_write_opts *o, kube_done_cb done,
                       void *ud);
kube_call *kube_patch(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                      kube_patch_type type, const char *patch, size_t len,
                      const kube_write_opts *o, kube_done_cb done, void *ud);
kube_call *kube_delete(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                       const kube_delete_opts *o, kube_done_cb done, void *ud);
kube_call *kube_watch_resource(kube_client *c, const kube_resource *r, const char *ns,
                               const kube_watch_opts *o, kube_event_cb on_event,
                               kube_done_cb done, void *ud);

/* Request building, exposed for unit tests: the path and query of a LIST, a
 * WATCH (watch=1; sendInitialEvents adds resourceVersionMatch=NotOlderThan),
 * and a write (fieldManager, force for apply, dryRun=All); the JSON body of a
 * DELETE (empty when o sets nothing). Query values are URL-encoded. */
int kube_list_path(const kube_resource *r, const char *ns, const kube_list_opts *o, kl_buf *out);
int kube_watch_path(const kube_resource *r, const char *ns, const kube_watch_opts *o,
                    kl_buf *out);
int kube_write_path(const kube_resource *r, const char *ns, const char *name,
                    const kube_write_opts *o, int apply, kl_buf *out);
int kube_delete_body(const kube_delete_opts *o, kl_buf *out);
const char *kube_patch_content_type(kube_patch_type t);

#endif
