/* SPDX-License-Identifier: MIT */
/*
 * Record codec: struct mfu_record <-> the varint bodies of doc/wire-format.md.
 * The encoder writes into a caller-owned buffer and never allocates.  The
 * decoder checks every length against the end of the body it is reading and
 * every value against the ranges the format pins, because a collector reads
 * whatever a socket hands it.
 */
#include <string.h>

#include "decode_internal.h"

#define STATUS_COUNTERS_MAX 64u

static const char *const class_names[MFU_CLASS_COUNT] = {
	"none", "fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8",
};

const char *mfu_class_name(unsigned cls)
{
	return cls < MFU_CLASS_COUNT ? class_names[cls] : "none";
}

void mfu_enc_init(struct mfu_enc *e, uint8_t *buf, size_t cap)
{
	e->buf = buf;
	e->cap = cap;
	mfu_enc_reset(e);
}

void mfu_enc_reset(struct mfu_enc *e)
{
	e->len = 0;
	e->records = 0;
	memset(&e->delta, 0, sizeof(e->delta));
}

static uint8_t *put_delta(uint8_t *p, uint64_t *base, uint64_t v)
{
	p = varint_put(p, zigzag_encode((int64_t)(v - *base)));
	*base = v;
	return p;
}

static uint8_t *put_str(uint8_t *p, const char *s, uint32_t len)
{
	p = varint_put(p, len);
	if (len)
		memcpy(p, s, len);
	return p + len;
}

static uint8_t *put_device(uint8_t *p, const struct mfu_device_info *d)
{
	p = varint_put(p, d->index);
	p = varint_put(p, d->sm_count);
	p = varint_put(p, d->sm_clock_khz);
	p = varint_put(p, d->mem_clock_khz);
	p = varint_put(p, d->cc_major);
	p = varint_put(p, d->cc_minor);
	return put_str(p, d->name, d->name_len);
}

static size_t strings_len(const struct mfu_record *r)
{
	switch (r->type) {
	case MFU_REC_HELLO:
		return (size_t)r->u.hello.host_len + r->u.hello.job_len + r->u.hello.producer_len +
		       (r->u.hello.has_device ? r->u.hello.device.name_len : 0) + r->u.hello.token_len;
	case MFU_REC_STRING:
		return r->u.string.len;
	case MFU_REC_DEVICE:
		return r->u.device.name_len;
	default:
		return 0;
	}
}

static int record_valid(const struct mfu_record *r)
{
	switch (r->type) {
	case MFU_REC_HELLO:
		return r->u.hello.host_len <= MFU_STRING_MAX && r->u.hello.job_len <= MFU_STRING_MAX &&
		       r->u.hello.producer_len <= MFU_STRING_MAX && r->u.hello.token_len <= MFU_STRING_MAX &&
		       (!r->u.hello.has_device || (r->u.hello.device.name_len <= MFU_STRING_MAX &&
						   r->u.hello.device.index < DEVICE_INDEX_MAX));
	case MFU_REC_STRING:
		return r->u.string.id >= 1 && r->u.string.id <= MFU_STRING_ID_MAX &&
		       r->u.string.len <= MFU_STRING_MAX;
	case MFU_REC_DEVICE:
		return r->u.device.name_len <= MFU_STRING_MAX && r->u.device.index < DEVICE_INDEX_MAX;
	case MFU_REC_KERNEL:
		return r->u.kernel.end_ns >= r->u.kernel.start_ns &&
		       r->u.kernel.end_ns - r->u.kernel.start_ns < DURATION_MAX &&
		       r->u.kernel.device < DEVICE_INDEX_MAX && (r->u.kernel.flags & 0xf) < MFU_CLASS_COUNT;
	case MFU_REC_GEMM:
		return r->u.gemm.end_ns >= r->u.gemm.start_ns &&
		       r->u.gemm.end_ns - r->u.gemm.start_ns < DURATION_MAX &&
		       r->u.gemm.device < DEVICE_INDEX_MAX && (r->u.gemm.flags & 0xf) < MFU_CLASS_COUNT;
	case MFU_REC_STEP:
		return r->u.step.end_ns >= r->u.step.begin_ns &&
		       r->u.step.end_ns - r->u.step.begin_ns < DURATION_MAX &&
		       r->u.step.device < DEVICE_INDEX_MAX && r->u.step.model_class < MFU_CLASS_COUNT;
	case MFU_REC_API:
		return r->u.api.end_ns >= r->u.api.start_ns &&
		       r->u.api.end_ns - r->u.api.start_ns < DURATION_MAX && r->u.api.kind >= MFU_API_LAUNCH &&
		       r->u.api.kind < MFU_API__COUNT;
	case MFU_REC_COPY:
		return r->u.copy.end_ns >= r->u.copy.start_ns &&
		       r->u.copy.end_ns - r->u.copy.start_ns < DURATION_MAX && r->u.copy.device < DEVICE_INDEX_MAX;
	case MFU_REC_OFFCPU:
		return r->u.offcpu.end_ns >= r->u.offcpu.start_ns &&
		       r->u.offcpu.end_ns - r->u.offcpu.start_ns < DURATION_MAX &&
		       r->u.offcpu.state < MFU_OFFCPU__COUNT;
	case MFU_REC_STATUS:
	case MFU_REC_GOODBYE:
		return 1;
	default:
		return 0;
	}
}

int mfu_enc_put(struct mfu_enc *e, const struct mfu_record *r)
{
	if (!record_valid(r))
		return -MFU_WIRE_E_FIELD;
	/* Worst case: type, a 3-byte length, fixed fields, strings with their lengths. */
	size_t need = 1 + 3 + MFU_RECORD_FIXED_MAX + strings_len(r) + 4 * 5;
	if (e->cap - e->len < need)
		return -MFU_WIRE_E_NOMEM;

	uint8_t *start = e->buf + e->len;
	uint8_t *body = start + 2; /* type < 128 and, usually, a 1-byte length */
	uint8_t *p = body;
	struct mfu_delta *d = &e->delta;

	switch (r->type) {
	case MFU_REC_HELLO: {
		const struct mfu_rec_hello *h = &r->u.hello;
		p = varint_put(p, h->time_ns);
		p = varint_put(p, h->pid);
		p = varint_put(p, zigzag_encode(h->rank));
		p = varint_put(p, zigzag_encode(h->local_rank));
		p = varint_put(p, h->world_size);
		p = varint_put(p, h->flags);
		p = put_str(p, h->host, h->host_len);
		p = put_str(p, h->job, h->job_len);
		p = put_str(p, h->producer, h->producer_len);
		p = varint_put(p, h->has_device ? 1 : 0);
		if (h->has_device)
			p = put_device(p, &h->device);
		p = put_str(p, h->token, h->token_len);
		break;
	}
	case MFU_REC_DEVICE:
		p = put_device(p, &r->u.device);
		break;
	case MFU_REC_STRING:
		p = varint_put(p, r->u.string.id);
		p = put_str(p, r->u.string.text, r->u.string.len);
		break;
	case MFU_REC_KERNEL: {
		const struct mfu_rec_kernel *k = &r->u.kernel;
		p = put_delta(p, &d->kernel_start, k->start_ns);
		p = varint_put(p, k->end_ns - k->start_ns);
		p = varint_put(p, k->device);
		p = varint_put(p, k->stream);
		p = varint_put(p, k->name_id);
		p = put_delta(p, &d->kernel_corr, k->corr);
		p = varint_put(p, k->call);
		p = varint_put(p, k->flags);
		p = varint_put(p, k->flops);
		break;
	}
	case MFU_REC_GEMM: {
		const struct mfu_rec_gemm *g = &r->u.gemm;
		p = put_delta(p, &d->gemm_start, g->start_ns);
		p = varint_put(p, g->end_ns - g->start_ns);
		p = varint_put(p, g->tid);
		p = varint_put(p, g->device);
		p = varint_put(p, g->api);
		p = varint_put(p, g->m);
		p = varint_put(p, g->n);
		p = varint_put(p, g->k);
		p = varint_put(p, g->batch);
		p = varint_put(p, g->a_type);
		p = varint_put(p, g->b_type);
		p = varint_put(p, g->c_type);
		p = varint_put(p, g->compute_type);
		p = varint_put(p, g->ops);
		p = varint_put(p, g->flags);
		p = varint_put(p, g->flops);
		p = put_delta(p, &d->gemm_call, g->call);
		break;
	}
	case MFU_REC_STEP: {
		const struct mfu_rec_step *s = &r->u.step;
		p = varint_put(p, s->begin_ns);
		p = varint_put(p, s->end_ns - s->begin_ns);
		p = varint_put(p, s->index);
		p = varint_put(p, s->device);
		p = varint_put(p, s->model_flops);
		p = varint_put(p, s->model_class);
		break;
	}
	case MFU_REC_API: {
		const struct mfu_rec_api *a = &r->u.api;
		p = put_delta(p, &d->api_start, a->start_ns);
		p = varint_put(p, a->end_ns - a->start_ns);
		p = varint_put(p, a->tid);
		p = varint_put(p, a->cbid);
		p = put_delta(p, &d->api_corr, a->corr);
		p = varint_put(p, a->kind);
		break;
	}
	case MFU_REC_COPY: {
		const struct mfu_rec_copy *c = &r->u.copy;
		p = varint_put(p, c->start_ns);
		p = varint_put(p, c->end_ns - c->start_ns);
		p = varint_put(p, c->device);
		p = varint_put(p, c->stream);
		p = varint_put(p, c->op);
		p = varint_put(p, c->kind);
		p = varint_put(p, c->bytes);
		p = varint_put(p, c->corr);
		break;
	}
	case MFU_REC_OFFCPU: {
		const struct mfu_rec_offcpu *o = &r->u.offcpu;
		p = varint_put(p, o->start_ns);
		p = varint_put(p, o->end_ns - o->start_ns);
		p = varint_put(p, o->tid);
		p = varint_put(p, o->state);
		p = varint_put(p, o->stack_id);
		break;
	}
	case MFU_REC_STATUS:
		p = varint_put(p, r->u.status.time_ns);
		p = varint_put(p, r->u.status.flags);
		p = varint_put(p, MFU_DROP__COUNT);
		for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
			p = varint_put(p, r->u.status.dropped[i]);
		break;
	case MFU_REC_GOODBYE:
		p = varint_put(p, r->u.goodbye.time_ns);
		p = varint_put(p, zigzag_encode(r->u.goodbye.exit_code));
		break;
	}

	size_t body_len = (size_t)(p - body);
	unsigned len_bytes = varint_len(body_len);
	if (len_bytes > 1)
		memmove(body + len_bytes - 1, body, body_len);
	start[0] = (uint8_t)r->type;
	varint_put(start + 1, body_len);
	e->len += 1 + len_bytes + body_len;
	e->records++;
	return 0;
}

void mfu_dec_init(struct mfu_dec *d, const uint8_t *payload, size_t len)
{
	d->p = payload;
	d->end = payload + len;
	memset(&d->delta, 0, sizeof(d->delta));
	d->checked_only = 0;
}

/* Inside a body, running out of bytes means the body is too short: FIELD. */
#define GET(dst)                                                        \
	do {                                                            \
		uint64_t v_;                                            \
		int rc_ = varint_get(&p, end, &v_);                      \
		if (__builtin_expect(rc_ != 0, 0))                       \
			return rc_ == -MFU_WIRE_E_VARINT ? rc_ : -MFU_WIRE_E_FIELD; \
		(dst) = v_;                                             \
	} while (0)

#define GET_DELTA(dst, base)                                            \
	do {                                                            \
		uint64_t z_;                                            \
		GET(z_);                                                \
		(base) += (uint64_t)zigzag_decode(z_);                   \
		(dst) = (base);                                         \
	} while (0)

static int get_str(const uint8_t **pp, const uint8_t *end, const char **s, uint32_t *len)
{
	const uint8_t *p = *pp;
	uint64_t n;

	GET(n);
	if (n > MFU_STRING_MAX || n > (uint64_t)(end - p))
		return -MFU_WIRE_E_FIELD;
	*s = (const char *)p;
	*len = (uint32_t)n;
	*pp = p + n;
	return 0;
}

static int get_u32(const uint8_t **pp, const uint8_t *end, uint32_t *out, uint64_t max)
{
	const uint8_t *p = *pp;
	uint64_t v;

	GET(v);
	if (v > max)
		return -MFU_WIRE_E_FIELD;
	*out = (uint32_t)v;
	*pp = p;
	return 0;
}

static int get_device(const uint8_t **pp, const uint8_t *end, struct mfu_device_info *dev)
{
	int rc;

	if ((rc = get_u32(pp, end, &dev->index, DEVICE_INDEX_MAX - 1)) ||
	    (rc = get_u32(pp, end, &dev->sm_count, UINT32_MAX)) ||
	    (rc = get_u32(pp, end, &dev->sm_clock_khz, UINT32_MAX)) ||
	    (rc = get_u32(pp, end, &dev->mem_clock_khz, UINT32_MAX)) ||
	    (rc = get_u32(pp, end, &dev->cc_major, UINT32_MAX)) ||
	    (rc = get_u32(pp, end, &dev->cc_minor, UINT32_MAX)))
		return rc;
	return get_str(pp, end, &dev->name, &dev->name_len);
}

static int interval(uint64_t start, uint64_t dur, uint64_t *end)
{
	if (dur >= DURATION_MAX || start + dur < start)
		return -MFU_WIRE_E_FIELD;
	*end = start + dur;
	return 0;
}

/* Record types that come once per connection or per step.  Kept out of line
 * so that the hot decoder stays small and has no address-taken locals
 * (get_str takes &p), which would cost it a stack canary and spills. */
static __attribute__((noinline)) int decode_rare(uint32_t type, const uint8_t *p, const uint8_t *end,
						  struct mfu_record *r)
{
	uint64_t v;
	int rc;

	switch (type) {
	case MFU_REC_STRING:
		GET(r->u.string.id);
		if (r->u.string.id < 1 || r->u.string.id > MFU_STRING_ID_MAX)
			return -MFU_WIRE_E_FIELD;
		return get_str(&p, end, &r->u.string.text, &r->u.string.len);
	case MFU_REC_STEP: {
		struct mfu_rec_step *s = &r->u.step;
		GET(s->begin_ns);
		GET(v);
		GET(s->index);
		GET(s->device);
		GET(s->model_flops);
		GET(s->model_class);
		if (s->device >= DEVICE_INDEX_MAX || s->model_class >= MFU_CLASS_COUNT)
			return -MFU_WIRE_E_FIELD;
		return interval(s->begin_ns, v, &s->end_ns);
	}
	case MFU_REC_HELLO: {
		struct mfu_rec_hello *h = &r->u.hello;
		uint64_t has;
		GET(h->time_ns);
		GET(h->pid);
		GET(v);
		h->rank = zigzag_decode(v);
		GET(v);
		h->local_rank = zigzag_decode(v);
		GET(h->world_size);
		GET(h->flags);
		if ((rc = get_str(&p, end, &h->host, &h->host_len)) ||
		    (rc = get_str(&p, end, &h->job, &h->job_len)) ||
		    (rc = get_str(&p, end, &h->producer, &h->producer_len)))
			return rc;
		GET(has);
		if (has > 1)
			return -MFU_WIRE_E_FIELD;
		h->has_device = (uint32_t)has;
		memset(&h->device, 0, sizeof(h->device));
		h->token = NULL;
		h->token_len = 0;
		if (has && (rc = get_device(&p, end, &h->device)))
			return rc;
		/* token came later: a hello that ends here has none */
		return p < end ? get_str(&p, end, &h->token, &h->token_len) : 0;
	}
	case MFU_REC_DEVICE:
		return get_device(&p, end, &r->u.device);
	case MFU_REC_STATUS: {
		struct mfu_rec_status *s = &r->u.status;
		uint64_t n;
		GET(s->time_ns);
		GET(s->flags);
		GET(n);
		if (n > STATUS_COUNTERS_MAX)
			return -MFU_WIRE_E_FIELD;
		memset(s->dropped, 0, sizeof(s->dropped));
		for (uint64_t i = 0; i < n; i++) {
			GET(v);
			if (i < MFU_DROP__COUNT)
				s->dropped[i] = v;
		}
		return 0;
	}
	case MFU_REC_COPY: {
		struct mfu_rec_copy *c = &r->u.copy;
		GET(c->start_ns);
		GET(v);
		GET(c->device);
		GET(c->stream);
		GET(c->op);
		GET(c->kind);
		GET(c->bytes);
		GET(c->corr);
		if (c->device >= DEVICE_INDEX_MAX)
			return -MFU_WIRE_E_FIELD;
		return interval(c->start_ns, v, &c->end_ns);
	}
	case MFU_REC_OFFCPU: {
		struct mfu_rec_offcpu *o = &r->u.offcpu;
		GET(o->start_ns);
		GET(v);
		GET(o->tid);
		GET(o->state);
		GET(o->stack_id);
		if (o->state >= MFU_OFFCPU__COUNT)
			return -MFU_WIRE_E_FIELD;
		return interval(o->start_ns, v, &o->end_ns);
	}
	case MFU_REC_GOODBYE:
		GET(r->u.goodbye.time_ns);
		GET(v);
		r->u.goodbye.exit_code = zigzag_decode(v);
		return 0;
	default:
		return 0; /* unknown: skipped by length */
	}
}

int mfu_dec_body(uint32_t type, const uint8_t *p, const uint8_t *end, struct mfu_delta *d,
		       struct mfu_record *r)
{
	switch (type) {
	case MFU_REC_KERNEL:
		return decode_kernel(p, end, d, &r->u.kernel, 0);
	case MFU_REC_GEMM:
		return decode_gemm(p, end, d, &r->u.gemm, 0);
	case MFU_REC_API:
		return decode_api(p, end, d, &r->u.api, 0);
	default:
		return decode_rare(type, p, end, r);
	}
}

int mfu_dec_next(struct mfu_dec *d, struct mfu_record *r)
{
	return mfu_dec_step(d, r);
}

static const char *const error_names[MFU_WIRE_E__COUNT] = {
	[MFU_WIRE_OK] = "ok",
	[MFU_WIRE_E_TRUNCATED] = "truncated",
	[MFU_WIRE_E_MAGIC] = "bad magic",
	[MFU_WIRE_E_VERSION] = "unknown version",
	[MFU_WIRE_E_FLAGS] = "reserved flags set",
	[MFU_WIRE_E_HEADER_LEN] = "bad header length",
	[MFU_WIRE_E_OVERSIZE] = "frame over size limit",
	[MFU_WIRE_E_CHECKSUM] = "checksum mismatch",
	[MFU_WIRE_E_ZSTD] = "zstd error",
	[MFU_WIRE_E_INFLATE_LIMIT] = "payload inflates past frame limit",
	[MFU_WIRE_E_RAW_LEN] = "payload shorter than raw_len",
	[MFU_WIRE_E_VARINT] = "overlong varint",
	[MFU_WIRE_E_RECORD_LEN] = "record runs past payload",
	[MFU_WIRE_E_FIELD] = "field out of range",
	[MFU_WIRE_E_NOMEM] = "buffer too small",
};

const char *mfu_wire_strerror(int code)
{
	if (code < 0)
		code = -code;
	return code < MFU_WIRE_E__COUNT ? error_names[code] : "unknown error";
}
