/* test_json.c - unit tests for src/json.c: token layout, navigation,
 * unescaping, numbers, strict validation with byte offsets, depth limit,
 * large lists, the string escaper and the block-wise string scanner.
 * Built twice: as test_json (the SSE2 scan on x86-64) and, with
 * -DJSON_NO_SSE2, as test_json_nosse2 (the portable scan other targets use).
 * Uses: harness.h, json, buf, err. */
#include "harness.h"
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int parse(json_doc *d, const char *s, kl_err *err)
{
    return json_parse(d, s, strlen(s), err);
}

/* Unescaped value of tok as a NUL-terminated string in a static buffer. */
static const char *str_of(const json_doc *d, int tok)
{
    static char out[256];
    char *s = json_str_dup(d, tok);
    if (!s)
        return NULL;
    snprintf(out, sizeof out, "%s", s);
    free(s);
    return out;
}

/* Error message for an invalid text ("" when it parsed). */
static const char *err_of(const char *text)
{
    static kl_err err;
    json_doc d = {0};
    kl_err_clear(&err);
    int rc = parse(&d, text, &err);
    json_doc_free(&d);
    return rc == 0 ? "" : err.msg;
}

TEST(nested_layout)
{
    const char *s = " {\"a\": [1, {\"b\": null}, \"x\"], \"c\": {\"d\": true, \"e\": false}} ";
    json_doc d = {0};
    kl_err err;
    CHECK(parse(&d, s, &err) == 0);
    CHECK(d.ntoks == 14);
    CHECK(d.toks[0].type == JSON_OBJECT && d.toks[0].size == 2 && d.toks[0].next == 14);
    CHECK(d.toks[0].start == 1 && d.toks[0].end == strlen(s) - 1);
    CHECK(json_str_eq(&d, 1, "a"));
    CHECK(d.toks[2].type == JSON_ARRAY && d.toks[2].size == 3 && d.toks[2].next == 8);
    int a = json_obj_get(&d, 0, "a");
    CHECK(a == 2);
    int e0 = json_first(&d, a), e1 = json_next(&d, e0), e2 = json_next(&d, e1);
    CHECK(d.toks[e0].type == JSON_NUMBER);
    CHECK(d.toks[e1].type == JSON_OBJECT && d.toks[e1].size == 1);
    CHECK_STR(str_of(&d, e2), "x");
    CHECK(json_next(&d, e2) == -1);
    CHECK(d.toks[json_path(&d, 0, "c.d")].type == JSON_TRUE);
    CHECK(d.toks[json_path(&d, 0, "c.e")].type == JSON_FALSE);
    CHECK(json_path(&d, 0, "c.f") == -1);
    CHECK(json_path(&d, 0, "a.b") == -1); /* a is an array */
    CHECK(json_path(&d, 0, "c") == json_obj_get(&d, 0, "c"));
    size_t n;
    const char *raw = json_raw(&d, json_obj_get(&d, 0, "c"), &n);
    CHECK(n == 23 && memcmp(raw, "{\"d\": true, \"e\": false}", n) == 0);
    raw = json_raw(&d, e2, &n);
    CHECK(n == 3 && memcmp(raw, "\"x\"", 3) == 0);
    /* object iteration as documented in json.h */
    int keys = 0;
    for (int k = json_first(&d, 0); k >= 0; k = json_next(&d, k + 1))
        keys++;
    CHECK(keys == 2);
    CHECK(json_first(&d, e0) == -1);
    CHECK(json_obj_get(&d, 99, "a") == -1 && json_obj_get(&d, -1, "a") == -1);
    json_doc_free(&d);
}

TEST(empty_containers_and_scalars)
{
    json_doc d = {0};
    kl_err err;
    CHECK(parse(&d, "[[], {}, [[]], \"\"]", &err) == 0);
    CHECK(d.ntoks == 6 && d.toks[0].size == 4);
    CHECK(d.toks[1].size == 0 && d.toks[1].next == 2 && json_first(&d, 1) == -1);
    CHECK(d.toks[2].type == JSON_OBJECT && d.toks[2].size == 0);
    CHECK(d.toks[3].size == 1 && d.toks[3].next == 5);
    CHECK_STR(str_of(&d, 5), "");
    CHECK(parse(&d, "42", &err) == 0 && d.ntoks == 1 && d.toks[0].type == JSON_NUMBER);
    CHECK(parse(&d, "\t\"s\"\n", &err) == 0 && d.toks[0].start == 2 && d.toks[0].end == 3);
    CHECK(parse(&d, "null", &err) == 0 && d.toks[0].type == JSON_NULL);
    json_doc_free(&d);
}

TEST(escapes)
{
    json_doc d = {0};
    kl_err err;
    const char *s = "[\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\","
                    " \"\\ud83d\", \"\\ude00x\", \"\\ud83dA\\u0041\", \"plain\", \"\\u0000z\"]";
    CHECK(parse(&d, s, &err) == 0);
    CHECK_STR(str_of(&d, 1), "q\" b\\ s/ \b\f\n\r\t");
    CHECK(d.toks[1].escaped == 1 && d.toks[7].escaped == 0);
    CHECK_STR(str_of(&d, 2), "\xc3\xa9\xe2\x82\xac");
    CHECK_STR(str_of(&d, 3), "\xf0\x9f\x98\x80");     /* surrogate pair -> U+1F600 */
    CHECK_STR(str_of(&d, 4), "\xef\xbf\xbd");         /* lone high surrogate */
    CHECK_STR(str_of(&d, 5), "\xef\xbf\xbdx");        /* lone low surrogate */
    CHECK_STR(str_of(&d, 6), "\xef\xbf\xbd" "AA");    /* high then a non-surrogate */
    CHECK_STR(str_of(&d, 7), "plain");
    kl_buf b = KL_BUF_INIT;
    CHECK(json_str_append(&d, 8, &b) == 0 && b.len == 2 && b.data[0] == 0 && b.data[1] == 'z');
    CHECK(json_str_append(&d, 0, &b) == -1); /* not a string */
    CHECK(json_str_dup(&d, 0) == NULL);
    kl_buf_free(&b);
    /* json_str_eq compares unescaped values */
    CHECK(json_str_eq(&d, 2, "\xc3\xa9\xe2\x82\xac"));
    CHECK(!json_str_eq(&d, 2, "\xc3\xa9"));
    CHECK(!json_str_eq(&d, 2, "\xc3\xa9\xe2\x82\xac!"));
    CHECK(json_str_eq(&d, 7, "plain") && !json_str_eq(&d, 7, "plai"));
    json_doc_free(&d);
    /* keys with escapes are found by their unescaped name */
    CHECK(parse(&d, "{\"k\\u0038s.io/x\": 1}", &err) == 0);
    CHECK(json_obj_get(&d, 0, "k8s.io/x") == 2);
    json_doc_free(&d);
}

TEST(numbers)
{
    json_doc d = {0};
    kl_err err;
    const char *s = "[0, -0, 12, -12, 9223372036854775807, -9223372036854775808, "
                    "9223372036854775808, -9223372036854775809, 1.5, 1e3, -0.25E-2, 99999999999999999999]";
    CHECK(parse(&d, s, &err) == 0);
    int64_t v = -1;
    CHECK(json_get_int64(&d, 1, &v) == 0 && v == 0);
    CHECK(json_get_int64(&d, 2, &v) == 0 && v == 0);
    CHECK(json_get_int64(&d, 3, &v) == 0 && v == 12);
    CHECK(json_get_int64(&d, 4, &v) == 0 && v == -12);
    CHECK(json_get_int64(&d, 5, &v) == 0 && v == INT64_MAX);
    CHECK(json_get_int64(&d, 6, &v) == 0 && v == INT64_MIN);
    CHECK(json_get_int64(&d, 7, &v) == -1);  /* overflow */
    CHECK(json_get_int64(&d, 8, &v) == -1);
    CHECK(json_get_int64(&d, 9, &v) == -1);  /* fraction */
    CHECK(json_get_int64(&d, 10, &v) == -1); /* exponent */
    CHECK(json_get_int64(&d, 11, &v) == -1);
    CHECK(json_get_int64(&d, 12, &v) == -1);
    CHECK(json_get_int64(&d, 0, &v) == -1); /* not a number */
    size_t n;
    const char *raw = json_raw(&d, 11, &n);
    CHECK(n == 8 && memcmp(raw, "-0.25E-2", 8) == 0);
    json_doc_free(&d);
}

TEST(errors_name_offsets)
{
    CHECK_STR(err_of("{\"a\" 1}"), "invalid JSON at byte 5: expected ':'");
    CHECK_STR(err_of("{\"a\": 1,}"), "invalid JSON at byte 8: expected a string key");
    CHECK_STR(err_of("[1, 2"), "invalid JSON at byte 5: unexpected end of input, expected ',' or ']'");
    CHECK_STR(err_of("[1 2]"), "invalid JSON at byte 3: expected ',' or ']'");
    CHECK_STR(err_of("{\"a\":1]"), "invalid JSON at byte 6: expected ',' or '}'");
    CHECK_STR(err_of(""), "invalid JSON at byte 0: unexpected end of input, expected a value");
    CHECK_STR(err_of("   "), "invalid JSON at byte 3: unexpected end of input, expected a value");
    CHECK_STR(err_of("[1,]"), "invalid JSON at byte 3: expected a value");
    CHECK_STR(err_of("{} {}"), "invalid JSON at byte 3: unexpected data after the JSON value");
    CHECK_STR(err_of("01"), "invalid JSON at byte 1: unexpected data after the JSON value");
    CHECK_STR(err_of("-"), "invalid JSON at byte 1: unexpected end of input, expected a digit");
    CHECK_STR(err_of("1."), "invalid JSON at byte 2: unexpected end of input, expected a digit after '.'");
    CHECK_STR(err_of("1e+"), "invalid JSON at byte 3: unexpected end of input, expected a digit in the exponent");
    CHECK_STR(err_of("[+1]"), "invalid JSON at byte 1: expected a value");
    CHECK_STR(err_of("[.5]"), "invalid JSON at byte 1: expected a value");
    CHECK_STR(err_of("tru"), "invalid JSON at byte 0: expected a value");
    CHECK_STR(err_of("nul1"), "invalid JSON at byte 0: expected a value");
    CHECK_STR(err_of("\"ab"), "invalid JSON at byte 3: unexpected end of input, unterminated string");
    CHECK_STR(err_of("\"a\tb\""), "invalid JSON at byte 2: control character in string (must be escaped)");
    CHECK_STR(err_of("\"a\\x\""), "invalid JSON at byte 2: invalid escape in string");
    CHECK_STR(err_of("\"\\u12g4\""), "invalid JSON at byte 1: \\u must be followed by 4 hex digits");
    CHECK_STR(err_of("\"\\u12"), "invalid JSON at byte 5: unexpected end of input, unterminated \\u escape");
    CHECK_STR(err_of("{'a': 1}"), "invalid JSON at byte 1: expected a string key");
    CHECK_STR(err_of("[NaN]"), "invalid JSON at byte 1: expected a value");
    /* a failed parse leaves no tokens behind */
    json_doc d = {0};
    kl_err err;
    CHECK(parse(&d, "[1,2,3,", &err) == -1 && d.ntoks == 0 && err.code == KL_EINVAL);
    CHECK(json_first(&d, 0) == -1);
    json_doc_free(&d);
}

TEST(depth_limit)
{
    size_t n = 10000;
    char *s = malloc(2 * n + 1);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = 0;
    json_doc d = {0};
    kl_err err;
    CHECK(json_parse(&d, s, 2 * n, &err) == -1);
    CHECK_STR(err.msg, "invalid JSON at byte 200: nesting deeper than 200 levels");
    /* exactly JSON_MAX_DEPTH levels are fine */
    CHECK(json_parse(&d, s + n - JSON_MAX_DEPTH, 2 * JSON_MAX_DEPTH, &err) == 0);
    CHECK(d.ntoks == JSON_MAX_DEPTH && d.toks[0].next == JSON_MAX_DEPTH);
    CHECK(json_parse(&d, s + n - JSON_MAX_DEPTH - 1, 2 * JSON_MAX_DEPTH + 2, &err) == -1);
    /* objects too: {"a":{"a":... one level too deep */
    kl_buf o = KL_BUF_INIT;
    for (int i = 0; i <= JSON_MAX_DEPTH; i++)
        kl_buf_puts(&o, "{\"a\":");
    char want[96];
    snprintf(want, sizeof want, "invalid JSON at byte %d: nesting deeper than %d levels",
             5 * JSON_MAX_DEPTH, JSON_MAX_DEPTH);
    CHECK(json_parse(&d, o.data, o.len, &err) == -1);
    CHECK_STR(err.msg, want);
    kl_buf_free(&o);
    json_doc_free(&d);
    free(s);
}

TEST(big_list_walk)
{
    kl_buf b = KL_BUF_INIT;
    int items = 10000;
    kl_buf_puts(&b, "{\"kind\":\"PodList\",\"items\":[");
    for (int i = 0; i < items; i++)
        kl_buf_printf(&b, "%s{\"metadata\":{\"name\":\"pod-%d\",\"resourceVersion\":\"%d\"},"
                          "\"spec\":{\"n\":[%d,%d]}}", i ? "," : "", i, 1000 + i, i, -i);
    kl_buf_puts(&b, "]}");
    json_doc d = {0};
    kl_err err;
    CHECK(json_parse(&d, b.data, b.len, &err) == 0);
    int list = json_obj_get(&d, 0, "items");
    CHECK(list >= 0 && d.toks[list].size == (uint32_t)items);
    int count = 0, ok = 1;
    for (int it = json_first(&d, list); it >= 0; it = json_next(&d, it)) {
        char want[32];
        snprintf(want, sizeof want, "pod-%d", count);
        if (!json_str_eq(&d, json_path(&d, it, "metadata.name"), want))
            ok = 0;
        int64_t rv = 0;
        char *rvs = json_str_dup(&d, json_path(&d, it, "metadata.resourceVersion"));
        if (!rvs || strtol(rvs, NULL, 10) != 1000 + count)
            ok = 0;
        free(rvs);
        int n = json_path(&d, it, "spec.n");
        if (json_get_int64(&d, json_next(&d, json_first(&d, n)), &rv) != 0 || rv != -count)
            ok = 0;
        count++;
    }
    CHECK(ok);
    CHECK(count == items);
    /* a reused doc keeps its token array */
    json_tok *before = d.toks;
    CHECK(json_parse(&d, "[1]", 3, &err) == 0 && d.toks == before && d.ntoks == 2);
    json_doc_free(&d);
    kl_buf_free(&b);
}

TEST(escape_writer)
{
    kl_buf b = KL_BUF_INIT;
    const char in[] = "a\"b\\c\nd\te\x01\x1f/\xc3\xa9\b\f\r";
    CHECK(json_escape_append(&b, in, sizeof in - 1) == 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f/\xc3\xa9\\b\\f\\r\"");
    /* round trip through the parser */
    json_doc d = {0};
    kl_err err;
    CHECK(json_parse(&d, b.data, b.len, &err) == 0);
    kl_buf back = KL_BUF_INIT;
    CHECK(json_str_append(&d, 0, &back) == 0);
    CHECK(back.len == sizeof in - 1 && memcmp(back.data, in, back.len) == 0);
    kl_buf_reset(&b);
    CHECK(json_escape_append(&b, "", 0) == 0);
    CHECK_STR(b.data, "\"\"");
    kl_buf_reset(&b);
    CHECK(json_escape_append(&b, "a\0b", 3) == 0);
    CHECK_STR(b.data, "\"a\\u0000b\"");
    json_doc_free(&d);
    kl_buf_free(&back);
    kl_buf_free(&b);
}

/* The string scanner looks at 16 or 8 bytes at a time: whatever the
 * position of the byte that stops it (closing quote, escape, control
 * character, end of input) relative to those blocks, the result must be
 * the same, and no byte past the text may be read (the texts below are
 * exact-size heap copies, so ASan sees any overread). */
static int parse_exact(json_doc *d, const char *s, size_t n, kl_err *err)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    int rc = json_parse(d, copy, n, err);
    d->src = NULL; /* the copy is gone; only offsets are checked below */
    free(copy);
    return rc;
}

TEST(string_scan_every_position)
{
    /* bytes that must not stop a string: printable ASCII, DEL, UTF-8 */
    static const char fill[] = "ab /\x7f\x80\xc3\xa9\xff~ !#[]{}:,0";
    char text[80], want[96];
    int ok_plain = 1, ok_ctl = 1, ok_esc = 1, ok_open = 1, ok_key = 1;
    for (size_t n = 0; n <= 40; n++) {
        text[0] = '"';
        for (size_t i = 0; i < n; i++)
            text[1 + i] = fill[i % (sizeof fill - 1)];
        text[1 + n] = '"';
        json_doc d = {0};
        kl_err err = {0};
        if (parse_exact(&d, text, n + 2, &err) != 0 || d.ntoks != 1 || d.toks[0].start != 1 ||
            d.toks[0].end != n + 1 || d.toks[0].escaped)
            ok_plain = 0;
        /* unterminated: the text ends right after the contents */
        snprintf(want, sizeof want,
                 "invalid JSON at byte %zu: unexpected end of input, unterminated string", n + 1);
        if (parse_exact(&d, text, n + 1, &err) != -1 || strcmp(err.msg, want) != 0)
            ok_open = 0;
        /* the same string as a key: {"...":1} */
        char obj[96];
        obj[0] = '{';
        memcpy(obj + 1, text, n + 2);
        memcpy(obj + n + 3, ":1}", 3);
        if (parse_exact(&d, obj, n + 6, &err) != 0 || d.ntoks != 3 || d.toks[1].end != n + 2)
            ok_key = 0;
        for (size_t k = 0; k < n; k++) {
            char t2[80];
            memcpy(t2, text, n + 2);
            t2[1 + k] = (k & 1) ? 0x1f : 0x01;
            snprintf(want, sizeof want, "invalid JSON at byte %zu: %s", k + 1,
                     "control character in string (must be escaped)");
            if (parse_exact(&d, t2, n + 2, &err) != -1 || strcmp(err.msg, want) != 0)
                ok_ctl = 0;
            /* an escape \n inserted before content byte k */
            memcpy(t2, text, 1 + k);
            t2[1 + k] = '\\';
            t2[2 + k] = 'n';
            memcpy(t2 + 3 + k, text + 1 + k, n + 1 - k);
            if (parse_exact(&d, t2, n + 4, &err) != 0 || d.ntoks != 1 || d.toks[0].end != n + 3 ||
                !d.toks[0].escaped)
                ok_esc = 0;
        }
        json_doc_free(&d);
    }
    CHECK(ok_plain);
    CHECK(ok_open);
    CHECK(ok_key);
    CHECK(ok_ctl);
    CHECK(ok_esc);
    /* the unescaped value across block boundaries */
    json_doc d = {0};
    kl_err err;
    const char *long_esc = "\"0123456789abcdef0123456\\u00e9x\\\"y\\\\z0123456789abcdef\"";
    CHECK(parse(&d, long_esc, &err) == 0);
    CHECK_STR(str_of(&d, 0), "0123456789abcdef0123456\xc3\xa9x\"y\\z0123456789abcdef");
    json_doc_free(&d);
}

TEST(built_with_the_intended_scan)
{
    /* Both binaries would pass the other tests with either scan: this one
     * proves each really runs the scan it is named for. */
#if defined(JSON_NO_SSE2)
    CHECK_STR(json_scan_path(), "portable");
#elif defined(__SSE2__)
    CHECK_STR(json_scan_path(), "sse2");
#else
    CHECK_STR(json_scan_path(), "portable");
#endif
    printf("# string scan: %s\n", json_scan_path());
}

int main(void)
{
    RUN(nested_layout);
    RUN(empty_containers_and_scalars);
    RUN(escapes);
    RUN(numbers);
    RUN(errors_name_offsets);
    RUN(depth_limit);
    RUN(big_list_walk);
    RUN(escape_writer);
    RUN(string_scan_every_position);
    RUN(built_with_the_intended_scan);
    DONE();
}
