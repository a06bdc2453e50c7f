"""Synthesis inputs and outputs: mels from files, batching over utterances, WAVs out.

Inputs may be audio files (at the model's rate, or resampled to it when asked; their log-mel is
computed with its feature settings) or ``.npy`` mel arrays ``(n_mels, frames)`` (read with
``allow_pickle=False``), given as files, folders or a text file listing paths (``@list.txt``).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import pad_mels, read_audio, silence_log_mel, write_wav
from .config import AudioConfig
from .data.corpus import AUDIO_EXTENSIONS
from .errors import AudioError, ConfigError, DataError
from .features import Features
from .fileio import write_json
from .mels import check_mel_rows, mel_range_warning
from .models.precision import precision_for
from .models.vocoder import Progress, Vocoder

logger = logging.getLogger(__name__)

__all__ = [
    "SYNTHESIS_LOG",
    "Utterance",
    "collect_inputs",
    "load_inputs",
    "synthesize",
    "utterance_seed",
]

SYNTHESIS_LOG = "synthesis.json"
SYNTHESIS_FORMAT = "pwavenet-synthesis/1"


@dataclass
class Utterance:
    """A mel to synthesize: ``mel (n_mels, frames)``, named ``id``."""

    id: str
    mel: torch.Tensor
    source: Path


def collect_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Expand files, folders (audio and ``.npy`` inside) and ``@list.txt`` into paths."""
    paths: list[Path] = []
    for item in items:
        item = str(item)
        if item.startswith("@"):
            listing = Path(item[1:])
            if not listing.is_file():
                raise DataError(f"{listing}: no such list file")
            lines = listing.read_text(encoding="utf-8").splitlines()
            paths += collect_inputs(line.strip() for line in lines if line.strip())
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and (p.suffix.lower() in AUDIO_EXTENSIONS or p.suffix == ".npy")
            )
            if not found:
                raise DataError(f"{path}: no audio or .npy mel files in this folder")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not paths:
        raise DataError("no inputs given")
    return paths


def load_inputs(
    paths: list[Path],
    audio: AudioConfig,
    *,
    resample: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> list[Utterance]:
    """Mels of every input, checked against the model's feature settings. An audio file at
    another sample rate is an error, or is resampled with ``resample``. A ``.npy`` mel whose
    values cannot be a natural-log magnitude mel (:func:`~pwavenet.mels.mel_range_warning`:
    a log10, dB or normalised mel given as is) is kept, and its one-line warning goes to
    ``on_warning`` (default: the log)."""
    warn = on_warning or logger.warning
    mel_fn = None
    out = []
    for path in paths:
        if path.suffix == ".npy":
            try:
                mel = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: unreadable mel array ({exc})") from None
            check_mel_rows(mel, audio, str(path))
            if mel.shape[1] == 0:
                raise DataError(f"{path}: mel has no frames (shape {mel.shape})")
            if (line := mel_range_warning(mel[: audio.n_mels], audio, str(path))) is not None:
                warn(line)
            out.append(Utterance(path.stem, torch.from_numpy(mel.astype(np.float32)), path))
            continue
        if not resample:
            try:
                rate = sf.info(str(path)).samplerate
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{path}: not a readable audio file ({exc})") from None
            if rate != audio.sample_rate:
                raise AudioError(
                    f"{path}: sample rate {rate} Hz, the model expects {audio.sample_rate} Hz "
                    "(pass --resample, or run it through `pwavenet preprocess`)"
                )
        wav, _ = read_audio(path, audio.sample_rate)
        if wav.shape[0] < audio.hop_length:
            raise AudioError(
                f"{path}: too short for one mel frame ({wav.shape[0]} samples, hop "
                f"{audio.hop_length})"
            )
        mel_fn = mel_fn or Features(audio)
        out.append(Utterance(path.stem, mel_fn(torch.from_numpy(wav)), path))
    return out


def _batches(utterances: list[Utterance], batch_size: int) -> Iterable[list[Utterance]]:
    order = sorted(utterances, key=lambda u: u.mel.shape[-1], reverse=True)
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def synthesize(
    model: Vocoder,
    utterances: list[Utterance],
    out_dir: str | Path,
    *,
    batch_size: int = 1,
    seed: int = 0,
    chunk_samples: int | None = None,
    speaker: str | int | None = None,
    progress: Progress | None = None,
    temperature: float = 1.0,
    dtype: str = "auto",
) -> list[dict[str, float | str]]:
    """Synthesize every utterance with any :class:`~pwavenet.models.vocoder.Vocoder` (its
    ``audio`` settings set, as the export loader does) and write ``<out>/<id>.wav``. Each
    utterance draws its noise from its own generator, seeded from ``seed`` and its id, so the
    output does not depend on the batching; ``chunk_samples`` and ``progress`` go to the
    model's ``synthesize``, and so does ``temperature`` (1: sample the model as trained).
    ``speaker``: a speaker name of the training corpus or an id, for a model conditioned on
    speakers (:meth:`~pwavenet.models.vocoder.Vocoder.speaker_ids`). ``dtype`` (``auto``,
    ``float32``, ``bfloat16``) picks the precision
    (:func:`~pwavenet.models.precision.choose_precision`: ``auto`` is bf16 for a student where
    the device has bf16 matrix units); the choice and its reason go to ``synthesis.json``.

    Returns per-utterance rows ``{"id", "samples", "seconds", "samples_per_s", "rtf"}``; speed
    is that of the batch the utterance was in (wall time of the model call, WAV writing
    excluded). The rows are also written to ``<out>/synthesis.json`` with the model kind,
    device and batch size, where ``pwavenet evaluate`` reads the synthesis speed.
    """
    audio_cfg = _audio_of(model)
    out_dir = Path(out_dir)
    device = next(model.parameters()).device
    silence = silence_log_mel(audio_cfg.log_floor)
    one = model.speaker_ids(speaker, 1)  # checked before anything is written
    precision = precision_for(dtype, model, device)
    options = {"chunk_samples": chunk_samples, "progress": progress, "temperature": temperature}
    options |= {"dtype": precision.dtype}
    rows: list[dict[str, float | str]] = []
    for batch in _batches(utterances, batch_size):
        lengths = [u.mel.shape[-1] * audio_cfg.hop_length for u in batch]
        gens = [torch.Generator().manual_seed(utterance_seed(seed, u.id)) for u in batch]
        mel = pad_mels([u.mel for u in batch], silence).to(device)
        _sync(device)
        start = time.perf_counter()
        ids = None if one is None else one.expand(len(batch))
        audio = model.synthesize(mel, lengths=lengths, speaker=ids, generator=gens, **options)
        _sync(device)
        elapsed = time.perf_counter() - start
        for u, n, wav in zip(batch, lengths, audio.cpu(), strict=True):
            if not torch.isfinite(wav[:n]).all():
                raise DataError(f"{u.source}: the model produced non-finite samples")
            write_wav(out_dir / f"{u.id}.wav", wav[:n], audio_cfg.sample_rate)
            rows.append(_speed_row(u.id, n, sum(lengths), elapsed, audio_cfg.sample_rate))
    settings = {"batch_size": batch_size, "chunk_samples": chunk_samples, "speaker": speaker}
    record = {"format": SYNTHESIS_FORMAT, "model": model.kind, "device": str(device)}
    record |= {"dtype": precision.name, "precision": precision.reason, "temperature": temperature}
    write_json(out_dir / SYNTHESIS_LOG, {**record, **settings, "utterances": rows})
    return rows


def _audio_of(model: Vocoder) -> AudioConfig:
    """The model's feature settings, or a one-line error when nothing set them."""
    if getattr(model, "audio", None) is None:
        raise ConfigError(
            f"{type(model).__name__}: its feature settings (.audio) are unset; load the model "
            "with pwavenet.models.export.load_vocoder, or set .audio to its AudioConfig"
        )
    return model.audio


def utterance_seed(seed: int, utterance_id: str) -> int:
    """The seed of one utterance's generator: the run's ``seed`` and the utterance's id."""
    return seed * 100_003 + zlib.crc32(utterance_id.encode())


def _speed_row(
    utterance_id: str, samples: int, batch_samples: int, elapsed: float, sample_rate: int
) -> dict[str, float | str]:
    """One row of ``synthesis.json``: the utterance and the speed of the batch it was in."""
    return {
        "id": utterance_id,
        "samples": samples,
        "seconds": samples / sample_rate,
        "samples_per_s": batch_samples / elapsed,
        "rtf": elapsed / max(batch_samples / sample_rate, 1e-9),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
