#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Many sources through one mfud, all at once (issue 6, "Load"): N synthetic
# producers (mfu-synth, each a separate process streaming over the Unix
# socket) each send about R records.  Then every source's record count and
# exact totals in mfud's /api/v1/summary are compared with what its producer
# says it sent (--totals), and mfud's peak RSS (VmHWM) and CPU time are
# printed.  Exits 1 if any record is unaccounted for.
#   tools/bench/load_sources.sh [BUILD_DIR] [SOURCES] [RECORDS_PER_SOURCE]
# Defaults: build, 256 sources, 1000000 records each.  MFUD_ARGS: more mfud
# flags (e.g. --no-gaps).
set -euo pipefail
B=${1:-build}
N=${2:-256}
R=${3:-1000000}
synth=$B/tools/mfu-synth
mfud=$B/collector/mfud
tmp=$(mktemp -d)
mfud_pid=
cleanup() {
	[ -n "$mfud_pid" ] && kill "$mfud_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# mfu-synth's default model makes ~760 records per step
steps=$(( (R + 759) / 760 ))
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$mfud" --socket "$tmp/mfud.sock" --http "127.0.0.1:$port" --retain 0 --quiet ${MFUD_ARGS:-} 2>"$tmp/mfud.log" &
mfud_pid=$!
for _ in $(seq 100); do [ -S "$tmp/mfud.sock" ] && break; sleep 0.05; done
echo "command: ${MFUD_ARGS:+MFUD_ARGS=\"$MFUD_ARGS\" }$0 $*   ($(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs)"
echo "$N sources x ~$R records ($steps steps each), all started at once"

t0=$(date +%s.%N)
pids=()
for i in $(seq 1 "$N"); do
	"$synth" --target "unix:$tmp/mfud.sock" --steps "$steps" --pid $((100000 + i)) --host "load$i" \
		--rank $((i - 1)) --world-size "$N" --job load --seed "$i" --totals "$tmp/totals.$i.json" \
		2>"$tmp/synth.$i.log" &
	pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
t1=$(date +%s.%N)
[ "$failed" -eq 0 ] || { echo "$failed producers failed:"; cat "$tmp"/synth.*.log | sort | uniq -c | head; exit 1; }

# every producer has closed its connection; wait until mfud has applied it all
python3 - "$tmp" "$N" "$port" "$mfud_pid" "$t0" "$t1" <<'PY'
import json, sys, time, urllib.request
tmp, n, port, pid, t0, t1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
sent = {}
for i in range(1, n + 1):
    t = json.load(open(f"{tmp}/totals.{i}.json"))
    sent[100000 + i] = t
def summary():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/summary", timeout=30) as r:
        return json.load(r)
deadline = time.time() + 120
while True:
    s = summary()
    got = {p["pid"]: p for p in s["per_source"]}
    done = len(got) == n and all(not p["connected"] for p in got.values())
    if done or time.time() > deadline:
        break
    time.sleep(0.5)
bad = []
fields = ["kernels", "gemm_calls", "gemm_flops", "hw_flops", "model_flops", "remat_flops"]
records_sent = records_got = 0
for p, t in sent.items():
    g = got.get(p)
    if g is None:
        bad.append(f"pid {p}: no source in mfud")
        continue
    # Frames are the unit that can go missing: the collector counts every
    # frame the sender wrote and every gap in their sequence numbers.
    records_sent += t["records"]
    records_got += g["records"]
    if g["frames"] != t["frames_sent"]:
        bad.append(f"pid {p}: mfud counted {g['frames']} frames, sender wrote {t['frames_sent']}")
    if t["sender_dropped"]:
        bad.append(f"pid {p}: the sender dropped {t['sender_dropped']} records")
    for f in fields:
        if int(g[f]) != int(t[f]):
            bad.append(f"pid {p}: {f} {g[f]} != sent {t[f]}")
    if g["lost_frames"] or int(g["dropped_records"]):
        bad.append(f"pid {p}: lost_frames {g['lost_frames']} dropped {g['dropped_records']}")
status = open(f"/proc/{pid}/status").read()
hwm = next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]
stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
tick = 100.0
cpu = (int(stat[11]) + int(stat[12])) / tick
print(f"records: {records_sent} generated, {records_got} taken in by mfud (with the senders' status and "
      f"goodbye records); sources {len(got)}/{n}; problems {len(bad)}")
for b in bad[:10]:
    print("  " + b)
print(f"producers ran {t1 - t0:.1f} s; mfud peak RSS {int(hwm) / 1024:.1f} MiB; mfud CPU {cpu:.1f} s "
      f"({records_got / cpu / 1e6 if cpu else 0:.1f} M records per CPU-second)")
sys.exit(1 if bad else 0)
PY
