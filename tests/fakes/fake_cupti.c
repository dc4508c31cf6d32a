/* SPDX-License-Identifier: MIT */
/*
 * Fake libcupti.so.13 for tests on machines without a GPU. It exports the CUPTI callback and
 * activity entry points the shim uses, with the CUDA 13 header signatures (the real headers are
 * in scope, so a mismatch fails to compile), and simulates what a real CUPTI does around kernel
 * launches, simplified and deterministic:
 *
 * - A "launch" comes from the fake libcublas/libcublasLt (fake_kernel_launch finds
 *   fake_cupti_kernel_launched) or from a test (fake_cupti_launch). It gets a new correlation id,
 *   runs the subscriber's driver-API callback (cuLaunchKernel, cbid 307) at ENTER and EXIT on the
 *   calling thread, and queues activity records: one EXTERNAL_CORRELATION record per external id
 *   kind pushed on the calling thread (only when the launch also gets an API record, as the real
 *   CUPTI documents), the DRIVER API record, and the CONCURRENT_KERNEL (or KERNEL) record on a
 *   fake per-stream GPU timeline.
 * - Copies, sets and synchronize calls (fake_cupti_memcpy, _memset, _synchronize) queue their
 *   DRIVER API records and MEMCPY / MEMSET records on the same timeline.
 * - Records are delivered only by cuptiActivityFlushAll or when the queue passes a threshold,
 *   packed into client buffers as the real CUPTI packs them (8-byte aligned, real struct sizes).
 *   The environment can make delivery adversarial: shuffled records, few records per buffer.
 * - The environment or a test hook can make it refuse subscribers or activity collection.
 *
 * Environment (read at first use; fake_cupti_reset reads it again):
 *   FAKE_CUPTI_KERNEL_NS=<ns>        kernel duration on the fake timeline (default 5000)
 *   FAKE_CUPTI_SHUFFLE=<seed>        shuffle each delivered batch with this seed (default off)
 *   FAKE_CUPTI_BUFFER_RECORDS=<n>    at most n records per buffer (default 0 = as many as fit)
 *   FAKE_CUPTI_FLUSH_THRESHOLD=<n>   deliver when more than n records wait (default 4096)
 *   FAKE_CUPTI_REFUSE=subscribe|activity|all   refuse cuptiSubscribe and/or activity enabling
 *   FAKE_CUPTI_REFUSE=copies         refuse only the MEMCPY and MEMSET activity kinds
 *   FAKE_CUPTI_NO_DRIVER_API_SELECT=1  cuptiActivityEnableDriverApi returns NOT_SUPPORTED
 *   FAKE_CUPTI_HOLD_SUBSCRIBE=<w>:<r>  the first cuptiSubscribe writes one byte to fd w, then
 *                                      waits for one byte on fd r (a test forks meanwhile)
 * The probe API is in fake_probe.h.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The project builds with -fvisibility=hidden; everything non-static here is meant to be seen. */
#pragma GCC visibility push(default)

/* CUDA's headers are not clean under the project's warning flags. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wundef"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wpedantic"
#include "cupti.h"
#pragma GCC diagnostic pop

#include "fake_probe.h"

#define LAUNCH_CBID CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel
#define MAX_CBID 1024
#define EXT_DEPTH 128
#define MAX_STREAMS 64
#define DEFAULT_KERNEL_NS 5000ull
#define DEFAULT_THRESHOLD 4096u
#define API_TO_KERNEL_NS 1000ull

#define ALIGN8(x) (((x) + 7u) & ~(size_t)7u)

/* ---- records ---- */

struct prec {
    union {
        CUpti_Activity hdr;
        CUpti_ActivityKernel10 kernel;
        CUpti_ActivityAPI api;
        CUpti_ActivityExternalCorrelation ext;
        CUpti_ActivityDevice5 dev;
        CUpti_ActivityMemcpy6 memcpy;
        CUpti_ActivityMemset4 memset;
    } u;
};

/* Size of the record struct that the real CUPTI 13 uses for each kind this fake emits; 0 for any
 * other kind. */
static size_t record_size(CUpti_ActivityKind kind)
{
    switch (kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
        return sizeof(CUpti_ActivityKernel10);
    case CUPTI_ACTIVITY_KIND_DRIVER:
    case CUPTI_ACTIVITY_KIND_RUNTIME:
        return sizeof(CUpti_ActivityAPI);
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION:
        return sizeof(CUpti_ActivityExternalCorrelation);
    case CUPTI_ACTIVITY_KIND_DEVICE:
        return sizeof(CUpti_ActivityDevice5);
    case CUPTI_ACTIVITY_KIND_MEMCPY:
        return sizeof(CUpti_ActivityMemcpy6);
    case CUPTI_ACTIVITY_KIND_MEMSET:
        return sizeof(CUpti_ActivityMemset4);
    default:
        return 0;
    }
}

/* ---- state ---- */

struct CUpti_Subscriber_st {
    CUpti_CallbackFunc callback;
    void *userdata;
    unsigned char enabled[CUPTI_CB_DOMAIN_SIZE][MAX_CBID];
};

struct stream_end {
    int device, stream, used;
    uint64_t end;
};

struct interned {
    struct interned *next;
    char name[];
};

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/* settings (env) */
static uint64_t kernel_ns = DEFAULT_KERNEL_NS;
static int shuffle_on;
static uint64_t shuffle_state;
static size_t buffer_records;
static size_t flush_threshold = DEFAULT_THRESHOLD;
static int refuse_subscribe, refuse_activity, refuse_copies, no_api_select;

/* CUPTI state */
static struct CUpti_Subscriber_st *subscriber;
static unsigned char act_enabled[CUPTI_ACTIVITY_KIND_COUNT];
static unsigned char driver_api[CUPTI_DRIVER_TRACE_CBID_SIZE];
static unsigned char runtime_api[CUPTI_RUNTIME_TRACE_CBID_SIZE];
static CUpti_BuffersCallbackRequestFunc buf_requested;
static CUpti_BuffersCallbackCompleteFunc buf_completed;
static CUpti_BuffersCallbackRequestFunc prev_requested; /* the registration before the last */
static CUpti_BuffersCallbackCompleteFunc prev_completed;
static struct prec *pending;
static size_t npending, cap_pending;
static size_t dropped;
static int device_emitted;
static struct stream_end timeline[MAX_STREAMS];
static struct interned *names;
static uint32_t next_corr = 1; /* atomic */
static char fake_context_obj;  /* CUcontext handed to callbacks: any stable non-NULL address */

/* probe counters */
static unsigned long long n_launches, n_flushes, n_buffers, n_subscribes, n_finalizes;
static unsigned long long n_delivered[CUPTI_ACTIVITY_KIND_COUNT];
static int kernel_kind_ever;

static __thread struct {
    uint64_t v[EXT_DEPTH];
    int n;
} ext_stack[CUPTI_EXTERNAL_CORRELATION_KIND_SIZE];

static unsigned long long env_ull(const char *name, unsigned long long def, int *set)
{
    const char *s = getenv(name);
    char *end;
    unsigned long long v;

    if (set)
        *set = 0;
    if (!s || !*s)
        return def;
    v = strtoull(s, &end, 0);
    if (*end)
        return def;
    if (set)
        *set = 1;
    return v;
}

/* Called with lk held, or from pthread_once. */
static void read_env(void)
{
    const char *r = getenv("FAKE_CUPTI_REFUSE");
    int set;

    kernel_ns = env_ull("FAKE_CUPTI_KERNEL_NS", DEFAULT_KERNEL_NS, NULL);
    shuffle_state = env_ull("FAKE_CUPTI_SHUFFLE", 0, &set);
    shuffle_on = set;
    buffer_records = (size_t)env_ull("FAKE_CUPTI_BUFFER_RECORDS", 0, NULL);
    flush_threshold = (size_t)env_ull("FAKE_CUPTI_FLUSH_THRESHOLD", DEFAULT_THRESHOLD, NULL);
    refuse_subscribe = r && (strstr(r, "subscribe") || strcmp(r, "all") == 0);
    refuse_activity = r && (strstr(r, "activity") || strcmp(r, "all") == 0);
    refuse_copies = r && strstr(r, "copies");
    no_api_select = env_ull("FAKE_CUPTI_NO_DRIVER_API_SELECT", 0, NULL) != 0;
}

/* A forked child gets a fake with no subscriber, no registered buffers and no records, and a
 * lock no parent thread can be holding: what a child may do with the real CUPTI is undefined,
 * and tests of the code under test must not hang on the fake's own lock. */
static void forked_child(void)
{
    pthread_mutex_init(&lk, NULL);
    subscriber = NULL;
    buf_requested = NULL;
    buf_completed = NULL;
    npending = 0;
    memset(act_enabled, 0, sizeof(act_enabled));
    memset(driver_api, 0, sizeof(driver_api));
}

static void read_env_once(void)
{
    read_env();
    pthread_atfork(NULL, NULL, forked_child);
}

static void init(void)
{
    pthread_once(&env_once, read_env_once);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64: deterministic for a given seed and call sequence. */
static uint64_t rng_next(void)
{
    uint64_t z = (shuffle_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Returns a copy of name that lives as long as the process. lk held. */
static const char *intern(const char *name)
{
    struct interned *e;
    size_t len;

    if (!name)
        name = "fake_unknown_kernel";
    for (e = names; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e->name;
    len = strlen(name) + 1;
    e = malloc(sizeof(*e) + len);
    if (!e)
        return "fake_unknown_kernel";
    memcpy(e->name, name, len);
    e->next = names;
    names = e;
    return e->name;
}

/* Appends a zeroed record of the given kind to the pending list. lk held. NULL if out of memory
 * (the record is then counted as dropped). */
static struct prec *pending_add(CUpti_ActivityKind kind)
{
    struct prec *p;

    if (npending == cap_pending) {
        size_t ncap = cap_pending ? cap_pending * 2 : 64;
        struct prec *np = realloc(pending, ncap * sizeof(*np));

        if (!np) {
            dropped++;
            return NULL;
        }
        pending = np;
        cap_pending = ncap;
    }
    p = &pending[npending++];
    memset(p, 0, sizeof(*p));
    p->u.hdr.kind = kind;
    return p;
}

/* lk held. */
static void queue_device_record(void)
{
    struct prec *p = pending_add(CUPTI_ACTIVITY_KIND_DEVICE);
    CUpti_ActivityDevice5 *d;

    if (!p)
        return;
    d = &p->u.dev;
    d->flags = CUPTI_ACTIVITY_FLAG_NONE;
    d->globalMemoryBandwidth = 3352320000ull; /* kB/s */
    d->globalMemorySize = 85029158912ull;
    d->constantMemorySize = 65536;
    d->l2CacheSize = 52428800;
    d->numThreadsPerWarp = 32;
    d->coreClockRate = 1980000; /* kHz */
    d->numMemcpyEngines = 5;
    d->numMultiprocessors = 132;
    d->maxIPC = 4;
    d->maxWarpsPerMultiprocessor = 64;
    d->maxBlocksPerMultiprocessor = 32;
    d->maxSharedMemoryPerMultiprocessor = 233472;
    d->maxRegistersPerMultiprocessor = 65536;
    d->maxRegistersPerBlock = 65536;
    d->maxSharedMemoryPerBlock = 49152;
    d->maxThreadsPerBlock = 1024;
    d->maxBlockDimX = 1024;
    d->maxBlockDimY = 1024;
    d->maxBlockDimZ = 64;
    d->maxGridDimX = 2147483647;
    d->maxGridDimY = 65535;
    d->maxGridDimZ = 65535;
    d->computeCapabilityMajor = 9;
    d->computeCapabilityMinor = 0;
    d->id = 0;
    d->eccEnabled = 1;
    for (int i = 0; i < 16; i++)
        d->uuid.bytes[i] = (char)(0xf0 + i);
    /* cupti_activity.h: "Client is responsible for freeing this memory using the free function
     * when done." So this one is heap memory, a fresh copy per record. */
    d->name = strdup("NVIDIA H100 80GB HBM3");
    d->isCudaVisible = 1;
    d->isMigEnabled = 0;
    d->numaId = (uint32_t)-1;
}

/* The fake GPU timeline: each (device, stream) runs its kernels back to back. lk held. */
static uint64_t *stream_last_end(int device, int stream)
{
    struct stream_end *free_slot = NULL;

    for (int i = 0; i < MAX_STREAMS; i++) {
        if (timeline[i].used && timeline[i].device == device && timeline[i].stream == stream)
            return &timeline[i].end;
        if (!timeline[i].used && !free_slot)
            free_slot = &timeline[i];
    }
    if (!free_slot)
        free_slot = &timeline[MAX_STREAMS - 1]; /* full: the last slot is shared */
    free_slot->used = 1;
    free_slot->device = device;
    free_slot->stream = stream;
    free_slot->end = 0;
    return &free_slot->end;
}

/* Takes the pending list out, shuffled if FAKE_CUPTI_SHUFFLE asks and shuffle is set. lk held. */
static struct prec *take_pending(size_t *n, int shuffle)
{
    struct prec *p = pending;

    *n = npending;
    pending = NULL;
    npending = cap_pending = 0;
    if (p && shuffle && shuffle_on) {
        for (size_t i = *n; i > 1; i--) {
            size_t j = (size_t)(rng_next() % i);
            struct prec t = p[i - 1];

            p[i - 1] = p[j];
            p[j] = t;
        }
    }
    return p;
}

/* Frees what a record that never reaches a client owns. */
static void release_record(struct prec *p)
{
    if (p->u.hdr.kind == CUPTI_ACTIVITY_KIND_DEVICE)
        free((void *)p->u.dev.name);
}

/* Hands recs to the client through its buffer callbacks. Called without lk: the callbacks are the
 * client's code. Frees recs. */
static void deliver(struct prec *recs, size_t n, CUpti_BuffersCallbackRequestFunc req,
                    CUpti_BuffersCallbackCompleteFunc done, size_t per_buffer)
{
    size_t i = 0;

    while (i < n) {
        uint8_t *buf = NULL;
        size_t size = 0, max_records = 0, off = 0, count = 0, limit;
        size_t lost = 0;
        unsigned long long per_kind[CUPTI_ACTIVITY_KIND_COUNT] = {0};

        req(&buf, &size, &max_records);
        if (!buf) {
            /* The client declined: CUPTI drops what it cannot store. */
            lost = n - i;
            for (; i < n; i++)
                release_record(&recs[i]);
            pthread_mutex_lock(&lk);
            dropped += lost;
            pthread_mutex_unlock(&lk);
            break;
        }
        limit = max_records;
        if (per_buffer && (limit == 0 || per_buffer < limit))
            limit = per_buffer;
        if (((uintptr_t)buf & 7u) != 0) {
            fprintf(stderr, "fake_cupti: activity buffer %p is not 8-byte aligned; records dropped\n",
                    (void *)buf);
            size = 0;
        }
        while (i < n && (limit == 0 || count < limit)) {
            size_t rsz = ALIGN8(record_size(recs[i].u.hdr.kind));

            if (rsz > size - off)
                break;
            memcpy(buf + off, &recs[i].u, record_size(recs[i].u.hdr.kind));
            memset(buf + off + record_size(recs[i].u.hdr.kind), 0,
                   rsz - record_size(recs[i].u.hdr.kind));
            per_kind[recs[i].u.hdr.kind]++;
            off += rsz;
            count++;
            i++;
        }
        if (count == 0) {
            /* Not even one record fits in this buffer: that record is dropped. */
            release_record(&recs[i]);
            i++;
            lost = 1;
        }
        pthread_mutex_lock(&lk);
        dropped += lost;
        n_buffers++;
        for (int k = 0; k < CUPTI_ACTIVITY_KIND_COUNT; k++)
            n_delivered[k] += per_kind[k];
        pthread_mutex_unlock(&lk);
        done(NULL, 0, buf, size, off);
    }
    free(recs);
}

/* Delivers everything pending now, unless no buffer callbacks are registered. */
static CUptiResult deliver_pending(int drop_if_no_callbacks)
{
    CUpti_BuffersCallbackRequestFunc req;
    CUpti_BuffersCallbackCompleteFunc done;
    struct prec *recs;
    size_t n, per_buffer;

    pthread_mutex_lock(&lk);
    req = buf_requested;
    done = buf_completed;
    per_buffer = buffer_records;
    if (!req || !done) {
        if (drop_if_no_callbacks) {
            recs = take_pending(&n, 0);
            for (size_t i = 0; i < n; i++)
                release_record(&recs[i]);
            free(recs);
            dropped += n;
        }
        pthread_mutex_unlock(&lk);
        return CUPTI_ERROR_INVALID_OPERATION;
    }
    recs = take_pending(&n, 1);
    pthread_mutex_unlock(&lk);
    if (n)
        deliver(recs, n, req, done, per_buffer);
    else
        free(recs);
    return CUPTI_SUCCESS;
}

/* ---- the fake GPU ---- */

/* ---- CUDA graphs: stream capture, instantiation, replay ---- */

#define MAX_GRAPH_NODES 4096

/* A node of a captured graph (owner: a graph id) or of an instantiated one (owner: an exec id,
 * origin: the node it was cloned from). The CUgraphNode handed to callbacks is its address. */
struct fnode {
    int used;
    int owner;
    uint64_t id;
    const char *name;
};

static struct fnode gnodes[MAX_GRAPH_NODES];
static uint64_t next_node_id = 1;
static int next_graph = 1;
static __thread int capturing; /* graph id this thread captures into; 0: none */

/* lk held. NULL when the table is full. */
static struct fnode *node_new(int owner, const char *name)
{
    for (size_t i = 0; i < MAX_GRAPH_NODES; i++) {
        if (!gnodes[i].used) {
            gnodes[i] = (struct fnode){1, owner, next_node_id++, name};
            return &gnodes[i];
        }
    }
    return NULL;
}

/* Runs the subscriber's resource callback for a graph event, if enabled; lk not held. */
static void graph_callback(CUpti_CallbackId cbid, struct fnode *node, struct fnode *original)
{
    CUpti_CallbackFunc cb = NULL;
    void *userdata = NULL;
    CUpti_GraphData g;
    CUpti_ResourceData r;

    pthread_mutex_lock(&lk);
    if (subscriber && subscriber->enabled[CUPTI_CB_DOMAIN_RESOURCE][cbid]) {
        cb = subscriber->callback;
        userdata = subscriber->userdata;
    }
    pthread_mutex_unlock(&lk);
    if (!cb)
        return;
    memset(&g, 0, sizeof(g));
    g.node = (CUgraphNode)(void *)node;
    g.originalNode = (CUgraphNode)(void *)original;
    memset(&r, 0, sizeof(r));
    r.context = (CUcontext)(void *)&fake_context_obj;
    r.resourceDescriptor = &g;
    cb(userdata, CUPTI_CB_DOMAIN_RESOURCE, cbid, &r);
}

CUptiResult CUPTIAPI cuptiGetGraphNodeId(CUgraphNode node, uint64_t *nodeId)
{
    struct fnode *n = (struct fnode *)(void *)node;
    CUptiResult r = CUPTI_ERROR_INVALID_PARAMETER;

    pthread_mutex_lock(&lk);
    if (nodeId && n >= gnodes && n < gnodes + MAX_GRAPH_NODES && n->used) {
        *nodeId = n->id;
        r = CUPTI_SUCCESS;
    }
    pthread_mutex_unlock(&lk);
    return r;
}

int fake_cupti_capture_begin(void)
{
    pthread_mutex_lock(&lk);
    capturing = next_graph++;
    pthread_mutex_unlock(&lk);
    return capturing;
}

int fake_cupti_capture_end(void)
{
    int g = capturing;

    capturing = 0;
    return g;
}

int fake_cupti_graph_instantiate(int graph)
{
    struct fnode *made[MAX_GRAPH_NODES][2];
    size_t n = 0;
    int exec;

    pthread_mutex_lock(&lk);
    exec = next_graph++;
    for (size_t i = 0; i < MAX_GRAPH_NODES; i++) {
        if (gnodes[i].used && gnodes[i].owner == graph) {
            struct fnode *c = node_new(exec, gnodes[i].name);
            if (!c)
                break;
            made[n][0] = c;
            made[n][1] = &gnodes[i];
            n++;
        }
    }
    pthread_mutex_unlock(&lk);
    for (size_t i = 0; i < n; i++)
        graph_callback(CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED, made[i][0], made[i][1]);
    return exec;
}

void fake_cupti_graph_destroy(int graph)
{
    for (size_t i = 0; i < MAX_GRAPH_NODES; i++) {
        pthread_mutex_lock(&lk);
        int mine = gnodes[i].used && gnodes[i].owner == graph;
        pthread_mutex_unlock(&lk);
        if (!mine)
            continue;
        graph_callback(CUPTI_CBID_RESOURCE_GRAPHNODE_DESTROY_STARTING, &gnodes[i], NULL);
        pthread_mutex_lock(&lk);
        gnodes[i].used = 0;
        pthread_mutex_unlock(&lk);
    }
}

/* ---- launches ---- */

static __thread uint32_t my_tid;
/* As the real CUPTI: records carry pthread_self() unless the client asked for
 * kernel thread ids (CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM). */
static _Atomic int thread_id_type;

static uint32_t record_tid(void)
{
    if (atomic_load(&thread_id_type) != CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM)
        return (uint32_t)(uintptr_t)pthread_self();
    if (!my_tid)
        my_tid = (uint32_t)syscall(SYS_gettid);
    return my_tid;
}

/* One launch API call (cbid) with its ENTER and EXIT callbacks and its API record. A kernel
 * launch captured into a graph becomes a node (GRAPHNODE_CREATED, on this thread, between ENTER
 * and EXIT) and runs nothing; otherwise each of the n kernels (knames[i], graph node nodes[i]
 * or none) gets a record on the stream's timeline. */
static void launch(CUpti_CallbackId cbid, const char *const *knames, struct fnode *const *nodes, size_t n,
                   int graph, int device, int stream)
{
    uint32_t corr = __atomic_fetch_add(&next_corr, 1, __ATOMIC_RELAXED);
    CUpti_CallbackFunc cb = NULL;
    void *userdata = NULL;
    uint64_t api_start, api_end, correlation_data = 0;
    CUresult launch_result = CUDA_SUCCESS;
    cuLaunchKernel_params params;
    cuGraphLaunch_params gparams;
    CUpti_CallbackData data;
    int over, capture = capturing && cbid == LAUNCH_CBID;

    init();
    pthread_mutex_lock(&lk);
    n_launches++;
    if (subscriber && subscriber->enabled[CUPTI_CB_DOMAIN_DRIVER_API][cbid]) {
        cb = subscriber->callback;
        userdata = subscriber->userdata;
    }
    pthread_mutex_unlock(&lk);

    memset(&params, 0, sizeof(params));
    params.gridDimX = params.gridDimY = params.gridDimZ = 1;
    params.blockDimX = 128;
    params.blockDimY = params.blockDimZ = 1;
    params.hStream = (CUstream)(intptr_t)stream;
    memset(&gparams, 0, sizeof(gparams));
    gparams.hStream = (CUstream)(intptr_t)stream;
    memset(&data, 0, sizeof(data));
    data.functionName = cbid == LAUNCH_CBID ? "cuLaunchKernel" : "cuGraphLaunch";
    data.functionParams = cbid == LAUNCH_CBID ? (const void *)&params : (const void *)&gparams;
    data.symbolName = cbid == LAUNCH_CBID ? knames[0] : NULL;
    data.context = (CUcontext)(void *)&fake_context_obj;
    data.contextUid = 1;
    data.correlationData = &correlation_data;
    data.correlationId = corr;

    api_start = now_ns();
    if (cb) {
        data.callbackSite = CUPTI_API_ENTER;
        cb(userdata, CUPTI_CB_DOMAIN_DRIVER_API, cbid, &data);
    }
    if (capture) {
        pthread_mutex_lock(&lk);
        struct fnode *node = node_new(capturing, intern(knames[0]));
        pthread_mutex_unlock(&lk);
        if (node)
            graph_callback(CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED, node, NULL);
    }
    api_end = now_ns();
    if (api_end <= api_start)
        api_end = api_start + 1;
    if (cb) {
        data.callbackSite = CUPTI_API_EXIT;
        data.functionReturnValue = &launch_result;
        cb(userdata, CUPTI_CB_DOMAIN_DRIVER_API, cbid, &data);
    }
    uint32_t tid = record_tid();

    pthread_mutex_lock(&lk);
    if (driver_api[cbid]) {
        struct prec *p;

        /* "When a CUPTI activity API record is created while within an external API region and
         * CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION is enabled, the activity API record will be
         * preceded by a CUpti_ActivityExternalCorrelation record for each kind." */
        if (act_enabled[CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION]) {
            for (int k = 1; k < CUPTI_EXTERNAL_CORRELATION_KIND_SIZE; k++) {
                if (ext_stack[k].n == 0)
                    continue;
                p = pending_add(CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION);
                if (!p)
                    continue;
                p->u.ext.externalKind = (CUpti_ExternalCorrelationKind)k;
                p->u.ext.externalId = ext_stack[k].v[ext_stack[k].n - 1];
                p->u.ext.correlationId = corr;
            }
        }
        p = pending_add(CUPTI_ACTIVITY_KIND_DRIVER);
        if (p) {
            p->u.api.cbid = cbid;
            p->u.api.start = api_start;
            p->u.api.end = api_end;
            p->u.api.processId = (uint32_t)getpid();
            p->u.api.threadId = tid;
            p->u.api.correlationId = corr;
            p->u.api.returnValue = CUDA_SUCCESS;
        }
    }
    if (!capture && (act_enabled[CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL] || act_enabled[CUPTI_ACTIVITY_KIND_KERNEL])) {
        CUpti_ActivityKind kind = act_enabled[CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL]
                                      ? CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL
                                      : CUPTI_ACTIVITY_KIND_KERNEL;
        uint64_t *last = stream_last_end(device, stream);

        for (size_t i = 0; i < n; i++) {
            uint64_t start = api_end + API_TO_KERNEL_NS;
            struct prec *p;

            if (*last > start)
                start = *last;
            *last = start + kernel_ns;
            p = pending_add(kind);
            if (!p)
                continue;
            CUpti_ActivityKernel10 *k = &p->u.kernel;

            k->registersPerThread = 32;
            k->start = start;
            k->end = start + kernel_ns;
            k->completed = k->end;
            k->deviceId = (uint32_t)device;
            k->contextId = 1;
            k->streamId = (uint32_t)stream;
            k->gridX = k->gridY = k->gridZ = 1;
            k->blockX = 128;
            k->blockY = k->blockZ = 1;
            k->correlationId = corr;
            k->gridId = (int64_t)corr * 64 + (int64_t)i;
            k->name = intern(knames[i]);
            k->queued = CUPTI_TIMESTAMP_UNKNOWN;
            k->submitted = CUPTI_TIMESTAMP_UNKNOWN;
            k->launchType = CUPTI_ACTIVITY_LAUNCH_TYPE_REGULAR;
            k->graphNodeId = nodes ? nodes[i]->id : 0;
            k->graphId = nodes ? (uint32_t)graph : 0;
        }
    }
    over = npending > flush_threshold;
    pthread_mutex_unlock(&lk);

    /* A full set of buffers goes out as the real CUPTI's would, without a flush. */
    if (over)
        deliver_pending(1);
}

void fake_cupti_launch(const char *name, int device, int stream)
{
    launch(LAUNCH_CBID, &name, NULL, 1, 0, device, stream);
}

void fake_cupti_graph_launch(int exec, int device, int stream)
{
    static const char *knames[MAX_GRAPH_NODES];
    static struct fnode *nodes[MAX_GRAPH_NODES];
    static pthread_mutex_t one_at_a_time = PTHREAD_MUTEX_INITIALIZER;
    size_t n = 0;

    pthread_mutex_lock(&one_at_a_time);
    pthread_mutex_lock(&lk);
    for (size_t i = 0; i < MAX_GRAPH_NODES; i++) {
        if (gnodes[i].used && gnodes[i].owner == exec) {
            knames[n] = gnodes[i].name;
            nodes[n++] = &gnodes[i];
        }
    }
    pthread_mutex_unlock(&lk);
    launch(CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch, knames, nodes, n, exec, device, stream);
    pthread_mutex_unlock(&one_at_a_time);
}

void fake_cupti_kernel_launched(const char *name, int device, int stream)
{
    fake_cupti_launch(name, device, stream);
}

/* ---- copies and synchronization ---- */

/* Queues the API record of a driver call that is not a launch, if its cbid is on. lk held. */
static void queue_api(CUpti_CallbackId cbid, uint32_t corr, uint64_t start, uint64_t end)
{
    struct prec *p;
    uint32_t tid = record_tid();

    if (cbid >= CUPTI_DRIVER_TRACE_CBID_SIZE || !driver_api[cbid] || !(p = pending_add(CUPTI_ACTIVITY_KIND_DRIVER)))
        return;
    p->u.api.cbid = cbid;
    p->u.api.start = start;
    p->u.api.end = end > start ? end : start + 1;
    p->u.api.processId = (uint32_t)getpid();
    p->u.api.threadId = tid;
    p->u.api.correlationId = corr;
    p->u.api.returnValue = CUDA_SUCCESS;
}

/* A synchronous call: the thread really waits until the fake GPU is done, then the call's API
 * record ends. lk not held. */
static void wait_until(CUpti_CallbackId cbid, uint32_t corr, uint64_t start, uint64_t until)
{
    uint64_t t;

    while ((t = now_ns()) < until) {
        uint64_t left = until - t;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&lk);
    queue_api(cbid, corr, start, now_ns());
    pthread_mutex_unlock(&lk);
}

/* A copy or set of bytes on the stream's timeline, issued by API call cbid; a synchronous one
 * returns when it is done. */
static void copy_or_set(CUpti_CallbackId cbid, CUpti_ActivityKind kind, int device, int stream, size_t bytes,
                        int copy_kind, int sync)
{
    uint32_t corr = __atomic_fetch_add(&next_corr, 1, __ATOMIC_RELAXED);
    uint64_t api_start = now_ns(), start, end;
    int over;

    init();
    pthread_mutex_lock(&lk);
    uint64_t *last = stream_last_end(device, stream);
    start = api_start + API_TO_KERNEL_NS;
    if (*last > start)
        start = *last;
    /* 10 GB/s: long enough to see, short enough not to matter */
    end = start + 1000 + bytes / 10;
    *last = end;
    if (!sync)
        queue_api(cbid, corr, api_start, now_ns());
    if (act_enabled[kind]) {
        struct prec *p = pending_add(kind);

        if (p && kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            CUpti_ActivityMemcpy6 *m = &p->u.memcpy;

            m->copyKind = (uint8_t)copy_kind;
            m->srcKind = CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE;
            m->dstKind = CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
            m->bytes = bytes;
            m->start = start;
            m->end = end;
            m->deviceId = (uint32_t)device;
            m->contextId = 1;
            m->streamId = (uint32_t)stream;
            m->correlationId = corr;
            m->copyCount = 1;
        } else if (p) {
            CUpti_ActivityMemset4 *m = &p->u.memset;

            m->value = 0;
            m->bytes = bytes;
            m->start = start;
            m->end = end;
            m->deviceId = (uint32_t)device;
            m->contextId = 1;
            m->streamId = (uint32_t)stream;
            m->correlationId = corr;
            m->memoryKind = CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
        }
    }
    over = npending > flush_threshold;
    pthread_mutex_unlock(&lk);
    if (sync)
        wait_until(cbid, corr, api_start, end + 500);
    if (over)
        deliver_pending(1);
}

void fake_cupti_memcpy(int device, int stream, size_t bytes, int copy_kind, int sync)
{
    CUpti_CallbackId cbid;

    switch (copy_kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
        cbid = sync ? CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2 : CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2;
        break;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
        cbid = sync ? CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2 : CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2;
        break;
    default:
        cbid = sync ? CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2 : CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2;
        break;
    }
    copy_or_set(cbid, CUPTI_ACTIVITY_KIND_MEMCPY, device, stream, bytes, copy_kind, sync);
}

void fake_cupti_memset(int device, int stream, size_t bytes, int sync)
{
    copy_or_set(sync ? CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2 : CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async,
                CUPTI_ACTIVITY_KIND_MEMSET, device, stream, bytes, 0, sync);
}

void fake_cupti_synchronize(int what, int device, int stream)
{
    uint32_t corr = __atomic_fetch_add(&next_corr, 1, __ATOMIC_RELAXED);
    uint64_t start = now_ns(), until = 0;
    CUpti_CallbackId cbid = what == FAKE_SYNC_CONTEXT ? CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize
                            : what == FAKE_SYNC_EVENT ? CUPTI_DRIVER_TRACE_CBID_cuEventSynchronize
                                                      : CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize;

    init();
    pthread_mutex_lock(&lk);
    /* the host waits until the GPU work it waits for is done */
    for (int i = 0; i < MAX_STREAMS; i++)
        if (timeline[i].used && timeline[i].device == device &&
            (what == FAKE_SYNC_CONTEXT || timeline[i].stream == stream) && timeline[i].end > until)
            until = timeline[i].end;
    pthread_mutex_unlock(&lk);
    wait_until(cbid, corr, start, until + 500);
}

/* ---- probe API ---- */

unsigned long long fake_cupti_launches(void)
{
    unsigned long long n;

    pthread_mutex_lock(&lk);
    n = n_launches;
    pthread_mutex_unlock(&lk);
    return n;
}

unsigned long long fake_cupti_records_delivered(int kind)
{
    unsigned long long n = 0;

    pthread_mutex_lock(&lk);
    if (kind < 0) {
        for (int i = 0; i < CUPTI_ACTIVITY_KIND_COUNT; i++)
            n += n_delivered[i];
    } else if (kind < CUPTI_ACTIVITY_KIND_COUNT) {
        n = n_delivered[kind];
    }
    pthread_mutex_unlock(&lk);
    return n;
}

unsigned long long fake_cupti_flushes(void)
{
    unsigned long long n;

    pthread_mutex_lock(&lk);
    n = n_flushes;
    pthread_mutex_unlock(&lk);
    return n;
}

unsigned long long fake_cupti_buffers_completed(void)
{
    unsigned long long n;

    pthread_mutex_lock(&lk);
    n = n_buffers;
    pthread_mutex_unlock(&lk);
    return n;
}

int fake_cupti_subscribers(void)
{
    int n;

    pthread_mutex_lock(&lk);
    n = subscriber != NULL;
    pthread_mutex_unlock(&lk);
    return n;
}

unsigned long long fake_cupti_subscribe_calls(void)
{
    unsigned long long n;

    pthread_mutex_lock(&lk);
    n = n_subscribes;
    pthread_mutex_unlock(&lk);
    return n;
}

unsigned long long fake_cupti_finalizes(void)
{
    unsigned long long n;

    pthread_mutex_lock(&lk);
    n = n_finalizes;
    pthread_mutex_unlock(&lk);
    return n;
}

size_t fake_cupti_pending(void)
{
    size_t n;

    pthread_mutex_lock(&lk);
    n = npending;
    pthread_mutex_unlock(&lk);
    return n;
}

int fake_cupti_activity_enabled(int kind)
{
    int on = 0;

    pthread_mutex_lock(&lk);
    if (kind == CUPTI_ACTIVITY_KIND_DRIVER)
        on = driver_api[LAUNCH_CBID];
    else if (kind > 0 && kind < CUPTI_ACTIVITY_KIND_COUNT)
        on = act_enabled[kind];
    pthread_mutex_unlock(&lk);
    return on;
}

int fake_cupti_kernel_kind_enabled(void)
{
    int on;

    pthread_mutex_lock(&lk);
    on = kernel_kind_ever;
    pthread_mutex_unlock(&lk);
    return on;
}

void fake_cupti_set_refuse(int subscribe, int activity)
{
    init();
    pthread_mutex_lock(&lk);
    refuse_subscribe = subscribe != 0;
    refuse_activity = activity != 0;
    pthread_mutex_unlock(&lk);
}

void fake_cupti_add_dropped(size_t n)
{
    pthread_mutex_lock(&lk);
    dropped += n;
    pthread_mutex_unlock(&lk);
}

void fake_cupti_reset(void)
{
    struct prec *recs;
    size_t n;

    init();
    pthread_mutex_lock(&lk);
    recs = take_pending(&n, 0);
    for (size_t i = 0; i < n; i++)
        release_record(&recs[i]);
    free(recs);
    read_env();
    dropped = 0;
    n_launches = n_flushes = n_buffers = n_subscribes = n_finalizes = 0;
    memset(n_delivered, 0, sizeof(n_delivered));
    kernel_kind_ever = act_enabled[CUPTI_ACTIVITY_KIND_KERNEL];
    memset(timeline, 0, sizeof(timeline));
    pthread_mutex_unlock(&lk);
}

/* ---- CUPTI: results and time ---- */

#define RESULTS(X)                                                                                 \
    X(CUPTI_SUCCESS) X(CUPTI_ERROR_INVALID_PARAMETER) X(CUPTI_ERROR_INVALID_DEVICE)                \
    X(CUPTI_ERROR_INVALID_CONTEXT) X(CUPTI_ERROR_INVALID_EVENT_DOMAIN_ID)                          \
    X(CUPTI_ERROR_INVALID_EVENT_ID) X(CUPTI_ERROR_INVALID_EVENT_NAME)                              \
    X(CUPTI_ERROR_INVALID_OPERATION) X(CUPTI_ERROR_OUT_OF_MEMORY) X(CUPTI_ERROR_HARDWARE)          \
    X(CUPTI_ERROR_PARAMETER_SIZE_NOT_SUFFICIENT) X(CUPTI_ERROR_API_NOT_IMPLEMENTED)                \
    X(CUPTI_ERROR_MAX_LIMIT_REACHED) X(CUPTI_ERROR_NOT_READY) X(CUPTI_ERROR_NOT_COMPATIBLE)        \
    X(CUPTI_ERROR_NOT_INITIALIZED) X(CUPTI_ERROR_INVALID_METRIC_ID)                                \
    X(CUPTI_ERROR_INVALID_METRIC_NAME) X(CUPTI_ERROR_QUEUE_EMPTY) X(CUPTI_ERROR_INVALID_HANDLE)    \
    X(CUPTI_ERROR_INVALID_STREAM) X(CUPTI_ERROR_INVALID_KIND) X(CUPTI_ERROR_INVALID_EVENT_VALUE)   \
    X(CUPTI_ERROR_DISABLED) X(CUPTI_ERROR_INVALID_MODULE) X(CUPTI_ERROR_INVALID_METRIC_VALUE)      \
    X(CUPTI_ERROR_HARDWARE_BUSY) X(CUPTI_ERROR_NOT_SUPPORTED)                                      \
    X(CUPTI_ERROR_UM_PROFILING_NOT_SUPPORTED) X(CUPTI_ERROR_UM_PROFILING_NOT_SUPPORTED_ON_DEVICE)  \
    X(CUPTI_ERROR_UM_PROFILING_NOT_SUPPORTED_WITH_MPS) X(CUPTI_ERROR_CDP_TRACING_NOT_SUPPORTED)    \
    X(CUPTI_ERROR_VIRTUALIZED_DEVICE_NOT_SUPPORTED) X(CUPTI_ERROR_CUDA_COMPILER_NOT_COMPATIBLE)    \
    X(CUPTI_ERROR_INSUFFICIENT_PRIVILEGES) X(CUPTI_ERROR_OLD_PROFILER_API_INITIALIZED)             \
    X(CUPTI_ERROR_OPENACC_UNDEFINED_ROUTINE) X(CUPTI_ERROR_LEGACY_PROFILER_NOT_SUPPORTED)          \
    X(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)                                              \
    X(CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES)                                      \
    X(CUPTI_ERROR_CONFIDENTIAL_COMPUTING_NOT_SUPPORTED) X(CUPTI_ERROR_CMP_DEVICE_NOT_SUPPORTED)    \
    X(CUPTI_ERROR_MIG_DEVICE_NOT_SUPPORTED) X(CUPTI_ERROR_SLI_DEVICE_NOT_SUPPORTED)                \
    X(CUPTI_ERROR_WSL_DEVICE_NOT_SUPPORTED) X(CUPTI_ERROR_INVALID_CHIP_NAME) X(CUPTI_ERROR_UNKNOWN)

CUptiResult CUPTIAPI cuptiSetThreadIdType(CUpti_ActivityThreadIdType type)
{
    if (type != CUPTI_ACTIVITY_THREAD_ID_TYPE_DEFAULT && type != CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM)
        return CUPTI_ERROR_INVALID_PARAMETER;
    atomic_store(&thread_id_type, (int)type);
    return CUPTI_SUCCESS;
}

/* As the real one: the enum's name; "<unknown>" and INVALID_PARAMETER for other codes. */
CUptiResult CUPTIAPI cuptiGetResultString(CUptiResult result, const char **str)
{
    if (!str)
        return CUPTI_ERROR_INVALID_PARAMETER;
    switch (result) {
#define CASE(c)                                                                                    \
    case c:                                                                                        \
        *str = #c;                                                                                 \
        return CUPTI_SUCCESS;
        RESULTS(CASE)
#undef CASE
    default:
        *str = "<unknown>";
        return CUPTI_ERROR_INVALID_PARAMETER;
    }
}

CUptiResult CUPTIAPI cuptiGetTimestamp(uint64_t *timestamp)
{
    if (!timestamp)
        return CUPTI_ERROR_INVALID_PARAMETER;
    *timestamp = now_ns();
    return CUPTI_SUCCESS;
}

/* ---- CUPTI: callback API ---- */

static size_t domain_cbids(CUpti_CallbackDomain domain)
{
    switch (domain) {
    case CUPTI_CB_DOMAIN_DRIVER_API:
        return CUPTI_DRIVER_TRACE_CBID_SIZE;
    case CUPTI_CB_DOMAIN_RUNTIME_API:
        return CUPTI_RUNTIME_TRACE_CBID_SIZE;
    case CUPTI_CB_DOMAIN_RESOURCE:
        return CUPTI_CBID_RESOURCE_SIZE;
    case CUPTI_CB_DOMAIN_SYNCHRONIZE:
        return CUPTI_CBID_SYNCHRONIZE_SIZE;
    case CUPTI_CB_DOMAIN_NVTX:
        return CUPTI_CBID_NVTX_SIZE;
    case CUPTI_CB_DOMAIN_STATE:
        return CUPTI_CBID_STATE_SIZE;
    default:
        return 0;
    }
}

_Static_assert(CUPTI_DRIVER_TRACE_CBID_SIZE <= MAX_CBID, "driver cbids fit");
_Static_assert(CUPTI_RUNTIME_TRACE_CBID_SIZE <= MAX_CBID, "runtime cbids fit");

/* FAKE_CUPTI_HOLD_SUBSCRIBE: holds the first caller of cuptiSubscribe (the shim's start, which
 * holds its start lock) until the test lets it go. Without lk: nothing of the fake is held. */
static void hold_subscribe(void)
{
    static int held;
    const char *v = getenv("FAKE_CUPTI_HOLD_SUBSCRIBE");
    int w, r;
    char c = 0;

    if (__atomic_exchange_n(&held, 1, __ATOMIC_ACQ_REL) || !v || sscanf(v, "%d:%d", &w, &r) != 2)
        return;
    if (write(w, &c, 1) != 1 || read(r, &c, 1) != 1)
        fprintf(stderr, "fake_cupti: FAKE_CUPTI_HOLD_SUBSCRIBE: the pipe broke\n");
}

CUptiResult CUPTIAPI cuptiSubscribe(CUpti_SubscriberHandle *subscriberHandle,
                                    CUpti_CallbackFunc callback, void *userdata)
{
    struct CUpti_Subscriber_st *s;

    init();
    hold_subscribe();
    if (!subscriberHandle)
        return CUPTI_ERROR_INVALID_PARAMETER;
    pthread_mutex_lock(&lk);
    n_subscribes++;
    if (refuse_subscribe || subscriber) {
        pthread_mutex_unlock(&lk);
        return CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&lk);
        return CUPTI_ERROR_OUT_OF_MEMORY;
    }
    s->callback = callback;
    s->userdata = userdata;
    subscriber = s;
    pthread_mutex_unlock(&lk);
    *subscriberHandle = s;
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiUnsubscribe(CUpti_SubscriberHandle subscriberHandle)
{
    pthread_mutex_lock(&lk);
    if (!subscriberHandle || subscriberHandle != subscriber) {
        pthread_mutex_unlock(&lk);
        return CUPTI_ERROR_INVALID_PARAMETER;
    }
    subscriber = NULL;
    pthread_mutex_unlock(&lk);
    free(subscriberHandle);
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiEnableCallback(uint32_t enable, CUpti_SubscriberHandle subscriberHandle,
                                         CUpti_CallbackDomain domain, CUpti_CallbackId cbid)
{
    CUptiResult r = CUPTI_SUCCESS;

    pthread_mutex_lock(&lk);
    if (!subscriberHandle || subscriberHandle != subscriber || cbid >= domain_cbids(domain))
        r = CUPTI_ERROR_INVALID_PARAMETER;
    else
        subscriberHandle->enabled[domain][cbid] = enable != 0;
    pthread_mutex_unlock(&lk);
    return r;
}

CUptiResult CUPTIAPI cuptiEnableDomain(uint32_t enable, CUpti_SubscriberHandle subscriberHandle,
                                       CUpti_CallbackDomain domain)
{
    CUptiResult r = CUPTI_SUCCESS;
    size_t n = domain_cbids(domain);

    pthread_mutex_lock(&lk);
    if (!subscriberHandle || subscriberHandle != subscriber || n == 0)
        r = CUPTI_ERROR_INVALID_PARAMETER;
    else
        memset(subscriberHandle->enabled[domain], enable != 0, n);
    pthread_mutex_unlock(&lk);
    return r;
}

/* ---- CUPTI: activity API ---- */

CUptiResult CUPTIAPI cuptiActivityEnable(CUpti_ActivityKind kind)
{
    init();
    if ((int)kind <= (int)CUPTI_ACTIVITY_KIND_INVALID || kind >= CUPTI_ACTIVITY_KIND_COUNT)
        return CUPTI_ERROR_INVALID_KIND;
    pthread_mutex_lock(&lk);
    if (refuse_activity) {
        pthread_mutex_unlock(&lk);
        return CUPTI_ERROR_UNKNOWN;
    }
    if (refuse_copies && (kind == CUPTI_ACTIVITY_KIND_MEMCPY || kind == CUPTI_ACTIVITY_KIND_MEMSET)) {
        pthread_mutex_unlock(&lk);
        return CUPTI_ERROR_NOT_SUPPORTED;
    }
    act_enabled[kind] = 1;
    switch (kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
        kernel_kind_ever = 1;
        break;
    case CUPTI_ACTIVITY_KIND_DRIVER:
        /* Overrides earlier cuptiActivityEnableDriverApi calls. */
        memset(driver_api, 1, sizeof(driver_api));
        break;
    case CUPTI_ACTIVITY_KIND_RUNTIME:
        memset(runtime_api, 1, sizeof(runtime_api));
        break;
    case CUPTI_ACTIVITY_KIND_DEVICE:
        if (!device_emitted) {
            device_emitted = 1;
            queue_device_record();
        }
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&lk);
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiActivityDisable(CUpti_ActivityKind kind)
{
    init();
    if ((int)kind <= (int)CUPTI_ACTIVITY_KIND_INVALID || kind >= CUPTI_ACTIVITY_KIND_COUNT)
        return CUPTI_ERROR_INVALID_KIND;
    pthread_mutex_lock(&lk);
    act_enabled[kind] = 0;
    if (kind == CUPTI_ACTIVITY_KIND_DRIVER)
        memset(driver_api, 0, sizeof(driver_api));
    else if (kind == CUPTI_ACTIVITY_KIND_RUNTIME)
        memset(runtime_api, 0, sizeof(runtime_api));
    pthread_mutex_unlock(&lk);
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiActivityEnableDriverApi(CUpti_CallbackId cbid, uint8_t enable)
{
    CUptiResult r = CUPTI_SUCCESS;

    init();
    pthread_mutex_lock(&lk);
    if (refuse_activity)
        r = CUPTI_ERROR_UNKNOWN;
    else if (no_api_select)
        r = CUPTI_ERROR_NOT_SUPPORTED;
    else if (cbid >= CUPTI_DRIVER_TRACE_CBID_SIZE)
        r = CUPTI_ERROR_INVALID_PARAMETER;
    else
        driver_api[cbid] = enable != 0;
    pthread_mutex_unlock(&lk);
    return r;
}

CUptiResult CUPTIAPI cuptiActivityEnableRuntimeApi(CUpti_CallbackId cbid, uint8_t enable)
{
    CUptiResult r = CUPTI_SUCCESS;

    init();
    pthread_mutex_lock(&lk);
    if (refuse_activity)
        r = CUPTI_ERROR_UNKNOWN;
    else if (cbid >= CUPTI_RUNTIME_TRACE_CBID_SIZE)
        r = CUPTI_ERROR_INVALID_PARAMETER;
    else
        runtime_api[cbid] = enable != 0;
    pthread_mutex_unlock(&lk);
    return r;
}

CUptiResult CUPTIAPI cuptiActivityRegisterCallbacks(CUpti_BuffersCallbackRequestFunc funcBufferRequested,
                                                    CUpti_BuffersCallbackCompleteFunc funcBufferCompleted)
{
    if (!funcBufferRequested || !funcBufferCompleted)
        return CUPTI_ERROR_INVALID_PARAMETER;
    pthread_mutex_lock(&lk);
    prev_requested = buf_requested;
    prev_completed = buf_completed;
    buf_requested = funcBufferRequested;
    buf_completed = funcBufferCompleted;
    pthread_mutex_unlock(&lk);
    return CUPTI_SUCCESS;
}

void fake_cupti_restore_previous_callbacks(void)
{
    pthread_mutex_lock(&lk);
    if (prev_requested && prev_completed) {
        buf_requested = prev_requested;
        buf_completed = prev_completed;
    }
    pthread_mutex_unlock(&lk);
}

CUptiResult CUPTIAPI cuptiActivityFlushAll(uint32_t flag)
{
    (void)flag;
    init();
    pthread_mutex_lock(&lk);
    n_flushes++;
    pthread_mutex_unlock(&lk);
    return deliver_pending(0);
}

/* As the real one: MAX_LIMIT_REACHED at the end (and for a record cut short by validSize),
 * INVALID_KIND for a kind it does not know, *record left alone on failure. */
CUptiResult CUPTIAPI cuptiActivityGetNextRecord(uint8_t *buffer, size_t validBufferSizeBytes,
                                                CUpti_Activity **record)
{
    size_t off, size;
    CUpti_Activity *r;

    if (!buffer || !record)
        return CUPTI_ERROR_INVALID_PARAMETER;
    if (*record == NULL) {
        off = 0;
    } else {
        uint8_t *prev = (uint8_t *)*record;

        if (prev < buffer || prev >= buffer + validBufferSizeBytes)
            return CUPTI_ERROR_INVALID_PARAMETER;
        size = record_size((*record)->kind);
        if (size == 0)
            return CUPTI_ERROR_INVALID_KIND;
        off = (size_t)(prev - buffer) + ALIGN8(size);
    }
    if (off >= validBufferSizeBytes || validBufferSizeBytes - off < sizeof(CUpti_Activity))
        return CUPTI_ERROR_MAX_LIMIT_REACHED;
    r = (CUpti_Activity *)(void *)(buffer + off);
    size = record_size(r->kind);
    if (size == 0)
        return CUPTI_ERROR_INVALID_KIND;
    if (size > validBufferSizeBytes - off)
        return CUPTI_ERROR_MAX_LIMIT_REACHED;
    *record = r;
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiActivityGetNumDroppedRecords(CUcontext context, uint32_t streamId,
                                                       size_t *droppedRecords)
{
    (void)context;
    (void)streamId;
    if (!droppedRecords)
        return CUPTI_ERROR_INVALID_PARAMETER;
    pthread_mutex_lock(&lk);
    *droppedRecords = dropped;
    dropped = 0;
    pthread_mutex_unlock(&lk);
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiActivityPushExternalCorrelationId(CUpti_ExternalCorrelationKind kind,
                                                            uint64_t id)
{
    if ((int)kind <= (int)CUPTI_EXTERNAL_CORRELATION_KIND_INVALID ||
        kind >= CUPTI_EXTERNAL_CORRELATION_KIND_SIZE)
        return CUPTI_ERROR_INVALID_PARAMETER;
    if (ext_stack[kind].n == EXT_DEPTH)
        return CUPTI_ERROR_OUT_OF_MEMORY;
    ext_stack[kind].v[ext_stack[kind].n++] = id;
    return CUPTI_SUCCESS;
}

CUptiResult CUPTIAPI cuptiActivityPopExternalCorrelationId(CUpti_ExternalCorrelationKind kind,
                                                           uint64_t *lastId)
{
    if ((int)kind <= (int)CUPTI_EXTERNAL_CORRELATION_KIND_INVALID ||
        kind >= CUPTI_EXTERNAL_CORRELATION_KIND_SIZE)
        return CUPTI_ERROR_INVALID_PARAMETER;
    if (ext_stack[kind].n == 0)
        return CUPTI_ERROR_QUEUE_EMPTY;
    ext_stack[kind].n--;
    if (lastId)
        *lastId = ext_stack[kind].v[ext_stack[kind].n];
    return CUPTI_SUCCESS;
}

/* Detaches as the real one does: the subscriber, every enabled kind and API, the buffer callbacks
 * and the records not yet delivered are gone (the client was meant to flush first). Correlation
 * ids keep counting; probe counters and refusal settings stay. */
CUptiResult CUPTIAPI cuptiFinalize(void)
{
    struct CUpti_Subscriber_st *s;
    struct prec *recs;
    size_t n;

    init();
    pthread_mutex_lock(&lk);
    n_finalizes++;
    s = subscriber;
    subscriber = NULL;
    memset(act_enabled, 0, sizeof(act_enabled));
    memset(driver_api, 0, sizeof(driver_api));
    memset(runtime_api, 0, sizeof(runtime_api));
    buf_requested = NULL;
    buf_completed = NULL;
    recs = take_pending(&n, 0);
    for (size_t i = 0; i < n; i++)
        release_record(&recs[i]);
    free(recs);
    dropped = 0;
    device_emitted = 0;
    pthread_mutex_unlock(&lk);
    free(s);
    return CUPTI_SUCCESS;
}

#pragma GCC visibility pop
