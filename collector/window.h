/* SPDX-License-Identifier: MIT */
/*
 * Rolling windows over one device's data time.  Time is cut into 100 ms
 * buckets kept in a ring of 1024 (102.4 s, enough for the 60 s window); an
 * interval's amount is spread over the buckets it overlaps in proportion to
 * the overlap, so a kernel straddling a window edge contributes pro rata.
 * Windows end on a bucket edge, which makes their sums exact.  The busy union
 * merges kernel intervals so overlapping streams are counted once.
 */
#ifndef MFU_WINDOW_H
#define MFU_WINDOW_H

#include <stdint.h>

#include "mfu/wire.h"

#define WINDOW_BUCKET_NS UINT64_C(100000000)
#define WINDOW_BUCKETS 1024u /* power of two */
#define WINDOW_SPAN_NS (WINDOW_BUCKET_NS * WINDOW_BUCKETS)

/* What a bucket accumulates.  The first MFU_CLASS_COUNT are executed FLOPs by
 * dtype class. */
enum window_field {
	WF_FLOPS = 0, /* + class */
	WF_MODEL_FLOPS = MFU_CLASS_COUNT,
	WF_REMAT_FLOPS,
	WF_BUSY_NS,         /* union of kernel intervals */
	WF_KERNEL_NS,       /* sum of kernel durations */
	WF_GEMM_KERNEL_NS,  /* sum of durations of kernels launched by intercepted GEMMs */
	WF_KNOWN_KERNEL_NS, /* sum of durations of kernels that carry FLOPs */
	WF_KERNELS,         /* counted in the bucket where the kernel ends */
	WF_STEPS,           /* counted in the bucket where the step ends */
	WF_STEP_NS,         /* duration of those steps */
	WF_GEMM_CALLS,
	WF_GEMM_FLOPS,
	WF_BUSY_ALL_NS,     /* union of kernel and copy intervals: idle is its complement */
	WF_IDLE_NS,         /* + enum gap_cause: classified gap time, pro rata */
	WF_SHORT_KERNELS = WF_IDLE_NS + 5, /* kernels shorter than their launch call, at kernel end */
	WF_JOINED_KERNELS,  /* kernels whose launch call is known, at kernel end */
	WF__COUNT
};

struct window_bucket {
	uint64_t index; /* absolute bucket number (time / WINDOW_BUCKET_NS); 0 = empty */
	double v[WF__COUNT];
};

struct window {
	struct window_bucket ring[WINDOW_BUCKETS];
	uint64_t newest;   /* highest bucket index written */
	uint64_t too_late; /* contributions older than the ring, dropped */
};

void window_init(struct window *w);

/* Adds amount to field f, spread uniformly over [start, end).  A zero-length
 * interval puts it all in the bucket holding start.  Returns the number of
 * buckets touched (at most WINDOW_BUCKETS), so callers can bound the work a
 * producer can cause. */
unsigned window_add_span(struct window *w, enum window_field f, uint64_t start, uint64_t end,
			 double amount);
/* Adds amount to field f in the bucket holding t. */
void window_add_at(struct window *w, enum window_field f, uint64_t t, double amount);

/* The bucket numbered idx, started (zeroed) if the ring held an older one
 * there; NULL when idx is older than the ring.  window_bucket_of's slow
 * path. */
struct window_bucket *window_bucket_at(struct window *w, uint64_t idx);

/* The bucket holding all of [start, end] when both ends fall in one bucket
 * (nearly every kernel), ready for direct adds; else NULL and the caller
 * uses window_add_span.  Inline: it runs once per kernel record. */
static inline struct window_bucket *window_bucket_of(struct window *w, uint64_t start, uint64_t end)
{
	uint64_t idx = start / WINDOW_BUCKET_NS;

	if (idx != end / WINDOW_BUCKET_NS)
		return NULL;
	struct window_bucket *b = &w->ring[idx & (WINDOW_BUCKETS - 1)];
	return __builtin_expect(b->index == idx, 1) ? b : window_bucket_at(w, idx);
}

/* Sums every field over [end - len, end).  end and len must be multiples of
 * WINDOW_BUCKET_NS and len <= WINDOW_SPAN_NS - WINDOW_BUCKET_NS. */
void window_sum(const struct window *w, uint64_t end, uint64_t len, double out[WF__COUNT]);

/* ---- busy union ---- */

#define BUSY_KEEP 4096u   /* intervals kept; past it the older half is forgotten */
#define BUSY_MIN_CAP 64u  /* the array starts this small and doubles up to BUSY_KEEP */

struct busy_iv {
	uint64_t start, end;
};

/* Disjoint, sorted intervals of recent busy time.  Older ones fall off the
 * front; time before `floor` is considered settled and never re-counted. */
struct busy {
	unsigned n, cap;
	enum window_field field;  /* what newly covered time adds to: WF_BUSY_NS */
	enum window_field mirror; /* a second field that gets the same, or WF__COUNT */
	uint64_t floor;
	uint64_t clipped_ns; /* late kernel time before floor, not counted */
	struct busy_iv *iv;  /* cap entries, grown on demand */
};

/* Starts empty, adding to WF_BUSY_NS and mirroring nothing; set field (and
 * mirror) for another union.  Allocates nothing. */
void busy_init(struct busy *b);
/* Releases the intervals and leaves b empty; NULL-safe. */
void busy_free(struct busy *b);
/* Makes dst an exact copy of src (intervals, floor, clipped time), adding to
 * field and mirroring nothing.  Returns 0 or -ENOMEM (dst untouched). */
int busy_clone(struct busy *dst, const struct busy *src, enum window_field field);
/* Merges [start, end) into the union and adds the newly covered time to
 * b->field of w (and to b->mirror, the same amounts in the same order), pro
 * rata; into `hint` directly when it is the one bucket holding
 * [start, end].  Returns the newly covered nanoseconds.  When the array
 * cannot grow (out of memory) the older half is forgotten early, as at
 * BUSY_KEEP. */
uint64_t busy_add_slow(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start, uint64_t end);

/* busy_add's common case inline (once per kernel record): a kernel inside
 * one bucket that starts at or after the newest interval's start, with room
 * to append. */
static inline uint64_t busy_add(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start,
				uint64_t end)
{
	struct busy_iv *tail = b->n ? &b->iv[b->n - 1] : NULL;

	if (!hint || !tail || b->n == b->cap || end <= start || start < b->floor || start < tail->start)
		return busy_add_slow(b, w, hint, start, end);
	if (start > tail->end) {
		*++tail = (struct busy_iv){start, end};
		b->n++;
	} else if (end > tail->end) {
		uint64_t old = tail->end;
		tail->end = end;
		start = old;
	} else {
		return 0;
	}
	hint->v[b->field] += (double)(end - start);
	if (b->mirror != WF__COUNT)
		hint->v[b->mirror] += (double)(end - start);
	return end - start;
}

#endif
