/* SPDX-License-Identifier: MIT */
/*
 * The formulas of doc/metrics.md, and nothing else.  HFU weighs each dtype
 * class's FLOPs by its own peak, so a job mixing bf16 and fp32 work is
 * measured against what the hardware could have done for each.
 */
#include <math.h>
#include <string.h>

#include "figures.h"

unsigned figures_mfu_class(const struct agg *a, const struct agg_device *d)
{
	if (d->declared_class)
		return d->declared_class;
	if (a->cfg.model_class)
		return a->cfg.model_class;
	unsigned best = 0;
	for (unsigned c = 1; c < MFU_CLASS_COUNT; c++)
		if (d->tot.flops[c] > (best ? d->tot.flops[best] : 0))
			best = c;
	return best;
}

static void from_totals(const struct agg_totals *t, double v[WF__COUNT])
{
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
		v[WF_FLOPS + c] = (double)t->flops[c];
	v[WF_MODEL_FLOPS] = (double)t->model_flops;
	v[WF_REMAT_FLOPS] = (double)t->remat_flops;
	v[WF_BUSY_NS] = (double)t->busy_ns;
	v[WF_KERNEL_NS] = (double)t->kernel_ns;
	v[WF_GEMM_KERNEL_NS] = (double)t->gemm_kernel_ns;
	v[WF_KNOWN_KERNEL_NS] = (double)t->known_kernel_ns;
	v[WF_KERNELS] = (double)t->kernels;
	v[WF_STEPS] = (double)t->steps;
	v[WF_STEP_NS] = (double)t->step_ns;
	v[WF_GEMM_CALLS] = (double)t->gemm_calls;
	v[WF_GEMM_FLOPS] = (double)t->gemm_flops;
}

void figures_device(const struct agg *a, const struct agg_device *d, uint64_t window_ns,
		    uint64_t now_mono_ns, struct figures *out)
{
	double v[WF__COUNT];
	const struct agg_source *s = d->src;

	memset(out, 0, sizeof(*out));
	out->devices = 1;
	uint64_t first, last;
	agg_source_span(a, s, now_mono_ns, &first, &last);
	if (window_ns) {
		/* A window counts only the part of it the source was alive for: a
		 * process that started 0.3 s ago, or ended, is not charged a whole
		 * second of peak. */
		uint64_t end = agg_source_window_end(a, s, now_mono_ns);
		uint64_t lo = end > window_ns ? end - window_ns : 0, hi = end;
		window_sum(&d->win, end, window_ns, v);
		gaps_lat_window(&d->gaps, end, window_ns, &out->lat);
		if (lo < first)
			lo = first;
		if (hi > last)
			hi = last;
		out->span_s = hi > lo ? (double)(hi - lo) / 1e9 : 0;
	} else {
		from_totals(&d->tot, v);
		v[WF_BUSY_ALL_NS] = (double)d->tot.busy_all_ns;
		for (unsigned c = 0; c < GAP__COUNT; c++)
			v[WF_IDLE_NS + c] = (double)d->gaps.idle_ns[c];
		v[WF_SHORT_KERNELS] = (double)d->gaps.short_kernels;
		v[WF_JOINED_KERNELS] = (double)d->gaps.joined_kernels;
		gaps_lat_window(&d->gaps, 0, 0, &out->lat);
		out->span_s = (double)(last - first) / 1e9;
	}

	out->wall_s = out->span_s;
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
		out->flops[c] = v[WF_FLOPS + c];
		out->hw_flops += out->flops[c];
	}
	out->model_flops = v[WF_MODEL_FLOPS];
	out->remat_flops = v[WF_REMAT_FLOPS];
	out->gemm_flops = v[WF_GEMM_FLOPS];
	out->gemm_calls = v[WF_GEMM_CALLS];
	out->steps = v[WF_STEPS];
	out->step_s = v[WF_STEP_NS] / 1e9;
	if (s->degraded) {
		out->busy_s = out->kernel_s = out->gemm_kernel_s = out->known_kernel_s = NAN;
		out->kernels = NAN;
		out->busy_all_s = out->idle_s = out->idle_unattributed_s = NAN;
		for (unsigned c = 0; c < GAP__COUNT; c++)
			out->idle_cause_s[c] = NAN;
	} else {
		out->busy_all_s = v[WF_BUSY_ALL_NS] / 1e9;
		/* Idle is what the span leaves: the window's alive part, less busy. */
		out->idle_s = out->span_s > out->busy_all_s ? out->span_s - out->busy_all_s : 0;
		for (unsigned c = 0; c < GAP__COUNT; c++)
			out->idle_cause_s[c] = v[WF_IDLE_NS + c] / 1e9;
		out->busy_s = v[WF_BUSY_NS] / 1e9;
		out->kernel_s = v[WF_KERNEL_NS] / 1e9;
		out->gemm_kernel_s = v[WF_GEMM_KERNEL_NS] / 1e9;
		out->known_kernel_s = v[WF_KNOWN_KERNEL_NS] / 1e9;
		out->kernels = v[WF_KERNELS];
	}
	out->short_kernels = v[WF_SHORT_KERNELS];
	out->joined_kernels = v[WF_JOINED_KERNELS];

	const char *origin = "unknown";
	out->mfu_class = figures_mfu_class(a, d);
	out->mfu_peak_flops = agg_device_peak(a, d, out->mfu_class, &origin);
	out->peak_origin = origin;

	/* FLOPs of no declared class (a region that named no dtype) are measured
	 * against the model's class.  A class with FLOPs but no known peak makes
	 * HFU unknown rather than quietly optimistic. */
	out->hw_peak_s = 0;
	int has_peak = d->peak != NULL;
	for (unsigned c = 1; c < MFU_CLASS_COUNT && !has_peak; c++)
		has_peak = a->cfg.have_override && a->cfg.override_tflops[c] > 0;
	if (!has_peak) /* an unplaced device: unknown even when idle */
		out->hw_peak_s = NAN;
	for (unsigned c = 0; c < MFU_CLASS_COUNT && has_peak; c++) {
		if (out->flops[c] <= 0)
			continue;
		const char *o;
		double p = c ? agg_device_peak(a, d, c, &o) : out->mfu_peak_flops;
		if (p <= 0) {
			out->hw_peak_s = NAN;
			break;
		}
		out->hw_peak_s += out->flops[c] / p;
	}
	out->model_declared = d->tot.model_flops > 0;
	/* Unknown without a declaration or a peak; 0 only for a known device that
	 * declared steps but ran none in this window. */
	out->model_peak_s = !out->model_declared || out->mfu_peak_flops <= 0 ? NAN
										 : out->model_flops / out->mfu_peak_flops;
	figures_finish(out);
	if (out->span_s <= 0)
		out->devices = 0; /* not alive in this window: no member of any aggregate */
}

void figures_zero(struct figures *acc)
{
	memset(acc, 0, sizeof(*acc));
	acc->peak_origin = NULL;
}

void figures_add(struct figures *acc, const struct figures *f)
{
	if (!f->devices)
		return;
	acc->span_s += f->span_s;
	if (f->wall_s > acc->wall_s)
		acc->wall_s = f->wall_s;
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
		acc->flops[c] += f->flops[c];
	acc->hw_flops += f->hw_flops;
	acc->model_flops += f->model_flops;
	acc->remat_flops += f->remat_flops;
	acc->gemm_flops += f->gemm_flops;
	acc->gemm_calls += f->gemm_calls;
	acc->busy_s += f->busy_s; /* NaN stays NaN: one untimed device makes the sum unknown */
	acc->kernel_s += f->kernel_s;
	acc->gemm_kernel_s += f->gemm_kernel_s;
	acc->known_kernel_s += f->known_kernel_s;
	acc->kernels += f->kernels;
	acc->steps += f->steps;
	acc->step_s += f->step_s;
	acc->busy_all_s += f->busy_all_s;
	acc->idle_s += f->idle_s;
	for (unsigned c = 0; c < GAP__COUNT; c++)
		acc->idle_cause_s[c] += f->idle_cause_s[c];
	acc->short_kernels += f->short_kernels;
	acc->joined_kernels += f->joined_kernels;
	lat_sketch_merge(&acc->lat, &f->lat);
	acc->hw_peak_s += f->hw_peak_s;
	acc->model_peak_s += f->model_peak_s;
	/* A sum of peaks with one unknown member is unknown, not partial. */
	acc->mfu_peak_flops += f->mfu_peak_flops > 0 ? f->mfu_peak_flops : NAN;
	acc->model_declared = acc->devices ? acc->model_declared && f->model_declared : f->model_declared;
	if (!acc->devices) {
		acc->mfu_class = f->mfu_class;
		acc->peak_origin = f->peak_origin;
	} else {
		if (acc->mfu_class != f->mfu_class)
			acc->mfu_class = 0;
		if (acc->peak_origin && strcmp(acc->peak_origin, f->peak_origin) != 0)
			acc->peak_origin = "mixed";
	}
	acc->devices += f->devices;
}

/* HFU = sum_c F_c / P_c / span; MFU = model FLOPs / P_model / span.  For a
 * job, numerators and spans are summed over devices first. */
void figures_finish(struct figures *acc)
{
	if (!acc->peak_origin)
		acc->peak_origin = "unknown";
	if (acc->span_s <= 0) {
		acc->hfu = acc->mfu = acc->busy_ratio = NAN;
	} else {
		acc->hfu = acc->hw_peak_s / acc->span_s; /* NaN when a needed peak is unknown */
		acc->busy_ratio = acc->busy_s / acc->span_s;
		/* Nothing declared is "unknown", not 0 %. */
		acc->mfu = acc->model_declared ? acc->model_peak_s / acc->span_s : NAN;
	}
	acc->coverage = acc->kernel_s > 0 ? acc->known_kernel_s / acc->kernel_s : NAN;

	acc->idle_ratio = acc->span_s > 0 ? acc->idle_s / acc->span_s : NAN;
	double classified = 0;
	for (unsigned c = 0; c < GAP__COUNT; c++)
		classified += acc->idle_cause_s[c];
	/* Leading and trailing idle, and gaps the watermark has not reached.
	 * A gap straddling the window's start is classified in full but lies
	 * partly outside: pro rata keeps classified <= idle up to rounding. */
	acc->idle_unattributed_s = acc->idle_s > classified ? acc->idle_s - classified : isnan(classified) ? NAN : 0;
	acc->short_share = acc->joined_kernels > 0 ? acc->short_kernels / acc->joined_kernels : NAN;
	acc->lat_p50_s = lat_sketch_quantile(&acc->lat, 0.50) / 1e9;
	acc->lat_p90_s = lat_sketch_quantile(&acc->lat, 0.90) / 1e9;
	acc->lat_p99_s = lat_sketch_quantile(&acc->lat, 0.99) / 1e9;
	acc->lat_max_s = acc->lat.count ? (double)acc->lat.max_ns / 1e9 : NAN;
}

int figures_dominant_cause(const struct figures *f)
{
	int best = -1;
	for (unsigned c = 0; c < GAP__COUNT; c++)
		if (f->idle_cause_s[c] > 0 && (best < 0 || f->idle_cause_s[c] > f->idle_cause_s[best]))
			best = (int)c;
	return best;
}
