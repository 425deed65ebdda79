/* buf.c - see buf.h. Every append goes through kl_buf_reserve, which is
 * where a failure is recorded and where a failed buffer refuses more. */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Mark b failed; returns -1 for the caller to pass on. */
static int fail(kl_buf *b)
{
    b->failed = 1;
    return -1;
}

int kl_buf_reserve(kl_buf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (extra > SIZE_MAX - b->len - 1)
        return fail(b);
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return fail(b);
    b->data = p;
    b->cap = cap;
    return 0;
}

int kl_buf_append(kl_buf *b, const void *p, size_t n)
{
    if (kl_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int kl_buf_puts(kl_buf *b, const char *s) { return kl_buf_append(b, s, strlen(s)); }

int kl_buf_putc(kl_buf *b, char c) { return kl_buf_append(b, &c, 1); }

int kl_buf_printf(kl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return b->failed ? -1 : fail(b);
    if (kl_buf_reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int kl_buf_put_urlenc(kl_buf *b, const char *s)
{
    if (b->failed)
        return -1;
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            if (kl_buf_putc(b, (char)c) != 0)
                return -1;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (kl_buf_append(b, e, 3) != 0)
                return -1;
        }
    }
    return 0;
}

int kl_buf_failed(const kl_buf *b) { return b->failed; }

void kl_buf_reset(kl_buf *b)
{
    b->failed = 0;
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void kl_buf_consume(kl_buf *b, size_t n)
{
    if (n >= b->len) {
        kl_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void kl_buf_free(kl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

char *kl_buf_take(kl_buf *b)
{
    if (b->failed) {
        kl_buf_free(b);
        return NULL;
    }
    char *p = b->data;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
