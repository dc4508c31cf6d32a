/* SPDX-License-Identifier: MIT */
/*
 * What the interposer files share: the real cuBLAS/cuBLASLt headers, the
 * table of real functions (filled once, by dlsym(RTLD_NEXT), never by
 * linking), and the helpers that turn a call's arguments into a gemm_desc.
 */
#ifndef MFU_SHIM_INTERPOSE_H
#define MFU_SHIM_INTERPOSE_H

#include <cublasLt.h>
#include <cublas_api.h>

#include "core.h"
#include "gemm.h"
#include "real_list.h"

#define REAL_OTHERS(X)                        \
	X(cublasGetMathMode)                  \
	X(cublasLtMatmul)                     \
	X(cublasLtMatmulDescGetAttribute)     \
	X(cublasLtMatrixLayoutGetAttribute)

struct real_table {
#define REAL_FIELD(fn) __typeof__(fn) *fn;
	REAL_CUBLAS_GEMMS(REAL_FIELD)
	REAL_OTHERS(REAL_FIELD)
#undef REAL_FIELD
};

/* Filled on first use; a function the process does not have stays NULL and
 * its interposer answers CUBLAS_STATUS_NOT_INITIALIZED instead of crashing. */
const struct real_table *real_get(void);

/* Sets every field of *g; flops as given. */
void describe_fill(struct gemm_desc *g, unsigned api, int a_type, int b_type, int c_type, int compute,
		   cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch,
		   unsigned cls, uint64_t flops);
void describe_legacy(struct gemm_desc *g, unsigned api, cublasHandle_t h, int type, cublasOperation_t ta,
		     cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch);
void describe_ex(struct gemm_desc *g, unsigned api, cublasHandle_t h, int a_type, int b_type, int c_type,
		 cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch);
void describe_gemmex(struct gemm_desc *g, unsigned api, cublasHandle_t h, int a_type, int b_type, int c_type,
		     int compute, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
		     int64_t batch);
/* Grouped calls: the dimension and size arrays are int or int64_t. */
void describe_grouped(struct gemm_desc *g, unsigned api, cublasHandle_t h, int a_type, int compute,
		      const cublasOperation_t *ta, const cublasOperation_t *tb, const void *m, const void *n,
		      const void *k, int64_t group_count, const void *group_size, int is64);

#endif
