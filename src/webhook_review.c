/* webhook_review.c - AdmissionReview / ConversionReview decoding, routing
 * and answers (see webhook_review.h).
 * Uses: json, buf, err, OpenSSL (base64).
 */
#include "webhook_review.h"

#include "json.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMISSION_API "admission.k8s.io/v1"
#define CONVERSION_API "apiextensions.k8s.io/v1"

void webhook_verdict_clear(webhook_verdict *v)
{
    free(v->message);
    for (size_t i = 0; i < v->nwarnings; i++)
        free(v->warnings[i]);
    free(v->warnings);
    free(v->patch);
    memset(v, 0, sizeof *v);
}

int webhook_verdict_warn(webhook_verdict *v, const char *msg)
{
    char **w = realloc(v->warnings, (v->nwarnings + 1) * sizeof *w);
    if (!w)
        return -1;
    v->warnings = w;
    if (!(w[v->nwarnings] = strdup(msg)))
        return -1;
    v->nwarnings++;
    return 0;
}

int webhook_route(const char *path, size_t len, webhook_op *op, char name[WEBHOOK_MAX_NAME])
{
    static const struct {
        const char *prefix;
        webhook_op op;
    } routes[] = {{"/validate/", WEBHOOK_VALIDATE},
                  {"/mutate/", WEBHOOK_MUTATE},
                  {"/convert/", WEBHOOK_CONVERT}};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t pl = strlen(routes[i].prefix);
        if (len <= pl || memcmp(path, routes[i].prefix, pl) != 0)
            continue;
        size_t nl = len - pl;
        if (nl >= WEBHOOK_MAX_NAME)
            return -1;
        for (size_t j = 0; j < nl; j++) {
            char c = path[pl + j];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
                return -1;
        }
        memcpy(name, path + pl, nl);
        name[nl] = '\0';
        *op = routes[i].op;
        return 0;
    }
    return -1;
}

/* ---- answers ---- */

static void put_base64(kl_buf *out, const char *s, size_t n)
{
    if (n > (size_t)1 << 30) {
        out->failed = 1;
        return;
    }
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (kl_buf_reserve(out, need) != 0)
        return;
    int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s,
                            (int)n);
    out->len += (size_t)w;
    out->data[out->len] = '\0';
}

static void put_str(kl_buf *out, const char *s)
{
    json_escape_append(out, s ? s : "", s ? strlen(s) : 0);
}

static void admission_answer(kl_buf *out, const char *uid, const webhook_verdict *v)
{
    kl_buf_puts(out, "{\"apiVersion\":\"" ADMISSION_API "\",\"kind\":\"AdmissionReview\","
                     "\"response\":{\"uid\":");
    put_str(out, uid);
    kl_buf_puts(out, v->allowed ? ",\"allowed\":true" : ",\"allowed\":false");
    if (!v->allowed) {
        int code = v->code ? v->code : 403;
        kl_buf_printf(out, ",\"status\":{\"code\":%d,\"status\":\"Failure\",\"reason\":\"%s\","
                           "\"message\":", code, code == 403 ? "Forbidden"
                                                 : code == 400 ? "BadRequest"
                                                 : code == 404 ? "NotFound"
                                                               : "InternalError");
        put_str(out, v->message ? v->message : "denied");
        kl_buf_putc(out, '}');
    }
    if (v->nwarnings) {
        kl_buf_puts(out, ",\"warnings\":[");
        for (size_t i = 0; i < v->nwarnings; i++) {
            if (i)
                kl_buf_putc(out, ',');
            put_str(out, v->warnings[i]);
        }
        kl_buf_putc(out, ']');
    }
    if (v->allowed && v->patch) {
        kl_buf_puts(out, ",\"patchType\":\"JSONPatch\",\"patch\":\"");
        put_base64(out, v->patch, strlen(v->patch));
        kl_buf_putc(out, '"');
    }
    kl_buf_puts(out, "}}");
}

static int admission_error(kl_buf *out, const char *uid, int code, const char *msg)
{
    webhook_verdict v = {0};
    v.code = code;
    v.message = (char *)msg;
    admission_answer(out, uid, &v);
    return code;
}

static void conversion_head(kl_buf *out, const char *uid)
{
    kl_buf_puts(out, "{\"apiVersion\":\"" CONVERSION_API "\",\"kind\":\"ConversionReview\","
                     "\"response\":{\"uid\":");
    put_str(out, uid);
}

static int conversion_error(kl_buf *out, const char *uid, int code, const char *msg)
{
    conversion_head(out, uid);
    kl_buf_puts(out, ",\"convertedObjects\":[],\"result\":{\"status\":\"Failure\",\"message\":");
    put_str(out, msg);
    kl_buf_puts(out, "}}}");
    return code;
}

/* ---- requests ---- */

typedef struct strs {
    char *v[8];
    size_t n;
} strs;

/* A string field of obj as a kept copy; "" when absent, NULL when out of
 * memory or (strict) present with another type. */
static const char *field(strs *keep, const json_doc *d, int obj, const char *key)
{
    int t = json_obj_get(d, obj, key);
    if (keep->n >= sizeof keep->v / sizeof keep->v[0])
        return NULL;
    char *s = t >= 0 && d->toks[t].type == JSON_STRING ? json_str_dup(d, t) : strdup("");
    if (s)
        keep->v[keep->n++] = s;
    return s;
}

static void span(const json_doc *d, int obj, const char *key, const char **p, size_t *n)
{
    int t = json_obj_get(d, obj, key);
    *p = NULL;
    *n = 0;
    if (t >= 0 && d->toks[t].type != JSON_NULL)
        *p = json_raw(d, t, n);
}

/* The request object of a review of apiVersion api and kind kind; -1 with
 * msg when the document is not one. */
static int review_request(const json_doc *d, const char *api, const char *kind, char *msg,
                          size_t msgsz)
{
    if (d->toks[0].type != JSON_OBJECT) {
        snprintf(msg, msgsz, "the body is not a %s %s", api, kind);
        return -1;
    }
    int a = json_obj_get(d, 0, "apiVersion"), k = json_obj_get(d, 0, "kind");
    if (!json_str_eq(d, k, kind) || !json_str_eq(d, a, api)) {
        snprintf(msg, msgsz, "expected a %s %s (set %sReviewVersions to [\"v1\"])", api, kind,
                 strcmp(kind, "ConversionReview") ? "admission" : "conversion");
        return -1;
    }
    int r = json_obj_get(d, 0, "request");
    if (r < 0 || d->toks[r].type != JSON_OBJECT) {
        snprintf(msg, msgsz, "the %s has no request", kind);
        return -1;
    }
    return r;
}

static int handle_admission(const webhook_handlers *h, webhook_op op, const char *name,
                            const json_doc *d, kl_buf *out)
{
    char msg[256];
    strs keep = {{0}, 0};
    webhook_admission req = {0};
    webhook_verdict v = {0};
    int rc;
    int r = review_request(d, ADMISSION_API, "AdmissionReview", msg, sizeof msg);
    if (r < 0) {
        rc = admission_error(out, "", 400, msg);
        goto out;
    }
    req.uid = field(&keep, d, r, "uid");
    req.operation = field(&keep, d, r, "operation");
    req.ns = field(&keep, d, r, "namespace");
    req.name = field(&keep, d, r, "name");
    int kind = json_obj_get(d, r, "kind");
    if (kind >= 0 && d->toks[kind].type == JSON_OBJECT) {
        const char *g = field(&keep, d, kind, "group"), *ver = field(&keep, d, kind, "version");
        req.kind = field(&keep, d, kind, "kind");
        if (g && ver && keep.n < sizeof keep.v / sizeof keep.v[0]) {
            size_t n = strlen(g) + strlen(ver) + 2;
            char *av = malloc(n);
            if (av) {
                snprintf(av, n, "%s%s%s", g, *g ? "/" : "", ver);
                keep.v[keep.n++] = av;
            }
            req.api_version = av;
        }
    }
    if (!req.uid || !req.operation || !req.ns || !req.name || !req.kind || !req.api_version) {
        rc = admission_error(out, req.uid ? req.uid : "", 400,
                             "the AdmissionReview request lacks uid, kind or operation, or is "
                             "out of memory");
        goto out;
    }
    if (!req.uid[0] || !req.kind[0] || !req.operation[0]) {
        rc = admission_error(out, req.uid, 400, "the AdmissionReview request lacks uid, kind "
                                                 "or operation");
        goto out;
    }
    int dry = json_obj_get(d, r, "dryRun");
    req.dry_run = dry >= 0 && d->toks[dry].type == JSON_TRUE;
    span(d, r, "object", &req.object, &req.object_len);
    span(d, r, "oldObject", &req.old_object, &req.old_object_len);
    span(d, r, "userInfo", &req.user_info, &req.user_info_len);
    if (h->admit(h->ud, op, name, &req, &v) != 0) {
        if (!v.code)
            v.code = 500;
        v.allowed = 0;
    }
    admission_answer(out, req.uid, &v);
    rc = v.allowed || v.code == 0 || v.code == 403 ? 200 : v.code;
out:
    webhook_verdict_clear(&v);
    for (size_t i = 0; i < keep.n; i++)
        free(keep.v[i]);
    return rc;
}

static int handle_conversion(const webhook_handlers *h, const char *name, const json_doc *d,
                             kl_buf *out)
{
    char msg[512];
    char *uid = NULL, *desired = NULL;
    kl_buf objs = KL_BUF_INIT;
    int rc;
    int r = review_request(d, CONVERSION_API, "ConversionReview", msg, sizeof msg);
    if (r < 0) {
        rc = conversion_error(out, "", 400, msg);
        goto out;
    }
    uid = json_str_dup(d, json_obj_get(d, r, "uid"));
    desired = json_str_dup(d, json_obj_get(d, r, "desiredAPIVersion"));
    int list = json_obj_get(d, r, "objects");
    if (!uid || !*uid || !desired || !*desired || list < 0 || d->toks[list].type != JSON_ARRAY) {
        rc = conversion_error(out, uid ? uid : "", 400,
                              "the ConversionReview request lacks uid, desiredAPIVersion or "
                              "objects");
        goto out;
    }
    kl_buf_putc(&objs, '[');
    size_t i = 0;
    for (int o = json_first(d, list); o >= 0; o = json_next(d, o), i++) {
        size_t n;
        const char *raw = json_raw(d, o, &n);
        if (i)
            kl_buf_putc(&objs, ',');
        msg[0] = '\0';
        if (d->toks[o].type != JSON_OBJECT) {
            snprintf(msg, sizeof msg, "objects[%zu] is not an object", i);
            rc = conversion_error(out, uid, 400, msg);
            goto out;
        }
        if (h->convert(h->ud, name, desired, raw, n, &objs, msg, sizeof msg) != 0) {
            rc = conversion_error(out, uid, 500, msg[0] ? msg : "conversion failed");
            goto out;
        }
    }
    kl_buf_putc(&objs, ']');
    if (kl_buf_failed(&objs)) {
        rc = conversion_error(out, uid, 500, "out of memory");
        goto out;
    }
    conversion_head(out, uid);
    kl_buf_puts(out, ",\"convertedObjects\":");
    kl_buf_append(out, objs.data, objs.len);
    kl_buf_puts(out, ",\"result\":{\"status\":\"Success\"}}}");
    rc = 200;
out:
    kl_buf_free(&objs);
    free(uid);
    free(desired);
    return rc;
}

int webhook_review_handle(const webhook_handlers *h, const char *path, size_t path_len,
                          const char *body, size_t len, kl_buf *resp)
{
    webhook_op op;
    char name[WEBHOOK_MAX_NAME];
    int conv = path_len >= 9 && memcmp(path, "/convert/", 9) == 0;
    if (webhook_route(path, path_len, &op, name) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "no webhook at \"%.*s\" (paths: /validate/<controller>, "
                                  "/mutate/<controller>, /convert/<controller>)",
                 (int)(path_len > 80 ? 80 : path_len), path);
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        return conv ? conversion_error(resp, "", 404, msg) : admission_error(resp, "", 404, msg);
    }
    json_doc d = {0};
    kl_err err = {0};
    int rc;
    if (json_parse(&d, body ? body : "", body ? len : 0, &err) != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "the body is not JSON: %s", err.msg);
        rc = op == WEBHOOK_CONVERT ? conversion_error(resp, "", 400, msg)
                                   : admission_error(resp, "", 400, msg);
    } else if (op == WEBHOOK_CONVERT) {
        rc = handle_conversion(h, name, &d, resp);
    } else {
        rc = handle_admission(h, op, name, &d, resp);
    }
    json_doc_free(&d);
    if (kl_buf_failed(resp)) {
        kl_buf_reset(resp);
        rc = op == WEBHOOK_CONVERT ? conversion_error(resp, "", 500, "out of memory")
                                   : admission_error(resp, "", 500, "out of memory");
    }
    return rc;
}
