/* SPDX-License-Identifier: MIT */
/*
 * Peak table tests: every device name CUDA reports for a supported GPU finds
 * the right model and its dense rates, the look-alike names (L4 / L40S, NVL /
 * SXM, 40GB / 80GB, MIG slices) never find the wrong one, unknown names find
 * nothing, and the --peak-tflops parser accepts what doc/metrics.md promises
 * and refuses everything else with a reason.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "peak.h"

static const struct peak_entry *lookup(const char *name, uint32_t sm)
{
	return peak_lookup(name, strlen(name), sm);
}

static void assert_rate(double got, double want)
{
	if (fabs(got - want) > 1e-9)
		fail_msg("rate %.4f, want %.4f", got, want);
}

struct name_case {
	const char *name;
	uint32_t sm; /* the product's full SM count */
	const char *model;
	double bf16, tf32, fp8;
};

/* Every name the collector must place, with its model and dense rates. */
static const struct name_case names[] = {
	{ "NVIDIA H100 80GB HBM3", 132, "NVIDIA H100 SXM5", 989.4, 494.7, 1978.9 },
	{ "NVIDIA H100 PCIe", 114, "NVIDIA H100 PCIe", 756.5, 378, 1513 },
	{ "NVIDIA H100 NVL", 132, "NVIDIA H100 NVL", 835.5, 417.5, 1670.5 },
	{ "NVIDIA H200", 132, "NVIDIA H200 SXM", 989.4, 494.7, 1978.9 },
	{ "NVIDIA H200 NVL", 132, "NVIDIA H200 NVL", 835.5, 417.5, 1670.5 },
	{ "NVIDIA A100-SXM4-80GB", 108, "NVIDIA A100 SXM4 80GB", 312, 156, 0 },
	{ "NVIDIA A100-SXM4-40GB", 108, "NVIDIA A100 SXM4 40GB", 312, 156, 0 },
	{ "NVIDIA A100-PCIE-40GB", 108, "NVIDIA A100 PCIe 40GB", 312, 156, 0 },
	{ "NVIDIA A100 80GB PCIe", 108, "NVIDIA A100 PCIe 80GB", 312, 156, 0 },
	{ "NVIDIA B200", 148, "NVIDIA B200", 2250, 1125, 4500 },
	{ "NVIDIA L40S", 142, "NVIDIA L40S", 362.05, 183, 733 },
	{ "NVIDIA L4", 58, "NVIDIA L4", 121, 60, 242.5 },
	{ "NVIDIA GH200 480GB", 132, "NVIDIA GH200 Grace Hopper Superchip (GPU)", 990, 494, 1979 },
	{ "NVIDIA GH200 144G HBM3e", 132, "NVIDIA GH200 Grace Hopper Superchip (GPU)", 990, 494, 1979 },
	/* What drivers reported before the "NVIDIA " prefix. */
	{ "A100-SXM4-40GB", 108, "NVIDIA A100 SXM4 40GB", 312, 156, 0 },
	{ "A100-PCIE-40GB", 108, "NVIDIA A100 PCIe 40GB", 312, 156, 0 },
};

static void check_name(const struct name_case *c, uint32_t sm)
{
	const struct peak_entry *e = lookup(c->name, sm);

	if (!e)
		fail_msg("'%s' (sm %u) found nothing", c->name, sm);
	if (strcmp(e->model, c->model) != 0)
		fail_msg("'%s' found '%s', want '%s'", c->name, e->model, c->model);
	assert_rate(e->tflops[MFU_CLASS_BF16], c->bf16);
	assert_rate(e->tflops[MFU_CLASS_TF32], c->tf32);
	assert_rate(e->tflops[MFU_CLASS_FP8], c->fp8);
}

static void test_lookup_maps_every_cuda_name_to_its_model_and_rates(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		check_name(&names[i], 0);          /* SM count unknown */
		check_name(&names[i], names[i].sm); /* SM count agrees */
	}
}

static void test_lookup_keeps_l4_and_l40s_apart(void **state)
{
	(void)state;
	const struct peak_entry *l4 = lookup("NVIDIA L4", 0);
	const struct peak_entry *l40s = lookup("NVIDIA L40S", 0);

	assert_non_null(l4);
	assert_non_null(l40s);
	assert_ptr_not_equal(l4, l40s);
	assert_string_equal(l4->model, "NVIDIA L4");
	assert_string_equal(l40s->model, "NVIDIA L40S");
	assert_rate(l4->tflops[MFU_CLASS_BF16], 121);
	assert_rate(l40s->tflops[MFU_CLASS_BF16], 362.05);
	/* Neighbours that share a prefix with either are not in the table. */
	assert_null(lookup("NVIDIA L40", 0));
	assert_null(lookup("NVIDIA L40S-48GB", 0));
	assert_null(lookup("NVIDIA L4S", 0));
	assert_null(lookup("NVIDIA L20", 0));
	/* L40S's SM count does not make "NVIDIA L4" the L40S, nor the reverse. */
	assert_null(lookup("NVIDIA L40S", 58));
}

static void test_lookup_keeps_nvl_and_sxm_apart(void **state)
{
	(void)state;
	const struct peak_entry *h100 = lookup("NVIDIA H100 80GB HBM3", 0);
	const struct peak_entry *h100nvl = lookup("NVIDIA H100 NVL", 0);
	const struct peak_entry *h100pcie = lookup("NVIDIA H100 PCIe", 0);
	const struct peak_entry *h200 = lookup("NVIDIA H200", 0);
	const struct peak_entry *h200nvl = lookup("NVIDIA H200 NVL", 0);

	assert_non_null(h100);
	assert_non_null(h100nvl);
	assert_non_null(h100pcie);
	assert_non_null(h200);
	assert_non_null(h200nvl);
	assert_ptr_not_equal(h100, h100nvl);
	assert_ptr_not_equal(h100, h100pcie);
	assert_ptr_not_equal(h100nvl, h100pcie);
	assert_ptr_not_equal(h200, h200nvl);
	assert_string_equal(h100nvl->model, "NVIDIA H100 NVL");
	assert_string_equal(h200nvl->model, "NVIDIA H200 NVL");
	assert_rate(h100->tflops[MFU_CLASS_BF16], 989.4);
	assert_rate(h100nvl->tflops[MFU_CLASS_BF16], 835.5);
	assert_rate(h100pcie->tflops[MFU_CLASS_BF16], 756.5);
	assert_rate(h200->tflops[MFU_CLASS_BF16], 989.4);
	assert_rate(h200nvl->tflops[MFU_CLASS_BF16], 835.5);
	/* The PCIe card's 114 SMs rule out every 132-SM name, and the reverse. */
	assert_null(lookup("NVIDIA H100 80GB HBM3", 114));
	assert_null(lookup("NVIDIA H100 NVL", 114));
	assert_null(lookup("NVIDIA H200 NVL", 114));
	assert_null(lookup("NVIDIA H100 PCIe", 132));
}

static void test_lookup_keeps_a100_40gb_and_80gb_apart(void **state)
{
	(void)state;
	const struct peak_entry *sxm40 = lookup("NVIDIA A100-SXM4-40GB", 0);
	const struct peak_entry *sxm80 = lookup("NVIDIA A100-SXM4-80GB", 0);
	const struct peak_entry *pcie40 = lookup("NVIDIA A100-PCIE-40GB", 0);
	const struct peak_entry *pcie80 = lookup("NVIDIA A100 80GB PCIe", 0);

	assert_non_null(sxm40);
	assert_non_null(sxm80);
	assert_non_null(pcie40);
	assert_non_null(pcie80);
	assert_ptr_not_equal(sxm40, sxm80);
	assert_ptr_not_equal(pcie40, pcie80);
	assert_ptr_not_equal(sxm40, pcie40);
	assert_ptr_not_equal(sxm80, pcie80);
	assert_string_equal(sxm40->model, "NVIDIA A100 SXM4 40GB");
	assert_string_equal(sxm80->model, "NVIDIA A100 SXM4 80GB");
	assert_string_equal(pcie40->model, "NVIDIA A100 PCIe 40GB");
	assert_string_equal(pcie80->model, "NVIDIA A100 PCIe 80GB");
	/* A name mixing the two spellings is not a guess at either. */
	assert_null(lookup("NVIDIA A100 40GB PCIe", 0));
	assert_null(lookup("NVIDIA A100-SXM4", 0));
}

static void test_lookup_returns_null_for_unknown_names(void **state)
{
	(void)state;
	static const char *const unknown[] = {
		"NVIDIA GeForce RTX 4090",
		"",
		"   \t ",
		"H100",
		"NVIDIA H100",
		"NVIDIA",
		"NVIDIA H800",
		"NVIDIA GB200",
		"NVIDIA B200 extra",
		"xNVIDIA L4",
		"NVIDIA H100 80GB HBM3e",
	};

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		if (lookup(unknown[i], 0))
			fail_msg("'%s' found '%s'", unknown[i], lookup(unknown[i], 0)->model);
	}
	assert_null(peak_lookup(NULL, 10, 0));
	assert_null(peak_lookup("NVIDIA L4", 0, 0));
}

static void test_lookup_rejects_mig_slices_and_foreign_sm_counts(void **state)
{
	(void)state;
	assert_null(lookup("NVIDIA A100-SXM4-40GB MIG 1g.5gb", 0));
	assert_null(lookup("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 14));
	/* A MIG slice that reports the full name still reports its own SM count. */
	assert_null(lookup("NVIDIA A100-SXM4-40GB", 14));
	assert_null(lookup("NVIDIA H100 80GB HBM3", 16));
	assert_null(lookup("NVIDIA B200", 132));
	assert_non_null(lookup("NVIDIA A100-SXM4-40GB", 108));
}

static void test_lookup_ignores_case_and_whitespace_and_honours_name_len(void **state)
{
	(void)state;
	static const char nul_padded[32] = "NVIDIA L4\0NVIDIA L40S";
	char unterminated[11];
	const struct peak_entry *e;

	e = lookup("nvidia h100 pcie", 0);
	assert_non_null(e);
	assert_string_equal(e->model, "NVIDIA H100 PCIe");
	e = lookup("  NVIDIA  H100\tNVL \n", 0);
	assert_non_null(e);
	assert_string_equal(e->model, "NVIDIA H100 NVL");

	/* cudaDeviceProp.name is a NUL-padded char[256]: the NUL ends the name. */
	e = peak_lookup(nul_padded, sizeof(nul_padded), 0);
	assert_non_null(e);
	assert_string_equal(e->model, "NVIDIA L4");

	/* A wire-format name has a length and no NUL. */
	memcpy(unterminated, "NVIDIA L40S", sizeof(unterminated));
	e = peak_lookup(unterminated, sizeof(unterminated), 0);
	assert_non_null(e);
	assert_string_equal(e->model, "NVIDIA L40S");
	e = peak_lookup(unterminated, 10, 0); /* "NVIDIA L40" */
	assert_null(e);
}

static void test_table_rows_are_dense_cited_and_reachable(void **state)
{
	(void)state;
	size_t n = peak_table_size();
	int reached[64] = { 0 };

	assert_true(n > 0 && n <= 64);
	assert_null(peak_table_at(n));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct peak_entry *e = lookup(names[i].name, 0);

		for (size_t j = 0; j < n; j++)
			if (e == peak_table_at(j))
				reached[j] = 1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct peak_entry *e = peak_table_at(i);

		assert_non_null(e);
		assert_non_null(e->model);
		assert_non_null(e->source);
		assert_true(strlen(e->model) > 0);
		assert_true(strstr(e->source, "NVIDIA") != NULL);
		if (!reached[i])
			fail_msg("row '%s' is reached by no device name", e->model);
		assert_true(e->tflops[MFU_CLASS_NONE] == 0);
		for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
			assert_true(isfinite(e->tflops[c]) && e->tflops[c] >= 0);
		/*
		 * Dense ladders on every chip here: tf32 < fp16 = bf16, fp8 and
		 * int8 about twice bf16, fp32 (CUDA cores) below tf32.  A sparse
		 * figure copied into one class breaks one of these.  The slack is
		 * the L40S datasheet's: BF16 362.05 but FP8 733.
		 */
		assert_true(e->tflops[MFU_CLASS_BF16] > 0);
		assert_rate(e->tflops[MFU_CLASS_FP16], e->tflops[MFU_CLASS_BF16]);
		assert_true(e->tflops[MFU_CLASS_TF32] < e->tflops[MFU_CLASS_BF16]);
		assert_true(e->tflops[MFU_CLASS_FP32] < e->tflops[MFU_CLASS_TF32]);
		if (e->tflops[MFU_CLASS_FP8] > 0)
			assert_true(e->tflops[MFU_CLASS_FP8] <= 2.05 * e->tflops[MFU_CLASS_BF16]);
		if (e->tflops[MFU_CLASS_INT8] > 0)
			assert_true(e->tflops[MFU_CLASS_INT8] <= 2.05 * e->tflops[MFU_CLASS_BF16]);
	}
}

static void test_table_matches_design_note_anchors(void **state)
{
	(void)state;
	const struct peak_entry *h100 = lookup("NVIDIA H100 80GB HBM3", 132);
	const struct peak_entry *h200 = lookup("NVIDIA H200", 132);
	const struct peak_entry *a100 = lookup("NVIDIA A100-SXM4-80GB", 108);

	assert_non_null(h100);
	assert_non_null(h200);
	assert_non_null(a100);
	assert_rate(h100->tflops[MFU_CLASS_BF16], 989.4);
	assert_rate(h100->tflops[MFU_CLASS_FP16], 989.4);
	assert_rate(h100->tflops[MFU_CLASS_TF32], 494.7);
	assert_rate(h100->tflops[MFU_CLASS_FP8], 1978.9);
	assert_rate(h100->tflops[MFU_CLASS_FP32], 66.9);
	assert_rate(h100->tflops[MFU_CLASS_FP64], 66.9);
	assert_rate(lookup("NVIDIA H100 PCIe", 0)->tflops[MFU_CLASS_BF16], 756.5);
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
		assert_rate(h200->tflops[c], h100->tflops[c]);
	assert_rate(a100->tflops[MFU_CLASS_BF16], 312);
	assert_rate(a100->tflops[MFU_CLASS_TF32], 156);
	assert_true(a100->tflops[MFU_CLASS_FP8] == 0); /* Ampere has no FP8: unknown, not invented */
	assert_true(lookup("NVIDIA L4", 0)->tflops[MFU_CLASS_FP64] == 0);
}

static void fill(double v[MFU_CLASS_COUNT], double x)
{
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
		v[c] = x;
}

static void test_override_single_number_applies_to_every_class(void **state)
{
	(void)state;
	double v[MFU_CLASS_COUNT];
	char err[128];

	fill(v, -1);
	assert_int_equal(peak_override_parse("989.4", v, err, sizeof(err)), 0);
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
		assert_rate(v[c], 989.4);
	assert_string_equal(err, "");

	fill(v, -1);
	assert_int_equal(peak_override_parse("  1.9789e3 \n", v, err, sizeof(err)), 0);
	assert_rate(v[MFU_CLASS_FP8], 1978.9);
	assert_int_equal(peak_override_parse("5.", v, NULL, 0), 0);
	assert_rate(v[MFU_CLASS_BF16], 5);
	assert_int_equal(peak_override_parse(".5", v, NULL, 0), 0);
	assert_rate(v[MFU_CLASS_BF16], 0.5);
	assert_int_equal(peak_override_parse("2E+3", v, NULL, 0), 0);
	assert_rate(v[MFU_CLASS_INT8], 2000);
	/* Decimal digits come out exactly as strtod would round them. */
	assert_int_equal(peak_override_parse("756.5", v, NULL, 0), 0);
	assert_true(v[MFU_CLASS_TF32] == 756.5);
	assert_int_equal(peak_override_parse("0.1", v, NULL, 0), 0);
	assert_true(v[MFU_CLASS_TF32] == 0.1);
}

static void test_override_list_sets_named_classes_only(void **state)
{
	(void)state;
	double v[MFU_CLASS_COUNT];
	char err[128];

	fill(v, -1);
	assert_int_equal(peak_override_parse("bf16=989.4,fp8=1979", v, err, sizeof(err)), 0);
	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
		if (c == MFU_CLASS_BF16)
			assert_rate(v[c], 989.4);
		else if (c == MFU_CLASS_FP8)
			assert_rate(v[c], 1979);
		else
			assert_true(v[c] == 0);
	}

	fill(v, -1);
	assert_int_equal(peak_override_parse(" BF16 = 989.4 ,\tFp8=1979 ", v, err, sizeof(err)), 0);
	assert_rate(v[MFU_CLASS_BF16], 989.4);
	assert_rate(v[MFU_CLASS_FP8], 1979);
	assert_true(v[MFU_CLASS_FP16] == 0);

	fill(v, -1);
	assert_int_equal(peak_override_parse("fp64=67,fp32=67,tf32=494.7,fp16=989.4,bf16=989.5,fp8=1978.9,int8=1978.8",
					     v, err, sizeof(err)),
			 0);
	assert_true(v[MFU_CLASS_NONE] == 0);
	assert_rate(v[MFU_CLASS_FP64], 67);
	assert_rate(v[MFU_CLASS_FP32], 67);
	assert_rate(v[MFU_CLASS_TF32], 494.7);
	assert_rate(v[MFU_CLASS_FP16], 989.4);
	assert_rate(v[MFU_CLASS_BF16], 989.5);
	assert_rate(v[MFU_CLASS_FP8], 1978.9);
	assert_rate(v[MFU_CLASS_INT8], 1978.8);
}

static void test_override_rejects_bad_input_with_a_reason(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"   ",
		"-989.4",
		"0",
		"0.000",
		"1e-999",
		"1e999",
		"nan",
		"NaN",
		"inf",
		"-inf",
		"+5",
		"0x10",
		"1e",
		".",
		"989.4x",
		"989.4 x",
		"989.4,bf16=1",
		"bf16=0",
		"bf16=-1",
		"bf16=nan",
		"bf16=inf",
		"bf16=",
		"bf16",
		"=5",
		"fp4=100",
		"none=5",
		"bf16=1,bf16=2",
		"bf16=1,BF16=2",
		"bf16=989.4x",
		"bf16=1 fp8=2",
		"bf16=1,",
		",bf16=1",
		"bf16=1,,fp8=2",
		"bf16==1",
	};
	double v[MFU_CLASS_COUNT];
	char err[160];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fill(v, -1);
		memset(err, 0, sizeof(err));
		if (peak_override_parse(bad[i], v, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		if (err[0] == '\0' || strchr(err, '\n'))
			fail_msg("'%s': reason '%s' is not one line", bad[i], err);
		for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
			if (v[c] != 0)
				fail_msg("'%s': class %u left at %g after an error", bad[i], c, v[c]);
	}
	fill(v, -1);
	assert_int_equal(peak_override_parse(NULL, v, err, sizeof(err)), -EINVAL);
	assert_true(v[MFU_CLASS_BF16] == 0);
}

static void test_override_reasons_name_the_problem(void **state)
{
	(void)state;
	double v[MFU_CLASS_COUNT];
	char err[160];

	assert_int_equal(peak_override_parse("fp4=100", v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "fp4"));
	assert_int_equal(peak_override_parse("bf16=1,bf16=2", v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	assert_int_equal(peak_override_parse("bf16=-3", v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "positive"));
	assert_int_equal(peak_override_parse("0", v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "positive"));
	assert_int_equal(peak_override_parse("989.4x", v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'x'"));
	assert_int_equal(peak_override_parse("", v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty"));
}

static void test_override_error_buffer_is_optional_and_bounded(void **state)
{
	(void)state;
	double v[MFU_CLASS_COUNT];
	char err[8];

	assert_int_equal(peak_override_parse("fp4=1", v, NULL, 0), -EINVAL);
	memset(err, 'z', sizeof(err));
	assert_int_equal(peak_override_parse("fp4=1", v, err, sizeof(err)), -EINVAL);
	assert_true(memchr(err, '\0', sizeof(err)) != NULL);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	memset(err, 'z', sizeof(err));
	assert_int_equal(peak_override_parse("fp4=1", v, err, 1), -EINVAL);
	assert_int_equal(err[0], '\0');
	assert_int_equal(err[1], 'z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup_maps_every_cuda_name_to_its_model_and_rates),
		cmocka_unit_test(test_lookup_keeps_l4_and_l40s_apart),
		cmocka_unit_test(test_lookup_keeps_nvl_and_sxm_apart),
		cmocka_unit_test(test_lookup_keeps_a100_40gb_and_80gb_apart),
		cmocka_unit_test(test_lookup_returns_null_for_unknown_names),
		cmocka_unit_test(test_lookup_rejects_mig_slices_and_foreign_sm_counts),
		cmocka_unit_test(test_lookup_ignores_case_and_whitespace_and_honours_name_len),
		cmocka_unit_test(test_table_rows_are_dense_cited_and_reachable),
		cmocka_unit_test(test_table_matches_design_note_anchors),
		cmocka_unit_test(test_override_single_number_applies_to_every_class),
		cmocka_unit_test(test_override_list_sets_named_classes_only),
		cmocka_unit_test(test_override_rejects_bad_input_with_a_reason),
		cmocka_unit_test(test_override_reasons_name_the_problem),
		cmocka_unit_test(test_override_error_buffer_is_optional_and_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
