#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README command 1: installs what is missing, builds, and shows rolling
# HFU/MFU.  On a machine with a CUDA GPU and PyTorch it profiles the example
# training script; without one it replays a recorded trace through the
# collector, labelled with where the trace came from.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
if [ ! -d build ]; then
	meson setup build -Dbuildtype=release >/dev/null
fi
meson compile -C build >/dev/null
mfu=build/tools/mfu

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
	python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null &&
	[ -f tools/examples/train_gpt.py ] && [ -f build/shim/libmfushim.so ]; then
	echo "GPU found: profiling tools/examples/train_gpt.py under the shim" >&2
	exec "$mfu" run --interval 1 -- python3 tools/examples/train_gpt.py "$@"
fi

# No GPU: replay a trace.  A real recorded one (tests/data/*.mfa) is used
# when present; else a synthetic one is generated and labelled as such.
shopt -s nullglob
real=(tests/data/*.mfa)
if [ ${#real[@]} -gt 0 ]; then
	echo "No GPU here: replaying the recorded trace ${real[*]} (see tests/data/README.md for where it came from)" >&2
	trace=("${real[@]}")
else
	mkdir -p build/demo
	trace=(build/demo/synthetic-gpt.0.mfa)
	build/tools/mfu-synth --out "${trace[0]}" --steps 60 --layers 24 --width 2048 --seq 2048 --batch 8 \
		--remat --job synthetic-demo
	echo "No GPU here: replaying a SYNTHETIC trace made by mfu-synth (a GPT-style timeline," >&2
	echo "not a measurement; the numbers show how mfu reports, not what any GPU did)." >&2
fi
exec "$mfu" run --no-shim --interval 1 -- "$mfu" replay --speed "${MFU_DEMO_SPEED:-1}" "${trace[@]}"
