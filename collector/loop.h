/* SPDX-License-Identifier: MIT */
/*
 * The collector's event loop: fd readiness callbacks and millisecond timers
 * on one thread, in the spirit of redis ae.h and tinc event.h.  Handles are
 * owned by the caller in the sense that the caller decides when they die
 * (loop_io_del, loop_timer_del); the loop owns their memory and frees it at
 * a point where no dispatch can still reach it, so deleting any handle from
 * inside any callback, including its own, is safe.  The epoll backend is
 * private to loop.c.
 *
 * Nothing here is thread-safe: one loop belongs to one thread, and every
 * function except loop_now_ns must be called from it.  Nothing here is
 * async-signal-safe except loop_now_ns.  The loop is not reentrant: do not
 * call loop_run or loop_run_once from inside a callback.
 */
#ifndef MFU_COLLECTOR_LOOP_H
#define MFU_COLLECTOR_LOOP_H

#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

#define LOOP_READ 1u
#define LOOP_WRITE 2u
#define LOOP_ERROR 4u /* EPOLLERR/EPOLLHUP reported to the callback */

/*
 * Called with the events that happened.  When LOOP_ERROR is set, the
 * registered LOOP_READ/LOOP_WRITE bits are set as well, so a reader sees the
 * EOF or error through its read().
 */
typedef void (*loop_io_fn)(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg);
typedef void (*loop_timer_fn)(struct loop *l, struct loop_timer *t, void *arg);

/* Creates a loop.  Returns 0 or -errno (-ENOMEM, or epoll_create1's). */
int loop_new(struct loop **out);

/*
 * Frees the loop and every io and timer handle still registered; it does not
 * close their fds.  loop_free(NULL) is a no-op.  Not from inside a callback.
 */
void loop_free(struct loop *l);

/*
 * Watches fd for events (LOOP_READ and/or LOOP_WRITE; LOOP_ERROR is
 * accepted and ignored, errors are always reported).  Level-triggered.
 * events may be 0: the io exists but is not watched until loop_io_set.
 * Returns 0 and the handle in *out, or -EINVAL (bad events, no fn), -EBADF,
 * -EEXIST (fd already watched by this loop), -ENOMEM, or epoll_ctl's -errno.
 */
int loop_io_add(struct loop *l, int fd, uint32_t events, loop_io_fn fn, void *arg, struct loop_io **out);

/*
 * Changes the watched events; 0 stops watching (including errors and hangups)
 * until set again.  Returns 0, -EINVAL, or epoll_ctl's -errno.
 */
int loop_io_set(struct loop_io *io, uint32_t events);

/*
 * Stops watching and invalidates the handle; no callback for it runs after
 * this returns, even for events already collected.  Does not close the fd;
 * close it after this call, not before.  Safe inside any callback.
 * loop_io_del(NULL) is a no-op.
 */
void loop_io_del(struct loop_io *io);

/*
 * Arms a timer that fires after_ms from now, then every repeat_ms (0 makes
 * it one-shot).  Timers due at the same time fire in the order they were
 * armed.  A one-shot timer's handle is invalid once its callback returns
 * (the loop frees it); deleting it inside its own callback is allowed.  A
 * repeating timer that falls behind skips the missed periods instead of
 * firing in a burst.  Returns 0 and the handle in *out (out may be NULL
 * when the caller never deletes the timer from outside its callback), or
 * -EINVAL (no fn), -ENOMEM.
 */
int loop_timer_add(struct loop *l, uint64_t after_ms, uint64_t repeat_ms, loop_timer_fn fn, void *arg,
		   struct loop_timer **out);

/*
 * Disarms the timer and invalidates the handle.  Safe inside any callback.
 * loop_timer_del(NULL) is a no-op.
 */
void loop_timer_del(struct loop_timer *t);

/*
 * Runs until loop_stop is called (from a callback).  Clears an earlier stop
 * request on entry.  Returns 0, or -errno if epoll_wait fails with anything
 * but EINTR.
 */
int loop_run(struct loop *l);

/*
 * One epoll_wait of at most timeout_ms (-1: until an event or the next
 * timer; 0: poll) and then every timer that is due.  Returns 0 or -errno
 * from epoll_wait; EINTR is not an error.
 */
int loop_run_once(struct loop *l, int timeout_ms);

/* Makes loop_run return after the current iteration. */
void loop_stop(struct loop *l);

/* CLOCK_MONOTONIC in nanoseconds.  Thread-safe and async-signal-safe. */
uint64_t loop_now_ns(void);

#endif
