#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small GPT-style training loop in plain PyTorch, instrumented for mfushim.

Synthetic tokens (nothing is downloaded), pre-LayerNorm decoder blocks with
causal attention through F.scaled_dot_product_attention (or, with
--attention math, through explicit baddbmm/softmax/bmm), a GELU MLP, an
untied LM head and AdamW.  Model FLOPs per step come from
mfu.flops.transformer_step (doc/metrics.md, "Model FLOPs of the example
GPT"), declared through mfu.torch.install; without the shim every mfu call is
a no-op and the script trains all the same.

    mfu run -- python3 tools/examples/train_gpt.py --steps 50
    python3 tools/examples/train_gpt.py --help

Every step is synchronized and written as one JSON line ({"event": "step",
...}) to --log (default: stdout), between a "config" line and a "summary"
line, so tools/gpu/validate.py can take medians.  The measurement options
(--flop-counter, --torch-profiler, --profile-window) exist for that
validation.

Without PyTorch, --help still works and any run prints one line and exits 2.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
MFU_DIR = os.path.join(os.path.dirname(HERE), "python")

#: --dtype and --tf32 -> the shim's dtype class for MFU_MODEL_DTYPE
_MODEL_CLASS = {("fp32", "off"): "fp32", ("fp32", "on"): "tf32",
                ("bf16", "off"): "bf16", ("bf16", "on"): "bf16",
                ("fp16", "off"): "fp16", ("fp16", "on"): "fp16"}


def _positive(text):
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be > 0, not %d" % v)
    return v


def _nonnegative(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0, not %d" % v)
    return v


def _window(text):
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected START:STOP (timed step indices), not %r" % text) from None
    if a < 0 or b <= a:
        raise argparse.ArgumentTypeError("need 0 <= START < STOP, not %r" % text)
    return (a, b)


def build_parser():
    p = argparse.ArgumentParser(
        prog="train_gpt.py",
        description="Train a small GPT on synthetic tokens, declaring model FLOPs to mfushim "
                    "(a no-op without it).  Needs PyTorch with CUDA.",
        epilog="Model FLOPs per step: mfu.flops.transformer_step, see doc/metrics.md.")
    m = p.add_argument_group("model")
    m.add_argument("--width", type=_positive, default=1024, help="d_model (default 1024)")
    m.add_argument("--depth", type=_positive, default=12, help="transformer blocks (default 12)")
    m.add_argument("--heads", type=_nonnegative, default=0, help="attention heads (default: width/64)")
    m.add_argument("--ffn", type=_nonnegative, default=0, help="MLP hidden width (default: 4*width)")
    m.add_argument("--seq", type=_positive, default=1024, help="sequence length (default 1024)")
    m.add_argument("--batch", type=_positive, default=8, help="sequences per step (default 8)")
    m.add_argument("--vocab", type=_positive, default=32768, help="vocabulary size (default 32768)")
    m.add_argument("--bias", action="store_true", help="Linear layers with bias (cuBLASLt epilogue path)")
    m.add_argument("--attention", choices=("sdpa", "math"), default="sdpa",
                   help="sdpa: F.scaled_dot_product_attention(is_causal=True), declared as a region; "
                        "math: baddbmm + softmax + bmm through cuBLAS, counted as GEMMs (default sdpa)")
    r = p.add_argument_group("run")
    r.add_argument("--steps", type=_nonnegative, default=100, help="timed steps (default 100)")
    r.add_argument("--warmup", type=_nonnegative, default=5, help="untimed steps first (default 5)")
    r.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16",
                   help="bf16/fp16: autocast to that dtype (fp32 master weights, no loss scaling); "
                        "fp32: no autocast (default bf16)")
    r.add_argument("--tf32", choices=("on", "off"), default="off",
                   help="fp32 matmuls on TF32 tensor cores (torch.set_float32_matmul_precision; default off)")
    r.add_argument("--prefer-cublaslt", action="store_true",
                   help="TORCH_BLAS_PREFER_CUBLASLT=1 and torch.backends.cuda.preferred_blas_library('cublaslt')")
    r.add_argument("--checkpoint", action="store_true",
                   help="wrap every block in torch.utils.checkpoint (non-reentrant): its forward is recomputed "
                        "in backward and declared as remat")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--cuda-graphs", action="store_true",
                   help="capture one whole training step (forward, backward, AdamW(capturable)) in a CUDA graph "
                        "and replay it; static inputs")
    r.add_argument("--no-declare-sdpa", action="store_true",
                   help="do not declare attention FLOPs as mfu regions (mfu.torch.install(sdpa=False))")
    r.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    r.add_argument("--seed", type=int, default=0, help="seed for weights and tokens (default 0)")
    o = p.add_argument_group("measurement")
    o.add_argument("--log", default="-", metavar="FILE",
                   help="JSON lines: config, one per step, summary (default '-': stdout)")
    o.add_argument("--flop-counter", action="store_true",
                   help="run every step under torch.utils.flop_counter.FlopCounterMode and put its "
                        "per-operator FLOPs in the summary line (eager only)")
    o.add_argument("--torch-profiler", action="store_true",
                   help="torch.profiler over the timed steps (first one as its warm-up, the rest active)")
    o.add_argument("--trace", metavar="FILE", help="with --torch-profiler: export the Chrome trace to FILE")
    o.add_argument("--profile-window", type=_window, metavar="START:STOP",
                   help="start torch.profiler before timed step START and stop it after step STOP-1")
    return p


def parse_args(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    if a.heads == 0:
        a.heads = max(1, a.width // 64)
    if a.width % a.heads:
        p.error("--width %d is not a multiple of --heads %d" % (a.width, a.heads))
    if a.ffn == 0:
        a.ffn = 4 * a.width
    if a.compile and a.cuda_graphs:
        p.error("--compile and --cuda-graphs: choose one")
    if a.cuda_graphs and a.checkpoint:
        p.error("--cuda-graphs with --checkpoint is not supported here")
    if a.flop_counter and (a.compile or a.cuda_graphs):
        p.error("--flop-counter needs eager mode (no --compile, no --cuda-graphs)")
    if a.torch_profiler and a.profile_window:
        p.error("--torch-profiler and --profile-window: choose one")
    if a.trace and not a.torch_profiler:
        p.error("--trace needs --torch-profiler")
    if a.profile_window and a.profile_window[1] > a.steps:
        p.error("--profile-window stops after the last timed step (%d)" % a.steps)
    return a


def model_class(args):
    return _MODEL_CLASS[(args.dtype, args.tf32)]


def analytic_flops(mfu, args):
    """FLOPs of this model from mfu.flops, the one formula (doc/metrics.md)."""
    kw = dict(batch=args.batch, seq_len=args.seq, layers=args.depth, d_model=args.width,
              heads=args.heads, d_ff=args.ffn, vocab=args.vocab, causal=True)
    forward = mfu.flops.transformer_forward(**kw)
    step = mfu.flops.transformer_step(**kw)
    # --checkpoint recomputes every block's forward (not the LM head) once per step
    blocks = mfu.flops.transformer_forward(**dict(kw, vocab=0))
    return {"forward": forward, "step": step, "blocks_forward": blocks,
            "remat_per_step": blocks if args.checkpoint else 0}


class Log:
    def __init__(self, path):
        self._f = sys.stdout if path == "-" else open(path, "w", buffering=1)
        self._close = path != "-"

    def write(self, **rec):
        self._f.write(json.dumps(rec, sort_keys=True) + "\n")
        self._f.flush()

    def close(self):
        if self._close:
            self._f.close()


def _fail(msg, code=2):
    sys.stderr.write("train_gpt.py: %s\n" % msg)
    return code


def main(argv=None):
    args = parse_args(argv)
    if args.prefer_cublaslt:
        os.environ["TORCH_BLAS_PREFER_CUBLASLT"] = "1"  # read when torch's CUDA context starts
    # The shim starts at the first mfu or cuBLAS call and reads this then.
    os.environ.setdefault("MFU_MODEL_DTYPE", model_class(args))
    try:
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install's OSError
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        return _fail("PyTorch is required and cannot be imported (%s)" % detail)
    if not torch.cuda.is_available():
        return _fail("PyTorch sees no CUDA device; this script trains on a GPU")
    # After torch, so that a shim starting at this import finds PyTorch's CUPTI.
    sys.path.insert(0, MFU_DIR)
    import mfu
    return train(torch, mfu, args)


def build_model(torch, args):
    import torch.utils.checkpoint  # noqa: F401 - looked up at call time: mfu.torch patches it
    nn = torch.nn
    F = torch.nn.functional
    d, H = args.width, args.heads
    Dh = d // H
    scale = 1.0 / (Dh ** 0.5)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d, bias=args.bias)
            self.proj = nn.Linear(d, d, bias=args.bias)
            self.ln2 = nn.LayerNorm(d)
            self.fc1 = nn.Linear(d, args.ffn, bias=args.bias)
            self.fc2 = nn.Linear(args.ffn, d, bias=args.bias)

        def attention(self, x, mask):
            B, S, _ = x.shape
            q, k, v = self.qkv(x).split(d, dim=2)
            q = q.view(B, S, H, Dh).transpose(1, 2)
            k = k.view(B, S, H, Dh).transpose(1, 2)
            v = v.view(B, S, H, Dh).transpose(1, 2)
            if mask is None:
                # F.<name> at call time, so mfu.torch's wrapper is the one called
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                qf = q.reshape(B * H, S, Dh)
                kf = k.reshape(B * H, S, Dh)
                vf = v.reshape(B * H, S, Dh)
                scores = torch.baddbmm(mask[:S, :S], qf, kf.transpose(1, 2), beta=1.0, alpha=scale)
                p = torch.softmax(scores, dim=-1)
                y = torch.bmm(p.to(vf.dtype), vf).view(B, H, S, Dh)
            return self.proj(y.transpose(1, 2).reshape(B, S, d))

        def forward(self, x, mask=None):
            x = x + self.attention(self.ln1(x), mask)
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(args.vocab, d)
            self.pos = nn.Embedding(args.seq, d)
            self.blocks = nn.ModuleList(Block() for _ in range(args.depth))
            self.ln_f = nn.LayerNorm(d)
            self.head = nn.Linear(d, args.vocab, bias=False)
            self.register_buffer("pos_ids", torch.arange(args.seq), persistent=False)
            if args.attention == "math":
                mask = torch.full((args.seq, args.seq), float("-inf")).triu(1)
                self.register_buffer("mask", mask, persistent=False)
            else:
                self.mask = None

        def forward(self, idx):
            S = idx.shape[1]
            x = self.tok(idx) + self.pos(self.pos_ids[:S])
            for blk in self.blocks:
                if args.checkpoint:
                    x = torch.utils.checkpoint.checkpoint(blk, x, self.mask, use_reentrant=False)
                else:
                    x = blk(x, self.mask)
            return self.head(self.ln_f(x))

    return GPT()


def _set_precision(torch, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.set_float32_matmul_precision("high" if args.tf32 == "on" else "highest")
        if args.prefer_cublaslt:
            torch.backends.cuda.preferred_blas_library("cublaslt")


def _describe(torch, mfu, args, flops, model):
    dev = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(dev)
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(dev),
        "capability": "%d.%d" % (props.major, props.minor),
        "sm_count": props.multi_processor_count,
        "mfu_active": mfu.active(),
        "mfu_model_dtype": os.environ.get("MFU_MODEL_DTYPE"),
        "TORCH_BLAS_PREFER_CUBLASLT": os.environ.get("TORCH_BLAS_PREFER_CUBLASLT"),
        "params": sum(p.numel() for p in model.parameters()),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            info["preferred_blas_library"] = str(torch.backends.cuda.preferred_blas_library())
        except Exception:  # noqa: BLE001 - informative only
            pass
        try:
            info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        except Exception:  # noqa: BLE001
            pass
    cfg = {k: v for k, v in vars(args).items()}
    cfg["profile_window"] = list(args.profile_window) if args.profile_window else None
    return {"config": cfg, "env": info, "flops": flops}


def _cuda_events(torch, prof):
    """Number of device events (kernels, copies) a profiler saw; None if unknown."""
    try:
        cuda = torch.autograd.DeviceType.CUDA
        return sum(1 for e in prof.events() if e.device_type == cuda)
    except Exception:  # noqa: BLE001 - informative only
        return None


def train(torch, mfu, args):
    F = torch.nn.functional
    torch.manual_seed(args.seed)
    _set_precision(torch, args)
    dev = torch.device("cuda")
    flops = analytic_flops(mfu, args)
    model = build_model(torch, args).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, capturable=args.cuda_graphs)
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=dev, generator=gen)
    inp = tokens[:, :-1].contiguous()  # static inputs: the same batch every step
    tgt = tokens[:, 1:].contiguous()
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.dtype]
    fwd_model = torch.compile(model) if args.compile else model

    # Steps: eager, mfu.torch ends one at every optimizer.step().  With CUDA
    # graphs (replays run no Python) and torch.compile (whose guards would see
    # the global module hook mfu.torch removes after the first step, and
    # recompile) each iteration is an explicit mfu.step instead.
    explicit_steps = args.cuda_graphs or args.compile
    installed = mfu.torch.install(model_flops_per_step=flops["step"], checkpoint=True,
                                  sdpa=not args.no_declare_sdpa,
                                  optimizer=False if explicit_steps else None)

    log = Log(args.log)
    desc = _describe(torch, mfu, args, flops, model)
    desc["env"]["mfu_installed"] = bool(installed)
    log.write(event="config", **desc)

    def loss_fn():
        if amp is None:
            logits = fwd_model(inp)
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1))
        # no autocast weight cache inside a graph capture (PyTorch's advice);
        # autocast runs cross_entropy in fp32
        with torch.autocast("cuda", dtype=amp, cache_enabled=not args.cuda_graphs):
            logits = fwd_model(inp)
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1))

    def eager_step():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    counter = None
    if args.flop_counter:
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)

    state = {"optimizer_steps": 0, "timed": [], "graph": None, "prof": None, "prof_events": None}

    def timed_call(fn, index, phase):
        t0 = time.perf_counter()
        b = time.time_ns()
        fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        state["optimizer_steps"] += 1
        if phase == "timed":
            state["timed"].append(dt)
        log.write(event="step", phase=phase, step=index, seconds=dt, begin_ns=b, end_ns=time.time_ns())

    def run_all():
        warm = args.warmup
        if args.cuda_graphs:
            # the documented whole-network capture: a few eager iterations on
            # a side stream, then one captured step
            n_eager = 3  # counted as warm-up steps; the rest of --warmup are replays
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for i in range(n_eager):
                    def one():
                        with mfu.step(model_flops=flops["step"]):
                            eager_step()
                    timed_call(one, i, "warmup")
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(g):
                static_loss = loss_fn()
                static_loss.backward()
                opt.step()
            state["graph"] = g

            def step():
                with mfu.step(model_flops=flops["step"]):
                    g.replay()
            first_timed = 0
            for i in range(max(0, warm - n_eager)):
                timed_call(step, n_eager + i, "warmup")
        else:
            if explicit_steps:
                def step():
                    with mfu.step(model_flops=flops["step"]):
                        eager_step()
            else:
                step = eager_step
            for i in range(warm):
                timed_call(step, i, "warmup")
            first_timed = 0
        prof_ctx = contextlib.nullcontext()
        if args.torch_profiler:
            from torch.profiler import ProfilerActivity, profile, schedule
            active = max(1, args.steps - 1)

            def ready(p):
                if args.trace:  # (building the event list is slow for long runs: only with a trace)
                    state["prof_events"] = _cuda_events(torch, p)
                    p.export_chrome_trace(args.trace)
            prof_ctx = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                               schedule=schedule(wait=0, warmup=1 if args.steps > 1 else 0, active=active, repeat=1),
                               on_trace_ready=ready)
        with prof_ctx as prof:
            for i in range(first_timed, args.steps):
                if args.profile_window and i == args.profile_window[0]:
                    from torch.profiler import ProfilerActivity, profile
                    state["prof"] = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                    state["prof"].start()
                    log.write(event="profiler", action="start", before_step=i, time_ns=time.time_ns())
                timed_call(step, i, "timed")
                if args.torch_profiler:
                    prof.step()
                if args.profile_window and i == args.profile_window[1] - 1:
                    state["prof"].stop()
                    log.write(event="profiler", action="stop", after_step=i, time_ns=time.time_ns())
        if state["prof"] is not None:
            # counted after the last step, so the steps after the window run back to back
            state["prof_events"] = _cuda_events(torch, state["prof"])

    if counter is not None:
        with counter:
            run_all()
    else:
        run_all()
    torch.cuda.synchronize()

    summary = {
        "optimizer_steps": state["optimizer_steps"],
        "timed_steps": len(state["timed"]),
        "median_step_s": statistics.median(state["timed"]) if state["timed"] else None,
        "model_flops_per_step": flops["step"],
        "remat_flops_per_step": flops["remat_per_step"],
        "forward_flops": flops["forward"],
        "blocks_forward_flops": flops["blocks_forward"],
        "flop_counts": None,
        "flop_counter_total": None,
        "profiler_active_steps": max(1, args.steps - 1) if args.torch_profiler else None,
        "profiler_cuda_events": state["prof_events"],
        "max_memory_allocated": torch.cuda.max_memory_allocated(),
    }
    if counter is not None:
        glob = counter.get_flop_counts().get("Global", {})
        summary["flop_counts"] = {str(k): int(v) for k, v in glob.items()}
        summary["flop_counter_total"] = int(counter.get_total_flops())
    log.write(event="summary", **summary)
    log.close()
    if summary["median_step_s"] is not None:
        med = summary["median_step_s"]
        sys.stderr.write("train_gpt.py: %d timed steps, median %.2f ms, %.1f model TFLOP/s\n"
                         % (summary["timed_steps"], med * 1e3, flops["step"] / med / 1e12))
    mfu.torch.uninstall()
    return 0


if __name__ == "__main__":
    sys.exit(main())
