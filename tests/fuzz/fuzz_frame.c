/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: a producer connection's bytes, fed to the collector
 * through ingest_space()/ingest_commit(), the calls mfud's server makes for
 * every read() on a socket, into the same model mfud keeps.  The input is
 * one stream of frames.  It is fed twice on one model, as two connections:
 * once as is, in reads of every size the buffer offers (frame header
 * checks, CRC rejection, reassembly); then with each complete frame's CRC
 * recomputed and in small reads of varying size, so that mutated headers
 * and payloads get past the checksum into decompression, record decoding
 * and the model (a reconnect of the same source, if the hellos match).
 * At the end the model is exported as Prometheus text, JSON and the
 * terminal tables, and each output must be well-formed valid UTF-8 whatever
 * the producer sent.
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

/* Feeds data as socket reads of at most chunk() bytes; returns the first error. */
static int feed(struct ingest *in, const uint8_t *data, size_t size, uint32_t seed, uint64_t *now)
{
	size_t off = 0;

	while (off < size) {
		uint8_t *p;
		size_t n;
		FUZZ_CHECK(ingest_space(in, &p, &n) == 0, "ingest_space failed");
		FUZZ_CHECK(n >= 1, "ingest_space offered no room");
		if (seed) {
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			size_t cap = 1 + seed % 97;
			if (n > cap)
				n = cap;
		}
		if (n > size - off)
			n = size - off;
		memcpy(p, data + off, n);
		off += n;
		*now += 1000000;
		int rc = ingest_commit(in, n, *now);
		if (rc)
			return rc;
	}
	return 0;
}

/* Rewrites the CRC of every whole frame at the start of buf, in order. */
static void fix_crcs(uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (len - off >= MFU_FRAME_HEADER_LEN) {
		struct mfu_frame_header h;
		if (mfu_frame_header_parse(buf + off, len - off, &h))
			return;
		size_t size = mfu_frame_size(&h);
		if (size > len - off)
			return;
		mfu_frame_set_seq(buf + off, size, h.seq);
		off += size;
	}
}

static void check_exports(const struct agg *a, uint64_t now)
{
	struct export_extra x = {.stream_errors = 1, .bpf_reason = "not built"};
	struct strbuf sb;
	unsigned line;
	const char *why;

	sb_init(&sb);
	export_prometheus(a, now, &x, &sb);
	FUZZ_CHECK(!sb.oom, "oom");
	why = fuzz_prom_check(sb.buf ? sb.buf : "", sb.len, &line);
	FUZZ_CHECK(!why, "/metrics line %u: %s", line, why);

	sb_reset(&sb);
	export_json_summary(a, now, &sb);
	FUZZ_CHECK(fuzz_json_valid(sb.buf ? sb.buf : "", sb.len), "summary is not valid JSON: %s",
		   sb.buf ? sb.buf : "");

	sb_reset(&sb);
	export_top_table(a, now, &sb);
	export_summary_table(a, now, &sb);
	export_status_line(a, UINT64_C(10000000000), "10s", now, &sb);
	FUZZ_CHECK(fuzz_utf8_bad_at((const unsigned char *)sb.buf, sb.len) == sb.len, "tables are not UTF-8");
	for (size_t i = 0; i < sb.len; i++) {
		unsigned char c = (unsigned char)sb.buf[i];
		/* producer text must not reach a terminal as control bytes */
		FUZZ_CHECK(c >= 0x20 || c == '\n', "control byte 0x%02x in a table at %zu", c, i);
	}
	sb_free(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agg_config cfg = {.settle_ns = 1000000000u, .max_sources = 4};
	struct agg *a;
	struct ingest *in;
	uint64_t now = UINT64_C(1000000000000);
	uint8_t *copy;

	if (!codec)
		codec = mfu_codec_new(1);
	FUZZ_CHECK(codec && agg_new(&cfg, &a) == 0, "setup");

	FUZZ_CHECK(ingest_new(a, codec, "fuzz-1", &in) == 0, "ingest_new");
	feed(in, data, size, 0, &now);
	ingest_pending(in);
	ingest_free(in);

	copy = malloc(size ? size : 1);
	FUZZ_CHECK(copy, "malloc");
	if (size)
		memcpy(copy, data, size);
	fix_crcs(copy, size);
	FUZZ_CHECK(ingest_new(a, codec, "fuzz-2", &in) == 0, "ingest_new");
	feed(in, copy, size, (uint32_t)size * 2654435761u | 1u, &now);
	ingest_free(in);
	free(copy);

	check_exports(a, now);
	agg_evict(a, now + UINT64_C(1000000000000), 1);
	agg_free(a);
	return 0;
}
