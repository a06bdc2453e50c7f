#!/usr/bin/env bash
# LJSpeech recipe: Parallel WaveNet on the LJ Speech corpus (one speaker, 13,100 clips, 24 h,
# 22.05 kHz), in numbered stages:
#   0  data preparation: check the downloaded corpus and link it as data/LJSpeech-1.1
#   1  features: pwavenet preprocess -> dump/ (feature cache, train/valid/test split, lists/)
#   2  teacher: pwavenet train-teacher -> exp/<tag>/teacher (resumes from its checkpoints)
#   3  distillation: pwavenet distill -> exp/<tag>/student (resumes from its checkpoints)
#   4  synthesis of the test list with the student and the teacher, with real-time factors
#   5  evaluation: pwavenet evaluate -> exp/<tag>/eval (metrics, report, figures)
#
# Usage: ./run.sh [--stage N] [--stop-stage N] [--ljspeech DIR] [--tag TAG] [--ngpu N] ...
#        [key=value ...]   (config overrides for stages 1-3, e.g. train.max_steps=1000)
# Every knob below can also be set from the environment (STAGE=2 ./run.sh). Re-running resumes:
# stage 1 is skipped once dump/manifest.json exists, training continues from its newest
# checkpoint. Nothing is downloaded: get LJSpeech-1.1 from https://keithito.com/LJ-Speech-Dataset/
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------------------- knobs
stage=${STAGE:-0}                       # first stage to run
stop_stage=${STOP_STAGE:-5}             # last stage to run
ljspeech=${LJSPEECH:-$here/downloads/LJSpeech-1.1}  # the downloaded corpus (metadata.csv + wavs/)
data=${DATA:-$here/data}                # stage 0 output: a link to the corpus
dump=${DUMP:-$here/dump}                # stage 1 output: the feature cache
exp=${EXP:-$here/exp}                   # stages 2-5 output: exp/<tag>/{teacher,student,eval}
tag=${TAG:-ljspeech}                    # name of this experiment under exp/
teacher_conf=${TEACHER_CONF:-$here/conf/teacher.yaml}  # teacher config (also makes the features)
student_conf=${STUDENT_CONF:-$here/conf/student.yaml}  # student config
ngpu=${NGPU:-1}                         # 0: CPU only; 1: one GPU; N > 1: N processes in total
launcher=${LAUNCHER:-accelerate}        # accelerate: `accelerate launch`; plain: `pwavenet` itself
accelerate_config=${ACCELERATE_CONFIG:-}  # default: conf/accelerate_1gpu.yaml, or _8gpu for N > 1
machine_rank=${MACHINE_RANK:-}          # multi-node: this machine's rank (else the config's)
synth_batch=${SYNTH_BATCH:-16}          # utterances the teacher generates together in stage 4
pwavenet=${PWAVENET:-}                  # the pwavenet command (default: on PATH, or the repo's .venv)

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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
        --ljspeech) ljspeech=$2 ;;
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
ljspeech=$(absolute "$ljspeech")
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

corpus="$data/LJSpeech-1.1"
run="$exp/$tag"
log() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
doing() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# ---------------------------------------------------------------------------- stages
if doing 0; then
  log "stage 0: data preparation"
  # Accept the corpus folder itself or the folder it was unpacked into.
  if [ ! -f "$ljspeech/metadata.csv" ] && [ -f "$ljspeech/LJSpeech-1.1/metadata.csv" ]; then
    ljspeech="$ljspeech/LJSpeech-1.1"
  fi
  if [ ! -f "$ljspeech/metadata.csv" ] || [ ! -d "$ljspeech/wavs" ]; then
    die "$ljspeech: no LJSpeech corpus here (expected metadata.csv and wavs/); download LJSpeech-1.1 from https://keithito.com/LJ-Speech-Dataset/ and pass --ljspeech DIR"
  fi
  listed=$(grep -c . "$ljspeech/metadata.csv" || true)
  found=$(find "$ljspeech/wavs" -name '*.wav' | wc -l)
  [ "$found" -gt 0 ] || die "$ljspeech/wavs: no .wav files"
  source_dir="$(cd "$ljspeech" && pwd -P)"
  mkdir -p "$data"
  if [ -L "$corpus" ] || [ ! -e "$corpus" ]; then
    ln -sfn "$source_dir" "$corpus"
  elif [ "$(cd "$corpus" && pwd -P)" != "$source_dir" ]; then
    die "$corpus: exists and is not a link to $source_dir; move it away"
  fi
  echo "stage 0: $listed utterances listed, $found WAV files; $corpus -> $source_dir"
fi

if doing 1; then
  log "stage 1: features"
  [ -e "$corpus/metadata.csv" ] || die "$corpus: missing; run stage 0 first"
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
