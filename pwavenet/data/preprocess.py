"""Preprocessing: a corpus folder into a feature cache (layout in :mod:`pwavenet.data.cache`).

Good files are kept, convertible ones (other channel counts, rates, sample formats) are
converted, unusable ones (empty, corrupt, non-finite, silent, too short) are skipped with their
cause. Every file is written atomically and the manifest last, so an interrupted run leaves no
cache that looks complete. With ``mels`` (``preprocess --mels DIR``) each utterance's log-mel
comes from ``DIR/<id>.npy`` (:mod:`pwavenet.data.mel_files`), every one checked before the
first file is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import save_file

from ..audio import read_audio
from ..config import AudioConfig, Config, DataConfig, config_to_dict, feature_hash, save_config
from ..errors import AudioError, DataError
from ..features import Features
from ..fileio import atomic_path, write_json
from .cache import MANIFEST, MANIFEST_FORMAT
from .corpus import (
    SPLITS,
    CorpusEntry,
    check_listed,
    read_test_list,
    scan_corpus,
    speaker_table,
    split_ids,
)
from .mel_files import GivenMel, MelFiles

logger = logging.getLogger(__name__)

__all__ = ["PreprocessReport", "preprocess_corpus"]


@dataclass(frozen=True)
class _CacheSettings:
    """The sections of a config that a feature cache depends on."""

    audio: AudioConfig
    data: DataConfig


@dataclass
class PreprocessReport:
    """What :func:`preprocess_corpus` did."""

    out_dir: Path
    processed: int = 0
    converted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, cause)
    seconds: float = 0.0  # total audio kept
    mel_aligned: int = 0  # given mels (``mels``) whose frames and audio were cut to agree
    mel_warnings: list[str] = field(default_factory=list)  # range causes kept (check off)


def _conversion_note(path: Path, cfg: AudioConfig) -> str:
    info = sf.info(str(path))
    notes = []
    if info.channels != 1:
        notes.append(f"{info.channels} channels -> mono")
    if info.samplerate != cfg.sample_rate:
        notes.append(f"{info.samplerate} Hz -> {cfg.sample_rate} Hz")
    if info.subtype != "PCM_16":
        notes.append(f"{info.subtype} -> float")
    return ", ".join(notes)


def _usable_audio(entry: CorpusEntry, audio_cfg: AudioConfig, data_cfg: DataConfig) -> np.ndarray:
    """Read and check one file: ``audio (T,)``; raises AudioError with the cause if it is
    unusable (unreadable, silent, shorter than one training segment)."""
    audio, _ = read_audio(entry.path, audio_cfg.sample_rate)
    peak = float(np.abs(audio).max())
    if peak < data_cfg.silence_threshold:
        raise AudioError(f"{entry.path}: all silent (peak {peak:.2g})")
    _check_length(entry.path, len(audio) // audio_cfg.hop_length * audio_cfg.hop_length, data_cfg)
    return audio


def _check_length(path: Path, usable: int, data_cfg: DataConfig) -> None:
    if usable < data_cfg.segment_length:
        raise AudioError(
            f"{path}: shorter than one training segment "
            f"({usable} < {data_cfg.segment_length} samples)"
        )


def _features(
    entry: CorpusEntry,
    mel_fn: Features,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    mels: MelFiles | None = None,
) -> tuple[torch.Tensor, torch.Tensor, GivenMel | None]:
    """Read, check and featurise one file: ``(audio (T,), mel (feature_channels, T // hop))``
    (:mod:`pwavenet.features`: the log-mel, and log-F0 and voicing with ``audio.pitch``), and
    with ``mels`` the file's mel that replaced the log-mel rows (audio and pitch rows cut to its
    frames); raises AudioError with the cause if the audio is unusable and DataError if its mel
    file is."""
    audio = _usable_audio(entry, audio_cfg, data_cfg)
    usable = len(audio) // audio_cfg.hop_length * audio_cfg.hop_length
    given = None
    if mels is not None:
        given = mels.load(entry.id, len(audio), entry.path)
        usable = given.samples
        _check_length(entry.path, usable, data_cfg)
    wav = torch.from_numpy(audio[:usable].copy())
    with torch.no_grad():
        mel = mel_fn(wav)
    if given is not None:
        mel[: given.mel.shape[0]] = torch.from_numpy(given.mel)
    return wav, mel.contiguous(), given


def _check_mel_files(
    entries: list[CorpusEntry],
    mels: MelFiles,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None,
) -> None:
    """Check every mel file against its audio before anything is written, so a bad one stops
    the run with nothing written (the audio is read twice). Unusable audio is left to the
    writing pass, which skips it (or, with ``strict``, stops there)."""
    for entry in progress(entries) if progress else entries:
        try:
            audio = _usable_audio(entry, audio_cfg, data_cfg)
        except AudioError:
            continue
        mels.load(entry.id, len(audio), entry.path)


def _row(
    entry: CorpusEntry, wav: torch.Tensor, mel: torch.Tensor, note: str, given: GivenMel | None
) -> dict[str, Any]:
    """The manifest row of one kept utterance (``speaker`` only in a multi-speaker corpus;
    ``mel_file`` and ``mel_aligned`` only when its mel came from a file)."""
    row = {
        "id": entry.id,
        "file": f"feats/{entry.id}.safetensors",
        "source": str(entry.path),
        "text": entry.text,
        "samples": int(wav.shape[0]),
        "frames": int(mel.shape[1]),
        "converted": note,
    }
    if entry.speaker is not None:
        row["speaker"] = entry.speaker
    if given is not None:
        row["mel_file"] = f"{entry.id}.npy"
        row["mel_aligned"] = given.note
    return row


def _skip(
    report: PreprocessReport,
    path: Path,
    exc: AudioError,
    on_skip: Callable[[str, str], None] | None,
) -> None:
    cause = str(exc).removeprefix(f"{path}: ")
    report.skipped.append((str(path), cause))
    if on_skip:
        on_skip(str(path), cause)
    logger.info("skipping %s: %s", path, cause)


def _finish_cache(
    out_dir: Path, rows: list[dict[str, Any]], data_cfg: DataConfig, test_ids: list[str] | None
) -> None:
    """Split the kept utterances (each row gets its ``split``; ``test_ids``: the test list's,
    all of them kept), delete the feature files of utterances no longer kept, and write one
    source list per split."""
    kept = [r["id"] for r in rows]
    if test_ids is not None:
        check_listed(data_cfg.test_list, test_ids, kept, "were skipped as unusable")
    split = split_ids(
        kept,
        data_cfg.valid_utterances,
        data_cfg.test_utterances,
        data_cfg.split_seed,
        test_ids,
    )
    for row in rows:
        row["split"] = split[row["id"]]
    keep = {Path(r["file"]).name for r in rows}
    for stale in (out_dir / "feats").glob("*.safetensors"):
        if stale.name not in keep:
            stale.unlink()
    lists = out_dir / "lists"
    lists.mkdir(exist_ok=True)
    for name in SPLITS:
        with atomic_path(lists / f"{name}.txt") as tmp:
            sources = [r["source"] for r in rows if r["split"] == name]
            tmp.write_text("".join(f"{s}\n" for s in sources), encoding="utf-8")


def preprocess_corpus(
    corpus_dir: str | Path,
    out_dir: str | Path,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    *,
    config: Config | None = None,
    strict: bool = False,
    mels: str | Path | None = None,
    check_mel_range: bool = True,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> PreprocessReport:
    """Write the feature cache of a corpus (see the module docstring and
    :mod:`pwavenet.data.cache` for the layout).

    Unusable files are reported through ``on_skip(path, cause)``; with ``strict`` the first one
    raises :class:`AudioError`. The whole ``config`` the run uses (its audio and data sections
    must be ``audio_cfg`` and ``data_cfg``) is written as ``config.yaml``; without it, its
    ``audio`` and ``data`` sections alone, the settings the cache depends on. (Filling the other
    sections with defaults could write a config that does not load: the default upsampler
    scales only fit the default hop length.)

    ``mels``: a folder of ``<id>.npy`` mels that replace the computed log-mel of every kept
    utterance (:mod:`pwavenet.data.mel_files`; ``check_mel_range=False`` keeps mels whose
    values cannot be a natural-log magnitude mel, listing them in ``mel_warnings``). Every one
    is checked before anything is written: a bad one raises :class:`DataError` naming it.

    ``data_cfg.test_list`` names a file of utterance ids that become the test set
    (:func:`~pwavenet.data.corpus.read_test_list`): ids not in the corpus are refused before
    anything is written, listed ids skipped as unusable before the manifest is.
    """
    settings = config if config is not None else _CacheSettings(audio=audio_cfg, data=data_cfg)
    if settings.audio != audio_cfg or settings.data != data_cfg:
        raise ValueError("config.audio and config.data must be audio_cfg and data_cfg")
    entries = scan_corpus(corpus_dir)
    listed = data_cfg.test_list
    test_ids = read_test_list(listed, [e.id for e in entries]) if listed else None
    given = None if mels is None else MelFiles.open(mels, audio_cfg, check_mel_range)
    if given is not None:
        _check_mel_files(entries, given, audio_cfg, data_cfg, progress)
    out_dir = Path(out_dir)
    (out_dir / "feats").mkdir(parents=True, exist_ok=True)
    mel_fn = Features(audio_cfg)
    report = PreprocessReport(out_dir=out_dir)
    rows: list[dict[str, Any]] = []
    for entry in progress(entries) if progress else entries:
        try:
            rows.append(_keep(entry, out_dir, mel_fn, audio_cfg, data_cfg, given, report))
        except AudioError as exc:
            if strict:
                raise
            _skip(report, entry.path, exc, on_skip)
    if not rows:
        raise DataError(f"{corpus_dir}: no usable audio files ({len(report.skipped)} skipped)")
    _finish_cache(out_dir, rows, data_cfg, test_ids)
    save_config(settings, out_dir / "config.yaml")
    source = given.record() if given is not None else {"source": "computed"}
    _write_manifest(out_dir, Path(corpus_dir), audio_cfg, data_cfg, rows, report.skipped, source)
    return report


def _keep(
    entry: CorpusEntry,
    out_dir: Path,
    mel_fn: Features,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    mels: MelFiles | None,
    report: PreprocessReport,
) -> dict[str, Any]:
    """Featurise one file, write its feature file and count it in ``report``; returns its
    manifest row (AudioError when it is unusable)."""
    wav, mel, given = _features(entry, mel_fn, audio_cfg, data_cfg, mels)
    note = _conversion_note(entry.path, audio_cfg)
    if note:
        report.converted += 1
        logger.info("%s: converted (%s)", entry.path, note)
    if given is not None and given.note:
        report.mel_aligned += 1
        logger.info("%s: %s", entry.id, given.note)
    if given is not None and given.warning:
        report.mel_warnings.append(given.warning)
    with atomic_path(out_dir / "feats" / f"{entry.id}.safetensors") as tmp:
        save_file({"audio": wav, "mel": mel}, str(tmp))
    report.processed += 1
    report.seconds += wav.shape[0] / audio_cfg.sample_rate
    return _row(entry, wav, mel, note, given)


def _write_manifest(
    out_dir: Path,
    corpus_dir: Path,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    rows: list[dict[str, Any]],
    skipped: list[tuple[str, str]],
    mels: dict[str, Any],
) -> None:
    """The manifest, written last: its presence marks the cache complete."""
    write_json(
        out_dir / MANIFEST,
        {
            "format": MANIFEST_FORMAT,
            "feature_hash": feature_hash(audio_cfg),
            "audio": config_to_dict(audio_cfg),
            "segment_length": data_cfg.segment_length,
            "corpus": str(corpus_dir.resolve()),
            "speakers": speaker_table(r.get("speaker") for r in rows),
            "mels": mels,
            "utterances": rows,
            "skipped": [{"path": p, "cause": c} for p, c in skipped],
        },
    )
