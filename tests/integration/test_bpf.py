# SPDX-License-Identifier: MIT
"""mfud and the eBPF scheduler tracer: --bpf=off and a missing privilege
leave everything else working and say why on /metrics and in the log;
--bpf=on without the privilege refuses to start; with it, a local
producer's off-CPU time is traced while it is connected and the pid is
unwatched when it leaves, and a missing tracefs is mounted.  The checks that need the privilege skip, saying
why, where this process does not have it."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Collector, Tap, parse_metrics, samples, synth, tool  # noqa: E402

tap = Tap()

# root without the capabilities BPF needs: the kernel then refuses it too
DROP = ["setpriv", "--bounding-set", "-bpf,-perfmon,-sys_admin", "--inh-caps", "-bpf,-perfmon,-sys_admin"]


# what mfud says when meson built it without the tracer (offcpu_none.c)
NOT_BUILT = "built without BPF support"


def can_drop():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def bpf_line(c):
    return [ln for ln in c.logtext().splitlines() if "eBPF scheduler tracing" in ln]


@tap.check
def bpf_off_says_so_and_why():
    c = Collector("--bpf=off")
    try:
        m = parse_metrics(c.metrics())
        assert samples(m, "mfud_bpf_enabled", reason="--bpf=off") == [0.0], m
        assert not samples(m, "mfud_bpf_events_total")
        assert bpf_line(c) == ["mfud: eBPF scheduler tracing off: --bpf=off"], c.logtext()
    finally:
        c.cleanup()


@tap.check
def without_privileges_bpf_is_off_and_sources_still_count():
    prefix = DROP if can_drop() else []
    if os.geteuid() == 0 and not prefix:
        print("# skip: running as root without setpriv, cannot drop the privilege")
        return
    c = Collector(prefix=prefix)
    try:
        m = parse_metrics(c.metrics())
        v = [(dict(k[1]).get("reason"), val) for k, val in m.items() if k[0] == "mfud_bpf_enabled"]
        assert len(v) == 1 and v[0][1] == 0.0 and v[0][0].startswith(("not privileged", NOT_BUILT)), v
        assert len(bpf_line(c)) == 1 and "off: " + v[0][0] in bpf_line(c)[0], c.logtext()
        t = synth(c.target, os.path.join(c.dir, "t.json"), "--steps", "3")
        c.wait_for(lambda s: s["sources"] == 1 and s["gemm_flops"] == t["gemm_flops"])
    finally:
        c.cleanup()


@tap.check
def bpf_on_without_privileges_refuses_to_start():
    if not can_drop() and os.geteuid() == 0:
        print("# skip: running as root without setpriv, cannot drop the privilege")
        return
    prefix = DROP if os.geteuid() == 0 else []
    p = subprocess.run(prefix + [tool("mfud"), "--socket", "/nonexistent/x.sock", "--http", "off", "--bpf=on"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0, p
    assert ("--bpf=on: cannot start the eBPF scheduler tracer: not privileged" in p.stderr
            or "--bpf=on: cannot start the eBPF scheduler tracer: " + NOT_BUILT in p.stderr), p.stderr


@tap.check
def local_source_is_traced_while_connected():
    c = Collector("--bpf=auto")
    try:
        m = parse_metrics(c.metrics())
        v = [(dict(k[1]).get("reason"), val) for k, val in m.items() if k[0] == "mfud_bpf_enabled"]
        if v and v[0][1] == 0.0:
            print("# skip: the tracer is off here: %s" % v[0][0])
            return
        assert v == [("", 1.0)], v
        assert bpf_line(c) == ["mfud: eBPF scheduler tracing on (off-CPU time of local sources)"], c.logtext()
        # --realtime paces the records, so the producer sleeps between them;
        # --pid fakes the hello's pid: the peer's real pid must be the one traced.
        start = time.time()
        p = subprocess.Popen([tool("mfu-synth"), "--target", c.target, "--realtime", "--steps", "150",
                              "--layers", "4", "--pid", "1"])
        seen = None
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None:
            m = parse_metrics(c.metrics())
            if samples(m, "mfud_bpf_sources") == [1.0] and samples(m, "mfud_bpf_events_total")[0] > 0:
                seen = m
                break
            time.sleep(0.05)
        assert p.wait(60) == 0
        wall = time.time() - start
        assert seen is not None, "no off-CPU events while the producer ran"
        deadline = time.time() + 10
        while time.time() < deadline:
            m = parse_metrics(c.metrics())
            if samples(m, "mfud_bpf_sources") == [0.0]:
                break
            time.sleep(0.05)
        assert samples(m, "mfud_bpf_sources") == [0.0], "pid still watched after disconnect"
        sleeping = samples(m, "mfud_bpf_offcpu_seconds_total", state="sleeping")[0]
        # more than nothing, less than all its threads (main, sender) asleep throughout, with room
        assert 0 < sleeping < 4 * wall, (sleeping, wall)
        assert samples(m, "mfud_bpf_ringbuf_drops_total") == [0.0]
        assert samples(m, "mfud_bpf_switches_total")[0] >= samples(m, "mfud_bpf_events_total")[0]
        print("# producer ran %.2f s; sleeping %.3f s, runnable %.3f s, %d events" % (
            wall, sleeping, samples(m, "mfud_bpf_offcpu_seconds_total", state="runnable")[0],
            samples(m, "mfud_bpf_events_total")[0]))
    finally:
        c.cleanup()


@tap.check
def offcpu_records_reach_the_archive_and_mfu_trace():
    c = Collector("--bpf=auto", archive=True)
    try:
        if bpf_line(c) != ["mfud: eBPF scheduler tracing on (off-CPU time of local sources)"]:
            print("# skip: " + " ".join(bpf_line(c)))
            return
        t = synth(c.target, os.path.join(c.dir, "t.json"), "--realtime", "--steps", "60", "--layers", "4")
        deadline = time.time() + 10
        while time.time() < deadline:
            m = parse_metrics(c.metrics())
            if samples(m, "mfud_bpf_sources") == [0.0]:
                break
            time.sleep(0.05)
        traced = samples(m, "mfud_bpf_offcpu_seconds_total", state="sleeping")[0]
        assert c.stop() == 0
        files = sorted(os.path.join(c.archive, f) for f in os.listdir(c.archive))
        assert files, "no archive written"
        # the report still adds up (the tracer's frames are no lost frames)
        out = os.path.join(c.dir, "r.json")
        r = subprocess.run([tool("mfu"), "report", "--json", out] + files, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        rep = json.load(open(out))
        assert rep["gemm_flops"] == t["gemm_flops"], (rep["gemm_flops"], t["gemm_flops"])
        assert [p["lost_frames"] for p in rep["per_source"]] == [0], rep["per_source"]
        # and mfu trace shows the off-CPU spells per thread
        tj = os.path.join(c.dir, "trace.json")
        r = subprocess.run([tool("mfu"), "trace", "-o", tj] + files, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        doc = json.load(open(tj))
        evs = doc["traceEvents"] if isinstance(doc, dict) else doc
        off = [e for e in evs if e.get("cat") == "offcpu"]
        assert off, "no off-CPU events in the trace"
        sleeping = sum(e["dur"] for e in off if e["name"] == "sleeping") / 1e6  # trace us -> s
        print("# archive: %d off-CPU spells, sleeping %.3f s in the trace, %.3f s on /metrics" % (
            len(off), sleeping, traced))
        assert abs(sleeping - traced) <= 0.01 * traced + 1e-3, (sleeping, traced)
    finally:
        c.cleanup()


@tap.check
def tracer_mounts_tracefs_itself_when_it_is_missing():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("# skip: needs root and unshare for a private mount namespace")
        return
    # A private mount namespace without tracefs; mfud must mount it to attach.
    script = ('for d in /sys/kernel/debug/tracing /sys/kernel/tracing; do umount "$d" 2>/dev/null; done; '
              '[ -e /sys/kernel/tracing/events/sched ] && exit 3; exec "$0" "$@"')
    try:
        c = Collector("--bpf=auto", prefix=["unshare", "-m", "--propagation", "private", "sh", "-c", script])
    except RuntimeError as e:
        raise AssertionError("mfud did not start in a namespace without tracefs: %s" % e)
    try:
        line = bpf_line(c)
        if line and ("off: not privileged" in line[0] or NOT_BUILT in line[0]):
            print("# skip: " + line[0])
            return
        assert line == ["mfud: eBPF scheduler tracing on (off-CPU time of local sources)"], c.logtext()
    finally:
        c.cleanup()


tap.run()
