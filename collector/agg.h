/* SPDX-License-Identifier: MIT */
/*
 * The collector's model: every source (one producer process) and, inside it,
 * every device, with exact since-start totals and rolling windows.  Records
 * go in through agg_source_record(); the numbers come out through figures.h.
 * Single-threaded: the event loop owns it.
 */
#ifndef MFU_AGG_H
#define MFU_AGG_H

#include <stdint.h>

#include "gaps.h"
#include "mfu/wire.h"
#include "peak.h"
#include "window.h"

#define AGG_DEVICES_MAX 64u   /* per source */
#define AGG_STRING_BYTES_MAX (16u << 20)
#define AGG_NAME_MAX 256u

typedef unsigned __int128 u128;

struct agg_config {
	uint64_t settle_ns;  /* live windows end this far behind the newest data */
	int offline;         /* windows end at the newest data (mfu report) */
	int have_override;
	double override_tflops[MFU_CLASS_COUNT]; /* 0 = use the table for that class */
	char override_origin[32];                /* "--peak-tflops" or "MFU_PEAK_TFLOPS" */
	unsigned model_class;                    /* --model-dtype; 0 = declared or dominant */
	unsigned max_sources;
	uint64_t gap_wait_ns; /* gaps shorter than this with the kernel launched: kernel_wait; 0 = 10 us */
	int no_gaps;          /* mfud --no-gaps: no gap analysis (idle stays unattributed) */
};

#define AGG_GAP_WAIT_NS UINT64_C(10000) /* 10 us */
/* Offline (mfu report, cfg.settle_ns 0), gap analysis still waits this long
 * behind the newest record for reordered records, and flushes at the end. */
#define AGG_GAP_SETTLE_NS UINT64_C(1000000000)

struct agg_totals {
	u128 flops[MFU_CLASS_COUNT]; /* hardware-executed, by class */
	u128 model_flops, remat_flops, gemm_flops;
	uint64_t busy_ns, kernel_ns, gemm_kernel_ns, known_kernel_ns;
	uint64_t kernels, steps, step_ns, gemm_calls, api_calls;
	uint64_t copies, copy_ns, busy_all_ns; /* busy_all: union of kernels and copies */
};

struct agg_source;

/* What every record touches first; the ring of window buckets last. */
struct agg_device {
	struct agg_source *src;
	uint32_t index;
	int have_info;
	const struct peak_entry *peak; /* table match, NULL if unknown */
	unsigned declared_class;       /* model_class of the latest step that declared one */
	struct agg_totals tot;
	struct busy busy;     /* kernels; until the first copy it also feeds busy_all's field */
	struct busy busy_all; /* kernels and copies, from the first copy on */
	struct gaps_dev gaps;
	struct mfu_device_info info; /* info.name points at name */
	char name[AGG_NAME_MAX];
	struct window win;
};

struct agg_source {
	uint64_t id; /* collector-assigned, for log lines */
	char host[AGG_NAME_MAX], job[AGG_NAME_MAX], producer[AGG_NAME_MAX], peer[128];
	uint64_t pid, world_size, hello_flags, hello_ns;
	/* The kernel's word on the peer (SO_PEERCRED) when its pid differs from
	 * the hello's: another pid namespace, or a false claim.  0: agrees, or
	 * unknown (TCP). */
	uint64_t peer_pid_mismatch;
	unsigned connections; /* hellos seen: 1 for the first connection */
	uint64_t bad_time;    /* records dropped for implausible timestamps */
	uint64_t gone_mono_ns; /* collector time of the last disconnect */
	int64_t rank, local_rank;
	int connected, gone, degraded;
	uint64_t degraded_since_ns; /* producer time the current degraded spell began */
	uint64_t degraded_ns;       /* degraded spells that ended */
	uint64_t first_ns, max_ns, goodbye_ns;
	uint64_t max_mono_ns; /* collector time when max_ns was seen */
	uint64_t dropped[MFU_DROP__COUNT];
	uint64_t frames, bytes, records, unknown_records, seq_gaps;
	uint64_t dup_frames; /* frames sent again that were already applied: skipped */
	uint64_t span_work; /* buckets touched by multi-bucket spans; ingest bounds it per frame */
	uint32_t next_seq;
	int have_seq;
	unsigned ndev;
	struct agg_device *dev[AGG_DEVICES_MAX];
	struct agg_device *last_dev;
	/* interned strings: id -> text (kernel names) */
	char **strings;
	uint32_t strings_cap;
	size_t string_bytes;
	struct gaps_src gaps;
};

struct agg {
	struct agg_config cfg;
	struct agg_source **src;
	unsigned nsrc, cap;
	uint64_t next_id;
};

int agg_new(const struct agg_config *cfg, struct agg **out);
void agg_free(struct agg *a);

/* Finds the source a hello describes (same host, pid, job and start time: a
 * reconnect) or makes a new one.  Returns 0 or -errno (-ENOSPC past
 * max_sources). */
int agg_hello(struct agg *a, const struct mfu_rec_hello *h, const char *peer,
	      uint64_t now_mono_ns, struct agg_source **out);
/* Applies one record of a source that has said hello.  Returns 0, or a
 * negated mfu_wire_error for a record that breaks a rule of the stream. */
int agg_source_record(struct agg_source *s, const struct mfu_record *r, uint64_t now_mono_ns);
/* Decodes the records left in d and applies each as agg_source_record
 * does, stopping at the first error.  Returns 0 when d is used up, a
 * negated mfu_wire_error (the decoder's or a record's), or 1 when
 * s->span_work - work0 passed work_max (the record that passed it is
 * applied). */
int agg_source_feed(struct agg_source *s, struct mfu_dec *d, uint64_t now_mono_ns, uint64_t work0,
		    uint64_t work_max);
/* Applies an off-CPU interval of one of the source's threads (from the
 * collector's scheduler tracer, or an archive).  Returns 0, or -ENOMEM when
 * it could not be kept (counted, nothing else lost).  Not thread-safe: call
 * it from the event loop that owns the model. */
int agg_source_offcpu(struct agg_source *s, const struct mfu_rec_offcpu *o);
/* Lets offcpu records inside the source's frames through agg_source_record:
 * for archives, which the collector wrote; a producer's socket never may. */
void agg_source_accept_offcpu(struct agg_source *s, int accept);
/* Sweeps gap analysis up to every source's watermark (call it now and then:
 * data time moves on between records), or, for sources that said goodbye
 * or left, to the end. */
void agg_advance(struct agg *a, uint64_t now_mono_ns);
/* Sweeps all of every source's data: the input is complete (mfu report). */
void agg_finish(struct agg *a);
/* Notes a data frame's sequence number; counts gaps and duplicates. */
void agg_source_frame(struct agg_source *s, uint32_t seq, size_t bytes);
/* Notes a connection's first frame (the hello's), which is outside the
 * sequence. */
void agg_source_frame_unnumbered(struct agg_source *s, size_t bytes);
/* 1 if a data frame numbered seq was applied already (numbered below the
 * next one expected). */
int agg_source_seq_seen(const struct agg_source *s, uint32_t seq);
void agg_source_disconnect(struct agg_source *s, uint64_t now_mono_ns);
/* The source hung up without its goodbye record: whatever it had not sent
 * by then is missing, and no drop count of its own says how much. */
static inline int agg_source_cut_off(const struct agg_source *s)
{
	return !s->connected && !s->goodbye_ns;
}
/* Producer time the source spent without kernel timing, up to its newest
 * data: CUPTI unavailable from the start, or lost to another profiler. */
uint64_t agg_source_degraded_ns(const struct agg_source *s);
/* Frees sources disconnected for longer than retain_ns: their series leave
 * /metrics and the source limit does not fill up over a long-lived daemon.
 * Returns how many were freed. */
unsigned agg_evict(struct agg *a, uint64_t now_mono_ns, uint64_t retain_ns);

/* The data time the source's windows end at now; a multiple of the bucket. */
uint64_t agg_source_window_end(const struct agg *a, const struct agg_source *s, uint64_t now_mono_ns);
/* The since-start span of a source: [first, end). */
void agg_source_span(const struct agg *a, const struct agg_source *s, uint64_t now_mono_ns,
		     uint64_t *first, uint64_t *end);

/* Peak for class cls on d, in FLOP/s; 0 if unknown.  *origin gets "table",
 * "override" or "unknown". */
double agg_device_peak(const struct agg *a, const struct agg_device *d, unsigned cls,
		       const char **origin);

const char *agg_source_string(const struct agg_source *s, uint64_t id, uint32_t *len);

#endif
