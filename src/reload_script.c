/* reload_script.c - the script files of a reload_set (see reload_script.h).
 *
 * Provides: reload_list_scripts, the entries (one per script file, with
 * the failure last reported for it), loading one script into a fresh Lua
 * state, and the pending ops (loads waiting for discovery).
 * Uses: reload_int (the set's state), lua_host (new, load, dependencies),
 * controller (name, declaration), log.
 */
#include "reload_script.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the script files ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void reload_free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

int reload_list_scripts(const char *dir, char ***out, size_t *n, kl_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return kl_err_set(err, KL_EIO, "script directory %s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t len = 0;
    int rc = 0;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".lua") != 0 || e->d_name[0] == '.')
            continue;
        /* klua test's specs live beside the scripts; they are not controllers. */
        if (nl > 9 && !strcmp(e->d_name + nl - 9, "_spec.lua"))
            continue;
        size_t pl = dl + nl + 2;
        char *path = malloc(pl);
        char **nv = realloc(v, (len + 1) * sizeof *v);
        if (!path || !nv) {
            free(path);
            if (nv)
                v = nv;
            rc = kl_err_set(err, KL_ENOMEM, "out of memory");
            break;
        }
        v = nv;
        snprintf(path, pl, "%.*s/%s", (int)dl, dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        v[len++] = path;
    }
    closedir(d);
    if (rc != 0) {
        reload_free_list(v, len);
        return -1;
    }
    if (len)
        qsort(v, len, sizeof *v, cmp_str);
    *out = v;
    *n = len;
    return 0;
}

/* ---- entries ---- */

void reload_entry_clear_failed(reload_entry *e)
{
    lua_host_deps_free(e->failed, e->nfailed);
    e->failed = NULL;
    e->nfailed = 0;
    e->has_failed = 0;
    free(e->last_err);
    e->last_err = NULL;
    e->kind_missing = 0;
}

/* Remember a failed attempt (failed: the files it read, taken). Returns 1
 * when it is news to report: another message, or files changed since the
 * last report; 0 when the same failure was reported already. */
int reload_entry_record_failure(reload_entry *e, const kl_err *err, lua_host_dep *failed,
                                size_t nfailed)
{
    int news = !(e->has_failed && e->last_err && !strcmp(e->last_err, err->msg) &&
                 !lua_host_deps_changed(e->failed, e->nfailed));
    int kind_missing = e->kind_missing;
    reload_entry_clear_failed(e);
    e->failed = failed;
    e->nfailed = nfailed;
    e->has_failed = 1;
    e->last_err = strdup(err->msg);
    e->kind_missing = kind_missing;
    return news;
}

/* Load path into a fresh host. On failure *failed receives the files the
 * attempt read (so the error is reported once per version of them). */
lua_host *reload_load_one(reload_set *s, const char *path, lua_host_dep **failed,
                          size_t *nfailed, kl_err *err)
{
    lua_host *h = lua_host_new(&s->limits, err);
    if (!h)
        return NULL;
    if (lua_host_load(h, path, err) != 0) {
        size_t n = 0;
        const lua_host_dep *d = lua_host_deps(h, &n);
        if (failed && lua_host_deps_copy(d, n, failed) == 0)
            *nfailed = n;
        lua_host_free(h);
        return NULL;
    }
    return h;
}

static const char *entry_name(const reload_entry *e)
{
    if (e->c)
        return controller_name(e->c);
    if (e->h)
        return lua_host_decl(e->h)->name;
    return NULL;
}

/* The entry (other than self) already using controller name, or NULL. */
reload_entry *reload_name_user(reload_set *s, const char *name, const reload_entry *self)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *n = entry_name(&s->e[i]);
        if (&s->e[i] != self && n && !strcmp(n, name))
            return &s->e[i];
    }
    return NULL;
}

reload_entry *reload_entry_add(reload_set *s, const char *path)
{
    reload_entry *ne = realloc(s->e, (s->n + 1) * sizeof *ne);
    if (!ne)
        return NULL;
    s->e = ne;
    reload_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    if (!(e->path = strdup(path)))
        return NULL;
    s->n++;
    return e;
}

reload_entry *reload_entry_by_path(reload_set *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].path, path))
            return &s->e[i];
    return NULL;
}

void reload_log_loaded(controller *c)
{
    const lua_controller_decl *d = controller_decl(c);
    char workers[16];
    snprintf(workers, sizeof workers, "%d", controller_workers(c));
    kl_log(KL_LOG_INFO, "controller loaded", "name", d->name, "kind", d->watch.kind, "apiVersion",
           d->watch.api_version, "file", controller_script(c), "workers", workers, NULL);
}

/* ---- loads waiting for discovery ---- */

void reload_op_free(reload_op *o)
{
    lua_host_deps_free(o->seen, o->nseen);
    free(o->path);
    free(o->old_name);
    free(o);
}

reload_op *reload_op_new(reload_set *s, const char *path, const char *old_name)
{
    reload_op *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->s = s;
    if (!(o->path = strdup(path)) || (old_name && !(o->old_name = strdup(old_name)))) {
        reload_op_free(o);
        return NULL;
    }
    o->next = s->ops;
    s->ops = o;
    s->pending++;
    return o;
}

/* Unlink o (its callback came); the caller frees it. */
void reload_op_done(reload_op *o)
{
    reload_set *s = o->s;
    for (reload_op **p = &s->ops; *p; p = &(*p)->next) {
        if (*p == o) {
            *p = o->next;
            break;
        }
    }
    s->pending--;
}
