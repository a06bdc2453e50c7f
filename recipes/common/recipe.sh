# Shared body of the corpus recipes (recipes/<corpus>/run.sh sources it): options, commands,
# and stages 1-5. The sourcing run.sh sets the knobs, `corpus_flag` (its corpus option, e.g.
# --ljspeech), `corpus_name` (the corpus' name under data/) and `prepare_data` (its stage 0,
# which checks `corpus_src` and calls `link_corpus`). The knobs are assigned there, hence SC2154.
# shellcheck shell=bash disable=SC2154

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
  echo "run.sh: error: $*" >&2
  exit 1
}

overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --*=*) die "write options as '$(echo "$1" | cut -d= -f1) VALUE'" ;;
    --*)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --stage) stage=$2 ;;
        --stop-stage | --stop_stage) stop_stage=$2 ;;
        "$corpus_flag") corpus_src=$2 ;;
        --data) data=$2 ;;
        --dump) dump=$2 ;;
        --exp) exp=$2 ;;
        --tag) tag=$2 ;;
        --teacher-conf) teacher_conf=$2 ;;
        --student-conf) student_conf=$2 ;;
        --ngpu) ngpu=$2 ;;
        --launcher) launcher=$2 ;;
        --accelerate-config) accelerate_config=$2 ;;
        --machine-rank) machine_rank=$2 ;;
        --synth-batch) synth_batch=$2 ;;
        --pwavenet) pwavenet=$2 ;;
        *) die "unknown option $1 (see --help)" ;;
      esac
      shift 2
      ;;
    *=*) overrides+=("$1"); shift ;;
    *) die "unexpected argument '$1' (see --help)" ;;
  esac
done
for n in "$stage" "$stop_stage" "$ngpu" "$synth_batch"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "'$n' is not a number"
done
# Absolute paths: the split lists in dump/lists/ name the corpus files with them, so that later
# stages work from any directory.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac }
[ -z "$corpus_src" ] || corpus_src=$(absolute "$corpus_src")
data=$(absolute "$data")
dump=$(absolute "$dump")
exp=$(absolute "$exp")
teacher_conf=$(absolute "$teacher_conf")
student_conf=$(absolute "$student_conf")
[ -z "$accelerate_config" ] || accelerate_config=$(absolute "$accelerate_config")

# ---------------------------------------------------------------------------- commands
if [ -z "$pwavenet" ]; then
  if command -v pwavenet >/dev/null; then
    pwavenet=pwavenet
  elif [ -x "$here/../../.venv/bin/pwavenet" ]; then
    pwavenet="$here/../../.venv/bin/pwavenet"
  else
    die "pwavenet not found: pip install -e . in the repository, or set PWAVENET"
  fi
fi
pwavenet_dir="$(dirname "$(command -v "$pwavenet")")"
accelerate=accelerate
[ -x "$pwavenet_dir/accelerate" ] && accelerate="$pwavenet_dir/accelerate"

# Training runs under `accelerate launch` (one process per GPU, on one or several machines) or
# as plain `pwavenet` (one process: one GPU, or the CPU with --ngpu 0).
device=cuda
cpu=()
if [ "$ngpu" -eq 0 ]; then
  device=cpu
  cpu=(--cpu)
  launcher=plain
fi
case "$launcher" in
  plain)
    [ "$ngpu" -le 1 ] || die "--launcher plain runs one process; use --launcher accelerate for $ngpu GPUs"
    train=("$pwavenet")
    ;;
  accelerate)
    if [ -z "$accelerate_config" ]; then
      accelerate_config="$here/conf/accelerate_1gpu.yaml"
      [ "$ngpu" -gt 1 ] && accelerate_config="$here/conf/accelerate_8gpu.yaml"
    fi
    train=("$accelerate" launch --config_file "$accelerate_config" --num_processes "$ngpu")
    [ -n "$machine_rank" ] && train+=(--machine_rank "$machine_rank")
    train+=(-m pwavenet)
    ;;
  *) die "--launcher must be accelerate or plain, not '$launcher'" ;;
esac

corpus="$data/$corpus_name"
run="$exp/$tag"
log() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
doing() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }


# Stage 0's last step: data/<corpus_name> becomes a link to the (checked) source folder $1.
link_corpus() {
  local source_dir
  source_dir="$(cd "$1" && pwd -P)"
  mkdir -p "$data"
  if [ -L "$corpus" ] || [ ! -e "$corpus" ]; then
    ln -sfn "$source_dir" "$corpus"
  elif [ "$(cd "$corpus" && pwd -P)" != "$source_dir" ]; then
    die "$corpus: exists and is not a link to $source_dir; move it away"
  fi
}

if doing 0; then
  log "stage 0: data preparation"
  prepare_data
fi

if doing 1; then
  log "stage 1: features"
  [ -d "$corpus" ] || die "$corpus: missing; run stage 0 first"
  if [ -f "$dump/manifest.json" ]; then
    echo "stage 1: $dump is complete (manifest.json); skipped (delete $dump to redo)"
  else
    "$pwavenet" preprocess "$corpus" "$dump" --config "$teacher_conf" ${overrides[@]+"${overrides[@]}"}
  fi
fi

if doing 2; then
  log "stage 2: teacher training (${train[*]})"
  "${train[@]}" train-teacher --config "$teacher_conf" --dump "$dump" --out "$run/teacher" \
    ${cpu[@]+"${cpu[@]}"} ${overrides[@]+"${overrides[@]}"}
fi

if doing 3; then
  log "stage 3: distillation (${train[*]})"
  [ -f "$run/teacher/export/model.json" ] || die "$run/teacher/export: no teacher export; run stage 2 first"
  "${train[@]}" distill --config "$student_conf" --dump "$dump" --out "$run/student" \
    --teacher "$run/teacher/export" ${cpu[@]+"${cpu[@]}"} ${overrides[@]+"${overrides[@]}"}
fi

if doing 4; then
  log "stage 4: synthesis of the test list (student, then teacher) on $device"
  for kind in student teacher; do
    [ -f "$run/$kind/export/model.json" ] || die "$run/$kind/export: no export; run stage 2 and 3 first"
  done
  "$pwavenet" synthesize "$run/student/export" "@$dump/lists/test.txt" --model student --resample \
    --out "$run/student/samples" --device "$device" | tee "$run/student/synthesis.log"
  "$pwavenet" synthesize "$run/teacher/export" "@$dump/lists/test.txt" --model teacher --resample \
    --out "$run/teacher/samples" --device "$device" --batch-size "$synth_batch" |
    tee "$run/teacher/synthesis.log"
  echo "stage 4: real-time factors (seconds of compute per second of audio; < 1 is faster):"
  for kind in student teacher; do
    echo "  $kind: $(grep -o 'mean real-time factor [0-9.]*' "$run/$kind/synthesis.log")"
  done
fi

if doing 5; then
  log "stage 5: evaluation"
  "$pwavenet" evaluate "@$dump/lists/test.txt" --features "$run/teacher/export" \
    --teacher "$run/teacher/export" --student "$run/student/export" \
    --system teacher="$run/teacher/samples" --system student="$run/student/samples" \
    --run teacher="$run/teacher" --run student="$run/student" --out "$run/eval"
  echo "stage 5: $run/eval/report.html"
fi
