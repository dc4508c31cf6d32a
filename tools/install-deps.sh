#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages mfushim builds and tests with, if any is
# missing.  Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

# clang, its libFuzzer/sanitizer runtimes (libclang-rt-dev: clang only
# recommends it) and llvm (llvm-symbolizer) for the fuzz smoke test;
# clang, llvm (llvm-strip), libbpf-dev and bpftool for the eBPF tracer.
pkgs=(gcc meson ninja-build pkg-config libzstd-dev zstd libcmocka-dev python3 prometheus curl clang libclang-rt-dev llvm libbpf-dev bpftool)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
