/* fuzz_json.c - libFuzzer target for src/json.c: parse the input, then walk
 * every token with the navigation functions and unescape every string.
 * Uses: json, buf, err. Only LLVMFuzzerTestOneInput is exported: the fuzz
 * build links all of src/ (but main.c) beside this file. Built twice: as
 * fuzz_json and, with -DJSON_NO_SSE2 (json.c too), as fuzz_json_nosse2. */
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void walk(const json_doc *d)
{
    kl_buf b = KL_BUF_INIT;
    for (uint32_t i = 0; i < d->ntoks; i++) {
        const json_tok *t = &d->toks[i];
        if (t->next <= i || t->next > d->ntoks || t->end > d->len || t->start > t->end)
            abort(); /* the token layout promised by json.h is broken */
        size_t n;
        const char *raw = json_raw(d, (int)i, &n);
        if (!raw || raw < d->src || raw + n > d->src + d->len)
            abort();
        if (t->type == JSON_STRING) {
            kl_buf_reset(&b);
            if (json_str_append(d, (int)i, &b) != 0)
                abort();
            if (b.len > (size_t)(t->end - t->start))
                abort(); /* unescaping never grows a string */
            char *s = json_str_dup(d, (int)i);
            if (!s || memcmp(s, b.data ? b.data : "", b.len) != 0)
                abort();
            /* a string without NULs equals itself, and the escaper
             * round-trips it */
            if (strlen(s) == b.len && !json_str_eq(d, (int)i, s))
                abort();
            kl_buf e = KL_BUF_INIT;
            json_doc back = {0};
            kl_buf r = KL_BUF_INIT;
            if (json_escape_append(&e, b.data ? b.data : "", b.len) != 0 ||
                json_parse(&back, e.data, e.len, NULL) != 0 || json_str_append(&back, 0, &r) != 0 ||
                r.len != b.len || memcmp(r.data, b.data ? b.data : "", b.len) != 0)
                abort();
            json_obj_get(d, 0, s);
            json_path(d, 0, s);
            kl_buf_free(&r);
            json_doc_free(&back);
            kl_buf_free(&e);
            free(s);
        } else if (t->type == JSON_NUMBER) {
            int64_t v;
            json_get_int64(d, (int)i, &v);
        } else if (t->type == JSON_ARRAY || t->type == JSON_OBJECT) {
            uint32_t count = 0;
            int c = json_first(d, (int)i);
            while (c >= 0) {
                count++;
                c = json_next(d, t->type == JSON_OBJECT ? c + 1 : c);
            }
            if (count != t->size)
                abort(); /* json_next must see exactly the members */
        }
    }
    kl_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
#ifdef JSON_NO_SSE2
    if (strcmp(json_scan_path(), "portable") != 0)
        abort(); /* the variant must fuzz the path it is named for */
#endif
    json_doc d = {0};
    kl_err err;
    if (json_parse(&d, (const char *)data, size, &err) == 0)
        walk(&d);
    else if (strncmp(err.msg, "invalid JSON at byte ", 21) != 0)
        abort();
    json_doc_free(&d);
    return 0;
}
