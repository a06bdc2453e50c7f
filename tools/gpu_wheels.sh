#!/usr/bin/env bash
# Download the wheels tools/gpu_check.sh installs on a GPU machine that cannot reach a package
# registry: what pwavenet needs beyond that machine's image (soundfile and soxr, with soundfile's
# cffi and pycparser), for CPython 3.12 on manylinux x86-64, into DIR (default .whl/, ignored
# by git). Run it where pip reaches a registry; the versions are those CI tests with.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.whl}"
mkdir -p "$dest"
python="${PYTHON:-python3}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest" \
  soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12
du -sh "$dest"
ls "$dest"
