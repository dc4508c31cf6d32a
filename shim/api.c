/* SPDX-License-Identifier: MIT */
/*
 * The exported public API (include/mfu/mfu.h): thin wrappers over the core,
 * each a cheap no-op when the shim is disabled.
 */
#include <stddef.h>

#include "core.h"
#include "mfu/mfu.h"

#define API __attribute__((visibility("default")))

API int mfu_api_version(void)
{
	return shim_active() ? MFU_API_VERSION : 0;
}

API void mfu_step_begin(void)
{
	shim_step_begin();
}

API void mfu_step_end(double model_flops)
{
	shim_step_end(model_flops);
}

API void mfu_set_model_flops_per_step(double model_flops)
{
	shim_set_model_flops(model_flops);
}

API void mfu_region_push(const char *name, double flops)
{
	(void)name;
	shim_region_push(flops, NULL);
}

API void mfu_region_push_dtype(const char *name, double flops, const char *dtype)
{
	(void)name;
	shim_region_push(flops, dtype);
}

API void mfu_region_pop(void)
{
	shim_region_pop();
}

API void mfu_remat_push(void)
{
	shim_remat_push();
}

API void mfu_remat_pop(void)
{
	shim_remat_pop();
}
