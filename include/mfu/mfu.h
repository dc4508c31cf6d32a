/* SPDX-License-Identifier: MIT */
/*
 * The public C API of libmfushim.so: declare training steps, model FLOPs,
 * regions of non-cuBLAS work and recomputation.  Programs call these through
 * dlsym (the Python helper uses ctypes) so that they run unchanged without
 * the shim; every function is a cheap no-op when the shim is disabled
 * (MFU_DISABLE=1) or could not start.
 *
 * Thread-safety: every function may be called from any thread.  Region and
 * remat nesting is per thread (kernels inherit what their launching thread
 * has pushed); steps and the model-FLOPs default are per process.  None of
 * these functions is async-signal-safe.
 */
#ifndef MFU_MFU_H
#define MFU_MFU_H

#ifdef __cplusplus
extern "C" {
#endif

#define MFU_API_VERSION 1

/* Returns MFU_API_VERSION when the shim is active, 0 when it is disabled. */
int mfu_api_version(void);

/* Marks the start of a training step on the calling thread's device. */
void mfu_step_begin(void);
/* Ends the step begun last.  model_flops: the FLOPs the model needs for
 * this step (forward + backward, no recomputation); a value <= 0 uses the
 * default from mfu_set_model_flops_per_step() or MFU_MODEL_FLOPS_PER_STEP.
 * A step_end without a step_begin is ignored. */
void mfu_step_end(double model_flops);
/* Sets the default model FLOPs per step (process-wide). */
void mfu_set_model_flops_per_step(double model_flops);

/* Until the matching pop, kernels launched by the calling thread carry
 * `flops` (counted once, on the region's kernels) as declared FLOPs.  For
 * attention, Triton and other work cuBLAS does not see.  Regions nest; GEMMs
 * inside a region are counted as GEMMs, not again as region FLOPs.  name may
 * be NULL.  The dtype class is the model's. */
void mfu_region_push(const char *name, double flops);
/* The same with the dtype class named: "fp64", "fp32", "tf32", "fp16",
 * "bf16", "fp8" or "int8" (NULL or another name: the model's class). */
void mfu_region_push_dtype(const char *name, double flops, const char *dtype);
void mfu_region_pop(void);

/* Until the matching pop, FLOPs executed by the calling thread count as
 * hardware FLOPs and as recomputation (remat) FLOPs, never as model FLOPs.
 * Nests. */
void mfu_remat_push(void);
void mfu_remat_pop(void);

#ifdef __cplusplus
}
#endif
#endif
