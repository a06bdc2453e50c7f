#!/usr/bin/env bash
# Toy 2-D recipe: the seeds' flows (MADE, MAF, IAF, Real NVP, NICE, planar) on three 2-D
# densities, and probability density distillation of an IAF student from a MAF teacher in 2-D
# (see README.md here). CPU only: a minute or two at full size, well under a minute with --quick.
#
# Usage: ./run.sh [--quick] [--seed S] [--out DIR]
# Every knob below can also be set from the environment (QUICK=1 SEED=3 ./run.sh). Outputs:
# DIR/toy2d.png (figure grid), DIR/toy2d_diagnostic.png, DIR/toy2d.md and DIR/toy2d.json (table).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------------------- knobs
out=${OUT:-$here/exp/toy2d}  # where the figures and the table go
quick=${QUICK:-0}            # 1: the reduced size that CI runs
seed=${SEED:-0}              # the same seed gives the same numbers (wall times aside)
python=${PYTHON:-}           # the Python with pwavenet installed (default: the repo's .venv)

usage() { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() {
  echo "run.sh: error: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --quick) quick=1 ;;
    --seed | --out)
      [ $# -ge 2 ] || die "$1 needs a value"
      if [ "$1" = --seed ]; then seed=$2; else out=$2; fi
      shift
      ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

if [ -z "$python" ]; then
  if [ -x "$here/../../.venv/bin/python" ]; then
    python="$here/../../.venv/bin/python"
  elif command -v python3 >/dev/null; then
    python=python3
  else
    die "no Python found: run 'bash tools/bootstrap.sh' or set PYTHON"
  fi
fi

args=(--out "$out" --seed "$seed")
if [ "$quick" = 1 ]; then
  args+=(--quick)
fi
exec "$python" -m pwavenet toy2d "${args[@]}"
