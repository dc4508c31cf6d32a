/* SPDX-License-Identifier: MIT */
/*
 * Window maths against hand-computed cases: pro-rata at window edges, the
 * busy union of overlapping streams (in and out of arrival order), idle gaps,
 * steps spanning windows, and HFU/MFU from the figures formulas.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agg.h"
#include "figures.h"
#include "window.h"

#define MS UINT64_C(1000000)
#define S UINT64_C(1000000000)
/* Windows start well after 0 so that none is cut off by the start of time. */
#define T0 (UINT64_C(1700000000) * S)

static void assert_near(double got, double want)
{
	double tol = 1e-9 * (fabs(want) > 1 ? fabs(want) : 1);
	if (fabs(got - want) > tol)
		fail_msg("got %.12g, want %.12g", got, want);
}

static struct window *new_window(void)
{
	struct window *w = malloc(sizeof(*w));
	window_init(w);
	return w;
}

static void test_kernel_straddling_an_edge_is_split_pro_rata(void **state)
{
	(void)state;
	struct window *w = new_window();
	double v[WF__COUNT];
	/* 100 ms kernel, 50 ms on each side of T0 + 1 s */
	window_add_span(w, WF_FLOPS + MFU_CLASS_BF16, T0 + 950 * MS, T0 + 1050 * MS, 1000);
	window_sum(w, T0 + 1 * S, 1 * S, v);
	assert_near(v[WF_FLOPS + MFU_CLASS_BF16], 500);
	window_sum(w, T0 + 2 * S, 1 * S, v);
	assert_near(v[WF_FLOPS + MFU_CLASS_BF16], 500);
	window_sum(w, T0 + 10 * S, 10 * S, v);
	assert_near(v[WF_FLOPS + MFU_CLASS_BF16], 1000);
	/* uneven split: 30 ms before the edge, 70 ms after */
	window_add_span(w, WF_FLOPS + MFU_CLASS_FP16, T0 + 2970 * MS, T0 + 3070 * MS, 100);
	window_sum(w, T0 + 3 * S, 1 * S, v);
	assert_near(v[WF_FLOPS + MFU_CLASS_FP16], 30);
	window_sum(w, T0 + 4 * S, 1 * S, v);
	assert_near(v[WF_FLOPS + MFU_CLASS_FP16], 70);
	free(w);
}

static void test_span_over_many_buckets_sums_to_its_amount(void **state)
{
	(void)state;
	struct window *w = new_window();
	double v[WF__COUNT];
	window_add_span(w, WF_MODEL_FLOPS, T0 + 123 * MS, T0 + 7654 * MS, 7531);
	window_sum(w, T0 + 10 * S, 10 * S, v);
	assert_near(v[WF_MODEL_FLOPS], 7531);
	window_sum(w, T0 + 5 * S, 1 * S, v); /* a fully covered second */
	assert_near(v[WF_MODEL_FLOPS], 1000);
	free(w);
}

static void test_overlapping_streams_count_busy_time_once(void **state)
{
	(void)state;
	struct window *w = new_window();
	struct busy b;
	double v[WF__COUNT];
	busy_init(&b);
	/* stream 1: [100, 500) ms; stream 2: [300, 700) ms; union 600 ms */
	assert_int_equal(busy_add(&b, w, NULL, T0 + 100 * MS, T0 + 500 * MS), 400 * MS);
	assert_int_equal(busy_add(&b, w, NULL, T0 + 300 * MS, T0 + 700 * MS), 200 * MS);
	window_sum(w, T0 + 1 * S, 1 * S, v);
	assert_near(v[WF_BUSY_NS], 600.0 * MS);
	busy_free(&b);
	free(w);
}

static void test_out_of_order_arrival_gives_the_same_union(void **state)
{
	(void)state;
	struct window *w = new_window();
	struct busy b;
	double v[WF__COUNT];
	busy_init(&b);
	/* arrive late-first: [300,700), [800,900), then [100,500), then [650, 850) */
	busy_add(&b, w, NULL, T0 + 300 * MS, T0 + 700 * MS);
	busy_add(&b, w, NULL, T0 + 800 * MS, T0 + 900 * MS);
	assert_int_equal(busy_add(&b, w, NULL, T0 + 100 * MS, T0 + 500 * MS), 200 * MS);
	assert_int_equal(busy_add(&b, w, NULL, T0 + 650 * MS, T0 + 850 * MS), 100 * MS);
	window_sum(w, T0 + 1 * S, 1 * S, v);
	assert_near(v[WF_BUSY_NS], 800.0 * MS); /* [100, 900) */
	assert_int_equal(b.n, 1);
	busy_free(&b);
	free(w);
}

static void test_random_intervals_match_a_brute_force_union(void **state)
{
	(void)state;
	enum { SLOTS = 20000, N = 3000 };
	static uint8_t covered[SLOTS];
	struct window *w = new_window();
	struct busy b;
	uint64_t rng = 12345, total = 0;
	busy_init(&b);
	memset(covered, 0, sizeof(covered));
	for (int i = 0; i < N; i++) {
		/* mostly increasing starts with jitter, so arrival is out of order
		 * the way merged CUPTI buffers are */
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t base = (uint64_t)i * SLOTS / N;
		uint64_t jitter = (rng >> 33) % 40;
		uint64_t s = base > jitter ? base - jitter : 0;
		uint64_t len = 1 + (rng >> 50) % 30;
		uint64_t e = s + len < SLOTS ? s + len : SLOTS;
		total += busy_add(&b, w, NULL, T0 + s * 1000, T0 + e * 1000);
		for (uint64_t t = s; t < e; t++)
			covered[t] = 1;
	}
	uint64_t want = 0;
	for (int t = 0; t < SLOTS; t++)
		want += covered[t];
	assert_int_equal(b.clipped_ns, 0);
	assert_int_equal(total, want * 1000);
	busy_free(&b);
	free(w);
}

static void test_idle_gaps_are_not_busy(void **state)
{
	(void)state;
	struct window *w = new_window();
	struct busy b;
	double v[WF__COUNT];
	busy_init(&b);
	busy_add(&b, w, NULL, T0 + 100 * MS, T0 + 200 * MS);
	busy_add(&b, w, NULL, T0 + 500 * MS, T0 + 600 * MS);
	busy_add(&b, w, NULL, T0 + 3500 * MS, T0 + 3600 * MS);
	window_sum(w, T0 + 1 * S, 1 * S, v);
	assert_near(v[WF_BUSY_NS], 200.0 * MS);
	window_sum(w, T0 + 3 * S, 1 * S, v);
	assert_near(v[WF_BUSY_NS], 0);
	window_sum(w, T0 + 10 * S, 10 * S, v);
	assert_near(v[WF_BUSY_NS], 300.0 * MS);
	busy_free(&b);
	free(w);
}

static void test_data_older_than_the_ring_is_counted_not_kept(void **state)
{
	(void)state;
	struct window *w = new_window();
	double v[WF__COUNT];
	window_add_at(w, WF_KERNELS, T0 + 200 * S, 1);
	window_add_at(w, WF_KERNELS, T0 + 1 * S, 1); /* 199 s older than the newest */
	assert_int_equal(w->too_late, 1);
	window_sum(w, T0 + 2 * S, 1 * S, v);
	assert_near(v[WF_KERNELS], 0);
	free(w);
}

static void test_busy_union_grows_on_demand_up_to_its_bound(void **state)
{
	(void)state;
	struct window *w = new_window();
	struct busy b;
	busy_init(&b);
	assert_null(b.iv);
	busy_add(&b, w, NULL, T0, T0 + 1000);
	assert_int_equal(b.cap, BUSY_MIN_CAP);
	/* disjoint intervals in order: the array doubles up to BUSY_KEEP, then
	 * the older half is forgotten and its time settled */
	for (uint64_t i = 1; i < BUSY_KEEP + 10; i++)
		busy_add(&b, w, NULL, T0 + i * 2000, T0 + i * 2000 + 1000);
	assert_int_equal(b.cap, BUSY_KEEP);
	assert_true(b.n <= BUSY_KEEP);
	assert_int_equal(b.floor, T0 + (BUSY_KEEP / 2 - 1) * 2000 + 1000);
	/* time before the floor is not counted again */
	assert_int_equal(busy_add(&b, w, NULL, T0 + 1500, T0 + 2500), 0);
	assert_int_equal(b.clipped_ns, 1000);
	busy_free(&b);
	assert_null(b.iv);
	free(w);
}

static int bucket_fields_equal(const struct window *a, const struct window *b, enum window_field fa,
			       enum window_field fb)
{
	for (unsigned i = 0; i < WINDOW_BUCKETS; i++)
		if (a->ring[i].index != b->ring[i].index ||
		    memcmp(&a->ring[i].v[fa], &b->ring[i].v[fb], sizeof(double)))
			return 0;
	return 1;
}

static void test_a_mirrored_union_adds_what_a_second_union_would(void **state)
{
	(void)state;
	struct window *w1 = new_window(), *w2 = new_window();
	struct busy m, k, all;
	uint64_t rng = 99, tm = 0, tk = 0, tall = 0;
	busy_init(&m);
	busy_init(&k);
	busy_init(&all);
	m.mirror = WF_BUSY_ALL_NS;
	all.field = WF_BUSY_ALL_NS;
	/* Out-of-order intervals, some across bucket edges, some long: one
	 * mirrored union must leave every bucket bit for bit as two unions fed
	 * the same would; then a clone goes on as the second union. */
	for (int i = 0; i < 20000; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t s = T0 + (uint64_t)i * 37000 - (rng >> 40) % 2000000;
		uint64_t e = s + 1 + (rng >> 20) % ((rng >> 58) ? 20000 : 250000000); /* some past a bucket */
		int copy = i > 15000 && (rng >> 10) % 5 == 0;
		struct window_bucket *h1 = window_bucket_of(w1, s, e), *h2 = window_bucket_of(w2, s, e);
		if (i == 15000) {
			assert_int_equal(busy_clone(&all, &k, WF_BUSY_ALL_NS), 0);
			assert_int_equal(busy_clone(&m, &k, WF_BUSY_NS), 0); /* the split, as agg.c makes it */
			m.mirror = WF__COUNT;
			tall = tk;
			tm = tk;
		}
		if (i < 15000) {
			uint64_t a = busy_add(&m, w1, h1, s, e);
			tm += a;
			uint64_t b1 = busy_add(&k, w2, h2, s, e), b2 = busy_add(&all, w2, h2, s, e);
			assert_int_equal(a, b1);
			assert_int_equal(a, b2);
			tk += b1;
		} else if (copy) {
			tall += busy_add(&all, w2, h2, s, e);
		} else {
			tm += busy_add(&m, w1, h1, s, e);
			tk += busy_add(&k, w2, h2, s, e);
			tall += busy_add(&all, w2, h2, s, e);
		}
		if (i == 14999) {
			assert_true(bucket_fields_equal(w1, w2, WF_BUSY_NS, WF_BUSY_NS));
			assert_true(bucket_fields_equal(w1, w2, WF_BUSY_ALL_NS, WF_BUSY_ALL_NS));
		}
	}
	assert_int_equal(tm, tk);
	assert_true(tall >= tk); /* kernels and copies cover at least the kernels */
	assert_true(bucket_fields_equal(w1, w2, WF_BUSY_NS, WF_BUSY_NS));
	busy_free(&m);
	busy_free(&k);
	busy_free(&all);
	free(w1);
	free(w2);
}

/* ---- through the model: records -> agg -> figures ---- */

struct fixture {
	struct agg *agg;
	struct agg_source *src;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct agg_config cfg = {.offline = 1, .have_override = 1};
	cfg.override_tflops[MFU_CLASS_BF16] = 1000; /* 1e15 FLOP/s: round numbers */
	cfg.override_tflops[MFU_CLASS_FP32] = 50;
	if (agg_new(&cfg, &f->agg))
		return -1;
	struct mfu_rec_hello h = {.time_ns = T0, .pid = 42, .rank = 0, .local_rank = 0,
				  .host = "node", .host_len = 4, .has_device = 1};
	h.device.name = "Test GPU";
	h.device.name_len = 8;
	if (agg_hello(f->agg, &h, "test", 0, &f->src))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	agg_free(f->agg);
	free(f);
	return 0;
}

static void kernel(struct agg_source *s, uint64_t start, uint64_t end, unsigned cls, uint64_t flops,
		   uint64_t flags)
{
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	r.u.kernel.start_ns = start;
	r.u.kernel.end_ns = end;
	r.u.kernel.flags = cls | flags;
	r.u.kernel.flops = flops;
	assert_int_equal(agg_source_record(s, &r, 0), 0);
}

static void step(struct agg_source *s, uint64_t begin, uint64_t end, uint64_t model_flops)
{
	struct mfu_record r = {.type = MFU_REC_STEP};
	r.u.step.begin_ns = begin;
	r.u.step.end_ns = end;
	r.u.step.model_flops = model_flops;
	assert_int_equal(agg_source_record(s, &r, 0), 0);
}

static void test_step_spanning_two_windows(void **state)
{
	struct fixture *f = *state;
	struct figures a, b;
	/* step [0.8 s, 1.3 s) declaring 5e12 model FLOPs: 2e12 before the edge, 3e12 after */
	step(f->src, T0 + 800 * MS, T0 + 1300 * MS, 5000000000000ull);
	kernel(f->src, T0 + 1900 * MS, T0 + 2 * S, MFU_CLASS_BF16, 1, 0); /* move "now" to T0+2 s */
	figures_device(f->agg, f->src->dev[0], 1 * S, 0, &b);
	figures_device(f->agg, f->src->dev[0], 2 * S, 0, &a);
	assert_near(b.model_flops, 3e12);
	assert_near(b.steps, 1);
	assert_near(b.step_s, 0.5);
	assert_near(a.model_flops, 5e12);
	/* MFU over the last second: 3e12 / (1 s * 1e15) */
	assert_near(b.mfu, 3e-3);
}

static void test_hfu_weighs_each_class_by_its_peak_and_remat_is_not_model(void **state)
{
	struct fixture *f = *state;
	struct figures fig;
	/* in [T0, T0+1 s): 4e14 bf16 FLOPs (0.4 s at peak), 1e13 fp32 (0.2 s at
	 * peak), 1e14 of the bf16 are recomputation */
	kernel(f->src, T0 + 100 * MS, T0 + 400 * MS, MFU_CLASS_BF16, 300000000000000ull, 0);
	kernel(f->src, T0 + 200 * MS, T0 + 500 * MS, MFU_CLASS_BF16, 100000000000000ull, MFU_KF_REMAT);
	kernel(f->src, T0 + 600 * MS, T0 + 700 * MS, MFU_CLASS_FP32, 10000000000000ull, 0);
	step(f->src, T0, T0 + 1 * S, 300000000000000ull);
	figures_device(f->agg, f->src->dev[0], 1 * S, 0, &fig);
	assert_near(fig.hw_flops, 4.1e14);
	assert_near(fig.remat_flops, 1e14);
	assert_near(fig.hfu, 0.4 + 0.2);
	/* MFU against bf16, the dominant class: 3e14 / 1e15 */
	assert_int_equal(fig.mfu_class, MFU_CLASS_BF16);
	assert_near(fig.mfu, 0.3);
	assert_true(fig.hfu >= fig.mfu);
	assert_near(fig.busy_s, 0.5); /* [100, 500) and [600, 700) */
	assert_near(fig.kernel_s, 0.7);
	assert_string_equal(fig.peak_origin, "override");
}

static void test_untimed_gemm_counts_nested_gemm_does_not(void **state)
{
	struct fixture *f = *state;
	struct mfu_record r = {.type = MFU_REC_GEMM};
	struct figures fig;
	r.u.gemm.start_ns = T0 + 100 * MS;
	r.u.gemm.end_ns = T0 + 101 * MS;
	r.u.gemm.flops = 1000;
	r.u.gemm.flags = MFU_CLASS_BF16 | MFU_KF_UNTIMED;
	assert_int_equal(agg_source_record(f->src, &r, 0), 0);
	r.u.gemm.flags = MFU_CLASS_BF16 | MFU_KF_NESTED | MFU_KF_UNTIMED;
	assert_int_equal(agg_source_record(f->src, &r, 0), 0);
	r.u.gemm.flags = MFU_CLASS_BF16; /* timed: its kernels carry the FLOPs */
	assert_int_equal(agg_source_record(f->src, &r, 0), 0);
	figures_device(f->agg, f->src->dev[0], 0, 0, &fig);
	assert_near(fig.gemm_calls, 2);
	assert_near(fig.gemm_flops, 2000);
	assert_near(fig.hw_flops, 1000);
}

static void test_unknown_peak_gives_unknown_hfu_and_no_declaration_gives_unknown_mfu(void **state)
{
	struct fixture *f = *state;
	struct figures fig;
	kernel(f->src, T0 + 100 * MS, T0 + 200 * MS, MFU_CLASS_FP8, 1000, 0); /* no fp8 peak */
	figures_device(f->agg, f->src->dev[0], 1 * S, 0, &fig);
	assert_true(isnan(fig.hfu));
	assert_true(isnan(fig.mfu));
}

static void test_window_counts_only_the_part_the_source_was_alive(void **state)
{
	struct fixture *f = *state;
	struct figures fig;
	/* hello at T0, newest data T0 + 300 ms: a 1 s window ending at T0 + 300 ms
	 * (offline) has 300 ms of life in it, and 6e13 FLOPs in 300 ms at 1e15/s
	 * is 20 % */
	kernel(f->src, T0 + 100 * MS, T0 + 300 * MS, MFU_CLASS_BF16, 60000000000000ull, 0);
	figures_device(f->agg, f->src->dev[0], 1 * S, 0, &fig);
	assert_near(fig.span_s, 0.3);
	assert_near(fig.hfu, 0.2);
	assert_int_equal(fig.devices, 1);
}

static void test_degraded_source_has_unknown_kernel_time(void **state)
{
	struct fixture *f = *state;
	struct figures fig;
	struct mfu_record r = {.type = MFU_REC_STATUS};
	r.u.status.flags = MFU_STATUS_DEGRADED;
	r.u.status.time_ns = T0;
	assert_int_equal(agg_source_record(f->src, &r, 0), 0);
	figures_device(f->agg, f->src->dev[0], 0, 0, &fig);
	assert_true(isnan(fig.busy_s));
	assert_true(isnan(fig.kernel_s));
}

static void test_job_aggregate_is_sum_of_flops_over_sum_of_peaks(void **state)
{
	struct fixture *f = *state;
	struct figures d0, d1, job;
	kernel(f->src, T0 + 100 * MS, T0 + 200 * MS, MFU_CLASS_BF16, 200000000000000ull, 0);
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	r.u.kernel.device = 1;
	r.u.kernel.start_ns = T0 + 300 * MS;
	r.u.kernel.end_ns = T0 + 400 * MS;
	r.u.kernel.flags = MFU_CLASS_BF16;
	r.u.kernel.flops = 600000000000000ull;
	assert_int_equal(agg_source_record(f->src, &r, 0), 0);
	/* the source lives through [T0, T0 + 1 s): both devices are charged 1 s */
	kernel(f->src, T0 + 990 * MS, T0 + 1 * S, MFU_CLASS_NONE, 0, 0);
	figures_device(f->agg, f->src->dev[0], 1 * S, 0, &d0);
	figures_device(f->agg, f->src->dev[1], 1 * S, 0, &d1);
	figures_zero(&job);
	figures_add(&job, &d0);
	figures_add(&job, &d1);
	figures_finish(&job);
	/* (2e14 + 6e14) / (1 s * (1e15 + 1e15)) */
	assert_near(job.hfu, 0.4);
	assert_near(d0.hfu, 0.2);
	assert_near(d1.hfu, 0.6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_straddling_an_edge_is_split_pro_rata),
		cmocka_unit_test(test_span_over_many_buckets_sums_to_its_amount),
		cmocka_unit_test(test_overlapping_streams_count_busy_time_once),
		cmocka_unit_test(test_out_of_order_arrival_gives_the_same_union),
		cmocka_unit_test(test_random_intervals_match_a_brute_force_union),
		cmocka_unit_test(test_idle_gaps_are_not_busy),
		cmocka_unit_test(test_data_older_than_the_ring_is_counted_not_kept),
		cmocka_unit_test(test_busy_union_grows_on_demand_up_to_its_bound),
		cmocka_unit_test(test_a_mirrored_union_adds_what_a_second_union_would),
		cmocka_unit_test_setup_teardown(test_step_spanning_two_windows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hfu_weighs_each_class_by_its_peak_and_remat_is_not_model,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_untimed_gemm_counts_nested_gemm_does_not, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_unknown_peak_gives_unknown_hfu_and_no_declaration_gives_unknown_mfu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_counts_only_the_part_the_source_was_alive, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_degraded_source_has_unknown_kernel_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_aggregate_is_sum_of_flops_over_sum_of_peaks, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
