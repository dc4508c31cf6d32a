/* SPDX-License-Identifier: MIT */
/*
 * A growable, NUL-terminated text buffer for building response bodies: the
 * Prometheus text exposition and JSON.  Appends never fail loudly: the first
 * allocation failure sets oom, later appends are dropped, and the caller
 * checks oom once when the text is complete.  The escaping helpers treat
 * their input as arbitrary bytes (kernel comm names, user-supplied labels)
 * and always emit valid UTF-8: each maximal ill-formed subsequence, as
 * Unicode chapter 3 defines it, becomes one U+FFFD.
 *
 * Not thread-safe (one buffer, one thread); not async-signal-safe (malloc).
 * Number formatting assumes the C LC_NUMERIC locale, which mfud never changes.
 */
#ifndef MFU_COLLECTOR_STRBUF_H
#define MFU_COLLECTOR_STRBUF_H

#include <stddef.h>

struct strbuf {
	char *buf;  /* NUL-terminated when non-NULL; NULL until the first append */
	size_t len; /* bytes before the NUL */
	size_t cap; /* bytes allocated */
	int oom;    /* an allocation (or vsnprintf) failed; appends are ignored */
};

/* Makes an empty buffer with no allocation. */
void sb_init(struct strbuf *sb);

/* Frees the memory and leaves the buffer as sb_init does. */
void sb_free(struct strbuf *sb);

/* Empties the buffer, keeps the allocation for reuse, and clears oom. */
void sb_reset(struct strbuf *sb);

/* Appends n raw bytes (they may include NUL). */
void sb_append(struct strbuf *sb, const void *p, size_t n);

/* Appends a C string. */
void sb_puts(struct strbuf *sb, const char *s);

/* Appends printf-formatted text. */
void sb_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Appends s[0..n) escaped as a Prometheus label value, without quotes:
 * backslash, double quote and line feed become \\ \" \n; invalid UTF-8
 * becomes U+FFFD; everything else is copied.
 */
void sb_prom_label(struct strbuf *sb, const char *s, size_t n);

/*
 * Appends s[0..n) as a quoted JSON string: " and \ are escaped, control
 * characters become \b \f \n \r \t or \u00XX, invalid UTF-8 (overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences, stray
 * continuation bytes) becomes U+FFFD.
 */
void sb_json_string(struct strbuf *sb, const char *s, size_t n);

/*
 * Appends a JSON number: the shortest of %.15g/%.16g/%.17g that reads back
 * as the same double; NaN and infinities, which JSON cannot express, become
 * null.
 */
void sb_json_double(struct strbuf *sb, double v);

/* Appends a Prometheus sample value: NaN, +Inf, -Inf, else as sb_json_double. */
void sb_prom_double(struct strbuf *sb, double v);

#endif
