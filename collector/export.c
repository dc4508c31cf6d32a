/* SPDX-License-Identifier: MIT */
/*
 * Prometheus text, JSON and terminal output.  Unknown values (NaN figures)
 * are left out of /metrics and written as null in JSON, so nobody graphs a
 * confident 0 for something that was not measured.  Kernel names and every
 * other producer-supplied text go through the escaping helpers of strbuf.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"

void sb_u128(struct strbuf *sb, u128 v)
{
	char tmp[40];
	int i = sizeof(tmp);

	tmp[--i] = 0;
	do {
		tmp[--i] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v);
	sb_puts(sb, tmp + i);
}

void export_peak_source(const struct agg *a, const struct agg_device *d, unsigned cls, char *buf,
			size_t cap)
{
	const char *origin;

	agg_device_peak(a, d, cls, &origin);
	if (!strcmp(origin, "table"))
		snprintf(buf, cap, "table:%s", d->peak->model);
	else if (!strcmp(origin, "override"))
		snprintf(buf, cap, "override:%s", a->cfg.override_origin);
	else
		snprintf(buf, cap, "unknown");
}

/* ---- Prometheus ---- */

static void source_labels(struct strbuf *sb, const struct agg_source *s)
{
	sb_puts(sb, "job=\"");
	sb_prom_label(sb, s->job, strlen(s->job));
	sb_puts(sb, "\",host=\"");
	sb_prom_label(sb, s->host, strlen(s->host));
	sb_puts(sb, "\",rank=\"");
	if (s->rank >= 0)
		sb_printf(sb, "%lld", (long long)s->rank);
	sb_printf(sb, "\",pid=\"%llu\"", (unsigned long long)s->pid);
}

static void device_labels(struct strbuf *sb, const struct agg_device *d)
{
	source_labels(sb, d->src);
	sb_printf(sb, ",device=\"%u\"", d->index);
}

static void family(struct strbuf *sb, const char *name, const char *type, const char *help)
{
	sb_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct strbuf *sb, const char *name, const struct agg_device *d,
		   const struct agg_source *s, const char *extra, double v)
{
	if (isnan(v))
		return;
	sb_puts(sb, name);
	sb_puts(sb, "{");
	if (d)
		device_labels(sb, d);
	else
		source_labels(sb, s);
	if (extra && *extra) {
		sb_puts(sb, ",");
		sb_puts(sb, extra);
	}
	sb_puts(sb, "} ");
	sb_prom_double(sb, v);
	sb_puts(sb, "\n");
}

#define FOR_EACH_DEVICE(a, d)                                                   \
	for (unsigned si_ = 0; si_ < (a)->nsrc; si_++)                          \
		for (unsigned di_ = 0; di_ < (a)->src[si_]->ndev && ((d) = (a)->src[si_]->dev[di_]); di_++)

enum wfig {
	WFIG_HFU,
	WFIG_MFU,
	WFIG_HW_RATE,
	WFIG_MODEL_RATE,
	WFIG_REMAT_RATE,
	WFIG_BUSY,
	WFIG_GEMM_KERNEL,
	WFIG_KERNEL_RATE,
	WFIG_STEP_RATE,
	WFIG_STEP_MEAN,
	WFIG_COVERAGE,
	WFIG_IDLE,
	WFIG_SHORT_SHARE,
	WFIG_LAT_MAX,
	WFIG__COUNT
};

static const struct {
	const char *name, *help;
} wfig_meta[WFIG__COUNT] = {
	[WFIG_HFU] = {"mfu_hfu_ratio", "Hardware FLOPs utilization: sum over dtypes of executed FLOPs / (window x dense peak of that dtype)."},
	[WFIG_MFU] = {"mfu_mfu_ratio", "Model FLOPs utilization: declared model FLOPs / (window x dense peak of the model dtype)."},
	[WFIG_HW_RATE] = {"mfu_executed_flops_per_second", "Hardware-executed FLOPs per second over the window (recomputation included)."},
	[WFIG_MODEL_RATE] = {"mfu_model_flops_per_second", "Declared model FLOPs per second over the window."},
	[WFIG_REMAT_RATE] = {"mfu_remat_flops_per_second", "Executed FLOPs identified as recomputation, per second."},
	[WFIG_BUSY] = {"mfu_gpu_busy_ratio", "Share of the window with at least one kernel running (union over streams)."},
	[WFIG_GEMM_KERNEL] = {"mfu_gemm_kernel_ratio", "GEMM kernel seconds per second of window."},
	[WFIG_KERNEL_RATE] = {"mfu_kernels_per_second", "Kernels completed per second."},
	[WFIG_STEP_RATE] = {"mfu_steps_per_second", "Training steps completed per second."},
	[WFIG_STEP_MEAN] = {"mfu_step_seconds_mean", "Mean duration of the steps completed in the window."},
	[WFIG_COVERAGE] = {"mfu_flops_coverage_ratio", "Share of kernel time spent in kernels whose FLOPs are known."},
	[WFIG_IDLE] = {"mfu_gpu_idle_ratio", "Share of the window with no kernel and no memcpy/memset running on the device."},
	[WFIG_SHORT_SHARE] = {"mfu_short_kernel_ratio", "Share of kernels with a known launch call that ran shorter than that call."},
	[WFIG_LAT_MAX] = {"mfu_launch_latency_max_seconds", "Longest launch latency (kernel start - launch call start) in the window, by whole seconds."},
};

static double wfig_value(enum wfig k, const struct figures *f)
{
	switch (k) {
	case WFIG_HFU: return f->hfu;
	case WFIG_MFU: return f->mfu;
	case WFIG_HW_RATE: return f->span_s > 0 ? f->hw_flops / f->span_s : NAN;
	case WFIG_MODEL_RATE: return f->span_s > 0 ? f->model_flops / f->span_s : NAN;
	case WFIG_REMAT_RATE: return f->span_s > 0 ? f->remat_flops / f->span_s : NAN;
	case WFIG_BUSY: return f->busy_ratio;
	case WFIG_GEMM_KERNEL: return f->span_s > 0 ? f->gemm_kernel_s / f->span_s : NAN;
	case WFIG_KERNEL_RATE: return f->span_s > 0 ? f->kernels / f->span_s : NAN;
	case WFIG_STEP_RATE: return f->span_s > 0 ? f->steps / f->span_s : NAN;
	case WFIG_STEP_MEAN: return f->steps > 0 ? f->step_s / f->steps : NAN;
	case WFIG_COVERAGE: return f->coverage;
	case WFIG_IDLE: return f->idle_ratio;
	case WFIG_SHORT_SHARE: return f->short_share;
	case WFIG_LAT_MAX: return f->lat_max_s;
	default: return NAN;
	}
}

void export_job_figures(const struct agg *a, const char *job, uint64_t window_ns, uint64_t now_mono_ns,
			struct figures *out)
{
	struct figures f;

	figures_zero(out);
	for (unsigned i = 0; i < a->nsrc; i++) {
		if (job && strcmp(a->src[i]->job, job))
			continue;
		for (unsigned di = 0; di < a->src[i]->ndev; di++) {
			figures_device(a, a->src[i]->dev[di], window_ns, now_mono_ns, &f);
			figures_add(out, &f);
		}
	}
	figures_finish(out);
}

static void export_windows_families(const struct agg *a, uint64_t now, struct strbuf *sb)
{
	const struct agg_device *d;
	unsigned ndev = 0;

	FOR_EACH_DEVICE(a, d)
		ndev++;
	if (!ndev)
		return;
	/* figures for every device and window, computed once */
	struct figures(*fig)[EXPORT_WINDOWS] = calloc(ndev, sizeof(*fig));
	unsigned i = 0;
	if (!fig) {
		sb->oom = 1;
		return;
	}
	FOR_EACH_DEVICE(a, d) {
		for (unsigned w = 0; w < EXPORT_WINDOWS; w++)
			figures_device(a, d, export_windows[w].ns, now, &fig[i][w]);
		i++;
	}
	for (unsigned k = 0; k < WFIG__COUNT; k++) {
		family(sb, wfig_meta[k].name, "gauge", wfig_meta[k].help);
		i = 0;
		FOR_EACH_DEVICE(a, d) {
			char extra[320], peak[200];
			unsigned cls = fig[i][EXPORT_WINDOWS - 1].mfu_class;
			export_peak_source(a, d, cls, peak, sizeof(peak));
			for (unsigned w = 0; w < EXPORT_WINDOWS; w++) {
				struct strbuf lab;
				sb_init(&lab);
				sb_printf(&lab, "window=\"%s\"", export_windows[w].label);
				if (k == WFIG_HFU || k == WFIG_MFU) {
					/* which peak: so nobody sees a silent 150 % */
					sb_printf(&lab, ",peak_dtype=\"%s\",peak_source=\"", mfu_class_name(cls));
					sb_prom_label(&lab, peak, strlen(peak));
					sb_puts(&lab, "\"");
				}
				snprintf(extra, sizeof(extra), "%s", lab.buf ? lab.buf : "");
				sb_free(&lab);
				sample(sb, wfig_meta[k].name, d, NULL, extra, wfig_value(k, &fig[i][w]));
			}
			i++;
		}
	}
	family(sb, "mfu_executed_dtype_flops_per_second", "gauge",
	       "Hardware-executed FLOPs per second by dtype class over the window.");
	i = 0;
	FOR_EACH_DEVICE(a, d) {
		for (unsigned w = 0; w < EXPORT_WINDOWS; w++)
			for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
				if (!fig[i][EXPORT_WINDOWS - 1].flops[c])
					continue;
				char extra[64];
				snprintf(extra, sizeof(extra), "window=\"%s\",dtype=\"%s\"", export_windows[w].label,
					 mfu_class_name(c));
				sample(sb, "mfu_executed_dtype_flops_per_second", d, NULL, extra,
				       fig[i][w].span_s > 0 ? fig[i][w].flops[c] / fig[i][w].span_s : NAN);
			}
		i++;
	}
	family(sb, "mfu_gpu_idle_cause_ratio", "gauge",
	       "Share of the window spent in idle gaps of each cause; unattributed: idle outside any classified gap.");
	i = 0;
	FOR_EACH_DEVICE(a, d) {
		for (unsigned w = 0; w < EXPORT_WINDOWS; w++) {
			const struct figures *f = &fig[i][w];
			for (unsigned c = 0; c <= GAP__COUNT; c++) {
				char extra[80];
				double sec = c < GAP__COUNT ? f->idle_cause_s[c] : f->idle_unattributed_s;
				snprintf(extra, sizeof(extra), "window=\"%s\",cause=\"%s\"", export_windows[w].label,
					 c < GAP__COUNT ? gap_cause_name(c) : "unattributed");
				sample(sb, "mfu_gpu_idle_cause_ratio", d, NULL, extra, f->span_s > 0 ? sec / f->span_s : NAN);
			}
		}
		i++;
	}
	family(sb, "mfu_launch_latency_seconds", "summary",
	       "Kernel start minus the start of its launch call; quantiles from log buckets (within 3.2 %), over the window's whole seconds.");
	i = 0;
	FOR_EACH_DEVICE(a, d) {
		for (unsigned w = 0; w < EXPORT_WINDOWS; w++) {
			const struct figures *f = &fig[i][w];
			static const char *const qn[] = {"0.5", "0.9", "0.99"};
			const double qv[] = {f->lat_p50_s, f->lat_p90_s, f->lat_p99_s};
			char extra[64];
			for (unsigned q = 0; q < 3; q++) {
				snprintf(extra, sizeof(extra), "window=\"%s\",quantile=\"%s\"", export_windows[w].label, qn[q]);
				sample(sb, "mfu_launch_latency_seconds", d, NULL, extra, qv[q]);
			}
			snprintf(extra, sizeof(extra), "window=\"%s\"", export_windows[w].label);
			sample(sb, "mfu_launch_latency_seconds_sum", d, NULL, extra, (double)f->lat.sum_ns / 1e9);
			sample(sb, "mfu_launch_latency_seconds_count", d, NULL, extra, (double)f->lat.count);
		}
		i++;
	}
	free(fig);
}

static void export_counters(const struct agg *a, struct strbuf *sb)
{
	const struct agg_device *d;
	static const struct {
		const char *name, *help;
		size_t off;
		double scale;
		int timing;
	} u64s[] = {
		{"mfu_kernels_total", "Kernels completed.", offsetof(struct agg_totals, kernels), 1, 1},
		{"mfu_kernel_seconds_total", "Sum of kernel durations.", offsetof(struct agg_totals, kernel_ns), 1e-9, 1},
		{"mfu_gpu_busy_seconds_total", "Time with at least one kernel running.", offsetof(struct agg_totals, busy_ns), 1e-9, 1},
		{"mfu_gemm_kernel_seconds_total", "Sum of durations of kernels launched by intercepted GEMMs.", offsetof(struct agg_totals, gemm_kernel_ns), 1e-9, 1},
		{"mfu_steps_total", "Training steps completed.", offsetof(struct agg_totals, steps), 1, 0},
		{"mfu_step_seconds_total", "Sum of step durations.", offsetof(struct agg_totals, step_ns), 1e-9, 0},
		{"mfu_gemm_calls_total", "Intercepted GEMM calls (nested calls not counted).", offsetof(struct agg_totals, gemm_calls), 1, 0},
	};
	static const struct {
		const char *name, *help;
		size_t off;
	} u128s[] = {
		{"mfu_model_flops_total", "Declared model FLOPs.", offsetof(struct agg_totals, model_flops)},
		{"mfu_remat_flops_total", "Executed FLOPs identified as recomputation.", offsetof(struct agg_totals, remat_flops)},
		{"mfu_gemm_flops_total", "FLOPs of intercepted GEMM calls, from their arguments.", offsetof(struct agg_totals, gemm_flops)},
	};

	family(sb, "mfu_executed_flops_total", "counter", "Hardware-executed FLOPs by dtype class.");
	FOR_EACH_DEVICE(a, d) {
		for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
			if (!d->tot.flops[c])
				continue;
			char extra[32];
			snprintf(extra, sizeof(extra), "dtype=\"%s\"", mfu_class_name(c));
			sample(sb, "mfu_executed_flops_total", d, NULL, extra, (double)d->tot.flops[c]);
		}
	}
	for (unsigned k = 0; k < sizeof(u128s) / sizeof(u128s[0]); k++) {
		family(sb, u128s[k].name, "counter", u128s[k].help);
		FOR_EACH_DEVICE(a, d) {
			u128 v;
			memcpy(&v, (const char *)&d->tot + u128s[k].off, sizeof(v));
			sample(sb, u128s[k].name, d, NULL, NULL, (double)v);
		}
	}
	for (unsigned k = 0; k < sizeof(u64s) / sizeof(u64s[0]); k++) {
		family(sb, u64s[k].name, "counter", u64s[k].help);
		FOR_EACH_DEVICE(a, d) {
			uint64_t v;
			memcpy(&v, (const char *)&d->tot + u64s[k].off, sizeof(v));
			sample(sb, u64s[k].name, d, NULL, NULL,
			       u64s[k].timing && d->src->degraded ? NAN : (double)v * u64s[k].scale);
		}
	}
}

static void export_gap_counters(const struct agg *a, struct strbuf *sb)
{
	const struct agg_device *d;

	family(sb, "mfu_gpu_idle_seconds_total", "counter",
	       "Time in classified idle gaps (between two busy runs of the device), by cause.");
	FOR_EACH_DEVICE(a, d) {
		for (unsigned c = 0; c < GAP__COUNT; c++) {
			char extra[48];
			snprintf(extra, sizeof(extra), "cause=\"%s\"", gap_cause_name(c));
			sample(sb, "mfu_gpu_idle_seconds_total", d, NULL, extra,
			       d->src->degraded ? NAN : (double)d->gaps.idle_ns[c] / 1e9);
		}
	}
	family(sb, "mfu_gpu_idle_gap_seconds", "histogram", "Lengths of the classified idle gaps.");
	FOR_EACH_DEVICE(a, d) {
		if (d->src->degraded)
			continue;
		uint64_t cum = 0;
		for (unsigned h = 0; h < GAP_HIST_BUCKETS; h++) {
			struct strbuf lab;
			cum += d->gaps.hist[h];
			sb_init(&lab);
			sb_puts(&lab, "le=\"");
			sb_prom_double(&lab, h < GAP_HIST_BUCKETS - 1 ? (double)gap_hist_le_ns[h] / 1e9 : INFINITY);
			sb_puts(&lab, "\"");
			sample(sb, "mfu_gpu_idle_gap_seconds_bucket", d, NULL, lab.buf, (double)cum);
			sb_free(&lab);
		}
		sample(sb, "mfu_gpu_idle_gap_seconds_sum", d, NULL, NULL, (double)d->gaps.gap_ns / 1e9);
		sample(sb, "mfu_gpu_idle_gap_seconds_count", d, NULL, NULL, (double)d->gaps.gaps);
	}
	family(sb, "mfu_short_kernels_total", "counter", "Kernels that ran shorter than their own launch call.");
	FOR_EACH_DEVICE(a, d)
		sample(sb, "mfu_short_kernels_total", d, NULL, NULL, (double)d->gaps.short_kernels);
	family(sb, "mfu_launched_kernels_total", "counter", "Kernels joined to their launch call (the short-kernel denominator).");
	FOR_EACH_DEVICE(a, d)
		sample(sb, "mfu_launched_kernels_total", d, NULL, NULL, (double)d->gaps.joined_kernels);
	family(sb, "mfu_copy_seconds_total", "counter", "Sum of memcpy/memset durations on the device.");
	FOR_EACH_DEVICE(a, d)
		sample(sb, "mfu_copy_seconds_total", d, NULL, NULL, (double)d->tot.copy_ns / 1e9);
	family(sb, "mfu_gap_records_lost_total", "counter",
	       "Records gap analysis could not use: join_evicted (a launch or kernel whose other half never came in time), "
	       "spans_full, late (after the sweep passed), forced (swept early: buffer full), offcpu_from_producer.");
	for (unsigned i = 0; i < a->nsrc; i++) {
		const struct agg_source *s = a->src[i];
		uint64_t late = 0, forced = 0;
		for (unsigned di = 0; di < s->ndev; di++) {
			late += s->dev[di]->gaps.late;
			forced += s->dev[di]->gaps.forced;
		}
		const struct {
			const char *why;
			uint64_t n;
		} lost[] = {{"join_evicted", s->gaps.join_evicted}, {"spans_full", s->gaps.spans_dropped},
			    {"late", late}, {"forced", forced}, {"offcpu_from_producer", s->gaps.offcpu_ignored}};
		for (unsigned k = 0; k < sizeof(lost) / sizeof(lost[0]); k++) {
			char extra[48];
			snprintf(extra, sizeof(extra), "reason=\"%s\"", lost[k].why);
			sample(sb, "mfu_gap_records_lost_total", NULL, s, extra, (double)lost[k].n);
		}
	}
}

static void export_info(const struct agg *a, struct strbuf *sb)
{
	const struct agg_device *d;

	family(sb, "mfu_peak_flops_per_second", "gauge",
	       "Dense peak FLOP/s used as the denominator, per dtype class, and where it came from.");
	FOR_EACH_DEVICE(a, d) {
		for (unsigned c = 1; c < MFU_CLASS_COUNT; c++) {
			const char *origin;
			double p = agg_device_peak(a, d, c, &origin);
			if (p <= 0)
				continue;
			char src[200];
			struct strbuf lab;
			export_peak_source(a, d, c, src, sizeof(src));
			sb_init(&lab);
			sb_printf(&lab, "dtype=\"%s\",source=\"", mfu_class_name(c));
			sb_prom_label(&lab, src, strlen(src));
			sb_puts(&lab, "\"");
			sample(sb, "mfu_peak_flops_per_second", d, NULL, lab.buf, p);
			sb_free(&lab);
		}
	}
	family(sb, "mfu_device_info", "gauge", "Device as the producer reported it; value is 1.");
	FOR_EACH_DEVICE(a, d) {
		struct strbuf lab;
		sb_init(&lab);
		sb_puts(&lab, "name=\"");
		sb_prom_label(&lab, d->name, strlen(d->name));
		sb_printf(&lab, "\",sm_count=\"%u\",cc=\"%u.%u\",peak_model=\"", d->info.sm_count,
			  d->info.cc_major, d->info.cc_minor);
		if (d->peak)
			sb_prom_label(&lab, d->peak->model, strlen(d->peak->model));
		sb_puts(&lab, "\"");
		sample(sb, "mfu_device_info", d, NULL, lab.buf, 1);
		sb_free(&lab);
	}

	family(sb, "mfu_source_up", "gauge", "1 while the source is connected.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_source_up", NULL, a->src[i], NULL, a->src[i]->connected);
	family(sb, "mfu_source_degraded", "gauge",
	       "1 while the source has no kernel timing (CUPTI unavailable): kernel time is unknown, not zero.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_source_degraded", NULL, a->src[i], NULL, a->src[i]->degraded);
	family(sb, "mfu_source_degraded_seconds_total", "counter",
	       "Producer time the source spent without kernel timing: CUPTI unavailable, or its records taken by another profiler.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_source_degraded_seconds_total", NULL, a->src[i], NULL,
		       (double)agg_source_degraded_ns(a->src[i]) / 1e9);
	family(sb, "mfu_source_synthetic", "gauge", "1 when the source's data is synthetic (a demo), not a real run.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_source_synthetic", NULL, a->src[i], NULL,
		       (a->src[i]->hello_flags & MFU_HELLO_SYNTHETIC) != 0);
	family(sb, "mfu_dropped_records_total", "counter", "Records the producer lost, by reason.");
	static const char *const reasons[MFU_DROP__COUNT] = {"buffer_full", "disconnected", "cupti", "encode",
								   "spool_full"};
	for (unsigned i = 0; i < a->nsrc; i++)
		for (unsigned r = 0; r < MFU_DROP__COUNT; r++) {
			char extra[48];
			snprintf(extra, sizeof(extra), "reason=\"%s\"", reasons[r]);
			sample(sb, "mfu_dropped_records_total", NULL, a->src[i], extra, (double)a->src[i]->dropped[r]);
		}
	family(sb, "mfu_source_cut_off", "gauge",
	       "1 when the source hung up without its goodbye record: what it had not sent by then is missing.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_source_cut_off", NULL, a->src[i], NULL, agg_source_cut_off(a->src[i]));
	family(sb, "mfu_lost_frames_total", "counter", "Frames missing from the source's sequence numbers.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_lost_frames_total", NULL, a->src[i], NULL, (double)a->src[i]->seq_gaps);
	family(sb, "mfu_implausible_records_total", "counter",
	       "Records dropped for timestamps far from the source's start (producer clock glitch).");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_implausible_records_total", NULL, a->src[i], NULL, (double)a->src[i]->bad_time);
	family(sb, "mfu_frames_total", "counter", "Frames received from the source.");
	for (unsigned i = 0; i < a->nsrc; i++)
		sample(sb, "mfu_frames_total", NULL, a->src[i], NULL, (double)a->src[i]->frames);
}

static void export_job(const struct agg *a, uint64_t now, struct strbuf *sb)
{
	/* Jobs are few; a quadratic pass over sources keeps this allocation-free. */
	static const char *const names[] = {"mfu_job_hfu_ratio", "mfu_job_mfu_ratio",
					    "mfu_job_executed_flops_per_second", "mfu_job_devices"};
	static const char *const helps[] = {
		"Job HFU: sum of executed FLOPs over the sum of peaks x window, all ranks.",
		"Job MFU: sum of declared model FLOPs over the sum of peaks x window, all ranks.",
		"Job executed FLOPs per second, all ranks.",
		"Devices reporting for the job."};
	for (unsigned k = 0; k < 4; k++) {
		family(sb, names[k], "gauge", helps[k]);
		for (unsigned i = 0; i < a->nsrc; i++) {
			const char *job = a->src[i]->job;
			int first = 1;
			for (unsigned j = 0; j < i; j++)
				if (!strcmp(a->src[j]->job, job))
					first = 0;
			if (!first)
				continue;
			for (unsigned w = 0; w < EXPORT_WINDOWS; w++) {
				struct figures acc;
				export_job_figures(a, job, export_windows[w].ns, now, &acc);
				double v = k == 0 ? acc.hfu
					   : k == 1 ? acc.mfu
					   : k == 2 ? (acc.wall_s > 0 ? acc.hw_flops / acc.wall_s : NAN)
						    : acc.devices;
				if (k == 3 && w > 0)
					break;
				if (isnan(v))
					continue;
				sb_printf(sb, "%s{job=\"", names[k]);
				sb_prom_label(sb, job, strlen(job));
				if (k == 3)
					sb_puts(sb, "\"} ");
				else
					sb_printf(sb, "\",window=\"%s\"} ", export_windows[w].label);
				sb_prom_double(sb, v);
				sb_puts(sb, "\n");
			}
		}
	}
}

const char *const export_reject_reasons[4] = {"uid", "no_token", "wrong_token", "hello_size"};

void export_prometheus(const struct agg *a, uint64_t now_mono_ns, const struct export_extra *x,
		       struct strbuf *out)
{
	export_windows_families(a, now_mono_ns, out);
	export_counters(a, out);
	export_gap_counters(a, out);
	export_info(a, out);
	export_job(a, now_mono_ns, out);
	family(out, "mfud_sources", "gauge", "Sources known to the collector.");
	sb_printf(out, "mfud_sources %u\n", a->nsrc);
	family(out, "mfud_stream_errors_total", "counter", "Connections dropped for malformed input.");
	sb_printf(out, "mfud_stream_errors_total %llu\n", (unsigned long long)(x ? x->stream_errors : 0));
	family(out, "mfud_rejected_connections_total", "counter",
	       "Producer connections refused: uid not allowed, missing or wrong token, oversized hello.");
	for (unsigned i = 0; i < 4; i++)
		sb_printf(out, "mfud_rejected_connections_total{reason=\"%s\"} %llu\n", export_reject_reasons[i],
			  (unsigned long long)(x ? x->rejected[i] : 0));
	family(out, "mfud_timed_out_connections_total", "counter",
	       "Producer connections closed for silence: no hello in time, or idle too long.");
	sb_printf(out, "mfud_timed_out_connections_total{phase=\"hello\"} %llu\n",
		  (unsigned long long)(x ? x->timed_out[0] : 0));
	sb_printf(out, "mfud_timed_out_connections_total{phase=\"idle\"} %llu\n",
		  (unsigned long long)(x ? x->timed_out[1] : 0));
	family(out, "mfud_hello_pid_mismatch_total", "counter",
	       "Hellos claiming a pid other than the kernel's (SO_PEERCRED); flagged, not refused.");
	sb_printf(out, "mfud_hello_pid_mismatch_total %llu\n", (unsigned long long)(x ? x->pid_mismatches : 0));
	family(out, "mfud_gap_analysis_enabled", "gauge",
	       "1 when gap analysis runs; 0 with --no-gaps (idle is then all unattributed).");
	sb_printf(out, "mfud_gap_analysis_enabled %d\n", !a->cfg.no_gaps);
	family(out, "mfud_bpf_enabled", "gauge",
	       "1 when the eBPF scheduler tracer runs; 0 with the reason it does not in the reason label.");
	sb_puts(out, "mfud_bpf_enabled{reason=\"");
	const char *why = x && x->bpf_reason ? x->bpf_reason : "not built";
	sb_prom_label(out, why, strlen(why));
	sb_printf(out, "\"} %d\n", x ? x->bpf_on : 0);
	if (!x || !x->bpf_on)
		return;
	static const char *const state[MFU_OFFCPU__COUNT] = {"runnable", "sleeping", "disk", "other"};
	family(out, "mfud_bpf_sources", "gauge", "Local sources whose threads are traced off-CPU.");
	sb_printf(out, "mfud_bpf_sources %u\n", x->bpf_sources);
	family(out, "mfud_bpf_switches_total", "counter", "sched_switch events the tracer ran for, all processes.");
	sb_printf(out, "mfud_bpf_switches_total %llu\n", (unsigned long long)x->bpf_switches);
	family(out, "mfud_bpf_events_total", "counter", "Off-CPU events read from the BPF ring buffer.");
	sb_printf(out, "mfud_bpf_events_total %llu\n", (unsigned long long)x->bpf_events);
	family(out, "mfud_bpf_ringbuf_drops_total", "counter", "Off-CPU events lost: BPF ring buffer full.");
	sb_printf(out, "mfud_bpf_ringbuf_drops_total %llu\n", (unsigned long long)x->bpf_drops);
	family(out, "mfud_bpf_missed_switch_ins_total", "counter",
	       "Traced threads the kernel ran again without a sched_switch; each such interval ends where the "
	       "thread's CPU time puts it.");
	sb_printf(out, "mfud_bpf_missed_switch_ins_total %llu\n", (unsigned long long)x->bpf_missed_in);
	family(out, "mfud_bpf_offcpu_seconds_total", "counter",
	       "Off-CPU time of traced threads, all sources, by state when they left the CPU.");
	for (unsigned i = 0; i < MFU_OFFCPU__COUNT; i++)
		sb_printf(out, "mfud_bpf_offcpu_seconds_total{state=\"%s\"} %.9f\n", state[i],
			  (double)x->bpf_offcpu_ns[i] / 1e9);
}

/* One synthetic source marks the whole view: its numbers are not a measurement. */
static int any_synthetic(const struct agg *a)
{
	for (unsigned i = 0; i < a->nsrc; i++)
		if (a->src[i]->hello_flags & MFU_HELLO_SYNTHETIC)
			return 1;
	return 0;
}

/* ---- gap analysis: what only the since-start view has ---- */

struct short_name {
	const char *name; /* points into a source's string table */
	uint64_t count;
};

static int short_name_cmp(const void *pa, const void *pb)
{
	const struct short_name *a = pa, *b = pb;
	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Short kernels by name over all sources, most first; *n gets how many.
 * Names a source never defined read "(unnamed)". */
static struct short_name *short_names_top(const struct agg *a, size_t *n, uint64_t *other)
{
	size_t cap = 0, k = 0;
	*other = 0;
	for (unsigned i = 0; i < a->nsrc; i++) {
		cap += a->src[i]->gaps.nshort_names;
		*other += a->src[i]->gaps.short_other;
	}
	struct short_name *v = calloc(cap ? cap : 1, sizeof(*v));
	if (!v) {
		*n = 0;
		return NULL;
	}
	for (unsigned i = 0; i < a->nsrc; i++) {
		const struct gaps_src *g = &a->src[i]->gaps;
		for (unsigned j = 0; j < g->nshort_names; j++) {
			uint32_t len;
			const char *name = agg_source_string(a->src[i], g->short_names[j].name_id, &len);
			if (!name)
				name = "(unnamed)";
			size_t m = 0;
			while (m < k && strcmp(v[m].name, name))
				m++;
			if (m == k)
				v[k++].name = name;
			v[m].count += g->short_names[j].count;
		}
	}
	qsort(v, k, sizeof(*v), short_name_cmp);
	*n = k;
	return v;
}

static void gap_hist_total(const struct agg *a, uint64_t hist[GAP_HIST_BUCKETS])
{
	memset(hist, 0, GAP_HIST_BUCKETS * sizeof(hist[0]));
	for (unsigned i = 0; i < a->nsrc; i++)
		for (unsigned di = 0; di < a->src[i]->ndev; di++)
			for (unsigned h = 0; h < GAP_HIST_BUCKETS; h++)
				hist[h] += a->src[i]->dev[di]->gaps.hist[h];
}

#define SHORT_TOP 10u

static void json_gaps(const struct agg *a, struct strbuf *sb)
{
	uint64_t hist[GAP_HIST_BUCKETS], other;
	size_t n;

	gap_hist_total(a, hist);
	sb_puts(sb, "\"gaps\":{\"gap_histogram\":[");
	for (unsigned h = 0; h < GAP_HIST_BUCKETS; h++) {
		sb_puts(sb, h ? ",{\"le_s\":" : "{\"le_s\":");
		if (h < GAP_HIST_BUCKETS - 1)
			sb_json_double(sb, (double)gap_hist_le_ns[h] / 1e9);
		else
			sb_puts(sb, "null");
		sb_printf(sb, ",\"count\":%llu}", (unsigned long long)hist[h]);
	}
	sb_puts(sb, "],\"short_kernels_top\":[");
	struct short_name *v = short_names_top(a, &n, &other);
	for (size_t i = 0; i < n && i < SHORT_TOP; i++) {
		sb_puts(sb, i ? ",{\"name\":" : "{\"name\":");
		sb_json_string(sb, v[i].name, strlen(v[i].name));
		sb_printf(sb, ",\"count\":%llu}", (unsigned long long)v[i].count);
	}
	free(v);
	sb_printf(sb, "],\"short_kernels_unnamed_overflow\":%llu}", (unsigned long long)other);
}

/* ---- JSON ---- */

static void json_num(struct strbuf *sb, const char *key, double v)
{
	sb_printf(sb, "\"%s\":", key);
	sb_json_double(sb, v);
}

static void json_figures(struct strbuf *sb, const struct figures *f)
{
	sb_puts(sb, "{");
	json_num(sb, "span_s", f->wall_s);
	sb_puts(sb, ",");
	json_num(sb, "hfu", f->hfu);
	sb_puts(sb, ",");
	json_num(sb, "mfu", f->mfu);
	sb_puts(sb, ",");
	json_num(sb, "hw_flops_per_s", f->wall_s > 0 ? f->hw_flops / f->wall_s : NAN);
	sb_puts(sb, ",");
	json_num(sb, "model_flops_per_s", f->wall_s > 0 ? f->model_flops / f->wall_s : NAN);
	sb_puts(sb, ",");
	json_num(sb, "gpu_busy", f->busy_ratio);
	sb_puts(sb, ",");
	json_num(sb, "kernels_per_s", f->wall_s > 0 ? f->kernels / f->wall_s : NAN);
	sb_puts(sb, ",");
	json_num(sb, "steps_per_s", f->wall_s > 0 ? f->steps / f->wall_s : NAN);
	sb_puts(sb, ",");
	json_num(sb, "coverage", f->coverage);
	sb_puts(sb, ",");
	json_num(sb, "gpu_idle", f->idle_ratio);
	sb_puts(sb, ",\"idle_s_by_cause\":{");
	for (unsigned c = 0; c < GAP__COUNT; c++) {
		json_num(sb, gap_cause_name(c), f->idle_cause_s[c]);
		sb_puts(sb, ",");
	}
	json_num(sb, "unattributed", f->idle_unattributed_s);
	sb_puts(sb, "},\"launch_latency_s\":{");
	json_num(sb, "p50", f->lat_p50_s);
	sb_puts(sb, ",");
	json_num(sb, "p90", f->lat_p90_s);
	sb_puts(sb, ",");
	json_num(sb, "p99", f->lat_p99_s);
	sb_puts(sb, ",");
	json_num(sb, "max", f->lat_max_s);
	sb_printf(sb, ",\"count\":%llu},", (unsigned long long)f->lat.count);
	json_num(sb, "short_kernels", f->short_kernels);
	sb_puts(sb, ",");
	json_num(sb, "short_kernel_share", f->short_share);
	sb_printf(sb, ",\"peak_dtype\":\"%s\"}", mfu_class_name(f->mfu_class));
}

struct exact {
	u128 gemm_flops, hw_flops, model_flops, remat_flops, by_class[MFU_CLASS_COUNT];
	uint64_t gemm_calls, kernels, kernel_ns, busy_ns, dropped;
	uint64_t lost_frames, cut_off; /* holes no drop count covers */
	int timing_known;
	uint64_t first, end;
};

static void exact_add_source(const struct agg *a, const struct agg_source *s, uint64_t now,
			     struct exact *e)
{
	uint64_t first, end;

	agg_source_span(a, s, now, &first, &end);
	if (!e->first || first < e->first)
		e->first = first;
	if (end > e->end)
		e->end = end;
	for (unsigned r = 0; r < MFU_DROP__COUNT; r++)
		e->dropped += s->dropped[r];
	e->lost_frames += s->seq_gaps;
	e->cut_off += agg_source_cut_off(s);
	if (s->degraded)
		e->timing_known = 0;
	for (unsigned i = 0; i < s->ndev; i++) {
		const struct agg_totals *t = &s->dev[i]->tot;
		e->gemm_flops += t->gemm_flops;
		e->model_flops += t->model_flops;
		e->remat_flops += t->remat_flops;
		for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
			e->hw_flops += t->flops[c];
			e->by_class[c] += t->flops[c];
		}
		e->gemm_calls += t->gemm_calls;
		e->kernels += t->kernels;
		e->kernel_ns += t->kernel_ns;
		e->busy_ns += t->busy_ns;
	}
}

static void json_u128(struct strbuf *sb, const char *key, u128 v)
{
	sb_printf(sb, "\"%s\":", key);
	sb_u128(sb, v);
}

static void json_exact(struct strbuf *sb, const struct exact *e)
{
	json_u128(sb, "gemm_calls", e->gemm_calls);
	sb_puts(sb, ",");
	json_u128(sb, "gemm_flops", e->gemm_flops);
	sb_puts(sb, ",");
	json_u128(sb, "hw_flops", e->hw_flops);
	sb_puts(sb, ",");
	json_u128(sb, "model_flops", e->model_flops);
	sb_puts(sb, ",");
	json_u128(sb, "remat_flops", e->remat_flops);
	sb_puts(sb, ",\"hw_flops_by_dtype\":{");
	int first = 1;
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
		if (!e->by_class[c])
			continue;
		sb_printf(sb, "%s\"%s\":", first ? "" : ",", mfu_class_name(c));
		sb_u128(sb, e->by_class[c]);
		first = 0;
	}
	sb_puts(sb, "},");
	if (e->timing_known) {
		json_u128(sb, "kernels", e->kernels);
		sb_printf(sb, ",\"kernel_time_s\":%.9f,\"gpu_busy_s\":%.9f", (double)e->kernel_ns / 1e9,
			  (double)e->busy_ns / 1e9);
	} else {
		sb_puts(sb, "\"kernels\":null,\"kernel_time_s\":null,\"gpu_busy_s\":null");
	}
	sb_printf(sb, ",\"wall_s\":%.9f,", (double)(e->end - e->first) / 1e9);
	json_u128(sb, "dropped_records", e->dropped);
}

void export_json_summary(const struct agg *a, uint64_t now, struct strbuf *sb)
{
	struct exact job = {.timing_known = 1};
	struct figures total;

	for (unsigned i = 0; i < a->nsrc; i++)
		exact_add_source(a, a->src[i], now, &job);
	export_job_figures(a, NULL, 0, now, &total);

	sb_printf(sb, "{\"version\":\"%s\",", MFU_VERSION);
	json_exact(sb, &job);
	sb_puts(sb, ",");
	json_num(sb, "hfu", total.hfu);
	sb_puts(sb, ",");
	json_num(sb, "mfu", total.mfu);
	sb_puts(sb, ",");
	json_num(sb, "peak_flops", total.mfu_peak_flops > 0 ? total.mfu_peak_flops : NAN);
	sb_puts(sb, ",\"peak_dtype\":");
	sb_json_string(sb, mfu_class_name(total.mfu_class), strlen(mfu_class_name(total.mfu_class)));

	/* One description when all devices agree, else "mixed". */
	char peak[200] = "unknown";
	int have = 0;
	for (unsigned i = 0; i < a->nsrc; i++)
		for (unsigned di = 0; di < a->src[i]->ndev; di++) {
			const struct agg_device *d = a->src[i]->dev[di];
			char p[200];
			export_peak_source(a, d, figures_mfu_class(a, d), p, sizeof(p));
			if (!have)
				snprintf(peak, sizeof(peak), "%s", p);
			else if (strcmp(peak, p))
				snprintf(peak, sizeof(peak), "mixed");
			have = 1;
		}
	sb_puts(sb, ",\"peak_source\":");
	sb_json_string(sb, peak, strlen(peak));
	sb_puts(sb, ",");
	json_gaps(a, sb);
	sb_printf(sb, ",\"sources\":%u,\"sources_cut_off\":%llu,\"lost_frames\":%llu,\"synthetic\":%s,\"windows\":{",
		  a->nsrc, (unsigned long long)job.cut_off, (unsigned long long)job.lost_frames,
		  any_synthetic(a) ? "true" : "false");
	for (unsigned w = 0; w < EXPORT_WINDOWS; w++) {
		struct figures f;
		export_job_figures(a, NULL, export_windows[w].ns, now, &f);
		sb_printf(sb, "%s\"%s\":", w ? "," : "", export_windows[w].label);
		json_figures(sb, &f);
	}
	sb_puts(sb, "},\"per_source\":[");
	for (unsigned i = 0; i < a->nsrc; i++) {
		const struct agg_source *s = a->src[i];
		struct exact e = {.timing_known = 1};
		exact_add_source(a, s, now, &e);
		sb_puts(sb, i ? ",{" : "{");
		sb_puts(sb, "\"host\":");
		sb_json_string(sb, s->host, strlen(s->host));
		sb_puts(sb, ",\"job\":");
		sb_json_string(sb, s->job, strlen(s->job));
		sb_puts(sb, ",\"producer\":");
		sb_json_string(sb, s->producer, strlen(s->producer));
		if (s->peer_pid_mismatch)
			sb_printf(sb, ",\"pid_mismatch\":true,\"peer_pid\":%llu",
				  (unsigned long long)s->peer_pid_mismatch);
		else
			sb_puts(sb, ",\"pid_mismatch\":false");
		sb_printf(sb, ",\"pid\":%llu,\"rank\":%lld,\"local_rank\":%lld,\"world_size\":%llu,"
			      "\"connected\":%s,\"goodbye\":%s,\"degraded\":%s,\"degraded_s\":%.9g,\"frames\":%llu,\"records\":%llu,"
			      "\"lost_frames\":%llu,\"implausible_records\":%llu,",
			  (unsigned long long)s->pid, (long long)s->rank, (long long)s->local_rank,
			  (unsigned long long)s->world_size, s->connected ? "true" : "false",
			  s->goodbye_ns ? "true" : "false", s->degraded ? "true" : "false", (double)agg_source_degraded_ns(s) / 1e9,
			  (unsigned long long)s->frames, (unsigned long long)s->records,
			  (unsigned long long)s->seq_gaps, (unsigned long long)s->bad_time);
		json_exact(sb, &e);
		sb_puts(sb, ",\"devices\":[");
		for (unsigned di = 0; di < s->ndev; di++) {
			const struct agg_device *d = s->dev[di];
			struct figures f;
			char p[200];
			figures_device(a, d, 0, now, &f);
			export_peak_source(a, d, f.mfu_class, p, sizeof(p));
			sb_printf(sb, "%s{\"index\":%u,\"name\":", di ? "," : "", d->index);
			sb_json_string(sb, d->name, strlen(d->name));
			sb_puts(sb, ",\"peak_source\":");
			sb_json_string(sb, p, strlen(p));
			sb_puts(sb, ",");
			json_num(sb, "peak_flops", f.mfu_peak_flops > 0 ? f.mfu_peak_flops : NAN);
			sb_puts(sb, ",\"total\":");
			json_figures(sb, &f);
			sb_puts(sb, "}");
		}
		sb_puts(sb, "]}");
	}
	sb_puts(sb, "]}\n");
}

/* ---- terminal ---- */

static void pct(struct strbuf *sb, const char *name, double v)
{
	if (isnan(v))
		sb_printf(sb, "  %s   n/a", name);
	else
		sb_printf(sb, "  %s %5.1f%%", name, v * 100);
}

void export_status_line(const struct agg *a, uint64_t window_ns, const char *label, uint64_t now,
			struct strbuf *sb)
{
	struct figures f;

	export_job_figures(a, NULL, window_ns, now, &f);
	sb_printf(sb, "[mfu %s] %8.1f TFLOP/s", label, f.wall_s > 0 ? f.hw_flops / f.wall_s / 1e12 : 0.0);
	pct(sb, "HFU", f.hfu);
	pct(sb, "MFU", f.mfu);
	pct(sb, "busy", f.busy_ratio);
	if (isnan(f.kernels))
		sb_puts(sb, "  kernels/s n/a");
	else
		sb_printf(sb, "  %.0f kernels/s", f.wall_s > 0 ? f.kernels / f.wall_s : 0.0);
	sb_printf(sb, "  (%u source%s)", a->nsrc, a->nsrc == 1 ? "" : "s");
}

static void row(struct strbuf *sb, const char *k, double v, int decimals, const char *unit)
{
	if (isnan(v))
		sb_printf(sb, "  %-22s unknown\n", k);
	else
		sb_printf(sb, "  %-22s %.*f%s\n", k, decimals, v, unit);
}

static void row_g(struct strbuf *sb, const char *k, double v)
{
	sb_printf(sb, "  %-22s %.6g\n", k, v);
}

void export_summary_table(const struct agg *a, uint64_t now, struct strbuf *sb)
{
	struct exact e = {.timing_known = 1};
	struct figures f;

	for (unsigned i = 0; i < a->nsrc; i++)
		exact_add_source(a, a->src[i], now, &e);
	export_job_figures(a, NULL, 0, now, &f);
	sb_puts(sb, "mfu summary");
	if (any_synthetic(a))
		sb_puts(sb, " (SYNTHETIC data, not a measurement)");
	sb_puts(sb, "\n");
	sb_printf(sb, "  %-22s %u\n", "sources", a->nsrc);
	row(sb, "wall", (double)(e.end - e.first) / 1e9, 3, " s");
	row(sb, "gemm calls", (double)e.gemm_calls, 0, "");
	row_g(sb, "gemm FLOPs", (double)e.gemm_flops);
	row_g(sb, "hardware FLOPs", (double)e.hw_flops);
	row_g(sb, "model FLOPs", (double)e.model_flops);
	row_g(sb, "remat FLOPs", (double)e.remat_flops);
	row(sb, "kernels", e.timing_known ? (double)e.kernels : NAN, 0, "");
	row(sb, "kernel time", e.timing_known ? (double)e.kernel_ns / 1e9 : NAN, 3, " s");
	row(sb, "GPU busy", e.timing_known ? (double)e.busy_ns / 1e9 : NAN, 3, " s");
	row(sb, "FLOP coverage", f.coverage * 100, 1, " % of kernel time");
	row(sb, "HFU", f.hfu * 100, 2, " %");
	row(sb, "MFU", f.model_declared ? f.mfu * 100 : NAN, 2, " %");
	if (!f.model_declared)
		sb_puts(sb, "  (MFU needs declared model FLOPs: mfu.step(model_flops=...) or MFU_MODEL_FLOPS_PER_STEP)\n");
	char peak[200] = "unknown";
	if (a->nsrc && a->src[0]->ndev)
		export_peak_source(a, a->src[0]->dev[0], f.mfu_class, peak, sizeof(peak));
	sb_printf(sb, "  %-22s ", "peak");
	if (f.mfu_peak_flops > 0)
		sb_printf(sb, "%.1f TFLOP/s %s dense, %s%s\n", f.mfu_peak_flops / 1e12, mfu_class_name(f.mfu_class),
			  peak, f.devices > 1 ? " (sum over devices)" : "");
	else
		sb_puts(sb, "unknown (device not in the table: use --peak-tflops)\n");
	row(sb, "dropped records", (double)e.dropped, 0, "");
	if (e.lost_frames)
		row(sb, "lost frames", (double)e.lost_frames, 0, " (sequence gaps: records missing, count unknown)");
	if (e.cut_off)
		sb_printf(sb, "  %-22s %llu source%s hung up without a goodbye: what %s had not sent is missing\n",
			  "cut off", (unsigned long long)e.cut_off, e.cut_off == 1 ? "" : "s",
			  e.cut_off == 1 ? "it" : "they");
}

static void lat_cell(struct strbuf *sb, const char *k, double s)
{
	if (isnan(s))
		sb_printf(sb, "  %s n/a", k);
	else
		sb_printf(sb, "  %s %.1f us", k, s * 1e6);
}

void export_gap_report(const struct agg *a, uint64_t now, struct strbuf *sb)
{
	struct figures f;
	uint64_t hist[GAP_HIST_BUCKETS], other, most = 0, gaps = 0;

	export_job_figures(a, NULL, 0, now, &f);
	sb_puts(sb, "gap analysis (since start, all devices)\n");
	if (isnan(f.idle_s)) {
		sb_puts(sb, "  unknown: a source has no kernel timing\n");
		return;
	}
	sb_printf(sb, "  %-22s %.1f %% of %.3f s device time (%.6f s)\n", "GPU idle", f.idle_ratio * 100,
		  f.span_s, f.idle_s);
	sb_printf(sb, "  %-22s %12s %10s\n", "idle by cause", "seconds", "% of idle");
	for (unsigned c = 0; c <= GAP__COUNT; c++) {
		double v = c < GAP__COUNT ? f.idle_cause_s[c] : f.idle_unattributed_s;
		sb_printf(sb, "    %-20s %12.6f %9.1f%%\n", c < GAP__COUNT ? gap_cause_name(c) : "unattributed", v,
			  f.idle_s > 0 ? v / f.idle_s * 100 : 0.0);
	}
	sb_printf(sb, "  %-22s", "launch latency");
	lat_cell(sb, "p50", f.lat_p50_s);
	lat_cell(sb, "p90", f.lat_p90_s);
	lat_cell(sb, "p99", f.lat_p99_s);
	lat_cell(sb, "max", f.lat_max_s);
	sb_printf(sb, "  (%llu launches)\n", (unsigned long long)f.lat.count);
	if (f.joined_kernels > 0)
		sb_printf(sb, "  %-22s %.0f of %.0f launched kernels (%.1f %%) ran shorter than their launch call\n",
			  "short kernels", f.short_kernels, f.joined_kernels, f.short_share * 100);
	else
		sb_printf(sb, "  %-22s unknown (no launch API records)\n", "short kernels");

	gap_hist_total(a, hist);
	for (unsigned h = 0; h < GAP_HIST_BUCKETS; h++) {
		most = hist[h] > most ? hist[h] : most;
		gaps += hist[h];
	}
	sb_printf(sb, "  gap lengths (%llu gaps)\n", (unsigned long long)gaps);
	for (unsigned h = 0; h < GAP_HIST_BUCKETS && gaps; h++) {
		char le[24];
		if (h == GAP_HIST_BUCKETS - 1)
			snprintf(le, sizeof(le), "> 1 s");
		else if (gap_hist_le_ns[h] < 1000000)
			snprintf(le, sizeof(le), "<= %llu us", (unsigned long long)(gap_hist_le_ns[h] / 1000));
		else if (gap_hist_le_ns[h] < 1000000000)
			snprintf(le, sizeof(le), "<= %llu ms", (unsigned long long)(gap_hist_le_ns[h] / 1000000));
		else
			snprintf(le, sizeof(le), "<= %llu s", (unsigned long long)(gap_hist_le_ns[h] / 1000000000));
		sb_printf(sb, "    %-10s %10llu ", le, (unsigned long long)hist[h]);
		unsigned bar = most ? (unsigned)((hist[h] * 40 + most - 1) / most) : 0;
		for (unsigned i = 0; i < bar; i++)
			sb_puts(sb, "#");
		sb_puts(sb, "\n");
	}

	size_t n;
	struct short_name *v = short_names_top(a, &n, &other);
	if (n) {
		sb_printf(sb, "  kernels shorter than their launch, top %u by count\n", SHORT_TOP);
		for (size_t i = 0; i < n && i < SHORT_TOP; i++) {
			sb_printf(sb, "    %10llu  ", (unsigned long long)v[i].count);
			/* producer text: printable bytes only, and not too much of it */
			size_t len = strlen(v[i].name);
			for (size_t j = 0; j < len && j < 100; j++) {
				unsigned char ch = (unsigned char)v[i].name[j];
				sb_printf(sb, "%c", ch < 0x20 || ch >= 0x7f ? '?' : ch);
			}
			sb_puts(sb, len > 100 ? "...\n" : "\n");
		}
		if (other)
			sb_printf(sb, "    %10llu  (names past the %u counted per source)\n", (unsigned long long)other,
				  GAPS_SHORT_NAMES);
	}
	free(v);
}

static void cell_pct(struct strbuf *sb, double v)
{
	if (isnan(v))
		sb_printf(sb, " %7s", "n/a");
	else
		sb_printf(sb, " %6.1f%%", v * 100);
}

/* IDLE, IDLE CAUSE (the dominant one), LAUNCH50, LAUNCH99 (us). */
static void cell_gaps(struct strbuf *sb, const struct figures *f)
{
	int c = figures_dominant_cause(f);
	cell_pct(sb, f->idle_ratio);
	sb_printf(sb, " %-17s", c >= 0 ? gap_cause_name((unsigned)c) : "-");
	if (isnan(f->lat_p50_s))
		sb_printf(sb, " %9s %9s", "-", "-");
	else
		sb_printf(sb, " %7.1fus %7.1fus", f->lat_p50_s * 1e6, f->lat_p99_s * 1e6);
}

void export_top_table(const struct agg *a, uint64_t now, struct strbuf *sb)
{
	struct figures job;

	export_job_figures(a, NULL, UINT64_C(10000000000), now, &job);
	sb_printf(sb, "mfu top: %u source%s, 10 s window", a->nsrc, a->nsrc == 1 ? "" : "s");
	if (any_synthetic(a))
		sb_puts(sb, "  (SYNTHETIC data)");
	sb_puts(sb, "\n");
	sb_printf(sb, "%-16.16s %-12.12s %5s %8s %3s %10s %8s %8s %8s %10s %8s %-17s %9s %9s %7s %s\n", "JOB", "HOST",
		  "RANK", "PID", "DEV", "TFLOP/s", "HFU", "MFU", "BUSY", "KERNELS/s", "IDLE", "IDLE CAUSE", "LAUNCH50",
		  "LAUNCH99", "DROPS", "STATE");
	for (unsigned i = 0; i < a->nsrc; i++) {
		const struct agg_source *s = a->src[i];
		uint64_t drops = 0;
		for (unsigned r = 0; r < MFU_DROP__COUNT; r++)
			drops += s->dropped[r];
		for (unsigned di = 0; di < s->ndev; di++) {
			struct figures f;
			figures_device(a, s->dev[di], UINT64_C(10000000000), now, &f);
			char rank[24] = "-";
			if (s->rank >= 0)
				snprintf(rank, sizeof(rank), "%lld", (long long)s->rank);
			/* producer text is shown raw only when printable */
			char job_txt[17], host_txt[13];
			snprintf(job_txt, sizeof(job_txt), "%.16s", s->job);
			snprintf(host_txt, sizeof(host_txt), "%.12s", s->host);
			for (char *c = job_txt; *c; c++)
				if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
					*c = '?';
			for (char *c = host_txt; *c; c++)
				if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
					*c = '?';
			sb_printf(sb, "%-16s %-12s %5s %8llu %3u %10.1f", job_txt, host_txt, rank,
				  (unsigned long long)s->pid, s->dev[di]->index,
				  f.span_s > 0 ? f.hw_flops / f.span_s / 1e12 : 0.0);
			cell_pct(sb, f.hfu);
			cell_pct(sb, f.mfu);
			cell_pct(sb, f.busy_ratio);
			if (isnan(f.kernels))
				sb_printf(sb, " %10s", "n/a");
			else
				sb_printf(sb, " %10.0f", f.span_s > 0 ? f.kernels / f.span_s : 0.0);
			cell_gaps(sb, &f);
			sb_printf(sb, " %7llu %s\n", (unsigned long long)drops,
				  !s->connected ? (agg_source_cut_off(s) ? "cut-off" : "gone") : s->degraded ? "degraded" : "up");
		}
	}
	sb_printf(sb, "%-16s %-12s %5s %8s %3u %10.1f", "job total", "", "", "", job.devices,
		  job.wall_s > 0 ? job.hw_flops / job.wall_s / 1e12 : 0.0);
	cell_pct(sb, job.hfu);
	cell_pct(sb, job.mfu);
	cell_pct(sb, job.busy_ratio);
	sb_printf(sb, " %10s", "");
	cell_gaps(sb, &job);
	sb_puts(sb, "\n");
}
