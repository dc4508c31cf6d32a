/* SPDX-License-Identifier: MIT */
/*
 * bench_offcpu: what the eBPF off-CPU tracer costs.  A child process runs two
 * threads that ping-pong one byte over two pipes, both pinned to one CPU, so
 * every round trip is two context switches on that core and nothing else.
 * Four modes, interleaved, best of N: no tracer; tracer loaded but the child
 * not watched (what every other process on the machine pays); child watched;
 * child watched with kernel stacks.  The consumer (this process, reading the
 * ring buffer through the collector's loop) is pinned to another CPU when
 * there is one.  Printed: context switches per second on the one core, the
 * child's CPU time per switch and its ratio to the no-tracer run, and the
 * consumer's CPU time per event.  It prints figures only: nothing here
 * passes or fails.  Usage: bench_offcpu [ROUND_TRIPS [REPS]].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "loop.h"
#include "offcpu_tracer.h"

#ifndef BENCH_BUILDTYPE
#define BENCH_BUILDTYPE "unknown"
#endif

enum mode { M_NONE, M_UNWATCHED, M_WATCHED, M_STACKS, M__COUNT };
static const char *mode_name[M__COUNT] = {
	"no tracer", "tracer, child unwatched", "tracer, child watched", "watched + kernel stacks",
};

static long round_trips = 200000;
static int ab[2], ba[2];

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u;
}

static void *pong(void *arg)
{
	char c;
	for (long i = 0; i < round_trips; i++)
		if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
			break;
	return NULL;
}

/* The child: waits for go, then ping-pongs. */
static int child_run(int go_fd, int cpu)
{
	cpu_set_t set;
	pthread_t th;
	char c = 'x';

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) || pipe(ab) || pipe(ba))
		return 1;
	if (read(go_fd, &c, 1) != 1)
		return 1;
	if (pthread_create(&th, NULL, pong, NULL))
		return 1;
	for (long i = 0; i < round_trips; i++)
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			break;
	pthread_join(th, NULL);
	return 0;
}

struct result {
	double wall_s, child_cpu_s, self_cpu_s;
	uint64_t switches; /* the child's, voluntary + involuntary */
	struct offcpu_stats st;
};

static void on_interval(void *arg, const struct offcpu_interval *iv)
{
	(*(uint64_t *)arg)++;
}

static void on_exit_pipe(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	*(int *)arg = 1;
	loop_io_del(io);
}

static int run_once(enum mode m, int child_cpu, struct result *r, char *why, size_t whylen)
{
	struct offcpu_tracer_opts opts = {.stacks = m == M_STACKS};
	struct offcpu_tracer *t = NULL;
	struct loop *l = NULL;
	struct loop_io *io = NULL;
	struct rusage ru, self0, self1;
	uint64_t intervals = 0;
	int go[2] = {-1, -1}, dead[2] = {-1, -1}, done = 0, status, rc;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if ((rc = loop_new(&l)))
		goto out;
	if (m != M_NONE && (rc = offcpu_tracer_new(l, &opts, on_interval, &intervals, &t, why, whylen)))
		goto out;
	if (pipe(go) || pipe(dead)) {
		rc = -errno;
		goto out;
	}
	if ((pid = fork()) < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0) {
		close(go[1]);
		close(dead[0]);
		_exit(child_run(go[0], child_cpu));
	}
	close(go[0]);
	close(dead[1]);
	go[0] = dead[1] = -1;
	/* The write end of dead dies with the child: EOF is its exit. */
	if ((rc = loop_io_add(l, dead[0], LOOP_READ, on_exit_pipe, &done, &io)))
		goto out;
	if (m >= M_WATCHED && (rc = offcpu_watch(t, (uint32_t)pid)))
		goto out;
	getrusage(RUSAGE_SELF, &self0);
	uint64_t t0 = mono_ns();
	if (write(go[1], "g", 1) != 1) {
		rc = -EIO;
		goto out;
	}
	while (!done)
		loop_run_once(l, 100);
	if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(why, whylen, "the ping-pong child failed");
		rc = -ECHILD;
		goto out;
	}
	r->wall_s = (double)(mono_ns() - t0) / 1e9;
	if (t) {
		offcpu_tracer_poll(t);
		offcpu_tracer_stats(t, &r->st);
	}
	getrusage(RUSAGE_SELF, &self1);
	r->child_cpu_s = (double)(tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime)) / 1e9;
	r->self_cpu_s = (double)(tv_ns(self1.ru_utime) + tv_ns(self1.ru_stime) - tv_ns(self0.ru_utime) -
				 tv_ns(self0.ru_stime)) / 1e9;
	r->switches = (uint64_t)(ru.ru_nvcsw + ru.ru_nivcsw);
out:
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (dead[i] >= 0)
			close(dead[i]);
	}
	offcpu_tracer_free(t);
	loop_free(l);
	return rc;
}

int main(int argc, char **argv)
{
	struct result best[M__COUNT], r;
	int reps = 3, child_cpu = -1, self_cpu = -1, have[M__COUNT] = {0};
	char why[256] = "";
	cpu_set_t set;

	if (argc > 1)
		round_trips = atol(argv[1]);
	if (argc > 2)
		reps = atoi(argv[2]);
	if (round_trips <= 0 || reps <= 0) {
		fprintf(stderr, "usage: bench_offcpu [ROUND_TRIPS [REPS]]\n");
		return 2;
	}
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (int i = 0; i < CPU_SETSIZE; i++)
			if (CPU_ISSET(i, &set)) {
				if (child_cpu < 0)
					child_cpu = i;
				else if (self_cpu < 0)
					self_cpu = i;
			}
	if (child_cpu < 0)
		return 1;
	if (self_cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(self_cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	printf("command:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\nbuild: %s\n", BENCH_BUILDTYPE);
	printf("workload: 2 threads ping-pong 1 byte over pipes, %ld round trips, both pinned to CPU %d\n",
	       round_trips, child_cpu);
	printf("consumer: this process, %s; best (lowest child CPU) of %d, modes interleaved\n\n",
	       self_cpu >= 0 ? "pinned to another CPU" : "sharing the CPU", reps);

	for (int k = 0; k < reps; k++)
		for (int m = 0; m < M__COUNT; m++) {
			int rc = run_once((enum mode)m, child_cpu, &r, why, sizeof(why));
			if (rc) {
				fprintf(stderr, "bench_offcpu: %s: %s\n", mode_name[m], why[0] ? why : strerror(-rc));
				if (m == M_UNWATCHED && (rc == -EPERM || rc == -EOPNOTSUPP)) {
					printf("tracer unavailable (%s): only the no-tracer figures\n", why);
					reps = k + 1;
					break;
				}
				return 1;
			}
			if (!have[m] || r.child_cpu_s < best[m].child_cpu_s)
				best[m] = r;
			have[m] = 1;
		}

	double base = have[M_NONE] ? best[M_NONE].child_cpu_s / (double)best[M_NONE].switches : 0;
	printf("%-26s %12s %10s %14s %9s %10s %8s %14s\n", "mode", "switches/s", "wall s", "child CPU/sw",
	       "vs none", "events", "drops", "consumer/event");
	for (int m = 0; m < M__COUNT; m++) {
		if (!have[m])
			continue;
		struct result *b = &best[m];
		double per = b->child_cpu_s / (double)b->switches;
		printf("%-26s %12.0f %10.3f %11.0f ns %8.3fx %10llu %8llu", mode_name[m], (double)b->switches / b->wall_s,
		       b->wall_s, per * 1e9, base > 0 ? per / base : 0.0, (unsigned long long)b->st.events,
		       (unsigned long long)b->st.drops);
		if (b->st.events)
			printf(" %11.0f ns", b->self_cpu_s * 1e9 / (double)b->st.events);
		printf("\n");
	}
	if (have[M_WATCHED] && have[M_NONE]) {
		double extra = best[M_WATCHED].child_cpu_s / (double)best[M_WATCHED].switches - base;
		printf("\ntracer cost per switch of a watched thread: %.0f ns of the traced process's CPU\n", extra * 1e9);
		printf("sched_switch runs of the program in the watched run: %llu (all CPUs, all processes)\n",
		       (unsigned long long)best[M_WATCHED].st.switches);
	}
	return 0;
}
