/* SPDX-License-Identifier: MIT */
/*
 * Fake libcublas.so.13 for tests on machines without a GPU. It exports the handle functions the
 * shim relies on (create, destroy, math mode, stream, version) and every GEMM entry point of the
 * CUDA 13 cublas_api.h, _64 variants included (cublasUint8gemmBias excepted), with the header's
 * signatures: the header's own prototypes are in scope, so a mismatch fails to compile. A GEMM
 * computes nothing: it records its arguments, "launches" kernels through fake_kernel_launch
 * (libcublasLt's hook, which feeds a fake CUPTI when one is loaded) and returns the status set
 * with fake_cublas_set_status. In nested mode cublasGemmEx hands the work to cublasLtMatmul
 * through the PLT, as the real library does on one path. The probe API is in fake_probe.h.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The project builds with -fvisibility=hidden; everything non-static here is meant to be seen. */
#pragma GCC visibility push(default)

/* CUDA's headers are not clean under the project's warning flags. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wundef"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include "cublas_api.h"
#include "cublasLt.h"
#pragma GCC diagnostic pop

#include "fake_probe.h"

#define HANDLE_MAGIC 0x43424c53u

struct cublasContext {
    unsigned magic;
    cublasMath_t math;
    cudaStream_t stream;
};

/* ---- probe state ---- */

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

/* A child forked while another thread of the parent was inside a GEMM call would inherit
 * probe_lock held by a thread it does not have, and hang on its own first GEMM call: the real
 * library's behaviour after such a fork is undefined, and a test of the code under test must not
 * hang on the fake's lock (fake_cupti.c does the same for its own). */
static void probe_forked_child(void)
{
    pthread_mutex_init(&probe_lock, NULL);
}

__attribute__((constructor)) static void probe_install_fork_handler(void)
{
    pthread_atfork(NULL, NULL, probe_forked_child);
}

static struct fake_call last_call;
static unsigned long long ncalls;
static int ret_status = CUBLAS_STATUS_SUCCESS;
static int nested_lt;
static int kernels_per_call = 1;

void fake_cublas_last(struct fake_call *out)
{
    pthread_mutex_lock(&probe_lock);
    *out = last_call;
    pthread_mutex_unlock(&probe_lock);
}

unsigned long long fake_cublas_calls(void)
{
    unsigned long long n;

    pthread_mutex_lock(&probe_lock);
    n = ncalls;
    pthread_mutex_unlock(&probe_lock);
    return n;
}

void fake_cublas_set_status(int status)
{
    pthread_mutex_lock(&probe_lock);
    ret_status = status;
    pthread_mutex_unlock(&probe_lock);
}

void fake_cublas_set_nested_lt(int on)
{
    pthread_mutex_lock(&probe_lock);
    nested_lt = on != 0;
    pthread_mutex_unlock(&probe_lock);
}

void fake_cublas_set_kernels_per_call(int n)
{
    pthread_mutex_lock(&probe_lock);
    kernels_per_call = n < 0 ? 0 : n;
    pthread_mutex_unlock(&probe_lock);
}

void fake_cublas_reset(void)
{
    pthread_mutex_lock(&probe_lock);
    memset(&last_call, 0, sizeof(last_call));
    ncalls = 0;
    ret_status = CUBLAS_STATUS_SUCCESS;
    nested_lt = 0;
    kernels_per_call = 1;
    pthread_mutex_unlock(&probe_lock);
}

struct gemm_mode {
    int status;
    int nkernels;
    int nested;
};

static struct gemm_mode gemm_record(const char *fn, const long long *args, int nargs)
{
    struct gemm_mode mode;

    pthread_mutex_lock(&probe_lock);
    ncalls++;
    memset(&last_call, 0, sizeof(last_call));
    strncpy(last_call.fn, fn, sizeof(last_call.fn) - 1);
    last_call.n = ncalls;
    memcpy(last_call.i, args, (size_t)nargs * sizeof(args[0]));
    last_call.nargs = nargs;
    mode.status = ret_status;
    mode.nkernels = kernels_per_call;
    mode.nested = nested_lt;
    pthread_mutex_unlock(&probe_lock);
    return mode;
}

static cudaStream_t handle_stream(cublasHandle_t handle)
{
    return handle ? handle->stream : NULL;
}

static void gemm_launch(cublasHandle_t handle, const char *kernel, int nkernels)
{
    int stream = (int)(intptr_t)handle_stream(handle);

    for (int i = 0; i < nkernels; i++)
        fake_kernel_launch(i == 0 ? kernel : "fake_splitk_reduce_kernel", stream);
}

static cublasStatus_t gemm_done(const char *fn, const char *kernel, cublasHandle_t handle,
                                const long long *args, int nargs)
{
    struct gemm_mode mode = gemm_record(fn, args, nargs);

    if (mode.status == CUBLAS_STATUS_SUCCESS)
        gemm_launch(handle, kernel, mode.nkernels);
    return (cublasStatus_t)mode.status;
}

/* ---- handle ---- */

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    struct cublasContext *c;

    if (!handle)
        return CUBLAS_STATUS_INVALID_VALUE;
    c = calloc(1, sizeof(*c));
    if (!c)
        return CUBLAS_STATUS_ALLOC_FAILED;
    c->magic = HANDLE_MAGIC;
    c->math = CUBLAS_DEFAULT_MATH;
    *handle = c;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->magic = 0;
    free(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int *version)
{
    (void)handle;
    if (!version)
        return CUBLAS_STATUS_INVALID_VALUE;
    *version = CUBLAS_VERSION;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *streamId)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!streamId)
        return CUBLAS_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode)
        return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- GEMM entry points ---- */

#define P(x) ((long long)(intptr_t)(x))
#define I(x) ((long long)(x))

#define GEMM_DONE(name, handle, ...)                                                             \
    do {                                                                                         \
        const long long args_[] = {__VA_ARGS__};                                                 \
        return gemm_done(#name, "fake_gemm_" #name, (handle), args_,                             \
                         (int)(sizeof(args_) / sizeof(args_[0])));                               \
    } while (0)

/* cublas{S,D,C,Z}gemm_v2, cublas{C,Z}gemm3m, cublasHgemm. */
#define DEF_GEMM(name, T, IT)                                                                    \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const T *alpha, const T *A,  \
                        IT lda, const T *B, IT ldb, const T *beta, T *C, IT ldc)                 \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), I(transa), I(transb), I(m), I(n), I(k), P(alpha),     \
                  P(A), I(lda), P(B), I(ldb), P(beta), P(C), I(ldc));                            \
    }

/* cublasSgemmEx, cublasCgemmEx, cublasCgemm3mEx: typed alpha/beta, typeless matrices. */
#define DEF_GEMM_TYPED_EX(name, S, IT)                                                           \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const S *alpha,              \
                        const void *A, cudaDataType Atype, IT lda, const void *B,                \
                        cudaDataType Btype, IT ldb, const S *beta, void *C, cudaDataType Ctype,  \
                        IT ldc)                                                                  \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), I(transa), I(transb), I(m), I(n), I(k), P(alpha),     \
                  P(A), I(Atype), I(lda), P(B), I(Btype), I(ldb), P(beta), P(C), I(Ctype),       \
                  I(ldc));                                                                       \
    }

/* cublas{H,S,D,C,Z}gemmBatched, cublasCgemm3mBatched. */
#define DEF_GEMM_BATCHED(name, T, IT)                                                            \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const T *alpha,              \
                        const T *const Aarray[], IT lda, const T *const Barray[], IT ldb,        \
                        const T *beta, T *const Carray[], IT ldc, IT batchCount)                 \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), I(transa), I(transb), I(m), I(n), I(k), P(alpha),     \
                  P(Aarray), I(lda), P(Barray), I(ldb), P(beta), P(Carray), I(ldc),              \
                  I(batchCount));                                                                \
    }

/* cublas{H,S,D,C,Z}gemmStridedBatched, cublasCgemm3mStridedBatched. */
#define DEF_GEMM_STRIDED(name, T, IT)                                                            \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const T *alpha, const T *A,  \
                        IT lda, long long int strideA, const T *B, IT ldb,                       \
                        long long int strideB, const T *beta, T *C, IT ldc,                      \
                        long long int strideC, IT batchCount)                                    \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), I(transa), I(transb), I(m), I(n), I(k), P(alpha),     \
                  P(A), I(lda), I(strideA), P(B), I(ldb), I(strideB), P(beta), P(C), I(ldc),     \
                  I(strideC), I(batchCount));                                                    \
    }

/* cublas{S,D}gemmGroupedBatched: per-group arrays, alpha/beta as host arrays of values. */
#define DEF_GEMM_GROUPED(name, T, IT)                                                            \
    cublasStatus_t name(cublasHandle_t handle, const cublasOperation_t transa_array[],           \
                        const cublasOperation_t transb_array[], const IT m_array[],              \
                        const IT n_array[], const IT k_array[], const T alpha_array[],           \
                        const T *const Aarray[], const IT lda_array[], const T *const Barray[],  \
                        const IT ldb_array[], const T beta_array[], T *const Carray[],           \
                        const IT ldc_array[], IT group_count, const IT group_size[])             \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), P(transa_array), P(transb_array), P(m_array),         \
                  P(n_array), P(k_array), P(alpha_array), P(Aarray), P(lda_array), P(Barray),    \
                  P(ldb_array), P(beta_array), P(Carray), P(ldc_array), I(group_count),          \
                  P(group_size));                                                                \
    }

DEF_GEMM(cublasSgemm_v2, float, int)
DEF_GEMM(cublasSgemm_v2_64, float, int64_t)
DEF_GEMM(cublasDgemm_v2, double, int)
DEF_GEMM(cublasDgemm_v2_64, double, int64_t)
DEF_GEMM(cublasCgemm_v2, cuComplex, int)
DEF_GEMM(cublasCgemm_v2_64, cuComplex, int64_t)
DEF_GEMM(cublasZgemm_v2, cuDoubleComplex, int)
DEF_GEMM(cublasZgemm_v2_64, cuDoubleComplex, int64_t)
DEF_GEMM(cublasCgemm3m, cuComplex, int)
DEF_GEMM(cublasCgemm3m_64, cuComplex, int64_t)
DEF_GEMM(cublasZgemm3m, cuDoubleComplex, int)
DEF_GEMM(cublasZgemm3m_64, cuDoubleComplex, int64_t)
/* __half exists only in C++; the pointers have the same ABI (prototypes in fake_probe.h). */
DEF_GEMM(cublasHgemm, void, int)
DEF_GEMM(cublasHgemm_64, void, int64_t)

DEF_GEMM_TYPED_EX(cublasSgemmEx, float, int)
DEF_GEMM_TYPED_EX(cublasSgemmEx_64, float, int64_t)
DEF_GEMM_TYPED_EX(cublasCgemmEx, cuComplex, int)
DEF_GEMM_TYPED_EX(cublasCgemmEx_64, cuComplex, int64_t)
DEF_GEMM_TYPED_EX(cublasCgemm3mEx, cuComplex, int)
DEF_GEMM_TYPED_EX(cublasCgemm3mEx_64, cuComplex, int64_t)

DEF_GEMM_BATCHED(cublasHgemmBatched, void, int)
DEF_GEMM_BATCHED(cublasHgemmBatched_64, void, int64_t)
DEF_GEMM_BATCHED(cublasSgemmBatched, float, int)
DEF_GEMM_BATCHED(cublasSgemmBatched_64, float, int64_t)
DEF_GEMM_BATCHED(cublasDgemmBatched, double, int)
DEF_GEMM_BATCHED(cublasDgemmBatched_64, double, int64_t)
DEF_GEMM_BATCHED(cublasCgemmBatched, cuComplex, int)
DEF_GEMM_BATCHED(cublasCgemmBatched_64, cuComplex, int64_t)
DEF_GEMM_BATCHED(cublasCgemm3mBatched, cuComplex, int)
DEF_GEMM_BATCHED(cublasCgemm3mBatched_64, cuComplex, int64_t)
DEF_GEMM_BATCHED(cublasZgemmBatched, cuDoubleComplex, int)
DEF_GEMM_BATCHED(cublasZgemmBatched_64, cuDoubleComplex, int64_t)

DEF_GEMM_STRIDED(cublasHgemmStridedBatched, void, int)
DEF_GEMM_STRIDED(cublasHgemmStridedBatched_64, void, int64_t)
DEF_GEMM_STRIDED(cublasSgemmStridedBatched, float, int)
DEF_GEMM_STRIDED(cublasSgemmStridedBatched_64, float, int64_t)
DEF_GEMM_STRIDED(cublasDgemmStridedBatched, double, int)
DEF_GEMM_STRIDED(cublasDgemmStridedBatched_64, double, int64_t)
DEF_GEMM_STRIDED(cublasCgemmStridedBatched, cuComplex, int)
DEF_GEMM_STRIDED(cublasCgemmStridedBatched_64, cuComplex, int64_t)
DEF_GEMM_STRIDED(cublasCgemm3mStridedBatched, cuComplex, int)
DEF_GEMM_STRIDED(cublasCgemm3mStridedBatched_64, cuComplex, int64_t)
DEF_GEMM_STRIDED(cublasZgemmStridedBatched, cuDoubleComplex, int)
DEF_GEMM_STRIDED(cublasZgemmStridedBatched_64, cuDoubleComplex, int64_t)

DEF_GEMM_GROUPED(cublasSgemmGroupedBatched, float, int)
DEF_GEMM_GROUPED(cublasSgemmGroupedBatched_64, float, int64_t)
DEF_GEMM_GROUPED(cublasDgemmGroupedBatched, double, int)
DEF_GEMM_GROUPED(cublasDgemmGroupedBatched_64, double, int64_t)

/* ---- cublasGemmEx and its nested cublasLtMatmul ---- */

static int is_complex(cudaDataType t)
{
    switch (t) {
    case CUDA_C_16F: case CUDA_C_16BF: case CUDA_C_32F: case CUDA_C_64F:
    case CUDA_C_4I: case CUDA_C_4U: case CUDA_C_8I: case CUDA_C_8U: case CUDA_C_16I:
    case CUDA_C_16U: case CUDA_C_32I: case CUDA_C_32U: case CUDA_C_64I: case CUDA_C_64U:
        return 1;
    default:
        return 0;
    }
}

static cudaDataType scale_type(cublasComputeType_t compute, cudaDataType ctype)
{
    switch (compute) {
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC:
        return is_complex(ctype) ? CUDA_C_16F : CUDA_R_16F;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
    case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT:
        return is_complex(ctype) ? CUDA_C_64F : CUDA_R_64F;
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC:
        return CUDA_R_32I;
    default:
        return is_complex(ctype) ? CUDA_C_32F : CUDA_R_32F;
    }
}

struct gemm_ex_args {
    cublasHandle_t handle;
    cublasOperation_t transa, transb;
    int64_t m, n, k;
    const void *alpha, *A, *B, *beta;
    void *C;
    cudaDataType Atype, Btype, Ctype;
    int64_t lda, ldb, ldc;
    cublasComputeType_t compute;
};

/*
 * What real libcublas does on its Lt path: build a descriptor and layouts from the GEMM's
 * arguments (layouts describe the stored matrices, so a transposed A is k x m) and call
 * cublasLtMatmul through the PLT. Every call here is an ordinary external call into libcublasLt.
 */
static void gemm_ex_nested(const struct gemm_ex_args *g)
{
    cublasLtHandle_t lt = NULL;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    int32_t ta = g->transa, tb = g->transb;
    int a_n = g->transa == CUBLAS_OP_N, b_n = g->transb == CUBLAS_OP_N;

    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS)
        goto out;
    if (cublasLtMatmulDescCreate(&desc, g->compute, scale_type(g->compute, g->Ctype)) !=
        CUBLAS_STATUS_SUCCESS)
        goto out;
    if (cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)) ||
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)))
        goto out;
    if (cublasLtMatrixLayoutCreate(&la, g->Atype, (uint64_t)(a_n ? g->m : g->k),
                                   (uint64_t)(a_n ? g->k : g->m), g->lda) ||
        cublasLtMatrixLayoutCreate(&lb, g->Btype, (uint64_t)(b_n ? g->k : g->n),
                                   (uint64_t)(b_n ? g->n : g->k), g->ldb) ||
        cublasLtMatrixLayoutCreate(&lc, g->Ctype, (uint64_t)g->m, (uint64_t)g->n, g->ldc))
        goto out;
    cublasLtMatmul(lt, desc, g->alpha, g->A, la, g->B, lb, g->beta, g->C, lc, g->C, lc, NULL,
                   NULL, 0, handle_stream(g->handle));
out:
    if (lc)
        cublasLtMatrixLayoutDestroy(lc);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (desc)
        cublasLtMatmulDescDestroy(desc);
    if (lt)
        cublasLtDestroy(lt);
}

#define DEF_GEMM_EX(name, IT)                                                                    \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const void *alpha,           \
                        const void *A, cudaDataType Atype, IT lda, const void *B,                \
                        cudaDataType Btype, IT ldb, const void *beta, void *C,                   \
                        cudaDataType Ctype, IT ldc, cublasComputeType_t computeType,             \
                        cublasGemmAlgo_t algo)                                                   \
    {                                                                                            \
        const long long args[] = {P(handle), I(transa), I(transb), I(m),           I(n),        \
                                  I(k),      P(alpha),  P(A),      I(Atype),       I(lda),      \
                                  P(B),      I(Btype),  I(ldb),    P(beta),        P(C),        \
                                  I(Ctype),  I(ldc),    I(computeType), I(algo)};                \
        struct gemm_mode mode =                                                                  \
            gemm_record(#name, args, (int)(sizeof(args) / sizeof(args[0])));                     \
        if (mode.status != CUBLAS_STATUS_SUCCESS)                                                \
            return (cublasStatus_t)mode.status;                                                  \
        if (mode.nested) {                                                                       \
            const struct gemm_ex_args g = {handle, transa, transb, m,    n,     k,     alpha,    \
                                           A,      B,      beta,   C,    Atype, Btype, Ctype,    \
                                           lda,    ldb,    ldc,    computeType};                 \
            gemm_ex_nested(&g);                                                                  \
        } else {                                                                                 \
            gemm_launch(handle, "fake_gemm_" #name, mode.nkernels);                              \
        }                                                                                        \
        return CUBLAS_STATUS_SUCCESS;                                                            \
    }

DEF_GEMM_EX(cublasGemmEx, int)
DEF_GEMM_EX(cublasGemmEx_64, int64_t)

/* ---- typeless batched and grouped ---- */

#define DEF_GEMM_BATCHED_EX(name, IT)                                                            \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const void *alpha,           \
                        const void *const Aarray[], cudaDataType Atype, IT lda,                  \
                        const void *const Barray[], cudaDataType Btype, IT ldb,                  \
                        const void *beta, void *const Carray[], cudaDataType Ctype, IT ldc,      \
                        IT batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo)   \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), I(transa), I(transb), I(m), I(n), I(k), P(alpha),     \
                  P(Aarray), I(Atype), I(lda), P(Barray), I(Btype), I(ldb), P(beta), P(Carray),  \
                  I(Ctype), I(ldc), I(batchCount), I(computeType), I(algo));                     \
    }

DEF_GEMM_BATCHED_EX(cublasGemmBatchedEx, int)
DEF_GEMM_BATCHED_EX(cublasGemmBatchedEx_64, int64_t)

#define DEF_GEMM_STRIDED_EX(name, IT)                                                            \
    cublasStatus_t name(cublasHandle_t handle, cublasOperation_t transa,                         \
                        cublasOperation_t transb, IT m, IT n, IT k, const void *alpha,           \
                        const void *A, cudaDataType Atype, IT lda, long long int strideA,        \
                        const void *B, cudaDataType Btype, IT ldb, long long int strideB,        \
                        const void *beta, void *C, cudaDataType Ctype, IT ldc,                   \
                        long long int strideC, IT batchCount, cublasComputeType_t computeType,   \
                        cublasGemmAlgo_t algo)                                                   \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), I(transa), I(transb), I(m), I(n), I(k), P(alpha),     \
                  P(A), I(Atype), I(lda), I(strideA), P(B), I(Btype), I(ldb), I(strideB),        \
                  P(beta), P(C), I(Ctype), I(ldc), I(strideC), I(batchCount), I(computeType),    \
                  I(algo));                                                                      \
    }

DEF_GEMM_STRIDED_EX(cublasGemmStridedBatchedEx, int)
DEF_GEMM_STRIDED_EX(cublasGemmStridedBatchedEx_64, int64_t)

/* No algo argument here, unlike the other Ex functions. */
#define DEF_GEMM_GROUPED_EX(name, IT)                                                            \
    cublasStatus_t name(cublasHandle_t handle, const cublasOperation_t transa_array[],           \
                        const cublasOperation_t transb_array[], const IT m_array[],              \
                        const IT n_array[], const IT k_array[], const void *alpha_array,         \
                        const void *const Aarray[], cudaDataType_t Atype, const IT lda_array[],  \
                        const void *const Barray[], cudaDataType_t Btype, const IT ldb_array[],  \
                        const void *beta_array, void *const Carray[], cudaDataType_t Ctype,      \
                        const IT ldc_array[], IT group_count, const IT group_size[],             \
                        cublasComputeType_t computeType)                                         \
    {                                                                                            \
        GEMM_DONE(name, handle, P(handle), P(transa_array), P(transb_array), P(m_array),         \
                  P(n_array), P(k_array), P(alpha_array), P(Aarray), I(Atype), P(lda_array),     \
                  P(Barray), I(Btype), P(ldb_array), P(beta_array), P(Carray), I(Ctype),         \
                  P(ldc_array), I(group_count), P(group_size), I(computeType));                  \
    }

DEF_GEMM_GROUPED_EX(cublasGemmGroupedBatchedEx, int)
DEF_GEMM_GROUPED_EX(cublasGemmGroupedBatchedEx_64, int64_t)

#pragma GCC visibility pop
