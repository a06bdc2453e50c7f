"""Training subcommands: ``train-teacher``, ``eval-teacher``, ``distill`` and ``export``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Handler, add_config_args, resolve_device, run_training


def _add_train_teacher(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "train-teacher",
        help="Train the WaveNet teacher on a feature cache.",
        description=(
            "Train the WaveNet teacher by teacher forcing on a feature cache made by "
            "`pwavenet preprocess`. The run folder receives config.yaml, log.jsonl, logs/ "
            "(TensorBoard, when installed), checkpoints/ (full training state, resumed "
            "automatically from the newest intact one) and export/ (the inference export, EMA "
            "weights, refreshed at every checkpoint). Runs on one CPU or GPU as is, and on many "
            "GPUs or nodes under `accelerate launch`."
        ),
    )
    p.add_argument("--dump", type=Path, required=True, help="Feature cache folder.")
    p.add_argument("--out", type=Path, required=True, help="Run folder to write.")
    p.add_argument(
        "--no-resume", action="store_true", help="Start from scratch even if checkpoints exist."
    )
    p.add_argument("--cpu", action="store_true", help="Train on the CPU even if a GPU is present.")
    add_config_args(p)
    return _run_train_teacher


def _run_train_teacher(args: argparse.Namespace) -> int:
    from ..train.teacher import train_teacher

    return run_training(args, "train-teacher", train_teacher, args.overrides)


def _add_eval_teacher(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "eval-teacher",
        help="Held-out negative log-likelihood of a teacher, in bits per sample.",
        description=(
            "Compute the teacher's negative log-likelihood of every utterance of a split of a "
            "feature cache, in bits per sample (uniform 16-bit audio is 16), and print a "
            "per-utterance table with the sample-weighted mean."
        ),
    )
    p.add_argument("model", type=Path, help="Teacher export folder (run/export).")
    p.add_argument("dump", type=Path, help="Feature cache folder.")
    p.add_argument(
        "--split",
        choices=("train", "valid", "test"),
        default="test",
        help="Which split to evaluate.",
    )
    p.add_argument("--json", type=Path, help="Also write the rows and the mean to this file.")
    p.add_argument("--device", default="cpu", help="Torch device to score on, e.g. cpu or cuda.")
    return _run_eval_teacher


def _run_eval_teacher(args: argparse.Namespace) -> int:
    from ..data.cache import FeatureCache
    from ..fileio import write_json
    from ..models.export import load_teacher
    from ..train.teacher import evaluate_teacher, mean_bits

    model = load_teacher(args.model, resolve_device(args.device))
    rows = evaluate_teacher(model, FeatureCache(args.dump, model.audio), args.split)
    total = sum(r["samples"] for r in rows)
    mean = mean_bits(rows)
    print("| utterance | samples | bits/sample |\n| --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['id']} | {r['samples']} | {r['bits']:.3f} |")
    print(f"| **mean** | {total} | **{mean:.3f}** |")
    if args.json:
        write_json(args.json, {"split": args.split, "mean_bits": mean, "utterances": rows})
    return 0


def _add_distill(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "distill",
        help="Distill an IAF student from a trained teacher (probability density distillation).",
        description=(
            "Train the inverse-autoregressive-flow student against the frozen teacher given by "
            "distill.teacher (an export folder): KL(student || teacher) by Monte Carlo, plus the "
            "power (STFT) loss. The run folder receives config.yaml, log.jsonl, logs/ "
            "(TensorBoard, when installed), checkpoints/ (resumed automatically from the newest "
            "intact one) and export/ (refreshed at every checkpoint; it records the teacher's "
            "path and sha256). "
            "Runs on one CPU or GPU as is, and on many GPUs or nodes under `accelerate launch`."
        ),
    )
    p.add_argument("--dump", type=Path, required=True, help="Feature cache folder.")
    p.add_argument("--out", type=Path, required=True, help="Run folder to write.")
    p.add_argument(
        "--teacher", type=Path, help="Teacher export folder (same as distill.teacher=...)."
    )
    p.add_argument(
        "--no-resume", action="store_true", help="Start from scratch even if checkpoints exist."
    )
    p.add_argument("--cpu", action="store_true", help="Train on the CPU even if a GPU is present.")
    add_config_args(p)
    return _run_distill


def _run_distill(args: argparse.Namespace) -> int:
    from ..train.distill import train_student

    overrides = list(args.overrides)
    if args.teacher is not None:
        overrides.append(f"distill.teacher={args.teacher}")
    return run_training(args, "distill", train_student, overrides)


def _add_export(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "export",
        help="Export a checkpoint of a teacher or student run (usable while the run trains).",
        description=(
            "Write the inference export of one checkpoint of a training run: EMA weights when "
            "the run has EMA (as the run's own export/), the run's config and feature settings, "
            "and for a student the teacher's path and sha256. Written under a temporary name "
            "and renamed when complete, so it is safe while the run trains. A missing or "
            "damaged checkpoint is refused."
        ),
    )
    p.add_argument("run", type=Path, help="Run folder of train-teacher or distill (--out).")
    p.add_argument(
        "--step",
        type=int,
        help="Step of the checkpoint to export (default: the newest intact checkpoint).",
    )
    p.add_argument(
        "--out", type=Path, help="Export folder to write (default: RUN/export-step-STEP)."
    )
    return _run_export


def _run_export(args: argparse.Namespace) -> int:
    from ..train.exports import export_checkpoint

    out = export_checkpoint(args.run, step=args.step, out=args.out)
    print(f"export: {out}")
    return 0


COMMANDS = (
    _add_train_teacher,
    _add_eval_teacher,
    _add_distill,
    _add_export,
)
