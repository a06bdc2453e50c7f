"""The ``pwavenet`` command line: thin subcommands over the Python API.

Every subcommand turns a :class:`~pwavenet.errors.PwavenetError` into one line on stderr
(``pwavenet: error: <file>: <cause>``) and a non-zero exit; progress bars and printing live here,
never in the library.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import __version__
from .errors import PwavenetError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _progress(desc: str, unit: str = "file") -> Callable:
    """A tqdm wrapper for library ``progress=`` hooks (disabled when stderr is not a terminal)."""
    from tqdm import tqdm

    def wrap(items):
        return tqdm(items, desc=desc, unit=unit, disable=None, dynamic_ncols=True)

    return wrap


def _echo(line: str) -> None:
    """Print a line without breaking an active progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


# --------------------------------------------------------------------------- make-corpus


def _add_make_corpus(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "make-corpus",
        help="Write a synthetic speech-like corpus in the LJSpeech layout.",
        description=(
            "Write a deterministic, seeded speech-like corpus (source-filter synthesis: voiced "
            "segments with F0 contours and formants, noise bursts, pauses) as 16-bit WAV files "
            "with a metadata.csv in the LJSpeech layout. No outside data is needed."
        ),
    )
    p.add_argument("out", type=Path, help="Folder to write the corpus into.")
    p.add_argument("--utterances", type=int, default=100, help="Number of utterances to write.")
    p.add_argument("--seed", type=int, default=0, help="Seed; the same seed gives the same files.")
    p.add_argument("--sample-rate", type=int, default=22050, help="Sample rate in Hz.")
    p.add_argument("--min-seconds", type=float, default=1.0, help="Shortest utterance in seconds.")
    p.add_argument("--max-seconds", type=float, default=4.0, help="Longest utterance in seconds.")
    p.add_argument(
        "--engine",
        choices=("synthetic", "espeak"),
        default="synthetic",
        help="Use the built-in synthesizer, or espeak-ng (when installed) to speak random "
        "sentences.",
    )
    return _run_make_corpus


def _run_make_corpus(args: argparse.Namespace) -> int:
    import soundfile as sf

    from .corpus import make_corpus

    out = make_corpus(
        args.out,
        num_utterances=args.utterances,
        seed=args.seed,
        sample_rate=args.sample_rate,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        engine=args.engine,
        progress=_progress("make-corpus", "utt"),
    )
    wavs = sorted((out / "wavs").glob("*.wav"))
    seconds = sum(sf.info(str(w)).duration for w in wavs)
    print(f"make-corpus: wrote {len(wavs)} utterances ({seconds:.1f} s of audio) to {out}")
    return 0


# --------------------------------------------------------------------------- preprocess


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (defaults apply to missing keys).")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Dotted overrides applied after the config file, e.g. audio.sample_rate=16000.",
    )


def _add_preprocess(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "preprocess",
        help="Extract log-mel features of a corpus into a feature cache.",
        description=(
            "Index a corpus (an LJSpeech-style folder with metadata.csv and wavs/, or any folder "
            "of audio files), convert what can be converted (channels, sample rate, sample "
            "format), skip unusable files with one line each, split it into train/valid/test, "
            "and write audio + log-mel features with a manifest into OUT."
        ),
    )
    p.add_argument("corpus", type=Path, help="Corpus folder.")
    p.add_argument("out", type=Path, help="Feature cache folder to write (e.g. dump/).")
    p.add_argument(
        "--strict", action="store_true", help="Stop with an error at the first unusable file."
    )
    _add_config_args(p)
    return _run_preprocess


def _run_preprocess(args: argparse.Namespace) -> int:
    from .config import load_config, save_config
    from .data import preprocess_corpus

    cfg = load_config(args.config, args.overrides)
    report = preprocess_corpus(
        args.corpus,
        args.out,
        cfg.audio,
        cfg.data,
        strict=args.strict,
        progress=_progress("preprocess"),
        on_skip=lambda path, cause: _echo(f"skipped {path}: {cause}"),
    )
    save_config(cfg, args.out / "config.yaml")
    from .data import FeatureCache

    cache = FeatureCache(args.out)
    counts = " / ".join(f"{s} {len(cache.entries(s))}" for s in ("train", "valid", "test"))
    print(
        f"preprocess: kept {report.processed} files ({report.converted} converted, "
        f"{report.seconds:.1f} s of audio), skipped {len(report.skipped)}; "
        f"split {counts}; wrote {args.out}"
    )
    return 0


# --------------------------------------------------------------------------- teacher


def _add_train_teacher(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "train-teacher",
        help="Train the WaveNet teacher on a feature cache.",
        description=(
            "Train the WaveNet teacher by teacher forcing on a feature cache made by "
            "`pwavenet preprocess`. The run folder receives config.yaml, log.jsonl, "
            "checkpoints/ (full training state, resumed automatically) and export/ (the "
            "inference export, EMA weights). Runs on one CPU or GPU as is, and on many GPUs or "
            "nodes under `accelerate launch`."
        ),
    )
    p.add_argument("--dump", type=Path, required=True, help="Feature cache folder.")
    p.add_argument("--out", type=Path, required=True, help="Run folder to write.")
    p.add_argument(
        "--no-resume", action="store_true", help="Start from scratch even if checkpoints exist."
    )
    p.add_argument("--cpu", action="store_true", help="Train on the CPU even if a GPU is present.")
    _add_config_args(p)
    return _run_train_teacher


def _run_training(
    args: argparse.Namespace, name: str, train: Callable, overrides: list[str]
) -> int:
    """Load the config, run ``train(cfg, dump, out, ...)`` with a progress bar on the main
    process, and report where the export went."""
    from accelerate import PartialState

    from .config import load_config

    cfg = load_config(args.config, overrides)
    main_process = PartialState(cpu=args.cpu).is_main_process
    export = train(
        cfg,
        args.dump,
        args.out,
        resume=not args.no_resume,
        cpu=args.cpu,
        progress=_progress(name, "step") if main_process else None,
    )
    if main_process:
        print(f"{name}: {cfg.train.max_steps} steps done; export in {export}")
    return 0


def _run_train_teacher(args: argparse.Namespace) -> int:
    from .training import train_teacher

    return _run_training(args, "train-teacher", train_teacher, args.overrides)


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
    return _run_eval_teacher


def _run_eval_teacher(args: argparse.Namespace) -> int:
    from .data import FeatureCache
    from .export import load_teacher
    from .fileio import write_json
    from .training import evaluate_teacher, mean_bits

    model = load_teacher(args.model)
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
            "power (STFT) loss. The run folder receives config.yaml, log.jsonl, checkpoints/ "
            "(resumed automatically) and export/ (which records the teacher's path and sha256). "
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
    _add_config_args(p)
    return _run_distill


def _run_distill(args: argparse.Namespace) -> int:
    from .distillation import train_student

    overrides = list(args.overrides)
    if args.teacher is not None:
        overrides.append(f"distill.teacher={args.teacher}")
    return _run_training(args, "distill", train_student, overrides)


def _add_synthesize(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "synthesize",
        aliases=["generate"],
        help="Synthesize audio from mels or audio files with a student or a teacher.",
        description=(
            "Synthesize a WAV for every input: audio files (their mel is computed with the "
            "model's feature settings) or .npy mel arrays (n_mels, frames); files, folders, or "
            "@list.txt. A student export synthesizes in one parallel pass (in chunks for long "
            "inputs); a teacher export samples autoregressively with its cached generator."
        ),
    )
    p.add_argument("model_dir", type=Path, help="Export folder of the model (run/export).")
    p.add_argument("inputs", nargs="+", help="Input files, folders or @list.txt.")
    p.add_argument("--out", type=Path, required=True, help="Folder for the WAV files.")
    p.add_argument(
        "--model",
        choices=("auto", "student", "teacher"),
        default="auto",
        help="Which model the export must be (auto: whichever it is).",
    )
    p.add_argument("--batch-size", type=int, default=1, help="Utterances synthesized together.")
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=5.0,
        help="Student: synthesize this many seconds at a time (same output, bounded memory); "
        "0 for one pass.",
    )
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    p.add_argument("--device", default="cpu", help="Torch device, e.g. cpu or cuda.")
    p.add_argument(
        "--resample",
        action="store_true",
        help="Resample audio inputs of another sample rate (by default they are an error).",
    )
    return _run_synthesize


def _run_synthesize(args: argparse.Namespace) -> int:
    from .evaluation import synthesis_speed
    from .export import ExportError, export_kind, load_student, load_teacher
    from .synthesis import collect_inputs, load_inputs, synthesize

    kind = export_kind(args.model_dir)
    if args.model != "auto" and args.model != kind:
        raise ExportError(f"{args.model_dir}: is a {kind} export, not a {args.model}")
    model = (load_student if kind == "student" else load_teacher)(args.model_dir, args.device)
    utterances = load_inputs(collect_inputs(args.inputs), model.audio, resample=args.resample)
    chunk = int(args.chunk_seconds * model.audio.sample_rate) or None
    rows = synthesize(
        model,
        utterances,
        args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        chunk_samples=chunk,
        progress=_progress(f"synthesize ({kind})", "batch" if kind == "student" else "sample"),
    )
    for r in rows:
        print(
            f"{r['id']}: {r['seconds']:.2f} s, {r['samples_per_s']:.0f} samples/s, "
            f"real-time factor {r['rtf']:.3f}"
        )
    speed = synthesis_speed(args.out)
    print(
        f"synthesize: {len(rows)} files ({speed['seconds']:.1f} s of audio) in {args.out}; "
        f"mean real-time factor {speed['rtf']:.3f}"
    )
    return 0


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
            "the synthesis.json `pwavenet synthesize` leaves. Writes metrics.json, metrics.md, "
            "report.html (audio players, mel figures, training curves of each --run), "
            "figures/, audio/ and griffin-lim/ into --out and prints the table and a summary."
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
        "--kl-samples", type=int, default=16, help="Monte Carlo draws per step for the KL."
    )
    p.add_argument(
        "--report-utterances",
        type=int,
        default=8,
        help="Utterances with audio players and mel figures in report.html.",
    )
    p.add_argument(
        "--no-griffin-lim", action="store_true", help="Leave out the Griffin-Lim baseline."
    )
    return _run_evaluate


def _named_paths(items: list[str], option: str) -> dict[str, Path]:
    from .errors import ConfigError

    named = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"{option} {item!r}: expected NAME=FOLDER")
        named[name] = Path(folder)
    return named


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import metrics_table
    from .report import summarize

    result, out = _evaluate(args)
    print(metrics_table(result["mean"], result["reference"]), end="")
    for line in summarize(result):
        print(f"- {line}")
    print(f"evaluate: {len(result['utterances'])} utterances; report in {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> tuple[dict, Path]:
    """Check every input, then compute the metrics and write the report."""
    from .config import AudioConfig
    from .curves import read_log
    from .errors import ConfigError
    from .evaluation import evaluate_systems
    from .export import load_student, load_teacher
    from .fileio import read_json
    from .report import write_report
    from .synthesis import collect_inputs

    systems = _named_paths(args.system, "--system")
    runs = _named_paths(args.run, "--run")
    for run in runs.values():
        read_log(run)  # a one-line error now rather than after the metrics
    student = load_student(args.student) if args.student else None
    teacher_dir = args.teacher
    if student is not None and teacher_dir is None:
        teacher_dir = Path(student.teacher["path"] or "")
    teacher = load_teacher(teacher_dir) if teacher_dir else None
    features = args.features or args.teacher or args.student
    if features is None:
        raise ConfigError("give --features (or --teacher / --student) for the feature settings")
    meta = features / "model.json"
    if meta.is_file():
        audio = AudioConfig(**read_json(meta, "pwavenet-export/1", ConfigError, "export")["audio"])
    else:
        from .data import FeatureCache

        audio = FeatureCache(features).audio
    for model, path in ((teacher, teacher_dir), (student, args.student)):
        if model is not None and model.audio != audio:
            raise ConfigError(f"{path}: made with other feature settings than {features}")
    refs = [p for p in collect_inputs(args.references) if p.suffix != ".npy"]
    result = evaluate_systems(
        refs,
        systems,
        audio,
        args.out,
        with_griffin_lim=not args.no_griffin_lim,
        teacher=teacher,
        student=student,
        kl_samples=args.kl_samples,
        progress=_progress("evaluate", "utt"),
    )
    write_report(
        result, refs, systems, audio, args.out, runs=runs, max_utterances=args.report_utterances
    )
    return result, args.out


# --------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "demo",
        help="The whole pipeline on a synthetic corpus: corpus to report (the main job).",
        description=(
            "Make a synthetic speech-like corpus, extract features, train a teacher, score its "
            "held-out NLL, distill a student, synthesize the test utterances with both, and "
            "evaluate them beside a Griffin-Lim baseline into OUT/eval/report.html. Each stage's "
            "wall time is logged; running it again reuses finished stages and resumes an "
            "interrupted training run. Sizes: --quick (seconds: checks the pipeline), cpu "
            "(about 9 minutes on 2 cores), gpu (sized for about 30 minutes on one GPU). Configs: "
            "recipes/demo/conf/{teacher,student}_<size>.yaml."
        ),
    )
    p.add_argument("--quick", action="store_true", help="The smallest size (what CI runs).")
    p.add_argument("--size", choices=("cpu", "gpu"), default="cpu", help="Demo size.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="Output folder.")
    p.add_argument("--conf", type=Path, help="Folder of the demo configs (default: the repo's).")
    p.add_argument(
        "--check",
        action="store_true",
        help="Run nothing: check that OUT holds a finished demo with a complete report (every "
        "stage recorded, every number finite, every figure and audio file present).",
    )
    return _run_demo


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import check_demo, run_demo

    if args.check:
        problems = check_demo(args.out)
        for p in problems:
            print(f"pwavenet: demo check: {p}", file=sys.stderr)
        if not problems:
            print(f"demo: {args.out} holds a finished demo with a complete report")
        return EXIT_ERROR if problems else 0

    size = "quick" if args.quick else args.size
    record = run_demo(
        args.out, size, conf_dir=args.conf, log=_echo, progress=lambda d, u: _progress(d, u)
    )
    print(f"\ndemo ({size}): stage wall times")
    for name, seconds in record["stages"].items():
        print(f"  {name:<12} {seconds:8.1f} s")
    minutes, seconds = divmod(record["seconds_all_stages"], 60)
    print(
        f"  {'total':<12} {record['seconds_all_stages']:8.1f} s ({minutes:.0f} min {seconds:.0f} s)"
    )
    nll = record["teacher_nll_bits"]
    print(f"\nteacher NLL: valid {nll['valid']:.3f}, test {nll['test']:.3f} bits/sample")
    print("\nwhat the run achieved:")
    for line in record["summary"]:
        print(f"- {line}")
    print("\ntargets:")
    for t in record["targets"]:
        verdict = {True: "met", False: "NOT met", None: "n/a at this size"}[t["met"]]
        print(f"- {t['target']}: {verdict} ({t['measured']})")
    print(f"\ndemo: report in {record['report']}")
    return 0


# --------------------------------------------------------------------------- toy2d


def _add_toy2d(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "toy2d",
        help="The normalizing-flow ladder on 2-D densities (MADE, MAF, IAF, couplings, planar).",
        description=(
            "Fit MAF, a single MADE, Real NVP and NICE by maximum likelihood and IAF and a planar "
            "stack by reverse KL to three 2-D densities (seed 002's banana, two moons, a ring of "
            "Gaussians), distill an IAF student from the MAF by KL(student || teacher), and "
            "write a figure grid, the MADE-versus-MAF noise diagnostic and one table (held-out "
            "log-likelihood, KLs, time to sample and to score 100,000 points). CPU, a minute or "
            "two (--quick: the reduced size CI runs)."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="Folder to write results into.")
    p.add_argument("--quick", action="store_true", help="Reduced size (what CI runs).")
    p.add_argument("--seed", type=int, default=0, help="Seed; the same seed, the same numbers.")
    return _run_toy2d


def _run_toy2d(args: argparse.Namespace) -> int:
    from .toy2d import format_table, run_toy2d

    def progress(steps: Iterable[int], desc: str) -> Iterable[int]:
        return _progress(desc, "step")(steps)

    result = run_toy2d(args.out, quick=args.quick, seed=args.seed, progress=progress)
    print(format_table(result), end="")
    print(
        f"toy2d: wrote toy2d.png, toy2d_diagnostic.png, toy2d.md, toy2d.json into {args.out} "
        f"in {result['seconds']:.0f} s"
    )
    return 0


# --------------------------------------------------------------------------- main

SUBCOMMANDS = (
    _add_make_corpus,
    _add_preprocess,
    _add_train_teacher,
    _add_eval_teacher,
    _add_distill,
    _add_synthesize,
    _add_evaluate,
    _add_demo,
    _add_toy2d,
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(
        prog="pwavenet",
        description=(
            "Parallel WaveNet: train a WaveNet teacher, distill an inverse-autoregressive-flow "
            "student from it, and synthesize audio in one parallel pass."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pwavenet {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="Log more (-v info, -vv debug)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for add in SUBCOMMANDS:
        before = set(sub.choices)
        handler = add(sub)
        for name in set(sub.choices) - before:  # a subcommand and its aliases
            handlers[name] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    # Overrides (key=value) may stand anywhere after the subcommand, also after options, which
    # plain argparse would refuse once the positionals are filled.
    args, extra = parser.parse_known_args(argv)
    if extra:
        stray = [a for a in extra if not (hasattr(args, "overrides") and _OVERRIDE.match(a))]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.overrides = [*args.overrides, *extra]
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return handlers[args.command](args)
    except PwavenetError as exc:
        print(f"pwavenet: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pwavenet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
