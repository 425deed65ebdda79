/* buf.h - a growable byte buffer with a sticky error.
 *
 * Provides: kl_buf, always NUL-terminated after the first append (data may
 * be NULL while empty). The buffer owns data; kl_buf_free releases it,
 * kl_buf_take hands it to the caller.
 *
 * Errors are sticky: once an append (or reserve) fails, the buffer is
 * marked failed, every later append does nothing and returns -1, and
 * kl_buf_failed() says so, until kl_buf_reset or kl_buf_free. So a caller
 * that builds a message from many appends may ignore their results and
 * check kl_buf_failed() once, before using the message; kl_buf_take of a
 * failed buffer frees it and returns NULL. Uses: nothing.
 */
#ifndef KLUA_BUF_H
#define KLUA_BUF_H

#include <stddef.h>

typedef struct kl_buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;   /* an append failed since the last reset (sticky) */
} kl_buf;

#define KL_BUF_INIT {NULL, 0, 0, 0}

/* Each returns 0, or -1 when out of memory, on size overflow, or when the
 * buffer had already failed (then it appends nothing). After a failure the
 * contents are incomplete: check kl_buf_failed() before using them. */
int kl_buf_reserve(kl_buf *b, size_t extra);
int kl_buf_append(kl_buf *b, const void *p, size_t n);
int kl_buf_puts(kl_buf *b, const char *s);
int kl_buf_putc(kl_buf *b, char c);
int kl_buf_printf(kl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s percent-encoded for a URL query value or path segment. */
int kl_buf_put_urlenc(kl_buf *b, const char *s);

/* Nonzero when an append failed since the last reset: the contents are
 * incomplete. */
int kl_buf_failed(const kl_buf *b);
void kl_buf_reset(kl_buf *b);     /* len = 0, keeps memory, clears the failure */
void kl_buf_consume(kl_buf *b, size_t n); /* drop the first n bytes */
void kl_buf_free(kl_buf *b);      /* releases memory, clears the failure */
/* Caller owns the result ("" if empty); NULL when the buffer had failed (its
 * memory is freed then) or out of memory. b is reset either way. */
char *kl_buf_take(kl_buf *b);

#endif
