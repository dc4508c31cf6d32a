/* SPDX-License-Identifier: MIT */
/*
 * Probe API of the fake libcublas.so.13 and libcublasLt.so.13 (tests/fakes). The fakes export
 * the real cuBLAS/cuBLASLt entry points with the CUDA 13 header signatures, compute nothing,
 * record the arguments of every GEMM-family call and return a status the test chooses. Test
 * programs link the fakes ahead of the real libraries (RUNPATH or LD_LIBRARY_PATH) and read the
 * records back through the functions below. Every function here is thread-safe (the state is
 * behind one mutex per library) and none is async-signal-safe.
 */
#ifndef MFU_FAKE_PROBE_H
#define MFU_FAKE_PROBE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAKE_MAX_ARGS 32

/*
 * One recorded call. i[] holds the arguments in declaration order: the handle and every pointer
 * as its address, enums as their int value, integers as they are. Nothing is dereferenced, so
 * alpha and beta appear as addresses.
 */
struct fake_call {
    char fn[64];                /* entry point, e.g. "cublasGemmEx" or "cublasSgemm_v2_64" */
    unsigned long long n;       /* sequence number of this call among the library's GEMM calls */
    long long i[FAKE_MAX_ARGS]; /* arguments in declaration order */
    int nargs;                  /* how many of i[] are used */
};

/* Copies the last GEMM-family call into libcublas to *out (zeroed if there was none). */
void fake_cublas_last(struct fake_call *out);
/* Returns how many GEMM-family calls libcublas has seen. */
unsigned long long fake_cublas_calls(void);
/* Sets the status every libcublas GEMM entry point returns (default CUBLAS_STATUS_SUCCESS = 0).
 * A call that returns anything else launches no kernel and makes no nested call. */
void fake_cublas_set_status(int status);
/*
 * When on, cublasGemmEx and cublasGemmEx_64 call cublasLtMatmul through the PLT (an ordinary call
 * into libcublasLt that an LD_PRELOAD interposer sees), as real libcublas does on one path. The
 * nested call gets descriptors and layouts built from the GEMM's arguments, and the kernels then
 * come from that cublasLtMatmul, not from cublasGemmEx. Default off.
 */
void fake_cublas_set_nested_lt(int on);
/* Sets how many kernels each successful libcublas GEMM call launches (split-K: the first is the
 * GEMM kernel, the rest "fake_splitk_reduce_kernel"). Default 1; values below 0 count as 0. */
void fake_cublas_set_kernels_per_call(int n);
/* Clears the libcublas record and counter and restores every setting to its default. */
void fake_cublas_reset(void);

/* Copies the last cublasLtMatmul call to *out (zeroed if there was none). */
void fake_cublaslt_last(struct fake_call *out);
/* Returns how many cublasLtMatmul calls libcublasLt has seen, nested ones included. */
unsigned long long fake_cublaslt_calls(void);
/* Sets the status cublasLtMatmul returns (default CUBLAS_STATUS_SUCCESS = 0). */
void fake_cublaslt_set_status(int status);
/* Sets how many kernels each successful cublasLtMatmul launches. Default 1. */
void fake_cublaslt_set_kernels_per_call(int n);
/* Clears the libcublasLt record and counter and restores every setting to its default. */
void fake_cublaslt_reset(void);

/*
 * Kernel-launch hook, used by the fakes themselves (exported from libcublasLt). It calls
 * `void fake_cupti_kernel_launched(const char *name, int device, int stream)` if a loaded object
 * defines it (a fake CUPTI: found in the global scope, or in an already loaded libcupti.so.13),
 * and otherwise does nothing. name has static storage duration. stream is the cudaStream_t's
 * address truncated to int; device is always 0.
 */
void fake_kernel_launch(const char *name, int stream);

#if !defined(__cplusplus) && defined(CUBLAS_API_H_)
/*
 * cublas_api.h declares the half-precision GEMMs only for C++ (they take __half, which C does not
 * get). These are the same symbols with the same ABI, __half pointers written as void pointers, so
 * C code can define and call them. Visible only where cublas_api.h was included first.
 */
cublasStatus_t cublasHgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                           int m, int n, int k, const void *alpha, const void *A, int lda,
                           const void *B, int ldb, const void *beta, void *C, int ldc);
cublasStatus_t cublasHgemm_64(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int64_t m, int64_t n, int64_t k,
                              const void *alpha, const void *A, int64_t lda, const void *B,
                              int64_t ldb, const void *beta, void *C, int64_t ldc);
cublasStatus_t cublasHgemmBatched(cublasHandle_t handle, cublasOperation_t transa,
                                  cublasOperation_t transb, int m, int n, int k, const void *alpha,
                                  const void *const Aarray[], int lda, const void *const Barray[],
                                  int ldb, const void *beta, void *const Carray[], int ldc,
                                  int batchCount);
cublasStatus_t cublasHgemmBatched_64(cublasHandle_t handle, cublasOperation_t transa,
                                     cublasOperation_t transb, int64_t m, int64_t n, int64_t k,
                                     const void *alpha, const void *const Aarray[], int64_t lda,
                                     const void *const Barray[], int64_t ldb, const void *beta,
                                     void *const Carray[], int64_t ldc, int64_t batchCount);
cublasStatus_t cublasHgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const void *alpha, const void *A, int lda,
                                         long long int strideA, const void *B, int ldb,
                                         long long int strideB, const void *beta, void *C, int ldc,
                                         long long int strideC, int batchCount);
cublasStatus_t cublasHgemmStridedBatched_64(cublasHandle_t handle, cublasOperation_t transa,
                                            cublasOperation_t transb, int64_t m, int64_t n,
                                            int64_t k, const void *alpha, const void *A,
                                            int64_t lda, long long int strideA, const void *B,
                                            int64_t ldb, long long int strideB, const void *beta,
                                            void *C, int64_t ldc, long long int strideC,
                                            int64_t batchCount);
#endif

#ifdef __cplusplus
}
#endif

#endif /* MFU_FAKE_PROBE_H */
