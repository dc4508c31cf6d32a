/* SPDX-License-Identifier: MIT */
/*
 * bench_ingest: how fast one collector core turns frames into the model, next
 * to how fast zstd alone can inflate the same frames.  A synthetic GPT-like
 * stream (tools/synth) is encoded the way the shim's sender does it (records
 * into a 256 KiB raw buffer, sealed at zstd level 3) and kept in memory; then
 * raw decompression, decode-only and full ingest are each timed, best of N,
 * on one pinned CPU.  It also prints compressed bytes per record.  It prints
 * figures only: nothing here passes or fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "agg.h"
#include "ingest.h"
#include "mfu/wire.h"
#include "synth.h"

#ifndef BENCH_BUILDTYPE
#define BENCH_BUILDTYPE "unknown"
#endif

#define RAW_CAP (256u * 1024u) /* the sender's default frame_raw */
#define TARGET_RATE 20e6       /* records/s on one core */
#define TARGET_RATIO 0.5       /* ingest rate / raw zstd rate */
#define TARGET_BYTES 8.0       /* compressed bytes per kernel record */
#define NTYPES 16

/* Frames kept back to back in one buffer. */
struct frames {
	uint8_t *buf;
	size_t len, cap;
	size_t *off;
	size_t n, ncap;
	uint64_t raw_bytes;
};

/* One producer: an encoder, its codec and where its frames go. */
struct stream {
	int level;
	int kernels_only;
	int keep; /* keep the frames, else only count their bytes */
	struct mfu_codec *codec;
	uint8_t *raw, *tmp;
	struct mfu_enc enc;
	uint32_t seq;
	uint64_t records, kernels, frame_bytes, nframes;
	struct frames fr;
};

struct gen {
	struct stream *st;
	unsigned nst;
	uint64_t mix[NTYPES];
};

/* --clock thread: the thread's CPU time, which leaves out the time other
 * jobs on a shared machine hold the CPU (their cache traffic still shows). */
static clockid_t bench_clock = CLOCK_MONOTONIC;
static int no_gaps; /* --no-gaps: the model as mfud --no-gaps runs it */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(bench_clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int frames_grow(struct frames *f, size_t need)
{
	if (f->cap - f->len < need) {
		size_t cap = f->cap ? f->cap : (64u << 20);
		while (cap - f->len < need)
			cap *= 2;
		uint8_t *p = realloc(f->buf, cap);
		if (!p)
			return -ENOMEM;
		f->buf = p;
		f->cap = cap;
	}
	if (f->n == f->ncap) {
		size_t ncap = f->ncap ? f->ncap * 2 : 1024;
		size_t *o = realloc(f->off, ncap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		f->off = o;
		f->ncap = ncap;
	}
	return 0;
}

static void frames_free(struct frames *f)
{
	free(f->buf);
	free(f->off);
}

static int stream_seal(struct stream *s)
{
	size_t bound = mfu_frame_bound(s->enc.len), len;
	uint8_t *out = s->tmp;
	int rc;

	if (!s->enc.records)
		return 0;
	if (s->keep) {
		if ((rc = frames_grow(&s->fr, bound)))
			return rc;
		out = s->fr.buf + s->fr.len;
	}
	if ((rc = mfu_frame_seal(s->codec, s->raw, s->enc.len, s->seq++, out, bound, &len)))
		return rc;
	if (s->keep) {
		s->fr.off[s->fr.n++] = s->fr.len;
		s->fr.len += len;
	}
	s->fr.raw_bytes += s->enc.len;
	s->frame_bytes += len;
	s->nframes++;
	mfu_enc_reset(&s->enc);
	return 0;
}

static int stream_put(struct stream *s, const struct mfu_record *r)
{
	int rc = mfu_enc_put(&s->enc, r);

	if (rc == -MFU_WIRE_E_NOMEM) {
		if ((rc = stream_seal(s)))
			return rc;
		rc = mfu_enc_put(&s->enc, r);
	}
	if (rc)
		return rc;
	s->records++;
	if (r->type == MFU_REC_KERNEL)
		s->kernels++;
	return 0;
}

static int emit(void *arg, const struct mfu_record *r)
{
	struct gen *g = arg;
	int rc;

	g->mix[r->type < NTYPES ? r->type : 0]++;
	for (unsigned i = 0; i < g->nst; i++) {
		if (g->st[i].kernels_only && r->type != MFU_REC_KERNEL)
			continue;
		if ((rc = stream_put(&g->st[i], r)))
			return rc;
	}
	return 0;
}

static int stream_init(struct stream *s, int level, int kernels_only, int keep)
{
	memset(s, 0, sizeof(*s));
	s->level = level;
	s->kernels_only = kernels_only;
	s->keep = keep;
	s->codec = mfu_codec_new(level);
	s->raw = malloc(RAW_CAP);
	s->tmp = malloc(mfu_frame_bound(RAW_CAP));
	if (!s->codec || !s->raw || !s->tmp)
		return -ENOMEM;
	mfu_enc_init(&s->enc, s->raw, RAW_CAP);
	return 0;
}

static void stream_free(struct stream *s)
{
	mfu_codec_free(s->codec);
	free(s->raw);
	free(s->tmp);
	frames_free(&s->fr);
}

static const uint8_t *frame_at(const struct frames *f, size_t i, size_t *len)
{
	size_t end = i + 1 < f->n ? f->off[i + 1] : f->len;
	*len = end - f->off[i];
	return f->buf + f->off[i];
}

/* a: zstd alone, as `zstd -d` without I/O.  Returns the seconds taken. */
static int time_zstd(const struct frames *f, uint8_t *scratch, double *secs)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	uint64_t out = 0;
	int rc = 0;

	if (!dctx)
		return -ENOMEM;
	double t0 = now_s();
	for (size_t i = 0; i < f->n; i++) {
		struct mfu_frame_header h;
		size_t len;
		const uint8_t *fr = frame_at(f, i, &len);
		if ((rc = mfu_frame_header_parse(fr, len, &h)))
			goto out;
		const uint8_t *payload = fr + h.header_len;
		if (!(h.flags & MFU_FRAME_FLAG_ZSTD)) {
			memcpy(scratch, payload, h.payload_len);
			out += h.payload_len;
			continue;
		}
		size_t n = ZSTD_decompressDCtx(dctx, scratch, RAW_CAP, payload, h.payload_len);
		if (ZSTD_isError(n)) {
			rc = -MFU_WIRE_E_ZSTD;
			goto out;
		}
		out += n;
	}
	*secs = now_s() - t0;
	if (out != f->raw_bytes)
		rc = -MFU_WIRE_E_RAW_LEN;
out:
	ZSTD_freeDCtx(dctx);
	return rc;
}

/* b: frame open (CRC, zstd) and record decoding, no model. */
static int time_decode(const struct frames *f, uint64_t *records, double *secs)
{
	struct mfu_codec *c = mfu_codec_new(3);
	uint64_t n = 0, sink = 0;
	int rc = 0;

	if (!c)
		return -ENOMEM;
	double t0 = now_s();
	for (size_t i = 0; i < f->n; i++) {
		struct mfu_frame_header h;
		struct mfu_dec d;
		struct mfu_record r;
		const uint8_t *raw;
		size_t len, raw_len;
		const uint8_t *fr = frame_at(f, i, &len);
		if ((rc = mfu_frame_open(c, fr, len, &h, &raw, &raw_len)))
			goto out;
		mfu_dec_init(&d, raw, raw_len);
		while ((rc = mfu_dec_next(&d, &r)) == 1) {
			n++;
			sink += r.type;
		}
		if (rc < 0)
			goto out;
	}
	*secs = now_s() - t0;
	*records = n;
	rc = sink ? 0 : -EINVAL;
out:
	mfu_codec_free(c);
	return rc;
}

struct ingest_result {
	uint64_t records, kernels, busy_ns, kernel_ns;
	unsigned __int128 flops;
};

/* c: a fresh model, every frame through ingest_frame. */
static int time_ingest(const struct frames *f, double *secs, struct ingest_result *res)
{
	struct agg_config cfg = {.offline = 1, .no_gaps = no_gaps};
	struct agg *a = NULL;
	struct mfu_codec *c = mfu_codec_new(3);
	struct ingest *in = NULL;
	int rc;

	if (!c)
		return -ENOMEM;
	if ((rc = agg_new(&cfg, &a)) || (rc = ingest_new(a, c, "bench", &in)))
		goto out;
	double t0 = now_s();
	for (size_t i = 0; i < f->n; i++) {
		size_t len;
		const uint8_t *fr = frame_at(f, i, &len);
		if ((rc = ingest_frame(in, fr, len, 0)))
			goto out;
	}
	*secs = now_s() - t0;
	memset(res, 0, sizeof(*res));
	struct agg_source *s = ingest_source(in);
	res->records = s->records + 1; /* + the hello */
	for (unsigned i = 0; i < s->ndev; i++) {
		const struct agg_totals *t = &s->dev[i]->tot;
		res->kernels += t->kernels;
		res->busy_ns += t->busy_ns;
		res->kernel_ns += t->kernel_ns;
		for (unsigned k = 0; k < MFU_CLASS_COUNT; k++)
			res->flops += t->flops[k];
	}
out:
	ingest_free(in);
	agg_free(a);
	mfu_codec_free(c);
	return rc;
}

static double best(const double *v, unsigned n)
{
	double b = v[0];
	for (unsigned i = 1; i < n; i++)
		if (v[i] < b)
			b = v[i];
	return b;
}

static const char *met(int ok)
{
	return ok ? "met" : "NOT met";
}

static void print_reps(const double *v, unsigned n)
{
	printf("  [");
	for (unsigned i = 0; i < n; i++)
		printf("%s%.3f", i ? " " : "", v[i]);
	printf(" s]\n");
}

static int measure(const struct stream *s, unsigned reps, const struct synth_totals *tot)
{
	const struct frames *f = &s->fr;
	double ta[64] = {0}, tb[64] = {0}, tc[64] = {0};
	uint64_t records = 0;
	struct ingest_result res = {0};
	uint8_t *scratch = malloc(RAW_CAP);
	int rc = 0;

	if (!scratch)
		return -ENOMEM;
	/* Interleaved, so a slow phase of the machine hits all three alike. */
	for (unsigned r = 0; r < reps; r++) {
		if ((rc = time_zstd(f, scratch, &ta[r])) || (rc = time_decode(f, &records, &tb[r])) ||
		    (rc = time_ingest(f, &tc[r], &res))) {
			fprintf(stderr, "bench_ingest: level %d: error %d (%s)\n", s->level, rc,
				ingest_strerror(rc));
			goto out;
		}
	}
	double a = best(ta, reps), b = best(tb, reps), c = best(tc, reps);
	double n = (double)s->records;
	printf("zstd level %d: %zu frames, %.1f MB compressed, %.1f MB raw\n", s->level, f->n,
	       (double)f->len / 1e6, (double)f->raw_bytes / 1e6);
	printf("  a. raw zstd decompress : %7.2f M rec/s equiv  %8.1f MB/s raw out", n / a / 1e6,
	       (double)f->raw_bytes / a / 1e6);
	print_reps(ta, reps);
	printf("  b. decode only         : %7.2f M rec/s", n / b / 1e6);
	print_reps(tb, reps);
	printf("  %-23s: %7.2f M rec/s  (target >= %.0f M rec/s/core: %s)",
	       no_gaps ? "c. ingest, --no-gaps" : "c. full ingest", n / c / 1e6,
	       TARGET_RATE / 1e6, met(n / c >= TARGET_RATE));
	print_reps(tc, reps);
	printf("  ratio to raw decompression (c/a): %.3f  (target >= %.1f: %s);  b/a: %.3f\n", a / c,
	       TARGET_RATIO, met(a / c >= TARGET_RATIO), a / b);
	printf("  check: decoded %llu records, ingested %llu (sent %llu); kernels %llu (sent %llu); "
	       "busy %llu ns (synth exact union %llu); kernel flops %s\n",
	       (unsigned long long)records, (unsigned long long)res.records,
	       (unsigned long long)s->records, (unsigned long long)res.kernels,
	       (unsigned long long)tot->kernels, (unsigned long long)res.busy_ns,
	       (unsigned long long)tot->busy_ns, res.flops == tot->hw_flops ? "equal" : "DIFFER");
out:
	free(scratch);
	return rc;
}

static void print_header(int argc, char **argv, int cpu)
{
	char line[512], model[256] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");

	printf("command:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');
			if (!strncmp(line, "model name", 10) && colon) {
				snprintf(model, sizeof(model), "%s", colon + 2);
				model[strcspn(model, "\n")] = 0;
				break;
			}
		}
		fclose(f);
	}
	if (cpu >= 0)
		printf("cpu: %s; pinned to CPU %d\n", model, cpu);
	else
		printf("cpu: %s; NOT pinned (sched_setaffinity failed)\n", model);
	printf("build: meson buildtype %s, %s, NDEBUG %s; %s; zstd %s\n", BENCH_BUILDTYPE,
#ifdef __OPTIMIZE__
	       "optimized",
#else
	       "NOT optimized",
#endif
#ifdef NDEBUG
	       "on",
#else
	       "off",
#endif
	       "cc " __VERSION__, ZSTD_versionString());
	printf("clock: %s, best of the repetitions shown in [ ]\n",
	       bench_clock == CLOCK_MONOTONIC ? "CLOCK_MONOTONIC" : "CLOCK_THREAD_CPUTIME_ID (--clock thread)");
}

static const char usage[] =
	"usage: bench_ingest [--steps N] [--layers N] [--reps N] [--no-level1] [--cpu N] [--clock wall|thread]\n"
	"                    [--no-gaps]\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"steps", required_argument, NULL, 's'},
		{"layers", required_argument, NULL, 'l'},
		{"reps", required_argument, NULL, 'r'},
		{"no-level1", no_argument, NULL, 'n'},
		{"cpu", required_argument, NULL, 'c'},
		{"clock", required_argument, NULL, 'k'},
		{"no-gaps", no_argument, NULL, 'g'},
		{NULL, 0, NULL, 0},
	};
	struct synth_params p;
	struct synth_totals tot;
	struct mfu_rec_hello hello;
	struct stream st[3];
	struct gen g = {.st = st, .nst = 3};
	unsigned reps = 3;
	int level1 = 1, cpu = 0, rc = 1, o;
	cpu_set_t cpus;

	synth_defaults(&p);
	/* ~63 records per layer per step: 7000 x 48 gives ~21 M records. */
	p.steps = 7000;
	p.layers = 48;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's': p.steps = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'l': p.layers = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': reps = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'n': level1 = 0; break;
		case 'c': cpu = atoi(optarg); break;
		case 'g': no_gaps = 1; break;
		case 'k':
			if (!strcmp(optarg, "thread"))
				bench_clock = CLOCK_THREAD_CPUTIME_ID;
			else if (strcmp(optarg, "wall")) {
				fputs(usage, stderr);
				return 2;
			}
			break;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (reps < 1 || reps > 64 || !p.steps || !p.layers) {
		fputs(usage, stderr);
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(cpu, &cpus);
	int pinned = sched_setaffinity(0, sizeof(cpus), &cpus) == 0;
	print_header(argc, argv, pinned ? cpu : -1);

	memset(st, 0, sizeof(st));
	if (stream_init(&st[0], 3, 0, 1) || stream_init(&st[1], 1, 0, level1) || stream_init(&st[2], 3, 1, 0)) {
		fprintf(stderr, "bench_ingest: out of memory\n");
		goto out;
	}
	synth_hello(&p, "bench-host", "bench", 4242, 0, 1, &hello);
	struct mfu_record h = {.type = MFU_REC_HELLO, .u.hello = hello};
	for (unsigned i = 0; i < 3; i++)
		if (stream_put(&st[i], &h))
			goto out;
	g.mix[MFU_REC_HELLO]++;
	double t0 = now_s();
	if (synth_run(&p, emit, &g, &tot)) {
		fprintf(stderr, "bench_ingest: encoding failed\n");
		goto out;
	}
	for (unsigned i = 0; i < 3; i++)
		if (stream_seal(&st[i]))
			goto out;
	double tgen = now_s() - t0;

	printf("\nstream: synth_defaults with steps=%u layers=%u; %llu records (generated, encoded and "
	       "sealed 3 ways in %.1f s)\n",
	       p.steps, p.layers, (unsigned long long)st[0].records, tgen);
	printf("  mix: kernel %llu (%.1f%%), api %llu (%.1f%%), gemm %llu (%.1f%%), step %llu, string %llu, "
	       "hello %llu\n",
	       (unsigned long long)g.mix[MFU_REC_KERNEL], 100.0 * (double)g.mix[MFU_REC_KERNEL] / (double)st[0].records,
	       (unsigned long long)g.mix[MFU_REC_API], 100.0 * (double)g.mix[MFU_REC_API] / (double)st[0].records,
	       (unsigned long long)g.mix[MFU_REC_GEMM], 100.0 * (double)g.mix[MFU_REC_GEMM] / (double)st[0].records,
	       (unsigned long long)g.mix[MFU_REC_STEP], (unsigned long long)g.mix[MFU_REC_STRING],
	       (unsigned long long)g.mix[MFU_REC_HELLO]);
	printf("  frames: %u KiB raw buffer per frame, sealed when the next record does not fit\n",
	       RAW_CAP / 1024);

	printf("\nbytes per record after compression (frame headers included):\n");
	for (unsigned i = 0; i < 2; i++)
		printf("  full mix, zstd level %d   : %6.3f B/record  (%llu B, %llu frames, raw %.2f B/record)\n",
		       st[i].level, (double)st[i].frame_bytes / (double)st[i].records,
		       (unsigned long long)st[i].frame_bytes, (unsigned long long)st[i].nframes,
		       (double)st[i].fr.raw_bytes / (double)st[i].records);
	printf("  kernels only, zstd level 3: %6.3f B/kernel record  (%llu B / %llu kernels, %llu frames; "
	       "target <= %.0f B: %s)\n",
	       (double)st[2].frame_bytes / (double)st[2].kernels, (unsigned long long)st[2].frame_bytes,
	       (unsigned long long)st[2].kernels, (unsigned long long)st[2].nframes, TARGET_BYTES,
	       met((double)st[2].frame_bytes / (double)st[2].kernels <= TARGET_BYTES));

	printf("\none core, %u repetitions each:\n", reps);
	if (measure(&st[0], reps, &tot))
		goto out;
	if (level1 && measure(&st[1], reps, &tot))
		goto out;
	rc = 0;
out:
	for (unsigned i = 0; i < 3; i++)
		stream_free(&st[i]);
	return rc;
}
