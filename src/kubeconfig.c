/* kubeconfig.c - kubeconfig files and in-cluster configuration, as kubectl reads them.
 *
 * Provides: kubeconfig_load, kubeconfig_incluster, kubeconfig_parse,
 * kubeconfig_resolve and the matching free functions (see kubeconfig.h).
 * Uses: err, buf, log, libyaml (document API).
 *
 * How it works: kubeconfig_parse turns one file into a kubeconfig_file (named
 * clusters, users and contexts). Paths are made absolute against the folder
 * of that file right away and base64 data is decoded, so once parsed, an
 * entry no longer depends on which file it came from, and merging is only a
 * lookup in priority order. kubeconfig_resolve picks the context and checks
 * what client-go's ConfirmUsable checks for it (server present, referenced
 * files readable, no conflicting settings), so that mistakes surface at
 * start-up with the file named instead of as a TLS failure later.
 *
 * Semantics follow client-go's clientcmd: a duplicate name within one file is
 * an error, across files the first file wins, the first non-empty
 * current-context wins, and an unknown key is ignored. In a mapping with a
 * repeated key the last one wins (as Go's JSON decoding does).
 *
 * Secrets (token, password, key data) never reach an error message or a log
 * line, and their memory is wiped before it is freed.
 */
#include "kubeconfig.h"

#include "buf.h"
#include "util.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define KC_MAX_FILE (64u << 20) /* no sane kubeconfig comes near this */
#define KC_DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct kc_cluster {
    char *name;
    char *server;
    char *ca_file; /* absolute */
    char *ca_data; /* decoded, NUL-terminated */
    size_t ca_data_len;
    int insecure;
    char *tls_server_name;
} kc_cluster;

typedef struct kc_user {
    char *name;
    char *token, *token_file;
    char *cert_file, *key_file;
    char *cert_data, *key_data;
    size_t cert_data_len, key_data_len;
    char *username, *password;
    kube_exec_config *exec;
} kc_user;

typedef struct kc_context {
    char *name;
    char *cluster, *user, *namespace;
} kc_context;

struct kubeconfig_file {
    char *path; /* as given, for messages */
    char *dir;  /* absolute folder of path: the base of relative paths */
    char *current_context;
    kc_cluster *clusters;
    size_t nclusters;
    kc_user *users;
    size_t nusers;
    kc_context *contexts;
    size_t ncontexts;
};

/* ---- small helpers ---------------------------------------------------- */

/* Free a string that may hold a secret, wiping it first. */
static void free_secret(char *s, size_t len)
{
    if (s) {
        explicit_bzero(s, len ? len : strlen(s));
        free(s);
    }
}

/* Copy s into buf for use inside a one-line message: control characters
 * become '?' and long names are cut, so a crafted name cannot forge lines. */
static const char *msg_name(char *buf, size_t size, const char *s)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < size; i++)
        buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

/* Lexically clean an absolute path in place: collapse "//", drop ".",
 * apply "..", remove a trailing '/'; like Go's filepath.Clean. */
static void path_clean(char *p)
{
    size_t w = 1, r = 1, n = strlen(p);
    /* p[0] is '/'; w is the write end, always after a '/' or at 1. */
    while (r < n) {
        size_t e = r;
        while (e < n && p[e] != '/')
            e++;
        size_t len = e - r;
        if (len == 0 || (len == 1 && p[r] == '.')) {
            /* skip */
        } else if (len == 2 && p[r] == '.' && p[r + 1] == '.') {
            if (w > 1) {
                w--; /* the '/' before the end */
                while (w > 1 && p[w - 1] != '/')
                    w--;
            }
        } else {
            memmove(p + w, p + r, len);
            w += len;
            p[w++] = '/';
        }
        r = e + 1;
    }
    if (w > 1)
        w--; /* trailing '/' */
    p[w] = '\0';
}

/* An absolute, clean form of rel against dir (dir absolute). Caller owns it. */
static char *path_resolve(const char *dir, const char *rel)
{
    kl_buf b = KL_BUF_INIT;
    if (rel[0] == '/') {
        if (kl_buf_puts(&b, rel) != 0)
            goto fail;
    } else if (kl_buf_printf(&b, "%s/%s", dir, rel) != 0) {
        goto fail;
    }
    path_clean(b.data);
    return kl_buf_take(&b);
fail:
    kl_buf_free(&b);
    return NULL;
}

/* The absolute folder that holds file path. Caller owns it. */
static char *path_dir_abs(const char *path)
{
    char cwd[4096];
    char *abs;
    if (path && path[0] == '/') {
        abs = path_resolve("/", path);
    } else {
        if (!getcwd(cwd, sizeof cwd))
            memcpy(cwd, "/", 2); /* cannot happen in practice; keep going */
        abs = path_resolve(cwd, path ? path : "kubeconfig");
    }
    if (!abs)
        return NULL;
    char *slash = strrchr(abs, '/');
    if (slash == abs)
        slash[1] = '\0'; /* a file in "/" */
    else if (slash)
        *slash = '\0';
    return abs;
}

/* Whether path can be read now. stat + access rather than open, so that
 * checking never has the side effects opening a FIFO or a device can have.
 * Returns 0, or an errno value. */
static int check_readable(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno;
    if (S_ISDIR(st.st_mode))
        return EISDIR;
    if (access(path, R_OK) != 0)
        return errno;
    return 0;
}

/* Read a whole file into *out (caller owns out->data; it may hold secrets).
 * Returns 0 or an errno value. */
static int read_file(const char *path, kl_buf *out)
{
    return kl_read_file(path, KC_MAX_FILE, out, NULL) == 0 ? 0 : errno;
}

/* Wipe and free a buffer that may hold file contents with secrets. */
static void buf_free_secret(kl_buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    kl_buf_free(b);
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
    free_secret(o, len / 4 * 3 + 4);
    return -1;
}

/* ---- YAML access ------------------------------------------------------- */

typedef struct pctx {
    yaml_document_t *doc;
    const char *path; /* for messages */
    const char *dir;  /* base of relative paths */
    kl_err *err;
    size_t budget;    /* bytes left to copy out of the document, see charge() */
} pctx;

/* Count n bytes copied out of the document. Without aliases every scalar is
 * copied once, so copies stay below the input's size; aliases can make one
 * large scalar count many times ("billion laughs"), which the budget stops. */
static int charge(pctx *p, size_t n)
{
    if (n > p->budget)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: YAML aliases expand to too much data",
                          p->path);
    p->budget -= n;
    return 0;
}

static unsigned node_line(const yaml_node_t *n) { return (unsigned)n->start_mark.line + 1; }

static int is_null(const yaml_node_t *n)
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
static yaml_node_t *map_get(pctx *p, yaml_node_t *map, const char *key)
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
static int get_str(pctx *p, yaml_node_t *map, const char *key, const char *where, char **out)
{
    yaml_node_t *n = map_get(p, map, key);
    *out = NULL;
    if (is_null(n))
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a string (line %u)",
                          p->path, where, key, node_line(n));
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(v, '\0', len))
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s contains a NUL byte (line %u)",
                          p->path, where, key, node_line(n));
    if (len == 0)
        return 0;
    if (charge(p, len) != 0)
        return -1;
    *out = strndup(v, len);
    if (!*out)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    return 0;
}

static int get_bool(pctx *p, yaml_node_t *map, const char *key, const char *where, int *out)
{
    /* YAML 1.1 booleans, as go-yaml (under sigs.k8s.io/yaml) reads them */
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    yaml_node_t *n = map_get(p, map, key);
    *out = 0;
    if (is_null(n))
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
                      p->path, where, key, node_line(n));
}

/* A path field, made absolute against the file's folder. */
static int get_path(pctx *p, yaml_node_t *map, const char *key, const char *where, char **out)
{
    char *raw;
    if (get_str(p, map, key, where, &raw) != 0)
        return -1;
    *out = NULL;
    if (!raw)
        return 0;
    *out = path_resolve(p->dir, raw);
    free(raw);
    if (!*out)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    return 0;
}

/* A base64 field, decoded. The encoded text is never quoted back. */
static int get_b64(pctx *p, yaml_node_t *map, const char *key, const char *where, char **out,
                   size_t *outlen)
{
    yaml_node_t *n = map_get(p, map, key);
    *out = NULL;
    *outlen = 0;
    if (is_null(n))
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a string (line %u)",
                          p->path, where, key, node_line(n));
    if (n->data.scalar.length == 0)
        return 0;
    if (charge(p, n->data.scalar.length) != 0)
        return -1;
    if (b64_decode((const char *)n->data.scalar.value, n->data.scalar.length, out, outlen) != 0)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s is not valid base64 (line %u)",
                          p->path, where, key, node_line(n));
    return 0;
}

/* A list of strings; *out and each entry are owned by the caller. */
static int get_str_list(pctx *p, yaml_node_t *map, const char *key, const char *where,
                        char ***out, size_t *count)
{
    yaml_node_t *n = map_get(p, map, key);
    *out = NULL;
    *count = 0;
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a list (line %u)",
                          p->path, where, key, node_line(n));
    size_t total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *out = calloc(total + 1, sizeof **out);
    if (!*out)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *it = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        if (!it || it->type != YAML_SCALAR_NODE)
            return kl_err_set(p->err, KL_EINVAL,
                              "kubeconfig %s: %s%s[%zu] must be a string (line %u)", p->path,
                              where, key, i, it ? node_line(it) : node_line(n));
        if (charge(p, it->data.scalar.length + 1) != 0)
            return -1;
        (*out)[i] = strndup((const char *)it->data.scalar.value, it->data.scalar.length);
        if (!(*out)[i])
            return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
        (*count)++;
    }
    return 0;
}

/* ---- freeing ----------------------------------------------------------- */

static void exec_free(kube_exec_config *e)
{
    if (!e)
        return;
    free(e->api_version);
    free(e->command);
    for (size_t i = 0; i < e->nargs; i++)
        free(e->args[i]);
    free(e->args);
    /* env often carries credentials for the plugin */
    for (size_t i = 0; i < e->nenv; i++)
        free_secret(e->env[i], 0);
    free(e->env);
    free(e->install_hint);
    free(e->interactive_mode);
    free(e);
}

static void cluster_free(kc_cluster *c)
{
    free(c->name);
    free(c->server);
    free(c->ca_file);
    free(c->ca_data);
    free(c->tls_server_name);
}

static void user_free(kc_user *u)
{
    free(u->name);
    free_secret(u->token, 0);
    free(u->token_file);
    free(u->cert_file);
    free(u->key_file);
    free(u->cert_data);
    free_secret(u->key_data, u->key_data_len);
    free(u->username);
    free_secret(u->password, 0);
    exec_free(u->exec);
}

static void context_free(kc_context *c)
{
    free(c->name);
    free(c->cluster);
    free(c->user);
    free(c->namespace);
}

void kubeconfig_file_free(kubeconfig_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nclusters; i++)
        cluster_free(&f->clusters[i]);
    for (size_t i = 0; i < f->nusers; i++)
        user_free(&f->users[i]);
    for (size_t i = 0; i < f->ncontexts; i++)
        context_free(&f->contexts[i]);
    free(f->clusters);
    free(f->users);
    free(f->contexts);
    free(f->path);
    free(f->dir);
    free(f->current_context);
    free(f);
}

void kube_rest_config_free(kube_rest_config *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->ca_file);
    free(c->ca_data);
    free(c->tls_server_name);
    free_secret(c->token, 0);
    free(c->token_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->cert_data);
    free_secret(c->key_data, c->key_data_len);
    free(c->username);
    free_secret(c->password, 0);
    exec_free(c->exec);
    free(c->namespace);
    free(c->context);
    free(c->cluster_name);
    free(c->source);
    memset(c, 0, sizeof *c);
}

/* ---- parsing one file -------------------------------------------------- */

static int parse_exec(pctx *p, yaml_node_t *n, const char *where, kube_exec_config **out)
{
    int rc = -1;
    char w[224];
    kube_exec_config *e = calloc(1, sizeof *e);
    char *cmd = NULL;
    *out = NULL;
    if (!e)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    snprintf(w, sizeof w, "%sexec.", where);
    if (n->type != YAML_MAPPING_NODE) {
        kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %sexec must be a mapping (line %u)",
                   p->path, where, node_line(n));
        goto done;
    }
    if (get_str(p, n, "command", w, &cmd) != 0)
        goto done;
    /* Like client-go: a bare name is looked up in PATH at run time; only a
     * command with a '/' is a path relative to the kubeconfig. */
    if (cmd && strchr(cmd, '/')) {
        e->command = path_resolve(p->dir, cmd);
        if (!e->command) {
            kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
            goto done;
        }
    } else {
        e->command = cmd;
        cmd = NULL;
    }
    if (get_str(p, n, "apiVersion", w, &e->api_version) != 0 ||
        get_str_list(p, n, "args", w, &e->args, &e->nargs) != 0 ||
        get_str(p, n, "installHint", w, &e->install_hint) != 0 ||
        get_bool(p, n, "provideClusterInfo", w, &e->provide_cluster_info) != 0 ||
        get_str(p, n, "interactiveMode", w, &e->interactive_mode) != 0)
        goto done;
    yaml_node_t *env = map_get(p, n, "env");
    if (!is_null(env)) {
        if (env->type != YAML_SEQUENCE_NODE) {
            kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %sexec.env must be a list (line %u)",
                       p->path, where, node_line(env));
            goto done;
        }
        size_t total = (size_t)(env->data.sequence.items.top - env->data.sequence.items.start);
        e->env = calloc(total + 1, sizeof *e->env);
        if (!e->env) {
            kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
            goto done;
        }
        for (size_t i = 0; i < total; i++) {
            yaml_node_t *it = yaml_document_get_node(p->doc, env->data.sequence.items.start[i]);
            char *name = NULL, *value = NULL;
            char ew[256];
            snprintf(ew, sizeof ew, "%senv[%zu].", w, i);
            if (!it || it->type != YAML_MAPPING_NODE) {
                kl_err_set(p->err, KL_EINVAL,
                           "kubeconfig %s: %sexec.env[%zu] must be a mapping (line %u)", p->path,
                           where, i, it ? node_line(it) : node_line(env));
                goto done;
            }
            if (get_str(p, it, "name", ew, &name) != 0 ||
                get_str(p, it, "value", ew, &value) != 0) {
                free(name);
                free_secret(value, 0);
                goto done;
            }
            /* An entry without a name is kept as "=value" and rejected at
             * resolve time, only if this user is the one in use. */
            kl_buf b = KL_BUF_INIT;
            int bad = kl_buf_printf(&b, "%s=%s", name ? name : "", value ? value : "");
            free(name);
            free_secret(value, 0);
            if (bad) {
                buf_free_secret(&b);
                kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
                goto done;
            }
            e->env[e->nenv++] = kl_buf_take(&b);
        }
    }
    *out = e;
    e = NULL;
    rc = 0;
done:
    free(cmd);
    exec_free(e);
    return rc;
}

/* The mapping under entry[key] ("cluster", "user", "context"); null is an
 * empty entry. */
static int entry_body(pctx *p, yaml_node_t *entry, const char *key, const char *where,
                      yaml_node_t **body)
{
    *body = map_get(p, entry, key);
    if (is_null(*body)) {
        *body = NULL;
        return 0;
    }
    if ((*body)->type != YAML_MAPPING_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a mapping (line %u)",
                          p->path, where, key, node_line(*body));
    return 0;
}

static int parse_cluster(pctx *p, yaml_node_t *entry, const char *where, kc_cluster *c)
{
    yaml_node_t *m;
    if (entry_body(p, entry, "cluster", where, &m) != 0)
        return -1;
    if (!m)
        return 0;
    if (get_str(p, m, "server", where, &c->server) != 0 ||
        get_path(p, m, "certificate-authority", where, &c->ca_file) != 0 ||
        get_b64(p, m, "certificate-authority-data", where, &c->ca_data, &c->ca_data_len) != 0 ||
        get_bool(p, m, "insecure-skip-tls-verify", where, &c->insecure) != 0 ||
        get_str(p, m, "tls-server-name", where, &c->tls_server_name) != 0)
        return -1;
    return 0;
}

static int parse_user(pctx *p, yaml_node_t *entry, const char *where, kc_user *u)
{
    yaml_node_t *m;
    if (entry_body(p, entry, "user", where, &m) != 0)
        return -1;
    if (!m)
        return 0;
    if (get_str(p, m, "token", where, &u->token) != 0 ||
        get_path(p, m, "tokenFile", where, &u->token_file) != 0 ||
        get_path(p, m, "client-certificate", where, &u->cert_file) != 0 ||
        get_path(p, m, "client-key", where, &u->key_file) != 0 ||
        get_b64(p, m, "client-certificate-data", where, &u->cert_data, &u->cert_data_len) != 0 ||
        get_b64(p, m, "client-key-data", where, &u->key_data, &u->key_data_len) != 0 ||
        get_str(p, m, "username", where, &u->username) != 0 ||
        get_str(p, m, "password", where, &u->password) != 0)
        return -1;
    yaml_node_t *ex = map_get(p, m, "exec");
    if (!is_null(ex) && parse_exec(p, ex, where, &u->exec) != 0)
        return -1;
    return 0;
}

static int parse_context(pctx *p, yaml_node_t *entry, const char *where, kc_context *c)
{
    yaml_node_t *m;
    if (entry_body(p, entry, "context", where, &m) != 0)
        return -1;
    if (!m)
        return 0;
    if (get_str(p, m, "cluster", where, &c->cluster) != 0 ||
        get_str(p, m, "user", where, &c->user) != 0 ||
        get_str(p, m, "namespace", where, &c->namespace) != 0)
        return -1;
    return 0;
}

enum { KIND_CLUSTER, KIND_USER, KIND_CONTEXT };

/* Parse the list under key ("clusters", ...) into *items (an array of
 * elem-sized entries, owned by the file). Entries are counted as they are
 * filled so a failure half-way frees only what was set. */
static int parse_list(pctx *p, yaml_node_t *root, const char *key, int kind, void **items,
                      size_t *count)
{
    static const size_t elem[] = {sizeof(kc_cluster), sizeof(kc_user), sizeof(kc_context)};
    static const char *const singular[] = {"cluster", "user", "context"};
    yaml_node_t *n = map_get(p, root, key);
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s must be a list (line %u)",
                          p->path, key, node_line(n));
    size_t total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *items = calloc(total ? total : 1, elem[kind]);
    if (!*items)
        return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *it = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        char where[200], nb[100];
        char *name = NULL;
        if (!it || it->type != YAML_MAPPING_NODE)
            return kl_err_set(p->err, KL_EINVAL,
                              "kubeconfig %s: %s[%zu] must be a mapping (line %u)", p->path,
                              key, i, it ? node_line(it) : node_line(n));
        snprintf(where, sizeof where, "%s[%zu].", key, i);
        if (get_str(p, it, "name", where, &name) != 0)
            return -1;
        if (!name && !(name = strdup("")))
            return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
        /* client-go refuses a name listed twice in one file */
        for (size_t j = 0; j < *count; j++) {
            /* every entry type starts with its char *name (see find_named) */
            char *const *other = (char *const *)(const void *)((char *)*items + j * elem[kind]);
            if (strcmp(*other, name) == 0) {
                kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s \"%s\" is defined twice (line %u)",
                           p->path, singular[kind], msg_name(nb, sizeof nb, name), node_line(it));
                free(name);
                return -1;
            }
        }
        snprintf(where, sizeof where, "%s \"%s\": ", singular[kind], msg_name(nb, sizeof nb, name));
        int rc;
        if (kind == KIND_CLUSTER) {
            kc_cluster *c = &((kc_cluster *)*items)[(*count)++];
            c->name = name;
            rc = parse_cluster(p, it, where, c);
        } else if (kind == KIND_USER) {
            kc_user *u = &((kc_user *)*items)[(*count)++];
            u->name = name;
            rc = parse_user(p, it, where, u);
        } else {
            kc_context *c = &((kc_context *)*items)[(*count)++];
            c->name = name;
            rc = parse_context(p, it, where, c);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Parse one file. *empty is set when the document has no content (kubectl
 * skips such files in $KUBECONFIG but refuses one given alone). */
static int parse_file(const char *yaml, size_t len, const char *path, kubeconfig_file **out,
                      int *empty, kl_err *err)
{
    int rc = -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_parser = 0, have_doc = 0;
    kubeconfig_file *f = NULL;
    const char *shown = path ? path : "<input>";
    *out = NULL;
    *empty = 0;

    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(shown)) || !(f->dir = path_dir_abs(path))) {
        kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", shown);
        goto done;
    }
    if (!yaml_parser_initialize(&parser)) {
        kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", shown);
        goto done;
    }
    have_parser = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const char *problem = parser.problem ? parser.problem : "cannot parse";
        if (parser.error == YAML_READER_ERROR)
            kl_err_set(err, KL_EINVAL, "kubeconfig %s: invalid YAML at byte %zu: %s", shown,
                       parser.problem_offset, problem);
        else if (parser.error == YAML_MEMORY_ERROR)
            kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", shown);
        else
            kl_err_set(err, KL_EINVAL, "kubeconfig %s: invalid YAML at line %zu column %zu: %s%s%s",
                       shown, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                       problem, parser.context ? " " : "", parser.context ? parser.context : "");
        goto done;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null(root)) {
        *empty = 1;
        kl_err_set(err, KL_EINVAL, "kubeconfig %s is empty", shown);
        goto done;
    }
    if (root->type != YAML_MAPPING_NODE) {
        kl_err_set(err, KL_EINVAL, "kubeconfig %s: the file must hold a mapping (apiVersion, "
                                   "clusters, users, contexts), not a %s", shown,
                   root->type == YAML_SEQUENCE_NODE ? "list" : "single value");
        goto done;
    }
    pctx p = {&doc, shown, f->dir, err, len + (1u << 20)};
    if (get_str(&p, root, "current-context", "", &f->current_context) != 0 ||
        parse_list(&p, root, "clusters", KIND_CLUSTER, (void **)&f->clusters, &f->nclusters) != 0 ||
        parse_list(&p, root, "users", KIND_USER, (void **)&f->users, &f->nusers) != 0 ||
        parse_list(&p, root, "contexts", KIND_CONTEXT, (void **)&f->contexts, &f->ncontexts) != 0)
        goto done;
    *out = f;
    f = NULL;
    rc = 0;
done:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    kubeconfig_file_free(f);
    return rc;
}

int kubeconfig_parse(const char *yaml, size_t len, const char *path, kubeconfig_file **out,
                     kl_err *err)
{
    int empty;
    return parse_file(yaml, len, path, out, &empty, err);
}

/* ---- merging and validation -------------------------------------------- */

/* The named entries of one section of a file, as bytes: every kc_cluster,
 * kc_user and kc_context starts with its `char *name`. */
typedef enum { KC_CLUSTERS, KC_USERS, KC_CONTEXTS } kc_section;

static const char *section_entries(const kubeconfig_file *f, kc_section sec, size_t *n,
                                   size_t *size)
{
    switch (sec) {
    case KC_CLUSTERS: *n = f->nclusters; *size = sizeof(kc_cluster); return (const char *)f->clusters;
    case KC_USERS: *n = f->nusers; *size = sizeof(kc_user); return (const char *)f->users;
    default: *n = f->ncontexts; *size = sizeof(kc_context); return (const char *)f->contexts;
    }
}

/* The entry of the first file (in priority order) that defines name, as
 * kubectl merges; *from gets that file. NULL if no file defines it. */
static void *find_named(kubeconfig_file *const *files, size_t nfiles, kc_section sec,
                        const char *name, const kubeconfig_file **from)
{
    for (size_t i = 0; i < nfiles; i++) {
        size_t n, size;
        const char *base = section_entries(files[i], sec, &n, &size);
        for (size_t j = 0; j < n; j++) {
            char *const *entry_name = (char *const *)(const void *)(base + j * size);
            if (strcmp(*entry_name, name) == 0) {
                *from = files[i];
                return (void *)(base + j * size);
            }
        }
    }
    return NULL;
}

/* A file named by the kubeconfig must be readable now. what is the
 * kubeconfig key ("client-key", ...), source the file that named it. */
static int check_file(const char *what, const char *path, const char *source, kl_err *err)
{
    int e = path ? check_readable(path) : 0;
    if (e)
        return kl_err_set(err, KL_EIO, "cannot read %s %s from kubeconfig %s: %s", what, path,
                          source, strerror(e));
    return 0;
}

static int validate_cluster(const kc_cluster *c, const char *source, kl_err *err)
{
    char nb[100];
    const char *name = msg_name(nb, sizeof nb, c->name);
    if (!c->server)
        return kl_err_set(err, KL_EINVAL, "cluster \"%s\" in kubeconfig %s has no server", name,
                          source);
    if (c->ca_file && c->ca_data)
        return kl_err_set(err, KL_EINVAL,
                          "cluster \"%s\" in kubeconfig %s sets both certificate-authority and "
                          "certificate-authority-data; keep one",
                          name, source);
    if (c->insecure && (c->ca_file || c->ca_data))
        return kl_err_set(err, KL_EINVAL,
                          "cluster \"%s\" in kubeconfig %s sets insecure-skip-tls-verify together "
                          "with a certificate authority; keep one",
                          name, source);
    return check_file("certificate-authority", c->ca_file, source, err);
}

static int validate_user(const kc_user *u, const char *source, kl_err *err)
{
    char nb[100];
    const char *name = msg_name(nb, sizeof nb, u->name);
    if (u->token && (u->username || u->password))
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets both a token and a username/password; "
                          "only one authentication method is allowed",
                          name, source);
    if (u->cert_file && u->cert_data)
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets both client-certificate and "
                          "client-certificate-data; keep one",
                          name, source);
    if (u->key_file && u->key_data)
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets both client-key and client-key-data; "
                          "keep one",
                          name, source);
    int has_cert = u->cert_file || u->cert_data, has_key = u->key_file || u->key_data;
    if (has_cert != has_key)
        return kl_err_set(err, KL_EINVAL,
                          "user \"%s\" in kubeconfig %s sets a client %s without a client %s",
                          name, source, has_cert ? "certificate" : "key",
                          has_cert ? "key" : "certificate");
    if (u->exec) {
        if (!u->exec->command)
            return kl_err_set(err, KL_EINVAL,
                              "user \"%s\" in kubeconfig %s: exec needs a command", name, source);
        if (!u->exec->api_version)
            return kl_err_set(err, KL_EINVAL,
                              "user \"%s\" in kubeconfig %s: exec needs an apiVersion", name,
                              source);
        for (size_t i = 0; i < u->exec->nenv; i++)
            if (u->exec->env[i][0] == '=')
                return kl_err_set(err, KL_EINVAL,
                                  "user \"%s\" in kubeconfig %s: exec.env[%zu] has no name", name,
                                  source, i);
        const char *m = u->exec->interactive_mode;
        if (m && strcmp(m, "Never") && strcmp(m, "IfAvailable") && strcmp(m, "Always"))
            return kl_err_set(err, KL_EINVAL,
                              "user \"%s\" in kubeconfig %s: exec.interactiveMode must be Never, "
                              "IfAvailable or Always",
                              name, source);
    }
    if (check_file("client-certificate", u->cert_file, source, err) != 0 ||
        check_file("client-key", u->key_file, source, err) != 0 ||
        check_file("tokenFile", u->token_file, source, err) != 0)
        return -1;
    return 0;
}

/* Duplicate n bytes of secret or PEM data (NUL-terminated). */
static int dup_bytes(const char *src, size_t n, char **dst)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = malloc(n + 1);
    if (!*dst)
        return -1;
    memcpy(*dst, src, n);
    (*dst)[n] = '\0';
    return 0;
}

static kube_exec_config *exec_dup(const kube_exec_config *e)
{
    kube_exec_config *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->provide_cluster_info = e->provide_cluster_info;
    if ((e->api_version && !(d->api_version = strdup(e->api_version))) ||
        (e->command && !(d->command = strdup(e->command))) ||
        (e->install_hint && !(d->install_hint = strdup(e->install_hint))) ||
        /* client-go's default for v1beta1, where the field is optional */
        !(d->interactive_mode =
              strdup(e->interactive_mode ? e->interactive_mode : "IfAvailable")) ||
        !(d->args = calloc(e->nargs + 1, sizeof *d->args)) ||
        !(d->env = calloc(e->nenv + 1, sizeof *d->env)))
        goto fail;
    for (; d->nargs < e->nargs; d->nargs++)
        if (!(d->args[d->nargs] = strdup(e->args[d->nargs])))
            goto fail;
    for (; d->nenv < e->nenv; d->nenv++)
        if (!(d->env[d->nenv] = strdup(e->env[d->nenv])))
            goto fail;
    return d;
fail:
    exec_free(d);
    return NULL;
}

/* client-go's DefaultServerURL: a server without a scheme gets https when
 * TLS settings are present, http otherwise. Trailing slashes go. */
static char *server_url(const char *server, int tls)
{
    kl_buf b = KL_BUF_INIT;
    int bad = strstr(server, "://") ? kl_buf_puts(&b, server)
                                    : kl_buf_printf(&b, "%s://%s", tls ? "https" : "http", server);
    if (bad) {
        kl_buf_free(&b);
        return NULL;
    }
    while (b.len > 0 && b.data[b.len - 1] == '/')
        b.data[--b.len] = '\0';
    return kl_buf_take(&b);
}

/* Copy the cluster's settings into out; -1 on no memory (out keeps what was
 * copied, for kube_rest_config_free). */
static int copy_cluster(kube_rest_config *out, const kc_cluster *cl, const kc_user *u)
{
    int tls = cl->ca_file || cl->ca_data || cl->insecure || (u && (u->cert_file || u->cert_data));
    out->insecure = cl->insecure;
    if (!(out->server = server_url(cl->server, tls)) ||
        (cl->ca_file && !(out->ca_file = strdup(cl->ca_file))) ||
        dup_bytes(cl->ca_data, cl->ca_data_len, &out->ca_data) != 0 ||
        (cl->tls_server_name && !(out->tls_server_name = strdup(cl->tls_server_name))))
        return -1;
    out->ca_data_len = cl->ca_data ? cl->ca_data_len : 0;
    return 0;
}

/* Copy the user's credentials into out; -1 on no memory, as above. */
static int copy_user(kube_rest_config *out, const kc_user *u)
{
    if ((u->token && !(out->token = strdup(u->token))) ||
        (u->token_file && !(out->token_file = strdup(u->token_file))) ||
        (u->cert_file && !(out->cert_file = strdup(u->cert_file))) ||
        (u->key_file && !(out->key_file = strdup(u->key_file))) ||
        dup_bytes(u->cert_data, u->cert_data_len, &out->cert_data) != 0 ||
        dup_bytes(u->key_data, u->key_data_len, &out->key_data) != 0 ||
        (u->username && !(out->username = strdup(u->username))) ||
        (u->password && !(out->password = strdup(u->password))) ||
        (u->exec && !(out->exec = exec_dup(u->exec))))
        return -1;
    out->cert_data_len = u->cert_data ? u->cert_data_len : 0;
    out->key_data_len = u->key_data ? u->key_data_len : 0;
    return 0;
}

/* "a, b, c" for messages. Caller owns the result (NULL on no memory). */
static char *join_paths(kubeconfig_file *const *files, size_t nfiles)
{
    kl_buf b = KL_BUF_INIT;
    for (size_t i = 0; i < nfiles; i++)
        if (kl_buf_printf(&b, "%s%s", i ? ", " : "", files[i]->path) != 0) {
            kl_buf_free(&b);
            return NULL;
        }
    return kl_buf_take(&b);
}

int kubeconfig_resolve(kubeconfig_file *const *files, size_t nfiles, const kubeconfig_opts *opts,
                       kube_rest_config *out, kl_err *err)
{
    int rc = -1;
    char *sources = NULL;
    char nb[100], nb2[100];
    const kubeconfig_file *cfrom = NULL, *clfrom = NULL, *ufrom = NULL;
    const kc_user *u = NULL;
    const char *name = NULL;
    memset(out, 0, sizeof *out);

    if (nfiles == 0)
        return kl_err_set(err, KL_EINVAL, "no kubeconfig file to load");
    if (!(sources = join_paths(files, nfiles))) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto done;
    }
    if (opts && opts->context && opts->context[0])
        name = opts->context;
    for (size_t i = 0; !name && i < nfiles; i++)
        name = files[i]->current_context;
    if (!name) {
        kl_err_set(err, KL_EINVAL, "no current-context is set in kubeconfig %s; pass --context "
                                   "or run kubectl config use-context", sources);
        goto done;
    }
    const kc_context *ctx = find_named(files, nfiles, KC_CONTEXTS, name, &cfrom);
    if (!ctx) {
        kl_err_set(err, KL_EINVAL, "context \"%s\" not found in %s",
                   msg_name(nb, sizeof nb, name), sources);
        goto done;
    }
    if (!ctx->cluster) {
        kl_err_set(err, KL_EINVAL, "context \"%s\" in kubeconfig %s names no cluster",
                   msg_name(nb, sizeof nb, name), cfrom->path);
        goto done;
    }
    const kc_cluster *cl = find_named(files, nfiles, KC_CLUSTERS, ctx->cluster, &clfrom);
    if (!cl) {
        kl_err_set(err, KL_EINVAL, "cluster \"%s\" of context \"%s\" not found in %s",
                   msg_name(nb2, sizeof nb2, ctx->cluster), msg_name(nb, sizeof nb, name),
                   sources);
        goto done;
    }
    /* No user means anonymous access, as in kubectl; a named user that does
     * not exist is a typo worth stopping for. */
    if (ctx->user && !(u = find_named(files, nfiles, KC_USERS, ctx->user, &ufrom))) {
        kl_err_set(err, KL_EINVAL, "user \"%s\" of context \"%s\" not found in %s",
                   msg_name(nb2, sizeof nb2, ctx->user), msg_name(nb, sizeof nb, name), sources);
        goto done;
    }
    if (validate_cluster(cl, clfrom->path, err) != 0 ||
        (u && validate_user(u, ufrom->path, err) != 0))
        goto done;

    const char *ns = opts && opts->namespace && opts->namespace[0] ? opts->namespace
                     : ctx->namespace                             ? ctx->namespace
                                                                  : "default";
    if (copy_cluster(out, cl, u) != 0 || (u && copy_user(out, u) != 0) ||
        !(out->namespace = strdup(ns)) || !(out->context = strdup(name)) ||
        !(out->cluster_name = strdup(ctx->cluster)) || !(out->source = strdup(cfrom->path)))
        goto nomem;
    rc = 0;
    goto done;
nomem:
    kl_err_set(err, KL_ENOMEM, "out of memory while loading kubeconfig %s", cfrom->path);
done:
    if (rc != 0)
        kube_rest_config_free(out);
    free(sources);
    return rc;
}

/* ---- in-cluster -------------------------------------------------------- */

int kubeconfig_incluster(kube_rest_config *out, kl_err *err)
{
    int rc = -1;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = getenv("KLUA_SERVICEACCOUNT_DIR");
    char *token = NULL, *ca = NULL, *nsfile = NULL;
    kl_buf ns = KL_BUF_INIT, server = KL_BUF_INIT;
    memset(out, 0, sizeof *out);
    if (!dir || !dir[0])
        dir = KC_DEFAULT_SA_DIR;

    if (!host || !host[0] || !port || !port[0])
        return kl_err_set(err, KL_EINVAL, "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                                          "KUBERNETES_SERVICE_PORT must both be set");
    if (!(token = path_resolve(dir, "token")) || !(ca = path_resolve(dir, "ca.crt")) ||
        !(nsfile = path_resolve(dir, "namespace")))
        goto nomem;
    int e = check_readable(token);
    if (e) {
        kl_err_set(err, KL_EIO, "in-cluster config: cannot read service account token %s: %s",
                   token, strerror(e));
        goto done;
    }
    /* IPv6 literals need brackets in a URL (net.JoinHostPort in client-go). */
    if (kl_buf_printf(&server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                      port) != 0)
        goto nomem;
    /* client-go goes on without the CA when it cannot load it; so do we,
     * but say so, since the TLS failure that follows is otherwise puzzling. */
    e = check_readable(ca);
    if (e) {
        kl_log(KL_LOG_WARN, "in-cluster CA not readable; using the system trust store", "file", ca,
               "error", strerror(e), NULL);
        free(ca);
        ca = NULL;
    }
    e = read_file(nsfile, &ns);
    if (e && e != ENOENT) {
        kl_err_set(err, KL_EIO, "in-cluster config: cannot read namespace file %s: %s", nsfile,
                   strerror(e));
        goto done;
    }
    while (ns.len > 0 && strchr(" \t\r\n", ns.data[ns.len - 1]))
        ns.data[--ns.len] = '\0';
    out->in_cluster = 1;
    out->server = kl_buf_take(&server);
    out->token_file = token;
    out->ca_file = ca;
    token = ca = NULL;
    if (!out->server || !(out->namespace = strdup(e || ns.len == 0 ? "default" : ns.data)) ||
        !(out->context = strdup("")) || !(out->cluster_name = strdup("")) ||
        !(out->source = strdup(dir)))
        goto nomem;
    rc = 0;
    goto done;
nomem:
    kl_err_set(err, KL_ENOMEM, "in-cluster config: out of memory");
done:
    if (rc != 0)
        kube_rest_config_free(out);
    free(token);
    free(ca);
    free(nsfile);
    kl_buf_free(&ns);
    kl_buf_free(&server);
    return rc;
}

/* ---- loading ----------------------------------------------------------- */

enum { LOAD_REQUIRED, LOAD_OPTIONAL };

/* Read and parse path. With LOAD_OPTIONAL (a $KUBECONFIG entry) a missing
 * or empty file is skipped: rc 0 with *out NULL. */
static int load_file(const char *path, int mode, kubeconfig_file **out, kl_err *err)
{
    kl_buf data = KL_BUF_INIT;
    int empty = 0, rc = 0;
    *out = NULL;
    int e = read_file(path, &data);
    if (e == ENOENT && mode == LOAD_OPTIONAL)
        goto done;
    if (e) {
        rc = kl_err_set(err, KL_EIO, "cannot read kubeconfig %s: %s", path, strerror(e));
        goto done;
    }
    rc = parse_file(data.data ? data.data : "", data.len, path, out, &empty, err);
    if (rc != 0 && empty && mode == LOAD_OPTIONAL) {
        kl_log(KL_LOG_V1, "skipping empty kubeconfig", "file", path, NULL);
        kl_err_clear(err);
        rc = 0;
    }
done:
    buf_free_secret(&data);
    return rc;
}

/* Files from $KUBECONFIG (list), in order, into files (room for every
 * entry); *nfiles counts the loaded ones, which the caller frees. */
static int load_env_list(const char *list, kubeconfig_file **files, size_t *nfiles, kl_err *err)
{
    int rc = -1;
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return kl_err_set(err, KL_ENOMEM, "out of memory while loading the kubeconfig");
    /* strtok_r skips empty entries ("a::b", a leading ':'), as clientcmd does */
    for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        int dup = 0; /* clientcmd loads a file listed twice only once */
        for (size_t i = 0; i < *nfiles; i++)
            dup |= strcmp(files[i]->path, p) == 0;
        if (dup)
            continue;
        if (load_file(p, LOAD_OPTIONAL, &files[*nfiles], err) != 0)
            goto done;
        if (files[*nfiles])
            (*nfiles)++;
    }
    if (*nfiles == 0) {
        kl_err_set(err, KL_EINVAL, "no kubeconfig to load: none of the files in $KUBECONFIG (%s) "
                                   "exists or has content", list);
        goto done;
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

/* ~/.kube/config, the last resort; its absence gets a message that says
 * where else we looked. */
static int load_home(kubeconfig_file **out, kl_err *err)
{
    const char *home = getenv("HOME");
    char *path;
    int rc;
    *out = NULL;
    if (!home || !home[0])
        return kl_err_set(err, KL_EINVAL, "no Kubernetes configuration: KUBECONFIG, "
                                          "KUBERNETES_SERVICE_HOST and HOME are all unset");
    if (!(path = path_resolve(home, ".kube/config")))
        return kl_err_set(err, KL_ENOMEM, "out of memory while loading the kubeconfig");
    if (check_readable(path) == ENOENT)
        rc = kl_err_set(err, KL_EINVAL, "no Kubernetes configuration: %s does not exist, "
                                        "KUBECONFIG is not set and KUBERNETES_SERVICE_HOST is not "
                                        "set (not in a cluster)", path);
    else
        rc = load_file(path, LOAD_REQUIRED, out, err);
    free(path);
    return rc;
}

int kubeconfig_load(const kubeconfig_opts *opts, kube_rest_config *out, kl_err *err)
{
    static const kubeconfig_opts none = {NULL, NULL, NULL};
    int rc = -1;
    kubeconfig_file **files = NULL;
    size_t nfiles = 0;
    const char *env = getenv("KUBECONFIG");
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    memset(out, 0, sizeof *out);
    if (!opts)
        opts = &none;

    if (!(opts->path && opts->path[0]) && !(env && env[0]) && host && host[0] && port && port[0]) {
        if (kubeconfig_incluster(out, err) != 0)
            goto done;
        if (opts->namespace && opts->namespace[0]) {
            free(out->namespace);
            if (!(out->namespace = strdup(opts->namespace)))
                goto nomem;
        }
        rc = 0;
        goto done;
    }
    /* a $KUBECONFIG entry takes at least two bytes, but the last one */
    if (!(files = calloc(env ? strlen(env) / 2 + 1 : 1, sizeof *files)))
        goto nomem;
    if (opts->path && opts->path[0]) {
        if (load_file(opts->path, LOAD_REQUIRED, &files[0], err) != 0)
            goto done;
        nfiles = 1;
    } else if (env && env[0]) {
        if (load_env_list(env, files, &nfiles, err) != 0)
            goto done;
    } else {
        if (load_home(&files[0], err) != 0)
            goto done;
        nfiles = 1;
    }
    rc = kubeconfig_resolve(files, nfiles, opts, out, err);
    goto done;
nomem:
    kl_err_set(err, KL_ENOMEM, "out of memory while loading the kubeconfig");
done:
    if (rc != 0)
        kube_rest_config_free(out);
    for (size_t i = 0; i < nfiles; i++)
        kubeconfig_file_free(files[i]);
    free(files);
    return rc;
}
