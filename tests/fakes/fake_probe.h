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

/* ======================================================================================== */
/*
 * Fake CUPTI (libcupti.so.13, tests/fakes/fake_cupti.c)
 *
 * Exports cuptiGetResultString, cuptiGetTimestamp, cuptiSubscribe, cuptiUnsubscribe,
 * cuptiEnableCallback, cuptiEnableDomain, cuptiFinalize and the activity functions
 * cuptiActivity{Enable,Disable,EnableDriverApi,EnableRuntimeApi,RegisterCallbacks,FlushAll,
 * GetNextRecord,GetNumDroppedRecords,PushExternalCorrelationId,PopExternalCorrelationId} with the
 * CUDA 13 signatures. What it simulates, per launch (on the launching thread):
 *   1. a new correlation id (process-wide, from 1);
 *   2. if the one subscriber enabled CUPTI_CB_DOMAIN_DRIVER_API or cbid 307 (cuLaunchKernel):
 *      its callback at CUPTI_API_ENTER and CUPTI_API_EXIT, with a CUpti_CallbackData whose
 *      functionName is "cuLaunchKernel", symbolName the kernel name, correlationId the id,
 *      functionParams a cuLaunchKernel_params (hStream = the stream), context non-NULL;
 *   3. queued records, if their kinds are on:
 *      - API records on (CUPTI_ACTIVITY_KIND_DRIVER, or cuptiActivityEnableDriverApi(307, 1)):
 *        first one CUpti_ActivityExternalCorrelation per external-id kind pushed on this thread
 *        (top of that kind's stack), if CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION is on, then a
 *        CUpti_ActivityAPI (kind DRIVER, cbid 307). As the header documents, external-correlation
 *        records come only with API records: EXTERNAL_CORRELATION alone yields nothing;
 *      - CONCURRENT_KERNEL (or KERNEL) on: a CUpti_ActivityKernel10, contextId 1, graphId and
 *        graphNodeId 0, start = max(API end + 1000 ns, the stream's previous kernel end),
 *        duration FAKE_CUPTI_KERNEL_NS (default 5000); name interned (valid for the process).
 *   Enabling CUPTI_ACTIVITY_KIND_DEVICE queues one CUpti_ActivityDevice5 (device 0, an H100 SXM:
 *   132 SMs, cc 9.0, 1980000 kHz) once per process (again after cuptiFinalize). Its name is
 *   strdup()ed: cupti_activity.h says the client frees it.
 * Delivery happens on cuptiActivityFlushAll (any flag; INVALID_OPERATION without registered
 * buffer callbacks) or on the launching thread when more than FAKE_CUPTI_FLUSH_THRESHOLD
 * (default 4096) records wait, on the calling thread, never under the fake's lock. Records are
 * packed 8-byte aligned with the real struct sizes, and bufferCompleted gets (NULL, 0, buffer,
 * size, validSize). Adversarial delivery: FAKE_CUPTI_SHUFFLE=<seed> shuffles each delivered batch
 * (deterministically); FAKE_CUPTI_BUFFER_RECORDS=<n> ends a buffer after n records. A buffer that
 * is declined (NULL), too small for a record or not 8-byte aligned drops records (counted).
 * Refusal: FAKE_CUPTI_REFUSE=subscribe makes cuptiSubscribe return
 * CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED (it does anyway while a subscriber exists);
 * =activity makes cuptiActivityEnable, cuptiActivityEnableDriverApi and
 * cuptiActivityEnableRuntimeApi return CUPTI_ERROR_UNKNOWN; =all both; =copies makes enabling
 * CUPTI_ACTIVITY_KIND_MEMCPY or MEMSET return CUPTI_ERROR_NOT_SUPPORTED.
 * FAKE_CUPTI_NO_DRIVER_API_SELECT=1 makes cuptiActivityEnableDriverApi return
 * CUPTI_ERROR_NOT_SUPPORTED (a CUPTI that cannot select driver API records by cbid).
 * cuptiFinalize drops the subscriber, every enabled kind, the buffer callbacks and undelivered
 * records. All functions below are thread-safe.
 */

/* The kernel-launch hooks: fake_kernel_launch (libcublasLt) calls fake_cupti_kernel_launched;
 * fake_cupti_launch is the same, for tests that launch non-GEMM (elementwise) kernels. */
void fake_cupti_kernel_launched(const char *name, int device, int stream);
void fake_cupti_launch(const char *name, int device, int stream);

/* CUDA graphs. Between capture_begin and capture_end, this thread's kernel launches are captured
 * into a new graph: the launch callbacks run (ENTER, then GRAPHNODE_CREATED for the new node,
 * then EXIT) and the API record is made, but no kernel runs. instantiate clones every node of a
 * graph into a new executable graph (GRAPHNODE_CLONED: node = the clone, originalNode = the
 * captured node) and returns its id; graph_launch is one cuGraphLaunch (cbid 514) whose kernels,
 * one per node, carry the launch's correlation id, graphId = the exec id and graphNodeId = the
 * clone's id. destroy (a graph or an exec id) reports GRAPHNODE_DESTROY_STARTING for each of its
 * nodes. cuptiGetGraphNodeId answers for every live node. At most 4096 nodes live at a time. */
int fake_cupti_capture_begin(void);
int fake_cupti_capture_end(void);
int fake_cupti_graph_instantiate(int graph);
void fake_cupti_graph_launch(int exec, int device, int stream);
void fake_cupti_graph_destroy(int graph);

/* Copies, sets and synchronization, one driver call each, on the calling thread, with no
 * callbacks. memcpy is cuMemcpy{HtoD,DtoH,DtoD}_v2 (sync) or its Async_v2 form by copy_kind
 * (a CUpti_ActivityMemcpyKind: 1 HtoD, 2 DtoH, else DtoD); memset is cuMemsetD32_v2 or
 * cuMemsetD32Async. Each gets a new correlation id, an API record if its cbid is on (synchronous
 * ones end after the copy does) and a CUpti_ActivityMemcpy6 / CUpti_ActivityMemset4 (contextId 1,
 * the same correlation id) if CUPTI_ACTIVITY_KIND_MEMCPY / MEMSET is on, placed on the stream's
 * timeline after its kernels and lasting 1000 + bytes / 10 ns. synchronize is cuStreamSynchronize
 * (126), cuCtxSynchronize (17) or cuEventSynchronize (121): an API record only, lasting until the
 * stream's (for a context: the device's) last work ends. */
#define FAKE_SYNC_STREAM 0
#define FAKE_SYNC_CONTEXT 1
#define FAKE_SYNC_EVENT 2
void fake_cupti_memcpy(int device, int stream, size_t bytes, int copy_kind, int sync);
void fake_cupti_memset(int device, int stream, size_t bytes, int sync);
void fake_cupti_synchronize(int what, int device, int stream);

/* Puts back the buffer callbacks registered before the last cuptiActivityRegisterCallbacks
 * (a second client took them and now lets go; the real CUPTI has no such call). */
void fake_cupti_restore_previous_callbacks(void);

/* Launches seen (with or without a subscriber or enabled kinds). */
unsigned long long fake_cupti_launches(void);
/* Records handed to bufferCompleted, of one CUpti_ActivityKind (an int); kind < 0: all kinds. */
unsigned long long fake_cupti_records_delivered(int kind);
/* cuptiActivityFlushAll calls. */
unsigned long long fake_cupti_flushes(void);
/* bufferCompleted calls. */
unsigned long long fake_cupti_buffers_completed(void);
/* Current subscribers: 0 or 1. */
int fake_cupti_subscribers(void);
/* cuptiSubscribe calls, refused ones included. */
unsigned long long fake_cupti_subscribe_calls(void);
/* cuptiFinalize calls. */
unsigned long long fake_cupti_finalizes(void);
/* Records queued and not yet delivered. */
size_t fake_cupti_pending(void);
/* Whether an activity kind is on now. For CUPTI_ACTIVITY_KIND_DRIVER: whether cuLaunchKernel
 * gets API records (the kind or cuptiActivityEnableDriverApi(307)). */
int fake_cupti_activity_enabled(int kind);
/* 1 if CUPTI_ACTIVITY_KIND_KERNEL (the serializing kind) was ever enabled since start or the last
 * fake_cupti_reset (sticky: disabling it again does not clear it). */
int fake_cupti_kernel_kind_enabled(void);
/* Refuse (non-zero) or allow cuptiSubscribe / activity enabling from now on, overriding
 * FAKE_CUPTI_REFUSE. Already granted subscriptions and kinds stay. */
void fake_cupti_set_refuse(int subscribe, int activity);
/* Adds n to what cuptiActivityGetNumDroppedRecords reports next (it reports the sum and resets). */
void fake_cupti_add_dropped(size_t n);
/* Discards undelivered records, zeroes the counters and dropped count, forgets the kernel-kind
 * flag (unless KERNEL is on now) and the stream timelines, and reads the environment again.
 * Subscriptions, enabled kinds and buffer callbacks (the code under test's state) stay. */
void fake_cupti_reset(void);
/* ======================================================================================== */

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
