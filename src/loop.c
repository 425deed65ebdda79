/* loop.c - the event loop (see loop.h).
 *
 * Provides: epoll-based dispatch of fd readiness, one-shot millisecond timers
 * and signals. Uses: epoll, signalfd, CLOCK_MONOTONIC (or a clock a test
 * installs with loop_set_clock), err.
 *
 * Timers live in a binary min-heap ordered by (due, id). Ids are handed out
 * from a 64-bit counter, so they are unique and never reused; equal due times
 * fire in the order they were added. Cancellation is lazy: loop_timer_cancel
 * only drops the id from a hash set of live ids, and a popped heap entry
 * whose id is no longer live is skipped. When dead entries outnumber live
 * ones the heap is compacted, so a workload that adds and cancels many long
 * timers (workqueue delays) does not grow without bound.
 *
 * Fd watches sit in a table indexed by fd. Each registration gets a
 * generation number that travels in epoll's user data, so an event that was
 * reported for a registration which a callback has since removed (or removed
 * and re-added under the same fd number) in the same iteration is dropped
 * instead of reaching the wrong callback.
 *
 * One iteration: wait in epoll (bounded by the next timer), refresh the
 * cached clock, dispatch fd events, then dispatch the timers that are due
 * and were added before the dispatch began: a timer added from a callback
 * never runs in the same iteration, which is what makes delay 0 mean "next
 * iteration" and keeps a callback re-arming itself from starving the loop.
 */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 64
#define LOOP_NSIG 65   /* signals 1..64 on Linux */

typedef struct timer_entry {
    uint64_t due;
    loop_timer_id id;
    loop_timer_cb cb;
    void *ud;
} timer_entry;

typedef struct fd_watch {
    uint32_t gen;        /* 0 = not watched */
    int events;          /* LOOP_READ | LOOP_WRITE wanted */
    loop_fd_cb cb;
    void *ud;
} fd_watch;

typedef struct sig_handler {
    loop_signal_cb cb;
    void *ud;
} sig_handler;

struct loop {
    int ep;
    uint64_t now;        /* cached clock, refreshed once per iteration */
    loop_clock_fn clock; /* NULL: CLOCK_MONOTONIC */
    void *clock_ud;
    int dispatching;     /* inside loop_run_once's callbacks */
    int stopped;

    /* timers */
    timer_entry *heap;   /* owned */
    size_t heap_len, heap_cap;
    uint64_t *live;      /* open-addressing hash set of live ids, 0 = empty; owned */
    size_t live_cap, live_len;  /* live_cap is a power of two */
    loop_timer_id next_id;

    /* fd watches */
    fd_watch *fds;       /* indexed by fd; owned */
    size_t nfds;
    uint32_t next_gen;

    /* signals */
    int sfd;             /* signalfd, -1 until the first loop_signal */
    sigset_t sigs;       /* signals this loop blocked and reads */
    sig_handler sig[LOOP_NSIG];
};

uint64_t loop_time_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t clock_read(const loop *l)
{
    return l->clock ? l->clock(l->clock_ud) : loop_time_ms();
}

void loop_set_clock(loop *l, loop_clock_fn now_ms, void *ud)
{
    l->clock = now_ms;
    l->clock_ud = ud;
    l->now = clock_read(l);
}

/* Inside an iteration every callback sees the same clock; outside one
 * (start-up code arming its first timers) a stale cache would make timers
 * fire early, so it is refreshed. */
uint64_t loop_now_ms(loop *l)
{
    if (!l->dispatching)
        l->now = clock_read(l);
    return l->now;
}

/* ---- live id set ------------------------------------------------------- */

static size_t live_slot(const loop *l, uint64_t id)
{
    /* Fibonacci hashing spreads sequential ids over the table. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (l->live_cap - 1);
}

static int live_grow(loop *l)
{
    size_t ncap = l->live_cap ? l->live_cap * 2 : 64;
    uint64_t *old = l->live, *nt = calloc(ncap, sizeof *nt);
    size_t ocap = l->live_cap;
    if (!nt)
        return -1;
    l->live = nt;
    l->live_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i]) {
            size_t s = live_slot(l, old[i]);
            while (nt[s])
                s = (s + 1) & (ncap - 1);
            nt[s] = old[i];
        }
    }
    free(old);
    return 0;
}

static int live_add(loop *l, uint64_t id)
{
    if ((l->live_len + 1) * 2 > l->live_cap && live_grow(l) < 0)
        return -1;
    size_t s = live_slot(l, id);
    while (l->live[s])
        s = (s + 1) & (l->live_cap - 1);
    l->live[s] = id;
    l->live_len++;
    return 0;
}

/* Remove id; returns 1 if it was present. Backward-shift deletion keeps
 * probe chains intact without tombstones. */
static int live_del(loop *l, uint64_t id)
{
    if (!l->live_cap)
        return 0;
    size_t mask = l->live_cap - 1, s = live_slot(l, id);
    while (l->live[s] && l->live[s] != id)
        s = (s + 1) & mask;
    if (!l->live[s])
        return 0;
    size_t hole = s;
    for (size_t j = (s + 1) & mask; l->live[j]; j = (j + 1) & mask) {
        size_t home = live_slot(l, l->live[j]);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            l->live[hole] = l->live[j];
            hole = j;
        }
    }
    l->live[hole] = 0;
    l->live_len--;
    return 1;
}

static int live_has(const loop *l, uint64_t id)
{
    if (!l->live_cap)
        return 0;
    size_t s = live_slot(l, id);
    while (l->live[s]) {
        if (l->live[s] == id)
            return 1;
        s = (s + 1) & (l->live_cap - 1);
    }
    return 0;
}

/* ---- timer heap -------------------------------------------------------- */

static int entry_before(const timer_entry *a, const timer_entry *b)
{
    return a->due < b->due || (a->due == b->due && a->id < b->id);
}

static void heap_up(timer_entry *h, size_t i)
{
    timer_entry e = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!entry_before(&e, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static void heap_down(timer_entry *h, size_t n, size_t i)
{
    timer_entry e = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && entry_before(&h[c + 1], &h[c]))
            c++;
        if (!entry_before(&h[c], &e))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

static void heap_pop(loop *l)
{
    l->heap[0] = l->heap[--l->heap_len];
    if (l->heap_len)
        heap_down(l->heap, l->heap_len, 0);
}

/* Drop cancelled entries and rebuild the heap. */
static void heap_compact(loop *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->heap_len; i++)
        if (live_has(l, l->heap[i].id))
            l->heap[n++] = l->heap[i];
    l->heap_len = n;
    for (size_t i = n / 2; i-- > 0;)
        heap_down(l->heap, n, i);
}

/* Pop cancelled entries off the top so heap[0], if any, is live. */
static void heap_skip_dead(loop *l)
{
    while (l->heap_len && !live_has(l, l->heap[0].id))
        heap_pop(l);
}

loop_timer_id loop_timer_add(loop *l, uint64_t delay_ms, loop_timer_cb cb, void *ud)
{
    if (l->heap_len == l->heap_cap) {
        size_t ncap = l->heap_cap ? l->heap_cap * 2 : 64;
        timer_entry *nh = realloc(l->heap, ncap * sizeof *nh);
        if (!nh)
            return 0;
        l->heap = nh;
        l->heap_cap = ncap;
    }
    loop_timer_id id = ++l->next_id;
    if (live_add(l, id) < 0)
        return 0;
    /* From the clock as it is now, not the iteration's cached one: a timer
     * armed late in a long iteration (a slow reconcile) would else fall due
     * early by the time the iteration had taken. Saturate rather than wrap:
     * UINT64_MAX means "never" in practice. */
    uint64_t now = clock_read(l);
    uint64_t due = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
    l->heap[l->heap_len] = (timer_entry){due, id, cb, ud};
    heap_up(l->heap, l->heap_len++);
    return id;
}

void loop_timer_cancel(loop *l, loop_timer_id id)
{
    if (id == 0 || !live_del(l, id))
        return;
    size_t dead = l->heap_len - l->live_len;
    if (dead > 64 && dead > l->live_len)
        heap_compact(l);
}

/* Fire timers that are due and whose id is below `limit` (added before this
 * dispatch began). The entry is popped before its callback runs, so the
 * callback may add or cancel timers, itself included, freely. */
static void dispatch_timers(loop *l, loop_timer_id limit)
{
    for (;;) {
        heap_skip_dead(l);
        if (!l->heap_len || l->heap[0].due > l->now || l->heap[0].id >= limit)
            break;
        timer_entry e = l->heap[0];
        heap_pop(l);
        live_del(l, e.id);
        e.cb(l, e.ud);
    }
}

/* ---- fd watches -------------------------------------------------------- */

static uint32_t to_epoll(int events)
{
    uint32_t ev = 0;
    if (events & LOOP_READ)
        ev |= EPOLLIN;
    if (events & LOOP_WRITE)
        ev |= EPOLLOUT;
    return ev;   /* EPOLLERR and EPOLLHUP are always reported */
}

static int from_epoll(uint32_t ev)
{
    int events = 0;
    if (ev & (EPOLLIN | EPOLLPRI))
        events |= LOOP_READ;
    if (ev & EPOLLOUT)
        events |= LOOP_WRITE;
    if (ev & (EPOLLERR | EPOLLHUP))
        events |= LOOP_ERROR;
    return events;
}

static int fd_table_fit(loop *l, int fd)
{
    if ((size_t)fd < l->nfds)
        return 0;
    size_t n = l->nfds ? l->nfds : 64;
    while (n <= (size_t)fd)
        n *= 2;
    fd_watch *nf = realloc(l->fds, n * sizeof *nf);
    if (!nf)
        return -1;
    memset(nf + l->nfds, 0, (n - l->nfds) * sizeof *nf);
    l->fds = nf;
    l->nfds = n;
    return 0;
}

int loop_fd_add(loop *l, int fd, int events, loop_fd_cb cb, void *ud)
{
    if (fd < 0 || fd_table_fit(l, fd) < 0)
        return -1;
    if (l->fds[fd].gen) {
        errno = EEXIST;
        return -1;
    }
    uint32_t gen = ++l->next_gen;
    if (gen == 0)
        gen = ++l->next_gen;
    struct epoll_event ev = {.events = to_epoll(events), .data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        /* A closed fd whose open file description lives on in a dup (or in
         * a child) stays in the epoll set under the old number; take it over. */
        if (errno != EEXIST || epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
            return -1;
    }
    l->fds[fd] = (fd_watch){gen, events, cb, ud};
    return 0;
}

int loop_fd_mod(loop *l, int fd, int events)
{
    if (fd < 0 || (size_t)fd >= l->nfds || !l->fds[fd].gen) {
        errno = ENOENT;
        return -1;
    }
    fd_watch *w = &l->fds[fd];
    struct epoll_event ev = {.events = to_epoll(events), .data.u64 = ((uint64_t)w->gen << 32) | (uint32_t)fd};
    if (epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -1;
    w->events = events;
    return 0;
}

void loop_fd_del(loop *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->nfds || !l->fds[fd].gen)
        return;
    /* Fails harmlessly (EBADF) if the owner closed the fd first. */
    epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
    l->fds[fd] = (fd_watch){0, 0, NULL, NULL};
}

static void dispatch_fd(loop *l, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    /* Re-read the table every time: an earlier callback in this batch may
     * have removed this watch, or grown (moved) the table. */
    if ((size_t)fd >= l->nfds || l->fds[fd].gen != gen)
        return;
    fd_watch w = l->fds[fd];
    int events = from_epoll(ev->events) & (w.events | LOOP_ERROR);
    if (events)
        w.cb(l, fd, events, w.ud);
}

/* ---- signals ----------------------------------------------------------- */

static void on_signalfd(loop *l, int fd, int events, void *ud)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int signo = (int)si.ssi_signo;
        if (signo > 0 && signo < LOOP_NSIG && l->sig[signo].cb)
            l->sig[signo].cb(l, signo, l->sig[signo].ud);
    }
}

int loop_signal(loop *l, int signo, loop_signal_cb cb, void *ud)
{
    if (signo <= 0 || signo >= LOOP_NSIG) {
        errno = EINVAL;
        return -1;
    }
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    /* Block first: a signal arriving between here and the read is then left
     * pending and shows up on the signalfd instead of killing the process. */
    if (sigprocmask(SIG_BLOCK, &one, NULL) < 0)
        return -1;
    sigaddset(&l->sigs, signo);
    int sfd = signalfd(l->sfd, &l->sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        return -1;
    if (l->sfd < 0) {
        if (loop_fd_add(l, sfd, LOOP_READ, on_signalfd, NULL) < 0) {
            close(sfd);
            return -1;
        }
        l->sfd = sfd;
    }
    l->sig[signo] = (sig_handler){cb, ud};
    return 0;
}

/* ---- the loop ---------------------------------------------------------- */

loop *loop_new(kl_err *err)
{
    loop *l = calloc(1, sizeof *l);
    if (!l) {
        kl_err_set(err, KL_ENOMEM, "event loop: out of memory");
        return NULL;
    }
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0) {
        kl_err_set(err, KL_EIO, "event loop: epoll_create1 failed: %s", strerror(errno));
        free(l);
        return NULL;
    }
    l->sfd = -1;
    sigemptyset(&l->sigs);
    l->now = loop_time_ms();
    return l;
}

void loop_free(loop *l)
{
    if (!l)
        return;
    if (l->sfd >= 0) {
        struct signalfd_siginfo si;
        /* Swallow what is pending so unblocking cannot deliver it with the
         * default action (usually: terminate) after the loop is gone. */
        while (read(l->sfd, &si, sizeof si) == (ssize_t)sizeof si)
            ;
        loop_fd_del(l, l->sfd);
        close(l->sfd);
        sigprocmask(SIG_UNBLOCK, &l->sigs, NULL);
    }
    close(l->ep);
    free(l->heap);
    free(l->live);
    free(l->fds);
    free(l);
}

int loop_run_once(loop *l, int timeout_ms)
{
    /* Never nested: a callback that drove the loop would run other
     * callbacks (and itself) under its own stack frame. Waiting is done by
     * yielding or by a callback, never by spinning the loop. */
    if (l->dispatching)
        return -1;
    struct epoll_event evs[LOOP_MAX_EVENTS];
    l->now = clock_read(l);
    heap_skip_dead(l);
    int wait = timeout_ms;
    if (l->heap_len) {
        uint64_t due = l->heap[0].due;
        uint64_t left = due > l->now ? due - l->now : 0;
        if (wait < 0 || left < (uint64_t)wait)
            wait = left > (uint64_t)INT32_MAX ? INT32_MAX : (int)left;
    }
    int n = epoll_wait(l->ep, evs, LOOP_MAX_EVENTS, wait);
    if (n < 0 && errno != EINTR)
        return -1;
    l->now = clock_read(l);
    /* Snapshot before any callback: timers added from here on wait for the
     * next iteration. */
    loop_timer_id limit = l->next_id + 1;
    l->dispatching = 1;
    for (int i = 0; i < n; i++)
        dispatch_fd(l, &evs[i]);
    dispatch_timers(l, limit);
    l->dispatching = 0;
    return 0;
}

int loop_next_due(loop *l, uint64_t *due)
{
    heap_skip_dead(l);
    if (!l->heap_len)
        return -1;
    *due = l->heap[0].due;
    return 0;
}

int loop_run(loop *l)
{
    /* A stop requested in an earlier run (e.g. before a shutdown grace
     * period) must not end this one at once. */
    l->stopped = 0;
    while (!l->stopped)
        if (loop_run_once(l, -1) < 0)
            return -1;
    return 0;
}

void loop_stop(loop *l) { l->stopped = 1; }

int loop_stopped(const loop *l) { return l->stopped; }
