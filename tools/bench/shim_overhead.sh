#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Shim per-call overhead against the fake cuBLAS (and the fake CUPTI, which
# the shim finds beside it, so kernel records flow as on a GPU): ns/call
# without and with the shim (best of 5 each, alternating, one run) with a
# collector (mfu run) reading the records, and callgrind instructions per
# call in the calling thread and in all threads.
#   tools/bench/shim_overhead.sh [BUILD_DIR]
set -euo pipefail
B=${1:-build}
bench=$B/tests/bench_shim
shim=$(realpath "$B/shim/libmfushim.so")
mfu=$B/tools/mfu
N=1000000
echo "command: $0 $B   ($(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), N=$N)"
best() { sort -n | head -1; }
plain=(); shimmed=(); untimed=()
for i in 1 2 3 4 5; do
	plain+=("$("$bench" $N | cut -d' ' -f1)")
	shimmed+=("$(MFU_SHIM=$shim "$mfu" run --interval 0 -- "$bench" $N 2>/dev/null | cut -d' ' -f1)")
	untimed+=("$(FAKE_CUPTI_REFUSE=all MFU_SHIM=$shim "$mfu" run --interval 0 -- "$bench" $N 2>/dev/null | cut -d' ' -f1)")
done
p=$(printf '%s\n' "${plain[@]}" | best)
s=$(printf '%s\n' "${shimmed[@]}" | best)
u=$(printf '%s\n' "${untimed[@]}" | best)
echo "ns/call  without shim: $p"
echo "         with shim, kernel timing (fake CUPTI makes a kernel record per call): $s   added: $(echo "$s - $p" | bc) ns"
echo "         with shim, no kernel timing (CUPTI refused): $u   added: $(echo "$u - $p" | bc) ns   (target <= 100 ns)"
echo "  all runs without:      ${plain[*]}"
echo "  all runs with timing:  ${shimmed[*]}"
echo "  all runs no timing:    ${untimed[*]}"
if command -v valgrind >/dev/null; then
	M=20000
	tmp=$(mktemp -d)
	ir() { # instructions collected
		grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'
	}
	cg() { # out N [env...]: callgrind of bench_shim N; $1 collects only inside the GEMM call
		local out=$1 n=$2 mode=$3
		shift 3
		local toggle=()
		[ "$mode" = caller ] && toggle=(--toggle-collect=cublasSgemm_v2)
		env "$@" valgrind --tool=callgrind "${toggle[@]}" --callgrind-out-file="$out" "$bench" "$n" >/dev/null 2>&1
	}
	with=(MFU_COLLECTOR=unix:$tmp/none.sock LD_PRELOAD=$shim)
	for mode in caller all; do
		cg "$tmp/a" $M $mode
		cg "$tmp/b" $((M * 2)) $mode
		cg "$tmp/c" $M $mode "${with[@]}"
		cg "$tmp/d" $((M * 2)) $mode "${with[@]}"
		# the difference between 2M and M calls cancels start-up and exit
		pi=$(( ($(ir "$tmp/b") - $(ir "$tmp/a")) / M ))
		si=$(( ($(ir "$tmp/d") - $(ir "$tmp/c")) / M ))
		if [ $mode = caller ]; then
			echo "instructions/call in the calling thread (callgrind)  without: $pi   with: $si   added: $((si - pi))   (target <= 400)"
		else
			echo "instructions/call, all threads (sender, CUPTI flush and the fake CUPTI's own record making included)  without: $pi   with: $si"
		fi
	done
	rm -rf "$tmp"
fi
