/* fuzz_ops_request.c - libFuzzer target for the ops server's request parser
 * (ops_request_parse in src/ops.c). The first byte picks a size limit, the
 * rest is the request bytes; every answer is checked against the parser's
 * promises: spans inside the buffer, total_len within both the input and
 * the limit, AGAIN never at the limit, errors only from the documented set,
 * and a prefix of a complete request never parsed as complete with a
 * different length. Uses: ops. Only LLVMFuzzerTestOneInput is exported. */
#include "ops.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void inside(const char *base, size_t len, const char *p, size_t n)
{
    if (p && (p < base || n > len || (size_t)(p - base) > len - n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* small limits reach the 413/431 paths; 0 means the default */
    size_t limit = data[0] < 16 ? 0 : (size_t)data[0] * 8;
    size_t eff = limit ? limit : OPS_MAX_REQUEST;
    size_t n = size - 1;
    /* a private copy without slack, so ASan sees reads past the end */
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, n);
    ops_request r;
    int st = ops_request_parse(buf, n, limit, &r);
    switch (st) {
    case OPS_PARSE_DONE:
        if (r.total_len == 0 || r.total_len > n || r.total_len > eff)
            abort();
        inside(buf, n, r.method, r.method_len);
        inside(buf, n, r.query, r.query_len);
        if (r.path_len == 0)
            abort();
        uintptr_t pp = (uintptr_t)r.path, pb = (uintptr_t)buf;
        if (pp >= pb && pp < pb + n)
            inside(buf, n, r.path, r.path_len);
        else if (r.path_len != 1 || r.path[0] != '/')   /* absolute-form without a path */
            abort();
        /* exactly the request: parsing only its bytes gives the same answer */
        if (ops_request_parse(buf, r.total_len, limit, &r) != OPS_PARSE_DONE)
            abort();
        break;
    case OPS_PARSE_AGAIN:
        if (n >= eff)
            abort();
        break;
    case 400: case 413: case 431: case 501: case 505:
        break;
    default:
        abort();
    }
    free(buf);
    return 0;
}
