/* SPDX-License-Identifier: MIT */
/*
 * Dtype classes and FLOP counts of GEMM calls; see gemm.h.  The compute
 * type names the math the tensor cores do: a FAST_* compute type down-
 * converts fp32 inputs, and plain 32F compute follows the input type (fp32
 * inputs run as TF32 only when the handle's math mode allows it).
 */
#include <cublas_api.h>
#include <library_types.h>

#include "gemm.h"
#include "mfu/wire.h"

int gemm_type_is_complex(int t)
{
	switch (t) {
	case CUDA_C_16F: case CUDA_C_16BF: case CUDA_C_32F: case CUDA_C_64F:
	case CUDA_C_8I: case CUDA_C_8U: case CUDA_C_32I: case CUDA_C_32U:
	case CUDA_C_4I: case CUDA_C_4U: case CUDA_C_16I: case CUDA_C_16U: case CUDA_C_64I: case CUDA_C_64U:
		return 1;
	default:
		return 0;
	}
}

static unsigned class_of_input(int t, int math_mode)
{
	switch (t) {
	case CUDA_R_32F: case CUDA_C_32F:
		if ((math_mode & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH)
			return MFU_CLASS_TF32;
		/* the deprecated TENSOR_OP_MATH means COMPUTE_32F_FAST_16F */
		if ((math_mode & 0xf) == CUBLAS_TENSOR_OP_MATH)
			return MFU_CLASS_FP16;
		return MFU_CLASS_FP32;
	case CUDA_R_64F: case CUDA_C_64F:
		return MFU_CLASS_FP64;
	case CUDA_R_16F: case CUDA_C_16F:
		return MFU_CLASS_FP16;
	case CUDA_R_16BF: case CUDA_C_16BF:
		return MFU_CLASS_BF16;
	case CUDA_R_8F_E4M3: case CUDA_R_8F_E5M2:
		return MFU_CLASS_FP8;
	case CUDA_R_8I: case CUDA_R_8U: case CUDA_C_8I: case CUDA_C_8U:
		return MFU_CLASS_INT8;
	default:
		return MFU_CLASS_NONE;
	}
}

unsigned gemm_class_legacy(int a_type, int math_mode)
{
	return class_of_input(a_type, math_mode);
}

unsigned gemm_class(int a_type, int compute_type, int math_mode)
{
	switch (compute_type) {
	case CUBLAS_COMPUTE_16F:
	case CUBLAS_COMPUTE_16F_PEDANTIC:
	case CUBLAS_COMPUTE_32F_FAST_16F:
		return MFU_CLASS_FP16;
	case CUBLAS_COMPUTE_32F_FAST_16BF:
		return MFU_CLASS_BF16;
	case CUBLAS_COMPUTE_32F_FAST_TF32:
		return MFU_CLASS_TF32;
	case CUBLAS_COMPUTE_32F_PEDANTIC:
		/* pedantic: fp32 stays fp32 whatever the math mode */
		return class_of_input(a_type, CUBLAS_PEDANTIC_MATH);
	case CUBLAS_COMPUTE_32F:
		return class_of_input(a_type, math_mode);
	case CUBLAS_COMPUTE_32F_EMULATED_16BFX9:
		/* fp32 emulated with bf16 tensor cores: counted as the fp32 math it
		 * stands for; its peak is not a datasheet figure */
		return MFU_CLASS_FP32;
	case CUBLAS_COMPUTE_64F:
	case CUBLAS_COMPUTE_64F_PEDANTIC:
	case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT:
		return MFU_CLASS_FP64;
	case CUBLAS_COMPUTE_32I:
	case CUBLAS_COMPUTE_32I_PEDANTIC:
		return MFU_CLASS_INT8;
	default:
		return MFU_CLASS_NONE;
	}
}

uint64_t gemm_flops(int64_t m, int64_t n, int64_t k, int64_t batch, int complex_)
{
	uint64_t f;

	if (m <= 0 || n <= 0 || k <= 0 || batch <= 0)
		return 0;
	if (__builtin_mul_overflow((uint64_t)m, complex_ ? UINT64_C(8) : UINT64_C(2), &f) ||
	    __builtin_mul_overflow(f, (uint64_t)n, &f) || __builtin_mul_overflow(f, (uint64_t)k, &f) ||
	    __builtin_mul_overflow(f, (uint64_t)batch, &f))
		return UINT64_MAX;
	return f;
}
