/* fuzz_watchframe.c - libFuzzer target for src/watchframe.c: feed the input
 * (after its first byte) in two chunks split at a point taken from the first
 * byte, with a small size limit, and parse every frame as a watch event.
 * Uses: watchframe, json, err. Only LLVMFuzzerTestOneInput is exported. */
#include "watchframe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int on_frame(void *ud, const char *doc, size_t len)
{
    size_t *frames = ud;
    watch_event ev;
    kl_err err;
    (*frames)++;
    if (len == 0 || (doc[0] != '{' && doc[0] != '['))
        abort(); /* a frame always starts a value */
    if (watch_event_parse(doc, len, &ev, &err) == 0) {
        if (ev.object < doc || ev.object + ev.object_len > doc + len)
            abort();
        watch_event_free(&ev);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cut = data[0], frames = 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    if (cut > n)
        cut = n;
    kl_err err;
    /* the limit is small enough that the fuzzer reaches the oversize path */
    watchframe *wf = watchframe_new(4096, on_frame, &frames);
    if (!wf)
        return 0;
    if (watchframe_feed(wf, in, cut, &err) == 0 && watchframe_feed(wf, in + cut, n - cut, &err) == 0)
        watchframe_finish(wf, &err);
    watchframe_free(wf);
    return 0;
}
