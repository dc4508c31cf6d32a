# SPDX-License-Identifier: MIT
"""Dry run of the GPU validation without torch or a GPU.

tools/gpu/validate.py's pure logic (parsing `mfu run --json` summaries,
train_gpt.py logs, FlopCounterMode counts, profiler traces and status lines;
the comparisons, medians and ratios of the eight checks, check 8's join of
archived gemm, kernel and api records; the results table;
the analytic FLOPs) is fed recorded-looking inputs with hand-computed
answers, passing and failing ones.  Its runner is driven with a stand-in
for `mfu run` and for python (time limits, process groups, logs).
tools/examples/train_gpt.py: --help without torch, and a run without torch
ends with one line and status 2.  doc/metrics.md's worked example agrees
with mfu.flops.

Run: python3 tests/python/test_validate.py   (TAP output)
"""

import copy
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "python"))

import mfu  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import wire_py  # noqa: E402


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


V = _load("validate", os.path.join(ROOT, "tools", "gpu", "validate.py"))
TRAIN = os.path.join(ROOT, "tools", "examples", "train_gpt.py")
G = _load("train_gpt", TRAIN)

H100 = "NVIDIA H100 80GB HBM3"
_TMP = []


def _tmpdir(prefix="mfu-validate-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _TMP.append(d)
    return d


def statuses(rows):
    return [r["status"] for r in rows]


# --------------------------------------------------------------------------
# Recorded-looking inputs
# --------------------------------------------------------------------------

def mfu_json(**over):
    """An `mfu run --json` summary shaped like the one the collector writes
    (collector/export.c), for one source with one H100."""
    d = {
        "version": "0.1.0", "gemm_calls": 1330, "gemm_flops": 218467106406400,
        "hw_flops": 236646509854720, "model_flops": 238113986740224, "remat_flops": 0,
        "hw_flops_by_dtype": {"bf16": 236646509854720},
        "kernels": 17600, "kernel_time_s": 0.612345678, "gpu_busy_s": 0.6, "wall_s": 6.5,
        "dropped_records": 0, "hfu": 0.036801, "mfu": 0.037029, "peak_flops": 989400000000000,
        "peak_dtype": "bf16", "peak_source": "table:NVIDIA H100 SXM5", "sources": 1, "synthetic": False,
        "windows": {
            "1s": {"span_s": 1, "hfu": None, "mfu": None, "hw_flops_per_s": None, "model_flops_per_s": None,
                   "gpu_busy": None, "kernels_per_s": None, "steps_per_s": None, "coverage": None,
                   "peak_dtype": "bf16"},
            "total": {"span_s": 6.5, "hfu": 0.036801, "mfu": 0.037029, "hw_flops_per_s": 3.6e13,
                      "model_flops_per_s": 3.66e13, "gpu_busy": 0.09, "kernels_per_s": 2707.7,
                      "steps_per_s": 55 / 6.5, "coverage": 0.7125, "peak_dtype": "bf16"},
        },
        "per_source": [{
            "host": "gpu", "job": "", "producer": "mfushim 0.1.0", "pid": 4242, "rank": -1,
            "local_rank": -1, "world_size": 0, "connected": False, "degraded": False, "frames": 40,
            "lost_frames": 0, "implausible_records": 0,
            "devices": [{"index": 0, "name": H100, "peak_source": "table:NVIDIA H100 SXM5",
                         "peak_flops": 989400000000000, "total": {}}],
        }],
    }
    for k, v in over.items():
        d[k] = v
    return d


def summ(**over):
    return V.parse_mfu_summary(mfu_json(**over))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_analytic_flops_by_hand():
    # d=8, H=2 (D_h=4), L=1, S=4, B=2, V=16: T=8
    # QKV 2*8*8*24=3072, out 2*8*8*8=1024, MLP 2*8*8*32*2=8192,
    # causal attention 2*B*H*S^2*D_h = 2*2*2*16*4 = 512 -> layer 12800
    # head 2*8*8*16 = 2048 -> forward 14848, step 44544
    a = V.analytic(dict(width=8, depth=1, heads=2, seq=4, batch=2, vocab=16))
    assert a == {"forward": 14848, "step": 44544, "blocks_forward": 12800}, a
    # heads 0 means width/64, ffn 0 means 4*width
    b = V.analytic(dict(width=128, depth=1, heads=0, ffn=0, seq=4, batch=1, vocab=0))
    T, d = 4, 128
    assert b["forward"] == 24 * T * d * d + 2 * 1 * 4 * 4 * d, b
    # the medium configuration, closed form: L*(24*T*d^2 + 2*B*S^2*d) + 2*T*d*V
    m = V.analytic(V.CONFIGS["medium"])
    assert m["forward"] == 1443109011456 and m["step"] == 4329327034368 and m["blocks_forward"] == 893353197568, m


def test_train_script_uses_the_same_formula():
    import argparse
    args = argparse.Namespace(batch=8, seq=1024, depth=4, width=1024, heads=16, ffn=4096, vocab=32768,
                              checkpoint=True)
    f = G.analytic_flops(mfu, args)
    a = V.analytic(V.CONFIGS["medium"])
    assert f["step"] == a["step"] and f["forward"] == a["forward"] and f["remat_per_step"] == a["blocks_forward"], f
    args.checkpoint = False
    assert G.analytic_flops(mfu, args)["remat_per_step"] == 0
    assert G.model_class(argparse.Namespace(dtype="fp32", tf32="on")) == "tf32"
    assert G.model_class(argparse.Namespace(dtype="fp32", tf32="off")) == "fp32"
    assert G.model_class(argparse.Namespace(dtype="bf16", tf32="on")) == "bf16"


def test_doc_worked_example_matches_mfu_flops():
    with open(os.path.join(ROOT, "doc", "metrics.md")) as f:
        doc = f.read()
    assert "## Model FLOPs of a decoder-only transformer" in doc
    kw = dict(batch=8, seq_len=1024, layers=4, d_model=1024, heads=16, vocab=32768)
    for v in (mfu.flops.transformer_forward(**dict(kw, layers=1, vocab=0)),
              mfu.flops.transformer_forward(**kw), mfu.flops.transformer_step(**kw),
              mfu.flops.transformer_forward(**dict(kw, vocab=0))):
        assert "{:,}".format(v) in doc, v


def test_parse_mfu_summary():
    s = summ()
    assert s["gemm_flops"] == 218467106406400 and isinstance(s["gemm_flops"], int)
    assert s["steps"] == 55  # round(steps_per_s * span_s)
    assert s["coverage"] == 0.7125
    assert s["device_name"] == H100 and s["degraded"] is False
    assert s["by_dtype"] == {"bf16": 236646509854720}
    d = mfu_json(kernels=None, kernel_time_s=None)
    d["per_source"][0]["degraded"] = True
    s = V.parse_mfu_summary(d)
    assert s["kernels"] is None and s["degraded"] is True
    assert V.parse_mfu_summary(None) is None
    # a second, idle source (a compile worker) listed first: the busy one is the trainer
    d = mfu_json(sources=2)
    d["per_source"][0]["hw_flops"] = 236646509854720
    idle = copy.deepcopy(d["per_source"][0])
    idle.update(hw_flops=0, degraded=True, devices=[])
    d["per_source"].insert(0, idle)
    s = V.parse_mfu_summary(d)
    assert s["device_name"] == H100 and s["degraded"] is False


def test_parse_jsonl_and_steps():
    text = "\n".join([
        json.dumps({"event": "config", "config": {}}),
        "a stray print",
        json.dumps({"event": "step", "phase": "warmup", "seconds": 9.0}),
        json.dumps({"event": "step", "phase": "timed", "seconds": 0.25}),
        "{broken",
        json.dumps({"event": "step", "phase": "timed", "seconds": 0.5}),
        json.dumps({"event": "summary", "optimizer_steps": 3}),
    ])
    ev = V.parse_jsonl(text)
    assert len(ev) == 5
    assert V.step_seconds(ev) == [0.25, 0.5]
    assert V.step_seconds(ev, "warmup") == [9.0]
    assert V.last_event(ev, "summary")["optimizer_steps"] == 3
    assert V.median([3, 1, 2, None]) == 2 and V.median([]) is None


def test_split_counter():
    counts = {"aten.mm": 1000, "aten.addmm": 200, "aten.bmm": 30, "aten.baddbmm.default": 4,
              "aten._scaled_dot_product_flash_attention": 5000,
              "aten._scaled_dot_product_flash_attention_backward": 9000, "aten.convolution": 7}
    assert V.split_counter(counts) == (1234, 14000, {"convolution": 7})
    assert V.split_counter(None) == (0, 0, {})


def test_check_gemm_exact_passes_and_fails():
    counts = {"aten.mm": 200000000000000, "aten.addmm": 18467106406400,
              "aten._scaled_dot_product_flash_attention": 1}
    ok = V.check_gemm_exact("c1-bf16", True, summ(), counts, "bf16")
    assert statuses(ok) == ["PASS", "PASS"], ok
    # one GEMM of 2x1x1x1 missing from the shim: must fail
    off = V.check_gemm_exact("c1-bf16", True, summ(gemm_flops=218467106406398), counts, "bf16")
    assert statuses(off)[0] == "FAIL", off
    # the right total in the wrong class
    wrong = V.check_gemm_exact("c1-tf32", True, summ(), counts, "tf32")
    assert statuses(wrong) == ["PASS", "FAIL"], wrong
    assert statuses(V.check_gemm_exact("x", False, summ(), counts, "bf16")) == ["FAIL"]
    assert statuses(V.check_gemm_exact("x", True, None, counts, "bf16")) == ["FAIL"]
    assert statuses(V.check_gemm_exact("x", True, summ(), None, "bf16")) == ["FAIL"]
    drops = V.check_gemm_exact("x", True, summ(dropped_records=3), counts, "bf16")
    assert statuses(drops) == ["PASS", "PASS", "FAIL"], drops
    # zero on both sides is no evidence
    zero = V.check_gemm_exact("x", True, summ(gemm_flops=0), {}, "bf16")
    assert statuses(zero)[0] == "FAIL"


def test_trace_kernel_stats():
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "ampere_gemm", "dur": 10.5},
        {"ph": "X", "cat": "kernel", "name": "flash_fwd", "dur": 20.25},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD", "dur": 100},
        {"ph": "X", "cat": "gpu_memset", "name": "Memset", "dur": 3},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "dur": 5},
        {"ph": "f", "cat": "kernel", "name": "flow"},
    ]}
    n, s = V.trace_kernel_stats(trace)
    assert n == 2 and abs(s - 30.75e-6) < 1e-15, (n, s)


def test_check_kernel_time():
    short = summ(kernels=7000, kernel_time_s=2.5)
    long_ = summ(kernels=16000, kernel_time_s=5.5)
    # (16000-7000)/(55-25) = 300 kernels, (5.5-2.5)/30 = 0.1 s per step
    k, t = V.per_step_from_runs(short, long_, 25, 55)
    assert k == 300 and abs(t - 0.1) < 1e-12
    rows = V.check_kernel_time(short, long_, 25, 55, (4200, 1.4), 14)
    assert statuses(rows) == ["PASS", "PASS"], rows
    rows = V.check_kernel_time(short, long_, 25, 55, (4200 * 1.03, 1.4 * 1.015), 14)
    assert statuses(rows) == ["FAIL", "PASS"], rows
    rows = V.check_kernel_time(short, long_, 25, 55, (4200, 1.4 * 1.025), 14)
    assert statuses(rows) == ["PASS", "FAIL"], rows
    degraded = V.check_kernel_time(summ(kernels=None, kernel_time_s=None), long_, 25, 55, (4200, 1.4), 14)
    assert statuses(degraded) == ["FAIL"]
    assert statuses(V.check_kernel_time(short, long_, 25, 55, None, 14)) == ["FAIL"]


def test_check_remat():
    blocks = 12800
    ck = summ(remat_flops=blocks * 4)
    plain = summ(remat_flops=0)
    assert statuses(V.check_remat(ck, 4, blocks, plain)) == ["PASS", "PASS"]
    assert statuses(V.check_remat(summ(remat_flops=int(blocks * 4 * 1.0099)), 4, blocks, plain))[0] == "PASS"
    assert statuses(V.check_remat(summ(remat_flops=int(blocks * 4 * 1.02)), 4, blocks, plain))[0] == "FAIL"
    # 0.2 % of hw FLOPs in remat without checkpointing
    hw = 236646509854720
    leak = summ(remat_flops=hw // 500)
    assert statuses(V.check_remat(ck, 4, blocks, leak)) == ["PASS", "FAIL"]
    assert statuses(V.check_remat(None, None, blocks, None)) == ["FAIL", "FAIL"]


def test_check_mfu_by_hand():
    per_step, steps, wall = 10 ** 12, 10, 2.0
    hand = 1e13 / 2.0 / 989.4e12  # 0.0050535678...
    assert abs(hand - 0.005053567818880129) < 1e-15
    good = summ(model_flops=10 ** 13, wall_s=wall, mfu=hand, hfu=hand * 1.2)
    assert statuses(V.check_mfu("c2-long", good, per_step, steps, expected_class="bf16")) == ["PASS", "PASS"]
    off = summ(model_flops=10 ** 13, wall_s=wall, mfu=hand * 1.02, hfu=0.9)
    assert statuses(V.check_mfu("c2-long", off, per_step, steps)) == ["FAIL", "PASS"]
    low_hfu = summ(model_flops=10 ** 13, wall_s=wall, mfu=hand, hfu=hand * 0.9)
    assert statuses(V.check_mfu("c2-long", low_hfu, per_step, steps)) == ["PASS", "FAIL"]
    # the shim summed one step too few
    short = summ(model_flops=9 * 10 ** 12, wall_s=wall, mfu=hand, hfu=1)
    assert statuses(V.check_mfu("c2-long", short, per_step, steps))[0] == "FAIL"
    # a peak that is not the datasheet's: an extra failing row
    bad_peak = summ(model_flops=10 ** 13, wall_s=wall, mfu=1e13 / 2.0 / 756.5e12, hfu=1, peak_flops=756.5e12)
    rows = V.check_mfu("c2-long", bad_peak, per_step, steps)
    assert rows[0]["case"].endswith("peak") and rows[0]["status"] == "FAIL", rows
    wrong_class = summ(model_flops=10 ** 13, wall_s=wall, mfu=hand, hfu=1, peak_dtype="fp16")
    assert "FAIL" in statuses(V.check_mfu("c2-long", wrong_class, per_step, steps, expected_class="bf16"))
    assert statuses(V.check_mfu("c2-long", summ(mfu=None), per_step, steps)) == ["FAIL"]


def test_peak_table_matches_the_doc():
    with open(os.path.join(ROOT, "doc", "metrics.md")) as f:
        doc = f.read()
    assert V.peak_flops(H100, "bf16") == 989.4e12 and V.peak_flops("  NVIDIA  H200 ", "tf32") == 494.7e12
    assert V.peak_flops("NVIDIA L4", "bf16") is None
    row = [l for l in doc.splitlines() if l.startswith("| NVIDIA H100 SXM5 |")][0]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    for col, cls in ((2, "fp32"), (3, "tf32"), (4, "fp16"), (5, "bf16")):
        assert V.rel_err(float(cells[col]) * 1e12, V.PEAKS[H100][cls]) < 1e-12, (cls, cells)


def test_check_coverage():
    assert statuses(V.check_coverage("default", True, summ(), 4329327034368, 55)) == ["INFO"]
    unknown = V.parse_mfu_summary(mfu_json())
    unknown["coverage"] = None
    assert statuses(V.check_coverage("--cuda-graphs", True, unknown)) == ["FAIL"]
    assert statuses(V.check_coverage("--compile", False, summ())) == ["FAIL"]


def test_check_overhead():
    a = [[0.101] * 30, [0.1012] * 30]
    b = [[0.100] * 30, [0.1003] * 30]
    rows = V.check_overhead("big", a, b, 1.01, 0.1)
    # pooled medians (0.101 + 0.1012) / 2 = 0.1011 and (0.1 + 0.1003) / 2 = 0.10015
    assert rows[0]["value"] == "%.4f" % (0.1011 / 0.10015) and rows[0]["status"] == "PASS", rows
    slow = V.check_overhead("big", [[0.102] * 60], [[0.100] * 60], 1.01, 0.1)
    assert statuses(slow) == ["FAIL"]
    small = V.check_overhead("big", [[0.0501] * 60], [[0.0500] * 60], 1.01, 0.1)
    assert statuses(small) == ["FAIL"] and "too small" in small[0]["detail"]
    few = V.check_overhead("big", [[0.1] * 20], [[0.1] * 20], 1.01, 0.1)
    assert statuses(few) == ["FAIL"]
    info = V.check_overhead("tiny", [[0.012] * 200], [[0.010] * 200])
    assert statuses(info) == ["INFO"] and info[0]["value"] == "1.2000"
    assert statuses(V.check_overhead("big", [None], [[0.1]], 1.01)) == ["FAIL"]


def test_status_lines():
    text = textwrap.dedent("""\
        [mfu 1s]      0.0 TFLOP/s  HFU   n/a  MFU   n/a  busy   n/a  0 kernels/s  (1 source)
        [mfu 1s]    312.5 TFLOP/s  HFU  31.6%  MFU  30.1%  busy  95.0%  7300 kernels/s  (1 source)
        STAGE:2026-11-20 12:00:00 kineto
        [mfu 1s]     80.1 TFLOP/s  HFU   8.1%  MFU  30.0%  busy   n/a  kernels/s n/a  (1 source)
        [mfu 1s]    310.0 TFLOP/s  HFU  31.3%  MFU  30.0%  busy  94.0%  7250 kernels/s  (1 source)
        mfu summary
          kernels                17600
        """)
    assert V.status_lines(text) == [0, 7300, "na", 7250]


def test_check_coexist():
    k, ref = 300.0, 100000
    good = summ(kernels=ref - 60 * 300)
    rows = V.check_coexist(0, good, [0, 7300, "na", "na", 7250, 7300], k, ref, 60, 100)
    assert statuses(rows) == ["PASS", "PASS", "PASS"], rows
    # timing never came back: 160 steps lost, the source still reads as timed
    stuck = summ(kernels=ref - 160 * 300)
    rows = V.check_coexist(0, stuck, [7300, "na", 0, 0], k, ref, 60, 100)
    assert statuses(rows) == ["PASS", "PASS", "FAIL"], rows
    # resumed 20 steps late: still resumed; 50 steps late (half the steps after): not
    late = V.check_coexist(0, summ(kernels=ref - 80 * 300), [7300, "na", 7300], k, ref, 60, 100)
    assert statuses(late) == ["PASS", "PASS", "PASS"] and "80.0 steps" in late[2]["value"], late
    later = V.check_coexist(0, summ(kernels=ref - 111 * 300), [7300, "na", 7300], k, ref, 60, 100)
    assert statuses(later)[2] == "FAIL", later
    # kernels lost and nothing said about it
    silent = V.check_coexist(0, good, [7300, 7300, 0, 7300], k, ref, 60, 100)
    assert statuses(silent) == ["PASS", "FAIL", "PASS"], silent
    # a future JSON field counts as a report
    d = mfu_json(kernels=ref - 60 * 300)
    d["per_source"][0]["degraded_s"] = 2.4
    rows = V.check_coexist(0, V.parse_mfu_summary(d), [7300, 7300], k, ref, 60, 100)
    assert statuses(rows) == ["PASS", "PASS", "PASS"], rows
    # nothing lost at all: full coexistence
    rows = V.check_coexist(0, summ(kernels=ref), [7300] * 8, k, ref, 60, 100)
    assert statuses(rows) == ["PASS", "PASS", "PASS"], rows
    # still degraded at the end
    d = mfu_json(kernels=None, kernel_time_s=None)
    d["per_source"][0]["degraded"] = True
    rows = V.check_coexist(0, V.parse_mfu_summary(d), [7300, "na", "na"], k, ref, 60, 100)
    assert statuses(rows) == ["PASS", "PASS", "FAIL"], rows
    # a crash (SIGSEGV) and a hang
    assert statuses(V.check_coexist(139, None, [], k, ref, 60, 100)) == ["FAIL", "FAIL", "FAIL"]
    assert statuses(V.check_coexist(None, good, [], k, ref, 60, 100)) == ["FAIL", "FAIL", "FAIL"]


def test_format_table_and_tally():
    rows = [V.row(1, "c1-bf16", "rel err 0", "0 (exact)", "PASS"),
            V.row(6, "shim", "1.0200", "<= 1.01", "FAIL", "why"),
            V.row(5, "default", "71.2%", "reported", "INFO"),
            V.row(7, "no crash", "not run", "exit 0", "SKIP")]
    t = V.format_table(rows)
    lines = t.splitlines()
    assert lines[0].split() == ["check", "case", "value", "target", "status"], lines[0]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[-1] == "1 passed, 1 failed, 1 info, 1 skipped", lines[-1]
    assert len(lines) == 7
    assert V.tally(rows)["FAIL"] == 1


def test_plan_is_bounded():
    p1, p2 = V.plan("1"), V.plan("2")
    names = [s.name for s in V.plan("all")]
    assert len(names) == len(set(names)) == len(p1) + len(p2)
    assert all(s.timeout <= 300 for s in p1 + p2)
    # only exact-count runs share the GPU
    assert {s.name for s in p1 if s.parallel} == {n for n, _, _ in V.C1_CASES} | {"c3-ckpt", "c8-tsc", "c8-clock"}
    # check 8: archived, the clock forced each way, the shim saying which
    c8 = {s.name: s for s in p1 if s.name.startswith("c8-")}
    assert {n: s.env.get("MFU_TSC") for n, s in c8.items()} == {"c8-tsc": "1", "c8-clock": "0"}
    for s in c8.values():
        assert s.archive and s.env.get("MFU_LOG") == "1" and "--dtype" in s.flags and s.timeout <= 120
        cmd = V.Runner("/b", "/w", 60, "python3").command(s, "/w/" + s.name)
        assert cmd[cmd.index("--archive") + 1] == "/w/%s/archive" % s.name, cmd
        assert cmd.index("--archive") < cmd.index("--")
    assert not any(s.archive for s in p1 + p2 if not s.name.startswith("c8-"))
    assert not any(s.parallel for s in p2)
    for s in p1 + p2:
        a = s.train_args()
        assert "--steps" in a and "--warmup" in a
    # overhead arms: >= 50 timed steps each, interleaved A B A B
    big = [s for s in p2 if s.name.startswith("c6-big-")]
    assert [s.name for s in big][:4] == ["c6-big-A1", "c6-big-B1", "c6-big-A2", "c6-big-B2"]
    assert sum(s.cfg["steps"] for s in big if "-A" in s.name) >= 50
    # train_gpt.py accepts every argument list the plan makes
    for s in p1 + p2:
        argv = [a if a != "@trace" else "/tmp/t.json" for a in s.train_args()] + ["--log", "/dev/null"]
        G.parse_args(argv)


# --------------------------------------------------------------------------
# Check 8: host clocks
# --------------------------------------------------------------------------

T0 = 1_760_000_000_000_000_000  # CLOCK_REALTIME ns, 2025


def clock_records(n=100, gap_ns=3_000, gemm_shift_ns=0, api_tid=None, kernels_per_call=1):
    """A source's records as read_archive yields them: n cuBLAS calls, call
    i on thread 4242 launching kernels_per_call kernels (corr 1000 + ...)
    whose launch api records end gap_ns (+ i ns) before the call's stamp,
    moved by gemm_shift_ns; api_tid: the api records' thread id (default
    the gemm's)."""
    recs = [{"type": 1}, {"type": "string", "id": 1, "text": b"sm90_gemm"}]
    corr = 1000
    for i in range(n):
        call = i + 1
        g_end = T0 + i * 50_000 + gap_ns + i
        for _ in range(kernels_per_call):
            corr += 1
            a_end = g_end - gap_ns - i - 400 * (kernels_per_call - 1)
            recs.append({"type": "api", "start_ns": a_end - 4_000, "end_ns": a_end, "tid": api_tid or 4242,
                         "cbid": 307, "corr": corr, "kind": 1})
            recs.append({"type": "kernel", "start_ns": a_end + 8_000, "end_ns": a_end + 30_000, "device": 0,
                         "stream": 7, "name_id": 1, "corr": corr, "call": call, "flags": 0x45, "flops": 10 ** 9})
        recs.append({"type": "gemm", "start_ns": g_end + gemm_shift_ns, "end_ns": g_end + gemm_shift_ns, "tid": 4242,
                     "device": 0, "api": 11, "m": 512, "n": 512, "k": 512, "batch": 1, "a_type": 14, "b_type": 14,
                     "c_type": 14, "compute_type": 68, "ops": 0, "flags": 0x45, "flops": 10 ** 9, "call": call})
    # not a cuBLAS call: an orphan gemm record with a call id, ignored
    recs.append({"type": "gemm", "start_ns": T0, "end_ns": T0, "tid": 0, "api": 31, "flags": 0x400 | 5,
                 "flops": 10 ** 9, "call": 5})
    # a synchronize api record on the same corr space: not a launch
    recs.append({"type": "api", "start_ns": T0, "end_ns": T0 + 10 ** 9, "tid": 4242, "cbid": 131, "corr": 1001,
                 "kind": 2})
    return recs


def encode_payload(recs):
    """Records (dicts, as wire_py decodes them) as one raw payload, through
    wire_py.FIELDS: deltas against the payload's previous record of the
    type, durations from end_ns.  Test input only; wire_py decodes it."""
    by_name = {name: (typ, fields) for typ, (name, fields) in wire_py.FIELDS.items()}
    out, base = b"", {}
    for r in recs:
        if r["type"] not in by_name:
            continue
        typ, fields = by_name[r["type"]]
        vals = []
        for fname, enc in fields:
            if fname == "dur":
                v = r["end_ns"] - r.get("start_ns", r.get("begin_ns", 0))
            else:
                v = r.get(fname, 0)
            if enc == "s":
                vals.append(wire_py.string(v))
                continue
            if "d" in enc:
                v, base[(typ, fname)] = v - base.get((typ, fname), 0), v
            vals.append(wire_py.zigzag(v) if "z" in enc else v)
        out += wire_py.record(typ, *vals)
    return out


def write_clock_archive(d, recs, stem="node1-4242-1760000000-c1", files=2, frames=3):
    """recs archived under d as `files` rotated files of `frames` frames each."""
    os.makedirs(d, exist_ok=True)
    n = files * frames
    chunks = [recs[i * len(recs) // n:(i + 1) * len(recs) // n] for i in range(n)]
    for f in range(files):
        fr = [wire_py.frame(encode_payload(chunks[f * frames + j]), f * frames + j) for j in range(frames)]
        wire_py.write_archive(os.path.join(d, "%s.%d.mfa" % (stem, f)), fr)


def by_case(rows):
    return {r["case"]: r for r in rows}


def test_host_clock_join_and_stats():
    j = V.host_clock_join(clock_records(100))
    assert len(j["pairs"]) == 100 and j["gemms"] == 100 and j["gemms_with_kernels"] == 100
    assert j["kernels_no_gemm"] == j["kernels_no_api"] == 0
    st = V.host_clock_stats(j)
    assert st["n"] == 100 and st["ordered"] == 1.0 and st["same_tid"] == 1.0 and st["tid_example"] is None
    # gaps 3000 + i ns, i = 0..99: the median between the 50th and 51st
    assert st["median_ns"] == 3049.5 and st["p99_ns"] == 3098 and st["min_ns"] == 3000 and st["max_ns"] == 3099
    assert V.percentile([5, 1, 3], 50) == 3 and V.percentile([], 99) is None and V.percentile([7], 99) == 7
    # two kernels per call: two pairs, each to its own launch
    j2 = V.host_clock_join(clock_records(60, kernels_per_call=2))
    assert len(j2["pairs"]) == 120 and j2["gemms_with_kernels"] == 60
    # two kernels of one launch (one corr): one pair
    recs = clock_records(100)
    recs += [dict(r, start_ns=r["start_ns"] + 40_000) for r in recs if r["type"] == "kernel"][:10]
    assert len(V.host_clock_join(recs)["pairs"]) == 100
    # graph replays of a captured call: launched later by cuGraphLaunch, left out and counted
    recs = clock_records(100)
    late = [dict(r, flags=r["flags"] | 0x80, corr=9000 + i) for i, r in enumerate(recs) if r["type"] == "kernel"][:7]
    recs += late + [{"type": "api", "start_ns": T0 + 10 ** 9, "end_ns": T0 + 10 ** 9 + 5_000, "tid": 4242, "cbid": 514,
                     "corr": k["corr"], "kind": 1} for k in late]
    jr = V.host_clock_join(recs)
    assert len(jr["pairs"]) == 100 and jr["kernels_replayed"] == 7 and V.host_clock_stats(jr)["ordered"] == 1.0
    assert "7 graph-replay kernels left out" in V.check_host_clocks("x", True, jr)[0]["detail"]
    # a second source adds up
    m = V.host_clock_merge([j, j2])
    assert len(m["pairs"]) == 220 and m["gemms"] == 160


def test_host_clocks_pass():
    rows = V.check_host_clocks("c8-tsc", True, V.host_clock_join(clock_records(100)), "TSC", "TSC")
    c = by_case(rows)
    assert statuses(rows) == ["PASS", "PASS", "INFO", "PASS"], rows
    assert c["c8-tsc order"]["value"] == "100.00% of 100 pairs", c
    assert c["c8-tsc gap"]["value"] == "median 3.0 us, p99 3.1 us", c
    assert c["c8-tsc tid"]["value"] == "100.00% same tid"
    # a launch that ends up to 2 us after the stamp is still in order
    rows = V.check_host_clocks("c8-clock", True, V.host_clock_join(clock_records(100, gemm_shift_ns=-4_900)))
    assert statuses(rows) == ["PASS", "INFO", "PASS"], rows


def test_host_clocks_gemm_stamp_1ms_early_fails():
    j = V.host_clock_join(clock_records(100, gemm_shift_ns=-1_000_000))
    rows = V.check_host_clocks("c8-tsc", True, j, "TSC", "TSC")
    c = by_case(rows)
    assert c["c8-tsc order"]["status"] == "FAIL" and c["c8-tsc order"]["value"] == "0.00% of 100 pairs", c
    assert c["c8-tsc gap"]["value"] == "median -997.0 us, p99 -996.9 us", c
    assert c["c8-tsc tid"]["status"] == "PASS"
    # 2 of 100 early by more than the slack: under 99 %, a failure
    recs = clock_records(100)
    early = [r for r in recs if r["type"] == "gemm" and r.get("api") == 11][:2]
    for r in early:
        r["end_ns"] = r["start_ns"] = r["end_ns"] - 10_000
    rows = V.check_host_clocks("c8-tsc", True, V.host_clock_join(recs))
    assert by_case(rows)["c8-tsc order"]["status"] == "FAIL" and "98.00%" in by_case(rows)["c8-tsc order"]["value"]


def test_host_clocks_mismatched_tids_fail():
    rows = V.check_host_clocks("c8-tsc", True, V.host_clock_join(clock_records(100, api_tid=17)), "TSC", "TSC")
    c = by_case(rows)
    assert c["c8-tsc tid"]["status"] == "FAIL" and c["c8-tsc tid"]["value"] == "0.00% same tid", c
    assert "gemm tid 4242, api tid 17" in c["c8-tsc tid"]["detail"]
    assert c["c8-tsc order"]["status"] == "PASS"
    # one thread id off in 100 is a failure too: the target is all of them
    recs = clock_records(100)
    next(r for r in recs if r["type"] == "api" and r["kind"] == 1)["tid"] = 4243
    rows = V.check_host_clocks("c8-tsc", True, V.host_clock_join(recs))
    assert by_case(rows)["c8-tsc tid"]["status"] == "FAIL" and by_case(rows)["c8-tsc tid"]["value"] == "99.00% same tid"


def test_host_clocks_missing_joins_are_reported():
    recs = clock_records(100)
    # drop 30 launch api records and 10 gemm records; 5 gemms launch nothing
    launches = [r for r in recs if r["type"] == "api" and r["kind"] == 1]
    gone = {id(r) for r in launches[:30]}
    calls = [r for r in recs if r["type"] == "gemm" and r.get("api") == 11]
    gone |= {id(r) for r in calls[90:]}
    kern = [r for r in recs if r["type"] == "kernel"]
    gone |= {id(r) for r in kern[80:85]}
    recs = [r for r in recs if id(r) not in gone]
    j = V.host_clock_join(recs)
    assert (len(j["pairs"]), j["gemms"], j["gemms_with_kernels"], j["kernels_no_gemm"], j["kernels_no_api"]) == (
        55, 90, 85, 10, 30), j
    rows = V.check_host_clocks("c8-tsc", True, j, "TSC", "TSC")
    c = by_case(rows)
    assert c["c8-tsc order"]["status"] == "PASS"
    assert "90 cuBLAS gemm records, 85 with kernels; 10 kernels name no gemm record, 30 have no launch api record" in \
        c["c8-tsc order"]["detail"], c
    # nothing joins (no api records at all): reported, failed, no crash
    j = V.host_clock_join([r for r in clock_records(100) if r["type"] != "api"])
    rows = V.check_host_clocks("c8-clock", True, j)
    assert statuses(rows) == ["FAIL", "FAIL"] and rows[0]["value"] == "0 joined pairs", rows
    assert "100 have no launch api record" in rows[0]["detail"]
    # too few pairs to say anything
    rows = V.check_host_clocks("c8-clock", True, V.host_clock_join(clock_records(10)))
    assert statuses(rows) == ["FAIL", "FAIL"] and rows[0]["value"] == "10 joined pairs", rows
    # empty input, a failed run, no archive
    assert V.host_clock_join([])["pairs"] == [] and V.host_clock_stats(V.host_clock_join([]))["ordered"] is None
    assert statuses(V.check_host_clocks("c8-tsc", False, None)) == ["FAIL"]
    assert V.check_host_clocks("c8-tsc", True, None)[0]["value"] == "no archive"


def test_host_clocks_say_which_clock_stamped():
    err = "mfushim: host clock: TSC at 2.1000 GHz, against CLOCK_MONOTONIC_RAW\n"
    assert V.shim_host_clock(err) == "TSC" and V.shim_host_clock("") == "clock_gettime"
    j = V.host_clock_join(clock_records(100))
    # a TSC run whose shim fell back to clock_gettime has not tested the TSC
    rows = V.check_host_clocks("c8-tsc", True, j, "TSC", V.shim_host_clock(""))
    assert by_case(rows)["c8-tsc clock"]["status"] == "FAIL" and by_case(rows)["c8-tsc clock"]["value"] == "clock_gettime"
    rows = V.check_host_clocks("c8-clock", True, j, "clock_gettime", V.shim_host_clock(err))
    assert by_case(rows)["c8-clock clock"]["status"] == "FAIL"


def test_host_clocks_from_archive_files():
    tmp = _tmpdir()
    d = os.path.join(tmp, "archive")
    # two sources, each in rotated files of several frames (deltas restart per payload)
    write_clock_archive(d, clock_records(100))
    write_clock_archive(d, clock_records(70, api_tid=9), stem="node1-4300-1760000001-c2", files=1)
    j = V.read_archive_dir(d)
    want = V.host_clock_merge([V.host_clock_join(clock_records(100)), V.host_clock_join(clock_records(70, api_tid=9))])
    assert j["pairs"] == want["pairs"] and j == want, (len(j["pairs"]), len(want["pairs"]))
    assert V.read_archive_dir(os.path.join(tmp, "none")) is None
    os.makedirs(os.path.join(tmp, "empty"))
    assert V.read_archive_dir(os.path.join(tmp, "empty")) is None


def test_archive_payloads_inflate_without_the_zstd_tool():
    # the GPU machine has libzstd (the shim needs it) but maybe no zstd tool
    if not shutil.which("zstd"):
        return
    raw = encode_payload(clock_records(20))
    packed = subprocess.run(["zstd", "-c", "-q"], input=raw, capture_output=True, check=True).stdout
    try:
        got = wire_py.inflate(packed, len(raw), cli=False)
    except OSError:
        return  # no libzstd here
    assert got == raw and wire_py.inflate(packed, len(raw)) == raw


def _result(spec, ok=True, events=(), mfu=None, stderr="", d=None):
    r = V.Result(spec)
    r.rc = 0 if ok else 1
    r.events = list(events)
    r.summary_event = V.last_event(r.events, "summary")
    r.mfu_raw = mfu
    r.mfu = V.parse_mfu_summary(mfu) if mfu else None
    r.stderr = stderr
    r.dir = d
    return r


def _steps(n_timed, seconds, summary):
    ev = [{"event": "step", "phase": "timed", "seconds": seconds} for _ in range(n_timed)]
    return ev + [dict(summary, event="summary")]


def test_evaluate_part1_end_to_end():
    specs = {s.name: s for s in V.plan("1")}
    tmp = _tmpdir(prefix="mfu-validate-test-")
    res = {}
    gemm = 2 * 10 ** 12
    for name, flags, cls in V.C1_CASES:
        m = mfu_json(gemm_flops=gemm, hw_flops=gemm + 10 ** 9, hw_flops_by_dtype={cls: gemm + 10 ** 9},
                     remat_flops=0)
        res[name] = _result(specs[name], events=_steps(2, 0.01, {"optimizer_steps": 3, "flop_counts":
                            {"aten.mm": gemm - 5, "aten.addmm": 5, "aten._scaled_dot_product_flash_attention": 7}}),
                            mfu=m)
    small = V.analytic(V.CONFIGS["small"])
    ck_steps = 4
    hw = 3 * 10 ** 12
    hand = small["step"] * ck_steps / 3.0 / 989.4e12
    res["c3-ckpt"] = _result(specs["c3-ckpt"], events=_steps(3, 0.01, {
        "optimizer_steps": ck_steps, "blocks_forward_flops": small["blocks_forward"],
        "model_flops_per_step": small["step"]}), mfu=mfu_json(
        remat_flops=small["blocks_forward"] * ck_steps, hw_flops=hw, model_flops=small["step"] * ck_steps,
        wall_s=3.0, mfu=hand, hfu=hand * 1.3))
    med = V.analytic(V.CONFIGS["medium"])
    res["c2-short"] = _result(specs["c2-short"], events=_steps(5, 0.01, {"optimizer_steps": 25}),
                              mfu=mfu_json(kernels=7000, kernel_time_s=2.5))
    hand = med["step"] * 55 / 6.5 / 989.4e12
    res["c2-long"] = _result(specs["c2-long"], events=_steps(35, 0.01, {
        "optimizer_steps": 55, "model_flops_per_step": med["step"]}), mfu=mfu_json(
        kernels=16000, kernel_time_s=5.5, model_flops=med["step"] * 55, mfu=hand, hfu=hand * 1.1))
    pdir = os.path.join(tmp, "c2-prof")
    os.makedirs(pdir)
    with open(os.path.join(pdir, "trace.json"), "w") as f:
        json.dump({"traceEvents": [{"ph": "X", "cat": "kernel", "dur": 1e6 / 3000.0}] * 4200}, f)
    res["c2-prof"] = _result(specs["c2-prof"], events=_steps(15, 0.01, {"optimizer_steps": 35,
                             "profiler_active_steps": 14}), d=pdir)
    res["c5-compile"] = _result(specs["c5-compile"], events=_steps(35, 0.01, {"optimizer_steps": 55,
                                "model_flops_per_step": med["step"]}), mfu=mfu_json())
    graphs = mfu_json()
    graphs["windows"]["total"]["coverage"] = 0.0
    res["c5-graphs"] = _result(specs["c5-graphs"], events=_steps(35, 0.01, {"optimizer_steps": 55,
                               "model_flops_per_step": med["step"]}), mfu=graphs)
    res["c7-ref"] = _result(specs["c7-ref"], events=_steps(210, 0.04, {"optimizer_steps": 230}),
                            mfu=mfu_json(kernels=100000))
    res["c7-coexist"] = _result(specs["c7-coexist"], events=_steps(210, 0.04, {"optimizer_steps": 230}),
                                mfu=mfu_json(kernels=100000 - 60 * 300),
                                stderr="[mfu 1s] 1 TFLOP/s  kernels/s n/a  (1 source)\n"
                                       "[mfu 1s] 1 TFLOP/s  7000 kernels/s  (1 source)\n")
    for name, err in (("c8-tsc", "mfushim: host clock: TSC at 2.1000 GHz, against CLOCK_MONOTONIC_RAW\n"),
                      ("c8-clock", "")):
        d = os.path.join(tmp, name)
        write_clock_archive(os.path.join(d, "archive"), clock_records(120))
        res[name] = _result(specs[name], events=_steps(20, 0.005, {"optimizer_steps": 21}), mfu=mfu_json(),
                            stderr=err, d=d)
    rows = V.evaluate(res, "1")
    by = {(r["check"], r["case"]): r["status"] for r in rows}
    bad = {k: v for k, v in by.items() if v not in ("PASS", "INFO")}
    assert not bad, (bad, [r for r in rows if r["status"] not in ("PASS", "INFO")])
    assert {r["check"] for r in rows} == {1, 2, 3, 4, 5, 7, 8}
    assert [r["case"] for r in rows if r["check"] == 8] == [
        "c8-tsc clock", "c8-tsc order", "c8-tsc gap", "c8-tsc tid",
        "c8-clock clock", "c8-clock order", "c8-clock gap", "c8-clock tid"]
    assert by[(5, "--cuda-graphs")] == "INFO"
    assert os.path.exists(os.path.join(pdir, "trace-stats.json"))
    # one wrong number anywhere turns its row red
    res2 = copy.copy(res)
    res2["c1-fp16"] = _result(specs["c1-fp16"], events=res["c1-fp16"].events,
                              mfu=mfu_json(gemm_flops=gemm - 2, hw_flops_by_dtype={"fp16": gemm}))
    # the TSC run's gemm stamps 1 ms early, in its archive
    d = os.path.join(tmp, "c8-tsc-early")
    write_clock_archive(os.path.join(d, "archive"), clock_records(120, gemm_shift_ns=-1_000_000))
    res2["c8-tsc"] = _result(specs["c8-tsc"], events=res["c8-tsc"].events, mfu=mfu_json(),
                             stderr=res["c8-tsc"].stderr, d=d)
    # the clock_gettime run's archive is cut short: a failure, not a crash
    d = os.path.join(tmp, "c8-clock-broken")
    write_clock_archive(os.path.join(d, "archive"), clock_records(120))
    path = os.path.join(d, "archive", "node1-4242-1760000000-c1.1.mfa")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) - 7])
    res2["c8-clock"] = _result(specs["c8-clock"], events=res["c8-clock"].events, mfu=mfu_json(), d=d)
    rows2 = V.evaluate(res2, "1")
    assert [r["case"] for r in rows2 if r["status"] == "FAIL"] == ["c1-fp16", "c8-tsc order", "c8-clock"], rows2
    assert [r["value"] for r in rows2 if r["case"] == "c8-clock"] == ["archive unreadable"]
    # missing runs are SKIP, not PASS
    rows3 = V.evaluate({}, "1")
    assert rows3 and all(r["status"] == "SKIP" for r in rows3), rows3


def test_evaluate_part2():
    specs = {s.name: s for s in V.plan("2")}
    res = {}
    for n, sec in (("c6-big-A1", 0.2010), ("c6-big-A2", 0.2012), ("c6-big-B1", 0.2), ("c6-big-B2", 0.2001),
                   ("c6-big-P", 0.23), ("c6-tiny-A1", 0.013), ("c6-tiny-A2", 0.013),
                   ("c6-tiny-B1", 0.010), ("c6-tiny-B2", 0.010), ("c6-tiny-P", 0.02)):
        res[n] = _result(specs[n], events=_steps(specs[n].cfg["steps"], sec, {}))
    rows = V.evaluate(res, "2")
    assert statuses(rows) == ["PASS", "INFO", "INFO", "INFO"], rows
    assert rows[2]["value"] == "1.3000"
    res["c6-big-A2"] = _result(specs["c6-big-A2"], events=_steps(50, 0.25, {}))
    res["c6-big-A1"] = _result(specs["c6-big-A1"], events=_steps(50, 0.25, {}))
    assert statuses(V.evaluate(res, "2"))[0] == "FAIL"
    assert all(s == "SKIP" for s in statuses(V.evaluate({}, "2")))
    # the launch-bound runs did not fit the budget: SKIP, the rest still judged
    for n in ("c6-tiny-A1", "c6-tiny-A2", "c6-tiny-B1", "c6-tiny-B2", "c6-tiny-P"):
        res[n] = V.Result(specs[n])
        res[n].skipped = "budget spent"
    assert statuses(V.evaluate(res, "2")) == ["FAIL", "INFO", "SKIP", "SKIP"]
    # a launch-bound run that crashed is a failure, not a skip
    res["c6-tiny-B1"] = _result(specs["c6-tiny-B1"], ok=False)
    assert statuses(V.evaluate(res, "2"))[2:] == ["FAIL", "FAIL"]


FAKE_MFU = """#!/bin/sh
# stand-in for `mfu run --interval N --json FILE -- CMD...`
json=""
while [ $# -gt 0 ]; do
    case "$1" in
    --json) json=$2; shift 2;;
    --) shift; break;;
    *) shift;;
    esac
done
"$@"
rc=$?
[ -n "$json" ] && cp "$FAKE_MFU_JSON" "$json"
exit $rc
"""

FAKE_PYTHON = """#!/bin/sh
# stand-in for python3 TRAIN ARGS... --log FILE: writes a log, or hangs
log=""
prev=""
for a in "$@"; do
    [ "$prev" = "--log" ] && log=$a
    prev=$a
done
if [ "$FAKE_HANG" = 1 ]; then sleep 100; fi
printf '{"event":"step","phase":"timed","seconds":0.5}\\n{"event":"summary","optimizer_steps":7}\\n' > "$log"
echo "[mfu 1s] 1 TFLOP/s  kernels/s n/a  (1 source)" >&2
exit 0
"""


def _fake_build(tmp):
    b = os.path.join(tmp, "build")
    os.makedirs(os.path.join(b, "tools"))
    os.makedirs(os.path.join(b, "shim"))
    for path, text in ((os.path.join(b, "tools", "mfu"), FAKE_MFU), (os.path.join(tmp, "python"), FAKE_PYTHON)):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    open(os.path.join(b, "shim", "libmfushim.so"), "w").close()
    with open(os.path.join(tmp, "mfu.json"), "w") as f:
        json.dump(mfu_json(), f)
    return b


def test_runner_collects_logs_and_enforces_limits():
    tmp = _tmpdir(prefix="mfu-validate-run-")
    b = _fake_build(tmp)
    os.environ["FAKE_MFU_JSON"] = os.path.join(tmp, "mfu.json")
    log = open(os.devnull, "w")
    try:
        r = V.Runner(b, os.path.join(tmp, "work"), 60, os.path.join(tmp, "python"), log=log)
        r.min_run_s = 1
        r.reserve_s = 0
        spec = V.Spec("c2-long", "medium", [], timeout=20)
        res = r.run(spec)
        assert res.ok, (res.rc, res.stderr)
        assert res.mfu["gemm_flops"] == 218467106406400
        assert res.steps_total() == 7 and V.step_seconds(res.events) == [0.5]
        assert V.status_lines(res.stderr) == ["na"]
        assert res.cmd[:2] == [os.path.join(b, "tools", "mfu"), "run"] and "--log" in res.cmd
        plain = r.run(V.Spec("c6-big-B1", "big", [], shim=False, timeout=20))
        assert plain.ok and plain.mfu is None and plain.cmd[0] == os.path.join(tmp, "python")
        # a hanging run is stopped at its limit, with its whole process group
        os.environ["FAKE_HANG"] = "1"
        t0 = time.monotonic()
        hung = r.run(V.Spec("c5-compile", "medium", ["--compile"], timeout=2))
        assert hung.timed_out and not hung.ok and time.monotonic() - t0 < 20, hung.rc
        # a run that does not fit the budget left is skipped, not started
        r.deadline = time.monotonic() + 0.5
        skipped = r.run(V.Spec("c7-ref", "medium", [], timeout=20))
        assert skipped.skipped and not skipped.ok
    finally:
        os.environ.pop("FAKE_HANG", None)
        os.environ.pop("FAKE_MFU_JSON", None)
        log.close()


def test_validate_main_plan_and_missing_build():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu", "validate.py"), "--plan", "--part", "all"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "c1-fp32" in p.stdout and "c6-tiny-P" in p.stdout, p.stderr
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu", "validate.py"), "--build", "/nonexistent",
                        "--out", _tmpdir()], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "missing" in p.stderr, (p.returncode, p.stderr)


def test_validate_main_end_to_end_with_stand_ins():
    tmp = _tmpdir(prefix="mfu-validate-main-")
    b = _fake_build(tmp)
    env = dict(os.environ, FAKE_MFU_JSON=os.path.join(tmp, "mfu.json"))
    out = os.path.join(tmp, "out")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu", "validate.py"), "--part", "2",
                        "--build", b, "--python", os.path.join(tmp, "python"), "--out", out,
                        "--work", os.path.join(tmp, "work"), "--budget-s", "120"],
                       capture_output=True, text=True, timeout=120, env=env)
    # one timed step per run: the >=100 ms check fails, and says why
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stdout.strip().splitlines()
    assert lines[-1] == "0 passed, 1 failed, 3 info, 0 skipped", lines[-1]
    assert "fewer than 50 steps per arm" in p.stdout  # the detail lines come before the table
    assert sorted(os.listdir(out)) == ["logs-part2.tar.gz", "results-part2.json", "results-part2.txt"]
    with open(os.path.join(out, "results-part2.json")) as f:
        res = json.load(f)
    assert len(res["runs"]) == 10 and res["runs"]["c6-big-A1"]["rc"] == 0
    assert res["runs"]["c6-big-A1"]["mfu"]["gemm_flops"] == 218467106406400
    import tarfile
    with tarfile.open(os.path.join(out, "logs-part2.tar.gz")) as t:
        names = t.getnames()
    assert "validate-part2/c6-big-A1/steps.jsonl" in names and "validate-part2/c6-big-B2/cmd.txt" in names, names


def _no_torch_env():
    """PYTHONPATH with a `torch` that cannot be imported, whatever is installed."""
    d = _tmpdir(prefix="no-torch-")
    os.makedirs(os.path.join(d, "torch"))
    with open(os.path.join(d, "torch", "__init__.py"), "w") as f:
        f.write("raise ImportError(\"No module named 'torch' (test stand-in)\")\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = d
    return env


def test_train_gpt_without_torch():
    env = _no_torch_env()
    h = subprocess.run([sys.executable, TRAIN, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert h.returncode == 0 and "--checkpoint" in h.stdout and "--cuda-graphs" in h.stdout, h.stderr
    r = subprocess.run([sys.executable, TRAIN, "--steps", "3"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.returncode
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "PyTorch" in r.stderr
    bad = subprocess.run([sys.executable, TRAIN, "--compile", "--cuda-graphs"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert bad.returncode == 2 and "choose one" in bad.stderr


def test_train_gpt_arguments():
    a = G.parse_args(["--width", "256"])
    assert a.heads == 4 and a.ffn == 1024
    assert G.parse_args(["--profile-window", "3:7", "--steps", "10"]).profile_window == (3, 7)
    for argv in (["--width", "100", "--heads", "3"], ["--profile-window", "5:5"],
                 ["--profile-window", "1:20", "--steps", "10"], ["--trace", "x.json"],
                 ["--flop-counter", "--compile"], ["--checkpoint", "--cuda-graphs"], ["--steps", "-1"]):
        try:
            with open(os.devnull, "w") as devnull:
                old, sys.stderr = sys.stderr, devnull
                try:
                    G.parse_args(argv)
                finally:
                    sys.stderr = old
        except SystemExit as e:
            assert e.code == 2, argv
        else:
            raise AssertionError("accepted %r" % argv)


def test_a_failing_check_fails():
    # an off-by-one total is a failure, never rounded away
    rows = V.check_gemm_exact("x", True, summ(gemm_flops=1), {"aten.mm": 2}, "bf16")
    assert rows[0]["status"] == "FAIL"
    assert not math.isinf(V.rel_err(1, 2)) and V.rel_err(1, 0) == math.inf and V.rel_err(0, 0) == 0.0


# --------------------------------------------------------------------------
# TAP
# --------------------------------------------------------------------------

def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        try:
            fn()
        except Exception:  # noqa: BLE001 - reported as TAP
            failed += 1
            sys.stdout.write("not ok %d - %s\n" % (i, name))
            for line in traceback.format_exc().splitlines():
                sys.stdout.write("# %s\n" % line)
        else:
            sys.stdout.write("ok %d - %s\n" % (i, name))
        sys.stdout.flush()
    sys.stdout.write("1..%d\n" % len(tests))
    for d in _TMP:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
