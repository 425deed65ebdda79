/* kubeconfig_parse.c - the kubeconfig schema of one file.
 *
 * Provides: kc_parse_file, kubeconfig_parse (see kubeconfig_parse.h and
 * kubeconfig.h).
 * Uses: kubeconfig_yaml, kubeconfig_model, buf.
 *
 * Paths are made absolute against the folder of the file right away and
 * base64 data is decoded, so a parsed entry no longer depends on its file.
 * Secrets (token, password, key data, exec env) never reach a message.
 */
#include "kubeconfig_parse.h"

#include "buf.h"
#include "kubeconfig_model.h"
#include "kubeconfig_yaml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_exec(kc_yaml_ctx *p, yaml_node_t *n, const char *where, kube_exec_config **out)
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
                   p->path, where, kc_node_line(n));
        goto done;
    }
    if (kc_get_str(p, n, "command", w, &cmd) != 0)
        goto done;
    /* Like client-go: a bare name is looked up in PATH at run time; only a
     * command with a '/' is a path relative to the kubeconfig. */
    if (cmd && strchr(cmd, '/')) {
        e->command = kc_path_resolve(p->dir, cmd);
        if (!e->command) {
            kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
            goto done;
        }
    } else {
        e->command = cmd;
        cmd = NULL;
    }
    if (kc_get_str(p, n, "apiVersion", w, &e->api_version) != 0 ||
        kc_get_str_list(p, n, "args", w, &e->args, &e->nargs) != 0 ||
        kc_get_str(p, n, "installHint", w, &e->install_hint) != 0 ||
        kc_get_bool(p, n, "provideClusterInfo", w, &e->provide_cluster_info) != 0 ||
        kc_get_str(p, n, "interactiveMode", w, &e->interactive_mode) != 0)
        goto done;
    yaml_node_t *env = kc_map_get(p, n, "env");
    if (!kc_is_null(env)) {
        if (env->type != YAML_SEQUENCE_NODE) {
            kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %sexec.env must be a list (line %u)",
                       p->path, where, kc_node_line(env));
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
                           where, i, it ? kc_node_line(it) : kc_node_line(env));
                goto done;
            }
            if (kc_get_str(p, it, "name", ew, &name) != 0 ||
                kc_get_str(p, it, "value", ew, &value) != 0) {
                free(name);
                kc_free_secret(value, 0);
                goto done;
            }
            /* An entry without a name is kept as "=value" and rejected at
             * resolve time, only if this user is the one in use. */
            kl_buf b = KL_BUF_INIT;
            int bad = kl_buf_printf(&b, "%s=%s", name ? name : "", value ? value : "");
            free(name);
            kc_free_secret(value, 0);
            if (bad) {
                kc_buf_free_secret(&b);
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
    kc_exec_free(e);
    return rc;
}

/* The mapping under entry[key] ("cluster", "user", "context"); null is an
 * empty entry. */
static int entry_body(kc_yaml_ctx *p, yaml_node_t *entry, const char *key, const char *where,
                      yaml_node_t **body)
{
    *body = kc_map_get(p, entry, key);
    if (kc_is_null(*body)) {
        *body = NULL;
        return 0;
    }
    if ((*body)->type != YAML_MAPPING_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s%s must be a mapping (line %u)",
                          p->path, where, key, kc_node_line(*body));
    return 0;
}

static int parse_cluster(kc_yaml_ctx *p, yaml_node_t *entry, const char *where, kc_cluster *c)
{
    yaml_node_t *m;
    if (entry_body(p, entry, "cluster", where, &m) != 0)
        return -1;
    if (!m)
        return 0;
    if (kc_get_str(p, m, "server", where, &c->server) != 0 ||
        kc_get_path(p, m, "certificate-authority", where, &c->ca_file) != 0 ||
        kc_get_b64(p, m, "certificate-authority-data", where, &c->ca_data, &c->ca_data_len) != 0 ||
        kc_get_bool(p, m, "insecure-skip-tls-verify", where, &c->insecure) != 0 ||
        kc_get_str(p, m, "tls-server-name", where, &c->tls_server_name) != 0)
        return -1;
    return 0;
}

static int parse_user(kc_yaml_ctx *p, yaml_node_t *entry, const char *where, kc_user *u)
{
    yaml_node_t *m;
    if (entry_body(p, entry, "user", where, &m) != 0)
        return -1;
    if (!m)
        return 0;
    if (kc_get_str(p, m, "token", where, &u->token) != 0 ||
        kc_get_path(p, m, "tokenFile", where, &u->token_file) != 0 ||
        kc_get_path(p, m, "client-certificate", where, &u->cert_file) != 0 ||
        kc_get_path(p, m, "client-key", where, &u->key_file) != 0 ||
        kc_get_b64(p, m, "client-certificate-data", where, &u->cert_data, &u->cert_data_len) != 0 ||
        kc_get_b64(p, m, "client-key-data", where, &u->key_data, &u->key_data_len) != 0 ||
        kc_get_str(p, m, "username", where, &u->username) != 0 ||
        kc_get_str(p, m, "password", where, &u->password) != 0)
        return -1;
    yaml_node_t *ex = kc_map_get(p, m, "exec");
    if (!kc_is_null(ex) && parse_exec(p, ex, where, &u->exec) != 0)
        return -1;
    return 0;
}

static int parse_context(kc_yaml_ctx *p, yaml_node_t *entry, const char *where, kc_context *c)
{
    yaml_node_t *m;
    if (entry_body(p, entry, "context", where, &m) != 0)
        return -1;
    if (!m)
        return 0;
    if (kc_get_str(p, m, "cluster", where, &c->cluster) != 0 ||
        kc_get_str(p, m, "user", where, &c->user) != 0 ||
        kc_get_str(p, m, "namespace", where, &c->namespace) != 0)
        return -1;
    return 0;
}

enum { KIND_CLUSTER, KIND_USER, KIND_CONTEXT };

/* Parse the list under key ("clusters", ...) into *items (an array of
 * elem-sized entries, owned by the file). Entries are counted as they are
 * filled so a failure half-way frees only what was set. */
static int parse_list(kc_yaml_ctx *p, yaml_node_t *root, const char *key, int kind, void **items,
                      size_t *count)
{
    static const size_t elem[] = {sizeof(kc_cluster), sizeof(kc_user), sizeof(kc_context)};
    static const char *const singular[] = {"cluster", "user", "context"};
    yaml_node_t *n = kc_map_get(p, root, key);
    if (kc_is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s must be a list (line %u)",
                          p->path, key, kc_node_line(n));
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
                              key, i, it ? kc_node_line(it) : kc_node_line(n));
        snprintf(where, sizeof where, "%s[%zu].", key, i);
        if (kc_get_str(p, it, "name", where, &name) != 0)
            return -1;
        if (!name && !(name = strdup("")))
            return kl_err_set(p->err, KL_ENOMEM, "kubeconfig %s: out of memory", p->path);
        /* client-go refuses a name listed twice in one file */
        for (size_t j = 0; j < *count; j++) {
            /* every entry type starts with its char *name (see find_named) */
            char *const *other = (char *const *)(const void *)((char *)*items + j * elem[kind]);
            if (strcmp(*other, name) == 0) {
                kl_err_set(p->err, KL_EINVAL, "kubeconfig %s: %s \"%s\" is defined twice (line %u)",
                           p->path, singular[kind], kc_msg_name(nb, sizeof nb, name),
                           kc_node_line(it));
                free(name);
                return -1;
            }
        }
        snprintf(where, sizeof where, "%s \"%s\": ", singular[kind],
                 kc_msg_name(nb, sizeof nb, name));
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

int kc_parse_file(const char *yaml, size_t len, const char *path, kubeconfig_file **out,
                  int *empty, kl_err *err)
{
    int rc = -1;
    yaml_document_t doc;
    int have_doc = 0;
    kubeconfig_file *f = NULL;
    const char *shown = path ? path : "<input>";
    *out = NULL;
    *empty = 0;

    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(shown)) || !(f->dir = kc_path_dir_abs(path))) {
        kl_err_set(err, KL_ENOMEM, "kubeconfig %s: out of memory", shown);
        goto done;
    }
    if (kc_yaml_load(yaml, len, shown, &doc, err) != 0)
        goto done;
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || kc_is_null(root)) {
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
    kc_yaml_ctx p = {&doc, shown, f->dir, err, len + (1u << 20)};
    if (kc_get_str(&p, root, "current-context", "", &f->current_context) != 0 ||
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
    kubeconfig_file_free(f);
    return rc;
}

int kubeconfig_parse(const char *yaml, size_t len, const char *path, kubeconfig_file **out,
                     kl_err *err)
{
    int empty;
    return kc_parse_file(yaml, len, path, out, &empty, err);
}
