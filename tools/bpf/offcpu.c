/* SPDX-License-Identifier: MIT */
/*
 * User side of the off-CPU tracer: checks privileges and tracefs, opens the
 * skeleton, sets its read-only data, loads, attaches, hands the ring
 * buffer's epoll fd to the collector's loop, and turns each kernel event
 * into intervals in the shim's clock.  See offcpu_tracer.h for the contract
 * and doc/architecture.md for where it runs.
 */
#include <errno.h>
#include <linux/capability.h>
#include <linux/types.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "loop.h"
#include "offcpu.h"
#include "offcpu.skel.h"
#include "offcpu_tracer.h"

/* NTP may step or slew REALTIME; re-measuring every 1 s keeps a step's
 * damage to 1 s of data. */
#define CLOCK_EVERY_DRAINS (1000 / OFFCPU_DRAIN_MS)
#define CLOCK_ROUNDS 5

struct offcpu_tracer {
	struct loop *loop;
	struct offcpu_bpf *skel;
	struct ring_buffer *rb;
	struct loop_io *rb_io;
	struct loop_timer *timer;
	offcpu_fn fn;
	void *arg;
	int64_t offset_ns;
	uint64_t events, intervals, watched;
	unsigned drains;
};

/* libbpf reports through one global hook; keep its last warning so a
 * failure can say what went wrong in one line.  Creation happens on one
 * thread, so a static buffer is enough. */
static char libbpf_last[256];

__attribute__((format(printf, 2, 0))) static int libbpf_log(enum libbpf_print_level level, const char *fmt,
								va_list ap)
{
	va_list aq;
	size_t n;

	if (level == LIBBPF_DEBUG)
		return 0;
	va_copy(aq, ap);
	vsnprintf(libbpf_last, sizeof(libbpf_last), fmt, aq);
	va_end(aq);
	n = strlen(libbpf_last);
	while (n && (libbpf_last[n - 1] == '\n' || libbpf_last[n - 1] == '\r'))
		libbpf_last[--n] = '\0';
	if (getenv("MFU_LOG"))
		return vfprintf(stderr, fmt, ap);
	return 0;
}

static int cap_has(const struct __user_cap_data_struct d[2], int cap)
{
	return !!(d[cap / 32].effective & (1u << (cap % 32)));
}

/* The kernel wants CAP_BPF + CAP_PERFMON (5.8+), or CAP_SYS_ADMIN. */
static int privileges_check(char *why, size_t whylen)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2] = {{0}};

	if (syscall(SYS_capget, &h, d)) {
		snprintf(why, whylen, "cannot read capabilities: %s", strerror(errno));
		return -errno;
	}
	if (cap_has(d, CAP_SYS_ADMIN) || (cap_has(d, 39 /* CAP_BPF */) && cap_has(d, 38 /* CAP_PERFMON */)))
		return 0;
	snprintf(why, whylen, "not privileged: needs root or CAP_BPF and CAP_PERFMON (uid %u)", (unsigned)geteuid());
	return -EPERM;
}

/* libbpf attaches tracepoints through their tracefs ids.  Mount tracefs
 * only when neither of the places libbpf looks has the events. */
static int tracefs_check(char *why, size_t whylen)
{
	static const char id[] = "/sys/kernel/tracing/events/sched/sched_switch/id";
	int rc = 0;

	if (!access(id, R_OK) || !access("/sys/kernel/debug/tracing/events/sched/sched_switch/id", R_OK))
		goto out;
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL) && errno != EBUSY) {
		rc = -errno;
		snprintf(why, whylen, "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: %s",
			 strerror(-rc));
		goto out;
	}
	if (access(id, R_OK)) {
		rc = -errno;
		snprintf(why, whylen, "no sched_switch tracepoint at %s: %s", id, strerror(-rc));
	}
out:
	return rc;
}

static void clock_update(struct offcpu_tracer *t)
{
	int64_t off;

	if (!offcpu_clock_offset(clock_gettime, CLOCK_ROUNDS, &off, NULL))
		t->offset_ns = off;
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct offcpu_tracer *t = ctx;
	struct offcpu_interval iv[2];
	size_t n;

	if (size < sizeof(struct offcpu_event))
		return 0;
	t->events++;
	n = offcpu_event_split(data, t->offset_ns, iv);
	for (size_t i = 0; i < n; i++) {
		t->intervals++;
		t->fn(t->arg, &iv[i]);
	}
	return 0;
}

static void rb_ready(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct offcpu_tracer *t = arg;

	ring_buffer__consume(t->rb);
}

static void on_timer(struct loop *l, struct loop_timer *tm, void *arg)
{
	struct offcpu_tracer *t = arg;

	/* The kernel side wakes us only when a lot is waiting. */
	ring_buffer__consume(t->rb);
	if (++t->drains % CLOCK_EVERY_DRAINS == 0)
		clock_update(t);
}

static int fail(int rc, const char *what, char *why, size_t whylen)
{
	char err[96];

	libbpf_strerror(rc, err, sizeof(err));
	if (libbpf_last[0])
		snprintf(why, whylen, "%s failed: %s (libbpf: %s)", what, err, libbpf_last);
	else
		snprintf(why, whylen, "%s failed: %s", what, err);
	return rc;
}

int offcpu_tracer_new(struct loop *l, const struct offcpu_tracer_opts *opts, offcpu_fn fn, void *arg,
		      struct offcpu_tracer **out, char *why, size_t whylen)
{
	struct offcpu_tracer *t = NULL;
	int rc;

	*out = NULL;
	if (!l || !fn) {
		snprintf(why, whylen, "no loop or callback");
		return -EINVAL;
	}
	if ((rc = privileges_check(why, whylen)))
		goto out;
	if ((rc = tracefs_check(why, whylen)))
		goto out;
	if (!(t = calloc(1, sizeof(*t)))) {
		rc = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	t->loop = l;
	t->fn = fn;
	t->arg = arg;
	clock_update(t);
	libbpf_last[0] = '\0';
	libbpf_set_print(libbpf_log);
	if (!(t->skel = offcpu_bpf__open())) {
		rc = fail(-errno, "opening the BPF object", why, whylen);
		goto out;
	}
	t->skel->rodata->want_stacks = opts && opts->stacks;
	/* Without stacks the map stays, but as small as the kernel allows. */
	if (!(opts && opts->stacks) && (rc = bpf_map__set_max_entries(t->skel->maps.stacks, 1))) {
		rc = fail(rc, "sizing the stack map", why, whylen);
		goto out;
	}
	if ((rc = offcpu_bpf__load(t->skel))) {
		rc = fail(rc, "loading the BPF program", why, whylen);
		goto out;
	}
	if ((rc = offcpu_bpf__attach(t->skel))) {
		rc = fail(rc, "attaching to sched_switch/sched_wakeup", why, whylen);
		goto out;
	}
	if (!(t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_sample, t, NULL))) {
		rc = fail(-errno, "creating the ring buffer reader", why, whylen);
		goto out;
	}
	if ((rc = loop_io_add(l, ring_buffer__epoll_fd(t->rb), LOOP_READ, rb_ready, t, &t->rb_io)) ||
	    (rc = loop_timer_add(l, OFFCPU_DRAIN_MS, OFFCPU_DRAIN_MS, on_timer, t, &t->timer))) {
		snprintf(why, whylen, "registering with the event loop failed: %s", strerror(-rc));
		goto out;
	}
	*out = t;
	t = NULL;
out:
	offcpu_tracer_free(t);
	return rc;
}

void offcpu_tracer_free(struct offcpu_tracer *t)
{
	if (!t)
		return;
	loop_timer_del(t->timer);
	loop_io_del(t->rb_io);
	ring_buffer__free(t->rb);
	offcpu_bpf__destroy(t->skel);
	free(t);
}

int offcpu_watch(struct offcpu_tracer *t, uint32_t pid)
{
	__u8 one = 1;
	int rc;

	if (!pid)
		return -EINVAL;
	if (!bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.watched), &pid, &one))
		return 0;
	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.watched), &pid, &one, BPF_NOEXIST)) {
		rc = errno == ENOSPC ? -E2BIG : -errno;
		return rc == -EEXIST ? 0 : rc;
	}
	t->watched++;
	return 0;
}

int offcpu_unwatch(struct offcpu_tracer *t, uint32_t pid)
{
	if (bpf_map_delete_elem(bpf_map__fd(t->skel->maps.watched), &pid))
		return -errno;
	t->watched--;
	return 0;
}

int offcpu_tracer_poll(struct offcpu_tracer *t)
{
	return ring_buffer__consume(t->rb);
}

void offcpu_tracer_stats(struct offcpu_tracer *t, struct offcpu_stats *st)
{
	int fd = bpf_map__fd(t->skel->maps.counters);
	int ncpu = libbpf_num_possible_cpus();

	memset(st, 0, sizeof(*st));
	if (ncpu > 0) {
		uint64_t *v = calloc((size_t)ncpu, sizeof(*v));
		for (__u32 i = 0; v && i < OFFCPU_CNT__COUNT; i++) {
			uint64_t sum = 0;
			if (bpf_map_lookup_elem(fd, &i, v))
				continue;
			for (int c = 0; c < ncpu; c++)
				sum += v[c];
			switch (i) {
			case OFFCPU_CNT_SWITCHES: st->switches = sum; break;
			case OFFCPU_CNT_OFF: st->off = sum; break;
			case OFFCPU_CNT_ON: st->on = sum; break;
			case OFFCPU_CNT_WAKEUPS: st->wakeups = sum; break;
			case OFFCPU_CNT_DROPS: st->drops = sum; break;
			case OFFCPU_CNT_STACK_ERR: st->stack_errors = sum; break;
			case OFFCPU_CNT_MISSED_IN: st->missed_in = sum; break;
			}
		}
		free(v);
	}
	st->events = t->events;
	st->intervals = t->intervals;
	st->watched = t->watched;
	st->clock_offset_ns = t->offset_ns;
}

int offcpu_tracer_stack(struct offcpu_tracer *t, int32_t stack_id, uint64_t *ips, size_t n)
{
	uint64_t buf[OFFCPU_STACK_DEPTH];
	__u32 id = (__u32)stack_id;
	size_t k = 0;

	if (stack_id < 0)
		return -EINVAL;
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks), &id, buf))
		return -errno;
	while (k < n && k < OFFCPU_STACK_DEPTH && buf[k]) {
		ips[k] = buf[k];
		k++;
	}
	return (int)k;
}
