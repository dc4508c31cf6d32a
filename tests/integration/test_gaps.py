# SPDX-License-Identifier: MIT
"""Launch-gap analysis end to end: mfu-synth's hand-computed gap scenario
(tools/synth/synth.c, doc/metrics.md "Idle gaps") through `mfu report` on an
archive, where the off-CPU records count, and streamed to mfud, where a
producer's off-CPU records are ignored and counted; /metrics passes promtool;
and mfud --no-gaps, which leaves idle time unattributed."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Collector, Tap, close, parse_metrics, samples, synth, tool  # noqa: E402

tap = Tap()
state = {}
US = 1e-6
ROUNDS = 3
# Per round (us): sync 30, host_offcpu 50, host_launch_bound 10, kernel_wait 7, other 62.
# Between rounds (1 s apart) the next round's first launch returns after the
# previous round's last kernel ended: host_launch_bound, 1 s - 270 us each.
BETWEEN = 1.0 - 270 * US


def want_causes(offcpu_counts):
    per = {"sync": 30, "host_offcpu": 50, "host_launch_bound": 10, "kernel_wait": 7, "other": 62}
    if not offcpu_counts:
        # [50,100) falls to the next rule: the launch returned at 62 > 50
        per["host_launch_bound"] += per.pop("host_offcpu")
        per["host_offcpu"] = 0
    out = {k: v * ROUNDS * US for k, v in per.items()}
    out["host_launch_bound"] += (ROUNDS - 1) * BETWEEN
    return out


@tap.check
def report_on_an_archive_classifies_every_gap():
    d = tempfile.mkdtemp(prefix="mfu-gaps-")
    state["dir"] = d
    arch = os.path.join(d, "gaps.0.mfa")
    subprocess.run([tool("mfu-synth"), "--gap-scenario", str(ROUNDS), "--out", arch], check=True, timeout=60)
    out = os.path.join(d, "report.json")
    r = subprocess.run([tool("mfu"), "report", "--json", out, arch], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        s = json.load(f)
    tot = s["windows"]["total"]
    for cause, want in want_causes(True).items():
        got = tot["idle_s_by_cause"][cause]
        assert close(got, want, 1e-9), (cause, got, want)
    # idle before the first round (1 s after the hello) is no gap: unattributed
    assert close(tot["idle_s_by_cause"]["unattributed"], 1.0, 1e-9), tot
    lat = tot["launch_latency_s"]
    assert lat["count"] == 6 * ROUNDS, lat
    assert abs(lat["p50"] - 14 * US) <= 14 * US / 32, lat
    assert abs(lat["p99"] - 75 * US) <= 75 * US / 32, lat
    assert close(lat["max"], 75 * US), lat
    assert tot["short_kernels"] == ROUNDS and close(tot["short_kernel_share"], 1 / 6), tot
    hist = {h["le_s"]: h["count"] for h in s["gaps"]["gap_histogram"]}
    assert hist[2e-06] == ROUNDS and hist[1e-05] == 2 * ROUNDS and hist[5e-05] == 2 * ROUNDS, hist
    assert hist[0.0001] == ROUNDS and hist[1.0] == ROUNDS - 1 and sum(hist.values()) == 6 * ROUNDS + ROUNDS - 1
    assert s["gaps"]["short_kernels_top"] == [{"name": "gap_k4_shorter_than_its_launch", "count": ROUNDS}], s["gaps"]
    # copies fill [220,260): busy = kernels (61 + the stream-9 one inside K1 adds nothing) + 40 + K8 10
    assert close(tot["gpu_idle"], 1 - ROUNDS * 111 * US / s["wall_s"], 1e-9), (tot, s["wall_s"])
    text = r.stdout
    assert "gap analysis" in text and "host_offcpu" in text and "gap_k4_shorter_than_its_launch" in text, text
    assert "launch latency" in text and "p99 75.0 us" in text, text


@tap.check
def gap_wait_us_moves_the_kernel_wait_threshold():
    # per round: the 7 us kernel_wait gap, and a 60 us gap after its kernel
    # was launched (other at 10 us); a 2 us gap whose kernel had not been
    # launched is other whatever the threshold
    arch = os.path.join(state["dir"], "gaps.0.mfa")
    for us, wait, other in ((1, 0, 69), (10, 7, 62), (100, 67, 2)):
        out = os.path.join(state["dir"], "wait-%d.json" % us)
        r = subprocess.run([tool("mfu"), "report", "--gap-wait-us", str(us), "--json", out, arch],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        with open(out) as f:
            by = json.load(f)["windows"]["total"]["idle_s_by_cause"]
        assert close(by["kernel_wait"], wait * ROUNDS * US, 1e-9), (us, by)
        assert close(by["other"], other * ROUNDS * US, 1e-9), (us, by)
    for bad in ("0", "10x", "1000001"):
        r = subprocess.run([tool("mfu"), "report", "--gap-wait-us", bad, arch], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--gap-wait-us" in r.stderr, r.stderr


@tap.check
def a_producers_offcpu_records_are_ignored_live():
    c = Collector()
    state["c"] = c
    synth(c.target, os.path.join(c.dir, "t.json"), "--gap-scenario", str(ROUNDS))
    # the sweep finishes when the producer disconnects
    c.wait_for(lambda s: s["sources"] == 1 and s["kernels"] == 9 * ROUNDS and not s["per_source"][0]["connected"])
    text = c.metrics()
    m = parse_metrics(text)
    for cause, want in want_causes(False).items():
        got = samples(m, "mfu_gpu_idle_seconds_total", cause=cause)
        assert len(got) == 1 and close(got[0], want, 1e-9), (cause, got, want)
    assert samples(m, "mfu_gap_records_lost_total", reason="offcpu_from_producer") == [ROUNDS]
    assert samples(m, "mfu_short_kernels_total") == [ROUNDS]
    assert samples(m, "mfu_gpu_idle_gap_seconds_count") == [6 * ROUNDS + ROUNDS - 1]
    assert samples(m, "mfu_gpu_idle_gap_seconds_bucket", le="+Inf") == [6 * ROUNDS + ROUNDS - 1]
    assert samples(m, "mfu_gpu_idle_gap_seconds_bucket", le="1e-06") == [0]
    q = samples(m, "mfu_launch_latency_seconds", window="total", quantile="0.5")
    assert len(q) == 1 and abs(q[0] - 14 * US) <= 14 * US / 32, q
    top = subprocess.run([tool("mfu"), "top", "--once", "--connect", "127.0.0.1:%d" % c.port],
                         capture_output=True, text=True, timeout=30)
    assert top.returncode == 0 and "IDLE CAUSE" in top.stdout, top.stdout + top.stderr
    if not shutil.which("promtool"):
        raise AssertionError("promtool is not installed (tools/install-deps.sh installs it)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr

@tap.check
def no_gaps_leaves_idle_unattributed_and_hfu_as_it_was():
    on = state["c"] if "c" in state else None
    c = Collector("--no-gaps", "--bpf", "auto")
    state["c2"] = c
    synth(c.target, os.path.join(c.dir, "t.json"), "--gap-scenario", str(ROUNDS))
    c.wait_for(lambda s: s["sources"] == 1 and s["kernels"] == 9 * ROUNDS and not s["per_source"][0]["connected"])
    m = parse_metrics(c.metrics())
    assert samples(m, "mfud_gap_analysis_enabled") == [0]
    assert samples(m, "mfud_bpf_enabled", reason="--no-gaps") == [0]
    for cause in ("sync", "host_offcpu", "host_launch_bound", "kernel_wait", "other"):
        assert samples(m, "mfu_gpu_idle_seconds_total", cause=cause) == [0], cause
    assert samples(m, "mfu_gpu_idle_gap_seconds_count") == [0]
    assert samples(m, "mfu_launched_kernels_total") == [0]
    # what does not come from gap analysis is unchanged
    if on is not None:
        mo = parse_metrics(on.metrics())
        for name in ("mfu_kernels_total", "mfu_gpu_busy_seconds_total", "mfu_kernel_seconds_total"):
            assert samples(m, name) == samples(mo, name), name
    assert "gap analysis off (--no-gaps)" in c.logtext()
    assert "eBPF scheduler tracing off: --no-gaps" in c.logtext(), c.logtext()
    r = subprocess.run([tool("mfud"), "--no-gaps", "--bpf", "on", "--http", "off", "--socket",
                        os.path.join(c.dir, "x.sock")], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--no-gaps" in r.stderr, r.stderr

try:
    tap.run()
finally:
    for k in ("c", "c2"):
        if k in state:
            state[k].cleanup()
    if "dir" in state:
        shutil.rmtree(state["dir"], ignore_errors=True)
