/* webhook_review.h - AdmissionReview v1 and ConversionReview v1, decoded,
 * routed and answered.
 *
 * Provides: webhook_review_handle(), which takes the path and body of one
 * POST to the webhook server, routes it by path to a handler:
 *   /validate/<controller>   AdmissionReview v1 -> admit(WEBHOOK_VALIDATE)
 *   /mutate/<controller>     AdmissionReview v1 -> admit(WEBHOOK_MUTATE)
 *   /convert/<controller>    ConversionReview v1 -> convert, per object
 * and writes the review the API server expects back. Whatever the input,
 * the answer is a well-formed review of the kind the path calls for: a
 * body that is not JSON, not a review, or a review of the wrong version or
 * kind, an unknown path or controller, and a handler that fails each
 * become a denial (AdmissionReview: allowed false with status code and
 * message) or a Failure result (ConversionReview), with the request's uid
 * when it could be read. Admission patches go out base64-encoded with
 * patchType JSONPatch. Pure: no I/O, so it is fuzzed on bytes
 * (spec/fuzz/fuzz_webhook.c).
 * Uses: json, buf, err, OpenSSL (base64).
 */
#ifndef KLUA_WEBHOOK_REVIEW_H
#define KLUA_WEBHOOK_REVIEW_H

#include "buf.h"

#include <stddef.h>

typedef enum { WEBHOOK_VALIDATE, WEBHOOK_MUTATE, WEBHOOK_CONVERT } webhook_op;

#define WEBHOOK_MAX_NAME 64   /* controller names are at most 63 bytes */

/* An AdmissionReview's request. Strings are NUL-terminated copies owned
 * by the review code; the raw JSON spans point into the request body.
 * A span is NULL (length 0) when the field is absent or null. */
typedef struct webhook_admission {
    const char *uid;
    const char *operation;      /* CREATE, UPDATE, DELETE, CONNECT */
    const char *api_version;    /* request.kind as "group/version" or "version" */
    const char *kind;
    const char *ns, *name;      /* "" when absent */
    int dry_run;
    const char *object; size_t object_len;
    const char *old_object; size_t old_object_len;
    const char *user_info; size_t user_info_len;
} webhook_admission;

/* What a handler decides. The handler fills it; the review code frees the
 * strings (webhook_verdict_clear). */
typedef struct webhook_verdict {
    int allowed;
    int code;            /* denied: HTTP-like status for the Status (0 = 403) */
    char *message;       /* denied: the reason shown by kubectl (may be NULL) */
    char **warnings;     /* allowed or not: shown by kubectl as "Warning: ..." */
    size_t nwarnings;
    char *patch;         /* mutate: a JSON Patch array, or NULL for none */
} webhook_verdict;

void webhook_verdict_clear(webhook_verdict *v);
/* Add a warning (copied). -1 when out of memory. */
int webhook_verdict_warn(webhook_verdict *v, const char *msg);

typedef struct webhook_handlers {
    /* Decide on one admission request for controller `name` (op is
     * WEBHOOK_VALIDATE or WEBHOOK_MUTATE). Return 0 with v filled (a
     * denial is a 0 return with allowed 0), or -1 when the handler could
     * not run; v->message then says why (the review denies with code 500
     * unless the handler set another). */
    int (*admit)(void *ud, webhook_op op, const char *name, const webhook_admission *req,
                 webhook_verdict *v);
    /* Convert one object (raw JSON) to desired ("group/version"),
     * appending the converted object's JSON to out. 0, or -1 with a
     * message in msg (the review then fails as a whole). */
    int (*convert)(void *ud, const char *name, const char *desired, const char *obj,
                   size_t obj_len, kl_buf *out, char *msg, size_t msgsz);
    void *ud;
} webhook_handlers;

/* Route and answer one request. Appends the JSON answer to resp (the body
 * of an HTTP 200; the API server reads the verdict from the review, not
 * the status line). Returns the review's status for logs and metrics: 200
 * for an answered review (allowed, denied or converted), 400 for a
 * request that is not a valid review, 404 for an unknown path, 500 for a
 * handler failure or memory. */
int webhook_review_handle(const webhook_handlers *h, const char *path, size_t path_len,
                          const char *body, size_t len, kl_buf *resp);

/* The route of a path: 0 with *op and name filled, or -1. */
int webhook_route(const char *path, size_t len, webhook_op *op, char name[WEBHOOK_MAX_NAME]);

#endif
