/* kubeconfig_merge.c - several parsed files become one rest config.
 *
 * Provides: kubeconfig_resolve (see kubeconfig.h).
 * Uses: kubeconfig_model, kubeconfig_validate, buf.
 *
 * Semantics follow client-go's clientcmd: across files the first file to
 * define a name wins and the first non-empty current-context wins. The
 * chosen context's cluster and user are validated, then copied out, so the
 * result owns everything and outlives the files.
 */
#include "kubeconfig.h"

#include "buf.h"
#include "kubeconfig_model.h"
#include "kubeconfig_validate.h"

#include <stdlib.h>
#include <string.h>

/* The named entries of one section of a file, as bytes: every kc_cluster,
 * kc_user and kc_context starts with its `char *name`. */
typedef enum { KC_CLUSTERS, KC_USERS, KC_CONTEXTS } kc_section;

static const char *section_entries(const kubeconfig_file *f, kc_section sec, size_t *n,
                                   size_t *size)
{
    switch (sec) {
    case KC_CLUSTERS: *n = f->nclusters; *size = sizeof(kc_cluster); return (const char *)f->clusters;
    case KC_USERS: *n = f->nusers; *size = sizeof(kc_user); return (const char *)f->users;
    default: *n = f->ncontexts; *size = sizeof(kc_context); return (const char *)f->contexts;
    }
}

/* The entry of the first file (in priority order) that defines name, as
 * kubectl merges; *from gets that file. NULL if no file defines it. */
static void *find_named(kubeconfig_file *const *files, size_t nfiles, kc_section sec,
                        const char *name, const kubeconfig_file **from)
{
    for (size_t i = 0; i < nfiles; i++) {
        size_t n, size;
        const char *base = section_entries(files[i], sec, &n, &size);
        for (size_t j = 0; j < n; j++) {
            char *const *entry_name = (char *const *)(const void *)(base + j * size);
            if (strcmp(*entry_name, name) == 0) {
                *from = files[i];
                return (void *)(base + j * size);
            }
        }
    }
    return NULL;
}


/* Duplicate n bytes of secret or PEM data (NUL-terminated). */
static int dup_bytes(const char *src, size_t n, char **dst)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = malloc(n + 1);
    if (!*dst)
        return -1;
    memcpy(*dst, src, n);
    (*dst)[n] = '\0';
    return 0;
}

static kube_exec_config *exec_dup(const kube_exec_config *e)
{
    kube_exec_config *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->provide_cluster_info = e->provide_cluster_info;
    if ((e->api_version && !(d->api_version = strdup(e->api_version))) ||
        (e->command && !(d->command = strdup(e->command))) ||
        (e->install_hint && !(d->install_hint = strdup(e->install_hint))) ||
        /* client-go's default for v1beta1, where the field is optional */
        !(d->interactive_mode =
              strdup(e->interactive_mode ? e->interactive_mode : "IfAvailable")) ||
        !(d->args = calloc(e->nargs + 1, sizeof *d->args)) ||
        !(d->env = calloc(e->nenv + 1, sizeof *d->env)))
        goto fail;
    for (; d->nargs < e->nargs; d->nargs++)
        if (!(d->args[d->nargs] = strdup(e->args[d->nargs])))
            goto fail;
    for (; d->nenv < e->nenv; d->nenv++)
        if (!(d->env[d->nenv] = strdup(e->env[d->nenv])))
            goto fail;
    return d;
fail:
    kc_exec_free(d);
    return NULL;
}

/* client-go's DefaultServerURL: a server without a scheme gets https when
 * TLS settings are present, http otherwise. Trailing slashes go. */
static char *server_url(const char *server, int tls)
{
    kl_buf b = KL_BUF_INIT;
    int bad = strstr(server, "://") ? kl_buf_puts(&b, server)
                                    : kl_buf_printf(&b, "%s://%s", tls ? "https" : "http", server);
    if (bad) {
        kl_buf_free(&b);
        return NULL;
    }
    while (b.len > 0 && b.data[b.len - 1] == '/')
        b.data[--b.len] = '\0';
    return kl_buf_take(&b);
}

/* Copy the cluster's settings into out; -1 on no memory (out keeps what was
 * copied, for kube_rest_config_free). */
static int copy_cluster(kube_rest_config *out, const kc_cluster *cl, const kc_user *u)
{
    int tls = cl->ca_file || cl->ca_data || cl->insecure || (u && (u->cert_file || u->cert_data));
    out->insecure = cl->insecure;
    if (!(out->server = server_url(cl->server, tls)) ||
        (cl->ca_file && !(out->ca_file = strdup(cl->ca_file))) ||
        dup_bytes(cl->ca_data, cl->ca_data_len, &out->ca_data) != 0 ||
        (cl->tls_server_name && !(out->tls_server_name = strdup(cl->tls_server_name))))
        return -1;
    out->ca_data_len = cl->ca_data ? cl->ca_data_len : 0;
    return 0;
}

/* Copy the user's credentials into out; -1 on no memory, as above. */
static int copy_user(kube_rest_config *out, const kc_user *u)
{
    if ((u->token && !(out->token = strdup(u->token))) ||
        (u->token_file && !(out->token_file = strdup(u->token_file))) ||
        (u->cert_file && !(out->cert_file = strdup(u->cert_file))) ||
        (u->key_file && !(out->key_file = strdup(u->key_file))) ||
        dup_bytes(u->cert_data, u->cert_data_len, &out->cert_data) != 0 ||
        dup_bytes(u->key_data, u->key_data_len, &out->key_data) != 0 ||
        (u->username && !(out->username = strdup(u->username))) ||
        (u->password && !(out->password = strdup(u->password))) ||
        (u->exec && !(out->exec = exec_dup(u->exec))))
        return -1;
    out->cert_data_len = u->cert_data ? u->cert_data_len : 0;
    out->key_data_len = u->key_data ? u->key_data_len : 0;
    return 0;
}

/* "a, b, c" for messages. Caller owns the result (NULL on no memory). */
static char *join_paths(kubeconfig_file *const *files, size_t nfiles)
{
    kl_buf b = KL_BUF_INIT;
    for (size_t i = 0; i < nfiles; i++)
        if (kl_buf_printf(&b, "%s%s", i ? ", " : "", files[i]->path) != 0) {
            kl_buf_free(&b);
            return NULL;
        }
    return kl_buf_take(&b);
}

int kubeconfig_resolve(kubeconfig_file *const *files, size_t nfiles, const kubeconfig_opts *opts,
                       kube_rest_config *out, kl_err *err)
{
    int rc = -1;
    char *sources = NULL;
    char nb[100], nb2[100];
    const kubeconfig_file *cfrom = NULL, *clfrom = NULL, *ufrom = NULL;
    const kc_user *u = NULL;
    const char *name = NULL;
    memset(out, 0, sizeof *out);

    if (nfiles == 0)
        return kl_err_set(err, KL_EINVAL, "no kubeconfig file to load");
    if (!(sources = join_paths(files, nfiles))) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto done;
    }
    if (opts && opts->context && opts->context[0])
        name = opts->context;
    for (size_t i = 0; !name && i < nfiles; i++)
        name = files[i]->current_context;
    if (!name) {
        kl_err_set(err, KL_EINVAL, "no current-context is set in kubeconfig %s; pass --context "
                                   "or run kubectl config use-context", sources);
        goto done;
    }
    const kc_context *ctx = find_named(files, nfiles, KC_CONTEXTS, name, &cfrom);
    if (!ctx) {
        kl_err_set(err, KL_EINVAL, "context \"%s\" not found in %s",
                   kc_msg_name(nb, sizeof nb, name), sources);
        goto done;
    }
    if (!ctx->cluster) {
        kl_err_set(err, KL_EINVAL, "context \"%s\" in kubeconfig %s names no cluster",
                   kc_msg_name(nb, sizeof nb, name), cfrom->path);
        goto done;
    }
    const kc_cluster *cl = find_named(files, nfiles, KC_CLUSTERS, ctx->cluster, &clfrom);
    if (!cl) {
        kl_err_set(err, KL_EINVAL, "cluster \"%s\" of context \"%s\" not found in %s",
                   kc_msg_name(nb2, sizeof nb2, ctx->cluster), kc_msg_name(nb, sizeof nb, name),
                   sources);
        goto done;
    }
    /* No user means anonymous access, as in kubectl; a named user that does
     * not exist is a typo worth stopping for. */
    if (ctx->user && !(u = find_named(files, nfiles, KC_USERS, ctx->user, &ufrom))) {
        kl_err_set(err, KL_EINVAL, "user \"%s\" of context \"%s\" not found in %s",
                   kc_msg_name(nb2, sizeof nb2, ctx->user), kc_msg_name(nb, sizeof nb, name),
                   sources);
        goto done;
    }
    if (kc_validate_cluster(cl, clfrom->path, err) != 0 ||
        (u && kc_validate_user(u, ufrom->path, err) != 0))
        goto done;

    const char *ns = opts && opts->namespace && opts->namespace[0] ? opts->namespace
                     : ctx->namespace                             ? ctx->namespace
                                                                  : "default";
    if (copy_cluster(out, cl, u) != 0 || (u && copy_user(out, u) != 0) ||
        !(out->namespace = strdup(ns)) || !(out->context = strdup(name)) ||
        !(out->cluster_name = strdup(ctx->cluster)) || !(out->source = strdup(cfrom->path)))
        goto nomem;
    rc = 0;
    goto done;
nomem:
    kl_err_set(err, KL_ENOMEM, "out of memory while loading kubeconfig %s", cfrom->path);
done:
    if (rc != 0)
        kube_rest_config_free(out);
    free(sources);
    return rc;
}

