/* webhook_dev.c - development-mode certificates and webhook configuration
 * (see webhook_dev.h).
 * Uses: webhook_lua, rest, kube, loop, buf, err, log, OpenSSL.
 */
#include "webhook_dev.h"

#include "json.h"
#include "log.h"
#include "rest.h"

#include <fcntl.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_MS 2000

/* ---- certificates ---- */

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate for key, named cn, signed by (issuer, issuer_key), or
 * self-signed when issuer is NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
    X509 *c = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    if (!c || RAND_bytes(serial, sizeof serial) != 1)
        goto fail;
    serial[0] &= 0x7f;
    if (!(bn = BN_bin2bn(serial, sizeof serial, NULL)) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)))
        goto fail;
    X509_set_version(c, 2);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 365L * 24 * 3600);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"klua dev", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : c;
    if (ca) {
        if (add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
            add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
            add_ext(c, iss, NID_subject_key_identifier, "hash") != 0)
            goto fail;
    } else {
        if (add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_ext(c, iss, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
            add_ext(c, iss, NID_ext_key_usage, "serverAuth") != 0 ||
            add_ext(c, iss, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost") != 0 ||
            add_ext(c, iss, NID_authority_key_identifier, "keyid:always") != 0)
            goto fail;
    }
    if (!X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()))
        goto fail;
    BN_free(bn);
    return c;
fail:
    BN_free(bn);
    X509_free(c);
    return NULL;
}

static int pem_of(int (*write)(BIO *, void *), void *obj, kl_buf *out)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    int rc = -1;
    if (b && write(b, obj) == 1) {
        long n = BIO_get_mem_data(b, &p);
        rc = n > 0 ? kl_buf_append(out, p, (size_t)n) : -1;
    }
    BIO_free(b);
    return rc;
}

static int write_cert(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }
static int write_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int write_file(const char *dir, const char *name, const kl_buf *b, int mode, kl_err *err)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return kl_err_set(err, KL_EIO, "cannot write %s", tmp);
    ssize_t n = write(fd, b->data, b->len);
    int ok = n == (ssize_t)b->len;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return kl_err_set(err, KL_EIO, "cannot write %s", path);
    }
    return 0;
}

int webhook_dev_certs(const char *dir, kl_buf *ca_pem, kl_err *err)
{
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *cert = NULL;
    kl_buf crt = KL_BUF_INIT, k = KL_BUF_INIT, cab = KL_BUF_INIT;
    int rc = -1;
    if (!ca_key || !key || !(ca = make_cert(ca_key, "klua dev webhook CA", NULL, NULL, 1)) ||
        !(cert = make_cert(key, "localhost", ca, ca_key, 0))) {
        kl_err_set(err, KL_ETLS, "cannot make the development certificates");
        goto out;
    }
    if (pem_of(write_cert, cert, &crt) != 0 || pem_of(write_cert, ca, &crt) != 0 ||
        pem_of(write_key, key, &k) != 0 || pem_of(write_cert, ca, &cab) != 0) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto out;
    }
    /* The key first: the server reloads when both files have changed. */
    if (write_file(dir, "tls.key", &k, 0600, err) != 0 ||
        write_file(dir, "tls.crt", &crt, 0644, err) != 0 ||
        write_file(dir, "ca.crt", &cab, 0644, err) != 0)
        goto out;
    if (kl_buf_append(ca_pem, cab.data, cab.len) != 0) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (k.data)
        OPENSSL_cleanse(k.data, k.len);
    kl_buf_free(&k);
    kl_buf_free(&crt);
    kl_buf_free(&cab);
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- rendering ---- */

typedef struct render {
    const webhook_dev_opts *o;
    kl_buf *val, *mut, *conv;
    size_t nval, nmut, n;
    int pending;
    char *ca_b64;
} render;

static void put_client(kl_buf *b, const render *r, const char *op, const char *name)
{
    kl_buf_printf(b, "\"clientConfig\":{\"url\":\"%s/%s/%s\",\"caBundle\":\"%s\"}",
                  r->o->base_url, op, name, r->ca_b64);
}

static void put_webhook(kl_buf *b, const render *r, const char *op, const char *name,
                        const kube_resource *res)
{
    kl_buf_printf(b, "{\"name\":\"%s.%s.klua.dev\",", name, op);
    put_client(b, r, op, name);
    kl_buf_printf(b, ",\"rules\":[{\"apiGroups\":[\"%s\"],\"apiVersions\":[\"%s\"],"
                     "\"operations\":[\"CREATE\",\"UPDATE\"],\"resources\":[\"%s\"],"
                     "\"scope\":\"%s\"}],\"admissionReviewVersions\":[\"v1\"],"
                     "\"sideEffects\":\"None\",\"failurePolicy\":\"Fail\","
                     "\"matchPolicy\":\"Equivalent\",\"timeoutSeconds\":%d%s",
                  res->group, res->version, res->resource, res->namespaced ? "Namespaced" : "*",
                  WEBHOOK_DEV_TIMEOUT_S,
                  strcmp(op, "mutate") == 0 ? ",\"reinvocationPolicy\":\"Never\"" : "");
    if (r->o->namespace && *r->o->namespace) {
        kl_buf_puts(b, ",\"namespaceSelector\":{\"matchLabels\":{"
                       "\"kubernetes.io/metadata.name\":");
        json_escape_append(b, r->o->namespace, strlen(r->o->namespace));
        kl_buf_puts(b, "}}");
    }
    kl_buf_putc(b, '}');
}

static void visit(void *ud, const char *name, const webhook_target *t)
{
    render *r = ud;
    const lua_controller_decl *d = lua_host_decl(t->host);
    int v = d->validate_ref != LUA_NOREF, m = d->mutate_ref != LUA_NOREF,
        c = d->convert_ref != LUA_NOREF;
    if (!v && !m && !c)
        return;
    const kube_resource *res = NULL;
    if (t->cache.lookup)
        t->cache.lookup(t->cache.ud, d->watch.api_version, d->watch.kind, &res);
    if (!res || !res->resource || !res->group) {
        r->pending = 1;
        return;
    }
    r->n++;
    if (v) {
        kl_buf_puts(r->val, r->nval++ ? "," : "");
        put_webhook(r->val, r, "validate", name, res);
    }
    if (m) {
        kl_buf_puts(r->mut, r->nmut++ ? "," : "");
        put_webhook(r->mut, r, "mutate", name, res);
    }
    if (c && res->group[0]) {
        kl_buf_printf(r->conv, "%s.%s\n{\"spec\":{\"conversion\":{\"strategy\":\"Webhook\","
                               "\"webhook\":{\"conversionReviewVersions\":[\"v1\"],",
                      res->resource, res->group);
        put_client(r->conv, r, "convert", name);
        kl_buf_puts(r->conv, "}}}}\n");
    }
}

static char *base64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static void config_head(kl_buf *b, const char *kind)
{
    kl_buf_printf(b, "{\"apiVersion\":\"admissionregistration.k8s.io/v1\",\"kind\":\"%s\","
                     "\"metadata\":{\"name\":\"klua-dev\",\"labels\":"
                     "{\"app.kubernetes.io/managed-by\":\"klua\"}},\"webhooks\":[", kind);
}

size_t webhook_dev_render(const webhook_dev_opts *o, kl_buf *validating, kl_buf *mutating,
                          kl_buf *conversions, int *pending)
{
    render r = {o, validating, mutating, conversions, 0, 0, 0, 0, base64(o->ca_pem)};
    if (!r.ca_b64) {
        validating->failed = 1;
        return 0;
    }
    config_head(validating, "ValidatingWebhookConfiguration");
    config_head(mutating, "MutatingWebhookConfiguration");
    o->each(o->each_ud, visit, &r);
    kl_buf_puts(validating, "]}");
    kl_buf_puts(mutating, "]}");
    free(r.ca_b64);
    *pending = r.pending;
    return r.n;
}

/* ---- keeping the cluster in line ---- */

struct webhook_dev {
    loop *l;
    kube_client *kc;
    webhook_dev_opts o;
    char *base_url, *ca_pem, *ns;
    char *applied;              /* what the last complete write sent, or NULL */
    char *sending;              /* what the write in flight sends */
    kl_buf val, mut, conv;      /* the documents of the write in flight */
    size_t conv_off;            /* next conversion patch in conv */
    int step;                   /* 0 validating, 1 mutating, 2 conversions */
    kube_call *call;
    loop_timer_id timer;
    unsigned long writes;
    int warned;
    int uninstalling;
    struct removal {
        webhook_dev *d;
        kube_call *call;        /* in flight, or NULL once answered */
    } removals[16];
    size_t nremovals;
};

static void poll_cb(loop *l, void *ud);

static void schedule(webhook_dev *d, uint64_t ms)
{
    d->timer = loop_timer_add(d->l, ms, poll_cb, d);
}

static void next_step(webhook_dev *d);

static void on_written(void *ud, kube_result *res)
{
    webhook_dev *d = ud;
    d->call = NULL;
    if (!kube_result_ok(res)) {
        char code[16];
        snprintf(code, sizeof code, "%ld", res->http_code);
        kl_log(KL_LOG_WARN, "webhook configuration: write failed; retrying", "code", code,
               "reason", res->reason, "message", res->message, NULL);
        free(d->sending);
        d->sending = NULL;
        schedule(d, RETRY_MS);
        return;
    }
    next_step(d);
}

static int send_doc(webhook_dev *d, const char *method, const char *path, const char *ctype,
                    const char *body, size_t len)
{
    d->call = kube_request(d->kc, method, path, ctype, body, len, on_written, d);
    return d->call ? 0 : -1;
}

static void next_step(webhook_dev *d)
{
    static const char *apply = "application/apply-patch+yaml";
    int rc = 0;
    if (d->step == 0) {
        d->step = 1;
        rc = send_doc(d, "PATCH", "/apis/admissionregistration.k8s.io/v1/"
                                  "validatingwebhookconfigurations/klua-dev?fieldManager=klua-dev"
                                  "&force=true", apply, d->val.data, d->val.len);
    } else if (d->step == 1) {
        d->step = 2;
        rc = send_doc(d, "PATCH", "/apis/admissionregistration.k8s.io/v1/"
                                  "mutatingwebhookconfigurations/klua-dev?fieldManager=klua-dev"
                                  "&force=true", apply, d->mut.data, d->mut.len);
    } else if (d->conv_off < d->conv.len) {
        char *name = d->conv.data + d->conv_off;
        char *nl = strchr(name, '\n');
        char *body = nl + 1, *end = strchr(body, '\n');
        *nl = *end = '\0';
        d->conv_off = (size_t)(end + 1 - d->conv.data);
        kl_buf path = KL_BUF_INIT;
        kl_buf_puts(&path, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/");
        kl_buf_put_urlenc(&path, name);
        rc = kl_buf_failed(&path) ? -1
                                  : send_doc(d, "PATCH", path.data,
                                             "application/merge-patch+json", body, strlen(body));
        kl_buf_free(&path);
    } else {
        free(d->applied);
        d->applied = d->sending;
        d->sending = NULL;
        d->writes++;
        kl_log(KL_LOG_INFO, "webhook configuration installed", "url", d->o.base_url, NULL);
        schedule(d, WEBHOOK_DEV_POLL_MS);
        return;
    }
    if (rc != 0) {
        kl_log(KL_LOG_WARN, "webhook configuration: cannot send a request; retrying", NULL);
        free(d->sending);
        d->sending = NULL;
        schedule(d, RETRY_MS);
    }
}

static void poll_cb(loop *l, void *ud)
{
    webhook_dev *d = ud;
    (void)l;
    d->timer = 0;
    kl_buf_reset(&d->val);
    kl_buf_reset(&d->mut);
    kl_buf_reset(&d->conv);
    int pending = 0;
    webhook_dev_render(&d->o, &d->val, &d->mut, &d->conv, &pending);
    kl_buf all = KL_BUF_INIT;
    kl_buf_append(&all, d->val.data, d->val.len);
    kl_buf_append(&all, d->mut.data, d->mut.len);
    kl_buf_append(&all, d->conv.data ? d->conv.data : "", d->conv.len);
    if (pending || kl_buf_failed(&all) || kl_buf_failed(&d->val) || kl_buf_failed(&d->mut) ||
        kl_buf_failed(&d->conv)) {
        kl_buf_free(&all);
        schedule(d, WEBHOOK_DEV_POLL_MS);
        return;
    }
    if (d->applied && strcmp(d->applied, all.data) == 0) {
        kl_buf_free(&all);
        schedule(d, WEBHOOK_DEV_POLL_MS);
        return;
    }
    d->sending = kl_buf_take(&all);
    d->step = 0;
    d->conv_off = 0;
    if (!d->sending) {
        schedule(d, RETRY_MS);
        return;
    }
    next_step(d);
}

webhook_dev *webhook_dev_start(loop *l, kube_client *kc, const webhook_dev_opts *o, kl_err *err)
{
    webhook_dev *d = calloc(1, sizeof *d);
    if (!d || !(d->base_url = strdup(o->base_url)) || !(d->ca_pem = strdup(o->ca_pem))) {
        if (d)
            free(d->base_url);
        free(d);
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    d->l = l;
    d->kc = kc;
    d->o = *o;
    d->o.base_url = d->base_url;
    d->o.ca_pem = d->ca_pem;
    if (o->namespace && !(d->ns = strdup(o->namespace))) {
        webhook_dev_free(d);
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    d->o.namespace = d->ns;
    schedule(d, 0);
    return d;
}

static void on_removed(void *ud, kube_result *res)
{
    struct removal *r = ud;
    webhook_dev *d = r->d;
    r->call = NULL;
    if (!kube_result_ok(res) && res->http_code != 404)
        kl_log(KL_LOG_WARN, "webhook configuration: could not remove", "reason", res->reason,
               "message", res->message, NULL);
    if (webhook_dev_settled(d))
        kl_log(KL_LOG_INFO, "webhook configuration removed", NULL);
}

static void remove_one(webhook_dev *d, const char *method, const char *path, const char *ctype,
                       const char *body)
{
    if (d->nremovals >= sizeof d->removals / sizeof d->removals[0])
        return;
    struct removal *r = &d->removals[d->nremovals];
    r->d = d;
    r->call = kube_request(d->kc, method, path, ctype, body, body ? strlen(body) : 0, on_removed,
                           r);
    if (r->call)
        d->nremovals++;
}

void webhook_dev_uninstall(webhook_dev *d)
{
    if (!d || d->uninstalling)
        return;
    d->uninstalling = 1;
    loop_timer_cancel(d->l, d->timer);
    d->timer = 0;
    if (d->call) {
        kube_cancel(d->call);
        d->call = NULL;
    }
    if (!d->applied && !d->sending)
        return;   /* nothing was written */
    /* What may have been written: the last complete write, or the one in
     * flight (a superset of names is harmless: deletes of nothing are 404). */
    const char *docs = d->sending ? d->sending : d->applied;
    remove_one(d, "DELETE", "/apis/admissionregistration.k8s.io/v1/"
                            "validatingwebhookconfigurations/klua-dev", NULL, NULL);
    remove_one(d, "DELETE", "/apis/admissionregistration.k8s.io/v1/"
                            "mutatingwebhookconfigurations/klua-dev", NULL, NULL);
    /* the conversion documents: "crdname\npatch\n" after the two configurations */
    const char *p = strstr(docs, "]}");
    p = p ? strstr(p + 2, "]}") : NULL;
    for (p = p ? p + 2 : NULL; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        kl_buf path = KL_BUF_INIT;
        kl_buf_puts(&path, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/");
        kl_buf name = KL_BUF_INIT;
        kl_buf_append(&name, p, (size_t)(nl - p));
        kl_buf_put_urlenc(&path, name.data ? name.data : "");
        if (!kl_buf_failed(&path) && !kl_buf_failed(&name))
            remove_one(d, "PATCH", path.data, "application/merge-patch+json",
                       "{\"spec\":{\"conversion\":{\"strategy\":\"None\",\"webhook\":null}}}");
        kl_buf_free(&path);
        kl_buf_free(&name);
        const char *end = strchr(nl + 1, '\n');
        p = end ? end + 1 : NULL;
    }
}

int webhook_dev_settled(const webhook_dev *d)
{
    if (!d)
        return 1;
    for (size_t i = 0; i < d->nremovals; i++)
        if (d->removals[i].call)
            return 0;
    return 1;
}

unsigned long webhook_dev_writes(const webhook_dev *d) { return d ? d->writes : 0; }

void webhook_dev_free(webhook_dev *d)
{
    if (!d)
        return;
    if (d->call)
        kube_cancel(d->call);
    for (size_t i = 0; i < d->nremovals; i++)
        if (d->removals[i].call)
            kube_cancel(d->removals[i].call);
    loop_timer_cancel(d->l, d->timer);
    kl_buf_free(&d->val);
    kl_buf_free(&d->mut);
    kl_buf_free(&d->conv);
    free(d->applied);
    free(d->sending);
    free(d->base_url);
    free(d->ca_pem);
    free(d->ns);
    free(d);
}
