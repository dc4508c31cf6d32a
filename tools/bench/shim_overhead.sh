#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Shim per-call overhead against the fake cuBLAS, in one run:
#   ns/call (best of 5, runs alternating) and callgrind instructions/call in
#   the calling thread, for
#   - without: no shim; the fake CUPTI is preloaded, so each fake kernel
#     launch costs what it costs in the runs with the shim
#   - API path: the shim with CUPTI refused (FAKE_CUPTI_REFUSE=all): what
#     the shim itself adds to a GEMM call (the target: <= 100 ns, <= 400
#     instructions)
#   - timed: the shim with kernel timing through the fake CUPTI, which then
#     builds three activity records per launch on the calling thread; that
#     record making stands in for the real CUPTI's, whose cost only a GPU
#     run shows (doc/validation.md), so the shim's own share is printed too.
# A collector (mfu run) reads the records in the ns/call runs.
#   tools/bench/shim_overhead.sh [BUILD_DIR]
set -euo pipefail
B=${1:-build}
bench=$B/tests/bench_shim
shim=$(realpath "$B/shim/libmfushim.so")
cupti=$(realpath "$B/tests/fakes/libcupti.so.13")
mfu=$B/tools/mfu
N=1000000
echo "command: $0 $B   ($(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, N=$N)"
best() { printf '%s\n' "$@" | sort -n | head -1; }
plain=(); api=(); timed=(); plain_c=(); api_c=(); timed_c=()
run() { "$@" 2>/dev/null | awk '/ns\/call wall/ {print $1, $4}'; }
for i in 1 2 3 4 5; do
	read -r w c < <(run env LD_PRELOAD="$cupti" "$bench" $N); plain+=("$w"); plain_c+=("$c")
	read -r w c < <(run env FAKE_CUPTI_REFUSE=all MFU_SHIM="$shim" "$mfu" run --interval 0 -- "$bench" $N)
	api+=("$w"); api_c+=("$c")
	read -r w c < <(run env MFU_SHIM="$shim" "$mfu" run --interval 0 -- "$bench" $N); timed+=("$w"); timed_c+=("$c")
done
row() { # label, best wall, best cpu
	printf '  %-36s %8s %8s   added: %6s %6s\n' "$1" "$2" "$3" "$(echo "$2 - $pw" | bc)" "$(echo "$3 - $pc" | bc)"
}
pw=$(best "${plain[@]}"); pc=$(best "${plain_c[@]}")
echo "ns/call (best of 5)                        wall   thread-CPU          wall thread-CPU"
row "without shim" "$pw" "$pc"
row "API path, CUPTI refused (target 100)" "$(best "${api[@]}")" "$(best "${api_c[@]}")"
row "timed: shim + fake CUPTI records" "$(best "${timed[@]}")" "$(best "${timed_c[@]}")"
echo "  all runs, wall:       without ${plain[*]} | API ${api[*]} | timed ${timed[*]}"
echo "  all runs, thread CPU: without ${plain_c[*]} | API ${api_c[*]} | timed ${timed_c[*]}"
# Paced: 100 k calls/s, as a training step makes them, time inside the calls
# only (mean below p99, so that preemptions by other jobs do not count).
R=100000
P=300000
paced() { "$@" 2>/dev/null | awk '/in call/ {print $1}'; }
p_plain=(); p_api=(); p_cold=(); p_cold_api=()
for i in 1 2 3; do
	p_plain+=("$(paced env LD_PRELOAD="$cupti" "$bench" $P $R 0)")
	p_api+=("$(paced env FAKE_CUPTI_REFUSE=all MFU_SHIM="$shim" "$mfu" run --interval 0 -- "$bench" $P $R 0)")
	p_cold+=("$(paced env LD_PRELOAD="$cupti" "$bench" $P $R 1024)")
	p_cold_api+=("$(paced env FAKE_CUPTI_REFUSE=all MFU_SHIM="$shim" "$mfu" run --interval 0 -- "$bench" $P $R 1024)")
done
pp=$(best "${p_plain[@]}"); pa=$(best "${p_api[@]}"); pcp=$(best "${p_cold[@]}"); pca=$(best "${p_cold_api[@]}")
echo "paced at $R calls/s, ns inside the call (best of 3 of the mean below p99)"
echo "  warm (spins between calls):        without $pp   API path $pa   added $(echo "$pa - $pp" | bc)"
echo "  cold (sweeps 1 MB between calls):  without $pcp   API path $pca   added $(echo "$pca - $pcp" | bc)"
echo "  all runs: warm without ${p_plain[*]} | API ${p_api[*]}; cold without ${p_cold[*]} | API ${p_cold_api[*]}"
if command -v valgrind >/dev/null; then
	# Instructions inside one GEMM call (bench_shim's one_call), as the
	# difference between 2M and M calls.  Paced at 2000 calls/s so that the
	# sender thread, which valgrind runs one thread at a time, keeps the ring
	# drained: a full ring would charge the locked fallback to every call.
	# (Before 2026-11-22 this toggled on cublasSgemm_v2, a name the fake
	# cuBLAS shares: collection switched off inside the shim's forward, and
	# the figure left out the shim's own work around the call.)
	M=2000
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	total() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
	cg() { # out N [env...]
		local out=$1 n=$2
		shift 2
		env "$@" valgrind --tool=callgrind --toggle-collect=one_call \
			--callgrind-out-file="$out" "$bench" "$n" 2000 >/dev/null 2>&1
	}
	per_call() { # name env...
		local name=$1
		shift
		cg "$tmp/$name.1" $M "$@"
		cg "$tmp/$name.2" $((M * 2)) "$@"
		echo $(( ($(total "$tmp/$name.2") - $(total "$tmp/$name.1")) / M ))
	}
	sock=MFU_COLLECTOR=unix:$tmp/none.sock
	pi=$(per_call plain LD_PRELOAD=$cupti)
	ai=$(per_call api FAKE_CUPTI_REFUSE=all $sock LD_PRELOAD=$shim)
	ti=$(per_call timed $sock LD_PRELOAD=$shim)
	echo "instructions/call inside the call (callgrind)"
	echo "         without: $pi   API path: $ai (added $((ai - pi)); target <= 400)   timed: $ti (added $((ti - pi)))"
fi
