# SPDX-License-Identifier: MIT
"""A real Prometheus server (Debian's package) on loopback scrapes mfud, and
the HFU series read back through Prometheus's query API equals what mfud
computed.  Proves the exposition is usable by the thing users will point at
it, not only by promtool."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Collector, Tap, close, free_port, synth  # noqa: E402

tap = Tap()
state = {}


def prom_query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


@tap.check
def prometheus_scrapes_mfud_and_serves_hfu_back():
    if not shutil.which("prometheus"):
        raise AssertionError("prometheus is not installed (tools/install-deps.sh installs it)")
    c = Collector()
    state["c"] = c
    t = synth(c.target, os.path.join(c.dir, "t.json"), "--job", "promtest", "--rank", "3", "--steps", "5")
    s = c.wait_for(lambda s: s["sources"] == 1 and s["gemm_flops"] == t["gemm_flops"])
    want = s["per_source"][0]["devices"][0]["total"]["hfu"]
    assert 0 < want < 1

    port = free_port()
    cfg = os.path.join(c.dir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: mfud\n    honor_labels: true\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % c.port)
    log = open(os.path.join(c.dir, "prometheus.log"), "w")
    p = subprocess.Popen(["prometheus", "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(c.dir, "tsdb"),
                          "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                         stdout=log, stderr=log)
    state["prom"] = p
    q = 'mfu_hfu_ratio{job="promtest",rank="3",window="total"}'
    deadline = time.time() + 60
    got = []
    while time.time() < deadline:
        try:
            got = prom_query(port, q)
            if got:
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert got, "no series from Prometheus for " + q
    assert len(got) == 1, got
    labels = got[0]["metric"]
    assert labels["peak_source"] == "table:NVIDIA H100 SXM5" and labels["peak_dtype"] == "bf16", labels
    value = float(got[0]["value"][1])
    # the source finished, so its since-start HFU no longer changes
    assert close(value, want, 1e-9), (value, want)

    # a PromQL aggregation across the series works on our counters too
    r = prom_query(port, 'sum(mfu_gemm_flops_total{job="promtest"})')
    assert close(float(r[0]["value"][1]), float(t["gemm_flops"]), 1e-12), r


try:
    tap.run()
finally:
    if "prom" in state:
        state["prom"].terminate()
        state["prom"].wait(10)
    if "c" in state:
        state["c"].cleanup()
