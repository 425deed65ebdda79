/* kubeconfig_yaml.c - one YAML document and its typed fields.
 *
 * Provides: see kubeconfig_yaml.h.
 * Uses: kubeconfig_model (kc_path_resolve, kc_free_secret), err, libyaml.
 */
#include "kubeconfig_yaml.h"

#include "kubeconfig_model.h"

#include <stdlib.h>
#include <string.h>

/* ---- the document ------------------------------------------------------ */

/* Walk the first document's events and refuse nesting deeper than
 * KC_MAX_DEPTH before libyaml builds it: the scanner's work per token grows
 * with the nesting of flow collections, so a deep file costs time
 * quadratic in its depth (100,000 levels took 16 s). Stopping at the limit
 * bounds that. A syntax error is left to the loader, which reports it with
 * its position (it meets the same error after no deeper nesting). */
static int check_depth(const char *yaml, size_t len, const char *path, kl_err *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, rc = 0;
    if (!yaml_parser_initialize(&parser))
        return kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", path);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    while (yaml_parser_parse(&parser, &ev)) {
        yaml_event_type_t t = ev.type;
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > KC_MAX_DEPTH) {
                rc = kl_err_set(err, KL_EINVAL,
                                "kubeconfig %s: YAML nested deeper than %d levels (line %zu)",
                                path, KC_MAX_DEPTH, line);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (t == YAML_DOCUMENT_END_EVENT || t == YAML_STREAM_END_EVENT) {
            break; /* only the first document is loaded */
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

int kc_yaml_load(const char *yaml, size_t len, const char *path, yaml_document_t *doc,
                 kl_err *err)
{
    yaml_parser_t parser;
    int rc = -1;
    if (len > KC_MAX_FILE)
        return kl_err_set(err, KL_EINVAL, "kubeconfig %s is larger than %u MiB; refusing to "
                                          "parse it", path, KC_MAX_FILE >> 20);
    if (check_depth(yaml, len, path, err) != 0)
        return -1;
    if (!yaml_parser_initialize(&parser))
        return kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", path);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, doc)) {
        const char *problem = parser.problem ? parser.problem : "cannot parse";
        if (parser.error == YAML_READER_ERROR)
            kl_err_set(err, KL_EINVAL, "kubeconfig %s: invalid YAML at byte %zu: %s", path,
                       parser.problem_offset, problem);
        else if (parser.error == YAML_MEMORY_ERROR)
            kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", path);
        else
            kl_err_set(err, KL_EINVAL, "kubeconfig %s: invalid YAML at line %zu column %zu: %s%s%s",
                       path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                       problem, parser.context ? " " : "", parser.context ? parser.context : "");
        goto done;
    }
    rc = 0;
done:
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- base64 ------------------------------------------------------------ */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode standard, padded base64 as Go's StdEncoding does (CR and LF are
 * skipped). On success *out (caller owns, NUL-terminated) and *outlen are
 * set. Returns 0, or -1 for invalid input or no memory (*out NULL then). */
static int b64_decode(const char *in, size_t len, char **out, size_t *outlen)
{
    char *o = malloc(len / 4 * 3 + 4);
    size_t n = 0;
    unsigned quad = 0, nq = 0, pad = 0;
    *out = NULL;
    if (!o)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            /* padding may only fill the last one or two places of a quad */
            if (nq < 2)
                goto bad;
            pad++;
            nq++;
            quad <<= 6;
            if (nq == 4)
                break;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad)
            goto bad;
        quad = (quad << 6) | (unsigned)v;
        if (++nq == 4) {
            o[n++] = (char)(quad >> 16);
            o[n++] = (char)(quad >> 8);
            o[n++] = (char)quad;
            quad = 0;
            nq = 0;
        }
    }
    if (pad) {
        /* nothing but line breaks may follow the padding */
        size_t i = (size_t)((const char *)memchr(in, '=', len) - in); /* there is one */
        for (; i < len; i++)
            if (in[i] != '=' && in[i] != '\r' && in[i] != '\n')
                goto bad;
        if (nq != 4)
            goto bad;
        o[n++] = (char)(quad >> 16);
        if (pad == 1)
            o[n++] = (char)(quad >> 8);
    } else if (nq != 0) {
        goto bad;
    }
    o[n] = '\0';
    *out = o;
    *outlen = n;
    return 0;
bad:
    kc_free_secret(o, len / 4 * 3 + 4);
    return -1;
}

/* ---- typed fields ------------------------------------------------------- */

/* Count n bytes copied out of the document. Without aliases every scalar is
 * copied once, so copies stay below the input's size; aliases can make one
 * large scalar count many times ("billion laughs"), which the budget stops. */
int kc_charge(kc_yaml_ctx *p, size_t n)
{
    if (n > p->budget)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: YAML aliases expand to too much data",
                          p->path);
    p->budget -= n;
    return 0;
}

unsigned kc_node_line(const yaml_node_t *n) { return (unsigned)n->start_mark.line + 1; }

int kc_is_null(const yaml_node_t *n)
{
    if (!n)
        return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) ||
                         !memcmp(v, "NULL", 4)));
}

/* The value under key in mapping map, or NULL; the last duplicate wins. */
yaml_node_t *kc_map_get(kc_yaml_ctx *p, yaml_node_t *map, const char *key)
{
    yaml_node_t *found = NULL;
    size_t klen = strlen(key);
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == klen &&
            memcmp(k->data.scalar.value, key, klen) == 0)
            found = yaml_document_get_node(p->doc, pr->value);
    }
    return found;
}

/* A string field. Absent, null or "" leaves *out NULL (kubectl treats an
 * empty value as unset). where names the entry for messages. */
int kc_get_str(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where, char **out)
{
    yaml_node_t *n = kc_map_get(p, map, key);
    *out = NULL;
    if (kc_is_null(n))
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a string (line %u)",
                          p->path, where, key, kc_node_line(n));
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(v, '\0', len))
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s contains a NUL byte (line %u)",
                          p->path, where, key, kc_node_line(n));
    if (len == 0)
        return 0;
    if (kc_charge(p, len) != 0)
        return -1;
    *out = strndup(v, len);
    if (!*out)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    return 0;
}

int kc_get_bool(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where, int *out)
{
    /* YAML 1.1 booleans, as go-yaml (under sigs.k8s.io/yaml) reads them */
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    yaml_node_t *n = kc_map_get(p, map, key);
    *out = 0;
    if (kc_is_null(n))
        return 0;
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
            size_t l = strlen(yes[i]);
            if (n->data.scalar.length == l && !memcmp(n->data.scalar.value, yes[i], l)) {
                *out = 1;
                return 0;
            }
            l = strlen(no[i]);
            if (n->data.scalar.length == l && !memcmp(n->data.scalar.value, no[i], l))
                return 0;
        }
    }
    return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be true or false (line %u)",
                      p->path, where, key, kc_node_line(n));
}

/* A path field, made absolute against the file's folder. */
int kc_get_path(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where, char **out)
{
    char *raw;
    if (kc_get_str(p, map, key, where, &raw) != 0)
        return -1;
    *out = NULL;
    if (!raw)
        return 0;
    *out = kc_path_resolve(p->dir, raw);
    free(raw);
    if (!*out)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    return 0;
}

/* A base64 field, decoded. The encoded text is never quoted back. */
int kc_get_b64(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where, char **out,
                   size_t *outlen)
{
    yaml_node_t *n = kc_map_get(p, map, key);
    *out = NULL;
    *outlen = 0;
    if (kc_is_null(n))
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a string (line %u)",
                          p->path, where, key, kc_node_line(n));
    if (n->data.scalar.length == 0)
        return 0;
    if (kc_charge(p, n->data.scalar.length) != 0)
        return -1;
    if (b64_decode((const char *)n->data.scalar.value, n->data.scalar.length, out, outlen) != 0)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s is not valid base64 (line %u)",
                          p->path, where, key, kc_node_line(n));
    return 0;
}

/* A list of strings; *out and each entry are owned by the caller. */
int kc_get_str_list(kc_yaml_ctx *p, yaml_node_t *map, const char *key, const char *where,
                        char ***out, size_t *count)
{
    yaml_node_t *n = kc_map_get(p, map, key);
    *out = NULL;
    *count = 0;
    if (kc_is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a list (line %u)",
                          p->path, where, key, kc_node_line(n));
    size_t total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *out = calloc(total + 1, sizeof **out);
    if (!*out)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *it = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        if (!it || it->type != YAML_SCALAR_NODE)
            return kl_err_set(p->err, KL_EINVAL,
                              "kubeconfig %s: %s%s[%zu] must be a string (line %u)", p->path,
                              where, key, i, it ? kc_node_line(it) : kc_node_line(n));
        if (kc_charge(p, it->data.scalar.length + 1) != 0)
            return -1;
        (*out)[i] = strndup((const char *)it->data.scalar.value, it->data.scalar.length);
        if (!(*out)[i])
            return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
        (*count)++;
    }
    return 0;
}
