#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the end-to-end pipeline on the synthetic corpus.
# Stages that exist so far: make the corpus, extract features. Output goes to ${OUT:-demo_out}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/bootstrap.sh
out="${OUT:-demo_out}"
.venv/bin/pwavenet make-corpus "$out/corpus" --utterances 40 --seed 0
.venv/bin/pwavenet preprocess "$out/corpus" "$out/dump" --config recipes/demo/conf/base.yaml \
  data.valid_utterances=4 data.test_utterances=4
