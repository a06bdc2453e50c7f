"""``demo`` (the end-to-end pipeline) and ``toy2d`` (the 2-D flow ladder)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from .common import EXIT_ERROR, Handler, echo, progress_bar

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
            "(about 13 minutes on 2 cores, pitch-informed), cpu-long (46 minutes measured on 2 "
            "cores, pitch-informed, voiced output), gpu (pitch-informed, sized by estimate to "
            "finish in 6 minutes on one H200; tools/gpu_check.sh times it). "
            "Configs: pwavenet/conf/demo/{teacher,student}_<size>.yaml (shipped with the package)."
        ),
    )
    p.add_argument("--quick", action="store_true", help="The smallest size (what CI runs).")
    p.add_argument("--size", choices=("cpu", "cpu-long", "gpu"), default="cpu", help="Demo size.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="Output folder.")
    p.add_argument(
        "--conf",
        type=Path,
        help="Folder of the demo configs (default: the package's, pwavenet/conf/demo).",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="Run nothing: check that OUT holds a finished demo with a complete report (every "
        "stage recorded, every number finite, every figure and audio file present).",
    )
    return _run_demo


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import check_demo, run_demo

    if args.check:
        problems = check_demo(args.out)
        for p in problems:
            print(f"pwavenet: demo check: {p}", file=sys.stderr)
        if not problems:
            print(f"demo: {args.out} holds a finished demo with a complete report")
        return EXIT_ERROR if problems else 0

    size = "quick" if args.quick else args.size
    record = run_demo(
        args.out, size, conf_dir=args.conf, log=echo, progress=lambda d, u: progress_bar(d, u)
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
    from ..toy.toy2d import format_table, run_toy2d

    def progress(steps: Iterable[int], desc: str) -> Iterable[int]:
        return progress_bar(desc, "step")(steps)

    result = run_toy2d(args.out, quick=args.quick, seed=args.seed, progress=progress)
    print(format_table(result), end="")
    print(
        f"toy2d: wrote toy2d.png, toy2d_diagnostic.png, toy2d.md, toy2d.json into {args.out} "
        f"in {result['seconds']:.0f} s"
    )
    return 0


COMMANDS = (
    _add_demo,
    _add_toy2d,
)
