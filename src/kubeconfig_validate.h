/* kubeconfig_validate.h - whether the selected cluster and user can be used.
 *
 * Provides: kc_validate_cluster, kc_validate_user: what client-go's
 * ConfirmUsable checks (a server is set, no two settings conflict, exec
 * has a command and an apiVersion, the files named are readable now), so
 * that mistakes surface at start-up with the file named instead of as a TLS
 * failure later.
 * Uses: kubeconfig_model, err.
 */
#ifndef KLUA_KUBECONFIG_VALIDATE_H
#define KLUA_KUBECONFIG_VALIDATE_H

#include "kubeconfig_model.h"

/* source is the file the entry came from, for messages. Return 0, or -1
 * with err set to a one-line message naming the entry and the file. */
int kc_validate_cluster(const kc_cluster *c, const char *source, kl_err *err);
int kc_validate_user(const kc_user *u, const char *source, kl_err *err);

#endif
