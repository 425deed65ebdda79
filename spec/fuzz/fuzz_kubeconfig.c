/* fuzz_kubeconfig.c - libFuzzer target: parse arbitrary bytes as a kubeconfig, resolve
 * the current context with default options, and free everything. Finds crashes, leaks
 * and undefined behaviour in the YAML walk, base64 decoding and path handling.
 * Relative paths resolve against the working folder (the input's path is made up).
 */
#include "kubeconfig.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kubeconfig_file *f = NULL;
    kube_rest_config c;
    kl_err err;
    kubeconfig_opts opts = {NULL, NULL, NULL};
    if (kubeconfig_parse((const char *)data, size, "fuzz/kubeconfig", &f, &err) == 0) {
        if (kubeconfig_resolve(&f, 1, &opts, &c, &err) == 0)
            kube_rest_config_free(&c);
        kubeconfig_file_free(f);
    }
    return 0;
}
