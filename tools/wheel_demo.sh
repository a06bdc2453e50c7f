#!/usr/bin/env bash
# The demo from an installed wheel: a fresh virtual environment, the CPU build of torch, then
# `pip install .` (not editable), and `pwavenet demo --quick` plus `--check` run from a new empty
# folder, so that nothing of the source tree can be found by accident (the demo configs must come
# from the installed package). Set PWAVENET_TORCH to install another torch build, PYTHON to use
# another interpreter; the environment and the demo output go to a temporary folder (WORK=DIR to
# choose it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
unset PYTHONPATH  # only the installed package may be imported
work="${WORK:-$(mktemp -d)}"
echo "wheel demo: fresh environment in $work/venv"
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q "${PWAVENET_TORCH:-torch==2.13.0}"
# Install from a clean copy of the working tree (tracked and untracked files, not ignored ones): a
# stale build/ folder beside the sources would otherwise ship files that no longer exist.
src="$root"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  src="$work/src"
  mkdir -p "$src"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$src"
fi
"${pip[@]}" install -q "$src"
mkdir -p "$work/run"
cd "$work/run"
"$work/venv/bin/pwavenet" demo --quick --out d
"$work/venv/bin/pwavenet" demo --quick --out d --check
