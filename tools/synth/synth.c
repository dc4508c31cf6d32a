/* SPDX-License-Identifier: MIT */
/*
 * Synthetic GPT-style training timeline; see synth.h.  The host launches a
 * kernel every launch_gap_ns; the GPU starts it when both the launch has
 * arrived and the previous kernel on the stream has finished, so short
 * kernels leave idle gaps the way a launch-bound job does.  Records are
 * emitted in kernel completion order, as CUPTI delivers them, which puts the
 * long all-reduce on stream 2 after kernels that started later.
 */
#include <stdlib.h>
#include <string.h>

#include "synth.h"

enum name_id {
	N_GEMM = 1,
	N_SPLITK_REDUCE,
	N_ATTN_FWD,
	N_ATTN_BWD,
	N_LAYERNORM,
	N_GELU,
	N_ADD,
	N_ADAM,
	N_ALLREDUCE,
	N__COUNT
};

static const char *const names[N__COUNT] = {
	[N_GEMM] = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1_execute_segment_k_off_kernel__5x_cublas",
	[N_SPLITK_REDUCE] = "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, false>",
	[N_ATTN_FWD] = "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, cutlass::bfloat16_t>, true, false>",
	[N_ATTN_BWD] = "void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<Flash_bwd_kernel_traits<128, 64, 128, 8>, true>",
	[N_LAYERNORM] = "void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>",
	[N_GELU] = "void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl, at::detail::Array<char*, 2> >",
	[N_ADD] = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3> >",
	[N_ADAM] = "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::TensorListMetadata<4>, FusedAdamMathFunctor<float, 4>>",
	[N_ALLREDUCE] = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
};

void synth_defaults(struct synth_params *p)
{
	memset(p, 0, sizeof(*p));
	p->seed = 1;
	p->start_ns = UINT64_C(1763800000000000000); /* fixed, so traces are reproducible */
	p->steps = 20;
	p->layers = 12;
	p->width = 1024;
	p->seq = 1024;
	p->batch = 8;
	p->vocab = 32768;
	p->device_name = "NVIDIA H100 80GB HBM3";
	p->efficiency = 0.55;
	p->peak_tflops = 989.4;
	p->launch_gap_ns = 6000;
}

void synth_hello(const struct synth_params *p, const char *host, const char *job, uint64_t pid, int64_t rank,
		 uint64_t world_size, struct mfu_rec_hello *h)
{
	static const char producer[] = "mfu-synth " MFU_VERSION;
	memset(h, 0, sizeof(*h));
	h->time_ns = p->start_ns;
	h->pid = pid;
	h->rank = rank;
	h->local_rank = rank;
	h->world_size = world_size;
	h->flags = MFU_HELLO_SYNTHETIC | (p->degraded ? MFU_HELLO_DEGRADED : 0);
	h->host = host;
	h->host_len = (uint32_t)strlen(host);
	h->job = job;
	h->job_len = (uint32_t)strlen(job);
	h->producer = producer;
	h->producer_len = sizeof(producer) - 1;
	h->has_device = 1;
	h->device.index = p->device;
	h->device.name = p->device_name;
	h->device.name_len = (uint32_t)strlen(p->device_name);
	h->device.sm_count = 132;
	h->device.sm_clock_khz = 1980000;
	h->device.mem_clock_khz = 2619000;
	h->device.cc_major = 9;
	h->device.cc_minor = 0;
}

struct run {
	const struct synth_params *p;
	synth_emit_fn emit;
	void *arg;
	struct synth_totals *t;
	uint64_t rng;
	uint64_t host_ns;     /* host clock: next launch */
	uint64_t gpu_free_ns; /* stream 7 free from */
	uint64_t corr, call;
	/* main-stream kernel intervals of the current step, for the exact union */
	uint64_t (*iv)[2];
	size_t niv, capiv;
	int rc;
};

static double jitter(struct run *r)
{
	r->rng = r->rng * 6364136223846793005ull + 1442695040888963407ull;
	return 0.9 + 0.2 * (double)(r->rng >> 11) / (double)(1ull << 53);
}

static void emit(struct run *r, const struct mfu_record *rec)
{
	if (r->rc)
		return;
	r->rc = r->emit(r->arg, rec);
	if (!r->rc)
		r->t->records++;
}

static void note_time(struct run *r, uint64_t t)
{
	if (!r->t->first_ns || t < r->t->first_ns)
		r->t->first_ns = t;
	if (t > r->t->last_ns)
		r->t->last_ns = t;
}

/* Launches one kernel on the main stream; returns its end time. */
static uint64_t launch(struct run *r, enum name_id name, uint64_t dur, uint64_t flops, unsigned cls,
		       uint64_t flags, uint64_t call)
{
	const struct synth_params *p = r->p;
	struct mfu_record rec;
	uint64_t api_start = r->host_ns, api_end = api_start + 2500;
	uint64_t start = api_end + 3000 > r->gpu_free_ns ? api_end + 3000 : r->gpu_free_ns;
	uint64_t corr = ++r->corr;

	r->host_ns += p->launch_gap_ns;
	r->gpu_free_ns = start + dur;
	if (p->degraded)
		return start + dur;

	memset(&rec, 0, sizeof(rec));
	rec.type = MFU_REC_API;
	rec.u.api.start_ns = api_start;
	rec.u.api.end_ns = api_end;
	rec.u.api.tid = 4242;
	rec.u.api.cbid = 307; /* cuLaunchKernel */
	rec.u.api.corr = corr;
	rec.u.api.kind = MFU_API_LAUNCH;
	emit(r, &rec);

	memset(&rec, 0, sizeof(rec));
	rec.type = MFU_REC_KERNEL;
	rec.u.kernel.start_ns = start;
	rec.u.kernel.end_ns = start + dur;
	rec.u.kernel.device = p->device;
	rec.u.kernel.stream = 7;
	rec.u.kernel.name_id = name;
	rec.u.kernel.corr = corr;
	rec.u.kernel.call = call;
	rec.u.kernel.flags = cls | flags;
	rec.u.kernel.flops = flops;
	emit(r, &rec);
	if (r->rc)
		return start + dur;

	r->t->kernels++;
	r->t->kernel_ns += dur;
	r->t->hw_flops += flops;
	if (flags & MFU_KF_REMAT)
		r->t->remat_flops += flops;
	note_time(r, start + dur);
	if (r->niv == r->capiv) {
		r->capiv = r->capiv ? r->capiv * 2 : 1024;
		r->iv = realloc(r->iv, r->capiv * sizeof(*r->iv));
		if (!r->iv)
			abort();
	}
	r->iv[r->niv][0] = start;
	r->iv[r->niv][1] = start + dur;
	r->niv++;
	return start + dur;
}

static uint64_t gemm_ns(const struct run *r, uint64_t flops, double j)
{
	double ns = (double)flops / (r->p->peak_tflops * 1e12 * r->p->efficiency) * 1e9 * j;
	return ns < 2000 ? 2000 : (uint64_t)ns;
}

static void gemm(struct run *r, uint64_t m, uint64_t n, uint64_t k, uint64_t flags)
{
	const struct synth_params *p = r->p;
	uint64_t flops = 2 * m * n * k;
	uint64_t call = ++r->call;
	struct mfu_record rec;
	int splitk = (r->rng >> 20) % 8 == 0;

	memset(&rec, 0, sizeof(rec));
	rec.type = MFU_REC_GEMM;
	rec.u.gemm.start_ns = r->host_ns;
	rec.u.gemm.end_ns = r->host_ns + 9000;
	rec.u.gemm.tid = 4242;
	rec.u.gemm.device = p->device;
	rec.u.gemm.api = 6; /* cublasGemmEx */
	rec.u.gemm.m = m;
	rec.u.gemm.n = n;
	rec.u.gemm.k = k;
	rec.u.gemm.batch = 1;
	rec.u.gemm.a_type = rec.u.gemm.b_type = rec.u.gemm.c_type = 14; /* CUDA_R_16BF */
	rec.u.gemm.compute_type = 68;                                  /* CUBLAS_COMPUTE_32F */
	rec.u.gemm.flags = MFU_CLASS_BF16 | (flags & MFU_KF_REMAT) | (p->degraded ? MFU_KF_UNTIMED : 0);
	rec.u.gemm.flops = flops;
	rec.u.gemm.call = call;
	emit(r, &rec);
	if (r->rc)
		return;
	r->t->gemm_calls++;
	r->t->gemm_flops += flops;
	if (p->degraded) {
		r->t->hw_flops += flops;
		if (flags & MFU_KF_REMAT)
			r->t->remat_flops += flops;
		note_time(r, rec.u.gemm.end_ns);
	}
	double j = jitter(r);
	/* One call, two kernels on a split-K path: the FLOPs ride on the first. */
	launch(r, N_GEMM, gemm_ns(r, flops, j), flops, MFU_CLASS_BF16, MFU_KF_GEMM | flags, call);
	if (splitk)
		launch(r, N_SPLITK_REDUCE, 3000, 0, MFU_CLASS_NONE, MFU_KF_GEMM | flags, call);
}

static void small(struct run *r, enum name_id name)
{
	launch(r, name, (uint64_t)(4000 + 20000 * (jitter(r) - 0.9) * 5), 0, MFU_CLASS_NONE, 0, 0);
}

static uint64_t attention_fwd_flops(const struct synth_params *p)
{
	/* causal: QK^T and PV, half the score matrix (doc/metrics.md) */
	return 2 * p->batch * p->seq * p->seq * p->width;
}

static void block_forward(struct run *r, uint64_t flags)
{
	const struct synth_params *p = r->p;
	uint64_t T = p->batch * p->seq, d = p->width, af = attention_fwd_flops(p);

	small(r, N_LAYERNORM);
	gemm(r, T, 3 * d, d, flags);
	launch(r, N_ATTN_FWD, gemm_ns(r, af, jitter(r) * 1.4), af, MFU_CLASS_BF16, MFU_KF_DECLARED | flags, 0);
	gemm(r, T, d, d, flags);
	small(r, N_ADD);
	small(r, N_LAYERNORM);
	gemm(r, T, 4 * d, d, flags);
	small(r, N_GELU);
	gemm(r, T, d, 4 * d, flags);
	small(r, N_ADD);
}

static void block_backward(struct run *r)
{
	const struct synth_params *p = r->p;
	uint64_t T = p->batch * p->seq, d = p->width, af = attention_fwd_flops(p);

	if (p->remat)
		block_forward(r, MFU_KF_REMAT);
	small(r, N_ADD);
	gemm(r, T, 4 * d, d, 0); /* dX of MLP down */
	gemm(r, 4 * d, d, T, 0); /* dW of MLP down */
	small(r, N_GELU);
	gemm(r, T, d, 4 * d, 0);
	gemm(r, d, 4 * d, T, 0);
	small(r, N_LAYERNORM);
	gemm(r, T, d, d, 0);
	gemm(r, d, d, T, 0);
	launch(r, N_ATTN_BWD, gemm_ns(r, 2 * af, jitter(r) * 1.6), 2 * af, MFU_CLASS_BF16, MFU_KF_DECLARED, 0);
	gemm(r, T, d, 3 * d, 0);
	gemm(r, d, 3 * d, T, 0);
	small(r, N_LAYERNORM);
}

static uint64_t uncovered(const struct run *r, uint64_t s, uint64_t e)
{
	/* main-stream intervals are sorted and disjoint */
	uint64_t covered = 0;
	for (size_t i = 0; i < r->niv; i++) {
		uint64_t lo = r->iv[i][0] > s ? r->iv[i][0] : s, hi = r->iv[i][1] < e ? r->iv[i][1] : e;
		if (hi > lo)
			covered += hi - lo;
	}
	return (e - s) - covered;
}

int synth_run(const struct synth_params *p, synth_emit_fn emit_fn, void *arg, struct synth_totals *t)
{
	struct run r = {.p = p, .emit = emit_fn, .arg = arg, .t = t, .rng = p->seed * 2654435761u + 1};
	struct mfu_record rec;
	uint64_t T = p->batch * p->seq, d = p->width;

	memset(t, 0, sizeof(*t));
	r.host_ns = p->start_ns + 50000000; /* 50 ms of start-up before the first step */
	r.gpu_free_ns = r.host_ns;
	t->first_ns = p->start_ns;

	for (unsigned i = 1; i < N__COUNT && !p->degraded; i++) {
		memset(&rec, 0, sizeof(rec));
		rec.type = MFU_REC_STRING;
		rec.u.string.id = i;
		rec.u.string.text = names[i];
		rec.u.string.len = (uint32_t)strlen(names[i]);
		emit(&r, &rec);
		t->strings++;
	}

	/* model FLOPs: forward GEMMs and attention, times 3 (doc/metrics.md) */
	uint64_t fwd_layer = 2 * T * d * (3 * d + d + 4 * d + 4 * d) + attention_fwd_flops(p);
	uint64_t fwd = p->layers * fwd_layer + 2 * T * d * p->vocab;
	uint64_t model_per_step = 3 * fwd;

	for (unsigned s = 0; s < p->steps && !r.rc; s++) {
		uint64_t step_begin = r.host_ns;
		r.niv = 0;
		for (unsigned l = 0; l < p->layers; l++)
			block_forward(&r, 0);
		gemm(&r, T, p->vocab, d, 0); /* LM head */
		gemm(&r, T, d, p->vocab, 0);
		gemm(&r, d, p->vocab, T, 0);
		uint64_t mid = 0;
		for (unsigned l = 0; l < p->layers; l++) {
			block_backward(&r);
			if (l == p->layers / 2)
				mid = r.gpu_free_ns;
		}
		uint64_t bwd_end = r.gpu_free_ns;
		/* all-reduce on stream 9, overlapping the second half of backward */
		uint64_t ar_start = mid, ar_end = bwd_end + 150000;
		for (int k = 0; k < 6; k++)
			small(&r, N_ADAM);
		if (!p->degraded) {
			memset(&rec, 0, sizeof(rec));
			rec.type = MFU_REC_KERNEL;
			rec.u.kernel.start_ns = ar_start;
			rec.u.kernel.end_ns = ar_end;
			rec.u.kernel.device = p->device;
			rec.u.kernel.stream = 9;
			rec.u.kernel.name_id = N_ALLREDUCE;
			rec.u.kernel.corr = ++r.corr;
			emit(&r, &rec);
			t->kernels++;
			t->kernel_ns += ar_end - ar_start;
			note_time(&r, ar_end);
		}
		/* busy: main stream (disjoint) plus what the all-reduce adds */
		for (size_t i = 0; i < r.niv; i++)
			t->busy_ns += r.iv[i][1] - r.iv[i][0];
		if (!p->degraded)
			t->busy_ns += uncovered(&r, ar_start, ar_end);

		memset(&rec, 0, sizeof(rec));
		rec.type = MFU_REC_STEP;
		rec.u.step.begin_ns = step_begin;
		rec.u.step.end_ns = r.gpu_free_ns > ar_end ? r.gpu_free_ns : ar_end;
		rec.u.step.index = s;
		rec.u.step.device = p->device;
		rec.u.step.model_flops = model_per_step;
		rec.u.step.model_class = MFU_CLASS_BF16;
		emit(&r, &rec);
		if (!r.rc) {
			t->steps++;
			t->model_flops += model_per_step;
			note_time(&r, rec.u.step.end_ns);
		}
		/* the host waits for the step (a .item() on the loss) */
		r.host_ns = rec.u.step.end_ns + 200000;
		r.gpu_free_ns = r.host_ns;
	}
	free(r.iv);
	return r.rc;
}
