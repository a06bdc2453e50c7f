#!/usr/bin/env bash
# Template recipe: Parallel WaveNet on any folder of audio files (searched recursively: WAV, FLAC,
# OGG, AIFF, MP3, ...; or an LJSpeech-style folder). Copy this folder to start a new recipe.
#   0  data preparation: check the corpus folder and link it as data/corpus
#   1  features: pwavenet preprocess -> dump/ (feature cache, train/valid/test split, lists/)
#   2  teacher: pwavenet train-teacher -> exp/<tag>/teacher (resumes from its checkpoints)
#   3  distillation: pwavenet distill -> exp/<tag>/student (resumes from its checkpoints)
#   4  synthesis of the test list with the student and the teacher, with real-time factors
#   5  evaluation: pwavenet evaluate -> exp/<tag>/eval (metrics, report, figures)
# Edit conf/teacher.yaml first: sample rate, held-out counts, training length.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------------------- knobs
# The options' defaults; `./run.sh --help` describes each. An option on the command line, or
# the environment variable read here (STAGE=2 ./run.sh), changes one.
stage=${STAGE:-0}
stop_stage=${STOP_STAGE:-5}
corpus_src=${CORPUS:-}
data=${DATA:-$here/data}
dump=${DUMP:-$here/dump}
exp=${EXP:-$here/exp}
tag=${TAG:-template}
teacher_conf=${TEACHER_CONF:-$here/conf/teacher.yaml}
student_conf=${STUDENT_CONF:-$here/conf/student.yaml}
ngpu=${NGPU:-1}
launcher=${LAUNCHER:-accelerate}
accelerate_config=${ACCELERATE_CONFIG:-}
machine_rank=${MACHINE_RANK:-}
synth_batch=${SYNTH_BATCH:-16}
pwavenet=${PWAVENET:-}
corpus_flag=--corpus                    # this recipe's corpus option
corpus_env=CORPUS                       # its environment variable
corpus_help="the folder of audio files (required for stage 0)"
corpus_name=corpus                      # the corpus' name under data/

# ---------------------------------------------------------------------------- stage 0
prepare_data() {
  [ -n "$corpus_src" ] || die "no corpus given: pass --corpus DIR (a folder of audio files)"
  [ -d "$corpus_src" ] || die "$corpus_src: no such folder"
  local found
  found=$(find -L "$corpus_src" -type f \( -iname '*.wav' -o -iname '*.flac' -o -iname '*.ogg' \
    -o -iname '*.oga' -o -iname '*.aif' -o -iname '*.aiff' -o -iname '*.au' -o -iname '*.w64' \
    -o -iname '*.rf64' -o -iname '*.mp3' \) | wc -l)
  [ "$found" -gt 0 ] || die "$corpus_src: no audio files (WAV, FLAC, OGG, AIFF, AU, W64, RF64, MP3)"
  link_corpus "$corpus_src"
  echo "stage 0: $found audio files; $corpus -> $(cd "$corpus_src" && pwd -P)"
}

# Options, commands and stages 1-5 are shared by the corpus recipes.
# shellcheck source=../common/recipe.sh
source "$here/../common/recipe.sh"
