/* reload_watch.c - klua run --dev: the inotify watcher (see reload_watch.h).
 *
 * Provides: reload_set_watch (reload.h) and reload_watch_free.
 * Uses: reload_int (the set's state), reload_set_rescan (reload_rescan),
 * loop (fd watch, timers), log.
 *
 * An event only says "look again": the rescan decides by content what
 * changed. Events are coalesced (RELOAD_COALESCE_MS, reload.h), and a
 * .lua file modified or created but not yet closed holds the rescan back
 * for at most RELOAD_WRITING_MAX_MS.
 */
#include "reload_watch.h"

#include "log.h"
#include "loop.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCH_MASK \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY)

static int add_watch(reload_set *s, const char *path)
{
    int wd = inotify_add_watch(s->ifd, path, WATCH_MASK | IN_ONLYDIR);
    if (wd < 0)
        return -1;
    for (size_t i = 0; i < s->nwds; i++)
        if (s->wds[i].wd == wd)
            return 0;
    reload_watch_dir *n = realloc(s->wds, (s->nwds + 1) * sizeof *n);
    char *p = strdup(path);
    if (!n || !p) {
        if (n)
            s->wds = n;
        free(p);
        return -1;
    }
    s->wds = n;
    s->wds[s->nwds].wd = wd;
    s->wds[s->nwds].path = p;
    s->nwds++;
    return 0;
}

/* Watch path and every folder below it (lib/ and its module folders). */
static void add_tree(reload_set *s, const char *path, int depth)
{
    if (depth > 8 || add_watch(s, path) != 0)
        return;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            add_tree(s, sub, depth + 1);
    }
    closedir(d);
}

static const char *wd_path(const reload_set *s, int wd)
{
    for (size_t i = 0; i < s->nwds; i++)
        if (s->wds[i].wd == wd)
            return s->wds[i].path;
    return NULL;
}

static void writing_clear(reload_set *s)
{
    for (size_t i = 0; i < s->nwriting; i++)
        free(s->writing[i]);
    free(s->writing);
    s->writing = NULL;
    s->nwriting = 0;
}

/* Mark the file (wd, name) as being written (on) or whole (off). Without
 * memory a file is simply not tracked: the rescan then comes sooner. */
static void writing_mark(reload_set *s, int wd, const char *name, int on)
{
    char key[NAME_MAX + 32];
    snprintf(key, sizeof key, "%d/%s", wd, name);
    for (size_t i = 0; i < s->nwriting; i++)
        if (!strcmp(s->writing[i], key)) {
            if (!on) {
                free(s->writing[i]);
                s->writing[i] = s->writing[--s->nwriting];
            }
            return;
        }
    char **n = on ? realloc(s->writing, (s->nwriting + 1) * sizeof *n) : NULL;
    if (!n)
        return;
    s->writing = n;
    if ((n[s->nwriting] = strdup(key)))
        s->nwriting++;
}

static void on_debounce(loop *l, void *ud)
{
    (void)l;
    reload_set *s = ud;
    s->debounce = 0;
    writing_clear(s); /* whole by now, or waited for long enough */
    reload_set_rescan(s);
}

static void on_inotify(loop *l, int fd, int events, void *ud)
{
    reload_set *s = ud;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int relevant = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                relevant = 1;
                continue;
            }
            if (!ev->len)
                continue;
            const char *dir = wd_path(s, ev->wd);
            size_t nl = strlen(ev->name);
            if (ev->mask & IN_ISDIR) {
                /* A new lib/ or module folder: watch it too. */
                if (dir && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
                    char sub[PATH_MAX];
                    snprintf(sub, sizeof sub, "%s/%s", dir, ev->name);
                    int top = !strcmp(dir, s->dir);
                    if (!top || !strcmp(ev->name, "lib"))
                        add_tree(s, sub, 1);
                }
                relevant = 1;
            } else if (nl > 4 && !strcmp(ev->name + nl - 4, ".lua")) {
                /* written in place: whole at IN_CLOSE_WRITE; renamed over,
                 * removed, renamed away: whole (or gone) at once */
                int whole = ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM);
                writing_mark(s, ev->wd, ev->name, !whole);
                relevant = 1;
            }
        }
    }
    if (!relevant)
        return;
    /* Coalesce: rescan once events have stopped for a few ms, and no
     * script is half-written. */
    if (s->debounce)
        loop_timer_cancel(l, s->debounce);
    s->debounce = loop_timer_add(l, s->nwriting ? RELOAD_WRITING_MAX_MS : RELOAD_COALESCE_MS,
                                 on_debounce, s);
}

int reload_set_watch(reload_set *s, kl_err *err)
{
    s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s->ifd < 0)
        return kl_err_set(err, KL_EIO, "inotify: %s", strerror(errno));
    if (add_watch(s, s->dir) != 0)
        return kl_err_set(err, KL_EIO, "inotify: cannot watch %s: %s", s->dir, strerror(errno));
    char lib[PATH_MAX];
    snprintf(lib, sizeof lib, "%s/lib", s->dir);
    struct stat st;
    if (stat(lib, &st) == 0 && S_ISDIR(st.st_mode))
        add_tree(s, lib, 1);
    if (loop_fd_add(s->deps.l, s->ifd, LOOP_READ, on_inotify, s) != 0)
        return kl_err_set(err, KL_EIO, "inotify: cannot add to the event loop");
    kl_log(KL_LOG_INFO, "watching scripts for changes", "dir", s->dir, NULL);
    return 0;
}

void reload_watch_free(reload_set *s)
{
    if (s->ifd >= 0) {
        if (s->deps.l)
            loop_fd_del(s->deps.l, s->ifd);
        close(s->ifd);
    }
    for (size_t i = 0; i < s->nwds; i++)
        free(s->wds[i].path);
    free(s->wds);
    writing_clear(s);
    if (s->deps.l && s->debounce)
        loop_timer_cancel(s->deps.l, s->debounce);
}
