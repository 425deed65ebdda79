/* metrics_process.h - the process_* figures Prometheus clients export.
 *
 * Provides: metrics_process_read(), which reads this process's CPU time,
 * resident and virtual memory, start time, open and maximum file
 * descriptors from /proc and getrlimit, as client_golang's process
 * collector does. Read at scrape time: nothing polls.
 * Uses: nothing of klua's.
 */
#ifndef KLUA_METRICS_PROCESS_H
#define KLUA_METRICS_PROCESS_H

typedef struct metrics_process {
    double cpu_seconds;        /* user + system */
    double resident_bytes;
    double virtual_bytes;
    double start_time_seconds; /* since the Unix epoch */
    double open_fds;
    double max_fds;            /* the soft RLIMIT_NOFILE */
} metrics_process;

/* 0, or -1 when /proc cannot be read (the fields read so far are kept;
 * the others are 0). */
int metrics_process_read(metrics_process *out);

#endif
