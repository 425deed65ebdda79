/* kubeconfig_model.h - the parsed form of one kubeconfig file, and what the
 * kubeconfig parts share.
 *
 * Provides: the named entries of one file (kc_cluster, kc_user, kc_context,
 * struct kubeconfig_file) and their freeing (kubeconfig_file_free,
 * kube_rest_config_free, kc_exec_free); wiping of secrets before they are
 * freed; paths made absolute and clean against a folder; names made safe
 * for one-line messages; the readability check and the capped file read
 * that every part uses.
 * Uses: kubeconfig (the public types), buf, util.
 *
 * Layering (each arrow is "includes"): kubeconfig_model <- kubeconfig_yaml
 * <- kubeconfig_parse; kubeconfig_model <- kubeconfig_validate <-
 * kubeconfig_merge; kubeconfig_model <- kubeconfig_incluster; kubeconfig.c
 * (loading) sits on top of them all.
 *
 * Once parsed, an entry holds absolute paths and decoded bytes: it no longer
 * depends on the file it came from, so merging is a lookup in priority order.
 */
#ifndef KLUA_KUBECONFIG_MODEL_H
#define KLUA_KUBECONFIG_MODEL_H

#include "buf.h"
#include "kubeconfig.h"

#include <stddef.h>

/* No sane kubeconfig comes near this; a larger one is refused before it is
 * parsed, with a message that says so. */
#define KC_MAX_FILE (16u << 20)

typedef struct kc_cluster {
    char *name; /* first member of every entry type: see kc_merge's lookup */
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

/* Free a string that may hold a secret, wiping it first (len 0: strlen). */
void kc_free_secret(char *s, size_t len);
/* Wipe and free a buffer that may hold file contents with secrets. */
void kc_buf_free_secret(kl_buf *b);
/* Free an exec config and everything it owns (NULL is fine). */
void kc_exec_free(kube_exec_config *e);

/* Copy s into buf for use inside a one-line message: control characters
 * become '?' and long names are cut, so a crafted name cannot forge lines.
 * Returns buf. */
const char *kc_msg_name(char *buf, size_t size, const char *s);

/* An absolute, clean form of rel against dir (dir absolute), like Go's
 * filepath.Join + Clean. Caller owns it; NULL on no memory. */
char *kc_path_resolve(const char *dir, const char *rel);
/* The absolute folder that holds file path (NULL path: the current folder).
 * Caller owns it; NULL on no memory. */
char *kc_path_dir_abs(const char *path);

/* Whether path can be read now, without opening it (stat + access: no side
 * effects on a FIFO or a device). Returns 0, or an errno value. */
int kc_check_readable(const char *path);
/* Read a whole file of at most KC_MAX_FILE bytes into *out (caller owns
 * out->data; it may hold secrets: free it with kc_buf_free_secret).
 * Returns 0 or an errno value (EFBIG past the cap). */
int kc_read_file(const char *path, kl_buf *out);

#endif
