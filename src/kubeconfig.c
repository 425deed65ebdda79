/* kubeconfig.c - where the configuration comes from, as kubectl looks for it.
 *
 * Provides: kubeconfig_load (see kubeconfig.h).
 * Uses: kubeconfig_parse (one file), kubeconfig_merge (kubeconfig_resolve),
 * kubeconfig_incluster, kubeconfig_model, log.
 *
 * The parts, bottom up: kubeconfig_model.c (the parsed form, shared
 * helpers), kubeconfig_yaml.c (one YAML document, typed fields),
 * kubeconfig_parse.c (the schema of one file), kubeconfig_validate.c and
 * kubeconfig_merge.c (several files into one rest config),
 * kubeconfig_incluster.c (a pod's configuration), and this file on top.
 *
 * Order: --kubeconfig, else $KUBECONFIG (a list: missing or empty entries
 * are skipped, a file listed twice is read once), else in-cluster when
 * KUBERNETES_SERVICE_HOST and _PORT are set, else ~/.kube/config.
 */
#include "kubeconfig.h"

#include "kubeconfig_model.h"
#include "kubeconfig_parse.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { LOAD_REQUIRED, LOAD_OPTIONAL };

/* Read and parse path. With LOAD_OPTIONAL (a $KUBECONFIG entry) a missing
 * or empty file is skipped: rc 0 with *out NULL. */
static int load_file(const char *path, int mode, kubeconfig_file **out, kl_err *err)
{
    kl_buf data = KL_BUF_INIT;
    int empty = 0, rc = 0;
    *out = NULL;
    int e = kc_read_file(path, &data);
    if (e == ENOENT && mode == LOAD_OPTIONAL)
        goto done;
    if (e == EFBIG) {
        rc = kl_err_set(err, KL_EINVAL, "kubeconfig %s is larger than %u MiB; refusing to "
                                        "parse it", path, KC_MAX_FILE >> 20);
        goto done;
    }
    if (e) {
        rc = kl_err_set(err, KL_EIO, "cannot read kubeconfig %s: %s", path, strerror(e));
        goto done;
    }
    rc = kc_parse_file(data.data ? data.data : "", data.len, path, out, &empty, err);
    if (rc != 0 && empty && mode == LOAD_OPTIONAL) {
        kl_log(KL_LOG_V1, "skipping empty kubeconfig", "file", path, NULL);
        kl_err_clear(err);
        rc = 0;
    }
done:
    kc_buf_free_secret(&data);
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
    if (!(path = kc_path_resolve(home, ".kube/config")))
        return kl_err_set(err, KL_ENOMEM, "out of memory while loading the kubeconfig");
    if (kc_check_readable(path) == ENOENT)
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

