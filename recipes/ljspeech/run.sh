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
corpus_src=${LJSPEECH:-$here/downloads/LJSpeech-1.1}  # the downloaded corpus (metadata.csv + wavs/)
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
corpus_flag=--ljspeech                  # this recipe's corpus option
corpus_name=LJSpeech-1.1                # the corpus' name under data/

# ---------------------------------------------------------------------------- stage 0
prepare_data() {
  # Accept the corpus folder itself or the folder it was unpacked into.
  if [ ! -f "$corpus_src/metadata.csv" ] && [ -f "$corpus_src/LJSpeech-1.1/metadata.csv" ]; then
    corpus_src="$corpus_src/LJSpeech-1.1"
  fi
  if [ ! -f "$corpus_src/metadata.csv" ] || [ ! -d "$corpus_src/wavs" ]; then
    die "$corpus_src: no LJSpeech corpus here (expected metadata.csv and wavs/); download LJSpeech-1.1 from https://keithito.com/LJ-Speech-Dataset/ and pass --ljspeech DIR"
  fi
  local listed found
  listed=$(grep -c . "$corpus_src/metadata.csv" || true)
  found=$(find "$corpus_src/wavs" -name '*.wav' | wc -l)
  [ "$found" -gt 0 ] || die "$corpus_src/wavs: no .wav files"
  link_corpus "$corpus_src"
  echo "stage 0: $listed utterances listed, $found WAV files; $corpus -> $(cd "$corpus_src" && pwd -P)"
}

# Options, commands and stages 1-5 are shared by the corpus recipes.
# shellcheck source=../common/recipe.sh
source "$here/../common/recipe.sh"
