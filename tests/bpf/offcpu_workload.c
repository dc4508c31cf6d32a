/* SPDX-License-Identifier: MIT */
/*
 * A process whose threads go off-CPU in known ways, for the off-CPU tracer's
 * test.  It prints "pid PID", waits for one byte on stdin, then runs:
 *   sleep   ITERS x (spin SPIN ms of CPU, nanosleep SLEEP ms)
 *   pipe    ITERS x (spin, block in read() until a writer thread, which
 *           sleeps SLEEP ms first, writes)
 *   vfork   ITERS/2 x (spin, vfork a child that sleeps SLEEP ms and exits:
 *           the parent thread waits uninterruptibly)
 *   pinned  two threads pinned to one CPU, each spinning 5 x SPIN ms, so
 *           they preempt each other
 * and, once all are done, one line per thread, "tid KIND TID EXPECT_NS":
 * EXPECT_NS is the time the thread should have spent blocked in that state (nominal
 * for sleep; measured from the other side for pipe and vfork, because the
 * writer's or child's own scheduling delay is part of the wait; 0 for
 * pinned).  Usage: offcpu_workload [ITERS SPIN_MS SLEEP_MS].
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned iters = 10, spin_ms = 20, sleep_ms = 30;
static int pin_cpu = -1;
static int ready_pipe[2], data_pipe[2];

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins for ms of this thread's CPU time, so preemption does not shorten it. */
static void spin(unsigned ms)
{
	uint64_t end = now_ns(CLOCK_THREAD_CPUTIME_ID) + (uint64_t)ms * 1000000u;
	while (now_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		;
}

static void sleep_ms_(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts))
		;
}

/* What each thread reports, printed by main after the joins: a thread that
 * took a lock or wrote to stdout itself could block there, and that would
 * be off-CPU time the test does not expect. */
#define MAX_THREADS 8
static struct {
	const char *kind;
	long tid;
	uint64_t expect_ns;
} reports[MAX_THREADS];
static _Atomic unsigned nreports;

static void report(const char *kind, uint64_t expect_ns)
{
	unsigned i = nreports++;
	if (i < MAX_THREADS) {
		reports[i].kind = kind;
		reports[i].tid = (long)syscall(SYS_gettid);
		reports[i].expect_ns = expect_ns;
	}
}

static void *run_sleep(void *arg)
{
	for (unsigned i = 0; i < iters; i++) {
		spin(spin_ms);
		sleep_ms_(sleep_ms);
	}
	report("sleep", (uint64_t)iters * sleep_ms * 1000000u);
	return NULL;
}

static _Atomic uint64_t written_at;

static void *run_writer(void *arg)
{
	char c;
	for (unsigned i = 0; i < iters; i++) {
		if (read(ready_pipe[0], &c, 1) != 1)
			break;
		sleep_ms_(sleep_ms);
		written_at = now_ns(CLOCK_MONOTONIC);
		if (write(data_pipe[1], "d", 1) != 1)
			break;
	}
	report("writer", 0);
	return NULL;
}

static void *run_pipe(void *arg)
{
	uint64_t blocked = 0;
	char c;
	for (unsigned i = 0; i < iters; i++) {
		spin(spin_ms);
		/* The writer sleeps before it writes, so t0 comes well before
		 * the write and the read blocks from (about) t0 on. */
		if (write(ready_pipe[1], "r", 1) != 1)
			break;
		uint64_t t0 = now_ns(CLOCK_MONOTONIC);
		if (read(data_pipe[0], &c, 1) != 1)
			break;
		blocked += written_at - t0;
	}
	report("pipe", blocked);
	return NULL;
}

/* Its own function, with the state that crosses vfork() in statics, so
 * that nothing the child may clobber lives in registers across it. */
static volatile uint64_t vfork_t0, vfork_child_end;

__attribute__((noinline)) static uint64_t vfork_once(void)
{
	vfork_t0 = now_ns(CLOCK_MONOTONIC);
	pid_t p = vfork();
	if (p == 0) {
		/* The child borrows our memory until it exits: the store is
		 * how the parent learns when it did. */
		sleep_ms_(sleep_ms);
		vfork_child_end = now_ns(CLOCK_MONOTONIC);
		_exit(0);
	}
	if (p < 0)
		return 0;
	waitpid(p, NULL, 0);
	return vfork_child_end - vfork_t0;
}

static void *run_vfork(void *arg)
{
	uint64_t blocked = 0;
	for (unsigned i = 0; i < iters / 2; i++) {
		spin(spin_ms);
		blocked += vfork_once();
	}
	report("vfork", blocked);
	return NULL;
}

static void *run_pinned(void *arg)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(pin_cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) == 0)
		spin(5 * spin_ms);
	report("pinned", 0);
	return NULL;
}

int main(int argc, char **argv)
{
	void *(*fns[])(void *) = {run_sleep, run_pipe, run_writer, run_vfork, run_pinned, run_pinned};
	enum { N = sizeof(fns) / sizeof(fns[0]) };
	pthread_t th[N];
	cpu_set_t set;
	char c;

	if (argc == 4) {
		iters = (unsigned)atoi(argv[1]);
		spin_ms = (unsigned)atoi(argv[2]);
		sleep_ms = (unsigned)atoi(argv[3]);
	}
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (int i = 0; i < CPU_SETSIZE && pin_cpu < 0; i++)
			if (CPU_ISSET(i, &set))
				pin_cpu = i;
	if (pin_cpu < 0 || pipe(ready_pipe) || pipe(data_pipe)) {
		fprintf(stderr, "offcpu_workload: setup failed\n");
		return 1;
	}
	printf("pid %ld\n", (long)getpid());
	fflush(stdout);
	if (read(0, &c, 1) != 1)
		return 1;
	for (int i = 0; i < N; i++)
		if (pthread_create(&th[i], NULL, fns[i], NULL)) {
			fprintf(stderr, "offcpu_workload: pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < nreports && i < MAX_THREADS; i++)
		printf("tid %s %ld %llu\n", reports[i].kind, reports[i].tid, (unsigned long long)reports[i].expect_ns);
	printf("done\n");
	return 0;
}
