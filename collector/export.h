/* SPDX-License-Identifier: MIT */
/*
 * Formatting of the model for people and scrapers: Prometheus text for
 * /metrics, JSON for /api/v1/summary and `mfu run --json`, and the one-line
 * status and summary table of the CLI.  Numbers come from figures.h only.
 */
#ifndef MFU_EXPORT_H
#define MFU_EXPORT_H

#include <stdint.h>

#include "agg.h"
#include "figures.h"
#include "strbuf.h"

struct export_extra {
	uint64_t stream_errors; /* connections dropped for bad input */
	uint64_t rejected[4];   /* refused connections, by export_reject_reasons */
	uint64_t timed_out[2];  /* closed for silence: [0] before hello, [1] idle */
	uint64_t pid_mismatches; /* hellos whose pid differs from SO_PEERCRED's */
	int bpf_on;
	const char *bpf_reason; /* why off; "" when on */
	/* eBPF scheduler tracer counters, when on (collector/offcpu_feed.h) */
	unsigned bpf_sources;
	uint64_t bpf_switches, bpf_events, bpf_drops, bpf_missed_in;
	uint64_t bpf_offcpu_ns[MFU_OFFCPU__COUNT];
};

static const struct {
	const char *label;
	uint64_t ns; /* 0: since start */
} export_windows[] = {
	{"1s", UINT64_C(1000000000)},
	{"10s", UINT64_C(10000000000)},
	{"60s", UINT64_C(60000000000)},
	{"total", 0},
};
#define EXPORT_WINDOWS (sizeof(export_windows) / sizeof(export_windows[0]))

/* Label values of mfud_rejected_connections_total{reason}. */
extern const char *const export_reject_reasons[4];

void export_prometheus(const struct agg *a, uint64_t now_mono_ns, const struct export_extra *x,
		       struct strbuf *out);
void export_json_summary(const struct agg *a, uint64_t now_mono_ns, struct strbuf *out);

/* Job-level figures for one window (0 = since start), over the sources of
 * one job, or of all when job is NULL. */
void export_job_figures(const struct agg *a, const char *job, uint64_t window_ns, uint64_t now_mono_ns,
			struct figures *out);
/* "table:NVIDIA H100 SXM5", "override:--peak-tflops", "unknown", "mixed". */
void export_peak_source(const struct agg *a, const struct agg_device *d, unsigned cls, char *buf,
			size_t cap);

/* One status line (no newline): "[10s] 412.3 TFLOP/s  HFU 41.7%  ...". */
void export_status_line(const struct agg *a, uint64_t window_ns, const char *label,
			uint64_t now_mono_ns, struct strbuf *out);
/* The end-of-run table. */
void export_summary_table(const struct agg *a, uint64_t now_mono_ns, struct strbuf *out);

/* The gap section of `mfu report`: idle share, idle by cause, launch
 * latency percentiles, a histogram of gap lengths, the kernels most often
 * shorter than their launch. */
void export_gap_report(const struct agg *a, uint64_t now_mono_ns, struct strbuf *out);

/* The per-source table of `mfu top` (served at /api/v1/top). */
void export_top_table(const struct agg *a, uint64_t now_mono_ns, struct strbuf *out);

void sb_u128(struct strbuf *sb, u128 v);

#endif
