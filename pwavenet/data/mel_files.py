"""Mels given as files in place of the computed ones: ``pwavenet preprocess --mels DIR``.

A vocoder fine-tuned on an acoustic model's ground-truth-aligned mels (Tacotron 2 run with
teacher forcing, FastSpeech 2 run with the reference durations) learns to invert the mels it
will be given at synthesis, errors included. Utterance ``<id>`` then takes its mel from
``DIR/<id>.npy``: a float ``(n_mels, frames)`` array of the mel contract
(:func:`pwavenet.mels.mel_contract`), read with ``allow_pickle=False``. Pitch rows
(``audio.pitch``) are still computed from the audio.

Frames: the contract gives ``T // hop`` frames for ``T`` samples. A file may differ from that by
at most :data:`MEL_FRAME_TOLERANCE` frames (front ends' framing and duration rounding differ by a
frame or so); the cache then keeps the common part: a longer mel loses its last frames (they
describe the padding past the audio's end), a shorter one has the audio cut to ``frames * hop``
samples, as ParallelWaveGAN's preprocessing cuts audio to its features. Nothing is invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AudioConfig
from ..errors import DataError
from ..mels import mel_range_warning

__all__ = ["MEL_FRAME_TOLERANCE", "GivenMel", "MelFiles"]

MEL_FRAME_TOLERANCE = 2  # frames a given mel may differ from the audio's T // hop


@dataclass(frozen=True)
class GivenMel:
    """A file's mel aligned to its audio: ``mel (n_mels, frames)`` float32, the number of audio
    samples kept (``frames * hop``), what alignment did (empty when the lengths agreed) and,
    when the range check is off, the line it would have refused the mel with."""

    mel: np.ndarray
    samples: int
    note: str = ""
    warning: str | None = None


@dataclass(frozen=True)
class MelFiles:
    """The folder of ``<id>.npy`` mels that replace the computed ones, at the cache's settings.
    ``check_range``: refuse a mel whose values cannot be a natural-log magnitude mel
    (:func:`pwavenet.mels.mel_range_warning`); off, the cause is only reported."""

    root: Path
    audio: AudioConfig
    check_range: bool = True

    @classmethod
    def open(cls, root: str | Path, audio: AudioConfig, check_range: bool = True) -> MelFiles:
        """The folder ``root``; :class:`DataError` when it is not one."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder of .npy mels")
        return cls(root, audio, check_range)

    def record(self) -> dict[str, Any]:
        """What the cache's manifest records as ``mels``: where its mels came from."""
        return {
            "source": "files",
            "dir": str(self.root.resolve()),
            "range_checked": self.check_range,
            "frame_tolerance": MEL_FRAME_TOLERANCE,
        }

    def path(self, uid: str) -> Path:
        return self.root / f"{uid}.npy"

    def load(self, uid: str, samples: int, source: str | Path = "") -> GivenMel:
        """The mel of utterance ``uid`` (audio ``source`` of ``samples`` samples) checked and
        aligned (module docstring); one-line :class:`DataError` naming the file otherwise."""
        path = self.path(uid)
        mel = _read(path, uid, source)
        _check_shape(path, mel, self.audio)
        hop = self.audio.hop_length
        expected, frames = samples // hop, mel.shape[1]
        if abs(frames - expected) > MEL_FRAME_TOLERANCE:
            raise DataError(
                f"{path}: {frames} frames, but its audio ({samples} samples, hop {hop}) gives "
                f"{expected} under the mel contract (T // hop; at most {MEL_FRAME_TOLERANCE} "
                f"apart): {_length_hint(frames, expected)}"
            )
        warning = mel_range_warning(mel, self.audio, where=str(path))
        if warning is not None and self.check_range:
            raise DataError(f"{warning} (--no-mel-range-check keeps it)")
        keep = min(frames, expected)
        note = ""
        if frames > expected:
            note = f"mel {frames} frames, audio {expected}: the mel's last {frames - keep} dropped"
        elif frames < expected:
            note = f"mel {frames} frames, audio {expected}: audio cut to {keep * hop} samples"
        return GivenMel(np.ascontiguousarray(mel[:, :keep]), keep * hop, note, warning)


def _read(path: Path, uid: str, source: str | Path) -> np.ndarray:
    """The array of a ``.npy`` file as float32, refusing what is not a float array."""
    if not path.is_file():
        audio = f" (audio {source})" if source else ""
        raise DataError(f"{path}: no mel file for utterance {uid}{audio}; every kept one needs one")
    try:
        mel = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: unreadable .npy mel ({cause})") from None
    if not isinstance(mel, np.ndarray):  # an .npz archive under a .npy name
        raise DataError(f"{path}: not a single .npy array")
    if mel.dtype.kind != "f":
        raise DataError(f"{path}: {mel.dtype} values; a mel is a float32 or float64 array")
    return mel.astype(np.float32, copy=False)


def _check_shape(path: Path, mel: np.ndarray, audio: AudioConfig) -> None:
    if mel.ndim != 2:
        raise DataError(f"{path}: shape {mel.shape}; a mel is (n_mels, frames)")
    rows = mel.shape[0]
    if rows != audio.n_mels:
        hint = ""
        if mel.shape[1] == audio.n_mels:
            hint = "; it looks transposed (frames, n_mels): convert-mel --frames-first"
        elif rows == audio.feature_channels:
            hint = "; give the mel bands only: the pitch rows are computed from the audio"
        raise DataError(
            f"{path}: {rows} mel bands where audio.n_mels is {audio.n_mels} (read as "
            f"(n_mels, frames)){hint}"
        )
    bad = int(np.size(mel) - np.isfinite(mel).sum())
    if bad:
        raise DataError(f"{path}: mel contains {bad} non-finite values (NaN or Inf)")


def _length_hint(frames: int, expected: int) -> str:
    if frames > expected:
        return "padded in a batch, or the mel of other audio? cut it to the utterance's length"
    return "the mel of other audio? a front end that trims its audio needs the same cut audio here"
