"""A seeded, speech-like corpus in the LJSpeech layout, with ground-truth F0.

Datasets cannot be downloaded everywhere pwavenet is tested, so the project makes its own speech:
the seeded source-filter synthesiser of :mod:`pwavenet.data.speech` (utterance ``i`` depends only on
``(seed, i)``), or random sentences spoken by the ``espeak-ng`` executable.

Layout written by :func:`make_corpus`::

    OUT/wavs/<id>.wav      16-bit PCM mono
    OUT/metadata.csv       id|text|normalized text[|speaker]  (utf-8, no header; written last;
                           the speaker field only in a multi-speaker corpus, ``speakers > 0``)
    OUT/ground_truth.json  {"generator": {...parameters}, "utterances": {id: {"hop_seconds": 0.01,
                           "f0": [Hz, 0 = unvoiced, ...]}}}  (F0 for the synthetic engine only)

``ground_truth.json`` also marks the folder as made by pwavenet, so it may be overwritten later.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import resample, write_wav
from ..fileio import atomic_path
from .speech import (
    F0_HOP_SECONDS,
    CorpusError,
    Utterance,
    check_args,
    finish,
    speaker_name,
    synthesize_utterance,
    utterance_id,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINES",
    "F0_HOP_SECONDS",
    "GROUND_TRUTH",
    "METADATA",
    "CorpusError",
    "Utterance",
    "make_corpus",
    "synthesize_utterance",
]

ENGINES = ("synthetic", "espeak")
METADATA = "metadata.csv"
GROUND_TRUTH = "ground_truth.json"
_FORMAT = "pwavenet-corpus/1"
_OWN_WAV = re.compile(r"(SYN|ESP)-\d+\.wav|\..*\.tmp\d+\.wav")


# --------------------------------------------------------------------------- espeak-ng

_WORDS = (
    "the a small old new green river house garden morning evening light voice paper window "
    "north south table winter summer child teacher doctor music story market road bridge city "
    "stone water fire bright quiet gentle slowly often always never walks carries finds opens "
    "remembers follows watches builds writes reads sings waits near under over beyond with "
    "without and but because after before every some many seven twelve yellow heavy warm cold"
).split()
_ESPEAK_VOICES = ("en-us", "en-us+m3", "en-us+f2", "en+m1", "en+f4")


def _find_espeak(out: Path) -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CorpusError(
            f"{out}: engine 'espeak' needs the espeak-ng executable, which is not on PATH "
            "(install espeak-ng, or use engine 'synthetic')"
        )
    return exe


def _speak(exe: str, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """Run espeak-ng on ``text``: mono float audio ``(T,)`` and its rate."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CorpusError(f"{exe}: failed to speak {text!r} ({exc})") from None
        if done.returncode != 0 or not wav.is_file():
            cause = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
            raise CorpusError(f"{exe}: failed to speak {text!r} ({cause})")
        data, rate = sf.read(str(wav), dtype="float64", always_2d=True)
    return data.mean(axis=1), rate


def _trim(audio: np.ndarray, rate: int, margin: float = 0.03) -> np.ndarray:
    """Cut leading/trailing frames more than 40 dB below the loudest 10 ms frame."""
    hop = max(1, rate // 100)
    frames = len(audio) // hop
    if frames == 0:
        return audio
    energy = np.mean(audio[: frames * hop].reshape(frames, hop) ** 2, axis=1)
    loud = np.flatnonzero(energy > energy.max() * 1e-4)
    if len(loud) == 0:
        return audio
    pad = round(margin * rate)
    return audio[max(0, loud[0] * hop - pad) : (loud[-1] + 1) * hop + pad]


def _espeak_voice(rng: np.random.Generator) -> tuple[str, int, int]:
    """An espeak-ng voice, speed (words per minute) and pitch (0-99)."""
    return str(rng.choice(_ESPEAK_VOICES)), int(rng.integers(140, 190)), int(rng.integers(30, 70))


def _espeak_utterance(
    exe: str,
    index: int,
    *,
    seed: int,
    sample_rate: int,
    min_seconds: float,
    max_seconds: float,
    speaker: int | None = None,
) -> Utterance:
    """Random sentences spoken by espeak-ng until one fits ``[min_seconds, max_seconds]``; a
    ``speaker``'s voice, speed and pitch depend only on ``(seed, speaker)``."""
    rng = np.random.default_rng([seed, index, 1])
    voice, speed, pitch = _espeak_voice(rng)  # drawn even for a speaker: the stream stays
    if speaker is not None:
        voice, speed, pitch = _espeak_voice(np.random.default_rng([seed, speaker, 3]))
    target = rng.uniform(min_seconds, max_seconds)
    words = [str(w) for w in rng.choice(_WORDS, size=max(1, round(2.4 * target)))]
    for _ in range(6):
        text = " ".join(words).capitalize() + "."
        raw, rate = _speak(exe, text, voice, speed, pitch)
        audio = resample(_trim(raw, rate).astype(np.float32), rate, sample_rate)
        seconds = len(audio) / sample_rate
        if min_seconds <= seconds <= max_seconds:
            break
        wanted = max(1, round(len(words) * target / max(seconds, 1e-3)))
        if wanted == len(words):
            wanted += 1 if seconds < min_seconds else -1
        if wanted < 1:
            break
        words = (words + [str(w) for w in rng.choice(_WORDS, size=len(words))])[:wanted]
    audio = _fit_length(audio, sample_rate, min_seconds, max_seconds, text)
    audio = finish(audio, rng.uniform(0.5, 0.9), rng.uniform(58.0, 66.0), rng)
    uid = utterance_id("espeak", index)
    name = None if speaker is None else speaker_name(speaker)
    return Utterance(uid, text, text.lower(), audio, np.zeros(0, np.float32), sample_rate, name)


def _fit_length(audio, rate: int, lo: float, hi: float, text: str) -> np.ndarray:
    """Pad with silence to ``lo`` seconds, or cut (with a 20 ms fade) to ``hi`` seconds."""
    shortest, longest = int(np.ceil(lo * rate)), int(np.floor(hi * rate))
    if len(audio) < shortest:
        return np.pad(audio, (0, shortest - len(audio)))
    if len(audio) > longest:
        logger.warning("espeak-ng: %r is longer than %.2f s; cut", text, hi)
        audio = audio[:longest].copy()
        fade = min(longest, round(0.02 * rate))
        audio[longest - fade :] *= np.linspace(1.0, 0.0, fade)
    return audio


# --------------------------------------------------------------------------- writing


def _prepare(out: Path) -> None:
    """Create ``out``, or accept an empty folder or a corpus made by pwavenet (then unlist it)."""
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / GROUND_TRUTH).read_text(encoding="utf-8"))["generator"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    if not isinstance(previous, dict) or previous.get("format") != _FORMAT:
        raise CorpusError(
            f"{out}: folder is not empty and is not a corpus made by pwavenet (no valid "
            f"{GROUND_TRUTH}); choose an empty or new folder"
        )
    logger.info("%s: replacing the corpus made there before (%s)", out, previous)
    (out / METADATA).unlink(missing_ok=True)  # a half-made corpus must have no metadata


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_truth(out: Path, generator: dict, truth: dict, complete: bool) -> None:
    data = {"generator": {**generator, "complete": complete}, "utterances": truth}
    _write_text(out / GROUND_TRUTH, json.dumps(data, separators=(",", ":")) + "\n")


def _check(num_utterances: int, engine: str, speakers: int) -> None:
    if not isinstance(num_utterances, (int, np.integer)) or num_utterances < 1:
        raise CorpusError(f"num_utterances={num_utterances!r}: must be an integer >= 1")
    if engine not in ENGINES:
        raise CorpusError(f"engine={engine!r}: must be one of {', '.join(ENGINES)}")
    if not isinstance(speakers, (int, np.integer)) or not 0 <= speakers <= num_utterances:
        raise CorpusError(f"speakers={speakers!r}: must be an integer from 0 to num_utterances")


def _metadata_row(utt: Utterance) -> str:
    """``id|text|normalized``, and ``|speaker`` in a multi-speaker corpus."""
    speaker = "" if utt.speaker is None else f"|{utt.speaker}"
    return f"{utt.id}|{utt.text}|{utt.phones}{speaker}\n"


def make_corpus(
    out_dir: str | Path,
    *,
    num_utterances: int = 100,
    seed: int = 0,
    sample_rate: int = 22050,
    min_seconds: float = 1.0,
    max_seconds: float = 4.0,
    engine: str = "synthetic",
    speakers: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> Path:
    """Write a corpus in the LJSpeech layout (see the module docstring) and return ``out_dir``.

    ``engine="synthetic"`` is the seeded source-filter synthesiser (byte-identical files for a
    seed); ``engine="espeak"`` speaks random sentences with the ``espeak-ng`` executable (no F0
    ground truth). ``speakers > 0`` makes a multi-speaker corpus: utterance ``i`` is spoken by
    speaker ``i % speakers`` (named ``spk01``, ...) in that speaker's voice, and ``metadata.csv``
    gets the speaker as a 4th field; with 0 every utterance has a voice of its own. Every file
    is written atomically and ``metadata.csv`` last. A non-empty ``out_dir`` is refused unless
    it holds a corpus made by this function, which is replaced. ``progress`` optionally wraps
    the utterance loop (e.g. ``tqdm``).
    """
    out = Path(out_dir)
    check_args(sample_rate, min_seconds, max_seconds, seed)
    _check(num_utterances, engine, speakers)
    exe = _find_espeak(out) if engine == "espeak" else ""
    _prepare(out)
    kwargs = {
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "min_seconds": float(min_seconds),
        "max_seconds": float(max_seconds),
    }
    generator = {"format": _FORMAT, "engine": engine, "num_utterances": int(num_utterances)}
    generator.update(kwargs)
    if speakers:  # only then, so that single-voice corpora stay byte-identical
        generator["speakers"] = int(speakers)
    _write_truth(out, generator, {}, complete=False)
    rows, truth, ids = [], {}, set()
    indices: Iterable[int] = range(num_utterances)
    for i in progress(indices) if progress is not None else indices:
        speaker = i % speakers if speakers else None
        if engine == "espeak":
            utt = _espeak_utterance(exe, i, speaker=speaker, **kwargs)
        else:
            utt = synthesize_utterance(i, speaker=speaker, **kwargs)
            f0 = [round(float(v), 1) for v in utt.f0]
            truth[utt.id] = {"hop_seconds": F0_HOP_SECONDS, "f0": f0}
        write_wav(out / "wavs" / f"{utt.id}.wav", utt.audio, sample_rate)
        rows.append(_metadata_row(utt))
        ids.add(f"{utt.id}.wav")
    for stale in (out / "wavs").iterdir():
        if _OWN_WAV.fullmatch(stale.name) and stale.name not in ids:
            stale.unlink()
    _write_truth(out, generator, truth, complete=True)
    _write_text(out / METADATA, "".join(rows))
    logger.info("%s: wrote %d utterances (%s engine)", out, num_utterances, engine)
    return out
