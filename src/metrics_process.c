/* metrics_process.c - see metrics_process.h.
 *
 * Provides: metrics_process_read. Uses: /proc/self/stat, /proc/stat
 * (boot time), /proc/self/fd, getrlimit, sysconf.
 */
#include "metrics_process.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Boot time in Unix seconds (the "btime" line of /proc/stat), or -1. */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[256];
    double bt = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

/* Fields of /proc/self/stat after the command (which may hold spaces and
 * parentheses: skip to the last ')'). Field 3 (state) is index 0. */
static int read_stat(metrics_process *p)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    if (!s)
        return -1;
    double v[24] = {0};
    int i = 0;
    for (s++; i < 24 && *s;) {
        while (*s == ' ')
            s++;
        char *end;
        v[i++] = strtod(s, &end);
        if (end == s) {   /* the state letter */
            while (*s && *s != ' ')
                s++;
        } else {
            s = end;
        }
    }
    if (i < 22)
        return -1;
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    /* utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based fields) */
    p->cpu_seconds = (v[11] + v[12]) / ticks;
    p->virtual_bytes = v[20];
    p->resident_bytes = v[21] * page;
    double bt = boot_time();
    if (bt >= 0)
        p->start_time_seconds = bt + v[19] / ticks;
    return 0;
}

int metrics_process_read(metrics_process *out)
{
    memset(out, 0, sizeof *out);
    int rc = read_stat(out);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    struct dirent *e;
    double n = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    out->open_fds = n - 1;   /* the directory's own descriptor */
    return rc;
}
