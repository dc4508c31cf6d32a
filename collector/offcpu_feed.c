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

struct feed_src {
	uint32_t pid;
	unsigned refs;
	struct agg_source *src;
	uint64_t ns[MFU_OFFCPU__COUNT];
};

struct offcpu_feed {
	struct offcpu_tracer *t;
	offcpu_sink_fn sink;
	char reason[256];
	struct feed_src *tab;
	unsigned n, cap;
	unsigned last; /* the last hit: events come in runs of one process */
	uint64_t records, unmatched, sink_errors;
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
	free(f->tab);
	free(f);
}

int offcpu_feed_enabled(const struct offcpu_feed *f, const char **reason)
{
	if (reason)
		*reason = !f ? "not started" : f->t ? "" : f->reason;
	return f && f->t;
}

void offcpu_feed_set_sink(struct offcpu_feed *f, offcpu_sink_fn fn)
{
	f->sink = fn;
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
	memcpy(st->ns, f->ns, sizeof(st->ns));
	st->sources = f->n;
}

void offcpu_feed_poll(struct offcpu_feed *f)
{
	if (f->t)
		offcpu_tracer_poll(f->t);
}
