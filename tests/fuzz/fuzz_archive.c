/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: an archive file as `mfu report` reads it.  The bytes
 * are given to archive_reader_next() as archive_reader_open() would map
 * them (after the same magic check), and every frame it yields goes through
 * ingest_frame() into a model, with the loop of tools/mfu/report.c.
 * Checked beyond memory safety: every entry returned lies inside the file
 * and starts where the reader said, the reader always moves forward (so a
 * corrupt file cannot make report loop), and skipped bytes never exceed the
 * file.  The summary JSON must be valid.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "archive.h"
#include "export.h"
#include "fuzz_common.h"
#include "ingest.h"

static struct mfu_codec *codec;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agg_config cfg = {.offline = 1, .max_sources = 2};
	struct archive_reader rd;
	struct agg *a;
	struct ingest *in;
	uint8_t *copy;

	if (size < ARCHIVE_HEADER_LEN || memcmp(data, ARCHIVE_MAGIC, 8))
		return 0;
	if (!codec)
		codec = mfu_codec_new(1);
	FUZZ_CHECK(codec && agg_new(&cfg, &a) == 0 && ingest_new(a, codec, "fuzz.0.mfa", &in) == 0, "setup");
	ingest_accept_offcpu(in);
	copy = malloc(size); /* exact size, like the mapping's end */
	FUZZ_CHECK(copy, "malloc");
	memcpy(copy, data, size);
	memset(&rd, 0, sizeof(rd));
	rd.data = copy;
	rd.size = size;
	rd.off = ARCHIVE_HEADER_LEN;

	uint64_t recv;
	const uint8_t *frame;
	size_t len, bad;
	int rc;
	for (unsigned n = 0;; n++) {
		size_t before = rd.off;
		rc = archive_reader_next(&rd, &recv, &frame, &len, &bad);
		if (rc == 0)
			break;
		FUZZ_CHECK(rd.off > before, "entry %u: reader did not move (off %zu)", n, before);
		FUZZ_CHECK(rd.off <= size, "reader past the end");
		FUZZ_CHECK(rd.skipped_bytes <= size, "skipped more than the file");
		if (rc < 0) {
			FUZZ_CHECK(bad == before, "bad entry reported at %zu, read at %zu", bad, before);
			continue;
		}
		FUZZ_CHECK(frame == copy + before + ARCHIVE_ENTRY_LEN && len <= size - before - ARCHIVE_ENTRY_LEN,
			   "entry %u outside the file", n);
		rc = ingest_frame(in, frame, len, 0);
		if (rc == -INGEST_E_NO_HELLO)
			break;
	}
	ingest_free(in);
	agg_finish(a);
	free(copy);

	struct strbuf sb;
	sb_init(&sb);
	export_json_summary(a, 0, &sb);
	FUZZ_CHECK(fuzz_json_valid(sb.buf ? sb.buf : "", sb.len), "summary is not valid JSON");
	sb_reset(&sb);
	export_summary_table(a, 0, &sb);
	export_gap_report(a, 0, &sb);
	sb_free(&sb);
	agg_free(a);
	return 0;
}
