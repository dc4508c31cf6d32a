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
 *   bench_shim N
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cublas_v2.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	cublasHandle_t h;
	struct timespec a, b, ca, cb;
	float alpha = 1, beta = 0;

	if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
		return 1;
	/* warm up: resolve symbols, start the shim and its sender */
	for (int i = 0; i < 1000; i++)
		cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 64, 64, 64, &alpha, NULL, 64, NULL, 64, &beta, NULL, 64);
	clock_gettime(CLOCK_MONOTONIC, &a);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
	for (long i = 0; i < n; i++)
		cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 64, 64 + (int)(i & 7), 64, &alpha, NULL, 64, NULL, 64, &beta,
			    NULL, 64);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
	double cpu = ((double)(cb.tv_sec - ca.tv_sec) * 1e9 + (double)(cb.tv_nsec - ca.tv_nsec)) / (double)n;
	printf("%.1f ns/call wall, %.1f ns/call thread CPU, over %ld calls\n", ns, cpu, n);
	cublasDestroy(h);
	return 0;
}
