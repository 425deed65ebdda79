/* fuzz_webhook.c - libFuzzer target for the webhook server's request path:
 * the bytes of one HTTP request are parsed as the server parses them
 * (ops_request_parse with the webhook size limit), and a complete request's
 * path and body go through webhook_review_handle (review decoding and
 * routing) with stand-in handlers that compute the JSON Patch between the
 * request's oldObject and object (webhook_patch_diff) and echo objects to
 * convert. Whatever the input, the answer must be well-formed JSON: an
 * AdmissionReview or ConversionReview with a response, and every patch
 * must parse as a JSON array. Uses: ops, webhook_review, webhook_patch,
 * json. Only LLVMFuzzerTestOneInput is exported. */
#include "json.h"
#include "ops.h"
#include "webhook_patch.h"
#include "webhook_review.h"
#include "webhook_server.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void must_parse(const char *s, size_t n, int want_type)
{
    json_doc d = {0};
    if (json_parse(&d, s, n, NULL) != 0 || (want_type >= 0 && d.toks[0].type != want_type))
        abort();
    json_doc_free(&d);
}

static int admit(void *ud, webhook_op op, const char *name, const webhook_admission *r,
                 webhook_verdict *v)
{
    (void)ud;
    (void)name;
    if (!r->uid || !r->kind || !r->api_version || !r->operation || !r->ns || !r->name)
        abort();
    v->allowed = op == WEBHOOK_MUTATE;
    if (r->object && r->old_object) {
        kl_buf p = KL_BUF_INIT;
        size_t nops = 0;
        if (webhook_patch_diff(r->old_object, r->old_object_len, r->object, r->object_len, &p,
                               &nops, NULL) == 0) {
            must_parse(p.data, p.len, JSON_ARRAY);
            v->patch = kl_buf_take(&p);
        }
        kl_buf_free(&p);
    }
    if (!v->allowed)
        v->message = strdup("denied \"by\" the fuzzer\n");
    webhook_verdict_warn(v, "w\x01");
    return r->dry_run ? -1 : 0;
}

static int convert(void *ud, const char *name, const char *desired, const char *obj, size_t n,
                   kl_buf *out, char *msg, size_t msgsz)
{
    (void)ud;
    (void)name;
    if (strlen(desired) > 40) {
        snprintf(msg, msgsz, "too long: %s", desired);
        return -1;
    }
    must_parse(obj, n, JSON_OBJECT);
    kl_buf_append(out, obj, n);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    ops_request r;
    if (ops_request_parse(buf, size, WEBHOOK_MAX_REQUEST, &r) == OPS_PARSE_DONE) {
        webhook_handlers h = {admit, convert, NULL};
        kl_buf out = KL_BUF_INIT;
        const char *body = buf + r.total_len - r.content_length;
        int st = webhook_review_handle(&h, r.path, r.path_len, body, r.content_length, &out);
        if (st != 200 && st != 400 && st != 404 && st != 500)
            abort();
        must_parse(out.data, out.len, JSON_OBJECT);
        json_doc d = {0};
        if (json_parse(&d, out.data, out.len, NULL) != 0 || json_obj_get(&d, 0, "response") < 0)
            abort();
        json_doc_free(&d);
        kl_buf_free(&out);
    }
    free(buf);
    return 0;
}
