/* SPDX-License-Identifier: MIT */
/*
 * LEB128 varints and zigzag, inline because the decoder spends most of its
 * time here.  Readers take an explicit end pointer and never read past it.
 */
#ifndef MFU_VARINT_H
#define MFU_VARINT_H

#include <stdint.h>
#include <string.h>

#include "mfu/wire.h"

static inline uint64_t zigzag_encode(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t zigzag_decode(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static inline uint8_t *varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline unsigned varint_len(uint64_t v)
{
	unsigned n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Slow path: multi-byte varints.  Returns 0 or a negated error. */
static inline int varint_get_slow(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;

	for (unsigned i = 0, shift = 0; i < 10; i++, shift += 7) {
		if (p >= end)
			return -MFU_WIRE_E_TRUNCATED;
		uint8_t b = *p++;
		/* The tenth byte may only hold bit 63. */
		if (i == 9 && b > 1)
			return -MFU_WIRE_E_VARINT;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			*pp = p;
			return 0;
		}
	}
	return -MFU_WIRE_E_VARINT;
}

static inline int varint_get(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	const uint8_t *p = *pp;

	if (__builtin_expect(p < end && *p < 0x80, 1)) {
		*out = *p;
		*pp = p + 1;
		return 0;
	}
	if (p + 1 < end && p[1] < 0x80) {
		*out = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
		*pp = p + 2;
		return 0;
	}
	return varint_get_slow(pp, end, out);
}

/* For a caller that has checked there are at least 10 readable bytes:
 * no end checks inside.  Same values and VARINT errors as varint_get. */
static inline int varint_get_unchecked(const uint8_t **pp, uint64_t *out)
{
	const uint8_t *p = *pp;
	uint64_t b = *p++, v;

	if (__builtin_expect(b < 0x80, 1)) {
		*out = b;
		*pp = p;
		return 0;
	}
	v = b & 0x7f;
	for (unsigned shift = 7; shift < 70; shift += 7) {
		b = *p++;
		if (shift == 63 && b > 1)
			return -MFU_WIRE_E_VARINT;
		v |= (b & 0x7f) << shift;
		if (b < 0x80) {
			*out = v;
			*pp = p;
			return 0;
		}
	}
	return -MFU_WIRE_E_VARINT;
}

#endif
