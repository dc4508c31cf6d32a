/* SPDX-License-Identifier: MIT */
/*
 * Types shared by the off-CPU tracer's kernel side (offcpu.bpf.c) and its
 * user side (offcpu.c).  Include it after the integer types are defined:
 * vmlinux.h in BPF code, <linux/types.h> in user space.  Everything here is
 * plain data; the layouts are fixed by the BPF object, so both sides must be
 * built from the same copy of this file.
 */
#ifndef MFU_TOOLS_BPF_OFFCPU_H
#define MFU_TOOLS_BPF_OFFCPU_H

/* Sizes of the maps.  OFFCPU_MAX_WATCHED bounds the number of shim sources
 * one collector follows; OFFCPU_MAX_THREADS the threads that may be off-CPU
 * at once among them (an LRU, so a thread that died off-CPU ages out). */
#define OFFCPU_MAX_WATCHED 4096
#define OFFCPU_MAX_THREADS 65536
#define OFFCPU_MAX_STACKS 16384
#define OFFCPU_STACK_DEPTH 32
#define OFFCPU_RINGBUF_BYTES (4u << 20)
/* The reader is woken when a quarter of the ring is full, and drains it
 * every OFFCPU_DRAIN_MS anyway: 1 MiB is ~18k events. */
#define OFFCPU_WAKEUP_BYTES (OFFCPU_RINGBUF_BYTES / 4)
#define OFFCPU_DRAIN_MS 100

/*
 * One off-CPU interval, sent when the thread gets the CPU back.  Times are
 * bpf_ktime_get_ns() (CLOCK_MONOTONIC).  wake_ns is when sched_wakeup saw
 * the thread made runnable again, 0 if it never did (it was preempted, or
 * the wakeup was missed); from wake_ns to end_ns the thread waited on a run
 * queue.  prev_state is the raw sched_switch prev_state field.
 */
struct offcpu_event {
	__u64 start_ns;
	__u64 wake_ns;
	__u64 end_ns;
	__s64 prev_state;
	__u32 pid; /* tgid */
	__u32 tid;
	__s32 stack_id; /* kernel stack in the stacks map, < 0: none */
	__u32 cpu;      /* where it ran again */
};

/* Per-thread state (the kernel side's "start" map): start_ns is 0 while the
 * thread is on a CPU.  exec_ns is the thread's CPU time (se.sum_exec_runtime)
 * when it left, by which a switch-in the kernel did not report is placed
 * (offcpu.bpf.c, missed_switch_in). */
struct offcpu_start {
	__u64 start_ns;
	__u64 wake_ns;
	__u64 exec_ns;
	__s64 prev_state;
	__u32 pid;
	__s32 stack_id;
};

/* Indexes into the per-CPU "counters" array. */
enum offcpu_counter {
	OFFCPU_CNT_SWITCHES = 0,  /* every sched_switch the program ran for */
	OFFCPU_CNT_OFF = 1,       /* a watched thread left the CPU */
	OFFCPU_CNT_ON = 2,        /* a watched thread came back: one event */
	OFFCPU_CNT_WAKEUPS = 3,   /* sched_wakeup of a watched off-CPU thread */
	OFFCPU_CNT_DROPS = 4,     /* ring buffer full: event lost */
	OFFCPU_CNT_STACK_ERR = 5, /* bpf_get_stackid failed */
	OFFCPU_CNT_MISSED_IN = 6, /* a watched thread left a CPU it was never seen to get */
	OFFCPU_CNT__COUNT = 7
};

#endif
