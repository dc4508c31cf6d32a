/* SPDX-License-Identifier: MIT */
/*
 * Frames: the 24-byte header of doc/wire-format.md around one zstd-compressed
 * payload, and CRC-32C.  Opening a frame checks everything that can be checked
 * before decompression (magic, version, flags, lengths, CRC), so a hostile
 * frame costs at most one bounded zstd call.
 */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "mfu/wire.h"

struct mfu_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *scratch;
	size_t scratch_cap;
};

/* ---- CRC-32C (Castagnoli), reflected polynomial 0x82f63b78 ---- */

static uint32_t crc_table[8][256];
static int crc_have_hw = -1;

static void crc_init_tables(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;

	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		n -= 8;
	}
	crc = (uint32_t)c;
	while (n--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

uint32_t mfu_crc32c(uint32_t crc, const void *buf, size_t len)
{
	/* Racing first calls compute the same values; the writes are idempotent. */
	if (__builtin_expect(crc_have_hw < 0, 0)) {
		crc_init_tables();
#if defined(__x86_64__)
		__builtin_cpu_init();
		crc_have_hw = __builtin_cpu_supports("sse4.2");
#else
		crc_have_hw = 0;
#endif
	}
	crc = ~crc;
#if defined(__x86_64__)
	if (crc_have_hw)
		return ~crc_hw(crc, buf, len);
#endif
	return ~crc_sw(crc, buf, len);
}

/* ---- header ---- */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int mfu_frame_header_parse(const uint8_t *buf, size_t len, struct mfu_frame_header *h)
{
	/* Check each field as soon as its bytes are there, so a stream of garbage is
	 * rejected on its first bytes instead of after buffering a bogus length. */
	static const uint8_t magic[4] = {'F', 'M', 'U', 'w'};
	size_t m = len < 4 ? len : 4;

	if (memcmp(buf, magic, m) != 0)
		return -MFU_WIRE_E_MAGIC;
	if (len > 4 && buf[4] != MFU_FRAME_VERSION)
		return -MFU_WIRE_E_VERSION;
	if (len > 5 && (buf[5] & ~MFU_FRAME_FLAGS_KNOWN))
		return -MFU_WIRE_E_FLAGS;
	if (len < MFU_FRAME_HEADER_LEN)
		return -MFU_WIRE_E_TRUNCATED;

	h->magic = rd32(buf);
	h->version = buf[4];
	h->flags = buf[5];
	h->header_len = rd16(buf + 6);
	h->payload_len = rd32(buf + 8);
	h->raw_len = rd32(buf + 12);
	h->seq = rd32(buf + 16);
	h->crc = rd32(buf + 20);
	if (h->header_len < MFU_FRAME_HEADER_LEN)
		return -MFU_WIRE_E_HEADER_LEN;
	if (h->payload_len > MFU_FRAME_PAYLOAD_MAX || h->raw_len > MFU_FRAME_RAW_MAX)
		return -MFU_WIRE_E_OVERSIZE;
	if (!(h->flags & MFU_FRAME_FLAG_ZSTD) && h->raw_len != h->payload_len)
		return -MFU_WIRE_E_RAW_LEN;
	return 0;
}

static uint32_t frame_crc(const uint8_t *frame, const struct mfu_frame_header *h)
{
	uint32_t crc = mfu_crc32c(0, frame, 20);
	/* Header bytes past 24 (a future, longer header) are covered too. */
	return mfu_crc32c(crc, frame + 24, mfu_frame_size(h) - 24);
}

/* ---- codec ---- */

struct mfu_codec *mfu_codec_new(int level)
{
	struct mfu_codec *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->cctx || !c->dctx ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1))) {
		mfu_codec_free(c);
		return NULL;
	}
	return c;
}

void mfu_codec_free(struct mfu_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c->scratch);
	free(c);
}

size_t mfu_frame_bound(size_t raw_len)
{
	return MFU_FRAME_HEADER_LEN + ZSTD_compressBound(raw_len);
}

int mfu_frame_seal(struct mfu_codec *c, const uint8_t *raw, size_t raw_len, uint32_t seq,
		   uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t flags = MFU_FRAME_FLAG_ZSTD;
	size_t payload_len;

	if (raw_len > MFU_FRAME_RAW_MAX)
		return -MFU_WIRE_E_OVERSIZE;
	if (cap < mfu_frame_bound(raw_len))
		return -MFU_WIRE_E_NOMEM;
	payload_len = ZSTD_compress2(c->cctx, out + MFU_FRAME_HEADER_LEN, cap - MFU_FRAME_HEADER_LEN,
				     raw, raw_len);
	if (ZSTD_isError(payload_len))
		return -MFU_WIRE_E_ZSTD;
	if (payload_len >= raw_len) { /* incompressible: store it */
		flags = 0;
		payload_len = raw_len;
		if (raw_len)
			memcpy(out + MFU_FRAME_HEADER_LEN, raw, raw_len);
	}
	out[0] = 'F';
	out[1] = 'M';
	out[2] = 'U';
	out[3] = 'w';
	out[4] = MFU_FRAME_VERSION;
	out[5] = flags;
	wr16(out + 6, MFU_FRAME_HEADER_LEN);
	wr32(out + 8, (uint32_t)payload_len);
	wr32(out + 12, (uint32_t)raw_len);
	wr32(out + 16, seq);
	struct mfu_frame_header h = {.header_len = MFU_FRAME_HEADER_LEN, .payload_len = (uint32_t)payload_len};
	wr32(out + 20, frame_crc(out, &h));
	*out_len = MFU_FRAME_HEADER_LEN + payload_len;
	return 0;
}

static int scratch_reserve(struct mfu_codec *c, size_t n)
{
	if (n <= c->scratch_cap && c->scratch)
		return 0;
	size_t cap = c->scratch_cap ? c->scratch_cap : 64 * 1024;
	while (cap < n)
		cap *= 2;
	uint8_t *p = realloc(c->scratch, cap);
	if (!p)
		return -MFU_WIRE_E_NOMEM;
	c->scratch = p;
	c->scratch_cap = cap;
	return 0;
}

int mfu_frame_open(struct mfu_codec *c, const uint8_t *frame, size_t len,
		   struct mfu_frame_header *h, const uint8_t **raw, size_t *raw_len)
{
	int rc = mfu_frame_header_parse(frame, len, h);

	if (rc)
		return rc;
	if (len < mfu_frame_size(h))
		return -MFU_WIRE_E_TRUNCATED;
	if (frame_crc(frame, h) != h->crc)
		return -MFU_WIRE_E_CHECKSUM;

	const uint8_t *payload = frame + h->header_len;
	if (!(h->flags & MFU_FRAME_FLAG_ZSTD)) {
		*raw = payload;
		*raw_len = h->payload_len;
		return 0;
	}
	unsigned long long declared = ZSTD_getFrameContentSize(payload, h->payload_len);
	if (declared == ZSTD_CONTENTSIZE_ERROR)
		return -MFU_WIRE_E_ZSTD;
	if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > h->raw_len)
		return -MFU_WIRE_E_INFLATE_LIMIT;
	if ((rc = scratch_reserve(c, h->raw_len ? h->raw_len : 1)))
		return rc;
	/* dst capacity is exactly raw_len: zstd stops rather than write past it. */
	size_t n = ZSTD_decompressDCtx(c->dctx, c->scratch, h->raw_len, payload, h->payload_len);
	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -MFU_WIRE_E_INFLATE_LIMIT
									     : -MFU_WIRE_E_ZSTD;
	if (n != h->raw_len)
		return -MFU_WIRE_E_RAW_LEN;
	*raw = c->scratch;
	*raw_len = n;
	return 0;
}

void mfu_frame_set_seq(uint8_t *frame, size_t len, uint32_t seq)
{
	struct mfu_frame_header h = {.header_len = rd16(frame + 6), .payload_len = rd32(frame + 8)};

	if (len < MFU_FRAME_HEADER_LEN || mfu_frame_size(&h) != len)
		return;
	wr32(frame + 16, seq);
	wr32(frame + 20, frame_crc(frame, &h));
}

void mfu_ack_encode(uint8_t out[MFU_ACK_LEN], int have_seq, uint32_t next_seq)
{
	wr32(out, MFU_ACK_MAGIC);
	out[4] = 1;
	out[5] = have_seq ? MFU_ACK_F_SEQ : 0;
	out[6] = out[7] = 0;
	wr32(out + 8, have_seq ? next_seq : 0);
}

int mfu_ack_parse(const uint8_t in[MFU_ACK_LEN], int *have_seq, uint32_t *next_seq)
{
	if (rd32(in) != MFU_ACK_MAGIC)
		return -MFU_WIRE_E_MAGIC;
	if (in[4] != 1)
		return -MFU_WIRE_E_VERSION;
	if (in[5] & ~MFU_ACK_F_SEQ)
		return -MFU_WIRE_E_FLAGS;
	*have_seq = in[5] & MFU_ACK_F_SEQ;
	*next_seq = rd32(in + 8);
	return 0;
}
