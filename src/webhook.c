/* webhook.c - the webhooks `klua run` serves (see webhook.h).
 * Uses: webhook_server, webhook_lua, webhook_dev, lua_ctx, kube, loop, log.
 */
#include "webhook.h"

#include "log.h"
#include "util.h"
#include "webhook_dev.h"
#include "webhook_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct webhook {
    webhook_lua lua;
    webhook_server *server;
    webhook_dev *dev;
    char *tmpdir;              /* a generated certificate folder, removed at the end */
};

static void remove_tmpdir(const char *dir)
{
    static const char *const files[] = {"tls.crt", "tls.key", "ca.crt", NULL};
    char p[4096];
    for (const char *const *f = files; *f; f++) {
        snprintf(p, sizeof p, "%s/%s", dir, *f);
        unlink(p);
    }
    rmdir(dir);
}

/* The folder the certificates are in, made (and filled) under --dev. */
static int dev_certs(webhook *w, const webhook_opts *o, const char **dir, kl_buf *ca,
                     kl_err *err)
{
    if (o->cert_dir) {
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/tls.crt", o->cert_dir);
        if (stat(p, &st) != 0 && webhook_dev_certs(o->cert_dir, ca, err) != 0)
            return -1;
        if (!ca->len) {
            snprintf(p, sizeof p, "%s/ca.crt", o->cert_dir);
            if (kl_read_file(p, 1 << 20, ca, err) != 0)
                return kl_err_wrap(err, "webhook --dev needs the CA that signed tls.crt in "
                                        "ca.crt");
        }
        *dir = o->cert_dir;
        return 0;
    }
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/klua-webhook-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpl))
        return kl_err_set(err, KL_EIO, "webhook --dev: cannot make a folder for certificates");
    if (!(w->tmpdir = strdup(tmpl))) {
        rmdir(tmpl);
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    *dir = w->tmpdir;
    return webhook_dev_certs(w->tmpdir, ca, err);
}

/* https://host:port the API server can reach us at (a wildcard address
 * becomes the loopback). */
static void base_url(const char *addr, int port, char *out, size_t outsz)
{
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(hl < 255 ? hl : 255), addr);
    if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "[::]"))
        snprintf(host, sizeof host, "127.0.0.1");
    snprintf(out, outsz, "https://%s:%d", host, port);
}

int webhook_start(loop *l, kube_client *kc, lua_ctx_shared *shared, const webhook_opts *o,
                  webhook **out, kl_err *err)
{
    *out = NULL;
    if (!o->addr || !*o->addr)
        return 0;
    if (o->lua_timeout_ms >= (uint64_t)WEBHOOK_DEV_TIMEOUT_S * 1000)
        return kl_err_set(err, KL_EINVAL, "webhook: --lua-timeout must be below the webhooks' "
                                          "timeoutSeconds (%d s)", WEBHOOK_DEV_TIMEOUT_S);
    if (!o->dev && !o->cert_dir)
        return kl_err_set(err, KL_EINVAL, "webhook: --webhook-addr needs --webhook-cert-dir "
                                          "(tls.crt, tls.key), or --dev to generate them");
    webhook *w = calloc(1, sizeof *w);
    kl_buf ca = KL_BUF_INIT;
    if (!w)
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    w->lua.shared = shared;
    w->lua.find = o->find;
    w->lua.find_ud = o->scripts;
    const char *dir = o->cert_dir;
    if (o->dev && dev_certs(w, o, &dir, &ca, err) != 0)
        goto fail;
    webhook_server_opts so = {0};
    so.addr = o->addr;
    so.cert_dir = dir;
    so.handlers = webhook_lua_handlers(&w->lua);
    if (!(w->server = webhook_server_start(l, &so, err)))
        goto fail;
    char url[300];
    base_url(o->addr, webhook_server_port(w->server), url, sizeof url);
    kl_log(KL_LOG_INFO, "webhook server listening", "url", url, "certs", dir, NULL);
    if (o->dev) {
        webhook_dev_opts d = {url, ca.data, o->namespace, o->each, o->scripts};
        if (!(w->dev = webhook_dev_start(l, kc, &d, err)))
            goto fail;
    }
    kl_buf_free(&ca);
    *out = w;
    return 0;
fail:
    kl_buf_free(&ca);
    webhook_free(w);
    return -1;
}

int webhook_port(const webhook *w) { return w ? webhook_server_port(w->server) : 0; }

void webhook_shutdown(webhook *w)
{
    if (w)
        webhook_dev_uninstall(w->dev);
}

int webhook_settled(const webhook *w) { return !w || webhook_dev_settled(w->dev); }

void webhook_free(webhook *w)
{
    if (!w)
        return;
    webhook_dev_free(w->dev);
    webhook_server_free(w->server);
    if (w->tmpdir)
        remove_tmpdir(w->tmpdir);
    free(w->tmpdir);
    free(w);
}
