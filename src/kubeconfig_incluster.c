/* kubeconfig_incluster.c - the configuration of a pod, as client-go's
 * InClusterConfig builds it.
 *
 * Provides: kubeconfig_incluster (see kubeconfig.h).
 * Uses: kubeconfig_model (paths, readability, file reading), buf, log.
 *
 * The server comes from KUBERNETES_SERVICE_HOST/PORT; the token stays a
 * file (bound tokens rotate, kube.c re-reads it); a missing CA falls back to
 * the system trust store with a warning; a missing namespace file means
 * "default".
 */
#include "kubeconfig.h"

#include "buf.h"
#include "kubeconfig_model.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KC_DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

int kubeconfig_incluster(kube_rest_config *out, kl_err *err)
{
    int rc = -1;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = getenv("KLUA_SERVICEACCOUNT_DIR");
    char *token = NULL, *ca = NULL, *nsfile = NULL;
    kl_buf ns = KL_BUF_INIT, server = KL_BUF_INIT;
    memset(out, 0, sizeof *out);
    if (!dir || !dir[0])
        dir = KC_DEFAULT_SA_DIR;

    if (!host || !host[0] || !port || !port[0])
        return kl_err_set(err, KL_EINVAL, "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                                          "KUBERNETES_SERVICE_PORT must both be set");
    if (!(token = kc_path_resolve(dir, "token")) || !(ca = kc_path_resolve(dir, "ca.crt")) ||
        !(nsfile = kc_path_resolve(dir, "namespace")))
        goto nomem;
    int e = kc_check_readable(token);
    if (e) {
        kl_err_set(err, KL_EIO, "in-cluster config: cannot read service account token %s: %s",
                   token, strerror(e));
        goto done;
    }
    /* IPv6 literals need brackets in a URL (net.JoinHostPort in client-go). */
    if (kl_buf_printf(&server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                      port) != 0)
        goto nomem;
    /* client-go goes on without the CA when it cannot load it; so do we,
     * but say so, since the TLS failure that follows is otherwise puzzling. */
    e = kc_check_readable(ca);
    if (e) {
        kl_log(KL_LOG_WARN, "in-cluster CA not readable; using the system trust store", "file", ca,
               "error", strerror(e), NULL);
        free(ca);
        ca = NULL;
    }
    e = kc_read_file(nsfile, &ns);
    if (e && e != ENOENT) {
        kl_err_set(err, KL_EIO, "in-cluster config: cannot read namespace file %s: %s", nsfile,
                   strerror(e));
        goto done;
    }
    while (ns.len > 0 && strchr(" \t\r\n", ns.data[ns.len - 1]))
        ns.data[--ns.len] = '\0';
    out->in_cluster = 1;
    out->server = kl_buf_take(&server);
    out->token_file = token;
    out->ca_file = ca;
    token = ca = NULL;
    if (!out->server || !(out->namespace = strdup(e || ns.len == 0 ? "default" : ns.data)) ||
        !(out->context = strdup("")) || !(out->cluster_name = strdup("")) ||
        !(out->source = strdup(dir)))
        goto nomem;
    rc = 0;
    goto done;
nomem:
    kl_err_set(err, KL_ENOMEM, "in-cluster config: out of memory");
done:
    if (rc != 0)
        kube_rest_config_free(out);
    free(token);
    free(ca);
    free(nsfile);
    kl_buf_free(&ns);
    kl_buf_free(&server);
    return rc;
}
