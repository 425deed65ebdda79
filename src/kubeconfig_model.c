/* kubeconfig_model.c - the parsed form of a kubeconfig file: freeing it, and
 * the helpers every kubeconfig part shares (secrets, paths, files, names).
 *
 * Provides: see kubeconfig_model.h.
 * Uses: buf, util (kl_read_file).
 */
#include "kubeconfig_model.h"

#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------- */

/* Free a string that may hold a secret, wiping it first. */
void kc_free_secret(char *s, size_t len)
{
    if (s) {
        explicit_bzero(s, len ? len : strlen(s));
        free(s);
    }
}

/* Copy s into buf for use inside a one-line message: control characters
 * become '?' and long names are cut, so a crafted name cannot forge lines. */
const char *kc_msg_name(char *buf, size_t size, const char *s)
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
char *kc_path_resolve(const char *dir, const char *rel)
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
char *kc_path_dir_abs(const char *path)
{
    char cwd[4096];
    char *abs;
    if (path && path[0] == '/') {
        abs = kc_path_resolve("/", path);
    } else {
        if (!getcwd(cwd, sizeof cwd))
            memcpy(cwd, "/", 2); /* cannot happen in practice; keep going */
        abs = kc_path_resolve(cwd, path ? path : "kubeconfig");
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
int kc_check_readable(const char *path)
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
int kc_read_file(const char *path, kl_buf *out)
{
    return kl_read_file(path, KC_MAX_FILE, out, NULL) == 0 ? 0 : errno;
}

/* Wipe and free a buffer that may hold file contents with secrets. */
void kc_buf_free_secret(kl_buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    kl_buf_free(b);
}

/* ---- freeing ----------------------------------------------------------- */

void kc_exec_free(kube_exec_config *e)
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
        kc_free_secret(e->env[i], 0);
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
    kc_free_secret(u->token, 0);
    free(u->token_file);
    free(u->cert_file);
    free(u->key_file);
    free(u->cert_data);
    kc_free_secret(u->key_data, u->key_data_len);
    free(u->username);
    kc_free_secret(u->password, 0);
    kc_exec_free(u->exec);
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
    kc_free_secret(c->token, 0);
    free(c->token_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->cert_data);
    kc_free_secret(c->key_data, c->key_data_len);
    free(c->username);
    kc_free_secret(c->password, 0);
    kc_exec_free(c->exec);
    free(c->namespace);
    free(c->context);
    free(c->cluster_name);
    free(c->source);
    memset(c, 0, sizeof *c);
}
