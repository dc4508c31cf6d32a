# SPDX-License-Identifier: MIT
"""The real libmfushim.so preloaded into a program that links the fake
libcublas/libcublasLt (tests/fakes), run through `mfu run --json`: the
collector's totals must equal what the program computed from its own calls,
exactly, for every entry point, nested calls, 8 threads and the public API;
the fakes must see every argument and status unchanged; MFU_DISABLE makes the
shim a pure pass-through; an absent collector costs nothing but lost records."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tap, build_dir, tool  # noqa: E402
import wire_py  # noqa: E402

tap = Tap()
SHIM = os.path.join(build_dir(), "shim", "libmfushim.so")
DRIVER = os.path.join(build_dir(), "tests", "gemm_driver")
KEYS = ("gemm_calls", "gemm_flops", "hw_flops", "model_flops", "remat_flops", "hw_flops_by_dtype")


def sanitized():
    out = subprocess.run(["readelf", "-d", SHIM], capture_output=True, text=True).stdout
    return "libasan" in out


def env(**extra):
    e = dict(os.environ)
    for k in ("MFU_COLLECTOR", "MFU_DISABLE", "LD_PRELOAD", "MFU_MODEL_DTYPE"):
        e.pop(k, None)
    e["MFU_SHIM"] = SHIM
    if sanitized():
        # An ASan build of the shim is preloaded ahead of the ASan runtime the
        # (equally instrumented) driver links; the runtime's order check
        # refuses that although both are the same runtime.
        e["ASAN_OPTIONS"] = ":".join(filter(None, [e.get("ASAN_OPTIONS", ""), "verify_asan_link_order=0"]))
    e.update(extra)
    return e


def run_scenario(scenario, **extra):
    """mfu run with the shim; returns (summary, expected, completed process)."""
    tmp = tempfile.mkdtemp(prefix="mfu-shim-")
    js, want = os.path.join(tmp, "summary.json"), os.path.join(tmp, "want.json")
    r = subprocess.run([tool("mfu"), "run", "--interval", "0", "--json", js, "--", DRIVER, scenario, want],
                       capture_output=True, text=True, timeout=120, env=env(**extra))
    assert r.returncode == 0, (scenario, r.returncode, r.stderr)
    with open(js) as f:
        s = json.load(f)
    with open(want) as f:
        w = json.load(f)
    return s, w, r


def assert_totals(s, w):
    for k in KEYS:
        assert s[k] == w[k], (k, s[k], w[k])


@tap.check
def every_entry_point_counts_exact_flops_and_dtype():
    # the fake CUPTI beside the fake cuBLAS is found: kernels are timed and
    # each call's FLOPs ride on its kernel
    s, w, r = run_scenario("table")
    assert_totals(s, w)
    assert s["sources"] == 1 and s["dropped_records"] == 0
    assert "kernel timing unavailable" not in r.stderr, r.stderr
    assert s["kernels"] == s["gemm_calls"], (s["kernels"], s["gemm_calls"])
    assert s["kernel_time_s"] > 0 and s["gpu_busy_s"] > 0
    assert s["per_source"][0]["degraded"] is False
    # every kernel carries its call's FLOPs: the join worked (a broken join
    # would still give exact totals, through the untimed gemm records)
    assert s["windows"]["total"]["coverage"] == 1.0, s["windows"]["total"]
    assert set(w["hw_flops_by_dtype"]) == {"fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8"}, w


@tap.check
def shuffled_records_across_buffer_boundaries_still_join_exactly():
    for seed in ("1", "7"):
        s, w, _ = run_scenario("table", FAKE_CUPTI_SHUFFLE=seed, FAKE_CUPTI_BUFFER_RECORDS="3")
        assert_totals(s, w)
        assert s["kernels"] == s["gemm_calls"]
        assert s["windows"]["total"]["coverage"] == 1.0


@tap.check
def a_call_split_over_three_kernels_counts_its_flops_once():
    s, w, _ = run_scenario("splitk")
    assert_totals(s, w)
    assert s["kernels"] == 3 * s["gemm_calls"] == 60
    # one kernel of three carries the FLOPs, and all three are the call's
    # work: the whole kernel time is covered
    assert s["windows"]["total"]["coverage"] == 1.0, s["windows"]["total"]


@tap.check
def cuda_graph_replays_count_the_captured_gemms_at_every_replay():
    # 1 GEMM, a captured graph (3 GEMMs, one split over 3 kernels, one under
    # remat, and an elementwise kernel), instantiated twice and replayed 4+2
    # times, its graphs destroyed right after the replays, then 1 more GEMM
    s, w, _ = run_scenario("graph")
    assert_totals(s, w)
    assert s["gemm_calls"] == 5
    assert s["kernels"] == 2 + 6 * 6, s["kernels"]
    # the elementwise node is the one kernel in six per replay without FLOPs
    assert abs(s["windows"]["total"]["coverage"] - 32 / 38) < 1e-9, s["windows"]["total"]
    assert s["remat_flops"] > 0 and s["hw_flops"] > s["gemm_flops"]


@tap.check
def cuda_graph_replays_with_shuffled_delivery_still_count_exactly():
    s, w, _ = run_scenario("graph", FAKE_CUPTI_SHUFFLE="3", FAKE_CUPTI_BUFFER_RECORDS="2")
    assert_totals(s, w)


@tap.check
def kernel_records_taken_by_another_profiler_mid_run_still_count_their_flops():
    # 10 GEMMs timed, then another client registers its own activity buffers
    # (as torch.profiler does) and 10 more GEMMs' kernel records go to it:
    # their FLOPs come back untimed as orphans, once; then it lets go and 10
    # more are timed again
    s, w, r = run_scenario("hijack", MFU_KERNEL_TIMEOUT_MS="500")
    assert_totals(s, w)
    assert s["gemm_calls"] == 30 and s["dropped_records"] == 10, (s["gemm_calls"], s["dropped_records"])
    assert r.stderr.count("CUPTI delivered no record for 10 kernel launches") == 1, r.stderr
    # the periodic sweep found them and said degraded; records joining again
    # ended the spell: kernel timing is known, and the spell's length shown
    src = s["per_source"][0]
    assert src["degraded"] is False and s["kernels"] == 20, (src["degraded"], s["kernels"])
    assert 0.3 < src["degraded_s"] < 5, src["degraded_s"]
    # with the default timeout (10 s) only the exit sweep finds them: exact
    # totals still, and the source ends degraded, its kernel time unknown
    s, w, r = run_scenario("hijack")
    assert_totals(s, w)
    assert s["dropped_records"] == 10 and s["per_source"][0]["degraded"] is True
    assert s["kernels"] is None and s["kernel_time_s"] is None, (s["kernels"], s["kernel_time_s"])


@tap.check
def cupti_taken_by_another_profiler_degrades_but_keeps_exact_gemm_flops():
    s, w, r = run_scenario("table", FAKE_CUPTI_REFUSE="subscribe")
    assert_totals(s, w)
    assert s["kernels"] is None and s["gpu_busy_s"] is None, "kernel time is unknown, not zero"
    assert s["per_source"][0]["degraded"] is True
    lines = [l for l in r.stderr.splitlines() if "kernel timing unavailable" in l]
    assert len(lines) == 1 and "another profiler" in lines[0], r.stderr


@tap.check
def cupti_freed_by_another_profiler_is_taken_up_and_timing_resumes():
    # held at start: ten GEMMs untimed, then the other lets go and the
    # shim's retry (every 2 s) subscribes: ten timed; exact throughout
    s, w, r = run_scenario("contention", FAKE_CUPTI_REFUSE="subscribe")
    assert_totals(s, w)
    assert s["gemm_calls"] == 20 and s["kernels"] == 10, (s["gemm_calls"], s["kernels"])
    src = s["per_source"][0]
    assert src["degraded"] is False and src["degraded_s"] > 1, (src["degraded"], src["degraded_s"])
    assert r.stderr.count("kernel timing unavailable") == 1 and "retrying" in r.stderr, r.stderr
    assert r.stderr.count("kernel timing resumed") == 1, r.stderr
    # never freed: degraded to the end, kernel time unknown, no resume
    s, w, r = run_scenario("contention", FAKE_CUPTI_REFUSE="subscribe", GEMM_DRIVER_CUPTI_STAYS_TAKEN="1")
    assert_totals(s, w)
    assert s["kernels"] is None and s["per_source"][0]["degraded"] is True
    assert "kernel timing resumed" not in r.stderr, r.stderr


@tap.check
def cupti_finalized_by_another_profiler_degrades_then_is_taken_back():
    s, w, r = run_scenario("finalize")
    assert_totals(s, w)
    # ten timed, ten untimed while CUPTI was gone, ten timed again
    assert s["gemm_calls"] == 30 and s["kernels"] == 20, (s["gemm_calls"], s["kernels"])
    src = s["per_source"][0]
    assert src["degraded"] is False and src["degraded_s"] > 0.2, (src["degraded"], src["degraded_s"])
    assert r.stderr.count("CUPTI stopped reporting kernel launches") == 1, r.stderr
    assert r.stderr.count("kernel timing resumed") == 1, r.stderr


@tap.check
def the_real_cupti_without_a_driver_degrades_the_same_way():
    import glob
    real = sorted(glob.glob("/usr/local/cuda*/lib*/libcupti.so.13"))
    s, w, r = run_scenario("table", MFU_CUPTI_PATH=real[0] if real else "/nonexistent/libcupti.so.13")
    assert_totals(s, w)
    assert s["kernels"] is None
    lines = [l for l in r.stderr.splitlines() if "kernel timing unavailable" in l]
    assert len(lines) == 1, r.stderr


@tap.check
def nested_cublas_to_cublaslt_call_counts_once():
    s, w, _ = run_scenario("nested")
    assert_totals(s, w)
    assert s["gemm_calls"] == 10


@tap.check
def eight_threads_give_exact_totals():
    s, w, _ = run_scenario("threads")
    assert_totals(s, w)
    assert s["gemm_calls"] == 8 * 5000


@tap.check
def steps_regions_and_remat_split_model_hardware_and_remat_flops():
    s, w, _ = run_scenario("api", MFU_MODEL_DTYPE="bf16")
    assert_totals(s, w)
    assert s["model_flops"] == 3 * 30000000 and s["remat_flops"] > 0
    # a declared region adds hardware FLOPs but is not a GEMM call
    assert s["hw_flops"] == s["gemm_flops"] + 3 * 1000000
    assert s["hfu"] is not None or s["peak_source"] == "unknown"
    # the region's kernels carry its FLOPs (one) and its coverage (both)
    assert s["kernels"] == s["gemm_calls"] + 2 * 2, s["kernels"]
    assert s["windows"]["total"]["coverage"] == 1.0, s["windows"]["total"]


@tap.check
def arguments_and_statuses_pass_through_unchanged():
    s, w, _ = run_scenario("passthrough")  # the driver checks the fakes' probes itself
    assert_totals(s, w)
    assert s["gemm_calls"] == 1, "failed calls are not counted"


@tap.check
def disabled_shim_is_a_pure_pass_through():
    s, w, r = run_scenario("passthrough", MFU_DISABLE="1")
    assert s["sources"] == 0 and s["gemm_calls"] == 0, s
    assert "mfushim" not in r.stderr, r.stderr
    s, w, r = run_scenario("table", MFU_DISABLE="1")
    assert s["sources"] == 0


@tap.check
def absent_collector_costs_only_lost_records():
    tmp = tempfile.mkdtemp(prefix="mfu-shim-")
    r = subprocess.run([DRIVER, "many", os.path.join(tmp, "w.json")], capture_output=True, text=True, timeout=120,
                       env=env(LD_PRELOAD=SHIM, MFU_COLLECTOR="unix:/nonexistent-mfu/mfud.sock", MFU_BUFFER_MB="2"))
    assert r.returncode == 0, r.stderr
    lost = [l for l in r.stderr.splitlines() if "records lost" in l]
    assert len(lost) == 1 and int(lost[0].split()[1]) > 0, r.stderr


@tap.check
def forked_workers_neither_deadlock_nor_report():
    extra = {}
    if sanitized():
        # LeakSanitizer in a forked child still lists the parent's threads
        # and reports their memory as leaked; the parent is checked as usual
        extra["ASAN_OPTIONS"] = env()["ASAN_OPTIONS"] + ":detect_leaks=0"
    s, w, r = run_scenario("fork", **extra)
    by_pid = {p["pid"]: p for p in s["per_source"]}
    assert s["sources"] == 3, s["per_source"]
    calls = sorted(p["gemm_calls"] for p in s["per_source"])
    # the child that used cuBLAS itself: its own source, exact
    assert 50 in calls and any(p["gemm_flops"] == 50 * 2 * 16 ** 3 for p in by_pid.values())
    # the child forked from the running shim: exact too, counted untimed
    late = [p for p in by_pid.values() if p["gemm_calls"] == 30]
    assert len(late) == 1 and late[0]["gemm_flops"] == 30 * 2 * 24 ** 3 and late[0]["degraded"] is True, late
    assert "forked from a process that had started CUDA profiling" in r.stderr, r.stderr
    parent = [p for p in by_pid.values() if p["gemm_calls"] not in (50, 30)]
    assert len(parent) == 1 and parent[0]["gemm_calls"] == w["gemm_calls"], (parent, w)
    assert parent[0]["gemm_flops"] == w["gemm_flops"]


@tap.check
def a_fork_while_another_thread_starts_the_shim_leaves_the_child_counting():
    # the parent's start is held inside CUPTI's subscribe, its start lock
    # taken, while it forks: the child must start a shim of its own (untimed:
    # its parent had begun with CUPTI), not wait for the parent's for good;
    # a child deadlocked past 30 s fails the driver
    s, w, r = run_scenario("fork_starting", **no_leak_check_in_children())
    assert s["sources"] == 2, (s["per_source"], r.stderr)
    child = [p for p in s["per_source"] if p["gemm_calls"] == 20]
    assert len(child) == 1 and child[0]["gemm_flops"] == 20 * 2 * 40 ** 3 and child[0]["degraded"] is True, child
    parent = [p for p in s["per_source"] if p["gemm_calls"] != 20]
    assert len(parent) == 1 and parent[0]["gemm_calls"] == w["gemm_calls"] == 6, (parent, w)
    assert parent[0]["gemm_flops"] == w["gemm_flops"] and parent[0]["degraded"] is False, parent


@tap.check
def a_child_of_a_shim_waiting_for_cupti_does_not_wait_for_it_too():
    # the parent found CUPTI held by another profiler and retries; a child
    # forked from it must never touch CUPTI, so runs no flush thread (the
    # driver's late child checks that it runs 2 threads)
    s, w, r = run_scenario("fork", FAKE_CUPTI_REFUSE="subscribe", **no_leak_check_in_children())
    assert s["sources"] == 3, s["per_source"]
    late = [p for p in s["per_source"] if p["gemm_calls"] == 30]
    assert len(late) == 1 and late[0]["degraded"] is True, late


def no_leak_check_in_children():
    # LeakSanitizer in a forked child lists the parent's threads' memory
    return {"ASAN_OPTIONS": env()["ASAN_OPTIONS"] + ":detect_leaks=0"} if sanitized() else {}


@tap.check
def a_pool_of_short_lived_workers_loses_nothing():
    s, w, _ = run_scenario("pool")
    assert s["sources"] == 17, s["sources"]
    assert s["dropped_records"] == 0
    assert_totals(s, w)


@tap.check
def an_execed_child_is_a_source_of_its_own_and_the_parent_loses_nothing():
    tmp = tempfile.mkdtemp(prefix="mfu-shim-")
    js, want = os.path.join(tmp, "summary.json"), os.path.join(tmp, "want.json")
    r = subprocess.run([tool("mfu"), "run", "--interval", "0", "--json", js, "--", DRIVER, "exec", want],
                       capture_output=True, text=True, timeout=120, env=env(**no_leak_check_in_children()))
    assert r.returncode == 0, r.stderr
    s = json.load(open(js))
    parent, child = json.load(open(want)), json.load(open(want + ".child"))
    assert s["sources"] == 2, s["per_source"]
    by_calls = sorted(p["gemm_calls"] for p in s["per_source"])
    assert by_calls == sorted([parent["gemm_calls"], child["gemm_calls"]]), (by_calls, parent, child)
    for k in ("gemm_calls", "gemm_flops", "hw_flops"):
        assert s[k] == parent[k] + child[k], (k, s[k], parent[k], child[k])


@tap.check
def threads_exiting_with_records_in_their_rings_lose_nothing():
    s, w, r = run_scenario("thread_exit")
    # a hole says where it is: drops counted by the shim, a source cut off
    # before its goodbye, or a collector that stopped reading early
    holes = {k: s[k] for k in ("dropped_records", "sources_cut_off", "lost_frames")}
    assert not any(holes.values()) and "still connected" not in r.stderr, (holes, r.stderr)
    assert_totals(s, w)
    assert s["gemm_calls"] == 4 * 4 * 3000


@tap.check
def the_shim_exports_only_interposers_and_the_api_and_links_no_cuda():
    out = subprocess.run(["nm", "-D", "--defined-only", SHIM], capture_output=True, text=True, check=True).stdout
    syms = [l.split()[-1] for l in out.splitlines() if l.strip()]
    assert all(s.startswith("cublas") or s.startswith("mfu_") for s in syms), syms
    assert "cublasGemmEx" in syms and "cublasLtMatmul" in syms and "mfu_step_end" in syms
    needed = subprocess.run(["readelf", "-d", SHIM], capture_output=True, text=True, check=True).stdout
    for lib in ("libcuda", "libcublas", "libcupti", "libcudart"):
        assert lib not in needed, needed


def archived_records(scenario, **extra):
    """mfu run --archive; returns (every record archived, stderr)."""
    recs, err, _ = archived_records_and_want(scenario, **extra)
    return recs, err


def archived_records_and_want(scenario, **extra):
    """mfu run --archive; returns (every record archived, stderr, the driver's expectations)."""
    import glob
    tmp = tempfile.mkdtemp(prefix="mfu-shim-")
    arch = os.path.join(tmp, "archive")
    r = subprocess.run([tool("mfu"), "run", "--interval", "0", "--archive", arch, "--json", os.path.join(tmp, "s.json"),
                        "--", DRIVER, scenario, os.path.join(tmp, "w.json")],
                       capture_output=True, text=True, timeout=120, env=env(**extra))
    assert r.returncode == 0, (scenario, r.returncode, r.stderr)
    files = sorted(glob.glob(os.path.join(arch, "*.mfa")))
    assert files, os.listdir(arch)
    with open(os.path.join(tmp, "w.json")) as f:
        want = json.load(f)
    return [rec for f in files for rec in wire_py.read_archive(f)], r.stderr, want


@tap.check
def gemm_records_carry_every_field_and_a_time_inside_their_call():
    # with the TSC clock forced on and off; the fields scenario makes one
    # call before the shim calibrates the TSC (20 ms after start), the rest
    # after, and one whose m is too wide for the packed ring record
    for tsc in ("1", "0"):
        recs, err, want = archived_records_and_want("fields", MFU_TSC=tsc, MFU_LOG="1")
        assert ("host clock: TSC" in err) == (tsc == "1"), (tsc, err)
        gemms = sorted((r for r in recs if r["type"] == "gemm"), key=lambda r: r["call"])
        calls = want["fields"]
        assert len(gemms) == len(calls) == 8, (len(gemms), calls)
        for g, c in zip(gemms, calls):
            for key in ("api", "m", "n", "k", "batch", "a_type", "b_type", "c_type", "compute_type", "ops",
                        "flops"):
                assert g[key] == c[key], (tsc, key, g, c)
            assert g["flags"] & 0xf == c["cls"], (tsc, g, c)
            # stamped once, when the call returned: inside the driver's
            # bracket, give or take the TSC conversion (microseconds: a
            # wrong rate or offset is off by milliseconds or more)
            assert g["start_ns"] == g["end_ns"], g
            assert c["before"] - 100_000 <= g["end_ns"] <= c["after"] + 100_000, (tsc, g["end_ns"] - c["before"], c)


@tap.check
def copies_and_synchronizing_calls_reach_the_collector_with_their_fields():
    recs, _ = archived_records("copies")
    copies = [r for r in recs if r["type"] == "copy"]
    api = [r for r in recs if r["type"] == "api"]
    kernels = [r for r in recs if r["type"] == "kernel"]
    # the scenario: a sync 1 MiB HtoD copy, an async 64 KiB DtoH one, a sync
    # 4 KiB memset, all on stream 0 of device 0
    got = sorted((c["op"], c["kind"], c["bytes"]) for c in copies)
    assert got == [(1, 1, 1 << 20), (1, 2, 64 << 10), (2, 0, 4096)], got
    for c in copies:
        assert c["device"] == 0 and c["stream"] == 0 and c["end_ns"] > c["start_ns"] and c["corr"] > 0, c
    by_kind = {}
    for a in api:
        by_kind.setdefault(a["kind"], []).append(a)
    # cuMemcpyHtoD_v2 (276) and cuMemsetD32_v2 (251) are blocking; the async
    # copy's call is no host wait and sends no api record at all
    assert sorted(a["cbid"] for a in by_kind.get(3, [])) == [251, 276], by_kind
    # cuStreamSynchronize, cuEventSynchronize, cuCtxSynchronize
    assert sorted(a["cbid"] for a in by_kind.get(2, [])) == [17, 121, 126], by_kind
    assert len(by_kind.get(1, [])) == len(kernels) == 4, (by_kind, len(kernels))
    assert set(by_kind) == {1, 2, 3}, by_kind
    # a blocking call and the copy it issued share the correlation id; the
    # synchronous copy ends before its call returns
    for a in by_kind[3]:
        c = [c for c in copies if c["corr"] == a["corr"]]
        assert len(c) == 1 and c[0]["end_ns"] <= a["end_ns"], (a, c)
    # one thread, named by its kernel id as the gemm records and the eBPF
    # tracer name it (CUPTI's default would be pthread_self())
    tids = {a["tid"] for a in api}
    gemm_tids = {r["tid"] for r in recs if r["type"] == "gemm"}
    assert len(tids) == 1 and tids != {0} and tids == gemm_tids, (tids, gemm_tids)


@tap.check
def copy_records_refused_by_cupti_leave_kernel_timing_whole():
    recs, err = archived_records("copies", FAKE_CUPTI_REFUSE="copies", MFU_LOG="1")
    assert not [r for r in recs if r["type"] == "copy"]
    assert len([r for r in recs if r["type"] == "kernel"]) == 4
    assert len([r for r in recs if r["type"] == "api" and r["kind"] == 2]) == 3
    assert "CUPTI records no memcpy" in err and "CUPTI records no memset" in err, err
    assert "kernel timing unavailable" not in err, err


@tap.check
def without_driver_api_selection_only_launches_and_syncs_are_sent():
    # the fallback enables every driver record; the shim keeps its own cbids
    recs, err = archived_records("copies", FAKE_CUPTI_NO_DRIVER_API_SELECT="1", MFU_LOG="1")
    api = [r for r in recs if r["type"] == "api"]
    assert "cannot select driver API records" in err, err
    # the async copy's cuMemcpyDtoHAsync_v2 (279) came from CUPTI and was dropped
    assert sorted(a["cbid"] for a in api if a["kind"] != 1) == [17, 121, 126, 251, 276], api


tap.run()
