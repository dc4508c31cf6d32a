/* SPDX-License-Identifier: MIT */
/*
 * The off-CPU scheduler tracer as the collector sees it: an eBPF program on
 * the sched_switch and sched_wakeup tracepoints that reports, for every
 * thread of the processes it watches (by tgid, so threads started later are
 * covered too), each interval the thread spent off the CPU and why:
 * preempted (RUNNABLE), blocked interruptibly (SLEEPING), uninterruptibly
 * (DISK).  A blocked interval is split at its wakeup: from the wakeup to the
 * moment the thread runs again it waited on a run queue, and that part is
 * reported as RUNNABLE.  Intervals are reported when the thread runs again,
 * in CLOCK_REALTIME nanoseconds (the shim's clock).
 *
 * Built with libbpf when meson's `bpf` feature is on; otherwise
 * offcpu_tracer_new fails with -EOPNOTSUPP and says so, and the rest of this
 * header still links.  Nothing here is thread-safe: the tracer belongs to the
 * loop's thread.  Nothing is async-signal-safe.
 */
#ifndef MFU_OFFCPU_TRACER_H
#define MFU_OFFCPU_TRACER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mfu/wire.h"

struct loop;
struct offcpu_tracer;
struct offcpu_event;

struct offcpu_interval {
	uint32_t pid, tid;
	uint64_t start_ns, end_ns; /* CLOCK_REALTIME */
	enum mfu_offcpu_state state;
	int32_t stack_id; /* kernel stack (offcpu_tracer_stack), < 0: none */
};

/* Called once per interval from the loop's thread. */
typedef void (*offcpu_fn)(void *arg, const struct offcpu_interval *iv);

struct offcpu_tracer_opts {
	int stacks; /* record a kernel stack id per interval (costs a stack walk per switch) */
};

struct offcpu_stats {
	uint64_t switches;    /* sched_switch events the program ran for, all processes */
	uint64_t off;         /* times a watched thread left the CPU */
	uint64_t on;          /* events sent: times one came back (missed_in included) */
	uint64_t wakeups;     /* wakeups of watched off-CPU threads */
	uint64_t drops;       /* events lost: ring buffer full */
	uint64_t stack_errors;
	/* Switch-ins of watched threads the kernel never reported, found when
	 * the thread left the CPU again; such an interval ends where the
	 * thread's CPU time since puts it (offcpu.bpf.c, missed_switch_in). */
	uint64_t missed_in;
	uint64_t events;      /* events read from the ring buffer */
	uint64_t intervals;   /* intervals handed to the callback */
	uint64_t watched;     /* pids watched now */
	int64_t clock_offset_ns; /* REALTIME - MONOTONIC, latest measurement */
};

/*
 * Opens, loads and attaches the tracer and registers its ring buffer with l
 * (and a 1 s timer that re-measures the clock offset and drains the buffer).
 * opts may be NULL (defaults: no stacks).  Returns 0 and the tracer in *out,
 * or -errno with a one-line reason in why (never empty on failure):
 * -EOPNOTSUPP built without BPF, -EPERM not privileged (needs root or
 * CAP_BPF and CAP_PERFMON), -ENOENT no tracefs and mounting it failed,
 * others from libbpf.
 */
int offcpu_tracer_new(struct loop *l, const struct offcpu_tracer_opts *opts, offcpu_fn fn, void *arg,
		      struct offcpu_tracer **out, char *why, size_t whylen);

/* Detaches and frees everything; pending events are not delivered.
 * offcpu_tracer_free(NULL) is a no-op.  Not from inside the callback. */
void offcpu_tracer_free(struct offcpu_tracer *t);

/* Starts following every thread of process pid (its tgid).  Watching a pid
 * twice is not an error.  Returns 0, -EINVAL (pid 0), -E2BIG (too many
 * pids), or the map update's -errno. */
int offcpu_watch(struct offcpu_tracer *t, uint32_t pid);

/* Stops following pid; intervals still open are dropped.  Returns 0 or
 * -ENOENT when pid was not watched. */
int offcpu_unwatch(struct offcpu_tracer *t, uint32_t pid);

/* Delivers every event already in the ring buffer now.  Returns the number
 * of events read or -errno.  Not from inside the callback. */
int offcpu_tracer_poll(struct offcpu_tracer *t);

/* Fills *st.  Reads the kernel counters, so it makes a syscall. */
void offcpu_tracer_stats(struct offcpu_tracer *t, struct offcpu_stats *st);

/* Copies up to n return addresses of kernel stack stack_id into ips.
 * Returns how many (>= 0) or -ENOENT / -EINVAL. */
int offcpu_tracer_stack(struct offcpu_tracer *t, int32_t stack_id, uint64_t *ips, size_t n);

/* ---- Pure helpers, exposed for tests ---- */

/*
 * Maps sched_switch's prev_state to an mfu_offcpu_state.  Since Linux 4.14
 * the field holds a TASK_REPORT bit (1 S, 2 D, 4 T, 8 t, 0x10 X, 0x20 Z,
 * 0x40 P, 0x80 I), or 0 for a running task that yielded, or TASK_REPORT_MAX
 * (0x100 since 4.14) when the task was preempted.  Any bit above 0x80 is
 * taken as "preempted" so a kernel that moves TASK_REPORT_MAX up still maps.
 * Thread-safe and async-signal-safe.
 */
enum mfu_offcpu_state offcpu_state_from_prev(int64_t prev_state);

typedef int (*offcpu_clock_fn)(clockid_t id, struct timespec *ts);

/*
 * Measures REALTIME - MONOTONIC by reading MONOTONIC, REALTIME, MONOTONIC
 * `rounds` times through gettime (clock_gettime in production) and keeping
 * the tightest bracket.  Returns 0 with the offset in *offset_ns and the
 * bracket's width in *width_ns (may be NULL), or -EINVAL (no rounds) or the
 * clock's -errno.  Thread-safe if gettime is.
 */
int offcpu_clock_offset(offcpu_clock_fn gettime, unsigned rounds, int64_t *offset_ns, uint64_t *width_ns);

/*
 * Turns one kernel event into intervals (CLOCK_REALTIME via offset_ns):
 * one, or two when a blocked thread's wakeup was seen (blocked part, then a
 * RUNNABLE run-queue part).  Writes out[0..1], returns how many (0 for an
 * event whose times make no sense).  Thread-safe and async-signal-safe.
 */
size_t offcpu_event_split(const struct offcpu_event *e, int64_t offset_ns, struct offcpu_interval out[2]);

#endif
