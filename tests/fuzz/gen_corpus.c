/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus of the fuzz harnesses: valid streams, payloads and
 * archives made with the real encoder (and mfu-synth's generator), valid
 * HTTP request heads and valid option strings, plus a few inputs that sit
 * on a limit.  The committed tests/fuzz/corpus/ is this program's output:
 *
 *     gen_corpus DIR     (writes DIR/frame, DIR/records, DIR/archive,
 *                         DIR/http, DIR/options; deterministic)
 *
 * Files are small on purpose: libFuzzer mutates small inputs faster, and
 * the whole corpus stays well under 200 KB.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mfu/wire.h"
#include "synth.h"

#define RAW_CAP (64u * 1024u)
#define T0 UINT64_C(1763800000000000000)

static const char *outdir;
static struct mfu_codec *codec;

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put_file(const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", outdir, sub);
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f || (n && fwrite(p, n, 1, f) != 1) || fclose(f))
		die(path);
}

/* ---- growing byte buffers ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			die("realloc");
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* One frame around raw; stored (flag 0) or compressed as the sender does. */
static void frame_add(struct buf *out, const uint8_t *raw, size_t len, uint32_t seq, int stored)
{
	uint8_t *f = malloc(mfu_frame_bound(len));
	size_t n;

	if (!f)
		die("malloc");
	if (stored) {
		memcpy(f, "FMUw", 4);
		f[4] = MFU_FRAME_VERSION;
		f[5] = 0;
		f[6] = MFU_FRAME_HEADER_LEN;
		f[7] = 0;
		wr32(f + 8, (uint32_t)len);
		wr32(f + 12, (uint32_t)len);
		memcpy(f + MFU_FRAME_HEADER_LEN, raw, len);
		n = MFU_FRAME_HEADER_LEN + len;
		mfu_frame_set_seq(f, n, seq);
	} else if (mfu_frame_seal(codec, raw, len, seq, f, mfu_frame_bound(len), &n)) {
		errno = EINVAL;
		die("seal");
	}
	buf_add(out, f, n);
	free(f);
}

/* ---- records ---- */

static struct mfu_enc enc;
static uint8_t raw[RAW_CAP];

static void put(const struct mfu_record *r)
{
	if (mfu_enc_put(&enc, r)) {
		errno = EINVAL;
		die("encode");
	}
}

static void put_hello(const char *host, const char *job, const char *dev_name)
{
	struct mfu_record r = {.type = MFU_REC_HELLO};
	r.u.hello = (struct mfu_rec_hello){
		.time_ns = T0, .pid = 4242, .rank = 3, .local_rank = 1, .world_size = 8, .flags = 0,
		.host = host, .host_len = (uint32_t)strlen(host), .job = job, .job_len = (uint32_t)strlen(job),
		.producer = "mfushim 0.1.0", .producer_len = 13, .has_device = dev_name != NULL};
	if (dev_name)
		r.u.hello.device = (struct mfu_device_info){.index = 0, .sm_count = 132, .sm_clock_khz = 1980000,
							    .mem_clock_khz = 2619000, .cc_major = 9, .cc_minor = 0,
							    .name = dev_name, .name_len = (uint32_t)strlen(dev_name)};
	put(&r);
}

static void put_string(uint64_t id, const char *s, size_t n)
{
	struct mfu_record r = {.type = MFU_REC_STRING};
	r.u.string = (struct mfu_rec_string){.id = id, .text = s, .len = (uint32_t)n};
	put(&r);
}

/* One of every record type, with times after T0. */
static void put_each_type(void)
{
	struct mfu_record r;
	uint64_t t = T0 + 1000000;

	memset(&r, 0, sizeof(r));
	r.type = MFU_REC_DEVICE;
	r.u.device = (struct mfu_device_info){.index = 1, .sm_count = 108, .sm_clock_khz = 1410000,
					       .mem_clock_khz = 1593000, .cc_major = 8, .cc_minor = 0,
					       .name = "NVIDIA A100-SXM4-80GB", .name_len = 21};
	put(&r);
	put_string(1, "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", 40);
	put_string(2, "void at::native::vectorized_elementwise_kernel<4>", 49);
	for (int i = 0; i < 3; i++) {
		memset(&r, 0, sizeof(r));
		r.type = MFU_REC_GEMM;
		r.u.gemm = (struct mfu_rec_gemm){.start_ns = t, .end_ns = t + 8000, .tid = 77, .device = 0, .api = 11,
						  .m = 4096, .n = 4096, .k = 1024, .batch = 1, .a_type = 14,
						  .b_type = 14, .c_type = 14, .compute_type = 68, .ops = 1,
						  .flags = MFU_CLASS_BF16 | MFU_KF_GEMM,
						  .flops = 2ull * 4096 * 4096 * 1024, .call = 100 + (uint64_t)i};
		put(&r);
		memset(&r, 0, sizeof(r));
		r.type = MFU_REC_API;
		r.u.api = (struct mfu_rec_api){.start_ns = t + 1000, .end_ns = t + 4000, .tid = 77, .cbid = 211,
						.corr = 500 + (uint64_t)i, .kind = MFU_API_LAUNCH};
		put(&r);
		memset(&r, 0, sizeof(r));
		r.type = MFU_REC_KERNEL;
		r.u.kernel = (struct mfu_rec_kernel){.start_ns = t + 20000, .end_ns = t + 90000, .device = 0,
						      .stream = 7, .name_id = 1, .corr = 500 + (uint64_t)i,
						      .call = 100 + (uint64_t)i, .flags = MFU_CLASS_BF16 | MFU_KF_GEMM,
						      .flops = 2ull * 4096 * 4096 * 1024};
		put(&r);
		memset(&r, 0, sizeof(r));
		r.type = MFU_REC_KERNEL;
		r.u.kernel = (struct mfu_rec_kernel){.start_ns = t + 95000, .end_ns = t + 99000, .device = 1,
						      .stream = 7, .name_id = 2, .corr = 600 + (uint64_t)i,
						      .flags = MFU_CLASS_NONE};
		put(&r);
		t += 100000;
	}
	memset(&r, 0, sizeof(r));
	r.type = MFU_REC_GEMM; /* an untimed declared region */
	r.u.gemm = (struct mfu_rec_gemm){.start_ns = t, .end_ns = t + 5000, .tid = 77, .api = 30,
					  .flags = MFU_CLASS_BF16 | MFU_KF_DECLARED | MFU_KF_UNTIMED, .flops = 1000000000};
	put(&r);
	memset(&r, 0, sizeof(r));
	r.type = MFU_REC_STEP;
	r.u.step = (struct mfu_rec_step){.begin_ns = T0 + 1000000, .end_ns = t, .index = 1, .device = 0,
					  .model_flops = 3ull * 2 * 4096 * 4096 * 1024, .model_class = MFU_CLASS_BF16};
	put(&r);
	memset(&r, 0, sizeof(r));
	r.type = MFU_REC_STATUS;
	r.u.status = (struct mfu_rec_status){.time_ns = t, .flags = 0, .dropped = {1, 2, 3, 4}};
	put(&r);
}

static void put_goodbye(void)
{
	struct mfu_record r = {.type = MFU_REC_GOODBYE};
	r.u.goodbye = (struct mfu_rec_goodbye){.time_ns = T0 + 10000000, .exit_code = -9};
	put(&r);
}

static void payload_start(void)
{
	mfu_enc_init(&enc, raw, sizeof(raw));
}

/* ---- synthetic run (mfu-synth's generator) ---- */

struct synth_sink {
	struct buf stream;
	uint32_t seq;
	unsigned payloads;
};

static int synth_emit(void *arg, const struct mfu_record *r)
{
	struct synth_sink *k = arg;

	if (enc.len > 1500) {
		if (k->payloads++ < 2) {
			char name[32];
			snprintf(name, sizeof(name), "synth-%u", k->payloads);
			put_file("records", name, raw, enc.len);
		}
		frame_add(&k->stream, raw, enc.len, k->seq++, 0);
		mfu_enc_reset(&enc);
	}
	put(r);
	return 0;
}

static void gen_synth(void)
{
	struct synth_params p;
	struct synth_totals t;
	struct synth_sink k = {0};
	struct mfu_record h = {.type = MFU_REC_HELLO};

	synth_defaults(&p);
	p.steps = 1;
	p.layers = 1;
	p.remat = 1;
	synth_hello(&p, "node-a", "job-17", 1234, 0, 1, &h.u.hello);
	payload_start();
	put(&h);
	if (synth_run(&p, synth_emit, &k, &t)) {
		errno = EINVAL;
		die("synth");
	}
	if (enc.len)
		frame_add(&k.stream, raw, enc.len, k.seq++, 0);
	put_file("frame", "synth-1step", k.stream.p, k.stream.len);

	/* The same stream as an archive file, as mfud --archive writes it. */
	struct buf ar = {0};
	uint8_t hdr[16] = "MFUArch1";
	buf_add(&ar, hdr, 16);
	size_t off = 0;
	uint64_t recv = T0;
	while (off < k.stream.len) {
		struct mfu_frame_header fh;
		uint8_t e[8];
		mfu_frame_header_parse(k.stream.p + off, k.stream.len - off, &fh);
		for (int i = 0; i < 8; i++)
			e[i] = (uint8_t)(recv >> (8 * i));
		buf_add(&ar, e, 8);
		buf_add(&ar, k.stream.p + off, mfu_frame_size(&fh));
		off += mfu_frame_size(&fh);
		recv += 100000000;
	}
	put_file("archive", "synth-1step.0.mfa", ar.p, ar.len);
	/* A crash mid-write: the last entry torn. */
	put_file("archive", "torn.0.mfa", ar.p, ar.len - 7);
	free(ar.p);
	free(k.stream.p);
}

/* ---- hand-made streams ---- */

static void gen_streams(void)
{
	struct buf s = {0};

	/* A hello alone, compressed and stored. */
	payload_start();
	put_hello("gpu-node-01", "slurm-991", "NVIDIA H100 80GB HBM3");
	frame_add(&s, raw, enc.len, 0, 0);
	put_file("frame", "hello", s.p, s.len);
	put_file("records", "hello", raw, enc.len);
	s.len = 0;
	frame_add(&s, raw, enc.len, 0, 1);
	put_file("frame", "hello-stored", s.p, s.len);

	/* Hello, then every record type, then goodbye, in three frames. */
	s.len = 0;
	frame_add(&s, raw, enc.len, 0, 1);
	payload_start();
	put_each_type();
	frame_add(&s, raw, enc.len, 1, 1);
	put_file("records", "each-type", raw, enc.len);
	payload_start();
	put_goodbye();
	frame_add(&s, raw, enc.len, 2, 0);
	put_file("frame", "each-type-stored", s.p, s.len);

	/* The same, compressed, with a sequence gap. */
	s.len = 0;
	payload_start();
	put_hello("gpu-node-01", "slurm-991", "NVIDIA H100 80GB HBM3");
	put_each_type();
	frame_add(&s, raw, enc.len, 0, 0);
	put_file("records", "hello-each-type", raw, enc.len);
	payload_start();
	put_each_type();
	put_goodbye();
	frame_add(&s, raw, enc.len, 5, 0);
	put_file("frame", "each-type-zstd-gap", s.p, s.len);

	/* Hostile producer text: quotes, backslashes, newlines, control bytes,
	 * an escape sequence, invalid UTF-8 and a NUL. */
	static const char host[] = "n\"o\\d\ne\x1b[2J";
	static const char job[] = "job\xff\xfe\xc0\xaf\xed\xa0\x80";
	static const char dev[] = "NVIDIA H100\r\n# HELP fake";
	static const char kname[] = "k\"}\\n\x00\xe2\x82 end";
	s.len = 0;
	payload_start();
	put_hello(host, job, dev);
	put_string(3, kname, sizeof(kname) - 1);
	put_each_type();
	frame_add(&s, raw, enc.len, 0, 1);
	put_file("frame", "hostile-names", s.p, s.len);
	put_file("records", "hostile-names", raw, enc.len);

	/* Unknown record type 42 (skipped by length) and a string at the id limit. */
	payload_start();
	put_hello("h", "", NULL);
	static const uint8_t unknown[] = {42, 3, 1, 2, 3};
	memcpy(raw + enc.len, unknown, sizeof(unknown));
	enc.len += sizeof(unknown);
	put_string(MFU_STRING_ID_MAX, "last", 4);
	put_file("records", "unknown-type", raw, enc.len);
	s.len = 0;
	frame_add(&s, raw, enc.len, 0, 1);
	put_file("frame", "unknown-type", s.p, s.len);
	free(s.p);
}

/* ---- HTTP request heads ---- */

static void gen_http(void)
{
	static const struct {
		const char *name, *text;
	} reqs[] = {
		{"get-metrics", "GET /metrics HTTP/1.1\r\nHost: localhost:9464\r\nAccept: */*\r\n\r\n"},
		{"head-summary", "HEAD /api/v1/summary HTTP/1.0\r\n\r\n"},
		{"get-top-lf", "GET /api/v1/top HTTP/1.1\nHost: x\n\n"},
		{"query", "GET /metrics?name[]=mfu_hfu_ratio&x=%20 HTTP/1.1\r\nUser-Agent: Prometheus/2.45\r\n"
			  "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"},
		{"content-length-0", "GET / HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"post-body", "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked", "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"http2-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"pipelined", "GET /metrics HTTP/1.1\r\n\r\nGET /api/v1/top HTTP/1.1\r\n\r\n"},
		{"bare-cr", "GET / HTTP/1.1\rHost: x\r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
		put_file("http", reqs[i].name, reqs[i].text, strlen(reqs[i].text));
}

/* ---- option values: [parser][param] text (see fuzz_options.c) ---- */

static void gen_options(void)
{
	static const struct {
		const char *name;
		uint8_t which, param;
		const char *text;
	} opts[] = {
		{"uint-archive-mb", 0, 0, "64"},
		{"uint-settle", 10, 1, "1000"},
		{"uint-big", 50, 2, "18446744073709551615"},
		{"positive-speed", 1, 0, "2.5"},
		{"class-bf16", 2, 0, "bf16"},
		{"peak-cli-one", 3, 0, "989.4"},
		{"peak-cli-list", 3, 1, "bf16=989.4,fp8=1979"},
		{"peak-env-list", 4, 0, " FP16 = 1.9789e3 , tf32=494.7 "},
		{"peak-raw-all", 5, 0, "fp64=67,fp32=67,tf32=494.7,fp16=989.4,bf16=989.4,fp8=1978.9,int8=1978.9"},
		{"hostport-v4", 6, 1, "127.0.0.1:9464"},
		{"hostport-v6", 6, 1, "[::1]:9464"},
		{"hostport-any", 6, 1, ":9400"},
		{"hostport-name", 6, 1, "metrics-host_01.example:80"},
		{"target-unix", 7, 0, "unix:/run/user/1000/mfu/mfud.sock"},
		{"target-path", 7, 0, "/tmp/mfu-1000/mfud.sock"},
		{"target-tcp", 7, 0, "tcp:collector.internal:7300"},
		{"target-tcp6", 7, 0, "tcp:[fe80::1]:7300"},
		{"files", 8, 0, "a/node-1-42-1763800000-c1.0.mfa\na/node-1-42-1763800000-c1.10.mfa\n"
				"a/node-1-42-1763800000-c1.2.mfa\nb.3.mfa.tmp\nplain.mfa\n"},
		{"device-h100", 9, 0, "NVIDIA H100 80GB HBM3"},
		{"device-a100", 9, 1, "  nvidia  a100-sxm4-40gb "},
	};
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		uint8_t b[512];
		size_t n = strlen(opts[i].text);
		b[0] = opts[i].which;
		b[1] = opts[i].param;
		memcpy(b + 2, opts[i].text, n);
		put_file("options", opts[i].name, b, n + 2);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) && errno != EEXIST)
		die(outdir);
	codec = mfu_codec_new(3);
	if (!codec)
		die("codec");
	gen_streams();
	gen_synth();
	gen_http();
	gen_options();
	mfu_codec_free(codec);
	return 0;
}
