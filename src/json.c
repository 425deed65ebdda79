/* json.c - a validating JSON tokenizer that keeps byte spans (see json.h).
 *
 * Provides: json_parse and the navigation, unescaping and escaping helpers
 * declared in json.h.
 * Uses: buf (unescape/escape output), err (parse errors).
 *
 * The parser is one loop with an explicit stack of open containers, bounded
 * by JSON_MAX_DEPTH, so hostile nesting gives an error and never touches the
 * C stack. Tokens live in one array that grows geometrically: a LIST answer
 * of 10 MB becomes a handful of reallocs, not a million mallocs. String
 * contents, most of a Kubernetes object's bytes, are scanned 16 bytes at a
 * time (SSE2) or 8 (portable SWAR); the per-byte table only finishes off.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* SSE2 is part of x86-64, so this is the path taken on the usual build.
 * Compiling with -DJSON_NO_SSE2 gives the portable word-at-a-time path that
 * other targets take; the Makefile builds test_json and fuzz_json a second
 * time that way (test_json_nosse2, fuzz_json_nosse2) and spec/run.sh runs
 * both. */
#if defined(__SSE2__) && !defined(JSON_NO_SSE2)
#include <emmintrin.h>
#define JSON_SSE2 1
#endif

const char *json_scan_path(void)
{
#ifdef JSON_SSE2
    return "sse2";
#else
    return "portable";
#endif
}

/* Bytes that end the fast scan inside a string: '"', '\\' and the control
 * characters RFC 8259 forbids unescaped. */
static const uint8_t str_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
};

static int is_ws(unsigned char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* Index of the first non-whitespace byte at or after p, or len. API server
 * answers carry no whitespace, so the first test usually ends it. */
static inline size_t skip_ws(const char *s, size_t p, size_t len)
{
    while (p < len && (unsigned char)s[p] <= ' ' && is_ws((unsigned char)s[p]))
        p++;
    return p;
}
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Value of 4 hex digits at s, or -1. The caller checked there are 4 bytes. */
static long hex4(const char *s)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val((unsigned char)s[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* Offsets in messages are 0-based byte positions in the text. */
static int fail(kl_err *err, size_t off, size_t len, const char *what)
{
    if (off >= len)
        return kl_err_set(err, KL_EINVAL, "invalid JSON at byte %zu: unexpected end of input, %s",
                          len, what);
    return kl_err_set(err, KL_EINVAL, "invalid JSON at byte %zu: %s", off, what);
}

/* Room for one more token; -1 when memory runs out. Kept out of line so the
 * common path of push_tok stays small enough to inline. */
static __attribute__((noinline)) int grow_toks(json_doc *d)
{
    size_t cap = d->cap ? (size_t)d->cap * 2 : d->len / 16 + 16;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    if (cap <= d->cap || cap > SIZE_MAX / sizeof(json_tok))
        return -1;
    json_tok *t = realloc(d->toks, cap * sizeof(json_tok));
    if (!t)
        return -1;
    d->toks = t;
    d->cap = (uint32_t)cap;
    return 0;
}

/* Append one token spanning [start, end); returns its index or -1 when
 * memory runs out. */
static inline long push_tok(json_doc *d, uint8_t type, size_t start, size_t end)
{
    if (d->ntoks == d->cap && grow_toks(d) != 0)
        return -1;
    uint32_t i = d->ntoks++;
    json_tok *t = &d->toks[i];
    t->type = type;
    t->escaped = 0;
    t->start = (uint32_t)start;
    t->end = (uint32_t)end;
    t->size = 0;
    t->next = i + 1;
    return i;
}

/* Index of the first byte at or after p that ends the fast string scan
 * (str_stop), or len. Most of a Kubernetes object's bytes are string
 * contents, so this loop is where parsing spends its time: it looks at 16
 * (SSE2) or 8 bytes per step and leaves only the last few bytes and the
 * exact position inside a word to the table. */
static inline size_t scan_plain(const char *s, size_t p, size_t len)
{
#ifdef JSON_SSE2
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    while (len - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + p));
        /* max(v, 0x1f) == 0x1f exactly when v <= 0x1f (unsigned) */
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash));
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return p + (size_t)__builtin_ctz(m);
        p += 16;
    }
#else
    /* SWAR: q and b have a zero byte where w has '"' or '\\'. A byte x is
     * zero iff the high bit of (x - 1) & ~x is set, and x < 0x20 iff the
     * high bit of (x - 0x20) & ~x is set. Whole-word subtraction is exact
     * for "is there such a byte" (a borrow only starts at a byte that
     * matches), so a hit sends us to the byte loop, which finds the
     * position whatever the byte order. */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (len - p >= 8) {
        uint64_t w;
        memcpy(&w, s + p, 8);
        uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w);
        if (hit & highs)
            break;
        p += 8;
    }
#endif
    while (p < len && !str_stop[(unsigned char)s[p]])
        p++;
    return p;
}

size_t json_scan_string(const char *s, size_t p, size_t len)
{
    return p < len ? scan_plain(s, p, len) : len;
}

/* The rest of parse_string once the scan stopped at p on something other
 * than the closing quote: escapes, errors, or the end of the text. */
static __attribute__((noinline)) int parse_string_slow(json_doc *d, size_t *pp, size_t p,
                                                       kl_err *err)
{
    const char *s = d->src;
    size_t len = d->len;
    uint8_t escaped = 0;
    for (;;) {
        if (p >= len)
            return fail(err, len, len, "unterminated string");
        unsigned char c = (unsigned char)s[p];
        if (c == '"')
            break;
        if (c != '\\')
            return fail(err, p, len, "control character in string (must be escaped)");
        escaped = 1;
        if (p + 1 >= len)
            return fail(err, len, len, "unterminated string");
        switch (s[p + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u':
            if (p + 6 > len)
                return fail(err, len, len, "unterminated \\u escape");
            if (hex4(s + p + 2) < 0)
                return fail(err, p, len, "\\u must be followed by 4 hex digits");
            p += 6;
            break;
        default:
            return fail(err, p, len, "invalid escape in string");
        }
        p = scan_plain(s, p, len);
    }
    long t = push_tok(d, JSON_STRING, *pp + 1, p);
    if (t < 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory parsing JSON");
    d->toks[t].escaped = escaped;
    *pp = p + 1;
    return 0;
}

/* *pp is at the opening quote; on success it is just past the closing one
 * and a STRING token spans the contents. Inlined: strings are most of the
 * tokens, and most have no escape, so the common case is a scan and a push. */
static inline __attribute__((always_inline)) int parse_string(json_doc *d, size_t *pp,
                                                                kl_err *err)
{
    size_t p = scan_plain(d->src, *pp + 1, d->len);
    if (p >= d->len || d->src[p] != '"')
        return parse_string_slow(d, pp, p, err);
    if (push_tok(d, JSON_STRING, *pp + 1, p) < 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory parsing JSON");
    *pp = p + 1;
    return 0;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(json_doc *d, size_t *pp, kl_err *err)
{
    const char *s = d->src;
    size_t len = d->len, p = *pp;
    if (s[p] == '-')
        p++;
    if (p >= len || !is_digit((unsigned char)s[p]))
        return fail(err, p, len, "expected a digit");
    if (s[p] == '0')
        p++;
    else
        while (p < len && is_digit((unsigned char)s[p]))
            p++;
    if (p < len && s[p] == '.') {
        p++;
        if (p >= len || !is_digit((unsigned char)s[p]))
            return fail(err, p, len, "expected a digit after '.'");
        while (p < len && is_digit((unsigned char)s[p]))
            p++;
    }
    if (p < len && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < len && (s[p] == '+' || s[p] == '-'))
            p++;
        if (p >= len || !is_digit((unsigned char)s[p]))
            return fail(err, p, len, "expected a digit in the exponent");
        while (p < len && is_digit((unsigned char)s[p]))
            p++;
    }
    if (push_tok(d, JSON_NUMBER, *pp, p) < 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory parsing JSON");
    *pp = p;
    return 0;
}

static int parse_literal(json_doc *d, size_t *pp, const char *word, uint8_t type, kl_err *err)
{
    size_t n = strlen(word), p = *pp;
    if (d->len - p < n || memcmp(d->src + p, word, n) != 0)
        return fail(err, p, d->len, "expected a value");
    if (push_tok(d, type, p, p + n) < 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory parsing JSON");
    *pp = p + n;
    return 0;
}

/* Parses a member key and the ':' after it; *pp is at the key's quote. */
static inline __attribute__((always_inline)) int parse_key(json_doc *d, size_t *pp, kl_err *err)
{
    size_t p = *pp, len = d->len;
    if (p >= len || d->src[p] != '"')
        return fail(err, p, len, "expected a string key");
    if (parse_string(d, &p, err) != 0)
        return -1;
    p = skip_ws(d->src, p, len);
    if (p >= len || d->src[p] != ':')
        return fail(err, p, len, "expected ':'");
    *pp = p + 1;
    return 0;
}

int json_parse(json_doc *doc, const char *src, size_t len, kl_err *err)
{
    uint32_t stack[JSON_MAX_DEPTH]; /* token indexes of the open containers */
    int depth = 0, rc = -1;
    size_t p = 0;

    doc->src = src;
    doc->len = len;
    doc->ntoks = 0;
    if (len > JSON_MAX_LEN) {
        kl_err_set(err, KL_EINVAL, "invalid JSON: document of %zu bytes is larger than 2 GiB", len);
        goto out;
    }
    for (;;) {
        /* Expecting a value at p. */
        p = skip_ws(src, p, len);
        if (p >= len) {
            fail(err, len, len, "expected a value");
            goto out;
        }
        /* Every value started inside a container is one element (or the
         * value of one member) of it. */
        if (depth > 0)
            doc->toks[stack[depth - 1]].size++;
        unsigned char c = (unsigned char)src[p];
        if (c == '{' || c == '[') {
            if (depth == JSON_MAX_DEPTH) {
                kl_err_set(err, KL_EINVAL, "invalid JSON at byte %zu: nesting deeper than %d levels",
                           p, JSON_MAX_DEPTH);
                goto out;
            }
            long t = push_tok(doc, c == '{' ? JSON_OBJECT : JSON_ARRAY, p, p);
            if (t < 0) {
                kl_err_set(err, KL_ENOMEM, "out of memory parsing JSON");
                goto out;
            }
            stack[depth++] = (uint32_t)t;
            p++;
            p = skip_ws(src, p, len);
            if (p < len && (unsigned char)src[p] == (c == '{' ? '}' : ']')) {
                /* Empty container: closed by the loop below. */
            } else {
                if (c == '{' && parse_key(doc, &p, err) != 0)
                    goto out;
                continue;
            }
        } else if (c == '"') {
            if (parse_string(doc, &p, err) != 0)
                goto out;
        } else if (c == '-' || is_digit(c)) {
            if (parse_number(doc, &p, err) != 0)
                goto out;
        } else if (c == 't' || c == 'f' || c == 'n') {
            const char *w = c == 't' ? "true" : c == 'f' ? "false" : "null";
            uint8_t ty = c == 't' ? JSON_TRUE : c == 'f' ? JSON_FALSE : JSON_NULL;
            if (parse_literal(doc, &p, w, ty, err) != 0)
                goto out;
        } else {
            fail(err, p, len, "expected a value");
            goto out;
        }

        /* A value just ended (or an empty container is at its closing
         * bracket): close containers, or move on to the next element. */
        for (;;) {
            if (depth == 0)
                goto done;
            json_tok *top = &doc->toks[stack[depth - 1]];
            int is_obj = top->type == JSON_OBJECT;
            char close = is_obj ? '}' : ']';
            p = skip_ws(src, p, len);
            if (p < len && src[p] == close) {
                top->end = (uint32_t)(p + 1);
                top->next = doc->ntoks;
                depth--;
                p++;
                continue;
            }
            if (p < len && src[p] == ',') {
                p++;
                if (is_obj) {
                    p = skip_ws(src, p, len);
                    if (parse_key(doc, &p, err) != 0)
                        goto out;
                }
                break; /* parse the next value */
            }
            fail(err, p, len, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
            goto out;
        }
    }
done:
    p = skip_ws(src, p, len);
    if (p < len) {
        fail(err, p, len, "unexpected data after the JSON value");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        doc->ntoks = 0;
    return rc;
}

void json_doc_free(json_doc *doc)
{
    free(doc->toks);
    doc->toks = NULL;
    doc->ntoks = doc->cap = 0;
}

/* ---- navigation ---- */

static int valid_tok(const json_doc *d, int tok) { return tok >= 0 && (uint32_t)tok < d->ntoks; }

/* Decodes the escape at s[p] (a backslash) of a string ending at end into
 * UTF-8 bytes in out; returns the offset after it and sets *n. Spans come from
 * json_parse, so escapes are well formed; the bounds checks are a guard. A
 * lone or mismatched surrogate becomes U+FFFD. */
static size_t decode_escape(const char *s, size_t p, size_t end, unsigned char out[4], size_t *n)
{
    if (p + 1 >= end) {
        *n = 0;
        return end;
    }
    char c = s[p + 1];
    if (c != 'u') {
        switch (c) {
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        default: out[0] = (unsigned char)c; break; /* '"', '\\', '/' */
        }
        *n = 1;
        return p + 2;
    }
    long cp = p + 6 <= end ? hex4(s + p + 2) : -1;
    size_t q = p + 6;
    if (cp < 0) {
        cp = 0xFFFD;
        q = end;
    } else if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = -1;
        if (q + 6 <= end && s[q] == '\\' && s[q + 1] == 'u')
            lo = hex4(s + q + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            q += 6;
        } else {
            cp = 0xFFFD; /* the next escape, if any, is decoded on its own */
        }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
    }
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        *n = 1;
    } else if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        *n = 2;
    } else if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        *n = 3;
    } else {
        out[0] = (unsigned char)(0xF0 | (cp >> 18));
        out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        *n = 4;
    }
    return q;
}

/* 1 if the STRING token's unescaped value is exactly s[0..n). */
static int str_eq_n(const json_doc *d, int tok, const char *s, size_t n)
{
    if (!valid_tok(d, tok) || d->toks[tok].type != JSON_STRING)
        return 0;
    const json_tok *t = &d->toks[tok];
    const char *src = d->src;
    if (!t->escaped)
        return t->end - t->start == n && memcmp(src + t->start, s, n) == 0;
    size_t p = t->start, end = t->end, i = 0;
    while (p < end) {
        if (src[p] != '\\') {
            if (i >= n || src[p] != s[i])
                return 0;
            p++;
            i++;
            continue;
        }
        unsigned char u[4];
        size_t un;
        p = decode_escape(src, p, end, u, &un);
        if (un > n - i || memcmp(u, s + i, un) != 0)
            return 0;
        i += un;
    }
    return i == n;
}

static int obj_get_n(const json_doc *d, int obj, const char *key, size_t n)
{
    if (!valid_tok(d, obj) || d->toks[obj].type != JSON_OBJECT)
        return -1;
    uint32_t k = (uint32_t)obj + 1;
    for (uint32_t i = 0; i < d->toks[obj].size; i++) {
        if (str_eq_n(d, (int)k, key, n))
            return (int)k + 1;
        k = d->toks[k + 1].next;
    }
    return -1;
}

int json_obj_get(const json_doc *d, int obj, const char *key)
{
    return obj_get_n(d, obj, key, strlen(key));
}

int json_path(const json_doc *d, int root, const char *dotted)
{
    int cur = valid_tok(d, root) ? root : -1;
    const char *p = dotted;
    while (cur >= 0 && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        cur = obj_get_n(d, cur, p, n);
        p += n;
        if (*p == '.')
            p++;
    }
    return cur;
}

int json_first(const json_doc *d, int container)
{
    if (!valid_tok(d, container))
        return -1;
    const json_tok *t = &d->toks[container];
    if ((t->type != JSON_ARRAY && t->type != JSON_OBJECT) || t->size == 0)
        return -1;
    return container + 1;
}

/* Tokens carry no parent link (it would cost 4 bytes each); a sibling
 * follows exactly when a ',' comes after this token's bytes. */
int json_next(const json_doc *d, int tok)
{
    if (!valid_tok(d, tok))
        return -1;
    const json_tok *t = &d->toks[tok];
    size_t p = t->type == JSON_STRING ? (size_t)t->end + 1 : t->end;
    p = skip_ws(d->src, p, d->len);
    if (p >= d->len || d->src[p] != ',' || t->next >= d->ntoks)
        return -1;
    return (int)t->next;
}

/* ---- values ---- */

int json_str_eq(const json_doc *d, int tok, const char *s)
{
    return str_eq_n(d, tok, s, strlen(s));
}

int json_str_append(const json_doc *d, int tok, kl_buf *out)
{
    if (!valid_tok(d, tok) || d->toks[tok].type != JSON_STRING)
        return -1;
    const json_tok *t = &d->toks[tok];
    const char *src = d->src;
    size_t p = t->start, end = t->end;
    if (!t->escaped)
        return kl_buf_append(out, src + p, end - p);
    if (kl_buf_reserve(out, end - p) != 0) /* unescaping never grows a string */
        return -1;
    while (p < end) {
        const char *bs = memchr(src + p, '\\', end - p);
        size_t run = bs ? (size_t)(bs - (src + p)) : end - p;
        if (kl_buf_append(out, src + p, run) != 0)
            return -1;
        p += run;
        if (p >= end)
            break;
        unsigned char u[4];
        size_t un;
        p = decode_escape(src, p, end, u, &un);
        if (kl_buf_append(out, u, un) != 0)
            return -1;
    }
    return 0;
}

/* Caller owns the result (free). */
char *json_str_dup(const json_doc *d, int tok)
{
    kl_buf b = KL_BUF_INIT;
    if (json_str_append(d, tok, &b) != 0) {
        kl_buf_free(&b);
        return NULL;
    }
    return kl_buf_take(&b);
}

int json_get_int64(const json_doc *d, int tok, int64_t *out)
{
    if (!valid_tok(d, tok) || d->toks[tok].type != JSON_NUMBER)
        return -1;
    const char *s = d->src + d->toks[tok].start, *e = d->src + d->toks[tok].end;
    int neg = 0;
    if (s < e && *s == '-') {
        neg = 1;
        s++;
    }
    if (s == e)
        return -1;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; s < e; s++) {
        if (!is_digit((unsigned char)*s))
            return -1; /* a fraction or an exponent: not an integer literal */
        unsigned dig = (unsigned)(*s - '0');
        if (v > (limit - dig) / 10)
            return -1;
        v = v * 10 + dig;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

const char *json_raw(const json_doc *d, int tok, size_t *len)
{
    if (!valid_tok(d, tok))
        return NULL;
    const json_tok *t = &d->toks[tok];
    size_t start = t->start, end = t->end;
    if (t->type == JSON_STRING) {
        start--;
        end++;
    }
    if (len)
        *len = end - start;
    return d->src + start;
}

/* ---- writers ---- */

int json_escape_append(kl_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (kl_buf_reserve(out, n + 2) != 0 || kl_buf_putc(out, '"') != 0)
        return -1;
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!str_stop[c])
            continue;
        if (kl_buf_append(out, s + run, i - run) != 0)
            return -1;
        run = i + 1;
        char e[6] = {'\\', 0, '0', '0', 0, 0};
        size_t en = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            en = 6;
            break;
        }
        if (kl_buf_append(out, e, en) != 0)
            return -1;
    }
    if (kl_buf_append(out, s + run, n - run) != 0 || kl_buf_putc(out, '"') != 0)
        return -1;
    return 0;
}
