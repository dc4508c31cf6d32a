/* SPDX-License-Identifier: MIT */
/*
 * Wire codec tests: random record sequences survive encode -> frame -> open ->
 * decode unchanged, and every kind of malformed frame or record gets its own
 * pinned error code instead of a crash or a wrong record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zstd.h>

#include "mfu/wire.h"
#include "varint.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* splitmix64: deterministic, so a failure reproduces. */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Values spread over every varint length, edges included. */
static uint64_t rnd_u64(void)
{
	switch (rnd() % 6) {
	case 0: return rnd() % 128;
	case 1: return rnd() % 100000;
	case 2: return UINT64_MAX - rnd() % 3;
	case 3: return 1ull << (rnd() % 64);
	default: return rnd();
	}
}

static char text_pool[8][300];

static void rnd_text(const char **s, uint32_t *len, int slot)
{
	uint32_t n = (uint32_t)(rnd() % 300);
	for (uint32_t i = 0; i < n; i++)
		text_pool[slot][i] = (char)(rnd() & 0xff); /* any byte, NULs and invalid UTF-8 too */
	*s = text_pool[slot];
	*len = n;
}

static void rnd_device(struct mfu_device_info *d, int slot)
{
	d->index = (uint32_t)(rnd() % 4096);
	d->sm_count = (uint32_t)rnd();
	d->sm_clock_khz = (uint32_t)rnd();
	d->mem_clock_khz = (uint32_t)rnd();
	d->cc_major = (uint32_t)(rnd() % 20);
	d->cc_minor = (uint32_t)(rnd() % 10);
	rnd_text(&d->name, &d->name_len, slot);
}

static void rnd_interval(uint64_t *s, uint64_t *e)
{
	*s = rnd() >> 2;
	*e = *s + (rnd() % 4 ? rnd() % 1000000 : rnd() >> 3);
}

static void rnd_record(struct mfu_record *r, int slot)
{
	memset(r, 0, sizeof(*r));
	r->type = (uint32_t)(1 + rnd() % 11);
	switch (r->type) {
	case MFU_REC_HELLO: {
		struct mfu_rec_hello *h = &r->u.hello;
		h->time_ns = rnd_u64();
		h->pid = rnd_u64();
		h->rank = (int64_t)rnd_u64();
		h->local_rank = -1;
		h->world_size = rnd_u64();
		h->flags = rnd() % 4;
		rnd_text(&h->host, &h->host_len, slot);
		rnd_text(&h->job, &h->job_len, slot + 1);
		rnd_text(&h->producer, &h->producer_len, slot + 2);
		h->has_device = rnd() % 2;
		if (h->has_device)
			rnd_device(&h->device, slot + 3);
		if (rnd() % 2)
			rnd_text(&h->token, &h->token_len, slot + 4);
		break;
	}
	case MFU_REC_STRING:
		r->u.string.id = 1 + rnd() % MFU_STRING_ID_MAX;
		rnd_text(&r->u.string.text, &r->u.string.len, slot);
		break;
	case MFU_REC_KERNEL: {
		struct mfu_rec_kernel *k = &r->u.kernel;
		rnd_interval(&k->start_ns, &k->end_ns);
		k->device = rnd() % 4096;
		k->stream = rnd_u64();
		k->name_id = rnd() % (MFU_STRING_ID_MAX + 1);
		k->corr = rnd_u64();
		k->call = rnd_u64();
		k->flags = (rnd() % MFU_CLASS_COUNT) | (rnd() & 0x3f0);
		k->flops = rnd_u64();
		break;
	}
	case MFU_REC_GEMM: {
		struct mfu_rec_gemm *g = &r->u.gemm;
		rnd_interval(&g->start_ns, &g->end_ns);
		g->tid = rnd_u64();
		g->device = rnd() % 4096;
		g->api = rnd() % 64;
		g->m = rnd_u64();
		g->n = rnd_u64();
		g->k = rnd_u64();
		g->batch = rnd_u64();
		g->a_type = rnd() % 40;
		g->b_type = rnd() % 40;
		g->c_type = rnd() % 40;
		g->compute_type = rnd() % 80;
		g->ops = rnd() % 16;
		g->flags = rnd() % MFU_CLASS_COUNT;
		g->flops = rnd_u64();
		g->call = rnd_u64();
		break;
	}
	case MFU_REC_STEP: {
		struct mfu_rec_step *s = &r->u.step;
		rnd_interval(&s->begin_ns, &s->end_ns);
		s->index = rnd_u64();
		s->device = rnd() % 4096;
		s->model_flops = rnd_u64();
		s->model_class = rnd() % MFU_CLASS_COUNT;
		break;
	}
	case MFU_REC_API:
		rnd_interval(&r->u.api.start_ns, &r->u.api.end_ns);
		r->u.api.tid = rnd_u64();
		r->u.api.cbid = rnd() % 1000;
		r->u.api.corr = rnd_u64();
		r->u.api.kind = MFU_API_LAUNCH + rnd() % (MFU_API__COUNT - MFU_API_LAUNCH);
		break;
	case MFU_REC_STATUS:
		r->u.status.time_ns = rnd_u64();
		r->u.status.flags = rnd() % 2;
		for (int i = 0; i < MFU_DROP__COUNT; i++)
			r->u.status.dropped[i] = rnd_u64();
		break;
	case MFU_REC_GOODBYE:
		r->u.goodbye.time_ns = rnd_u64();
		r->u.goodbye.exit_code = (int64_t)rnd_u64();
		break;
	case MFU_REC_DEVICE:
		rnd_device(&r->u.device, slot);
		break;
	case MFU_REC_COPY: {
		struct mfu_rec_copy *c = &r->u.copy;
		rnd_interval(&c->start_ns, &c->end_ns);
		c->device = rnd() % 4096;
		c->stream = rnd_u64();
		c->op = 1 + rnd() % 2;
		c->kind = rnd() % 11;
		c->bytes = rnd_u64();
		c->corr = rnd_u64();
		break;
	}
	case MFU_REC_OFFCPU: {
		struct mfu_rec_offcpu *o = &r->u.offcpu;
		rnd_interval(&o->start_ns, &o->end_ns);
		o->tid = rnd() % 4194304;
		o->state = rnd() % MFU_OFFCPU__COUNT;
		o->stack_id = rnd() % 3 ? 0 : rnd_u64();
		break;
	}
	}
}

static void assert_text(const char *a, uint32_t al, const char *b, uint32_t bl)
{
	assert_int_equal(al, bl);
	if (al)
		assert_memory_equal(a, b, al);
}

static void assert_device_equal(const struct mfu_device_info *a, const struct mfu_device_info *b)
{
	assert_int_equal(a->index, b->index);
	assert_int_equal(a->sm_count, b->sm_count);
	assert_int_equal(a->sm_clock_khz, b->sm_clock_khz);
	assert_int_equal(a->mem_clock_khz, b->mem_clock_khz);
	assert_int_equal(a->cc_major, b->cc_major);
	assert_int_equal(a->cc_minor, b->cc_minor);
	assert_text(a->name, a->name_len, b->name, b->name_len);
}

static void assert_record_equal(const struct mfu_record *a, const struct mfu_record *b)
{
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case MFU_REC_HELLO: {
		const struct mfu_rec_hello *x = &a->u.hello, *y = &b->u.hello;
		assert_true(x->time_ns == y->time_ns && x->pid == y->pid && x->rank == y->rank &&
			    x->local_rank == y->local_rank && x->world_size == y->world_size &&
			    x->flags == y->flags && x->has_device == y->has_device);
		assert_text(x->host, x->host_len, y->host, y->host_len);
		assert_text(x->job, x->job_len, y->job, y->job_len);
		assert_text(x->producer, x->producer_len, y->producer, y->producer_len);
		if (x->has_device)
			assert_device_equal(&x->device, &y->device);
		assert_text(x->token, x->token_len, y->token, y->token_len);
		break;
	}
	case MFU_REC_STRING:
		assert_true(a->u.string.id == b->u.string.id);
		assert_text(a->u.string.text, a->u.string.len, b->u.string.text, b->u.string.len);
		break;
	case MFU_REC_DEVICE:
		assert_device_equal(&a->u.device, &b->u.device);
		break;
	case MFU_REC_KERNEL:
		assert_memory_equal(&a->u.kernel, &b->u.kernel, sizeof(a->u.kernel));
		break;
	case MFU_REC_GEMM:
		assert_memory_equal(&a->u.gemm, &b->u.gemm, sizeof(a->u.gemm));
		break;
	case MFU_REC_STEP:
		assert_memory_equal(&a->u.step, &b->u.step, sizeof(a->u.step));
		break;
	case MFU_REC_API:
		assert_memory_equal(&a->u.api, &b->u.api, sizeof(a->u.api));
		break;
	case MFU_REC_STATUS:
		assert_memory_equal(&a->u.status, &b->u.status, sizeof(a->u.status));
		break;
	case MFU_REC_GOODBYE:
		assert_memory_equal(&a->u.goodbye, &b->u.goodbye, sizeof(a->u.goodbye));
		break;
	case MFU_REC_COPY:
		assert_memory_equal(&a->u.copy, &b->u.copy, sizeof(a->u.copy));
		break;
	case MFU_REC_OFFCPU:
		assert_memory_equal(&a->u.offcpu, &b->u.offcpu, sizeof(a->u.offcpu));
		break;
	default:
		fail_msg("record type %u not compared", a->type);
	}
}

#define RAW_CAP (1024 * 1024)

struct fixture {
	struct mfu_codec *codec;
	uint8_t *raw, *frame;
	size_t frame_cap;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->codec = mfu_codec_new(3);
	f->raw = malloc(RAW_CAP);
	f->frame_cap = mfu_frame_bound(MFU_FRAME_RAW_MAX);
	f->frame = malloc(f->frame_cap);
	*state = f;
	return f->codec && f->raw && f->frame ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	mfu_codec_free(f->codec);
	free(f->raw);
	free(f->frame);
	free(f);
	return 0;
}

static void test_random_sequences_round_trip(void **state)
{
	struct fixture *f = *state;
	enum { ROUNDS = 300, MAX_RECORDS = 200 };
	static struct mfu_record sent[MAX_RECORDS];
	/* Strings of sent records point into text_pool, which rnd_record reuses, so
	 * keep a copy of every record's strings by encoding one record at a time into
	 * its own reference payload and comparing field by field after decoding. */
	for (int round = 0; round < ROUNDS; round++) {
		struct mfu_enc enc;
		int n = 1 + (int)(rnd() % MAX_RECORDS);
		mfu_enc_init(&enc, f->raw, RAW_CAP);
		static uint8_t copies[MAX_RECORDS][2048];
		for (int i = 0; i < n; i++) {
			rnd_record(&sent[i], 0);
			/* Deep-copy strings so later records can reuse the pool. */
			struct mfu_enc one;
			mfu_enc_init(&one, copies[i], sizeof(copies[i]));
			assert_int_equal(mfu_enc_put(&one, &sent[i]), 0);
			struct mfu_dec dc;
			mfu_dec_init(&dc, copies[i], one.len);
			struct mfu_record copy;
			assert_int_equal(mfu_dec_next(&dc, &copy), 1);
			if (sent[i].type != MFU_REC_KERNEL && sent[i].type != MFU_REC_GEMM &&
			    sent[i].type != MFU_REC_API)
				assert_record_equal(&sent[i], &copy);
			assert_int_equal(mfu_enc_put(&enc, &sent[i]), 0);
			if (sent[i].type != MFU_REC_KERNEL && sent[i].type != MFU_REC_GEMM &&
			    sent[i].type != MFU_REC_API)
				sent[i] = copy;
		}
		assert_int_equal(enc.records, n);

		size_t flen;
		assert_int_equal(mfu_frame_seal(f->codec, f->raw, enc.len, (uint32_t)round, f->frame,
						f->frame_cap, &flen), 0);
		struct mfu_frame_header h;
		const uint8_t *raw;
		size_t raw_len;
		assert_int_equal(mfu_frame_open(f->codec, f->frame, flen, &h, &raw, &raw_len), 0);
		assert_int_equal(h.seq, (uint32_t)round);
		assert_int_equal(raw_len, enc.len);

		struct mfu_dec dec;
		struct mfu_record got;
		mfu_dec_init(&dec, raw, raw_len);
		for (int i = 0; i < n; i++) {
			assert_int_equal(mfu_dec_next(&dec, &got), 1);
			assert_record_equal(&sent[i], &got);
		}
		assert_int_equal(mfu_dec_next(&dec, &got), 0);
	}
}

/* Builds a frame around the given raw payload; returns its size. */
static size_t seal(struct fixture *f, const void *raw, size_t n)
{
	size_t flen;
	assert_int_equal(mfu_frame_seal(f->codec, raw, n, 7, f->frame, f->frame_cap, &flen), 0);
	return flen;
}

static size_t seal_kernels(struct fixture *f, int count)
{
	struct mfu_enc enc;
	mfu_enc_init(&enc, f->raw, RAW_CAP);
	for (int i = 0; i < count; i++) {
		struct mfu_record r = {.type = MFU_REC_KERNEL};
		r.u.kernel.start_ns = 1000 + 10 * (uint64_t)i;
		r.u.kernel.end_ns = r.u.kernel.start_ns + 5;
		assert_int_equal(mfu_enc_put(&enc, &r), 0);
	}
	return seal(f, f->raw, enc.len);
}

static int open_err(struct fixture *f, size_t len)
{
	struct mfu_frame_header h;
	const uint8_t *raw;
	size_t raw_len;
	return mfu_frame_open(f->codec, f->frame, len, &h, &raw, &raw_len);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_crc(uint8_t *frame, size_t len)
{
	uint32_t crc = mfu_crc32c(0, frame, 20);
	crc = mfu_crc32c(crc, frame + 24, len - 24);
	put32(frame + 20, crc);
}

static void test_truncated_frame_is_reported_at_every_length(void **state)
{
	struct fixture *f = *state;
	size_t flen = seal_kernels(f, 100);
	for (size_t cut = 0; cut < flen; cut++)
		assert_int_equal(open_err(f, cut), -MFU_WIRE_E_TRUNCATED);
	assert_int_equal(open_err(f, flen), 0);
}

static void test_oversized_lengths_are_rejected_before_decompression(void **state)
{
	struct fixture *f = *state;
	seal_kernels(f, 10);
	put32(f->frame + 8, MFU_FRAME_PAYLOAD_MAX + 1);
	assert_int_equal(open_err(f, 24), -MFU_WIRE_E_OVERSIZE);
	seal_kernels(f, 10);
	put32(f->frame + 12, MFU_FRAME_RAW_MAX + 1);
	assert_int_equal(open_err(f, 24), -MFU_WIRE_E_OVERSIZE);
}

static void test_bad_magic_version_flags_header_len(void **state)
{
	struct fixture *f = *state;
	size_t flen = seal_kernels(f, 10);
	f->frame[0] = 'G';
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_MAGIC);
	/* Garbage is rejected on its first byte, before a whole header arrives. */
	assert_int_equal(open_err(f, 1), -MFU_WIRE_E_MAGIC);

	flen = seal_kernels(f, 10);
	f->frame[4] = 2;
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_VERSION);
	assert_int_equal(open_err(f, 5), -MFU_WIRE_E_VERSION);

	flen = seal_kernels(f, 10);
	f->frame[5] |= 0x80;
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_FLAGS);

	flen = seal_kernels(f, 10);
	f->frame[6] = 12;
	f->frame[7] = 0;
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_HEADER_LEN);
}

static void test_corrupted_checksum_or_payload_is_detected(void **state)
{
	struct fixture *f = *state;
	size_t flen = seal_kernels(f, 50);
	f->frame[20] ^= 1;
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_CHECKSUM);
	flen = seal_kernels(f, 50);
	f->frame[flen / 2] ^= 0x40;
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_CHECKSUM);
	flen = seal_kernels(f, 50);
	f->frame[16] ^= 1; /* seq is covered too */
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_CHECKSUM);
}

/* A valid zstd payload whose content is larger than the raw_len it claims,
 * with and without the content size in the zstd frame header. */
static void test_payload_inflating_past_raw_len_is_rejected(void **state)
{
	struct fixture *f = *state;
	static uint8_t big[200000];
	memset(big, 'A', sizeof(big));
	for (int with_size = 0; with_size < 2; with_size++) {
		ZSTD_CCtx *z = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, with_size);
		size_t n;
		if (with_size) {
			n = ZSTD_compress2(z, f->frame + 24, f->frame_cap - 24, big, sizeof(big));
		} else {
			/* The streaming API leaves the content size out of the header. */
			ZSTD_outBuffer out = {f->frame + 24, f->frame_cap - 24, 0};
			ZSTD_inBuffer in = {big, sizeof(big), 0};
			assert_int_equal(ZSTD_compressStream2(z, &out, &in, ZSTD_e_end), 0);
			n = out.pos;
		}
		ZSTD_freeCCtx(z);
		assert_false(ZSTD_isError(n));
		memcpy(f->frame, "FMUw", 4);
		f->frame[4] = 1;
		f->frame[5] = MFU_FRAME_FLAG_ZSTD;
		f->frame[6] = 24;
		f->frame[7] = 0;
		put32(f->frame + 8, (uint32_t)n);
		put32(f->frame + 12, 1000);
		put32(f->frame + 16, 0);
		fix_crc(f->frame, 24 + n);
		assert_int_equal(open_err(f, 24 + n), -MFU_WIRE_E_INFLATE_LIMIT);
	}
}

static void test_payload_short_of_raw_len_and_garbage_zstd(void **state)
{
	struct fixture *f = *state;
	size_t flen = seal_kernels(f, 100);
	uint32_t raw = (uint32_t)(f->frame[12] | f->frame[13] << 8 | f->frame[14] << 16);
	put32(f->frame + 12, raw + 1);
	fix_crc(f->frame, flen);
	int rc = open_err(f, flen);
	/* Content size in the zstd header disagrees, or decoding ends short. */
	assert_true(rc == -MFU_WIRE_E_RAW_LEN || rc == -MFU_WIRE_E_ZSTD);

	flen = seal_kernels(f, 100);
	f->frame[24] ^= 0xff; /* break zstd's own magic */
	fix_crc(f->frame, flen);
	assert_int_equal(open_err(f, flen), -MFU_WIRE_E_ZSTD);
}

static void test_unknown_record_type_is_skipped_by_length(void **state)
{
	uint8_t buf[512], *p = buf;
	(void)state;
	p = varint_put(p, 200); /* a type from the future */
	p = varint_put(p, 5);
	memcpy(p, "\x01\x02\x03\x04\x05", 5);
	p += 5;
	struct mfu_enc enc;
	mfu_enc_init(&enc, p, sizeof(buf) - (size_t)(p - buf));
	struct mfu_record r = {.type = MFU_REC_GOODBYE};
	r.u.goodbye.time_ns = 42;
	assert_int_equal(mfu_enc_put(&enc, &r), 0);

	struct mfu_dec d;
	struct mfu_record got;
	mfu_dec_init(&d, buf, (size_t)(p - buf) + enc.len);
	assert_int_equal(mfu_dec_next(&d, &got), 1);
	assert_int_equal(got.type, 200);
	assert_int_equal(mfu_dec_next(&d, &got), 1);
	assert_int_equal(got.type, MFU_REC_GOODBYE);
	assert_int_equal(got.u.goodbye.time_ns, 42);
	assert_int_equal(mfu_dec_next(&d, &got), 0);
}

static void test_appended_fields_are_ignored_and_short_bodies_rejected(void **state)
{
	uint8_t buf[64], *p;
	struct mfu_dec d;
	struct mfu_record got;
	(void)state;

	/* goodbye with an extra trailing field from a newer producer */
	p = buf;
	p = varint_put(p, MFU_REC_GOODBYE);
	p = varint_put(p, 3);
	p = varint_put(p, 9);
	p = varint_put(p, zigzag_encode(-1));
	p = varint_put(p, 77);
	mfu_dec_init(&d, buf, (size_t)(p - buf));
	assert_int_equal(mfu_dec_next(&d, &got), 1);
	assert_int_equal(got.u.goodbye.exit_code, -1);

	/* goodbye missing its exit code */
	p = buf;
	p = varint_put(p, MFU_REC_GOODBYE);
	p = varint_put(p, 1);
	p = varint_put(p, 9);
	mfu_dec_init(&d, buf, (size_t)(p - buf));
	assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
}

/* The token was appended to hello after version 1 shipped: an older
 * producer's hello (no token) still decodes, with an empty token, and a
 * newer one's extra fields after the token are skipped. */
static void test_hello_token_is_optional_and_round_trips(void **state)
{
	uint8_t body[128], buf[160], *p, *q;
	struct mfu_dec d;
	struct mfu_record got;
	(void)state;

	for (int variant = 0; variant < 3; variant++) {
		q = body;
		q = varint_put(q, 5);                  /* time */
		q = varint_put(q, 1234);               /* pid */
		q = varint_put(q, zigzag_encode(3));   /* rank */
		q = varint_put(q, zigzag_encode(-1));  /* local rank */
		q = varint_put(q, 8);                  /* world size */
		q = varint_put(q, 0);                  /* flags */
		for (int i = 0; i < 3; i++) {          /* host, job, producer */
			q = varint_put(q, 1);
			*q++ = (uint8_t)('a' + i);
		}
		q = varint_put(q, 0); /* no device */
		if (variant >= 1) {
			q = varint_put(q, 6);
			memcpy(q, "s3cret", 6);
			q += 6;
		}
		if (variant == 2)
			q = varint_put(q, 99); /* a field from a later version */
		p = buf;
		p = varint_put(p, MFU_REC_HELLO);
		p = varint_put(p, (uint64_t)(q - body));
		memcpy(p, body, (size_t)(q - body));
		p += q - body;
		mfu_dec_init(&d, buf, (size_t)(p - buf));
		assert_int_equal(mfu_dec_next(&d, &got), 1);
		assert_int_equal(got.type, MFU_REC_HELLO);
		assert_int_equal(got.u.hello.pid, 1234);
		assert_text(got.u.hello.producer, got.u.hello.producer_len, "c", 1);
		if (variant == 0)
			assert_int_equal(got.u.hello.token_len, 0);
		else
			assert_text(got.u.hello.token, got.u.hello.token_len, "s3cret", 6);
		assert_int_equal(mfu_dec_next(&d, &got), 0);
	}

	/* a token cut short by the body's end is an error, not a shorter token */
	p = buf;
	p = varint_put(p, MFU_REC_HELLO);
	p = varint_put(p, (uint64_t)(q - body) - 1 - 3); /* drop the later field and 3 token bytes */
	memcpy(p, body, (size_t)(q - body) - 1 - 3);
	p += (q - body) - 1 - 3;
	mfu_dec_init(&d, buf, (size_t)(p - buf));
	assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);

	/* the encoder writes the token; a too-long one is refused */
	struct mfu_record h = {.type = MFU_REC_HELLO};
	struct mfu_enc e;
	uint8_t out[512];
	h.u.hello.token = "tok";
	h.u.hello.token_len = 3;
	mfu_enc_init(&e, out, sizeof(out));
	assert_int_equal(mfu_enc_put(&e, &h), 0);
	mfu_dec_init(&d, out, e.len);
	assert_int_equal(mfu_dec_next(&d, &got), 1);
	assert_text(got.u.hello.token, got.u.hello.token_len, "tok", 3);
	h.u.hello.token_len = MFU_STRING_MAX + 1;
	mfu_enc_init(&e, out, sizeof(out));
	assert_int_equal(mfu_enc_put(&e, &h), -MFU_WIRE_E_FIELD);
}

/* Writes a record of type around body[0..len) at out; returns its length. */
static size_t wrap_body(uint8_t *out, uint32_t type, const uint8_t *body, size_t len)
{
	uint8_t *p = varint_put(out, type);
	p = varint_put(p, len);
	memcpy(p, body, len);
	return (size_t)(p - out) + len;
}

static void test_hostile_records_get_specific_errors(void **state)
{
	uint8_t buf[64], *p;
	struct mfu_dec d;
	struct mfu_record got;
	(void)state;

	/* body length past the payload */
	p = buf;
	p = varint_put(p, MFU_REC_KERNEL);
	p = varint_put(p, 1000);
	mfu_dec_init(&d, buf, (size_t)(p - buf));
	assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_RECORD_LEN);

	/* an 11-byte varint */
	memset(buf, 0xff, 11);
	buf[11] = 0;
	mfu_dec_init(&d, buf, 12);
	assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_VARINT);

	/* a string longer than its body */
	p = buf;
	p = varint_put(p, MFU_REC_STRING);
	p = varint_put(p, 3);
	p = varint_put(p, 1);
	p = varint_put(p, 50);
	*p++ = 'x';
	mfu_dec_init(&d, buf, (size_t)(p - buf));
	assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);

	/* string id 0 and past the id limit */
	for (int i = 0; i < 2; i++) {
		p = buf;
		p = varint_put(p, MFU_REC_STRING);
		uint64_t id = i ? MFU_STRING_ID_MAX + 1 : 0;
		p = varint_put(p, varint_len(id) + 1);
		p = varint_put(p, id);
		p = varint_put(p, 0);
		mfu_dec_init(&d, buf, (size_t)(p - buf));
		assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
	}

	/* kernel with a dtype class past fp8/int8 and a device index past the limit */
	for (int i = 0; i < 2; i++) {
		uint8_t body[32], *b = body;
		b = varint_put(b, 0);
		b = varint_put(b, 5);
		b = varint_put(b, i ? 5000 : 0);
		b = varint_put(b, 0);
		b = varint_put(b, 0);
		b = varint_put(b, 0);
		b = varint_put(b, 0);
		b = varint_put(b, i ? 0 : 9);
		b = varint_put(b, 0);
		mfu_dec_init(&d, buf, wrap_body(buf, MFU_REC_KERNEL, body, (size_t)(b - body)));
		assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
	}

	/* a duration that wraps the end time */
	{
		uint8_t body[40], *b = body;
		b = varint_put(b, zigzag_encode(-1)); /* start = 2^64 - 1 */
		b = varint_put(b, 5);
		for (int i = 0; i < 7; i++)
			b = varint_put(b, 0);
		mfu_dec_init(&d, buf, wrap_body(buf, MFU_REC_KERNEL, body, (size_t)(b - body)));
		assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
	}
}

/* The copy and offcpu records: an out-of-range device or state is FIELD, and
 * a body cut short of its fields is FIELD. */
static void test_copy_offcpu_and_api_bodies_are_checked(void **state)
{
	uint8_t buf[64], body[48], *b;
	struct mfu_dec d;
	struct mfu_record got;
	(void)state;

	for (int bad = 0; bad < 3; bad++) {
		b = body;
		b = varint_put(b, 1000);               /* start */
		b = varint_put(b, 50);                 /* duration */
		b = varint_put(b, bad == 1 ? 4096 : 3); /* device */
		b = varint_put(b, 7);                  /* stream */
		b = varint_put(b, MFU_COPY_MEMCPY);
		b = varint_put(b, 1);
		b = varint_put(b, 4096);
		if (bad != 2)
			b = varint_put(b, 99); /* corr: missing when bad == 2 */
		mfu_dec_init(&d, buf, wrap_body(buf, MFU_REC_COPY, body, (size_t)(b - body)));
		if (!bad) {
			assert_int_equal(mfu_dec_next(&d, &got), 1);
			assert_int_equal(got.u.copy.end_ns, 1050);
			assert_int_equal(got.u.copy.device, 3);
			assert_int_equal(got.u.copy.bytes, 4096);
			assert_int_equal(got.u.copy.corr, 99);
		} else {
			assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
		}
	}
	/* An api body from a producer that predates the kind field is a launch;
	 * a kind out of range is FIELD. */
	for (int variant = 0; variant < 2; variant++) {
		b = body;
		b = varint_put(b, zigzag_encode(700));
		b = varint_put(b, 20);
		b = varint_put(b, 42);
		b = varint_put(b, 307);
		b = varint_put(b, zigzag_encode(9));
		if (variant)
			b = varint_put(b, MFU_API__COUNT);
		mfu_dec_init(&d, buf, wrap_body(buf, MFU_REC_API, body, (size_t)(b - body)));
		if (!variant) {
			assert_int_equal(mfu_dec_next(&d, &got), 1);
			assert_int_equal(got.u.api.kind, MFU_API_LAUNCH);
			assert_int_equal(got.u.api.end_ns, 720);
		} else {
			assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
		}
	}
	for (int bad = 0; bad < 2; bad++) {
		b = body;
		b = varint_put(b, 5000);
		b = varint_put(b, 10);
		b = varint_put(b, 1234);
		b = varint_put(b, bad ? MFU_OFFCPU__COUNT : MFU_OFFCPU_DISK);
		b = varint_put(b, 0);
		mfu_dec_init(&d, buf, wrap_body(buf, MFU_REC_OFFCPU, body, (size_t)(b - body)));
		if (!bad) {
			assert_int_equal(mfu_dec_next(&d, &got), 1);
			assert_int_equal(got.u.offcpu.tid, 1234);
			assert_int_equal(got.u.offcpu.end_ns, 5010);
			assert_int_equal(got.u.offcpu.state, MFU_OFFCPU_DISK);
		} else {
			assert_int_equal(mfu_dec_next(&d, &got), -MFU_WIRE_E_FIELD);
		}
	}
}

static void test_encoder_refuses_what_the_decoder_would_refuse(void **state)
{
	uint8_t buf[512];
	struct mfu_enc e;
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	(void)state;
	mfu_enc_init(&e, buf, sizeof(buf));
	r.u.kernel.start_ns = 10;
	r.u.kernel.end_ns = 5;
	assert_int_equal(mfu_enc_put(&e, &r), -MFU_WIRE_E_FIELD);
	r.u.kernel.end_ns = 20;
	r.u.kernel.flags = 8;
	assert_int_equal(mfu_enc_put(&e, &r), -MFU_WIRE_E_FIELD);
	r.type = 77;
	assert_int_equal(mfu_enc_put(&e, &r), -MFU_WIRE_E_FIELD);
	assert_int_equal(e.len, 0);

	/* full buffer: refused, and the encoder is unchanged */
	mfu_enc_init(&e, buf, 40);
	r.type = MFU_REC_KERNEL;
	r.u.kernel.flags = 0;
	assert_int_equal(mfu_enc_put(&e, &r), -MFU_WIRE_E_NOMEM);
	assert_int_equal(e.len, 0);
	assert_int_equal(e.records, 0);
}

static void test_crc32c_known_vector(void **state)
{
	(void)state;
	/* RFC 3720 B.4: CRC-32C of "123456789" */
	assert_int_equal(mfu_crc32c(0, "123456789", 9), 0xe3069283);
	/* incremental equals one-shot */
	uint32_t c = mfu_crc32c(0, "12345", 5);
	assert_int_equal(mfu_crc32c(c, "6789", 4), 0xe3069283);
}

static void test_frames_decode_independently(void **state)
{
	struct fixture *f = *state;
	/* The delta bases restart per frame: the second frame decodes alone. */
	struct mfu_enc enc;
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	mfu_enc_init(&enc, f->raw, RAW_CAP);
	r.u.kernel.start_ns = 1000000;
	r.u.kernel.end_ns = 1000100;
	r.u.kernel.corr = 500;
	mfu_enc_put(&enc, &r);
	mfu_enc_reset(&enc);
	r.u.kernel.start_ns = 2000000;
	r.u.kernel.end_ns = 2000050;
	r.u.kernel.corr = 501;
	mfu_enc_put(&enc, &r);
	struct mfu_dec d;
	struct mfu_record got;
	mfu_dec_init(&d, f->raw, enc.len);
	assert_int_equal(mfu_dec_next(&d, &got), 1);
	assert_int_equal(got.u.kernel.start_ns, 2000000);
	assert_int_equal(got.u.kernel.end_ns, 2000050);
	assert_int_equal(got.u.kernel.corr, 501);
}

/* The unchecked fast path must decide exactly as the checked one: same
 * records, same errors, on valid and on mutated payloads. */
static void test_fast_path_decodes_exactly_like_the_checked_path(void **state)
{
	struct fixture *f = *state;
	for (int round = 0; round < 3000; round++) {
		struct mfu_enc enc;
		mfu_enc_init(&enc, f->raw, RAW_CAP);
		int n = 1 + (int)(rnd() % 40);
		for (int i = 0; i < n; i++) {
			struct mfu_record r;
			int want_hot = rnd() % 4 != 0; /* mostly the hot types */
			do
				rnd_record(&r, 0);
			while (want_hot && r.type != MFU_REC_KERNEL && r.type != MFU_REC_API &&
			       r.type != MFU_REC_GEMM);
			mfu_enc_put(&enc, &r);
		}
		/* flip a few bytes, sometimes none */
		int flips = (int)(rnd() % 4);
		for (int k = 0; k < flips && enc.len; k++)
			f->raw[rnd() % enc.len] ^= (uint8_t)(1u << (rnd() % 8));
		struct mfu_dec a, b;
		struct mfu_record ra, rb;
		mfu_dec_init(&a, f->raw, enc.len);
		mfu_dec_init(&b, f->raw, enc.len);
		b.checked_only = 1;
		for (;;) {
			memset(&ra, 0, sizeof(ra));
			memset(&rb, 0, sizeof(rb));
			int x = mfu_dec_next(&a, &ra), y = mfu_dec_next(&b, &rb);
			assert_int_equal(x, y);
			if (x != 1)
				break;
			assert_int_equal(ra.type, rb.type);
			if (ra.type == MFU_REC_KERNEL || ra.type == MFU_REC_API || ra.type == MFU_REC_GEMM)
				assert_memory_equal(&ra.u, &rb.u, sizeof(ra.u));
			assert_memory_equal(&a.delta, &b.delta, sizeof(a.delta));
		}
	}
}

static void test_ack_round_trips_and_refuses_other_bytes(void **state)
{
	uint8_t a[MFU_ACK_LEN];
	int have;
	uint32_t next;
	(void)state;

	mfu_ack_encode(a, 1, 0xfffffffeu);
	assert_memory_equal(a, "FMUa\x01\x01\0\0\xfe\xff\xff\xff", MFU_ACK_LEN);
	assert_int_equal(mfu_ack_parse(a, &have, &next), 0);
	assert_int_equal(have, 1);
	assert_int_equal(next, 0xfffffffeu);
	mfu_ack_encode(a, 0, 77);
	assert_int_equal(mfu_ack_parse(a, &have, &next), 0);
	assert_int_equal(have, 0);
	assert_int_equal(next, 0);
	a[5] = 0x81;
	assert_int_equal(mfu_ack_parse(a, &have, &next), -MFU_WIRE_E_FLAGS);
	a[4] = 2;
	assert_int_equal(mfu_ack_parse(a, &have, &next), -MFU_WIRE_E_VERSION);
	memcpy(a, "FMUw", 4); /* a frame, not an ack */
	assert_int_equal(mfu_ack_parse(a, &have, &next), -MFU_WIRE_E_MAGIC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_sequences_round_trip),
		cmocka_unit_test(test_truncated_frame_is_reported_at_every_length),
		cmocka_unit_test(test_oversized_lengths_are_rejected_before_decompression),
		cmocka_unit_test(test_bad_magic_version_flags_header_len),
		cmocka_unit_test(test_corrupted_checksum_or_payload_is_detected),
		cmocka_unit_test(test_payload_inflating_past_raw_len_is_rejected),
		cmocka_unit_test(test_payload_short_of_raw_len_and_garbage_zstd),
		cmocka_unit_test(test_unknown_record_type_is_skipped_by_length),
		cmocka_unit_test(test_appended_fields_are_ignored_and_short_bodies_rejected),
		cmocka_unit_test(test_hello_token_is_optional_and_round_trips),
		cmocka_unit_test(test_hostile_records_get_specific_errors),
		cmocka_unit_test(test_copy_offcpu_and_api_bodies_are_checked),
		cmocka_unit_test(test_encoder_refuses_what_the_decoder_would_refuse),
		cmocka_unit_test(test_crc32c_known_vector),
		cmocka_unit_test(test_ack_round_trips_and_refuses_other_bytes),
		cmocka_unit_test(test_frames_decode_independently),
		cmocka_unit_test(test_fast_path_decodes_exactly_like_the_checked_path),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
