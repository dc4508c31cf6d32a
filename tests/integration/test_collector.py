# SPDX-License-Identifier: MIT
"""End to end: mfud with two producer processes (mfu-synth, which sends
through the same encoder and sender as the shim), checked against the exact
totals the producers report; a garbage client is dropped without harm;
promtool accepts /metrics; archives replay and report to the same totals."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Collector, Tap, close, parse_metrics, samples, synth, tool)  # noqa: E402

tap = Tap()
state = {}
HOSTILE_HOST = 'gpu"node\\7\nx'


def totals_match(summary, totals_list):
    want = {k: sum(int(t[k]) for t in totals_list)
            for k in ("gemm_flops", "hw_flops", "model_flops", "remat_flops", "gemm_calls", "kernels")}
    return all(summary[k] == want[k] for k in want)


@tap.check
def two_producers_totals_are_exact_in_the_summary():
    c = Collector(archive=True)
    state["c"] = c
    tmp = c.dir
    t0 = synth(c.target, os.path.join(tmp, "t0.json"), "--rank", "0", "--world-size", "2", "--job", "itest",
               "--pid", "1001", "--steps", "6", "--seed", "1")
    t1 = synth(c.target, os.path.join(tmp, "t1.json"), "--rank", "1", "--world-size", "2", "--job", "itest",
               "--pid", "1002", "--steps", "4", "--seed", "2", "--remat", "--host", HOSTILE_HOST)
    state["t"] = [t0, t1]
    s = c.wait_for(lambda s: s["sources"] == 2 and totals_match(s, [t0, t1]))
    assert s["dropped_records"] == 0, s
    assert close(s["kernel_time_s"], (t0["kernel_ns"] + t1["kernel_ns"]) / 1e9)
    assert close(s["gpu_busy_s"], (t0["busy_ns"] + t1["busy_ns"]) / 1e9)
    assert s["remat_flops"] == t1["remat_flops"] > 0
    assert s["hw_flops"] > s["model_flops"], "remat makes hardware FLOPs exceed model FLOPs"
    assert s["peak_source"] == "table:NVIDIA H100 SXM5", s["peak_source"]
    assert s["synthetic"] is True
    by_pid = {p["pid"]: p for p in s["per_source"]}
    assert by_pid[1001]["rank"] == 0 and by_pid[1002]["rank"] == 1
    assert by_pid[1002]["host"] == HOSTILE_HOST
    for pid, t in ((1001, t0), (1002, t1)):
        p = by_pid[pid]
        assert p["gemm_flops"] == t["gemm_flops"] and p["model_flops"] == t["model_flops"], (p, t)
        # MFU by hand: model FLOPs / (wall x bf16 peak)
        wall = (t["last_ns"] - t["first_ns"]) / 1e9
        assert close(p["wall_s"], wall), (p["wall_s"], wall)
        mfu = p["devices"][0]["total"]["mfu"]
        assert close(mfu, t["model_flops"] / (wall * 989.4e12), 1e-9), mfu
    state["summary"] = s


@tap.check
def metrics_carry_the_same_numbers_per_rank():
    c, (t0, t1) = state["c"], state["t"]
    m = parse_metrics(c.metrics())
    for rank, t in ((0, t0), (1, t1)):
        v = samples(m, "mfu_gemm_flops_total", rank=rank, job="itest")
        assert len(v) == 1 and close(v[0], float(t["gemm_flops"]), 1e-12), (rank, v)
        v = samples(m, "mfu_model_flops_total", rank=rank)
        assert len(v) == 1 and close(v[0], float(t["model_flops"]), 1e-12)
        v = samples(m, "mfu_kernels_total", rank=rank)
        assert v == [float(t["kernels"])], v
        v = samples(m, "mfu_gpu_busy_seconds_total", rank=rank)
        assert close(v[0], t["busy_ns"] / 1e9)
        hfu = samples(m, "mfu_hfu_ratio", rank=rank, window="total", peak_dtype="bf16",
                      peak_source="table:NVIDIA H100 SXM5")
        assert len(hfu) == 1 and 0 < hfu[0] < 1, hfu
    host1 = samples(m, "mfu_gemm_flops_total", host=HOSTILE_HOST)
    assert len(host1) == 1, "the hostile host name must round-trip through label escaping"
    peak = samples(m, "mfu_peak_flops_per_second", dtype="bf16", source="table:NVIDIA H100 SXM5")
    assert peak == [989.4e12, 989.4e12], peak
    job = samples(m, "mfu_job_hfu_ratio", job="itest", window="total")
    assert len(job) == 1
    # job HFU = sum of FLOPs over the sum of peak x span
    s = state["summary"]
    assert close(job[0], s["hfu"], 1e-9), (job, s["hfu"])


@tap.check
def promtool_accepts_metrics():
    text = state["c"].metrics()
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


@tap.check
def garbage_client_is_dropped_and_others_are_unaffected():
    c = state["c"]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(c.sock)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(4096))
        s.settimeout(5)
        assert s.recv(1) == b"", "collector must close a garbage stream"
    tmp = c.dir
    t2 = synth(c.target, os.path.join(tmp, "t2.json"), "--rank", "2", "--job", "other", "--pid", "1003",
               "--steps", "2")
    s = c.wait_for(lambda s: s["sources"] == 3 and totals_match(s, state["t"] + [t2]))
    log = c.logtext()
    lines = [l for l in log.splitlines() if "dropping" in l]
    assert len(lines) == 1 and "bad magic" in lines[0], log
    m = parse_metrics(c.metrics())
    assert samples(m, "mfud_stream_errors_total") == [1.0]
    state["t"].append(t2)


@tap.check
def archive_report_gives_the_same_totals():
    c = state["c"]
    assert c.stop() == 0, c.logtext()
    files = sorted(os.path.join(c.archive, f) for f in os.listdir(c.archive))
    assert files and all(f.endswith(".mfa") for f in files), files
    out = os.path.join(c.dir, "report.json")
    r = subprocess.run([tool("mfu"), "report", "--json", out] + files, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        s = json.load(f)
    assert s["sources"] == 3 and totals_match(s, state["t"]), s
    assert "SYNTHETIC" in r.stdout
    state["files"] = files


@tap.check
def torn_archive_reports_what_it_read_and_what_it_skipped():
    src = state["files"][0]
    torn = os.path.join(state["c"].dir, "torn.0.mfa")
    data = open(src, "rb").read()
    with open(torn, "wb") as f:
        f.write(data[:-7])  # a crash mid-write
    r = subprocess.run([tool("mfu"), "report", torn], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "torn" in r.stderr and "offset" in r.stderr, r.stderr
    assert "gemm calls" in r.stdout


@tap.check
def replay_into_a_fresh_collector_gives_the_same_totals():
    c2 = Collector()
    try:
        r = subprocess.run([tool("mfu"), "replay", "--max", "--target", c2.target] + state["files"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        c2.wait_for(lambda s: s["sources"] == 3 and totals_match(s, state["t"]))
    finally:
        c2.cleanup()


@tap.check
def mfu_run_embeds_a_collector_and_writes_the_json_summary():
    tmp = tempfile.mkdtemp(prefix="mfu-run-")
    try:
        js, tot = os.path.join(tmp, "s.json"), os.path.join(tmp, "t.json")
        env = dict(os.environ)
        env.pop("MFU_COLLECTOR", None)
        # the child finds the embedded collector through MFU_COLLECTOR
        cmd = [tool("mfu"), "run", "--no-shim", "--interval", "1", "--json", js, "--",
               "sh", "-c", '"$0" --target "$MFU_COLLECTOR" --totals "$1" --steps 5 --remat; exit 3',
               tool("mfu-synth"), tot]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert "mfu summary" in r.stderr and "[mfu " in r.stderr, r.stderr
        with open(js) as f:
            s = json.load(f)
        with open(tot) as f:
            t = json.load(f)
        for k in ("gemm_calls", "gemm_flops", "hw_flops", "model_flops", "remat_flops", "kernels",
                  "kernel_time_s", "gpu_busy_s", "wall_s", "hfu", "mfu", "peak_flops", "peak_source",
                  "dropped_records", "sources"):
            assert k in s, k
        assert totals_match(s, [t]) and s["sources"] == 1 and s["dropped_records"] == 0
        assert s["hfu"] >= s["mfu"] > 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@tap.check
def mfu_run_returns_the_command_status_and_reports_a_missing_command():
    env = dict(os.environ)
    env.pop("MFU_COLLECTOR", None)
    r = subprocess.run([tool("mfu"), "run", "--no-shim", "--interval", "0", "--", "sh", "-c", "exit 42"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 42, r
    r = subprocess.run([tool("mfu"), "run", "--no-shim", "--interval", "0", "--", "/nonexistent/cmd"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 127 and "cannot run" in r.stderr, r


@tap.check
def degraded_source_shows_kernel_time_unknown_not_zero():
    c = Collector()
    try:
        t = synth(c.target, os.path.join(c.dir, "t.json"), "--degraded", "--steps", "3")
        s = c.wait_for(lambda s: s["sources"] == 1 and s["gemm_flops"] == t["gemm_flops"])
        assert s["hw_flops"] == t["hw_flops"] == t["gemm_flops"], "untimed GEMMs carry the FLOPs"
        assert s["kernels"] is None and s["gpu_busy_s"] is None and s["kernel_time_s"] is None, s
        m = parse_metrics(c.metrics())
        assert samples(m, "mfu_source_degraded") == [1.0]
        assert samples(m, "mfu_gpu_busy_ratio") == [], "no busy series for an untimed source"
        assert samples(m, "mfu_kernels_total") == []
    finally:
        c.cleanup()


@tap.check
def every_command_has_help_and_rejects_bad_flags_with_one_line():
    for args in (["mfu", "--help"], ["mfu", "run", "--help"], ["mfu", "top", "--help"],
                 ["mfu", "report", "--help"], ["mfu", "replay", "--help"], ["mfud", "--help"]):
        r = subprocess.run([tool(args[0])] + args[1:], capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout, args
    for args in (["mfu", "run", "--bogus"], ["mfu", "top", "--interval", "x"], ["mfu", "report", "--nope"],
                 ["mfu", "replay", "--speed", "-1", "f"], ["mfu", "frobnicate"], ["mfud", "--bogus"],
                 ["mfud", "--peak-tflops", "bf16=-3"], ["mfud", "--settle-ms", "abc"],
                 ["mfu", "run", "--interval", "1e3", "--", "true"], ["mfu", "report"]):
        r = subprocess.run([tool(args[0])] + args[1:], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


@tap.check
def a_second_daemon_on_the_same_socket_is_refused():
    c = Collector()
    try:
        r = subprocess.run([tool("mfud"), "--socket", c.sock, "--http", "off"], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode != 0 and "another collector" in r.stderr, r.stderr
        mode = os.stat(os.path.dirname(c.sock)).st_mode & 0o777
        assert mode == 0o700, oct(mode)
    finally:
        c.cleanup()


@tap.check
def mfu_top_shows_one_row_per_rank():
    c = Collector()
    try:
        synth(c.target, os.path.join(c.dir, "a.json"), "--rank", "0", "--pid", "11", "--job", "topjob", "--steps", "2")
        synth(c.target, os.path.join(c.dir, "b.json"), "--rank", "1", "--pid", "12", "--job", "topjob", "--steps", "2")
        c.wait_for(lambda s: s["sources"] == 2)
        r = subprocess.run([tool("mfu"), "top", "--once", "--connect", "127.0.0.1:%d" % c.port],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        rows = [l for l in r.stdout.splitlines() if l.startswith("topjob")]
        assert len(rows) == 2 and "SYNTHETIC" in r.stdout and "job total" in r.stdout, r.stdout
        r = subprocess.run([tool("mfu"), "top", "--once", "--connect", "127.0.0.1:1"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        c.cleanup()


@tap.check
def archive_rotates_by_size_and_the_pieces_report_the_whole():
    c = Collector("--archive-max-mb", "1", archive=True)
    try:
        t = synth(c.target, os.path.join(c.dir, "t.json"), "--steps", "400", "--layers", "24", "--pid", "77")
        c.wait_for(lambda s: s["gemm_flops"] == t["gemm_flops"])
        assert c.stop() == 0
        files = sorted(os.listdir(c.archive))
        assert len(files) >= 2 and all(f.endswith(".mfa") for f in files), files
        assert all(os.path.getsize(os.path.join(c.archive, f)) <= (1 << 20) for f in files)
        out = os.path.join(c.dir, "r.json")
        r = subprocess.run([tool("mfu"), "report", "--json", out] + [os.path.join(c.archive, f) for f in files],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(out) as f:
            s = json.load(f)
        assert s["sources"] == 1 and totals_match(s, [t]), s
    finally:
        c.cleanup()


@tap.check
def a_disconnected_source_is_forgotten_after_retain():
    c = Collector("--retain", "2")
    try:
        synth(c.target, os.path.join(c.dir, "t.json"), "--steps", "2", "--pid", "99")
        c.wait_for(lambda s: s["sources"] == 1)
        c.wait_for(lambda s: s["sources"] == 0, timeout=10)
        assert "mfu_source_up{" not in c.metrics()
        assert "forgot 1 source" in c.logtext()
    finally:
        c.cleanup()


@tap.check
def a_hostile_host_name_cannot_forge_mfud_log_lines():
    c = Collector()
    try:
        host = "evil\nmfud: forged line \x1b[2J\x7f"
        synth(c.target, os.path.join(c.dir, "t.json"), "--steps", "1", "--pid", "4242", "--host", host)
        c.wait_for(lambda s: s["sources"] == 1 and s["per_source"][0]["host"] == host)
        deadline = time.time() + 10
        while "disconnected" not in c.logtext() and time.time() < deadline:
            time.sleep(0.05)
        log = c.logtext()
        lines = [l for l in log.splitlines() if "pid 4242" in l]
        assert lines and all("host evil?mfud: forged line ?[2J?" in l for l in lines), log
        assert not any(l.startswith("mfud: forged") for l in log.splitlines()), log
        assert "\x1b" not in log and "\x7f" not in log, repr(log)
    finally:
        c.cleanup()


try:
    tap.run()
finally:
    if "c" in state:
        state["c"].cleanup()
