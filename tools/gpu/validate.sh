#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# GPU validation (doc/validation.md, "How to run the GPU validation"): finds
# or builds mfu and the shim, then runs tools/gpu/validate.py, which runs
# every check with a time limit, writes results-partN.{txt,json} and
# logs-partN.tar.gz under $OUT and prints the results table last.
#
#   tools/gpu/validate.sh --part 1    # checks 1-5, 7 and 8 (about 6 minutes)
#   tools/gpu/validate.sh --part 2    # check 6, overhead (about 4 minutes)
#
# Other arguments go to validate.py (--budget-s, --only, --plan, ...).
#
# The build: a carried one when it works here (MFU_BUILD_DIR, else build-h1,
# else build-gpu: tools/mfu and shim/libmfushim.so); else meson builds one in
# /tmp/mfu-build-gpu, taking zstd's headers from .debs/*.deb (unpacked under
# /tmp, never over /) when the system has none.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/validate-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

usable() {
	[ -x "$1/tools/mfu" ] && [ -f "$1/shim/libmfushim.so" ] && "$1/tools/mfu" run --help >/dev/null 2>&1
}

build_here() {
	local b=/tmp/mfu-build-gpu root=/tmp/mfu-debroot
	if compgen -G ".debs/*.deb" >/dev/null; then
		mkdir -p "$root"
		for f in .debs/*.deb; do dpkg -x "$f" "$root"; done
		PKG_CONFIG_PATH=$(find "$root" -type d -name pkgconfig | paste -sd:)
		export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR=$root
	fi
	{
		meson setup "$b" -Dtests=disabled -Dbpf=disabled -Dcuda=enabled -Dbuildtype=release &&
			ninja -C "$b"
	} >"$OUT/build.log" 2>&1 || return 1
	echo "$b"
}

BUILD=""
for b in ${MFU_BUILD_DIR:-} build-h1 build-gpu; do
	if usable "$b"; then
		BUILD=$b
		break
	fi
done
if [ -z "$BUILD" ]; then
	echo "validate.sh: no usable carried build; building with meson (log: $OUT/build.log)" >&2
	if ! BUILD=$(build_here) || ! usable "$BUILD"; then
		echo "validate.sh: the build failed; last lines of $OUT/build.log:" >&2
		tail -n 20 "$OUT/build.log" >&2
		exit 2
	fi
fi
echo "validate.sh: using the build in $BUILD" >&2
exec "$PY" tools/gpu/validate.py --build "$BUILD" --out "$OUT" "$@"
