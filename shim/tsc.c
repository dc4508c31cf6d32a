/* SPDX-License-Identifier: MIT */
/*
 * The time stamp counter as the hot path's clock; see tsc.h.
 *
 * The rate is measured against CLOCK_MONOTONIC_RAW, which neither steps nor
 * slews, over the time since start; the offset against CLOCK_REALTIME is
 * read afresh for every millisecond of stamps converted, so a realtime step
 * or an NTP slew moves at most the stamps of that millisecond, by what the
 * clock itself moved.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsc.h"

_Atomic int tsc_calibrated;
_Atomic uint64_t tsc_due_ns;

struct pair {
	uint64_t ticks, ns;
};

static struct pair raw0;     /* at start: ticks and CLOCK_MONOTONIC_RAW */
static double ns_per_tick;   /* published with tsc_calibrated */

/* The rate is measured this long after start; a shorter span would let
 * the few ns by which a reading pair is off weigh on it. */
#define CALIBRATE_AFTER_NS 20000000u

static uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Ticks and a clock read together: the narrowest of a few tries, so that
 * an interrupt between the two reads does not skew the pair.  Returns 0,
 * or -1 when every try was that wide (the machine is too busy to trust it). */
static int read_pair(clockid_t clk, struct pair *out)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 5; i++) {
		uint64_t a = tsc_ticks();
		uint64_t ns = clock_ns(clk);
		uint64_t b = tsc_ticks();
		if (b - a < best) {
			best = b - a;
			out->ticks = a + (b - a) / 2;
			out->ns = ns;
		}
	}
	return best < 100000 ? 0 : -1; /* ~30 us at 3 GHz */
}

static int clocksource_is_tsc(void)
{
	char buf[32] = "";
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");

	if (!f)
		return 0;
	int ok = fgets(buf, sizeof(buf), f) && !strcmp(buf, "tsc\n");
	fclose(f);
	return ok;
}

static int log_on(void)
{
	const char *v = getenv("MFU_LOG");
	return v && *v && strcmp(v, "0");
}

void tsc_start(void)
{
#if defined(__x86_64__)
	const char *v = getenv("MFU_TSC");

	if (atomic_load(&tsc_calibrated) || (v && !strcmp(v, "0")))
		return;
	if (!(v && !strcmp(v, "1")) && !clocksource_is_tsc())
		return;
	if (read_pair(CLOCK_MONOTONIC_RAW, &raw0))
		return;
	atomic_store(&tsc_due_ns, clock_ns(CLOCK_REALTIME) + CALIBRATE_AFTER_NS);
#endif
}

void tsc_calibrate_slow(uint64_t now_ns)
{
	uint64_t due = atomic_load(&tsc_due_ns);
	struct pair p;

	/* one caller measures; the others go on stamping with the clock */
	if (!due || now_ns < due || !atomic_compare_exchange_strong(&tsc_due_ns, &due, 0))
		return;
	if (read_pair(CLOCK_MONOTONIC_RAW, &p) || p.ns - raw0.ns < CALIBRATE_AFTER_NS / 2 ||
	    (int64_t)(p.ticks - raw0.ticks) <= 0) {
		/* a busy machine, or the realtime clock stepped: try again later */
		atomic_store(&tsc_due_ns, now_ns + CALIBRATE_AFTER_NS);
		return;
	}
	double rate = (double)(p.ns - raw0.ns) / (double)(p.ticks - raw0.ticks);
	/* 100 MHz to 10 GHz: anything else is no invariant counter */
	if (rate < 0.1 || rate > 10)
		return;
	ns_per_tick = rate;
	atomic_store_explicit(&tsc_calibrated, 1, memory_order_release);
	if (log_on())
		fprintf(stderr, "mfushim: host clock: TSC at %.4f GHz, against CLOCK_MONOTONIC_RAW\n", 1 / rate);
}

/* The sender thread's view: an anchor against CLOCK_REALTIME and the rate,
 * both refined as stamps come in. */
static struct pair anchor;
static double conv_ns_per_tick;
static int64_t refresh_ticks; /* a millisecond */

static void refresh(void)
{
	struct pair rt, raw;

	if (!conv_ns_per_tick)
		conv_ns_per_tick = ns_per_tick;
	/* a pair a busy machine made wide is still the best there is */
	read_pair(CLOCK_REALTIME, &rt);
	anchor = rt;
	if (!read_pair(CLOCK_MONOTONIC_RAW, &raw) && raw.ns - raw0.ns >= CALIBRATE_AFTER_NS &&
	    (int64_t)(raw.ticks - raw0.ticks) > 0)
		conv_ns_per_tick = (double)(raw.ns - raw0.ns) / (double)(raw.ticks - raw0.ticks);
	refresh_ticks = conv_ns_per_tick ? (int64_t)(1e6 / conv_ns_per_tick) : 0;
}

uint64_t tsc_realtime_ns(uint64_t ticks, void *unused)
{
	(void)unused;
	if (!conv_ns_per_tick || (int64_t)(ticks - anchor.ticks) > refresh_ticks)
		refresh();
	if (!conv_ns_per_tick)
		return 0; /* no rate: never the case for stamps taken once ready */
	/* only the offset in floating point: a double holds today's ns since
	 * 1970 to 256 ns */
	double off = (double)(int64_t)(ticks - anchor.ticks) * conv_ns_per_tick;
	int64_t n = (int64_t)(off < 0 ? off - 0.5 : off + 0.5);
	return n < 0 && (uint64_t)-n > anchor.ns ? 0 : anchor.ns + (uint64_t)n;
}
