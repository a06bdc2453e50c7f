"""Standard measures of an output against its reference, computed as papers compute them
(optional extra: ``pip install pwavenet[eval]``). Each needs its package; without it its keys
are left out and :func:`missing_notes` says so.

- ``pesq_wb``: wide-band PESQ (ITU-T P.862.2, package ``pesq``), on copies resampled to 16 kHz;
- ``stoi``: STOI (package ``pystoi``, which takes them on to its own 10 kHz) on the same
  16 kHz copies;
- WORLD (package ``pyworld``; its F0 trackers and analysers ship inside it, no downloaded
  model): ``mcd_world_db``, the mel-cepstral distortion of c1..c24 of CheapTrick envelopes over
  the reference's speech frames, voiced and unvoiced; ``periodicity_error_world`` and
  ``vuv_f1_world`` in the manner of CARGAN and BigVGAN, from the voicing of WORLD's tracker (DIO
  refined by StoneMask, or Harvest) and D4C's aperiodicity;
- ``periodicity_error_yin`` and ``vuv_f1_yin``: the same two under the YIN tracker of
  :mod:`pwavenet.eval.pitch` (no package needed).

Every frame measure lives on one grid of 5 ms hop blocks, frame ``j`` centred on sample
``j hop + hop // 2`` as :func:`~pwavenet.eval.pitch.f0_track`'s; output and reference are
compared frame by frame over their common length (the outputs are time-aligned with their
references). :func:`reference_agreement` says how far the two trackers agree on a reference.
:func:`analyse` does the per-signal work once, so that a reference scored against several
outputs is analysed once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import logging
import math
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .pitch import f0_track, yin_periodicity

logger = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "DIRECTIONS",
    "EXTRA_HINT",
    "WORLD_TRACKERS",
    "Analysis",
    "analyse",
    "available_measures",
    "evaluation_notes",
    "frame_hop",
    "measure",
    "mel_cepstrum",
    "mel_cepstrum_alpha",
    "missing_notes",
    "package_versions",
    "reference_agreement",
    "reference_analysis",
    "standard_measures",
]

EXTRA_HINT = "pip install pwavenet[eval]"
FRAME_SECONDS = 0.005  # the frame hop of every frame measure (the usual 5 ms of MCD papers)
PESQ_RATE = 16000  # wide-band PESQ is defined at 16 kHz; STOI is computed on the same copies
MCEP_ORDER = 24  # c1..c24, the usual MCD order (Kominek et al. 2008 and most TTS papers)
F0_FLOOR, F0_CEIL = 60.0, 500.0  # WORLD's F0 search range: the YIN tracker's defaults
WORLD_TRACKERS = ("dio", "harvest")  # DIO refined by StoneMask (the default), or Harvest
STOI_MIN_SECONDS = 0.4  # pystoi needs 30 frames of 25.6 ms at a 12.8 ms hop
SPEECH_GATE_DB = 40.0  # MCD counts the reference's frames within this many dB of its loudest
GROSS_ERROR = 0.2  # a pitch error above 20 % is gross (the usual GPE threshold)
_POWER_FLOOR = 1e-30  # envelope power floor before a log (CheapTrick never goes near it)
_DB = 10.0 / math.log(10.0)

# (module, distributions that provide it, what it measures, the keys it gives)
_PACKAGES = (
    ("pesq", ("pesq",), "PESQ", ("pesq_wb",)),
    ("pystoi", ("pystoi",), "STOI", ("stoi",)),
    (
        "pyworld",
        ("pyworld-prebuilt", "pyworld"),
        "WORLD measures (MCD, periodicity error, V/UV F1)",
        ("mcd_world_db", "periodicity_error_world", "vuv_f1_world"),
    ),
)
_YIN_KEYS = ("periodicity_error_yin", "vuv_f1_yin")

# The tables' labels of the measures, and which way each ranks systems (as the dicts of
# pwavenet.eval.metrics: METRIC_COLUMNS and METRIC_DIRECTIONS).
COLUMNS = {
    "pesq_wb": "PESQ (wb)",
    "stoi": "STOI",
    "mcd_world_db": "MCD WORLD (dB)",
    "periodicity_error_world": "periodicity error (WORLD)",
    "vuv_f1_world": "V/UV F1 (WORLD)",
    "periodicity_error_yin": "periodicity error (YIN)",
    "vuv_f1_yin": "V/UV F1 (YIN)",
}
DIRECTIONS = {
    "pesq_wb": "higher",
    "stoi": "higher",
    "mcd_world_db": "lower",
    "periodicity_error_world": "lower",
    "vuv_f1_world": "higher",
    "periodicity_error_yin": "lower",
    "vuv_f1_yin": "higher",
}
WORLD_BLOCK = 1000  # frames of WORLD's spectra computed at a time (5 s at 5 ms)
_last_reference: dict[tuple[Any, ...], Analysis] = {}  # measure()'s one-entry cache


def _import(name: str) -> tuple[ModuleType | None, str]:
    """The module (imported on first use) or None, and why not."""
    try:
        return importlib.import_module(name), ""
    except ImportError as exc:
        if exc.name == name:
            return None, f"package `{name}` not installed ({EXTRA_HINT})"
        return None, f"package `{name}` cannot be imported ({exc}; {EXTRA_HINT})"


def missing_notes() -> list[str]:
    """One line per measure left out for want of its package, e.g. ``PESQ skipped: package
    `pesq` not installed (pip install pwavenet[eval])``; empty when all are there."""
    notes = []
    for name, _, what, _ in _PACKAGES:
        module, why = _import(name)
        if module is None:
            notes.append(f"{what} skipped: {why}")
    return notes


def available_measures() -> list[str]:
    """The keys :func:`standard_measures` gives with the packages installed now."""
    keys = [k for name, _, _, ks in _PACKAGES if _import(name)[0] is not None for k in ks]
    return [*keys, *_YIN_KEYS]


def package_versions() -> dict[str, str | None]:
    """The installed version of each measure's package by module name (None if missing), and
    which distribution provides it, e.g. ``{"pyworld": "0.3.6.post1 (pyworld-prebuilt)"}``."""
    versions: dict[str, str | None] = {}
    for name, dists, _, _ in _PACKAGES:
        versions[name] = None
        for dist in dists:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            versions[name] = version if dist == name else f"{version} ({dist})"
            break
    return versions


# --------------------------------------------------------------------------- mel-cepstrum


@functools.lru_cache(maxsize=32)
def mel_cepstrum_alpha(sample_rate: int) -> float:
    """The all-pass constant whose frequency warping best fits the mel scale (``log(1 + f /
    1000)``, least squares over 0 to Nyquist, to 0.001): 0.410 at 16 kHz, 0.455 at 22.05 kHz,
    0.466 at 24 kHz, 0.544 at 44.1 kHz, 0.554 at 48 kHz, within 0.015 of the values papers use
    (0.42 at 16 kHz in SPTK's manual; 0.45, 0.46, 0.53 and 0.55 in ESPnet's MCD recipe)."""
    omega = np.linspace(0.0, math.pi, 1001)
    mel = np.log1p(omega / math.pi * sample_rate / 2 / 1000.0)
    mel /= mel[-1]
    alphas = np.arange(0.0, 0.999, 0.001)
    warped = np.stack([_warp(omega, a) for a in alphas]) / math.pi
    return round(float(alphas[np.argmin(((warped - mel) ** 2).sum(axis=1))]), 3)


def _warp(omega: np.ndarray, alpha: float) -> np.ndarray:
    """The phase response of the all-pass ``(z^-1 - alpha) / (1 - alpha z^-1)``: the warped
    frequency of ``omega`` in [0, pi]."""
    return omega + 2.0 * np.arctan(alpha * np.sin(omega) / (1.0 - alpha * np.cos(omega)))


def mel_cepstrum(envelope: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """Mel-cepstra ``(frames, order + 1)`` of power envelopes ``(frames, fft_size / 2 + 1)``:
    the cepstrum of the log magnitude (``c_0`` half of the log-power cepstrum's first value,
    ``c_n`` the rest) taken to the warped frequency axis by the all-pass frequency transform
    with constant ``alpha`` (SPTK's ``freqt``), so that ``log|H(w)| = sum_m c~_m cos(m w~)``."""
    log_power = np.log(np.maximum(np.asarray(envelope, dtype=np.float64), _POWER_FLOOR))
    cepstrum = np.fft.irfft(log_power, axis=-1)[:, : log_power.shape[-1] - 1]
    cepstrum[:, 0] /= 2.0
    return cepstrum @ _freqt_matrix(order, float(alpha), cepstrum.shape[1]).T


@functools.lru_cache(maxsize=8)
def _freqt_matrix(order: int, alpha: float, length: int) -> np.ndarray:
    """The frequency transform as a matrix ``(order + 1, length)``: Oppenheim and Johnson's
    all-pass filter-bank recursion, run on every unit cepstrum at once (cepstrum from its last
    coefficient to its first)."""
    beta = 1.0 - alpha * alpha
    g = np.zeros((order + 1, length))
    for i in range(length - 1, -1, -1):
        d = g.copy()
        g[0] = alpha * d[0]
        g[0, i] += 1.0
        if order >= 1:
            g[1] = beta * d[0] + alpha * d[1]
        for m in range(2, order + 1):
            g[m] = d[m - 1] + alpha * (d[m] - g[m - 1])
    return g


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Analysis:
    """What the measures need of one signal. Frame arrays are ``(frames,)`` on the 5 ms grid;
    the WORLD ones are None without ``pyworld``."""

    sample_rate: int
    audio_16k: np.ndarray  # (T16,) float32, for PESQ and STOI
    f0_yin: np.ndarray  # Hz, 0 where unvoiced
    periodicity_yin: np.ndarray  # in [0, 1] (pitch.yin_periodicity)
    world_tracker: str = ""  # which of WORLD_TRACKERS gave f0_world ("" without pyworld)
    f0_world: np.ndarray | None = None  # WORLD's F0 in Hz, 0 where unvoiced
    periodicity_world: np.ndarray | None = None  # 1 - D4C's aperiodicity of its 3 kHz band
    mcep: np.ndarray | None = None  # (frames, MCEP_ORDER + 1) of CheapTrick's envelope


def frame_hop(sample_rate: int) -> int:
    """The hop in samples of the 5 ms frame grid."""
    return max(1, round(sample_rate * FRAME_SECONDS))


def analyse(audio: Any, sample_rate: int, *, world_tracker: str = "dio") -> Analysis:
    """Analyse one signal ``(T,)`` at ``sample_rate``: its 16 kHz copy, YIN's F0 and
    periodicity, and (with ``pyworld``) the F0 of ``world_tracker`` (one of
    :data:`WORLD_TRACKERS`), D4C's periodicity and the mel-cepstra of CheapTrick's envelope."""
    from ..audio import resample

    if world_tracker not in WORLD_TRACKERS:
        raise ValueError(f"world_tracker={world_tracker!r}: expected one of {WORLD_TRACKERS}")
    x = np.ascontiguousarray(np.asarray(audio, dtype=np.float64).reshape(-1))
    hop = frame_hop(sample_rate)
    world: dict[str, Any] = {}
    pyworld, _ = _import("pyworld")
    if pyworld is not None:
        world = _world_analysis(pyworld, x, sample_rate, hop, world_tracker)
    return Analysis(
        sample_rate=sample_rate,
        audio_16k=resample(x.astype(np.float32), sample_rate, PESQ_RATE),
        f0_yin=f0_track(x, sample_rate, hop, fmin=F0_FLOOR, fmax=F0_CEIL),
        periodicity_yin=yin_periodicity(x, sample_rate, hop, fmin=F0_FLOOR, fmax=F0_CEIL),
        **world,
    )


def _world_analysis(
    pw: ModuleType, x: np.ndarray, rate: int, hop: int, tracker: str
) -> dict[str, Any]:
    """The tracker's F0 (on a 1 ms grid, read at the frame centres), and D4C's periodicity and
    the mel-cepstra of CheapTrick's envelope at the frame centres. D4C reads periodicity from
    the harmonics in 0 to 6 kHz: speech and harmonic tones read as periodic, but a pure
    sinusoid, with no harmonics there, reads as aperiodic (and Harvest calls it unvoiced)."""
    frames = x.shape[0] // hop
    result: dict[str, Any] = {"world_tracker": tracker}
    if frames == 0:
        empty = np.zeros(0)
        return {**result, "f0_world": empty, "periodicity_world": empty, "mcep": np.zeros((0, 1))}
    times = (np.arange(frames) * hop + hop // 2) / rate
    if tracker == "harvest":
        f0_ms, _ = pw.harvest(x, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=1.0)
    else:
        f0_ms, t_ms = pw.dio(x, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=1.0)
        f0_ms = pw.stonemask(x, f0_ms, t_ms, rate)
    f0 = f0_ms[np.clip(np.round(times * 1000.0).astype(int), 0, len(f0_ms) - 1)]
    fft_size, alpha = pw.get_cheaptrick_fft_size(rate, F0_FLOOR), mel_cepstrum_alpha(rate)
    periodicity, mcep = np.full(frames, math.nan), np.zeros((frames, MCEP_ORDER + 1))
    for i in range(0, frames, WORLD_BLOCK):  # spectra a block of frames at a time: bounded memory
        f, t = f0[i : i + WORLD_BLOCK], times[i : i + WORLD_BLOCK]
        envelope = pw.cheaptrick(x, f, t, rate, f0_floor=F0_FLOOR, fft_size=fft_size)
        mcep[i : i + len(f)] = mel_cepstrum(envelope, MCEP_ORDER, alpha)
        if pw.get_num_aperiodicities(rate) > 0:  # below 12 kHz D4C measures no band: NaN
            # WORLD codes each band as 20 log10 of its aperiodicity; band 0 is centred on 3 kHz
            band = pw.code_aperiodicity(pw.d4c(x, f, t, rate, fft_size=fft_size), rate)[:, 0]
            periodicity[i : i + len(f)] = 1.0 - np.clip(10.0 ** (band / 20.0), 0.0, 1.0)
    return {**result, "f0_world": f0, "periodicity_world": periodicity, "mcep": mcep}


# --------------------------------------------------------------------------- the measures


def standard_measures(
    reference: Any, output: Any, sample_rate: int, *, notes: list[str] | None = None
) -> dict[str, float]:
    """Every available standard measure of ``output`` against ``reference`` (each a signal
    ``(T,)`` at ``sample_rate`` or its :func:`analyse`), as a flat dict (the keys of
    :func:`available_measures`). A measure that cannot be computed for this pair (PESQ or STOI
    on a silent or too-short reference, a ratio without voiced frames) is NaN, with a line
    appended to ``notes`` where the cause is not plain from the signals."""
    ref = reference if isinstance(reference, Analysis) else analyse(reference, sample_rate)
    out = output if isinstance(output, Analysis) else analyse(output, sample_rate)
    if ref.sample_rate != sample_rate or out.sample_rate != sample_rate:
        raise ValueError(
            f"analyses at {ref.sample_rate} and {out.sample_rate} Hz, expected {sample_rate} Hz"
        )
    if ref.world_tracker != out.world_tracker:
        raise ValueError(f"analyses by {ref.world_tracker!r} and {out.world_tracker!r}")
    notes = [] if notes is None else notes
    values: dict[str, float] = {}
    pesq, _ = _import("pesq")
    if pesq is not None:
        values["pesq_wb"] = _pesq(pesq, ref.audio_16k, out.audio_16k, notes)
    pystoi, _ = _import("pystoi")
    if pystoi is not None:
        values["stoi"] = _stoi(pystoi, ref.audio_16k, out.audio_16k, notes)
    if _import("pyworld")[0] is not None and ref.mcep is not None and out.mcep is not None:
        values["mcd_world_db"] = _mcd(ref.mcep, out.mcep)
        values["periodicity_error_world"] = _rms_difference(
            ref.periodicity_world, out.periodicity_world
        )
        values["vuv_f1_world"] = _vuv_f1(ref.f0_world, out.f0_world)
    values["periodicity_error_yin"] = _rms_difference(ref.periodicity_yin, out.periodicity_yin)
    values["vuv_f1_yin"] = _vuv_f1(ref.f0_yin, out.f0_yin)
    return values


def measure(output: Any, reference: Any, audio: Any) -> dict[str, float]:
    """:func:`standard_measures` as a per-utterance measure of :mod:`pwavenet.eval.metrics`
    (``(output, reference, audio config) -> dict``). The reference's analysis is kept for the
    next call with the same samples (one entry, keyed by content), so the systems of one
    utterance share it; the notes of a NaN are logged."""
    notes: list[str] = []
    ref = reference_analysis(reference, audio.sample_rate)
    values = standard_measures(ref, output, audio.sample_rate, notes=notes)
    for note in notes:
        logger.warning("%s", note)
    return values


def reference_analysis(reference: Any, sample_rate: int) -> Analysis:
    """:func:`analyse` of a reference, kept for the next call with the same samples (one
    entry, keyed by content)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    key = (sample_rate, ref.shape, hashlib.blake2b(ref.tobytes(), digest_size=16).digest())
    if key not in _last_reference:
        _last_reference.clear()
        _last_reference[key] = analyse(ref, sample_rate)
    return _last_reference[key]


def evaluation_notes() -> list[str]:
    """The notes an evaluation with these measures starts with: one per measure skipped for a
    missing package, and the versions of those that ran."""
    versions = [f"{k} {v}" for k, v in package_versions().items() if v]
    ran = ["standard measures computed with " + ", ".join(versions)] if versions else []
    return [*missing_notes(), *ran]


def _silent(name: str, signals: dict[str, np.ndarray], notes: list[str]) -> bool:
    """Whether one of ``signals`` (by role) is digital silence; then ``name`` is NaN, noted."""
    for role, signal in signals.items():
        if not np.any(signal):
            notes.append(f"{name}: NaN (the {role} is digital silence)")
            return True
    return False


def _pesq(pesq: ModuleType, ref: np.ndarray, out: np.ndarray, notes: list[str]) -> float:
    """Wide-band PESQ at 16 kHz over the common length; NaN and a note where PESQ cannot score
    the pair: a signal in digital silence (the reference has no utterance; a silent output makes
    pesq 0.0.4 fail), under 1/4 s, or no utterance found."""
    n = min(len(ref), len(out))
    if _silent("PESQ", {"reference": ref[:n], "output": out[:n]}, notes):
        return math.nan
    try:
        return float(pesq.pesq(PESQ_RATE, ref[:n], out[:n], "wb"))
    except pesq.PesqError as exc:
        cause = str(exc).removeprefix("b'").removesuffix("'")
        notes.append(f"PESQ: NaN ({type(exc).__name__}: {cause})")
        return math.nan


def _stoi(pystoi: ModuleType, ref: np.ndarray, out: np.ndarray, notes: list[str]) -> float:
    """STOI of the 16 kHz copies over the common length; NaN and a note for a silent reference
    or too little speech (under 30 frames once pystoi drops the silent ones: it warns and
    returns 1e-5)."""
    n = min(len(ref), len(out))
    if _silent("STOI", {"reference": ref[:n]}, notes):
        return math.nan
    if n < STOI_MIN_SECONDS * PESQ_RATE:
        notes.append(f"STOI: NaN (under {STOI_MIN_SECONDS} s of signal)")
        return math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref[:n], out[:n], PESQ_RATE))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        notes.append("STOI: NaN (under 30 frames of speech once pystoi drops silent frames)")
        return math.nan
    return value


def _mcd(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean over the reference's speech frames of ``(10 / ln 10) sqrt(2 sum_{d>=1} (c_d -
    c'_d)^2)`` in dB; speech frames are those whose level (``c_0`` in dB) is within
    :data:`SPEECH_GATE_DB` of the reference's loudest. NaN without frames."""
    n = min(len(ref), len(out))
    if n == 0:
        return math.nan
    ref, out = ref[:n], out[:n]
    per_frame = _DB * np.sqrt(2.0 * ((ref[:, 1:] - out[:, 1:]) ** 2).sum(axis=1))
    level = 2.0 * _DB * ref[:, 0]  # c_0 is the mean log magnitude: 20 log10(e) c_0 in dB
    speech = level >= level.max() - SPEECH_GATE_DB
    return float(per_frame[speech].mean())


def _rms_difference(a: np.ndarray, b: np.ndarray) -> float:
    """RMS over the common frames of ``a - b`` (the periodicity error); NaN without frames."""
    n = min(len(a), len(b))
    return float(np.sqrt(np.mean((a[:n] - b[:n]) ** 2))) if n else math.nan


def _vuv_f1(f0_ref: np.ndarray, f0_out: np.ndarray) -> float:
    """F1 of the output's voiced decisions against the reference's (voiced is the positive
    class); NaN when neither has a voiced frame."""
    n = min(len(f0_ref), len(f0_out))
    v_ref, v_out = f0_ref[:n] > 0, f0_out[:n] > 0
    tp = int(np.sum(v_ref & v_out))
    wrong = int(np.sum(v_ref != v_out))
    return 2 * tp / (2 * tp + wrong) if tp or wrong else math.nan


def reference_agreement(reference: Any, sample_rate: int) -> dict[str, float]:
    """How far YIN and WORLD's tracker agree on a reference (a signal ``(T,)`` or its
    :func:`analyse`): ``vuv_agreement`` (fraction of frames with the same voicing);
    over the frames both call voiced, ``gross_error_rate`` (fraction whose F0 differ by more
    than 20 %) and ``fine_error_cents`` (RMS difference in cents over the rest); and each
    tracker's ``voiced_fraction_*``. Empty without ``pyworld``."""
    ref = reference if isinstance(reference, Analysis) else analyse(reference, sample_rate)
    if ref.f0_world is None:
        return {}
    n = min(len(ref.f0_yin), len(ref.f0_world))
    yin, world = ref.f0_yin[:n], ref.f0_world[:n]
    both = (yin > 0) & (world > 0)
    ratio = yin[both] / world[both]
    fine = np.abs(ratio - 1.0) <= GROSS_ERROR
    cents = 1200.0 * np.log2(ratio[fine])
    return {
        "vuv_agreement": float(np.mean((yin > 0) == (world > 0))) if n else math.nan,
        "gross_error_rate": float(np.mean(~fine)) if both.any() else math.nan,
        "fine_error_cents": float(np.sqrt(np.mean(cents**2))) if fine.any() else math.nan,
        "voiced_fraction_yin": float(np.mean(yin > 0)) if n else math.nan,
        "voiced_fraction_world": float(np.mean(world > 0)) if n else math.nan,
    }
