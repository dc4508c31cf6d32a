/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the off-CPU tracer's pure parts (tools/bpf/offcpu_common.c):
 * sched_switch prev_state to mfu_offcpu_state, the REALTIME - MONOTONIC
 * offset from bracketed clock reads, and the split of a kernel event at its
 * wakeup.  Needs no privileges and no BPF.
 */
#include <errno.h>
#include <linux/types.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "offcpu.h"
#include "offcpu_tracer.h"

static void test_state_preempted_and_running_are_runnable(void **state)
{
	assert_int_equal(offcpu_state_from_prev(0), MFU_OFFCPU_RUNNABLE);
	assert_int_equal(offcpu_state_from_prev(0x100), MFU_OFFCPU_RUNNABLE); /* TASK_REPORT_MAX: "R+" */
	/* A kernel that moves the preemption bit further up still maps. */
	assert_int_equal(offcpu_state_from_prev(0x200), MFU_OFFCPU_RUNNABLE);
	assert_int_equal(offcpu_state_from_prev(0x101), MFU_OFFCPU_RUNNABLE);
	assert_int_equal(offcpu_state_from_prev(-1), MFU_OFFCPU_RUNNABLE);
}

static void test_state_report_bits_map_to_sleeping_disk_other(void **state)
{
	assert_int_equal(offcpu_state_from_prev(0x1), MFU_OFFCPU_SLEEPING); /* S */
	assert_int_equal(offcpu_state_from_prev(0x2), MFU_OFFCPU_DISK);     /* D */
	assert_int_equal(offcpu_state_from_prev(0x4), MFU_OFFCPU_OTHER);    /* T */
	assert_int_equal(offcpu_state_from_prev(0x8), MFU_OFFCPU_OTHER);    /* t */
	assert_int_equal(offcpu_state_from_prev(0x10), MFU_OFFCPU_OTHER);   /* X */
	assert_int_equal(offcpu_state_from_prev(0x20), MFU_OFFCPU_OTHER);   /* Z */
	assert_int_equal(offcpu_state_from_prev(0x40), MFU_OFFCPU_OTHER);   /* P */
	assert_int_equal(offcpu_state_from_prev(0x80), MFU_OFFCPU_OTHER);   /* I: idle, not I/O */
}

/* A scripted clock: each call returns the next value for that clock. */
static const int64_t *script_mono, *script_real;
static size_t mono_i, real_i;
static int script_fail;

static int fake_gettime(clockid_t id, struct timespec *ts)
{
	int64_t v;

	if (script_fail) {
		errno = EINVAL;
		return -1;
	}
	v = id == CLOCK_MONOTONIC ? script_mono[mono_i++] : script_real[real_i++];
	ts->tv_sec = v / 1000000000;
	ts->tv_nsec = v % 1000000000;
	return 0;
}

static void script(const int64_t *mono, const int64_t *real)
{
	script_mono = mono;
	script_real = real;
	mono_i = real_i = 0;
	script_fail = 0;
}

static void test_clock_offset_keeps_the_narrowest_bracket(void **state)
{
	/* Round 0 is interrupted (10 us wide), round 1 is 200 ns wide with
	 * REALTIME read at its midpoint + 5e9 s, round 2 is 1 us wide. */
	static const int64_t mono[] = {1000, 11000, 20000, 20200, 30000, 31000};
	static const int64_t real[] = {5000000000000 + 9000, 5000000000000 + 20100, 5000000000000 + 30500};
	int64_t off = 0;
	uint64_t width = 0;

	script(mono, real);
	assert_int_equal(offcpu_clock_offset(fake_gettime, 3, &off, &width), 0);
	assert_int_equal(width, 200);
	assert_int_equal(off, 5000000000000);
	assert_int_equal(mono_i, 6);
	assert_int_equal(real_i, 3);
}

static void test_clock_offset_skips_backwards_rounds_and_reports_errors(void **state)
{
	static const int64_t mono[] = {5000, 4000, 100, 300};
	static const int64_t real[] = {1, 1000000 + 200};
	int64_t off = 42;

	script(mono, real);
	assert_int_equal(offcpu_clock_offset(fake_gettime, 2, &off, NULL), 0);
	assert_int_equal(off, 1000000);

	script(mono, real);
	assert_int_equal(offcpu_clock_offset(fake_gettime, 1, &off, NULL), -EINVAL); /* only the bad round */
	assert_int_equal(offcpu_clock_offset(fake_gettime, 0, &off, NULL), -EINVAL);
	script_fail = 1;
	assert_int_equal(offcpu_clock_offset(fake_gettime, 3, &off, NULL), -EINVAL);
	assert_int_equal(off, 1000000); /* untouched on failure */
}

static void test_clock_offset_from_the_real_clocks_is_plausible(void **state)
{
	struct timespec m, r;
	int64_t off;
	uint64_t width;

	assert_int_equal(offcpu_clock_offset(clock_gettime, 5, &off, &width), 0);
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_REALTIME, &r);
	int64_t direct = (r.tv_sec - m.tv_sec) * 1000000000 + (r.tv_nsec - m.tv_nsec);
	/* Generous: only a clock step between the two reads could break it. */
	assert_true(direct - off < 50000000 && off - direct < 50000000);
	assert_true(width < 50000000);
}

static void test_split_blocked_event_at_its_wakeup(void **state)
{
	struct offcpu_event e = {.start_ns = 1000, .wake_ns = 31000, .end_ns = 32500, .prev_state = 1,
				 .pid = 7, .tid = 9, .stack_id = 4};
	struct offcpu_interval iv[2];

	assert_int_equal(offcpu_event_split(&e, 100, iv), 2);
	assert_int_equal(iv[0].start_ns, 1100);
	assert_int_equal(iv[0].end_ns, 31100);
	assert_int_equal(iv[0].state, MFU_OFFCPU_SLEEPING);
	assert_int_equal(iv[0].stack_id, 4);
	assert_int_equal(iv[0].pid, 7);
	assert_int_equal(iv[0].tid, 9);
	assert_int_equal(iv[1].start_ns, 31100);
	assert_int_equal(iv[1].end_ns, 32600);
	assert_int_equal(iv[1].state, MFU_OFFCPU_RUNNABLE);
	assert_int_equal(iv[1].stack_id, -1);

	e.prev_state = 2;
	assert_int_equal(offcpu_event_split(&e, -500, iv), 2);
	assert_int_equal(iv[0].state, MFU_OFFCPU_DISK);
	assert_int_equal(iv[0].start_ns, 500);
}

static void test_split_keeps_preempted_and_unwoken_events_whole(void **state)
{
	struct offcpu_event e = {.start_ns = 1000, .wake_ns = 2000, .end_ns = 5000, .prev_state = 0x100,
				 .pid = 7, .tid = 9, .stack_id = -1};
	struct offcpu_interval iv[2];

	/* Preempted on its way to sleep, then "woken": runnable throughout. */
	assert_int_equal(offcpu_event_split(&e, 0, iv), 1);
	assert_int_equal(iv[0].state, MFU_OFFCPU_RUNNABLE);
	assert_int_equal(iv[0].end_ns - iv[0].start_ns, 4000);

	e.prev_state = 1;
	e.wake_ns = 0; /* wakeup not seen */
	assert_int_equal(offcpu_event_split(&e, 0, iv), 1);
	assert_int_equal(iv[0].state, MFU_OFFCPU_SLEEPING);
	assert_int_equal(iv[0].end_ns, 5000);

	e.wake_ns = 500; /* before it left: ignore the wakeup */
	assert_int_equal(offcpu_event_split(&e, 0, iv), 1);
	assert_int_equal(iv[0].end_ns, 5000);
}

static void test_split_rejects_nonsense_times(void **state)
{
	struct offcpu_event e = {.start_ns = 5000, .end_ns = 4000, .prev_state = 1};
	struct offcpu_interval iv[2];

	assert_int_equal(offcpu_event_split(&e, 0, iv), 0);
	e.start_ns = 0;
	e.end_ns = 10;
	assert_int_equal(offcpu_event_split(&e, 0, iv), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_preempted_and_running_are_runnable),
		cmocka_unit_test(test_state_report_bits_map_to_sleeping_disk_other),
		cmocka_unit_test(test_clock_offset_keeps_the_narrowest_bracket),
		cmocka_unit_test(test_clock_offset_skips_backwards_rounds_and_reports_errors),
		cmocka_unit_test(test_clock_offset_from_the_real_clocks_is_plausible),
		cmocka_unit_test(test_split_blocked_event_at_its_wakeup),
		cmocka_unit_test(test_split_keeps_preempted_and_unwoken_events_whole),
		cmocka_unit_test(test_split_rejects_nonsense_times),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
