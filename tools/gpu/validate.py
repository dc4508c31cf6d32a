#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""GPU validation of mfushim against PyTorch's own counters (doc/validation.md).

Runs tools/examples/train_gpt.py with and without the shim (`mfu run
--json`), with torch.utils.flop_counter and torch.profiler beside it, and
checks:

  1 GEMM FLOPs exact: the shim's gemm_flops == FlopCounterMode's
    mm/addmm/bmm/baddbmm FLOPs (SDPA excluded from both sides) for fp32
    (TF32 off, on), bf16, fp16, cuBLASLt (TORCH_BLAS_PREFER_CUBLASLT, bias)
    and math attention (bmm, baddbmm).
  2 kernel count and kernel time per step vs torch.profiler, within 2 %.
  3 remat FLOPs with --checkpoint vs the recomputed blocks' forward, within
    1 %; < 0.1 % of hardware FLOPs without.
  4 MFU == model FLOPs x steps / wall / peak, by hand, within 1 %; HFU >= MFU.
  5 FLOP coverage of the default, --compile and --cuda-graphs runs (reported).
  6 overhead: median step time with the shim / without, interleaved A B A B,
    >= 50 steps per arm after warm-up; <= 1.01 on a step of >= 100 ms; also
    a launch-bound config and a stock torch.profiler run (reported).
  7 torch.profiler started and stopped mid-run under the shim: no crash, the
    degraded interval is reported, kernel timing resumes.
  8 host clocks agree: in a small bf16 run's archive (`mfu run --archive`),
    each cuBLAS call's gemm record (stamped by the shim when the call
    returns, from the TSC or clock_gettime) is joined through its kernels
    (call) to CUPTI's launch api records (corr): the launch ends inside the
    call, so api.end <= gemm.end + 2 us for >= 99 % of the pairs, on the
    same thread id for all; once with MFU_TSC=1, once with MFU_TSC=0.

Part 1 runs checks 1-5, 7 and 8, part 2 check 6: each fits one device call of
10 minutes.  Every run has a time limit and the whole part a budget; what
does not fit is reported as SKIP.  Logs go to a tarball, the table to
results-partN.txt and every number to results-partN.json under --out.

The pure logic (parsing, comparing, medians, the table, the analytic FLOPs)
needs no torch and is tested by tests/python/test_validate.py; only the
runs need a GPU.

    tools/gpu/validate.sh --part 1      # on the device machine
    python3 tools/gpu/validate.py --plan --part all   # anywhere: what would run
"""

import argparse
import json
import math
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRAIN = os.path.join(ROOT, "tools", "examples", "train_gpt.py")
sys.path.insert(0, os.path.join(ROOT, "tools", "python"))

import mfu  # noqa: E402  (standard library only; no shim in this process)

# the archive decoder (doc/wire-format.md), imported where check 8 reads one
WIRE_PY_DIR = os.path.join(ROOT, "tests", "integration")

PASS, FAIL, INFO, SKIP = "PASS", "FAIL", "INFO", "SKIP"

# Tolerances of the issue.
KERNEL_TOL = 0.02
REMAT_TOL = 0.01
REMAT_PLAIN_MAX = 0.001
MFU_TOL = 0.01
OVERHEAD_TARGET = 1.01
OVERHEAD_MIN_STEP_S = 0.100
OVERHEAD_MIN_STEPS = 50
#: check 8: a launch's api record may end at most this long after the gemm
#: stamp of the cuBLAS call that made it (the two clocks' read windows and
#: the TSC conversion are tens of ns; 2 us leaves room, a wrong offset or
#: rate is off by far more), in this share of the pairs at least.
CLOCK_SLACK_NS = 2000
CLOCK_ORDERED_MIN = 0.99
#: fewer joined pairs than this prove nothing either way
CLOCK_MIN_PAIRS = 50

# Dense peaks (FLOP/s) by the names CUDA reports, from doc/metrics.md: an
# independent copy, so a wrong row in collector/peak.c shows up here.
PEAKS = {
    "NVIDIA H100 80GB HBM3": {"fp32": 66.9e12, "tf32": 494.7e12, "fp16": 989.4e12, "bf16": 989.4e12},
    "NVIDIA H100 PCIe": {"fp32": 51e12, "tf32": 378e12, "fp16": 756.5e12, "bf16": 756.5e12},
    "NVIDIA H100 NVL": {"fp32": 60e12, "tf32": 417.5e12, "fp16": 835.5e12, "bf16": 835.5e12},
    "NVIDIA H200": {"fp32": 66.9e12, "tf32": 494.7e12, "fp16": 989.4e12, "bf16": 989.4e12},
    "NVIDIA H200 NVL": {"fp32": 60e12, "tf32": 417.5e12, "fp16": 835.5e12, "bf16": 835.5e12},
}

# FlopCounterMode operators that are GEMMs (what cuBLAS computes for PyTorch).
GEMM_OPS = ("mm", "addmm", "bmm", "baddbmm")


# --------------------------------------------------------------------------
# Pure logic: no torch, no GPU
# --------------------------------------------------------------------------

def peak_flops(device_name, cls):
    """The dense peak of class cls on the named device, or None."""
    row = PEAKS.get(" ".join(str(device_name).split()))
    return row.get(cls) if row else None


def analytic(cfg):
    """Model FLOPs of a train_gpt.py configuration, through mfu.flops (the
    one formula of doc/metrics.md).  cfg: width, depth, heads (0: width/64),
    ffn (0: 4*width), seq, batch, vocab."""
    width = int(cfg["width"])
    heads = int(cfg.get("heads") or max(1, width // 64))
    ffn = int(cfg.get("ffn") or 4 * width)
    kw = dict(batch=int(cfg["batch"]), seq_len=int(cfg["seq"]), layers=int(cfg["depth"]), d_model=width,
              heads=heads, d_ff=ffn, vocab=int(cfg["vocab"]), causal=True)
    return {
        "forward": mfu.flops.transformer_forward(**kw),
        "step": mfu.flops.transformer_step(**kw),
        "blocks_forward": mfu.flops.transformer_forward(**dict(kw, vocab=0)),
    }


def rel_err(got, want):
    """|got - want| / |want|; 0 when both are 0; inf when only want is 0."""
    if got is None or want is None:
        return math.inf
    if want == 0:
        return 0.0 if got == 0 else math.inf
    return abs(got - want) / abs(want)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def parse_jsonl(text):
    """The JSON objects of a train_gpt.py log, one per line; other lines
    (a stray print) are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def step_seconds(events, phase="timed"):
    return [e["seconds"] for e in events if e.get("event") == "step" and e.get("phase") == phase]


def last_event(events, kind):
    for e in reversed(events):
        if e.get("event") == kind:
            return e
    return None


def _int_or_none(v):
    return None if v is None else int(v)


def parse_mfu_summary(d):
    """The fields of an `mfu run --json` summary that the checks use, with
    exact integers where the summary has them.  Steps are not in the summary
    as a count: they are derived from windows.total (steps_per_s x span_s)."""
    if d is None:
        return None
    total = (d.get("windows") or {}).get("total") or {}
    steps = None
    if total.get("steps_per_s") is not None and total.get("span_s"):
        steps = int(round(total["steps_per_s"] * total["span_s"]))
    # the training process: the source that executed the most (compile
    # workers inherit the shim and may say hello too)
    srcs = d.get("per_source") or []
    src = max(srcs, key=lambda x: int(x.get("hw_flops") or 0)) if srcs else {}
    devs = src.get("devices") or []
    return {
        "gemm_calls": _int_or_none(d.get("gemm_calls")),
        "gemm_flops": _int_or_none(d.get("gemm_flops")),
        "hw_flops": _int_or_none(d.get("hw_flops")),
        "model_flops": _int_or_none(d.get("model_flops")),
        "remat_flops": _int_or_none(d.get("remat_flops")),
        "by_dtype": {k: int(v) for k, v in (d.get("hw_flops_by_dtype") or {}).items()},
        "kernels": _int_or_none(d.get("kernels")),
        "kernel_time_s": d.get("kernel_time_s"),
        "gpu_busy_s": d.get("gpu_busy_s"),
        "wall_s": d.get("wall_s"),
        "dropped_records": _int_or_none(d.get("dropped_records")),
        "hfu": d.get("hfu"),
        "mfu": d.get("mfu"),
        "peak_flops": d.get("peak_flops"),
        "peak_dtype": d.get("peak_dtype"),
        "peak_source": d.get("peak_source"),
        "sources": d.get("sources"),
        "coverage": total.get("coverage"),
        "steps": steps,
        "degraded": src.get("degraded"),
        "device_name": devs[0].get("name") if devs else None,
        "per_source": src,
    }


def _op_base(name):
    """'aten.mm' / 'aten.mm.default' / 'mm' -> 'mm'."""
    parts = str(name).split(".")
    if parts and parts[0] == "aten":
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] in ("default", "out", "Tensor"):
        parts = parts[:-1]
    return ".".join(parts)


def split_counter(counts):
    """FlopCounterMode's global per-operator FLOPs -> (GEMM FLOPs of
    mm/addmm/bmm/baddbmm, SDPA FLOPs, {other op: FLOPs})."""
    gemm = sdpa = 0
    other = {}
    for name, v in (counts or {}).items():
        base = _op_base(name)
        if base in GEMM_OPS:
            gemm += int(v)
        elif "scaled_dot_product" in base:
            sdpa += int(v)
        elif int(v):
            other[base] = other.get(base, 0) + int(v)
    return gemm, sdpa, other


def trace_kernel_stats(trace):
    """(kernels, seconds) of a Chrome trace from torch.profiler: the
    complete events of category 'kernel' (not memcpy or memset, which the
    shim does not time either); dur is in microseconds."""
    events = trace.get("traceEvents", []) if isinstance(trace, dict) else trace
    n, us = 0, 0.0
    for e in events:
        if e.get("cat") == "kernel" and e.get("ph", "X") == "X":
            n += 1
            us += float(e.get("dur", 0))
    return n, us / 1e6


_STATUS = re.compile(r"^\[mfu [0-9]+s\].*?(kernels/s n/a|([0-9]+) kernels/s)")


def status_lines(text):
    """The `mfu run --interval N` status lines of a stderr text, in order,
    as 'na' (no kernel timing: the source is degraded) or a kernels/s
    number."""
    out = []
    for line in text.splitlines():
        m = _STATUS.search(line.strip())
        if m:
            out.append("na" if m.group(1) == "kernels/s n/a" else int(m.group(2)))
    return out


# JSON fields for degraded intervals: the summary carries degraded_s per
# source; the other names are accepted too.
DEGRADED_FIELDS = ("degraded_s", "degraded_intervals", "degraded_ns", "degraded_count")


def degraded_field(src):
    for k in DEGRADED_FIELDS:
        if k in (src or {}):
            return k, src[k]
    return None, None


def row(check, case, value, target, status, detail=""):
    return {"check": check, "case": case, "value": value, "target": target, "status": status, "detail": detail}


def _fmt_int(v):
    return "n/a" if v is None else "{:,}".format(int(v))


def _pct(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isinf(v)) else "%.3f%%" % (100.0 * v)


def check_gemm_exact(case, run_ok, summ, counts, expected_class):
    """Check 1: shim gemm_flops == FlopCounterMode GEMM FLOPs, exactly, and
    every GEMM FLOP in the expected dtype class."""
    if not run_ok:
        return [row(1, case, "run failed", "0 error", FAIL, "the run exited non-zero or timed out")]
    if summ is None:
        return [row(1, case, "no mfu JSON", "0 error", FAIL)]
    if counts is None:
        return [row(1, case, "no FlopCounterMode counts", "0 error", FAIL)]
    gemm_ref, sdpa_ref, other = split_counter(counts)
    got = summ["gemm_flops"]
    err = rel_err(got, gemm_ref)
    detail = "shim %s vs counter %s; counter SDPA %s; shim declared (hw-gemm) %s" % (
        _fmt_int(got), _fmt_int(gemm_ref), _fmt_int(sdpa_ref),
        _fmt_int(None if summ["hw_flops"] is None or got is None else summ["hw_flops"] - got))
    if other:
        detail += "; other counted ops %s" % json.dumps(other, sort_keys=True)
    status = PASS if got is not None and got == gemm_ref and gemm_ref > 0 else FAIL
    rows = [row(1, case, "rel err %s" % ("%.3g" % err if not math.isinf(err) else "inf"), "0 (exact)", status, detail)]
    in_class = summ["by_dtype"].get(expected_class, 0)
    ok = got is not None and in_class >= got
    rows.append(row(1, case + " dtype", "%s holds %s" % (expected_class, _fmt_int(in_class)),
                    ">= gemm FLOPs", PASS if ok else FAIL, "hw_flops_by_dtype %s" % json.dumps(summ["by_dtype"], sort_keys=True)))
    if summ.get("dropped_records"):
        rows.append(row(1, case + " drops", _fmt_int(summ["dropped_records"]), "0", FAIL, "records dropped: totals inexact"))
    return rows


def per_step_from_runs(short, long_, n_short, n_long):
    """Kernels and kernel seconds per step from two runs of one configuration
    that differ only in step count: (K_long - K_short) / (n_long - n_short),
    which cancels start-up and warm-up."""
    if n_long <= n_short:
        raise ValueError("the long run must have more steps")
    if short is None or long_ is None or short["kernels"] is None or long_["kernels"] is None:
        return None, None
    dn = float(n_long - n_short)
    return (long_["kernels"] - short["kernels"]) / dn, (long_["kernel_time_s"] - short["kernel_time_s"]) / dn


def check_kernel_time(short, long_, n_short, n_long, trace_stats, active_steps, tol=KERNEL_TOL):
    """Check 2: per-step kernel count and kernel time, shim vs torch.profiler."""
    if short is None or long_ is None:
        return [row(2, "kernels/step", "shim runs missing", "<= 2%", FAIL)]
    if trace_stats is None or not active_steps:
        return [row(2, "kernels/step", "no profiler trace", "<= 2%", FAIL)]
    k_s, t_s = per_step_from_runs(short, long_, n_short, n_long)
    if k_s is None:
        return [row(2, "kernels/step", "shim kernel timing unknown (degraded)", "<= 2%", FAIL)]
    k_p = trace_stats[0] / float(active_steps)
    t_p = trace_stats[1] / float(active_steps)
    ek, et = rel_err(k_s, k_p), rel_err(t_s, t_p)
    return [
        row(2, "kernels/step", "shim %.2f vs profiler %.2f (%s)" % (k_s, k_p, _pct(ek)), "<= %g%%" % (tol * 100),
            PASS if ek <= tol else FAIL),
        row(2, "kernel time/step", "shim %.4f ms vs profiler %.4f ms (%s)" % (t_s * 1e3, t_p * 1e3, _pct(et)),
            "<= %g%%" % (tol * 100), PASS if et <= tol else FAIL),
    ]


def check_remat(ckpt, ckpt_steps, blocks_forward, plain, tol=REMAT_TOL, plain_max=REMAT_PLAIN_MAX):
    """Check 3: remat FLOPs with --checkpoint == steps x the blocks' forward
    (every block is recomputed once per step), within tol; without
    checkpointing remat < plain_max of hardware FLOPs."""
    rows = []
    if ckpt is None or ckpt_steps is None:
        rows.append(row(3, "--checkpoint", "run missing", "<= 1%", FAIL))
    else:
        want = blocks_forward * ckpt_steps
        e = rel_err(ckpt["remat_flops"], want)
        rows.append(row(3, "--checkpoint", "remat %s vs analytic %s (%s)" % (_fmt_int(ckpt["remat_flops"]), _fmt_int(want), _pct(e)),
                        "<= %g%%" % (tol * 100), PASS if e <= tol else FAIL))
    if plain is None:
        rows.append(row(3, "no checkpoint", "run missing", "< 0.1% of hw", FAIL))
    else:
        hw = plain["hw_flops"] or 0
        share = (plain["remat_flops"] or 0) / float(hw) if hw else math.inf
        rows.append(row(3, "no checkpoint", "remat %s = %s of hw" % (_fmt_int(plain["remat_flops"]), _pct(share)),
                        "< %g%% of hw" % (plain_max * 100), PASS if share < plain_max else FAIL))
    return rows


def check_mfu(case, summ, flops_per_step, steps, tol=MFU_TOL, expected_class=None):
    """Check 4: MFU by hand = flops_per_step x steps / wall_s / peak, the
    peak from this file's own table for the device and the summary's peak
    class; HFU >= MFU."""
    if summ is None:
        return [row(4, case, "run missing", "<= 1%", FAIL)]
    rows = []
    want_model = flops_per_step * steps
    ok_model = summ["model_flops"] == want_model
    cls = summ["peak_dtype"]
    peak = peak_flops(summ["device_name"], cls)
    detail = "model_flops %s (expected %s = %s x %d steps; summary steps %s); peak %s %s from %s" % (
        _fmt_int(summ["model_flops"]), _fmt_int(want_model), _fmt_int(flops_per_step), steps, summ["steps"],
        cls, summ["peak_flops"], summ["peak_source"])
    if expected_class and cls != expected_class:
        rows.append(row(4, case + " class", cls, expected_class, FAIL, "MFU measured against the wrong class"))
    if peak is None:
        peak = summ["peak_flops"]
        detail += "; device %r not in the validator's table: used the summary's peak" % summ["device_name"]
    elif summ["peak_flops"] is None or rel_err(summ["peak_flops"], peak) > 1e-9:
        rows.append(row(4, case + " peak", "summary %s vs table %s" % (summ["peak_flops"], peak), "equal", FAIL))
    wall = summ["wall_s"]
    if not peak or not wall or summ["mfu"] is None:
        rows.append(row(4, case, "MFU unknown", "<= 1%", FAIL, detail))
        return rows
    hand = want_model / wall / peak
    e = rel_err(summ["mfu"], hand)
    rows.append(row(4, case, "MFU %.5f vs hand %.5f (%s)" % (summ["mfu"], hand, _pct(e)), "<= %g%%" % (tol * 100),
                    PASS if e <= tol and ok_model else FAIL, detail))
    hfu = summ["hfu"]
    rows.append(row(4, case + " HFU>=MFU", "HFU %s, MFU %.5f" % ("n/a" if hfu is None else "%.5f" % hfu, summ["mfu"]),
                    "HFU >= MFU", PASS if hfu is not None and hfu >= summ["mfu"] * (1 - 1e-9) else FAIL,
                    "equal when every executed FLOP is a model FLOP (no recomputation) and all run in the model's class"))
    return rows


def check_coverage(case, run_ok, summ, model_flops_step=None, steps=None):
    """Check 5: coverage (reported, no target); FAIL only when unknown."""
    if not run_ok or summ is None:
        return [row(5, case, "run failed", "reported", FAIL)]
    cov = summ["coverage"]
    detail = ""
    if model_flops_step and steps and summ["hw_flops"] is not None:
        detail = "hw/model FLOPs %.3f; gemm %s; kernels %s; sources %s" % (
            summ["hw_flops"] / float(model_flops_step * steps), _fmt_int(summ["gemm_flops"]), _fmt_int(summ["kernels"]),
            summ["sources"])
    if cov is None:
        return [row(5, case, "unknown", "reported", FAIL, "no kernel timing: " + detail)]
    return [row(5, case, "%.1f%% of kernel time" % (100.0 * cov), "reported", INFO, detail)]


def check_overhead(case, a_runs, b_runs, target=None, min_step_s=None, min_steps=OVERHEAD_MIN_STEPS, what="shim"):
    """Check 6: ratio of pooled medians, runs A (with) and B (without), each
    a list of per-step seconds.  With a target: PASS when the ratio is <= the
    target, the baseline step is >= min_step_s and each arm has >= min_steps
    steps; else INFO."""
    a = [x for r in a_runs for x in (r or [])]
    b = [x for r in b_runs for x in (r or [])]
    if not a or not b:
        return [row(6, case, "runs missing", "<= %g" % target if target else "reported", FAIL)]
    ma, mb = median(a), median(b)
    ratio = ma / mb
    pairs = ["%.4f" % (median(x) / median(y)) for x, y in zip(a_runs, b_runs) if x and y]
    detail = "%s median %.3f ms (%d steps), baseline %.3f ms (%d steps); per pair %s" % (
        what, ma * 1e3, len(a), mb * 1e3, len(b), ", ".join(pairs))
    value = "%.4f" % ratio
    if target is None:
        return [row(6, case, value, "reported", INFO, detail)]
    status = PASS
    if ratio > target:
        status = FAIL
    if min_step_s is not None and mb < min_step_s:
        status = FAIL
        detail += "; baseline step under %.0f ms: config too small" % (min_step_s * 1e3)
    if len(a) < min_steps or len(b) < min_steps:
        status = FAIL
        detail += "; fewer than %d steps per arm" % min_steps
    return [row(6, case, value, "<= %g" % target, status, detail)]


def check_coexist(rc, summ, status, per_step_kernels, ref_kernels, window_steps, steps_after):
    """Check 7.  rc: the run's exit status (None: timed out).  status: the
    status_lines() of its stderr.  per_step_kernels: kernels per step of the
    configuration.  ref_kernels: kernels of the same run without a profiler.
    Lost kernels = ref - measured.  Timing resumed when fewer steps were lost
    than the window plus half the steps after it (not resuming loses the
    window and everything after), the source is not degraded at the end and
    the last status line has a kernel rate."""
    rows = []
    crashed = rc is None or rc != 0 or summ is None
    rows.append(row(7, "no crash", "exit %s" % ("timeout" if rc is None else rc), "exit 0, summary written",
                    FAIL if crashed else PASS))
    if crashed:
        rows.append(row(7, "degraded reported", "n/a", "reported", FAIL, "the run did not finish"))
        rows.append(row(7, "timing resumes", "n/a", "kernels after the window", FAIL, "the run did not finish"))
        return rows
    n_na = sum(1 for s in status if s == "na")
    fld, fval = degraded_field(summ.get("per_source"))
    if summ["kernels"] is None or per_step_kernels is None or ref_kernels is None:
        lost = None
    else:
        lost = ref_kernels - summ["kernels"]
    detail = "kernels %s, reference %s, per step %s, window %d steps, %d after; status lines %d (%d n/a); JSON field %s" % (
        _fmt_int(summ["kernels"]), _fmt_int(ref_kernels),
        "n/a" if per_step_kernels is None else "%.1f" % per_step_kernels, window_steps, steps_after,
        len(status), n_na, "%s=%r" % (fld, fval) if fld else "none")
    # reported
    nothing_lost = lost is not None and per_step_kernels and lost <= 0.5 * per_step_kernels
    if nothing_lost:
        rows.append(row(7, "degraded reported", "no kernels lost", "reported", PASS, detail))
    elif n_na > 0 or (fld and fval):
        rows.append(row(7, "degraded reported", "%d status lines n/a%s" % (n_na, ", JSON %s" % fld if fld else ""),
                        "reported", PASS, detail))
    else:
        rows.append(row(7, "degraded reported", "not reported", "reported", FAIL, detail))
    # resumed
    if lost is None:
        rows.append(row(7, "timing resumes", "kernel timing unknown at the end", "kernels after the window", FAIL, detail))
    else:
        bound = per_step_kernels * (window_steps + steps_after / 2.0)
        ok = lost <= bound and summ["degraded"] is False and (not status or status[-1] != "na")
        rows.append(row(7, "timing resumes", "lost %s kernels (%.1f steps, window %d)" % (
            _fmt_int(lost), lost / per_step_kernels, window_steps),
            "< %g steps lost" % (window_steps + steps_after / 2.0), PASS if ok else FAIL, detail))
    return rows


# gemm records that are not a cuBLAS call: a declared region (api 30) or
# orphan FLOPs (api 31), flagged declared 0x20 / orphan 0x400
_NOT_A_CALL_APIS = (30, 31)
_NOT_A_CALL_FLAGS = 0x20 | 0x400
# a kernel of a CUDA graph replay: launched by cuGraphLaunch, after the call
KF_GRAPH_REPLAY = 0x80
API_KIND_LAUNCH = 1


def host_clock_join(records):
    """Check 8's join over one source's archived records (dicts as
    wire_py.read_archive yields them): each cuBLAS gemm record -> its kernel
    records (kernel.call == gemm.call) -> the launch api records of those
    kernels (api.corr == kernel.corr, kind 1; an api record without a kind
    is a launch).  Returns a dict: pairs, a list of (gemm_end_ns,
    api_end_ns, gemm_tid, api_tid), one per distinct (call, corr); and the
    counts of what did not join: gemms (cuBLAS calls), gemms_with_kernels,
    kernels_no_gemm (kernel.call set, no such gemm record), kernels_no_api
    (no launch api record with the kernel's corr), kernels_replayed (graph
    replays, left out: their launch is not inside the call)."""
    gemms, api = {}, {}
    kernels = []
    for r in records:
        t = r.get("type")
        if t == "gemm":
            if r.get("api") in _NOT_A_CALL_APIS or int(r.get("flags", 0)) & _NOT_A_CALL_FLAGS or not r.get("call"):
                continue
            gemms[r["call"]] = r
        elif t == "kernel":
            if r.get("call"):
                kernels.append(r)
        elif t == "api":
            if r.get("kind", API_KIND_LAUNCH) == API_KIND_LAUNCH:
                api[r.get("corr")] = r
    out = {"pairs": [], "gemms": len(gemms), "gemms_with_kernels": 0, "kernels_no_gemm": 0, "kernels_no_api": 0,
           "kernels_replayed": 0}
    seen, with_kernels = set(), set()
    for k in kernels:
        if int(k.get("flags", 0)) & KF_GRAPH_REPLAY:
            out["kernels_replayed"] += 1
            continue
        g = gemms.get(k["call"])
        if g is None:
            out["kernels_no_gemm"] += 1
            continue
        with_kernels.add(k["call"])
        a = api.get(k.get("corr"))
        if a is None:
            out["kernels_no_api"] += 1
            continue
        key = (k["call"], k.get("corr"))
        if key in seen:  # several kernels of one launch (a graph): one pair
            continue
        seen.add(key)
        out["pairs"].append((g["end_ns"], a["end_ns"], g.get("tid"), a.get("tid")))
    out["gemms_with_kernels"] = len(with_kernels)
    return out


def host_clock_merge(joins):
    """host_clock_join() results of several sources as one."""
    out = {"pairs": [], "gemms": 0, "gemms_with_kernels": 0, "kernels_no_gemm": 0, "kernels_no_api": 0,
           "kernels_replayed": 0}
    for j in joins:
        for k in out:
            out[k] = out[k] + j[k]
    return out


def percentile(xs, q):
    """The nearest-rank q-th percentile (0 < q <= 100) of xs, or None."""
    xs = sorted(xs)
    if not xs:
        return None
    return xs[max(0, int(math.ceil(q / 100.0 * len(xs))) - 1)]


def host_clock_stats(join, slack_ns=CLOCK_SLACK_NS):
    """Check 8's numbers from a host_clock_join(): n pairs, the share with
    api.end <= gemm.end + slack_ns, the median, p99, min and max of
    gemm.end - api.end in ns, the share with equal thread ids and the first
    pair whose tids differ."""
    pairs = join["pairs"]
    gaps = [g - a for g, a, _, _ in pairs]
    n = len(pairs)
    same = [p for p in pairs if p[2] == p[3]]
    diff = [p for p in pairs if p[2] != p[3]]
    return {
        "n": n,
        "ordered": sum(1 for d in gaps if d >= -slack_ns) / float(n) if n else None,
        "median_ns": median(gaps),
        "p99_ns": percentile(gaps, 99),
        "min_ns": min(gaps) if gaps else None,
        "max_ns": max(gaps) if gaps else None,
        "same_tid": len(same) / float(n) if n else None,
        "tid_example": (diff[0][2], diff[0][3]) if diff else None,
    }


def _us(ns):
    return "n/a" if ns is None else "%.1f us" % (ns / 1e3)


def check_host_clocks(case, run_ok, join, clock_want=None, clock_seen=None, slack_ns=CLOCK_SLACK_NS,
                      ordered_min=CLOCK_ORDERED_MIN, min_pairs=CLOCK_MIN_PAIRS):
    """Check 8 on one run.  join: host_clock_join() (merged over sources) of
    its archive, or None when there is none.  clock_want / clock_seen: the
    clock the shim should have stamped gemm records with ('TSC' or
    'clock_gettime') and the one its MFU_LOG stderr says it used; a TSC run
    that fell back to clock_gettime has not tested the TSC."""
    target_order = ">= %g%% within %g us" % (ordered_min * 100, slack_ns / 1e3)
    if not run_ok:
        return [row(8, case, "run failed", target_order, FAIL, "the run exited non-zero or timed out")]
    if join is None:
        return [row(8, case, "no archive", target_order, FAIL, "no *.mfa under the run's archive folder")]
    st = host_clock_stats(join, slack_ns)
    missing = "%d cuBLAS gemm records, %d with kernels; %d kernels name no gemm record, %d have no launch api record" % (
        join["gemms"], join["gemms_with_kernels"], join["kernels_no_gemm"], join["kernels_no_api"])
    if join["kernels_replayed"]:
        missing += "; %d graph-replay kernels left out" % join["kernels_replayed"]
    rows = []
    if clock_want is not None:
        rows.append(row(8, case + " clock", clock_seen or "unknown", clock_want,
                        PASS if clock_seen == clock_want else FAIL,
                        "from the shim's MFU_LOG line 'host clock: TSC'"))
    if st["n"] < min_pairs:
        rows.append(row(8, case + " order", "%d joined pairs" % st["n"], ">= %d pairs, %s" % (min_pairs, target_order),
                        FAIL, missing))
        rows.append(row(8, case + " tid", "%d joined pairs" % st["n"], "100% same tid", FAIL, missing))
        return rows
    detail = "%d pairs; gemm.end - api.end min %s, max %s; %s" % (
        st["n"], _us(st["min_ns"]), _us(st["max_ns"]), missing)
    rows.append(row(8, case + " order", "%.2f%% of %d pairs" % (100.0 * st["ordered"], st["n"]), target_order,
                    PASS if st["ordered"] >= ordered_min else FAIL, detail))
    rows.append(row(8, case + " gap", "median %s, p99 %s" % (_us(st["median_ns"]), _us(st["p99_ns"])),
                    "reported (expect us)", INFO, "gemm.end - api.end: from the launch's end to the call's return"))
    ex = st["tid_example"]
    rows.append(row(8, case + " tid", "%.2f%% same tid" % (100.0 * st["same_tid"]), "100% same tid",
                    PASS if st["same_tid"] == 1.0 else FAIL,
                    "first mismatch: gemm tid %s, api tid %s (CUPTI's thread ids not SYSTEM?)" % ex if ex else ""))
    return rows


def shim_host_clock(stderr):
    """The clock the shim stamped gemm records with, from its MFU_LOG=1
    stderr: 'TSC' when it says 'host clock: TSC', else 'clock_gettime'."""
    return "TSC" if "mfushim: host clock: TSC" in (stderr or "") else "clock_gettime"


def read_archive_dir(d):
    """host_clock_join() over every source archived in folder d (files
    <host>-<pid>-<start>-c<conn>.<n>.mfa, one stream per name without
    .<n>.mfa, read in order of n), merged; None when d holds no *.mfa."""
    if WIRE_PY_DIR not in sys.path:
        sys.path.insert(0, WIRE_PY_DIR)
    import wire_py
    try:
        names = [n for n in os.listdir(d) if n.endswith(".mfa")]
    except OSError:
        return None
    if not names:
        return None
    streams = {}
    for n in names:
        stem, _, num = n[:-len(".mfa")].rpartition(".")
        streams.setdefault(stem, []).append((int(num) if num.isdigit() else 0, n))
    joins = []
    for stem in sorted(streams):
        recs = []
        for _, n in sorted(streams[stem]):
            recs += wire_py.read_archive(os.path.join(d, n))
        joins.append(host_clock_join(recs))
    return host_clock_merge(joins)


def tally(rows):
    n = {PASS: 0, FAIL: 0, INFO: 0, SKIP: 0}
    for r in rows:
        n[r["status"]] = n.get(r["status"], 0) + 1
    return n


def format_table(rows):
    """The results table, one line per row, then 'N passed, N failed'."""
    head = ("check", "case", "value", "target", "status")
    cells = [head] + [(str(r["check"]), str(r["case"]), str(r["value"]), str(r["target"]), str(r["status"])) for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(w[i]) for i in range(len(head))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    n = tally(rows)
    lines.append("%d passed, %d failed, %d info, %d skipped" % (n[PASS], n[FAIL], n[INFO], n[SKIP]))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Configurations and the plan
# --------------------------------------------------------------------------

#: small: exact-count checks, run concurrently; medium: timing and coverage
#: (about 10 ms a step on an H100); big: >= 100 ms a step; tiny: launch-bound.
CONFIGS = {
    "small": dict(width=512, depth=2, heads=8, seq=512, batch=4, vocab=4096, warmup=1, steps=2),
    "medium": dict(width=1024, depth=4, heads=16, seq=1024, batch=8, vocab=32768, warmup=20, steps=35),
    "big": dict(width=2048, depth=12, heads=16, seq=2048, batch=12, vocab=32768, warmup=10, steps=50),
    "tiny": dict(width=64, depth=64, heads=2, seq=64, batch=2, vocab=256, warmup=20, steps=200),
}
MEDIUM_SHORT_STEPS = 5
PROFILER_STEPS = 15
#: check 7: medium at batch 32 (about 40 ms a step): 2 s before the profiler,
#: 2.4 s under it, 4 s after, so the 1 s status lines and the sender's 1 s
#: status records can show both the degraded interval and the recovery.
COEXIST = dict(batch=32, steps=210)
COEXIST_WINDOW = (50, 110)
#: check 8: the small bf16 configuration archived, with the shim's clock
#: forced to the TSC (even where the clocksource is another) and to
#: clock_gettime; about 27 cuBLAS calls a step (9 GEMMs forward, 18
#: backward), so 21 steps give some 550 call-launch pairs, at a few ms a
#: step: the run is torch's start-up.
C8_CASES = [("c8-tsc", "1"), ("c8-clock", "0")]
C8_STEPS = 20


class Spec:
    """One process: train_gpt.py with a configuration, under `mfu run` or not."""

    def __init__(self, name, config, flags=(), shim=True, timeout=120, parallel=False, interval=0, env=None,
                 expected_class="bf16", archive=False, **over):
        self.name = name
        self.cfg = dict(CONFIGS[config])
        self.cfg.update(over)
        self.config = config
        self.flags = list(flags)
        self.shim = shim
        self.timeout = timeout
        self.parallel = parallel
        self.interval = interval
        self.env = dict(env or {})
        self.expected_class = expected_class
        self.archive = archive  # mfu run --archive RUNDIR/archive

    def train_args(self):
        a = []
        for k in ("width", "depth", "heads", "seq", "batch", "vocab", "warmup", "steps"):
            a += ["--" + k, str(self.cfg[k])]
        return a + self.flags


C1_CASES = [
    # name, flags, expected dtype class of the GEMMs
    ("c1-fp32", ["--dtype", "fp32", "--tf32", "off"], "fp32"),
    ("c1-tf32", ["--dtype", "fp32", "--tf32", "on", "--bias"], "tf32"),
    ("c1-bf16", ["--dtype", "bf16"], "bf16"),
    ("c1-fp16", ["--dtype", "fp16"], "fp16"),
    ("c1-lt", ["--dtype", "bf16", "--prefer-cublaslt", "--bias"], "bf16"),
    ("c1-math", ["--dtype", "bf16", "--attention", "math", "--bias"], "bf16"),
]


def plan(part):
    specs = []
    if part in ("1", "all"):
        for name, flags, cls in C1_CASES:
            specs.append(Spec(name, "small", flags + ["--flop-counter"], parallel=True, timeout=150, expected_class=cls))
        specs.append(Spec("c3-ckpt", "small", ["--checkpoint"], parallel=True, timeout=150, steps=3))
        for name, tsc in C8_CASES:
            specs.append(Spec(name, "small", ["--dtype", "bf16"], parallel=True, timeout=120, archive=True,
                              env={"MFU_TSC": tsc, "MFU_LOG": "1"}, steps=C8_STEPS))
        specs.append(Spec("c2-short", "medium", [], steps=MEDIUM_SHORT_STEPS))
        specs.append(Spec("c2-long", "medium", []))
        specs.append(Spec("c2-prof", "medium", ["--torch-profiler", "--trace", "@trace"], shim=False,
                          steps=PROFILER_STEPS, timeout=180))
        specs.append(Spec("c7-ref", "medium", [], interval=1, timeout=150, **COEXIST))
        specs.append(Spec("c7-coexist", "medium", ["--profile-window", "%d:%d" % COEXIST_WINDOW], interval=1,
                          timeout=180, **COEXIST))
        specs.append(Spec("c5-graphs", "medium", ["--cuda-graphs"], timeout=180))
        specs.append(Spec("c5-compile", "medium", ["--compile"], timeout=300))
    if part in ("2", "all"):
        for i in (1, 2):
            specs.append(Spec("c6-big-A%d" % i, "big", [], timeout=150))
            specs.append(Spec("c6-big-B%d" % i, "big", [], shim=False, timeout=150))
        specs.append(Spec("c6-big-P", "big", ["--torch-profiler"], shim=False, timeout=180))
        for i in (1, 2):
            specs.append(Spec("c6-tiny-A%d" % i, "tiny", [], timeout=120))
            specs.append(Spec("c6-tiny-B%d" % i, "tiny", [], shim=False, timeout=120))
        # fewer steps under the profiler: its post-processing grows with the events
        specs.append(Spec("c6-tiny-P", "tiny", ["--torch-profiler"], shim=False, timeout=150, steps=30))
    return specs


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

class Result:
    def __init__(self, spec):
        self.spec = spec
        self.cmd = None
        self.rc = None
        self.timed_out = False
        self.skipped = None
        self.elapsed = 0.0
        self.events = []
        self.summary_event = None
        self.mfu_raw = None
        self.mfu = None
        self.stderr = ""
        self.dir = None

    @property
    def ok(self):
        return self.skipped is None and not self.timed_out and self.rc == 0

    def steps_total(self):
        s = self.summary_event
        return s.get("optimizer_steps") if s else None


def clean_env(extra):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("MFU_") or k in ("LD_PRELOAD", "TORCH_BLAS_PREFER_CUBLASLT"):
            del env[k]
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Runner:
    def __init__(self, build, work, budget_s, python, log=sys.stdout):
        self.mfu = os.path.join(build, "tools", "mfu")
        self.work = work
        self.deadline = time.monotonic() + budget_s
        self.python = python
        self.log = log
        self.lock = threading.Lock()
        self.min_run_s = 20  # a run given less than this is skipped, not started
        self.reserve_s = 10  # kept for evaluating and packing the logs

    def say(self, msg):
        with self.lock:
            self.log.write(msg + "\n")
            self.log.flush()

    def command(self, spec, d):
        args = [a if a != "@trace" else os.path.join(d, "trace.json") for a in spec.train_args()]
        train = [self.python, TRAIN] + args + ["--log", os.path.join(d, "steps.jsonl")]
        if not spec.shim:
            return train
        archive = ["--archive", os.path.join(d, "archive")] if spec.archive else []
        return [self.mfu, "run", "--interval", str(spec.interval)] + archive + [
            "--json", os.path.join(d, "mfu.json"), "--"] + train

    def run(self, spec):
        res = Result(spec)
        d = os.path.join(self.work, spec.name)
        os.makedirs(d, exist_ok=True)
        res.dir = d
        res.cmd = self.command(spec, d)
        left = self.deadline - time.monotonic() - self.reserve_s
        limit = min(spec.timeout, left)
        if limit < self.min_run_s:
            res.skipped = "budget spent (%.0f s left)" % max(0, left)
            self.say("[skip] %s: %s" % (spec.name, res.skipped))
            return res
        with open(os.path.join(d, "cmd.txt"), "w") as f:
            f.write(" ".join(shlex.quote(c) for c in res.cmd) + "\n")
        t0 = time.monotonic()
        with open(os.path.join(d, "stdout.txt"), "w") as out, open(os.path.join(d, "stderr.txt"), "w") as err:
            p = subprocess.Popen(res.cmd, stdout=out, stderr=err, env=clean_env(spec.env), cwd=ROOT,
                                 start_new_session=True)
            try:
                res.rc = p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                res.timed_out = True
                # the whole group: mfu, python, the compile workers it started
                for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                    try:
                        os.killpg(p.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        p.wait(timeout=grace)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                res.rc = p.returncode
        res.elapsed = time.monotonic() - t0
        self.collect(res)
        self.say("[%s] %s: rc=%s in %.1f s%s" % ("ok" if res.ok else "FAIL", spec.name, res.rc, res.elapsed,
                                                  " (timed out after %.0f s)" % limit if res.timed_out else ""))
        return res

    def collect(self, res):
        d = res.dir
        try:
            with open(os.path.join(d, "steps.jsonl")) as f:
                res.events = parse_jsonl(f.read())
        except OSError:
            res.events = []
        res.summary_event = last_event(res.events, "summary")
        try:
            with open(os.path.join(d, "stderr.txt"), errors="replace") as f:
                res.stderr = f.read()
        except OSError:
            pass
        if res.spec.shim:
            try:
                with open(os.path.join(d, "mfu.json")) as f:
                    res.mfu_raw = json.load(f)
                res.mfu = parse_mfu_summary(res.mfu_raw)
            except (OSError, ValueError):
                res.mfu = None

    def run_all(self, specs, jobs):
        results = {}
        par = [s for s in specs if s.parallel]
        ser = [s for s in specs if not s.parallel]
        if par:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
                for r in ex.map(self.run, par):
                    results[r.spec.name] = r
        for s in ser:  # timing runs: alone on the GPU
            results[s.name] = self.run(s)
        return results


def evaluate(results, part):
    """The rows of every check whose runs are in results."""
    rows = []

    def get(name):
        return results.get(name)

    def skipped(name):
        r = get(name)
        return r is not None and r.skipped is not None

    if part in ("1", "all"):
        for name, flags, cls in C1_CASES:
            r = get(name)
            if r is None or skipped(name):
                rows.append(row(1, name, "not run", "0 (exact)", SKIP, r.skipped if r else ""))
                continue
            counts = r.summary_event.get("flop_counts") if r.summary_event else None
            rows += check_gemm_exact(name, r.ok, r.mfu, counts, cls)

        # 2: kernels and kernel time per step
        s, l_, p = get("c2-short"), get("c2-long"), get("c2-prof")
        k_per_step = None
        trace_stats = None
        if p is not None and p.ok:
            try:
                with open(os.path.join(p.dir, "trace.json")) as f:
                    trace_stats = trace_kernel_stats(json.load(f))
                with open(os.path.join(p.dir, "trace-stats.json"), "w") as f:
                    json.dump({"kernels": trace_stats[0], "kernel_s": trace_stats[1]}, f)
            except (OSError, ValueError):
                trace_stats = None
        if any(x is None or not x.ok for x in (s, l_, p)):
            why = ", ".join("%s %s" % (n, "skipped" if x is not None and x.skipped else "failed")
                            for n, x in (("c2-short", s), ("c2-long", l_), ("c2-prof", p)) if x is None or not x.ok)
            rows.append(row(2, "kernels/step", "runs missing", "<= 2%", SKIP if all(x is None or x.skipped for x in (s, l_, p)) else FAIL, why))
        else:
            active = p.summary_event.get("profiler_active_steps") if p.summary_event else None
            rows += check_kernel_time(s.mfu, l_.mfu, s.steps_total(), l_.steps_total(), trace_stats, active)
            k_per_step, _ = per_step_from_runs(s.mfu, l_.mfu, s.steps_total(), l_.steps_total())

        # 3: remat
        c = get("c3-ckpt")
        plain = get("c1-bf16")
        if c is not None and c.ok and c.summary_event:
            blocks = c.summary_event.get("blocks_forward_flops")
            rows += check_remat(c.mfu, c.steps_total(), blocks, plain.mfu if plain is not None and plain.ok else None)
        else:
            rows.append(row(3, "--checkpoint", "run missing", "<= 1%", FAIL if c is not None and not c.skipped else SKIP))

        # 4: MFU by hand, on the default run and the checkpointed one
        for name in ("c2-long", "c3-ckpt"):
            r = get(name)
            if r is None or not r.ok or not r.summary_event:
                rows.append(row(4, name, "run missing", "<= 1%", SKIP if r is None or r.skipped else FAIL))
                continue
            rows += check_mfu(name, r.mfu, r.summary_event["model_flops_per_step"], r.steps_total(),
                              expected_class=r.spec.expected_class)

        # 5: coverage
        for name, label in (("c2-long", "default"), ("c5-compile", "--compile"), ("c5-graphs", "--cuda-graphs")):
            r = get(name)
            if r is None or r.skipped:
                rows.append(row(5, label, "not run", "reported", SKIP, r.skipped if r else ""))
                continue
            se = r.summary_event or {}
            rows += check_coverage(label, r.ok, r.mfu, se.get("model_flops_per_step"), r.steps_total())

        # 7: coexistence with torch.profiler
        r, ref = get("c7-coexist"), get("c7-ref")
        if r is None or r.skipped:
            rows.append(row(7, "no crash", "not run", "exit 0", SKIP))
        else:
            a, b = COEXIST_WINDOW
            ref_kernels = ref.mfu["kernels"] if ref is not None and ref.ok and ref.mfu else None
            # kernels per step of this configuration (start-up included: slightly over)
            k = k_per_step
            if ref_kernels is not None and ref.steps_total():
                k = ref_kernels / float(ref.steps_total())
            rows += check_coexist(None if r.timed_out else r.rc, r.mfu, status_lines(r.stderr), k, ref_kernels,
                                  b - a, r.spec.cfg["steps"] - b)

        # 8: host clocks agree, TSC and clock_gettime
        for name, tsc in C8_CASES:
            r = get(name)
            target = ">= %g%% within %g us" % (CLOCK_ORDERED_MIN * 100, CLOCK_SLACK_NS / 1e3)
            if r is None or r.skipped:
                rows.append(row(8, name, "not run", target, SKIP, r.skipped if r else ""))
                continue
            join = None
            if r.ok:
                try:
                    join = read_archive_dir(os.path.join(r.dir, "archive"))
                except Exception as e:  # noqa: BLE001 - a broken archive fails this check, not the validator
                    rows.append(row(8, name, "archive unreadable", target, FAIL, "%s: %s" % (type(e).__name__, e)))
                    continue
            rows += check_host_clocks(name, r.ok, join, "TSC" if tsc == "1" else "clock_gettime",
                                      shim_host_clock(r.stderr))

    if part in ("2", "all"):
        def steps_of(names):
            return [step_seconds(get(n).events) if get(n) is not None and get(n).ok else None for n in names]

        def overhead(case, a_names, b_names, **kw):
            out = check_overhead(case, steps_of(a_names), steps_of(b_names), **kw)
            if out[0]["value"] == "runs missing" and all(skipped(n) or get(n) is None for n in a_names + b_names):
                out[0]["status"] = SKIP  # not run (budget), which is not a failure of the shim
            return out
        big_a, big_b = ["c6-big-A1", "c6-big-A2"], ["c6-big-B1", "c6-big-B2"]
        tiny_a, tiny_b = ["c6-tiny-A1", "c6-tiny-A2"], ["c6-tiny-B1", "c6-tiny-B2"]
        rows += overhead("shim, >=100 ms step", big_a, big_b, target=OVERHEAD_TARGET, min_step_s=OVERHEAD_MIN_STEP_S)
        rows += overhead("torch.profiler, same config", ["c6-big-P"], big_b, what="profiler")
        rows += overhead("shim, launch-bound", tiny_a, tiny_b)
        rows += overhead("torch.profiler, launch-bound", ["c6-tiny-P"], tiny_b, what="profiler")
    return rows


def plan_limits(specs, jobs, budget_s):
    """One line on the plan's time: its runs' limits against the budget.
    Limits, not durations: no part has been timed on a GPU yet."""
    par = [s.timeout for s in specs if s.parallel]
    ser = [s.timeout for s in specs if not s.parallel]
    return ("# limits: %d parallel runs, %d at a time (%d s in all), then %d serial runs (%d s in all); "
            "budget %g s: a run that no longer fits is SKIP" % (len(par), max(1, jobs), sum(par), len(ser), sum(ser),
                                                               budget_s))


def environment(python, build):
    env = {"build": build}
    for key, cmd in (("nvidia_smi", ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                      "--format=csv,noheader"]),
                     ("torch", [python, "-c", "import torch, sys; print(torch.__version__, torch.version.cuda, "
                                              "torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            env[key] = (p.stdout or p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            env[key] = "unavailable: %s" % e
    # the shim stamps with the TSC by default only where this says tsc
    # (check 8 forces it either way)
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            env["clocksource"] = f.read().strip()
    except OSError as e:
        env["clocksource"] = "unavailable: %s" % e
    return env


def write_outputs(out, part, rows, results, env, work):
    os.makedirs(out, exist_ok=True)
    table = format_table(rows)
    tag = "part%s" % part
    with open(os.path.join(out, "results-%s.txt" % tag), "w") as f:
        for k, v in sorted(env.items()):
            f.write("# %s: %s\n" % (k, v))
        f.write(table)
    runs = {}
    for name, r in sorted(results.items()):
        se = dict(r.summary_event or {})
        runs[name] = {"cmd": r.cmd, "rc": r.rc, "timed_out": r.timed_out, "skipped": r.skipped,
                      "elapsed_s": round(r.elapsed, 3), "summary_event": se, "mfu": r.mfu_raw,
                      "median_step_s": median(step_seconds(r.events))}
    with open(os.path.join(out, "results-%s.json" % tag), "w") as f:
        json.dump({"part": part, "env": env, "rows": rows, "runs": runs}, f, indent=1, sort_keys=True)
    # every log, without the profiler's raw traces (their numbers are in trace-stats.json)
    with tarfile.open(os.path.join(out, "logs-%s.tar.gz" % tag), "w:gz") as t:
        t.add(work, arcname="validate-%s" % tag, filter=lambda ti: None if ti.name.endswith("trace.json") else ti)
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description="GPU validation of mfushim (doc/validation.md)")
    p.add_argument("--part", choices=("1", "2", "all"), default="1",
                   help="1: checks 1-5, 7 and 8; 2: check 6 (overhead); all: both (default 1)")
    p.add_argument("--build", default=os.path.join(ROOT, "build-h1"), help="meson build dir with tools/mfu and shim/")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "validate-out"))
    p.add_argument("--work", default="/tmp/mfu-validate", help="per-run logs (tarred into --out)")
    p.add_argument("--budget-s", type=float, default=540, help="wall-clock budget of this part (default 540)")
    p.add_argument("--jobs", type=int, default=4, help="concurrent exact-count runs (default 4)")
    p.add_argument("--python", default=sys.executable, help="python with torch (default: this one)")
    p.add_argument("--only", default="", help="comma-separated run names (for a re-run)")
    p.add_argument("--plan", action="store_true", help="print the runs and exit (no GPU needed)")
    a = p.parse_args(argv)

    specs = plan(a.part)
    if a.only:
        keep = set(a.only.split(","))
        specs = [s for s in specs if s.name in keep]
    runner = Runner(os.path.abspath(a.build), a.work, a.budget_s, a.python)
    if a.plan:
        for s in specs:
            d = os.path.join(a.work, s.name)
            env = "".join("%s=%s " % kv for kv in sorted(s.env.items()))
            print("%-14s %-8s %s limit %ds: %s%s" % (s.name, "parallel" if s.parallel else "serial", s.config,
                                                     s.timeout, env, " ".join(shlex.quote(c) for c in runner.command(s, d))))
        print(plan_limits(specs, a.jobs, a.budget_s))
        return 0
    for path in (runner.mfu, os.path.join(os.path.abspath(a.build), "shim", "libmfushim.so")):
        if not os.path.exists(path):
            sys.stderr.write("validate.py: %s is missing: build first (tools/gpu/validate.sh does)\n" % path)
            return 2
    os.makedirs(a.work, exist_ok=True)
    env = environment(a.python, os.path.abspath(a.build))
    env["part"] = a.part
    env["budget_s"] = a.budget_s
    for k, v in sorted(env.items()):
        print("# %s: %s" % (k, v))
    sys.stdout.flush()
    t0 = time.monotonic()
    results = runner.run_all(specs, a.jobs)
    rows = evaluate(results, a.part)
    env["elapsed_s"] = round(time.monotonic() - t0, 1)
    table = write_outputs(a.out, a.part, rows, results, env, a.work)
    # details first, the table last: the device call's reply keeps the tail
    for r in rows:
        if r["detail"]:
            print("# %s %s: %s" % (r["check"], r["case"], r["detail"]))
    print("\nmfushim GPU validation, part %s (%.0f s)" % (a.part, env["elapsed_s"]))
    sys.stdout.write(table)
    return 0 if tally(rows)[FAIL] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
