/* SPDX-License-Identifier: MIT */
/*
 * Every number the product shows, computed in one place from the formulas of
 * doc/metrics.md: per device, for a rolling window or since start, and summed
 * into job-level aggregates.  Unknown values are NaN, never 0.
 */
#ifndef MFU_FIGURES_H
#define MFU_FIGURES_H

#include <stdint.h>

#include "agg.h"

struct figures {
	double span_s; /* window length, or the since-start span; summed over devices in a job */
	double wall_s; /* the same, but the longest of the devices': rates divide by this */
	double flops[MFU_CLASS_COUNT];
	double hw_flops, model_flops, remat_flops, gemm_flops, gemm_calls;
	/* Kernel timing: NaN when the source has none (degraded). */
	double busy_s, kernel_s, gemm_kernel_s, known_kernel_s, kernels, steps, step_s;
	/* Seconds the FLOPs would take at peak: sum over classes of F_c / P_c. */
	double hw_peak_s, model_peak_s;
	double mfu_peak_flops; /* peak of the class MFU is measured against; 0 unknown */
	unsigned mfu_class;
	int model_declared; /* some step declared model FLOPs */
	const char *peak_origin; /* "table", "override", "unknown", "mixed" */
	double hfu, mfu, busy_ratio, coverage;
	/* Gap analysis (doc/metrics.md, "Idle gaps").  NaN when degraded. */
	double busy_all_s;                /* union of kernels and copies */
	double idle_s, idle_ratio;        /* span - busy_all, and its share of the span */
	double idle_cause_s[GAP__COUNT];  /* classified gap time by cause */
	double idle_unattributed_s;       /* idle not (yet) in a classified gap */
	double short_kernels, joined_kernels, short_share;
	struct lat_sketch lat;            /* launch latencies */
	double lat_p50_s, lat_p90_s, lat_p99_s, lat_max_s; /* NaN without any */
	unsigned devices;
};

/* The cause with the most idle time, or -1 when no gap was classified. */
int figures_dominant_cause(const struct figures *f);

/* Since start when window_ns is 0. */
void figures_device(const struct agg *a, const struct agg_device *d, uint64_t window_ns,
		    uint64_t now_mono_ns, struct figures *out);

/* Job-level: acc starts zeroed (figures_zero) and sums devices; _finish
 * derives the ratios (sum of FLOPs over the sum of peak x span). */
void figures_zero(struct figures *acc);
void figures_add(struct figures *acc, const struct figures *f);
void figures_finish(struct figures *acc);

/* The class MFU is measured against: declared, configured, else dominant. */
unsigned figures_mfu_class(const struct agg *a, const struct agg_device *d);

#endif
