#!/usr/bin/env bash
# The GPU check: one command that proves every CUDA path on a lent GPU in under 9 minutes
# (correctness, benchmark table, multi-process tests, the gpu demo, GPU-hour planning), writing
# everything under OUT as it goes (OUT/summary.md first of all). See tools/gpu_check.py.
#
#   bash tools/gpu_check.sh OUT            on the GPU machine, with its own python3
#   bash tools/gpu_check.sh --dry-run OUT  every stage on the CPU at toy sizes (what CI runs)
#
# The GPU machine has torch, accelerate, numpy, scipy, matplotlib, safetensors, pyyaml and tqdm
# but no package registry: soundfile, soxr and their needs come as wheels in .whl/ (made
# beforehand by tools/gpu_wheels.sh on a machine with registry access) and are installed into
# a private folder. Exit status: 0 when every stage passed, 1 when one failed, 2 on bad usage.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry=""
if [[ "${1:-}" == "--dry-run" ]]; then
  dry="--dry-run"
  shift
fi
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: bash tools/gpu_check.sh [--dry-run] OUT [--stages a,b,...]" >&2
  exit 2
fi
out="$1"
shift
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
cd "$root" || exit 2

if [[ -n "$dry" ]]; then
  bash tools/bootstrap.sh >/dev/null || exit 1
  python=".venv/bin/python"
else
  python="python3"
  if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/pwavenet-gpu-site"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" .whl/*.whl || { echo "gpu_check: installing .whl/ failed" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
  "$python" -c "import soundfile, soxr" 2>/dev/null || {
    echo "gpu_check: soundfile or soxr is missing: run tools/gpu_wheels.sh where pip can reach a registry, and bring .whl/ along" >&2
    exit 1
  }
fi
"$python" tools/gpu_check.py "$out" $dry "$@" 2>&1 | tee "$out/check.log"
exit "${PIPESTATUS[0]}"
