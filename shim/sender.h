/* SPDX-License-Identifier: MIT */
/*
 * The producer's side of the pipe: records in from any thread, frames out to
 * the collector from one background thread.  Callers never wait for I/O;
 * memory is bounded, and what does not fit or cannot be delivered is
 * spooled to disk when a spool directory is set, else dropped and counted
 * (the counts reach the collector in status records).  Frames a collector
 * has not acknowledged are sent again after a reconnect.
 * Used by the shim, the test producer and mfu-synth.
 */
#ifndef MFU_SENDER_H
#define MFU_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "mfu/wire.h"

struct mfu_sender_config {
	const char *target;    /* "unix:PATH", "tcp:HOST:PORT"; NULL: $MFU_COLLECTOR, else the default socket */
	size_t buffer_bytes;   /* bound on buffered data; 0: $MFU_BUFFER_MB, else 16 MiB */
	size_t frame_raw_bytes; /* seal a frame past this raw size; 0: 256 KiB */
	uint32_t flush_ms;     /* seal a non-empty frame after this long; 0: 200 ms */
	int level;             /* zstd level; 0: 3 */
	/* Spool directory for frames that do not fit memory while the collector
	 * is away or slow; NULL: $MFU_SPOOL_DIR, else none (drop and count). */
	const char *spool_dir;
	uint64_t spool_bytes;  /* bound on the spool file; 0: $MFU_SPOOL_MB, else 256 MiB */
	/* Clock for status and goodbye times; NULL: CLOCK_REALTIME, the clock CUPTI
	 * stamps kernels with.  A producer with its own time base passes its own. */
	uint64_t (*clock_ns)(void *arg);
	void *clock_arg;
	/* Turns the ticks of a packed gemm record (MFU_SENDER_GEMM_TICKS) into
	 * ns of the record's clock; called on the sender thread only.  NULL: no
	 * producer sends ticks. */
	uint64_t (*ticks_ns)(uint64_t ticks, void *arg);
	void *ticks_arg;
};

/* A gemm record as a calling thread leaves it in its ring: one cache line,
 * widened into a struct mfu_rec_gemm on the sender thread.  A call stamps
 * it once (start = end = when).  Dimensions over UINT32_MAX and types that
 * do not fit 16 bits do not fit here: such a call takes mfu_sender_put. */
struct mfu_sender_gemm {
	uint64_t when;  /* ns, or ticks when clock is MFU_SENDER_GEMM_TICKS */
	uint64_t call, flops;
	uint32_t m, n, k, batch;
	uint16_t a_type, b_type, c_type, compute_type; /* the 32-bit type + 1: 0 is -1 (none) */
	uint16_t api, ops;
	uint32_t flags;
	uint16_t device, clock;
	uint32_t tid;
};

#define MFU_SENDER_GEMM_TICKS 1u

struct mfu_sender_stats {
	uint64_t records, frames, bytes, connects;
	uint64_t spooled; /* frames written to the spool file */
	uint64_t replays; /* reconnects that sent unacknowledged frames again */
	uint64_t dropped[MFU_DROP__COUNT];
};

struct mfu_sender;

/* Copies the hello; it is re-sent first on every connection.  Starts the
 * sender thread.  Returns 0 or -errno. */
int mfu_sender_new(const struct mfu_sender_config *cfg, const struct mfu_rec_hello *hello,
		   struct mfu_sender **out);
/* Queues a record.  Thread-safe, never blocks on I/O.  Fixed-size records
 * (kernel, gemm, api, copy, step, status, goodbye) are copied and encoded later on
 * the sender thread, so an invalid one is counted as an encode drop there.
 * Device and string records are encoded now, and kept and re-sent on
 * reconnect.  Returns 0, or -ENOBUFS when the record was dropped (and
 * counted), -EINVAL for an invalid device or string record. */
int mfu_sender_put(struct mfu_sender *s, const struct mfu_record *r);
/* The hot path's put, without a copy and in a cache line: a slot in the
 * calling thread's gemm ring to build a packed gemm record in, or NULL when
 * the ring is full or cannot be made (the caller then sends the record with
 * mfu_sender_put).  The record becomes visible to the sender thread at
 * mfu_sender_gemm_commit, which must follow before this thread reserves
 * again.  Every field must be written: the slot holds an older record.
 * Thread-safe in that each thread has its own ring; not async-signal-safe. */
struct mfu_sender_gemm *mfu_sender_gemm_reserve(struct mfu_sender *s);
void mfu_sender_gemm_commit(struct mfu_sender *s);
/* Adds externally counted losses (e.g. CUPTI's) to the status counters. */
void mfu_sender_count_drops(struct mfu_sender *s, enum mfu_drop_reason why, uint64_t n);
/* MFU_STATUS_* flags sent in the next status record. */
void mfu_sender_set_status(struct mfu_sender *s, uint64_t flags);
/* Seals what is buffered and waits up to timeout_ms for it to be written.
 * Returns 0, or -ETIMEDOUT (what is left stays queued). */
int mfu_sender_flush(struct mfu_sender *s, unsigned timeout_ms);
void mfu_sender_stats(struct mfu_sender *s, struct mfu_sender_stats *out);
/* Sends a goodbye, flushes for at most timeout_ms, stops the thread and
 * closes the connection, but keeps the memory: threads still calling
 * mfu_sender_put afterwards (at process exit) are harmless, their records
 * are dropped.  Idempotent. */
void mfu_sender_shutdown(struct mfu_sender *s, int64_t exit_code, unsigned timeout_ms);
/* mfu_sender_shutdown, then frees everything; no other thread may use s. */
void mfu_sender_free(struct mfu_sender *s, int64_t exit_code, unsigned timeout_ms);

#endif
