#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the pipeline on the synthetic corpus.
# Stages that exist so far: corpus, features, teacher training, teacher evaluation, teacher
# generation of one held-out utterance. Output goes to ${OUT:-demo_out}; re-running reuses
# the corpus and features and resumes (or skips) the teacher training.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/bootstrap.sh
out="${OUT:-demo_out}"
conf=recipes/demo/conf/teacher_cpu.yaml
pw=.venv/bin/pwavenet
stage() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

stage "1/5 corpus"
[ -f "$out/corpus/metadata.csv" ] || $pw make-corpus "$out/corpus" --utterances 48 --seed 0 --sample-rate 16000
stage "2/5 features"
[ -f "$out/dump/manifest.json" ] || $pw preprocess "$out/corpus" "$out/dump" --config "$conf"
stage "3/5 teacher training"
$pw train-teacher --config "$conf" --dump "$out/dump" --out "$out/teacher"
stage "4/5 teacher evaluation (held-out NLL)"
$pw eval-teacher "$out/teacher/export" "$out/dump" --json "$out/teacher/eval.json"
stage "5/5 teacher generation (one held-out utterance)"
first=$(.venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); print(next(u['source'] for u in m['utterances'] if u['split']=='test'))" "$out/dump/manifest.json")
$pw generate "$out/teacher/export" "$first" --out "$out/teacher/samples"
echo
echo "demo: done; outputs in $out/"
