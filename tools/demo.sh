#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the pipeline on the synthetic corpus:
# corpus, features, teacher training and evaluation, distillation of the student, and
# synthesis of the held-out utterances with both. Output goes to ${OUT:-demo_out}; re-running
# reuses the corpus and features and resumes (or skips) the finished training runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/bootstrap.sh
out="${OUT:-demo_out}"
teacher_conf=recipes/demo/conf/teacher_cpu.yaml
student_conf=recipes/demo/conf/student_cpu.yaml
pw=.venv/bin/pwavenet
stage() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

stage "1/6 corpus"
[ -f "$out/corpus/metadata.csv" ] || $pw make-corpus "$out/corpus" --utterances 48 --seed 0 --sample-rate 16000
stage "2/6 features"
[ -f "$out/dump/manifest.json" ] || $pw preprocess "$out/corpus" "$out/dump" --config "$teacher_conf"
stage "3/6 teacher training"
$pw train-teacher --config "$teacher_conf" --dump "$out/dump" --out "$out/teacher"
stage "4/6 teacher evaluation (held-out NLL)"
$pw eval-teacher "$out/teacher/export" "$out/dump" --json "$out/teacher/eval.json"
stage "5/6 student distillation"
$pw distill --config "$student_conf" --dump "$out/dump" --out "$out/student" --teacher "$out/teacher/export"
stage "6/6 synthesis of the held-out utterances (student, then teacher)"
.venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); print('\n'.join(u['source'] for u in m['utterances'] if u['split']=='test'))" "$out/dump/manifest.json" > "$out/test_list.txt"
$pw synthesize "$out/student/export" "@$out/test_list.txt" --out "$out/student/samples"
$pw synthesize "$out/teacher/export" "@$out/test_list.txt" --out "$out/teacher/samples" --batch-size 4
echo
echo "demo: done; outputs in $out/"
