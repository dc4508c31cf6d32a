/* SPDX-License-Identifier: MIT */
/*
 * Shim core.  Nothing happens at load time: the first intercepted call
 * starts the shim (reads the environment, says hello, starts the sender
 * thread), so a process that never touches cuBLAS, such as a DataLoader
 * worker, costs nothing.  A forked child starts over on its own first call.
 * At exit the sender is flushed for at most a second.
 *
 * Kernel timing comes from CUPTI (kernel_timing.c).  Without it the source says so
 * in its hello (degraded) and gemm records carry their FLOPs themselves
 * (untimed).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "kernel_timing.h"
#include "gemm.h"
#include "mfu/wire.h"
#include "sender.h"
#include "tsc.h"

enum { ST_UNINIT, ST_STARTING, ST_ACTIVE, ST_DISABLED, ST_FINISHED };

/* What every GEMM call reads, in one cache line: after the framework's
 * own work each line is a miss, so the fewer the better. */
static struct {
	_Atomic int state;
	_Atomic int ctx_get_device_looked;
	struct mfu_sender *sender;
	_Atomic uint64_t devices_described; /* bit i: device i sent (i < 64) */
	int (*ctx_get_device)(int *);       /* the driver's, when it is loaded */
} hot __attribute__((aligned(64))) = {.state = ST_UNINIT};
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
/* Call ids are unique per process; threads take them in blocks so that a
 * GEMM call does not write a cache line every other thread writes too. */
#define CALL_BLOCK 4096u
static _Atomic uint64_t next_call_block = 1;
static _Atomic uint64_t next_step;
static _Atomic uint64_t step_begin_ns;
static double model_flops_default;
static unsigned model_class;

struct region {
	uint64_t start_ns;
	uint64_t flops_left; /* not yet handed to a kernel */
	unsigned cls, device;
};

struct current_call {
	uint64_t call, flops_left;
	unsigned cls, device;
	int active;
};

#define REGION_DEPTH_MAX 16

/* initial-exec: the shim is preloaded, so its few hundred bytes of TLS come
 * from the static block and every access is one instruction, not a call to
 * __tls_get_addr on each GEMM. */
#define TLS static __thread __attribute__((tls_model("initial-exec")))
/* What a GEMM call reads and writes of its thread's, in one cache line. */
struct thread_state {
	int depth, remat_depth, region_depth;
	uint32_t tid;                 /* gettid() is a system call: once per thread */
	uint64_t call_next, call_end; /* this thread's block of call ids */
	struct current_call cur;
};
_Static_assert(sizeof(struct thread_state) <= 64, "a GEMM call's thread state is one cache line");
TLS struct thread_state th __attribute__((aligned(64)));
TLS struct region regions[REGION_DEPTH_MAX];

uint64_t shim_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts); /* CUPTI's default clock, so records line up */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t new_call_id(void)
{
	if (__builtin_expect(th.call_next == th.call_end, 0)) {
		th.call_next = atomic_fetch_add_explicit(&next_call_block, CALL_BLOCK, memory_order_relaxed);
		th.call_end = th.call_next + CALL_BLOCK;
	}
	return th.call_next++;
}

void *shim_real(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static int64_t env_int(const char *name, int64_t dflt)
{
	const char *v = getenv(name);
	char *end;
	if (!v || !*v)
		return dflt;
	long long x = strtoll(v, &end, 10);
	return *end ? dflt : (int64_t)x;
}

static unsigned class_from_name(const char *s)
{
	for (unsigned c = 1; s && c < MFU_CLASS_COUNT; c++)
		if (!strcmp(s, mfu_class_name(c)))
			return c;
	return 0;
}

static void fill_hello(struct mfu_rec_hello *h, char *host, size_t hostcap)
{
	static char producer[] = "mfushim " MFU_VERSION;
	const char *job = getenv("MFU_JOB");

	if (!job || !*job)
		job = getenv("SLURM_JOB_ID");
	if (!job || !*job)
		job = getenv("TORCHELASTIC_RUN_ID");
	if (!job)
		job = "";
	if (gethostname(host, hostcap - 1))
		snprintf(host, hostcap, "unknown");
	host[hostcap - 1] = 0;
	memset(h, 0, sizeof(*h));
	h->time_ns = shim_now_ns();
	h->pid = (uint64_t)getpid();
	h->rank = env_int("RANK", env_int("SLURM_PROCID", -1));
	h->local_rank = env_int("LOCAL_RANK", env_int("SLURM_LOCALID", -1));
	h->world_size = (uint64_t)env_int("WORLD_SIZE", env_int("SLURM_NTASKS", 0));
	h->flags = 0;
	h->host = host;
	h->host_len = (uint32_t)strlen(host);
	h->job = job;
	h->job_len = (uint32_t)strlen(job);
	h->producer = producer;
	h->producer_len = sizeof(producer) - 1;
}

static void finish(void)
{
	int s = ST_ACTIVE;
	if (!atomic_compare_exchange_strong(&hot.state, &s, ST_FINISHED))
		return;
	/* Other threads may still be inside a call: the sender is shut down,
	 * not freed, so their late puts land in memory that stays valid. */
	cupti_finish();
	mfu_sender_shutdown(hot.sender, 0, 1000);
	struct mfu_sender_stats st;
	mfu_sender_stats(hot.sender, &st);
	uint64_t lost = 0;
	for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
		lost += st.dropped[i];
	if (lost)
		fprintf(stderr, "mfushim: %llu records lost (%llu kernel records CUPTI did not deliver; the rest: collector "
				"unreachable or too slow; see mfu_dropped_records_total)\n",
			(unsigned long long)lost, (unsigned long long)st.dropped[MFU_DROP_CUPTI]);
}

/* A child forked from a process whose shim had started: CUPTI's state (and
 * any lock a parent thread held in it at the fork) is the parent's, and
 * CUDA itself cannot be used after such a fork, so the child never touches
 * CUPTI: it counts untimed. */
static int forked_after_start;

static void forked_child(void)
{
	/* The parent's sender, its thread and its lock are not ours: forget
	 * them and start afresh if this process uses cuBLAS itself. */
	if (atomic_load(&hot.state) != ST_UNINIT)
		forked_after_start = 1;
	hot.sender = NULL;
	th.tid = 0; /* the forking thread's id is not the child's */
	cupti_forked_child();
	atomic_store(&hot.state, ST_UNINIT);
	atomic_store(&hot.devices_described, 0);
	pthread_mutex_init(&start_mu, NULL);
	th.depth = 0;
}

/* The child handler is registered before start_mu is first taken, never
 * under it: a fork while another thread is inside start() (the CUPTI load
 * can take long) otherwise left the child with start_mu held by a thread it
 * does not have, state ST_STARTING and no handler to reset either, and the
 * child's first GEMM call blocked in start() for good. */
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void fork_hook_install(void)
{
	pthread_atfork(NULL, NULL, forked_child);
}

static void start(void)
{
	pthread_once(&fork_hook_once, fork_hook_install);
	pthread_mutex_lock(&start_mu);
	if (atomic_load(&hot.state) != ST_UNINIT)
		goto out;
	const char *off = getenv("MFU_DISABLE");
	if (off && *off && strcmp(off, "0")) {
		atomic_store(&hot.state, ST_DISABLED);
		goto out;
	}
	atomic_store(&hot.state, ST_STARTING);
	const char *mf = getenv("MFU_MODEL_FLOPS_PER_STEP");
	if (mf && *mf)
		model_flops_default = strtod(mf, NULL);
	model_class = class_from_name(getenv("MFU_MODEL_DTYPE"));

	struct mfu_rec_hello h;
	char host[256], why[200] = "";
	struct mfu_sender_config cfg = {.ticks_ns = tsc_realtime_ns};
	fill_hello(&h, host, sizeof(host));
	tsc_start();
	/* CUPTI first, so the hello can say whether kernels will be timed */
	int timed = 0;
	if (forked_after_start)
		snprintf(why, sizeof(why), "forked from a process that had started CUDA profiling");
	else
		timed = cupti_start(why, sizeof(why)) && cupti_enable(why, sizeof(why));
	if (!timed)
		h.flags |= MFU_HELLO_DEGRADED;
	if (mfu_sender_new(&cfg, &h, &hot.sender)) {
		fprintf(stderr, "mfushim: cannot start its sender; passing calls through\n");
		atomic_store(&hot.state, ST_DISABLED);
		goto out;
	}
	if (timed || cupti_waiting())
		cupti_run(hot.sender);
	if (!timed)
		fprintf(stderr, "mfushim: kernel timing unavailable: %s; counting GEMM FLOPs from cuBLAS calls\n",
			why);
	static int hooks;
	if (!hooks++)
		atexit(finish);
	atomic_store(&hot.state, ST_ACTIVE);
out:
	pthread_mutex_unlock(&start_mu);
}

int shim_active(void)
{
	int s = atomic_load_explicit(&hot.state, memory_order_acquire);
	/* A thread arriving while another starts the shim waits for it (start
	 * takes the lock), or its first calls would go uncounted. */
	if (__builtin_expect(s == ST_UNINIT || s == ST_STARTING, 0)) {
		start();
		s = atomic_load(&hot.state);
	}
	return s == ST_ACTIVE;
}

/* Device of the calling thread's context, through the driver only when the
 * process already loaded it (the shim never loads libcuda itself). */

static __attribute__((noinline, cold)) void find_ctx_get_device(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
	if (h)
		hot.ctx_get_device = (int (*)(int *))dlsym(h, "cuCtxGetDevice");
	atomic_store_explicit(&hot.ctx_get_device_looked, 1, memory_order_release);
}

static inline unsigned current_device(void)
{
	if (__builtin_expect(!atomic_load_explicit(&hot.ctx_get_device_looked, memory_order_acquire), 0))
		find_ctx_get_device();
	int dev = 0;
	if (hot.ctx_get_device && hot.ctx_get_device(&dev) != 0)
		dev = 0;
	return dev >= 0 && dev < 4096 ? (unsigned)dev : 0;
}

static __attribute__((noinline, cold)) void describe_device_once(unsigned dev, uint64_t bit)
{
	if (atomic_fetch_or(&hot.devices_described, bit) & bit)
		return;
	/* Name and SM count through the driver, when it is loaded; without it
	 * there is nothing to say (CUPTI's device records say it otherwise). */
	void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return;
	int (*get_name)(char *, int, int) = (int (*)(char *, int, int))dlsym(h, "cuDeviceGetName");
	int (*get_attr)(int *, int, int) = (int (*)(int *, int, int))dlsym(h, "cuDeviceGetAttribute");
	char name[256] = "";
	int sms = 0, major = 0, minor = 0, clock = 0, memclock = 0;
	if (get_name && get_name(name, sizeof(name), (int)dev) != 0)
		name[0] = 0;
	if (get_attr) {
		get_attr(&sms, 16, (int)dev);      /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */
		get_attr(&clock, 13, (int)dev);    /* CU_DEVICE_ATTRIBUTE_CLOCK_RATE (kHz) */
		get_attr(&memclock, 36, (int)dev); /* CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE */
		get_attr(&major, 75, (int)dev);    /* COMPUTE_CAPABILITY_MAJOR */
		get_attr(&minor, 76, (int)dev);    /* COMPUTE_CAPABILITY_MINOR */
	}
	dlclose(h);
	if (!name[0])
		return;
	struct mfu_record r = {.type = MFU_REC_DEVICE};
	r.u.device.index = dev;
	r.u.device.name = name;
	r.u.device.name_len = (uint32_t)strnlen(name, sizeof(name));
	r.u.device.sm_count = (uint32_t)sms;
	r.u.device.sm_clock_khz = (uint32_t)clock;
	r.u.device.mem_clock_khz = (uint32_t)memclock;
	r.u.device.cc_major = (uint32_t)major;
	r.u.device.cc_minor = (uint32_t)minor;
	mfu_sender_put(hot.sender, &r);
}

/* Says once per process what a device is.  Every GEMM call asks, so the
 * question is one plain load, inlined; the answer is out of line. */
static inline void describe_device(unsigned dev)
{
	uint64_t bit = dev < 64 ? UINT64_C(1) << dev : 0;
	if (bit && !(atomic_load_explicit(&hot.devices_described, memory_order_relaxed) & bit))
		describe_device_once(dev, bit);
}

void shim_enter(struct shim_call *c)
{
	/* Nested (cuBLAS calling cublasLtMatmul through its PLT): forwarded, not
	 * counted, so one GEMM is one record. */
	c->counted = th.depth++ == 0 && shim_active();
}

void shim_begin(struct shim_call *c, const struct gemm_desc *g)
{
	c->call = new_call_id();
	th.cur = (struct current_call){c->call, g->flops, g->cls, current_device(), 1};
	cupti_push(c->call);
}

int shim_launch_context(struct launch_info *out)
{
	uint32_t remat = th.remat_depth ? MFU_KF_REMAT : 0;

	if (th.cur.active) {
		/* the first kernel of a call carries all its FLOPs (split-K and
		 * reductions follow with none), so they count once */
		*out = (struct launch_info){th.cur.call, th.cur.flops_left, th.cur.cls | MFU_KF_GEMM | remat, th.cur.device};
		th.cur.flops_left = 0;
		return 1;
	}
	/* Inside a declared region, every kernel is the region's work (so its
	 * time counts as covered); the first one carries the FLOPs not yet
	 * handed out, innermost region first. */
	int d = th.region_depth < REGION_DEPTH_MAX ? th.region_depth : REGION_DEPTH_MAX;
	for (int i = d - 1; i >= 0; i--) {
		if (!regions[i].flops_left)
			continue;
		*out = (struct launch_info){0, regions[i].flops_left,
					    (regions[i].cls ? regions[i].cls : model_class) | MFU_KF_DECLARED | remat,
					    regions[i].device};
		regions[i].flops_left = 0;
		return 1;
	}
	*out = (struct launch_info){0, 0, (th.region_depth ? MFU_KF_DECLARED : 0) | remat, 0};
	return out->flags != 0;
}

static inline uint32_t thread_id(void)
{
	if (__builtin_expect(!th.tid, 0))
		th.tid = (uint32_t)gettid();
	return th.tid;
}

/* Completes a gemm record begun at start (0: a cuBLAS call, which is
 * stamped once, when it returns: a second clock read per call would cost a
 * third of the shim's budget, and launch timing comes from CUPTI's API
 * records): the host times, the thread, the device, and the remat flag. */
static void finish_gemm(struct mfu_rec_gemm *m, uint64_t start, unsigned dev)
{
	m->end_ns = shim_now_ns();
	m->start_ns = start && start <= m->end_ns ? start : m->end_ns;
	m->tid = thread_id();
	m->device = dev;
	m->flags |= th.remat_depth ? MFU_KF_REMAT : 0;
}

static void put_gemm(struct mfu_record *r, uint64_t start, unsigned dev)
{
	describe_device(dev);
	finish_gemm(&r->u.gemm, start, dev);
	mfu_sender_put(hot.sender, r);
}

_Static_assert(offsetof(struct gemm_desc, flops) == 0 &&
		       offsetof(struct gemm_desc, cls) ==
			       offsetof(struct mfu_sender_gemm, flags) - offsetof(struct mfu_sender_gemm, flops) &&
		       offsetof(struct gemm_desc, m) == offsetof(struct mfu_sender_gemm, m) - offsetof(struct mfu_sender_gemm, flops) &&
		       offsetof(struct gemm_desc, a_type) ==
			       offsetof(struct mfu_sender_gemm, a_type) - offsetof(struct mfu_sender_gemm, flops) &&
		       offsetof(struct gemm_desc, api) == offsetof(struct mfu_sender_gemm, api) - offsetof(struct mfu_sender_gemm, flops) &&
		       offsetof(struct gemm_desc, ops) == offsetof(struct mfu_sender_gemm, ops) - offsetof(struct mfu_sender_gemm, flops),
	       "struct gemm_desc must mirror struct mfu_sender_gemm from flops to flags");

#define DESC_PACKED_BYTES (offsetof(struct gemm_desc, cls) + sizeof(uint32_t))

/* A call that does not fit its thread's gemm ring (wide, or the ring is
 * full): a full record, through the sender's lock. */
static __attribute__((noinline, cold)) void put_full(const struct shim_call *c, const struct gemm_desc *g,
						       uint32_t flags)
{
	struct mfu_record r = {.type = MFU_REC_GEMM};
	struct mfu_rec_gemm *m = &r.u.gemm;

	m->api = g->api;
	m->m = g->wide ? (uint64_t)g->full.m : g->m;
	m->n = g->wide ? (uint64_t)g->full.n : g->n;
	m->k = g->wide ? (uint64_t)g->full.k : g->k;
	m->batch = g->wide ? (uint64_t)g->full.batch : g->batch;
	m->a_type = g->wide ? g->full.a_type : (uint32_t)(g->a_type - 1u);
	m->b_type = g->wide ? g->full.b_type : (uint32_t)(g->b_type - 1u);
	m->c_type = g->wide ? g->full.c_type : (uint32_t)(g->c_type - 1u);
	m->compute_type = g->wide ? g->full.compute_type : (uint32_t)(g->compute_type - 1u);
	m->ops = g->ops;
	m->flags = flags;
	m->flops = g->flops;
	m->call = c->call;
	finish_gemm(m, 0, th.cur.device);
	mfu_sender_put(hot.sender, &r);
}

void shim_leave(struct shim_call *c, const struct gemm_desc *g, int succeeded)
{
	th.depth--;
	if (!c->counted)
		return;
	cupti_pop();
	/* FLOPs no kernel took (no kernel timing, or a launch path CUPTI did
	 * not report) travel on the gemm record itself. */
	int timing = cupti_timing();
	int untimed = th.cur.flops_left != 0 || !timing;
	if (__builtin_expect(th.cur.flops_left != 0 && timing, 0))
		cupti_note_callbackless();
	th.cur.active = 0;
	if (!succeeded || atomic_load_explicit(&hot.state, memory_order_relaxed) != ST_ACTIVE)
		return;
	describe_device(th.cur.device);
	uint32_t flags = g->cls | (untimed ? MFU_KF_UNTIMED : 0) | (th.remat_depth ? MFU_KF_REMAT : 0);
	/* The common case: one cache line in the thread's gemm ring, the
	 * description in one copy, stamped with the TSC once it is calibrated. */
	struct mfu_sender_gemm *p;
	if (__builtin_expect(g->wide || !(p = mfu_sender_gemm_reserve(hot.sender)), 0)) {
		put_full(c, g, flags);
		return;
	}
	if (__builtin_expect(tsc_ready(), 1)) {
		p->when = tsc_ticks();
		p->clock = MFU_SENDER_GEMM_TICKS;
	} else {
		p->when = shim_now_ns();
		p->clock = 0;
		tsc_maybe_calibrate(p->when);
	}
	p->call = c->call;
	memcpy(&p->flops, g, DESC_PACKED_BYTES);
	p->flags = flags;
	p->device = (uint16_t)th.cur.device;
	p->tid = thread_id();
	mfu_sender_gemm_commit(hot.sender);
}

void shim_orphan_flops(const struct launch_info *info, uint64_t when_ns)
{
	/* also while finishing: the exit sweep runs after the state says so,
	 * before the sender shuts down */
	int st = atomic_load_explicit(&hot.state, memory_order_relaxed);
	if (!info->flops || !hot.sender || (st != ST_ACTIVE && st != ST_FINISHED))
		return;
	/* Hardware FLOPs only: the call itself was counted by its gemm record. */
	struct mfu_record r = {.type = MFU_REC_GEMM};
	r.u.gemm.api = API_ORPHAN;
	r.u.gemm.batch = 1;
	r.u.gemm.flags = (info->flags & ~(uint32_t)(MFU_KF_GEMM | MFU_KF_DECLARED)) | MFU_KF_UNTIMED | MFU_KF_ORPHAN;
	r.u.gemm.flops = info->flops;
	r.u.gemm.call = info->call;
	r.u.gemm.start_ns = r.u.gemm.end_ns = when_ns;
	r.u.gemm.device = info->device;
	mfu_sender_put(hot.sender, &r);
}

/* ---- public API backends ---- */

void shim_step_begin(void)
{
	if (shim_active())
		atomic_store(&step_begin_ns, shim_now_ns());
}

void shim_step_end(double model_flops)
{
	uint64_t begin = atomic_exchange(&step_begin_ns, 0);
	if (!begin || !shim_active())
		return;
	if (model_flops <= 0)
		model_flops = model_flops_default;
	struct mfu_record r = {.type = MFU_REC_STEP};
	r.u.step.begin_ns = begin;
	r.u.step.end_ns = shim_now_ns();
	if (r.u.step.end_ns < begin)
		r.u.step.end_ns = begin;
	r.u.step.index = atomic_fetch_add(&next_step, 1);
	r.u.step.device = current_device();
	r.u.step.model_flops = model_flops > 0 && model_flops < 1.8e19 ? (uint64_t)(model_flops + 0.5) : 0;
	r.u.step.model_class = model_class;
	mfu_sender_put(hot.sender, &r);
}

void shim_set_model_flops(double model_flops)
{
	if (shim_active())
		model_flops_default = model_flops;
}

void shim_region_push(double flops, const char *dtype)
{
	unsigned cls = class_from_name(dtype);
	int d = th.region_depth++;
	if (d < REGION_DEPTH_MAX && shim_active()) {
		double f = flops > 0 && flops < 1.8e19 ? flops : 0;
		regions[d] = (struct region){shim_now_ns(), (uint64_t)(f + 0.5), cls, current_device()};
	}
}

void shim_region_pop(void)
{
	if (th.region_depth <= 0)
		return;
	int d = --th.region_depth;
	if (d >= REGION_DEPTH_MAX || !shim_active() || !regions[d].flops_left)
		return;
	/* FLOPs no kernel of the region took (no kernel timing, or no launch in
	 * it) travel as one declared, untimed record over its host time. */
	struct mfu_record r = {.type = MFU_REC_GEMM};
	r.u.gemm.api = API_REGION;
	r.u.gemm.batch = 1;
	r.u.gemm.flags = (regions[d].cls ? regions[d].cls : model_class) | MFU_KF_DECLARED | MFU_KF_UNTIMED;
	r.u.gemm.flops = regions[d].flops_left;
	r.u.gemm.call = new_call_id();
	put_gemm(&r, regions[d].start_ns, regions[d].device);
}

void shim_remat_push(void)
{
	th.remat_depth++;
}

void shim_remat_pop(void)
{
	if (th.remat_depth > 0)
		th.remat_depth--;
}
