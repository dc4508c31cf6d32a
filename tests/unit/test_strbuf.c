/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for collector/strbuf.c: growth, the oom latch, Prometheus and
 * JSON escaping (including every class of invalid UTF-8), and number
 * formatting.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strbuf.h"

#define FFFD "\xef\xbf\xbd"

static int sb_setup(void **state)
{
	struct strbuf *sb = malloc(sizeof(*sb));

	if (!sb)
		return -1;
	sb_init(sb);
	*state = sb;
	return 0;
}

static int sb_teardown(void **state)
{
	struct strbuf *sb = *state;

	sb_free(sb);
	free(sb);
	return 0;
}

static void assert_sb(const struct strbuf *sb, const char *want, size_t want_len)
{
	assert_false(sb->oom);
	assert_int_equal(sb->len, want_len);
	assert_non_null(sb->buf);
	assert_memory_equal(sb->buf, want, want_len);
	assert_int_equal(sb->buf[sb->len], '\0');
}

#define ASSERT_SB(sb, lit) assert_sb((sb), (lit), sizeof(lit) - 1)

static void test_append_puts_printf_grow_and_stay_terminated(void **state)
{
	struct strbuf *sb = *state;
	char big[1000];

	assert_null(sb->buf);
	sb_puts(sb, "abc");
	sb_append(sb, "d\0e", 3);
	assert_sb(sb, "abcd\0e", 6);
	sb_printf(sb, "-%d-%s", 42, "x");
	assert_sb(sb, "abcd\0e-42-x", 11);
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	sb_printf(sb, "%s!", big);
	assert_int_equal(sb->len, 11 + 999 + 1);
	assert_int_equal(sb->buf[sb->len - 1], '!');
	assert_int_equal(sb->buf[sb->len], '\0');
	assert_true(sb->cap > sb->len);
}

static void test_reset_keeps_allocation_and_empties(void **state)
{
	struct strbuf *sb = *state;
	char *before;

	sb_puts(sb, "hello");
	before = sb->buf;
	sb_reset(sb);
	assert_int_equal(sb->len, 0);
	assert_ptr_equal(sb->buf, before);
	assert_string_equal(sb->buf, "");
	sb_puts(sb, "x");
	ASSERT_SB(sb, "x");
}

static void test_impossible_size_sets_oom_and_ignores_later_appends(void **state)
{
	struct strbuf *sb = *state;

	sb_puts(sb, "ok");
	sb_append(sb, "x", SIZE_MAX);
	assert_true(sb->oom);
	sb_puts(sb, "more");
	sb_printf(sb, "%d", 5);
	assert_int_equal(sb->len, 2);
	assert_string_equal(sb->buf, "ok");
	sb_reset(sb);
	assert_false(sb->oom);
}

static void test_free_twice_is_harmless(void **state)
{
	struct strbuf *sb = *state;

	sb_puts(sb, "x");
	sb_free(sb);
	assert_null(sb->buf);
	assert_int_equal(sb->len, 0);
	sb_free(sb);
}

static void test_prom_label_escapes_backslash_quote_newline(void **state)
{
	struct strbuf *sb = *state;
	const char in[] = "a\"b\\c\nd\te";

	sb_prom_label(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "a\\\"b\\\\c\\nd\te");
}

static void test_prom_label_replaces_invalid_utf8(void **state)
{
	struct strbuf *sb = *state;
	const char in[] = "ok\xff" "x\xc3" "\xa9\xc3";

	sb_prom_label(sb, in, sizeof(in) - 1);
	/* \xff is never valid; \xc3\xa9 is é; a trailing lone lead is truncated. */
	ASSERT_SB(sb, "ok" FFFD "x\xc3\xa9" FFFD);
}

static void test_prom_label_keeps_valid_multibyte(void **state)
{
	struct strbuf *sb = *state;
	const char in[] = "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e";

	sb_prom_label(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e");
}

static void test_json_string_escapes_quotes_backslash_and_controls(void **state)
{
	struct strbuf *sb = *state;
	const char in[] = "q\"b\\n\nt\tr\rb\bf\fz\x01\x1f\x7f";

	sb_json_string(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "\"q\\\"b\\\\n\\nt\\tr\\rb\\bf\\fz\\u0001\\u001f\x7f\"");
}

static void test_json_string_embedded_nul_becomes_u0000(void **state)
{
	struct strbuf *sb = *state;

	sb_json_string(sb, "a\0b", 3);
	ASSERT_SB(sb, "\"a\\u0000b\"");
}

static void test_json_string_empty(void **state)
{
	struct strbuf *sb = *state;

	sb_json_string(sb, "", 0);
	ASSERT_SB(sb, "\"\"");
}

static void test_json_string_rejects_overlongs(void **state)
{
	struct strbuf *sb = *state;
	/* C0 AF is an overlong '/', E0 80 AF too, F0 80 80 AF too. */
	const char in[] = "\xc0\xaf|\xe0\x80\xaf|\xf0\x80\x80\xaf";

	sb_json_string(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "\"" FFFD FFFD "|" FFFD FFFD FFFD "|" FFFD FFFD FFFD FFFD "\"");
}

static void test_json_string_rejects_surrogates_and_beyond_max(void **state)
{
	struct strbuf *sb = *state;
	/* ED A0 80 = U+D800; F4 90 80 80 = U+110000; F5 is never a lead. */
	const char in[] = "\xed\xa0\x80|\xf4\x90\x80\x80|\xf5\x80";

	sb_json_string(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "\"" FFFD FFFD FFFD "|" FFFD FFFD FFFD FFFD "|" FFFD FFFD "\"");
}

static void test_json_string_accepts_boundaries(void **state)
{
	struct strbuf *sb = *state;
	/* U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF */
	const char in[] = "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";

	sb_json_string(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"");
}

static void test_json_string_truncated_sequence_is_one_replacement(void **state)
{
	struct strbuf *sb = *state;
	/* A 3-byte sequence cut after 2 bytes, followed by ASCII, then cut at the end. */
	const char in[] = "\xe2\x82" "A\xf0\x9f\x98";

	sb_json_string(sb, in, sizeof(in) - 1);
	ASSERT_SB(sb, "\"" FFFD "A" FFFD "\"");
}

static void test_json_string_64k(void **state)
{
	struct strbuf *sb = *state;
	size_t n = 64 * 1024, i;
	char *in = malloc(n);

	assert_non_null(in);
	for (i = 0; i < n; i++)
		in[i] = (i % 2) ? '"' : 'x';
	sb_json_string(sb, in, n);
	assert_false(sb->oom);
	/* n/2 'x' + n/2 '\"' (2 bytes each) + 2 quotes */
	assert_int_equal(sb->len, n / 2 + n + 2);
	assert_memory_equal(sb->buf, "\"x\\\"x\\\"", 7);
	assert_memory_equal(sb->buf + sb->len - 3, "\\\"\"", 3);
	assert_int_equal(strlen(sb->buf), sb->len);
	free(in);
}

static void test_prom_label_64k(void **state)
{
	struct strbuf *sb = *state;
	size_t n = 64 * 1024;
	char *in = malloc(n);

	assert_non_null(in);
	memset(in, 'a', n);
	in[n - 1] = '\n';
	sb_prom_label(sb, in, n);
	assert_int_equal(sb->len, n + 1);
	assert_memory_equal(sb->buf + n - 1, "\\n", 2);
	free(in);
}

static void test_json_double_shortest_round_trip(void **state)
{
	struct strbuf *sb = *state;
	double third = 1.0 / 3.0;

	sb_json_double(sb, 0.1);
	sb_puts(sb, " ");
	sb_json_double(sb, 42.0);
	sb_puts(sb, " ");
	sb_json_double(sb, -0.0);
	sb_puts(sb, " ");
	sb_json_double(sb, 1e300);
	sb_puts(sb, " ");
	sb_json_double(sb, 5e-324);
	ASSERT_SB(sb, "0.1 42 -0 1e+300 4.94065645841247e-324");
	sb_reset(sb);
	sb_json_double(sb, third);
	assert_true(strtod(sb->buf, NULL) == third);
	assert_int_equal(sb->len, strlen("0.3333333333333333"));
}

static void test_json_double_non_finite_is_null(void **state)
{
	struct strbuf *sb = *state;

	sb_json_double(sb, NAN);
	sb_puts(sb, ",");
	sb_json_double(sb, INFINITY);
	sb_puts(sb, ",");
	sb_json_double(sb, -INFINITY);
	ASSERT_SB(sb, "null,null,null");
}

static void test_prom_double_spells_special_values(void **state)
{
	struct strbuf *sb = *state;

	sb_prom_double(sb, NAN);
	sb_puts(sb, " ");
	sb_prom_double(sb, INFINITY);
	sb_puts(sb, " ");
	sb_prom_double(sb, -INFINITY);
	sb_puts(sb, " ");
	sb_prom_double(sb, 1.5);
	sb_puts(sb, " ");
	sb_prom_double(sb, 123456789012.0);
	ASSERT_SB(sb, "NaN +Inf -Inf 1.5 123456789012");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_puts_printf_grow_and_stay_terminated, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_reset_keeps_allocation_and_empties, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_impossible_size_sets_oom_and_ignores_later_appends, sb_setup,
						sb_teardown),
		cmocka_unit_test_setup_teardown(test_free_twice_is_harmless, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_prom_label_escapes_backslash_quote_newline, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_prom_label_replaces_invalid_utf8, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_prom_label_keeps_valid_multibyte, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_escapes_quotes_backslash_and_controls, sb_setup,
						sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_embedded_nul_becomes_u0000, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_empty, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_rejects_overlongs, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_rejects_surrogates_and_beyond_max, sb_setup,
						sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_accepts_boundaries, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_truncated_sequence_is_one_replacement, sb_setup,
						sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_string_64k, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_prom_label_64k, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_double_shortest_round_trip, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_json_double_non_finite_is_null, sb_setup, sb_teardown),
		cmocka_unit_test_setup_teardown(test_prom_double_spells_special_values, sb_setup, sb_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
