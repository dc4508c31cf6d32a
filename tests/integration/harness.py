# SPDX-License-Identifier: MIT
"""Shared pieces of the integration tests: TAP output, starting mfud and
producers on private sockets and free ports, reading its HTTP endpoints.
Standard library only, so the tests run on a bare CI machine."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request


class Tap:
    """Runs named checks, prints TAP, exits non-zero if any failed."""

    def __init__(self):
        self.checks = []

    def check(self, fn):
        self.checks.append(fn)
        return fn

    def run(self):
        print("1..%d" % len(self.checks), flush=True)
        failed = 0
        for i, fn in enumerate(self.checks, 1):
            name = fn.__name__
            try:
                fn()
                print("ok %d - %s" % (i, name), flush=True)
            except Exception:  # noqa: BLE001 - any failure is a failed check
                failed += 1
                print("not ok %d - %s" % (i, name), flush=True)
                for line in traceback.format_exc().splitlines():
                    print("# " + line, flush=True)
        sys.exit(1 if failed else 0)


def build_dir():
    return os.environ.get("MFU_BUILD") or sys.argv[1]


def tool(name):
    b = build_dir()
    for rel in ("collector/" + name, "tools/" + name):
        p = os.path.join(b, rel)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode("utf-8")


class Collector:
    """mfud on a private socket and a free HTTP port, stopped on exit."""

    def __init__(self, *extra, archive=False, prefix=()):
        self.dir = tempfile.mkdtemp(prefix="mfu-it-")
        self.sock = os.path.join(self.dir, "run", "mfud.sock")
        self.port = free_port()
        self.archive = os.path.join(self.dir, "archive") if archive else None
        args = list(prefix) + [tool("mfud"), "--socket", self.sock, "--http", "127.0.0.1:%d" % self.port,
                "--settle-ms", "0"]
        if self.archive:
            args += ["--archive", self.archive]
        self.log = open(os.path.join(self.dir, "mfud.log"), "w+")
        self.proc = subprocess.Popen(args + list(extra), stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                http_get(self.port, "/")
                if os.path.exists(self.sock):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mfud did not start: " + self.logtext())

    @property
    def target(self):
        return "unix:" + self.sock

    def summary(self):
        return json.loads(http_get(self.port, "/api/v1/summary"))

    def metrics(self):
        return http_get(self.port, "/metrics")

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_for(self, pred, timeout=15):
        """Polls the summary until pred(summary) holds; returns it."""
        deadline = time.time() + timeout
        s = None
        while time.time() < deadline:
            s = self.summary()
            if pred(s):
                return s
            time.sleep(0.1)
        raise AssertionError("condition not reached; last summary: %s" % json.dumps(s)[:2000])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def synth(target, totals, *args, timeout=60, env=None):
    """Runs mfu-synth against a collector; returns its exact totals."""
    cmd = [tool("mfu-synth"), "--target", target, "--totals", totals] + list(args)
    subprocess.run(cmd, check=True, timeout=timeout, env=env)
    with open(totals) as f:
        return json.load(f)


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            labels = {}
            body = rest[:-1]
            i = 0
            while i < len(body):
                eq = body.index("=", i)
                key = body[i:eq]
                j = eq + 2
                val = []
                while body[j] != '"':
                    if body[j] == "\\":
                        j += 1
                        val.append({"n": "\n", "\\": "\\", '"': '"'}[body[j]])
                    else:
                        val.append(body[j])
                    j += 1
                labels[key] = "".join(val)
                i = j + 2 if j + 1 < len(body) and body[j + 1] == "," else j + 1
        else:
            name, labels = name_labels, {}
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def samples(metrics, name, **want):
    """Values of `name` whose labels include `want`."""
    return [v for (n, labels), v in metrics.items()
            if n == name and all(dict(labels).get(k) == str(x) for k, x in want.items())]


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)
