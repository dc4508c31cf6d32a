/* SPDX-License-Identifier: MIT */
/*
 * The collector's side of the eBPF off-CPU tracer (tools/bpf/): decides
 * whether it runs (--bpf=auto|on|off), watches the process of each source
 * that said hello over the local Unix socket and stops at its disconnect,
 * and turns each off-CPU interval into an MFU_REC_OFFCPU record for that
 * source.  Records go to a sink function (mfud: agg_source_offcpu, for
 * gap analysis); the feed also keeps per-source and total off-CPU time by
 * state itself.  Single-threaded: everything here runs on the loop's thread
 * and nothing is async-signal-safe.
 */
#ifndef MFU_OFFCPU_FEED_H
#define MFU_OFFCPU_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "loop.h"
#include "mfu/wire.h"
#include "offcpu_tracer.h"

enum offcpu_feed_mode {
	OFFCPU_FEED_OFF = 0, /* never try */
	OFFCPU_FEED_AUTO,    /* try; off, with the reason, if it fails */
	OFFCPU_FEED_ON,      /* try; failing is an error */
};

/* Receives one record for s.  Returns 0 or -errno (counted, not fatal). */
typedef int (*offcpu_sink_fn)(struct agg_source *s, const struct mfu_rec_offcpu *o);

struct offcpu_feed;

struct offcpu_feed_stats {
	struct offcpu_stats tracer;           /* all 0 while off */
	uint64_t records;                     /* records handed to sources */
	uint64_t unmatched;                   /* intervals of a pid no longer attached */
	uint64_t sink_errors;
	uint64_t frames, frame_errors;        /* archive frames written, records lost to encoding */
	uint64_t ns[MFU_OFFCPU__COUNT];       /* off-CPU time handed over, by state */
	unsigned sources;                     /* pids attached now */
};

/*
 * Parses "auto", "on" or "off".  Returns 0, or -EINVAL with a one-line
 * message in err.  Thread-safe.
 */
int offcpu_feed_mode_parse(const char *s, enum offcpu_feed_mode *mode, char *err, size_t errlen);

/*
 * Makes the feed and, unless mode is OFF, the tracer on l.  Returns 0 with
 * the feed in *out (running or not: see offcpu_feed_enabled), or -ENOMEM,
 * or, only in mode ON, the tracer's -errno with its reason in why.
 */
int offcpu_feed_new(struct loop *l, enum offcpu_feed_mode mode, const struct offcpu_tracer_opts *opts,
		    struct offcpu_feed **out, char *why, size_t whylen);

/* Stops the tracer and frees the feed.  offcpu_feed_free(NULL) is a no-op. */
void offcpu_feed_free(struct offcpu_feed *f);

/* 1 if the tracer runs; *reason (may be NULL) gets why not ("" when on).
 * f may be NULL (0, "not started"). */
int offcpu_feed_enabled(const struct offcpu_feed *f, const char **reason);

/* Why a feed made in mode OFF is off, as offcpu_feed_enabled says it
 * (default "--bpf=off"); no effect on a running tracer. */
void offcpu_feed_set_off_reason(struct offcpu_feed *f, const char *reason);

/* Where records go; NULL restores the built-in per-source accounting. */
void offcpu_feed_set_sink(struct offcpu_feed *f, offcpu_sink_fn fn);

/* Receives one sealed frame of src's MFU_REC_OFFCPU records. */
typedef void (*offcpu_frame_fn)(void *arg, struct agg_source *src, const uint8_t *frame, size_t len);

/*
 * Also writes every record into frames for src's archive stream: sealed
 * every second, when 64 KiB of records wait, and at the last detach (so
 * before the source's archive is closed).  Such a frame starts with an
 * offcpu record, by which readers keep it out of the producer's frame
 * sequence (collector/ingest.c).  fn NULL stops it.  Returns 0 or -ENOMEM.
 */
int offcpu_feed_set_archive(struct offcpu_feed *f, offcpu_frame_fn fn, void *arg);

/*
 * Follows every thread of process pid and hands its intervals to src.
 * Counted: attaching a pid twice needs two detaches.  src must stay valid
 * until the last detach.  Returns 0, -ENOTCONN (the tracer is off), -EINVAL
 * (pid 0, no src, or pid attached to another source), -ENOMEM, or the
 * tracer's -errno.
 */
int offcpu_feed_attach(struct offcpu_feed *f, struct agg_source *src, uint32_t pid);

/* Undoes one attach; the last one unwatches pid and forgets src. */
void offcpu_feed_detach(struct offcpu_feed *f, uint32_t pid);

/*
 * Built-in accounting: src's off-CPU ns by state into ns[] (zeros when src is
 * not attached or a sink is set).  Returns 0 or -ENOENT.
 */
int offcpu_feed_source_ns(const struct offcpu_feed *f, const struct agg_source *src,
			  uint64_t ns[MFU_OFFCPU__COUNT]);

void offcpu_feed_stats(struct offcpu_feed *f, struct offcpu_feed_stats *st);

/* Delivers what the tracer has buffered now (tests, shutdown). */
void offcpu_feed_poll(struct offcpu_feed *f);

#endif
