/* SPDX-License-Identifier: MIT */
/*
 * Stream reassembly.  Bytes are read straight into a per-stream buffer that
 * grows only to the size the current frame's header announces (itself capped
 * by the format's limits), so a peer cannot make the collector hold more
 * than one frame's worth of its data.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

#define INITIAL_CAP (64u * 1024u)

struct ingest {
	struct agg *agg;
	struct mfu_codec *codec;
	struct agg_source *src;
	uint8_t *buf;
	size_t len, cap;
	char peer[128];
	uint64_t last_mono_ns;
	int numbered; /* past the connection's first frame, which is outside the sequence */
	ingest_frame_fn on_frame;
	void *on_frame_arg;
	ingest_hello_fn on_hello;
	void *on_hello_arg;
	int accept_offcpu;
};

int ingest_new(struct agg *a, struct mfu_codec *codec, const char *peer, struct ingest **out)
{
	struct ingest *in = calloc(1, sizeof(*in));

	if (!in)
		return -ENOMEM;
	in->agg = a;
	in->codec = codec;
	snprintf(in->peer, sizeof(in->peer), "%s", peer ? peer : "?");
	*out = in;
	return 0;
}

void ingest_free(struct ingest *in)
{
	if (!in)
		return;
	if (in->src)
		agg_source_disconnect(in->src, in->last_mono_ns);
	free(in->buf);
	free(in);
}

void ingest_on_frame(struct ingest *in, ingest_frame_fn fn, void *arg)
{
	in->on_frame = fn;
	in->on_frame_arg = arg;
}

int ingest_ack(const struct ingest *in, int *have_seq, uint32_t *next_seq)
{
	if (!in->src)
		return -ENOENT;
	*have_seq = in->src->have_seq;
	*next_seq = in->src->next_seq;
	return 0;
}

void ingest_on_hello(struct ingest *in, ingest_hello_fn fn, void *arg)
{
	in->on_hello = fn;
	in->on_hello_arg = arg;
}

void ingest_accept_offcpu(struct ingest *in)
{
	in->accept_offcpu = 1;
	if (in->src)
		agg_source_accept_offcpu(in->src, 1);
}

struct agg_source *ingest_source(const struct ingest *in)
{
	return in->src;
}

const char *ingest_peer(const struct ingest *in)
{
	return in->peer;
}

int ingest_pending(const struct ingest *in)
{
	return in->len > 0;
}

const char *ingest_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case INGEST_E_NO_HELLO:
		return "stream does not start with a hello";
	case INGEST_E_SOURCES:
		return "too many sources";
	case INGEST_E_SPANS:
		return "records span too much time (over the per-frame work limit)";
	case INGEST_E_HELLO_SIZE:
		return "oversized hello (first frame or hello text past the limits)";
	case INGEST_E_DENIED:
		return "hello refused";
	default:
		return mfu_wire_strerror(code);
	}
}

static int reserve(struct ingest *in, size_t need)
{
	if (need <= in->cap)
		return 0;
	/* Exactly what the announced frame needs: a peer's header must not make
	 * us hold twice its (already capped) frame size. */
	uint8_t *p = realloc(in->buf, need);
	if (!p)
		return -MFU_WIRE_E_NOMEM;
	in->buf = p;
	in->cap = need;
	return 0;
}

/* mfud's own frames in a source's archive stream (its scheduler tracer's,
 * doc/wire-format.md "11 offcpu") start with an offcpu record, which no
 * producer sends: they are outside the producer's sequence. */
static int frame_is_collectors(const uint8_t *raw, size_t raw_len)
{
	struct mfu_dec d;
	struct mfu_record r;

	mfu_dec_init(&d, raw, raw_len);
	return mfu_dec_next(&d, &r) == 1 && r.type == MFU_REC_OFFCPU;
}

int ingest_frame(struct ingest *in, const uint8_t *frame, size_t len, uint64_t now_mono_ns)
{
	struct mfu_frame_header h;
	const uint8_t *raw;
	size_t raw_len;
	struct mfu_dec dec;
	struct mfu_record r;
	int rc;

	in->last_mono_ns = now_mono_ns;
	if ((rc = mfu_frame_open(in->codec, frame, len, &h, &raw, &raw_len)))
		return rc;
	int collectors = in->numbered && frame_is_collectors(raw, raw_len);
	/* A frame sent again after a reconnect that this model already holds:
	 * applying it twice would double count. */
	if (in->numbered && !collectors && agg_source_seq_seen(in->src, h.seq)) {
		agg_source_frame(in->src, h.seq, len);
		return 0;
	}
	mfu_dec_init(&dec, raw, raw_len);
	uint64_t work0 = in->src ? in->src->span_work : 0;
	/* Only a connection's first frame starts without a source: its first
	 * record must be the hello, and the feed takes the rest. */
	while (!in->src && (rc = mfu_dec_next(&dec, &r)) == 1) {
		if (r.type != MFU_REC_HELLO)
			return -INGEST_E_NO_HELLO;
		const struct mfu_rec_hello *hh = &r.u.hello;
		if (hh->host_len > INGEST_HELLO_TEXT_MAX || hh->job_len > INGEST_HELLO_TEXT_MAX ||
		    hh->producer_len > INGEST_HELLO_TEXT_MAX || hh->token_len > INGEST_HELLO_TEXT_MAX ||
		    (hh->has_device && hh->device.name_len > INGEST_HELLO_TEXT_MAX))
			return -INGEST_E_HELLO_SIZE;
		if (in->on_hello && (rc = in->on_hello(in->on_hello_arg, hh)))
			return rc;
		rc = agg_hello(in->agg, &r.u.hello, in->peer, now_mono_ns, &in->src);
		if (rc)
			return rc == -ENOSPC ? -INGEST_E_SOURCES : -MFU_WIRE_E_NOMEM;
		/* A reconnect reuses the source: a socket must not inherit an
		 * archive's permission, nor the reverse; and the work bound is
		 * this frame's, not what the source did over earlier
		 * connections (that refused every reconnect of a source past
		 * INGEST_SPAN_WORK_MAX in all). */
		agg_source_accept_offcpu(in->src, in->accept_offcpu);
		work0 = in->src->span_work;
	}
	if (in->src && (rc = agg_source_feed(in->src, &dec, now_mono_ns, work0, INGEST_SPAN_WORK_MAX)) == 1)
		return -INGEST_E_SPANS;
	if (rc < 0)
		return rc;
	if (!in->src)
		return -INGEST_E_NO_HELLO; /* an empty first frame names nobody */
	if (in->numbered && !collectors)
		agg_source_frame(in->src, h.seq, len);
	else
		agg_source_frame_unnumbered(in->src, len);
	in->numbered = 1;
	if (in->on_frame)
		in->on_frame(in->on_frame_arg, in->src, frame, len);
	return 0;
}

int ingest_space(struct ingest *in, uint8_t **p, size_t *n)
{
	/* Read a header first, then exactly the rest of that frame, so every byte
	 * buffered belongs to a frame whose header already passed its checks. */
	size_t want = MFU_FRAME_HEADER_LEN;
	struct mfu_frame_header h;

	if (in->len >= MFU_FRAME_HEADER_LEN && mfu_frame_header_parse(in->buf, in->len, &h) == 0)
		want = mfu_frame_size(&h);
	if (want < INITIAL_CAP)
		want = INITIAL_CAP; /* small frames: read several at once */
	if (!in->src && want > INGEST_FIRST_FRAME_MAX)
		want = INGEST_FIRST_FRAME_MAX; /* ingest_commit refuses the frame */
	if (reserve(in, want))
		return -ENOMEM;
	*p = in->buf + in->len;
	*n = in->cap - in->len;
	return 0;
}

int ingest_commit(struct ingest *in, size_t n, uint64_t now_mono_ns)
{
	size_t off = 0;
	int rc = 0;

	in->len += n;
	while (in->len - off > 0) {
		struct mfu_frame_header h;
		rc = mfu_frame_header_parse(in->buf + off, in->len - off, &h);
		if (rc == -MFU_WIRE_E_TRUNCATED) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		size_t size = mfu_frame_size(&h);
		if (!in->src && size > INGEST_FIRST_FRAME_MAX) {
			rc = -INGEST_E_HELLO_SIZE;
			break;
		}
		if (in->len - off < size)
			break;
		if ((rc = ingest_frame(in, in->buf + off, size, now_mono_ns)))
			break;
		off += size;
	}
	if (off) {
		memmove(in->buf, in->buf + off, in->len - off);
		in->len -= off;
	}
	/* Give back the room a large frame needed once it is consumed. */
	if (in->cap > INITIAL_CAP && in->len <= INITIAL_CAP) {
		uint8_t *p = realloc(in->buf, INITIAL_CAP);
		if (p) {
			in->buf = p;
			in->cap = INITIAL_CAP;
		}
	}
	return rc;
}

int ingest_feed(struct ingest *in, const uint8_t *p, size_t n, uint64_t now_mono_ns)
{
	while (n) {
		uint8_t *dst;
		size_t space;
		int rc;
		if (ingest_space(in, &dst, &space))
			return -MFU_WIRE_E_NOMEM;
		size_t k = n < space ? n : space;
		memcpy(dst, p, k);
		if ((rc = ingest_commit(in, k, now_mono_ns)))
			return rc;
		p += k;
		n -= k;
	}
	return 0;
}
