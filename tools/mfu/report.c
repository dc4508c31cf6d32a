/* SPDX-License-Identifier: MIT */
/*
 * mfu report: the end-of-run summary, offline, from archive files.  Files of
 * one source (name.0.mfa, name.1.mfa, ...) are read in order through one
 * stream so the hello in the first reaches the rest.  A torn or corrupt
 * entry is reported with its offset and skipped; everything else is used.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "archive_files.h"
#include "cli.h"
#include "export.h"
#include "ingest.h"
#include "options.h"

static const char usage[] =
	"usage: mfu report [--json FILE] [--peak-tflops SPEC] [--model-dtype DTYPE]\n"
	"                  [--gap-wait-us N] FILE...\n"
	"Summarizes archived frames (mfud --archive, mfu run --archive, mfu-synth --out).\n";

int cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", required_argument, NULL, 'j'},
		{"peak-tflops", required_argument, NULL, 'p'},
		{"model-dtype", required_argument, NULL, 'd'},
		{"gap-wait-us", required_argument, NULL, 'W'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct agg_config cfg = {.offline = 1};
	const char *json = NULL, *peak = NULL;
	char err[256];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = optarg; break;
		case 'p': peak = optarg; break;
		case 'd':
			if (opt_class(optarg, &cfg.model_class, err, sizeof(err)))
				return cli_usage_error("report", "--model-dtype: %s", err);
			break;
		case 'W':
			if (opt_gap_wait(optarg, &cfg, err, sizeof(err)))
				return cli_usage_error("report", "--gap-wait-us: %s", err);
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: return cli_bad_option("report", argv, optind);
		}
	}
	if (optind >= argc)
		return cli_usage_error("report", "no archive files given");
	if (opt_peak(&cfg, peak, err, sizeof(err)))
		return cli_usage_error("report", "%s", err);

	int nfiles = argc - optind, failed = 0, frames = 0;
	char **files = malloc((size_t)nfiles * sizeof(*files));
	struct agg *a = NULL;
	struct mfu_codec *codec = mfu_codec_new(1);
	struct ingest *in = NULL;
	const char *cur = NULL;

	if (!files || !codec || agg_new(&cfg, &a)) {
		fprintf(stderr, "mfu report: out of memory\n");
		return 1;
	}
	memcpy(files, argv + optind, (size_t)nfiles * sizeof(*files));
	archive_files_sort(files, (size_t)nfiles);

	for (int i = 0; i < nfiles; i++) {
		struct archive_reader rd;
		int rc = archive_reader_open(files[i], &rd);
		if (rc) {
			fprintf(stderr, "mfu report: %s: %s\n", files[i],
				rc == -EBADMSG ? "not an mfu archive" : strerror(-rc));
			failed++;
			continue;
		}
		if (!in || !cur || !archive_same_group(cur, files[i])) {
			ingest_free(in);
			in = NULL;
			if (ingest_new(a, codec, files[i], &in)) {
				archive_reader_close(&rd);
				break;
			}
			ingest_accept_offcpu(in);
			cur = files[i];
		}
		uint64_t recv;
		const uint8_t *frame;
		size_t len, bad;
		/* One line per damaged spot: file, offset, bytes skipped, why. */
		size_t skipped = rd.skipped_bytes;
		while ((rc = archive_reader_next(&rd, &recv, &frame, &len, &bad)) != 0) {
			if (rc < 0) {
				fprintf(stderr, "mfu report: %s: offset %zu: skipped %zu bytes (%s entry)\n", files[i], bad,
					rd.skipped_bytes - skipped,
					rc == -MFU_WIRE_E_TRUNCATED ? "torn" : mfu_wire_strerror(-rc));
				skipped = rd.skipped_bytes;
				continue;
			}
			rc = ingest_frame(in, frame, len, 0);
			if (rc) {
				fprintf(stderr, "mfu report: %s: offset %zu: skipped %zu bytes (frame: %s)\n", files[i],
					bad, len + ARCHIVE_ENTRY_LEN, ingest_strerror(rc));
				if (rc == -INGEST_E_NO_HELLO)
					break;
				continue;
			}
			frames++;
		}
		archive_reader_close(&rd);
	}
	ingest_free(in);
	agg_finish(a);

	struct strbuf sb;
	sb_init(&sb);
	export_summary_table(a, 0, &sb);
	sb_puts(&sb, "\n");
	export_gap_report(a, 0, &sb);
	fputs(sb.buf ? sb.buf : "", stdout);
	int rc = failed || !frames ? 1 : 0;
	if (json) {
		sb_reset(&sb);
		export_json_summary(a, 0, &sb);
		FILE *f = fopen(json, "w");
		if (!f || fputs(sb.buf ? sb.buf : "", f) < 0 || fclose(f)) {
			fprintf(stderr, "mfu report: cannot write %s: %s\n", json, strerror(errno));
			rc = 1;
		}
	}
	sb_free(&sb);
	agg_free(a);
	mfu_codec_free(codec);
	free(files);
	return rc;
}
