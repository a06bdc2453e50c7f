"""The pitch monitor: does the model in training make a voiced, pitched sound yet?

At validation the model synthesizes a fixed held-out snippet through the one call every vocoder
has (:meth:`~pwavenet.models.vocoder.Vocoder.synthesize`: the teacher with its cached sampler,
the student in one parallel pass), with a fixed seed, and the evaluation's YIN tracker and
metrics score it against the reference snippet:

- ``voiced_recall``: the fraction of the reference's voiced frames voiced in the output;
- ``f0_rmse``: the F0 error in Hz over frames voiced in both (left out while there are none);
- ``loudness_db``: the output's level against the reference's;
- ``mrstft``: the multi-resolution STFT distance;
- ``monitor_seconds``: what the monitor itself took.

The snippet is the stretch of ``train.monitor_seconds`` (whole frames) of a validation utterance,
among the first few, with the most voiced frames. The monitor's cost is bounded: it runs at
a validation only while its total time stays within ``train.monitor_budget`` of the training
time (it always runs at the first validation, to measure its cost, and at the last). Only
metrics the mel extractor does not need are computed, so no librosa start-up lands in a run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import AudioConfig, TrainConfig
from ..data.cache import FeatureCache
from ..eval.metrics import loudness_ratio_db, mrstft_distance
from ..eval.pitch import f0_track, pitch_metrics

__all__ = ["MONITOR_SEED", "PitchMonitor", "Snippet", "pick_snippet"]

MONITOR_SEED = 20_241_201  # one fixed draw: the snippet's noise is the same at every validation
CANDIDATES = 16  # validation utterances considered for the snippet (YIN on each opening)


@dataclass(frozen=True)
class Snippet:
    """A held-out reference: ``mel: (n_mels, F)``, ``audio: (F * hop,)``, its speaker id."""

    id: str
    mel: torch.Tensor
    audio: torch.Tensor
    speaker: int | None = None


def pick_snippet(cache: FeatureCache, seconds: float) -> Snippet | None:
    """The monitor's reference: the ``seconds`` (whole frames) of a validation utterance, among
    the first :data:`CANDIDATES`, with the most frames the YIN tracker finds voiced; None without
    validation utterances or with ``seconds <= 0``."""
    rows = cache.entries("valid")[:CANDIDATES]
    if seconds <= 0 or not rows:
        return None
    rate, hop, speakers = cache.audio.sample_rate, cache.audio.hop_length, cache.speakers
    best, best_voiced = None, -1
    for row in rows:
        audio, mel = cache.load(row)
        frames = max(1, min(mel.shape[-1], round(seconds * rate / hop)))
        voiced = f0_track(audio[: mel.shape[-1] * hop].numpy(), rate, hop)[: mel.shape[-1]] > 0
        counts = np.convolve(voiced, np.ones(frames, dtype=int), mode="valid")  # per window start
        at = int(np.argmax(counts))
        if counts[at] > best_voiced:
            speaker = speakers.get(row.get("speaker", ""), None)
            wav = audio[at * hop : (at + frames) * hop]
            best, best_voiced = (
                Snippet(row["id"], mel[:, at : at + frames], wav, speaker),
                counts[at],
            )
    return best


class PitchMonitor:
    """Synthesizes :attr:`snippet` with a model and scores it (see the module docstring);
    :meth:`due` applies the time budget."""

    def __init__(self, snippet: Snippet, audio: AudioConfig, budget: float) -> None:
        self.snippet, self.audio, self.budget = snippet, audio, budget
        self.spent = 0.0  # seconds the monitor has taken in this process
        self.last_cost: float | None = None

    @classmethod
    def for_cache(cls, cache: FeatureCache, cfg: TrainConfig) -> PitchMonitor | None:
        """The monitor of a run on ``cache`` (None when ``cfg.monitor_seconds`` is 0)."""
        snippet = pick_snippet(cache, cfg.monitor_seconds)
        return None if snippet is None else cls(snippet, cache.audio, cfg.monitor_budget)

    def due(self, train_seconds: float, last: bool = False) -> bool:
        """Whether to run now, after ``train_seconds`` of training: at the first and the
        ``last`` validation, else while the next run keeps the monitor's total time within
        ``budget * train_seconds``."""
        if self.last_cost is None or last:
            return True
        return self.spent + self.last_cost <= self.budget * train_seconds

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> tuple[dict[str, float], torch.Tensor]:
        """``(metrics, audio (F * hop,))`` of ``model``'s synthesis of the snippet."""
        start = time.perf_counter()
        device = next(model.parameters()).device
        s = self.snippet
        speaker = None if s.speaker is None else torch.tensor([s.speaker], device=device)
        generator = torch.Generator().manual_seed(MONITOR_SEED)
        wav = model.synthesize(s.mel[None].to(device), speaker=speaker, generator=generator)
        wav = wav[0].float().cpu()
        metrics = self.score(wav)
        cost = time.perf_counter() - start
        self.spent, self.last_cost = self.spent + cost, cost
        return {**metrics, "monitor_seconds": cost}, wav

    def score(self, wav: torch.Tensor) -> dict[str, float]:
        """The pitch, loudness and spectral metrics of ``wav`` against the snippet (undefined
        ones, such as the F0 error with no frame voiced in both, are left out)."""
        rate, hop = self.audio.sample_rate, self.audio.hop_length
        f0_x = f0_track(wav.numpy(), rate, hop)
        f0_y = f0_track(self.snippet.audio.numpy(), rate, hop)
        pitch = pitch_metrics(f0_x, f0_y)
        metrics = {
            "voiced_recall": pitch["voiced_recall"],
            "f0_rmse": pitch["f0_rmse_hz"],
            "loudness_db": loudness_ratio_db(wav, self.snippet.audio),
            "mrstft": mrstft_distance(wav, self.snippet.audio),
        }
        return {k: v for k, v in metrics.items() if math.isfinite(v)}
