"""``listen``: a blind MUSHRA-style listening page from an evaluation folder; ``listen-score``:
the ratings it saves, scored.

Two subcommands rather than ``listen --score``: writing a page and scoring ratings share no
option (a seed and an utterance count against rating files and post-screening), and each gets
its own ``--help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import Handler

LARGE_PAGE_MB = 50  # above this, warn: browsers open a page this large slowly


def _add_listen(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "listen",
        help="Write a blind listening test page (MUSHRA) from an evaluation folder.",
        description=(
            "Write one self-contained HTML page (audio embedded as 16-bit WAV; no server, no "
            "network) for a MUSHRA-style test (ITU-R BS.1534) of the systems `pwavenet "
            "evaluate` compared: for each utterance an open reference, then the hidden "
            "reference, every system and the Griffin-Lim anchor in a seeded shuffled order "
            "under neutral labels (A, B, ...), with a 0-100 slider each on the scale Bad, "
            "Poor, Fair, Good, Excellent. Raters open the page in a browser and press 'Save "
            "ratings', which downloads a JSON file; score those with `pwavenet listen-score`."
            "\n\nThe labels are hidden from the listener, not from someone who reads the "
            "page's source."
        ),
    )
    p.add_argument(
        "eval_dir", type=Path, metavar="EVAL_DIR", help="The --out folder of `pwavenet evaluate`."
    )
    p.add_argument("--out", type=Path, help="The page (default: EVAL_DIR/listen.html).")
    p.add_argument(
        "--max-utterances",
        type=int,
        default=8,
        help="Trials on the page: the first utterances of the evaluation (the page grows by "
        "about 59 kB per second of audio per item at 22.05 kHz: 16-bit WAV in base64).",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the shuffled trial and item order.")
    p.add_argument(
        "--lowpass-anchor",
        action="store_true",
        help="Add BS.1534's low anchor: the reference low-passed at 3.5 kHz.",
    )
    p.add_argument("--title", default="Listening test", help="The page's title.")
    return _run_listen


def _run_listen(args: argparse.Namespace) -> int:
    from ..eval.listen import write_listening_page

    made = write_listening_page(
        args.eval_dir,
        args.out,
        max_utterances=args.max_utterances,
        seed=args.seed,
        lowpass_anchor=args.lowpass_anchor,
        title=args.title,
    )
    megabytes = made["bytes"] / 1e6
    if megabytes > LARGE_PAGE_MB:
        print(
            f"pwavenet: warning: {made['path']} is {megabytes:.0f} MB: browsers open it slowly "
            "(lower --max-utterances)",
            file=sys.stderr,
        )
    print(
        f"listen: {made['trials']} trials of {made['items']} items (hidden reference and "
        f"anchors included), {megabytes:.1f} MB, page id {made['page_id']}; wrote {made['path']}"
    )
    return 0


def _add_listen_score(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "listen-score",
        help="Score the rating files saved from a listening page.",
        description=(
            "Check the rating files saved from one `pwavenet listen` page (one line naming the "
            "file for one that is not JSON, rates another page, misses a field or holds a "
            "rating outside 0-100), exclude the raters that fail BS.1534's post-screening "
            "(the hidden reference rated below 90 in more than 15 % of the trials), and print "
            "a Markdown table: per system the number of ratings, the mean and its 95 % "
            "confidence interval (Student t, as BS.1534 prescribes)."
        ),
    )
    p.add_argument(
        "ratings", nargs="+", type=Path, metavar="RATINGS", help="Rating files (.json) or folders."
    )
    p.add_argument("--out", type=Path, help="Also write the table to this Markdown file.")
    p.add_argument(
        "--no-post-screening",
        action="store_true",
        help="Keep every rater (for a pilot; the standard excludes raters who miss the "
        "hidden reference).",
    )
    return _run_listen_score


def _run_listen_score(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..eval.listen_score import ratings_table, score_ratings
    from ..fileio import atomic_path

    paths = []
    for item in args.ratings:
        found = sorted(item.glob("*.json")) if item.is_dir() else [item]
        if not found:
            raise DataError(f"{item}: no rating files (*.json) in this folder")
        paths += found
    table = ratings_table(score_ratings(paths, post_screening=not args.no_post_screening))
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            tmp.write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


COMMANDS = (_add_listen, _add_listen_score)
