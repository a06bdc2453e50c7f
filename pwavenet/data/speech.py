"""A speech-like source-filter synthesiser, with ground-truth F0.

Datasets cannot be downloaded everywhere pwavenet is tested, so the project makes its own speech.
The synthetic engine is a source-filter model in the spirit of the Klatt synthesiser: a plan of
pseudo-words with pauses fitted to a drawn duration (:mod:`pwavenet.data.speech_plan`), rendered
by a band-limited glottal pulse train and shaped noise through time-varying formant resonators
(:mod:`pwavenet.data.source_filter`).

Everything is vectorised with numpy; utterance ``i`` depends only on ``(seed, i)``, and, in a
multi-speaker corpus, its voice only on ``(seed, speaker)``.
:mod:`pwavenet.data.make_corpus` writes these utterances to disk in the LJSpeech layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CorpusError
from .source_filter import CTRL_RATE, control_tracks, render
from .speech_plan import Voice, draw_voice, plan_utterance

__all__ = [
    "F0_HOP_SECONDS",
    "CorpusError",
    "Utterance",
    "check_args",
    "finish",
    "speaker_name",
    "synthesize_utterance",
    "utterance_id",
]

F0_HOP_SECONDS = 0.01
_ID_PREFIX = {"synthetic": "SYN", "espeak": "ESP"}
_MIN_SECONDS, _MAX_SECONDS = 0.1, 60.0


# Defined here, beside its maker; pwavenet.data.make_corpus re-exports it.
@dataclass(frozen=True, eq=False)
class Utterance:
    """One generated utterance.

    ``audio``: float32 ``(T,)`` in [-1, 1]. ``f0``: float32 ``(frames,)`` in Hz, 0 where unvoiced,
    frame ``k`` at time ``k * F0_HOP_SECONDS`` (empty for the espeak engine). ``text`` is a
    readable pseudo-sentence; ``phones`` spells its segments (``s-a-t-o k-i , ...``).
    ``speaker`` names its speaker in a multi-speaker corpus (``None``: a voice of its own).
    """

    id: str
    text: str
    phones: str
    audio: np.ndarray
    f0: np.ndarray
    sample_rate: int
    speaker: str | None = None


# --------------------------------------------------------------------------- arguments


def check_args(sample_rate: int, min_seconds: float, max_seconds: float, seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CorpusError(f"seed={seed!r}: must be a non-negative integer")
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise CorpusError(f"sample_rate={sample_rate!r}: must be an integer from 8000 to 192000 Hz")
    if not _MIN_SECONDS <= min_seconds <= max_seconds <= _MAX_SECONDS:
        raise CorpusError(
            f"min_seconds={min_seconds!r}, max_seconds={max_seconds!r}: need "
            f"{_MIN_SECONDS} <= min_seconds <= max_seconds <= {_MAX_SECONDS}"
        )


def utterance_id(engine: str, index: int) -> str:
    return f"{_ID_PREFIX[engine]}-{index + 1:04d}"


def _num_samples(rng: np.random.Generator, rate: int, lo: float, hi: float) -> int:
    """A drawn length in samples whose duration lies in ``[lo, hi]`` seconds."""
    first, last = int(np.ceil(lo * rate)), int(np.floor(hi * rate))
    n = round(rng.uniform(lo, hi) * rate)
    return min(max(n, first), last) if first <= last else round(lo * rate)


def speaker_name(speaker: int) -> str:
    """The name of speaker ``speaker`` (from 0) of a multi-speaker corpus: ``spk01``, ..."""
    return f"spk{speaker + 1:02d}"


def speaker_voice(seed: int, speaker: int) -> Voice:
    """The voice every utterance of speaker ``speaker`` shares; depends only on (seed, speaker)."""
    return draw_voice(np.random.default_rng([seed, speaker, 2]))


# --------------------------------------------------------------------------- the utterance


def synthesize_utterance(
    index: int,
    *,
    seed: int = 0,
    sample_rate: int = 22050,
    min_seconds: float = 1.0,
    max_seconds: float = 4.0,
    speaker: int | None = None,
) -> Utterance:
    """Utterance ``index`` of the synthetic corpus for ``seed``; depends only on ``(seed, index)``
    (and ``speaker``).

    Returns audio ``(T,)`` float32 with ``min_seconds <= T / sample_rate <= max_seconds``, peak
    0.5-0.9, and its F0 track ``(frames,)`` every :data:`F0_HOP_SECONDS` (0 where unvoiced).
    ``speaker`` (from 0) speaks it in that speaker's voice (:func:`speaker_voice`); by default
    every utterance has a voice of its own.
    """
    check_args(sample_rate, min_seconds, max_seconds, seed)
    if index < 0:
        raise CorpusError(f"index={index}: must be non-negative")
    rng = np.random.default_rng([seed, index])
    n = _num_samples(rng, sample_rate, min_seconds, max_seconds)
    voice = draw_voice(rng)  # drawn even for a speaker: the rest of the stream stays the same
    if speaker is not None:
        voice = speaker_voice(seed, speaker)
    plan = plan_utterance(rng, voice, n / sample_rate)
    tracks = control_tracks(plan, voice, rng, n / sample_rate, sample_rate)
    audio = render(tracks, voice, rng, n, sample_rate)
    audio = finish(audio, voice.peak, voice.floor_db, rng)
    step = round(F0_HOP_SECONDS * CTRL_RATE)
    frames = int(np.floor((n - 1) / sample_rate / F0_HOP_SECONDS + 1e-9)) + 1
    f0 = np.where(tracks.voiced, tracks.f0, 0.0)[::step][:frames]
    return Utterance(
        id=utterance_id("synthetic", index),
        text=plan.text,
        phones=plan.phones,
        audio=audio,
        f0=np.round(f0, 1).astype(np.float32),
        sample_rate=sample_rate,
        speaker=None if speaker is None else speaker_name(speaker),
    )


def finish(audio: np.ndarray, peak: float, floor_db: float, rng) -> np.ndarray:
    """Normalise the peak and add a noise floor ``floor_db`` below it (never digital silence)."""
    audio = audio * (peak / max(float(np.max(np.abs(audio))), 1e-9))
    audio = audio + peak * 10 ** (-floor_db / 20) * rng.standard_normal(len(audio))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
