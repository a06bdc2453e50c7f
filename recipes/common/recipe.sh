# Shared body of the corpus recipes (recipes/<corpus>/run.sh sources it): options, commands,
# and stages 1-5. The sourcing run.sh sets the knobs' defaults, `corpus_flag` (its corpus option,
# e.g. --ljspeech), `corpus_env` (that option's environment variable), `corpus_help`,
# `corpus_name` (the corpus' name under data/) and `prepare_data` (its stage 0, which checks
# `corpus_src` and calls `link_corpus`). The knobs are assigned there, hence SC2154.
# shellcheck shell=bash disable=SC2154

# The options, in one table that both the parser and --help read: option, its argument, the
# variable it sets (the knob; its value before parsing is the default), the environment variable
# that sets the default, and what it is.
recipe_options=(
  "--stage|N|stage|STAGE|first stage to run"
  "--stop-stage|N|stop_stage|STOP_STAGE|last stage to run (--stop_stage also works)"
  "$corpus_flag|DIR|corpus_src|$corpus_env|$corpus_help"
  "--data|DIR|data|DATA|stage 0 output: the corpus is linked under it"
  "--dump|DIR|dump|DUMP|stage 1 output: the feature cache"
  "--exp|DIR|exp|EXP|stages 2-5 output: exp/<tag>/{teacher,student,eval}"
  "--tag|TAG|tag|TAG|name of this experiment under exp/"
  "--teacher-conf|FILE|teacher_conf|TEACHER_CONF|teacher config (also makes the features)"
  "--student-conf|FILE|student_conf|STUDENT_CONF|student config"
  "--ngpu|N|ngpu|NGPU|0: CPU only; 1: one GPU; N > 1: N processes in total (must equal the accelerate config's num_processes)"
  "--launcher|NAME|launcher|LAUNCHER|accelerate (\`accelerate launch\`) or plain (\`pwavenet\` itself, one process)"
  "--accelerate-config|FILE|accelerate_config|ACCELERATE_CONFIG|accelerate launch config (empty: conf/accelerate_1gpu.yaml, or conf/accelerate_8gpu.yaml for N > 1)"
  "--machine-rank|N|machine_rank|MACHINE_RANK|multi-node: this machine's rank (empty: the config's)"
  "--synth-batch|N|synth_batch|SYNTH_BATCH|utterances the teacher generates together in stage 4"
  "--pwavenet|CMD|pwavenet|PWAVENET|the pwavenet command (empty: on PATH, or the repository's .venv)"
)

usage() {
  # The recipe's header comment (what it is, its stages), then the table with today's defaults.
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
  printf '\nUsage: %s [OPTION VALUE ...] [KEY=VALUE ...]\n\nOptions:\n' "$0"
  local row opt arg var env help
  for row in "${recipe_options[@]}"; do
    IFS='|' read -r opt arg var env help <<<"$row"
    printf '  %-24s %s\n  %-24s default: %s (environment: %s)\n' \
      "$opt $arg" "$help" "" "${!var:-(empty)}" "$env"
  done
  cat <<'EOF'
  -h, --help               this help

Config overrides: KEY=VALUE applies to both models (stages 1-3); teacher:KEY=VALUE to the
teacher only (stages 1-2: the features are made with the teacher's config); student:KEY=VALUE to
the student only (stage 3), e.g.
  ./run.sh --stage 2 teacher:train.max_steps=2000 student:train.max_steps=500
Re-running resumes: stage 1 is skipped once dump/manifest.json exists, training continues from
its newest checkpoint.
EOF
}
die() {
  echo "run.sh: error: $*" >&2
  exit 1
}

# Sets the knob of option $1 to $2 from the table; fails for an unknown option.
set_option() {
  local row opt arg var env help
  for row in "${recipe_options[@]}"; do
    IFS='|' read -r opt arg var env help <<<"$row"
    if [ "$1" = "$opt" ]; then
      printf -v "$var" '%s' "$2"
      return 0
    fi
  done
  die "unknown option $1 (see --help)"
}

overrides=()          # KEY=VALUE: both models
teacher_overrides=()  # teacher:KEY=VALUE (stages 1-2)
student_overrides=()  # student:KEY=VALUE (stage 3)
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --*=*) die "write options as '$(echo "$1" | cut -d= -f1) VALUE'" ;;
    --*)
      [ $# -ge 2 ] || die "$1 needs a value"
      option=$1
      [ "$option" = --stop_stage ] && option=--stop-stage
      set_option "$option" "$2"
      shift 2
      ;;
    *=*)
      key=${1%%=*}
      case "$key" in
        teacher:*) teacher_overrides+=("${1#teacher:}") ;;
        student:*) student_overrides+=("${1#student:}") ;;
        *:*) die "override '$1': the prefix must be teacher: or student:" ;;
        *) overrides+=("$1") ;;
      esac
      shift
      ;;
    *) die "unexpected argument '$1' (see --help)" ;;
  esac
done
for n in "$stage" "$stop_stage" "$ngpu" "$synth_batch"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "'$n' is not a number"
done
teacher_args=(${overrides[@]+"${overrides[@]}"} ${teacher_overrides[@]+"${teacher_overrides[@]}"})
student_args=(${overrides[@]+"${overrides[@]}"} ${student_overrides[@]+"${student_overrides[@]}"})
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
    [ -f "$accelerate_config" ] || die "$accelerate_config: no such accelerate config"
    # A config made for another number of processes would be silently overridden by
    # --num_processes (and its machine layout with it): refuse the mismatch instead.
    processes=$(awk '/^num_processes:/ { print $2; exit }' "$accelerate_config")
    if [ -n "$processes" ] && [ "$processes" != "$ngpu" ]; then
      die "$accelerate_config: num_processes is $processes but --ngpu is $ngpu; pass --ngpu $processes or a config for $ngpu processes (--accelerate-config)"
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
    "$pwavenet" preprocess "$corpus" "$dump" --config "$teacher_conf" ${teacher_args[@]+"${teacher_args[@]}"}
  fi
fi

if doing 2; then
  log "stage 2: teacher training (${train[*]})"
  "${train[@]}" train-teacher --config "$teacher_conf" --dump "$dump" --out "$run/teacher" \
    ${cpu[@]+"${cpu[@]}"} ${teacher_args[@]+"${teacher_args[@]}"}
fi

if doing 3; then
  log "stage 3: distillation (${train[*]})"
  [ -f "$run/teacher/export/model.json" ] || die "$run/teacher/export: no teacher export; run stage 2 first"
  # training refreshes the export at every checkpoint: refuse one from an unfinished stage 2
  done_steps=$(grep -o '"steps": *[0-9]*' "$run/teacher/export/model.json" | grep -o '[0-9]*$' || true)
  max_steps=$(grep -o 'max_steps: *[0-9]*' "$run/teacher/export/config.yaml" | grep -o '[0-9]*$' || true)
  if [ -n "$done_steps" ] && [ -n "$max_steps" ] && [ "$done_steps" -lt "$max_steps" ]; then
    die "$run/teacher/export: from step $done_steps of $max_steps (stage 2 did not finish); rerun stage 2 to finish it, or with teacher:train.max_steps=$done_steps to keep this teacher"
  fi
  "${train[@]}" distill --config "$student_conf" --dump "$dump" --out "$run/student" \
    --teacher "$run/teacher/export" ${cpu[@]+"${cpu[@]}"} ${student_args[@]+"${student_args[@]}"}
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
  log "stage 5: evaluation on $device"
  "$pwavenet" evaluate "@$dump/lists/test.txt" --features "$run/teacher/export" \
    --teacher "$run/teacher/export" --student "$run/student/export" --device "$device" \
    --system teacher="$run/teacher/samples" --system student="$run/student/samples" \
    --run teacher="$run/teacher" --run student="$run/student" --out "$run/eval"
  echo "stage 5: $run/eval/report.html"
fi
