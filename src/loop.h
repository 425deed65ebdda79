/* loop.h - the one event loop of the process.
 *
 * Provides: an epoll loop with millisecond timers, file descriptor watches,
 * deferred calls and signal delivery (signalfd). Everything in klua runs on
 * this thread: libcurl's multi interface (http.c), the reflectors, the
 * workqueue's delays, the Lua coroutines, inotify. Uses: err.
 */
#ifndef KLUA_LOOP_H
#define KLUA_LOOP_H

#include "err.h"

#include <stdint.h>

typedef struct loop loop;
typedef uint64_t loop_timer_id;   /* 0 is never a valid id */

enum { LOOP_READ = 1, LOOP_WRITE = 2, LOOP_ERROR = 4 };

typedef void (*loop_timer_cb)(loop *l, void *ud);
typedef void (*loop_fd_cb)(loop *l, int fd, int events, void *ud);
typedef void (*loop_signal_cb)(loop *l, int signo, void *ud);

loop *loop_new(kl_err *err);
void loop_free(loop *l);              /* cancels timers; fds must be removed by their owners */

/* Run until loop_stop() is called. */
int loop_run(loop *l);
/* One iteration: wait at most timeout_ms (-1 = until something happens),
 * dispatch what is ready. For the loop's drivers only: loop_run, klua test's
 * runner and test programs, each from outside any callback. Called from
 * inside a callback it does nothing and returns -1 (no nested loops). */
int loop_run_once(loop *l, int timeout_ms);
void loop_stop(loop *l);
int loop_stopped(const loop *l);

uint64_t loop_now_ms(loop *l);        /* the loop's clock in ms, cached per iteration */
uint64_t loop_time_ms(void);          /* CLOCK_MONOTONIC milliseconds, fresh */

/* The loop's clock: CLOCK_MONOTONIC unless replaced. A test installs its own
 * (now_ms(ud) returns milliseconds and must never go back) to move time by
 * hand: timers then fall due when that clock reaches them, whatever the wall
 * clock does. Waits are still bounded by the next timer as if it were real
 * time, so drive such a loop with loop_run_once(l, 0). NULL restores the
 * monotonic clock. Every timer and loop_now_ms() use it; loop_time_ms() does
 * not (it is for measuring real durations). */
typedef uint64_t (*loop_clock_fn)(void *ud);
void loop_set_clock(loop *l, loop_clock_fn now_ms, void *ud);

/* When the next timer falls due, on the loop's clock: 0 and *due set, or
 * -1 when no timer is pending. `klua test` moves its clock to it. */
int loop_next_due(loop *l, uint64_t *due);

/* One-shot timers. delay 0 runs on the next iteration (a deferred call). */
loop_timer_id loop_timer_add(loop *l, uint64_t delay_ms, loop_timer_cb cb, void *ud);
void loop_timer_cancel(loop *l, loop_timer_id id);  /* no-op if fired or unknown */

int loop_fd_add(loop *l, int fd, int events, loop_fd_cb cb, void *ud);
int loop_fd_mod(loop *l, int fd, int events);
void loop_fd_del(loop *l, int fd);

/* Block signo for the process and deliver it through the loop. */
int loop_signal(loop *l, int signo, loop_signal_cb cb, void *ud);

#endif
