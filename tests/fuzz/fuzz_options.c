/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: every parser of user text in mfud, the mfu CLI and the
 * producers' environment.  The first input byte picks the parser and a
 * parameter, the rest is the text, passed as the C string argv or getenv
 * would give (it ends at the first NUL).  Text and output buffers are
 * allocated at their exact sizes, so ASan sees a read or write one byte
 * past either.
 *
 *   opt_uint        mfud --archive-max-mb --settle-ms --retain, mfu run/top --interval
 *   opt_positive    mfu replay --speed
 *   opt_class       --model-dtype (mfud, mfu run, mfu report)
 *   opt_peak        --peak-tflops and MFU_PEAK_TFLOPS (through peak_override_parse)
 *   net_parse_hostport  mfud --http/--listen, mfu run --http, mfu top --connect
 *   net_parse_target    MFU_COLLECTOR (shim, mfu replay), mfu replay --target
 *   archive_files_*     archive file names given to mfu report/replay
 *   peak_lookup         device names as producers report them
 *
 * Each success is checked against the contract in the header (range,
 * alphabet, round trip); each failure must leave a NUL-terminated reason.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive_files.h"
#include "fuzz_common.h"
#include "net.h"
#include "options.h"
#include "peak.h"

enum { P_UINT, P_POSITIVE, P_CLASS, P_PEAK_CLI, P_PEAK_ENV, P_PEAK_RAW, P_HOSTPORT, P_TARGET, P_FILES, P_DEVICE, P__COUNT };

static const struct {
	uint64_t min, max;
} uint_ranges[] = {
	{1, 1u << 20},      /* --archive-max-mb */
	{0, 600000},        /* --settle-ms */
	{0, 30 * 86400},    /* --retain */
	{0, 3600},          /* mfu run --interval */
	{1, 3600},          /* mfu top --interval */
	{0, UINT64_MAX},    /* the edge */
};

static void check_reason(const char *err, size_t errlen)
{
	FUZZ_CHECK(errlen == 0 || memchr(err, 0, errlen), "reason not NUL-terminated");
	FUZZ_CHECK(errlen < 2 || err[0], "failure without a reason");
}

static void fuzz_uint(const char *text, unsigned param)
{
	uint64_t v = 12345;
	size_t errlen = 1 + param % 200;
	char *err = malloc(errlen);
	unsigned r = (param / 200) % (sizeof(uint_ranges) / sizeof(uint_ranges[0]));

	FUZZ_CHECK(err, "malloc");
	if (opt_uint(text, uint_ranges[r].min, uint_ranges[r].max, &v, err, errlen) == 0) {
		FUZZ_CHECK(v >= uint_ranges[r].min && v <= uint_ranges[r].max, "%llu out of range",
			   (unsigned long long)v);
		FUZZ_CHECK(strspn(text, "0123456789") == strlen(text) && *text, "accepted '%s'", text);
		/* Leading zeros are fine; the value must be the decimal one. */
		char *end;
		errno = 0;
		unsigned long long w = strtoull(text, &end, 10);
		FUZZ_CHECK(!errno && !*end && w == v, "'%s' read as %llu", text, (unsigned long long)v);
	} else {
		FUZZ_CHECK(v == 12345, "output written on failure");
		check_reason(err, errlen);
	}
	free(err);
}

static void fuzz_positive(const char *text, unsigned param)
{
	double v = -1;
	size_t errlen = 1 + param % 200;
	char *err = malloc(errlen);

	FUZZ_CHECK(err, "malloc");
	if (opt_positive(text, &v, err, errlen) == 0) {
		FUZZ_CHECK(isfinite(v) && v > 0, "accepted '%s' as %g", text, v);
		FUZZ_CHECK(strspn(text, "0123456789.") == strlen(text), "accepted '%s'", text);
	} else {
		FUZZ_CHECK(v == -1, "output written on failure");
		check_reason(err, errlen);
	}
	free(err);
}

static void fuzz_class(const char *text, unsigned param)
{
	unsigned cls = 99;
	size_t errlen = 1 + param % 200;
	char *err = malloc(errlen);

	FUZZ_CHECK(err, "malloc");
	if (opt_class(text, &cls, err, errlen) == 0)
		FUZZ_CHECK(cls > 0 && cls < MFU_CLASS_COUNT && !strcmp(mfu_class_name(cls), text), "'%s' -> %u", text,
			   cls);
	else
		check_reason(err, errlen);
	free(err);
}

static void check_override(const double *v, int ok, const char *text)
{
	int any = 0;

	for (unsigned c = 0; c < MFU_CLASS_COUNT; c++) {
		FUZZ_CHECK(isfinite(v[c]) && v[c] >= 0, "'%s': class %u gets %g", text, c, v[c]);
		any |= v[c] > 0;
		if (!ok)
			FUZZ_CHECK(v[c] == 0, "'%s' refused but class %u kept %g", text, c, v[c]);
	}
	if (ok)
		FUZZ_CHECK(any, "'%s' accepted without a positive peak", text);
}

static void fuzz_peak(const char *text, unsigned param, int how)
{
	struct agg_config cfg;
	size_t errlen = 1 + param % 300;
	char *err = malloc(errlen);
	int rc;

	FUZZ_CHECK(err, "malloc");
	memset(&cfg, 0, sizeof(cfg));
	if (how == P_PEAK_RAW) {
		rc = peak_override_parse(text, cfg.override_tflops, param & 0x100 ? NULL : err,
					 param & 0x100 ? 0 : errlen);
		check_override(cfg.override_tflops, rc == 0, text);
		if (rc)
			check_reason(err, param & 0x100 ? 0 : errlen);
		free(err);
		return;
	}
	if (how == P_PEAK_ENV) {
		/* One putenv of a static buffer, rewritten per input: glibc's
		 * setenv keeps every value it was ever given, so calling it per
		 * input grows the heap until libFuzzer's memory limit. */
		static char env[sizeof("MFU_PEAK_TFLOPS=") + 4096];
		static int put;
		snprintf(env, sizeof(env), "MFU_PEAK_TFLOPS=%s", text);
		if (!put && putenv(env) == 0)
			put = 1;
		FUZZ_CHECK(put, "putenv");
		rc = opt_peak(&cfg, NULL, err, errlen);
		if (!*text)
			FUZZ_CHECK(rc == 0 && !cfg.have_override, "empty MFU_PEAK_TFLOPS is not ignored");
	} else {
		rc = opt_peak(&cfg, text, err, errlen);
	}
	if (rc == 0) {
		if (cfg.have_override) {
			check_override(cfg.override_tflops, 1, text);
			FUZZ_CHECK(memchr(cfg.override_origin, 0, sizeof(cfg.override_origin)), "origin");
		}
	} else {
		FUZZ_CHECK(rc == -EINVAL && !cfg.have_override, "rc %d", rc);
		check_reason(err, errlen);
	}
	free(err);
}

static int host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
	       c == '_';
}

static void fuzz_hostport(const char *text, unsigned param)
{
	size_t cap = param % 300;
	char *host = malloc(cap ? cap : 1);
	uint16_t port = 0;
	int rc;

	FUZZ_CHECK(host, "malloc");
	rc = net_parse_hostport(text, host, cap, &port);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG, "rc %d", rc);
	if (rc == 0) {
		size_t n = strnlen(host, cap);
		struct in6_addr a6;
		FUZZ_CHECK(n < cap, "host not terminated");
		if (text[0] == '[') {
			FUZZ_CHECK(inet_pton(AF_INET6, host, &a6) == 1, "bracketed '%s' is not IPv6", host);
		} else {
			for (size_t i = 0; i < n; i++)
				FUZZ_CHECK(host_char(host[i]), "host byte 0x%02x", (unsigned char)host[i]);
		}
		/* Round trip: the canonical spelling parses to the same. */
		char again[700], host2[300];
		uint16_t port2;
		snprintf(again, sizeof(again), text[0] == '[' ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
		FUZZ_CHECK(net_parse_hostport(again, host2, sizeof(host2), &port2) == 0 && port2 == port &&
				   !strcmp(host2, host),
			   "'%s' does not round-trip via '%s'", text, again);
	} else if (rc == -ENAMETOOLONG) {
		/* it parses with room to spare */
		char big[4096];
		uint16_t p2;
		FUZZ_CHECK(strlen(text) >= sizeof(big) || net_parse_hostport(text, big, sizeof(big), &p2) == 0,
			   "'%s': too long for %zu, but not valid with room", text, cap);
	}
	free(host);
}

static void fuzz_target(const char *text)
{
	struct net_target t;
	int rc = net_parse_target(text, &t);

	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG, "rc %d", rc);
	if (rc)
		return;
	if (t.is_unix) {
		size_t n = strnlen(t.path, sizeof(t.path));
		FUZZ_CHECK(n > 0 && n < sizeof(t.path), "unix path length %zu", n);
		FUZZ_CHECK(!strcmp(t.path, text + (text[0] == '/' ? 0 : 5)), "path '%s' from '%s'", t.path, text);
	} else {
		FUZZ_CHECK(!strncmp(text, "tcp:", 4), "tcp target without tcp:");
		FUZZ_CHECK(t.host[0] && strnlen(t.host, sizeof(t.host)) < sizeof(t.host), "empty host");
	}
}

static void fuzz_files(const char *text)
{
	char *copy = strdup(text), *save = NULL;
	char *names[64];
	size_t n = 0;

	FUZZ_CHECK(copy, "strdup");
	for (char *tok = strtok_r(copy, "\n", &save); tok && n < 64; tok = strtok_r(NULL, "\n", &save))
		names[n++] = tok;
	for (size_t i = 0; i < n; i++) {
		size_t g = archive_group_len(names[i]);
		FUZZ_CHECK(g <= strlen(names[i]), "group length past the name");
		FUZZ_CHECK(archive_same_group(names[i], names[i]), "'%s' not in its own group", names[i]);
	}
	archive_files_sort(names, n);
	/* Sorted: members of a group are adjacent. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 2; j < n; j++)
			if (archive_same_group(names[i], names[j]))
				FUZZ_CHECK(archive_same_group(names[i], names[j - 1]), "group of '%s' split", names[i]);
	free(copy);
}

static void fuzz_device(const uint8_t *data, size_t size, unsigned param)
{
	/* The name is not NUL-terminated on the wire: exact-size copy. */
	char *name = malloc(size ? size : 1);
	FUZZ_CHECK(name, "malloc");
	if (size)
		memcpy(name, data, size);
	const struct peak_entry *e = peak_lookup(name, size, param & 1 ? 0 : param * 4);
	if (e) {
		for (unsigned c = 0; c < MFU_CLASS_COUNT; c++)
			FUZZ_CHECK(isfinite(e->tflops[c]) && e->tflops[c] >= 0, "table entry");
	}
	free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned which = data[0] % P__COUNT, param = (unsigned)data[0] / P__COUNT | (unsigned)data[1] << 8;
	data += 2;
	size -= 2;
	if (which == P_DEVICE) {
		fuzz_device(data, size, param);
		return 0;
	}
	char *text = malloc(size + 1);
	FUZZ_CHECK(text, "malloc");
	if (size)
		memcpy(text, data, size);
	text[size] = 0;
	text = realloc(text, strlen(text) + 1); /* exact size, as argv */
	FUZZ_CHECK(text, "realloc");

	switch (which) {
	case P_UINT: fuzz_uint(text, param); break;
	case P_POSITIVE: fuzz_positive(text, param); break;
	case P_CLASS: fuzz_class(text, param); break;
	case P_PEAK_CLI:
	case P_PEAK_ENV:
	case P_PEAK_RAW: fuzz_peak(text, param, (int)which); break;
	case P_HOSTPORT: fuzz_hostport(text, param); break;
	case P_TARGET: fuzz_target(text); break;
	case P_FILES: fuzz_files(text); break;
	}
	free(text);
	return 0;
}
