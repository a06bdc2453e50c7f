#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install pwavenet into it.
# Installs the CPU build of torch first so that no CUDA wheels are downloaded; set
# PWAVENET_TORCH to another requirement (e.g. "torch" for the CUDA build) to change that.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "bootstrap: installing ${PWAVENET_TORCH:-torch==2.13.0}"
  "${pip[@]}" install -q "${PWAVENET_TORCH:-torch==2.13.0}"
fi
echo "bootstrap: installing pwavenet and its dependencies"
"${pip[@]}" install -q -e ".[dev]"
.venv/bin/python -c "import pwavenet, torch; print(f'bootstrap: pwavenet {pwavenet.__version__}, torch {torch.__version__}')"
