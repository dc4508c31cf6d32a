#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Does an intercepted call ever wait for the collector?  Runs the GEMM
driver's `steady` scenario (tests/shim/gemm_driver.c: bursts of cuBLAS calls
against the fake cuBLAS/CUPTI, each call timed by the program itself) with
the shim preloaded, while the collector is
  - none:       no shim at all (the calls' own cost, for reference)
  - healthy:    mfud reading normally
  - stopped:    no collector listening (nothing at the socket)
  - slow:       a fake collector that accepts and reads 1 KB/s
  - restarting: mfud killed with SIGKILL after 1 s and restarted 2 s later
The shim runs with a spool directory and a 1 MiB memory budget, so the slow,
stopped and restarting runs spool.  Prints per-call latency (p50, p99.9,
max, calls over 1 ms) and the p99.9 and max added over `none`, and the
records the shim said it lost (at exit, what a stopped or slow collector
never took, spooled or not, is lost).  Prints figures only: this is
no test, and the machine's noise (other processes, 2 shared cores) shows in
the max column.
  tools/bench/stall.py [BUILD_DIR] [SECONDS]"""

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

B = sys.argv[1] if len(sys.argv) > 1 else "build"
SECS = sys.argv[2] if len(sys.argv) > 2 else "4"
DRIVER = os.path.join(B, "tests", "gemm_driver")
SHIM = os.path.realpath(os.path.join(B, "shim", "libmfushim.so"))
MFUD = os.path.join(B, "collector", "mfud")


def start_mfud(sock, tmp):
    log = open(os.path.join(tmp, "mfud.log"), "a")
    p = subprocess.Popen([MFUD, "--socket", sock, "--settle-ms", "0", "--http", "127.0.0.1:0"],
                         stdout=log, stderr=log)
    deadline = time.time() + 10
    while not os.path.exists(sock) and time.time() < deadline:
        time.sleep(0.02)
    return p


def slow_collector(sock, stop):
    """Accepts and reads 1 KB/s per connection."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(sock)
    ls.listen(8)
    ls.settimeout(0.1)
    conns = []
    while not stop.is_set():
        try:
            c, _ = ls.accept()
            c.setblocking(False)
            conns.append(c)
        except socket.timeout:
            pass
        for c in conns:
            try:
                c.recv(100)  # 100 bytes per 0.1 s
            except BlockingIOError:
                pass
    for c in conns:
        c.close()
    ls.close()


def run(case, tmp):
    sock = os.path.join(tmp, case + ".sock")
    spool = os.path.join(tmp, "spool-" + case)
    os.makedirs(spool, exist_ok=True)
    want = os.path.join(tmp, case + ".json")
    env = dict(os.environ, MFU_DRIVER_SECONDS=SECS, MFU_COLLECTOR="unix:" + sock, MFU_SPOOL_DIR=spool,
               MFU_BUFFER_MB="1")
    env.pop("LD_PRELOAD", None)
    if case != "none":
        env["LD_PRELOAD"] = SHIM
    helper, stop = None, threading.Event()
    if case == "healthy" or case == "restarting":
        helper = start_mfud(sock, tmp)
    elif case == "slow":
        t = threading.Thread(target=slow_collector, args=(sock, stop))
        t.start()
        time.sleep(0.2)
    drv = subprocess.Popen([DRIVER, "steady", want], env=env, stderr=subprocess.PIPE, text=True)
    if case == "restarting":
        time.sleep(1)
        helper.send_signal(signal.SIGKILL)
        helper.wait()
        time.sleep(2)
        helper = start_mfud(sock, tmp)
    _, err = drv.communicate()
    if case == "slow":
        stop.set()
        t.join()
    if helper:
        helper.terminate()
        helper.wait()
    with open(want) as f:
        w = json.load(f)
    lost = [ln for ln in err.splitlines() if "records lost" in ln]
    return w, (lost[0].split(":")[1].split("(")[0].strip() if lost else "0")


def main():
    tmp = tempfile.mkdtemp(prefix="mfu-stall-")
    try:
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
        print("command: %s %s %s   (%s, %s, %d CPUs, %s s per case)" % (
            sys.argv[0], B, SECS, time.strftime("%Y-%m-%d", time.gmtime()), cpu, os.cpu_count(), SECS))
        print("%-11s %9s %8s %9s %10s %9s %10s %6s  %s" % ("collector", "calls", "p50 ns", "p99.9 ns", "max ns",
                                                           "+p99.9", "+max", ">1ms", "shim says lost"))
        base = None
        for case in ("none", "healthy", "stopped", "slow", "restarting"):
            w, lost = run(case, tmp)
            if base is None:
                base = w
            print("%-11s %9d %8d %9d %10d %9d %10d %6d  %s" % (
                case, w["lat_calls"], w["lat_p50_ns"], w["lat_p999_ns"], w["lat_max_ns"],
                w["lat_p999_ns"] - base["lat_p999_ns"], w["lat_max_ns"] - base["lat_max_ns"],
                w["lat_over_1ms"], "-" if case == "none" else lost))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
