/* SPDX-License-Identifier: MIT */
/*
 * Flag and environment value parsers; see options.h.  strtod/strtoull accept
 * more than a user means ("1e999", " 12", "0x10", "nan"), so the accepted
 * alphabet is checked first.
 */
#include <errno.h>
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "peak.h"

int opt_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
	uint64_t v = 0;

	if (!text || !*text)
		goto bad;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			goto bad;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	snprintf(err, errlen, "'%.40s' is not a whole number from %llu to %llu", text ? text : "",
		 (unsigned long long)min, (unsigned long long)max);
	return -EINVAL;
}

int opt_positive(const char *text, double *out, char *err, size_t errlen)
{
	char *end;
	int dots = 0;

	if (!text || !*text)
		goto bad;
	for (const char *p = text; *p; p++) {
		if (*p == '.')
			dots++;
		else if (*p < '0' || *p > '9')
			goto bad;
	}
	if (dots > 1)
		goto bad;
	double v = strtod(text, &end);
	if (*end || !isfinite(v) || v <= 0)
		goto bad;
	*out = v;
	return 0;
bad:
	snprintf(err, errlen, "'%.40s' is not a positive number", text ? text : "");
	return -EINVAL;
}

int opt_class(const char *text, unsigned *cls, char *err, size_t errlen)
{
	for (unsigned c = 1; c < MFU_CLASS_COUNT; c++) {
		if (text && !strcmp(text, mfu_class_name(c))) {
			*cls = c;
			return 0;
		}
	}
	snprintf(err, errlen, "'%.40s' is not a dtype (fp64 fp32 tf32 fp16 bf16 fp8 int8)", text ? text : "");
	return -EINVAL;
}

int opt_gap_wait(const char *text, struct agg_config *cfg, char *err, size_t errlen)
{
	uint64_t us;
	int rc = opt_uint(text, 1, 1000000, &us, err, errlen);
	if (!rc)
		cfg->gap_wait_ns = us * 1000u;
	return rc;
}

int opt_peak(struct agg_config *cfg, const char *cli, char *err, size_t errlen)
{
	const char *text = cli, *origin = "--peak-tflops";
	char why[200];

	if (!text) {
		text = getenv("MFU_PEAK_TFLOPS");
		origin = "MFU_PEAK_TFLOPS";
		if (!text || !*text)
			return 0;
	}
	if (peak_override_parse(text, cfg->override_tflops, why, sizeof(why))) {
		snprintf(err, errlen, "%s: %s", origin, why);
		return -EINVAL;
	}
	cfg->have_override = 1;
	snprintf(cfg->override_origin, sizeof(cfg->override_origin), "%s", origin);
	return 0;
}

int opt_uid_list(const char *text, uint32_t *uids, unsigned cap, unsigned *n, char *err, size_t errlen)
{
	char item[64];
	const char *p = text ? text : "";
	uint64_t v;

	*n = 0;
	do {
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(item)) {
			snprintf(err, errlen, "--allow-uid: '%.40s' is not a list of uids or user names", text ? text : "");
			return -EINVAL;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (*n == cap) {
			snprintf(err, errlen, "--allow-uid: more than %u entries", cap);
			return -E2BIG;
		}
		if (item[0] >= '0' && item[0] <= '9') {
			if (opt_uint(item, 0, UINT32_MAX - 1, &v, err, errlen))
				return -EINVAL;
		} else {
			struct passwd *pw = getpwnam(item);
			if (!pw) {
				snprintf(err, errlen, "--allow-uid: no user named '%.40s'", item);
				return -EINVAL;
			}
			v = pw->pw_uid;
		}
		uids[(*n)++] = (uint32_t)v;
		p += len;
	} while (*p++ == ',');
	return 0;
}

int opt_group(const char *text, gid_t *gid, char *err, size_t errlen)
{
	uint64_t v;

	if (text && text[0] >= '0' && text[0] <= '9') {
		if (opt_uint(text, 0, UINT32_MAX - 1, &v, err, errlen))
			return -EINVAL;
		*gid = (gid_t)v;
		return 0;
	}
	struct group *g = text && *text ? getgrnam(text) : NULL;
	if (!g) {
		snprintf(err, errlen, "--socket-group: no group named '%.40s'", text ? text : "");
		return -EINVAL;
	}
	*gid = g->gr_gid;
	return 0;
}
