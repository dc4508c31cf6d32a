/* SPDX-License-Identifier: MIT */
/*
 * Ingest and model rules against hostile or broken producers: the stream
 * must start with a hello, long intervals cannot buy unbounded work,
 * implausible timestamps are dropped and counted, frame sequence gaps are
 * counted only forward, interned strings stay within their budget, and a
 * producer that hangs up without its goodbye is shown as cut off.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agg.h"
#include "export.h"
#include "figures.h"
#include "ingest.h"
#include "ingest_fixture.h"
#include "strbuf.h"

#define S UINT64_C(1000000000)
#define T0 (UINT64_C(1700000000) * S)

static void put(struct fixture *f, const struct mfu_record *r)
{
	assert_int_equal(mfu_enc_put(&f->enc, r), 0);
}

static void put_hello(struct fixture *f)
{
	struct mfu_record r = {.type = MFU_REC_HELLO};
	r.u.hello.time_ns = T0;
	r.u.hello.pid = 7;
	r.u.hello.rank = -1;
	r.u.hello.local_rank = -1;
	put(f, &r);
}

static void put_kernel(struct fixture *f, uint64_t start, uint64_t end)
{
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	r.u.kernel.start_ns = start;
	r.u.kernel.end_ns = end;
	r.u.kernel.flags = MFU_CLASS_BF16;
	r.u.kernel.flops = 1000;
	put(f, &r);
}

static void test_stream_must_start_with_hello(void **state)
{
	struct fixture *f = *state;
	put_kernel(f, T0, T0 + 10);
	assert_int_equal(send_frame(f, 0), -INGEST_E_NO_HELLO);
}

static void test_long_intervals_cannot_buy_unbounded_work(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	assert_int_equal(send_frame(f, 0), 0);
	/* 102.4 s kernels touch 1024 buckets per field: a few thousand of them
	 * pass the per-frame limit long before the frame ends */
	for (int i = 0; i < 20000; i++)
		put_kernel(f, T0 + (uint64_t)i, T0 + (uint64_t)i + 1024 * UINT64_C(100000000));
	assert_int_equal(send_frame(f, 1), -INGEST_E_SPANS);
}

static void test_ordinary_frames_stay_far_below_the_work_limit(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	/* 200k kernels of 5 us, some straddling bucket edges */
	for (uint64_t i = 0; i < 200000; i++)
		put_kernel(f, T0 + i * 7000, T0 + i * 7000 + 5000);
	assert_int_equal(send_frame(f, 0), 0);
	struct agg_source *s = ingest_source(f->in);
	assert_non_null(s);
	assert_true(s->span_work < INGEST_SPAN_WORK_MAX / 100);
	assert_int_equal(s->dev[0]->tot.kernels, 200000);
}

static void test_implausible_timestamps_are_dropped_and_counted(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	put_kernel(f, 0, 5000);                                /* a zero start from a clock glitch */
	put_kernel(f, T0 + 500 * UINT64_C(86400) * S, T0 + 500 * UINT64_C(86400) * S + 1); /* 500 days later */
	put_kernel(f, T0 + 1000, T0 + 2000);                    /* fine */
	assert_int_equal(send_frame(f, 0), 0);
	struct agg_source *s = ingest_source(f->in);
	assert_int_equal(s->bad_time, 2);
	assert_int_equal(s->dev[0]->tot.kernels, 1);
	assert_int_equal(s->dev[0]->tot.busy_ns, 1000);
	assert_true(s->max_ns == T0 + 2000);
}

static void test_sequence_gaps_count_forward_jumps_only(void **state)
{
	struct fixture *f = *state;
	static const uint32_t seqs[] = {5, 6, 9, 7, 10};
	put_hello(f);
	assert_int_equal(send_frame(f, 4), 0);
	for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		put_kernel(f, T0 + i, T0 + i + 1);
		assert_int_equal(send_frame(f, seqs[i]), 0);
	}
	struct agg_source *s = ingest_source(f->in);
	assert_int_equal(s->seq_gaps, 2); /* 7 and 8 missing after 6; 7 late, not lost again */
	assert_int_equal(s->frames, 6);
	/* the first frame (the hello's) is outside the sequence; a number
	 * below the next expected is a frame sent again: skipped */
	assert_int_equal(s->dup_frames, 1);
	assert_int_equal(s->dev[0]->tot.kernels, 4);
}

static void test_replayed_frames_on_a_new_connection_count_once(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	assert_int_equal(send_frame(f, 0), 0);
	for (uint32_t seq = 0; seq < 5; seq++) {
		put_kernel(f, T0 + seq, T0 + seq + 1);
		assert_int_equal(send_frame(f, seq), 0);
	}
	int have;
	uint32_t next;
	assert_int_equal(ingest_ack(f->in, &have, &next), 0);
	assert_true(have);
	assert_int_equal(next, 5);
	/* the producer reconnects: its hello finds the source, and frames 3..6
	 * come (3 and 4 again, acknowledged or not) */
	ingest_free(f->in);
	assert_int_equal(ingest_new(f->agg, f->codec, "test", &f->in), 0);
	assert_int_equal(ingest_ack(f->in, &have, &next), -ENOENT); /* before the hello */
	put_hello(f);
	assert_int_equal(send_frame(f, 3), 0); /* the preamble, numbered 3: not a duplicate */
	for (uint32_t seq = 3; seq < 7; seq++) {
		put_kernel(f, T0 + seq, T0 + seq + 1);
		assert_int_equal(send_frame(f, seq), 0);
	}
	struct agg_source *s = ingest_source(f->in);
	assert_int_equal(f->agg->nsrc, 1);
	assert_int_equal(s->dev[0]->tot.kernels, 7);
	assert_int_equal(s->seq_gaps, 0);
	assert_int_equal(s->dup_frames, 2);
	assert_int_equal(ingest_ack(f->in, &have, &next), 0);
	assert_int_equal(next, 7);
}

static void test_a_source_that_did_much_work_can_reconnect(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	put_kernel(f, T0, T0 + 10);
	assert_int_equal(send_frame(f, 0), 0);
	/* a source that has run for hours: the bound is per frame, and what it
	 * did over earlier connections is not the reconnect's first frame's */
	ingest_source(f->in)->span_work = 3 * (uint64_t)INGEST_SPAN_WORK_MAX;
	ingest_free(f->in);
	assert_int_equal(ingest_new(f->agg, f->codec, "test", &f->in), 0);
	put_hello(f);
	put_kernel(f, T0 + 20, T0 + 30);
	assert_int_equal(send_frame(f, 1), 0);
	assert_int_equal(f->agg->nsrc, 1);
	assert_int_equal(ingest_source(f->in)->dev[0]->tot.kernels, 2);
	/* and the bound still holds for that first frame */
	ingest_free(f->in);
	assert_int_equal(ingest_new(f->agg, f->codec, "test", &f->in), 0);
	put_hello(f);
	for (int i = 0; i < 20000; i++)
		put_kernel(f, T0 + (uint64_t)i, T0 + (uint64_t)i + 1024 * UINT64_C(100000000));
	assert_int_equal(send_frame(f, 2), -INGEST_E_SPANS);
}

static int contains(struct strbuf *sb, const char *needle)
{
	return sb->buf && strstr(sb->buf, needle) != NULL;
}

/* What the summary and /metrics say of the one source. */
static void assert_cut_off(struct fixture *f, int want)
{
	struct strbuf sb;
	struct export_extra x = {0};

	sb_init(&sb);
	export_json_summary(f->agg, 0, &sb);
	assert_true(contains(&sb, want ? "\"sources_cut_off\":1," : "\"sources_cut_off\":0,"));
	assert_true(contains(&sb, want ? "\"goodbye\":false" : "\"goodbye\":true"));
	sb_reset(&sb);
	export_prometheus(f->agg, 0, &x, &sb);
	assert_true(contains(&sb, "\nmfu_source_cut_off{"));
	const char *line = strstr(sb.buf, "\nmfu_source_cut_off{");
	const char *eol = strchr(line + 1, '\n');
	assert_non_null(eol);
	assert_int_equal(eol[-1], want ? '1' : '0');
	sb_reset(&sb);
	export_summary_table(f->agg, 0, &sb);
	assert_int_equal(contains(&sb, "hung up without a goodbye"), want);
	sb_free(&sb);
}

static void test_a_producer_gone_without_its_goodbye_is_cut_off(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	put_kernel(f, T0 + 1, T0 + 2);
	assert_int_equal(send_frame(f, 0), 0);
	/* still connected: not cut off, whatever comes next */
	assert_false(agg_source_cut_off(ingest_source(f->in)));
	ingest_free(f->in);
	assert_cut_off(f, 1);
	/* it comes back (a collector restart in between, say) and ends well */
	assert_int_equal(ingest_new(f->agg, f->codec, "test", &f->in), 0);
	put_hello(f);
	assert_int_equal(send_frame(f, 1), 0);
	struct mfu_record bye = {.type = MFU_REC_GOODBYE};
	bye.u.goodbye.time_ns = T0 + 3;
	put(f, &bye);
	assert_int_equal(send_frame(f, 1), 0);
	ingest_free(f->in);
	f->in = NULL;
	assert_cut_off(f, 0);
	assert_int_equal(ingest_new(f->agg, f->codec, "test", &f->in), 0); /* for teardown */
}

static void test_the_span_covers_kernels_that_end_after_the_goodbye(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	put_kernel(f, T0 + 1 * S, T0 + 3 * S);
	struct mfu_record bye = {.type = MFU_REC_GOODBYE};
	bye.u.goodbye.time_ns = T0 + 2 * S;
	put(f, &bye);
	assert_int_equal(send_frame(f, 0), 0);
	struct agg_source *src = ingest_source(f->in);
	uint64_t first, end;
	agg_source_span(f->agg, src, 0, &first, &end);
	assert_int_equal(first, T0);
	assert_int_equal(end, T0 + 3 * S);
	struct figures fig;
	figures_device(f->agg, src->dev[0], 0, 0, &fig);
	assert_true(fig.busy_ratio > 0.66 && fig.busy_ratio < 0.67); /* 2 s of 3, never above 1 */
}

static void put_offcpu(struct fixture *f, uint64_t start)
{
	struct mfu_record r = {.type = MFU_REC_OFFCPU};
	r.u.offcpu.start_ns = start;
	r.u.offcpu.end_ns = start + 1000;
	r.u.offcpu.tid = 8;
	r.u.offcpu.state = MFU_OFFCPU_SLEEPING;
	put(f, &r);
}

static void test_collectors_offcpu_frames_are_outside_the_sequence(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	assert_int_equal(send_frame(f, 0), 0);
	for (uint32_t seq = 0; seq < 2; seq++) {
		put_kernel(f, T0 + seq, T0 + seq + 1);
		assert_int_equal(send_frame(f, seq), 0);
	}
	struct agg_source *s = ingest_source(f->in);
	uint64_t records = s->records;
	/* mfud's frames in an archive: the producer's latest number, or any */
	put_offcpu(f, T0 + 10);
	put_offcpu(f, T0 + 20);
	assert_int_equal(send_frame(f, 1), 0);
	put_offcpu(f, T0 + 30);
	assert_int_equal(send_frame(f, 1000), 0);
	assert_int_equal(s->records, records + 3); /* applied, not skipped as repeats */
	assert_int_equal(s->dup_frames, 0);
	assert_int_equal(s->seq_gaps, 0);
	/* and the producer's sequence goes on where it was */
	put_kernel(f, T0 + 2, T0 + 3);
	assert_int_equal(send_frame(f, 2), 0);
	assert_int_equal(s->dev[0]->tot.kernels, 3);
	assert_int_equal(s->seq_gaps, 0);
	int have;
	uint32_t next;
	assert_int_equal(ingest_ack(f->in, &have, &next), 0);
	assert_int_equal(next, 3);
	/* a producer frame numbered as a repeat is still skipped */
	put_kernel(f, T0 + 4, T0 + 5);
	assert_int_equal(send_frame(f, 2), 0);
	assert_int_equal(s->dup_frames, 1);
	assert_int_equal(s->dev[0]->tot.kernels, 3);
}

static void test_interned_strings_stay_within_their_budget(void **state)
{
	struct fixture *f = *state;
	put_hello(f);
	assert_int_equal(send_frame(f, 0), 0);
	int rc = 0;
	uint32_t seq = 1;
	/* a million empty names would cost far more than the text they carry */
	for (uint64_t id = 1; id <= MFU_STRING_ID_MAX && !rc; id++) {
		struct mfu_record r = {.type = MFU_REC_STRING};
		r.u.string.id = id;
		r.u.string.text = "";
		if (mfu_enc_put(&f->enc, &r) == -MFU_WIRE_E_NOMEM) {
			rc = send_frame(f, seq++);
			assert_int_equal(mfu_enc_put(&f->enc, &r), 0);
		}
	}
	if (!rc)
		rc = send_frame(f, seq);
	assert_int_equal(rc, -MFU_WIRE_E_OVERSIZE);
	assert_true(ingest_source(f->in)->string_bytes <= AGG_STRING_BYTES_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stream_must_start_with_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_intervals_cannot_buy_unbounded_work, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ordinary_frames_stay_far_below_the_work_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_implausible_timestamps_are_dropped_and_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequence_gaps_count_forward_jumps_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replayed_frames_on_a_new_connection_count_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_source_that_did_much_work_can_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_collectors_offcpu_frames_are_outside_the_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interned_strings_stay_within_their_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_producer_gone_without_its_goodbye_is_cut_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_span_covers_kernels_that_end_after_the_goodbye, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
