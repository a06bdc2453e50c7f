#!/usr/bin/env bash
# Demo recipe: the whole pipeline on a synthetic corpus, sized for a CPU (see README.md here).
# A thin wrapper: every argument goes to `pwavenet demo`, e.g.
#   ./run.sh                 corpus -> features -> teacher -> student -> synthesis -> evaluation
#   ./run.sh --quick         a smaller, faster run (the *_quick.yaml configs)
#   ./run.sh --size gpu      the *_gpu.yaml configs
#   ./run.sh --out DIR       where the outputs go
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pwavenet=${PWAVENET:-}
if [ -z "$pwavenet" ]; then
  if command -v pwavenet >/dev/null; then
    pwavenet=pwavenet
  elif [ -x "$here/../../.venv/bin/pwavenet" ]; then
    pwavenet="$here/../../.venv/bin/pwavenet"
  else
    echo "run.sh: error: pwavenet not found: run 'bash tools/bootstrap.sh' or set PWAVENET" >&2
    exit 1
  fi
fi
exec "$pwavenet" demo "$@"
