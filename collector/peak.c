/* SPDX-License-Identifier: MIT */
/*
 * The peak throughput table and its two ways in: peak_lookup places a device
 * by the name CUDA gives it, peak_override_parse reads what the user typed.
 * Every rate below is a dense datasheet figure; where a datasheet prints only
 * the sparse (2:4 structured sparsity, marked "*") figure, the table holds
 * half of it, and the source string says so.  0 means NVIDIA publishes no
 * figure for that class.  doc/metrics.md mirrors this table; keep the two in
 * step.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "peak.h"

/*
 * FP64 is the FP64 Tensor Core rate where the chip has one, because DGEMM runs
 * there (Hopper, Ampere; Blackwell's datasheet gives one figure for both).
 * Ada's datasheets publish no FP64 rate at all, so L40S and L4 have 0.  FP32
 * is the plain CUDA-core rate; fp32 GEMMs with TF32 math are class TF32.
 */
enum peak_model {
	M_H100_SXM5,
	M_H100_PCIE,
	M_H100_NVL,
	M_H200_SXM,
	M_H200_NVL,
	M_GH200,
	M_A100_SXM4_40GB,
	M_A100_SXM4_80GB,
	M_A100_PCIE_40GB,
	M_A100_PCIE_80GB,
	M_B200,
	M_L40S,
	M_L4,
	M__COUNT
};

#define RATES(fp64, fp32, tf32, fp16, bf16, fp8, int8)                                       \
	{                                                                                    \
		[MFU_CLASS_NONE] = 0, [MFU_CLASS_FP64] = (fp64), [MFU_CLASS_FP32] = (fp32),  \
		[MFU_CLASS_TF32] = (tf32), [MFU_CLASS_FP16] = (fp16),                        \
		[MFU_CLASS_BF16] = (bf16), [MFU_CLASS_FP8] = (fp8), [MFU_CLASS_INT8] = (int8) \
	}

static const struct peak_entry table[M__COUNT] = {
	/*
	 * The whitepaper prints the dense rates to one decimal; the datasheet's
	 * sparse 1,979 / 3,958 are these doubled and rounded.  FP64 is the
	 * tensor-core rate (the plain FP64 rate is 33.5).
	 */
	[M_H100_SXM5] = {
		"NVIDIA H100 SXM5",
		"NVIDIA H100 Tensor Core GPU Architecture whitepaper v1.04, Table 1, dense",
		RATES(66.9, 66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9),
	},
	/*
	 * Datasheet H100 PCIe column halved: TF32 756*, BF16/FP16 1,513*,
	 * FP8/INT8 3,026*.  The whitepaper's Table 1 rounds BF16 to 756.
	 */
	[M_H100_PCIE] = {
		"NVIDIA H100 PCIe",
		"NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe column, sparse halved",
		RATES(51, 51, 378, 756.5, 756.5, 1513, 1513),
	},
	/* Per GPU of the pair: TF32 835*, BF16/FP16 1,671*, FP8/INT8 3,341*. */
	[M_H100_NVL] = {
		"NVIDIA H100 NVL",
		"NVIDIA H100 Tensor Core GPU datasheet, H100 NVL column, sparse halved",
		RATES(60, 60, 417.5, 835.5, 835.5, 1670.5, 1670.5),
	},
	/* The H200 datasheet prints the H100 SXM figures (989*, 1,979*, 3,958*). */
	[M_H200_SXM] = {
		"NVIDIA H200 SXM",
		"NVIDIA H200 datasheet, H200 SXM column (= H100 SXM), dense per H100 whitepaper v1.04",
		RATES(66.9, 66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9),
	},
	/* The H200 NVL column repeats the H100 NVL figures (835*, 1,671*, 3,341*). */
	[M_H200_NVL] = {
		"NVIDIA H200 NVL",
		"NVIDIA H200 datasheet, H200 NVL column, sparse halved",
		RATES(60, 60, 417.5, 835.5, 835.5, 1670.5, 1670.5),
	},
	/*
	 * The GH200 datasheet prints the dense figures itself (TF32 494, BF16 990,
	 * FP8 1,979), rounded a little differently from the H100 whitepaper; we
	 * keep the datasheet's.  The module's power is configurable (450-1000 W);
	 * these are its maximum.
	 */
	[M_GH200] = {
		"NVIDIA GH200 Grace Hopper Superchip (GPU)",
		"NVIDIA GH200 Grace Hopper Superchip datasheet, GH200 column, dense as printed",
		RATES(67, 67, 494, 990, 990, 1979, 1979),
	},
	/*
	 * All four A100s share one datasheet column for compute: TF32 156 | 312*,
	 * BF16/FP16 312 | 624*, INT8 624 | 1,248*.  Ampere has no FP8.
	 */
	[M_A100_SXM4_40GB] = {
		"NVIDIA A100 SXM4 40GB",
		"NVIDIA A100 Tensor Core GPU datasheet (2188504), dense",
		RATES(19.5, 19.5, 156, 312, 312, 0, 624),
	},
	[M_A100_SXM4_80GB] = {
		"NVIDIA A100 SXM4 80GB",
		"NVIDIA A100 Tensor Core GPU datasheet (2188504), dense",
		RATES(19.5, 19.5, 156, 312, 312, 0, 624),
	},
	[M_A100_PCIE_40GB] = {
		"NVIDIA A100 PCIe 40GB",
		"NVIDIA A100 Tensor Core GPU datasheet (2188504), dense",
		RATES(19.5, 19.5, 156, 312, 312, 0, 624),
	},
	[M_A100_PCIE_80GB] = {
		"NVIDIA A100 PCIe 80GB",
		"NVIDIA A100 Tensor Core GPU datasheet (2188504), dense",
		RATES(19.5, 19.5, 156, 312, 312, 0, 624),
	},
	/*
	 * HGX B200 (8 GPUs): TF32 18 PF*, FP16/BF16 36 PF*, FP8 72 PF*, INT8
	 * 72 POPS*, FP32 600 TF, FP64/FP64 Tensor 296 TF.  Divided by 8, sparse
	 * halved.  The per-GPU row prints TF32 as 2.2 PF*, a rounding of 18/8.
	 * Rates are at the HGX configuration (up to 1,000 W per GPU).
	 */
	[M_B200] = {
		"NVIDIA B200",
		"NVIDIA HGX B200 datasheet, 8-GPU totals / 8, sparse halved",
		RATES(37, 75, 1125, 2250, 2250, 4500, 4500),
	},
	/* The datasheet prints dense | sparse pairs; FP64 is not published. */
	[M_L40S] = {
		"NVIDIA L40S",
		"NVIDIA L40S datasheet (2841316), dense as printed",
		RATES(0, 91.6, 183, 362.05, 362.05, 733, 733),
	},
	/* TF32 120*, FP16/BF16 242*, FP8 485*, INT8 485*; FP64 not published. */
	[M_L4] = {
		"NVIDIA L4",
		"NVIDIA L4 Tensor Core GPU datasheet, sparse halved",
		RATES(0, 30.3, 60, 121, 121, 242.5, 242.5),
	},
};

/*
 * Names as CUDA reports them, in canonical form (one space between words, no
 * edge whitespace).  sm is the full multiprocessor count of that product,
 * 0 where we have not confirmed it; a known sm turns away MIG slices and
 * mislabelled parts.  The unprefixed A100 names are what drivers before the
 * "NVIDIA " prefix reported.
 */
static const struct peak_alias {
	const char *name;
	enum peak_model model;
	uint32_t sm;
} aliases[] = {
	{ "NVIDIA H100 80GB HBM3", M_H100_SXM5, 132 },
	{ "NVIDIA H100 PCIe", M_H100_PCIE, 114 },
	{ "NVIDIA H100 NVL", M_H100_NVL, 132 },
	{ "NVIDIA H200", M_H200_SXM, 132 },
	{ "NVIDIA H200 NVL", M_H200_NVL, 132 },
	{ "NVIDIA GH200 480GB", M_GH200, 132 },
	{ "NVIDIA GH200 144G HBM3e", M_GH200, 0 },
	{ "NVIDIA A100-SXM4-40GB", M_A100_SXM4_40GB, 108 },
	{ "A100-SXM4-40GB", M_A100_SXM4_40GB, 108 },
	{ "NVIDIA A100-SXM4-80GB", M_A100_SXM4_80GB, 108 },
	{ "A100-SXM4-80GB", M_A100_SXM4_80GB, 108 },
	{ "NVIDIA A100-PCIE-40GB", M_A100_PCIE_40GB, 108 },
	{ "A100-PCIE-40GB", M_A100_PCIE_40GB, 108 },
	{ "NVIDIA A100 80GB PCIe", M_A100_PCIE_80GB, 108 },
	{ "NVIDIA A100-PCIE-80GB", M_A100_PCIE_80GB, 108 },
	{ "NVIDIA B200", M_B200, 148 },
	{ "NVIDIA L40S", M_L40S, 142 },
	{ "NVIDIA L4", M_L4, 0 },
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

size_t peak_table_size(void)
{
	return ARRAY_SIZE(table);
}

const struct peak_entry *peak_table_at(size_t i)
{
	return i < ARRAY_SIZE(table) ? &table[i] : NULL;
}

/* ASCII only: the C library's versions follow the locale. */
static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Does s[0..n), already trimmed, spell canon with inner whitespace runs as one space? */
static int name_equal(const char *s, size_t n, const char *canon)
{
	size_t i = 0;

	while (i < n) {
		if (is_space(s[i])) {
			while (i < n && is_space(s[i]))
				i++;
			if (*canon++ != ' ')
				return 0;
			continue;
		}
		if (*canon == '\0' || lower(s[i]) != lower(*canon))
			return 0;
		i++;
		canon++;
	}
	return *canon == '\0';
}

const struct peak_entry *peak_lookup(const char *device_name, size_t name_len, uint32_t sm_count)
{
	const char *s = device_name;
	size_t n;

	if (!s)
		return NULL;
	n = strnlen(s, name_len);
	while (n && is_space(*s)) {
		s++;
		n--;
	}
	while (n && is_space(s[n - 1]))
		n--;
	if (!n)
		return NULL;

	for (size_t i = 0; i < ARRAY_SIZE(aliases); i++) {
		const struct peak_alias *a = &aliases[i];

		if (!name_equal(s, n, a->name))
			continue;
		if (sm_count && a->sm && sm_count != a->sm)
			return NULL;
		return &table[a->model];
	}
	return NULL;
}

/* ---- Override parsing ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const char *skip_space(const char *p, const char *end)
{
	while (p < end && is_space(*p))
		p++;
	return p;
}

/* 10^k for 0 <= k <= 22 is exact in a double, so one multiply or divide rounds once. */
static double scale10(double v, int e)
{
	static const double exact[] = {
		1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
	};

	while (e > 22) {
		v *= 1e22;
		e -= 22;
	}
	while (e < -22) {
		v /= 1e22;
		e += 22;
	}
	return e >= 0 ? v * exact[e] : v / exact[-e];
}

/*
 * Reads a plain decimal [digits][.digits][(e|E)[+-]digits] from [*pp, end)
 * without strtod, which would follow LC_NUMERIC and also accept "nan", "inf"
 * and hex.  Returns 0 and advances *pp, or -EINVAL if no number starts there.
 */
static int read_decimal(const char **pp, const char *end, double *out)
{
	const char *p = *pp;
	uint64_t mant = 0;
	int scale = 0, digits = 0;
	long exp = 0;

	for (; p < end && is_digit(*p); p++, digits++) {
		if (mant < UINT64_MAX / 10 - 9)
			mant = mant * 10 + (uint64_t)(*p - '0');
		else
			scale++; /* beyond 19 digits: keep the magnitude, drop the tail */
	}
	if (p < end && *p == '.') {
		for (p++; p < end && is_digit(*p); p++, digits++) {
			if (mant < UINT64_MAX / 10 - 9) {
				mant = mant * 10 + (uint64_t)(*p - '0');
				scale--;
			}
		}
	}
	if (!digits)
		return -EINVAL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		const char *q = p + 1;
		int neg = 0, edigits = 0;

		if (q < end && (*q == '+' || *q == '-'))
			neg = *q++ == '-';
		for (; q < end && is_digit(*q); q++, edigits++) {
			if (exp < 100000)
				exp = exp * 10 + (*q - '0');
		}
		if (!edigits)
			return -EINVAL;
		exp = neg ? -exp : exp;
		p = q;
	}
	exp += scale;
	if (exp > 1000)
		exp = 1000; /* overflows to inf, which the caller rejects */
	if (exp < -1000)
		exp = -1000; /* underflows to 0, likewise */
	*out = scale10((double)mant, (int)exp);
	*pp = p;
	return 0;
}

/*
 * Reads one value ending at a ',' or at end, checks it is a finite positive
 * number, and leaves *pp at the ',' or end.  what names the value in errors.
 */
static int read_value(const char **pp, const char *end, const char *what, double *out, char *err,
		      size_t errlen)
{
	const char *p = skip_space(*pp, end);
	const char *tok_end = p;
	double v;

	while (tok_end < end && *tok_end != ',')
		tok_end++;
	while (tok_end > p && is_space(tok_end[-1]))
		tok_end--;
	if (p == tok_end) {
		set_err(err, errlen, "missing value for %s", what);
		return -EINVAL;
	}
	if (*p == '-') {
		set_err(err, errlen, "%s: peak must be positive, got '%.*s'", what, (int)(tok_end - p), p);
		return -EINVAL;
	}
	if (read_decimal(&p, tok_end, &v) < 0) {
		set_err(err, errlen, "%s: not a number: '%.*s'", what, (int)(tok_end - p), p);
		return -EINVAL;
	}
	if (p != tok_end) {
		set_err(err, errlen, "%s: unexpected '%.*s' after the number", what, (int)(tok_end - p), p);
		return -EINVAL;
	}
	if (!isfinite(v)) {
		set_err(err, errlen, "%s: not a finite number", what);
		return -EINVAL;
	}
	if (v <= 0) {
		set_err(err, errlen, "%s: peak must be positive, got 0", what);
		return -EINVAL;
	}
	*out = v;
	*pp = skip_space(tok_end, end);
	return 0;
}

static int class_from_name(const char *s, size_t n)
{
	for (unsigned c = MFU_CLASS_NONE + 1; c < MFU_CLASS_COUNT; c++) {
		const char *name = mfu_class_name(c);

		if (strlen(name) != n)
			continue;
		size_t i = 0;
		while (i < n && lower(s[i]) == name[i])
			i++;
		if (i == n)
			return (int)c;
	}
	return -1;
}

static int parse_list(const char *p, const char *end, double v[MFU_CLASS_COUNT], char *err, size_t errlen)
{
	for (;;) {
		const char *name = skip_space(p, end);
		const char *eq = name;
		size_t n;
		int cls;

		while (eq < end && *eq != '=' && *eq != ',')
			eq++;
		n = (size_t)(eq - name);
		while (n && is_space(name[n - 1]))
			n--;
		if (eq == end || *eq == ',') {
			if (!n)
				set_err(err, errlen, "empty item in the peak list");
			else
				set_err(err, errlen, "'%.*s': expected CLASS=TFLOPS", (int)n, name);
			return -EINVAL;
		}
		if (!n) {
			set_err(err, errlen, "missing class name before '='");
			return -EINVAL;
		}
		cls = class_from_name(name, n);
		if (cls < 0) {
			set_err(err, errlen,
				"unknown dtype class '%.*s' (expected fp64, fp32, tf32, fp16, bf16, fp8 or int8)",
				(int)n, name);
			return -EINVAL;
		}
		if (v[cls] != 0) {
			set_err(err, errlen, "%s given twice", mfu_class_name((unsigned)cls));
			return -EINVAL;
		}
		p = eq + 1;
		if (read_value(&p, end, mfu_class_name((unsigned)cls), &v[cls], err, errlen) < 0)
			return -EINVAL;
		if (p == end)
			return 0;
		p++; /* the ',' read_value stopped at */
	}
}

int peak_override_parse(const char *text, double tflops_out[MFU_CLASS_COUNT], char *err, size_t errlen)
{
	double v[MFU_CLASS_COUNT] = { 0 };
	const char *p, *end;
	int ret = -EINVAL;

	if (err && errlen)
		err[0] = '\0';
	if (!text) {
		set_err(err, errlen, "empty peak override");
		goto out;
	}
	end = text + strlen(text);
	p = skip_space(text, end);
	if (p == end) {
		set_err(err, errlen, "empty peak override");
		goto out;
	}

	/* A list item starts with a class name, a lone number with a digit, '.' or sign. */
	if (is_digit(*p) || *p == '.' || *p == '-' || *p == '+') {
		double all;

		if (read_value(&p, end, "peak", &all, err, errlen) < 0)
			goto out;
		if (p != end) {
			set_err(err, errlen, "unexpected '%s' after the peak", p);
			goto out;
		}
		for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
			v[c] = all;
		ret = 0;
	} else {
		ret = parse_list(p, end, v, err, errlen);
	}
out:
	if (ret < 0)
		memset(v, 0, sizeof(v));
	memcpy(tflops_out, v, sizeof(v));
	return ret;
}
