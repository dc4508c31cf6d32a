/* SPDX-License-Identifier: MIT */
/*
 * The one table of real cuBLAS/cuBLASLt functions.  Resolved with
 * dlsym(RTLD_NEXT) so the shim forwards to whatever copy the process loaded
 * (PyTorch's pip wheels carry their own); the shim never links them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

#include "interpose.h"

static struct real_table table;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic int resolved; /* every GEMM call asks: skip pthread_once's call */

static void resolve(void)
{
#define REAL_RESOLVE(fn) table.fn = (__typeof__(fn) *)dlsym(RTLD_NEXT, #fn);
	REAL_CUBLAS_GEMMS(REAL_RESOLVE)
	REAL_OTHERS(REAL_RESOLVE)
#undef REAL_RESOLVE
	atomic_store_explicit(&resolved, 1, memory_order_release);
}

const struct real_table *real_get(void)
{
	if (__builtin_expect(!atomic_load_explicit(&resolved, memory_order_acquire), 0))
		pthread_once(&once, resolve);
	return &table;
}
