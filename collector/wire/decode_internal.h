/* SPDX-License-Identifier: MIT */
/*
 * The record decoder's per-record step, inline so that the collector's
 * ingest loop (agg_source_feed) decodes and applies a record in one place
 * instead of going through mfu_dec_next and a struct per record.
 * mfu_dec_next is this same step out of line; the two cannot drift apart.
 * Only the collector includes this header: the shim encodes.
 */
#ifndef MFU_DECODE_INTERNAL_H
#define MFU_DECODE_INTERNAL_H

#include "mfu/wire.h"
#include "varint.h"

#define DEVICE_INDEX_MAX 4096u
#define DURATION_MAX (UINT64_C(1) << 62)

/* The hot record types are decoded by one template in two modes.  Checked
 * mode tests every byte against the body's end.  Fast mode is used when the
 * payload has room for the longest possible body, so reads cannot leave the
 * buffer; it checks the body length once at the end and, on anything
 * unusual, reports FALLBACK so the checked mode decodes the record again and
 * produces the canonical error.  Delta bases are committed only on success. */
#define FALLBACK 1000

#define GETM(dst)                                                               \
	do {                                                                    \
		uint64_t v_;                                                    \
		int rc_ = fast ? varint_get_unchecked(&p, &v_) : varint_get(&p, end, &v_); \
		if (__builtin_expect(rc_ != 0, 0))                               \
			return fast ? -FALLBACK                                 \
				    : rc_ == -MFU_WIRE_E_VARINT ? rc_ : -MFU_WIRE_E_FIELD; \
		(dst) = v_;                                                     \
	} while (0)

#define GETM_DELTA(dst, base)                                                   \
	do {                                                                    \
		uint64_t z_;                                                    \
		GETM(z_);                                                       \
		(base) += (uint64_t)zigzag_decode(z_);                           \
		(dst) = (base);                                                 \
	} while (0)

#define BODY_END_CHECK()                                                        \
	do {                                                                    \
		if (fast && p > end)                                            \
			return -FALLBACK;                                       \
	} while (0)

#define KERNEL_BODY_MAX (9 * 10)
#define GEMM_BODY_MAX (17 * 10)
#define API_BODY_MAX (6 * 10)

static inline __attribute__((always_inline)) int
decode_kernel(const uint8_t *p, const uint8_t *end, struct mfu_delta *d, struct mfu_rec_kernel *k,
	      const int fast)
{
	uint64_t dur, start = d->kernel_start, corr = d->kernel_corr;

	GETM_DELTA(k->start_ns, start);
	GETM(dur);
	GETM(k->device);
	GETM(k->stream);
	GETM(k->name_id);
	GETM_DELTA(k->corr, corr);
	GETM(k->call);
	GETM(k->flags);
	GETM(k->flops);
	BODY_END_CHECK();
	if (k->device >= DEVICE_INDEX_MAX || (k->flags & 0xf) >= MFU_CLASS_COUNT ||
	    k->name_id > MFU_STRING_ID_MAX)
		return fast ? -FALLBACK : -MFU_WIRE_E_FIELD;
	if (dur >= DURATION_MAX || k->start_ns + dur < k->start_ns)
		return fast ? -FALLBACK : -MFU_WIRE_E_FIELD;
	k->end_ns = k->start_ns + dur;
	d->kernel_start = start;
	d->kernel_corr = corr;
	return 0;
}

static inline __attribute__((always_inline)) int
decode_gemm(const uint8_t *p, const uint8_t *end, struct mfu_delta *d, struct mfu_rec_gemm *g, const int fast)
{
	uint64_t dur, start = d->gemm_start, call = d->gemm_call;

	GETM_DELTA(g->start_ns, start);
	GETM(dur);
	GETM(g->tid);
	GETM(g->device);
	GETM(g->api);
	GETM(g->m);
	GETM(g->n);
	GETM(g->k);
	GETM(g->batch);
	GETM(g->a_type);
	GETM(g->b_type);
	GETM(g->c_type);
	GETM(g->compute_type);
	GETM(g->ops);
	GETM(g->flags);
	GETM(g->flops);
	GETM_DELTA(g->call, call);
	BODY_END_CHECK();
	if (g->device >= DEVICE_INDEX_MAX || (g->flags & 0xf) >= MFU_CLASS_COUNT)
		return fast ? -FALLBACK : -MFU_WIRE_E_FIELD;
	if (dur >= DURATION_MAX || g->start_ns + dur < g->start_ns)
		return fast ? -FALLBACK : -MFU_WIRE_E_FIELD;
	g->end_ns = g->start_ns + dur;
	d->gemm_start = start;
	d->gemm_call = call;
	return 0;
}

static inline __attribute__((always_inline)) int
decode_api(const uint8_t *p, const uint8_t *end, struct mfu_delta *d, struct mfu_rec_api *a, const int fast)
{
	uint64_t dur, start = d->api_start, corr = d->api_corr;

	GETM_DELTA(a->start_ns, start);
	GETM(dur);
	GETM(a->tid);
	GETM(a->cbid);
	GETM_DELTA(a->corr, corr);
	/* Producers before the kind field sent launches only. */
	a->kind = MFU_API_LAUNCH;
	if (p < end)
		GETM(a->kind);
	BODY_END_CHECK();
	if (a->kind < MFU_API_LAUNCH || a->kind >= MFU_API__COUNT)
		return fast ? -FALLBACK : -MFU_WIRE_E_FIELD;
	if (dur >= DURATION_MAX || a->start_ns + dur < a->start_ns)
		return fast ? -FALLBACK : -MFU_WIRE_E_FIELD;
	a->end_ns = a->start_ns + dur;
	d->api_start = start;
	d->api_corr = corr;
	return 0;
}

/* The checked decoder of any record type (record.c): the fast path's
 * fallback, and the only path for the rare types. */
int mfu_dec_body(uint32_t type, const uint8_t *p, const uint8_t *end, struct mfu_delta *d,
		 struct mfu_record *r);

static inline __attribute__((always_inline)) int mfu_dec_step(struct mfu_dec *d, struct mfu_record *r)
{
	const uint8_t *p = d->p;
	uint64_t type, len;
	int rc;

	if (p >= d->end)
		return 0;
	if ((rc = varint_get(&p, d->end, &type)) || (rc = varint_get(&p, d->end, &len)))
		return rc == -MFU_WIRE_E_TRUNCATED ? -MFU_WIRE_E_RECORD_LEN : rc;
	if (len > (uint64_t)(d->end - p))
		return -MFU_WIRE_E_RECORD_LEN;
	if (type > UINT32_MAX)
		return -MFU_WIRE_E_FIELD;
	r->type = (uint32_t)type;
	size_t room = (size_t)(d->end - p);
	rc = -FALLBACK;
	if (d->checked_only)
		room = 0;
	if (type == MFU_REC_KERNEL && room >= KERNEL_BODY_MAX)
		rc = decode_kernel(p, p + len, &d->delta, &r->u.kernel, 1);
	else if (type == MFU_REC_API && room >= API_BODY_MAX)
		rc = decode_api(p, p + len, &d->delta, &r->u.api, 1);
	else if (type == MFU_REC_GEMM && room >= GEMM_BODY_MAX)
		rc = decode_gemm(p, p + len, &d->delta, &r->u.gemm, 1);
	if (rc == -FALLBACK)
		rc = mfu_dec_body(r->type, p, p + len, &d->delta, r);
	if (rc)
		return rc;
	d->p = p + len;
	return 1;
}

#undef GETM
#undef GETM_DELTA
#undef BODY_END_CHECK
#undef KERNEL_BODY_MAX
#undef GEMM_BODY_MAX
#undef API_BODY_MAX
#undef FALLBACK

#endif
