"""pwavenet's mel contract, and mels of other front ends brought to it.

A ``.npy`` mel given to ``pwavenet synthesize`` must be what
:class:`~pwavenet.audio.LogMelSpectrogram` computes (:func:`mel_contract` states it in words,
from the model's :class:`~pwavenet.config.AudioConfig`). Text-to-speech front ends write mels of
their own conventions; :func:`convert_mel` brings one to pwavenet's where that is possible (log
base, dB, global mean/variance normalisation, power, centred framing) and refuses, in one line,
what cannot be converted (other mel bands, band edges, sample rate or hop).
:func:`mel_range_warning` says when a mel's values cannot be a natural-log magnitude mel of the
contract, which is how a log10, dB or normalised mel given as is usually shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .config import AudioConfig
from .errors import DataError
from .fileio import atomic_path

__all__ = [
    "LOG_BASES",
    "MelSource",
    "check_mel_rows",
    "collect_mels",
    "convert_files",
    "convert_mel",
    "load_stats",
    "mel_contract",
    "mel_range_warning",
    "mel_upper_bound",
    "target_audio",
]

LogBase = Literal["natural", "log10", "log2", "db"]
# What one unit of each source scale is in nats (natural-log units). dB: 20 log10 of a magnitude
# (or 10 log10 of a power, which the power conversion then halves: the same number of nats).
LOG_BASES: dict[str, float] = {
    "natural": 1.0,
    "log10": math.log(10.0),
    "log2": math.log(2.0),
    "db": math.log(10.0) / 20.0,
}


def _num(x: float) -> str:
    """``1e-05`` -> ``1e-5``: numbers as a reader writes them."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:g}").replace("e+", "e")


def mel_contract(audio: AudioConfig) -> str:
    """pwavenet's mel convention at the settings ``audio``, as one paragraph for ``--help``."""
    top = audio.fmax if audio.fmax is not None else audio.sample_rate / 2
    pad = (audio.n_fft - audio.hop_length) // 2
    return (
        f"Mel contract (a .npy input must follow it; `pwavenet convert-mel` converts the mels "
        f"of other front ends, docs/mel.md compares them): audio in [-1, 1] at "
        f"{audio.sample_rate} Hz; STFT with n_fft {audio.n_fft}, hop {audio.hop_length}, a "
        f"periodic Hann window of {audio.win_length} samples (centred in n_fft when shorter); "
        f"the magnitude |X| (power 1, not "
        f"|X|^2); {audio.n_mels} mel bands from {audio.fmin:g} to {top:g} Hz on the Slaney mel "
        f"scale, each triangle scaled to unit area (Slaney normalisation: librosa's filters.mel "
        f"with htk=False, norm='slaney'); then ln(max(mel, {_num(audio.log_floor)})), the natural "
        f"log clamped at log_floor, so silence is {math.log(audio.log_floor):.2f} and nothing is "
        f"lower; no mean/variance normalisation. Framing: the signal is reflect-padded by "
        f"(n_fft - hop) / 2 = {pad} samples on each side and framed without centring, so T "
        f"samples give T // {audio.hop_length} frames and frame j is centred on the hop block "
        f"[j * hop, (j + 1) * hop); a centred front end (center=True) gives 1 + T // hop. Shape "
        f"(n_mels, frames), float32."
    )


def mel_upper_bound(audio: AudioConfig) -> float:
    """The largest value a natural-log magnitude mel of audio in [-1, 1] can take at these
    settings: ``ln(sum(window) * max_m sum_k W[m, k])``, since every ``|X_k| <= sum(window)``
    (triangle inequality). About 3.23 at the defaults; real speech stays a few nats below."""
    from .audio import mel_filterbank  # local: the module stays importable without torch

    fb = mel_filterbank(audio.sample_rate, audio.n_fft, audio.n_mels, audio.fmin, audio.fmax)
    window_sum = audio.win_length / 2  # a periodic Hann window of N samples sums to N / 2
    return math.log(window_sum * float(fb.numpy().sum(axis=1).max()))


def check_mel_rows(mel: np.ndarray, audio: AudioConfig, where: str) -> None:
    """Refuse, in one line naming ``where``, a mel input that is not ``(feature rows, frames)``
    for ``audio`` (the mel bands, then log-F0 and voicing for a pitch-informed model) or that
    holds non-finite values: what synthesis, streamed or not, takes."""
    rows = audio.feature_channels
    if mel.ndim != 2 or mel.shape[0] != rows:
        what = f": {audio.n_mels} mel bands + log-F0 + voicing" if audio.pitch else ""
        raise DataError(f"{where}: mel must be ({rows}, frames){what}, got {mel.shape}")
    if not np.isfinite(mel).all():
        raise DataError(f"{where}: mel contains non-finite values")


def mel_range_warning(mel: np.ndarray, audio: AudioConfig, where: str = "mel") -> str | None:
    """One line when the mel bands ``mel (n_mels, frames)`` cannot be a natural-log magnitude
    mel of the contract, naming ``where``, the observed range and the likely cause; None
    otherwise. The checks, in order: a mean within 1 of 0 with a spread of 0.5 to 2 (a
    normalised mel: a real one has most of its bins far below magnitude 1, even full-scale
    noise's mean is below -0.2 with a spread near 0.3); a value above :func:`mel_upper_bound`
    (dB, power or normalised); a minimum more than 1 nat below ``ln(log_floor)`` (dB,
    normalised, or a lower floor); at least 5% of the values within 0.1 of a minimum more than
    3 nats above ``ln(log_floor)`` (the silence floor of another log base, e.g.
    log10(1e-5) = -5). A log10 mel with no silence in it cannot be told from a quieter
    natural-log one, and is not flagged."""
    x = np.asarray(mel, dtype=np.float64)
    lo, hi, mean, std = float(x.min()), float(x.max()), float(x.mean()), float(x.std())
    floor = math.log(audio.log_floor)
    top = mel_upper_bound(audio)
    cause = None
    if abs(mean) < 1.0 and 0.5 <= std <= 2.0:
        cause = "mean near 0 with a spread near 1: looks like a normalised mel"
    elif hi > top + 0.05:
        cause = (
            f"above {top:.2f}, the most a natural-log magnitude mel of audio in [-1, 1] "
            "reaches: looks like a dB, power or normalised mel"
        )
    elif lo < floor - 1.0:
        cause = (
            f"below the floor ln({_num(audio.log_floor)}) = {floor:.2f}: looks like a dB, "
            "normalised or lower-floor mel"
        )
    elif lo > floor + 3.0 and np.mean(x <= lo + 0.1) >= 0.05:
        ten = math.log10(audio.log_floor)
        base = f"a log10 mel (floor log10({_num(audio.log_floor)}) = {ten:.2f})"
        cause = (
            f"values pile up at {lo:.2f}, not at the floor {floor:.2f}: looks like "
            f"{base if abs(lo - ten) < 0.5 else 'a mel of another log base or floor'}"
        )
    if cause is None:
        return None
    return (
        f"{where}: values in [{lo:.2f}, {hi:.2f}] (mean {mean:.2f}, std {std:.2f}) are not a "
        f"natural-log magnitude mel: {cause}; see pwavenet convert-mel"
    )


@dataclass(frozen=True)
class MelSource:
    """How a front end's mel was made, as far as :func:`convert_mel` can undo it.

    ``log``: the scale of its values (``db``: 20 log10 of a magnitude mel, or with ``power``
    10 log10 of a power mel); ``mean``/``std`` ``(n_mels,)``: the per-band statistics it was
    normalised with (undone as ``x * std + mean``, before the log base); ``power``: a mel of
    ``|X|^2``; ``centered``: centred frames (1 + T // hop); ``frames_first``: stored
    ``(frames, n_mels)``. ``sample_rate``, ``hop_length``, ``fmin``, ``fmax``: its settings
    where known (None: not stated, not checked).
    """

    log: LogBase = "natural"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    power: bool = False
    centered: bool = False
    frames_first: bool = False
    sample_rate: int | None = None
    hop_length: int | None = None
    fmin: float | None = None
    fmax: float | None = None

    def check(self, target: AudioConfig) -> None:
        """Raise :class:`DataError` (one line) for settings that cannot be converted to
        ``target``'s: a pitch-informed target, another sample rate, hop or band edges, per-band
        statistics of the wrong shape or with a non-positive std, an unknown log scale."""
        if self.log not in LOG_BASES:
            raise DataError(f"unknown log scale {self.log!r} (one of {', '.join(LOG_BASES)})")
        if target.pitch:
            raise DataError(
                "the target model takes log-F0 and voicing rows (audio.pitch), which a front "
                "end's mel does not carry: convert-mel cannot make them"
            )
        top = target.fmax if target.fmax is not None else target.sample_rate / 2
        pairs = (
            ("sample rate", self.sample_rate, target.sample_rate, "Hz"),
            ("hop", self.hop_length, target.hop_length, "samples"),
            ("fmin", self.fmin, target.fmin, "Hz"),
            ("fmax", self.fmax, top, "Hz"),
        )
        for name, theirs, ours, unit in pairs:
            if theirs is not None and not math.isclose(theirs, ours, abs_tol=1e-6):
                raise DataError(
                    f"source {name} {theirs:g} {unit} differs from the target's {ours:g} {unit}: "
                    "its mel bands cannot be converted, only recomputed from audio"
                )
        for name, stat in (("mean", self.mean), ("std", self.std)):
            if stat is not None and stat.shape != (target.n_mels,):
                raise DataError(
                    f"--{name} has shape {stat.shape}, the target needs ({target.n_mels},) "
                    "(one value per mel band)"
                )
        if self.std is not None and not (np.isfinite(self.std).all() and (self.std > 0).all()):
            raise DataError("--std must be finite and positive in every band")
        if self.mean is not None and not np.isfinite(self.mean).all():
            raise DataError("--mean must be finite in every band")


def convert_mel(
    mel: np.ndarray, source: MelSource, target: AudioConfig, where: str = "mel"
) -> np.ndarray:
    """A front end's mel ``(n_mels, frames)`` (``(frames, n_mels)`` with
    ``source.frames_first``) to pwavenet's ``(target.n_mels, frames')`` float32: undo the
    normalisation (``x * std + mean``), change the log scale to nats, turn a power mel into a
    magnitude one, drop the last frame of a centred mel (frames' = frames - 1; frame j of a
    centred mel sits at sample j * hop, half a hop before pwavenet's frame j, a shift that is
    kept), and clamp at ``ln(log_floor)``.

    The power conversion is ``ln M ~ (ln P + ln w_m) / 2`` with ``w_m`` the sum of band m's
    weights: exact where the magnitude is flat across the band, otherwise an upper bound (by
    Cauchy-Schwarz ``M^2 <= w_m P``). Raises :class:`DataError` naming ``where`` for a mel of
    the wrong shape, with no frames, or with non-finite values.
    """
    source.check(target)
    x = np.asarray(mel)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: a mel must be a 2-D numeric array, got shape {x.shape}")
    x = x.T if source.frames_first else x
    layout = "(frames, n_mels)" if source.frames_first else "(n_mels, frames)"
    if x.shape[0] != target.n_mels:
        hint = ""
        if x.shape[1] == target.n_mels:
            hint = f"; it looks transposed ({'drop' if source.frames_first else 'pass'} "
            hint += "--frames-first)"
        raise DataError(
            f"{where}: {x.shape[0]} mel bands where the target has {target.n_mels} "
            f"(read as {layout}){hint}"
        )
    if x.shape[1] < (2 if source.centered else 1):
        raise DataError(f"{where}: too few frames ({x.shape[1]}) to convert")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: mel contains non-finite values")
    x = x.astype(np.float64)
    if source.std is not None:
        x = x * source.std[:, None]
    if source.mean is not None:
        x = x + source.mean[:, None]
    x = x * LOG_BASES[source.log] * (2.0 if source.log == "db" and source.power else 1.0)
    if source.power:
        x = 0.5 * (x + np.log(_band_weights(target))[:, None])
    if source.centered:
        x = x[:, :-1]
    return np.maximum(x, math.log(target.log_floor)).astype(np.float32)


def _band_weights(audio: AudioConfig) -> np.ndarray:
    """``(n_mels,)``: the sum of each band's filterbank weights."""
    from .audio import mel_filterbank

    fb = mel_filterbank(audio.sample_rate, audio.n_fft, audio.n_mels, audio.fmin, audio.fmax)
    return fb.numpy().astype(np.float64).sum(axis=1)


def collect_mels(items: Iterable[str | Path]) -> list[Path]:
    """Expand files, folders (their ``.npy`` files, recursively) and ``@list.txt`` into paths;
    raises :class:`DataError` for a missing item, an empty folder or a file that is not
    ``.npy``."""
    paths: list[Path] = []
    for item in map(str, items):
        if item.startswith("@"):
            listing = Path(item[1:])
            if not listing.is_file():
                raise DataError(f"{listing}: no such list file")
            lines = listing.read_text(encoding="utf-8").splitlines()
            paths += collect_mels(line.strip() for line in lines if line.strip())
        elif Path(item).is_dir():
            found = sorted(p for p in Path(item).rglob("*.npy") if p.is_file())
            if not found:
                raise DataError(f"{item}: no .npy mel files in this folder")
            paths += found
        elif not Path(item).is_file():
            raise DataError(f"{item}: no such file or folder")
        elif Path(item).suffix != ".npy":
            raise DataError(f"{item}: not a .npy mel array")
        else:
            paths.append(Path(item))
    if not paths:
        raise DataError("no inputs given")
    return paths


def convert_files(
    paths: list[Path], out_dir: str | Path, source: MelSource, target: AudioConfig
) -> list[Path]:
    """Convert every ``.npy`` mel of ``paths`` (:func:`convert_mel`) and write
    ``<out_dir>/<stem>.npy``. Every input is read and converted before anything is written, so
    a bad one (unreadable, wrong shape, two inputs of one name, an output that would replace its
    input) raises :class:`DataError` naming it and leaves nothing behind; each file is written
    atomically. Returns the written paths."""
    source.check(target)
    out_dir = Path(out_dir)
    converted: dict[Path, np.ndarray] = {}
    for path in paths:
        dest = out_dir / f"{path.stem}.npy"
        if dest in converted:
            raise DataError(f"{path}: a second input named {path.stem}.npy (outputs would clash)")
        if dest.resolve() == path.resolve():
            raise DataError(f"{path}: converting would overwrite the input; choose another --out")
        try:
            mel = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable mel array ({exc})") from None
        converted[dest] = convert_mel(mel, source, target, where=str(path))
    for dest, mel in converted.items():
        with atomic_path(dest) as tmp:
            np.save(tmp, mel)
    return list(converted)


def load_stats(path: str | Path | None, name: str) -> np.ndarray | None:
    """A per-band statistics array from ``.npy`` (None for None), as float64; one-line
    :class:`DataError` naming ``name`` and the file when it cannot be read."""
    if path is None:
        return None
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: unreadable {name} array ({exc})") from None


def target_audio(export: str | Path | None = None, config: str | Path | None = None) -> AudioConfig:
    """The target's feature settings: an export's, a config file's, or the defaults."""
    if export is not None:
        from .models.export import export_audio

        return export_audio(export)
    if config is not None:
        from .config import load_config

        return load_config(config).audio
    return AudioConfig()
