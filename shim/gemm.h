/* SPDX-License-Identifier: MIT */
/*
 * GEMM arithmetic: which dtype class a cuBLAS/cuBLASLt call runs in and how
 * many FLOPs it does, from its arguments alone.  Pure functions, no CUDA
 * calls, so every rule is unit-tested on a machine without a GPU.
 */
#ifndef MFU_SHIM_GEMM_H
#define MFU_SHIM_GEMM_H

#include <stdint.h>

/* The `api` field of gemm records (doc/wire-format.md).  Pinned. */
enum gemm_api {
	API_SGEMM = 1, API_DGEMM, API_CGEMM, API_ZGEMM, API_HGEMM,
	API_CGEMM3M, API_ZGEMM3M, API_CGEMM3MEX, API_SGEMMEX, API_CGEMMEX, API_GEMMEX,
	API_HGEMM_BATCHED, API_SGEMM_BATCHED, API_DGEMM_BATCHED, API_CGEMM_BATCHED, API_CGEMM3M_BATCHED,
	API_ZGEMM_BATCHED, API_HGEMM_STRIDED, API_SGEMM_STRIDED, API_DGEMM_STRIDED, API_CGEMM_STRIDED,
	API_CGEMM3M_STRIDED, API_ZGEMM_STRIDED, API_GEMM_BATCHED_EX, API_GEMM_STRIDED_EX,
	API_SGEMM_GROUPED, API_DGEMM_GROUPED, API_GEMM_GROUPED_EX,
	API_LT_MATMUL,
	API_REGION, /* a declared region, not a cuBLAS call */
	API_ORPHAN, /* FLOPs of launches whose kernel records never came */
	API_64 = 0x100, /* or-ed in for the _64 variants */
};

/* cudaDataType values the classification needs (library_types.h). */
int gemm_type_is_complex(int cuda_type);

/* Dtype class (enum mfu_dtype_class) of a call with input type a_type and
 * cublasComputeType_t compute_type; math_mode is the handle's cublasMath_t
 * (it decides TF32 for fp32 inputs under CUBLAS_COMPUTE_32F). */
unsigned gemm_class(int a_type, int compute_type, int math_mode);
/* The same for the legacy typed entry points (Sgemm: a_type CUDA_R_32F
 * with the compute type the handle's math mode implies). */
unsigned gemm_class_legacy(int a_type, int math_mode);

/* 2·m·n·k·batch, or 8·m·n·k·batch when complex; saturates at UINT64_MAX
 * and is 0 for any non-positive dimension. */
uint64_t gemm_flops(int64_t m, int64_t n, int64_t k, int64_t batch, int complex_);

#endif
