/* SPDX-License-Identifier: MIT */
/*
 * Integration test of the eBPF off-CPU tracer against the running kernel.
 * Two copies of offcpu_workload run at once; only the first is watched (the
 * second is watched and unwatched again before it starts, which must leave
 * it untraced).  Per thread of the first, the tracer's off-CPU time, all
 * states together, must be within 5% of what the workload knows it to be:
 * inside each blocking call (nanosleep, pipe read, vfork wait) the whole
 * call, and over the thread's life its wall time less its CPU time.  States
 * are checked where they are unambiguous: the pinned spinners never block;
 * the blocking calls' time is mostly in the call's own state (sleeping, or
 * uninterruptible for vfork), never in the other blocked state, and that
 * state is found nowhere else.  Not "all of it": a thread preempted after
 * it set its sleeping state but before it switched out waits runnable, and
 * the kernel reports it so; and a missed wakeup leaves the run-queue wait
 * after it in the blocked state.  (The CI failure this replaces, the vfork
 * thread's DISK time 19.5% under its bracket, was most likely one whole
 * vfork wait lost: the kernel had run the thread again without a
 * sched_switch, which the tracer now makes up for; see missed_switch_in in
 * offcpu.bpf.c.)  Also stacks when asked, and times in CLOCK_REALTIME:
 * inside the run, and never off the CPU where the thread read its own
 * clock; for the second copy, nothing.
 * The collector's feed (collector/offcpu_feed.c) must hand the same time to
 * the source a pid is attached to, as MFU_REC_OFFCPU records or in its own
 * accounting, and nothing after the last detach.
 * Skips, saying why, where the process may not load BPF programs.
 * Usage: test_offcpu_trace PATH_TO_offcpu_workload.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "offcpu_feed.h"
#include "offcpu_tracer.h"

#define MAX_TIDS 32
#define MAX_BLOCKS 64 /* as in offcpu_workload.c */
/* The tracer's REALTIME - MONOTONIC offset is measured to well under a
 * microsecond.  An interval whose switch-in the kernel did not report ends
 * where the thread's CPU time puts it, late by any time stolen from the
 * thread after it (offcpu.bpf.c, missed_switch_in): room for that. */
#define EDGE_NS UINT64_C(1000000)

static const char *workload_path;

struct tid_acc {
	uint32_t pid, tid;
	uint64_t ns[MFU_OFFCPU__COUNT];
	uint64_t intervals, with_stack, bad_order;
	uint64_t min_start, max_end;
	int32_t a_stack;
};

/* Every interval, for clipping to the workload's brackets. */
struct iv {
	uint32_t tid;
	enum mfu_offcpu_state state;
	uint64_t start_ns, end_ns;
};

struct ivs {
	struct iv *v;
	size_t n, cap;
};

struct acc {
	struct tid_acc t[256];
	size_t n;
	uint64_t total;
	struct ivs all;
};

struct proc {
	pid_t pid;
	int in, out; /* its stdin (write end) and stdout (read end) */
	struct loop_io *io;
	char buf[16384];
	size_t len;
	int eof;
};

/* One thread of the workload as it reported itself (offcpu_workload.c). */
struct wthread {
	char kind[16];
	uint32_t tid;
	uint64_t lo_ns, hi_ns; /* the blocked time lies in [lo, hi] */
	uint64_t life_start, life_end, cpu_ns, run_delay_ns;
	unsigned nblocks;
	uint64_t blocks[MAX_BLOCKS][2];
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ivs_push(struct ivs *v, uint32_t tid, enum mfu_offcpu_state state, uint64_t start_ns, uint64_t end_ns)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 1024;
		struct iv *p = realloc(v->v, cap * sizeof(*p));
		assert_non_null(p);
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = (struct iv){.tid = tid, .state = state, .start_ns = start_ns, .end_ns = end_ns};
}

/* Adds tid's off-CPU time inside [lo, hi) to ns, by state. */
static void ivs_clip(const struct ivs *v, uint32_t tid, uint64_t lo, uint64_t hi, uint64_t ns[MFU_OFFCPU__COUNT])
{
	for (size_t i = 0; i < v->n; i++) {
		const struct iv *x = &v->v[i];
		if (x->tid != tid || x->end_ns <= lo || x->start_ns >= hi)
			continue;
		ns[x->state] += (x->end_ns < hi ? x->end_ns : hi) - (x->start_ns > lo ? x->start_ns : lo);
	}
}

/* Where the thread read its clock it was on a CPU: no off-CPU interval of
 * tid may hold that instant (more than EDGE_NS inside either end).  A wrong
 * clock conversion shifts intervals across the workload's brackets, which
 * the sums inside them need not show: a spinner preempted just before a
 * sleep fills the start of the bracket the sleep left. */
static void ivs_assert_on_cpu(const struct ivs *v, uint32_t tid, uint64_t t)
{
	for (size_t i = 0; i < v->n; i++) {
		const struct iv *x = &v->v[i];
		if (x->tid == tid && x->start_ns + EDGE_NS < t && t + EDGE_NS < x->end_ns)
			fail_msg("tid %u off-CPU %.3f..%.3f ms around its own clock read at %.3f ms", tid,
				 (double)(x->start_ns % UINT64_C(1000000000000)) / 1e6,
				 (double)(x->end_ns % UINT64_C(1000000000000)) / 1e6,
				 (double)(t % UINT64_C(1000000000000)) / 1e6);
	}
}

static uint64_t ns_sum(const uint64_t ns[MFU_OFFCPU__COUNT])
{
	uint64_t s = 0;
	for (unsigned i = 0; i < MFU_OFFCPU__COUNT; i++)
		s += ns[i];
	return s;
}

static void on_interval(void *arg, const struct offcpu_interval *iv)
{
	struct acc *a = arg;
	struct tid_acc *t = NULL;

	a->total++;
	for (size_t i = 0; i < a->n; i++)
		if (a->t[i].tid == iv->tid && a->t[i].pid == iv->pid)
			t = &a->t[i];
	if (!t) {
		if (a->n == sizeof(a->t) / sizeof(a->t[0]))
			return;
		t = &a->t[a->n++];
		*t = (struct tid_acc){.pid = iv->pid, .tid = iv->tid, .min_start = UINT64_MAX, .a_stack = -1};
	}
	t->intervals++;
	if (iv->end_ns < iv->start_ns || (unsigned)iv->state >= MFU_OFFCPU__COUNT) {
		t->bad_order++;
		return;
	}
	t->ns[iv->state] += iv->end_ns - iv->start_ns;
	ivs_push(&a->all, iv->tid, iv->state, iv->start_ns, iv->end_ns);
	if (iv->start_ns < t->min_start)
		t->min_start = iv->start_ns;
	if (iv->end_ns > t->max_end)
		t->max_end = iv->end_ns;
	if (iv->stack_id >= 0) {
		t->with_stack++;
		t->a_stack = iv->stack_id;
	}
}

static struct tid_acc *acc_find(struct acc *a, uint32_t tid)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->t[i].tid == tid)
			return &a->t[i];
	return NULL;
}

static void on_output(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct proc *p = arg;
	ssize_t n = read(fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len);

	if (n > 0) {
		p->len += (size_t)n;
		p->buf[p->len] = '\0';
	} else if (n == 0 || errno != EAGAIN) {
		p->eof = 1;
		loop_io_del(io);
		p->io = NULL;
	}
}

static void proc_start(struct loop *l, struct proc *p)
{
	int in[2], out[2];

	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl(workload_path, workload_path, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
	assert_int_equal(fcntl(p->out, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(loop_io_add(l, p->out, LOOP_READ, on_output, p, &p->io), 0);
}

/* Runs the loop until the process has printed its pid line. */
static void proc_wait_line(struct loop *l, struct proc *p, const char *prefix)
{
	uint64_t start = loop_now_ns();

	while (!strstr(p->buf, prefix) && !p->eof && loop_now_ns() - start < UINT64_C(5000000000))
		loop_run_once(l, 10);
	assert_non_null(strstr(p->buf, prefix));
}

static struct wthread *wthread_find(struct wthread *w, size_t n, uint32_t tid)
{
	for (size_t i = 0; i < n; i++)
		if (w[i].tid == tid)
			return &w[i];
	return NULL;
}

/* The workload's report, one struct per "tid" line, with its "life" and
 * "block" lines. */
static size_t parse_reports(const struct proc *p, struct wthread *w, size_t cap)
{
	size_t n = 0;

	for (const char *s = p->buf, *next; *s; s = next) {
		next = strchr(s, '\n');
		next = next ? next + 1 : s + strlen(s);
		char kind[16];
		unsigned long tid;
		unsigned long long a, b, c, d = 0;
		struct wthread *t;

		if (sscanf(s, "tid %15s %lu %llu %llu", kind, &tid, &a, &b) == 4 && n < cap) {
			w[n] = (struct wthread){.tid = (uint32_t)tid, .lo_ns = a, .hi_ns = b};
			snprintf(w[n].kind, sizeof(w[n].kind), "%s", kind);
			n++;
		} else if (sscanf(s, "life %lu %llu %llu %llu %llu", &tid, &a, &b, &c, &d) >= 4 &&
			   (t = wthread_find(w, n, (uint32_t)tid))) {
			t->life_start = a;
			t->life_end = b;
			t->cpu_ns = c;
			t->run_delay_ns = d;
		} else if (sscanf(s, "block %lu %llu %llu", &tid, &a, &b) == 3 && (t = wthread_find(w, n, (uint32_t)tid)) &&
			   t->nblocks < MAX_BLOCKS) {
			t->blocks[t->nblocks][0] = a;
			t->blocks[t->nblocks][1] = b;
			t->nblocks++;
		}
	}
	return n;
}

/* got must lie in [lo, hi] widened by frac on each side. */
static void assert_within(uint64_t got, uint64_t lo, uint64_t hi, double frac, const char *what, uint32_t tid)
{
	print_message("# tid %u %s: got %.2f ms, known %.2f..%.2f ms (%+.2f%% of the nearest)\n", tid, what,
		      got / 1e6, lo / 1e6, hi / 1e6,
		      got < lo ? 100.0 * ((double)got - (double)lo) / (double)lo
		      : got > hi ? 100.0 * ((double)got - (double)hi) / (double)hi : 0.0);
	assert_true(lo > 0 && lo <= hi);
	assert_true((double)got >= (1 - frac) * (double)lo && (double)got <= (1 + frac) * (double)hi);
}

/*
 * The least off-CPU time a thread can have had over its life.  Wall time
 * less CPU time is the most: time the hypervisor stole while the thread
 * was on a CPU is missing from its CPU time but not off-CPU to the
 * scheduler (a spinner on a loaded VM lost 6% of it so).  The scheduler's
 * own count of its runnable waits (run_delay) plus the known length of its
 * blocking calls is what it surely spent off the CPU, whatever was stolen.
 */
static uint64_t off_known_lo(const struct wthread *w)
{
	uint64_t most = w->life_end - w->life_start - w->cpu_ns, sure = w->run_delay_ns;
	if (!strcmp(w->kind, "writer"))
		return most; /* its disk waits are not bracketed: sure would be far too little */
	for (unsigned i = 0; i < w->nblocks; i++)
		sure += w->blocks[i][1] - w->blocks[i][0];
	return sure && sure < most ? sure : most;
}

/*
 * One workload thread against the off-CPU intervals v holds for it (the
 * tracer's, or the records the feed handed over).  The known amounts:
 * - over its life, between off_known_lo() and wall time less CPU time;
 * - inside its blocking calls, all of their time, in any state.
 * And the states where they are unambiguous (see the top of the file).
 */
static void check_thread(const struct ivs *v, const struct wthread *w)
{
	uint64_t life[MFU_OFFCPU__COUNT] = {0}, blk[MFU_OFFCPU__COUNT] = {0}, blk_known = 0;
	int is_vfork = !strcmp(w->kind, "vfork");
	unsigned blocked = is_vfork ? MFU_OFFCPU_DISK : MFU_OFFCPU_SLEEPING;
	unsigned other = is_vfork ? MFU_OFFCPU_SLEEPING : MFU_OFFCPU_DISK;

	assert_true(w->life_end > w->life_start && w->life_end - w->life_start > w->cpu_ns);
	ivs_clip(v, w->tid, w->life_start, w->life_end, life);
	ivs_assert_on_cpu(v, w->tid, w->life_start);
	ivs_assert_on_cpu(v, w->tid, w->life_end);
	for (unsigned i = 0; i < w->nblocks; i++) {
		ivs_clip(v, w->tid, w->blocks[i][0], w->blocks[i][1], blk);
		blk_known += w->blocks[i][1] - w->blocks[i][0];
		ivs_assert_on_cpu(v, w->tid, w->blocks[i][0]);
		ivs_assert_on_cpu(v, w->tid, w->blocks[i][1]);
	}
	uint64_t wall = w->life_end - w->life_start, off_known = wall - w->cpu_ns, off = ns_sum(life);
	print_message("# %-6s tid %u: life %.1f ms, cpu %.1f ms; traced runnable %.1f sleeping %.1f disk %.1f "
		      "other %.1f ms\n", w->kind, w->tid, wall / 1e6, w->cpu_ns / 1e6, life[0] / 1e6, life[1] / 1e6,
		      life[2] / 1e6, life[3] / 1e6);
	assert_within(off, off_known_lo(w), off_known, 0.05, "off-CPU over its life", w->tid);

	if (!strcmp(w->kind, "pinned")) {
		/* Each spins 100 ms of CPU on a CPU it shares with the other:
		 * it must wait, preempted, for a good part of that, and it never
		 * blocks (a page fault aside). */
		assert_true(life[MFU_OFFCPU_RUNNABLE] >= 30000000u);
		assert_true(off - life[MFU_OFFCPU_RUNNABLE] < 5000000u);
		return;
	}
	if (strcmp(w->kind, "sleep") && strcmp(w->kind, "pipe") && !is_vfork)
		return; /* the writer: its life is all it knows */
	assert_true(w->nblocks > 0);
	assert_within(ns_sum(blk), blk_known, blk_known, 0.05, "off-CPU inside its blocking calls", w->tid);
	print_message("# tid %u: %.1f%% of the calls' time in state %s, %.1f%% runnable\n", w->tid,
		      100.0 * (double)blk[blocked] / (double)blk_known, is_vfork ? "DISK" : "SLEEPING",
		      100.0 * (double)blk[MFU_OFFCPU_RUNNABLE] / (double)blk_known);
	/* Mostly blocked in the call's own state (the rest waited runnable,
	 * preempted on the way in, or after the wakeup), never in the other,
	 * and blocked in that state nowhere else. */
	assert_true(2 * blk[blocked] > w->lo_ns);
	assert_true(blk[other] + blk[MFU_OFFCPU_OTHER] < blk_known / 100);
	assert_true(life[blocked] - blk[blocked] < blk_known / 100);
}

static void test_tracer_attributes_known_offcpu_time_to_watched_threads_only(void **state)
{
	struct offcpu_tracer_opts opts = {.stacks = 1};
	struct offcpu_tracer *t = NULL;
	struct loop *l = NULL;
	struct acc *a = calloc(1, sizeof(*a));
	struct proc w = {0}, u = {0};
	struct wthread *rw = calloc(MAX_TIDS, sizeof(*rw)), *ru = calloc(MAX_TIDS, sizeof(*ru));
	struct offcpu_stats st;
	char why[256] = "", pidline[32];
	int rc, status;

	assert_non_null(a);
	assert_true(rw && ru);
	assert_int_equal(loop_new(&l), 0);
	rc = offcpu_tracer_new(l, &opts, on_interval, a, &t, why, sizeof(why));
	if (rc == -EPERM || rc == -EACCES) {
		print_message("# SKIP BPF not permitted here: %s\n", why);
		loop_free(l);
		free(a);
		free(rw);
		free(ru);
		skip();
	}
	if (rc)
		print_message("# offcpu_tracer_new: %s\n", why);
	assert_int_equal(rc, 0);
	assert_true(why[0] == '\0');

	proc_start(l, &w);
	proc_start(l, &u);
	snprintf(pidline, sizeof(pidline), "pid %d\n", w.pid);
	proc_wait_line(l, &w, pidline);
	snprintf(pidline, sizeof(pidline), "pid %d\n", u.pid);
	proc_wait_line(l, &u, pidline);

	assert_int_equal(offcpu_watch(t, (uint32_t)w.pid), 0);
	assert_int_equal(offcpu_watch(t, (uint32_t)w.pid), 0); /* twice is fine */
	assert_int_equal(offcpu_watch(t, (uint32_t)u.pid), 0);
	assert_int_equal(offcpu_unwatch(t, (uint32_t)u.pid), 0);
	assert_int_equal(offcpu_unwatch(t, (uint32_t)u.pid), -ENOENT);
	assert_int_equal(offcpu_watch(t, 0), -EINVAL);

	uint64_t t0 = realtime_ns(), loop_start = loop_now_ns();
	assert_int_equal(write(w.in, "g", 1), 1);
	assert_int_equal(write(u.in, "g", 1), 1);
	/* Events wake the loop often: bound the wait by time, not rounds. */
	while (!(w.eof && u.eof) && loop_now_ns() - loop_start < UINT64_C(15000000000))
		loop_run_once(l, 10);
	assert_true(w.eof && u.eof);
	assert_int_equal(waitpid(w.pid, &status, 0), w.pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(waitpid(u.pid, &status, 0), u.pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	uint64_t t1 = realtime_ns();
	assert_true(offcpu_tracer_poll(t) >= 0);

	size_t nw = parse_reports(&w, rw, MAX_TIDS), nu = parse_reports(&u, ru, MAX_TIDS);
	assert_int_equal(nw, 6);
	assert_int_equal(nu, 6);
	for (size_t i = 0; i < a->n; i++) {
		/* Nothing from the unwatched copy, by pid or by tid. */
		assert_int_not_equal(a->t[i].pid, (uint32_t)u.pid);
		for (size_t j = 0; j < nu; j++)
			assert_int_not_equal(a->t[i].tid, ru[j].tid);
		assert_int_equal(a->t[i].pid, (uint32_t)w.pid);
		assert_int_equal(a->t[i].bad_order, 0);
		/* Converted to REALTIME: inside the run as the test saw it. */
		assert_true(a->t[i].min_start >= t0 - 1000000 && a->t[i].max_end <= t1 + 1000000);
	}

	int seen_pinned = 0;
	for (size_t i = 0; i < nw; i++) {
		struct tid_acc *ta = acc_find(a, rw[i].tid);
		assert_non_null(ta);
		print_message("# %-6s tid %u: %llu intervals\n", rw[i].kind, ta->tid, (unsigned long long)ta->intervals);
		check_thread(&a->all, &rw[i]);
		seen_pinned += !strcmp(rw[i].kind, "pinned");
		if (!strcmp(rw[i].kind, "sleep") || !strcmp(rw[i].kind, "pipe")) {
			assert_true(ta->with_stack > 0);
			uint64_t ips[8];
			assert_true(offcpu_tracer_stack(t, ta->a_stack, ips, 8) > 0);
		}
	}
	assert_int_equal(seen_pinned, 2);

	offcpu_tracer_stats(t, &st);
	print_message("# stats: switches %llu off %llu on %llu wakeups %llu drops %llu events %llu intervals %llu "
		      "missed switch-ins %llu\n",
		      (unsigned long long)st.switches, (unsigned long long)st.off, (unsigned long long)st.on,
		      (unsigned long long)st.wakeups, (unsigned long long)st.drops, (unsigned long long)st.events,
		      (unsigned long long)st.intervals, (unsigned long long)st.missed_in);
	assert_int_equal(st.drops, 0);
	assert_true(st.switches >= st.off && st.off >= st.on && st.on > 0);
	assert_int_equal(st.events, st.on);
	assert_int_equal(st.intervals, a->total);
	assert_int_equal(st.watched, 1);

	close(w.in);
	close(w.out);
	close(u.in);
	close(u.out);
	offcpu_tracer_free(t);
	loop_free(l);
	free(a->all.v);
	free(a);
	free(rw);
	free(ru);
}


/* ---- the collector's feed ---- */

static struct agg_source *sink_src;
static uint64_t sink_ns[MFU_OFFCPU__COUNT], sink_records, sink_wrong_src, sink_bad_stack;
static struct ivs sink_ivs;

static int sink(struct agg_source *s, const struct mfu_rec_offcpu *o)
{
	sink_records++;
	if (s != sink_src)
		sink_wrong_src++;
	if (o->state >= MFU_OFFCPU__COUNT || o->end_ns < o->start_ns || !o->tid)
		return -EINVAL;
	sink_ns[o->state] += o->end_ns - o->start_ns;
	ivs_push(&sink_ivs, (uint32_t)o->tid, (enum mfu_offcpu_state)o->state, o->start_ns, o->end_ns);
	/* Blocked parts carry a stack (id + 1), run-queue parts none. */
	if (o->state == MFU_OFFCPU_SLEEPING && !o->stack_id)
		sink_bad_stack++;
	return 0;
}

/* Runs one workload to its end with the feed attached to src; fills w with
 * its threads' reports and returns how many. */
static size_t feed_run(struct loop *l, struct offcpu_feed *f, struct agg_source *src, uint32_t *pid,
		       struct wthread *r)
{
	struct proc w = {0};
	char pidline[32];
	int status;

	proc_start(l, &w);
	snprintf(pidline, sizeof(pidline), "pid %d\n", w.pid);
	proc_wait_line(l, &w, pidline);
	assert_int_equal(offcpu_feed_attach(f, src, (uint32_t)w.pid), 0);
	assert_int_equal(offcpu_feed_attach(f, src, (uint32_t)w.pid), 0); /* a second connection */
	assert_int_equal(offcpu_feed_attach(f, (struct agg_source *)&w, (uint32_t)w.pid), -EINVAL);
	offcpu_feed_detach(f, (uint32_t)w.pid); /* one of two */
	assert_int_equal(write(w.in, "g", 1), 1);
	uint64_t start = loop_now_ns();
	while (!w.eof && loop_now_ns() - start < UINT64_C(15000000000))
		loop_run_once(l, 10);
	assert_true(w.eof);
	assert_int_equal(waitpid(w.pid, &status, 0), w.pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(w.in);
	close(w.out);
	*pid = (uint32_t)w.pid;
	size_t n = parse_reports(&w, r, MAX_TIDS);
	assert_int_equal(n, 6);
	return n;
}

static const struct wthread *wthread_kind(const struct wthread *w, size_t n, const char *kind)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(w[i].kind, kind))
			return &w[i];
	fail_msg("no %s thread reported", kind);
	return NULL;
}

static void test_feed_hands_offcpu_time_to_the_attached_source(void **state)
{
	struct offcpu_tracer_opts opts = {.stacks = 1};
	struct offcpu_feed *f = NULL;
	struct offcpu_feed_stats st;
	struct loop *l = NULL;
	struct agg_source *src = calloc(1, sizeof(*src));
	struct wthread *w = calloc(MAX_TIDS, sizeof(*w));
	uint64_t ns[MFU_OFFCPU__COUNT];
	const char *why;
	char err[256];
	uint32_t pid;
	size_t n;

	assert_non_null(src);
	assert_non_null(w);
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(offcpu_feed_new(l, OFFCPU_FEED_AUTO, &opts, &f, err, sizeof(err)), 0);
	if (!offcpu_feed_enabled(f, &why)) {
		print_message("# SKIP BPF not permitted here: %s\n", why);
		offcpu_feed_free(f);
		loop_free(l);
		free(src);
		free(w);
		skip();
	}
	assert_string_equal(why, "");

	/* Built-in accounting: by state for the whole process, so only what
	 * holds whatever the scheduler did to the spinners.  The per-thread
	 * check follows with the sink. */
	n = feed_run(l, f, src, &pid, w);
	offcpu_feed_poll(f);
	assert_int_equal(offcpu_feed_source_ns(f, src, ns), 0);
	const struct wthread *vf = wthread_kind(w, n, "vfork"), *sl = wthread_kind(w, n, "sleep");
	print_message("# feed: runnable %.1f sleeping %.1f disk %.1f other %.1f ms\n", ns[0] / 1e6, ns[1] / 1e6,
		      ns[2] / 1e6, ns[3] / 1e6);
	/* Only the vfork thread waits uninterruptibly, never longer than its
	 * bracket; for a good part of it, though not always most: on a loaded
	 * machine the parent also waits runnable around its child (45% of the
	 * known amount in D was seen; the totals in any state are held to 5%
	 * per thread by check_thread). */
	uint64_t vf_calls = 0;
	for (unsigned i = 0; i < vf->nblocks; i++)
		vf_calls += vf->blocks[i][1] - vf->blocks[i][0];
	assert_true(4 * ns[MFU_OFFCPU_DISK] > vf->lo_ns && ns[MFU_OFFCPU_DISK] <= vf_calls + vf->nblocks * EDGE_NS);
	assert_true(ns[MFU_OFFCPU_SLEEPING] >= sl->lo_ns / 2); /* at least most of the sleep thread's */
	/* The process is off-CPU at least as long as its threads are, in
	 * their lives (as check_thread allows). */
	uint64_t life_off = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t off = off_known_lo(&w[i]);
		life_off += off - off / 20;
	}
	print_message("# feed: %.1f ms off-CPU in all, at least %.1f ms known\n", ns_sum(ns) / 1e6, life_off / 1e6);
	assert_true(ns_sum(ns) >= life_off);
	offcpu_feed_stats(f, &st);
	assert_int_equal(st.sources, 1);
	assert_int_equal(st.tracer.drops, 0);
	assert_int_equal(st.tracer.watched, 1);
	offcpu_feed_detach(f, pid); /* the last one */
	offcpu_feed_stats(f, &st);
	assert_int_equal(st.sources, 0);
	assert_int_equal(st.tracer.watched, 0);
	assert_int_equal(offcpu_feed_source_ns(f, src, ns), -ENOENT);

	/* A sink, as agg_source_offcpu is in mfud: the records, per thread,
	 * against everything the workload knows. */
	struct offcpu_feed_stats st0;
	offcpu_feed_stats(f, &st0);
	offcpu_feed_set_sink(f, sink);
	sink_src = src;
	n = feed_run(l, f, src, &pid, w);
	offcpu_feed_poll(f);
	offcpu_feed_stats(f, &st);
	assert_int_equal(sink_wrong_src, 0);
	assert_int_equal(sink_bad_stack, 0);
	assert_true(sink_records > 0);
	assert_int_equal(st.records - st0.records, sink_records);
	assert_int_equal(st.sink_errors, 0);
	assert_int_equal(st.tracer.drops, 0);
	for (unsigned i = 0; i < MFU_OFFCPU__COUNT; i++)
		assert_int_equal(st.ns[i] - st0.ns[i], sink_ns[i]);
	print_message("# sink: %llu records, missed switch-ins %llu\n", (unsigned long long)sink_records,
		      (unsigned long long)(st.tracer.missed_in - st0.tracer.missed_in));
	for (size_t i = 0; i < n; i++)
		check_thread(&sink_ivs, &w[i]);

	offcpu_feed_detach(f, pid);
	offcpu_feed_stats(f, &st);
	assert_int_equal(st.sources, 0);
	assert_int_equal(st.tracer.watched, 0);
	offcpu_feed_free(f);
	loop_free(l);
	free(sink_ivs.v);
	free(src);
	free(w);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tracer_attributes_known_offcpu_time_to_watched_threads_only),
		cmocka_unit_test(test_feed_hands_offcpu_time_to_the_attached_source),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: test_offcpu_trace PATH_TO_offcpu_workload\n");
		return 2;
	}
	workload_path = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
