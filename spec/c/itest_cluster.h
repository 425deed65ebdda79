/* itest_cluster.h - the connection every C integration test makes.
 *
 * Provides: itest_connect(), which builds a loop, an HTTP client and a
 * kube_client for the control plane named by KLUA_TEST_CLUSTER (the
 * directory spec/support/cluster.sh made). Without that variable, or on any
 * failure, *c stays NULL and the reason is printed as a TAP comment; the
 * test's checks then fail. Uses: loop, http, kube, kubeconfig.
 */
#ifndef KLUA_ITEST_CLUSTER_H
#define KLUA_ITEST_CLUSTER_H

#include "http.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"

#include <stdio.h>
#include <stdlib.h>

static void itest_connect(loop **l, http_client **h, kube_client **c)
{
    kl_err err = {0};
    const char *dir = getenv("KLUA_TEST_CLUSTER");
    *l = NULL;
    *h = NULL;
    *c = NULL;
    if (!dir || !*dir) {
        printf("#   KLUA_TEST_CLUSTER is not set\n");
        return;
    }
    *l = loop_new(&err);
    *h = *l ? http_client_new(*l, &err) : NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/kubeconfig", dir);
    kube_rest_config cfg = {0};
    kubeconfig_opts ko = {0};
    ko.path = path;
    kube_client_opts co = {0};
    if (*h && kubeconfig_load(&ko, &cfg, &err) == 0)
        *c = kube_client_new(*l, *h, &cfg, &co, &err);
    kube_rest_config_free(&cfg);
    if (!*c)
        printf("#   %s\n", err.msg);
}

#endif
