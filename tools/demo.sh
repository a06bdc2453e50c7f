#!/usr/bin/env bash
# The main job: set up .venv if needed, then run `pwavenet demo` (arguments pass through, e.g.
# --quick, --size gpu, --out DIR): synthetic corpus -> features -> teacher -> held-out NLL ->
# student -> synthesis with both -> evaluation and report (demo_out/eval/report.html).
# Re-running reuses the finished stages and resumes an interrupted training run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/bootstrap.sh
exec .venv/bin/pwavenet demo "$@"
