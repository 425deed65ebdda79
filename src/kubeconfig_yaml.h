/* kubeconfig_yaml.h - loading one YAML document and reading typed fields
 * out of it, the way kubectl's YAML decoding reads a kubeconfig.
 *
 * Provides: kc_yaml_load (one document from bytes, with the parser's error
 * turned into a one-line message with line and column; input over
 * KC_MAX_FILE bytes or nested deeper than KC_MAX_DEPTH is refused before
 * the document is built, so hostile input costs little) and the field
 * readers the kubeconfig schema uses: strings (absent, null and "" are
 * unset), YAML 1.1 booleans, paths made absolute against the file's folder,
 * base64 data decoded, lists of strings. Every byte copied out of the
 * document is charged to a budget, so YAML aliases cannot expand a small
 * file into a large one ("billion laughs").
 * Uses: kubeconfig_model (paths, secrets), err, libyaml (document API).
 *
 * A field reader names the field in its message as "<where><key>", where is
 * the entry's prefix ("user \"x\": "); messages never quote a value.
 */
#ifndef KLUA_KUBECONFIG_YAML_H
#define KLUA_KUBECONFIG_YAML_H

#include "err.h"

#include <stddef.h>
#include <yaml.h>

/* What the field readers need: the document, names for messages, the
 * folder relative paths resolve against, and the copy budget. */
typedef struct kc_yaml_ctx {
    yaml_document_t *doc;
    const char *path; /* for messages */
    const char *dir;  /* base of relative paths */
    kl_err *err;
    size_t budget;    /* bytes left to copy out of the document, see kc_charge() */
} kc_yaml_ctx;

/* Collections nested deeper than this are refused. A kubeconfig needs
 * about 8 levels; extensions may hold more, but not this many. */
#define KC_MAX_DEPTH 64

/* Load the one document in yaml[0..len) into *doc (caller deletes it with
 * yaml_document_delete on success). path names the input in messages.
 * Returns 0, or -1 with err set (KL_EINVAL for bad YAML, KL_ENOMEM). */
int kc_yaml_load(const char *yaml, size_t len, const char *path, yaml_document_t *doc,
                 kl_err *err);

/* Count n bytes copied out of the document; -1 with a message once the
 * budget is spent. */
int kc_charge(kc_yaml_ctx *p, size_t n);

/* The 1-based line of a node, for messages. */
unsigned kc_node_line(const yaml_node_t *n);
/* Whether n is absent or a plain null scalar ("", ~, null, Null, NULL). */
int kc_is_null(const yaml_node_t *n);
/* The value under key in mapping map, or NULL; the last duplicate wins (as
 * Go's JSON decoding does). */
yaml_node_t *kc_map_get(kc_yaml_ctx *p, yaml_node_t *map, const char *key);

/* Typed fields of mapping map. Each returns 0 (an absent field leaves *out
 * NULL / 0) or -1 with p->err set; what they return is the caller's. */
int kc_get_str(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where,
               char **out);
int kc_get_bool(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where, int *out);
int kc_get_path(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where,
                char **out);
/* Decoded bytes, NUL-terminated; the encoded text is never quoted back. */
int kc_get_b64(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where, char **out,
               size_t *outlen);
/* *out has *count entries and a NULL after them; on failure the entries
 * counted so far are the caller's to free. */
int kc_get_str_list(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where,
                    char ***out, size_t *count);

#endif
