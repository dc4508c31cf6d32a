/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: an inflated frame payload, i.e. the record sequence
 * mfu_frame_open() hands to the decoder.  Three things are checked:
 *   1. mfu_dec_next() gives the same answer in its fast mode (unchecked
 *      reads when the payload has room for the longest body) and in its
 *      checked-only mode: same return codes, same records, same position;
 *   2. every record it accepts re-encodes (mfu_enc_put), and the encoding
 *      decodes to the same record, so decoder and encoder agree on the
 *      limits of doc/wire-format.md;
 *   3. the payload wrapped as a stored frame goes through ingest_frame()
 *      (the path of `mfu report`) into a model, whose exports must be
 *      well-formed valid UTF-8 (as in fuzz_frame.c).
 * A payload that does not start with a hello gets one put in front, so the
 * model sees the records instead of rejecting the stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "export.h"
#include "fuzz_common.h"
#include "ingest.h"
#include "mfu/wire.h"

static struct mfu_codec *codec;
static uint8_t *enc_buf;
#define ENC_CAP (1u << 20)

static int str_eq(const char *a, uint32_t an, const char *b, uint32_t bn)
{
	return an == bn && (!an || !memcmp(a, b, an));
}

static int dev_eq(const struct mfu_device_info *a, const struct mfu_device_info *b)
{
	return a->index == b->index && a->sm_count == b->sm_count && a->sm_clock_khz == b->sm_clock_khz &&
	       a->mem_clock_khz == b->mem_clock_khz && a->cc_major == b->cc_major && a->cc_minor == b->cc_minor &&
	       str_eq(a->name, a->name_len, b->name, b->name_len);
}

/* Field-by-field: the union holds pointers and padding. */
static int rec_eq(const struct mfu_record *a, const struct mfu_record *b)
{
	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case MFU_REC_HELLO: {
		const struct mfu_rec_hello *x = &a->u.hello, *y = &b->u.hello;
		return x->time_ns == y->time_ns && x->pid == y->pid && x->rank == y->rank &&
		       x->local_rank == y->local_rank && x->world_size == y->world_size && x->flags == y->flags &&
		       str_eq(x->host, x->host_len, y->host, y->host_len) &&
		       str_eq(x->job, x->job_len, y->job, y->job_len) &&
		       str_eq(x->producer, x->producer_len, y->producer, y->producer_len) &&
		       x->has_device == y->has_device && (!x->has_device || dev_eq(&x->device, &y->device)) &&
		       str_eq(x->token, x->token_len, y->token, y->token_len);
	}
	case MFU_REC_DEVICE:
		return dev_eq(&a->u.device, &b->u.device);
	case MFU_REC_STRING:
		return a->u.string.id == b->u.string.id &&
		       str_eq(a->u.string.text, a->u.string.len, b->u.string.text, b->u.string.len);
	case MFU_REC_KERNEL:
		return !memcmp(&a->u.kernel, &b->u.kernel, sizeof(a->u.kernel));
	case MFU_REC_GEMM:
		return !memcmp(&a->u.gemm, &b->u.gemm, sizeof(a->u.gemm));
	case MFU_REC_STEP:
		return !memcmp(&a->u.step, &b->u.step, sizeof(a->u.step));
	case MFU_REC_API:
		return !memcmp(&a->u.api, &b->u.api, sizeof(a->u.api));
	case MFU_REC_STATUS:
		return !memcmp(&a->u.status, &b->u.status, sizeof(a->u.status));
	case MFU_REC_GOODBYE:
		return a->u.goodbye.time_ns == b->u.goodbye.time_ns && a->u.goodbye.exit_code == b->u.goodbye.exit_code;
	case MFU_REC_COPY:
		return !memcmp(&a->u.copy, &b->u.copy, sizeof(a->u.copy));
	case MFU_REC_OFFCPU:
		return !memcmp(&a->u.offcpu, &b->u.offcpu, sizeof(a->u.offcpu));
	default:
		return 1; /* unknown: only the type is reported */
	}
}

static int known_type(uint32_t t)
{
	return t >= MFU_REC_HELLO && t <= MFU_REC_OFFCPU;
}

/* Checks 1 and 2.  Returns 1 if the payload starts with a hello. */
static int check_decoder(const uint8_t *data, size_t size)
{
	struct mfu_dec fast, slow;
	struct mfu_enc enc;
	int first_hello = 0;

	mfu_dec_init(&fast, data, size);
	mfu_dec_init(&slow, data, size);
	slow.checked_only = 1;
	mfu_enc_init(&enc, enc_buf, ENC_CAP);
	for (unsigned n = 0;; n++) {
		struct mfu_record rf, rs;
		memset(&rf, 0, sizeof(rf));
		memset(&rs, 0, sizeof(rs));
		int cf = mfu_dec_next(&fast, &rf);
		int cs = mfu_dec_next(&slow, &rs);
		FUZZ_CHECK(cf == cs, "record %u: fast mode returns %d, checked mode %d", n, cf, cs);
		if (cf != 1)
			break;
		FUZZ_CHECK(fast.p == slow.p, "record %u: modes stop at different offsets", n);
		FUZZ_CHECK(fast.p <= data + size, "decoder past the end");
		FUZZ_CHECK(rec_eq(&rf, &rs), "record %u (type %u): modes decode different values", n, rf.type);
		if (n == 0)
			first_hello = rf.type == MFU_REC_HELLO;
		if (!known_type(rf.type))
			continue;

		/* Round trip through the encoder, one record per payload so the
		 * delta bases of both sides start at 0. */
		mfu_enc_reset(&enc);
		int rc = mfu_enc_put(&enc, &rf);
		FUZZ_CHECK(rc == 0, "record %u (type %u) decodes but does not encode: %d", n, rf.type, rc);
		struct mfu_dec d2;
		struct mfu_record r2;
		mfu_dec_init(&d2, enc.buf, enc.len);
		memset(&r2, 0, sizeof(r2));
		FUZZ_CHECK(mfu_dec_next(&d2, &r2) == 1, "record %u (type %u): own encoding does not decode", n, rf.type);
		FUZZ_CHECK(rec_eq(&rf, &r2), "record %u (type %u) changes through encode/decode", n, rf.type);
		FUZZ_CHECK(mfu_dec_next(&d2, &r2) == 0, "record %u: encoding has trailing bytes", n);
	}
	return first_hello;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Check 3: the payload as a stored frame (flags 0), the way mfu report
 * reads archived frames. */
static void check_model(const uint8_t *data, size_t size, int has_hello)
{
	static const char host[] = "fuzz-host", job[] = "fuzz-job", producer[] = "fuzz 0";
	struct agg_config cfg = {.offline = 1, .max_sources = 2};
	struct agg *a;
	struct ingest *in;
	struct mfu_record hello = {.type = MFU_REC_HELLO};
	struct mfu_enc enc;
	uint8_t *frame;

	if (size > MFU_FRAME_RAW_MAX - 512)
		return;
	FUZZ_CHECK(agg_new(&cfg, &a) == 0 && ingest_new(a, codec, "fuzz", &in) == 0, "setup");
	frame = malloc(MFU_FRAME_HEADER_LEN + 512 + size);
	FUZZ_CHECK(frame, "malloc");
	mfu_enc_init(&enc, frame + MFU_FRAME_HEADER_LEN, 512);
	if (!has_hello) {
		hello.u.hello = (struct mfu_rec_hello){
			.time_ns = UINT64_C(1700000000000000000), .pid = 1, .rank = 0, .local_rank = 0,
			.world_size = 1, .host = host, .host_len = sizeof(host) - 1, .job = job,
			.job_len = sizeof(job) - 1, .producer = producer, .producer_len = sizeof(producer) - 1};
		FUZZ_CHECK(mfu_enc_put(&enc, &hello) == 0, "hello");
	}
	size_t raw_len = enc.len + size;
	if (size)
		memcpy(frame + MFU_FRAME_HEADER_LEN + enc.len, data, size);
	memcpy(frame, "FMUw", 4);
	frame[4] = MFU_FRAME_VERSION;
	frame[5] = 0;
	frame[6] = MFU_FRAME_HEADER_LEN;
	frame[7] = 0;
	wr32(frame + 8, (uint32_t)raw_len);
	wr32(frame + 12, (uint32_t)raw_len);
	wr32(frame + 16, 0);
	mfu_frame_set_seq(frame, MFU_FRAME_HEADER_LEN + raw_len, 7);
	ingest_frame(in, frame, MFU_FRAME_HEADER_LEN + raw_len, 0);
	ingest_free(in);
	free(frame);

	struct strbuf sb;
	unsigned line;
	const char *why;
	struct export_extra x = {.bpf_reason = "not built"};
	sb_init(&sb);
	export_prometheus(a, 0, &x, &sb);
	why = fuzz_prom_check(sb.buf ? sb.buf : "", sb.len, &line);
	FUZZ_CHECK(!why, "/metrics line %u: %s", line, why);
	sb_reset(&sb);
	export_json_summary(a, 0, &sb);
	FUZZ_CHECK(fuzz_json_valid(sb.buf ? sb.buf : "", sb.len), "summary is not valid JSON: %s",
		   sb.buf ? sb.buf : "");
	sb_free(&sb);
	agg_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!codec) {
		codec = mfu_codec_new(1);
		enc_buf = malloc(ENC_CAP);
		FUZZ_CHECK(codec && enc_buf, "setup");
	}
	check_model(data, size, check_decoder(data, size));
	return 0;
}
