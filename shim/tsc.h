/* SPDX-License-Identifier: MIT */
/*
 * The hot path's clock.  A GEMM call stamps its record with the CPU's time
 * stamp counter: one rdtsc, where clock_gettime costs 20-35 ns in a VM and
 * misses the cache on the vDSO's data page after the framework's own work.
 * The sender thread turns ticks into CLOCK_REALTIME ns, the clock CUPTI
 * stamps kernels with (tsc_realtime_ns).
 *
 * The counter is used only where the kernel keeps time with it itself
 * (clocksource "tsc": invariant, and the same on every CPU), and only once
 * its rate is measured, 20 ms after start; until then, and on any other
 * machine, calls read clock_gettime.  MFU_TSC=0 turns it off; MFU_TSC=1
 * turns it on whatever the clocksource (x86-64 only; for tests).
 */
#ifndef MFU_SHIM_TSC_H
#define MFU_SHIM_TSC_H

#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* 1 once ticks may be taken; set once, never cleared (tsc.c). */
extern _Atomic int tsc_calibrated;
/* CLOCK_REALTIME ns after which to measure the rate; 0: not (again). */
extern _Atomic uint64_t tsc_due_ns;

/* At shim start: decides whether the counter may be used and takes the
 * first reading.  Not thread-safe (start runs once, under its lock). */
void tsc_start(void);

/* Hot path: whether to stamp with tsc_ticks().  Thread-safe. */
static inline int tsc_ready(void)
{
	return atomic_load_explicit(&tsc_calibrated, memory_order_acquire);
}

static inline uint64_t tsc_ticks(void)
{
#if defined(__x86_64__)
	return __rdtsc();
#else
	return 0; /* never ready */
#endif
}

/* Called by calls that stamped with clock_gettime (CLOCK_REALTIME now_ns)
 * while the counter is not ready: measures its rate once 20 ms have passed.
 * Thread-safe; one load where the counter is not used. */
void tsc_calibrate_slow(uint64_t now_ns);
static inline void tsc_maybe_calibrate(uint64_t now_ns)
{
	if (__builtin_expect(atomic_load_explicit(&tsc_due_ns, memory_order_relaxed) != 0, 0))
		tsc_calibrate_slow(now_ns);
}

/* Ticks to CLOCK_REALTIME ns.  Only for tick stamps taken after
 * tsc_ready(); the sender thread's converter (struct mfu_sender_config's
 * ticks_ns): not thread-safe, one caller at a time. */
uint64_t tsc_realtime_ns(uint64_t ticks, void *unused);

#endif
