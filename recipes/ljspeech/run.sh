#!/usr/bin/env bash
# LJSpeech recipe: Parallel WaveNet on the LJ Speech corpus (one speaker, 13,100 clips, 24 h,
# 22.05 kHz), in numbered stages:
#   0  data preparation: check the downloaded corpus and link it as data/LJSpeech-1.1
#   1  features: pwavenet preprocess -> dump/ (feature cache, train/valid/test split, lists/)
#   2  teacher: pwavenet train-teacher -> exp/<tag>/teacher (resumes from its checkpoints)
#   3  distillation: pwavenet distill -> exp/<tag>/student (resumes from its checkpoints)
#   4  synthesis of the test list with the student and the teacher, with real-time factors
#   5  evaluation: pwavenet evaluate -> exp/<tag>/eval (metrics, report, figures)
# Nothing is downloaded: get LJSpeech-1.1 from https://keithito.com/LJ-Speech-Dataset/
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------------------- knobs
# The options' defaults; `./run.sh --help` describes each. An option on the command line, or
# the environment variable read here (STAGE=2 ./run.sh), changes one.
stage=${STAGE:-0}
stop_stage=${STOP_STAGE:-5}
corpus_src=${LJSPEECH:-$here/downloads/LJSpeech-1.1}
data=${DATA:-$here/data}
dump=${DUMP:-$here/dump}
exp=${EXP:-$here/exp}
tag=${TAG:-ljspeech}
teacher_conf=${TEACHER_CONF:-$here/conf/teacher.yaml}
student_conf=${STUDENT_CONF:-$here/conf/student.yaml}
ngpu=${NGPU:-1}
launcher=${LAUNCHER:-accelerate}
accelerate_config=${ACCELERATE_CONFIG:-}
machine_rank=${MACHINE_RANK:-}
synth_batch=${SYNTH_BATCH:-16}
pwavenet=${PWAVENET:-}
corpus_flag=--ljspeech                  # this recipe's corpus option
corpus_env=LJSPEECH                     # its environment variable
corpus_help="the downloaded corpus (metadata.csv + wavs/, or the folder it was unpacked into)"
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
