/* SPDX-License-Identifier: MIT */
/*
 * Applies decoded records to sources and devices: exact totals for the
 * since-start summary, pro-rata buckets for the rolling windows, and the busy
 * union.  Which records carry hardware FLOPs is decided here, by the rule in
 * doc/metrics.md: kernel records, plus gemm records flagged untimed; nested
 * gemm records count nowhere.
 */
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "decode_internal.h"

int agg_new(const struct agg_config *cfg, struct agg **out)
{
	struct agg *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->cfg = *cfg;
	if (!a->cfg.max_sources)
		a->cfg.max_sources = 4096;
	if (!a->cfg.gap_wait_ns)
		a->cfg.gap_wait_ns = AGG_GAP_WAIT_NS;
	a->next_id = 1;
	*out = a;
	return 0;
}

static void source_free(struct agg_source *s)
{
	for (unsigned i = 0; i < s->ndev; i++) {
		gaps_dev_free(&s->dev[i]->gaps);
		busy_free(&s->dev[i]->busy);
		busy_free(&s->dev[i]->busy_all);
		free(s->dev[i]);
	}
	gaps_src_free(&s->gaps);
	for (uint32_t i = 0; i < s->strings_cap; i++)
		free(s->strings[i]);
	free(s->strings);
	free(s);
}

void agg_free(struct agg *a)
{
	if (!a)
		return;
	for (unsigned i = 0; i < a->nsrc; i++)
		source_free(a->src[i]);
	free(a->src);
	free(a);
}

static void copy_text(char *dst, size_t cap, const char *s, uint32_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;
	if (n)
		memcpy(dst, s, n);
	dst[n] = 0;
}

static int text_eq(const char *a, const char *s, uint32_t len)
{
	char tmp[AGG_NAME_MAX];
	copy_text(tmp, sizeof(tmp), s, len);
	return strcmp(a, tmp) == 0;
}

static void source_fill(struct agg_source *s, const struct mfu_rec_hello *h, const char *peer)
{
	copy_text(s->host, sizeof(s->host), h->host, h->host_len);
	copy_text(s->job, sizeof(s->job), h->job, h->job_len);
	copy_text(s->producer, sizeof(s->producer), h->producer, h->producer_len);
	snprintf(s->peer, sizeof(s->peer), "%s", peer ? peer : "");
	s->pid = h->pid;
	s->rank = h->rank;
	s->local_rank = h->local_rank;
	s->world_size = h->world_size;
	s->hello_flags = h->flags;
	s->hello_ns = h->time_ns;
	s->degraded = (h->flags & MFU_HELLO_DEGRADED) != 0;
	if (s->degraded && !s->degraded_since_ns)
		s->degraded_since_ns = h->time_ns;
}

static inline struct agg_device *device_get(struct agg_source *s, uint64_t index);
static int device_err(const struct agg_source *s);

static int device_describe(struct agg_source *s, const struct mfu_device_info *info)
{
	struct agg_device *d = device_get(s, info->index);

	if (!d)
		return device_err(s);
	d->info = *info;
	copy_text(d->name, sizeof(d->name), info->name, info->name_len);
	d->info.name = d->name;
	d->info.name_len = (uint32_t)strlen(d->name);
	d->have_info = 1;
	d->peak = peak_lookup(d->name, d->info.name_len, info->sm_count);
	return 0;
}

int agg_hello(struct agg *a, const struct mfu_rec_hello *h, const char *peer, uint64_t now_mono_ns,
	      struct agg_source **out)
{
	struct agg_source *s = NULL;

	for (unsigned i = 0; i < a->nsrc; i++) {
		struct agg_source *c = a->src[i];
		if (c->pid == h->pid && c->hello_ns == h->time_ns && !c->connected &&
		    text_eq(c->host, h->host, h->host_len) && text_eq(c->job, h->job, h->job_len)) {
			s = c;
			break;
		}
	}
	if (!s) {
		if (a->nsrc >= a->cfg.max_sources)
			return -ENOSPC;
		if (a->nsrc == a->cap) {
			unsigned cap = a->cap ? a->cap * 2 : 16;
			struct agg_source **p = realloc(a->src, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			a->src = p;
			a->cap = cap;
		}
		s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		s->id = a->next_id++;
		s->gaps.wait_ns = a->cfg.gap_wait_ns;
		s->gaps.off = a->cfg.no_gaps;
		s->gaps.settle_ns = a->cfg.settle_ns ? a->cfg.settle_ns : AGG_GAP_SETTLE_NS;
		s->first_ns = h->time_ns;
		s->max_ns = h->time_ns;
		s->max_mono_ns = now_mono_ns;
		a->src[a->nsrc++] = s;
	}
	source_fill(s, h, peer);
	s->connections++;
	/* A reconnecting source keeps its sequence, so frames it dropped while
	 * away count as lost, and frames it sends again are known as such. */
	s->connected = 1;
	s->gone = 0;
	if (h->has_device) {
		int rc = device_describe(s, &h->device);
		if (rc)
			return rc;
	}
	*out = s;
	return 0;
}

/* Finds or makes device index; NULL when the source has AGG_DEVICES_MAX
 * already or memory ran out (device_err says which). */
static __attribute__((noinline)) struct agg_device *device_get_slow(struct agg_source *s, uint64_t index)
{
	for (unsigned i = 0; i < s->ndev; i++)
		if (s->dev[i]->index == index)
			return s->last_dev = s->dev[i];
	if (s->ndev >= AGG_DEVICES_MAX)
		return NULL;
	struct agg_device *d = malloc(sizeof(*d));
	if (!d)
		return NULL;
	memset(d, 0, offsetof(struct agg_device, win));
	window_init(&d->win);
	busy_init(&d->busy);
	busy_init(&d->busy_all);
	/* Until the device's first copy, the union of kernels and copies is the
	 * kernels' union: one union feeds both fields. */
	d->busy.mirror = WF_BUSY_ALL_NS;
	d->busy_all.field = WF_BUSY_ALL_NS;
	d->src = s;
	d->index = (uint32_t)index;
	s->dev[s->ndev++] = d;
	return s->last_dev = d;
}

/* A pointer, not an out-parameter: callers on the per-record path then
 * keep no address-taken local (which -fstack-protector-strong would guard
 * with a canary on every record). */
static inline struct agg_device *device_get(struct agg_source *s, uint64_t index)
{
	if (__builtin_expect(s->last_dev && s->last_dev->index == index, 1))
		return s->last_dev;
	return device_get_slow(s, index);
}

static int device_err(const struct agg_source *s)
{
	return s->ndev >= AGG_DEVICES_MAX ? -MFU_WIRE_E_FIELD : -MFU_WIRE_E_NOMEM;
}

/* A record stamped long before its source started or far past it is a
 * producer's clock glitch (a zero start, a garbage end); one such record
 * would otherwise add decades of busy time or push every later window out
 * of the ring.  Dropped and counted. */
#define TIME_SLACK_BEFORE_NS (UINT64_C(60) * 1000000000u)
#define TIME_SPAN_MAX_NS (UINT64_C(400) * 86400 * 1000000000u)

static int plausible(struct agg_source *s, uint64_t start, uint64_t end)
{
	if (!s->hello_ns)
		return 1;
	if (start + TIME_SLACK_BEFORE_NS < s->hello_ns || end > s->hello_ns + TIME_SPAN_MAX_NS) {
		s->bad_time++;
		return 0;
	}
	return 1;
}

static void seen(struct agg_source *s, uint64_t t, uint64_t now_mono_ns)
{
	if (t > s->max_ns) {
		s->max_ns = t;
		s->max_mono_ns = now_mono_ns;
		/* Before the record is applied: its own interval lies past the
		 * watermark unless it is late anyway. */
		if (t > s->gaps.settle_ns && t - s->gaps.settle_ns >= s->gaps.next_sweep && !s->gaps.off)
			gaps_advance(s, t - s->gaps.settle_ns);
	}
	/* The since-start span begins at the hello when the producer gave one. */
	if (!s->hello_ns && (!s->first_ns || t < s->first_ns))
		s->first_ns = t;
}

static void set_degraded(struct agg_source *s, int degraded, uint64_t t)
{
	if (degraded && !s->degraded)
		s->degraded_since_ns = t;
	else if (!degraded && s->degraded && t > s->degraded_since_ns)
		s->degraded_ns += t - s->degraded_since_ns;
	s->degraded = degraded;
}

uint64_t agg_source_degraded_ns(const struct agg_source *s)
{
	uint64_t open = s->degraded && s->max_ns > s->degraded_since_ns ? s->max_ns - s->degraded_since_ns : 0;
	return s->degraded_ns + open;
}

static unsigned add_flops(struct agg_device *d, unsigned cls, uint64_t flops, int remat, uint64_t start,
			  uint64_t end)
{
	unsigned work;

	if (!flops)
		return 0;
	d->tot.flops[cls] += flops;
	work = window_add_span(&d->win, WF_FLOPS + cls, start, end, (double)flops);
	if (remat) {
		d->tot.remat_flops += flops;
		work += window_add_span(&d->win, WF_REMAT_FLOPS, start, end, (double)flops);
	}
	return work;
}

/* The apply_* functions stay out of line: inlined, they made
 * agg_source_record one large function whose prologue (six saved registers,
 * a stack canary) every record paid, api records included.  Out of line,
 * agg_source_record is a dispatcher that tail-calls them. */
static __attribute__((noinline)) int apply_kernel(struct agg_source *s, const struct mfu_rec_kernel *k)
{
	struct agg_device *d = device_get(s, k->device);

	if (!d)
		return device_err(s);
	uint64_t dur = k->end_ns - k->start_ns;
	unsigned cls = (unsigned)(k->flags & 0xf);
	int remat = (k->flags & MFU_KF_REMAT) != 0;

	/* Known: the kernel belongs to a counted GEMM call or a declared region,
	 * whose FLOPs ride on its first kernel (split-K and reductions follow
	 * with none): all of the call's kernel time is covered. */
	int known = k->flops || (k->flags & (MFU_KF_GEMM | MFU_KF_DECLARED));

	d->tot.kernels++;
	d->tot.kernel_ns += dur;
	if (known)
		d->tot.known_kernel_ns += dur;
	if (k->flops) {
		d->tot.flops[cls] += k->flops;
		if (remat)
			d->tot.remat_flops += k->flops;
	}
	if (k->flags & MFU_KF_GEMM)
		d->tot.gemm_kernel_ns += dur;

	/* Nearly every kernel lies inside one 100 ms bucket: add to it directly
	 * instead of going through the pro-rata path once per field. */
	struct window_bucket *b = window_bucket_of(&d->win, k->start_ns, k->end_ns);
	if (b) {
		b->v[WF_KERNELS] += 1;
		b->v[WF_KERNEL_NS] += (double)dur;
		if (known)
			b->v[WF_KNOWN_KERNEL_NS] += (double)dur;
		if (k->flops) {
			b->v[WF_FLOPS + cls] += (double)k->flops;
			if (remat)
				b->v[WF_REMAT_FLOPS] += (double)k->flops;
		}
		if (k->flags & MFU_KF_GEMM)
			b->v[WF_GEMM_KERNEL_NS] += (double)dur;
	} else {
		unsigned work = 0;
		window_add_at(&d->win, WF_KERNELS, k->end_ns, 1);
		work += window_add_span(&d->win, WF_KERNEL_NS, k->start_ns, k->end_ns, (double)dur);
		if (known)
			work += window_add_span(&d->win, WF_KNOWN_KERNEL_NS, k->start_ns, k->end_ns, (double)dur);
		if (k->flops) {
			work += window_add_span(&d->win, WF_FLOPS + cls, k->start_ns, k->end_ns, (double)k->flops);
			if (remat)
				work += window_add_span(&d->win, WF_REMAT_FLOPS, k->start_ns, k->end_ns,
							(double)k->flops);
		}
		if (k->flags & MFU_KF_GEMM)
			work += window_add_span(&d->win, WF_GEMM_KERNEL_NS, k->start_ns, k->end_ns, (double)dur);
		s->span_work += 2 * work; /* the busy union covers the same span once more, at most */
	}
	uint64_t added = busy_add(&d->busy, &d->win, b, k->start_ns, k->end_ns);
	d->tot.busy_ns += added;
	if (d->busy.mirror == WF_BUSY_ALL_NS)
		d->tot.busy_all_ns += added;
	else
		d->tot.busy_all_ns += busy_add(&d->busy_all, &d->win, b, k->start_ns, k->end_ns);
	if (!s->gaps.off)
		gaps_kernel(s, d, b, k); /* -ENOMEM leaves the kernel out of gap analysis only */
	return 0;
}

static __attribute__((noinline)) int apply_copy(struct agg_source *s, const struct mfu_rec_copy *c)
{
	struct agg_device *d = device_get(s, c->device);

	if (!d)
		return device_err(s);
	d->tot.copies++;
	d->tot.copy_ns += c->end_ns - c->start_ns;
	struct window_bucket *b = window_bucket_of(&d->win, c->start_ns, c->end_ns);
	if (!b) /* the busy union covers the copy's buckets at most once */
		s->span_work += (c->end_ns - c->start_ns) / WINDOW_BUCKET_NS + 2;
	/* The first copy splits the unions: kernels and copies go on from an
	 * exact copy of the kernels' one.  Out of memory, the copy stays out of
	 * the union (and gap analysis still has it). */
	if (d->busy.mirror == WF_BUSY_ALL_NS && !busy_clone(&d->busy_all, &d->busy, WF_BUSY_ALL_NS))
		d->busy.mirror = WF__COUNT;
	if (d->busy.mirror != WF_BUSY_ALL_NS)
		d->tot.busy_all_ns += busy_add(&d->busy_all, &d->win, b, c->start_ns, c->end_ns);
	if (!s->gaps.off)
		gaps_copy(s, d, c);
	return 0;
}

int agg_source_offcpu(struct agg_source *s, const struct mfu_rec_offcpu *o)
{
	if (s->gaps.off || o->end_ns < o->start_ns || !plausible(s, o->start_ns, o->end_ns))
		return 0;
	return gaps_offcpu(s, o);
}

void agg_source_accept_offcpu(struct agg_source *s, int accept)
{
	s->gaps.accept_offcpu = accept;
}

static __attribute__((noinline)) int apply_gemm(struct agg_source *s, const struct mfu_rec_gemm *g)
{
	if (g->flags & MFU_KF_NESTED)
		return 0;
	struct agg_device *d = device_get(s, g->device);
	if (!d)
		return device_err(s);
	/* A declared region without kernel timing travels as a declared gemm
	 * record, and the FLOPs of kernels whose records never came as an
	 * orphan one: hardware FLOPs, but no cuBLAS call. */
	if (!(g->flags & (MFU_KF_DECLARED | MFU_KF_ORPHAN))) {
		d->tot.gemm_calls++;
		d->tot.gemm_flops += g->flops;
		window_add_at(&d->win, WF_GEMM_CALLS, g->start_ns, 1);
		window_add_at(&d->win, WF_GEMM_FLOPS, g->start_ns, (double)g->flops);
	}
	if (g->flags & MFU_KF_UNTIMED)
		s->span_work += add_flops(d, (unsigned)(g->flags & 0xf), g->flops, (g->flags & MFU_KF_REMAT) != 0,
			  g->start_ns, g->end_ns);
	return 0;
}

static __attribute__((noinline)) int apply_step(struct agg_source *s, const struct mfu_rec_step *st)
{
	struct agg_device *d = device_get(s, st->device);

	if (!d)
		return device_err(s);
	d->tot.steps++;
	d->tot.step_ns += st->end_ns - st->begin_ns;
	window_add_at(&d->win, WF_STEPS, st->end_ns, 1);
	window_add_at(&d->win, WF_STEP_NS, st->end_ns, (double)(st->end_ns - st->begin_ns));
	if (st->model_flops) {
		d->tot.model_flops += st->model_flops;
		s->span_work += window_add_span(&d->win, WF_MODEL_FLOPS, st->begin_ns, st->end_ns,
						(double)st->model_flops);
	}
	if (st->model_class)
		d->declared_class = (unsigned)st->model_class;
	return 0;
}

/* Bytes a stored string costs: its text, the NUL and malloc's overhead. */
#define STRING_COST(n) ((size_t)(n) + 1 + 32)

static __attribute__((noinline)) int put_string(struct agg_source *s, const struct mfu_rec_string *str)
{
	/* The id table counts against the budget too: ids are capped at 2^20,
	 * but a million empty names must not cost 48 MiB for free. */
	if (str->id >= s->strings_cap) {
		uint32_t cap = s->strings_cap ? s->strings_cap : 256;
		while (cap <= str->id)
			cap *= 2;
		size_t grow = (size_t)(cap - s->strings_cap) * sizeof(char *);
		if (s->string_bytes + grow > AGG_STRING_BYTES_MAX)
			return -MFU_WIRE_E_OVERSIZE;
		char **p = realloc(s->strings, cap * sizeof(*p));
		if (!p)
			return -MFU_WIRE_E_NOMEM;
		memset(p + s->strings_cap, 0, (cap - s->strings_cap) * sizeof(*p));
		s->strings = p;
		s->strings_cap = cap;
		s->string_bytes += grow;
	}
	char *old = s->strings[str->id];
	size_t old_cost = old ? STRING_COST(strlen(old)) : 0;
	size_t len = strnlen(str->text, str->len); /* an embedded NUL ends the name */
	if (s->string_bytes - old_cost + STRING_COST(len) > AGG_STRING_BYTES_MAX)
		return -MFU_WIRE_E_OVERSIZE;
	char *t = malloc(len + 1);
	if (!t)
		return -MFU_WIRE_E_NOMEM;
	memcpy(t, str->text, len);
	t[len] = 0;
	free(old);
	s->strings[str->id] = t;
	s->string_bytes = s->string_bytes - old_cost + STRING_COST(len);
	return 0;
}

const char *agg_source_string(const struct agg_source *s, uint64_t id, uint32_t *len)
{
	const char *t = id < s->strings_cap ? s->strings[id] : NULL;
	*len = t ? (uint32_t)strlen(t) : 0;
	return t;
}

/* Inline in both callers: the feed loop then goes from the decoder's
 * dispatch on the type to the record's handler without a call and a
 * second dispatch. */
static inline __attribute__((always_inline)) int source_record(struct agg_source *s, const struct mfu_record *r,
							       uint64_t now_mono_ns)
{
	s->records++;
	switch (r->type) {
	case MFU_REC_KERNEL:
		if (!plausible(s, r->u.kernel.start_ns, r->u.kernel.end_ns))
			return 0;
		seen(s, r->u.kernel.end_ns, now_mono_ns);
		return apply_kernel(s, &r->u.kernel);
	case MFU_REC_GEMM:
		if (!plausible(s, r->u.gemm.start_ns, r->u.gemm.end_ns))
			return 0;
		seen(s, r->u.gemm.end_ns, now_mono_ns);
		return apply_gemm(s, &r->u.gemm);
	case MFU_REC_API: {
		if (!plausible(s, r->u.api.start_ns, r->u.api.end_ns))
			return 0;
		seen(s, r->u.api.end_ns, now_mono_ns);
		if (s->last_dev)
			s->last_dev->tot.api_calls++;
		if (!s->gaps.off)
			gaps_api(s, &r->u.api);
		return 0;
	}
	case MFU_REC_COPY:
		if (!plausible(s, r->u.copy.start_ns, r->u.copy.end_ns))
			return 0;
		seen(s, r->u.copy.end_ns, now_mono_ns);
		return apply_copy(s, &r->u.copy);
	case MFU_REC_OFFCPU:
		/* Only the collector's own tracer knows when a thread was off-CPU;
		 * a producer that sends one is ignored, and counted. */
		if (!s->gaps.accept_offcpu) {
			s->gaps.offcpu_ignored++;
			s->unknown_records++;
			return 0;
		}
		return agg_source_offcpu(s, &r->u.offcpu);
	case MFU_REC_STEP:
		if (!plausible(s, r->u.step.begin_ns, r->u.step.end_ns))
			return 0;
		seen(s, r->u.step.end_ns, now_mono_ns);
		return apply_step(s, &r->u.step);
	case MFU_REC_STRING:
		return put_string(s, &r->u.string);
	case MFU_REC_DEVICE:
		return device_describe(s, &r->u.device);
	case MFU_REC_STATUS:
		if (plausible(s, r->u.status.time_ns, r->u.status.time_ns))
			seen(s, r->u.status.time_ns, now_mono_ns);
		set_degraded(s, (r->u.status.flags & MFU_STATUS_DEGRADED) != 0, r->u.status.time_ns);
		/* Cumulative counters: a lost or reordered status never lowers them. */
		for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
			if (r->u.status.dropped[i] > s->dropped[i])
				s->dropped[i] = r->u.status.dropped[i];
		return 0;
	case MFU_REC_GOODBYE:
		if (!plausible(s, r->u.goodbye.time_ns, r->u.goodbye.time_ns))
			return 0;
		seen(s, r->u.goodbye.time_ns, now_mono_ns);
		s->goodbye_ns = r->u.goodbye.time_ns;
		return 0;
	case MFU_REC_HELLO:
		return -MFU_WIRE_E_FIELD; /* one hello per connection */
	default:
		s->unknown_records++;
		return 0;
	}
}

int agg_source_record(struct agg_source *s, const struct mfu_record *r, uint64_t now_mono_ns)
{
	return source_record(s, r, now_mono_ns);
}

int agg_source_feed(struct agg_source *s, struct mfu_dec *d, uint64_t now_mono_ns, uint64_t work0,
		    uint64_t work_max)
{
	struct mfu_record r;
	int rc;

	while ((rc = mfu_dec_step(d, &r)) == 1) {
		if ((rc = source_record(s, &r, now_mono_ns)))
			return rc;
		if (__builtin_expect(s->span_work - work0 > work_max, 0))
			return 1;
	}
	return rc;
}

int agg_source_seq_seen(const struct agg_source *s, uint32_t seq)
{
	return s->have_seq && (int32_t)(seq - s->next_seq) < 0;
}

void agg_source_frame_unnumbered(struct agg_source *s, size_t bytes)
{
	s->frames++;
	s->bytes += bytes;
}

void agg_source_frame(struct agg_source *s, uint32_t seq, size_t bytes)
{
	int32_t ahead = (int32_t)(seq - s->next_seq);

	s->frames++;
	s->bytes += bytes;
	/* Only a jump forward is a loss; a repeated or older number (a replay, a
	 * duplicate) is not 4 billion lost frames. */
	if (s->have_seq && ahead < 0) {
		s->dup_frames++;
		return;
	}
	if (s->have_seq && ahead > 0)
		s->seq_gaps += (uint32_t)ahead;
	s->have_seq = 1;
	s->next_seq = seq + 1;
}

void agg_source_disconnect(struct agg_source *s, uint64_t now_mono_ns)
{
	gaps_flush(s); /* nothing more comes on this connection */
	s->connected = 0;
	s->gone = 1;
	s->gone_mono_ns = now_mono_ns;
}

unsigned agg_evict(struct agg *a, uint64_t now_mono_ns, uint64_t retain_ns)
{
	unsigned kept = 0, freed = 0;

	for (unsigned i = 0; i < a->nsrc; i++) {
		struct agg_source *s = a->src[i];
		if (!s->connected && s->gone && now_mono_ns - s->gone_mono_ns > retain_ns) {
			source_free(s);
			freed++;
		} else {
			a->src[kept++] = s;
		}
	}
	a->nsrc = kept;
	return freed;
}

static uint64_t source_now(const struct agg *a, const struct agg_source *s, uint64_t now_mono_ns)
{
	if (a->cfg.offline || now_mono_ns < s->max_mono_ns)
		return s->max_ns;
	/* Data time advances with the collector's clock between records, so an
	 * idle or finished source's windows drain to zero instead of freezing. */
	return s->max_ns + (now_mono_ns - s->max_mono_ns);
}

void agg_advance(struct agg *a, uint64_t now_mono_ns)
{
	for (unsigned i = 0; i < a->nsrc; i++) {
		struct agg_source *s = a->src[i];
		uint64_t t = source_now(a, s, now_mono_ns);
		if (s->gone)
			gaps_flush(s);
		else if (t > s->gaps.settle_ns)
			gaps_advance(s, t - s->gaps.settle_ns);
	}
}

void agg_finish(struct agg *a)
{
	for (unsigned i = 0; i < a->nsrc; i++)
		gaps_flush(a->src[i]);
}

uint64_t agg_source_window_end(const struct agg *a, const struct agg_source *s, uint64_t now_mono_ns)
{
	uint64_t t = source_now(a, s, now_mono_ns);
	uint64_t settle = a->cfg.offline ? 0 : a->cfg.settle_ns;

	t = t > settle ? t - settle : 0;
	/* Offline, the last partial bucket still belongs in the window. */
	if (a->cfg.offline)
		t += WINDOW_BUCKET_NS - 1;
	return t / WINDOW_BUCKET_NS * WINDOW_BUCKET_NS;
}

void agg_source_span(const struct agg *a, const struct agg_source *s, uint64_t now_mono_ns,
		     uint64_t *first, uint64_t *end)
{
	*first = s->first_ns;
	/* Kernel records can end after the goodbye's host stamp (work still
	 * queued at exit, or the GPU clock a little ahead): the span covers
	 * them, or busy time could exceed it. */
	if (s->goodbye_ns)
		*end = s->goodbye_ns > s->max_ns ? s->goodbye_ns : s->max_ns;
	else if (s->gone)
		*end = s->max_ns;
	else
		*end = source_now(a, s, now_mono_ns);
	if (*end < *first)
		*end = *first;
}

double agg_device_peak(const struct agg *a, const struct agg_device *d, unsigned cls,
		       const char **origin)
{
	if (cls == 0 || cls >= MFU_CLASS_COUNT) {
		*origin = "unknown";
		return 0;
	}
	if (a->cfg.have_override && a->cfg.override_tflops[cls] > 0) {
		*origin = "override";
		return a->cfg.override_tflops[cls] * 1e12;
	}
	if (d->peak && d->peak->tflops[cls] > 0) {
		*origin = "table";
		return d->peak->tflops[cls] * 1e12;
	}
	*origin = "unknown";
	return 0;
}
