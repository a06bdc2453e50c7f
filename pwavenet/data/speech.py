"""A speech-like source-filter synthesiser, with ground-truth F0.

Datasets cannot be downloaded everywhere pwavenet is tested, so the project makes its own speech.
The synthetic engine is a source-filter model in the spirit of the Klatt synthesiser:

- a plan of pseudo-words (vowels, nasals, fricatives, plosives) with pauses, fitted to a drawn
  duration; phrases are separated by long pauses;
- an F0 contour per phrase (declination, pitch accents, slow wobble) and per-pulse jitter;
- a band-limited glottal pulse train (windowed-sinc impulses at fractional times, so nothing
  aliases) shaped by a glottal low-pass, lip radiation and a spectral tilt;
- frication noise shaped per phone class, and aspiration/breath noise through the vocal tract;
- four formant resonators (plus a fixed F5 and higher poles) that glide between vowel targets,
  applied as time-varying filters by overlap-add of windowed frames (exact for constant
  parameters, smooth when they move).

Everything is vectorised with numpy; utterance ``i`` depends only on ``(seed, i)``.
:mod:`pwavenet.data.make_corpus` writes these utterances to disk in the LJSpeech layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CorpusError

__all__ = ["F0_HOP_SECONDS", "CorpusError", "Utterance", "synthesize_utterance"]

F0_HOP_SECONDS = 0.01
_ID_PREFIX = {"synthetic": "SYN", "espeak": "ESP"}
_CTRL_RATE = 1000  # control tracks (gates, F0, formants) live on a 1 ms grid
_MIN_SECONDS, _MAX_SECONDS = 0.1, 60.0

# Vowel and nasal formant targets F1..F5 (Hz, adult male, Peterson & Barney-like) and loudness.
# F5 barely moves; the poles above it are added by _upper_poles.
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
# have fixed shapes: (centre Hz, bandwidth Hz, high-passed?).
_NOISE_CLASSES = ("h", "s", "sh", "f", "p", "t", "k")
_NOISE_SHAPES = {
    "s": (5500, 2000, True),
    "sh": (2900, 1000, True),
    "f": (6000, 8000, True),
    "p": (900, 1500, False),
    "t": (4200, 2500, True),
    "k": (1900, 700, False),
}
_FRICATIVES = {"s": 0.4, "sh": 0.35, "f": 0.1, "h": 0.12}  # rms re a loud vowel
_PLOSIVES = ("p", "t", "k")
_PAUSES = ("pause", "break")  # "break" ends a phrase: the F0 declination resets after it


# Defined here, not in pwavenet.data.make_corpus (which re-exports it), so that
# synthesize_utterance can raise it without a circular import.
@dataclass(frozen=True, eq=False)
class Utterance:
    """One generated utterance.

    ``audio``: float32 ``(T,)`` in [-1, 1]. ``f0``: float32 ``(frames,)`` in Hz, 0 where unvoiced,
    frame ``k`` at time ``k * F0_HOP_SECONDS`` (empty for the espeak engine). ``text`` is a
    readable pseudo-sentence; ``phones`` spells its segments (``s-a-t-o k-i , ...``).
    """

    id: str
    text: str
    phones: str
    audio: np.ndarray
    f0: np.ndarray
    sample_rate: int


# --------------------------------------------------------------------------- arguments


def _check_args(sample_rate: int, min_seconds: float, max_seconds: float, seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CorpusError(f"seed={seed!r}: must be a non-negative integer")
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise CorpusError(f"sample_rate={sample_rate!r}: must be an integer from 8000 to 192000 Hz")
    if not _MIN_SECONDS <= min_seconds <= max_seconds <= _MAX_SECONDS:
        raise CorpusError(
            f"min_seconds={min_seconds!r}, max_seconds={max_seconds!r}: need "
            f"{_MIN_SECONDS} <= min_seconds <= max_seconds <= {_MAX_SECONDS}"
        )


def _utterance_id(engine: str, index: int) -> str:
    return f"{_ID_PREFIX[engine]}-{index + 1:04d}"


def _num_samples(rng: np.random.Generator, rate: int, lo: float, hi: float) -> int:
    """A drawn length in samples whose duration lies in ``[lo, hi]`` seconds."""
    first, last = int(np.ceil(lo * rate)), int(np.floor(hi * rate))
    n = round(rng.uniform(lo, hi) * rate)
    return min(max(n, first), last) if first <= last else round(lo * rate)


# --------------------------------------------------------------------------- the plan


@dataclass
class _Seg:
    kind: str  # vowel, nasal, fric, closure, burst, pause, break
    dur: float
    voice: float = 0.0  # voicing amplitude
    noise: int = -1  # index into _NOISE_CLASSES
    noise_level: float = 0.0
    formants: np.ndarray | None = None  # (5,) Hz targets
    accent: float = 0.0  # log-F0 bump at this vowel


@dataclass(frozen=True)
class _Voice:
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


def _draw_voice(rng: np.random.Generator) -> _Voice:
    f0_base = float(np.exp(rng.uniform(np.log(85.0), np.log(230.0))))
    pitch = np.log(f0_base / 85.0) / np.log(230.0 / 85.0)  # higher voices, shorter tracts
    return _Voice(
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


def _sonorant(rng: np.random.Generator, kind: str, phone: str, voice: _Voice, dur: float) -> _Seg:
    targets, level = (_VOWELS if kind == "vowel" else _NASALS)[phone]
    formants = np.array(targets) * voice.formant_scale * (1 + 0.03 * rng.standard_normal(5))
    return _Seg(kind, dur, voice=level, formants=formants)


def _noise(kind: str, phone: str, dur: float, level: float) -> _Seg:
    return _Seg(kind, dur, noise=_NOISE_CLASSES.index(phone), noise_level=level)


def _consonant(rng: np.random.Generator, voice: _Voice, onset: bool) -> tuple[list[_Seg], str]:
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
        _Seg("closure", rng.uniform(0.03, 0.065)),
        _noise("burst", phone, rng.uniform(0.008, 0.018), 0.5),
    ]
    if onset:
        segs.append(_noise("fric", "h", rng.uniform(0.015, 0.045), 0.15))
    return segs, phone


def _word(rng: np.random.Generator, voice: _Voice, max_syllables: int) -> tuple[list[_Seg], list]:
    """A pseudo-word of 1-3 (C)V(C) syllables, one of them stressed: (segments, phones)."""
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])) if max_syllables > 1 else 1
    stressed = rng.integers(count)
    segs: list[_Seg] = []
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
class _Plan:
    segs: list[_Seg]
    text: str
    phones: str


def _plan(rng: np.random.Generator, voice: _Voice, seconds: float) -> _Plan:
    """Words and pauses whose durations add up to ``seconds``."""
    lead = _Seg("pause", rng.uniform(0.05, 0.2))
    trail = _Seg("pause", rng.uniform(0.1, 0.3))
    words: list[tuple[_Seg | None, list[_Seg], list[str]]] = []
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
    return _Plan(segs, *_transcripts(words))


def _gap(rng: np.random.Generator) -> _Seg | None:
    r = rng.random()
    if r < 0.55:
        return None
    if r < 0.8:
        return _Seg("pause", rng.uniform(0.06, 0.15))
    return _Seg("break", rng.uniform(0.2, 0.4))


def _lengthen_last_vowel(segs: list[_Seg]) -> None:
    """Phrase-final lengthening."""
    vowels = [s for s in segs if s.kind == "vowel"]
    if vowels:
        vowels[-1].dur *= 1.3


def _fit(rng: np.random.Generator, segs: list[_Seg], seconds: float) -> None:
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


# --------------------------------------------------------------------------- control tracks


def _hann(seconds: float) -> np.ndarray:
    """A unit-sum Hann smoothing kernel on the control grid."""
    n = max(3, round(seconds * _CTRL_RATE) | 1)
    w = np.hanning(n + 2)[1:-1]
    return w / w.sum()


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    """Smooth ``x (L,)`` with a Hann kernel, holding the end values."""
    kernel = _hann(seconds)
    half = len(kernel) // 2
    return np.convolve(np.pad(x, half, mode="edge"), kernel, mode="valid")


@dataclass(frozen=True)
class _Tracks:
    """Control tracks on the 1 ms grid ``t (L,)``."""

    t: np.ndarray
    f0: np.ndarray  # Hz, defined everywhere
    voiced: np.ndarray  # bool, inside a voiced segment
    av: np.ndarray  # voicing amplitude
    an: np.ndarray  # noise amplitude
    weights: np.ndarray  # (L, len(_NOISE_CLASSES)) share of each noise class
    formants: np.ndarray  # (L, K) Hz, only the formants below Nyquist
    bandwidths: np.ndarray  # (L, K) Hz


def _tracks(plan: _Plan, voice: _Voice, rng: np.random.Generator, seconds: float, rate: int):
    segs = plan.segs
    ends = np.cumsum([s.dur for s in segs])
    starts = ends - [s.dur for s in segs]
    t = np.arange(int(np.ceil(seconds * _CTRL_RATE)) + 1) / _CTRL_RATE
    at = np.minimum(np.searchsorted(ends, t, side="right"), len(segs) - 1)
    frac, phrase = _phrase_position(segs, starts, ends, t, at)
    n_phrases = phrase.max() + 1
    gain = 1 - rng.uniform(0.1, 0.35, n_phrases)[phrase] * frac

    level = np.array([s.voice for s in segs])[at]
    noise = np.array([s.noise for s in segs])[at]
    noise_level = np.array([s.noise_level for s in segs])[at]
    gates = np.stack([np.where(noise == c, noise_level, 0.0) for c in range(len(_NOISE_CLASSES))])
    gates[0] += voice.breath * level  # breath noise rides on voicing
    gates = np.stack([_smooth(g, 0.006) for g in gates], axis=1)
    total = gates.sum(axis=1)
    weights = gates / np.maximum(total, 1e-6)[:, None]
    weights[total <= 1e-6, 0] = 1.0  # silence: any shape will do

    formants, bandwidths = _formant_tracks(segs, starts, ends, t, voice, rate)
    return _Tracks(
        t=t,
        f0=_f0_contour(segs, starts, ends, t, frac, phrase, voice, rng),
        voiced=level > 0,
        av=_smooth(level, 0.02) * gain,
        an=total * gain,
        weights=weights,
        formants=formants,
        bandwidths=bandwidths,
    )


def _phrase_position(segs, starts, ends, t, at) -> tuple[np.ndarray, np.ndarray]:
    """Phrase index of each grid point and its position 0..1 within the phrase's speech."""
    seg_phrase = np.cumsum([s.kind == "break" for s in segs])
    speech = np.array([s.kind not in _PAUSES for s in segs])
    n = seg_phrase.max() + 1
    first = np.array([starts[speech & (seg_phrase == p)].min() for p in range(n)])
    last = np.array([ends[speech & (seg_phrase == p)].max() for p in range(n)])
    phrase = seg_phrase[at]
    frac = np.clip((t - first[phrase]) / (last[phrase] - first[phrase]), 0.0, 1.0)
    return frac, phrase


def _f0_contour(segs, starts, ends, t, frac, phrase, voice, rng) -> np.ndarray:
    """Declination per phrase + pitch accents + a slow wobble, in log-F0; Hz on the grid."""
    n_phrases = phrase.max() + 1
    top, fall = rng.uniform(0.04, 0.18, n_phrases), rng.uniform(0.04, 0.15, n_phrases)
    log_f0 = np.log(voice.f0_base) + top[phrase] - (top + fall)[phrase] * frac
    for s, a, b in zip(segs, starts, ends, strict=True):
        if s.accent > 0:
            centre, width = (a + b) / 2 + rng.uniform(-0.02, 0.03), rng.uniform(0.05, 0.1)
            log_f0 += s.accent * np.exp(-0.5 * ((t - centre) / width) ** 2)
    for lo, hi, depth in ((0.5, 1.5, 0.03), (2.5, 5.5, 0.02)):
        rate, amp, phase = rng.uniform(lo, hi), rng.uniform(depth / 3, depth), rng.uniform(0, 6.3)
        log_f0 += amp * np.sin(2 * np.pi * rate * t + phase)
    return np.clip(np.exp(_smooth(log_f0, 0.03)), 72.0, 380.0)


def _formant_tracks(segs, starts, ends, t, voice, rate) -> tuple[np.ndarray, np.ndarray]:
    """Formants glide between sonorant targets (knots at 25 % and 75 % of each sonorant)."""
    times, values, nasal = [], [], np.zeros_like(t)
    for s, a, b in zip(segs, starts, ends, strict=True):
        if s.formants is not None:
            times += [a + 0.25 * (b - a), a + 0.75 * (b - a)]
            values += [s.formants, s.formants]
        if s.kind == "nasal":
            nasal[(t >= a) & (t < b)] = 1.0
    values = np.array(values)
    keep = values.max(axis=0) < 0.45 * rate  # formants above 0.45 fs are left out
    formants = np.stack([_smooth(np.interp(t, times, v), 0.03) for v in values[:, keep].T], 1)
    widen = 1 + 0.6 * _smooth(nasal, 0.02)
    return formants, voice.bandwidths[keep][None, :] * widen[:, None]


# --------------------------------------------------------------------------- rendering

_SINC_HALF, _SINC_CUTOFF, _SINC_BETA = 16, 0.42, 8.0  # taps each side, cutoff / fs, Kaiser beta


def _impulses(times: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Band-limited impulses (Kaiser-windowed sinc) at fractional sample ``times (P,)``: (n,)."""
    pos = np.floor(times).astype(np.int64)[:, None] + np.arange(1 - _SINC_HALF, _SINC_HALF + 1)
    d = pos - times[:, None]
    window = np.i0(_SINC_BETA * np.sqrt(np.clip(1 - (d / _SINC_HALF) ** 2, 0, None)))
    taps = 2 * _SINC_CUTOFF * np.sinc(2 * _SINC_CUTOFF * d) * window / np.i0(_SINC_BETA)
    ok = (pos >= 0) & (pos < n)
    return np.bincount(pos[ok], weights=(taps * weights[:, None])[ok], minlength=n)


def _pulse_train(f0: np.ndarray, av: np.ndarray, voice: _Voice, rng, rate: int) -> np.ndarray:
    """Glottal pulse times from the F0 phase, jittered; amplitudes give power ``av**2``: (T,)."""
    n = len(f0)
    phase = rng.uniform() + np.cumsum(f0) / rate
    k = np.arange(np.ceil(phase[0]), np.floor(phase[-1]) + 1)
    i = np.clip(np.searchsorted(phase, k), 1, n - 1)
    times = i - 1 + (k - phase[i - 1]) / (phase[i] - phase[i - 1])
    period = rate / f0[i]
    times += voice.jitter * period * rng.standard_normal(len(times))
    shimmer = 1 + voice.shimmer * rng.standard_normal(len(times))
    amp = np.interp(times, np.arange(n), av) * shimmer * np.sqrt(period / (2 * _SINC_CUTOFF))
    keep = np.abs(amp) > 1e-4
    return _impulses(times[keep], amp[keep], n)


def _resonators(freq: np.ndarray, bw: np.ndarray, nfft: int, rate: int) -> np.ndarray:
    """A cascade of unity-DC-gain two-pole resonators, one per entry on the last axis of
    ``freq, bw (..., K)`` (Hz), as a frequency response on the ``nfft`` grid: ``(..., nfft//2+1)``.

    The denominators are multiplied out into one polynomial in z^-1, evaluated by an FFT.
    """
    r = np.exp(-np.pi * bw / rate)
    c1, c2 = 2 * r * np.cos(2 * np.pi * freq / rate), -(r**2)
    poly = np.zeros((*freq.shape[:-1], 2 * freq.shape[-1] + 1))
    poly[..., 0] = 1.0
    for k in range(freq.shape[-1]):  # poly *= 1 - c1 z^-1 - c2 z^-2
        prev = poly.copy()
        poly[..., 1:] -= c1[..., k, None] * prev[..., :-1]
        poly[..., 2:] -= c2[..., k, None] * prev[..., :-2]
    gain = np.prod(1 - c1 - c2, axis=-1)[..., None]
    return gain / np.fft.rfft(poly, nfft)


def _delay(nfft: int) -> np.ndarray:
    """``z^-1 = exp(-jw)`` on the rfft grid: (nfft//2+1,)."""
    return np.exp(-2j * np.pi * np.arange(nfft // 2 + 1) / nfft)


def _unit_power(h: np.ndarray) -> np.ndarray:
    return h / np.sqrt(np.mean(np.abs(h) ** 2, axis=-1, keepdims=True))


def _noise_shapes(voice: _Voice, nfft: int, rate: int) -> np.ndarray:
    """Fixed frication spectra for the classes after "h": (classes - 1, F), unit mean power."""
    z1 = _delay(nfft)
    shapes = []
    for name in _NOISE_CLASSES[1:]:
        centre, bw, high_pass = _NOISE_SHAPES[name]
        centre = min(centre * voice.formant_scale, 0.42 * rate)
        h = _resonators(np.array([centre]), np.array([min(bw, 0.25 * rate)]), nfft, rate)
        shapes.append(_unit_power(h * (1 - z1) if high_pass else h))
    return np.stack(shapes)


def _upper_poles(voice: _Voice, nfft: int, rate: int) -> np.ndarray:
    """Fixed resonances of a neutral tract above F5, up to 0.45 fs: (F,).

    A cascade truncated at F5 falls by 12 dB/octave per formant above it; these poles keep the
    voiced spectrum above 5 kHz at a speech-like level (Klatt's "higher-pole correction").
    """
    centres = np.arange(11, 40, 2) * 500.0 * voice.formant_scale  # F6, F7, ...
    centres = centres[centres < 0.45 * rate]
    if len(centres) == 0:
        return np.ones(nfft // 2 + 1)
    widths = 300.0 + 100.0 * np.arange(len(centres))
    return _resonators(centres, widths, nfft, rate)


def _render(tr: _Tracks, voice: _Voice, rng: np.random.Generator, n: int, rate: int):
    """Source-filter synthesis by overlap-add of frames with per-frame filters: ``(n,)``."""
    ts = np.arange(n) / rate
    xv = _pulse_train(np.interp(ts, tr.t, tr.f0), np.interp(ts, tr.t, tr.av), voice, rng, rate)
    xn = rng.standard_normal(n) * np.interp(ts, tr.t, tr.an)

    hop = max(8, round(0.01 * rate))
    blocks = 2 + int(np.ceil(0.045 * rate / hop))  # 2 for the window, the rest for filter tails
    nfft = blocks * hop
    z1 = _delay(nfft)
    glottis = _resonators(np.zeros(1), np.array([voice.glottal_bw]), nfft, rate) * (1 - z1)
    tilt = np.exp(-2 * np.pi * min(voice.tilt_hz, 0.4 * rate) / rate)
    source = glottis * (1 - tilt) / (1 - tilt * z1)
    shapes = _noise_shapes(voice, nfft, rate)
    upper = _upper_poles(voice, nfft, rate)

    frames = (n - 1) // hop + 2  # frame m is centred on sample m * hop
    centres = np.arange(frames) * hop / rate
    formants = np.stack([np.interp(centres, tr.t, f) for f in tr.formants.T], 1)
    bandwidths = np.stack([np.interp(centres, tr.t, b) for b in tr.bandwidths.T], 1)
    weights = np.stack([np.interp(centres, tr.t, w) for w in tr.weights.T], 1)

    window = 0.5 - 0.5 * np.cos(np.pi * np.arange(2 * hop) / hop)  # periodic Hann, sums to 1
    pad = np.zeros((2, (frames + 1) * hop))
    pad[0, hop : hop + n], pad[1, hop : hop + n] = xv, xn
    out = np.zeros((frames + blocks, hop))
    for a in range(0, frames, 256):
        b = min(frames, a + 256)
        seg = np.lib.stride_tricks.sliding_window_view(pad, 2 * hop, axis=1)[:, a * hop : b * hop]
        spectra = np.fft.rfft(seg[:, ::hop] * window, nfft)
        tract = _resonators(formants[a:b], bandwidths[a:b], nfft, rate) * upper
        voiced = _unit_power(tract * source)
        noisy = weights[a:b, :1] * _unit_power(tract) + weights[a:b, 1:] @ shapes
        y = np.fft.irfft(spectra[0] * voiced + spectra[1] * noisy, nfft).reshape(b - a, blocks, hop)
        for j in range(blocks):
            out[a + j : b + j] += y[:, j]
    return out.reshape(-1)[hop : hop + n]


def synthesize_utterance(
    index: int,
    *,
    seed: int = 0,
    sample_rate: int = 22050,
    min_seconds: float = 1.0,
    max_seconds: float = 4.0,
) -> Utterance:
    """Utterance ``index`` of the synthetic corpus for ``seed``; depends only on ``(seed, index)``.

    Returns audio ``(T,)`` float32 with ``min_seconds <= T / sample_rate <= max_seconds``, peak
    0.5-0.9, and its F0 track ``(frames,)`` every :data:`F0_HOP_SECONDS` (0 where unvoiced).
    """
    _check_args(sample_rate, min_seconds, max_seconds, seed)
    if index < 0:
        raise CorpusError(f"index={index}: must be non-negative")
    rng = np.random.default_rng([seed, index])
    n = _num_samples(rng, sample_rate, min_seconds, max_seconds)
    voice = _draw_voice(rng)
    plan = _plan(rng, voice, n / sample_rate)
    tracks = _tracks(plan, voice, rng, n / sample_rate, sample_rate)
    audio = _render(tracks, voice, rng, n, sample_rate)
    audio = _finish(audio, voice.peak, voice.floor_db, rng)
    step = round(F0_HOP_SECONDS * _CTRL_RATE)
    frames = int(np.floor((n - 1) / sample_rate / F0_HOP_SECONDS + 1e-9)) + 1
    f0 = np.where(tracks.voiced, tracks.f0, 0.0)[::step][:frames]
    return Utterance(
        id=_utterance_id("synthetic", index),
        text=plan.text,
        phones=plan.phones,
        audio=audio,
        f0=np.round(f0, 1).astype(np.float32),
        sample_rate=sample_rate,
    )


def _finish(audio: np.ndarray, peak: float, floor_db: float, rng) -> np.ndarray:
    """Normalise the peak and add a noise floor ``floor_db`` below it (never digital silence)."""
    audio = audio * (peak / max(float(np.max(np.abs(audio))), 1e-9))
    audio = audio + peak * 10 ** (-floor_db / 20) * rng.standard_normal(len(audio))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
