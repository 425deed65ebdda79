/* json.h - a validating JSON tokenizer that keeps byte spans.
 *
 * Provides: json_parse() turns one JSON text into a flat array of tokens
 * (no copies of the text), so callers can pick fields such as
 * metadata.resourceVersion or slice the raw bytes of each list item without
 * re-encoding. Also string unescaping and JSON string escaping for writers.
 * Uses: buf, err.
 *
 * Token layout: tokens are in document order. An object token is followed by
 * its members as (key STRING token, value token) pairs; an array by its
 * elements. tok.next is the index just past the token's whole subtree, so
 * siblings are reached in O(1). Strings' start/end exclude the quotes.
 */
#ifndef KLUA_JSON_H
#define KLUA_JSON_H

#include "buf.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_tok {
    uint8_t type;      /* json_type */
    uint8_t escaped;   /* STRING: contains a backslash escape */
    uint32_t start;    /* byte offset of the first byte (after the quote for strings) */
    uint32_t end;      /* byte offset one past the last byte (before the closing quote) */
    uint32_t size;     /* OBJECT: member count; ARRAY: element count */
    uint32_t next;     /* index one past this token's subtree */
} json_tok;

typedef struct json_doc {
    const char *src;   /* borrowed; must outlive the doc */
    size_t len;
    json_tok *toks;    /* owned */
    uint32_t ntoks;
    uint32_t cap;
} json_doc;

#define JSON_MAX_DEPTH 200   /* deeper nesting is an error, not a crash */
#define JSON_MAX_LEN 0x7fffffffu

/* Parse exactly one JSON value (surrounding whitespace allowed). Strict
 * RFC 8259: UTF-8 is not validated beyond escapes. Reuses doc->toks if set.
 * Error messages name the byte offset. */
int json_parse(json_doc *doc, const char *src, size_t len, kl_err *err);
void json_doc_free(json_doc *doc);

/* Navigation; every function takes and returns token indexes, -1 = absent. */
int json_obj_get(const json_doc *d, int obj, const char *key);
/* Dotted path of object keys: "metadata.name". */
int json_path(const json_doc *d, int root, const char *dotted);
int json_first(const json_doc *d, int container);  /* first element / first key */
int json_next(const json_doc *d, int tok);          /* next sibling in an array */
/* Object iteration: key = json_first(obj); value = key + 1; key = json_next(d, key + 1) */

/* Values. */
int json_str_eq(const json_doc *d, int tok, const char *s); /* 1 if STRING equal to s */
char *json_str_dup(const json_doc *d, int tok);  /* unescaped, malloc'd; NULL if not a string */
/* Unescape into a buffer (appends). */
int json_str_append(const json_doc *d, int tok, kl_buf *out);
int json_get_int64(const json_doc *d, int tok, int64_t *out);  /* NUMBER integral */
const char *json_raw(const json_doc *d, int tok, size_t *len); /* raw bytes incl. quotes */

/* The index of the first '"', '\\' or control byte at or after p in
 * s[0..len), or len: the fast string-contents scan, for framers. */
size_t json_scan_string(const char *s, size_t p, size_t len);

/* Writers. */
int json_escape_append(kl_buf *out, const char *s, size_t n);  /* adds the quotes */

/* Which string scan this build uses: "sse2" or "portable" (JSON_NO_SSE2,
 * or a target without SSE2). For tests and diagnostics. */
const char *json_scan_path(void);

#endif
