/* fuzz_kubeconfig.c - libFuzzer target: parse arbitrary bytes as a kubeconfig, resolve
 * the current context with default options, and free everything. Finds crashes, leaks
 * and undefined behaviour in the YAML walk, base64 decoding and path handling, and
 * slow inputs (run with -timeout): the depth bound (KC_MAX_DEPTH, checked before the
 * document is built) must keep deeply nested input cheap; the corpus holds such input
 * (deep_*.yaml, one 100,000 levels deep). Every error is one line.
 * Relative paths resolve against the working folder (the input's path is made up).
 */
#include "kubeconfig.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kubeconfig_file *f = NULL;
    kube_rest_config c;
    kl_err err;
    kubeconfig_opts opts = {NULL, NULL, NULL};
    if (kubeconfig_parse((const char *)data, size, "fuzz/kubeconfig", &f, &err) == 0) {
        if (kubeconfig_resolve(&f, 1, &opts, &c, &err) == 0)
            kube_rest_config_free(&c);
        else if (strchr(err.msg, '\n'))
            abort();
        kubeconfig_file_free(f);
    } else if (strchr(err.msg, '\n')) {
        abort();
    }
    return 0;
}
