/* SPDX-License-Identifier: MIT */
/*
 * What every harness shares: a check that aborts with a message (libFuzzer
 * then saves the input as a crash), and validators for the text the
 * collector emits from hostile input: UTF-8 well-formedness (Unicode table
 * 3-7), a strict JSON syntax check (RFC 8259) and a Prometheus text
 * exposition line check that parses label values exactly as a scraper does.
 * Header-only so each harness is one translation unit plus the code under
 * test.
 */
#ifndef MFU_FUZZ_COMMON_H
#define MFU_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                          \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Returns the offset of the first byte that is not part of well-formed
 * UTF-8, or n when all of s[0..n) is. */
static inline size_t fuzz_utf8_bad_at(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i], lo = 0x80, hi = 0xbf;
		size_t need;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 2;
		else if (c >= 0xe0 && c <= 0xef)
			need = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 4;
		else
			return i;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		for (size_t k = 1; k < need; k++) {
			if (i + k >= n || s[i + k] < lo || s[i + k] > hi)
				return i;
			lo = 0x80;
			hi = 0xbf;
		}
		i += need;
	}
	return n;
}

/* ---- JSON (RFC 8259), strict: one value, optional surrounding whitespace ---- */

struct fuzz_json {
	const char *p, *end;
	int depth;
};

static inline void json_ws(struct fuzz_json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static inline int json_lit(struct fuzz_json *j, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n))
		return 0;
	j->p += n;
	return 1;
}

static inline int json_hex4(const char *p)
{
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return 0;
	}
	return 1;
}

static inline int json_string(struct fuzz_json *j)
{
	if (j->p >= j->end || *j->p != '"')
		return 0;
	j->p++;
	while (j->p < j->end) {
		unsigned char c = (unsigned char)*j->p;
		if (c == '"') {
			j->p++;
			return 1;
		}
		if (c < 0x20)
			return 0; /* raw control character inside a string */
		if (c == '\\') {
			if (j->end - j->p < 2)
				return 0;
			char e = j->p[1];
			if (e == 'u') {
				if (j->end - j->p < 6 || !json_hex4(j->p + 2))
					return 0;
				j->p += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", e) || !e)
				return 0;
			j->p += 2;
			continue;
		}
		j->p++;
	}
	return 0;
}

static inline int json_digits(struct fuzz_json *j)
{
	const char *s = j->p;

	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s;
}

static inline int json_number(struct fuzz_json *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (!json_digits(j))
		return 0;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!json_digits(j))
			return 0;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!json_digits(j))
			return 0;
	}
	return 1;
}

static inline int json_value(struct fuzz_json *j);

static inline int json_container(struct fuzz_json *j, char closing)
{
	int first = 1;

	if (++j->depth > 64)
		return 0;
	j->p++; /* the opening bracket */
	for (;;) {
		json_ws(j);
		if (j->p >= j->end)
			return 0;
		if (*j->p == closing) {
			j->p++;
			j->depth--;
			return 1;
		}
		if (!first) {
			if (*j->p != ',')
				return 0;
			j->p++;
			json_ws(j);
		}
		if (closing == '}') {
			if (!json_string(j))
				return 0;
			json_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return 0;
			j->p++;
			json_ws(j);
		}
		if (!json_value(j))
			return 0;
		first = 0;
	}
}

static inline int json_value(struct fuzz_json *j)
{
	json_ws(j);
	if (j->p >= j->end)
		return 0;
	switch (*j->p) {
	case '{': return json_container(j, '}');
	case '[': return json_container(j, ']');
	case '"': return json_string(j);
	case 't': return json_lit(j, "true");
	case 'f': return json_lit(j, "false");
	case 'n': return json_lit(j, "null");
	default: return json_number(j);
	}
}

/* 1 when s[0..n) is one well-formed JSON text in valid UTF-8. */
static inline int fuzz_json_valid(const char *s, size_t n)
{
	struct fuzz_json j = {s, s + n, 0};

	if (fuzz_utf8_bad_at((const unsigned char *)s, n) != n)
		return 0;
	if (!json_value(&j))
		return 0;
	json_ws(&j);
	return j.p == j.end;
}

/* ---- Prometheus text exposition format 0.0.4 ---- */

static inline int prom_name_char(char c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

/* Checks one sample line (no newline): name{label="value",...} value.
 * Returns 0 when it parses, else a short reason. */
static inline const char *prom_sample_line(const char *p, const char *end)
{
	const char *s = p;

	while (p < end && prom_name_char(*p, p == s))
		p++;
	if (p == s)
		return "no metric name";
	if (p < end && *p == '{') {
		p++;
		while (p < end && *p != '}') {
			const char *ls = p;
			while (p < end && prom_name_char(*p, p == ls) && *p != ':')
				p++;
			if (p == ls)
				return "no label name";
			if (end - p < 2 || p[0] != '=' || p[1] != '"')
				return "label without =\"";
			p += 2;
			for (;;) {
				if (p >= end)
					return "unterminated label value";
				if (*p == '"')
					break;
				if (*p == '\\') {
					if (p + 1 >= end || (p[1] != '\\' && p[1] != '"' && p[1] != 'n'))
						return "bad escape in label value";
					p += 2;
					continue;
				}
				p++;
			}
			p++; /* closing quote */
			if (p < end && *p == ',')
				p++;
			else if (p < end && *p != '}')
				return "junk after label value";
		}
		if (p >= end)
			return "unterminated label set";
		p++;
	}
	if (p >= end || *p != ' ')
		return "no space before value";
	p++;
	const char *v = p;
	while (p < end && *p != ' ')
		p++;
	size_t vn = (size_t)(p - v);
	if (!vn)
		return "empty value";
	if (!((vn == 3 && !memcmp(v, "NaN", 3)) || (vn == 4 && (!memcmp(v, "+Inf", 4) || !memcmp(v, "-Inf", 4))))) {
		char tmp[64], *e;
		if (vn >= sizeof(tmp))
			return "value too long";
		memcpy(tmp, v, vn);
		tmp[vn] = 0;
		(void)strtod(tmp, &e);
		if (*e)
			return "value is not a number";
	}
	if (p < end) { /* optional timestamp: an integer of ms */
		p++;
		if (p < end && *p == '-')
			p++;
		if (p == end)
			return "empty timestamp";
		for (; p < end; p++)
			if (*p < '0' || *p > '9')
				return "junk after the value";
	}
	return NULL;
}

/* Returns NULL when the whole text is valid UTF-8 made of well-formed
 * lines, else a reason; *line gets the 1-based line number of the error. */
static inline const char *fuzz_prom_check(const char *s, size_t n, unsigned *line)
{
	const char *p = s, *end = s + n;

	*line = 0;
	if (fuzz_utf8_bad_at((const unsigned char *)s, n) != n)
		return "invalid UTF-8";
	if (n && s[n - 1] != '\n')
		return "text does not end with a newline";
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *why = NULL;
		++*line;
		if (nl == p)
			why = "empty line";
		else if (*p == '#')
			why = NULL; /* HELP text may hold anything but a raw newline, which the split prevents */
		else
			why = prom_sample_line(p, nl);
		if (why)
			return why;
		p = nl + 1;
	}
	return NULL;
}

#endif
