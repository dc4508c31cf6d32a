/* SPDX-License-Identifier: MIT */
/*
 * Integration test of the eBPF off-CPU tracer against the running kernel.
 * Two copies of offcpu_workload run at once; only the first is watched (the
 * second is watched and unwatched again before it starts, which must leave
 * it untraced).  Per thread of the first, the tracer must report the known
 * sleeping time as SLEEPING and the vfork wait as DISK within 5% (of a
 * known amount, or of a bracket the workload measured from both sides), the
 * preemption of two spinners pinned to one CPU as RUNNABLE, stacks when
 * asked, and times inside the run in CLOCK_REALTIME; for the second, nothing.
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

static const char *workload_path;

struct tid_acc {
	uint32_t pid, tid;
	uint64_t ns[MFU_OFFCPU__COUNT];
	uint64_t intervals, with_stack, bad_order;
	uint64_t min_start, max_end;
	int32_t a_stack;
};

struct acc {
	struct tid_acc t[256];
	size_t n;
	uint64_t total;
};

struct proc {
	pid_t pid;
	int in, out; /* its stdin (write end) and stdout (read end) */
	struct loop_io *io;
	char buf[4096];
	size_t len;
	int eof;
};

struct report {
	char kind[16];
	uint32_t tid;
	uint64_t lo_ns, hi_ns; /* the blocked time lies in [lo, hi] */
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

static size_t parse_reports(const struct proc *p, struct report *r, size_t cap)
{
	size_t n = 0;
	const char *s = p->buf;

	while (n < cap && (s = strstr(s, "tid "))) {
		unsigned long tid;
		unsigned long long lo, hi;
		if (sscanf(s, "tid %15s %lu %llu %llu", r[n].kind, &tid, &lo, &hi) == 4) {
			r[n].tid = (uint32_t)tid;
			r[n].lo_ns = lo;
			r[n].hi_ns = hi;
			n++;
		}
		s += 4;
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

static void test_tracer_attributes_known_offcpu_time_to_watched_threads_only(void **state)
{
	struct offcpu_tracer_opts opts = {.stacks = 1};
	struct offcpu_tracer *t = NULL;
	struct loop *l = NULL;
	struct acc *a = calloc(1, sizeof(*a));
	struct proc w = {0}, u = {0};
	struct report rw[MAX_TIDS], ru[MAX_TIDS];
	struct offcpu_stats st;
	char why[256] = "", pidline[32];
	int rc, status;

	assert_non_null(a);
	assert_int_equal(loop_new(&l), 0);
	rc = offcpu_tracer_new(l, &opts, on_interval, a, &t, why, sizeof(why));
	if (rc == -EPERM || rc == -EACCES) {
		print_message("# SKIP BPF not permitted here: %s\n", why);
		loop_free(l);
		free(a);
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
		print_message("# %-6s tid %u: runnable %.1f sleeping %.1f disk %.1f other %.1f ms, %llu intervals\n",
			      rw[i].kind, ta->tid, ta->ns[0] / 1e6, ta->ns[1] / 1e6, ta->ns[2] / 1e6, ta->ns[3] / 1e6,
			      (unsigned long long)ta->intervals);
		if (!strcmp(rw[i].kind, "sleep") || !strcmp(rw[i].kind, "pipe")) {
			assert_within(ta->ns[MFU_OFFCPU_SLEEPING], rw[i].lo_ns, rw[i].hi_ns, 0.05, "SLEEPING", ta->tid);
			assert_true(ta->with_stack > 0);
			uint64_t ips[8];
			assert_true(offcpu_tracer_stack(t, ta->a_stack, ips, 8) > 0);
		} else if (!strcmp(rw[i].kind, "vfork")) {
			assert_within(ta->ns[MFU_OFFCPU_DISK], rw[i].lo_ns, rw[i].hi_ns, 0.05, "DISK", ta->tid);
		} else if (!strcmp(rw[i].kind, "pinned")) {
			/* Each spins 100 ms of CPU on a CPU it shares with the
			 * other: it must wait, preempted, for a good part of that,
			 * and it never blocks (a page fault aside). */
			seen_pinned++;
			print_message("# tid %u pinned: RUNNABLE %.1f ms\n", ta->tid, ta->ns[0] / 1e6);
			assert_true(ta->ns[MFU_OFFCPU_RUNNABLE] >= 30000000u);
			assert_true(ta->ns[MFU_OFFCPU_SLEEPING] < 5000000u);
		}
	}
	assert_int_equal(seen_pinned, 2);

	offcpu_tracer_stats(t, &st);
	print_message("# stats: switches %llu off %llu on %llu wakeups %llu drops %llu events %llu intervals %llu\n",
		      (unsigned long long)st.switches, (unsigned long long)st.off, (unsigned long long)st.on,
		      (unsigned long long)st.wakeups, (unsigned long long)st.drops, (unsigned long long)st.events,
		      (unsigned long long)st.intervals);
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
	free(a);
}


/* ---- the collector's feed ---- */

static struct agg_source *sink_src;
static uint64_t sink_ns[MFU_OFFCPU__COUNT], sink_records, sink_wrong_src, sink_bad_stack;

static int sink(struct agg_source *s, const struct mfu_rec_offcpu *o)
{
	sink_records++;
	if (s != sink_src)
		sink_wrong_src++;
	if (o->state >= MFU_OFFCPU__COUNT || o->end_ns < o->start_ns || !o->tid)
		return -EINVAL;
	sink_ns[o->state] += o->end_ns - o->start_ns;
	/* Blocked parts carry a stack (id + 1), run-queue parts none. */
	if (o->state == MFU_OFFCPU_SLEEPING && !o->stack_id)
		sink_bad_stack++;
	return 0;
}

/* Runs one workload to its end with the feed attached to src; returns its
 * vfork thread's report (the bracket of its DISK time). */
static struct report feed_run(struct loop *l, struct offcpu_feed *f, struct agg_source *src, uint32_t *pid)
{
	struct proc w = {0};
	struct report r[MAX_TIDS];
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
	for (size_t i = 0; i < n; i++)
		if (!strcmp(r[i].kind, "vfork"))
			return r[i];
	fail_msg("no vfork thread reported");
	return r[0];
}

static void test_feed_hands_offcpu_time_to_the_attached_source(void **state)
{
	struct offcpu_tracer_opts opts = {.stacks = 1};
	struct offcpu_feed *f = NULL;
	struct offcpu_feed_stats st;
	struct loop *l = NULL;
	struct agg_source *src = calloc(1, sizeof(*src));
	uint64_t ns[MFU_OFFCPU__COUNT];
	const char *why;
	char err[256];
	uint32_t pid;

	assert_non_null(src);
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(offcpu_feed_new(l, OFFCPU_FEED_AUTO, &opts, &f, err, sizeof(err)), 0);
	if (!offcpu_feed_enabled(f, &why)) {
		print_message("# SKIP BPF not permitted here: %s\n", why);
		offcpu_feed_free(f);
		loop_free(l);
		free(src);
		skip();
	}
	assert_string_equal(why, "");

	/* Built-in accounting. */
	struct report disk = feed_run(l, f, src, &pid);
	offcpu_feed_poll(f);
	assert_int_equal(offcpu_feed_source_ns(f, src, ns), 0);
	assert_within(ns[MFU_OFFCPU_DISK], disk.lo_ns, disk.hi_ns, 0.05, "feed DISK", disk.tid);
	assert_true(ns[MFU_OFFCPU_SLEEPING] > 300000000u); /* at least the sleep thread's */
	offcpu_feed_stats(f, &st);
	assert_int_equal(st.sources, 1);
	assert_int_equal(st.tracer.drops, 0);
	assert_int_equal(st.tracer.watched, 1);
	offcpu_feed_detach(f, pid); /* the last one */
	offcpu_feed_stats(f, &st);
	assert_int_equal(st.sources, 0);
	assert_int_equal(st.tracer.watched, 0);
	assert_int_equal(offcpu_feed_source_ns(f, src, ns), -ENOENT);

	/* A sink, as agg_source_offcpu will be. */
	struct offcpu_feed_stats st0;
	offcpu_feed_stats(f, &st0);
	offcpu_feed_set_sink(f, sink);
	sink_src = src;
	disk = feed_run(l, f, src, &pid);
	offcpu_feed_poll(f);
	offcpu_feed_stats(f, &st);
	assert_int_equal(sink_wrong_src, 0);
	assert_int_equal(sink_bad_stack, 0);
	assert_true(sink_records > 0);
	assert_int_equal(st.records - st0.records, sink_records);
	assert_int_equal(st.sink_errors, 0);
	assert_within(sink_ns[MFU_OFFCPU_DISK], disk.lo_ns, disk.hi_ns, 0.05, "sink DISK", disk.tid);

	offcpu_feed_detach(f, pid);
	offcpu_feed_stats(f, &st);
	assert_int_equal(st.sources, 0);
	assert_int_equal(st.tracer.watched, 0);
	offcpu_feed_free(f);
	loop_free(l);
	free(src);
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
