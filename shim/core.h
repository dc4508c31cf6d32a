/* SPDX-License-Identifier: MIT */
/*
 * The shim's core, between the thin interposers and the sender: lazy start,
 * per-thread nesting (depth guard, remat, regions), identity of the process,
 * and the records it emits.  Interposers call shim_enter() before the real
 * function and shim_leave() after it.
 */
#ifndef MFU_SHIM_CORE_H
#define MFU_SHIM_CORE_H

#include <stdint.h>

/* A call as its record describes it.  From flops to cls it has the order
 * and widths of the packed gemm record (struct mfu_sender_gemm, flops to
 * flags), so that the record takes it in one copy (core.c checks the
 * layout).  A call whose dimensions or types do not fit those widths is
 * wide, and carries them in full as well. */
struct gemm_desc {
	uint64_t flops;
	uint32_t m, n, k, batch; /* for grouped calls: the first group's, batch = all problems */
	uint16_t a_type, b_type, c_type, compute_type; /* GEMM_TYPE16() of the cudaDataType / compute type */
	uint16_t api;            /* enum gemm_api */
	uint16_t ops;            /* transa | transb << 2 */
	uint32_t cls;            /* enum mfu_dtype_class */
	int wide;
	struct {
		int64_t m, n, k, batch;
		uint32_t a_type, b_type, c_type, compute_type;
	} full; /* only when wide */
};

/* A type as the packed record carries it: the 32-bit enum's bits + 1, so
 * that -1 (none) is 0; the wire carries the bits themselves. */
#define GEMM_TYPE16(t) ((uint16_t)((uint32_t)(t) + 1u))
#define GEMM_TYPE16_FITS(t) ((uint32_t)(t) + 1u <= 0xffffu)

struct shim_call {
	uint64_t call;
	int counted; /* 0: disabled, or nested inside another counted call */
};

/* What a kernel launched now, by this thread, carries (see kernel_timing.c). */
struct launch_info {
	uint64_t call;  /* gemm call id, 0 if none */
	uint64_t flops; /* FLOPs handed to this kernel: a call's or region's, once */
	uint32_t flags; /* dtype class | MFU_KF_* */
	uint32_t device;
};

/* Returns 1 when the shim counts (started and not disabled). */
int shim_active(void);

/* Before the real call.  Cheap when disabled. */
void shim_enter(struct shim_call *c);
/* For a counted call, once it is described: makes it the thread's current
 * call, so the kernels it launches carry its FLOPs, and pushes its id as
 * CUPTI's external correlation. */
void shim_begin(struct shim_call *c, const struct gemm_desc *g);
/* After it: emits a gemm record when the call was counted and succeeded. */
void shim_leave(struct shim_call *c, const struct gemm_desc *g, int succeeded);

/* Called from CUPTI's launch callback on the launching thread: fills *out
 * and returns 1 when the kernel carries anything (FLOPs or flags). */
int shim_launch_context(struct launch_info *out);

/* A launch whose kernel record never came (another profiler took CUPTI's
 * buffers, or the record was lost): its FLOPs go out as hardware FLOPs of
 * an untimed orphan record at when_ns, so they are not lost. */
void shim_orphan_flops(const struct launch_info *info, uint64_t when_ns);

/* CLOCK_REALTIME in ns: CUPTI's default clock, so host and GPU records line up. */
uint64_t shim_now_ns(void);

/* Resolves a real function with dlsym(RTLD_NEXT); NULL if absent. */
void *shim_real(const char *name);

/* Public API backends (api.c). */
void shim_step_begin(void);
void shim_step_end(double model_flops);
void shim_set_model_flops(double model_flops);
/* dtype: a class name ("bf16", ...), NULL or unknown for the model's class */
void shim_region_push(double flops, const char *dtype);
void shim_region_pop(void);
void shim_remat_push(void);
void shim_remat_pop(void);

#endif
