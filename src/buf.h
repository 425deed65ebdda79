/* buf.h - a growable byte buffer.
 *
 * Provides: kl_buf, always NUL-terminated after the first append (data may
 * be NULL while empty). The buffer owns data; kl_buf_free releases it,
 * kl_buf_take hands it to the caller. Uses: nothing.
 */
#ifndef KLUA_BUF_H
#define KLUA_BUF_H

#include <stddef.h>

typedef struct kl_buf {
    char *data;
    size_t len;
    size_t cap;
} kl_buf;

#define KL_BUF_INIT {NULL, 0, 0}

int kl_buf_reserve(kl_buf *b, size_t extra);          /* 0 or -1 (ENOMEM) */
int kl_buf_append(kl_buf *b, const void *p, size_t n);
int kl_buf_puts(kl_buf *b, const char *s);
int kl_buf_putc(kl_buf *b, char c);
int kl_buf_printf(kl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s percent-encoded for a URL query value or path segment. */
int kl_buf_put_urlenc(kl_buf *b, const char *s);
void kl_buf_reset(kl_buf *b);     /* len = 0, keeps memory */
void kl_buf_consume(kl_buf *b, size_t n); /* drop the first n bytes */
void kl_buf_free(kl_buf *b);
char *kl_buf_take(kl_buf *b);     /* caller owns the result ("" if empty); b is reset */

#endif
