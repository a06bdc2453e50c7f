"""Corpus layouts: index the utterances of a corpus folder, with speakers, and split them (at
random, or with a fixed test list: :func:`read_test_list`).

Two layouts are read:

- LJSpeech style, ``metadata.csv`` + ``wavs/<id>.wav``. Rows are ``id|text|normalized text``,
  or ``id|text|normalized text|speaker`` for a multi-speaker corpus (then every row names its
  speaker; an empty normalised field falls back to the text).
- Any other folder of audio files, searched recursively. When every file lies inside a subfolder,
  the name of its top-level subfolder is its speaker (``root/<speaker>/.../<file>``); a file
  directly in ``root`` makes the corpus speakerless.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "SPLITS",
    "CorpusEntry",
    "check_listed",
    "read_test_list",
    "scan_corpus",
    "speaker_table",
    "split_ids",
]

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".aiff",
    ".aif",
    ".au",
    ".w64",
    ".rf64",
    ".mp3",
)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class CorpusEntry:
    """One utterance of a corpus: a stable id, its audio file, its transcript (may be empty) and
    its speaker's name (``None`` in a speakerless corpus)."""

    id: str
    path: Path
    text: str = ""
    speaker: str | None = None


def scan_corpus(root: str | Path) -> list[CorpusEntry]:
    """Index an LJSpeech-style folder (``metadata.csv`` + ``wavs/``) or any folder of audio files
    (see the module docstring for both layouts and their speakers).

    LJSpeech rows keep the normalised text when present. In other folders the id is the path
    relative to ``root`` without its suffix, with ``/`` replaced by ``_``.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such corpus folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    metadata = root / "metadata.csv"
    if metadata.is_file() and (root / "wavs").is_dir():
        return _scan_ljspeech(metadata)
    return _scan_folder(root)


def _scan_folder(root: Path) -> list[CorpusEntry]:
    files = sorted(  # dangling links too: preprocessing skips them with their cause
        p
        for p in root.rglob("*")
        if (p.is_file() or (p.is_symlink() and not p.exists()))
        and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not files:
        raise DataError(
            f"{root}: no audio files found (expected metadata.csv + wavs/, or files ending in "
            f"{', '.join(AUDIO_EXTENSIONS)})"
        )
    relative = [p.relative_to(root) for p in files]
    stems = [str(r.with_suffix("")).replace("/", "_") for r in relative]
    duplicated = {s for s in stems if stems.count(s) > 1}
    ids = [
        f"{s}_{p.suffix.lstrip('.').lower()}" if s in duplicated else s
        for s, p in zip(stems, files, strict=True)
    ]
    nested = all(len(r.parts) > 1 for r in relative)
    speakers = [r.parts[0] if nested else None for r in relative]
    return [
        CorpusEntry(id=i, path=p, speaker=s) for i, p, s in zip(ids, files, speakers, strict=True)
    ]


def _scan_ljspeech(metadata: Path) -> list[CorpusEntry]:
    entries: list[CorpusEntry] = []
    seen: set[str] = set()
    try:
        lines = metadata.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{metadata}: cannot read ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        uid = fields[0].strip()
        if not uid or not re.fullmatch(r"[\w.\-]+", uid):
            raise DataError(f"{metadata}:{number}: malformed row (expected 'id|text|normalized')")
        if uid in seen:
            raise DataError(f"{metadata}:{number}: duplicate id '{uid}'")
        seen.add(uid)
        text = fields[2] if len(fields) > 2 and fields[2].strip() else "|".join(fields[1:2])
        speaker = fields[3].strip() if len(fields) > 3 and fields[3].strip() else None
        if entries and (speaker is None) != (entries[0].speaker is None):
            raise DataError(
                f"{metadata}:{number}: every row or none must name a speaker in a 4th field "
                f"('id|text|normalized|speaker')"
            )
        path = metadata.parent / "wavs" / f"{uid}.wav"
        entries.append(CorpusEntry(uid, path, text.strip(), speaker))
    if not entries:
        raise DataError(f"{metadata}: no utterances listed")
    return entries


def speaker_table(names: Iterable[str | None]) -> dict[str, int]:
    """The stable ``{speaker name: id}`` table of a corpus: sorted names numbered from 0; empty
    when no utterance has a speaker."""
    return {name: i for i, name in enumerate(sorted({n for n in names if n is not None}))}


def split_ids(
    ids: Iterable[str],
    valid: int,
    test: int,
    seed: int,
    test_ids: Iterable[str] | None = None,
) -> dict[str, str]:
    """Deterministic split: sort, shuffle with ``seed``, take ``test`` then ``valid`` ids.

    With ``test_ids`` (a fixed test list, :func:`read_test_list`; every one among ``ids``)
    those are the test set, ``test`` is ignored, and ``valid`` ids are drawn from the others.
    Returns ``{id: "train" | "valid" | "test"}``. At least one utterance stays in train.
    """
    order = sorted(ids)
    fixed = None if test_ids is None else list(dict.fromkeys(test_ids))
    if fixed is not None:
        check_listed("test list", fixed, order, "not among the utterances")
        taken = set(fixed)
        order = [uid for uid in order if uid not in taken]
        if len(order) < valid + 1:
            raise DataError(
                f"{len(order) + len(fixed)} usable utterances cannot give {valid} valid + "
                f"{len(fixed)} listed test + at least 1 train (lower data.valid_utterances or "
                f"shorten data.test_list)"
            )
        test = 0
    elif len(order) < valid + test + 1:
        raise DataError(
            f"{len(order)} usable utterances cannot give {valid} valid + {test} test + "
            f"at least 1 train (lower data.valid_utterances / data.test_utterances)"
        )
    random.Random(seed).shuffle(order)
    split = dict.fromkeys(sorted(fixed or ()), "test")
    split.update({uid: "test" for uid in order[:test]})
    split.update({uid: "valid" for uid in order[test : test + valid]})
    split.update({uid: "train" for uid in order[test + valid :]})
    return split


def read_test_list(path: str | Path, known: Iterable[str]) -> list[str]:
    """The utterance ids of a test list file: one per line, ``#`` starts a comment, blank lines
    are skipped. A line may also be a file path (``wavs/LJ001-0001.wav``: its name without the
    suffix is the id) and may go on after ``|`` or whitespace (``id|text``, ``id path``), as in
    the lists of other toolkits. An unreadable or empty list, or ids not among ``known`` (the
    corpus's), is a one-line :class:`DataError` naming the file and the first missing ids."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable test list ({exc})") from None
    ids: dict[str, None] = {}
    for line in lines:
        fields = line.split("#", 1)[0].split("|", 1)[0].split()
        if fields:
            item = fields[0]
            is_path = "/" in item or Path(item).suffix.lower() in AUDIO_EXTENSIONS
            ids[Path(item).stem if is_path else item] = None
    if not ids:
        raise DataError(f"{path}: no utterance ids in this test list")
    check_listed(path, ids, known, "not in the corpus")
    return list(ids)


def check_listed(source: str | Path, listed: Iterable[str], known: Iterable[str], why: str) -> None:
    """Refuse ids of a list (``source``, named in the message) that are not among ``known``:
    one line with how many and the first five, in the list's order."""
    have = set(known)
    missing = [uid for uid in listed if uid not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{source}: {len(missing)} listed ids {why}: {shown}")
