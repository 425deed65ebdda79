/* controller_status.c - the Ready condition klua writes after a reconcile
 * (see controller_status.h).
 *
 * Provides: controller_status_sync_ready.
 * Uses: rest (kube_patch of /status), store (the cached object), json
 * (reading status.conditions), buf, util (kl_rfc3339_now), log.
 */
#include "controller_status.h"

#include "buf.h"
#include "json.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static void on_ready_patched(void *ud, kube_result *res)
{
    (void)ud;
    if (!kube_result_ok(res)) {
        char code[16];
        snprintf(code, sizeof code, "%ld", res->http_code);
        /* 409: the object changed meanwhile; the next reconcile decides again. */
        kl_log(KL_LOG_V1, "Ready condition not updated", "code", code, "reason", res->reason, NULL);
    }
}

static int str_tok_eq(const json_doc *d, int obj, const char *key, const char *want)
{
    return json_str_eq(d, json_obj_get(d, obj, key), want);
}

/* 1 if s[0..sn) occurs in h[0..n). glibc's memmem goes byte by byte
 * (about 5 instructions a byte); memchr on a first byte that is rare in
 * Kubernetes JSON ('\\', 'R') skips ahead many bytes at a time. */
static int has_bytes(const char *h, size_t n, const char *s, size_t sn)
{
    const char *p = h, *end = h + n;
    while (sn > 0 && (size_t)(end - p) >= sn &&
           (p = memchr(p, s[0], (size_t)(end - p) - sn + 1)) != NULL) {
        if (memcmp(p, s, sn) == 0)
            return 1;
        p++;
    }
    return 0;
}

/* 0 when the object's JSON certainly holds no string (key or value) equal
 * to s: short of a \u escape, such a string appears byte for byte. This
 * spares parsing the whole object after every successful reconcile, the
 * common case, in which nothing of ours can be there to take back. */
static int may_hold_string(const store_obj *o, const char *s)
{
    return has_bytes(o->json, o->json_len, s, strlen(s)) ||
           has_bytes(o->json, o->json_len, "\\u", 2);
}

/* A condition the script wrote for this generation: its observedGeneration
 * is the object's, or it has none (then nothing says it is older). */
static int script_wrote_now(const json_doc *d, int cond, long long generation)
{
    int64_t g = 0;
    int t = json_obj_get(d, cond, "observedGeneration");
    if (t < 0)
        return 1;
    return json_get_int64(d, t, &g) == 0 && g == generation;
}

/* After a reconcile: errmsg set -> make sure Ready=False/ReconcileError
 * carries it; errmsg NULL -> drop a Ready condition klua set earlier. Only
 * for objects with status.conditions, and only through /status. */
void controller_status_sync_ready(kube_client *kc, const kube_resource *res, const store *st,
                                  const char *key, const char *ctype, const char *errmsg)
{
    if (!kc || !res || !res->has_status || !st || !ctype)
        return;
    const store_obj *o = store_get(st, key);
    if (!o || o->deleting)
        return;
    /* An error needs status.conditions; taking one back needs ours. */
    if (!may_hold_string(o, errmsg ? "conditions" : "ReconcileError"))
        return;
    json_doc d = {0};
    kl_buf body = KL_BUF_INIT;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", errmsg ? errmsg : "");
    if (json_parse(&d, o->json, o->json_len, NULL) != 0)
        goto done;
    int conds = json_path(&d, 0, "status.conditions");
    if (conds < 0 || d.toks[conds].type != JSON_ARRAY)
        goto done;
    int ready = -1;
    for (int i = json_first(&d, conds); i >= 0; i = json_next(&d, i))
        if (d.toks[i].type == JSON_OBJECT && str_tok_eq(&d, i, "type", ctype))
            ready = i;
    int was_false = ready >= 0 && str_tok_eq(&d, ready, "status", "False");
    int ours = ready >= 0 && str_tok_eq(&d, ready, "reason", "ReconcileError");
    if (errmsg && ready >= 0 && !ours && script_wrote_now(&d, ready, o->generation))
        goto done;              /* the script's word for this generation stands */
    if (errmsg && was_false && ours && str_tok_eq(&d, ready, "message", msg))
        goto done;              /* already says so: writing again would loop */
    if (!errmsg && !ours)
        goto done;              /* nothing of ours to take back */
    kl_buf_puts(&body, "{\"metadata\":{\"resourceVersion\":");
    json_escape_append(&body, o->rv, strlen(o->rv));
    kl_buf_puts(&body, "},\"status\":{\"conditions\":[");
    int first = 1;
    for (int i = json_first(&d, conds); i >= 0; i = json_next(&d, i)) {
        if (i == ready)
            continue;
        size_t len;
        const char *raw = json_raw(&d, i, &len);
        if (!first)
            kl_buf_putc(&body, ',');
        kl_buf_append(&body, raw, len);
        first = 0;
    }
    if (errmsg) {
        char when[40];
        kl_rfc3339_now(0, when, sizeof when);
        if (!first)
            kl_buf_putc(&body, ',');
        kl_buf_puts(&body, "{\"type\":");
        json_escape_append(&body, ctype, strlen(ctype));
        kl_buf_puts(&body, ",\"status\":\"False\",\"reason\":\"ReconcileError\",\"message\":");
        json_escape_append(&body, msg, strlen(msg));
        kl_buf_printf(&body, ",\"observedGeneration\":%lld,\"lastTransitionTime\":",
                      o->generation);
        int lt = was_false ? json_obj_get(&d, ready, "lastTransitionTime") : -1;
        if (lt >= 0 && d.toks[lt].type == JSON_STRING) {
            size_t len;
            const char *raw = json_raw(&d, lt, &len);
            kl_buf_append(&body, raw, len);
        } else {
            json_escape_append(&body, when, strlen(when));
        }
        kl_buf_putc(&body, '}');
    }
    kl_buf_puts(&body, "]}}");
    if (kl_buf_failed(&body)) {   /* appends are sticky: one check for all */
        kl_log(KL_LOG_ERROR, "out of memory writing the error condition", "name", o->name, NULL);
    } else if (body.data) {
        kube_write_opts wo = {0};
        wo.subresource = "status";
        kube_patch(kc, res, o->ns, o->name, KUBE_PATCH_MERGE, body.data,
                   body.len, &wo, on_ready_patched, NULL);
    }
done:
    kl_buf_free(&body);
    json_doc_free(&d);
}
