/* SPDX-License-Identifier: MIT */
/*
 * Parsing of the user text the collector takes (flag values and the
 * environment), shared by mfud and the CLI so both say the same thing about
 * the same bad input.  Each parser writes a one-line reason on failure.
 */
#ifndef MFU_OPTIONS_H
#define MFU_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agg.h"

/* Decimal integer in [min, max].  -EINVAL with a reason otherwise. */
int opt_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errlen);
/* Positive finite decimal number. */
int opt_positive(const char *text, double *out, char *err, size_t errlen);
/* Dtype class name: fp64 fp32 tf32 fp16 bf16 fp8 int8. */
int opt_class(const char *text, unsigned *cls, char *err, size_t errlen);
/* --gap-wait-us: the kernel_wait threshold, 1 us to 1 s. */
int opt_gap_wait(const char *text, struct agg_config *cfg, char *err, size_t errlen);
/* Peak override from --peak-tflops (cli, may be NULL), else MFU_PEAK_TFLOPS. */
int opt_peak(struct agg_config *cfg, const char *cli, char *err, size_t errlen);

/* Comma-separated uids or user names, at most cap of them. */
int opt_uid_list(const char *text, uint32_t *uids, unsigned cap, unsigned *n, char *err, size_t errlen);
/* A group name or number. */
int opt_group(const char *text, gid_t *gid, char *err, size_t errlen);

#endif
