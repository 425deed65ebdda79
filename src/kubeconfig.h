/* kubeconfig.h - where the API server is and who we are.
 *
 * Provides: loading of kubeconfig files (libyaml) the way kubectl does it:
 * --kubeconfig, else $KUBECONFIG (a colon-separated list merged with "first
 * file to set a name or current-context wins"), else in-cluster config when
 * KUBERNETES_SERVICE_HOST is set, else ~/.kube/config. Context selection
 * (--context or current-context) and the context's namespace. Relative paths
 * resolve against the folder of the file that named them. Also the
 * in-cluster config (service-account token, CA, namespace).
 * Uses: err. Implemented by kubeconfig.c (loading) over kubeconfig_parse.c
 * and kubeconfig_yaml.c (one file), kubeconfig_merge.c and
 * kubeconfig_validate.c (merging, ConfirmUsable), kubeconfig_incluster.c,
 * and kubeconfig_model.c (the parsed form they share, freeing).
 *
 * Error messages are one line and name the file (or env var) and what is
 * wrong; they never contain a token, password or key.
 */
#ifndef KLUA_KUBECONFIG_H
#define KLUA_KUBECONFIG_H

#include "err.h"

#include <stddef.h>

typedef struct kube_exec_config {
    char *api_version;        /* client.authentication.k8s.io/v1 (or v1beta1) */
    char *command;            /* resolved against the kubeconfig folder if it contains '/' */
    char **args;              /* nargs entries */
    size_t nargs;
    char **env;               /* "NAME=value" entries, nenv of them */
    size_t nenv;
    char *install_hint;
    int provide_cluster_info;
    char *interactive_mode;   /* Never | IfAvailable | Always */
} kube_exec_config;

typedef struct kube_rest_config {
    char *server;             /* https://host:port, no trailing slash */
    char *ca_file;            /* absolute path, or NULL */
    char *ca_data;            /* PEM bytes (decoded from base64), or NULL */
    size_t ca_data_len;
    int insecure;             /* insecure-skip-tls-verify */
    char *tls_server_name;
    char *token;              /* static bearer token */
    char *token_file;         /* re-read periodically (bound tokens rotate) */
    char *cert_file, *key_file;
    char *cert_data, *key_data; /* PEM bytes */
    size_t cert_data_len, key_data_len;
    char *username, *password;
    kube_exec_config *exec;   /* NULL unless users[].user.exec */
    char *namespace;          /* context namespace, or "default" */
    char *context;            /* the selected context's name ("" in-cluster) */
    char *cluster_name;
    char *source;             /* the file the context came from, for messages */
    int in_cluster;
} kube_rest_config;

typedef struct kubeconfig_opts {
    const char *path;         /* --kubeconfig, or NULL */
    const char *context;      /* --context, or NULL */
    const char *namespace;    /* --namespace override, or NULL */
} kubeconfig_opts;

/* Resolve the configuration as described above; on success *out is filled
 * and owned by the caller (kube_rest_config_free). */
int kubeconfig_load(const kubeconfig_opts *opts, kube_rest_config *out, kl_err *err);

/* In-cluster config from KUBERNETES_SERVICE_HOST/PORT and the service
 * account folder (default /var/run/secrets/kubernetes.io/serviceaccount; the
 * env var KLUA_SERVICEACCOUNT_DIR overrides it, for tests). */
int kubeconfig_incluster(kube_rest_config *out, kl_err *err);

/* Parsed, unmerged form, exposed for unit tests and the fuzz target. */
typedef struct kubeconfig_file kubeconfig_file;
int kubeconfig_parse(const char *yaml, size_t len, const char *path, kubeconfig_file **out,
                     kl_err *err);
void kubeconfig_file_free(kubeconfig_file *f);
/* Merge files in priority order (first wins) and select a context. */
int kubeconfig_resolve(kubeconfig_file *const *files, size_t nfiles, const kubeconfig_opts *opts,
                       kube_rest_config *out, kl_err *err);

void kube_rest_config_free(kube_rest_config *c);

/* Whether tok[0..len) may be sent as a bearer token: no control character
 * (CR and LF would start another request header; client-go refuses any
 * invalid header value). where names the source for the message ("user
 * \"x\" in kubeconfig F: token", "token file F", ...), which never quotes
 * the token. Returns 0, or -1 with err set (KL_EINVAL). */
int kubeconfig_check_token(const char *tok, size_t len, const char *where, kl_err *err);

#endif
