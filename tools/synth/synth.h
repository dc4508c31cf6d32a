/* SPDX-License-Identifier: MIT */
/*
 * A synthetic training run: the record stream a GPT-style model would
 * produce under the shim (GEMM calls and their kernels, attention declared
 * through a region, elementwise kernels, an all-reduce on a second stream,
 * launch API records, steps with declared model FLOPs, optional
 * recomputation).  Deterministic for a seed.  It feeds the GPU-less demo,
 * the integration tests and the ingest benchmark, and keeps exact totals so
 * a test can compare what the collector reports with what was sent.
 */
#ifndef MFU_SYNTH_H
#define MFU_SYNTH_H

#include <stdint.h>

#include "mfu/wire.h"

struct synth_params {
	uint64_t seed;
	uint64_t start_ns;   /* time of the hello */
	unsigned steps;
	unsigned layers;     /* transformer blocks */
	uint64_t width, seq, batch, vocab;
	int remat;           /* recompute each block's forward in backward */
	int degraded;        /* no kernel timing: gemm records untimed, no kernels */
	unsigned device;
	const char *device_name;
	double efficiency;   /* achieved share of peak inside GEMM kernels */
	double peak_tflops;  /* bf16 peak used to derive kernel durations */
	uint64_t launch_gap_ns; /* host time between launches */
};

struct synth_totals {
	uint64_t records, kernels, gemm_calls, steps, strings;
	unsigned __int128 gemm_flops, hw_flops, model_flops, remat_flops;
	uint64_t kernel_ns, busy_ns, first_ns, last_ns;
};

typedef int (*synth_emit_fn)(void *arg, const struct mfu_record *r);

void synth_defaults(struct synth_params *p);
/* The hello record the stream starts with (strings point at static or p's text). */
void synth_hello(const struct synth_params *p, const char *host, const char *job, uint64_t pid, int64_t rank,
		 uint64_t world_size, struct mfu_rec_hello *out);
/* Emits every record after the hello.  Stops at the first non-zero return of
 * emit and returns it; else 0.  Totals are exact for what was emitted. */
int synth_run(const struct synth_params *p, synth_emit_fn emit, void *arg, struct synth_totals *t);
/* The gap-analysis scenario instead: `rounds` copies, one a second, of the
 * hand-computed timeline in synth.c (every gap cause once), in scrambled
 * arrival order.  emit gets NULL after each round: the producer flushes
 * there if it streams.  Same return convention. */
int synth_gaps_run(const struct synth_params *p, unsigned rounds, synth_emit_fn emit, void *arg,
		   struct synth_totals *t);

#endif
