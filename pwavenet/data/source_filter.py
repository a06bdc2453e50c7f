"""Source-filter rendering of an utterance plan (:mod:`pwavenet.data.speech_plan`).

- control tracks on a 1 ms grid: an F0 contour per phrase (declination, pitch accents, slow
  wobble), voicing and noise gates, formant targets gliding between sonorants;
- a band-limited glottal pulse train (windowed-sinc impulses at fractional times, so nothing
  aliases) shaped by a glottal low-pass, lip radiation and a spectral tilt;
- frication noise shaped per phone class, and aspiration/breath noise through the vocal tract;
- four formant resonators (plus a fixed F5 and higher poles) applied as time-varying filters by
  overlap-add of windowed frames (exact for constant parameters, smooth when they move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .speech_plan import NOISE_CLASSES, PAUSES, Plan, Voice

__all__ = ["CTRL_RATE", "Tracks", "control_tracks", "render"]

CTRL_RATE = 1000  # control tracks (gates, F0, formants) live on a 1 ms grid
# Fixed frication shapes of the noise classes after "h": (centre Hz, bandwidth Hz, high-passed?).
_NOISE_SHAPES = {
    "s": (5500, 2000, True),
    "sh": (2900, 1000, True),
    "f": (6000, 8000, True),
    "p": (900, 1500, False),
    "t": (4200, 2500, True),
    "k": (1900, 700, False),
}


# --------------------------------------------------------------------------- control tracks


def _hann(seconds: float) -> np.ndarray:
    """A unit-sum Hann smoothing kernel on the control grid."""
    n = max(3, round(seconds * CTRL_RATE) | 1)
    w = np.hanning(n + 2)[1:-1]
    return w / w.sum()


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    """Smooth ``x (L,)`` with a Hann kernel, holding the end values."""
    kernel = _hann(seconds)
    half = len(kernel) // 2
    return np.convolve(np.pad(x, half, mode="edge"), kernel, mode="valid")


@dataclass(frozen=True)
class Tracks:
    """Control tracks on the 1 ms grid ``t (L,)``."""

    t: np.ndarray
    f0: np.ndarray  # Hz, defined everywhere
    voiced: np.ndarray  # bool, inside a voiced segment
    av: np.ndarray  # voicing amplitude
    an: np.ndarray  # noise amplitude
    weights: np.ndarray  # (L, len(NOISE_CLASSES)) share of each noise class
    formants: np.ndarray  # (L, K) Hz, only the formants below Nyquist
    bandwidths: np.ndarray  # (L, K) Hz


def control_tracks(
    plan: Plan, voice: Voice, rng: np.random.Generator, seconds: float, rate: int
) -> Tracks:
    """The control tracks of ``plan`` on the grid ``t (L,)`` covering ``seconds``."""
    segs = plan.segs
    ends = np.cumsum([s.dur for s in segs])
    starts = ends - [s.dur for s in segs]
    t = np.arange(int(np.ceil(seconds * CTRL_RATE)) + 1) / CTRL_RATE
    at = np.minimum(np.searchsorted(ends, t, side="right"), len(segs) - 1)
    frac, phrase = _phrase_position(segs, starts, ends, t, at)
    n_phrases = phrase.max() + 1
    gain = 1 - rng.uniform(0.1, 0.35, n_phrases)[phrase] * frac

    level = np.array([s.voice for s in segs])[at]
    noise = np.array([s.noise for s in segs])[at]
    noise_level = np.array([s.noise_level for s in segs])[at]
    gates = np.stack([np.where(noise == c, noise_level, 0.0) for c in range(len(NOISE_CLASSES))])
    gates[0] += voice.breath * level  # breath noise rides on voicing
    gates = np.stack([_smooth(g, 0.006) for g in gates], axis=1)
    total = gates.sum(axis=1)
    weights = gates / np.maximum(total, 1e-6)[:, None]
    weights[total <= 1e-6, 0] = 1.0  # silence: any shape will do

    formants, bandwidths = _formant_tracks(segs, starts, ends, t, voice, rate)
    return Tracks(
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
    speech = np.array([s.kind not in PAUSES for s in segs])
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


_SINC_HALF, _SINC_CUTOFF, _SINC_BETA = 16, 0.42, 8.0  # taps each side, cutoff / fs, Kaiser beta


def _impulses(times: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Band-limited impulses (Kaiser-windowed sinc) at fractional sample ``times (P,)``: (n,)."""
    pos = np.floor(times).astype(np.int64)[:, None] + np.arange(1 - _SINC_HALF, _SINC_HALF + 1)
    d = pos - times[:, None]
    window = np.i0(_SINC_BETA * np.sqrt(np.clip(1 - (d / _SINC_HALF) ** 2, 0, None)))
    taps = 2 * _SINC_CUTOFF * np.sinc(2 * _SINC_CUTOFF * d) * window / np.i0(_SINC_BETA)
    ok = (pos >= 0) & (pos < n)
    return np.bincount(pos[ok], weights=(taps * weights[:, None])[ok], minlength=n)


def _pulse_train(f0: np.ndarray, av: np.ndarray, voice: Voice, rng, rate: int) -> np.ndarray:
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


def _noise_shapes(voice: Voice, nfft: int, rate: int) -> np.ndarray:
    """Fixed frication spectra for the classes after "h": (classes - 1, F), unit mean power."""
    z1 = _delay(nfft)
    shapes = []
    for name in NOISE_CLASSES[1:]:
        centre, bw, high_pass = _NOISE_SHAPES[name]
        centre = min(centre * voice.formant_scale, 0.42 * rate)
        h = _resonators(np.array([centre]), np.array([min(bw, 0.25 * rate)]), nfft, rate)
        shapes.append(_unit_power(h * (1 - z1) if high_pass else h))
    return np.stack(shapes)


def _upper_poles(voice: Voice, nfft: int, rate: int) -> np.ndarray:
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


def render(tr: Tracks, voice: Voice, rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
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
