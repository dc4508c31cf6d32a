/* SPDX-License-Identifier: MIT */
/*
 * GEMM arithmetic rules: FLOPs from shapes (transposes never matter,
 * complex is 8mnk, batch multiplies, overflow saturates) and the dtype class
 * of every compute type and math mode combination the shim meets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cublas_api.h>
#include <library_types.h>

#include "gemm.h"
#include "mfu/wire.h"

static void test_flops_are_2mnk_times_batch_and_8mnk_for_complex(void **state)
{
	(void)state;
	assert_int_equal(gemm_flops(4096, 1024, 512, 1, 0), 2ull * 4096 * 1024 * 512);
	assert_int_equal(gemm_flops(3, 5, 7, 11, 0), 2ull * 3 * 5 * 7 * 11);
	assert_int_equal(gemm_flops(3, 5, 7, 11, 1), 8ull * 3 * 5 * 7 * 11);
	assert_int_equal(gemm_flops(1, 1, 1, 1, 0), 2);
}

static void test_degenerate_shapes_have_no_flops(void **state)
{
	(void)state;
	assert_int_equal(gemm_flops(0, 10, 10, 1, 0), 0);
	assert_int_equal(gemm_flops(10, 10, 0, 1, 0), 0);
	assert_int_equal(gemm_flops(10, 10, 10, 0, 0), 0);
	assert_int_equal(gemm_flops(-5, 10, 10, 1, 0), 0);
}

static void test_overflow_saturates(void **state)
{
	(void)state;
	int64_t big = INT64_C(1) << 40;
	assert_true(gemm_flops(big, big, big, 1, 0) == UINT64_MAX);
	assert_true(gemm_flops(1 << 20, 1 << 20, 1 << 20, 1 << 10, 0) == UINT64_MAX);
	/* just below 2^64 stays exact: 2 * 2^31 * 2^31 * 2^1 = 2^64 -> saturates; 2^63 fits */
	assert_int_equal(gemm_flops(INT64_C(1) << 31, INT64_C(1) << 31, 1, 1, 0), UINT64_C(1) << 63);
}

static void test_fp32_is_tf32_only_under_tf32_math_mode(void **state)
{
	(void)state;
	assert_int_equal(gemm_class_legacy(CUDA_R_32F, CUBLAS_DEFAULT_MATH), MFU_CLASS_FP32);
	assert_int_equal(gemm_class_legacy(CUDA_R_32F, CUBLAS_PEDANTIC_MATH), MFU_CLASS_FP32);
	assert_int_equal(gemm_class_legacy(CUDA_R_32F, CUBLAS_TF32_TENSOR_OP_MATH), MFU_CLASS_TF32);
	/* a flag bit on top of the mode does not change the mode */
	assert_int_equal(gemm_class_legacy(CUDA_R_32F,
					   CUBLAS_TF32_TENSOR_OP_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION),
			 MFU_CLASS_TF32);
	assert_int_equal(gemm_class_legacy(CUDA_C_32F, CUBLAS_TF32_TENSOR_OP_MATH), MFU_CLASS_TF32);
	/* deprecated TENSOR_OP_MATH = COMPUTE_32F_FAST_16F */
	assert_int_equal(gemm_class_legacy(CUDA_R_32F, CUBLAS_TENSOR_OP_MATH), MFU_CLASS_FP16);
	assert_int_equal(gemm_class(CUDA_R_32F, CUBLAS_COMPUTE_32F, CUBLAS_TF32_TENSOR_OP_MATH), MFU_CLASS_TF32);
	assert_int_equal(gemm_class(CUDA_R_32F, CUBLAS_COMPUTE_32F, CUBLAS_DEFAULT_MATH), MFU_CLASS_FP32);
	assert_int_equal(gemm_class(CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_TF32_TENSOR_OP_MATH),
			 MFU_CLASS_FP32);
}

static void test_compute_types_name_the_tensor_core_math(void **state)
{
	(void)state;
	assert_int_equal(gemm_class(CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 0), MFU_CLASS_TF32);
	assert_int_equal(gemm_class(CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_16BF, 0), MFU_CLASS_BF16);
	assert_int_equal(gemm_class(CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_16F, 0), MFU_CLASS_FP16);
	assert_int_equal(gemm_class(CUDA_R_16BF, CUBLAS_COMPUTE_32F, 0), MFU_CLASS_BF16);
	assert_int_equal(gemm_class(CUDA_R_16F, CUBLAS_COMPUTE_32F, 0), MFU_CLASS_FP16);
	assert_int_equal(gemm_class(CUDA_R_16F, CUBLAS_COMPUTE_16F, 0), MFU_CLASS_FP16);
	assert_int_equal(gemm_class(CUDA_R_8F_E4M3, CUBLAS_COMPUTE_32F, 0), MFU_CLASS_FP8);
	assert_int_equal(gemm_class(CUDA_R_8F_E5M2, CUBLAS_COMPUTE_32F, 0), MFU_CLASS_FP8);
	assert_int_equal(gemm_class(CUDA_R_8I, CUBLAS_COMPUTE_32I, 0), MFU_CLASS_INT8);
	assert_int_equal(gemm_class(CUDA_R_64F, CUBLAS_COMPUTE_64F, 0), MFU_CLASS_FP64);
	assert_int_equal(gemm_class(CUDA_C_64F, CUBLAS_COMPUTE_64F_PEDANTIC, 0), MFU_CLASS_FP64);
	assert_int_equal(gemm_class(CUDA_R_64F, CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT, 0), MFU_CLASS_FP64);
	assert_int_equal(gemm_class(CUDA_R_16BF, 12345, 0), MFU_CLASS_NONE);
	assert_int_equal(gemm_class(CUDA_R_4F_E2M1, CUBLAS_COMPUTE_32F, 0), MFU_CLASS_NONE);
}

static void test_complex_types_are_recognised(void **state)
{
	(void)state;
	assert_true(gemm_type_is_complex(CUDA_C_32F));
	assert_true(gemm_type_is_complex(CUDA_C_64F));
	assert_true(gemm_type_is_complex(CUDA_C_16F));
	assert_false(gemm_type_is_complex(CUDA_R_32F));
	assert_false(gemm_type_is_complex(CUDA_R_16BF));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flops_are_2mnk_times_batch_and_8mnk_for_complex),
		cmocka_unit_test(test_degenerate_shapes_have_no_flops),
		cmocka_unit_test(test_overflow_saturates),
		cmocka_unit_test(test_fp32_is_tf32_only_under_tf32_math_mode),
		cmocka_unit_test(test_compute_types_name_the_tensor_core_math),
		cmocka_unit_test(test_complex_types_are_recognised),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
