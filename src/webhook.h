/* webhook.h - the webhooks `klua run` serves (--webhook-addr).
 *
 * Provides: webhook, which puts the pieces together for run.c: the HTTPS
 * server (webhook_server) answering with the scripts' handlers
 * (webhook_lua) found through the caller's find/each callbacks, and under
 * --dev the development certificates (a private folder under $TMPDIR
 * unless --webhook-cert-dir is given; files already there are kept) and
 * the webhook configurations kept in line with the scripts (webhook_dev).
 * Without --dev, the certificates come from --webhook-cert-dir (mounted
 * from a Secret, e.g. issued by cert-manager) and the configurations are
 * deploy/webhook/'s.
 * Uses: webhook_server, webhook_lua, webhook_dev, lua_ctx, kube, loop, log.
 */
#ifndef KLUA_WEBHOOK_H
#define KLUA_WEBHOOK_H

#include "err.h"
#include "kube.h"
#include "loop.h"
#include "lua_ctx.h"
#include "webhook_lua.h"

#include <stdint.h>

typedef struct webhook_opts {
    const char *addr;          /* --webhook-addr; NULL or "" = no webhooks */
    const char *cert_dir;      /* --webhook-cert-dir; NULL = generated under --dev */
    int dev;                   /* --dev: certificates and configurations for you */
    const char *namespace;     /* --namespace: the dev webhooks see only it (or NULL) */
    uint64_t lua_timeout_ms;   /* --lua-timeout: must stay below timeoutSeconds */
    webhook_find_fn find;      /* the scripts (reload_set_webhook_find / _each) */
    webhook_each_fn each;
    void *scripts;
} webhook_opts;

typedef struct webhook webhook;

/* Start serving; *out is NULL when opts->addr is unset (returns 0). kc
 * and shared may be NULL only without --dev. err: "webhook ...". */
int webhook_start(loop *l, kube_client *kc, lua_ctx_shared *shared, const webhook_opts *o,
                  webhook **out, kl_err *err);
int webhook_port(const webhook *w);
/* klua is stopping (SIGTERM/SIGINT): under --dev, remove the webhook
 * configurations it installed (webhook_dev_uninstall); the server keeps
 * answering meanwhile. webhook_settled() is 1 once that is done (always
 * without --dev, and for NULL). */
void webhook_shutdown(webhook *w);
int webhook_settled(const webhook *w);
/* Stops serving, removes a generated certificate folder; NULL is fine. */
void webhook_free(webhook *w);

#endif
