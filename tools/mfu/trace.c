/* SPDX-License-Identifier: MIT */
/*
 * mfu trace: archive files to a Chrome/Perfetto trace (the JSON "traceEvents"
 * format).  Per source, a host process with one track per thread (driver API
 * calls: launches, syncs, blocking copies) and a sibling off-CPU track, and
 * one process per device with a track per stream (kernels and copies), a
 * "steps" track and HFU/MFU counters per 100 ms bucket.  The frames go
 * through the collector's own ingest and model, as in mfu report, so the
 * counters are figures_device()'s numbers for each bucket, not a second
 * implementation of the formulas.  Slices are kept in memory, sorted, and
 * spread over as many lanes per track as it takes for every lane to nest
 * properly, which viewers require of one track.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "archive_files.h"
#include "cli.h"
#include "figures.h"
#include "ingest.h"
#include "options.h"
#include "strbuf.h"

static const char usage[] =
	"usage: mfu trace -o OUT.json [--peak-tflops SPEC] [--model-dtype DTYPE] [--max-events N] FILE...\n"
	"Writes archived frames (mfud --archive, mfu run --archive, mfu-synth --out) as a\n"
	"Chrome/Perfetto trace: kernels and copies per device stream, API calls and off-CPU\n"
	"time per host thread, steps, and HFU/MFU counters per 100 ms.\n";

/* Buckets this far behind a source's newest data are final: records arrive
 * up to a few flush periods late, and the ring holds 102.4 s. */
#define SETTLE_NS (600 * WINDOW_BUCKET_NS)
#define MAX_EVENTS_DEFAULT (16u << 20)

enum ev_type { EV_KERNEL, EV_COPY, EV_API, EV_OFFCPU, EV_STEP };

struct ev {
	uint64_t start, end;
	uint32_t track;
	uint32_t type;
	uint64_t a, b, c, d; /* per type: on_record fills them, put_event reads them */
};

enum track_kind { TK_STREAM, TK_STEPS, TK_THREAD, TK_OFFCPU };

struct track {
	uint32_t pid;
	uint32_t kind;
	uint64_t id; /* stream, tid */
	uint32_t lanes;
	uint32_t first_tid; /* lane l is thread first_tid + l of pid */
};

struct proc {
	struct agg_source *src;
	int device; /* -1: the host process */
	uint32_t next_tid;
	uint64_t next_bucket; /* devices: the next bucket whose counters are due */
};

struct counter {
	uint64_t t;
	uint32_t pid;
	double hfu, mfu; /* NaN: unknown */
};

struct names {
	struct {
		char *s;
		uint32_t len;
		uint64_t hash;
	} *v;
	uint32_t n, cap;
	uint32_t *slot; /* open addressing: index + 1; 0 empty */
	uint32_t slots;
};

struct trace {
	struct agg *agg;
	struct mfu_codec *codec; /* decoding for events; ingest has its own */
	struct ev *ev;
	size_t nev, cap, max_events, dropped_events;
	struct track *tracks;
	uint32_t ntracks, cap_tracks;
	struct proc *procs;
	uint32_t nprocs, cap_procs;
	struct counter *ctr;
	size_t nctr, cap_ctr;
	struct names names;
	int oom;
};

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(p, n * size);
	if (q)
		*cap = n;
	return q;
}

/* ---- kernel names: each distinct text once ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* Returns the name's index + 1, or 0 when out of memory. */
static uint32_t name_intern(struct names *nm, const char *s, uint32_t len)
{
	uint64_t h = hash_bytes(s, len);

	if ((nm->n + 1) * 2 > nm->slots) {
		uint32_t slots = nm->slots ? nm->slots * 2 : 1024;
		uint32_t *t = calloc(slots, sizeof(*t));
		if (!t)
			return 0;
		for (uint32_t i = 0; i < nm->n; i++) {
			uint32_t j = (uint32_t)nm->v[i].hash & (slots - 1);
			while (t[j])
				j = (j + 1) & (slots - 1);
			t[j] = i + 1;
		}
		free(nm->slot);
		nm->slot = t;
		nm->slots = slots;
	}
	uint32_t j = (uint32_t)h & (nm->slots - 1);
	for (; nm->slot[j]; j = (j + 1) & (nm->slots - 1)) {
		uint32_t i = nm->slot[j] - 1;
		if (nm->v[i].hash == h && nm->v[i].len == len && !memcmp(nm->v[i].s, s, len))
			return i + 1;
	}
	if (nm->n == nm->cap) {
		size_t cap = nm->cap;
		void *v = grow(nm->v, &cap, (size_t)nm->n + 1, sizeof(*nm->v));
		if (!v)
			return 0;
		nm->v = v;
		nm->cap = (uint32_t)cap;
	}
	char *copy = malloc(len ? len : 1);
	if (!copy)
		return 0;
	memcpy(copy, s, len);
	nm->v[nm->n].s = copy;
	nm->v[nm->n].len = len;
	nm->v[nm->n].hash = h;
	nm->slot[j] = ++nm->n;
	return nm->n;
}

static void names_free(struct names *nm)
{
	for (uint32_t i = 0; i < nm->n; i++)
		free(nm->v[i].s);
	free(nm->v);
	free(nm->slot);
}

/* ---- processes and tracks ---- */

/* The process of a source's host (device < 0) or of one of its devices;
 * pids are 1, 2, ... in order of appearance.  Returns 0 when out of memory. */
static uint32_t proc_of(struct trace *t, struct agg_source *s, int device)
{
	for (uint32_t i = 0; i < t->nprocs; i++)
		if (t->procs[i].src == s && t->procs[i].device == device)
			return i + 1;
	size_t cap = t->cap_procs;
	struct proc *p = grow(t->procs, &cap, (size_t)t->nprocs + 1, sizeof(*p));
	if (!p)
		return 0;
	t->procs = p;
	t->cap_procs = (uint32_t)cap;
	uint64_t first = s->first_ns;
	t->procs[t->nprocs] = (struct proc){.src = s, .device = device, .next_tid = 1,
					    .next_bucket = first / WINDOW_BUCKET_NS};
	return ++t->nprocs;
}

/* Returns the track's index + 1, or 0 when out of memory. */
static uint32_t track_of(struct trace *t, uint32_t pid, uint32_t kind, uint64_t id)
{
	/* the newest tracks are the likeliest */
	for (uint32_t i = t->ntracks; i-- > 0;)
		if (t->tracks[i].pid == pid && t->tracks[i].kind == kind && t->tracks[i].id == id)
			return i + 1;
	size_t cap = t->cap_tracks;
	struct track *tr = grow(t->tracks, &cap, (size_t)t->ntracks + 1, sizeof(*tr));
	if (!tr)
		return 0;
	t->tracks = tr;
	t->cap_tracks = (uint32_t)cap;
	t->tracks[t->ntracks] = (struct track){.pid = pid, .kind = kind, .id = id};
	return ++t->ntracks;
}

static void add_event(struct trace *t, uint32_t pid, uint32_t kind, uint64_t id, const struct ev *e)
{
	if (!pid) {
		t->oom = 1;
		return;
	}
	if (t->nev >= t->max_events) {
		t->dropped_events++;
		return;
	}
	uint32_t tr = track_of(t, pid, kind, id);
	struct ev *v = grow(t->ev, &t->cap, t->nev + 1, sizeof(*v));
	if (!tr || !v) {
		t->oom = 1;
		return;
	}
	t->ev = v;
	t->ev[t->nev] = *e;
	t->ev[t->nev].track = tr - 1;
	if (t->ev[t->nev].end < t->ev[t->nev].start)
		t->ev[t->nev].end = t->ev[t->nev].start;
	t->nev++;
}

/* ---- counters: figures_device() for one 100 ms bucket ---- */

/* figures_device() measures the window that ends where the source's data
 * ends.  For an earlier bucket the source is made, for the call, to end its
 * data at the bucket's end while its span keeps its real end: the window and
 * the span then clip exactly as the collector's own windows do. */
static void bucket_figures(const struct agg *a, struct agg_device *d, uint64_t hi, struct figures *f)
{
	struct agg_source *s = d->src;
	uint64_t first, end, max_ns = s->max_ns, goodbye = s->goodbye_ns;

	agg_source_span(a, s, 0, &first, &end);
	/* the span may end inside the last bucket: data past it would stretch
	 * the span; offline, the window still ends at the bucket's edge */
	s->max_ns = hi < end ? hi : end;
	s->goodbye_ns = end;
	figures_device(a, d, WINDOW_BUCKET_NS, 0, f);
	s->max_ns = max_ns;
	s->goodbye_ns = goodbye;
}

static void add_counter(struct trace *t, uint32_t pid, uint64_t when, double hfu, double mfu)
{
	struct counter *c = grow(t->ctr, &t->cap_ctr, t->nctr + 1, sizeof(*c));
	if (!c) {
		t->oom = 1;
		return;
	}
	t->ctr = c;
	t->ctr[t->nctr++] = (struct counter){when, pid, hfu, mfu};
}

/* Adds counters for s's buckets that end at or before until (all: every
 * bucket up to the end of its data, and a closing sample at the span's end). */
static void counters_due(struct trace *t, struct agg_source *s, uint64_t until, int all)
{
	uint64_t first, end;

	agg_source_span(t->agg, s, 0, &first, &end);
	uint64_t last = agg_source_window_end(t->agg, s, 0);
	for (unsigned i = 0; i < s->ndev; i++) {
		struct agg_device *d = s->dev[i];
		uint32_t pid = proc_of(t, s, (int)d->index);
		if (!pid) {
			t->oom = 1;
			return;
		}
		struct proc *p = &t->procs[pid - 1];
		uint64_t stop = until;
		if (all)
			stop = last > end ? last : (end + WINDOW_BUCKET_NS - 1) / WINDOW_BUCKET_NS * WINDOW_BUCKET_NS;
		for (; (p->next_bucket + 1) * WINDOW_BUCKET_NS <= stop; p->next_bucket++) {
			uint64_t lo = p->next_bucket * WINDOW_BUCKET_NS, hi = lo + WINDOW_BUCKET_NS;
			if (hi <= first || lo >= end)
				continue;
			struct figures f;
			bucket_figures(t->agg, d, hi, &f);
			add_counter(t, pid, lo > first ? lo : first, f.hfu, f.mfu);
		}
		if (all && end > first)
			add_counter(t, pid, end, 0, 0);
	}
}

/* ---- reading ---- */

static void on_record(struct trace *t, struct agg_source *s, const struct mfu_record *r)
{
	struct ev e = {0};

	switch (r->type) {
	case MFU_REC_KERNEL: {
		uint32_t len = 0;
		const char *name = agg_source_string(s, r->u.kernel.name_id, &len);
		e = (struct ev){r->u.kernel.start_ns, r->u.kernel.end_ns, 0, EV_KERNEL, r->u.kernel.flops,
				r->u.kernel.corr, r->u.kernel.call, 0};
		if (name && (e.d = name_intern(&t->names, name, len)) == 0)
			t->oom = 1;
		add_event(t, proc_of(t, s, (int)r->u.kernel.device), TK_STREAM, r->u.kernel.stream, &e);
		break;
	}
	case MFU_REC_COPY:
		e = (struct ev){r->u.copy.start_ns, r->u.copy.end_ns, 0, EV_COPY, r->u.copy.op, r->u.copy.kind,
				r->u.copy.bytes, r->u.copy.corr};
		add_event(t, proc_of(t, s, (int)r->u.copy.device), TK_STREAM, r->u.copy.stream, &e);
		break;
	case MFU_REC_API:
		e = (struct ev){r->u.api.start_ns, r->u.api.end_ns, 0, EV_API, r->u.api.kind, r->u.api.cbid,
				r->u.api.corr, 0};
		add_event(t, proc_of(t, s, -1), TK_THREAD, r->u.api.tid, &e);
		break;
	case MFU_REC_OFFCPU:
		e = (struct ev){r->u.offcpu.start_ns, r->u.offcpu.end_ns, 0, EV_OFFCPU, r->u.offcpu.state,
				r->u.offcpu.stack_id, 0, 0};
		add_event(t, proc_of(t, s, -1), TK_OFFCPU, r->u.offcpu.tid, &e);
		break;
	case MFU_REC_STEP:
		e = (struct ev){r->u.step.begin_ns, r->u.step.end_ns, 0, EV_STEP, r->u.step.index,
				r->u.step.model_flops, 0, 0};
		add_event(t, proc_of(t, s, (int)r->u.step.device), TK_STEPS, 0, &e);
		break;
	default:
		break;
	}
}

/* Called by ingest after it applied a frame to the model: its records
 * become events, and buckets now settled become counters. */
static void on_frame(void *arg, struct agg_source *s, const uint8_t *frame, size_t len)
{
	struct trace *t = arg;
	struct mfu_frame_header h;
	const uint8_t *raw;
	size_t raw_len;
	struct mfu_dec d;
	struct mfu_record r;

	if (mfu_frame_open(t->codec, frame, len, &h, &raw, &raw_len))
		return; /* ingest opened it a moment ago */
	mfu_dec_init(&d, raw, raw_len);
	while (mfu_dec_next(&d, &r) == 1)
		on_record(t, s, &r);
	uint64_t end = agg_source_window_end(t->agg, s, 0);
	if (end > SETTLE_NS)
		counters_due(t, s, end - SETTLE_NS, 0);
}

/* ---- writing ---- */

static int by_track_then_time(const void *x, const void *y)
{
	const struct ev *a = x, *b = y;
	if (a->track != b->track)
		return a->track < b->track ? -1 : 1;
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	/* the longer first, so it is the parent */
	return a->end > b->end ? -1 : a->end < b->end;
}

struct lane {
	uint64_t *stack; /* ends of the open slices, innermost last */
	size_t n, cap;
};

/* Assigns each event of one track (sorted) the first lane in which it
 * nests: it starts after the lane's innermost open slice has ended, or ends
 * no later than it does.  lane_of[i] gets event i's lane, *nlanes how many
 * the track needs. */
static int lanes_assign(struct ev *ev, size_t n, uint32_t *lane_of, uint32_t *nlanes)
{
	struct lane *lanes = NULL;
	size_t nl = 0, capl = 0;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		size_t l;
		for (l = 0; l < nl; l++) {
			struct lane *ln = &lanes[l];
			while (ln->n && ln->stack[ln->n - 1] <= ev[i].start)
				ln->n--;
			if (!ln->n || ln->stack[ln->n - 1] >= ev[i].end)
				break;
		}
		if (l == nl) {
			struct lane *g = grow(lanes, &capl, nl + 1, sizeof(*g));
			if (!g) {
				rc = -ENOMEM;
				goto out;
			}
			lanes = g;
			lanes[nl++] = (struct lane){0};
		}
		struct lane *ln = &lanes[l];
		uint64_t *st = grow(ln->stack, &ln->cap, ln->n + 1, sizeof(*st));
		if (!st) {
			rc = -ENOMEM;
			goto out;
		}
		ln->stack = st;
		ln->stack[ln->n++] = ev[i].end;
		lane_of[i] = (uint32_t)l;
	}
	*nlanes = (uint32_t)nl;
out:
	for (size_t l = 0; l < nl; l++)
		free(lanes[l].stack);
	free(lanes);
	return rc;
}

static void put_time(struct strbuf *sb, uint64_t ns)
{
	sb_printf(sb, "%llu.%03u", (unsigned long long)(ns / 1000), (unsigned)(ns % 1000));
}

static const char *const api_names[] = {"driver call", "launch", "synchronize", "blocking copy"};
static const char *const offcpu_names[] = {"runnable (preempted)", "sleeping", "disk (uninterruptible)", "off-CPU"};
/* catapult's reserved colour names, as Perfetto and chrome://tracing know them */
static const char *const offcpu_colours[] = {"thread_state_runnable", "thread_state_sleeping",
					     "thread_state_iowait", "thread_state_unknown"};

static void put_event(struct trace *t, struct strbuf *sb, const struct ev *e, uint32_t pid, uint32_t tid,
		      uint64_t origin)
{
	sb_printf(sb, ",\n{\"ph\":\"X\",\"pid\":%u,\"tid\":%u,\"ts\":", pid, tid);
	put_time(sb, e->start - origin);
	sb_puts(sb, ",\"dur\":");
	put_time(sb, e->end - e->start);
	switch (e->type) {
	case EV_KERNEL:
		sb_puts(sb, ",\"cat\":\"kernel\",\"name\":");
		if (e->d)
			sb_json_string(sb, t->names.v[e->d - 1].s, t->names.v[e->d - 1].len);
		else
			sb_puts(sb, "\"(unnamed kernel)\"");
		sb_printf(sb, ",\"args\":{\"flops\":%llu,\"stream\":%llu,\"corr\":%llu,\"gemm call\":%llu}}",
			  (unsigned long long)e->a, (unsigned long long)t->tracks[e->track].id,
			  (unsigned long long)e->b, (unsigned long long)e->c);
		break;
	case EV_COPY:
		sb_printf(sb, ",\"cat\":\"copy\",\"name\":\"%s\",\"args\":{\"bytes\":%llu,\"copy kind\":%llu,"
			      "\"stream\":%llu,\"corr\":%llu}}",
			  e->a == MFU_COPY_MEMSET ? "memset" : "memcpy", (unsigned long long)e->c,
			  (unsigned long long)e->b, (unsigned long long)t->tracks[e->track].id,
			  (unsigned long long)e->d);
		break;
	case EV_API:
		sb_printf(sb, ",\"cat\":\"api\",\"name\":\"%s\",\"args\":{\"cbid\":%llu,\"corr\":%llu}}",
			  api_names[e->a < MFU_API__COUNT ? e->a : 0], (unsigned long long)e->b,
			  (unsigned long long)e->c);
		break;
	case EV_OFFCPU: {
		unsigned st = e->a < MFU_OFFCPU__COUNT ? (unsigned)e->a : MFU_OFFCPU_OTHER;
		sb_printf(sb, ",\"cat\":\"offcpu\",\"name\":\"%s\",\"cname\":\"%s\",\"args\":{\"state\":%llu,"
			      "\"stack\":%llu}}",
			  offcpu_names[st], offcpu_colours[st], (unsigned long long)e->a, (unsigned long long)e->b);
		break;
	}
	default:
		sb_printf(sb, ",\"cat\":\"step\",\"name\":\"step %llu\",\"args\":{\"model flops\":%llu}}",
			  (unsigned long long)e->a, (unsigned long long)e->b);
		break;
	}
}

static void put_meta(struct strbuf *sb, const char *what, uint32_t pid, uint32_t tid, const char *name, size_t len)
{
	sb_printf(sb, ",\n{\"ph\":\"M\",\"name\":\"%s\",\"pid\":%u,\"tid\":%u,\"args\":{\"name\":", what, pid, tid);
	sb_json_string(sb, name, len);
	sb_puts(sb, "}}");
}

static void put_process(struct trace *t, struct strbuf *sb, uint32_t pid)
{
	const struct proc *p = &t->procs[pid - 1];
	const struct agg_source *s = p->src;
	char name[AGG_NAME_MAX * 2 + 128];
	int n;

	if (p->device < 0) {
		n = snprintf(name, sizeof(name), "%s pid %llu host threads", s->host, (unsigned long long)s->pid);
	} else {
		const char *dev = "";
		for (unsigned i = 0; i < s->ndev; i++)
			if ((int)s->dev[i]->index == p->device && s->dev[i]->have_info)
				dev = s->dev[i]->name;
		n = snprintf(name, sizeof(name), "%s pid %llu GPU %d%s%s", s->host, (unsigned long long)s->pid,
			     p->device, *dev ? " " : "", dev);
	}
	if (s->rank >= 0 && n > 0 && (size_t)n < sizeof(name))
		snprintf(name + n, sizeof(name) - (size_t)n, " (rank %lld)", (long long)s->rank);
	put_meta(sb, "process_name", pid, 0, name, strlen(name));
	sb_printf(sb, ",\n{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":%u,\"tid\":0,\"args\":{\"sort_index\":%u}}",
		  pid, pid);
}

static void put_track_names(struct strbuf *sb, const struct track *tr)
{
	for (uint32_t l = 0; l < tr->lanes; l++) {
		char name[96];
		int n;
		switch (tr->kind) {
		case TK_STREAM: n = snprintf(name, sizeof(name), "stream %llu", (unsigned long long)tr->id); break;
		case TK_STEPS: n = snprintf(name, sizeof(name), "steps"); break;
		case TK_THREAD: n = snprintf(name, sizeof(name), "thread %llu", (unsigned long long)tr->id); break;
		default: n = snprintf(name, sizeof(name), "thread %llu off-CPU", (unsigned long long)tr->id); break;
		}
		if (l && n > 0 && (size_t)n < sizeof(name))
			snprintf(name + n, sizeof(name) - (size_t)n, " (%u)", l + 1);
		put_meta(sb, "thread_name", tr->pid, tr->first_tid + l, name, strlen(name));
		sb_printf(sb, ",\n{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":%u,\"tid\":%u,"
			      "\"args\":{\"sort_index\":%u}}",
			  tr->pid, tr->first_tid + l, tr->first_tid + l);
	}
}

/* Appends sb to f and empties it; the trace never sits whole in memory. */
static int drain(struct strbuf *sb, FILE *f)
{
	if (sb->oom)
		return -ENOMEM;
	if (sb->len && fwrite(sb->buf, 1, sb->len, f) != sb->len)
		return -errno;
	sb_reset(sb);
	return 0;
}

static int trace_write(struct trace *t, FILE *f)
{
	struct strbuf sb;
	uint32_t *lane_of = NULL;
	uint64_t origin = UINT64_MAX;
	int rc = 0;

	sb_init(&sb);
	qsort(t->ev, t->nev, sizeof(*t->ev), by_track_then_time);
	lane_of = malloc((t->nev ? t->nev : 1) * sizeof(*lane_of));
	if (!lane_of) {
		rc = -ENOMEM;
		goto out;
	}
	/* lanes per track, then thread ids per process in track order */
	for (size_t i = 0; i < t->nev;) {
		size_t j = i;
		while (j < t->nev && t->ev[j].track == t->ev[i].track)
			j++;
		struct track *tr = &t->tracks[t->ev[i].track];
		if ((rc = lanes_assign(t->ev + i, j - i, lane_of + i, &tr->lanes)))
			goto out;
		if (t->ev[i].start < origin)
			origin = t->ev[i].start;
		i = j;
	}
	for (uint32_t i = 0; i < t->ntracks; i++) {
		struct proc *p = &t->procs[t->tracks[i].pid - 1];
		t->tracks[i].first_tid = p->next_tid;
		p->next_tid += t->tracks[i].lanes;
	}
	for (size_t i = 0; i < t->nctr; i++)
		if (t->ctr[i].t < origin)
			origin = t->ctr[i].t;
	if (origin == UINT64_MAX)
		origin = 0;

	sb_printf(&sb, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"mfu trace %s\",\"origin_ns\":\"%llu\","
		       "\"time\":\"microseconds since origin_ns, the producers' CLOCK_REALTIME-based clock\"},\n"
		       "\"traceEvents\":[\n"
		       "{\"ph\":\"M\",\"name\":\"trace\",\"pid\":0,\"tid\":0,\"args\":{}}",
		  MFU_VERSION, (unsigned long long)origin);
	for (uint32_t pid = 1; pid <= t->nprocs; pid++)
		put_process(t, &sb, pid);
	for (uint32_t i = 0; i < t->ntracks; i++)
		put_track_names(&sb, &t->tracks[i]);
	for (size_t i = 0; i < t->nev; i++) {
		const struct track *tr = &t->tracks[t->ev[i].track];
		put_event(t, &sb, &t->ev[i], tr->pid, tr->first_tid + lane_of[i], origin);
		if (sb.len > (1u << 20) && (rc = drain(&sb, f)))
			goto out;
	}
	for (size_t i = 0; i < t->nctr; i++) {
		const struct counter *c = &t->ctr[i];
		for (int m = 0; m < 2; m++) {
			double v = m ? c->mfu : c->hfu;
			if (isnan(v))
				continue; /* unknown is no sample, never 0 */
			sb_printf(&sb, ",\n{\"ph\":\"C\",\"pid\":%u,\"tid\":0,\"name\":\"%s\",\"ts\":", c->pid,
				  m ? "MFU (%)" : "HFU (%)");
			put_time(&sb, c->t - origin);
			sb_printf(&sb, ",\"args\":{\"%s\":", m ? "MFU (%)" : "HFU (%)");
			sb_json_double(&sb, v * 100);
			sb_puts(&sb, "}}");
		}
		if (sb.len > (1u << 20) && (rc = drain(&sb, f)))
			goto out;
	}
	sb_puts(&sb, "\n]}\n");
	rc = drain(&sb, f);
out:
	free(lane_of);
	sb_free(&sb);
	return rc;
}

static void trace_free(struct trace *t)
{
	agg_free(t->agg);
	mfu_codec_free(t->codec);
	free(t->ev);
	free(t->tracks);
	free(t->procs);
	free(t->ctr);
	names_free(&t->names);
}

/* Reads every file into t; returns how many could not be opened, or -1
 * when out of memory.  *frames counts the frames used. */
static int read_files(struct trace *t, char **files, int nfiles, int *frames)
{
	struct mfu_codec *codec = mfu_codec_new(1);
	struct ingest *in = NULL;
	const char *cur = NULL;
	int failed = 0;

	if (!codec)
		return -1;
	for (int i = 0; i < nfiles; i++) {
		struct archive_reader rd;
		int rc = archive_reader_open(files[i], &rd);
		if (rc) {
			fprintf(stderr, "mfu trace: %s: %s\n", files[i],
				rc == -EBADMSG ? "not an mfu archive" : strerror(-rc));
			failed++;
			continue;
		}
		if (!in || !cur || !archive_same_group(cur, files[i])) {
			ingest_free(in);
			in = NULL;
			if (ingest_new(t->agg, codec, files[i], &in)) {
				archive_reader_close(&rd);
				failed = -1;
				break;
			}
			ingest_on_frame(in, on_frame, t);
			cur = files[i];
		}
		uint64_t recv;
		const uint8_t *frame;
		size_t len, bad;
		while ((rc = archive_reader_next(&rd, &recv, &frame, &len, &bad)) != 0) {
			if (rc < 0) {
				fprintf(stderr, "mfu trace: %s: skipped a %s entry at offset %zu; the events before it are kept\n",
					files[i], rc == -MFU_WIRE_E_TRUNCATED ? "torn" : mfu_wire_strerror(-rc), bad);
				continue;
			}
			rc = ingest_frame(in, frame, len, 0);
			if (rc) {
				fprintf(stderr, "mfu trace: %s: skipped frame at offset %zu: %s\n", files[i],
					(size_t)(frame - rd.data), ingest_strerror(rc));
				if (rc == -INGEST_E_NO_HELLO)
					break;
				continue;
			}
			(*frames)++;
		}
		archive_reader_close(&rd);
	}
	ingest_free(in);
	mfu_codec_free(codec);
	return failed;
}

int cmd_trace(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"peak-tflops", required_argument, NULL, 'p'},
		{"model-dtype", required_argument, NULL, 'd'},
		{"max-events", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct agg_config cfg = {.offline = 1};
	struct trace t = {.max_events = MAX_EVENTS_DEFAULT};
	const char *outpath = NULL, *peak = NULL;
	char err[256], *end;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': outpath = optarg; break;
		case 'p': peak = optarg; break;
		case 'd':
			if (opt_class(optarg, &cfg.model_class, err, sizeof(err)))
				return cli_usage_error("trace", "--model-dtype: %s", err);
			break;
		case 'm':
			errno = 0;
			t.max_events = strtoull(optarg, &end, 10);
			if (errno || *end || !*optarg || !t.max_events)
				return cli_usage_error("trace", "--max-events: not a positive count: '%s'", optarg);
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: return cli_bad_option("trace", argv, optind);
		}
	}
	if (!outpath)
		return cli_usage_error("trace", "no output file given (-o OUT.json)");
	if (optind >= argc)
		return cli_usage_error("trace", "no archive files given");
	if (opt_peak(&cfg, peak, err, sizeof(err)))
		return cli_usage_error("trace", "%s", err);

	int nfiles = argc - optind, frames = 0, rc = 1;
	char **files = malloc((size_t)nfiles * sizeof(*files));
	size_t tmplen = strlen(outpath) + 8;
	char *tmp = malloc(tmplen);
	FILE *f = NULL;

	t.codec = mfu_codec_new(1);
	if (!files || !tmp || !t.codec || agg_new(&cfg, &t.agg))
		goto oom;
	memcpy(files, argv + optind, (size_t)nfiles * sizeof(*files));
	archive_files_sort(files, (size_t)nfiles);

	int failed = read_files(&t, files, nfiles, &frames);
	if (failed < 0)
		goto oom;
	for (unsigned i = 0; i < t.agg->nsrc; i++)
		counters_due(&t, t.agg->src[i], 0, 1);
	if (t.oom)
		goto oom;
	if (!frames) {
		/* a file that could not be opened has said why already */
		if (!failed)
			fprintf(stderr, "mfu trace: no frames could be read; %s not written\n", outpath);
		goto out;
	}
	if (t.dropped_events)
		fprintf(stderr, "mfu trace: kept the first %zu slices and left out %zu (--max-events); counters cover "
				"everything\n",
			t.max_events, t.dropped_events);

	/* written beside, renamed when whole: a failed run leaves no half trace */
	snprintf(tmp, tmplen, "%s.tmp", outpath);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "mfu trace: cannot write %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	int wrc = trace_write(&t, f);
	if (fclose(f) && !wrc)
		wrc = -errno;
	if (!wrc && rename(tmp, outpath))
		wrc = -errno;
	if (wrc) {
		fprintf(stderr, "mfu trace: cannot write %s: %s\n", outpath, strerror(-wrc));
		remove(tmp);
		goto out;
	}
	rc = failed ? 1 : 0;
	goto out;
oom:
	fprintf(stderr, "mfu trace: out of memory\n");
out:
	trace_free(&t);
	free(files);
	free(tmp);
	return rc;
}
