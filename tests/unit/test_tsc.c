/* SPDX-License-Identifier: MIT */
/*
 * The shim's TSC clock: once calibrated, a tick stamp converted on the
 * sender thread lands inside the CLOCK_REALTIME reads around it, to the
 * nanosecond's resolution; it is never ready before its rate is measured,
 * nor with MFU_TSC=0.  Bounds are microseconds, so a loaded machine passes
 * and a wrong rate or offset (milliseconds) does not; a few reads that an
 * interrupt split are allowed.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tsc.h"

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_a_disabled_tsc_is_never_ready(void **state)
{
	(void)state;
	setenv("MFU_TSC", "0", 1);
	tsc_start();
	usleep(25000);
	tsc_maybe_calibrate(realtime_ns());
	assert_false(tsc_ready());
}

static void test_ticks_convert_to_the_realtime_between_two_reads(void **state)
{
	(void)state;
	setenv("MFU_TSC", "1", 1);
	tsc_start();
	tsc_maybe_calibrate(realtime_ns());
	assert_false(tsc_ready()); /* not before 20 ms */
	usleep(25000);
	tsc_maybe_calibrate(realtime_ns());
	assert_true(tsc_ready());

	enum { N = 2000 };
	int inside = 0, fine = 0;
	for (int i = 0; i < N; i++) {
		uint64_t before = realtime_ns();
		uint64_t t = tsc_ticks();
		uint64_t after = realtime_ns();
		if (i % 100 == 0)
			usleep(1500); /* past the converter's 1 ms anchor: a fresh one */
		uint64_t ns = tsc_realtime_ns(t, NULL);
		inside += ns + 2000 >= before && ns <= after + 2000;
		fine += ns % 256 != 0;
	}
	assert_true(inside >= N * 95 / 100);
	/* whole ns, not a double's 256 ns steps at today's epoch */
	assert_true(fine >= N / 2);

	/* a stamp older than the converter's anchor: extrapolated backwards */
	uint64_t before = realtime_ns();
	uint64_t t = tsc_ticks();
	uint64_t after = realtime_ns();
	usleep(3000);
	(void)tsc_realtime_ns(tsc_ticks(), NULL); /* moves the anchor past t */
	uint64_t ns = tsc_realtime_ns(t, NULL);
	assert_true(ns + 20000 >= before && ns <= after + 20000);
}

int main(void)
{
#if defined(__x86_64__)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_disabled_tsc_is_never_ready),
		cmocka_unit_test(test_ticks_convert_to_the_realtime_between_two_reads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
#else
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_a_disabled_tsc_is_never_ready)};
	return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
