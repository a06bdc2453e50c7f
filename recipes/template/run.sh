#!/usr/bin/env bash
# Template recipe: Parallel WaveNet on any folder of audio files (searched recursively: WAV, FLAC,
# OGG, AIFF, MP3, ...; or an LJSpeech-style folder). Copy this folder to start a new recipe.
#   0  data preparation: check the corpus folder and link it as data/corpus
#   1  features: pwavenet preprocess -> dump/ (feature cache, train/valid/test split, lists/)
#   2  teacher: pwavenet train-teacher -> exp/<tag>/teacher (resumes from its checkpoints)
#   3  distillation: pwavenet distill -> exp/<tag>/student (resumes from its checkpoints)
#   4  synthesis of the test list with the student and the teacher, with real-time factors
#   5  evaluation: pwavenet evaluate -> exp/<tag>/eval (metrics, report, figures)
#
# Usage: ./run.sh --corpus DIR [--stage N] [--stop-stage N] [--tag TAG] [--ngpu N] ...
#        [key=value ...]   (config overrides for stages 1-3, e.g. audio.sample_rate=16000)
# Every knob below can also be set from the environment (CORPUS=/data/x ./run.sh). Re-running
# resumes: stage 1 is skipped once dump/manifest.json exists, training continues from its newest
# checkpoint. Edit conf/teacher.yaml first: sample rate, held-out counts, training length.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------------------- knobs
stage=${STAGE:-0}                       # first stage to run
stop_stage=${STOP_STAGE:-5}             # last stage to run
corpus_src=${CORPUS:-}                  # the folder of audio files (required for stage 0)
data=${DATA:-$here/data}                # stage 0 output: data/corpus, a link to it
dump=${DUMP:-$here/dump}                # stage 1 output: the feature cache
exp=${EXP:-$here/exp}                   # stages 2-5 output: exp/<tag>/{teacher,student,eval}
tag=${TAG:-template}                    # name of this experiment under exp/
teacher_conf=${TEACHER_CONF:-$here/conf/teacher.yaml}  # teacher config (also makes the features)
student_conf=${STUDENT_CONF:-$here/conf/student.yaml}  # student config
ngpu=${NGPU:-1}                         # 0: CPU only; 1: one GPU; N > 1: N processes in total
launcher=${LAUNCHER:-accelerate}        # accelerate: `accelerate launch`; plain: `pwavenet` itself
accelerate_config=${ACCELERATE_CONFIG:-}  # default: conf/accelerate_1gpu.yaml, or _8gpu for N > 1
machine_rank=${MACHINE_RANK:-}          # multi-node: this machine's rank (else the config's)
synth_batch=${SYNTH_BATCH:-16}          # utterances the teacher generates together in stage 4
pwavenet=${PWAVENET:-}                  # the pwavenet command (default: on PATH, or the repo's .venv)
corpus_flag=--corpus                    # this recipe's corpus option
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
