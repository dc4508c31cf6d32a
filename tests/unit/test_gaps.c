/* SPDX-License-Identifier: MIT */
/*
 * Launch-gap analysis against hand-computed timelines: one gap of every
 * cause, overlapping streams that leave no gap, copies filling a gap, a gap
 * across a window bucket edge, the same timeline in shuffled arrival order,
 * late intervals, off-CPU records from a socket, the settle watermark, the
 * latency sketch's percentiles and the join table's bound.
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
#include "export.h"
#include "figures.h"
#include "gaps.h"

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)
#define S UINT64_C(1000000000)
#define T0 (UINT64_C(1700000000) * S)

struct fx {
	struct agg *a;
	struct agg_source *s;
};

static struct fx *fx_new(int offline, uint64_t settle_ns)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct agg_config cfg = {.offline = offline, .settle_ns = settle_ns};
	struct mfu_rec_hello h = {.time_ns = T0 - S, .pid = 7, .rank = -1, .local_rank = -1,
				  .host = "h", .host_len = 1, .job = "j", .job_len = 1};
	assert_int_equal(agg_new(&cfg, &f->a), 0);
	assert_int_equal(agg_hello(f->a, &h, "test", 1, &f->s), 0);
	return f;
}

static void fx_free(struct fx *f)
{
	agg_free(f->a);
	free(f);
}

static void put(struct fx *f, const struct mfu_record *r)
{
	assert_int_equal(agg_source_record(f->s, r, 1), 0);
}

static void kernel(struct fx *f, uint64_t stream, uint64_t start, uint64_t end, uint64_t corr, uint64_t name)
{
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	r.u.kernel = (struct mfu_rec_kernel){.start_ns = T0 + start, .end_ns = T0 + end, .stream = stream,
					     .name_id = name, .corr = corr};
	put(f, &r);
}

static void api(struct fx *f, uint64_t kind, int64_t start, int64_t end, uint64_t tid, uint64_t corr)
{
	struct mfu_record r = {.type = MFU_REC_API};
	r.u.api = (struct mfu_rec_api){.start_ns = T0 + (uint64_t)start, .end_ns = T0 + (uint64_t)end, .tid = tid,
				       .cbid = 307, .corr = corr, .kind = kind};
	put(f, &r);
}

static void copy(struct fx *f, uint64_t start, uint64_t end, uint64_t corr)
{
	struct mfu_record r = {.type = MFU_REC_COPY};
	r.u.copy = (struct mfu_rec_copy){.start_ns = T0 + start, .end_ns = T0 + end, .stream = 3,
					 .op = MFU_COPY_MEMCPY, .kind = 1, .bytes = 4096, .corr = corr};
	put(f, &r);
}

static void offcpu(struct fx *f, uint64_t start, uint64_t end, uint64_t tid)
{
	struct mfu_record r = {.type = MFU_REC_OFFCPU};
	r.u.offcpu = (struct mfu_rec_offcpu){.start_ns = T0 + start, .end_ns = T0 + end, .tid = tid,
					     .state = MFU_OFFCPU_SLEEPING};
	put(f, &r);
}

/* The timeline of doc/metrics.md's worked example, one gap per cause (us):
 *   K1 [0,10)     L1 [-5,-3)
 *   sync S [9,30)                 gap [10,40)   30 sync        (S.start <= 10 < S.end)
 *   K2 [40,50)    L2 [31,33)
 *   offcpu tid 1 [55,90)          gap [50,100)  50 host_offcpu (35 of 50 off-CPU)
 *   K3 [100,110)  L3 [60,62)
 *   K4 [120,128)  L4 [105,115)    gap [110,120) 10 host_launch_bound (L4 ends at 115 > 110);
 *                                 K4 (8) is shorter than L4 (10)
 *   K5 [135,140)  L5 [121,122)    gap [128,135)  7 kernel_wait (< 10, launched at 122)
 *   K6 [200,210)  L6 [125,126)    gap [140,200) 60 other (launched, but long)
 *   K7 [212,220)  no launch       gap [210,212)  2 other (launch unknown)
 * Latencies K - L start: 5 9 40 15 14 75 us. */
enum { E_K1, E_K2, E_K3, E_K4, E_K5, E_K6, E_K7, E_L1, E_L2, E_L3, E_L4, E_L5, E_L6, E_S, E_OFF, E__N };

static void example_event(struct fx *f, int e)
{
	switch (e) {
	case E_K1: kernel(f, 7, 0, 10 * US, 1, 11); break;
	case E_K2: kernel(f, 7, 40 * US, 50 * US, 2, 12); break;
	case E_K3: kernel(f, 7, 100 * US, 110 * US, 3, 13); break;
	case E_K4: kernel(f, 7, 120 * US, 128 * US, 4, 14); break;
	case E_K5: kernel(f, 7, 135 * US, 140 * US, 5, 15); break;
	case E_K6: kernel(f, 7, 200 * US, 210 * US, 6, 16); break;
	case E_K7: kernel(f, 7, 212 * US, 220 * US, 0, 17); break;
	case E_L1: api(f, MFU_API_LAUNCH, -5000, -3000, 1, 1); break;
	case E_L2: api(f, MFU_API_LAUNCH, 31000, 33000, 1, 2); break;
	case E_L3: api(f, MFU_API_LAUNCH, 60000, 62000, 1, 3); break;
	case E_L4: api(f, MFU_API_LAUNCH, 105000, 115000, 1, 4); break;
	case E_L5: api(f, MFU_API_LAUNCH, 121000, 122000, 1, 5); break;
	case E_L6: api(f, MFU_API_LAUNCH, 125000, 126000, 1, 6); break;
	case E_S: api(f, MFU_API_SYNC, 9000, 30000, 1, 99); break;
	case E_OFF: offcpu(f, 55 * US, 90 * US, 1); break;
	}
}

static void check_example(struct fx *f)
{
	struct agg_device *d = f->s->dev[0];
	const struct gaps_dev *g = &d->gaps;

	assert_int_equal(g->idle_ns[GAP_SYNC], 30 * US);
	assert_int_equal(g->idle_ns[GAP_HOST_OFFCPU], 50 * US);
	assert_int_equal(g->idle_ns[GAP_HOST_LAUNCH_BOUND], 10 * US);
	assert_int_equal(g->idle_ns[GAP_KERNEL_WAIT], 7 * US);
	assert_int_equal(g->idle_ns[GAP_OTHER], 62 * US);
	assert_int_equal(g->gaps, 6);
	assert_int_equal(g->gap_ns, 159 * US);
	/* le 1,2,5,10,20,50,100 us ...: 2 -> le 2; 7 -> le 10; 10 -> le 10; 30, 50 -> le 50; 60 -> le 100 */
	assert_int_equal(g->hist[1], 1);
	assert_int_equal(g->hist[3], 2);
	assert_int_equal(g->hist[5], 2);
	assert_int_equal(g->hist[6], 1);
	assert_int_equal(g->joined_kernels, 6);
	assert_int_equal(g->short_kernels, 1);
	assert_int_equal(f->s->gaps.nshort_names, 1);
	assert_int_equal(f->s->gaps.short_names[0].name_id, 14);
	struct lat_sketch k;
	memset(&k, 0, sizeof(k));
	gaps_lat_window(g, 0, 0, &k); /* since start */
	assert_int_equal(k.count, 6);
	assert_int_equal(k.max_ns, 75 * US);
	assert_int_equal(k.sum_ns, 158 * US);
	/* nearest rank of 5 9 14 15 40 75: p50 = 3rd = 14, p90 = p99 = 6th = 75 */
	double p50 = lat_sketch_quantile(&k, 0.5), p90 = lat_sketch_quantile(&k, 0.9);
	assert_true(fabs(p50 - 14000) <= 14000 / 32.0);
	assert_true(fabs(p90 - 75000) <= 75000 / 32.0);
	assert_true(lat_sketch_quantile(&k, 0.99) <= 75000);
	/* busy 10+10+10+8+5+10+8 = 61 us, kernels only */
	assert_int_equal(d->tot.busy_all_ns, 61 * US);
}

static void test_every_cause_in_order(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	agg_source_accept_offcpu(f->s, 1);
	/* launches before their kernels, sync and off-CPU before the gap they explain */
	static const int order[] = {E_L1, E_K1, E_S, E_L2, E_K2, E_OFF, E_L3, E_K3, E_L4, E_L5, E_L6,
				    E_K4, E_K5, E_K6, E_K7};
	for (unsigned i = 0; i < E__N; i++)
		example_event(f, order[i]);
	agg_finish(f->a);
	check_example(f);
	fx_free(f);
}

static void test_every_cause_in_shuffled_order(void **state)
{
	(void)state;
	/* kernels before their launches, newest first, in several orders */
	for (unsigned seed = 1; seed <= 20; seed++) {
		struct fx *f = fx_new(1, 0);
		int order[E__N];
		agg_source_accept_offcpu(f->s, 1);
		for (int i = 0; i < E__N; i++)
			order[i] = i;
		uint64_t x = seed * 0x9e3779b97f4a7c15ull;
		for (int i = E__N - 1; i > 0; i--) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			int j = (int)((x >> 33) % (uint64_t)(i + 1)), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (int i = 0; i < E__N; i++)
			example_event(f, order[i]);
		agg_finish(f->a);
		check_example(f);
		fx_free(f);
	}
}

static void test_offcpu_from_a_socket_is_ignored_and_counted(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	for (int i = 0; i < E__N; i++)
		example_event(f, i);
	agg_finish(f->a);
	const struct gaps_dev *g = &f->s->dev[0]->gaps;
	/* without the off-CPU interval, [50,100) falls to the next rule: L3
	 * returned at 62 > 50, so the host was still launching */
	assert_int_equal(g->idle_ns[GAP_HOST_OFFCPU], 0);
	assert_int_equal(g->idle_ns[GAP_HOST_LAUNCH_BOUND], 60 * US);
	assert_int_equal(f->s->gaps.offcpu_ignored, 1);
	assert_int_equal(f->s->unknown_records, 1);
	fx_free(f);
}

static void test_agg_source_offcpu_feeds_the_rules_directly(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	for (int i = 0; i < E__N; i++)
		if (i != E_OFF)
			example_event(f, i);
	struct mfu_rec_offcpu o = {.start_ns = T0 + 55 * US, .end_ns = T0 + 90 * US, .tid = 1};
	assert_int_equal(agg_source_offcpu(f->s, &o), 0);
	agg_finish(f->a);
	check_example(f);
	fx_free(f);
}

static void test_offcpu_of_another_thread_or_under_half_is_not_the_cause(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	agg_source_accept_offcpu(f->s, 1);
	kernel(f, 1, 0, 10 * US, 1, 1);
	api(f, MFU_API_LAUNCH, 0, 1000, 1, 2);
	kernel(f, 1, 110 * US, 120 * US, 2, 1); /* gap [10,110): 100 us */
	offcpu(f, 10 * US, 80 * US, 2);         /* other thread */
	offcpu(f, 20 * US, 40 * US, 1);         /* 20 + 30 = 50: not more than half */
	offcpu(f, 50 * US, 80 * US, 1);
	agg_finish(f->a);
	assert_int_equal(f->s->dev[0]->gaps.idle_ns[GAP_OTHER], 100 * US);
	fx_free(f);

	f = fx_new(1, 0);
	agg_source_accept_offcpu(f->s, 1);
	kernel(f, 1, 0, 10 * US, 1, 1);
	api(f, MFU_API_LAUNCH, 0, 1000, 1, 2);
	kernel(f, 1, 110 * US, 120 * US, 2, 1);
	offcpu(f, 20 * US, 40 * US, 1);
	offcpu(f, 50 * US, 81 * US, 1); /* 51 of 100 */
	agg_finish(f->a);
	assert_int_equal(f->s->dev[0]->gaps.idle_ns[GAP_HOST_OFFCPU], 100 * US);
	fx_free(f);
}

static void test_overlapping_streams_leave_no_gap(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* stream 1 [0,100), stream 2 [50,150) arriving first, then [150,200) and
	 * a kernel inside another: one busy run of 200 us */
	kernel(f, 2, 50 * US, 150 * US, 0, 1);
	kernel(f, 1, 0, 100 * US, 0, 1);
	kernel(f, 1, 150 * US, 200 * US, 0, 1);
	kernel(f, 2, 60 * US, 70 * US, 0, 1);
	agg_finish(f->a);
	const struct agg_device *d = f->s->dev[0];
	assert_int_equal(d->gaps.gaps, 0);
	assert_int_equal(d->tot.busy_all_ns, 200 * US);
	assert_int_equal(d->tot.busy_ns, 200 * US);
	fx_free(f);
}

static void test_copies_fill_a_gap(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	kernel(f, 1, 0, 10 * US, 0, 1);
	copy(f, 10 * US, 30 * US, 0);
	kernel(f, 1, 30 * US, 40 * US, 0, 1);
	copy(f, 45 * US, 50 * US, 0); /* a copy after a gap names it: other, 5 us */
	agg_finish(f->a);
	const struct agg_device *d = f->s->dev[0];
	assert_int_equal(d->gaps.gaps, 1);
	assert_int_equal(d->gaps.idle_ns[GAP_OTHER], 5 * US);
	assert_int_equal(d->tot.busy_ns, 20 * US);     /* kernels only */
	assert_int_equal(d->tot.busy_all_ns, 45 * US); /* kernels and copies */
	assert_int_equal(d->tot.copies, 2);
	assert_int_equal(d->tot.copy_ns, 25 * US);
	fx_free(f);
}

static void test_gap_across_a_bucket_edge_is_split_pro_rata(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	double v[WF__COUNT];
	/* gap [0.97 s, 1.07 s): 30 ms before the edge at T0 + 1 s, 70 ms after */
	kernel(f, 1, 900 * MS, 970 * MS, 1, 1);
	api(f, MFU_API_LAUNCH, 960 * MS, 1000 * MS, 1, 2); /* returns at 1.0 s > 0.97 s */
	kernel(f, 1, 1070 * MS, 1080 * MS, 2, 1);
	agg_finish(f->a);
	struct agg_device *d = f->s->dev[0];
	window_sum(&d->win, T0 + 1 * S, 1 * S, v);
	assert_true(fabs(v[WF_IDLE_NS + GAP_HOST_LAUNCH_BOUND] - 30e6) < 1e-3);
	window_sum(&d->win, T0 + 2 * S, 1 * S, v);
	assert_true(fabs(v[WF_IDLE_NS + GAP_HOST_LAUNCH_BOUND] - 70e6) < 1e-3);
	assert_true(fabs(v[WF_BUSY_ALL_NS] - 10e6) < 1e-3);

	/* the 1 s window ends at T0 + 1.1 s (offline: the newest data, 1.08 s,
	 * rounded up) and the source is alive to 1.08 s: 0.98 s of it, busy 70 +
	 * 10 ms, so idle 0.9 s, of which the classified gap is 0.1 s */
	struct figures fg;
	figures_device(f->a, d, 1 * S, 0, &fg);
	assert_true(fabs(fg.span_s - 0.98) < 1e-9);
	assert_true(fabs(fg.idle_s - 0.90) < 1e-9);
	assert_true(fabs(fg.idle_cause_s[GAP_HOST_LAUNCH_BOUND] - 0.1) < 1e-9);
	assert_true(fabs(fg.idle_unattributed_s - 0.8) < 1e-9);
	assert_true(fabs(fg.idle_ratio - 0.90 / 0.98) < 1e-9);
	fx_free(f);
}

static void test_gaps_wait_for_the_watermark_live(void **state)
{
	(void)state;
	struct fx *f = fx_new(0, 1 * S);
	kernel(f, 1, 0, 10 * US, 0, 1);
	kernel(f, 1, 50 * US, 60 * US, 0, 1);
	/* newest data at 60 us: the watermark is a second behind, nothing swept */
	assert_int_equal(f->s->dev[0]->gaps.gaps, 0);
	/* a stream-1 kernel that filled the gap arrives late in another frame:
	 * still before the watermark, so no false gap */
	kernel(f, 2, 5 * US, 55 * US, 0, 1);
	kernel(f, 1, 1200 * MS, 1201 * MS, 0, 1); /* watermark now 0.201 s */
	assert_int_equal(f->s->dev[0]->gaps.gaps, 0);
	assert_int_equal(f->s->dev[0]->gaps.npend, 1);
	/* starts before the swept [5,55): too late to reopen what was swept;
	 * counted, and it still extends the busy run to 70 */
	kernel(f, 2, 20 * US, 70 * US, 0, 1);
	assert_int_equal(f->s->dev[0]->gaps.late, 1);
	/* past the watermark but after the run: the gap after 70 is still open */
	kernel(f, 2, 100 * US, 200 * US, 0, 1);
	assert_int_equal(f->s->dev[0]->gaps.late, 1);
	agg_finish(f->a);
	assert_int_equal(f->s->dev[0]->gaps.gaps, 2);
	assert_int_equal(f->s->dev[0]->gaps.idle_ns[GAP_OTHER], 30 * US + 1200 * MS - 200 * US);
	fx_free(f);
}

static void test_sketch_percentiles_within_the_stated_error(void **state)
{
	(void)state;
	struct lat_sketch *k = calloc(1, sizeof(*k));
	assert_true(isnan(lat_sketch_quantile(k, 0.5)));
	/* below 16 ns every value has its own bucket: exact */
	for (uint64_t v = 1; v <= 10; v++)
		lat_sketch_add(k, v);
	assert_true(lat_sketch_quantile(k, 0.5) == 5);
	assert_true(lat_sketch_quantile(k, 0.9) == 9);
	assert_true(lat_sketch_quantile(k, 1.0) == 10);
	memset(k, 0, sizeof(*k));
	/* 1..100000 us: nearest rank p50 = 50000 us, p90 = 90000, p99 = 99000 */
	for (uint64_t v = 1; v <= 100000; v++)
		lat_sketch_add(k, v * US);
	const double q[] = {0.5, 0.9, 0.99}, want[] = {50000e3, 90000e3, 99000e3};
	for (unsigned i = 0; i < 3; i++) {
		double got = lat_sketch_quantile(k, q[i]);
		if (fabs(got - want[i]) > want[i] / 32)
			fail_msg("q %.2f: got %.0f want %.0f", q[i], got, want[i]);
	}
	assert_int_equal(k->max_ns, 100000 * US);
	assert_true(lat_sketch_quantile(k, 1.0) <= 100000 * US);
	/* every bucket's middle is within 1/32 of every value it holds */
	for (uint64_t v = 16; v < (UINT64_C(1) << 30); v = v * 3 / 2 + 7) {
		struct lat_sketch one = {0};
		lat_sketch_add(&one, v);
		one.max_ns = UINT64_MAX; /* no clamping: see the bucket's middle */
		double m = lat_sketch_quantile(&one, 0.5);
		if (fabs(m - (double)v) > (double)v / 32)
			fail_msg("value %llu reported as %.1f", (unsigned long long)v, m);
	}
	/* huge values go to the last bucket; the max stays exact */
	lat_sketch_add(k, UINT64_C(1) << 50);
	assert_int_equal(k->max_ns, UINT64_C(1) << 50);
	free(k);
}

static void test_latency_windows_use_whole_seconds(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* one launch per second for 5 s, latency (i + 1) us */
	for (uint64_t i = 0; i < 5; i++) {
		api(f, MFU_API_LAUNCH, (int64_t)(i * S), (int64_t)(i * S + 100), 1, i + 1);
		kernel(f, 1, i * S + (i + 1) * US, i * S + (i + 1) * US + 50, i + 1, 1);
	}
	agg_finish(f->a);
	struct lat_sketch k = {0};
	gaps_lat_window(&f->s->dev[0]->gaps, T0 + 5 * S, 1 * S, &k);
	assert_int_equal(k.count, 1);
	assert_int_equal(k.max_ns, 5 * US);
	memset(&k, 0, sizeof(k));
	gaps_lat_window(&f->s->dev[0]->gaps, T0 + 5 * S + 500 * MS, 2 * S, &k); /* seconds 3 and 4 */
	assert_int_equal(k.count, 2);
	assert_int_equal(k.sum_ns, 9 * US);
	memset(&k, 0, sizeof(k));
	gaps_lat_window(&f->s->dev[0]->gaps, 0, 0, &k); /* since start */
	assert_int_equal(k.count, 5);
	fx_free(f);
}

static void test_join_table_is_bounded_and_counts_evictions(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* launches whose kernels never come, all within a second */
	for (uint64_t i = 1; i <= GAPS_JOIN_MAX + 1000; i++)
		api(f, MFU_API_LAUNCH, (int64_t)(i * 1000), (int64_t)(i * 1000 + 500), 1, i);
	assert_int_equal(f->s->gaps.join_cap, GAPS_JOIN_MAX);
	assert_int_equal(f->s->gaps.join_n, GAPS_JOIN_MAX);
	assert_int_equal(f->s->gaps.join_evicted, 1000); /* the oldest, overwritten */
	/* the newest launches are still there to be joined */
	kernel(f, 1, (GAPS_JOIN_MAX + 1000) * 1000 + 600, (GAPS_JOIN_MAX + 1000) * 1000 + 900,
	       GAPS_JOIN_MAX + 1000, 1);
	assert_int_equal(f->s->dev[0]->gaps.joined_kernels, 1);
	/* hostile ids: random, far apart, colliding; still bounded */
	uint64_t x = 1;
	for (unsigned i = 0; i < 100000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		api(f, MFU_API_LAUNCH, 0, 100, 1, x | 1);
	}
	assert_int_equal(f->s->gaps.join_cap, GAPS_JOIN_MAX);
	assert_true(f->s->gaps.join_n <= GAPS_JOIN_MAX);
	fx_free(f);
}

static void test_short_kernel_names_are_counted_and_bounded(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* 300 distinct names, each kernel 1 us under a 2 us launch */
	for (uint64_t i = 0; i < 300; i++) {
		api(f, MFU_API_LAUNCH, (int64_t)(i * 10 * US), (int64_t)(i * 10 * US + 2 * US), 1, i + 1);
		kernel(f, 1, i * 10 * US + 3 * US, i * 10 * US + 4 * US, i + 1, 1000 + i % 300);
	}
	api(f, MFU_API_LAUNCH, 0, 100, 1, 5000); /* one more of the first name */
	kernel(f, 1, 5 * MS, 5 * MS + 50, 5000, 1000);
	agg_finish(f->a);
	const struct gaps_src *g = &f->s->gaps;
	assert_int_equal(f->s->dev[0]->gaps.short_kernels, 301);
	assert_int_equal(g->nshort_names, GAPS_SHORT_NAMES);
	assert_int_equal(g->short_other, 300 - GAPS_SHORT_NAMES);
	assert_int_equal(g->short_names[0].count, 2);
	fx_free(f);
}

static void test_exports_show_the_gap_figures(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	struct strbuf sb;
	agg_source_accept_offcpu(f->s, 1);
	for (int i = 0; i < E__N; i++)
		example_event(f, i);
	agg_finish(f->a);
	sb_init(&sb);
	export_prometheus(f->a, 0, NULL, &sb);
	assert_non_null(strstr(sb.buf, "mfu_gpu_idle_seconds_total{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\",cause=\"sync\"} 3e-05"));
	assert_non_null(strstr(sb.buf, "mfu_gpu_idle_gap_seconds_bucket{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\",le=\"1e-05\"} 3\n"));
	assert_non_null(strstr(sb.buf, "mfu_gpu_idle_gap_seconds_count{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\"} 6\n"));
	assert_non_null(strstr(sb.buf, "mfu_gpu_idle_gap_seconds_bucket{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\",le=\"+Inf\"} 6\n"));
	assert_non_null(strstr(sb.buf, "mfu_short_kernels_total{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\"} 1\n"));
	assert_non_null(strstr(sb.buf, "mfu_launch_latency_seconds{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\",window=\"total\",quantile=\"0.99\"}"));
	sb_reset(&sb);
	export_gap_report(f->a, 0, &sb);
	assert_non_null(strstr(sb.buf, "host_offcpu"));
	sb_free(&sb);
	fx_free(f);
}

static void test_launch_after_its_kernel_was_swept_still_counts_latency(void **state)
{
	(void)state;
	struct fx *f = fx_new(0, 1 * S);
	kernel(f, 1, 0, 10 * US, 0, 1);
	kernel(f, 1, 50 * US, 60 * US, 2, 1);
	kernel(f, 1, 1200 * MS, 1201 * MS, 0, 1); /* sweeps [0,10) and [50,60): gap other */
	assert_int_equal(f->s->dev[0]->gaps.idle_ns[GAP_OTHER], 40 * US);
	api(f, MFU_API_LAUNCH, 20 * US, 45 * US, 1, 2); /* too late for the rule, not for the latency */
	assert_int_equal(f->s->dev[0]->gaps.joined_kernels, 1);
	struct lat_sketch k;
	memset(&k, 0, sizeof(k));
	gaps_lat_window(&f->s->dev[0]->gaps, 0, 0, &k);
	assert_int_equal(k.max_ns, 30 * US);
	assert_int_equal(f->s->dev[0]->gaps.short_kernels, 1); /* 10 us under a 25 us launch call */
	assert_int_equal(f->s->gaps.join_n, 0);
	fx_free(f);
}

static void test_far_out_of_order_arrivals_are_merged_at_the_sweep(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* 5000 kernels of 1 us every 2 us, then one filling the first 100 gaps
	 * and one launched kernel far back, both behind more than 256 others */
	for (uint64_t i = 1; i <= 5000; i++)
		kernel(f, 1, i * 2 * US, i * 2 * US + 1 * US, 0, 1);
	kernel(f, 2, 2 * US, 201 * US, 0, 1);
	kernel(f, 2, 250 * US + 500, 250 * US + 700, 7, 1);
	api(f, MFU_API_LAUNCH, 250 * US, 250 * US + 400, 1, 7); /* joins through the unsorted buffer */
	assert_int_equal(f->s->dev[0]->gaps.unsorted, 0);
	assert_int_equal(f->s->dev[0]->gaps.nside, 2); /* merged by the sweep */
	agg_finish(f->a);
	const struct gaps_dev *g = &f->s->dev[0]->gaps;
	/* 4999 one-microsecond gaps, less the 99 the filler covers (between
	 * kernels 1..100); the late launched kernel lies inside kernel 125 */
	assert_int_equal(g->gaps, 4900);
	assert_int_equal(g->idle_ns[GAP_OTHER], 4900 * US);
	assert_int_equal(g->joined_kernels, 1);
	fx_free(f);
}

static void test_a_long_sync_call_covers_gaps_after_shorter_ones(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* sync calls [5,200) and, arriving first, [10,20) and [300,310): the
	 * gap at 50 is inside the long one though the latest to start before
	 * it ended at 20; the gap at 250 is inside none */
	api(f, MFU_API_SYNC, 10000, 20000, 1, 0);
	api(f, MFU_API_SYNC, 300000, 310000, 1, 0);
	api(f, MFU_API_SYNC, 5000, 200000, 2, 0);
	kernel(f, 1, 0, 50 * US, 0, 1);
	kernel(f, 1, 60 * US, 250 * US, 0, 1);
	kernel(f, 1, 260 * US, 270 * US, 0, 1);
	agg_finish(f->a);
	const struct gaps_dev *g = &f->s->dev[0]->gaps;
	assert_int_equal(g->idle_ns[GAP_SYNC], 10 * US);
	assert_int_equal(g->idle_ns[GAP_OTHER], 10 * US);
	fx_free(f);
}

static void test_offcpu_threads_past_the_bound_are_dropped_and_counted(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	for (uint64_t tid = 1; tid <= GAPS_THREADS + 5; tid++) {
		struct mfu_rec_offcpu o = {.start_ns = T0, .end_ns = T0 + 10, .tid = tid};
		assert_int_equal(agg_source_offcpu(f->s, &o), 0);
	}
	assert_int_equal(f->s->gaps.nthreads, GAPS_THREADS);
	assert_int_equal(f->s->gaps.spans_dropped, 5);
	fx_free(f);
}

static void test_a_full_side_buffer_falls_back_to_sorting(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	/* 300 kernels in order, then 4100 each behind all of them: the first
	 * 4096 fill the side buffer, the rest make the buffer unsorted; the
	 * sweep must still see one busy run per 10 us slot */
	for (uint64_t i = 0; i < 300; i++)
		kernel(f, 1, (5000 + i) * 10 * US, (5000 + i) * 10 * US + 5 * US, 0, 1);
	for (uint64_t i = 0; i < 4100; i++)
		kernel(f, 2, (4100 - i) * 10 * US, (4100 - i) * 10 * US + 5 * US, 0, 1);
	assert_int_equal(f->s->dev[0]->gaps.nside, GAPS_SIDE_MAX);
	assert_int_equal(f->s->dev[0]->gaps.unsorted, 1);
	agg_finish(f->a);
	const struct gaps_dev *g = &f->s->dev[0]->gaps;
	/* 4400 kernels of 5 us: 4099 gaps of 5 us among the late ones, one of
	 * [41005, 50000) us, 299 of 5 us after */
	assert_int_equal(g->gaps, 4099 + 1 + 299);
	assert_int_equal(g->gap_ns, 4099 * 5 * US + (50000 - 41005) * US + 299 * 5 * US);
	assert_int_equal(g->late, 0);
	fx_free(f);
}

static void test_reorder_ring_grows_by_steps_wraps_and_shrinks(void **state)
{
	(void)state;
	struct fx *f = fx_new(0, 1 * S);
	const struct gaps_dev *g;
	/* 40000 kernels inside the settle time: all wait; the ring grows by
	 * steps, not to the next power of two (65536) */
	for (uint64_t i = 0; i < 40000; i++)
		kernel(f, 1, i * 2 * US, i * 2 * US + 1 * US, 0, 1);
	g = &f->s->dev[0]->gaps;
	assert_int_equal(g->npend, 40000);
	assert_true(g->cap >= 40000 && g->cap <= 40000 + 40000 / 8 + 1);
	/* then 3 s of kernels every 100 us: every 100 ms of data a sweep takes
	 * from the front while arrivals go on at the back, around the ring */
	int wrapped = 0;
	uint64_t t0 = 100 * MS, n = 30000;
	for (uint64_t i = 0; i < n; i++) {
		kernel(f, 1, t0 + i * 100 * US, t0 + i * 100 * US + 50 * US, 0, 1);
		wrapped |= g->head + g->npend > g->cap;
	}
	assert_true(wrapped);
	agg_finish(f->a);
	/* 39999 gaps of 1 us, one of [80 ms - 1 us, 100 ms), n - 1 of 50 us */
	assert_int_equal(g->gaps, 39999 + 1 + (n - 1));
	assert_int_equal(g->gap_ns, 39999 * US + (100 * MS - (80 * MS - 1 * US)) + (n - 1) * 50 * US);
	assert_int_equal(g->late, 0);
	assert_int_equal(g->forced, 0);
	/* nothing waits: each sweep halves the ring, down to its first size */
	assert_int_equal(g->npend, 0);
	unsigned cap = g->cap;
	agg_finish(f->a);
	assert_int_equal(g->cap, cap / 2);
	for (int i = 0; i < 16; i++)
		agg_finish(f->a);
	assert_int_equal(g->cap, GAPS_PENDING_MIN);
	fx_free(f);
}

static void test_reorder_ring_is_bounded_and_sweeps_early(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	const uint64_t n = GAPS_PENDING_MAX + 1000;
	/* more kernels than the ring holds, all inside the settle second */
	for (uint64_t i = 0; i < n; i++)
		kernel(f, 1, i * 4, i * 4 + 1, 0, 1);
	const struct gaps_dev *g = &f->s->dev[0]->gaps;
	assert_int_equal(g->cap, GAPS_PENDING_MAX);
	assert_true(g->forced > 0);
	agg_finish(f->a);
	/* in order, so sweeping early loses nothing: n - 1 gaps of 3 ns */
	assert_int_equal(g->gaps, n - 1);
	assert_int_equal(g->gap_ns, (n - 1) * 3);
	assert_int_equal(g->late, 0);
	fx_free(f);
}

static void test_wide_intervals_keep_their_end_and_thread(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	const uint64_t big = (UINT64_C(1) << 33) + 5, bigger = UINT64_C(1) << 34;
	agg_source_accept_offcpu(f->s, 1);
	/* K2 runs 1 s (past the packed length) and was launched by a thread
	 * whose id needs more than 32 bits, off-CPU through the gap before K2 */
	kernel(f, 1, 0, 10 * US, 0, 1);
	api(f, MFU_API_LAUNCH, 1 * US, 5 * US, big, 2);
	offcpu(f, 0, 200 * US, big);
	kernel(f, 1, 100 * US, 100 * US + 1 * S, 2, 1);
	/* K3 came before its launch call, which names another such thread */
	kernel(f, 1, 1 * S + 200 * US, 1 * S + 210 * US, 3, 1);
	api(f, MFU_API_LAUNCH, 1 * S + 100 * US, 1 * S + 101 * US, bigger, 3);
	offcpu(f, 1 * S + 100 * US, 1 * S + 300 * US, bigger);
	/* K4, 1 s long, also before its launch call */
	kernel(f, 1, 2 * S + 100 * US, 3 * S + 100 * US, 4, 1);
	api(f, MFU_API_LAUNCH, 1 * S + 220 * US, 1 * S + 230 * US, bigger + 1, 4);
	offcpu(f, 1 * S + 210 * US, 2 * S + 100 * US, bigger + 1);
	const struct gaps_dev *g = &f->s->dev[0]->gaps;
	assert_int_equal(g->wide_used, 1); /* K4's: K4 moved the watermark past K2 and K3 */
	agg_finish(f->a);
	assert_int_equal(g->gaps, 3);
	/* [10,100) us, [1.0001, 1.0002) s, [1.00021, 2.0001) s */
	assert_int_equal(g->idle_ns[GAP_HOST_OFFCPU], 90 * US + 100 * US + (1 * S - 110 * US));
	assert_int_equal(f->s->dev[0]->tot.busy_all_ns, 10 * US + 1 * S + 10 * US + 1 * S);
	/* swept: the pool is given back */
	assert_int_equal(g->wide_used, 0);
	assert_null(g->wide);
	fx_free(f);
}

static void test_latency_slots_come_with_their_seconds(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	unsigned n = 0;
	for (uint64_t sec = 3; sec < 6; sec++) {
		api(f, MFU_API_LAUNCH, (int64_t)(sec * S), (int64_t)(sec * S + 1 * US), 1, sec);
		kernel(f, 1, sec * S + 5 * US, sec * S + 6 * US, sec, 1);
	}
	for (unsigned i = 0; i < GAPS_LAT_SLOTS; i++)
		n += f->s->dev[0]->gaps.slots[i] != NULL;
	assert_int_equal(n, 3);
	fx_free(f);
}

static void test_since_start_latencies_survive_a_slot_count_wrapping(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	api(f, MFU_API_LAUNCH, (int64_t)(3 * S), (int64_t)(3 * S + 1 * US), 1, 1);
	kernel(f, 1, 3 * S + 5 * US, 3 * S + 6 * US, 1, 1);
	struct gaps_dev *g = &f->s->dev[0]->gaps;
	unsigned b = lat_bucket_of(5 * US);
	struct lat_slot *sl = g->slots[3 % GAPS_LAT_SLOTS];
	assert_non_null(sl);
	assert_int_equal(sl->n[b], 1);
	sl->n[b] = UINT32_MAX; /* as if 2^32 - 1 launches had come in that second */
	api(f, MFU_API_LAUNCH, (int64_t)(3 * S + 10 * US), (int64_t)(3 * S + 11 * US), 1, 2);
	kernel(f, 1, 3 * S + 15 * US, 3 * S + 16 * US, 2, 1);
	struct lat_sketch k;
	memset(&k, 0, sizeof(k));
	gaps_lat_window(g, 0, 0, &k);
	assert_int_equal(k.n[b], UINT64_C(1) << 32); /* since start: exact */
	memset(&k, 0, sizeof(k));
	gaps_lat_window(g, 4 * S, 1 * S, &k);
	assert_int_equal(k.n[b], 0); /* the slot's own 32-bit count wrapped */
	fx_free(f);
}

static void test_no_gaps_leaves_idle_unattributed_and_keeps_the_rest(void **state)
{
	(void)state;
	struct fx *f = calloc(1, sizeof(*f));
	struct agg_config cfg = {.offline = 1, .no_gaps = 1};
	struct mfu_rec_hello h = {.time_ns = T0 - S, .pid = 7, .rank = -1, .local_rank = -1,
				  .host = "h", .host_len = 1, .job = "j", .job_len = 1};
	struct strbuf sb;
	assert_int_equal(agg_new(&cfg, &f->a), 0);
	assert_int_equal(agg_hello(f->a, &h, "test", 1, &f->s), 0);
	agg_source_accept_offcpu(f->s, 1);
	for (int i = 0; i < E__N; i++)
		example_event(f, i);
	copy(f, 300 * US, 310 * US, 0);
	agg_finish(f->a);
	const struct agg_device *d = f->s->dev[0];
	const struct gaps_dev *g = &d->gaps;
	assert_int_equal(g->gaps, 0);
	assert_int_equal(g->joined_kernels, 0);
	assert_int_equal(f->s->gaps.join_n, 0);
	assert_null(g->pend);
	/* the rest of the model as with gap analysis */
	assert_int_equal(d->tot.kernels, 7);
	assert_int_equal(d->tot.api_calls, 7);
	assert_int_equal(d->tot.busy_ns, 61 * US);
	assert_int_equal(d->tot.busy_all_ns, 71 * US);
	sb_init(&sb);
	export_prometheus(f->a, 0, NULL, &sb);
	assert_non_null(strstr(sb.buf, "\nmfud_gap_analysis_enabled 0\n"));
	assert_non_null(strstr(sb.buf, "mfu_gpu_idle_seconds_total{job=\"j\",host=\"h\",rank=\"\",pid=\"7\",device=\"0\",cause=\"sync\"} 0\n"));
	sb_free(&sb);
	fx_free(f);
}

static void test_the_first_copy_splits_the_busy_unions(void **state)
{
	(void)state;
	struct fx *f = fx_new(1, 0);
	kernel(f, 1, 0, 10 * US, 0, 1);
	kernel(f, 1, 20 * US, 30 * US, 0, 1);
	struct agg_device *d = f->s->dev[0];
	assert_int_equal(d->busy.mirror, WF_BUSY_ALL_NS);
	assert_null(d->busy_all.iv); /* one union so far */
	copy(f, 5 * US, 25 * US, 0);
	assert_int_equal(d->busy.mirror, WF__COUNT);
	kernel(f, 1, 28 * US, 40 * US, 0, 1);
	assert_int_equal(d->tot.busy_ns, 30 * US);     /* [0,10) [20,40) */
	assert_int_equal(d->tot.busy_all_ns, 40 * US); /* [0,40) */
	double v[WF__COUNT];
	window_sum(&d->win, T0 + 100 * MS, 100 * MS, v);
	assert_true(v[WF_BUSY_NS] == 30.0 * US);
	assert_true(v[WF_BUSY_ALL_NS] == 40.0 * US);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_cause_in_order),
		cmocka_unit_test(test_every_cause_in_shuffled_order),
		cmocka_unit_test(test_offcpu_from_a_socket_is_ignored_and_counted),
		cmocka_unit_test(test_agg_source_offcpu_feeds_the_rules_directly),
		cmocka_unit_test(test_offcpu_of_another_thread_or_under_half_is_not_the_cause),
		cmocka_unit_test(test_overlapping_streams_leave_no_gap),
		cmocka_unit_test(test_copies_fill_a_gap),
		cmocka_unit_test(test_gap_across_a_bucket_edge_is_split_pro_rata),
		cmocka_unit_test(test_gaps_wait_for_the_watermark_live),
		cmocka_unit_test(test_sketch_percentiles_within_the_stated_error),
		cmocka_unit_test(test_latency_windows_use_whole_seconds),
		cmocka_unit_test(test_join_table_is_bounded_and_counts_evictions),
		cmocka_unit_test(test_short_kernel_names_are_counted_and_bounded),
		cmocka_unit_test(test_exports_show_the_gap_figures),
		cmocka_unit_test(test_launch_after_its_kernel_was_swept_still_counts_latency),
		cmocka_unit_test(test_far_out_of_order_arrivals_are_merged_at_the_sweep),
		cmocka_unit_test(test_a_full_side_buffer_falls_back_to_sorting),
		cmocka_unit_test(test_reorder_ring_grows_by_steps_wraps_and_shrinks),
		cmocka_unit_test(test_reorder_ring_is_bounded_and_sweeps_early),
		cmocka_unit_test(test_wide_intervals_keep_their_end_and_thread),
		cmocka_unit_test(test_latency_slots_come_with_their_seconds),
		cmocka_unit_test(test_since_start_latencies_survive_a_slot_count_wrapping),
		cmocka_unit_test(test_the_first_copy_splits_the_busy_unions),
		cmocka_unit_test(test_no_gaps_leaves_idle_unattributed_and_keeps_the_rest),
		cmocka_unit_test(test_a_long_sync_call_covers_gaps_after_shorter_ones),
		cmocka_unit_test(test_offcpu_threads_past_the_bound_are_dropped_and_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
