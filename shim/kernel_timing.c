/* SPDX-License-Identifier: MIT */
/*
 * CUPTI, found with dlopen and used through one table of pointers.
 *
 * Joining kernels to GEMM calls: a driver-API callback on the launch cbids
 * runs on the launching thread, inside the cuBLAS call, before the kernel
 * can finish; it files the kernel's correlation id with what the thread is
 * doing (shim_launch_context).  The kernel's activity record, whenever and
 * in whatever buffer it arrives, takes that entry.  cuBLAS, cudart and
 * Triton all fetch cuLaunchKernel through cuGetProcAddress, which an
 * interposer cannot see, but the driver's own callbacks see every launch.
 * The CUSTOM2 external correlation id of each GEMM call is pushed too, for
 * tools that correlate through it.
 *
 * CUDA graphs: a launch into a capturing stream runs nothing; the driver
 * reports the graph node it became (GRAPHNODE_CREATED, on the launching
 * thread, between the launch's ENTER and EXIT), and that node id takes the
 * launch's entry.  Instantiation clones nodes (GRAPHNODE_CLONED), and each
 * replayed kernel's record names its clone, so every replay carries the
 * captured call's FLOPs again.
 *
 * CONCURRENT_KERNEL, never KERNEL (which serializes the GPU).  A thread
 * flushes every 500 ms so the collector's 1 s window is real.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wundef"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cupti.h>
#pragma GCC diagnostic pop

#include "core.h"
#include "kernel_timing.h"
#include "mfu/wire.h"
#include "sender.h"

#define FLUSH_PERIOD_MS 500
#define BUFFER_BYTES (4u << 20)

struct cupti_table {
	__typeof__(cuptiSubscribe) *cuptiSubscribe;
	__typeof__(cuptiUnsubscribe) *cuptiUnsubscribe;
	__typeof__(cuptiEnableCallback) *cuptiEnableCallback;
	__typeof__(cuptiActivityEnable) *cuptiActivityEnable;
	__typeof__(cuptiActivityDisable) *cuptiActivityDisable;
	__typeof__(cuptiActivityRegisterCallbacks) *cuptiActivityRegisterCallbacks;
	__typeof__(cuptiActivityFlushAll) *cuptiActivityFlushAll;
	__typeof__(cuptiActivityGetNextRecord) *cuptiActivityGetNextRecord;
	__typeof__(cuptiActivityGetNumDroppedRecords) *cuptiActivityGetNumDroppedRecords;
	__typeof__(cuptiActivityPushExternalCorrelationId) *cuptiActivityPushExternalCorrelationId;
	__typeof__(cuptiActivityPopExternalCorrelationId) *cuptiActivityPopExternalCorrelationId;
	__typeof__(cuptiActivityEnableDriverApi) *cuptiActivityEnableDriverApi;
	__typeof__(cuptiGetResultString) *cuptiGetResultString;
	__typeof__(cuptiGetGraphNodeId) *cuptiGetGraphNodeId; /* optional: graph attribution */
	__typeof__(cuptiSetThreadIdType) *cuptiSetThreadIdType; /* optional: kernel thread ids */
};

static struct cupti_table cu;
static CUpti_SubscriberHandle subscriber;
static _Atomic int timing;
static struct mfu_sender *out;

/*
 * The driver calls whose API records gap analysis needs, and what each one
 * means: the one table from cbid to enum mfu_api_kind.  Every cbid of
 * cupti_driver_cbid.h that names such a call is here, old and _v2, _ptds and
 * _ptsz alike, since which one a program reaches depends on its CUDA
 * version and its default-stream mode.
 *
 * LAUNCH: kernel and graph launches (the launch callback runs on these too).
 * SYNC: the host waits for the GPU: cuCtxSynchronize (17, and _v2 800 of
 * CUDA 12.9+), cuStreamSynchronize (126, _ptsz 440), cuEventSynchronize
 * (121).
 * BLOCKING: the synchronous (non-Async) copies and sets.  A synchronous
 * cuMemcpy to or from pageable host memory returns once the copy is done;
 * DtoD and the memsets to device memory may return early (CUDA's "API
 * synchronization behavior"), so a BLOCKING record says the host may have
 * waited and its duration says how long it did.  cuMemcpyPeer and
 * cuMemcpy3DPeer are synchronous too.  The batched and prefetch calls exist
 * only as Async and are not here.
 */
static const struct {
	CUpti_CallbackId cbid;
	uint8_t kind;
} api_cbids[] = {
#define L(name) {CUPTI_DRIVER_TRACE_CBID_##name, MFU_API_LAUNCH}
#define S(name) {CUPTI_DRIVER_TRACE_CBID_##name, MFU_API_SYNC}
#define B(name) {CUPTI_DRIVER_TRACE_CBID_##name, MFU_API_BLOCKING}
	L(cuLaunchKernel), L(cuLaunchKernel_ptsz), L(cuLaunchKernelEx), L(cuLaunchKernelEx_ptsz),
	L(cuLaunchCooperativeKernel), L(cuLaunchCooperativeKernel_ptsz), L(cuGraphLaunch), L(cuGraphLaunch_ptsz),
	S(cuCtxSynchronize), S(cuCtxSynchronize_v2), S(cuStreamSynchronize), S(cuStreamSynchronize_ptsz),
	S(cuEventSynchronize),
	B(cuMemcpy), B(cuMemcpy_ptds), B(cuMemcpyPeer), B(cuMemcpyPeer_ptds), B(cuMemcpy3DPeer),
	B(cuMemcpy3DPeer_ptds),
	B(cuMemcpyHtoD), B(cuMemcpyHtoD_v2), B(cuMemcpyHtoD_v2_ptds),
	B(cuMemcpyDtoH), B(cuMemcpyDtoH_v2), B(cuMemcpyDtoH_v2_ptds),
	B(cuMemcpyDtoD), B(cuMemcpyDtoD_v2), B(cuMemcpyDtoD_v2_ptds),
	B(cuMemcpyDtoA), B(cuMemcpyDtoA_v2), B(cuMemcpyDtoA_v2_ptds),
	B(cuMemcpyAtoD), B(cuMemcpyAtoD_v2), B(cuMemcpyAtoD_v2_ptds),
	B(cuMemcpyHtoA), B(cuMemcpyHtoA_v2), B(cuMemcpyHtoA_v2_ptds),
	B(cuMemcpyAtoH), B(cuMemcpyAtoH_v2), B(cuMemcpyAtoH_v2_ptds),
	B(cuMemcpyAtoA), B(cuMemcpyAtoA_v2), B(cuMemcpyAtoA_v2_ptds),
	B(cuMemcpy2D), B(cuMemcpy2D_v2), B(cuMemcpy2D_v2_ptds),
	B(cuMemcpy2DUnaligned), B(cuMemcpy2DUnaligned_v2), B(cuMemcpy2DUnaligned_v2_ptds),
	B(cuMemcpy3D), B(cuMemcpy3D_v2), B(cuMemcpy3D_v2_ptds),
	B(cuMemsetD8), B(cuMemsetD8_v2), B(cuMemsetD8_v2_ptds),
	B(cuMemsetD16), B(cuMemsetD16_v2), B(cuMemsetD16_v2_ptds),
	B(cuMemsetD32), B(cuMemsetD32_v2), B(cuMemsetD32_v2_ptds),
	B(cuMemsetD2D8), B(cuMemsetD2D8_v2), B(cuMemsetD2D8_v2_ptds),
	B(cuMemsetD2D16), B(cuMemsetD2D16_v2), B(cuMemsetD2D16_v2_ptds),
	B(cuMemsetD2D32), B(cuMemsetD2D32_v2), B(cuMemsetD2D32_v2_ptds),
#undef L
#undef S
#undef B
};

/* api_cbids by cbid, filled once by cupti_start; 0: a call nobody asked for
 * (the fallback that enables every driver record sends those too). */
static uint8_t api_kind_of[CUPTI_DRIVER_TRACE_CBID_SIZE];

static unsigned api_kind(CUpti_CallbackId cbid)
{
	return cbid < CUPTI_DRIVER_TRACE_CBID_SIZE ? api_kind_of[cbid] : 0;
}

/* MFU_LOG set and not "0": say what CUPTI refused that costs only detail. */
static int log_on(void)
{
	const char *v = getenv("MFU_LOG");
	return v && *v && strcmp(v, "0") != 0;
}

static const CUpti_CallbackId graph_cbids[] = {
	CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED,
	CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED,
	CUPTI_CBID_RESOURCE_GRAPHNODE_DESTROY_STARTING,
};

/* ---- id -> launch_info: launches by correlation id, graph nodes by node id ---- */

struct slot {
	uint64_t key; /* 0: empty */
	struct launch_info info;
	uint64_t born_flush; /* flushes done when it was filed */
	uint64_t born_ns;    /* when the flush before it ended */
};

struct idmap {
	struct slot *s;
	uint32_t cap, used;
};

/* A kernel's correlation id is taken by its first activity record; a graph
 * node's entry lives until the node is destroyed, since every replay runs it
 * again. */
static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;
static struct idmap launches, nodes;
static _Atomic uint64_t flushes_done;  /* periodic flushes completed */
static _Atomic uint64_t last_flush_ns; /* CLOCK_REALTIME when the last one ended */
#define MAP_CAP_MAX (1u << 20)

static uint32_t slot_of(uint64_t key, uint32_t cap)
{
	return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

/* Open addressing with backward-shift deletion; caller holds map_mu. */
static int map_grow(struct idmap *m)
{
	uint32_t cap = m->cap ? m->cap * 2 : 4096;
	if (cap > MAP_CAP_MAX)
		return -1;
	struct slot *t = calloc(cap, sizeof(*t));
	if (!t)
		return -1;
	for (uint32_t i = 0; i < m->cap; i++) {
		if (!m->s[i].key)
			continue;
		uint32_t j = slot_of(m->s[i].key, cap);
		while (t[j].key)
			j = (j + 1) & (cap - 1);
		t[j] = m->s[i];
	}
	free(m->s);
	m->s = t;
	m->cap = cap;
	return 0;
}

static void map_put(struct idmap *m, uint64_t key, const struct launch_info *info)
{
	if (!key)
		return;
	pthread_mutex_lock(&map_mu);
	if ((m->used + 1) * 2 > m->cap && map_grow(m)) {
		pthread_mutex_unlock(&map_mu);
		return; /* full: the kernel goes out plain; its call's FLOPs ride on the gemm record */
	}
	uint32_t i = slot_of(key, m->cap);
	while (m->s[i].key && m->s[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->s[i].key)
		m->used++;
	m->s[i] = (struct slot){key, *info, atomic_load_explicit(&flushes_done, memory_order_relaxed),
				atomic_load_explicit(&last_flush_ns, memory_order_relaxed)};
	pthread_mutex_unlock(&map_mu);
}

/* Finds key's entry; copies it to *info when info is not NULL, and removes
 * it when take is set.  Returns whether it was there. */
static int map_get(struct idmap *m, uint64_t key, struct launch_info *info, int take)
{
	int found = 0;
	pthread_mutex_lock(&map_mu);
	if (m->cap && key) {
		uint32_t i = slot_of(key, m->cap);
		while (m->s[i].key && m->s[i].key != key)
			i = (i + 1) & (m->cap - 1);
		if (m->s[i].key == key) {
			if (info)
				*info = m->s[i].info;
			found = 1;
			if (take) {
				/* backward-shift deletion keeps probe chains intact */
				uint32_t j = i;
				for (;;) {
					m->s[i].key = 0;
					for (;;) {
						j = (j + 1) & (m->cap - 1);
						if (!m->s[j].key)
							goto done;
						uint32_t home = slot_of(m->s[j].key, m->cap);
						if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
							break;
					}
					m->s[i] = m->s[j];
					i = j;
				}
done:
				m->used--;
			}
		}
	}
	pthread_mutex_unlock(&map_mu);
	return found;
}

/* A destroyed graph's last replays may still be running, and their records
 * arrive with a later flush: its nodes are forgotten two flushes after the
 * destruction, not at once.  Node ids are never reused. */
#define RETIRED_MAX 65536u

static struct {
	uint64_t id;
	uint64_t flush; /* flushes completed when it was destroyed */
} retired[RETIRED_MAX];
static uint32_t retired_head, retired_tail; /* under map_mu */

static void retire_node(uint64_t id)
{
	if (!id)
		return;
	pthread_mutex_lock(&map_mu);
	if (retired_tail - retired_head == RETIRED_MAX) {
		/* too many at once: the oldest goes now */
		uint64_t old = retired[retired_head++ % RETIRED_MAX].id;
		pthread_mutex_unlock(&map_mu);
		map_get(&nodes, old, NULL, 1);
		pthread_mutex_lock(&map_mu);
	}
	retired[retired_tail % RETIRED_MAX].id = id;
	retired[retired_tail % RETIRED_MAX].flush = atomic_load(&flushes_done);
	retired_tail++;
	pthread_mutex_unlock(&map_mu);
}

/* On the flush thread, after each flush is counted in flushes_done. */
static void forget_retired_nodes(void)
{
	uint64_t done = atomic_load(&flushes_done);
	for (;;) {
		pthread_mutex_lock(&map_mu);
		if (retired_head == retired_tail || retired[retired_head % RETIRED_MAX].flush + 2 > done) {
			pthread_mutex_unlock(&map_mu);
			return;
		}
		uint64_t id = retired[retired_head++ % RETIRED_MAX].id;
		pthread_mutex_unlock(&map_mu);
		map_get(&nodes, id, NULL, 1);
	}
}

/* A launch whose kernel record has not come after this many flushes never
 * will: CUPTI lost it, or another profiler (torch.profiler, Nsight) took
 * CUPTI's buffers.  Its FLOPs are then sent untimed, as an orphan, rather
 * than lost; at exit, after the forced flush, every launch left is one. */
static uint64_t orphan_flushes = 20; /* MFU_KERNEL_TIMEOUT_MS, default 10 s */
static uint64_t orphans_total;        /* flush thread only */
static int silent_said;               /* flush thread only */
static int timing_lost;               /* flush thread only: status says degraded */
static _Atomic uint64_t joined;       /* kernel records that took a launch's entry */
static _Atomic uint64_t callbackless; /* counted GEMM calls whose launches CUPTI did not call back */

/* On the flush thread.  all: every launch left, else those filed at least
 * orphan_flushes flushes ago. */
static void sweep_orphans(int all)
{
	uint64_t done = atomic_load(&flushes_done), found = 0;
	struct slot batch[256];

	for (;;) {
		uint32_t n = 0;
		pthread_mutex_lock(&map_mu);
		for (uint32_t i = 0; i < launches.cap && n < 256; i++)
			if (launches.s[i].key && (all || launches.s[i].born_flush + orphan_flushes <= done))
				batch[n++] = launches.s[i];
		pthread_mutex_unlock(&map_mu);
		if (!n)
			break;
		for (uint32_t i = 0; i < n; i++) {
			/* a record that came meanwhile took it first: nothing to do */
			if (!map_get(&launches, batch[i].key, NULL, 1))
				continue;
			found++;
			shim_orphan_flops(&batch[i].info, batch[i].born_ns ? batch[i].born_ns : shim_now_ns());
		}
	}
	/* Degraded from the sweep that finds lost records until one finds none
	 * while records join launches again (the other profiler let go). */
	uint64_t j = atomic_exchange(&joined, 0);
	/* GEMM calls without launch callbacks and no record joining: CUPTI
	 * stopped working for the shim (another profiler finalized it). */
	uint64_t silent = atomic_exchange(&callbackless, 0);
	int lost = found || (silent && !j);
	if (out && timing_lost && !lost && j) {
		timing_lost = 0;
		mfu_sender_set_status(out, 0);
	}
	if (!lost || !out)
		return;
	if (!timing_lost) {
		timing_lost = 1;
		mfu_sender_set_status(out, MFU_STATUS_DEGRADED);
	}
	if (!found) {
		if (!silent_said++)
			fprintf(stderr, "mfushim: CUPTI stopped reporting kernel launches (another profiler may have "
					"finalized it); GEMM FLOPs are counted from the cuBLAS calls, untimed\n");
		return;
	}
	mfu_sender_count_drops(out, MFU_DROP_CUPTI, found);
	if (!orphans_total)
		fprintf(stderr, "mfushim: CUPTI delivered no record for %llu kernel launches (another profiler may "
				"hold its buffers); their FLOPs are counted from the cuBLAS calls, untimed\n",
			(unsigned long long)found);
	orphans_total += found;
}

/* ---- kernel names ---- */

#define NAMES_MAX 65536u

static struct {
	uint64_t hash;
	uint32_t id;
} names[NAMES_MAX * 2];
static uint32_t next_name = 1;
/* CUPTI may complete buffers on its own threads: one at a time here. */
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

/* Called on the buffer thread only.  Returns the name's id, sending its
 * string record the first time; 0 past the table's size. */
static uint32_t name_id(const char *name)
{
	if (!name)
		return 0;
	uint64_t h = fnv(name);
	uint32_t i = (uint32_t)h & (NAMES_MAX * 2 - 1);
	while (names[i].hash && names[i].hash != h)
		i = (i + 1) & (NAMES_MAX * 2 - 1);
	if (names[i].hash)
		return names[i].id;
	if (next_name > NAMES_MAX)
		return 0;
	names[i].hash = h;
	names[i].id = next_name++;
	struct mfu_record r = {.type = MFU_REC_STRING};
	r.u.string.id = names[i].id;
	r.u.string.text = name;
	size_t len = strlen(name);
	r.u.string.len = (uint32_t)(len < MFU_STRING_MAX ? len : MFU_STRING_MAX);
	mfu_sender_put(out, &r);
	return names[i].id;
}

/* ---- callbacks ---- */

/* The launch this thread is inside, between its ENTER and EXIT callbacks:
 * stream capture turns it into a graph node instead of a kernel, and the
 * node's creation is reported on this thread in between. */
static __thread __attribute__((tls_model("initial-exec"))) struct {
	uint64_t corr;
	struct launch_info info;
	int armed, captured;
} in_launch;

static uint64_t node_id(CUgraphNode node)
{
	uint64_t id = 0;
	if (!node || cu.cuptiGetGraphNodeId(node, &id) != CUPTI_SUCCESS)
		return 0;
	return id;
}

static void on_launch(const CUpti_CallbackData *cb)
{
	struct launch_info info;

	if (cb->callbackSite == CUPTI_API_ENTER) {
		in_launch.armed = shim_launch_context(&info);
		if (!in_launch.armed)
			return;
		in_launch.corr = cb->correlationId;
		in_launch.info = info;
		in_launch.captured = 0;
		map_put(&launches, cb->correlationId, &info);
	} else if (in_launch.armed && in_launch.corr == cb->correlationId) {
		/* Captured, not run: no kernel record will ever take this entry;
		 * the graph node has the FLOPs now.  A launch that failed runs
		 * nothing either, and its FLOPs must not turn up as an orphan. */
		const CUresult *rc = cb->functionReturnValue;
		if (in_launch.captured || (rc && *rc != CUDA_SUCCESS))
			map_get(&launches, in_launch.corr, NULL, 1);
		in_launch.armed = 0;
	}
}

static void on_graph_node(CUpti_CallbackId cbid, const CUpti_GraphData *g)
{
	struct launch_info info;

	switch (cbid) {
	case CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED:
		/* a kernel node captured from a launch that carries something */
		if (in_launch.armed) {
			map_put(&nodes, node_id(g->node), &in_launch.info);
			in_launch.captured = 1;
		}
		break;
	case CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED:
		/* instantiation clones every node: replays report the clone's id */
		if (map_get(&nodes, node_id(g->originalNode), &info, 0))
			map_put(&nodes, node_id(g->node), &info);
		break;
	case CUPTI_CBID_RESOURCE_GRAPHNODE_DESTROY_STARTING:
		retire_node(node_id(g->node));
		break;
	default:
		break;
	}
}

static void CUPTIAPI on_callback(void *userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
				 const void *data)
{
	(void)userdata;
	if (domain == CUPTI_CB_DOMAIN_DRIVER_API) {
		on_launch(data);
	} else if (domain == CUPTI_CB_DOMAIN_RESOURCE) {
		const CUpti_ResourceData *r = data;
		if (r && r->resourceDescriptor)
			on_graph_node(cbid, r->resourceDescriptor);
	}
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
	*buffer = aligned_alloc(8, BUFFER_BYTES);
	*size = *buffer ? BUFFER_BYTES : 0;
	*max_records = 0;
}

static void emit_kernel(const CUpti_ActivityKernel10 *k)
{
	struct launch_info info = {0}, node;
	struct mfu_record r = {.type = MFU_REC_KERNEL};

	/* Always taken, so a graph launch's entry goes with its first kernel.
	 * A replayed node carries what its capture carried, every replay. */
	if (map_get(&launches, k->correlationId, &info, 1))
		atomic_fetch_add_explicit(&joined, 1, memory_order_relaxed);
	if (k->graphNodeId && map_get(&nodes, k->graphNodeId, &node, 0))
		info = node;
	r.u.kernel.start_ns = k->start;
	r.u.kernel.end_ns = k->end >= k->start ? k->end : k->start;
	r.u.kernel.device = k->deviceId < 4096 ? k->deviceId : 0;
	r.u.kernel.stream = k->streamId;
	r.u.kernel.name_id = name_id(k->name);
	r.u.kernel.corr = k->correlationId;
	r.u.kernel.call = info.call;
	r.u.kernel.flags = info.flags | (k->graphId ? MFU_KF_GRAPH : 0);
	r.u.kernel.flops = info.flops;
	mfu_sender_put(out, &r);
}

static void emit_api(const CUpti_ActivityAPI *a)
{
	struct mfu_record r = {.type = MFU_REC_API};
	unsigned kind = api_kind(a->cbid);

	if (!kind)
		return;
	r.u.api.start_ns = a->start;
	r.u.api.end_ns = a->end >= a->start ? a->end : a->start;
	r.u.api.tid = a->threadId;
	r.u.api.cbid = a->cbid;
	r.u.api.corr = a->correlationId;
	r.u.api.kind = kind;
	mfu_sender_put(out, &r);
}

static void emit_memcpy(const CUpti_ActivityMemcpy6 *m)
{
	struct mfu_record r = {.type = MFU_REC_COPY};
	r.u.copy.start_ns = m->start;
	r.u.copy.end_ns = m->end >= m->start ? m->end : m->start;
	r.u.copy.device = m->deviceId < 4096 ? m->deviceId : 0;
	r.u.copy.stream = m->streamId;
	r.u.copy.op = MFU_COPY_MEMCPY;
	r.u.copy.kind = m->copyKind;
	r.u.copy.bytes = m->bytes;
	r.u.copy.corr = m->correlationId;
	mfu_sender_put(out, &r);
}

static void emit_memset(const CUpti_ActivityMemset4 *m)
{
	struct mfu_record r = {.type = MFU_REC_COPY};
	r.u.copy.start_ns = m->start;
	r.u.copy.end_ns = m->end >= m->start ? m->end : m->start;
	r.u.copy.device = m->deviceId < 4096 ? m->deviceId : 0;
	r.u.copy.stream = m->streamId;
	r.u.copy.op = MFU_COPY_MEMSET;
	r.u.copy.bytes = m->bytes;
	r.u.copy.corr = m->correlationId;
	mfu_sender_put(out, &r);
}

static void emit_device(const CUpti_ActivityDevice5 *d)
{
	struct mfu_record r = {.type = MFU_REC_DEVICE};
	r.u.device.index = d->id < 4096 ? d->id : 0;
	r.u.device.name = d->name ? d->name : "";
	r.u.device.name_len = (uint32_t)strnlen(r.u.device.name, 255);
	r.u.device.sm_count = d->numMultiprocessors;
	r.u.device.sm_clock_khz = d->coreClockRate;
	r.u.device.cc_major = d->computeCapabilityMajor;
	r.u.device.cc_minor = d->computeCapabilityMinor;
	mfu_sender_put(out, &r); /* device records are encoded at once: the name is copied */
	/* cupti_activity.h: the client frees the device name */
	free((void *)d->name);
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
	CUpti_Activity *rec = NULL;
	size_t dropped = 0;

	(void)size;
	pthread_mutex_lock(&names_mu);
	while (out && cu.cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
		switch (rec->kind) {
		case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
			emit_kernel((const CUpti_ActivityKernel10 *)rec);
			break;
		case CUPTI_ACTIVITY_KIND_DRIVER:
			emit_api((const CUpti_ActivityAPI *)rec);
			break;
		case CUPTI_ACTIVITY_KIND_DEVICE:
			emit_device((const CUpti_ActivityDevice5 *)rec);
			break;
		case CUPTI_ACTIVITY_KIND_MEMCPY:
			emit_memcpy((const CUpti_ActivityMemcpy6 *)rec);
			break;
		case CUPTI_ACTIVITY_KIND_MEMSET:
			emit_memset((const CUpti_ActivityMemset4 *)rec);
			break;
		default: /* external correlation: the launch callback already joined */
			break;
		}
	}
	if (out && cu.cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped)
		mfu_sender_count_drops(out, MFU_DROP_CUPTI, dropped);
	pthread_mutex_unlock(&names_mu);
	free(buffer);
}

/* ---- loading ---- */

static void *try_open(const char *path)
{
	return path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
}

/* The directory of the library that defines sym, if loaded. */
static int dir_of(const char *sym, char *buf, size_t cap)
{
	Dl_info info;
	void *addr = dlsym(RTLD_DEFAULT, sym);
	if (!addr || !dladdr(addr, &info) || !info.dli_fname)
		return 0;
	snprintf(buf, cap, "%s", info.dli_fname);
	char *slash = strrchr(buf, '/');
	if (!slash)
		return 0;
	*slash = 0;
	return 1;
}

static void *load_cupti(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	void *h;

	/* the copy the process already has (PyTorch's, a profiler's) first */
	if ((h = dlopen("libcupti.so.13", RTLD_NOW | RTLD_NOLOAD)) || (h = dlopen("libcupti.so.12", RTLD_NOW | RTLD_NOLOAD)))
		return h;
	if ((h = try_open(getenv("MFU_CUPTI_PATH"))))
		return h;
	/* next to the CUDA libraries the process loaded: pip wheels put CUPTI
	 * in nvidia/cuda_cupti/lib beside nvidia/cublas/lib */
	static const char *const anchors[] = {"cudaGetDevice", "cublasCreate_v2", "cuInit"};
	static const char *const rel[] = {"/libcupti.so.13", "/../../cuda_cupti/lib/libcupti.so.13",
					  "/../extras/CUPTI/lib64/libcupti.so.13"};
	for (size_t a = 0; a < sizeof(anchors) / sizeof(anchors[0]); a++) {
		if (!dir_of(anchors[a], dir, sizeof(dir)))
			continue;
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(path, sizeof(path), "%s%s", dir, rel[i]);
			if ((h = try_open(path)))
				return h;
		}
	}
	static const char *const fixed[] = {"/usr/local/cuda/lib64/libcupti.so.13", "/usr/local/cuda/lib/libcupti.so.13",
					    "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13"};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if ((h = try_open(fixed[i])))
			return h;
	return NULL;
}

static const char *result_name(CUptiResult r)
{
	const char *s = NULL;
	if (cu.cuptiGetResultString && cu.cuptiGetResultString(r, &s) == CUPTI_SUCCESS && s)
		return s;
	return "unknown CUPTI error";
}

/* Another profiler held CUPTI when the shim started: the flush thread asks
 * again every RETRY_FLUSHES flush periods. */
#define RETRY_FLUSHES 4
static int held_by_other;

static int enable_callbacks(char *why, size_t cap);

int cupti_start(char *why, size_t cap)
{
	void *h = load_cupti();
	CUptiResult rc;

	if (!h) {
		snprintf(why, cap, "libcupti.so.13 not found (set MFU_CUPTI_PATH)");
		return 0;
	}
#define CUPTI_SYM(fn)                                                        \
	if (!(cu.fn = (__typeof__(fn) *)dlsym(h, #fn))) {                    \
		snprintf(why, cap, "CUPTI has no %s", #fn);                  \
		return 0;                                                    \
	}
	CUPTI_SYM(cuptiSubscribe)
	CUPTI_SYM(cuptiUnsubscribe)
	CUPTI_SYM(cuptiEnableCallback)
	CUPTI_SYM(cuptiActivityEnable)
	CUPTI_SYM(cuptiActivityDisable)
	CUPTI_SYM(cuptiActivityRegisterCallbacks)
	CUPTI_SYM(cuptiActivityFlushAll)
	CUPTI_SYM(cuptiActivityGetNextRecord)
	CUPTI_SYM(cuptiActivityGetNumDroppedRecords)
	CUPTI_SYM(cuptiActivityPushExternalCorrelationId)
	CUPTI_SYM(cuptiActivityPopExternalCorrelationId)
	CUPTI_SYM(cuptiGetResultString)
#undef CUPTI_SYM
	cu.cuptiActivityEnableDriverApi = (__typeof__(cuptiActivityEnableDriverApi) *)dlsym(h, "cuptiActivityEnableDriverApi");
	cu.cuptiGetGraphNodeId = (__typeof__(cuptiGetGraphNodeId) *)dlsym(h, "cuptiGetGraphNodeId");
	cu.cuptiSetThreadIdType = (__typeof__(cuptiSetThreadIdType) *)dlsym(h, "cuptiSetThreadIdType");

	for (size_t i = 0; i < sizeof(api_cbids) / sizeof(api_cbids[0]); i++)
		if (api_cbids[i].cbid < CUPTI_DRIVER_TRACE_CBID_SIZE)
			api_kind_of[api_cbids[i].cbid] = api_cbids[i].kind;
	if ((rc = cu.cuptiSubscribe(&subscriber, on_callback, NULL)) != CUPTI_SUCCESS) {
		if (rc == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
			snprintf(why, cap, "CUPTI is in use by another profiler (torch.profiler, Nsight); "
					   "retrying every %d s", RETRY_FLUSHES * FLUSH_PERIOD_MS / 1000);
			held_by_other = 1;
		} else {
			snprintf(why, cap, "CUPTI cannot start (%s; no GPU driver, or no permission)", result_name(rc));
		}
		return 0;
	}
	return enable_callbacks(why, cap);
}

/* Launch and graph callbacks for the subscriber just made. */
static int enable_callbacks(char *why, size_t cap)
{
	CUptiResult rc;

	for (size_t i = 0; i < sizeof(api_cbids) / sizeof(api_cbids[0]); i++) {
		if (api_cbids[i].kind != MFU_API_LAUNCH)
			continue;
		if ((rc = cu.cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API, api_cbids[i].cbid)) !=
		    CUPTI_SUCCESS) {
			snprintf(why, cap, "CUPTI refused the launch callbacks (%s)", result_name(rc));
			cu.cuptiUnsubscribe(subscriber);
			return 0;
		}
	}
	/* Without these, graph replays are timed but carry no FLOPs: coverage
	 * shows it. */
	for (size_t i = 0; cu.cuptiGetGraphNodeId && i < sizeof(graph_cbids) / sizeof(graph_cbids[0]); i++)
		cu.cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RESOURCE, graph_cbids[i]);
	return 1;
}

/* ---- flushing ---- */

static pthread_t flusher;
static int flusher_ok;
static pthread_mutex_t flush_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flush_cv = PTHREAD_COND_INITIALIZER;
static int flush_stop, final_done;

static int resumed_once;

static void say_resumed(void)
{
	mfu_sender_set_status(out, 0);
	timing_lost = 0;
	if (!resumed_once++)
		fprintf(stderr, "mfushim: kernel timing resumed: CUPTI is free again\n");
}

/* On the flush thread: subscribes and enables what cupti_start and
 * cupti_enable do at start.  A subscription can be made only when nobody
 * holds CUPTI, the shim included, so this never takes CUPTI from a profiler
 * that has it.  Returns 1 when timing runs again, 0 when CUPTI is held, -1
 * when it was free but refused the callbacks or kinds. */
static int take_cupti(void)
{
	char why[200];
	CUpti_SubscriberHandle probe;

	if (cu.cuptiSubscribe(&probe, on_callback, NULL) != CUPTI_SUCCESS)
		return 0;
	subscriber = probe;
	if (!enable_callbacks(why, sizeof(why)) || !cupti_enable(why, sizeof(why)))
		return -1;
	held_by_other = 0;
	say_resumed();
	return 1;
}

/* While another profiler held CUPTI at start. */
static void try_resume(void)
{
	if (held_by_other)
		take_cupti();
}

/* While kernel records have stopped coming.  If CUPTI is free, another
 * profiler finalized it (Kineto may call cuptiFinalize), which dropped the
 * shim's subscriber, kinds and buffers: take it back.  While the shim's own
 * subscription lives, CUPTI is not free, so a profiler that only borrowed
 * the buffers is never robbed of them. */
static void try_reacquire(void)
{
	if (take_cupti() < 0) {
		atomic_store(&timing, 0); /* and wait for CUPTI as at start */
		held_by_other = 1;
	}
}

static void *flush_main(void *arg)
{
	uint64_t waited = 0;
	(void)arg;
	pthread_mutex_lock(&flush_mu);
	while (!flush_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += FLUSH_PERIOD_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&flush_cv, &flush_mu, &ts);
		if (flush_stop)
			break;
		pthread_mutex_unlock(&flush_mu);
		if (!atomic_load(&timing)) {
			if (++waited % RETRY_FLUSHES == 0)
				try_resume();
			pthread_mutex_lock(&flush_mu);
			continue;
		}
		/* without this, CUPTI hands over only full buffers and the 1 s
		 * window would show nothing for a long time */
		cu.cuptiActivityFlushAll(0);
		atomic_store(&last_flush_ns, shim_now_ns());
		atomic_fetch_add(&flushes_done, 1);
		forget_retired_nodes();
		sweep_orphans(0);
		if (timing_lost && ++waited % RETRY_FLUSHES == 0)
			try_reacquire();
		pthread_mutex_lock(&flush_mu);
	}
	pthread_mutex_unlock(&flush_mu);
	/* Always, even when exit came before this thread first ran: a short
	 * process would otherwise lose every kernel record. */
	if (atomic_load(&timing))
		cu.cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
	sweep_orphans(1);
	pthread_mutex_lock(&flush_mu);
	final_done = 1;
	pthread_cond_broadcast(&flush_cv);
	pthread_mutex_unlock(&flush_mu);
	return NULL;
}

int cupti_enable(char *why, size_t cap)
{
	static const CUpti_ActivityKind kinds[] = {
		CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
		CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
		CUPTI_ACTIVITY_KIND_DEVICE,
	};
	CUptiResult rc;

	if ((rc = cu.cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed)) != CUPTI_SUCCESS) {
		snprintf(why, cap, "CUPTI refused activity buffers (%s)", result_name(rc));
		goto fail;
	}
	/* API records name their thread by pthread_self() unless told
	 * otherwise; the gemm records (gettid()) and the eBPF tracer's off-CPU
	 * intervals name it by its kernel id, and gap analysis joins on it. */
	rc = cu.cuptiSetThreadIdType ? cu.cuptiSetThreadIdType(CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM)
				     : CUPTI_ERROR_NOT_SUPPORTED;
	if (rc != CUPTI_SUCCESS && log_on())
		fprintf(stderr, "mfushim: CUPTI cannot name threads by kernel id (%s); idle gaps will not be "
				"put down to the launching thread being off-CPU\n",
			result_name(rc));
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if ((rc = cu.cuptiActivityEnable(kinds[i])) != CUPTI_SUCCESS) {
			snprintf(why, cap, "CUPTI cannot record kernels (%s)", result_name(rc));
			for (size_t j = 0; j < i; j++)
				cu.cuptiActivityDisable(kinds[j]);
			goto fail;
		}
	}
	/* Copies make the GPU busy without kernels; without them gap analysis
	 * sees idle time that is not, but kernel timing is whole. */
	static const CUpti_ActivityKind copy_kinds[] = {CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET};
	for (size_t i = 0; i < sizeof(copy_kinds) / sizeof(copy_kinds[0]); i++)
		if ((rc = cu.cuptiActivityEnable(copy_kinds[i])) != CUPTI_SUCCESS && log_on())
			fprintf(stderr, "mfushim: CUPTI records no %s (%s); kernel timing goes on\n",
				copy_kinds[i] == CUPTI_ACTIVITY_KIND_MEMCPY ? "memcpy" : "memset", result_name(rc));
	/* API records for gap analysis: only the cbids of api_cbids when this
	 * CUPTI can select them, else every driver call, and emit_api drops
	 * the rest. */
	int selected = cu.cuptiActivityEnableDriverApi != NULL;
	for (size_t i = 0; selected && i < sizeof(api_cbids) / sizeof(api_cbids[0]); i++)
		selected = cu.cuptiActivityEnableDriverApi(api_cbids[i].cbid, 1) == CUPTI_SUCCESS;
	if (!selected) {
		rc = cu.cuptiActivityEnable(CUPTI_ACTIVITY_KIND_DRIVER);
		if (log_on())
			fprintf(stderr, "mfushim: CUPTI cannot select driver API records; %s\n",
				rc == CUPTI_SUCCESS ? "taking all of them and keeping launches and syncs"
						    : "no API records for gap analysis");
	}
	atomic_store(&timing, 1);
	return 1;
fail:
	cu.cuptiUnsubscribe(subscriber);
	return 0;
}

void cupti_run(struct mfu_sender *s)
{
	const char *t = getenv("MFU_KERNEL_TIMEOUT_MS");
	long ms = t && *t ? strtol(t, NULL, 10) : 0;
	if (ms > 0)
		orphan_flushes = (uint64_t)(ms < FLUSH_PERIOD_MS ? FLUSH_PERIOD_MS : ms) / FLUSH_PERIOD_MS;
	atomic_store(&last_flush_ns, shim_now_ns());
	pthread_mutex_lock(&names_mu);
	out = s;
	pthread_mutex_unlock(&names_mu);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	flusher_ok = pthread_create(&flusher, NULL, flush_main, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void cupti_note_callbackless(void)
{
	atomic_fetch_add_explicit(&callbackless, 1, memory_order_relaxed);
}

int cupti_waiting(void)
{
	return held_by_other;
}

int cupti_timing(void)
{
	return atomic_load_explicit(&timing, memory_order_relaxed);
}

void cupti_push(uint64_t call)
{
	if (cupti_timing())
		cu.cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM2, call);
}

void cupti_pop(void)
{
	uint64_t last;
	if (cupti_timing())
		cu.cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM2, &last);
}

void cupti_finish(void)
{
	if (!flusher_ok)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 1;
	pthread_mutex_lock(&flush_mu);
	flush_stop = 1;
	pthread_cond_broadcast(&flush_cv);
	/* the forced flush runs on the flush thread; a wedged CUPTI must not
	 * hold the process at exit past a second */
	while (!final_done)
		if (pthread_cond_timedwait(&flush_cv, &flush_mu, &ts))
			break;
	int done = final_done;
	pthread_mutex_unlock(&flush_mu);
	if (done)
		pthread_join(flusher, NULL);
	atomic_store(&timing, 0);
}

void cupti_forked_child(void)
{
	/* The child has no flush thread, and CUPTI's subscriber belongs to the
	 * parent: the child reports untimed GEMM FLOPs if it uses cuBLAS. */
	atomic_store(&timing, 0);
	flusher_ok = 0;
	out = NULL;
	/* Nor does it wait for CUPTI: a parent that found it held by another
	 * profiler would otherwise hand the child a flush thread that keeps
	 * trying to subscribe, in a process where CUPTI must not be touched. */
	held_by_other = 0;
	pthread_mutex_init(&map_mu, NULL);
	pthread_mutex_init(&names_mu, NULL);
	pthread_mutex_init(&flush_mu, NULL);
	/* The parent's flush thread waits on this condvar at every fork, and a
	 * glibc condvar counts its waiters: a broadcast in the child would wait
	 * for that one to leave, for good. */
	pthread_cond_init(&flush_cv, NULL);
}
