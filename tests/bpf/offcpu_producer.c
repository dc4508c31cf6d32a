/* SPDX-License-Identifier: MIT */
/*
 * A producer whose launching thread really leaves the CPU between launches,
 * for the end-to-end host_offcpu test (tests/integration/test_offcpu_gaps.py).
 * It connects through the sender library like the shim (hello with its own
 * pid, records stamped with CLOCK_REALTIME like CUPTI's), then on its main
 * thread launches ROUNDS + 1 kernels: each a launch API record with this
 * thread's tid and a 1 ms kernel 20 us after the call returned, and between
 * two launches it waits GAP_MS in one of two ways:
 *   sleep   clock_nanosleep: blocked, off the CPU (gap cause host_offcpu)
 *   spin    a busy loop on the clock, as SCHED_FIFO where permitted: on
 *           the CPU (the launch comes late: host_launch_bound).  A spinner
 *           the scheduler preempts is off the CPU all the same, and on a
 *           loaded 2-core box a plain one got under half of it.
 * After the goodbye it prints "tid TID", "fifo 1" (or 0: not permitted) and,
 * per gap between kernel i's end A and kernel i+1's start B,
 * "gap A_NS B_NS WAIT_WALL_NS WAIT_CPU_NS": the wait's wall time and the CPU
 * time the thread had in it, by which the test judges a spin.
 * Usage: offcpu_producer unix:SOCKET sleep|spin ROUNDS GAP_MS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sender.h"

#define MAX_ROUNDS 1000
#define KERNEL_DELAY_NS 20000u
#define KERNEL_NS 1000000u
#define NAME_ID 1

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/* Puts the launch call [t0, t1) and the kernel it starts; returns the
 * kernel's [start, end). */
static int launch(struct mfu_sender *s, uint64_t tid, uint64_t corr, uint64_t k[2])
{
	uint64_t t0 = now_ns(CLOCK_REALTIME), t1 = now_ns(CLOCK_REALTIME);
	struct mfu_record r = {.type = MFU_REC_API};
	int rc;

	r.u.api = (struct mfu_rec_api){.start_ns = t0, .end_ns = t1, .tid = tid, .cbid = 307 /* cuLaunchKernel */,
				       .corr = corr, .kind = MFU_API_LAUNCH};
	if ((rc = mfu_sender_put(s, &r)))
		return rc;
	k[0] = t1 + KERNEL_DELAY_NS;
	k[1] = k[0] + KERNEL_NS;
	r = (struct mfu_record){.type = MFU_REC_KERNEL};
	r.u.kernel = (struct mfu_rec_kernel){.start_ns = k[0], .end_ns = k[1], .device = 0, .stream = 7,
					     .name_id = NAME_ID, .corr = corr};
	return mfu_sender_put(s, &r);
}

int main(int argc, char **argv)
{
	static uint64_t gaps[MAX_ROUNDS][4];
	static const char host[] = "offcpu-producer-host", job[] = "offcpu-gaps", producer[] = "offcpu_producer",
			  dev[] = "offcpu test device", kname[] = "offcpu_producer_kernel";
	struct mfu_sender *s = NULL;
	int spin, rounds, rc, fifo = 0;
	uint64_t gap_ns, tid = (uint64_t)syscall(SYS_gettid), k[2], prev_end;

	if (argc != 5 || (strcmp(argv[2], "sleep") && strcmp(argv[2], "spin")) || (rounds = atoi(argv[3])) < 1 ||
	    rounds > MAX_ROUNDS || atoi(argv[4]) < 1) {
		fprintf(stderr, "usage: offcpu_producer unix:SOCKET sleep|spin ROUNDS GAP_MS\n");
		return 2;
	}
	spin = !strcmp(argv[2], "spin");
	gap_ns = (uint64_t)atoi(argv[4]) * 1000000u;

	struct mfu_rec_hello h = {
		.time_ns = now_ns(CLOCK_REALTIME), .pid = (uint64_t)getpid(), .rank = 0, .local_rank = 0,
		.world_size = 1, .host = host, .host_len = sizeof(host) - 1, .job = job, .job_len = sizeof(job) - 1,
		.producer = producer, .producer_len = sizeof(producer) - 1, .has_device = 1,
		.device = {.index = 0, .sm_count = 132, .sm_clock_khz = 1980000, .mem_clock_khz = 2619000,
			   .cc_major = 9, .cc_minor = 0, .name = dev, .name_len = sizeof(dev) - 1},
	};
	struct mfu_sender_config cfg = {.target = argv[1], .flush_ms = 50};
	if ((rc = mfu_sender_new(&cfg, &h, &s))) {
		fprintf(stderr, "offcpu_producer: sender: %s\n", strerror(-rc));
		return 1;
	}
	struct mfu_record name = {.type = MFU_REC_STRING,
				  .u.string = {.id = NAME_ID, .text = kname, .len = sizeof(kname) - 1}};
	if ((rc = mfu_sender_put(s, &name)) || (rc = mfu_sender_flush(s, 5000))) {
		fprintf(stderr, "offcpu_producer: cannot reach %s: %s\n", argv[1], strerror(-rc));
		mfu_sender_free(s, 1, 1000);
		return 1;
	}
	/* The collector starts tracing this pid when it reads the hello. */
	sleep_ns(300000000u);
	if (spin) {
		struct sched_param sp = {.sched_priority = 1};
		fifo = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
	}

	if ((rc = launch(s, tid, 1, k)))
		goto out;
	for (int i = 0; i < rounds; i++) {
		prev_end = k[1];
		uint64_t w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		if (spin)
			while (now_ns(CLOCK_MONOTONIC) - w0 < gap_ns)
				;
		else
			sleep_ns(gap_ns);
		uint64_t w1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		if ((rc = launch(s, tid, (uint64_t)i + 2, k)))
			goto out;
		gaps[i][0] = prev_end;
		gaps[i][1] = k[0];
		gaps[i][2] = w1 - w0;
		gaps[i][3] = c1 - c0;
	}
out:
	if (fifo) {
		struct sched_param sp = {.sched_priority = 0};
		sched_setscheduler(0, SCHED_OTHER, &sp);
	}
	mfu_sender_free(s, rc ? 1 : 0, 5000);
	if (rc) {
		fprintf(stderr, "offcpu_producer: a record was dropped: %s\n", strerror(-rc));
		return 1;
	}
	printf("tid %llu\nfifo %d\n", (unsigned long long)tid, fifo);
	for (int i = 0; i < rounds; i++)
		printf("gap %llu %llu %llu %llu\n", (unsigned long long)gaps[i][0], (unsigned long long)gaps[i][1],
		       (unsigned long long)gaps[i][2], (unsigned long long)gaps[i][3]);
	return 0;
}
