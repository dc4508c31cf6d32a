/* SPDX-License-Identifier: MIT */
/*
 * Launch-gap analysis; see gaps.h and doc/metrics.md ("Idle gaps").  The
 * sweep only ever moves forward in data time: an interval that arrives after
 * the sweep passed its start cannot reopen a classified gap, so it is merged
 * into the current busy run and counted as late.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "gaps.h"

_Static_assert(WF_IDLE_NS + GAP__COUNT == WF_SHORT_KERNELS, "one window field per gap cause");

#define JOIN_LAUNCH 0x1u
#define JOIN_KERNEL 0x2u
#define JOIN_COPY 0x4u /* the first half was a copy, not a kernel */

#define JOIN_MIN_CAP 1024u
/* An entry whose other half has not come stays this long behind the
 * watermark; then it is stale. */
#define JOIN_STALE_NS UINT64_C(10000000000)

const uint64_t gap_hist_le_ns[GAP_HIST_BUCKETS - 1] = {
	1000,     2000,     5000,      10000,     20000,     50000,      100000,    200000,
	500000,   1000000,  2000000,   5000000,   10000000,  100000000,  1000000000,
};

const char *gap_cause_name(unsigned cause)
{
	static const char *const names[GAP__COUNT] = {"sync", "host_offcpu", "host_launch_bound", "kernel_wait",
						      "other"};
	return cause < GAP__COUNT ? names[cause] : "unknown";
}

/* ---- sketch ---- */

unsigned lat_bucket_of(uint64_t v)
{
	if (v < LAT_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	if (e >= LAT_TOP_EXP)
		return LAT_BUCKETS - 1;
	unsigned m = (unsigned)(v >> (e - 4)) & (LAT_SUB - 1);
	return LAT_SUB + (e - 4) * LAT_SUB + m;
}

static double bucket_mid(unsigned i)
{
	if (i < LAT_SUB)
		return (double)i;
	unsigned e = (i - LAT_SUB) / LAT_SUB + 4, m = (i - LAT_SUB) % LAT_SUB;
	double lo = (double)((uint64_t)(LAT_SUB + m) << (e - 4)), width = (double)(UINT64_C(1) << (e - 4));
	return lo + (width - 1) / 2;
}

void lat_sketch_add(struct lat_sketch *k, uint64_t v)
{
	k->n[lat_bucket_of(v)]++;
	k->count++;
	k->sum_ns += v;
	if (v > k->max_ns)
		k->max_ns = v;
}

void lat_sketch_merge(struct lat_sketch *dst, const struct lat_sketch *src)
{
	if (!src->count)
		return;
	for (unsigned i = 0; i < LAT_BUCKETS; i++)
		dst->n[i] += src->n[i];
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

double lat_sketch_quantile(const struct lat_sketch *k, double q)
{
	if (!k->count)
		return NAN;
	uint64_t rank = (uint64_t)ceil(q * (double)k->count), seen = 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		seen += k->n[i];
		if (seen >= rank) {
			double v = bucket_mid(i);
			return v > (double)k->max_ns ? (double)k->max_ns : v;
		}
	}
	return (double)k->max_ns;
}

static void lat_record(struct agg_device *d, uint64_t start_ns, uint64_t v)
{
	struct gaps_dev *g = &d->gaps;
	unsigned bucket = lat_bucket_of(v);

	g->lat_total.n[bucket]++;
	g->lat_total.count++;
	g->lat_total.sum_ns += v;
	if (v > g->lat_total.max_ns)
		g->lat_total.max_ns = v;
	if (!g->slots) {
		g->slots = malloc(GAPS_LAT_SLOTS * sizeof(*g->slots));
		if (!g->slots)
			return; /* the windows lose it; the since-start sketch has it */
		for (unsigned i = 0; i < GAPS_LAT_SLOTS; i++)
			g->slots[i].sec = UINT64_MAX;
	}
	/* Most latencies fall in the second of the previous one: no division. */
	uint64_t sec = start_ns - g->slot_lo_ns < GAPS_LAT_SLOT_NS ? g->slot_sec : start_ns / GAPS_LAT_SLOT_NS;
	g->slot_sec = sec;
	g->slot_lo_ns = sec * GAPS_LAT_SLOT_NS;
	struct lat_slot *sl = &g->slots[sec % GAPS_LAT_SLOTS];
	if (sl->sec != sec) {
		if (sl->sec != UINT64_MAX && sl->sec > sec)
			return; /* older than the ring */
		memset(sl, 0, sizeof(*sl));
		sl->sec = sec;
	}
	sl->n[bucket]++;
	sl->count++;
	sl->sum_ns += v;
	if (v > sl->max_ns)
		sl->max_ns = v;
}

void gaps_lat_window(const struct gaps_dev *g, uint64_t end_ns, uint64_t len_ns, struct lat_sketch *out)
{
	if (!len_ns) {
		lat_sketch_merge(out, &g->lat_total);
		return;
	}
	if (!g->slots)
		return;
	uint64_t last = end_ns / GAPS_LAT_SLOT_NS, n = len_ns / GAPS_LAT_SLOT_NS;
	if (n > GAPS_LAT_SLOTS - 1)
		n = GAPS_LAT_SLOTS - 1;
	for (uint64_t sec = last > n ? last - n : 0; sec < last; sec++) {
		const struct lat_slot *sl = &g->slots[sec % GAPS_LAT_SLOTS];
		if (sl->sec != sec || !sl->count)
			continue;
		for (unsigned i = 0; i < LAT_BUCKETS; i++)
			out->n[i] += sl->n[i];
		out->count += sl->count;
		out->sum_ns += sl->sum_ns;
		if (sl->max_ns > out->max_ns)
			out->max_ns = sl->max_ns;
	}
}

/* ---- corr join ---- */

/* CUPTI numbers correlation ids upward from 1, so the table is direct
 * mapped: slot corr mod cap, neighbours in time are neighbours in memory,
 * and no probing.  Another id in the slot is older by a multiple of cap
 * launches: it is dropped (counted) unless it is recent and the table is
 * half full, in which case the table doubles first, up to its bound. */
static struct gap_join *join_find(const struct gaps_src *g, uint64_t corr)
{
	if (!g->join_cap)
		return NULL;
	struct gap_join *j = &g->join[corr & (g->join_cap - 1)];
	return j->corr == corr ? j : NULL;
}

static void join_del(struct gaps_src *g, struct gap_join *j)
{
	j->corr = 0;
	g->join_n--;
}

static uint64_t join_time(const struct gap_join *j)
{
	return j->flags & JOIN_LAUNCH ? j->l_end : j->k_end;
}

static uint64_t stale_line(const struct gaps_src *g)
{
	return g->watermark > JOIN_STALE_NS ? g->watermark - JOIN_STALE_NS : 0;
}

static int join_grow(struct gaps_src *g, uint32_t cap)
{
	struct gap_join *nj = calloc(cap, sizeof(*nj));

	if (!nj)
		return -ENOMEM;
	g->join_n = 0;
	for (uint32_t i = 0; i < g->join_cap; i++) {
		const struct gap_join *j = &g->join[i];
		if (!j->corr)
			continue;
		struct gap_join *d = &nj[j->corr & (cap - 1)];
		if (d->corr) { /* cannot happen when cap doubles; kept for safety */
			g->join_evicted++;
			continue;
		}
		*d = *j;
		g->join_n++;
	}
	free(g->join);
	g->join = nj;
	g->join_cap = cap;
	return 0;
}

static int join_add(struct gaps_src *g, uint64_t corr, struct gap_join **out)
{
	int rc;

	if (!g->join_cap && (rc = join_grow(g, JOIN_MIN_CAP)))
		return rc;
	struct gap_join *j = &g->join[corr & (g->join_cap - 1)];
	/* Double only when the table is half full: a recent occupant of a
	 * mostly empty table is a half whose other half never comes (a kernel
	 * CUPTI reports without a launch record), and must not make every
	 * source's table grow to its bound. */
	while (j->corr && join_time(j) >= stale_line(g) && g->join_n * 2 >= g->join_cap &&
	       g->join_cap < GAPS_JOIN_MAX) {
		if ((rc = join_grow(g, g->join_cap * 2)))
			return rc;
		j = &g->join[corr & (g->join_cap - 1)];
	}
	if (j->corr) {
		g->join_evicted++;
		g->join_n--;
	}
	memset(j, 0, sizeof(*j));
	j->corr = corr;
	g->join_n++;
	*out = j;
	return 0;
}

static struct agg_device *device_of(struct agg_source *s, uint32_t index)
{
	for (unsigned i = 0; i < s->ndev; i++)
		if (s->dev[i]->index == index)
			return s->dev[i];
	return NULL;
}

static void short_name_count(struct gaps_src *g, uint64_t name_id)
{
	for (unsigned i = 0; i < g->nshort_names; i++)
		if (g->short_names[i].name_id == name_id) {
			g->short_names[i].count++;
			return;
		}
	if (g->nshort_names < GAPS_SHORT_NAMES)
		g->short_names[g->nshort_names++] = (struct gap_name_count){name_id, 1};
	else
		g->short_other++;
}

/* A kernel met its launch call: the launch latency and the short-kernel
 * count.  hint: the window bucket holding the kernel's end, or NULL. */
static void launch_met(struct agg_source *s, struct agg_device *d, struct window_bucket *hint, uint64_t l_start,
		       uint64_t l_end, uint64_t k_start, uint64_t k_end, uint64_t name_id)
{
	uint64_t lat = k_start > l_start ? k_start - l_start : 0;
	int short_kernel = k_end - k_start < l_end - l_start;

	lat_record(d, k_start, lat);
	d->gaps.joined_kernels++;
	if (hint) {
		hint->v[WF_JOINED_KERNELS] += 1;
		hint->v[WF_SHORT_KERNELS] += short_kernel;
	} else {
		window_add_at(&d->win, WF_JOINED_KERNELS, k_end, 1);
		if (short_kernel)
			window_add_at(&d->win, WF_SHORT_KERNELS, k_end, 1);
	}
	if (short_kernel) {
		d->gaps.short_kernels++;
		short_name_count(&s->gaps, name_id);
	}
}

/* ---- intervals ---- */

/* Arrivals this far out of start order are appended and the buffer sorted
 * at the next sweep, so one record never moves more than this many. */
#define PEND_SHIFT_MAX 256u

static int iv_cmp(const void *pa, const void *pb)
{
	const struct gap_iv *a = pa, *b = pb;
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	if (a->copy != b->copy)
		return a->copy < b->copy ? -1 : 1; /* a kernel names the gap before a copy */
	return a->corr < b->corr ? -1 : a->corr > b->corr;
}

static void sweep_device(struct agg_source *s, struct agg_device *d, uint64_t watermark);

static void pend_sort(struct agg_source *s, struct gaps_dev *g)
{
	if (g->unsorted) {
		qsort(g->pend + g->head, g->npend - g->head, sizeof(*g->pend), iv_cmp);
		s->span_work += 4 * (uint64_t)(g->npend - g->head); /* about a bucket update per compare */
	}
	g->unsorted = 0;
}

/* Returns 0 when iv went into the side buffer, 1 when that is full, or
 * -ENOMEM. */
static int side_insert(struct agg_source *s, struct gaps_dev *g, const struct gap_iv *iv)
{
	if (g->nside == g->side_cap) {
		if (g->side_cap >= GAPS_SIDE_MAX)
			return 1;
		unsigned cap = g->side_cap ? g->side_cap * 2 : 64;
		struct gap_iv *p = realloc(g->side, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		g->side = p;
		g->side_cap = cap;
	}
	unsigned i = g->nside;
	while (i > 0 && iv_cmp(&g->side[i - 1], iv) > 0)
		i--;
	if (i < g->nside) {
		memmove(g->side + i + 1, g->side + i, (g->nside - i) * sizeof(*g->side));
		s->span_work += g->nside - i;
	}
	g->side[i] = *iv;
	g->nside++;
	return 0;
}

static int pend_push(struct agg_source *s, struct agg_device *d, const struct gap_iv *iv)
{
	struct gaps_dev *g = &d->gaps;

	if (g->have_run && iv->start < g->frontier) {
		g->late++;
		if (iv->end > g->run_end)
			g->run_end = iv->end;
		return 0;
	}
	if (g->npend == g->cap && g->head) {
		memmove(g->pend, g->pend + g->head, (g->npend - g->head) * sizeof(*g->pend));
		g->npend -= g->head;
		g->head = 0;
	}
	if (g->npend == g->cap) {
		if (g->cap >= GAPS_PENDING_MAX) {
			/* Sweep the older half early rather than lose the interval:
			 * a gap may then be classified before all its data came. */
			unsigned before = g->npend - g->head;
			pend_sort(s, g);
			sweep_device(s, d, g->pend[g->head + (g->npend - g->head) / 2].start + 1);
			g->forced += before - (g->npend - g->head);
			return pend_push(s, d, iv);
		}
		unsigned cap = g->cap ? g->cap * 2 : 256;
		struct gap_iv *p = realloc(g->pend, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		g->pend = p;
		g->cap = cap;
	}
	/* Arrivals come nearly in start order: insert from the back. */
	unsigned i = g->npend;
	if (__builtin_expect(i > g->head && g->pend[i - 1].start < iv->start, 1)) {
		g->pend[i] = *iv; /* the common case: after everything waiting */
		g->npend++;
		return 0;
	}
	if (!g->unsorted) {
		while (i > g->head && iv_cmp(&g->pend[i - 1], iv) > 0 && g->npend - i < PEND_SHIFT_MAX)
			i--;
		if (i > g->head && iv_cmp(&g->pend[i - 1], iv) > 0) {
			int rc = side_insert(s, g, iv);
			if (rc <= 0)
				return rc;
			g->unsorted = 1; /* side buffer full: sort everything at the sweep */
			i = g->npend;
		}
	}
	if (i < g->npend) {
		memmove(g->pend + i + 1, g->pend + i, (g->npend - i) * sizeof(*g->pend));
		s->span_work += g->npend - i;
	}
	g->pend[i] = *iv;
	g->npend++;
	return 0;
}

static struct gap_iv *sorted_find(struct gap_iv *v, unsigned lo, unsigned hi, uint64_t start, uint64_t corr)
{
	unsigned n = hi;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (v[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && v[lo].start == start; lo++)
		if (v[lo].corr == corr)
			return &v[lo];
	return NULL;
}

/* The pending interval of a kernel whose launch call came after it. */
static struct gap_iv *pend_find(struct gaps_dev *g, uint64_t start, uint64_t corr)
{
	struct gap_iv *iv = sorted_find(g->side, 0, g->nside, start, corr);

	if (iv || g->unsorted)
		return iv; /* no search through an unsorted buffer: the gap rule goes without */
	return sorted_find(g->pend, g->head, g->npend, start, corr);
}

static int interval(struct agg_source *s, struct agg_device *d, struct window_bucket *hint, uint64_t start,
		    uint64_t end, uint64_t corr, uint64_t name_id, int copy)
{
	struct gap_iv iv = {.start = start, .end = end, .corr = corr, .copy = (uint32_t)copy};

	if (corr) {
		struct gaps_src *g = &s->gaps;
		struct gap_join *j = join_find(g, corr);
		if (j && (j->flags & JOIN_LAUNCH)) {
			iv.have_l = 1;
			iv.l_end = j->l_end;
			iv.tid = j->tid;
			if (!copy && j->kind == MFU_API_LAUNCH)
				launch_met(s, d, hint, j->l_start, j->l_end, start, end, name_id);
			join_del(g, j);
		} else if (!j && !join_add(g, corr, &j)) {
			j->flags = JOIN_KERNEL | (copy ? JOIN_COPY : 0);
			j->k_start = start;
			j->k_end = end;
			j->name_id = name_id;
			j->device = d->index;
		}
		/* else: a repeated correlation id; the first one stands */
	}
	return pend_push(s, d, &iv);
}

int gaps_kernel(struct agg_source *s, struct agg_device *d, struct window_bucket *hint,
		const struct mfu_rec_kernel *k)
{
	return interval(s, d, hint, k->start_ns, k->end_ns, k->corr, k->name_id, 0);
}

int gaps_copy(struct agg_source *s, struct agg_device *d, const struct mfu_rec_copy *c)
{
	return interval(s, d, NULL, c->start_ns, c->end_ns, c->corr, 0, 1);
}

/* Out-of-order arrivals move at most this many entries: one record's work
 * stays small whatever the producer sends. */
#define SPAN_SHIFT_MAX 256u

static void spans_fix_max(struct gap_span *v, uint32_t from, uint32_t n)
{
	for (uint32_t i = from; i < n; i++) {
		uint64_t prev = i ? v[i - 1].max_end : 0;
		v[i].max_end = v[i].end > prev ? v[i].end : prev;
	}
}

static int span_insert(struct agg_source *s, struct gap_span **v, uint32_t *n, uint32_t *cap, uint64_t start,
		       uint64_t end)
{
	struct gaps_src *g = &s->gaps;

	if (*n == *cap) {
		if (*cap >= GAPS_SPANS_MAX) {
			g->spans_dropped++;
			return 0;
		}
		uint32_t c = *cap ? *cap * 2 : 64;
		struct gap_span *p = realloc(*v, c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = c;
	}
	uint32_t i = *n;
	while (i > 0 && (*v)[i - 1].start > start && *n - i < SPAN_SHIFT_MAX)
		i--;
	if (i > 0 && (*v)[i - 1].start > start) {
		g->spans_dropped++; /* far behind the others: too late to matter */
		return 0;
	}
	if (i < *n)
		memmove(*v + i + 1, *v + i, (*n - i) * sizeof(**v));
	(*v)[i] = (struct gap_span){start, end, 0};
	(*n)++;
	spans_fix_max(*v, i, *n);
	s->span_work += *n - i;
	return 0;
}

/* The last span starting at or before t, or -1. */
static int64_t span_last_before(const struct gap_span *v, uint32_t n, uint64_t t)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (v[mid].start <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (int64_t)lo - 1;
}

int gaps_api(struct agg_source *s, const struct mfu_rec_api *a)
{
	struct gaps_src *g = &s->gaps;
	int rc = 0;

	if (a->kind == MFU_API_SYNC || a->kind == MFU_API_BLOCKING) {
		if ((rc = span_insert(s, &g->sync, &g->nsync, &g->sync_cap, a->start_ns, a->end_ns)))
			return rc;
	}
	if ((a->kind != MFU_API_LAUNCH && a->kind != MFU_API_BLOCKING) || !a->corr)
		return 0;
	struct gap_join *j = join_find(g, a->corr);
	if (!j) {
		if ((rc = join_add(g, a->corr, &j)))
			return rc;
		j->flags = JOIN_LAUNCH;
		j->l_start = a->start_ns;
		j->l_end = a->end_ns;
		j->tid = a->tid;
		j->kind = (uint16_t)a->kind;
		return 0;
	}
	if (j->flags & JOIN_LAUNCH)
		return 0; /* a repeated correlation id: the first call stands */
	/* The kernel (or copy) came first. */
	struct agg_device *d = device_of(s, j->device);
	if (d) {
		if (!(j->flags & JOIN_COPY) && a->kind == MFU_API_LAUNCH)
			launch_met(s, d, NULL, a->start_ns, a->end_ns, j->k_start, j->k_end, j->name_id);
		struct gap_iv *iv = pend_find(&d->gaps, j->k_start, a->corr);
		if (iv) { /* else already swept: its gap was classified without it */
			iv->have_l = 1;
			iv->l_end = a->end_ns;
			iv->tid = a->tid;
		}
	}
	join_del(g, j);
	return 0;
}

int gaps_offcpu(struct agg_source *s, const struct mfu_rec_offcpu *o)
{
	struct gaps_src *g = &s->gaps;
	unsigned i = 0;

	while (i < g->nthreads && g->threads[i].tid != o->tid)
		i++;
	if (i == g->nthreads) {
		if (g->nthreads == GAPS_THREADS) {
			g->spans_dropped++;
			return 0;
		}
		g->threads[g->nthreads++].tid = o->tid;
	}
	struct gap_thread *t = &g->threads[i];
	return span_insert(s, &t->v, &t->n, &t->cap, o->start_ns, o->end_ns);
}

/* ---- the sweep ---- */

static int sync_active(const struct gaps_src *g, uint64_t a)
{
	int64_t i = span_last_before(g->sync, g->nsync, a);
	return i >= 0 && g->sync[i].max_end > a;
}

/* Off-CPU time of thread tid inside [a, b). */
static uint64_t offcpu_overlap(const struct gaps_src *g, uint64_t tid, uint64_t a, uint64_t b)
{
	const struct gap_thread *t = NULL;
	uint64_t sum = 0;

	for (unsigned k = 0; k < g->nthreads && !t; k++)
		if (g->threads[k].tid == tid)
			t = &g->threads[k];
	if (!t || !t->n)
		return 0;
	/* The span holding a, if any, then the ones starting inside the gap;
	 * SPAN_SHIFT_MAX bounds the walk when a producer overlaps them. */
	int64_t i = span_last_before(t->v, t->n, a);
	unsigned steps = 0;
	for (i = i < 0 ? 0 : i; (uint32_t)i < t->n && t->v[i].start < b && steps < SPAN_SHIFT_MAX; i++, steps++) {
		const struct gap_span *o = &t->v[i];
		if (o->end <= a)
			continue;
		uint64_t lo = o->start > a ? o->start : a, hi = o->end < b ? o->end : b;
		sum += hi - lo;
	}
	return sum > b - a ? b - a : sum;
}

static unsigned classify(const struct gaps_src *g, uint64_t a, uint64_t b, const struct gap_iv *k)
{
	if (sync_active(g, a))
		return GAP_SYNC;
	if (!k->have_l)
		return GAP_OTHER;
	if (g->nthreads && 2 * offcpu_overlap(g, k->tid, a, b) > b - a)
		return GAP_HOST_OFFCPU;
	if (k->l_end > a)
		return GAP_HOST_LAUNCH_BOUND;
	if (b - a < g->wait_ns)
		return GAP_KERNEL_WAIT;
	return GAP_OTHER;
}

static void gap_add(struct agg_source *s, struct agg_device *d, uint64_t a, uint64_t b, const struct gap_iv *k)
{
	struct gaps_dev *g = &d->gaps;
	unsigned cause = classify(&s->gaps, a, b, k), h = 0;
	uint64_t len = b - a;

	while (h < GAP_HIST_BUCKETS - 1 && len > gap_hist_le_ns[h])
		h++;
	g->hist[h]++;
	g->gaps++;
	g->gap_ns += len;
	g->idle_ns[cause] += len;
	unsigned work = window_add_span(&d->win, WF_IDLE_NS + cause, a, b, (double)len);
	if (work > 1) /* span_work counts multi-bucket spans only */
		s->span_work += work;
}

static void sweep_device(struct agg_source *s, struct agg_device *d, uint64_t watermark)
{
	struct gaps_dev *g = &d->gaps;
	unsigned i = g->head, j = 0;

	if (i == g->npend && !g->nside)
		return;
	pend_sort(s, g);
	for (;;) {
		const struct gap_iv *iv;
		if (i < g->npend && (j == g->nside || iv_cmp(&g->pend[i], &g->side[j]) <= 0))
			iv = &g->pend[i];
		else if (j < g->nside)
			iv = &g->side[j];
		else
			break;
		if (iv->start >= watermark)
			break;
		if (iv == &g->pend[i])
			i++;
		else
			j++;
		if (!g->have_run) {
			g->have_run = 1;
			g->run_end = iv->end;
		} else if (iv->start > g->run_end) {
			gap_add(s, d, g->run_end, iv->start, iv);
			g->run_end = iv->end;
		} else if (iv->end > g->run_end) {
			g->run_end = iv->end;
		}
		g->frontier = iv->start;
	}
	if (j) {
		memmove(g->side, g->side + j, (g->nside - j) * sizeof(*g->side));
		g->nside -= j;
	}
	g->head = i;
	if (g->head == g->npend)
		g->head = g->npend = 0;
}

/* Spans that ended before every device's sweep can no longer matter. */
static void spans_prune(struct agg_source *s, struct gap_span *v, uint32_t *n, uint64_t before)
{
	uint32_t k = 0;
	if (!*n || v[*n - 1].max_end <= before) {
		*n = 0;
		return;
	}
	for (uint32_t i = 0; i < *n; i++)
		if (v[i].end > before)
			v[k++] = v[i];
	s->span_work += *n;
	if (k != *n)
		spans_fix_max(v, 0, k);
	*n = k;
}

static void sweep(struct agg_source *s, uint64_t watermark)
{
	uint64_t low = UINT64_MAX;

	for (unsigned i = 0; i < s->ndev; i++) {
		struct agg_device *d = s->dev[i];
		sweep_device(s, d, watermark);
		if (d->gaps.have_run && d->gaps.run_end < low)
			low = d->gaps.run_end;
	}
	if (watermark != UINT64_MAX)
		s->gaps.watermark = watermark;
	if (low != UINT64_MAX) {
		spans_prune(s, s->gaps.sync, &s->gaps.nsync, low);
		for (unsigned i = 0; i < s->gaps.nthreads; i++)
			spans_prune(s, s->gaps.threads[i].v, &s->gaps.threads[i].n, low);
	}
}

void gaps_advance(struct agg_source *s, uint64_t watermark)
{
	/* Called for nearly every record: a compare, no division. */
	if (watermark < s->gaps.next_sweep)
		return;
	sweep(s, watermark);
	s->gaps.next_sweep = (watermark / WINDOW_BUCKET_NS + 1) * WINDOW_BUCKET_NS;
}

void gaps_flush(struct agg_source *s)
{
	sweep(s, UINT64_MAX);
}

void gaps_dev_free(struct gaps_dev *g)
{
	free(g->pend);
	free(g->side);
	free(g->slots);
	g->side = NULL;
	g->nside = g->side_cap = 0;
	g->pend = NULL;
	g->slots = NULL;
	g->head = g->npend = g->cap = 0;
}

void gaps_src_free(struct gaps_src *g)
{
	free(g->join);
	free(g->sync);
	for (unsigned i = 0; i < g->nthreads; i++)
		free(g->threads[i].v);
	g->nthreads = 0;
	g->join = NULL;
	g->sync = NULL;
	g->join_cap = g->join_n = g->nsync = g->sync_cap = 0;
}
