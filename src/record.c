/* record.c - `klua run --record FILE` (see record.h).
 *
 * Provides: recorder_open, recorder_free. Uses: informer, store, lua_ctx,
 * json, buf, err, util.
 */
#include "record.h"

#include "buf.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tap_ud {
    struct tap_ud *next;
    struct recorder *rec;
    informer *inf;
    char api_version[256], kind[128];
    int secret;                  /* core v1 Secret: redact data */
} tap_ud;

struct recorder {
    FILE *fp;
    lua_ctx_shared *shared;
    tap_ud *taps;
    kl_buf line;
    int failed;                  /* a write failed: logged once */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* s[0..n) with known secret values redacted, NUL-terminated (the caller
 * frees it); NULL with the line marked failed when out of memory. */
static char *redacted(recorder *r, const char *s, size_t n)
{
    char *tmp = malloc(n + 1), *red = malloc(4 * n + 1024);
    if (!tmp || !red) {
        free(tmp);
        free(red);
        r->line.failed = 1;
        return NULL;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    lua_ctx_shared_redact(r->shared, tmp, red, 4 * n + 1024);
    free(tmp);
    return red;
}

/* A JSON string of s, with known secret values redacted. */
static void put_str(recorder *r, const char *s, size_t n)
{
    if (!s) {
        kl_buf_puts(&r->line, "null");
        return;
    }
    char *red = redacted(r, s, n);
    if (!red)
        return;
    json_escape_append(&r->line, red, strlen(red));
    free(red);
}

/* A JSON body: as is when it parses (secret values redacted), else a string. */
static void put_json(recorder *r, const char *s, size_t n)
{
    json_doc d = {0};
    kl_err err = {0};
    if (!s || n == 0) {
        kl_buf_puts(&r->line, "null");
        return;
    }
    if (json_parse(&d, s, n, &err) != 0) {
        put_str(r, s, n);
        return;
    }
    json_doc_free(&d);
    char *red = redacted(r, s, n);
    if (!red)
        return;
    kl_buf_puts(&r->line, red);
    free(red);
}

static void emit(recorder *r)
{
    kl_buf_putc(&r->line, '\n');
    if (kl_buf_failed(&r->line) || fwrite(r->line.data, 1, r->line.len, r->fp) != r->line.len ||
        fflush(r->fp) != 0) {
        if (!r->failed)
            kl_log(KL_LOG_ERROR, "--record: cannot write the recording", "error", strerror(errno),
                   NULL);
        r->failed = 1;
    }
    kl_buf_reset(&r->line);
}

/* A Secret without its values: every data / stringData value redacted. */
static void put_secret(recorder *r, const store_obj *o)
{
    json_doc d = {0};
    kl_err err = {0};
    if (json_parse(&d, o->json, o->json_len, &err) != 0) {
        kl_buf_puts(&r->line, "null");
        return;
    }
    kl_buf_puts(&r->line, "{");
    int first = 1;
    for (int k = json_first(&d, 0); k > 0; k = json_next(&d, k + 1)) {
        int v = k + 1;
        kl_buf_puts(&r->line, first ? "" : ",");
        first = 0;
        size_t kl;
        const char *kraw = json_raw(&d, k, &kl);
        kl_buf_append(&r->line, kraw, kl);
        kl_buf_putc(&r->line, ':');
        if ((json_str_eq(&d, k, "data") || json_str_eq(&d, k, "stringData")) &&
            d.toks[v].type == JSON_OBJECT) {
            kl_buf_putc(&r->line, '{');
            int f2 = 1;
            for (int kk = json_first(&d, v); kk > 0; kk = json_next(&d, kk + 1)) {
                size_t n;
                const char *raw = json_raw(&d, kk, &n);
                kl_buf_puts(&r->line, f2 ? "" : ",");
                f2 = 0;
                kl_buf_append(&r->line, raw, n);
                kl_buf_puts(&r->line, ":\"<redacted>\"");
            }
            kl_buf_putc(&r->line, '}');
        } else {
            size_t n;
            const char *raw = json_raw(&d, v, &n);
            kl_buf_append(&r->line, raw, n);
        }
    }
    kl_buf_puts(&r->line, "}");
    json_doc_free(&d);
}

static void on_event(tap_ud *t, const char *type, const store_obj *o)
{
    recorder *r = t->rec;
    kl_buf_printf(&r->line, "{\"t\":\"event\",\"ts\":%.3f,\"type\":\"%s\",\"apiVersion\":", now_s(),
                  type);
    json_escape_append(&r->line, t->api_version, strlen(t->api_version));
    kl_buf_puts(&r->line, ",\"kind\":");
    json_escape_append(&r->line, t->kind, strlen(t->kind));
    kl_buf_puts(&r->line, ",\"object\":");
    if (t->secret)
        put_secret(r, o);
    else
        put_json(r, o->json, o->json_len);
    kl_buf_putc(&r->line, '}');
    emit(r);
}

static void on_add(void *ud, const store_obj *o) { on_event(ud, "ADDED", o); }
static void on_update(void *ud, const store_obj *old, const store_obj *cur)
{
    on_event(ud, "MODIFIED", cur);
}
static void on_delete(void *ud, const store_obj *o) { on_event(ud, "DELETED", o); }

static void on_new_informer(void *ud, informer *inf)
{
    recorder *r = ud;
    tap_ud *t = calloc(1, sizeof *t);
    if (!t)
        return;
    const kube_resource *res = informer_resource(inf);
    t->rec = r;
    t->inf = inf;
    snprintf(t->api_version, sizeof t->api_version, "%s%s%s", res->group, *res->group ? "/" : "",
             res->version);
    snprintf(t->kind, sizeof t->kind, "%s", res->kind);
    t->secret = !*res->group && !strcmp(res->kind, "Secret");
    t->next = r->taps;
    r->taps = t;
    kl_buf_puts(&r->line, "{\"t\":\"resource\",\"apiVersion\":");
    json_escape_append(&r->line, t->api_version, strlen(t->api_version));
    kl_buf_puts(&r->line, ",\"kind\":");
    json_escape_append(&r->line, t->kind, strlen(t->kind));
    kl_buf_puts(&r->line, ",\"plural\":");
    json_escape_append(&r->line, res->resource, strlen(res->resource));
    kl_buf_printf(&r->line, ",\"namespaced\":%s,\"status\":%s}", res->namespaced ? "true" : "false",
                  res->has_status ? "true" : "false");
    emit(r);
    informer_handler h = {on_add, on_update, on_delete, t};
    informer_add_handler(inf, &h);
}

static void on_action(void *ud, const lua_ctx_action *a)
{
    recorder *r = ud;
    kl_buf *b = &r->line;
    char key[600];
    snprintf(key, sizeof key, "%s%s%s", a->ns ? a->ns : "", a->ns && *a->ns ? "/" : "",
             a->name ? a->name : "");
    kl_buf_printf(b, "{\"t\":\"%s\",\"ts\":%.3f,\"controller\":", a->url ? "http" : "write",
                  now_s());
    json_escape_append(b, a->controller, strlen(a->controller));
    kl_buf_puts(b, ",\"key\":");
    json_escape_append(b, key, strlen(key));
    kl_buf_puts(b, ",\"method\":");
    json_escape_append(b, a->method, strlen(a->method));
    if (a->url) {
        kl_buf_puts(b, ",\"url\":");
        put_str(r, a->url, strlen(a->url));
        kl_buf_puts(b, ",\"body\":");
        put_str(r, a->body, a->body_len);
        kl_buf_printf(b, ",\"code\":%ld,\"headers\":{", a->code);
        const char *h = a->resp_headers;
        for (size_t i = 0; h && i < a->nresp_headers; i++) {
            const char *v = h + strlen(h) + 1;
            kl_buf_puts(b, i ? "," : "");
            put_str(r, h, strlen(h));
            kl_buf_putc(b, ':');
            put_str(r, v, strlen(v));
            h = v + strlen(v) + 1;
        }
        kl_buf_puts(b, "},\"response\":");
        put_str(r, a->resp_body, a->resp_len);
    } else {
        const char *f[][2] = {{"apiVersion", a->api_version}, {"kind", a->kind},
                              {"namespace", a->target_ns},    {"name", a->target_name},
                              {"subresource", a->subresource}, {"contentType", a->content_type}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            kl_buf_printf(b, ",\"%s\":", f[i][0]);
            const char *v = f[i][1] ? f[i][1] : "";
            json_escape_append(b, v, strlen(v));
        }
        kl_buf_puts(b, ",\"body\":");
        put_json(r, a->body, a->body_len);
        kl_buf_printf(b, ",\"code\":%ld", a->code);
    }
    kl_buf_putc(b, '}');
    emit(r);
}

recorder *recorder_open(const char *path, informer_registry *reg, lua_ctx_shared *shared,
                        kl_err *err)
{
    recorder *r = calloc(1, sizeof *r);
    if (!r) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    if (!(r->fp = fopen(path, "a"))) {
        kl_err_set(err, KL_EIO, "--record %s: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    r->shared = shared;
    informer_registry_set_new_listener(reg, on_new_informer, r);
    lua_ctx_shared_set_tap(shared, on_action, r);
    return r;
}

void recorder_free(recorder *r)
{
    if (!r)
        return;
    while (r->taps) {
        tap_ud *t = r->taps;
        r->taps = t->next;
        free(t);
    }
    kl_buf_free(&r->line);
    fclose(r->fp);
    free(r);
}
