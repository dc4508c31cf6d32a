/* SPDX-License-Identifier: MIT */
/*
 * Launch-gap analysis: where a device sat idle between two busy runs, and why.
 * Kernel and copy intervals wait in a per-device reorder buffer until the
 * source's settle watermark passes them, are then swept in start order, and
 * every gap between two busy runs gets exactly one cause (doc/metrics.md,
 * "Idle gaps", gives the rules and their order).  Launch API records are
 * joined to kernels by correlation id for the launch latency and for the
 * rules; sync API calls and off-CPU intervals are kept per source for the
 * rules.  Every structure is bounded; what does not fit is counted.
 * Single-threaded, like the rest of the model: the event loop owns it.
 */
#ifndef MFU_GAPS_H
#define MFU_GAPS_H

#include <stdint.h>

#include "mfu/wire.h"
#include "window.h"

enum gap_cause {
	GAP_SYNC = 0,
	GAP_HOST_OFFCPU,
	GAP_HOST_LAUNCH_BOUND,
	GAP_KERNEL_WAIT,
	GAP_OTHER,
	GAP__COUNT
};

/* "sync", "host_offcpu", "host_launch_bound", "kernel_wait", "other". */
const char *gap_cause_name(unsigned cause);

/* ---- latency sketch: fixed log buckets ----
 * Values below 16 ns have a bucket each; above, every power of two is cut
 * into 16 equal buckets, up to 2^40 ns (18 min; larger values land in the
 * last bucket, and max stays exact).  A quantile is reported as the middle
 * of its bucket, so it is within 1/32 (3.2 %) of the true nearest-rank
 * value. */
#define LAT_SUB 16u
#define LAT_TOP_EXP 40u
#define LAT_BUCKETS (LAT_SUB + (LAT_TOP_EXP - 4u) * LAT_SUB)

struct lat_sketch {
	uint64_t n[LAT_BUCKETS];
	uint64_t count, sum_ns, max_ns;
};

void lat_sketch_add(struct lat_sketch *k, uint64_t v_ns);
void lat_sketch_merge(struct lat_sketch *dst, const struct lat_sketch *src);
/* Nearest-rank quantile q in [0, 1], in ns, as the middle of its bucket and
 * never above max; NaN when the sketch is empty. */
double lat_sketch_quantile(const struct lat_sketch *k, double q);
unsigned lat_bucket_of(uint64_t v_ns);

/* Launch latencies of one device by second of kernel start, for the rolling
 * windows: 64 one-second slots (the 60 s window plus the partial seconds). */
#define GAPS_LAT_SLOTS 64u
#define GAPS_LAT_SLOT_NS UINT64_C(1000000000)

struct lat_slot {
	uint64_t sec; /* start_ns / 1 s; UINT64_MAX: empty */
	uint64_t count, sum_ns, max_ns;
	uint32_t n[LAT_BUCKETS];
};

/* Gap length histogram: the upper bounds (le) of the Prometheus buckets;
 * the last bucket is +Inf. */
#define GAP_HIST_BUCKETS 16u
extern const uint64_t gap_hist_le_ns[GAP_HIST_BUCKETS - 1];

/* One kernel or copy waiting for the watermark (32 bytes: the reorder buffer
 * holds every interval of the last settle time).  The end rides as a length
 * and the thread as 32 bits; an interval where either does not fit (a length
 * over GAP_IV_LEN_MAX or an end before the start, a thread id of 2^32 or
 * more) is "wide": `tid` then indexes the device's wide pool, which holds
 * both in full.  Read them through gaps.c's iv_end() and iv_tid(). */
struct gap_iv {
	uint64_t start, corr;
	uint64_t l_end; /* the launch call's end, with GAP_IV_LAUNCH */
	uint32_t tid;   /* the launching thread, with GAP_IV_LAUNCH; wide: the pool slot */
	uint32_t bits;  /* end - start in the low bits, GAP_IV_* above */
};

#define GAP_IV_LEN_MAX 0x1fffffffu /* 537 ms */
#define GAP_IV_COPY 0x20000000u    /* a copy, not a kernel */
#define GAP_IV_LAUNCH 0x40000000u  /* the launch call is known: l_end and tid */
#define GAP_IV_WIDE 0x80000000u    /* end and tid are in the wide pool */

struct gap_wide {
	uint64_t end, tid; /* a free slot: end is the next free one */
};

#define GAPS_PENDING_MIN 256u       /* the reorder ring's first and smallest size */
#define GAPS_PENDING_MAX (1u << 17) /* per device */
#define GAPS_SIDE_MAX 4096u         /* per device */

struct gaps_dev {
	struct gap_iv *pend; /* a ring of cap: npend wait from head on, sorted by start
			      * unless unsorted; when full it doubles while small, then
			      * grows by an eighth, up to GAPS_PENDING_MAX; a sweep that
			      * leaves it under a quarter full halves it */
	unsigned head, npend, cap;
	int unsorted;        /* the side buffer was full: an arrival was appended out of order */
	struct gap_iv *side; /* arrivals far out of order (a long NCCL kernel's record comes
			      * after thousands that started later): sorted, merged by the sweep */
	unsigned nside, side_cap;
	struct gap_wide *wide; /* each slot in use belongs to one waiting interval */
	uint32_t wide_cap, wide_n, wide_used; /* allocated, handed out, in use */
	uint32_t wide_free;                   /* 1 + the first free slot; 0: none */
	int have_run;
	uint64_t run_end;  /* end of the busy run the sweep is in */
	uint64_t frontier; /* start of the last swept interval */
	struct lat_slot *slots[GAPS_LAT_SLOTS]; /* each allocated at its first launch */
	struct lat_slot *slot_cur; /* the slot of [slot_lo_ns, + 1 s); NULL: none, or older than the ring */
	uint64_t slot_lo_ns;
	uint64_t idle_ns[GAP__COUNT]; /* classified gap time since start */
	uint64_t hist[GAP_HIST_BUCKETS];
	uint64_t gaps, gap_ns;
	uint64_t short_kernels;  /* kernels shorter than their launch call */
	uint64_t joined_kernels; /* kernels whose launch call is known */
	uint64_t late;   /* intervals that arrived after the sweep passed their start */
	uint64_t forced; /* intervals swept before the watermark: buffer full */
	struct lat_sketch lat_past; /* latencies in no live slot; since start: gaps_lat_window */
};

/* corr -> the half (launch call, or kernel/copy) that came first; the entry
 * leaves when the other half comes.  40 bytes. */
struct gap_join {
	uint64_t corr;
	uint64_t start, end; /* the launch call's, or the kernel's (copy's) */
	uint64_t id;         /* launch: the calling thread; kernel: its name */
	uint32_t device;     /* kernel */
	uint16_t flags;      /* JOIN_* in gaps.c */
	uint16_t kind;       /* launch: its api kind */
};

/* Sorted by start; max_end: the latest end of this span and every one
 * before it, so "is any in progress at a" is one binary search. */
struct gap_span {
	uint64_t start, end, max_end;
};

/* One thread's off-CPU spans, sorted by start (a thread's spans do not
 * overlap, so their ends are sorted too). */
struct gap_thread {
	uint64_t tid;
	struct gap_span *v;
	uint32_t n, cap;
};

#define GAPS_JOIN_MAX (1u << 18)    /* entries per source */
#define GAPS_SPANS_MAX (1u << 16)   /* sync calls per source; off-CPU intervals per thread */
#define GAPS_THREADS 64u            /* threads whose off-CPU intervals are kept, per source */
#define GAPS_SHORT_NAMES 256u       /* distinct kernel names counted per source */

struct gap_name_count {
	uint64_t name_id, count;
};

struct gaps_src {
	uint64_t watermark;   /* swept up to here */
	uint64_t next_sweep;  /* the next window bucket edge past it */
	uint64_t settle_ns;   /* the watermark trails the newest data by this */
	uint64_t wait_ns;     /* kernel_wait threshold */
	struct gap_join *join;
	uint32_t join_cap, join_n;
	int accept_offcpu;    /* records from an archive, not a socket */
	int off;              /* agg_config.no_gaps: records bypass gap analysis */
	struct gap_span *sync;
	uint32_t nsync, sync_cap;
	uint64_t join_evicted, spans_dropped, offcpu_ignored;
	uint64_t short_other; /* short kernels whose name did not fit the table */
	unsigned nthreads, nshort_names;
	struct gap_thread threads[GAPS_THREADS];
	struct gap_name_count short_names[GAPS_SHORT_NAMES];
};

struct agg_source;
struct agg_device;

/* Both start zeroed (calloc); _free releases what they grew and leaves them
 * reusable.  No-ops on empty state. */
void gaps_dev_free(struct gaps_dev *g);
void gaps_src_free(struct gaps_src *g);

/* Feed one record.  Each returns 0, or -ENOMEM when a table could not grow:
 * the record is then left out of gap analysis (and counted), never fatal
 * for the stream. */
/* hint: the window bucket holding all of the kernel, or NULL. */
int gaps_kernel(struct agg_source *s, struct agg_device *d, struct window_bucket *hint,
		const struct mfu_rec_kernel *k);
int gaps_copy(struct agg_source *s, struct agg_device *d, const struct mfu_rec_copy *c);
int gaps_api(struct agg_source *s, const struct mfu_rec_api *a);
int gaps_offcpu(struct agg_source *s, const struct mfu_rec_offcpu *o);

/* Sweeps every device's intervals that start before watermark (data time),
 * classifying the gaps between them.  Returns at once when the watermark
 * has not reached next_sweep (a window bucket edge past the last sweep), a
 * test callers on the per-record path make themselves first. */
void gaps_advance(struct agg_source *s, uint64_t watermark);
/* Sweeps everything still waiting: the source's data is complete. */
void gaps_flush(struct agg_source *s);

/* Launch latencies of kernels starting in the whole seconds of
 * [end - len, end) (end rounded down to a second), merged into *out (which
 * the caller zeroes); len 0: since start. */
void gaps_lat_window(const struct gaps_dev *g, uint64_t end_ns, uint64_t len_ns, struct lat_sketch *out);

#endif
