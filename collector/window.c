/* SPDX-License-Identifier: MIT */
/*
 * Bucket ring and busy union; see window.h.  These run once per kernel record,
 * so the common cases (a kernel inside one bucket, a kernel that starts after
 * the last busy interval) are short straight-line paths.
 */
#include <string.h>

#include "window.h"

#define EMPTY UINT64_MAX

void window_init(struct window *w)
{
	memset(w, 0, sizeof(*w));
	for (unsigned i = 0; i < WINDOW_BUCKETS; i++)
		w->ring[i].index = EMPTY;
}

static struct window_bucket *bucket_at(struct window *w, uint64_t idx)
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
	struct window_bucket *b = bucket_at(w, t / WINDOW_BUCKET_NS);

	if (b)
		b->v[f] += amount;
	else
		w->too_late++;
}

struct window_bucket *window_bucket_of(struct window *w, uint64_t start, uint64_t end)
{
	uint64_t idx = start / WINDOW_BUCKET_NS;

	return idx == end / WINDOW_BUCKET_NS ? bucket_at(w, idx) : NULL;
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
		struct window_bucket *b = bucket_at(w, idx);
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
}

static uint64_t cover(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start, uint64_t end)
{
	if (hint)
		hint->v[b->field] += (double)(end - start);
	else
		window_add_span(w, b->field, start, end, (double)(end - start));
	return end - start;
}

uint64_t busy_add(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start, uint64_t end)
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
	if (b->n == BUSY_KEEP) {
		/* Forget the older half: kernels that far back in arrival order are
		 * rare, and counting them could count time twice. */
		unsigned drop = BUSY_KEEP / 2;
		b->floor = b->iv[drop - 1].end;
		memmove(b->iv, b->iv + drop, (b->n - drop) * sizeof(b->iv[0]));
		b->n -= drop;
		if (start < b->floor)
			return busy_add(b, w, hint, start, end);
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

	/* Out of order: merge with every interval it touches, counting the gaps. */
	unsigned i = b->n;
	while (i > 0 && b->iv[i - 1].end >= start)
		i--;
	unsigned j = i;
	uint64_t at = start, added = 0, lo = start, hi = end;
	while (j < b->n && b->iv[j].start <= end) {
		if (b->iv[j].start > at)
			added += cover(b, w, hint, at, b->iv[j].start);
		if (b->iv[j].end > at)
			at = b->iv[j].end;
		if (b->iv[j].start < lo)
			lo = b->iv[j].start;
		if (b->iv[j].end > hi)
			hi = b->iv[j].end;
		j++;
	}
	if (at < end)
		added += cover(b, w, hint, at, end);
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
