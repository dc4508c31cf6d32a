/* SPDX-License-Identifier: MIT */
/*
 * Per-call cost of the shim: N cublasSgemm calls into the fake libcublas
 * (which computes nothing), timed.  Run it once plainly and once with
 * LD_PRELOAD=libmfushim.so; tools/bench/shim_overhead.sh does both, in one
 * run, with a collector reading the records, and adds callgrind's
 * instruction counts.  Prints ns per call, in wall time and in the calling
 * thread's CPU time (which leaves out time the thread spent preempted by
 * the sender or a collector when they share too few CPUs); asserts nothing.
 *
 * With a RATE, calls are paced at RATE per second, as a training step makes
 * them (a large model makes well under 100 k GEMM calls a second), instead
 * of back to back: a tight loop at millions of calls a second measures how
 * fast the sender thread drains, not what a call costs.  Between calls the
 * thread sweeps a buffer of SWEEP_KB (default 0: spins), standing in for the
 * framework's own work evicting the shim's cache lines.  Only the time
 * inside the calls is summed, in TSC cycles converted with the TSC rate
 * measured over the run.
 *
 *   bench_shim N [RATE [SWEEP_KB]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

#include <cublas_v2.h>

/* One GEMM call, out of line so that callgrind can count the instructions
 * inside it alone (--toggle-collect=one_call): toggling on cublasSgemm_v2
 * itself switches off again inside the fake that the shim forwards to. */
static __attribute__((noinline)) void one_call(cublasHandle_t h, int n)
{
	float alpha = 1, beta = 0;
	cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 64, n, 64, &alpha, NULL, 64, NULL, 64, &beta, NULL, 64);
}

static double mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static uint64_t tsc(void)
{
	_mm_lfence(); /* no earlier instruction may still be running */
	uint64_t t = __rdtsc();
	_mm_lfence(); /* nor a later one already */
	return t;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int paced(cublasHandle_t h, long n, double rate, long sweep_kb)
{
	size_t sweep = (size_t)sweep_kb * 1024;
	volatile unsigned char *buf = sweep ? calloc(1, sweep) : NULL;
	uint64_t *in_call = malloc((size_t)n * sizeof(*in_call));
	unsigned sink = 0;

	if (!in_call || (sweep && !buf))
		return 1;
	double m0 = mono_ns();
	uint64_t t0 = __rdtsc(), period = 0;
	/* the TSC rate, for the pacing: over 20 ms */
	while (mono_ns() - m0 < 2e7)
		;
	period = (uint64_t)((double)(__rdtsc() - t0) / ((mono_ns() - m0) / 1e9) / rate);
	uint64_t next = __rdtsc() + period;
	m0 = mono_ns();
	t0 = __rdtsc();
	for (long i = 0; i < n; i++) {
		do {
			for (size_t j = 0; j < sweep; j += 64)
				sink += buf[j]++;
		} while (__rdtsc() < next);
		next += period;
		uint64_t a = tsc();
		one_call(h, 64 + (int)(i & 7));
		in_call[i] = tsc() - a;
	}
	double ns_per_tick = (mono_ns() - m0) / (double)(__rdtsc() - t0);
	double sum = 0;
	for (long i = 0; i < n; i++)
		sum += (double)in_call[i];
	qsort(in_call, (size_t)n, sizeof(*in_call), compare_u64);
	/* The mean below p99 leaves out calls during which this thread was
	 * preempted, which on a shared machine swamp the mean. */
	long below = n - n / 100;
	double trimmed = 0;
	for (long i = 0; i < below; i++)
		trimmed += (double)in_call[i];
	printf("%.1f ns/call in call (mean below p99), mean %.1f, median %.1f, p99 %.1f, at %.0f calls/s, "
	       "sweeping %ld KB between calls, over %ld calls%s\n",
	       trimmed / (double)below * ns_per_tick, sum / (double)n * ns_per_tick, (double)in_call[n / 2] * ns_per_tick,
	       (double)in_call[below - 1] * ns_per_tick, rate, sweep_kb, n, sink == 1 ? " " : "");
	free(in_call);
	free((void *)buf);
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	double rate = argc > 2 ? atof(argv[2]) : 0;
	long sweep_kb = argc > 3 ? atol(argv[3]) : 0;
	cublasHandle_t h;
	struct timespec a, b, ca, cb;

	if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
		return 1;
	/* warm up: resolve symbols, start the shim and its sender */
	for (int i = 0; i < 1000; i++)
		one_call(h, 64);
	if (rate > 0 && n > 0) {
		int rc = paced(h, n, rate, sweep_kb);
		cublasDestroy(h);
		return rc;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
	for (long i = 0; i < n; i++)
		one_call(h, 64 + (int)(i & 7));
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
	double cpu = ((double)(cb.tv_sec - ca.tv_sec) * 1e9 + (double)(cb.tv_nsec - ca.tv_nsec)) / (double)n;
	printf("%.1f ns/call wall, %.1f ns/call thread CPU, over %ld calls\n", ns, cpu, n);
	cublasDestroy(h);
	return 0;
}
