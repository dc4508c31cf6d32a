# SPDX-License-Identifier: MIT
"""Access control and connection hygiene (doc/security.md), end to end:
socket and directory modes, the SO_PEERCRED uid check (a producer run as
nobody), the flag on a hello whose pid is not the kernel's, the TCP token
(missing, wrong, right, from a file), oversized hellos, the hello and idle
timeouts, and stalled or trickling clients that must not hold up a normal
producer or /metrics.  Runs as root (setuid to nobody); without root the
uid check is skipped with the reason printed."""

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Collector, Tap, free_port, http_get, parse_metrics, samples, synth, tool)  # noqa: E402
from wire_py import crc32c, frame, varint, zigzag, string as s  # noqa: E402

tap = Tap()
NOBODY = 65534
TOKEN = "it-secret-7d1f"


# ---- a minimal producer speaking the wire format (doc/wire-format.md) ----

def hello(pid=77, host=b"hand-made", token=None):
    body = (varint(1) + varint(pid) + varint(zigzag(0)) + varint(zigzag(-1)) + varint(1) + varint(2)
            + s(host) + s(b"job") + s(b"test_access") + varint(0))
    if token is not None:
        body += s(token)
    return varint(1) + varint(len(body)) + body


def connect(c):
    so = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    so.connect(c.sock)
    return so


def closed_by_peer(so, timeout):
    """True when the collector closes so within timeout seconds.  What it
    writes before that (acknowledgements, doc/wire-format.md) is read and
    skipped."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            so.settimeout(left)
            if so.recv(4096) == b"":
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def metric(c, name, **labels):
    v = samples(parse_metrics(c.metrics()), name, **labels)
    assert len(v) == 1, (name, labels, v)
    return v[0]


def wait_metric(c, name, want, timeout=10, at_least=False, **labels):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = metric(c, name, **labels)
        if v == want or (at_least and v >= want):
            return v
        time.sleep(0.05)
    raise AssertionError("%s%s != %s; log:\n%s" % (name, labels, want, c.logtext()))


def mfud_fails(*args, env=None):
    """Runs mfud expected to refuse to start; returns its stderr."""
    p = subprocess.run([tool("mfud")] + list(args), capture_output=True, text=True, timeout=20, env=env)
    assert p.returncode != 0, p
    return p.stderr


# ---- modes ----

@tap.check
def default_socket_dir_is_0700_and_socket_0600():
    c = Collector()
    try:
        d = os.stat(os.path.dirname(c.sock))
        so = os.lstat(c.sock)
        assert stat.S_IMODE(d.st_mode) == 0o700, oct(d.st_mode)
        assert stat.S_ISSOCK(so.st_mode) and stat.S_IMODE(so.st_mode) == 0o600, oct(so.st_mode)
    finally:
        c.cleanup()


@tap.check
def socket_group_mode_is_0750_and_0660_owned_by_the_group():
    gid = 4242 if os.geteuid() == 0 else os.getegid()
    c = Collector("--socket-group", str(gid))
    try:
        d = os.stat(os.path.dirname(c.sock))
        so = os.lstat(c.sock)
        assert stat.S_IMODE(d.st_mode) == 0o750 and d.st_gid == gid, (oct(d.st_mode), d.st_gid)
        assert stat.S_IMODE(so.st_mode) == 0o660 and so.st_gid == gid, (oct(so.st_mode), so.st_gid)
    finally:
        c.cleanup()


@tap.check
def existing_dir_others_may_write_is_refused_and_left_alone():
    tmp = tempfile.mkdtemp(prefix="mfu-it-")
    run = os.path.join(tmp, "run")
    os.mkdir(run)
    os.chmod(run, 0o777)
    try:
        err = mfud_fails("--socket", os.path.join(run, "mfud.sock"), "--http", "off")
        lines = [ln for ln in err.splitlines() if "cannot listen" in ln]
        assert len(lines) == 1 and "not be writable by group or others" in lines[0], err
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o777
        assert not os.path.exists(os.path.join(run, "mfud.sock"))
    finally:
        os.rmdir(run)
        os.rmdir(tmp)


# ---- peers on the unix socket ----

def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def run_synth_as_nobody(c, totals, *args):
    os.chmod(c.dir, 0o755)  # mkdtemp's 0700 would stop nobody before the socket's own rules
    tdir = os.path.dirname(totals)
    os.makedirs(tdir, exist_ok=True)
    os.chown(tdir, NOBODY, NOBODY)
    subprocess.run([tool("mfu-synth"), "--target", c.target, "--totals", totals] + list(args),
                   check=True, timeout=60, preexec_fn=as_nobody)
    with open(totals) as f:
        return json.load(f)


@tap.check
def uid_not_allowed_is_rejected_and_leaves_no_source():
    if os.geteuid() != 0:
        print("# skipped: needs root to run a producer as another uid")
        return
    # the group lets nobody reach the socket; --allow-uid does not name it
    c = Collector("--socket-group", str(NOBODY), "--allow-uid", "4242")
    try:
        totals = os.path.join(c.dir, "nobody", "t.json")
        run_synth_as_nobody(c, totals, "--steps", "1")
        # the producer's sender retries, and each try is refused the same way
        n = wait_metric(c, "mfud_rejected_connections_total", 1, at_least=True, reason="uid")
        s = c.summary()
        assert s["sources"] == 0, s
        lines = [ln for ln in c.logtext().splitlines() if "rejected" in ln]
        assert len(lines) >= n and all("uid=%d" % NOBODY in ln and "uid not allowed" in ln for ln in lines), lines
        m = parse_metrics(c.metrics())
        assert not [k for k in m if k[0].startswith("mfu_source")], "a rejected peer made series"
    finally:
        c.cleanup()


@tap.check
def allowed_uid_and_group_members_are_accepted():
    if os.geteuid() != 0:
        print("# skipped: needs root to run a producer as another uid")
        return
    for extra in (("--allow-uid", "4242,%d" % NOBODY), ()):
        c = Collector("--socket-group", str(NOBODY), *extra)
        try:
            t = run_synth_as_nobody(c, os.path.join(c.dir, "nobody", "t.json"), "--steps", "2")
            c.wait_for(lambda s: s["sources"] == 1 and s["hw_flops"] == t["hw_flops"])
            assert metric(c, "mfud_rejected_connections_total", reason="uid") == 0
        finally:
            c.cleanup()


@tap.check
def hello_pid_other_than_the_kernels_is_flagged_not_trusted():
    c = Collector()
    try:
        totals = os.path.join(c.dir, "t.json")
        p = subprocess.Popen([tool("mfu-synth"), "--target", c.target, "--totals", totals, "--pid", "999999",
                              "--steps", "2"])
        real_pid = p.pid
        assert p.wait(60) == 0
        s = c.wait_for(lambda s: s["sources"] == 1)
        src = s["per_source"][0]
        assert src["pid"] == 999999 and src["pid_mismatch"] is True and src["peer_pid"] == real_pid, src
        assert metric(c, "mfud_hello_pid_mismatch_total") == 1
        lines = [ln for ln in c.logtext().splitlines() if "claims pid" in ln]
        assert len(lines) == 1 and "999999" in lines[0] and str(real_pid) in lines[0], lines
        # an honest producer is not flagged
        so = connect(c)
        so.sendall(frame(hello(pid=os.getpid())))
        s = c.wait_for(lambda s: s["sources"] == 2)
        mine = [x for x in s["per_source"] if x["pid"] == os.getpid()][0]
        assert mine["pid_mismatch"] is False and "peer_pid" not in mine, mine
        so.close()
    finally:
        c.cleanup()


# ---- TCP and its token ----

@tap.check
def tcp_listener_without_a_token_does_not_start():
    env = {k: v for k, v in os.environ.items() if k not in ("MFU_TOKEN", "MFU_TOKEN_FILE")}
    tmp = tempfile.mkdtemp(prefix="mfu-it-")
    try:
        err = mfud_fails("--socket", os.path.join(tmp, "s.sock"), "--http", "off",
                         "--listen", "127.0.0.1:%d" % free_port(), env=env)
        assert "needs a shared token" in err, err
        env["MFU_TOKEN_FILE"] = os.path.join(tmp, "missing")
        err = mfud_fails("--socket", os.path.join(tmp, "s.sock"), "--http", "off",
                         "--listen", "127.0.0.1:%d" % free_port(), env=env)
        assert "token from %s" % env["MFU_TOKEN_FILE"] in err and len(err.strip().splitlines()) == 1, err
    finally:
        os.rmdir(tmp)


def tcp_collector(*extra, env_token=TOKEN):
    port = free_port()
    old = os.environ.get("MFU_TOKEN")
    if env_token is not None:
        os.environ["MFU_TOKEN"] = env_token
    try:
        c = Collector("--listen", "127.0.0.1:%d" % port, *extra)
    finally:
        if old is None:
            os.environ.pop("MFU_TOKEN", None)
        else:
            os.environ["MFU_TOKEN"] = old
    return c, "tcp:127.0.0.1:%d" % port


def env_with(**kv):
    env = {k: v for k, v in os.environ.items() if k not in ("MFU_TOKEN", "MFU_TOKEN_FILE")}
    env.update(kv)
    return env


@tap.check
def tcp_producer_needs_the_right_token():
    c, target = tcp_collector()
    try:
        tmp = c.dir
        synth(target, os.path.join(tmp, "a.json"), "--steps", "1", "--pid", "11", env=env_with())
        wait_metric(c, "mfud_rejected_connections_total", 1, at_least=True, reason="no_token")
        synth(target, os.path.join(tmp, "b.json"), "--steps", "1", "--pid", "12",
              env=env_with(MFU_TOKEN="not-" + TOKEN))
        wait_metric(c, "mfud_rejected_connections_total", 1, at_least=True, reason="wrong_token")
        assert c.summary()["sources"] == 0
        t = synth(target, os.path.join(tmp, "c.json"), "--steps", "3", "--pid", "13",
                  env=env_with(MFU_TOKEN=TOKEN))
        s = c.wait_for(lambda s: s["sources"] == 1 and s["hw_flops"] == t["hw_flops"])
        assert s["per_source"][0]["pid"] == 13
        log = c.logtext()
        assert TOKEN not in log and ("not-" + TOKEN) not in log, "a token reached the log"
        rej = [ln for ln in log.splitlines() if "rejected" in ln]
        assert rej and all(ln.startswith("mfud: rejected tcp:127.0.0.1:") for ln in rej), rej
        m = parse_metrics(c.metrics())
        pids = {dict(k[1]).get("pid") for k in m if k[0] == "mfu_source_up"}
        assert pids == {"13"}, pids
    finally:
        c.cleanup()


@tap.check
def token_file_works_on_both_sides():
    tmp = tempfile.mkdtemp(prefix="mfu-it-tok-")
    tf = os.path.join(tmp, "token")
    with open(tf, "w") as f:
        f.write(TOKEN + "\n")
    c, target = tcp_collector("--token-file", tf, env_token=None)
    try:
        t = synth(target, os.path.join(c.dir, "t.json"), "--steps", "2", env=env_with(MFU_TOKEN_FILE=tf))
        c.wait_for(lambda s: s["sources"] == 1 and s["hw_flops"] == t["hw_flops"])
    finally:
        c.cleanup()
        os.unlink(tf)
        os.rmdir(tmp)


@tap.check
def http_off_loopback_gets_a_warning():
    c = Collector()
    try:
        assert "warning" not in c.logtext(), c.logtext()
    finally:
        c.cleanup()
    tmp = tempfile.mkdtemp(prefix="mfu-it-")
    port = free_port()
    p = subprocess.Popen([tool("mfud"), "--socket", os.path.join(tmp, "run", "s.sock"), "--http",
                          "0.0.0.0:%d" % port], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                http_get(port, "/")
                break
            except OSError:
                time.sleep(0.05)
        p.terminate()
        err = p.communicate(timeout=10)[1]
        warn = [ln for ln in err.splitlines() if "warning" in ln]
        assert len(warn) == 1 and "0.0.0.0:%d" % port in warn[0] and "exposed" in warn[0], err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", tmp])


# ---- oversized hellos, timeouts, stalled clients ----

@tap.check
def huge_first_frame_is_rejected_from_its_header():
    c = Collector()
    try:
        so = connect(c)
        # a header announcing 3 MiB: refused without waiting for (or holding) it
        head = b"FMUw" + bytes([1, 0]) + struct.pack("<HIII", 24, 3 << 20, 3 << 20, 0)
        so.sendall(head + struct.pack("<I", crc32c(head)))
        assert closed_by_peer(so, 10), "collector kept a connection announcing a 3 MiB first frame"
        so.close()
        wait_metric(c, "mfud_rejected_connections_total", 1, reason="hello_size")
        so = connect(c)
        so.sendall(frame(hello(host=b"h" * 5000)))
        assert closed_by_peer(so, 10), "collector kept a connection with a 5000-byte host name"
        so.close()
        wait_metric(c, "mfud_rejected_connections_total", 2, reason="hello_size")
        assert c.summary()["sources"] == 0
        assert metric(c, "mfud_stream_errors_total") == 0
        lines = [ln for ln in c.logtext().splitlines() if "oversized hello" in ln]
        assert len(lines) == 2, c.logtext()
    finally:
        c.cleanup()


@tap.check
def silent_connections_time_out_before_and_after_hello():
    c = Collector("--hello-timeout", "1", "--idle-timeout", "2")
    try:
        half = connect(c)
        half.sendall(frame(hello())[:10])  # half a header, then nothing
        quiet = connect(c)
        quiet.sendall(frame(hello(pid=78)))  # a hello, then nothing
        c.wait_for(lambda s: s["sources"] == 1)
        assert closed_by_peer(half, 10)
        wait_metric(c, "mfud_timed_out_connections_total", 1, phase="hello")
        assert closed_by_peer(quiet, 10)
        wait_metric(c, "mfud_timed_out_connections_total", 1, phase="idle")
        assert c.summary()["per_source"][0]["connected"] is False
        log = c.logtext()
        assert "no hello within 1000 ms" in log and "nothing received for 2 s" in log, log
    finally:
        c.cleanup()


@tap.check
def stalled_and_trickling_clients_do_not_hold_up_a_producer_or_metrics():
    c = Collector("--hello-timeout", "30")
    try:
        stalled = connect(c)
        f = frame(hello(pid=5))
        stalled.sendall(f[:len(f) // 2])  # half a frame, then silence
        trickle = socket.create_connection(("127.0.0.1", c.port))
        req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        trickle.sendall(req[:1])
        # a normal producer meanwhile, and /metrics asked while both stall
        p = subprocess.Popen([tool("mfu-synth"), "--target", c.target, "--totals",
                              os.path.join(c.dir, "t.json"), "--steps", "8", "--pid", "31"])
        latencies = []
        for i in range(1, 4):
            time.sleep(1)
            trickle.sendall(req[i:i + 1])
            t0 = time.monotonic()
            m = c.metrics()
            latencies.append(time.monotonic() - t0)
            assert "mfud_sources" in m
        assert p.wait(60) == 0
        with open(os.path.join(c.dir, "t.json")) as fh:
            t = json.load(fh)
        s = c.wait_for(lambda s: s["sources"] == 1)
        src = s["per_source"][0]
        for k in ("gemm_flops", "hw_flops", "model_flops", "gemm_calls", "kernels"):
            assert src[k] == int(t[k]), (k, src[k], t[k])
        print("# /metrics latencies with a stalled producer and a trickling HTTP client: %s s"
              % ", ".join("%.4f" % x for x in latencies))
        assert c.summary()["sources"] == 1  # the stalled half frame made no source
        stalled.close()
        trickle.close()
    finally:
        c.cleanup()


tap.run()
