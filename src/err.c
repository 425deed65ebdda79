/* err.c - see err.h. */
#include "err.h"

#include <stdio.h>
#include <string.h>

int kl_err_set(kl_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int kl_err_wrap(kl_err *err, const char *fmt, ...)
{
    if (err) {
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* append ": old" after the prefix, truncating what does not fit */
        size_t off = n < 0 ? 0 : (size_t)n;
        if (off < sizeof err->msg - 1) {
            size_t room = sizeof err->msg - 1 - off;
            size_t olen = strnlen(old, sizeof old);
            const char sep[] = ": ";
            size_t k = room < 2 ? room : 2;
            memcpy(err->msg + off, sep, k);
            off += k;
            room -= k;
            if (olen > room)
                olen = room;
            memcpy(err->msg + off, old, olen);
            err->msg[off + olen] = '\0';
        }
    }
    return -1;
}

void kl_err_clear(kl_err *err)
{
    if (err) {
        err->code = KL_OK;
        err->msg[0] = '\0';
    }
}
