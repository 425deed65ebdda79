/* kubeconfig_validate.c - ConfirmUsable for one cluster and one user.
 *
 * Provides: kc_validate_cluster, kc_validate_user (see kubeconfig_validate.h),
 * kubeconfig_check_token (see kubeconfig.h).
 * Uses: kubeconfig_model (kc_check_readable, kc_msg_name), err.
 */
#include "kubeconfig_validate.h"

#include <stdio.h>
#include <string.h>

int kubeconfig_check_token(const char *tok, size_t len, const char *where, kl_err *err)
{
    for (size_t i = 0; tok && i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c < 0x20 || c == 0x7f)
            return kl_err_set(err, KL_EINVAL,
                              "%s contains %s at byte %zu; a bearer token cannot hold control "
                              "characters (it is sent as an HTTP header)",
                              where,
                              c == '\r' || c == '\n' ? "a line break (CR or LF)"
                                                     : "a control character",
                              i + 1);
    }
    return 0;
}

/* A file named by the kubeconfig must be readable now. what is the
 * kubeconfig key ("client-key", ...), source the file that named it. */
static int check_file(const char *what, const char *path, const char *source, kl_err *err)
{
    int e = path ? kc_check_readable(path) : 0;
    if (e)
        return kl_err_set(err, KL_EIO, "cannot read %s %s from kubeconfig %s: %s", what, path,
                          source, strerror(e));
    return 0;
}

int kc_validate_cluster(const kc_cluster *c, const char *source, kl_err *err)
{
    char nb[100];
    const char *name = kc_msg_name(nb, sizeof nb, c->name);
    if (!c->server)
        return kl_err_set(err, KL_EINVAL, "cluster \"%s\" in kubeconfig %s has no server", name,
                          source);
    if (c->ca_file && c->ca_data)
        return kl_err_set(err, KL_EINVAL,
                          "cluster \"%s\" in kubeconfig %s sets both certificate-authority and "
                          "certificate-authority-data; keep one",
                          name, source);
    if (c->insecure && (c->ca_file || c->ca_data))
        return kl_err_set(err, KL_EINVAL,
                          "cluster \"%s\" in kubeconfig %s sets insecure-skip-tls-verify together "
                          "with a certificate authority; keep one",
                          name, source);
    return check_file("certificate-authority", c->ca_file, source, err);
}

int kc_validate_user(const kc_user *u, const char *source, kl_err *err)
{
    char nb[100];
    const char *name = kc_msg_name(nb, sizeof nb, u->name);
    if (u->token) {
        char where[300];
        snprintf(where, sizeof where, "user \"%s\" in kubeconfig %s: token", name, source);
        if (kubeconfig_check_token(u->token, strlen(u->token), where, err) != 0)
            return -1;
    }
    if (u->token && (u->username || u->password))
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets both a token and a username/password; "
                          "only one authentication method is allowed",
                          name, source);
    if (u->cert_file && u->cert_data)
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets both client-certificate and "
                          "client-certificate-data; keep one",
                          name, source);
    if (u->key_file && u->key_data)
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets both client-key and client-key-data; "
                          "keep one",
                          name, source);
    int has_cert = u->cert_file || u->cert_data, has_key = u->key_file || u->key_data;
    if (has_cert != has_key)
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets a client %s without a client %s",
                          name, source, has_cert ? "certificate" : "key",
                          has_cert ? "key" : "certificate");
    if (u->exec) {
        if (!u->exec->command)
            return kl_err_set(err, KL_EINVAL,
                              "user \"%s\" in kubeconfig %s: exec needs a command", name, source);
        if (!u->exec->api_version)
            return kl_err_set(err, KL_EINVAL,
                              "user \"%s\" in kubeconfig %s: exec needs an apiVersion", name,
                              source);
        for (size_t i = 0; i < u->exec->nenv; i++)
            if (u->exec->env[i][0] == '=')
                return kl_err_set(err, KL_EINVAL,
                                  "user \"%s\" in kubeconfig %s: exec.env[%zu] has no name", name,
                                  source, i);
        const char *m = u->exec->interactive_mode;
        if (m && strcmp(m, "Never") && strcmp(m, "IfAvailable") && strcmp(m, "Always"))
            return kl_err_set(err, KL_EINVAL,
                              "user \"%s\" in kubeconfig %s: exec.interactiveMode must be Never, "
                              "IfAvailable or Always",
                              name, source);
    }
    if (check_file("client-certificate", u->cert_file, source, err) != 0 ||
        check_file("client-key", u->key_file, source, err) != 0 ||
        check_file("tokenFile", u->token_file, source, err) != 0)
        return -1;
    return 0;
}

