/* SPDX-License-Identifier: MIT */
/*
 * cublasLtMatmul interposer.  The shape is read back from the descriptors
 * with the real cuBLASLt getters: m = rows(D), n = cols(D), k = cols(A) when
 * TRANSA is N, else rows(A) (a layout describes the matrix as stored), and
 * batch = BATCH_COUNT(D).  A getter that fails leaves the call counted with
 * no FLOPs rather than guessed ones.
 */
#include "interpose.h"

static int layout_u64(const struct real_table *r, cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
		      uint64_t *out)
{
	size_t written = 0;
	*out = 0;
	return l && r->cublasLtMatrixLayoutGetAttribute(l, a, out, sizeof(*out), &written) == CUBLAS_STATUS_SUCCESS &&
	       written == sizeof(*out);
}

static int layout_i32(const struct real_table *r, cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
		      int32_t *out)
{
	size_t written = 0;
	*out = 0;
	return l && r->cublasLtMatrixLayoutGetAttribute(l, a, out, sizeof(*out), &written) == CUBLAS_STATUS_SUCCESS &&
	       written == sizeof(*out);
}

static int desc_i32(const struct real_table *r, cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
		    int32_t *out)
{
	size_t written = 0;
	*out = 0;
	return d && r->cublasLtMatmulDescGetAttribute(d, a, out, sizeof(*out), &written) == CUBLAS_STATUS_SUCCESS &&
	       written == sizeof(*out);
}

static void describe_lt(struct gemm_desc *g, const struct real_table *r, cublasLtMatmulDesc_t desc,
			cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
			cublasLtMatrixLayout_t d)
{
	uint64_t d_rows, d_cols, a_rows, a_cols;
	int32_t ta, tb, compute, batch = 1, a_type = -1, b_type = -1, c_type = -1;
	uint32_t t;

	describe_fill(g, API_LT_MATMUL, -1, -1, -1, -1, CUBLAS_OP_N, CUBLAS_OP_N, 0, 0, 0, 0, 0, 0);
	if (!r->cublasLtMatrixLayoutGetAttribute || !r->cublasLtMatmulDescGetAttribute)
		return;
	int ok = layout_u64(r, d, CUBLASLT_MATRIX_LAYOUT_ROWS, &d_rows) &&
		 layout_u64(r, d, CUBLASLT_MATRIX_LAYOUT_COLS, &d_cols) &&
		 layout_u64(r, a, CUBLASLT_MATRIX_LAYOUT_ROWS, &a_rows) &&
		 layout_u64(r, a, CUBLASLT_MATRIX_LAYOUT_COLS, &a_cols) &&
		 desc_i32(r, desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta) && desc_i32(r, desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb) &&
		 desc_i32(r, desc, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, &compute) &&
		 layout_i32(r, d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch);
	/* the type attributes are uint32_t cudaDataType */
	if (layout_i32(r, a, CUBLASLT_MATRIX_LAYOUT_TYPE, (int32_t *)&t))
		a_type = (int32_t)t;
	if (layout_i32(r, b, CUBLASLT_MATRIX_LAYOUT_TYPE, (int32_t *)&t))
		b_type = (int32_t)t;
	if (layout_i32(r, c ? c : d, CUBLASLT_MATRIX_LAYOUT_TYPE, (int32_t *)&t))
		c_type = (int32_t)t;
	if (!ok)
		return;
	int64_t m = (int64_t)d_rows, n = (int64_t)d_cols, k = (int64_t)(ta == CUBLAS_OP_N ? a_cols : a_rows);
	int64_t nb = batch > 0 ? batch : 1;
	/* cuBLASLt has no math mode: the compute type alone decides TF32 */
	describe_fill(g, API_LT_MATMUL, a_type, b_type, c_type, compute, (cublasOperation_t)ta, (cublasOperation_t)tb,
		      m, n, k, nb, gemm_class(a_type, compute, CUBLAS_DEFAULT_MATH),
		      gemm_flops(m, n, k, nb, gemm_type_is_complex(a_type)));
}

__attribute__((visibility("default"))) cublasStatus_t CUBLASWINAPI
cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void *alpha, const void *A,
	       cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta,
	       const void *C, cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
	       const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceSizeInBytes, cudaStream_t stream)
{
	const struct real_table *r = real_get();
	struct shim_call c;
	struct gemm_desc g;

	if (!r->cublasLtMatmul)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	shim_enter(&c);
	if (c.counted) {
		describe_lt(&g, r, computeDesc, Adesc, Bdesc, Cdesc, Ddesc);
		shim_begin(&c, &g);
	}
	cublasStatus_t st = r->cublasLtMatmul(lightHandle, computeDesc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D,
					      Ddesc, algo, workspace, workspaceSizeInBytes, stream);
	shim_leave(&c, &g, st == CUBLAS_STATUS_SUCCESS);
	return st;
}
