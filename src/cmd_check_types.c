/* cmd_check_types.c - `klua check --types`; see cmd_check_types.h.
 *
 * emmylua_check is run once over every script folder (the first is its main
 * workspace) with a configuration written to a private temporary folder,
 * and its JSON report (absolute paths, 0-based positions) is turned into
 * klua check's one-line-per-finding format.
 */
#include "cmd_check_types.h"

#include "buf.h"
#include "err.h"
#include "json.h"
#include "klua_home.h"
#include "run.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPORT_MAX (256u << 20)


/* The checker: $KLUA_EMMYLUA_CHECK, the one tools/emmylua.sh cached, or PATH. */
static char *find_checker(void)
{
    const char *env = getenv("KLUA_EMMYLUA_CHECK");
    if (env && *env)
        return strdup(env);
    kl_buf b = KL_BUF_INIT;
    const char *cache = getenv("KLUA_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache)
        kl_buf_printf(&b, "%s/bin/emmylua_check", cache);
    else if (home && *home)
        kl_buf_printf(&b, "%s/.cache/klua/bin/emmylua_check", home);
    char *p = kl_buf_take(&b);
    if (p && access(p, X_OK) == 0)
        return p;
    free(p);
    const char *path = getenv("PATH");
    for (const char *s = path; s && *s;) {
        const char *e = strchr(s, ':');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        kl_buf_printf(&b, "%.*s/emmylua_check", (int)n, s);
        p = kl_buf_take(&b);
        if (p && n && access(p, X_OK) == 0)
            return p;
        free(p);
        s = e ? e + 1 : NULL;
    }
    return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Copy the *.lua files of the tree src to dst (created), at most 4 deep. */
static int copy_lua_tree(const char *src, const char *dst, int depth, kl_err *err)
{
    if (mkdir(dst, 0700) != 0 && errno != EEXIST)
        return kl_err_set(err, KL_EIO, "creating %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (!d)
        return kl_err_set(err, KL_EIO, "%s: %s", src, strerror(errno));
    int rc = 0;
    struct dirent *e;
    kl_buf from = KL_BUF_INIT, to = KL_BUF_INIT, data = KL_BUF_INIT;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        kl_buf_reset(&from);
        kl_buf_reset(&to);
        kl_buf_printf(&from, "%s/%s", src, e->d_name);
        kl_buf_printf(&to, "%s/%s", dst, e->d_name);
        if (kl_buf_failed(&from) || kl_buf_failed(&to)) {
            rc = kl_err_set(err, KL_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        if (stat(from.data, &st) != 0)
            continue;
        size_t nl = strlen(e->d_name);
        if (S_ISDIR(st.st_mode)) {
            if (depth < 4)
                rc = copy_lua_tree(from.data, to.data, depth + 1, err);
        } else if (nl > 4 && !strcmp(e->d_name + nl - 4, ".lua")) {
            kl_buf_reset(&data);
            if (kl_read_file(from.data, REPORT_MAX, &data, err) != 0) {
                rc = -1;
                break;
            }
            FILE *f = fopen(to.data, "wb");
            size_t w = f ? fwrite(data.data ? data.data : "", 1, data.len, f) : 0;
            if (!f || w != data.len || fclose(f) != 0) {
                if (f && w != data.len)
                    fclose(f);
                rc = kl_err_set(err, KL_EIO, "writing %s: %s", to.data, strerror(errno));
            }
        }
    }
    kl_buf_free(&from);
    kl_buf_free(&to);
    kl_buf_free(&data);
    closedir(d);
    return rc;
}

/* The folder a script path names (itself, or a file's folder), absolute. */
static char *script_dir(const char *path, kl_err *err)
{
    char *r = realpath(path, NULL);
    if (!r) {
        kl_err_set(err, KL_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (stat(r, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char *slash = strrchr(r, '/');
        if (slash && slash != r)
            *slash = '\0';
    }
    return r;
}

static void json_list(kl_buf *b, char **v, size_t n)
{
    kl_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            kl_buf_puts(b, ", ");
        json_escape_append(b, v[i], strlen(v[i]));
    }
    kl_buf_putc(b, ']');
}

/* The configuration: Lua 5.4, require as klua resolves it (the script
 * folder, then lib/), the libraries, and folders that are not scripts. */
static int write_config(const char *path, char **libs, size_t nlibs, char **own,
                        char **dirs, size_t ndirs, kl_err *err)
{
    kl_buf b = KL_BUF_INIT;
    int oom = 0;
    kl_buf_puts(&b, "{\n  \"runtime\": {\"version\": \"Lua5.4\", \"requirePattern\": "
                    "[\"?.lua\", \"?/init.lua\", \"lib/?.lua\", \"lib/?/init.lua\"]},\n"
                    "  \"workspace\": {\"library\": ");
    json_list(&b, libs, nlibs);
    /* klua's own files are read from the copies: where the originals sit
     * inside a script folder (checking klua's lua/), they are not scripts. */
    kl_buf_puts(&b, ", \"ignoreGlobs\": [\"**/spec/**\", \"**/*_spec.lua\"");
    for (size_t d = 0; d < ndirs; d++) {
        size_t dl = strlen(dirs[d]);
        for (size_t i = 0; i < 2; i++) {
            if (strncmp(own[i], dirs[d], dl) != 0 || own[i][dl] != '/')
                continue;
            kl_buf glob = KL_BUF_INIT;
            kl_buf_printf(&glob, "%s/**", own[i] + dl + 1);
            oom |= kl_buf_failed(&glob);
            kl_buf_puts(&b, ", ");
            json_escape_append(&b, glob.data ? glob.data : "", glob.len);
            kl_buf_free(&glob);
        }
    }
    kl_buf_puts(&b, "]},\n"
                    /* Flow lints that the nil, err convention trips: after
                     * `if not obj then ... err.reason` the checker cannot know
                     * that err is set. Types, fields and arguments are checked. */
                    "  \"diagnostics\": {\"disable\": [\"need-check-nil\", \"unnecessary-if\"], "
                    "\"globals\": [\"describe\", \"it\", \"klua_test\"]}\n}\n");
    if (kl_buf_failed(&b) || oom) {
        kl_buf_free(&b);
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    int rc = 0;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b.data, 1, b.len, f) != b.len)
        rc = kl_err_set(err, KL_EIO, "writing %s: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && rc == 0)
        rc = kl_err_set(err, KL_EIO, "writing %s: %s", path, strerror(errno));
    kl_buf_free(&b);
    return rc;
}

/* Run argv with stdout and stderr into logpath; the exit status, or -1. */
static int run_wait(char **argv, const char *logpath, kl_err *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return kl_err_set(err, KL_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return kl_err_set(err, KL_EIO, "waitpid: %s", strerror(errno));
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Print each warning or error of the report as "error: file:line:col: message
 * (code)" on stderr, paths below the current folder shown relative. Returns
 * the number printed, or -1 with err set. */
static int report(const char *text, size_t len, kl_err *err)
{
    json_doc d = {0};
    if (json_parse(&d, text, len, err) != 0) {
        kl_err_wrap(err, "emmylua_check's report");
        return -1;
    }
    char cwd[PATH_MAX];
    size_t cwdlen = getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
    int n = 0;
    for (int f = json_first(&d, 0); f >= 0 && d.toks[0].type == JSON_ARRAY; f = json_next(&d, f)) {
        char *file = json_str_dup(&d, json_obj_get(&d, f, "file"));
        const char *shown = file ? file : "?";
        if (file && cwdlen > 1 && !strncmp(file, cwd, cwdlen) && file[cwdlen] == '/')
            shown = file + cwdlen + 1;
        int diags = json_obj_get(&d, f, "diagnostics");
        for (int g = diags >= 0 ? json_first(&d, diags) : -1; g >= 0; g = json_next(&d, g)) {
            int64_t sev = 1, line = 0, col = 0;
            json_get_int64(&d, json_obj_get(&d, g, "severity"), &sev);
            if (sev > 2) /* information and hints */
                continue;
            int start = json_path(&d, g, "range.start");
            json_get_int64(&d, json_obj_get(&d, start, "line"), &line);
            json_get_int64(&d, json_obj_get(&d, start, "character"), &col);
            char *msg = json_str_dup(&d, json_obj_get(&d, g, "message"));
            char *code = json_str_dup(&d, json_obj_get(&d, g, "code"));
            for (char *p = msg; p && *p; p++)
                if (*p == '\n' || *p == '\r')
                    *p = ' ';
            fprintf(stderr, "error: %s:%lld:%lld: %s%s%s%s\n", shown, (long long)line + 1,
                    (long long)col + 1, msg ? msg : "?", code ? " (" : "", code ? code : "",
                    code ? ")" : "");
            free(msg);
            free(code);
            n++;
        }
        free(file);
    }
    json_doc_free(&d);
    return n;
}

static int type_check(char **types, size_t ntypes, char **paths, size_t npaths)
{
    kl_err err = {0};
    int rc = 1;
    char tmpdir[] = "/tmp/klua-check-XXXXXX";
    int have_tmp = 0;
    char *checker = NULL, *home = NULL;
    char **libs = calloc(ntypes + 2, sizeof *libs);
    char *own[2] = {NULL, NULL};
    char **dirs = calloc(npaths, sizeof *dirs);
    size_t nlibs = 0, ndirs = 0;
    char **argv = calloc(npaths + 10, sizeof *argv);
    kl_buf cfg = KL_BUF_INIT, out = KL_BUF_INIT, log = KL_BUF_INIT;
    kl_buf text = KL_BUF_INIT;
    if (!libs || !dirs || !argv) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    if (!(checker = find_checker())) {
        kl_err_set(&err, KL_EINVAL, "emmylua_check is not installed (klua check --types runs it): "
                   "run `sh tools/emmylua.sh` (cargo builds the pinned version once into "
                   "~/.cache/klua/bin), or set KLUA_EMMYLUA_CHECK");
        goto fail;
    }
    if (!(home = klua_home_dir(&err)))
        goto fail;
    if (!mkdtemp(tmpdir)) {
        kl_err_set(&err, KL_EIO, "mkdtemp: %s", strerror(errno));
        goto fail;
    }
    have_tmp = 1;
    /* klua's own annotations and modules, read from a copy: a library that
     * sits inside a script folder (lua/types in lua/) would be checked as a
     * script too. They come first: the generated classes extend them. */
    kl_buf b = KL_BUF_INIT;
    kl_buf_printf(&b, "%s/lua/types", home);
    own[0] = kl_buf_take(&b);
    kl_buf_printf(&b, "%s/lua/lib/klua", home);
    own[1] = kl_buf_take(&b);
    kl_buf_printf(&b, "%s/types", tmpdir);
    libs[nlibs++] = kl_buf_take(&b);
    kl_buf_printf(&b, "%s/lib", tmpdir);
    libs[nlibs++] = kl_buf_take(&b);
    kl_buf_printf(&b, "%s/lib/klua", tmpdir);
    char *libklua = kl_buf_take(&b);
    if (!own[0] || !own[1] || !libs[0] || !libs[1] || !libklua) {
        free(libklua);
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    int cp = copy_lua_tree(own[0], libs[0], 0, &err);
    if (cp == 0 && mkdir(libs[1], 0700) != 0)
        cp = kl_err_set(&err, KL_EIO, "creating %s: %s", libs[1], strerror(errno));
    if (cp == 0)
        cp = copy_lua_tree(own[1], libklua, 0, &err);
    free(libklua);
    if (cp != 0)
        goto fail;
    for (size_t i = 0; i < ntypes; i++) {
        if (!(libs[nlibs] = realpath(types[i], NULL))) {
            kl_err_set(&err, KL_EIO, "--types %s: %s", types[i], strerror(errno));
            goto fail;
        }
        nlibs++;
    }
    for (size_t i = 0; i < npaths; i++) {
        if (!(dirs[ndirs] = script_dir(paths[i], &err)))
            goto fail;
        ndirs++;
    }
    kl_buf_printf(&cfg, "%s/emmyrc.json", tmpdir);
    kl_buf_printf(&out, "%s/report.json", tmpdir);
    kl_buf_printf(&log, "%s/log", tmpdir);
    if (kl_buf_failed(&cfg) || kl_buf_failed(&out) || kl_buf_failed(&log)) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    if (write_config(cfg.data, libs, nlibs, own, dirs, ndirs, &err) != 0)
        goto fail;
    size_t a = 0;
    argv[a++] = checker;
    argv[a++] = "-c";
    argv[a++] = cfg.data;
    argv[a++] = "-f";
    argv[a++] = "json";
    argv[a++] = "--output";
    argv[a++] = out.data;
    for (size_t i = 0; i < ndirs; i++)
        argv[a++] = dirs[i];
    argv[a] = NULL;
    int st = run_wait(argv, log.data, &err);
    if (st < 0)
        goto fail;
    if (kl_read_file(out.data, REPORT_MAX, &text, &err) != 0) {
        kl_buf l = KL_BUF_INIT;
        kl_err e2 = {0};
        if (kl_read_file(log.data, REPORT_MAX, &l, &e2) == 0 && l.len)
            fprintf(stderr, "%s", l.data);
        kl_buf_free(&l);
        kl_err_set(&err, KL_EIO, "%s exited %d without a report", checker, st);
        goto fail;
    }
    int n = report(text.data ? text.data : "", text.len, &err);
    if (n < 0)
        goto fail;
    if (n == 0 && st != 0) {
        kl_err_set(&err, KL_EIO, "%s exited %d", checker, st);
        goto fail;
    }
    for (size_t i = 0; i < npaths; i++)
        if (n == 0)
            printf("types ok: %s\n", paths[i]);
    rc = n == 0 ? 0 : 1;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
done:
    if (have_tmp)
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(own[0]);
    free(own[1]);
    kl_buf_free(&text);
    kl_buf_free(&cfg);
    kl_buf_free(&out);
    kl_buf_free(&log);
    for (size_t i = 0; libs && i < nlibs; i++)
        free(libs[i]);
    for (size_t i = 0; dirs && i < ndirs; i++)
        free(dirs[i]);
    free(libs);
    free(dirs);
    free(argv);
    free(checker);
    free(home);
    return rc;
}

int klua_check_cmd_main(int argc, char **argv)
{
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    char **types = calloc((size_t)argc + 1, sizeof *types);
    char **paths = calloc((size_t)argc + 1, sizeof *paths);
    if (!rest || !types || !paths) {
        free(rest);
        free(types);
        free(paths);
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    int nrest = 0;
    size_t ntypes = 0, npaths = 0;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) {
            types[ntypes++] = argv[++i];
        } else if (!strncmp(argv[i], "--types=", 8)) {
            types[ntypes++] = argv[i] + 8;
        } else {
            if (argv[i][0] != '-')
                paths[npaths++] = argv[i];
            rest[nrest++] = argv[i];
        }
    }
    int rc = klua_check_main(nrest, rest);
    if (ntypes && npaths && (rc == 0 || rc == 1)) {
        int trc = type_check(types, ntypes, paths, npaths);
        if (rc == 0)
            rc = trc;
    }
    free(rest);
    free(types);
    free(paths);
    return rc;
}
