/* SPDX-License-Identifier: MIT */
/*
 * The off-CPU tracer's pure parts: the prev_state mapping, the clock offset
 * and the split of a kernel event into intervals.  Kept apart from offcpu.c
 * so they are built and unit-tested even where libbpf is not.
 */
#include <errno.h>
#include <linux/types.h>
#include <stdint.h>
#include <time.h>

#include "offcpu.h"
#include "offcpu_tracer.h"

/* TASK_REPORT bits, include/linux/sched.h (stable since 4.14). */
#define REPORT_INTERRUPTIBLE 0x1
#define REPORT_UNINTERRUPTIBLE 0x2
#define REPORT_LAST 0x80 /* TASK_REPORT_IDLE */

enum mfu_offcpu_state offcpu_state_from_prev(int64_t prev_state)
{
	uint64_t s = (uint64_t)prev_state;

	if (s == 0 || s > 2 * REPORT_LAST - 1)
		return MFU_OFFCPU_RUNNABLE;
	if (s & REPORT_INTERRUPTIBLE)
		return MFU_OFFCPU_SLEEPING;
	if (s & REPORT_UNINTERRUPTIBLE)
		return MFU_OFFCPU_DISK;
	return MFU_OFFCPU_OTHER;
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

int offcpu_clock_offset(offcpu_clock_fn gettime, unsigned rounds, int64_t *offset_ns, uint64_t *width_ns)
{
	struct timespec m0, r, m1;
	uint64_t best = UINT64_MAX;
	int64_t off = 0;
	int rc = -EINVAL;

	for (unsigned i = 0; i < rounds; i++) {
		if (gettime(CLOCK_MONOTONIC, &m0) || gettime(CLOCK_REALTIME, &r) || gettime(CLOCK_MONOTONIC, &m1)) {
			rc = errno ? -errno : -EIO;
			goto out;
		}
		int64_t a = ts_ns(&m0), b = ts_ns(&m1);
		if (b < a)
			continue; /* not monotonic: a broken clock source, skip the round */
		/* An interruption between the reads widens the bracket; the
		 * narrowest one puts REALTIME closest to its midpoint. */
		if ((uint64_t)(b - a) < best) {
			best = (uint64_t)(b - a);
			off = ts_ns(&r) - (a + (b - a) / 2);
		}
	}
	if (best == UINT64_MAX)
		goto out;
	*offset_ns = off;
	if (width_ns)
		*width_ns = best;
	rc = 0;
out:
	return rc;
}

static uint64_t to_real(uint64_t mono, int64_t offset_ns)
{
	return mono + (uint64_t)offset_ns;
}

size_t offcpu_event_split(const struct offcpu_event *e, int64_t offset_ns, struct offcpu_interval out[2])
{
	enum mfu_offcpu_state st = offcpu_state_from_prev(e->prev_state);
	size_t n = 0;

	if (!e->start_ns || e->end_ns < e->start_ns)
		return 0;
	struct offcpu_interval base = {
		.pid = e->pid, .tid = e->tid, .start_ns = to_real(e->start_ns, offset_ns),
		.end_ns = to_real(e->end_ns, offset_ns), .state = st, .stack_id = e->stack_id,
	};
	/* A preempted thread's "wakeup" (it went to sleep and was preempted on
	 * the way) does not split it: it was runnable all along. */
	if (st == MFU_OFFCPU_RUNNABLE || !e->wake_ns || e->wake_ns < e->start_ns || e->wake_ns >= e->end_ns) {
		out[n++] = base;
		return n;
	}
	out[n] = base;
	out[n++].end_ns = to_real(e->wake_ns, offset_ns);
	out[n] = base;
	out[n].start_ns = to_real(e->wake_ns, offset_ns);
	out[n].state = MFU_OFFCPU_RUNNABLE;
	out[n++].stack_id = -1;
	return n;
}
