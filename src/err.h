/* err.h - the error value every klua module returns through.
 *
 * Provides: kl_err, a caller-owned error record (a code and one line of text),
 * and kl_err_set() to fill it. Functions return 0 on success and -1 on
 * failure, filling *err when err is not NULL. Uses: nothing.
 */
#ifndef KLUA_ERR_H
#define KLUA_ERR_H

#include <stdarg.h>

enum {
    KL_OK = 0,
    KL_EINVAL = 1,   /* bad input: malformed file, bad argument */
    KL_ENOMEM = 2,   /* allocation failed */
    KL_EIO = 3,      /* file or network I/O failed */
    KL_ETLS = 4,     /* TLS or certificate problem */
    KL_EAPI = 5,     /* the API server answered with an error Status */
    KL_ETIMEOUT = 6, /* a deadline passed */
    KL_ECANCEL = 7,  /* the operation was cancelled */
    KL_ESTATE = 8    /* called in the wrong state */
};

typedef struct kl_err {
    int code;
    char msg[512];
} kl_err;

/* Fill err (if not NULL) and return -1, so callers can `return kl_err_set(...)`. */
int kl_err_set(kl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "prefix: old message". Returns -1. */
int kl_err_wrap(kl_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kl_err_clear(kl_err *err);

#endif
