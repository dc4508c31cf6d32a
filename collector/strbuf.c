/* SPDX-License-Identifier: MIT */
/*
 * The growable text buffer and its escapers (see strbuf.h).  The UTF-8
 * validator follows Unicode 15 table 3-7 (well-formed byte sequences) and
 * the "maximal subpart" substitution practice of section 3.9, which is what
 * browsers' and Python's decoders do, so our output matches theirs.
 */
#include "strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SB_MIN_CAP 64

static const char replacement[] = "\xef\xbf\xbd";

void sb_init(struct strbuf *sb)
{
	sb->buf = NULL;
	sb->len = 0;
	sb->cap = 0;
	sb->oom = 0;
}

void sb_free(struct strbuf *sb)
{
	free(sb->buf);
	sb_init(sb);
}

void sb_reset(struct strbuf *sb)
{
	sb->len = 0;
	sb->oom = 0;
	if (sb->buf)
		sb->buf[0] = '\0';
}

/* Makes room for extra more bytes plus the NUL; returns 0 or -1 (oom set). */
static int sb_grow(struct strbuf *sb, size_t extra)
{
	size_t need, cap;
	char *p;

	if (sb->oom)
		return -1;
	if (extra > SIZE_MAX - 1 - sb->len)
		goto fail;
	need = sb->len + extra + 1;
	if (need <= sb->cap)
		return 0;
	cap = sb->cap ? sb->cap : SB_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(sb->buf, cap);
	if (!p)
		goto fail;
	sb->buf = p;
	sb->cap = cap;
	return 0;
fail:
	sb->oom = 1;
	return -1;
}

void sb_append(struct strbuf *sb, const void *p, size_t n)
{
	if (sb_grow(sb, n))
		return;
	if (n)
		memcpy(sb->buf + sb->len, p, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void sb_puts(struct strbuf *sb, const char *s)
{
	sb_append(sb, s, strlen(s));
}

void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	if (sb_grow(sb, SB_MIN_CAP))
		return;
	room = sb->cap - sb->len;
	va_start(ap, fmt);
	n = vsnprintf(sb->buf + sb->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto fail;
	if ((size_t)n >= room) {
		if (sb_grow(sb, (size_t)n))
			return;
		va_start(ap, fmt);
		n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			goto fail;
	}
	sb->len += (size_t)n;
	return;
fail:
	sb->oom = 1;
	sb->buf[sb->len] = '\0';
}

/*
 * Length of the well-formed UTF-8 sequence at s[0..n), or 0 if there is
 * none; then *bad is the length of the maximal ill-formed subpart (>= 1),
 * which the caller replaces with one U+FFFD.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		if (s[0] == 0xe0)
			lo = 0xa0; /* below: overlong */
		else if (s[0] == 0xed)
			hi = 0x9f; /* above: UTF-16 surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		if (s[0] == 0xf0)
			lo = 0x90; /* below: overlong */
		else if (s[0] == 0xf4)
			hi = 0x8f; /* above: beyond U+10FFFF */
	} else {
		/* Continuation bytes, C0/C1 (always overlong), F5..FF. */
		*bad = 1;
		return 0;
	}
	for (i = 1; i < need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need;
}

void sb_prom_label(struct strbuf *sb, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0, len, bad;

	while (i < n) {
		len = utf8_seq(u + i, n - i, &bad);
		if (len == 1 && (u[i] == '\\' || u[i] == '"' || u[i] == '\n')) {
			sb_append(sb, s + run, i - run);
			sb_append(sb, u[i] == '\\' ? "\\\\" : u[i] == '"' ? "\\\"" : "\\n", 2);
			run = ++i;
		} else if (!len) {
			sb_append(sb, s + run, i - run);
			sb_append(sb, replacement, 3);
			i += bad;
			run = i;
		} else {
			i += len;
		}
	}
	sb_append(sb, s + run, n - run);
}

void sb_json_string(struct strbuf *sb, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0, len, bad;
	char esc[8];

	sb_append(sb, "\"", 1);
	while (i < n) {
		len = utf8_seq(u + i, n - i, &bad);
		if (len == 1 && (u[i] < 0x20 || u[i] == '"' || u[i] == '\\')) {
			sb_append(sb, s + run, i - run);
			switch (u[i]) {
			case '"': sb_append(sb, "\\\"", 2); break;
			case '\\': sb_append(sb, "\\\\", 2); break;
			case '\b': sb_append(sb, "\\b", 2); break;
			case '\f': sb_append(sb, "\\f", 2); break;
			case '\n': sb_append(sb, "\\n", 2); break;
			case '\r': sb_append(sb, "\\r", 2); break;
			case '\t': sb_append(sb, "\\t", 2); break;
			default:
				snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
				sb_append(sb, esc, 6);
				break;
			}
			run = ++i;
		} else if (!len) {
			sb_append(sb, s + run, i - run);
			sb_append(sb, replacement, 3);
			i += bad;
			run = i;
		} else {
			i += len;
		}
	}
	sb_append(sb, s + run, n - run);
	sb_append(sb, "\"", 1);
}

static void sb_double(struct strbuf *sb, double v)
{
	char tmp[32];
	int prec;

	/* %.17g always round-trips; shorter forms read better when they do too. */
	for (prec = 15; prec < 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	if (prec == 17)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	sb_puts(sb, tmp);
}

void sb_json_double(struct strbuf *sb, double v)
{
	if (!isfinite(v))
		sb_append(sb, "null", 4);
	else
		sb_double(sb, v);
}

void sb_prom_double(struct strbuf *sb, double v)
{
	if (isnan(v))
		sb_append(sb, "NaN", 3);
	else if (isinf(v))
		sb_puts(sb, v > 0 ? "+Inf" : "-Inf");
	else
		sb_double(sb, v);
}
