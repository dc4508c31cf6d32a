/* SPDX-License-Identifier: MIT */
/*
 * A cmocka fixture for tests that feed encoded frames to the collector's
 * ingest: an offline model, one stream, and an encoder to build payloads.
 * Records are put with mfu_enc_put(&f->enc, ...) and sent as one frame by
 * send_frame().  Included by the test files that use it; not thread-safe.
 */
#ifndef MFU_TESTS_INGEST_FIXTURE_H
#define MFU_TESTS_INGEST_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>

#include "agg.h"
#include "ingest.h"
#include "mfu/wire.h"

#define RAW_CAP (4u << 20)

struct fixture {
	struct agg *agg;
	struct mfu_codec *codec;
	struct ingest *in;
	uint8_t *raw, *frame;
	struct mfu_enc enc;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct agg_config cfg = {.offline = 1};

	if (!f || agg_new(&cfg, &f->agg))
		return -1;
	f->codec = mfu_codec_new(1);
	f->raw = malloc(RAW_CAP);
	f->frame = malloc(mfu_frame_bound(RAW_CAP));
	if (!f->codec || !f->raw || !f->frame || ingest_new(f->agg, f->codec, "test", &f->in))
		return -1;
	mfu_enc_init(&f->enc, f->raw, RAW_CAP);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ingest_free(f->in);
	agg_free(f->agg);
	mfu_codec_free(f->codec);
	free(f->raw);
	free(f->frame);
	free(f);
	return 0;
}

/* Seals what was put into one frame with this seq and feeds it; returns
 * ingest_feed's result. */
static int send_frame(struct fixture *f, uint32_t seq)
{
	size_t len;

	assert_int_equal(mfu_frame_seal(f->codec, f->raw, f->enc.len, seq, f->frame, mfu_frame_bound(RAW_CAP),
					&len), 0);
	mfu_enc_reset(&f->enc);
	return ingest_feed(f->in, f->frame, len, 0);
}

#endif
