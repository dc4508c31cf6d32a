# SPDX-License-Identifier: MIT
"""Nothing lost, nothing stalled (doc/reliability.md).  mfud is killed with
SIGKILL in the middle of a GEMM-heavy run of the real shim (fake cuBLAS and
CUPTI) and restarted on the same socket a few seconds later: with a spool,
`mfu report` over both collectors' archives must equal the program's own
totals exactly, with no frame missing from the sequence and no record
dropped.  Archives cut or corrupted anywhere must report exactly the whole
frames before the damage (and after it, for a corrupt byte), with one line
naming the file, the offset and the bytes skipped."""

import glob
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tap, build_dir, free_port, http_get, tool  # noqa: E402

tap = Tap()
SHIM = os.path.join(build_dir(), "shim", "libmfushim.so")
DRIVER = os.path.join(build_dir(), "tests", "gemm_driver")
KEYS = ("gemm_calls", "gemm_flops", "hw_flops", "hw_flops_by_dtype")


def sanitized():
    out = subprocess.run(["readelf", "-d", SHIM], capture_output=True, text=True).stdout
    return "libasan" in out


def shim_env(**extra):
    e = dict(os.environ)
    for k in ("MFU_COLLECTOR", "MFU_DISABLE", "LD_PRELOAD", "MFU_SPOOL_DIR", "MFU_BUFFER_MB"):
        e.pop(k, None)
    e["LD_PRELOAD"] = SHIM
    if sanitized():
        e["ASAN_OPTIONS"] = ":".join(filter(None, [e.get("ASAN_OPTIONS", ""), "verify_asan_link_order=0"]))
    e.update(extra)
    return e


class Mfud:
    """mfud on a given socket and archive directory (so a second one can
    take over from a killed one)."""

    def __init__(self, sock, archive, log):
        self.port = free_port()
        self.log = open(log, "a+")
        self.proc = subprocess.Popen([tool("mfud"), "--socket", sock, "--http", "127.0.0.1:%d" % self.port,
                                      "--settle-ms", "0", "--archive", archive],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                http_get(self.port, "/")
                if os.path.exists(sock):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mfud did not start")

    def summary(self):
        return json.loads(http_get(self.port, "/api/v1/summary"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


def report(files, tmp):
    js = os.path.join(tmp, "report-%d.json" % time.monotonic_ns())
    r = subprocess.run([tool("mfu"), "report", "--json", js] + files, capture_output=True, text=True,
                       timeout=60)
    out = None
    if os.path.exists(js):
        with open(js) as f:
            out = json.load(f)
    return out, r


@tap.check
def collector_killed_mid_run_loses_nothing_with_a_spool():
    tmp = tempfile.mkdtemp(prefix="mfu-rel-")
    try:
        sock = os.path.join(tmp, "run", "mfud.sock")
        archive = os.path.join(tmp, "archive")
        spool = os.path.join(tmp, "spool")
        os.makedirs(spool, mode=0o700)
        log = os.path.join(tmp, "mfud.log")
        want_path = os.path.join(tmp, "want.json")
        first = Mfud(sock, archive, log)
        drv = subprocess.Popen([DRIVER, "steady", want_path], stderr=subprocess.PIPE, text=True,
                               env=shim_env(MFU_COLLECTOR="unix:" + sock, MFU_SPOOL_DIR=spool,
                                            MFU_BUFFER_MB="1", MFU_DRIVER_SECONDS="8"))
        # a run in full flow: the first collector has data from it
        first_summary = None
        deadline = time.time() + 20
        while time.time() < deadline:
            first_summary = first.summary()
            if first_summary["gemm_calls"] > 0:
                break
            time.sleep(0.1)
        assert first_summary and first_summary["gemm_calls"] > 0, first_summary
        time.sleep(1.0)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.log.close()
        # while it is down, the shim spools to a private file: once its
        # buffer is half full, which a slow (sanitized, loaded) run reaches
        # later, so watch until the file shows and a little past it
        modes = set()
        deadline = time.time() + 15
        while time.time() < deadline and drv.poll() is None:
            for p in glob.glob(os.path.join(spool, "*")):
                try:
                    modes.add(stat.S_IMODE(os.stat(p).st_mode))
                except FileNotFoundError:
                    pass
            if modes and deadline > time.time() + 0.5:
                deadline = time.time() + 0.5
            time.sleep(0.05)
        second = Mfud(sock, archive, log)
        _, err = drv.communicate(timeout=180)
        assert drv.returncode == 0, (drv.returncode, err)
        assert "records lost" not in err, err
        with open(want_path) as f:
            want = json.load(f)
        s2 = second.summary()
        second.stop()
        assert modes == {0o600}, modes
        assert os.listdir(spool) == [], os.listdir(spool)  # replayed, then deleted
        # the restarted collector has a part, with nothing missing from its sequence
        assert 0 < s2["gemm_calls"] < want["gemm_calls"], (s2["gemm_calls"], want["gemm_calls"])
        assert all(p["lost_frames"] == 0 for p in s2["per_source"]), s2["per_source"]
        files = sorted(glob.glob(os.path.join(archive, "*")))
        assert any(f.endswith(".tmp") for f in files), files  # the killed collector's last file
        got, r = report(files, tmp)
        assert got is not None, r.stderr
        for k in KEYS:
            assert got[k] == want[k], (k, got[k], want[k], r.stderr)
        assert got["dropped_records"] == 0, got
        assert got["sources"] == 1, got
        assert all(p["lost_frames"] == 0 for p in got["per_source"]), got["per_source"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def entries(data):
    """(start, length) of every archive entry."""
    out, off = [], 16
    while off + 8 + 24 <= len(data):
        header_len, payload_len = struct.unpack_from("<HI", data, off + 8 + 6)
        n = 8 + header_len + payload_len
        out.append((off, n))
        off += n
    assert off == len(data)
    return out


def synth_archive(tmp):
    path = os.path.join(tmp, "whole.mfa")
    subprocess.run([tool("mfu-synth"), "--out", path, "--steps", "30"], check=True, timeout=60)
    with open(path, "rb") as f:
        return f.read()


def write(tmp, name, data):
    p = os.path.join(tmp, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def totals(j):
    return {k: j[k] for k in ("gemm_calls", "gemm_flops", "hw_flops", "model_flops", "kernels", "hw_flops_by_dtype")}


@tap.check
def truncated_archive_reports_the_whole_frames_before_the_cut():
    tmp = tempfile.mkdtemp(prefix="mfu-torn-")
    try:
        data = synth_archive(tmp)
        ents = entries(data)
        assert len(ents) >= 4, len(ents)
        for k in (1, len(ents) // 2, len(ents) - 1):
            start, n = ents[k]
            ref, r = report([write(tmp, "ref%d.mfa" % k, data[:start])], tmp)
            assert ref is not None and r.returncode == 0, r.stderr
            assert ref["gemm_calls"] > 0
            for where, cut in (("header", start + 8 + 10), ("payload", start + n - 7), ("entry", start + 3)):
                name = "cut%d-%s.mfa" % (k, where)
                p = write(tmp, name, data[:cut])
                got, r = report([p], tmp)
                assert got is not None, r.stderr
                assert totals(got) == totals(ref), (k, where, totals(got), totals(ref))
                lines = [ln for ln in r.stderr.splitlines() if "skipped" in ln]
                assert lines == ["mfu report: %s: offset %d: skipped %d bytes (torn entry)" % (p, start, cut - start)], \
                    (k, where, r.stderr)
            # a cut after a whole frame is no damage at all
            got, r = report([write(tmp, "after%d.mfa" % k, data[:start + n])], tmp)
            assert "skipped" not in r.stderr, r.stderr
            if k + 1 < len(ents):
                assert got["gemm_calls"] >= ref["gemm_calls"]
        # inside the file header: no archive to read, said so, non-zero exit
        p = write(tmp, "hdr.mfa", data[:10])
        got, r = report([p], tmp)
        assert r.returncode != 0 and "not an mfu archive" in r.stderr, r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@tap.check
def corrupt_byte_costs_only_its_own_frame():
    tmp = tempfile.mkdtemp(prefix="mfu-bad-")
    try:
        data = synth_archive(tmp)
        ents = entries(data)
        whole, _ = report([write(tmp, "whole2.mfa", data)], tmp)
        for k, at, why in ((len(ents) // 2, 8 + 30, "frame: checksum mismatch"), (2, 8 + 0, "bad magic entry")):
            start, n = ents[k]
            bad = bytearray(data)
            bad[start + at] ^= 0x5A
            p = write(tmp, "bad%d.mfa" % k, bytes(bad))
            ref, _ = report([write(tmp, "without%d.mfa" % k, data[:start] + data[start + n:])], tmp)
            got, r = report([p], tmp)
            assert got is not None, r.stderr
            assert totals(got) == totals(ref), (k, totals(got), totals(ref))
            assert totals(got) != totals(whole)
            lines = [ln for ln in r.stderr.splitlines() if "skipped" in ln]
            assert len(lines) == 1 and lines[0].startswith("mfu report: %s: offset %d: skipped %d bytes (" % (p, start, n)), \
                (r.stderr, start, n)
            assert why.split()[-1] in lines[0], (why, lines[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@tap.check
def rotation_renames_complete_files_and_a_new_collector_never_overwrites():
    tmp = tempfile.mkdtemp(prefix="mfu-rot-")
    try:
        sock = os.path.join(tmp, "mfud.sock")
        archive = os.path.join(tmp, "archive")
        log = os.path.join(tmp, "mfud.log")
        m = Mfud(sock, archive, log)
        m.proc.terminate()
        m.proc.wait(30)
        m.log.close()
        # a small rotation size, and a run of a few frames
        port = free_port()
        p = subprocess.Popen([tool("mfud"), "--socket", sock, "--http", "127.0.0.1:%d" % port, "--settle-ms", "0",
                              "--archive", archive, "--archive-max-mb", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.05)
        subprocess.run([tool("mfu-synth"), "--target", "unix:" + sock, "--steps", "800", "--host", "rot", "--pid", "77",
                        "--totals", os.path.join(tmp, "t.json")], check=True, timeout=120)
        time.sleep(0.5)
        mid = sorted(os.listdir(archive))
        p.send_signal(signal.SIGKILL)
        p.wait()
        # every rotated file is complete (renamed); only the open one is .tmp
        tmps = [f for f in mid if f.endswith(".tmp")]
        done = [f for f in mid if f.endswith(".mfa")]
        assert len(done) >= 1, mid
        assert len(tmps) <= 1, mid
        got, r = report([os.path.join(archive, f) for f in done], tmp)
        assert got is not None and "skipped" not in r.stderr, (done, r.stderr)
        # the same source again on a new collector: its files go to a new group
        before = {f: os.path.getsize(os.path.join(archive, f)) for f in os.listdir(archive)}
        with open(os.path.join(tmp, "t.json")) as f:
            want = json.load(f)
        files = [os.path.join(archive, f) for f in sorted(before)]
        got, r = report(files, tmp)
        assert got["gemm_calls"] == want["gemm_calls"], (got["gemm_calls"], want["gemm_calls"], r.stderr)
        m2 = Mfud(sock, archive, log)
        subprocess.run([tool("mfu-synth"), "--target", "unix:" + sock, "--steps", "2", "--host", "rot", "--pid", "77"],
                       check=True, timeout=60)
        m2.stop()
        after = {f: os.path.getsize(os.path.join(archive, f)) for f in os.listdir(archive)}
        for f, size in before.items():
            assert after.get(f) == size, (f, size, after.get(f))
        assert len(after) > len(before), (sorted(before), sorted(after))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@tap.check
def a_stopping_collector_takes_in_what_producers_already_wrote():
    # mfud frozen, a producer connects (the listen backlog) and writes its
    # whole run, then mfud gets SIGTERM and resumes: the signal and the data
    # are ready at once, and the data must still reach the archive
    tmp = tempfile.mkdtemp(prefix="mfu-drain-")
    try:
        sock, archive = os.path.join(tmp, "mfud.sock"), os.path.join(tmp, "archive")
        m = Mfud(sock, archive, os.path.join(tmp, "mfud.log"))
        m.proc.send_signal(signal.SIGSTOP)
        try:
            subprocess.run([tool("mfu-synth"), "--target", "unix:" + sock, "--steps", "20", "--host", "drain",
                            "--pid", "78", "--totals", os.path.join(tmp, "t.json")], check=True, timeout=60)
            m.proc.send_signal(signal.SIGTERM)
        finally:
            m.proc.send_signal(signal.SIGCONT)
        m.stop()
        with open(os.path.join(tmp, "t.json")) as f:
            want = json.load(f)
        got, r = report(sorted(glob.glob(os.path.join(archive, "*.mfa"))), tmp)
        assert got is not None, r.stderr
        assert got["gemm_calls"] == want["gemm_calls"] and got["hw_flops"] == want["hw_flops"], (got, want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


tap.run()
