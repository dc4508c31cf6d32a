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

static inline unsigned bucket_of(uint64_t v)
{
	if (v < LAT_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	if (e >= LAT_TOP_EXP)
		return LAT_BUCKETS - 1;
	unsigned m = (unsigned)(v >> (e - 4)) & (LAT_SUB - 1);
	return LAT_SUB + (e - 4) * LAT_SUB + m;
}

unsigned lat_bucket_of(uint64_t v)
{
	return bucket_of(v);
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
	k->n[bucket_of(v)]++;
	k->count++;
	k->sum_ns += v;
	if (v > k->max_ns)
		k->max_ns = v;
}

/* Also a sketch with a count of 0: lat_past can hold a live slot's
 * wrapped carry (lat_record) before any latency of its own. */
void lat_sketch_merge(struct lat_sketch *dst, const struct lat_sketch *src)
{
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

static void lat_slot_merge(struct lat_sketch *dst, const struct lat_slot *sl)
{
	for (unsigned i = 0; i < LAT_BUCKETS; i++)
		dst->n[i] += sl->n[i];
	dst->count += sl->count;
	dst->sum_ns += sl->sum_ns;
	if (sl->max_ns > dst->max_ns)
		dst->max_ns = sl->max_ns;
}

/* The slot of start_ns's second, made current; NULL when the slot could
 * not be allocated or the second is older than the ring.  A slot taken over
 * by a newer second first gives its latencies to lat_past. */
static __attribute__((noinline)) struct lat_slot *lat_slot_find(struct gaps_dev *g, uint64_t start_ns)
{
	uint64_t sec = start_ns / GAPS_LAT_SLOT_NS;
	struct lat_slot **psl = &g->slots[sec % GAPS_LAT_SLOTS], *sl = *psl;

	g->slot_cur = NULL;
	if (!sl) {
		if (!(sl = malloc(sizeof(*sl))))
			return NULL; /* the windows lose it; the since-start sketch has it */
		sl->sec = UINT64_MAX;
		*psl = sl;
	}
	g->slot_lo_ns = sec * GAPS_LAT_SLOT_NS;
	if (sl->sec != sec) {
		if (sl->sec != UINT64_MAX && sl->sec > sec)
			return NULL; /* older than the ring */
		if (sl->sec != UINT64_MAX && sl->count)
			lat_slot_merge(&g->lat_past, sl);
		memset(sl, 0, sizeof(*sl));
		sl->sec = sec;
	}
	return g->slot_cur = sl;
}

/* Each latency goes to exactly one place: its second's slot, or lat_past
 * when it has none; the since-start sketch is their sum (gaps_lat_window).
 * One sketch update per kernel, not two. */
static inline void lat_record(struct gaps_dev *g, uint64_t start_ns, uint64_t v)
{
	unsigned bucket = bucket_of(v);
	/* Most latencies fall in the second of the previous one: its slot is
	 * kept at hand (a slot only ever changes second in lat_slot_find). */
	struct lat_slot *sl = g->slot_cur;

	if (__builtin_expect(!sl || start_ns - g->slot_lo_ns >= GAPS_LAT_SLOT_NS, 0) &&
	    !(sl = lat_slot_find(g, start_ns))) {
		lat_sketch_add(&g->lat_past, v);
		return;
	}
	if (__builtin_expect(!++sl->n[bucket], 0))
		g->lat_past.n[bucket] += UINT64_C(1) << 32; /* the slot's 32-bit count wrapped */
	sl->count++;
	sl->sum_ns += v;
	if (v > sl->max_ns)
		sl->max_ns = v;
}

void gaps_lat_window(const struct gaps_dev *g, uint64_t end_ns, uint64_t len_ns, struct lat_sketch *out)
{
	if (!len_ns) {
		lat_sketch_merge(out, &g->lat_past);
		for (unsigned i = 0; i < GAPS_LAT_SLOTS; i++) {
			const struct lat_slot *sl = g->slots[i];
			if (sl && sl->sec != UINT64_MAX && sl->count)
				lat_slot_merge(out, sl);
		}
		return;
	}
	uint64_t last = end_ns / GAPS_LAT_SLOT_NS, n = len_ns / GAPS_LAT_SLOT_NS;
	if (n > GAPS_LAT_SLOTS - 1)
		n = GAPS_LAT_SLOTS - 1;
	for (uint64_t sec = last > n ? last - n : 0; sec < last; sec++) {
		const struct lat_slot *sl = g->slots[sec % GAPS_LAT_SLOTS];
		if (sl && sl->sec == sec && sl->count)
			lat_slot_merge(out, sl);
	}
}

/* ---- corr join ---- */

/* CUPTI numbers correlation ids upward from 1, so the table is direct
 * mapped: slot corr mod cap, neighbours in time are neighbours in memory,
 * and no probing.  Another id in the slot is older by a multiple of cap
 * launches: it is dropped (counted) unless it is recent and the table is
 * half full, in which case the table doubles first, up to its bound. */
static inline struct gap_join *join_find(const struct gaps_src *g, uint64_t corr)
{
	if (!g->join_cap)
		return NULL;
	struct gap_join *j = &g->join[corr & (g->join_cap - 1)];
	return j->corr == corr ? j : NULL;
}

static inline void join_del(struct gaps_src *g, struct gap_join *j)
{
	j->corr = 0;
	g->join_n--;
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

/* The slot for corr, taken (join_n counts it) for the caller to fill in
 * whole; NULL when the table could not grow.  A pointer, not an
 * out-parameter: the kernel path keeps no address-taken local. */
static __attribute__((noinline)) struct gap_join *join_add(struct gaps_src *g, uint64_t corr)
{
	if (!g->join_cap && join_grow(g, JOIN_MIN_CAP))
		return NULL;
	struct gap_join *j = &g->join[corr & (g->join_cap - 1)];
	/* Double only when the table is half full: a recent occupant of a
	 * mostly empty table is a half whose other half never comes (a kernel
	 * CUPTI reports without a launch record), and must not make every
	 * source's table grow to its bound.  Both halves keep their end in
	 * `end`. */
	while (j->corr && j->end >= stale_line(g) && g->join_n * 2 >= g->join_cap &&
	       g->join_cap < GAPS_JOIN_MAX) {
		if (join_grow(g, g->join_cap * 2))
			return NULL;
		j = &g->join[corr & (g->join_cap - 1)];
	}
	if (j->corr) {
		g->join_evicted++;
		g->join_n--;
	}
	j->corr = corr;
	g->join_n++;
	return j;
}

static struct agg_device *device_of(struct agg_source *s, uint32_t index)
{
	for (unsigned i = 0; i < s->ndev; i++)
		if (s->dev[i]->index == index)
			return s->dev[i];
	return NULL;
}

static __attribute__((noinline)) void short_name_count(struct gaps_src *g, uint64_t name_id)
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
 * count.  hint: the window bucket holding the kernel's end, or NULL.
 * Inlined into the kernel path, where it runs for nearly every kernel. */
static inline __attribute__((always_inline)) void launch_met(struct agg_source *s, struct agg_device *d,
							     struct window_bucket *hint, uint64_t l_start,
							     uint64_t l_end, uint64_t k_start, uint64_t k_end,
							     uint64_t name_id)
{
	uint64_t lat = k_start > l_start ? k_start - l_start : 0;
	int short_kernel = k_end - k_start < l_end - l_start;

	lat_record(&d->gaps, k_start, lat);
	d->gaps.joined_kernels++;
	if (hint)
		hint->v[WF_JOINED_KERNELS] += 1;
	else
		window_add_at(&d->win, WF_JOINED_KERNELS, k_end, 1);
	if (short_kernel) {
		if (hint)
			hint->v[WF_SHORT_KERNELS] += 1;
		else
			window_add_at(&d->win, WF_SHORT_KERNELS, k_end, 1);
		d->gaps.short_kernels++;
		short_name_count(&s->gaps, name_id);
	}
}

/* The same, for a launch call that came after its kernel. */
static __attribute__((noinline)) void launch_met_late(struct agg_source *s, struct agg_device *d, uint64_t l_start,
						      uint64_t l_end, uint64_t k_start, uint64_t k_end,
						      uint64_t name_id)
{
	launch_met(s, d, NULL, l_start, l_end, k_start, k_end, name_id);
}

/* ---- intervals ---- */

/* Arrivals this far out of start order are appended and the buffer sorted
 * at the next sweep, so one record never moves more than this many. */
#define PEND_SHIFT_MAX 256u
#define WIDE_MIN_CAP 16u
#define WIDE_MAX (GAPS_PENDING_MAX + GAPS_SIDE_MAX) /* one slot per waiting interval at most */

/* An interval as it arrives, before it is packed into a gap_iv. */
struct gap_ivx {
	uint64_t start, end, corr, l_end, tid;
	uint32_t bits; /* GAP_IV_COPY, GAP_IV_LAUNCH */
};

static inline uint64_t iv_end(const struct gaps_dev *g, const struct gap_iv *iv)
{
	return iv->bits & GAP_IV_WIDE ? g->wide[iv->tid].end : iv->start + (iv->bits & GAP_IV_LEN_MAX);
}

static inline uint64_t iv_tid(const struct gaps_dev *g, const struct gap_iv *iv)
{
	return iv->bits & GAP_IV_WIDE ? g->wide[iv->tid].tid : iv->tid;
}

static int wide_get(struct gaps_dev *g, uint32_t *out)
{
	uint32_t w;

	if (g->wide_free) {
		w = g->wide_free - 1;
		g->wide_free = (uint32_t)g->wide[w].end;
	} else {
		if (g->wide_n == g->wide_cap) {
			uint32_t cap = g->wide_cap ? g->wide_cap * 2 : WIDE_MIN_CAP;
			if (cap > WIDE_MAX)
				cap = WIDE_MAX;
			if (cap == g->wide_cap)
				return -ENOSPC; /* cannot happen: more slots than waiting intervals */
			struct gap_wide *p = realloc(g->wide, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			g->wide = p;
			g->wide_cap = cap;
		}
		w = g->wide_n++;
	}
	g->wide_used++;
	*out = w;
	return 0;
}

static void wide_put(struct gaps_dev *g, uint32_t w)
{
	g->wide[w].end = g->wide_free;
	g->wide_free = w + 1;
	if (!--g->wide_used) { /* none in use: the pool starts over */
		g->wide_n = 0;
		g->wide_free = 0;
	}
}

/* Packs x into iv; a wide one takes a pool slot. */
static inline int iv_pack(struct gaps_dev *g, const struct gap_ivx *x, struct gap_iv *iv)
{
	uint64_t len = x->end - x->start; /* an end before the start wraps: wide */
	uint32_t w;

	iv->start = x->start;
	iv->corr = x->corr;
	iv->l_end = x->l_end;
	if (__builtin_expect(len <= GAP_IV_LEN_MAX && x->tid <= UINT32_MAX, 1)) {
		iv->tid = (uint32_t)x->tid;
		iv->bits = x->bits | (uint32_t)len;
		return 0;
	}
	int rc = wide_get(g, &w);
	if (rc)
		return rc;
	g->wide[w] = (struct gap_wide){x->end, x->tid};
	iv->tid = w;
	iv->bits = x->bits | GAP_IV_WIDE;
	return 0;
}

static void iv_release(struct gaps_dev *g, const struct gap_iv *iv)
{
	if (iv->bits & GAP_IV_WIDE)
		wide_put(g, iv->tid);
}

static int iv_cmp(const void *pa, const void *pb)
{
	const struct gap_iv *a = pa, *b = pb;
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	uint32_t ca = a->bits & GAP_IV_COPY, cb = b->bits & GAP_IV_COPY;
	if (ca != cb)
		return ca < cb ? -1 : 1; /* a kernel names the gap before a copy */
	return a->corr < b->corr ? -1 : a->corr > b->corr;
}

/* The reorder buffer is a ring: the sweep takes from the front and
 * arrivals join at the back, so nothing moves to make room.  Entry i counts
 * from the front. */
static inline struct gap_iv *pend_at(const struct gaps_dev *g, unsigned i)
{
	unsigned k = g->head + i; /* head < cap and i <= cap */
	return &g->pend[k >= g->cap ? k - g->cap : k];
}

/* The ring doubles while small, then grows by an eighth (what waits is
 * about one settle time of intervals, so it rarely grows once running);
 * dev_trim shrinks it. */
static unsigned pend_grown(unsigned cap)
{
	unsigned c = cap < GAPS_PENDING_MIN ? GAPS_PENDING_MIN : cap < 8192 ? cap * 2 : cap + cap / 8;
	return c > GAPS_PENDING_MAX ? GAPS_PENDING_MAX : c;
}

/* Moves what waits, in order, to the start of a new ring of cap entries. */
static int pend_resize(struct gaps_dev *g, unsigned cap)
{
	struct gap_iv *p = malloc(cap * sizeof(*p));

	if (!p)
		return -ENOMEM;
	if (g->npend) {
		unsigned first = g->cap - g->head < g->npend ? g->cap - g->head : g->npend;
		memcpy(p, g->pend + g->head, first * sizeof(*p));
		memcpy(p + first, g->pend, (g->npend - first) * sizeof(*p));
	}
	free(g->pend);
	g->pend = p;
	g->cap = cap;
	g->head = 0;
	return 0;
}

static void iv_reverse(struct gap_iv *v, unsigned n)
{
	for (unsigned i = 0, j = n; i + 1 < j; i++, j--) {
		struct gap_iv t = v[i];
		v[i] = v[j - 1];
		v[j - 1] = t;
	}
}

static void sweep_device(struct agg_source *s, struct agg_device *d, uint64_t watermark);

static void pend_sort(struct agg_source *s, struct gaps_dev *g)
{
	if (g->unsorted) {
		if (g->head + g->npend > g->cap) { /* wrapped: rotate in place, no allocation */
			iv_reverse(g->pend, g->head);
			iv_reverse(g->pend + g->head, g->cap - g->head);
			iv_reverse(g->pend, g->cap);
			g->head = 0;
		}
		qsort(g->pend + g->head, g->npend, sizeof(*g->pend), iv_cmp);
		s->span_work += 4 * (uint64_t)g->npend; /* about a bucket update per compare */
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

/* Everything but an append in order to a ring with room. */
/* x by value: the caller's copy is not address-taken (no stack canary on
 * the kernel path). */
static __attribute__((noinline)) int pend_push_slow(struct agg_source *s, struct agg_device *d,
						    const struct gap_ivx xv)
{
	const struct gap_ivx *x = &xv;
	struct gaps_dev *g = &d->gaps;
	struct gap_iv iv;
	int rc;

	if (g->have_run && x->start < g->frontier) {
		g->late++;
		if (x->end > g->run_end)
			g->run_end = x->end;
		return 0;
	}
	if (g->npend == g->cap) {
		if (g->cap >= GAPS_PENDING_MAX) {
			/* Sweep the older half early rather than lose the interval:
			 * a gap may then be classified before all its data came. */
			unsigned before = g->npend;
			pend_sort(s, g);
			sweep_device(s, d, pend_at(g, g->npend / 2)->start + 1);
			g->forced += before - g->npend;
			return pend_push_slow(s, d, xv);
		}
		if ((rc = pend_resize(g, pend_grown(g->cap))))
			return rc;
	}
	if ((rc = iv_pack(g, x, &iv)))
		return rc;
	/* Arrivals come nearly in start order: insert from the back. */
	unsigned i = g->npend;
	if (i > 0 && pend_at(g, i - 1)->start < iv.start) {
		*pend_at(g, i) = iv;
		g->npend++;
		return 0;
	}
	if (!g->unsorted) {
		while (i > 0 && iv_cmp(pend_at(g, i - 1), &iv) > 0 && g->npend - i < PEND_SHIFT_MAX)
			i--;
		if (i > 0 && iv_cmp(pend_at(g, i - 1), &iv) > 0) {
			rc = side_insert(s, g, &iv);
			if (rc < 0)
				iv_release(g, &iv);
			if (rc <= 0)
				return rc;
			g->unsorted = 1; /* side buffer full: sort everything at the sweep */
			i = g->npend;
		}
	}
	if (i < g->npend) {
		for (unsigned k = g->npend; k > i; k--)
			*pend_at(g, k) = *pend_at(g, k - 1);
		s->span_work += g->npend - i;
	}
	*pend_at(g, i) = iv;
	g->npend++;
	return 0;
}

static inline __attribute__((always_inline)) int pend_push(struct agg_source *s, struct agg_device *d,
							   const struct gap_ivx *x)
{
	struct gaps_dev *g = &d->gaps;
	uint64_t len = x->end - x->start;

	/* The common case: room, after everything waiting, narrow.  Not late
	 * either: whatever waits starts at or after the frontier (the sweep
	 * leaves only what starts past it, and late arrivals never wait). */
	if (__builtin_expect(g->npend && g->npend < g->cap && pend_at(g, g->npend - 1)->start < x->start &&
			     len <= GAP_IV_LEN_MAX && x->tid <= UINT32_MAX, 1)) {
		struct gap_iv *iv = pend_at(g, g->npend);
		iv->start = x->start;
		iv->corr = x->corr;
		iv->l_end = x->l_end;
		iv->tid = (uint32_t)x->tid;
		iv->bits = x->bits | (uint32_t)len;
		g->npend++;
		return 0;
	}
	return pend_push_slow(s, d, *x);
}

static struct gap_iv *side_find(struct gaps_dev *g, uint64_t start, uint64_t corr)
{
	unsigned lo = 0, hi = g->nside;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (g->side[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < g->nside && g->side[lo].start == start; lo++)
		if (g->side[lo].corr == corr)
			return &g->side[lo];
	return NULL;
}

/* The pending interval of a kernel whose launch call came after it. */
static struct gap_iv *pend_find(struct gaps_dev *g, uint64_t start, uint64_t corr)
{
	struct gap_iv *iv = side_find(g, start, corr);

	if (iv || g->unsorted)
		return iv; /* no search through an unsorted buffer: the gap rule goes without */
	unsigned lo = 0, hi = g->npend;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (pend_at(g, mid)->start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < g->npend && pend_at(g, lo)->start == start; lo++)
		if (pend_at(g, lo)->corr == corr)
			return pend_at(g, lo);
	return NULL;
}

/* Attaches a launch call that came after its kernel to its waiting interval. */
static int iv_set_launch(struct gaps_dev *g, struct gap_iv *iv, uint64_t l_end, uint64_t tid)
{
	if (iv->bits & GAP_IV_WIDE) {
		g->wide[iv->tid].tid = tid;
	} else if (tid <= UINT32_MAX) {
		iv->tid = (uint32_t)tid;
	} else {
		uint32_t w;
		int rc = wide_get(g, &w);
		if (rc)
			return rc;
		g->wide[w] = (struct gap_wide){iv_end(g, iv), tid};
		iv->tid = w;
		iv->bits = (iv->bits & ~GAP_IV_LEN_MAX) | GAP_IV_WIDE;
	}
	iv->l_end = l_end;
	iv->bits |= GAP_IV_LAUNCH;
	return 0;
}

static inline __attribute__((always_inline)) int interval(struct agg_source *s, struct agg_device *d,
							  struct window_bucket *hint, uint64_t start, uint64_t end,
							  uint64_t corr, uint64_t name_id, int copy)
{
	struct gap_ivx x = {.start = start, .end = end, .corr = corr, .bits = copy ? GAP_IV_COPY : 0};

	if (corr) {
		struct gaps_src *g = &s->gaps;
		struct gap_join *j = join_find(g, corr);
		if (j && (j->flags & JOIN_LAUNCH)) {
			x.bits |= GAP_IV_LAUNCH;
			x.l_end = j->end;
			x.tid = j->id;
			if (!copy && j->kind == MFU_API_LAUNCH)
				launch_met(s, d, hint, j->start, j->end, start, end, name_id);
			join_del(g, j);
		} else if (!j && (j = join_add(g, corr))) {
			*j = (struct gap_join){.corr = corr, .start = start, .end = end, .id = name_id,
					       .device = d->index, .flags = JOIN_KERNEL | (copy ? JOIN_COPY : 0)};
		}
		/* else: a repeated correlation id; the first one stands */
	}
	return pend_push(s, d, &x);
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

/* The launch half of a join, or its meeting with the kernel that came first. */
static __attribute__((noinline)) int api_join_slow(struct agg_source *s, const struct mfu_rec_api *a)
{
	struct gaps_src *g = &s->gaps;
	struct gap_join *j = join_find(g, a->corr);
	int rc = 0;

	if (!j) {
		if (!(j = join_add(g, a->corr)))
			return -ENOMEM;
		*j = (struct gap_join){.corr = a->corr, .start = a->start_ns, .end = a->end_ns, .id = a->tid,
				       .flags = JOIN_LAUNCH, .kind = (uint16_t)a->kind};
		return 0;
	}
	if (j->flags & JOIN_LAUNCH)
		return 0; /* a repeated correlation id: the first call stands */
	/* The kernel (or copy) came first. */
	struct agg_device *d = device_of(s, j->device);
	if (d) {
		if (!(j->flags & JOIN_COPY) && a->kind == MFU_API_LAUNCH)
			launch_met_late(s, d, a->start_ns, a->end_ns, j->start, j->end, j->id);
		struct gap_iv *iv = pend_find(&d->gaps, j->start, a->corr);
		if (iv) /* else already swept: its gap was classified without it */
			rc = iv_set_launch(&d->gaps, iv, a->end_ns, a->tid);
	}
	join_del(g, j);
	return rc;
}

int gaps_api(struct agg_source *s, const struct mfu_rec_api *a)
{
	struct gaps_src *g = &s->gaps;
	int rc;

	if (__builtin_expect(a->kind == MFU_API_LAUNCH, 1)) {
		if (!a->corr)
			return 0;
		/* The common case: the launch comes first, to an empty slot. */
		struct gap_join *j = g->join_cap ? &g->join[a->corr & (g->join_cap - 1)] : NULL;
		if (__builtin_expect(j && !j->corr, 1)) {
			*j = (struct gap_join){.corr = a->corr, .start = a->start_ns, .end = a->end_ns, .id = a->tid,
					       .flags = JOIN_LAUNCH, .kind = MFU_API_LAUNCH};
			g->join_n++;
			return 0;
		}
		return api_join_slow(s, a);
	}
	if (a->kind == MFU_API_SYNC || a->kind == MFU_API_BLOCKING) {
		if ((rc = span_insert(s, &g->sync, &g->nsync, &g->sync_cap, a->start_ns, a->end_ns)))
			return rc;
	}
	if (a->kind != MFU_API_BLOCKING || !a->corr)
		return 0;
	return api_join_slow(s, a);
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

static unsigned classify(const struct gaps_src *g, const struct gaps_dev *gd, uint64_t a, uint64_t b,
			 const struct gap_iv *k)
{
	if (sync_active(g, a))
		return GAP_SYNC;
	if (!(k->bits & GAP_IV_LAUNCH))
		return GAP_OTHER;
	if (g->nthreads && 2 * offcpu_overlap(g, iv_tid(gd, k), a, b) > b - a)
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
	unsigned cause = classify(&s->gaps, g, a, b, k), h = 0;
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

/* One interval in start order: a gap before it if it starts past the run. */
static inline void sweep_one(struct agg_source *s, struct agg_device *d, const struct gap_iv *iv, uint64_t *run_end)
{
	struct gaps_dev *g = &d->gaps;
	uint64_t end = iv_end(g, iv);

	if (!g->have_run) {
		g->have_run = 1;
		*run_end = end;
	} else if (iv->start > *run_end) {
		gap_add(s, d, *run_end, iv->start, iv);
		*run_end = end;
	} else if (end > *run_end) {
		*run_end = end;
	}
	iv_release(g, iv);
}

/* Classifies the gaps before watermark: the ring and the side buffer
 * merged in start order (the side buffer is empty in most sweeps). */
static void sweep_device(struct agg_source *s, struct agg_device *d, uint64_t watermark)
{
	struct gaps_dev *g = &d->gaps;
	unsigned i = 0, j = 0, k;
	uint64_t run_end = g->run_end, frontier = g->frontier;

	if (!g->npend && !g->nside)
		return;
	pend_sort(s, g);
	k = g->head;
	for (;;) {
		const struct gap_iv *q = j < g->nside ? &g->side[j] : NULL;
		uint64_t lim = q && q->start < watermark ? q->start : watermark;
		/* The ring's intervals before the next side one, or the watermark
		 * (locals: gap_add cannot move the ring). */
		const struct gap_iv *pend = g->pend;
		unsigned npend = g->npend, cap = g->cap;
		while (i < npend && pend[k].start < lim) {
			sweep_one(s, d, &pend[k], &run_end);
			frontier = pend[k].start;
			i++;
			k = k + 1 == cap ? 0 : k + 1;
		}
		if (!q || q->start >= watermark)
			break;
		/* A ring interval starting with the side one: the order decides. */
		if (i < g->npend && g->pend[k].start == q->start && iv_cmp(&g->pend[k], q) <= 0) {
			sweep_one(s, d, &g->pend[k], &run_end);
			i++;
			k = k + 1 == g->cap ? 0 : k + 1;
		} else {
			sweep_one(s, d, q, &run_end);
			j++;
		}
		frontier = q->start; /* both start there */
	}
	g->run_end = run_end;
	g->frontier = frontier;
	if (j) {
		memmove(g->side, g->side + j, (g->nside - j) * sizeof(*g->side));
		g->nside -= j;
	}
	g->npend -= i;
	g->head = g->npend ? k : 0;
}

/* Gives memory back after a sweep: half the ring when under a quarter full,
 * the wide pool and the side buffer when empty.  Halving at most once a
 * sweep: a source whose records come late for a moment (a collector behind
 * on many sources sweeps by its own clock) must not shrink to nothing and
 * grow back step by step, leaving the heap in pieces. */
static void dev_trim(struct gaps_dev *g)
{
	if (g->cap > GAPS_PENDING_MIN && g->npend < g->cap / 4) {
		unsigned cap = g->cap / 2;
		pend_resize(g, cap < GAPS_PENDING_MIN ? GAPS_PENDING_MIN : cap); /* -ENOMEM: keep the larger ring */
	}
	if (!g->wide_used && g->wide_cap) {
		free(g->wide);
		g->wide = NULL;
		g->wide_cap = 0;
	}
	if (!g->nside && g->side_cap) {
		free(g->side);
		g->side = NULL;
		g->side_cap = 0;
	}
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
		dev_trim(&d->gaps);
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
	for (unsigned i = 0; i < GAPS_LAT_SLOTS; i++) {
		free(g->slots[i]);
		g->slots[i] = NULL;
	}
	free(g->wide);
	g->side = NULL;
	g->nside = g->side_cap = 0;
	g->pend = NULL;
	g->slot_cur = NULL;
	g->wide = NULL;
	g->wide_cap = g->wide_n = g->wide_used = g->wide_free = 0;
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
