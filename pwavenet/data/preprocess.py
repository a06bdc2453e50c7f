"""Preprocessing: a corpus folder into a feature cache (layout in :mod:`pwavenet.data.cache`).

Good files are kept, convertible ones (other channel counts, rates, sample formats) are
converted, unusable ones (empty, corrupt, non-finite, silent, too short) are skipped with their
cause. Every file is written atomically and the manifest last, so an interrupted run leaves no
cache that looks complete.
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
from .corpus import SPLITS, CorpusEntry, scan_corpus, speaker_table, split_ids

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


def _features(
    entry: CorpusEntry, mel_fn: Features, audio_cfg: AudioConfig, data_cfg: DataConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, check and featurise one file: ``(audio (T,), mel (feature_channels, T // hop))``
    (:mod:`pwavenet.features`: the log-mel, and log-F0 and voicing with ``audio.pitch``); raises
    AudioError with the cause if it is unusable."""
    audio, _ = read_audio(entry.path, audio_cfg.sample_rate)
    peak = float(np.abs(audio).max())
    if peak < data_cfg.silence_threshold:
        raise AudioError(f"{entry.path}: all silent (peak {peak:.2g})")
    hop = audio_cfg.hop_length
    usable = len(audio) // hop * hop
    if usable < data_cfg.segment_length:
        raise AudioError(
            f"{entry.path}: shorter than one training segment "
            f"({len(audio)} < {data_cfg.segment_length} samples)"
        )
    wav = torch.from_numpy(audio[:usable].copy())
    with torch.no_grad():
        mel = mel_fn(wav)
    return wav, mel.contiguous()


def _row(entry: CorpusEntry, wav: torch.Tensor, mel: torch.Tensor, note: str) -> dict[str, Any]:
    """The manifest row of one kept utterance (``speaker`` only in a multi-speaker corpus)."""
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


def _finish_cache(out_dir: Path, rows: list[dict[str, Any]], data_cfg: DataConfig) -> None:
    """Split the kept utterances (each row gets its ``split``), delete the feature files of
    utterances no longer kept, and write one source list per split."""
    split = split_ids(
        (r["id"] for r in rows),
        data_cfg.valid_utterances,
        data_cfg.test_utterances,
        data_cfg.split_seed,
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
    """
    settings = config if config is not None else _CacheSettings(audio=audio_cfg, data=data_cfg)
    if settings.audio != audio_cfg or settings.data != data_cfg:
        raise ValueError("config.audio and config.data must be audio_cfg and data_cfg")
    entries = scan_corpus(corpus_dir)
    out_dir = Path(out_dir)
    (out_dir / "feats").mkdir(parents=True, exist_ok=True)
    mel_fn = Features(audio_cfg)
    report = PreprocessReport(out_dir=out_dir)
    rows: list[dict[str, Any]] = []
    for entry in progress(entries) if progress else entries:
        try:
            wav, mel = _features(entry, mel_fn, audio_cfg, data_cfg)
        except AudioError as exc:
            if strict:
                raise
            _skip(report, entry.path, exc, on_skip)
            continue
        note = _conversion_note(entry.path, audio_cfg)
        if note:
            report.converted += 1
            logger.info("%s: converted (%s)", entry.path, note)
        with atomic_path(out_dir / "feats" / f"{entry.id}.safetensors") as tmp:
            save_file({"audio": wav, "mel": mel}, str(tmp))
        rows.append(_row(entry, wav, mel, note))
        report.processed += 1
        report.seconds += wav.shape[0] / audio_cfg.sample_rate
    if not rows:
        raise DataError(f"{corpus_dir}: no usable audio files ({len(report.skipped)} skipped)")
    _finish_cache(out_dir, rows, data_cfg)
    save_config(settings, out_dir / "config.yaml")
    _write_manifest(out_dir, Path(corpus_dir), audio_cfg, data_cfg, rows, report.skipped)
    return report


def _write_manifest(
    out_dir: Path,
    corpus_dir: Path,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    rows: list[dict[str, Any]],
    skipped: list[tuple[str, str]],
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
            "utterances": rows,
            "skipped": [{"path": p, "cause": c} for p, c in skipped],
        },
    )
