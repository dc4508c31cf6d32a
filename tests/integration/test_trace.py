# SPDX-License-Identifier: MIT
"""mfu trace: archives (from mfu-synth, from the shim under mfu run, and
written here byte by byte for what no producer makes yet: off-CPU records,
hostile kernel names, overlapping slices) become a Chrome/Perfetto trace that
is valid JSON, whose slices nest on every track, whose kernel slices are the
archive's kernel records one for one (counted by an independent Python
reader), and whose HFU/MFU counters average, over time, to what mfu report
says.  Bad input gets one line and loses nothing that could be read."""

import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tap, build_dir, tool  # noqa: E402
import wire_py as w  # noqa: E402

tap = Tap()


def shim_env():
    """As test_shim.py runs the shim: a clean environment, the ASan link-order
    check off when the shim is an instrumented build."""
    shim = os.path.join(build_dir(), "shim", "libmfushim.so")
    e = {k: v for k, v in os.environ.items()
         if k not in ("MFU_COLLECTOR", "MFU_DISABLE", "LD_PRELOAD", "MFU_MODEL_DTYPE")}
    e["MFU_SHIM"] = shim
    if "libasan" in subprocess.run(["readelf", "-d", shim], capture_output=True, text=True).stdout:
        e["ASAN_OPTIONS"] = ":".join(filter(None, [e.get("ASAN_OPTIONS", ""), "verify_asan_link_order=0"]))
    return e


def tmpdir():
    return tempfile.mkdtemp(prefix="mfu-trace-")


def trace(*files, extra=(), ok=True):
    out = os.path.join(tmpdir(), "trace.json")
    r = subprocess.run([tool("mfu"), "trace", "-o", out, *extra, *files], capture_output=True, text=True,
                       timeout=120)
    if ok:
        assert r.returncode == 0, (r.returncode, r.stderr)
    doc = json.load(open(out)) if os.path.exists(out) else None
    return doc, r


def slices(doc, cat=None):
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and (cat is None or e.get("cat") == cat)]


def check_nesting(doc):
    """Every X event has ts, dur >= 0, and on each (pid, tid) the events,
    sorted by start, either contain or are disjoint from each other."""
    tracks = {}
    for e in slices(doc):
        assert e["ts"] >= 0 and e["dur"] >= 0, e
        tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, evs in tracks.items():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in evs:
            s, end = round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000)
            while stack and stack[-1] <= s:
                stack.pop()
            assert not stack or end <= stack[-1], ("partial overlap on track", key, e, stack[-1])
            stack.append(end)
    names = {(e["pid"], e["tid"]) for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert set(tracks) <= names, set(tracks) - names
    return tracks


def weighted_counter(doc, name):
    """Time-weighted mean of a counter per pid: each sample holds until the next."""
    by_pid = {}
    for e in doc["traceEvents"]:
        if e["ph"] == "C" and e["name"] == name:
            by_pid.setdefault(e["pid"], []).append((e["ts"], e["args"][name]))
    out = {}
    for pid, samples in by_pid.items():
        samples.sort()
        num = sum(v * (samples[i + 1][0] - t) for i, (t, v) in enumerate(samples[:-1]))
        out[pid] = num / (samples[-1][0] - samples[0][0]) / 100
    return out


def synth(*args):
    d = tmpdir()
    path = os.path.join(d, "synth.0.mfa")
    subprocess.run([tool("mfu-synth"), "--out", path, *args], check=True, capture_output=True, timeout=120)
    return path


@tap.check
def a_synthetic_run_becomes_a_valid_properly_nested_trace():
    path = synth("--steps", "30", "--remat")
    doc, r = trace(path)
    check_nesting(doc)
    recs = w.read_archive(path)
    kernels = [x for x in recs if x["type"] == "kernel"]
    assert len(slices(doc, "kernel")) == len(kernels) > 0
    assert len(slices(doc, "api")) == len([x for x in recs if x["type"] == "api"])
    assert len(slices(doc, "step")) == 30
    # ns precision survives: each kernel's duration is its record's, to the ns
    durs = sorted(round(e["dur"] * 1000) for e in slices(doc, "kernel"))
    assert durs == sorted(k["end_ns"] - k["start_ns"] for k in kernels)
    flops = sum(e["args"]["flops"] for e in slices(doc, "kernel"))
    assert flops == sum(k["flops"] for k in kernels)
    procs = [e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    assert any("GPU 0" in p for p in procs) and any("host threads" in p for p in procs), procs


@tap.check
def hfu_and_mfu_counters_average_to_what_mfu_report_says():
    path = synth("--steps", "40")
    doc, _ = trace(path)
    js = os.path.join(tmpdir(), "r.json")
    subprocess.run([tool("mfu"), "report", "--json", js, path], check=True, capture_output=True)
    rep = json.load(open(js))
    hfu, mfu = weighted_counter(doc, "HFU (%)"), weighted_counter(doc, "MFU (%)")
    assert len(hfu) == 1 and len(mfu) == 1, (hfu, mfu)
    samples = [e for e in doc["traceEvents"] if e["ph"] == "C" and e["name"] == "HFU (%)"]
    assert len(samples) > 3, samples  # several 100 ms buckets, and they vary
    assert len({e["args"]["HFU (%)"] for e in samples}) > 2
    (h,), (m,) = hfu.values(), mfu.values()
    assert abs(h - rep["hfu"]) < 1e-6 * max(1, rep["hfu"]), (h, rep["hfu"])
    assert abs(m - rep["mfu"]) < 1e-6 * max(1, rep["mfu"]), (m, rep["mfu"])


HOSTILE = b'evil"\\kernel\n\t\x01</script><b>\xff\xc3(\xe2\x82\xac'
HOSTILE_DECODED = 'evil"\\kernel\n\t\x01</script><b>\ufffd\ufffd(\u20ac'


def handmade_archive(path, tear=False):
    """One source on an H100: kernels on two streams, two of them partly
    overlapping on one stream; API calls; off-CPU spells of each state, one
    straddling an API call; a step.  Times in ns after the hello."""
    t0 = 1_700_000_000_000_000_000
    hello = w.record(1, t0, 4242, w.zigzag(0), w.zigzag(0), 1, 0, w.string("node7"), w.string("job"),
                     w.string("handmade 1"), 1, 0, 132, 1980000, 2619000, 9, 0, w.string("NVIDIA H100 80GB HBM3"))
    payload = hello + w.record(2, 1, w.string(HOSTILE)) + w.record(2, 2, w.string("gemm_kernel"))
    kern = [  # start, end, stream, name, flops, class (5 bf16)
        (1_000, 50_000_000, 7, 2, 10**12, 5),
        (20_000_000, 70_000_000, 7, 1, 0, 0),    # partly overlaps the first on stream 7
        (30_000_000, 40_000_000, 7, 2, 10**11, 5),  # inside both
        (5_000, 250_000_000, 9, 2, 5 * 10**12, 5),
    ]
    base_s = base_c = 0
    for i, (s, e, stream, name, fl, cls) in enumerate(kern):
        start, corr = t0 + s, 100 + i
        payload += w.record(3, w.zigzag(start - base_s), e - s, 0, stream, name, w.zigzag(corr - base_c), 0,
                            cls | 0x40, fl)
        base_s, base_c = start, corr
    api = [(0, 900, 1, 307), (1_000_000, 60_000_000, 2, 126), (60_100_000, 60_200_000, 1, 307)]
    base_s = base_c = 0
    for i, (s, e, kind, cbid) in enumerate(api):
        start, corr = t0 + s, 200 + i
        payload += w.record(6, w.zigzag(start - base_s), e - s, 77, cbid, w.zigzag(corr - base_c), kind)
        base_s, base_c = start, corr
    off = [(2_000_000, 30_000_000, 1), (30_000_000, 30_500_000, 0), (59_000_000, 61_000_000, 2),
           (80_000_000, 81_000_000, 3)]
    for s, e, state in off:
        payload += w.record(11, t0 + s, e - s, 77, state, 5)
    payload += w.record(5, t0 + 1_000, 260_000_000, 1, 0, 3 * 10**12, 5)
    frames = [w.frame(payload, 0), w.frame(w.record(8, t0 + 300_000_000, 0), 1)]
    w.write_archive(path, frames)
    if tear:
        with open(path, "ab") as f:  # a crash in the middle of the next entry
            f.write(b"\0" * 8 + w.frame(w.record(8, t0, 0), 2)[:20])


@tap.check
def hostile_names_offcpu_states_and_overlaps_come_out_escaped_coloured_and_nested():
    path = os.path.join(tmpdir(), "hand.0.mfa")
    handmade_archive(path)
    doc, r = trace(path)
    tracks = check_nesting(doc)
    names = [e["name"] for e in slices(doc, "kernel")]
    assert names.count(HOSTILE_DECODED) == 1, names
    assert len(names) == 4
    # the partly overlapping kernel went to a second lane of stream 7
    k_tracks = {(e["pid"], e["tid"]) for e in slices(doc, "kernel")}
    assert len(k_tracks) == 3, k_tracks
    thread_names = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"stream 7", "stream 7 (2)", "stream 9", "thread 77", "thread 77 off-CPU", "steps"} <= thread_names, \
        thread_names
    off = slices(doc, "offcpu")
    assert sorted((e["args"]["state"], e["cname"]) for e in off) == [
        (0, "thread_state_runnable"), (1, "thread_state_sleeping"), (2, "thread_state_iowait"),
        (3, "thread_state_unknown")], off
    api = slices(doc, "api")
    assert sorted(e["name"] for e in api) == ["launch", "launch", "synchronize"]
    # off-CPU slices sit on a sibling track of the thread's API track
    assert {(e["pid"], e["tid"]) for e in off}.isdisjoint({(e["pid"], e["tid"]) for e in api})
    assert {e["pid"] for e in off} == {e["pid"] for e in api}
    # ts are microseconds from the earliest event, with the ns kept
    sync = [e for e in api if e["name"] == "synchronize"][0]
    assert abs(sync["ts"] - 1000.0) < 1e-9 and abs(sync["dur"] - 59000.0) < 1e-9, sync
    k = [e for e in slices(doc, "kernel") if e["args"]["stream"] == 9][0]
    assert k["ts"] == 5.0 and k["args"]["flops"] == 5 * 10**12 and k["args"]["corr"] == 103, k
    assert len(tracks) >= 6


@tap.check
def a_torn_tail_keeps_the_events_before_it_with_a_message():
    path = os.path.join(tmpdir(), "torn.0.mfa")
    handmade_archive(path, tear=True)
    doc, r = trace(path)
    assert "torn" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert len(slices(doc, "kernel")) == 4
    check_nesting(doc)


@tap.check
def missing_unreadable_and_foreign_files_get_one_line_each():
    d = tmpdir()
    doc, r = trace(os.path.join(d, "absent.0.mfa"), ok=False)
    assert r.returncode == 1 and doc is None, r
    assert r.stderr.count("\n") == 1 and "No such file" in r.stderr, r.stderr
    junk = os.path.join(d, "junk.0.mfa")
    open(junk, "wb").write(b"not an archive at all")
    doc, r = trace(junk, ok=False)
    assert r.returncode == 1 and "not an mfu archive" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    empty = os.path.join(d, "empty.0.mfa")
    w.write_archive(empty, [])
    doc, r = trace(empty, ok=False)
    assert r.returncode == 1 and doc is None and "no frames" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    # one good file among bad ones: the trace is written, the status says
    # something was missing
    good = synth("--steps", "2")
    doc, r = trace(good, junk, ok=False)
    assert r.returncode == 1 and doc is not None and slices(doc, "kernel"), r.stderr
    r = subprocess.run([tool("mfu"), "trace", good], capture_output=True, text=True)
    assert r.returncode == 2 and "-o" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([tool("mfu"), "trace", "-o", os.path.join(d, "x.json"), "--max-events", "zero", good],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


@tap.check
def max_events_keeps_the_first_slices_and_every_counter():
    path = synth("--steps", "10")
    full, _ = trace(path)
    doc, r = trace(path, extra=("--max-events", "100"))
    assert len(slices(doc)) == 100 and "--max-events" in r.stderr, r.stderr
    ctr = lambda d: [e for e in d["traceEvents"] if e["ph"] == "C"]  # noqa: E731
    assert ctr(doc) == ctr(full)


@tap.check
def the_shim_copies_scenario_shows_copies_on_the_device_and_syncs_on_the_thread():
    driver = os.path.join(build_dir(), "tests", "gemm_driver")
    if not os.path.exists(driver):
        print("# skipped: built without CUDA headers, so no shim and no gemm_driver")
        return
    d = tmpdir()
    arch = os.path.join(d, "archive")
    r = subprocess.run([tool("mfu"), "run", "--interval", "0", "--archive", arch, "--json", os.path.join(d, "s.json"),
                        "--", driver, "copies", os.path.join(d, "w.json")],
                       capture_output=True, text=True, timeout=120, env=shim_env())
    assert r.returncode == 0, r.stderr
    files = sorted(glob.glob(os.path.join(arch, "*.mfa")))
    doc, _ = trace(*files)
    check_nesting(doc)
    copies = slices(doc, "copy")
    assert sorted((e["name"], e["args"]["bytes"]) for e in copies) == [
        ("memcpy", 65536), ("memcpy", 1 << 20), ("memset", 4096)], copies
    kernels = slices(doc, "kernel")
    assert len(kernels) == 4 and {e["pid"] for e in copies} == {e["pid"] for e in kernels}
    api = slices(doc, "api")
    assert sorted(e["name"] for e in api) == ["blocking copy"] * 2 + ["launch"] * 4 + ["synchronize"] * 3, api
    assert len({e["pid"] for e in api}) == 1 and {e["pid"] for e in api} != {e["pid"] for e in kernels}


tap.run()
