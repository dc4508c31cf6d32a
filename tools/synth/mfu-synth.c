/* SPDX-License-Identifier: MIT */
/*
 * mfu-synth: writes a synthetic training run as an archive file, or streams
 * it to a collector through the same sender the shim uses.  Every record it
 * makes is marked synthetic (hello flag), and its exact totals can be
 * written as JSON for tests to compare against.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "export.h"
#include "options.h"
#include "sender.h"
#include "synth.h"

static const char usage[] =
	"usage: mfu-synth (--out FILE | --target unix:PATH|tcp:HOST:PORT) [OPTIONS]\n"
	"Generates a SYNTHETIC GPT-style training trace (not a measurement).\n"
	"\n"
	"  --out FILE          write an archive file (for mfu report / mfu replay)\n"
	"  --target T          stream to a collector (default: $MFU_COLLECTOR)\n"
	"  --realtime          pace records to their timestamps, starting now\n"
	"  --steps N --layers N --width N --seq N --batch N --vocab N\n"
	"  --remat             recompute each block's forward in backward\n"
	"  --degraded          no kernel timing: untimed GEMM records only\n"
	"  --rank N --world-size N --job NAME --host NAME --pid N --device NAME --seed N\n"
	"  --totals FILE       write the exact totals sent, as JSON\n"
	"  --gap-scenario N    instead of training: N rounds of the hand-computed\n"
	"                      launch-gap timeline (doc/metrics.md, \"Idle gaps\")\n";

struct sink {
	/* archive mode */
	FILE *out;
	struct mfu_codec *codec;
	uint8_t *raw, *frame;
	struct mfu_enc enc;
	uint32_t seq;
	uint64_t frame_first_ns, frame_last_ns;
	const struct mfu_rec_hello *hello;
	/* stream mode */
	struct mfu_sender *sender;
	int realtime;
	unsigned since_flush;
	uint64_t t0_data, t0_wall;
	uint64_t data_now; /* latest record time: the synthetic clock */
};

static uint64_t data_clock(void *arg)
{
	return ((struct sink *)arg)->data_now;
}

#define RAW_CAP (512 * 1024)
#define FRAME_DATA_NS UINT64_C(100000000)

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t record_time(const struct mfu_record *r)
{
	switch (r->type) {
	case MFU_REC_KERNEL: return r->u.kernel.end_ns;
	case MFU_REC_GEMM: return r->u.gemm.end_ns;
	case MFU_REC_API: return r->u.api.end_ns;
	case MFU_REC_STEP: return r->u.step.end_ns;
	case MFU_REC_COPY: return r->u.copy.end_ns;
	case MFU_REC_OFFCPU: return r->u.offcpu.end_ns;
	default: return 0;
	}
}

static int flush_frame(struct sink *k)
{
	size_t len;
	uint8_t entry[8];

	if (!k->enc.records)
		return 0;
	if (mfu_frame_seal(k->codec, k->raw, k->enc.len, k->seq++, k->frame, mfu_frame_bound(RAW_CAP), &len))
		return -EIO;
	/* recv_ns: when a live collector would have had this frame */
	for (int i = 0; i < 8; i++)
		entry[i] = (uint8_t)(k->frame_last_ns >> (8 * i));
	if (fwrite(entry, 8, 1, k->out) != 1 || fwrite(k->frame, len, 1, k->out) != 1)
		return -EIO;
	mfu_enc_reset(&k->enc);
	k->frame_first_ns = 0;
	return 0;
}

/* How long a test producer waits for a busy collector before its sender
 * drops: load tests run hundreds of producers on a couple of cores. */
#define SYNTH_PATIENCE_MS 60000

static int emit(void *arg, const struct mfu_record *r)
{
	struct sink *k = arg;

	if (!r) { /* a round of the gap scenario ends */
		if (k->sender)
			mfu_sender_flush(k->sender, 5000);
		return 0;
	}
	uint64_t t = record_time(r);

	if (t > k->data_now)
		k->data_now = t;
	if (k->sender) {
		if (k->realtime && t > k->t0_data) {
			uint64_t due = k->t0_wall + (t - k->t0_data), now = mono_ns();
			if (due > now + 1000000) {
				struct timespec ts = {(time_t)((due - now) / 1000000000u), (long)((due - now) % 1000000000u)};
				nanosleep(&ts, NULL);
			}
		}
		/* A test producer must not lose records: let the sender drain now and
		 * then.  (The shim never waits like this.) */
		if (++k->since_flush >= 5000) {
			mfu_sender_flush(k->sender, SYNTH_PATIENCE_MS);
			k->since_flush = 0;
		}
		mfu_sender_put(k->sender, r); /* drops are counted by the sender */
		return 0;
	}
	/* Records without a time (strings) ride in the frame that follows. */
	if (t && k->enc.records && k->frame_first_ns && t > k->frame_first_ns + FRAME_DATA_NS) {
		int rc = flush_frame(k);
		if (rc)
			return rc;
	}
	if (!k->enc.records && !k->seq) {
		struct mfu_record h = {.type = MFU_REC_HELLO, .u.hello = *k->hello};
		mfu_enc_put(&k->enc, &h);
	}
	if (t > k->frame_last_ns)
		k->frame_last_ns = t;
	if (t && !k->frame_first_ns)
		k->frame_first_ns = t;
	int rc = mfu_enc_put(&k->enc, r);
	if (rc == -MFU_WIRE_E_NOMEM) {
		if ((rc = flush_frame(k)))
			return rc;
		rc = mfu_enc_put(&k->enc, r);
	}
	return rc ? -EINVAL : 0;
}

/* Exact integers past 2^64 as JSON numbers, through the exporter's printer. */
static void u128_print(FILE *f, unsigned __int128 v)
{
	struct strbuf sb;
	sb_init(&sb);
	sb_u128(&sb, v);
	fputs(sb.buf ? sb.buf : "0", f);
	sb_free(&sb);
}

static int write_totals(const char *path, const struct synth_totals *t, int degraded,
			const struct mfu_sender_stats *sent)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "{\"records\":%llu,\"kernels\":%llu,\"gemm_calls\":%llu,\"steps\":%llu,",
		(unsigned long long)t->records, (unsigned long long)t->kernels, (unsigned long long)t->gemm_calls,
		(unsigned long long)t->steps);
	fputs("\"gemm_flops\":", f);
	u128_print(f, t->gemm_flops);
	fputs(",\"hw_flops\":", f);
	u128_print(f, t->hw_flops);
	fputs(",\"model_flops\":", f);
	u128_print(f, t->model_flops);
	fputs(",\"remat_flops\":", f);
	u128_print(f, t->remat_flops);
	fprintf(f, ",\"kernel_ns\":%llu,\"busy_ns\":%llu,\"first_ns\":%llu,\"last_ns\":%llu,\"degraded\":%s",
		(unsigned long long)t->kernel_ns, (unsigned long long)t->busy_ns, (unsigned long long)t->first_ns,
		(unsigned long long)t->last_ns, degraded ? "true" : "false");
	if (sent) {
		/* what the sender wrote to the socket, for load tests to check
		 * against what the collector counted */
		uint64_t dropped = 0;
		for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
			dropped += sent->dropped[i];
		fprintf(f, ",\"frames_sent\":%llu,\"sender_dropped\":%llu", (unsigned long long)sent->frames,
			(unsigned long long)dropped);
	}
	fputs("}\n", f);
	return fclose(f) ? -errno : 0;
}

static int bad(const char *msg)
{
	fprintf(stderr, "mfu-synth: %s\n", msg);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"out", required_argument, NULL, 'o'},     {"target", required_argument, NULL, 't'},
		{"realtime", no_argument, NULL, 'R'},      {"steps", required_argument, NULL, 's'},
		{"layers", required_argument, NULL, 'L'},  {"width", required_argument, NULL, 'w'},
		{"seq", required_argument, NULL, 'q'},     {"batch", required_argument, NULL, 'b'},
		{"vocab", required_argument, NULL, 'v'},   {"remat", no_argument, NULL, 'r'},
		{"degraded", no_argument, NULL, 'd'},      {"rank", required_argument, NULL, 'k'},
		{"world-size", required_argument, NULL, 'W'}, {"job", required_argument, NULL, 'j'},
		{"host", required_argument, NULL, 'H'},    {"pid", required_argument, NULL, 'p'},
		{"device", required_argument, NULL, 'D'},  {"seed", required_argument, NULL, 'S'},
		{"totals", required_argument, NULL, 'T'},  {"help", no_argument, NULL, 'h'},
		{"gap-scenario", required_argument, NULL, 'G'},
		{0},
	};
	struct synth_params p;
	const char *out = NULL, *target = NULL, *totals = NULL, *job = "synthetic-demo", *host = "synthetic-host";
	uint64_t v, pid = 4242, world = 1;
	int64_t rank = 0;
	int realtime = 0, c;
	unsigned gap_rounds = 0;
	char err[200];

	synth_defaults(&p);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
#define NUM(lo, hi)                                                 \
	do {                                                        \
		if (opt_uint(optarg, lo, hi, &v, err, sizeof(err)))  \
			return bad(err);                             \
	} while (0)
		switch (c) {
		case 'o': out = optarg; break;
		case 't': target = optarg; break;
		case 'R': realtime = 1; break;
		case 's': NUM(1, 1000000); p.steps = (unsigned)v; break;
		case 'L': NUM(1, 1000); p.layers = (unsigned)v; break;
		case 'w': NUM(8, 65536); p.width = v; break;
		case 'q': NUM(1, 1 << 20); p.seq = v; break;
		case 'b': NUM(1, 65536); p.batch = v; break;
		case 'v': NUM(1, 1 << 22); p.vocab = v; break;
		case 'r': p.remat = 1; break;
		case 'd': p.degraded = 1; break;
		case 'k': NUM(0, 1 << 20); rank = (int64_t)v; break;
		case 'W': NUM(1, 1 << 20); world = v; break;
		case 'j': job = optarg; break;
		case 'H': host = optarg; break;
		case 'p': NUM(1, UINT32_MAX); pid = v; break;
		case 'D': p.device_name = optarg; break;
		case 'S': NUM(0, UINT32_MAX); p.seed = v; break;
		case 'T': totals = optarg; break;
		case 'G': NUM(1, 100000); gap_rounds = (unsigned)v; break;
		case 'h': fputs(usage, stdout); return 0;
		default:
			snprintf(err, sizeof(err), "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
			return bad(err);
		}
	}
	if (optind < argc || (!out && !target && !getenv("MFU_COLLECTOR")))
		return bad("give --out FILE or --target (see --help)");

	struct sink k = {.realtime = realtime};
	struct mfu_rec_hello hello;
	struct synth_totals t;
	int rc = 1;

	if (realtime) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		p.start_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		k.t0_data = p.start_ns;
		k.t0_wall = mono_ns();
	}
	synth_hello(&p, host, job, pid, rank, world, &hello);
	k.hello = &hello;
	if (out) {
		k.out = fopen(out, "wb");
		k.codec = mfu_codec_new(3);
		k.raw = malloc(RAW_CAP);
		k.frame = malloc(mfu_frame_bound(RAW_CAP));
		if (!k.out || !k.codec || !k.raw || !k.frame) {
			fprintf(stderr, "mfu-synth: cannot write %s: %s\n", out, strerror(errno));
			goto done;
		}
		mfu_enc_init(&k.enc, k.raw, RAW_CAP);
		uint8_t hdr[16] = ARCHIVE_MAGIC;
		for (int i = 0; i < 8; i++)
			hdr[8 + i] = (uint8_t)(p.start_ns >> (8 * i));
		fwrite(hdr, sizeof(hdr), 1, k.out);
	} else {
		struct mfu_sender_config sc = {.target = target, .clock_ns = data_clock, .clock_arg = &k};
		k.data_now = p.start_ns;
		if ((rc = mfu_sender_new(&sc, &hello, &k.sender))) {
			fprintf(stderr, "mfu-synth: cannot start sender: %s\n", strerror(-rc));
			rc = 1;
			goto done;
		}
	}
	rc = gap_rounds ? synth_gaps_run(&p, gap_rounds, emit, &k, &t) : synth_run(&p, emit, &k, &t);
	if (!rc && out)
		rc = flush_frame(&k);
	struct mfu_sender_stats st = {0};
	if (k.sender) {
		mfu_sender_shutdown(k.sender, 0, SYNTH_PATIENCE_MS);
		mfu_sender_stats(k.sender, &st);
		mfu_sender_free(k.sender, 0, SYNTH_PATIENCE_MS);
	}
	if (rc) {
		fprintf(stderr, "mfu-synth: %s\n", strerror(rc < 0 ? -rc : rc));
		rc = 1;
		goto done;
	}
	if (totals && write_totals(totals, &t, p.degraded, k.sender ? &st : NULL)) {
		fprintf(stderr, "mfu-synth: cannot write %s\n", totals);
		rc = 1;
	}
done:
	if (k.out && fclose(k.out)) {
		fprintf(stderr, "mfu-synth: cannot write %s: %s\n", out, strerror(errno));
		rc = 1;
	}
	mfu_codec_free(k.codec);
	free(k.raw);
	free(k.frame);
	return rc;
}
