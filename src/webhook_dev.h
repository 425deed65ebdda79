/* webhook_dev.h - development mode for webhooks: a local CA, a serving
 * certificate, and the webhook configurations installed for you.
 *
 * Provides: webhook_dev_certs(), which makes a CA (EC P-256, one year) and
 * a serving certificate it signs for 127.0.0.1, ::1 and localhost, and
 * writes tls.crt, tls.key (mode 0600) and ca.crt into a folder; and
 * webhook_dev, which keeps the cluster's configuration in line with the
 * scripts that run: one ValidatingWebhookConfiguration and one
 * MutatingWebhookConfiguration named "klua-dev" with a webhook per script
 * declaring validate / mutate (rules: the watched resource, CREATE and
 * UPDATE; failurePolicy Fail; timeoutSeconds WEBHOOK_DEV_TIMEOUT_S;
 * matchPolicy Equivalent; with --namespace, a namespaceSelector for it;
 * url https://<host>:<port>/<op>/<controller>; caBundle the CA), applied server-side (field manager klua-dev), and the
 * conversion stanza (strategy Webhook, url .../convert/<controller>) merged
 * into the CRD of each script declaring convert. It looks at the scripts
 * every WEBHOOK_DEV_POLL_MS and writes only when the configuration it
 * would write differs from the last one written (a reload that adds or
 * removes a handler is applied within that time; an unchanged one costs
 * no API call). Logs "webhook configuration installed" after each write.
 * Uses: webhook_lua (the scripts), rest, kube, loop, buf, err, log, OpenSSL.
 */
#ifndef KLUA_WEBHOOK_DEV_H
#define KLUA_WEBHOOK_DEV_H

#include "buf.h"
#include "err.h"
#include "kube.h"
#include "loop.h"
#include "webhook_lua.h"

#define WEBHOOK_DEV_TIMEOUT_S 10
#define WEBHOOK_DEV_POLL_MS 250

/* Write tls.crt, tls.key and ca.crt into dir (which exists); the CA's
 * PEM is appended to ca_pem. */
int webhook_dev_certs(const char *dir, kl_buf *ca_pem, kl_err *err);

typedef struct webhook_dev_opts {
    const char *base_url;        /* "https://127.0.0.1:9443" */
    const char *ca_pem;          /* the CA the serving certificate chains to */
    const char *namespace;       /* klua run --namespace: only objects there (or NULL) */
    webhook_each_fn each;
    void *each_ud;
} webhook_dev_opts;

typedef struct webhook_dev webhook_dev;

/* Start keeping the configuration in line (the first write goes out once
 * the scripts' resources are resolved). Strings are copied. */
webhook_dev *webhook_dev_start(loop *l, kube_client *kc, const webhook_dev_opts *o, kl_err *err);
/* klua is stopping: stop keeping the configuration in line and remove
 * what was installed (the two klua-dev configurations are deleted, each CRD
 * given a conversion webhook goes back to strategy None), so that a
 * developer's cluster does not keep calling a klua that is gone (failure
 * policy Fail would refuse every change). Logs "webhook configuration
 * removed". */
void webhook_dev_uninstall(webhook_dev *d);
/* 1 once the removal's answers are in (or there was nothing to remove). */
int webhook_dev_settled(const webhook_dev *d);
/* Configurations written so far (tests). */
unsigned long webhook_dev_writes(const webhook_dev *d);
void webhook_dev_free(webhook_dev *d);

/* The configuration documents for the current scripts (exposed for
 * tests): the two webhook configurations as apply bodies, and the list of
 * CRD conversion patches, each "crdname\npatch-json\n". Returns the
 * number of scripts with handlers whose resource is known; *pending is
 * set when a script with handlers has no resolved resource yet. */
size_t webhook_dev_render(const webhook_dev_opts *o, kl_buf *validating, kl_buf *mutating,
                          kl_buf *conversions, int *pending);

#endif
