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

/* The bucket holding all of [start, end] when both ends fall in one bucket
 * (nearly every kernel), ready for direct adds; else NULL and the caller
 * uses window_add_span. */
struct window_bucket *window_bucket_of(struct window *w, uint64_t start, uint64_t end);

/* Sums every field over [end - len, end).  end and len must be multiples of
 * WINDOW_BUCKET_NS and len <= WINDOW_SPAN_NS - WINDOW_BUCKET_NS. */
void window_sum(const struct window *w, uint64_t end, uint64_t len, double out[WF__COUNT]);

/* ---- busy union ---- */

#define BUSY_KEEP 4096u

struct busy_iv {
	uint64_t start, end;
};

/* Disjoint, sorted intervals of recent busy time.  Older ones fall off the
 * front; time before `floor` is considered settled and never re-counted. */
struct busy {
	struct busy_iv iv[BUSY_KEEP];
	unsigned n;
	uint64_t floor;
	uint64_t clipped_ns; /* late kernel time before floor, not counted */
	enum window_field field; /* what newly covered time adds to: WF_BUSY_NS */
};

/* Starts empty, adding to WF_BUSY_NS; set field for another union. */
void busy_init(struct busy *b);
/* Merges [start, end) into the union and adds the newly covered time to
 * WF_BUSY_NS of w, pro rata; into `hint` directly when it is the one bucket
 * holding [start, end].  Returns the newly covered nanoseconds. */
uint64_t busy_add(struct busy *b, struct window *w, struct window_bucket *hint, uint64_t start, uint64_t end);

#endif
