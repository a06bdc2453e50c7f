"""The plan of a synthetic utterance: its voice, pseudo-words of phones, pauses and timing.

A plan is a list of :class:`Segment` (vowels, nasals, fricatives, plosive closures and bursts,
pauses, phrase breaks) with durations fitted to a drawn length, and its two transcripts.
:mod:`pwavenet.data.source_filter` turns a plan into audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NOISE_CLASSES", "PAUSES", "Plan", "Segment", "Voice", "draw_voice", "plan_utterance"]

# Vowel and nasal formant targets F1..F5 (Hz, adult male, Peterson & Barney-like) and loudness.
# F5 barely moves; the poles above it are added by the rendering.
_VOWELS = {
    "a": ((730, 1090, 2440, 3400, 4500), 1.0),
    "e": ((530, 1840, 2480, 3500, 4500), 0.9),
    "i": ((270, 2290, 3010, 3700, 4600), 0.8),
    "o": ((570, 840, 2410, 3400, 4400), 0.95),
    "u": ((300, 870, 2240, 3300, 4400), 0.8),
}
_NASALS = {"m": ((250, 1100, 2300, 3300, 4400), 0.3), "n": ((250, 1500, 2500, 3400, 4400), 0.3)}
_BANDWIDTHS = np.array([60.0, 90.0, 130.0, 180.0, 250.0])
# Noise classes. "h" is noise through the vocal-tract formants (aspiration, breath); the others
# have fixed shapes (pwavenet.data.source_filter).
NOISE_CLASSES = ("h", "s", "sh", "f", "p", "t", "k")
_FRICATIVES = {"s": 0.4, "sh": 0.35, "f": 0.1, "h": 0.12}  # rms re a loud vowel
_PLOSIVES = ("p", "t", "k")
PAUSES = ("pause", "break")  # "break" ends a phrase: the F0 declination resets after it


@dataclass
class Segment:
    """One stretch of an utterance with constant phone targets."""

    kind: str  # vowel, nasal, fric, closure, burst, pause, break
    dur: float
    voice: float = 0.0  # voicing amplitude
    noise: int = -1  # index into NOISE_CLASSES
    noise_level: float = 0.0
    formants: np.ndarray | None = None  # (5,) Hz targets
    accent: float = 0.0  # log-F0 bump at this vowel


@dataclass(frozen=True)
class Voice:
    """Speaker and recording constants of one utterance."""

    f0_base: float
    formant_scale: float
    bandwidths: np.ndarray  # (5,) Hz
    glottal_bw: float
    tilt_hz: float
    breath: float
    jitter: float
    shimmer: float
    peak: float
    floor_db: float


def draw_voice(rng: np.random.Generator) -> Voice:
    f0_base = float(np.exp(rng.uniform(np.log(85.0), np.log(230.0))))
    pitch = np.log(f0_base / 85.0) / np.log(230.0 / 85.0)  # higher voices, shorter tracts
    return Voice(
        f0_base=f0_base,
        formant_scale=0.93 + 0.17 * pitch + rng.uniform(-0.03, 0.03),
        bandwidths=_BANDWIDTHS * rng.uniform(0.8, 1.3),
        glottal_bw=rng.uniform(100.0, 250.0),
        tilt_hz=rng.uniform(2500.0, 6000.0),
        breath=rng.uniform(0.01, 0.04),
        jitter=rng.uniform(0.002, 0.006),
        shimmer=rng.uniform(0.02, 0.05),
        peak=rng.uniform(0.5, 0.9),
        floor_db=rng.uniform(58.0, 66.0),
    )


def _sonorant(rng: np.random.Generator, kind: str, phone: str, voice: Voice, dur: float) -> Segment:
    targets, level = (_VOWELS if kind == "vowel" else _NASALS)[phone]
    formants = np.array(targets) * voice.formant_scale * (1 + 0.03 * rng.standard_normal(5))
    return Segment(kind, dur, voice=level, formants=formants)


def _noise(kind: str, phone: str, dur: float, level: float) -> Segment:
    return Segment(kind, dur, noise=NOISE_CLASSES.index(phone), noise_level=level)


def _consonant(rng: np.random.Generator, voice: Voice, onset: bool) -> tuple[list[Segment], str]:
    """A nasal, fricative or plosive; onset plosives are aspirated."""
    kind = rng.choice(["nasal", "fric", "plosive"], p=[0.3, 0.4, 0.3] if onset else [0.5, 0.3, 0.2])
    if kind == "nasal":
        phone = str(rng.choice(list(_NASALS)))
        return [_sonorant(rng, "nasal", phone, voice, rng.uniform(0.045, 0.08))], phone
    if kind == "fric":
        phone = str(rng.choice(list(_FRICATIVES) if onset else ["s", "sh", "f"]))
        level = _FRICATIVES[phone] * rng.uniform(0.8, 1.2)
        return [_noise("fric", phone, rng.uniform(0.07, 0.14), level)], phone
    phone = str(rng.choice(_PLOSIVES))
    segs = [
        Segment("closure", rng.uniform(0.03, 0.065)),
        _noise("burst", phone, rng.uniform(0.008, 0.018), 0.5),
    ]
    if onset:
        segs.append(_noise("fric", "h", rng.uniform(0.015, 0.045), 0.15))
    return segs, phone


def _word(rng: np.random.Generator, voice: Voice, max_syllables: int) -> tuple[list[Segment], list]:
    """A pseudo-word of 1-3 (C)V(C) syllables, one of them stressed: (segments, phones)."""
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])) if max_syllables > 1 else 1
    stressed = rng.integers(count)
    segs: list[Segment] = []
    phones: list[str] = []
    for k in range(count):
        if rng.random() < 0.75:  # onset
            more, phone = _consonant(rng, voice, onset=True)
            segs += more
            phones.append(phone)
        vowel = str(rng.choice(list(_VOWELS)))
        seg = _sonorant(rng, "vowel", vowel, voice, rng.uniform(0.07, 0.16))
        if k == stressed:
            seg.dur *= 1.35
            seg.accent = rng.uniform(0.05, 0.18) if rng.random() < 0.7 else 0.0
        else:
            seg.voice *= 0.8
        segs.append(seg)
        phones.append(vowel)
        if rng.random() < 0.35:  # coda
            more, phone = _consonant(rng, voice, onset=False)
            segs += more
            phones.append(phone)
    return segs, phones


@dataclass
class Plan:
    """The segments of an utterance and its transcripts."""

    segs: list[Segment]
    text: str
    phones: str


def plan_utterance(rng: np.random.Generator, voice: Voice, seconds: float) -> Plan:
    """Words and pauses whose durations add up to ``seconds``."""
    lead = Segment("pause", rng.uniform(0.05, 0.2))
    trail = Segment("pause", rng.uniform(0.1, 0.3))
    words: list[tuple[Segment | None, list[Segment], list[str]]] = []
    budget, used, misses = seconds - lead.dur - trail.dur, 0.0, 0
    while misses < 6:
        segs, phones = _word(rng, voice, 3 if misses == 0 else 1)
        gap = _gap(rng) if words else None
        cost = sum(s.dur for s in segs) + (gap.dur if gap else 0.0)
        if words and used + cost > budget:
            misses += 1
            continue
        words.append((gap, segs, phones))
        used += cost
    if not any(s.noise in (1, 2) for _, segs, _ in words for s in segs):  # no s/sh yet
        _, segs, phones = words[rng.integers(len(words))]
        phone = str(rng.choice(["s", "sh"]))
        segs.insert(0, _noise("fric", phone, rng.uniform(0.08, 0.14), _FRICATIVES[phone]))
        phones.insert(0, phone)
    segs = [lead]
    for gap, word, _ in words:
        if gap is not None and gap.kind == "break":
            _lengthen_last_vowel(segs)
        segs += ([gap] if gap is not None else []) + word
    _lengthen_last_vowel(segs)
    segs.append(trail)
    _fit(rng, segs, seconds)
    return Plan(segs, *_transcripts(words))


def _gap(rng: np.random.Generator) -> Segment | None:
    r = rng.random()
    if r < 0.55:
        return None
    if r < 0.8:
        return Segment("pause", rng.uniform(0.06, 0.15))
    return Segment("break", rng.uniform(0.2, 0.4))


def _lengthen_last_vowel(segs: list[Segment]) -> None:
    """Phrase-final lengthening."""
    vowels = [s for s in segs if s.kind == "vowel"]
    if vowels:
        vowels[-1].dur *= 1.3


def _fit(rng: np.random.Generator, segs: list[Segment], seconds: float) -> None:
    """Scale durations to sum to ``seconds``: stretch speech by up to 20 %, pad the edge pauses."""
    total = sum(s.dur for s in segs)
    if total >= seconds:
        for s in segs:
            s.dur *= seconds / total
        return
    inner = segs[1:-1]
    speech = sum(s.dur for s in inner)
    stretch = min(1.2, (speech + seconds - total) / speech)
    for s in inner:
        s.dur *= stretch
    slack = seconds - sum(s.dur for s in segs)
    share = rng.uniform(0.3, 0.6)
    segs[0].dur += share * slack
    segs[-1].dur += (1 - share) * slack


def _transcripts(words: list) -> tuple[str, str]:
    text, phones = [], []
    for j, (gap, _, spelled) in enumerate(words):
        mark = "" if gap is None else ("," if gap.kind == "pause" else ".")
        if mark:
            text[-1] += mark
            phones.append(mark)
        word = "".join(spelled)
        text.append(word.capitalize() if j == 0 or mark == "." else word)
        phones.append("-".join(spelled))
    return " ".join(text) + ".", " ".join(phones) + " ."
