// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Kernel side of the off-CPU tracer.  sched_switch notes when a thread of a
 * watched process (by tgid, so every thread the process has or will have is
 * covered) leaves the CPU and in which state; sched_wakeup notes when such a
 * thread is made runnable again; when the thread gets the CPU back one
 * offcpu_event goes to the ring buffer.  Everything else is left to user
 * space (offcpu.c): the state mapping, the clock conversion, the split at the
 * wakeup.  The licence is dual because bpf_get_stackid and the ring buffer
 * need a GPL-compatible program.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "offcpu.h"

/* Set by user space before load (offcpu_tracer_opts.stacks). */
const volatile bool want_stacks = false;
/* Wake the reader only once this much is waiting; it also drains on a timer.
 * Waking it for every event cost the traced thread ~3 us per switch (an
 * irq_work and a remote wakeup each time: tools/bench/bench_offcpu.c). */
const volatile __u64 wakeup_bytes = OFFCPU_WAKEUP_BYTES;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFCPU_MAX_WATCHED);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OFFCPU_MAX_THREADS);
	__type(key, __u32); /* tid */
	__type(value, struct offcpu_start);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, OFFCPU_MAX_STACKS); /* user space shrinks it to 1 without stacks */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, OFFCPU_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, OFFCPU_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OFFCPU_CNT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &i);

	if (v)
		(*v)++;
}

/*
 * tid is leaving a CPU it was never seen to get: the kernel ran it again
 * without a sched_switch.  A 6.18 guest kernel does that around some of its
 * own threads (ftrace's sched_switch misses the same switch-ins, so it is
 * not this program), and the interval was lost, a whole vfork or pipe wait
 * at times.  The thread has run for exec_now - sp->exec_ns of CPU time since
 * it left, and nothing else of it was seen, so it came back that long before
 * now: the interval ends there.  Time the hypervisor stole while it ran is
 * not in its CPU time, so the end comes late by that much at most.
 */
static __always_inline void missed_switch_in(const struct offcpu_start *sp, __u32 tid, __u64 now, __u64 exec_now)
{
	__u64 ran = exec_now > sp->exec_ns ? exec_now - sp->exec_ns : 0;
	__u64 in = now > ran ? now - ran : 0;
	struct offcpu_event *e;

	count(OFFCPU_CNT_MISSED_IN);
	if (in < sp->wake_ns)
		in = sp->wake_ns; /* it cannot have run before it was woken */
	if (in <= sp->start_ns || !sp->exec_ns || !bpf_map_lookup_elem(&watched, &sp->pid))
		return;
	count(OFFCPU_CNT_ON);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(OFFCPU_CNT_DROPS);
		return;
	}
	e->start_ns = sp->start_ns;
	e->wake_ns = sp->wake_ns;
	e->end_ns = in;
	e->prev_state = sp->prev_state;
	e->pid = sp->pid;
	e->tid = tid;
	e->stack_id = sp->stack_id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

SEC("tracepoint/sched/sched_switch")
int handle_switch(struct trace_event_raw_sched_switch *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	/* The tracepoint fires before the switch, so current is still prev:
	 * this is the only way to learn prev's tgid from this tracepoint. */
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 prev = ctx->prev_pid, next = ctx->next_pid;
	struct offcpu_start *sp, s;
	struct offcpu_event *e;

	count(OFFCPU_CNT_SWITCHES);
	if (prev && bpf_map_lookup_elem(&watched, &tgid)) {
		s.start_ns = now;
		s.wake_ns = 0;
		/* CO-RE: the field has been int and long; libbpf fixes the load. */
		s.prev_state = ctx->prev_state;
		s.pid = tgid;
		s.stack_id = want_stacks ? bpf_get_stackid(ctx, &stacks, 0) : -1;
		/* The scheduler brought it up to date when it put prev away. */
		s.exec_ns = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), se.sum_exec_runtime);
		if (want_stacks && s.stack_id < 0)
			count(OFFCPU_CNT_STACK_ERR);
		/* A thread keeps its entry (start_ns = 0 while on-CPU): writing
		 * in place is much cheaper than an LRU insert and delete on
		 * every switch. */
		sp = bpf_map_lookup_elem(&start, &prev);
		if (sp && sp->start_ns)
			missed_switch_in(sp, prev, now, s.exec_ns);
		if (sp)
			*sp = s;
		else
			bpf_map_update_elem(&start, &prev, &s, BPF_ANY);
		count(OFFCPU_CNT_OFF);
	}
	if (!next)
		return 0;
	sp = bpf_map_lookup_elem(&start, &next);
	if (!sp || !sp->start_ns)
		return 0;
	s = *sp;
	sp->start_ns = 0;
	/* Unwatched while it was off-CPU: drop it quietly. */
	if (!bpf_map_lookup_elem(&watched, &s.pid))
		return 0;
	count(OFFCPU_CNT_ON);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(OFFCPU_CNT_DROPS);
		return 0;
	}
	e->start_ns = s.start_ns;
	e->wake_ns = s.wake_ns;
	e->end_ns = now;
	e->prev_state = s.prev_state;
	e->pid = s.pid;
	e->tid = next;
	e->stack_id = s.stack_id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				      BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tracepoint/sched/sched_wakeup")
int handle_wakeup(struct trace_event_raw_sched_wakeup_template *ctx)
{
	__u32 tid = ctx->pid;
	struct offcpu_start *sp = bpf_map_lookup_elem(&start, &tid);

	/* A wakeup of a thread that never left the CPU finds no entry, or
	 * one with start_ns = 0. */
	if (sp && sp->start_ns && !sp->wake_ns) {
		sp->wake_ns = bpf_ktime_get_ns();
		count(OFFCPU_CNT_WAKEUPS);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
