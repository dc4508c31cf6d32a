/* SPDX-License-Identifier: MIT */
/*
 * Bucket ring and busy union; see window.h.  These run once per kernel record,
 * so the common cases (a kernel inside one bucket, a kernel that starts after
 * the last busy interval) are short straight-line paths.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

#define EMPTY UINT64_MAX

void window_init(struct window *w)
{
	memset(w, 0, sizeof(*w));
	for (unsigned i = 0; i < WINDOW_BUCKETS; i++)
		w->ring[i].index = EMPTY;
}

struct window_bucket *window_bucket_at(struct window *w, uint64_t idx)
{
	struct window_bucket *b = &w->ring[idx & (WINDOW_BUCKETS - 1)];

	if (__builtin_expect(b->index == idx, 1))
		return b;
	if (w->newest >= WINDOW_BUCKETS && idx <= w->newest - WINDOW_BUCKETS)
		return NULL;
	if (b->index != EMPTY && b->index > idx)
		return NULL;
	memset(b->v, 0, sizeof(b->v));
	b->index = idx;
	if (idx > w->newest)
		w->newest = idx;
	return b;
}

void window_add_at(struct window *w, enum window_field f, uint64_t t, double amount)
{
	struct window_bucket *b = window_bucket_at(w, t / WINDOW_BUCKET_NS);

	if (b)
		b->v[f] += amount;
	else
		w->too_late++;
}

unsigned window_add_span(struct window *w, enum window_field f, uint64_t start, uint64_t end,
			 double amount)
{
	if (end <= start) {
		window_add_at(w, f, start, amount);
		return 1;
	}
	uint64_t first = start / WINDOW_BUCKET_NS, last = (end - 1) / WINDOW_BUCKET_NS;
	if (first == last) {
		window_add_at(w, f, start, amount);
		return 1;
	}
	/* Only the ring's worth of buckets at the end of a very long span can be
	 * kept; stepping through the rest would let one bogus record spin. */
	if (last - first >= WINDOW_BUCKETS) {
		first = last - (WINDOW_BUCKETS - 1);
		w->too_late++;
	}
	double per_ns = amount / (double)(end - start);
	for (uint64_t idx = first; idx <= last; idx++) {
		uint64_t lo = idx * WINDOW_BUCKET_NS, hi = lo + WINDOW_BUCKET_NS;
		if (lo < start)
			lo = start;
		if (hi > end)
			hi = end;
		struct window_bucket *b = window_bucket_at(w, idx);
		if (b)
			b->v[f] += per_ns * (double)(hi - lo);
		else
			w->too_late++;
	}
	return (unsigned)(last - first + 1);
}

void window_sum(const struct window *w, uint64_t end, uint64_t len, double out[WF__COUNT])
{
	memset(out, 0, sizeof(double) * WF__COUNT);
	uint64_t last = end / WINDOW_BUCKET_NS, n = len / WINDOW_BUCKET_NS;
	for (uint64_t idx = last > n ? last - n : 0; idx < last; idx++) {
		const struct window_bucket *b = &w->ring[idx & (WINDOW_BUCKETS - 1)];
		if (b->index != idx)
			continue;
		for (unsigned f = 0; f < WF__COUNT; f++)
			out[f] += b->v[f];
	}
}

void busy_init(struct busy *b)
{
	memset(b, 0, sizeof(*b));
	b->field = WF_BUSY_NS;
	b->mirror = WF__COUNT;
}

void busy_free(struct busy *b)
{
	if (!b)
		return;
	free(b->iv);
	b->iv = NULL;
	b->n = b->cap = 0;
}

int busy_clone(struct busy *dst, const struct busy *src, enum window_field field)
{
	struct busy_iv *iv = NULL;

	if (src->cap && !(iv = malloc(src->cap * sizeof(*iv))))
		return -ENOMEM;
	if (src->n)
		memcpy(iv, src->iv, src->n * sizeof(*iv));
	free(dst->iv);
	*dst = *src;
	dst->iv = iv;
	dst->field = field;
	dst->mirror = WF__COUNT;
	return 0;
}

static void cover_field(struct window *w, struct window_bucket *hint, enum window_field f, uint64_t start,
			uint64_t end)
{
	if (hint)
		hint->v[f] += (double)(end - start);
	else
		window_add_span(w, f, start, end, (double)(end - start));
}

/* One newly covered piece: to the field, then to the mirror. */
static uint64_t cover(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start, uint64_t end)
{
	cover_field(w, hint, b->field, start, end);
	if (b->mirror != WF__COUNT)
		cover_field(w, hint, b->mirror, start, end);
	return end - start;
}

/* The pieces of [start, end) that intervals i.. leave uncovered, added to
 * field f; reads the intervals only.  *j: the first interval past end;
 * *lo, *hi: the merged interval's bounds. */
static uint64_t cover_between(const struct busy *b, struct window *w, struct window_bucket *hint,
			      enum window_field f, unsigned i, uint64_t start, uint64_t end, unsigned *jp,
			      uint64_t *lop, uint64_t *hip)
{
	unsigned j = i;
	uint64_t at = start, added = 0, lo = start, hi = end;

	while (j < b->n && b->iv[j].start <= end) {
		if (b->iv[j].start > at) {
			cover_field(w, hint, f, at, b->iv[j].start);
			added += b->iv[j].start - at;
		}
		if (b->iv[j].end > at)
			at = b->iv[j].end;
		if (b->iv[j].start < lo)
			lo = b->iv[j].start;
		if (b->iv[j].end > hi)
			hi = b->iv[j].end;
		j++;
	}
	if (at < end) {
		cover_field(w, hint, f, at, end);
		added += end - at;
	}
	*jp = j;
	*lop = lo;
	*hip = hi;
	return added;
}

/* Room for one more interval: the array doubles up to BUSY_KEEP; at the
 * bound (or out of memory) the older half is forgotten.  Returns 0 when
 * nothing was forgotten; 1 when the floor moved.  -1: no room at all. */
static int busy_room(struct busy *b)
{
	if (b->cap < BUSY_KEEP) {
		unsigned cap = b->cap ? b->cap * 2 : BUSY_MIN_CAP;
		struct busy_iv *p = realloc(b->iv, cap * sizeof(*p));
		if (p) {
			b->iv = p;
			b->cap = cap;
			return 0;
		}
	}
	if (b->n < 2)
		return -1;
	/* Forget the older half: kernels that far back in arrival order are
	 * rare, and counting them could count time twice. */
	unsigned drop = b->n / 2;
	b->floor = b->iv[drop - 1].end;
	memmove(b->iv, b->iv + drop, (b->n - drop) * sizeof(b->iv[0]));
	b->n -= drop;
	return 1;
}

uint64_t busy_add_slow(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start,
		       uint64_t end)
{
	if (end <= start)
		return 0;
	if (start < b->floor) {
		uint64_t cut = end < b->floor ? end : b->floor;
		b->clipped_ns += cut - start;
		if (end <= b->floor)
			return 0;
		start = b->floor;
	}
	if (b->n == b->cap) {
		int rc = busy_room(b);
		if (rc > 0 && start < b->floor)
			return busy_add_slow(b, w, hint, start, end);
		if (rc < 0) {
			/* Out of memory with nothing kept: count it, and settle
			 * everything before its end. */
			b->floor = end;
			return cover(b, w, hint, start, end);
		}
	}

	struct busy_iv *tail = b->n ? &b->iv[b->n - 1] : NULL;
	if (!tail || start > tail->end) {
		b->iv[b->n++] = (struct busy_iv){start, end};
		return cover(b, w, hint, start, end);
	}
	if (start >= tail->start) {
		if (end <= tail->end)
			return 0;
		uint64_t old = tail->end;
		tail->end = end;
		return cover(b, w, hint, old, end);
	}

	/* Out of order: merge with every interval it touches, counting the
	 * gaps.  The mirror gets the same pieces after the field, as a second
	 * union fed the same intervals would add them. */
	unsigned i = b->n, j;
	while (i > 0 && b->iv[i - 1].end >= start)
		i--;
	uint64_t lo, hi, added = cover_between(b, w, hint, b->field, i, start, end, &j, &lo, &hi);
	if (b->mirror != WF__COUNT)
		cover_between(b, w, hint, b->mirror, i, start, end, &j, &lo, &hi);
	if (j == i) {
		memmove(b->iv + i + 1, b->iv + i, (b->n - i) * sizeof(b->iv[0]));
		b->n++;
	} else if (j > i + 1) {
		memmove(b->iv + i + 1, b->iv + j, (b->n - j) * sizeof(b->iv[0]));
		b->n -= j - i - 1;
	}
	b->iv[i] = (struct busy_iv){lo, hi};
	return added;
}
