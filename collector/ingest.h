/* SPDX-License-Identifier: MIT */
/*
 * One producer stream: bytes in, frames out, records applied to the model.
 * The first record of a stream must be a hello.  Any error is final for the
 * stream: the caller logs one line and closes the connection.
 */
#ifndef MFU_INGEST_H
#define MFU_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "agg.h"

struct ingest;

/* Called for every valid frame after its records were applied (not for a
 * duplicate, which is counted and skipped). */
typedef void (*ingest_frame_fn)(void *arg, struct agg_source *src, const uint8_t *frame, size_t len);

/* Called with the stream's hello before any source is made for it: 0
 * accepts it, a negative ingest error refuses it (nothing is kept). */
typedef int (*ingest_hello_fn)(void *arg, const struct mfu_rec_hello *h);

int ingest_new(struct agg *a, struct mfu_codec *codec, const char *peer, struct ingest **out);
/* Marks the source disconnected and frees the stream. */
void ingest_free(struct ingest *in);
void ingest_on_frame(struct ingest *in, ingest_frame_fn fn, void *arg);
void ingest_on_hello(struct ingest *in, ingest_hello_fn fn, void *arg);

/* Space to read into: at least 1 byte, at most what the current frame needs
 * plus slack.  Returns 0 or -ENOMEM. */
int ingest_space(struct ingest *in, uint8_t **p, size_t *n);
/* Processes n bytes just written into the space.  Returns 0, or a negated
 * mfu_wire_error (or -MFU_WIRE_E_NOMEM / a source-limit error as -1000-errno). */
int ingest_commit(struct ingest *in, size_t n, uint64_t now_mono_ns);
/* Copies p[0..n) in and commits it. */
int ingest_feed(struct ingest *in, const uint8_t *p, size_t n, uint64_t now_mono_ns);
/* Processes one whole frame that is not part of a byte stream (archive
 * replay in mfu report). */
int ingest_frame(struct ingest *in, const uint8_t *frame, size_t len, uint64_t now_mono_ns);

/* 1 if bytes of an unfinished frame are buffered (a torn stream at EOF). */
int ingest_pending(const struct ingest *in);
struct agg_source *ingest_source(const struct ingest *in);
/* What to acknowledge: whether the source has a sequence yet, and the
 * number after the newest frame applied (and archived) so far.  Returns 0,
 * or -ENOENT before the hello. */
int ingest_ack(const struct ingest *in, int *have_seq, uint32_t *next_seq);
const char *ingest_peer(const struct ingest *in);

/* Error codes beyond the wire's: */
#define INGEST_E_NO_HELLO 100  /* first record was not a hello */
#define INGEST_E_SOURCES 101   /* collector's source limit reached */
#define INGEST_E_SPANS 102     /* a frame's records span too many window buckets */
#define INGEST_E_HELLO_SIZE 103 /* first frame or hello text past the limits below */
#define INGEST_E_DENIED 104    /* the hello callback refused the stream */

/* Before a hello is accepted a stream may make the collector buffer at most
 * this much (a legitimate first frame, hello + devices + interned names,
 * compresses far below it), and each hello text at most INGEST_HELLO_TEXT_MAX
 * bytes (the model keeps AGG_NAME_MAX of them). */
#define INGEST_FIRST_FRAME_MAX (1u << 20)
#define INGEST_HELLO_TEXT_MAX 4096u

/* Bucket updates one frame may cause through intervals longer than a bucket:
 * legitimate frames stay far below (a step spans ~10 buckets), while a tiny
 * frame of 100 s kernels could otherwise cost seconds of the loop. */
#define INGEST_SPAN_WORK_MAX (4u << 20)
const char *ingest_strerror(int code);

#endif
