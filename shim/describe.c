/* SPDX-License-Identifier: MIT */
/*
 * From a cuBLAS call's arguments to its gemm_desc: class and FLOPs by the
 * rules of gemm.c.  Only called for calls that are counted and succeeded;
 * reads host arguments only (never alpha or beta, which may live on the
 * device).  Transposes are recorded, never used in the count.
 */
#include "interpose.h"

static int math_mode(cublasHandle_t h)
{
	const struct real_table *r = real_get();
	cublasMath_t mode = CUBLAS_DEFAULT_MATH;

	if (r->cublasGetMathMode && r->cublasGetMathMode(h, &mode) != CUBLAS_STATUS_SUCCESS)
		mode = CUBLAS_DEFAULT_MATH;
	return (int)mode;
}

void describe_fill(struct gemm_desc *g, unsigned api, int a, int b, int c, int compute, cublasOperation_t ta,
		   cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch, unsigned cls, uint64_t flops)
{
	g->flops = flops;
	g->m = (uint32_t)m;
	g->n = (uint32_t)n;
	g->k = (uint32_t)k;
	g->batch = (uint32_t)batch;
	g->a_type = GEMM_TYPE16(a);
	g->b_type = GEMM_TYPE16(b);
	g->c_type = GEMM_TYPE16(c);
	g->compute_type = GEMM_TYPE16(compute);
	g->api = (uint16_t)api;
	g->ops = (uint16_t)(((unsigned)ta & 3u) | ((unsigned)tb & 3u) << 2);
	g->cls = cls;
	/* a negative dimension is wide too: the record keeps what was passed */
	g->wide = ((uint64_t)m | (uint64_t)n | (uint64_t)k | (uint64_t)batch) >> 32 || !GEMM_TYPE16_FITS(a) ||
		  !GEMM_TYPE16_FITS(b) || !GEMM_TYPE16_FITS(c) || !GEMM_TYPE16_FITS(compute);
	if (__builtin_expect(g->wide, 0)) {
		g->full.m = m;
		g->full.n = n;
		g->full.k = k;
		g->full.batch = batch;
		g->full.a_type = (uint32_t)a;
		g->full.b_type = (uint32_t)b;
		g->full.c_type = (uint32_t)c;
		g->full.compute_type = (uint32_t)compute;
	}
}

static void fill(struct gemm_desc *g, unsigned api, int a, int b, int c, int compute, cublasOperation_t ta,
		 cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch, unsigned cls)
{
	describe_fill(g, api, a, b, c, compute, ta, tb, m, n, k, batch, cls,
		      gemm_flops(m, n, k, batch, gemm_type_is_complex(a)));
}

void describe_legacy(struct gemm_desc *g, unsigned api, cublasHandle_t h, int type, cublasOperation_t ta,
		     cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch)
{
	fill(g, api, type, type, type, -1, ta, tb, m, n, k, batch, gemm_class_legacy(type, math_mode(h)));
}

void describe_ex(struct gemm_desc *g, unsigned api, cublasHandle_t h, int a_type, int b_type, int c_type,
		 cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, int64_t batch)
{
	fill(g, api, a_type, b_type, c_type, -1, ta, tb, m, n, k, batch, gemm_class_legacy(a_type, math_mode(h)));
}

void describe_gemmex(struct gemm_desc *g, unsigned api, cublasHandle_t h, int a_type, int b_type, int c_type,
		     int compute, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
		     int64_t batch)
{
	fill(g, api, a_type, b_type, c_type, compute, ta, tb, m, n, k, batch,
	     gemm_class(a_type, compute, math_mode(h)));
}

static int64_t at(const void *arr, int64_t i, int is64)
{
	return is64 ? ((const int64_t *)arr)[i] : ((const int *)arr)[i];
}

void describe_grouped(struct gemm_desc *g, unsigned api, cublasHandle_t h, int a_type, int compute,
		      const cublasOperation_t *ta, const cublasOperation_t *tb, const void *m, const void *n,
		      const void *k, int64_t group_count, const void *group_size, int is64)
{
	int mode = math_mode(h);
	unsigned cls = compute >= 0 ? gemm_class(a_type, compute, mode) : gemm_class_legacy(a_type, mode);
	int cplx = gemm_type_is_complex(a_type);
	uint64_t flops = 0, problems = 0;

	for (int64_t i = 0; i < group_count; i++) {
		uint64_t f = gemm_flops(at(m, i, is64), at(n, i, is64), at(k, i, is64), at(group_size, i, is64), cplx);
		flops = flops + f < flops ? UINT64_MAX : flops + f;
		if (at(group_size, i, is64) > 0)
			problems += (uint64_t)at(group_size, i, is64);
	}
	fill(g, api, a_type, a_type, a_type, compute, group_count > 0 ? ta[0] : CUBLAS_OP_N,
	     group_count > 0 ? tb[0] : CUBLAS_OP_N, group_count > 0 ? at(m, 0, is64) : 0,
	     group_count > 0 ? at(n, 0, is64) : 0, group_count > 0 ? at(k, 0, is64) : 0, (int64_t)problems, cls);
	g->flops = flops; /* the sum over groups, not the first group's shape times all problems */
}
