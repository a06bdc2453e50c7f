"""``evaluate``: metrics of systems against references, the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Handler, progress_bar, resolve_device


def _add_evaluate(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "evaluate",
        help="Compare synthesized audio with its references and write a report.",
        description=(
            "For every reference file, find <folder>/<id>.wav of each --system and compute the "
            "multi-resolution STFT distance, mel-cepstral distortion, log-spectral distance, "
            "loudness ratio, F0 RMSE, voiced/unvoiced error and voiced-frame recall; invert the "
            "reference's mel with Griffin-Lim as the no-training baseline; with --teacher, score "
            "each reference by the teacher's NLL (bits/sample), and with --student by the "
            "student's KL to the teacher (nats/sample); read each system's synthesis speed from "
            "the synthesis.json `pwavenet synthesize` leaves. Every mean comes with a bootstrap "
            "95 % interval over the utterances, and every pair of systems is compared by a "
            "paired bootstrap of the per-utterance differences (Holm-adjusted over the pairs of "
            "each metric). Writes metrics.json (per-utterance values, means, intervals, pairs), "
            "metrics.md, report.html (audio players, mel figures, training curves of each --run, "
            "per-utterance and significance tables), figures/, audio/ and griffin-lim/ into "
            "--out and prints the table and a summary.\n\n"
            "References are audio files: a .npy mel (e.g. from a TTS model) has no waveform to "
            "compare with and is refused; vocode such mels with `pwavenet synthesize`."
        ),
    )
    p.add_argument("references", nargs="+", help="Reference audio files, folders or @list.txt.")
    p.add_argument(
        "--system",
        action="append",
        required=True,
        metavar="NAME=FOLDER",
        help="A system's output folder (<id>.wav per reference); repeat for several.",
    )
    p.add_argument("--out", type=Path, required=True, help="Folder for the metrics and report.")
    p.add_argument(
        "--features",
        type=Path,
        help="An export folder or a feature cache whose feature settings the mels use "
        "(default: the --teacher or --student export).",
    )
    p.add_argument("--teacher", type=Path, help="Teacher export: score the references' NLL.")
    p.add_argument(
        "--student",
        type=Path,
        help="Student export: score its KL to the teacher (--teacher, or the teacher the "
        "student records).",
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="A training run folder whose log.jsonl curves go into the report; repeatable.",
    )
    p.add_argument(
        "--report-utterances",
        type=int,
        default=8,
        help="Utterances with audio players and mel figures in report.html.",
    )
    _add_scoring_options(p)
    return _run_evaluate


def _add_scoring_options(p: argparse.ArgumentParser) -> None:
    """``evaluate``'s options for the baseline, the model scores and the statistics."""
    p.add_argument(
        "--no-griffin-lim", action="store_true", help="Leave out the Griffin-Lim baseline."
    )
    p.add_argument(
        "--kl-samples", type=int, default=16, help="Monte Carlo draws per step for the KL."
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="Torch device of the model scores (teacher NLL, student KL), e.g. cpu or cuda.",
    )
    p.add_argument(
        "--no-standard-measures",
        action="store_true",
        help="Leave out PESQ, STOI and the WORLD measures of pwavenet[eval] (each is otherwise "
        "computed when its package is installed, and named in the report's notes when not).",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=2000,
        help="Bootstrap resamples of the intervals and paired tests (seeded: the same inputs "
        "give the same numbers).",
    )


def _named_paths(items: list[str], option: str) -> dict[str, Path]:
    from ..errors import ConfigError

    named = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"{option} {item!r}: expected NAME=FOLDER")
        named[name] = Path(folder)
    return named


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..eval.evaluate import metrics_table
    from ..eval.report import summarize

    result, out = _evaluate(args)
    print(metrics_table(result["mean"], result["reference"], result["ci95"]), end="")
    for line in summarize(result):
        print(f"- {line}")
    print(f"evaluate: {len(result['utterances'])} utterances; report in {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> tuple[dict, Path]:
    """Check every input, then compute the metrics and write the report."""
    from ..config import audio_mismatch
    from ..errors import ConfigError
    from ..eval.curves import read_log
    from ..eval.evaluate import evaluate_systems, evaluation_measures
    from ..eval.report import write_report
    from ..models.export import META, export_audio, load_student, load_teacher
    from ..synthesis import collect_inputs

    systems = _named_paths(args.system, "--system")
    runs = _named_paths(args.run, "--run")
    for run in runs.values():
        read_log(run)  # a one-line error now rather than after the metrics
    if args.resamples < 1:
        raise ConfigError(f"--resamples must be positive, got {args.resamples}")
    device = resolve_device(args.device)
    student = load_student(args.student, device) if args.student else None
    teacher_dir = args.teacher
    if student is not None and teacher_dir is None:
        teacher_dir = Path(student.teacher["path"] or "")
    teacher = load_teacher(teacher_dir, device) if teacher_dir else None
    features = args.features or args.teacher or args.student
    if features is None:
        raise ConfigError("give --features (or --teacher / --student) for the feature settings")
    if (features / META).is_file():
        audio = export_audio(features)
    else:
        from ..data.cache import FeatureCache

        audio = FeatureCache(features).audio
    for model, path in ((teacher, teacher_dir), (student, args.student)):
        diff = audio_mismatch(model.audio, audio) if model is not None else None
        if diff is not None:
            raise ConfigError(f"{path}: made with other feature settings than {features} ({diff})")
    refs = collect_inputs(args.references)  # a .npy mel among them: refused, one line
    result = evaluate_systems(
        refs,
        systems,
        audio,
        args.out,
        with_griffin_lim=not args.no_griffin_lim,
        teacher=teacher,
        student=student,
        kl_samples=args.kl_samples,
        progress=progress_bar("evaluate", "utt"),
        resamples=args.resamples,
        **evaluation_measures(standard=not args.no_standard_measures),
    )
    write_report(
        result, refs, systems, audio, args.out, runs=runs, max_utterances=args.report_utterances
    )
    return result, args.out


COMMANDS = (_add_evaluate,)
