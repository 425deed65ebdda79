/* kubeconfig_parse.h - one kubeconfig file, from bytes to its named entries.
 *
 * Provides: kc_parse_file (and through it the public kubeconfig_parse):
 * current-context and the clusters, users (tokens, certificates, basic auth,
 * exec plugins) and contexts lists of one file, with client-go's rules for
 * one file: a name listed twice is an error, an unknown key is ignored, an
 * empty value is unset.
 * Uses: kubeconfig_yaml (document and fields), kubeconfig_model.
 */
#ifndef KLUA_KUBECONFIG_PARSE_H
#define KLUA_KUBECONFIG_PARSE_H

#include "kubeconfig.h"

/* Parse yaml[0..len) (path names it in messages and is the base of its
 * relative paths; NULL: "<input>" and the current folder). On success *out
 * is the caller's (kubeconfig_file_free). On failure *empty says whether
 * the document had no content at all (kubectl skips such files in
 * $KUBECONFIG but refuses one given alone). Returns 0 or -1 with err set. */
int kc_parse_file(const char *yaml, size_t len, const char *path, kubeconfig_file **out,
                  int *empty, kl_err *err);

#endif
