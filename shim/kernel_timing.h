/* SPDX-License-Identifier: MIT */
/*
 * Kernel timing through CUPTI, found at run time (never linked): activity
 * records for kernels, copies and sets, launch and synchronizing driver
 * calls, external correlation and devices, and a
 * driver-API launch callback that hands each kernel what its launching
 * thread was doing (a GEMM call's FLOPs, a region's, remat).
 */
#ifndef MFU_SHIM_KERNEL_TIMING_H
#define MFU_SHIM_KERNEL_TIMING_H

#include <stddef.h>
#include <stdint.h>

struct mfu_sender;

/* Loads CUPTI and subscribes to launches.  Returns 1 when kernel timing
 * can work; else 0 with a one-line reason in why. */
int cupti_start(char *why, size_t cap);
/* 1 when cupti_start failed because another profiler held CUPTI: then
 * cupti_run's flush thread tries again every 2 s, and timing starts (and
 * the source stops being degraded) once it is free. */
int cupti_waiting(void);
/* Enables the activity kinds (records wait inside CUPTI).  Returns 1, or 0
 * with a reason (timing then stays off). */
int cupti_enable(char *why, size_t cap);
/* Records go to s from now on; starts the flush thread. */
void cupti_run(struct mfu_sender *s);
/* A counted GEMM call launched no kernel that CUPTI reported while timing
 * was on; the flush thread treats a period of those, with no record joined,
 * as CUPTI lost (and tries to take it back). */
void cupti_note_callbackless(void);
/* 1 while kernel records are being produced. */
int cupti_timing(void);
void cupti_push(uint64_t call);
void cupti_pop(void);
/* At exit: a forced flush, bounded to about a second. */
void cupti_finish(void);
/* In a forked child: CUPTI's state belongs to the parent. */
void cupti_forked_child(void);

#endif
