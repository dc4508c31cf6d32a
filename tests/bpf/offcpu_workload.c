/* SPDX-License-Identifier: MIT */
/*
 * A process whose threads go off-CPU in known ways, for the off-CPU tracer's
 * test.  It prints "pid PID", waits for one byte on stdin, then runs:
 *   sleep   ITERS x (spin SPIN ms of CPU, nanosleep SLEEP ms)
 *   pipe    ITERS x (spin, block in read() until a writer thread, which
 *           waits until the reader sleeps, then sleeps SLEEP ms, writes)
 *   vfork   ITERS/2 x (spin, vfork a child that sleeps SLEEP ms and exits:
 *           the parent thread waits uninterruptibly)
 *   pinned  two threads pinned to one CPU, each spinning 5 x SPIN ms, so
 *           they preempt each other
 * and, once all are done, per thread:
 *   "tid KIND TID LO_NS HI_NS": the time the thread spent blocked (sleeping,
 *   or for vfork uninterruptible) lies in [LO_NS, HI_NS]: nominal for sleep
 *   (LO = HI), bracketed from both sides for pipe and vfork (see run_pipe),
 *   0 for pinned and the writer;
 *   "life TID START_NS END_NS CPU_NS RUN_DELAY_NS": the thread's own run in
 *   CLOCK_REALTIME, and the CPU time it used in it, so it was off the CPU
 *   for END - START - CPU, whatever the scheduler did;
 *   "block TID START_NS END_NS", one per blocking call of the sleep, pipe
 *   and vfork threads: the call in CLOCK_REALTIME, inside which the thread
 *   was off the CPU all but the few microseconds of the system call itself,
 *   in whichever state (a thread preempted on its way to sleep, or after
 *   its wakeup, waits runnable).
 * Usage: offcpu_workload [ITERS SPIN_MS SLEEP_MS].
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
 * be off-CPU time the test does not expect.  Each thread owns its slot. */
#define MAX_THREADS 8
#define MAX_BLOCKS 64
static struct slot {
	const char *kind;
	long tid;
	uint64_t lo_ns, hi_ns;
	uint64_t life_start, life_end, cpu_ns, run_delay_ns;
	unsigned nblocks;
	uint64_t blocks[MAX_BLOCKS][2];
} slots[MAX_THREADS];
static _Atomic unsigned nslots;
static __thread struct slot *me;

static void report(const char *kind, uint64_t lo_ns, uint64_t hi_ns)
{
	me->kind = kind;
	me->lo_ns = lo_ns;
	me->hi_ns = hi_ns;
}

/* One blocking call, [start, now) in CLOCK_REALTIME. */
static void block_done(uint64_t start)
{
	uint64_t end = now_ns(CLOCK_REALTIME);
	if (me->nblocks < MAX_BLOCKS) {
		me->blocks[me->nblocks][0] = start;
		me->blocks[me->nblocks][1] = end;
		me->nblocks++;
	}
}

static void *run_pipe(void *arg);
static void *run_sleep(void *arg);
static void *run_writer(void *arg);
static void *run_vfork(void *arg);
static void *run_pinned(void *arg);

/* The pipe reader first, so its tid is known before the writer needs it. */
static void *(*const thread_fns[])(void *) = {run_pipe, run_sleep, run_writer, run_vfork, run_pinned, run_pinned};
enum { NTHREADS = sizeof(thread_fns) / sizeof(thread_fns[0]) };

/* The scheduler's own count of the time this thread waited runnable
 * (schedstat's run_delay; 0 where the kernel does not keep it). */
static uint64_t run_delay_ns(void)
{
	unsigned long long run = 0, wait = 0;
	FILE *f = fopen("/proc/thread-self/schedstat", "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &run, &wait) != 2)
			wait = 0;
		fclose(f);
	}
	return wait;
}

/* Every thread runs through here: its life and CPU time bracket all of it. */
static void *thread_main(void *arg)
{
	void *(*fn)(void *) = thread_fns[(uintptr_t)arg];
	static struct slot spare; /* more threads than slots: not reported */
	unsigned i = nslots++;

	me = i < MAX_THREADS ? &slots[i] : &spare;
	me->tid = (long)syscall(SYS_gettid);
	uint64_t delay0 = run_delay_ns();
	uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	me->life_start = now_ns(CLOCK_REALTIME);
	fn(NULL);
	me->life_end = now_ns(CLOCK_REALTIME);
	me->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	me->run_delay_ns = run_delay_ns() - delay0;
	return NULL;
}

static void *run_sleep(void *arg)
{
	for (unsigned i = 0; i < iters; i++) {
		spin(spin_ms);
		uint64_t t = now_ns(CLOCK_REALTIME);
		sleep_ms_(sleep_ms);
		block_done(t);
	}
	report("sleep", (uint64_t)iters * sleep_ms * 1000000u, (uint64_t)iters * sleep_ms * 1000000u);
	return NULL;
}

/* The state letter of thread tid of process pid, from /proc; '?' if it
 * cannot be read.  Plain syscalls only: a vfork child calls it too. */
static char thread_state(long pid, long tid)
{
	char path[64], buf[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/stat", pid, tid);
	if ((fd = open(path, O_RDONLY)) < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the name may hold spaces and parens */
	return p && p[1] == ' ' ? p[2] : '?';
}

/*
 * Neither side can see exactly when the reader fell asleep in read(): the
 * reader's own timestamp before read() comes too early when it is preempted
 * on the way in (that time is runnable, not sleeping), and the writer's
 * sighting of state S comes too late by the writer's own scheduling delay.
 * So the pipe thread reports both: the sleeping time lies between them.
 */
static _Atomic uint64_t reader_t0, seen_asleep, written_at;
static _Atomic long pipe_tid;

static void *run_writer(void *arg)
{
	char c;
	for (unsigned i = 0; i < iters; i++) {
		if (read(ready_pipe[0], &c, 1) != 1)
			break;
		while (thread_state(getpid(), pipe_tid) != 'S')
			;
		seen_asleep = now_ns(CLOCK_MONOTONIC);
		sleep_ms_(sleep_ms);
		written_at = now_ns(CLOCK_MONOTONIC);
		if (write(data_pipe[1], "d", 1) != 1)
			break;
	}
	report("writer", 0, 0);
	return NULL;
}

static void *run_pipe(void *arg)
{
	uint64_t lo = 0, hi = 0;
	char c;
	pipe_tid = (long)syscall(SYS_gettid);
	for (unsigned i = 0; i < iters; i++) {
		spin(spin_ms);
		if (write(ready_pipe[1], "r", 1) != 1)
			break;
		uint64_t t = now_ns(CLOCK_REALTIME);
		reader_t0 = now_ns(CLOCK_MONOTONIC);
		if (read(data_pipe[0], &c, 1) != 1)
			break;
		block_done(t);
		lo += written_at - seen_asleep;
		hi += written_at - reader_t0;
	}
	report("pipe", lo, hi);
	return NULL;
}

/* Its own function, with the state that crosses vfork() in statics, so
 * that nothing the child may clobber lives in registers across it.  As for
 * the pipe, the parent's uninterruptible wait lies between the parent's
 * timestamp before vfork() and the child's sighting of it in state D. */
static volatile uint64_t vfork_t0, vfork_seen, vfork_child_end, vfork_rt0;
static volatile long vfork_parent;

__attribute__((noinline)) static void vfork_once(uint64_t *lo, uint64_t *hi)
{
	vfork_parent = (long)syscall(SYS_gettid);
	vfork_rt0 = now_ns(CLOCK_REALTIME);
	vfork_t0 = now_ns(CLOCK_MONOTONIC);
	pid_t p = vfork();
	if (p == 0) {
		/* The child borrows our memory until it exits: the stores are
		 * how the parent learns what it saw. */
		char st;
		while ((st = thread_state(getppid(), vfork_parent)) != 'D' && st != '?')
			;
		vfork_seen = now_ns(CLOCK_MONOTONIC);
		sleep_ms_(sleep_ms);
		vfork_child_end = now_ns(CLOCK_MONOTONIC);
		_exit(0);
	}
	if (p < 0)
		return;
	block_done(vfork_rt0);
	waitpid(p, NULL, 0);
	*lo += vfork_child_end - vfork_seen;
	*hi += vfork_child_end - vfork_t0;
}

static void *run_vfork(void *arg)
{
	uint64_t lo = 0, hi = 0;
	for (unsigned i = 0; i < iters / 2; i++) {
		spin(spin_ms);
		vfork_once(&lo, &hi);
	}
	report("vfork", lo, hi);
	return NULL;
}

static void *run_pinned(void *arg)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(pin_cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) == 0)
		spin(5 * spin_ms);
	report("pinned", 0, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th[NTHREADS];
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
	for (unsigned i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, thread_main, (void *)(uintptr_t)i)) {
			fprintf(stderr, "offcpu_workload: pthread_create failed\n");
			return 1;
		}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < nslots && i < MAX_THREADS; i++) {
		const struct slot *r = &slots[i];
		printf("tid %s %ld %llu %llu\n", r->kind, r->tid, (unsigned long long)r->lo_ns,
		       (unsigned long long)r->hi_ns);
		printf("life %ld %llu %llu %llu %llu\n", r->tid, (unsigned long long)r->life_start,
		       (unsigned long long)r->life_end, (unsigned long long)r->cpu_ns,
		       (unsigned long long)r->run_delay_ns);
		for (unsigned j = 0; j < r->nblocks; j++)
			printf("block %ld %llu %llu\n", r->tid, (unsigned long long)r->blocks[j][0],
			       (unsigned long long)r->blocks[j][1]);
	}
	printf("done\n");
	return 0;
}
