#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 2: installs what is missing, builds with warnings as errors,
# and runs every test twice: a normal build, then under ASan and UBSan; then
# runs each libFuzzer harness for 30 s (MFU_FUZZ_SECONDS), one pass or fail
# each.  Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh || exit 1

passed=0
failed=0
status=0

run_suite() { # builddir, meson setup args...
	local dir=$1
	shift
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" "$@" >".$dir-setup.log" 2>&1 || { cat ".$dir-setup.log"; return 1; }
	else
		meson setup "$dir" "$@" >".$dir-setup.log" 2>&1 || { cat ".$dir-setup.log"; return 1; }
	fi
	meson compile -C "$dir" || return 1
	meson test -C "$dir" --print-errorlogs --num-processes 2
	local rc=$?
	# count from meson's own log so the closing line is what ran
	read -r p f < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, re, sys
# count TAP subtests ("ok N" / "not ok N"); a program that crashed before
# printing any counts as one failure
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    out = r.get("stdout") or ""
    ok = len(re.findall(r"^ok \d+", out, re.M))
    bad = len(re.findall(r"^not ok \d+", out, re.M))
    if r.get("result") not in ("OK", "EXPECTEDFAIL") and bad == 0:
        bad = 1
    p += ok
    f += bad
print(p, f)
PY
)
	passed=$((passed + p))
	failed=$((failed + f))
	return $rc
}

run_suite build-test -Dwerror=true -Dbuildtype=debugoptimized || status=1
# Memory errors must show up here, not in someone's training run.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	run_suite build-asan -Dwerror=true -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false || status=1

# Fuzz smoke (tools/fuzz/run.sh, clang): every harness runs its committed
# corpus (seeds and past crashes), then fuzzes for a while.  Skipped only
# when clang itself is missing; run.sh says so.
run_fuzz() {
	local log rc p f
	log=$(mktemp)
	tools/fuzz/run.sh "${MFU_FUZZ_SECONDS:-30}" | tee "$log"
	rc=${PIPESTATUS[0]}
	if [ "$rc" -eq 77 ]; then
		echo "fuzz smoke skipped (see above)"
		rm -f "$log"
		return 0
	fi
	p=$(grep -c '^fuzz [a-z]*: ok' "$log")
	f=$(grep -c '^fuzz [a-z]*: FAILED' "$log")
	# a build failure runs no harness: count it as one failure
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	rm -f "$log"
	passed=$((passed + p))
	failed=$((failed + f))
	return "$rc"
}
run_fuzz || status=1

echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] || status=1
exit $status
