/* SPDX-License-Identifier: MIT */
/*
 * Peak throughput: the denominator of HFU and MFU.  A built-in table holds the
 * dense (never sparse) datasheet rate of each supported GPU model for each
 * dtype class, with the datasheet it came from, so a report can always say
 * which peak it used and why.  A device name that the table cannot place with
 * confidence gets no peak at all, because a wrong peak is worse than none; the
 * user can then supply one with --peak-tflops / MFU_PEAK_TFLOPS, parsed here
 * too.  doc/metrics.md lists the table and the matching rules.
 *
 * Everything here is thread-safe.  peak_lookup, peak_table_size and
 * peak_table_at are also async-signal-safe; peak_override_parse is not (it
 * formats its error message with snprintf).
 */
#ifndef MFU_COLLECTOR_PEAK_H
#define MFU_COLLECTOR_PEAK_H

#include <stddef.h>
#include <stdint.h>

#include "mfu/wire.h"

struct peak_entry {
	const char *model;              /* e.g. "NVIDIA H100 SXM5" */
	const char *source;             /* datasheet citation, e.g. "NVIDIA H100 Tensor Core GPU datasheet (2023), dense" */
	double tflops[MFU_CLASS_COUNT]; /* dense TFLOP/s (TOPS for int8), by enum mfu_dtype_class; 0 = unknown */
};

/*
 * Returns the entry for a device as CUDA names it (cudaDeviceProp.name or the
 * CUPTI device name, e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"),
 * or NULL when the name is not one the table knows.  device_name[0..name_len)
 * need not be NUL-terminated; a NUL inside it ends the name.  Matching is
 * against whole names, case-insensitive, ignoring leading and trailing
 * whitespace and treating runs of inner whitespace as one space; there is no
 * substring or prefix matching, so "NVIDIA L4" never finds the L40S, "NVIDIA
 * H100 NVL" never finds the SXM5 and MIG instance names ("... MIG 1g.10gb")
 * find nothing.  sm_count is the device's multiprocessor count, 0 when
 * unknown; when it is known and differs from the full count of the model the
 * name denotes, the device is not that model as the datasheet describes it
 * (a MIG slice, or a misnamed part) and NULL is returned.  The returned entry
 * is static and lives forever.
 */
const struct peak_entry *peak_lookup(const char *device_name, size_t name_len, uint32_t sm_count);

/*
 * Parses a user override of the peak: "989.4" (one number, stored in every
 * slot of tflops_out, MFU_CLASS_NONE's included) or
 * "bf16=989.4,fp8=1979" (the listed classes only; names as mfu_class_name
 * gives them: fp64 fp32 tf32 fp16 bf16 fp8 int8, case-insensitive).  Numbers
 * are plain decimals with an optional exponent ("1.9789e3"), read the same in
 * every locale; spaces around numbers, '=' and ',' are allowed.  Fills
 * tflops_out (classes not named are set to 0) and returns 0.  For bad input
 * (empty, negative, zero, NaN or infinity, an unknown class, trailing junk, a
 * class given twice) returns -EINVAL, sets all of tflops_out to 0, and writes
 * a one-line, NUL-terminated reason into err[0..errlen) when err is not NULL
 * and errlen is not 0.
 */
int peak_override_parse(const char *text, double tflops_out[MFU_CLASS_COUNT], char *err, size_t errlen);

/* Table access for docs and tests.  peak_table_at returns NULL for i >= peak_table_size(). */
size_t peak_table_size(void);
const struct peak_entry *peak_table_at(size_t i);

#endif
