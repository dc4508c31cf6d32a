#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer harnesses of tests/fuzz (clang, in build-fuzz) and
# runs each for SECONDS (default 30), one after the other:
#
#     tools/fuzz/run.sh [SECONDS] [HARNESS...]      harnesses: frame records archive http options
#
# Each harness starts from its committed corpus (tests/fuzz/corpus/NAME,
# seeds and past crashes, read only) plus the inputs earlier runs found
# (build-fuzz/fuzz-corpus/NAME, where new ones are written).  A crash, leak,
# timeout or out-of-memory input is saved in build-fuzz/fuzz-findings/NAME/
# and the harness stops there.  One line per harness:
#     fuzz NAME: ok, 123456 executions in 30 s, 0 findings, corpus 412 inputs
#     fuzz NAME: FAILED, ... 1 finding: build-fuzz/fuzz-findings/NAME/crash-...
# Exit status: 0 when no harness found anything, 1 when one did (or the
# build failed), 77 when clang is not installed (the reason is printed).
# FUZZ_JOBS=2 runs two harnesses at a time; FUZZ_NICE (default 10) is the
# nice level; FUZZ_BUILD_DIR (default build-fuzz) the build directory.
# Extra libFuzzer flags can be given in FUZZ_FLAGS.
set -uo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-30}
[ $# -gt 0 ] && shift
all=(frame records archive http options)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")
for h in "${harnesses[@]}"; do
	case " ${all[*]} " in *" $h "*) ;; *) echo "fuzz: unknown harness '$h' (one of: ${all[*]})" >&2; exit 2 ;; esac
done
case $secs in '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac

if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz: skipped: clang is not installed (tools/install-deps.sh installs it)"
	exit 77
fi

dir=${FUZZ_BUILD_DIR:-build-fuzz}
setup_args=(-Dfuzz=enabled -Dbuildtype=debugoptimized -Dwerror=false)
# an existing build dir is reused only if it was set up with clang
if [ -f "$dir/build.ninja" ] && grep -qs '"command": "clang ' "$dir/compile_commands.json"; then
	meson setup --reconfigure "$dir" "${setup_args[@]}" >".$dir-setup.log" 2>&1 || { cat ".$dir-setup.log"; exit 1; }
else
	rm -rf "$dir"
	CC=clang meson setup "$dir" "${setup_args[@]}" >".$dir-setup.log" 2>&1 || { cat ".$dir-setup.log"; exit 1; }
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
meson compile -C "$dir" "${targets[@]}" >"$dir/fuzz-compile.log" 2>&1 || { tail -n 60 "$dir/fuzz-compile.log"; exit 1; }

# Largest input each harness is given: a few frames; a head past the 8 KiB
# limit; option text.
max_len() {
	case $1 in
	frame | records | archive) echo 16384 ;;
	http) echo 9000 ;;
	options) echo 1024 ;;
	esac
}

run_one() { # harness; prints its result line, returns 0 if clean
	local h=$1 work=$dir/fuzz-corpus/$1 finds=$dir/fuzz-findings/$1 log=$dir/fuzz-logs/$1.log
	local dict=tests/fuzz/$1.dict dictarg=()
	mkdir -p "$work" "$finds" "$dir/fuzz-logs"
	[ -f "$dict" ] && dictarg=(-dict="$dict")
	local before
	before=$(ls "$finds" | wc -l)
	# halt_on_error/abort: the first sanitizer report is a finding;
	# detect_leaks: a leak is one too.
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
		nice -n "${FUZZ_NICE:-10}" "$dir/tests/fuzz/fuzz_$h" -max_total_time="$secs" -max_len="$(max_len "$h")" \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$finds/" "${dictarg[@]}" \
		${FUZZ_FLAGS:-} "$work" "tests/fuzz/corpus/$h" >"$log" 2>&1
	local rc=$?
	local execs time corpus found
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	time=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
	corpus=$(ls "$work" | wc -l)
	found=$(($(ls "$finds" | wc -l) - before))
	if [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]; then
		echo "fuzz $h: ok, ${execs:-?} executions in ${time:-$secs} s, 0 findings, corpus $corpus inputs"
		return 0
	fi
	local newest
	newest=$(ls -t "$finds" | head -n 1)
	echo "fuzz $h: FAILED (exit $rc), ${execs:-?} executions, $found finding(s): ${newest:+$finds/$newest} (log: $log)"
	grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz check failed|.*runtime error)' "$log" | head -n 5 | sed 's/^/    /'
	[ "$found" -gt 0 ] || tail -n 3 "$log" | sed 's/^/    /'
	return 1
}

status=0
jobs=${FUZZ_JOBS:-1}
if [ "$jobs" -le 1 ]; then
	for h in "${harnesses[@]}"; do run_one "$h" || status=1; done
else
	# at most $jobs at once; results are printed as each finishes
	pids=()
	tmp=$(mktemp -d)
	for h in "${harnesses[@]}"; do
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
		(run_one "$h" >"$tmp/$h.out"; echo $? >"$tmp/$h.rc") &
		pids+=($!)
	done
	wait
	for h in "${harnesses[@]}"; do
		cat "$tmp/$h.out"
		[ "$(cat "$tmp/$h.rc")" -eq 0 ] || status=1
	done
	rm -rf "$tmp"
fi
exit $status
