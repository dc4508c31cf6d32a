/* SPDX-License-Identifier: MIT */
/*
 * The off-CPU tracer wired to the collector's sources: pid -> source table,
 * interval -> MFU_REC_OFFCPU record, and the reason BPF is off.  See
 * offcpu_feed.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offcpu_feed.h"

/* Raw records per archive frame; a frame is sealed sooner every second. */
#define FRAME_RAW (64u << 10)
#define FRAME_PERIOD_MS 1000

struct feed_src {
	uint32_t pid;
	unsigned refs;
	struct agg_source *src;
	uint64_t ns[MFU_OFFCPU__COUNT];
	uint8_t *raw; /* FRAME_RAW bytes of encoded records, when archiving */
	struct mfu_enc enc;
};

struct offcpu_feed {
	struct loop *loop;
	struct offcpu_tracer *t;
	offcpu_sink_fn sink;
	offcpu_frame_fn frame_fn;
	void *frame_arg;
	struct mfu_codec *codec;
	uint8_t *frame; /* mfu_frame_bound(FRAME_RAW) */
	struct loop_timer *frame_timer;
	char reason[256];
	struct feed_src *tab;
	unsigned n, cap;
	unsigned last; /* the last hit: events come in runs of one process */
	uint64_t records, unmatched, sink_errors, frames, frame_errors;
	uint64_t ns[MFU_OFFCPU__COUNT];
};

int offcpu_feed_mode_parse(const char *s, enum offcpu_feed_mode *mode, char *err, size_t errlen)
{
	if (!strcmp(s, "auto"))
		*mode = OFFCPU_FEED_AUTO;
	else if (!strcmp(s, "on"))
		*mode = OFFCPU_FEED_ON;
	else if (!strcmp(s, "off"))
		*mode = OFFCPU_FEED_OFF;
	else {
		snprintf(err, errlen, "--bpf wants auto, on or off, not '%.64s'", s);
		return -EINVAL;
	}
	return 0;
}

static struct feed_src *feed_find(struct offcpu_feed *f, uint32_t pid)
{
	if (f->last < f->n && f->tab[f->last].pid == pid)
		return &f->tab[f->last];
	for (unsigned i = 0; i < f->n; i++)
		if (f->tab[i].pid == pid) {
			f->last = i;
			return &f->tab[i];
		}
	return NULL;
}

static void frame_flush(struct offcpu_feed *f, struct feed_src *e)
{
	struct agg_source *s = e->src;
	size_t len;

	if (!e->raw || !e->enc.records)
		return;
	/* Readers know these frames by their first record (offcpu, which no
	 * producer sends) and keep them out of the producer's sequence; the
	 * number is the producer's latest, for a reader that does not. */
	if (mfu_frame_seal(f->codec, e->raw, e->enc.len, s->have_seq ? s->next_seq - 1 : 0, f->frame,
			   mfu_frame_bound(FRAME_RAW), &len) == 0) {
		f->frame_fn(f->frame_arg, s, f->frame, len);
		f->frames++;
	} else {
		f->frame_errors += e->enc.records;
	}
	mfu_enc_reset(&e->enc);
}

static void frame_put(struct offcpu_feed *f, struct feed_src *e, const struct mfu_rec_offcpu *o)
{
	struct mfu_record r = {.type = MFU_REC_OFFCPU, .u.offcpu = *o};

	if (!e->raw) {
		if (!(e->raw = malloc(FRAME_RAW))) {
			f->frame_errors++;
			return;
		}
		mfu_enc_init(&e->enc, e->raw, FRAME_RAW);
	}
	if (mfu_enc_put(&e->enc, &r) == -MFU_WIRE_E_NOMEM) {
		frame_flush(f, e);
		if (mfu_enc_put(&e->enc, &r) == 0)
			return;
		f->frame_errors++;
	}
}

static void on_frame_timer(struct loop *l, struct loop_timer *tm, void *arg)
{
	struct offcpu_feed *f = arg;

	offcpu_tracer_poll(f->t);
	for (unsigned i = 0; i < f->n; i++)
		frame_flush(f, &f->tab[i]);
}

static void on_interval(void *arg, const struct offcpu_interval *iv)
{
	struct offcpu_feed *f = arg;
	struct feed_src *e = feed_find(f, iv->pid);
	struct mfu_rec_offcpu o = {
		.start_ns = iv->start_ns, .end_ns = iv->end_ns, .tid = iv->tid, .state = iv->state,
		/* The wire keeps 0 for "none". */
		.stack_id = iv->stack_id >= 0 ? (uint64_t)iv->stack_id + 1 : 0,
	};

	if (!e) {
		f->unmatched++;
		return;
	}
	f->records++;
	if (f->frame_fn)
		frame_put(f, e, &o);
	f->ns[iv->state] += iv->end_ns - iv->start_ns;
	if (f->sink) {
		if (f->sink(e->src, &o))
			f->sink_errors++;
	} else {
		e->ns[iv->state] += iv->end_ns - iv->start_ns;
	}
}

int offcpu_feed_new(struct loop *l, enum offcpu_feed_mode mode, const struct offcpu_tracer_opts *opts,
		    struct offcpu_feed **out, char *why, size_t whylen)
{
	struct offcpu_feed *f = calloc(1, sizeof(*f));
	int rc = 0;

	*out = NULL;
	if (!f) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	f->loop = l;
	if (mode == OFFCPU_FEED_OFF) {
		snprintf(f->reason, sizeof(f->reason), "--bpf=off");
	} else if ((rc = offcpu_tracer_new(l, opts, on_interval, f, &f->t, f->reason, sizeof(f->reason)))) {
		if (mode == OFFCPU_FEED_ON) {
			snprintf(why, whylen, "%s", f->reason);
			free(f);
			return rc;
		}
		rc = 0;
	}
	*out = f;
	return rc;
}

void offcpu_feed_free(struct offcpu_feed *f)
{
	if (!f)
		return;
	offcpu_tracer_free(f->t);
	loop_timer_del(f->frame_timer);
	for (unsigned i = 0; i < f->n; i++)
		free(f->tab[i].raw);
	free(f->tab);
	mfu_codec_free(f->codec);
	free(f->frame);
	free(f);
}

int offcpu_feed_enabled(const struct offcpu_feed *f, const char **reason)
{
	if (reason)
		*reason = !f ? "not started" : f->t ? "" : f->reason;
	return f && f->t;
}

void offcpu_feed_set_off_reason(struct offcpu_feed *f, const char *reason)
{
	if (!f->t)
		snprintf(f->reason, sizeof(f->reason), "%s", reason);
}

void offcpu_feed_set_sink(struct offcpu_feed *f, offcpu_sink_fn fn)
{
	f->sink = fn;
}

int offcpu_feed_set_archive(struct offcpu_feed *f, offcpu_frame_fn fn, void *arg)
{
	int rc = 0;

	if (!fn || !f->t) {
		loop_timer_del(f->frame_timer);
		f->frame_timer = NULL;
		f->frame_fn = NULL;
		goto out;
	}
	if (!f->codec && !(f->codec = mfu_codec_new(1))) {
		rc = -ENOMEM;
		goto out;
	}
	if (!f->frame && !(f->frame = malloc(mfu_frame_bound(FRAME_RAW)))) {
		rc = -ENOMEM;
		goto out;
	}
	if (!f->frame_timer && (rc = loop_timer_add(f->loop, FRAME_PERIOD_MS, FRAME_PERIOD_MS, on_frame_timer, f,
						    &f->frame_timer)))
		goto out;
	f->frame_fn = fn;
	f->frame_arg = arg;
out:
	return rc;
}

int offcpu_feed_attach(struct offcpu_feed *f, struct agg_source *src, uint32_t pid)
{
	struct feed_src *e;
	int rc;

	if (!f->t)
		return -ENOTCONN;
	if (!pid || !src)
		return -EINVAL;
	if ((e = feed_find(f, pid))) {
		if (e->src != src)
			return -EINVAL;
		e->refs++;
		return 0;
	}
	if (f->n == f->cap) {
		unsigned cap = f->cap ? 2 * f->cap : 16;
		struct feed_src *tab = realloc(f->tab, cap * sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		f->tab = tab;
		f->cap = cap;
	}
	if ((rc = offcpu_watch(f->t, pid)))
		return rc;
	f->tab[f->n++] = (struct feed_src){.pid = pid, .refs = 1, .src = src};
	return 0;
}

void offcpu_feed_detach(struct offcpu_feed *f, uint32_t pid)
{
	struct feed_src *e = feed_find(f, pid);

	if (!e || --e->refs)
		return;
	/* Deliver what the pid left in the ring while src is still valid. */
	offcpu_tracer_poll(f->t);
	offcpu_unwatch(f->t, pid);
	if (f->frame_fn)
		frame_flush(f, e);
	free(e->raw);
	*e = f->tab[--f->n];
	f->last = 0;
}

int offcpu_feed_source_ns(const struct offcpu_feed *f, const struct agg_source *src,
			  uint64_t ns[MFU_OFFCPU__COUNT])
{
	memset(ns, 0, MFU_OFFCPU__COUNT * sizeof(ns[0]));
	for (unsigned i = 0; i < f->n; i++)
		if (f->tab[i].src == src) {
			memcpy(ns, f->tab[i].ns, sizeof(f->tab[i].ns));
			return 0;
		}
	return -ENOENT;
}

void offcpu_feed_stats(struct offcpu_feed *f, struct offcpu_feed_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (f->t)
		offcpu_tracer_stats(f->t, &st->tracer);
	st->records = f->records;
	st->unmatched = f->unmatched;
	st->sink_errors = f->sink_errors;
	st->frames = f->frames;
	st->frame_errors = f->frame_errors;
	memcpy(st->ns, f->ns, sizeof(st->ns));
	st->sources = f->n;
}

void offcpu_feed_poll(struct offcpu_feed *f)
{
	if (f->t)
		offcpu_tracer_poll(f->t);
}
