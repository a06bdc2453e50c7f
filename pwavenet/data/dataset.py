"""Corpus indexing, the feature cache, and the segment dataset.

Layout of a feature cache made by :func:`preprocess_corpus` (``pwavenet preprocess``)::

    <dump>/manifest.json          settings, feature hash, split, lengths, skipped files
    <dump>/config.yaml            the resolved config the cache was made with
    <dump>/feats/<id>.safetensors {"audio": (T,), "mel": (n_mels, T // hop)}, T a multiple of hop
    <dump>/lists/<split>.txt      the source audio files of each split, one path per line

Alignment contract: mel frame ``j`` belongs to audio samples ``[j * hop, (j + 1) * hop)``. A
training segment of ``S`` samples (``S`` a multiple of ``hop``) starting at frame ``f`` is
``audio[f * hop : f * hop + S]`` with ``mel[:, f : f + S // hop]``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ..audio import LogMelSpectrogram, read_audio
from ..config import AudioConfig, DataConfig, config_to_dict, feature_hash
from ..errors import AudioError, DataError
from ..fileio import atomic_path, read_json, write_json

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "pwavenet-features/1"
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

__all__ = [
    "Collate",
    "CorpusEntry",
    "EpochSampler",
    "FeatureCache",
    "PreprocessReport",
    "SegmentDataset",
    "preprocess_corpus",
    "scan_corpus",
    "split_ids",
]


# --------------------------------------------------------------------------- corpus index


@dataclass(frozen=True)
class CorpusEntry:
    """One utterance of a corpus: a stable id, its audio file and its transcript (may be empty)."""

    id: str
    path: Path
    text: str = ""


def scan_corpus(root: str | Path) -> list[CorpusEntry]:
    """Index an LJSpeech-style folder (``metadata.csv`` + ``wavs/``) or any folder of audio files.

    LJSpeech rows are ``id|text|normalized text``; the normalised text is kept when present.
    Other folders are searched recursively for files ending in :data:`AUDIO_EXTENSIONS`; the id
    is the path relative to ``root`` without its suffix, with ``/`` replaced by ``_``.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such corpus folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    metadata = root / "metadata.csv"
    if metadata.is_file() and (root / "wavs").is_dir():
        return _scan_ljspeech(metadata)
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not files:
        raise DataError(
            f"{root}: no audio files found (expected metadata.csv + wavs/, or files ending in "
            f"{', '.join(AUDIO_EXTENSIONS)})"
        )
    stems = [str(p.relative_to(root).with_suffix("")).replace("/", "_") for p in files]
    duplicated = {s for s in stems if stems.count(s) > 1}
    ids = [
        f"{s}_{p.suffix.lstrip('.').lower()}" if s in duplicated else s
        for s, p in zip(stems, files, strict=True)
    ]
    return [CorpusEntry(id=i, path=p) for i, p in zip(ids, files, strict=True)]


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
        entries.append(CorpusEntry(uid, metadata.parent / "wavs" / f"{uid}.wav", text.strip()))
    if not entries:
        raise DataError(f"{metadata}: no utterances listed")
    return entries


def split_ids(ids: Iterable[str], valid: int, test: int, seed: int) -> dict[str, str]:
    """Deterministic split: sort, shuffle with ``seed``, take ``test`` then ``valid`` ids.

    Returns ``{id: "train" | "valid" | "test"}``. At least one utterance stays in train.
    """
    order = sorted(ids)
    if len(order) < valid + test + 1:
        raise DataError(
            f"{len(order)} usable utterances cannot give {valid} valid + {test} test + "
            f"at least 1 train (lower data.valid_utterances / data.test_utterances)"
        )
    random.Random(seed).shuffle(order)
    split = {uid: "test" for uid in order[:test]}
    split.update({uid: "valid" for uid in order[test : test + valid]})
    split.update({uid: "train" for uid in order[test + valid :]})
    return split


# --------------------------------------------------------------------------- preprocessing


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
    entry: CorpusEntry, mel_fn: LogMelSpectrogram, audio_cfg: AudioConfig, data_cfg: DataConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, check and featurise one file; raises AudioError with the cause if it is unusable."""
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


def preprocess_corpus(
    corpus_dir: str | Path,
    out_dir: str | Path,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    *,
    strict: bool = False,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> PreprocessReport:
    """Write the feature cache of a corpus (see the module docstring for the layout).

    Good files are kept, convertible ones (other channel counts, rates, sample formats) are
    converted, unusable ones (empty, corrupt, non-finite, silent, too short) are skipped and
    reported through ``on_skip(path, cause)``; with ``strict`` the first one raises
    :class:`AudioError`. Every file is written atomically and the manifest last, so an
    interrupted run leaves no cache that looks complete.
    """
    entries = scan_corpus(corpus_dir)
    out_dir = Path(out_dir)
    feats = out_dir / "feats"
    feats.mkdir(parents=True, exist_ok=True)
    mel_fn = LogMelSpectrogram.from_config(audio_cfg)
    report = PreprocessReport(out_dir=out_dir)
    rows: list[dict[str, Any]] = []
    for entry in progress(entries) if progress else entries:
        try:
            wav, mel = _features(entry, mel_fn, audio_cfg, data_cfg)
        except AudioError as exc:
            if strict:
                raise
            cause = str(exc).removeprefix(f"{entry.path}: ")
            report.skipped.append((str(entry.path), cause))
            if on_skip:
                on_skip(str(entry.path), cause)
            logger.info("skipping %s: %s", entry.path, cause)
            continue
        note = _conversion_note(entry.path, audio_cfg)
        if note:
            report.converted += 1
            logger.info("%s: converted (%s)", entry.path, note)
        with atomic_path(feats / f"{entry.id}.safetensors") as tmp:
            save_file({"audio": wav, "mel": mel}, str(tmp))
        rows.append(
            {
                "id": entry.id,
                "file": f"feats/{entry.id}.safetensors",
                "source": str(entry.path),
                "text": entry.text,
                "samples": int(wav.shape[0]),
                "frames": int(mel.shape[1]),
                "converted": note,
            }
        )
        report.processed += 1
        report.seconds += wav.shape[0] / audio_cfg.sample_rate
    if not rows:
        raise DataError(f"{corpus_dir}: no usable audio files ({len(report.skipped)} skipped)")
    split = split_ids(
        (r["id"] for r in rows),
        data_cfg.valid_utterances,
        data_cfg.test_utterances,
        data_cfg.split_seed,
    )
    for row in rows:
        row["split"] = split[row["id"]]
    keep = {Path(r["file"]).name for r in rows}
    for stale in feats.glob("*.safetensors"):
        if stale.name not in keep:
            stale.unlink()
    lists = out_dir / "lists"
    lists.mkdir(exist_ok=True)
    for name in SPLITS:
        with atomic_path(lists / f"{name}.txt") as tmp:
            sources = [r["source"] for r in rows if r["split"] == name]
            tmp.write_text("".join(f"{s}\n" for s in sources), encoding="utf-8")
    write_json(
        out_dir / MANIFEST,
        {
            "format": MANIFEST_FORMAT,
            "feature_hash": feature_hash(audio_cfg),
            "audio": config_to_dict(audio_cfg),
            "segment_length": data_cfg.segment_length,
            "corpus": str(Path(corpus_dir).resolve()),
            "utterances": rows,
            "skipped": [{"path": p, "cause": c} for p, c in report.skipped],
        },
    )
    return report


# --------------------------------------------------------------------------- feature cache


class FeatureCache:
    """Read access to a feature cache; refuses one made with other feature settings."""

    def __init__(self, root: str | Path, audio_cfg: AudioConfig | None = None) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise DataError(f"{path}: no feature cache here (run `pwavenet preprocess` first)")
        manifest = read_json(path, MANIFEST_FORMAT, DataError, "feature manifest")
        self.manifest = manifest
        self.audio = AudioConfig(**manifest["audio"])
        if audio_cfg is not None and manifest["feature_hash"] != feature_hash(audio_cfg):
            diff = [
                f"{k} {getattr(self.audio, k)!r} vs {v!r}"
                for k, v in dataclasses.asdict(audio_cfg).items()
                if getattr(self.audio, k) != v
            ]
            raise DataError(
                f"{path}: features were made with other settings ({'; '.join(diff)} in the "
                f"config); re-run `pwavenet preprocess` with this config"
            )

    def entries(self, split: str | None = None) -> list[dict[str, Any]]:
        """Manifest rows, optionally of one split (``train``, ``valid`` or ``test``)."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return [u for u in self.manifest["utterances"] if split is None or u["split"] == split]

    def load(self, row: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(audio (T,), mel (n_mels, T // hop))`` of one manifest row."""
        path = self.root / row["file"]
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise DataError(f"{path}: unreadable feature file ({exc})") from None
        return tensors["audio"], tensors["mel"]


class SegmentDataset(Dataset):
    """Random fixed-length segments with their exactly aligned mel frames.

    Each item is ``{"audio": (1, S), "mel": (n_mels, S // hop), "length": int, "id": str}``.
    Utterances shorter than ``S`` are padded at the end (zeros for audio, the log-mel of
    silence for mel) and ``length`` counts the real samples. ``segment_length=None`` yields
    whole utterances. ``repeat`` lists every utterance that many times per epoch.
    Offsets are drawn from torch's global RNG (seeded per worker and per process by accelerate).
    """

    def __init__(
        self,
        cache: FeatureCache,
        split: str = "train",
        *,
        segment_length: int | None = 7680,
        repeat: int = 1,
    ) -> None:
        self.cache = cache
        self.rows = cache.entries(split)
        if not self.rows:
            raise DataError(f"{cache.root}: the '{split}' split is empty")
        self.hop = cache.audio.hop_length
        if segment_length is not None and segment_length % self.hop:
            raise ValueError(f"segment_length {segment_length} is not a multiple of {self.hop}")
        self.segment_length = segment_length
        self.repeat = repeat
        self.silence = float(np.log(cache.audio.log_floor))

    def __len__(self) -> int:
        return len(self.rows) * self.repeat

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """``index`` or ``(index, frame_offset)`` as yielded by :class:`EpochSampler`."""
        if isinstance(index, tuple):
            return self.segment(*index)
        return self.segment(index, self.draw_offset(index))

    def draw_offset(self, index: int, generator: torch.Generator | None = None) -> int:
        """A uniformly random valid start frame for utterance ``index``."""
        if self.segment_length is None:
            return 0
        row = self.rows[index % len(self.rows)]
        high = max(row["frames"] - self.segment_length // self.hop, 0)
        return int(torch.randint(0, high + 1, (), generator=generator).item())

    def segment(self, index: int, frame_offset: int) -> dict[str, Any]:
        """The segment of utterance ``index`` that starts at mel frame ``frame_offset``."""
        row = self.rows[index % len(self.rows)]
        audio, mel = self.cache.load(row)
        if self.segment_length is None:
            return {"audio": audio[None], "mel": mel, "length": audio.shape[0], "id": row["id"]}
        frames = self.segment_length // self.hop
        if not 0 <= frame_offset <= max(row["frames"] - frames, 0):
            raise IndexError(f"frame offset {frame_offset} out of range for {row['id']}")
        start = frame_offset * self.hop
        audio = audio[start : start + self.segment_length]
        mel = mel[:, frame_offset : frame_offset + frames]
        length = audio.shape[0]
        if length < self.segment_length:
            audio = torch.nn.functional.pad(audio, (0, self.segment_length - length))
            mel = torch.nn.functional.pad(mel, (0, frames - mel.shape[1]), value=self.silence)
        return {"audio": audio[None], "mel": mel, "length": length, "id": row["id"]}


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled ``(index, frame_offset)`` pairs that are a pure function of (seed, epoch).

    Every process of a distributed run draws the same sequence (accelerate then shards the
    batches), and a resumed run reproduces the data order exactly by skipping consumed batches.
    """

    def __init__(self, dataset: SegmentDataset, seed: int = 0, shuffle: bool = True) -> None:
        self.dataset, self.seed, self.shuffle, self.epoch = dataset, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else range(n)
        for i in order:
            yield i, self.dataset.draw_offset(i, g)


@dataclass(frozen=True)
class Collate:
    """Batch items of possibly different lengths: pad audio with zeros and mel with silence.

    Returns ``{"audio": (B, 1, T), "mel": (B, n_mels, T // hop), "lengths": (B,), "ids": list}``.
    """

    hop_length: int
    mel_pad_value: float

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        frames = max(it["mel"].shape[-1] for it in items)
        samples = frames * self.hop_length
        audio = torch.zeros(len(items), 1, samples)
        mel = torch.full((len(items), items[0]["mel"].shape[0], frames), self.mel_pad_value)
        for i, it in enumerate(items):
            audio[i, :, : it["audio"].shape[-1]] = it["audio"]
            mel[i, :, : it["mel"].shape[-1]] = it["mel"]
        lengths = torch.tensor([it["length"] for it in items], dtype=torch.long)
        return {"audio": audio, "mel": mel, "lengths": lengths, "ids": [it["id"] for it in items]}
