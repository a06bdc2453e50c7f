"""A blind listening test in the MUSHRA style (ITU-R BS.1534): one self-contained HTML page.

:func:`write_listening_page` reads an evaluation folder (``pwavenet evaluate``'s ``metrics.json``
and the audio it points at) and writes a page that holds everything (audio as base64 16-bit WAV,
its style and its script), so it opens from a file with no server and no network. Each trial is
one utterance: an open reference, then the hidden reference, every system and the anchors
(Griffin-Lim, and with ``lowpass_anchor`` the standard's 3.5 kHz low-pass of the reference) in a
seeded shuffled order under neutral labels (A, B, C, ...), each with a 0-100 slider on the MUSHRA
scale. "Save ratings" downloads a JSON file that :mod:`pwavenet.eval.listen_score` scores.

The page keeps the systems' names out of its text: each item carries its name XOR-ed with a key
that the page also holds, decoded only when the ratings are saved. This hides the labels from a
listener, not from someone who reads the page's source.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import atomic_path
from .listen_page import PAGE_SCRIPT, PAGE_STYLE, SCALE

__all__ = [
    "GRIFFIN_LIM",
    "LOWPASS",
    "LOWPASS_HZ",
    "RATINGS_FORMAT",
    "REFERENCE",
    "Trial",
    "collect_trials",
    "lowpass",
    "page_id",
    "render_page",
    "write_listening_page",
]

RATINGS_FORMAT = "pwavenet-listening-ratings/1"
REFERENCE = "reference"  # the hidden reference's name in the ratings
GRIFFIN_LIM = "griffin-lim"  # evaluate's no-training baseline: the anchor every page has
LOWPASS = "lowpass-3.5k"  # BS.1534's low anchor: the reference low-passed at 3.5 kHz
LOWPASS_HZ = 3500.0


@dataclass
class Trial:
    """One utterance of the test: ``clips`` maps each item's name (the reference first) to its
    audio ``(T,)`` float32 in [-1, 1] at ``rate``."""

    utterance: str
    rate: int
    clips: dict[str, np.ndarray] = field(default_factory=dict)


def lowpass(audio: np.ndarray, rate: int, cutoff: float = LOWPASS_HZ) -> np.ndarray:
    """``audio (T,)`` with everything above ``cutoff`` Hz removed (an FFT brick-wall filter)."""
    spectrum = np.fft.rfft(audio.astype(np.float64))
    spectrum[np.fft.rfftfreq(len(audio), 1.0 / rate) > cutoff] = 0.0
    return np.fft.irfft(spectrum, len(audio)).astype(np.float32)


def _find_wav(eval_dir: Path, inputs: dict[str, Any], name: str, uid: str) -> Path:
    """Where ``name``'s audio of utterance ``uid`` is: the report's copy under ``audio/`` (it
    travels with the folder), Griffin-Lim's own folder, or the input ``metrics.json`` records."""
    copy = eval_dir / "audio" / name / f"{uid}.wav"
    places = [copy, eval_dir / GRIFFIN_LIM / f"{uid}.wav"] if name == GRIFFIN_LIM else [copy]
    if name == REFERENCE and uid in inputs.get("references", {}):
        places.append(Path(inputs["references"][uid]))
    elif name in inputs.get("systems", {}):
        places.append(Path(inputs["systems"][name]) / f"{uid}.wav")
    for path in places:
        if path.is_file():
            return path
    also = "".join(f" nor at {p}" for p in places[1:])
    raise DataError(f"{copy}: missing {name} audio of utterance {uid!r} (not there{also})")


def collect_trials(
    eval_dir: str | Path, *, max_utterances: int = 8, lowpass_anchor: bool = False
) -> list[Trial]:
    """The first ``max_utterances`` utterances of an evaluation folder, each with the reference,
    every evaluated system (Griffin-Lim included) and, with ``lowpass_anchor``, the 3.5 kHz
    low-pass anchor, all at the systems' sample rate. Raises a one-line error for a folder
    without ``metrics.json``, without an anchor, or with an audio file missing."""
    from ..audio import read_audio
    from .evaluate import load_metrics

    eval_dir = Path(eval_dir)
    metrics_path = eval_dir / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path}: missing (give the --out folder of pwavenet evaluate)")
    if max_utterances < 1:
        raise ConfigError(f"--max-utterances {max_utterances}: must be at least 1")
    metrics = load_metrics(metrics_path)
    utterances = metrics.get("utterances")
    if not isinstance(utterances, dict) or not utterances:
        raise DataError(f"{metrics_path}: no utterances")
    systems = list(next(iter(utterances.values())))
    if REFERENCE in systems or LOWPASS in systems:
        raise DataError(f"{metrics_path}: a system is named {REFERENCE!r} or {LOWPASS!r}")
    if GRIFFIN_LIM not in systems and not lowpass_anchor:
        raise DataError(
            f"{metrics_path}: no Griffin-Lim anchor (evaluated with --no-griffin-lim); "
            "add --lowpass-anchor"
        )
    inputs = metrics.get("inputs", {})
    trials = []
    for uid in list(utterances)[:max_utterances]:
        first, rate = read_audio(_find_wav(eval_dir, inputs, systems[0], uid))
        clips = {REFERENCE: read_audio(_find_wav(eval_dir, inputs, REFERENCE, uid), rate)[0]}
        for name in systems:
            path = _find_wav(eval_dir, inputs, name, uid)
            clips[name] = first if name == systems[0] else read_audio(path, rate)[0]
        if lowpass_anchor:
            if rate / 2 <= LOWPASS_HZ:
                raise ConfigError(
                    f"--lowpass-anchor: the audio is at {rate} Hz, which holds nothing above "
                    f"{LOWPASS_HZ:g} Hz to remove"
                )
            clips[LOWPASS] = lowpass(clips[REFERENCE], rate)
        trials.append(Trial(uid, rate, clips))
    return trials


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    """``audio (T,)`` as a 16-bit PCM WAV file in memory."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def page_id(trials: list[Trial], wavs: list[dict[str, bytes]]) -> str:
    """An identifier of the test's content (utterances, item names and their audio), the same
    whatever the shuffle's seed, so that ratings from pages with other seeds score together."""
    digest = hashlib.sha256()
    for trial, clips in zip(trials, wavs, strict=True):
        digest.update(trial.utterance.encode() + b"\0")
        for name in sorted(clips):
            digest.update(name.encode() + b"\0" + hashlib.sha256(clips[name]).digest())
    return digest.hexdigest()[:16]


def _labels(count: int) -> list[str]:
    letters = string.ascii_uppercase
    return [letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26] for i in range(count)]


def _hide(name: str, key: bytes, offset: int) -> str:
    """``name`` XOR-ed with ``key`` from ``offset`` on, in base64 (the page's script undoes it)."""
    raw = name.encode("utf-8")
    hidden = bytes(b ^ key[(offset + i) % len(key)] for i, b in enumerate(raw))
    return base64.b64encode(hidden).decode("ascii")


def _page_data(trials: list[Trial], wavs: list[dict[str, bytes]], seed: int) -> dict[str, Any]:
    """What the page's script needs: per trial (in a seeded shuffled order) the reference's clip
    and the items under their labels, each with its clip id and its hidden name; and the clips."""
    rng = np.random.default_rng(seed)
    ident = page_id(trials, wavs)
    key = hashlib.sha256(f"pwavenet-listen:{ident}:{seed}".encode()).digest()
    data: dict[str, Any] = {"format": RATINGS_FORMAT, "page_id": ident, "seed": seed}
    data["key"] = key.hex()
    data["trials"], clips = [], {}
    for t in (int(i) for i in rng.permutation(len(trials))):
        names = list(wavs[t])
        order = [names[int(i)] for i in rng.permutation(len(names))]
        items = []
        for j, (label, name) in enumerate(zip(_labels(len(order)), order, strict=True)):
            clip = f"c{len(clips)}"  # numbered in shuffled order: the ids say nothing
            clips[clip] = wavs[t][name]
            offset = 31 * len(data["trials"]) + 7 * j
            items.append({"label": label, "clip": clip, "name": _hide(name, key, offset)})
            if name == REFERENCE:
                reference = clip
        data["trials"].append(
            {"utterance": trials[t].utterance, "reference": reference, "items": items}
        )
    return {"data": data, "clips": clips}


def _trial_html(number: int, total: int, trial: dict[str, Any]) -> str:
    scale = "".join(f"<span>{html.escape(word)}</span>" for word in SCALE)
    rows = []
    for j, item in enumerate(trial["items"]):
        label = html.escape(item["label"])
        rows.append(
            f'<div class=item><b>{label}</b><button class=play data-clip="{item["clip"]}">'
            f"Play {label}</button><input type=range min=0 max=100 step=1 value=0 "
            f'data-trial="{number}" data-item="{j}" aria-label="Rating of {label}">'
            f"<output>-</output></div>"
        )
    return (
        f'<section class=trial data-trial="{number}"'
        f"{' hidden' if number else ''}><h2>Trial {number + 1} of {total}</h2>"
        f'<p><button class="play reference" data-clip="{trial["reference"]}">Play the '
        f"reference</button></p><div class=scale>{scale}</div>{''.join(rows)}</section>"
    )


def render_page(
    trials: list[Trial], *, seed: int = 0, title: str = "Listening test"
) -> tuple[str, str]:
    """The page's HTML for ``trials`` (see :func:`collect_trials`), shuffled by ``seed``, and
    its :func:`page_id`."""
    wavs = [{name: _wav_bytes(x, t.rate) for name, x in t.clips.items()} for t in trials]
    built = _page_data(trials, wavs, seed)
    data = built["data"]
    sections = [_trial_html(i, len(data["trials"]), t) for i, t in enumerate(data["trials"])]
    audios = [
        f'<audio id="{clip}" preload=auto src="data:audio/wav;base64,'
        f'{base64.b64encode(wav).decode("ascii")}"></audio>'
        for clip, wav in built["clips"].items()
    ]
    # "</" inside a script element would end it early; JSON allows "<\/" for the same text.
    blob = json.dumps(data).replace("</", "<\\/")
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><meta name=viewport content='width=device-width'><style>{PAGE_STYLE}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        "<p class=help>For each trial, listen to the reference, then rate every item against it "
        "on the scale from 0 (bad) to 100 (excellent). One item is the reference itself, hidden: "
        "rate it 100 when you find it. Use headphones, in a quiet room.</p>"
        "<p><label>Your name <input id=rater autocomplete=off></label></p>"
        f"{''.join(sections)}<nav><button id=prev>Previous</button> <span id=position></span> "
        "<button id=next>Next</button> <button id=save>Save ratings</button></nav>"
        "<p id=status role=status></p>"
        f"<script type=application/json id=test-data>{blob}</script>{''.join(audios)}"
        f"<script>{PAGE_SCRIPT}</script></body></html>\n"
    )
    return page, data["page_id"]


def write_listening_page(
    eval_dir: str | Path,
    out: str | Path | None = None,
    *,
    max_utterances: int = 8,
    seed: int = 0,
    lowpass_anchor: bool = False,
    title: str = "Listening test",
) -> dict[str, Any]:
    """Write the listening page of an evaluation folder to ``out`` (default
    ``eval_dir/listen.html``), atomically. Returns ``{"path", "page_id", "trials", "items",
    "bytes"}``: the page, its identifier, the number of trials and of items per trial, and its
    size (large pages are slow to open: the caller warns)."""
    trials = collect_trials(eval_dir, max_utterances=max_utterances, lowpass_anchor=lowpass_anchor)
    page, ident = render_page(trials, seed=seed, title=title)
    path = Path(out) if out is not None else Path(eval_dir) / "listen.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {
        "path": path,
        "page_id": ident,
        "trials": len(trials),
        "items": len(trials[0].clips),
        "bytes": len(page.encode("utf-8")),
    }
