/* SPDX-License-Identifier: MIT */
/*
 * Producer text is hostile.  Host, job, producer and device names, and
 * kernel names, arrive as arbitrary bytes (doc/wire-format.md: str is "not
 * assumed to be UTF-8") and must come out of every export as text a
 * scraper or a JSON parser accepts, saying what was sent: Prometheus label
 * values with \\ \" \n escaped, JSON strings with quotes, backslashes and
 * control characters escaped, and invalid UTF-8 replaced by U+FFFD (one per
 * maximal ill-formed subsequence, see strbuf.h), because both formats
 * require valid UTF-8.  These tests send quotes, newlines, backslashes,
 * invalid UTF-8 and 64 KiB names, first through the escapers, then through
 * the wire, the model and the exports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fuzz/fuzz_common.h"
#include "agg.h"
#include "export.h"
#include "ingest.h"
#include "ingest_fixture.h"
#include "strbuf.h"

#define FFFD "\xef\xbf\xbd"
#define S UINT64_C(1000000000)
#define T0 (UINT64_C(1700000000) * S)
#define NAME_64K 65536u

struct hostile {
	const char *in;
	size_t in_len;
	const char *prom, *json; /* expected output, without the quotes */
};

#define H(in, prom, json) {in, sizeof(in) - 1, prom, json}

static const struct hostile hostile[] = {
	H("say \"hi\"", "say \\\"hi\\\"", "say \\\"hi\\\""),
	H("C:\\temp\\", "C:\\\\temp\\\\", "C:\\\\temp\\\\"),
	H("line1\nline2", "line1\\nline2", "line1\\nline2"),
	/* a label value that tries to end its line and start a forged sample */
	H("x\"} 1\nmfu_hfu_ratio{job=\"evil", "x\\\"} 1\\nmfu_hfu_ratio{job=\\\"evil",
	  "x\\\"} 1\\nmfu_hfu_ratio{job=\\\"evil"),
	/* CR, tab, ESC, DEL: legal raw in a label value, escaped in JSON */
	H("a\rb\tc\x1b[2Jd\x7f", "a\rb\tc\x1b[2Jd\x7f", "a\\rb\\tc\\u001b[2Jd\x7f"),
	H("\\\"\\n", "\\\\\\\"\\\\n", "\\\\\\\"\\\\n"),
	/* invalid UTF-8: stray bytes, overlong NUL, surrogate, cut sequence */
	H("\xff\xfe", FFFD FFFD, FFFD FFFD),
	H("\xc0\x80", FFFD FFFD, FFFD FFFD),
	H("\xed\xa0\x80", FFFD FFFD FFFD, FFFD FFFD FFFD),
	H("k\xe2\x82", "k" FFFD, "k" FFFD),
	H("\xf4\x90\x80\x80!", FFFD FFFD FFFD FFFD "!", FFFD FFFD FFFD FFFD "!"),
	/* valid multibyte text is kept as is */
	H("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80",
	  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80"),
};

static void test_prom_label_escapes_hostile_names(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		struct strbuf sb;
		sb_init(&sb);
		sb_prom_label(&sb, hostile[i].in, hostile[i].in_len);
		assert_false(sb.oom);
		assert_string_equal(sb.buf ? sb.buf : "", hostile[i].prom);
		sb_free(&sb);
	}
}

static void test_json_string_escapes_hostile_names(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		struct strbuf sb;
		sb_init(&sb);
		sb_json_string(&sb, hostile[i].in, hostile[i].in_len);
		assert_false(sb.oom);
		assert_true(fuzz_json_valid(sb.buf, sb.len));
		assert_int_equal(sb.len, strlen(hostile[i].json) + 2);
		assert_memory_equal(sb.buf + 1, hostile[i].json, sb.len - 2);
		sb_free(&sb);
	}
}

/* 8 hostile bytes repeated to 64 KiB: quote, backslash, newline, a byte
 * that is never UTF-8, a valid é, a NUL, a cut 3-byte sequence. */
static const char unit_in[8] = {'"', '\\', '\n', '\xff', '\xc3', '\xa9', '\0', '\xe2'};
#define UNIT_PROM "\\\"\\\\\\n" FFFD "\xc3\xa9" "\0" FFFD
#define UNIT_JSON "\\\"\\\\\\n" FFFD "\xc3\xa9\\u0000" FFFD

static char *name_64k(void)
{
	char *s = malloc(NAME_64K);

	assert_non_null(s);
	for (size_t i = 0; i < NAME_64K; i += sizeof(unit_in))
		memcpy(s + i, unit_in, sizeof(unit_in));
	return s;
}

static void test_64k_hostile_name_escapes_unit_by_unit(void **state)
{
	static const char prom_unit[] = UNIT_PROM, json_unit[] = UNIT_JSON;
	const size_t units = NAME_64K / sizeof(unit_in), pn = sizeof(prom_unit) - 1, jn = sizeof(json_unit) - 1;
	char *name = name_64k();
	struct strbuf p, j;

	(void)state;
	sb_init(&p);
	sb_init(&j);
	sb_prom_label(&p, name, NAME_64K);
	sb_json_string(&j, name, NAME_64K);
	assert_false(p.oom);
	assert_false(j.oom);
	assert_int_equal(p.len, units * pn);
	assert_int_equal(j.len, units * jn + 2);
	for (size_t u = 0; u < units; u++) {
		assert_memory_equal(p.buf + u * pn, prom_unit, pn);
		assert_memory_equal(j.buf + 1 + u * jn, json_unit, jn);
	}
	assert_int_equal(fuzz_utf8_bad_at((const unsigned char *)p.buf, p.len), p.len);
	assert_true(fuzz_json_valid(j.buf, j.len));
	sb_free(&p);
	sb_free(&j);
	free(name);
}

/* ---- through the wire, the model and the exports ---- */

static void send(struct fixture *f, const char *host, size_t host_len, const char *job, size_t job_len,
		 const char *dev, size_t dev_len, const char *kernel, size_t kernel_len)
{
	struct mfu_record r = {.type = MFU_REC_HELLO};

	r.u.hello = (struct mfu_rec_hello){
		.time_ns = T0, .pid = 7, .rank = 0, .local_rank = 0, .world_size = 1, .host = host,
		.host_len = (uint32_t)host_len, .job = job, .job_len = (uint32_t)job_len, .producer = host,
		.producer_len = (uint32_t)host_len, .has_device = 1};
	r.u.hello.device = (struct mfu_device_info){.index = 0, .sm_count = 132, .name = dev,
						    .name_len = (uint32_t)dev_len};
	assert_int_equal(mfu_enc_put(&f->enc, &r), 0);
	memset(&r, 0, sizeof(r));
	r.type = MFU_REC_STRING;
	r.u.string = (struct mfu_rec_string){.id = 1, .text = kernel, .len = (uint32_t)kernel_len};
	assert_int_equal(mfu_enc_put(&f->enc, &r), 0);
	memset(&r, 0, sizeof(r));
	r.type = MFU_REC_KERNEL;
	r.u.kernel = (struct mfu_rec_kernel){.start_ns = T0 + S, .end_ns = T0 + 2 * S, .name_id = 1,
					      .flags = MFU_CLASS_BF16, .flops = 1000000};
	assert_int_equal(mfu_enc_put(&f->enc, &r), 0);
	assert_int_equal(send_frame(f, 0), 0);
}

/* Undoes Prometheus label escaping of v[0..n) into out; returns its length. */
static size_t prom_unescape(const char *v, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\\') {
			i++;
			out[o++] = v[i] == 'n' ? '\n' : v[i];
		} else {
			out[o++] = v[i];
		}
	}
	return o;
}

/* The raw value of label key= on the first line starting with metric{. */
static size_t prom_label(const struct strbuf *sb, const char *metric, const char *key, char *out)
{
	char start[128];
	snprintf(start, sizeof(start), "\n%s{", metric);
	const char *line = strstr(sb->buf, start);
	assert_non_null(line);
	line++;
	const char *eol = strchr(line, '\n');
	char pat[64];
	snprintf(pat, sizeof(pat), "%s=\"", key);
	const char *p = line + strlen(metric) + 1;
	/* walk the label set so that text inside a value is never taken for a key */
	while (p < eol && *p != '}') {
		const char *eq = strchr(p, '=');
		int match = !strncmp(p, pat, strlen(pat));
		const char *v = eq + 2, *q = v;
		while (*q != '"') {
			assert_true(q < eol);
			q += *q == '\\' ? 2 : 1;
		}
		if (match)
			return prom_unescape(v, (size_t)(q - v), out);
		p = q + 1;
		if (*p == ',')
			p++;
	}
	fail_msg("label %s not found on %s", key, metric);
	return 0;
}

/* Decodes the JSON string after "key": (the first one); \u escapes below
 * 0x80 only, which is all the exporter writes. */
static size_t json_field(const struct strbuf *sb, const char *key, char *out)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = strstr(sb->buf, pat);
	size_t o = 0;

	assert_non_null(p);
	for (p += strlen(pat); *p != '"'; p++) {
		if (*p != '\\') {
			out[o++] = *p;
			continue;
		}
		switch (*++p) {
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'u': out[o++] = (char)strtol((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16); p += 4; break;
		default: out[o++] = *p; break;
		}
	}
	return o;
}

static void check_exports_well_formed(const struct agg *a, struct strbuf *prom, struct strbuf *json)
{
	struct export_extra x = {.bpf_reason = "not built"};
	struct strbuf top;
	unsigned line;
	const char *why;

	export_prometheus(a, 0, &x, prom);
	why = fuzz_prom_check(prom->buf, prom->len, &line);
	if (why)
		fail_msg("/metrics line %u: %s", line, why);
	export_json_summary(a, 0, json);
	assert_true(fuzz_json_valid(json->buf, json->len));
	sb_init(&top);
	export_top_table(a, 0, &top);
	assert_int_equal(fuzz_utf8_bad_at((const unsigned char *)top.buf, top.len), top.len);
	for (size_t i = 0; i < top.len; i++)
		assert_true((unsigned char)top.buf[i] >= 0x20 || top.buf[i] == '\n');
	sb_free(&top);
}

static void test_hostile_names_survive_every_export(void **state)
{
	struct fixture *f = *state;
	static const char host[] = "n\"o\\d\ne\x1b[2J\xff";
	static const char job[] = "job\"} 1\nfake{x=\"\xc0\xaf";
	static const char dev[] = "NVIDIA \"H100\"\r\n\xed\xa0\x80";
	static const char kernel[] = "void k<\"\\\n\xff>";
	struct strbuf prom, json;
	char got[512];
	size_t n;

	send(f, host, sizeof(host) - 1, job, sizeof(job) - 1, dev, sizeof(dev) - 1, kernel, sizeof(kernel) - 1);
	sb_init(&prom);
	sb_init(&json);
	check_exports_well_formed(f->agg, &prom, &json);

	/* A scraper reads back what was sent, invalid UTF-8 as U+FFFD. */
	n = prom_label(&prom, "mfu_source_up", "host", got);
	assert_int_equal(n, sizeof("n\"o\\d\ne\x1b[2J" FFFD) - 1);
	assert_memory_equal(got, "n\"o\\d\ne\x1b[2J" FFFD, n);
	n = prom_label(&prom, "mfu_source_up", "job", got);
	assert_memory_equal(got, "job\"} 1\nfake{x=\"" FFFD FFFD, n);
	n = prom_label(&prom, "mfu_device_info", "name", got);
	assert_memory_equal(got, "NVIDIA \"H100\"\r\n" FFFD FFFD FFFD, n);
	/* the forged sample did not become one */
	assert_null(strstr(prom.buf, "\nfake{"));

	n = json_field(&json, "host", got);
	assert_memory_equal(got, "n\"o\\d\ne\x1b[2J" FFFD, n);
	n = json_field(&json, "job", got);
	assert_memory_equal(got, "job\"} 1\nfake{x=\"" FFFD FFFD, n);
	n = json_field(&json, "name", got);
	assert_memory_equal(got, "NVIDIA \"H100\"\r\n" FFFD FFFD FFFD, n);

	/* The kernel name is kept byte for byte for whoever formats it. */
	uint32_t len;
	const char *k = agg_source_string(ingest_source(f->in), 1, &len);
	assert_int_equal(len, sizeof(kernel) - 1);
	assert_memory_equal(k, kernel, len);
	sb_free(&prom);
	sb_free(&json);
}

static void test_hello_text_past_the_limit_is_refused(void **state)
{
	struct fixture *f = *state;
	char *name = name_64k();
	struct mfu_record r = {.type = MFU_REC_HELLO};

	r.u.hello = (struct mfu_rec_hello){.time_ns = T0, .pid = 7, .host = name,
					   .host_len = INGEST_HELLO_TEXT_MAX + 1, .producer = "p", .producer_len = 1};
	assert_int_equal(mfu_enc_put(&f->enc, &r), 0);
	assert_int_equal(send_frame(f, 0), -INGEST_E_HELLO_SIZE);
	assert_null(ingest_source(f->in));
	assert_int_equal(f->agg->nsrc, 0);
	free(name);
}

static void test_64k_names_are_bounded_and_stay_valid(void **state)
{
	struct fixture *f = *state;
	char *name = name_64k();
	/* é repeated: the 255-byte cut of the model's name fields falls inside one */
	char *e_acute = malloc(NAME_64K);
	struct strbuf prom, json;
	char got[1024];
	size_t n;

	assert_non_null(e_acute);
	for (size_t i = 0; i < NAME_64K; i += 2)
		memcpy(e_acute + i, "\xc3\xa9", 2);
	/* Hello texts are refused past INGEST_HELLO_TEXT_MAX (a 64 KiB host is
	 * an oversized hello, test_hello_text_past_the_limit_is_refused), so
	 * they are as long as allowed, still far past the model's cut. */
	send(f, e_acute, INGEST_HELLO_TEXT_MAX, name, INGEST_HELLO_TEXT_MAX, name, INGEST_HELLO_TEXT_MAX, name,
	     NAME_64K);
	sb_init(&prom);
	sb_init(&json);
	check_exports_well_formed(f->agg, &prom, &json);

	/* Host, job, producer and device names are cut to AGG_NAME_MAX - 1
	 * bytes; a character cut in two becomes U+FFFD, never a broken byte. */
	n = prom_label(&prom, "mfu_source_up", "host", got);
	assert_int_equal(n, 127 * 2 + 3);
	for (size_t i = 0; i < 127; i++)
		assert_memory_equal(got + 2 * i, "\xc3\xa9", 2);
	assert_memory_equal(got + 254, FFFD, 3);
	n = json_field(&json, "host", got);
	assert_int_equal(n, 127 * 2 + 3);
	assert_memory_equal(got + 254, FFFD, 3);
	/* The job's NUL (byte 6 of the unit) ends it, as in every C string here. */
	n = json_field(&json, "job", got);
	assert_int_equal(n, 3 + 3 + 2);
	assert_memory_equal(got, "\"\\\n" FFFD "\xc3\xa9", n);

	/* A 64 KiB kernel name is kept whole up to its first NUL. */
	uint32_t len;
	const char *k = agg_source_string(ingest_source(f->in), 1, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(k, name, 6);
	sb_free(&prom);
	sb_free(&json);
	free(name);
	free(e_acute);
}

static void test_64k_kernel_name_without_nul_is_kept_whole(void **state)
{
	struct fixture *f = *state;
	char *name = name_64k();
	struct strbuf prom, json;

	for (size_t i = 6; i < NAME_64K; i += sizeof(unit_in))
		name[i] = '\x01'; /* no NUL: the whole name is stored */
	send(f, "h", 1, "j", 1, "NVIDIA H100 80GB HBM3", 21, name, NAME_64K);
	uint32_t len;
	const char *k = agg_source_string(ingest_source(f->in), 1, &len);
	assert_int_equal(len, NAME_64K);
	assert_memory_equal(k, name, NAME_64K);
	sb_init(&prom);
	sb_init(&json);
	check_exports_well_formed(f->agg, &prom, &json);
	sb_free(&prom);
	sb_free(&json);
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prom_label_escapes_hostile_names),
		cmocka_unit_test(test_json_string_escapes_hostile_names),
		cmocka_unit_test(test_64k_hostile_name_escapes_unit_by_unit),
		cmocka_unit_test_setup_teardown(test_hostile_names_survive_every_export, setup, teardown),
		cmocka_unit_test_setup_teardown(test_64k_names_are_bounded_and_stay_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_text_past_the_limit_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_64k_kernel_name_without_nul_is_kept_whole, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
