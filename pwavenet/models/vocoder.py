"""What every inference model is: a vocoder from log-mel frames to audio.

The teacher (:class:`~pwavenet.models.teacher.WaveNet`) and the student
(:class:`~pwavenet.models.student.Student`) differ in how they sample, not in how they are used:
both declare the export kind they are saved as, carry the feature settings their mel input must
be made with and the record of the run that made them (both set by the export loader,
:func:`~pwavenet.models.export.load_vocoder`), and synthesize through one call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..audio import deemphasize
from ..config import AudioConfig
from ..errors import ConfigError

__all__ = ["Progress", "SynthesisRequest", "Vocoder"]

# A ``progress=`` hook: wraps the iterable of a model's inner loop (a progress bar, or a timer).
Progress = Callable[[Iterable[int]], Iterable[int]]


class Vocoder(nn.Module, ABC):
    """Base class of the models that turn ``mel: (B, n_mels, F)`` into audio ``(B, F * hop)``.

    A subclass names its export kind in its class line, ``class WaveNet(Vocoder,
    kind="teacher")``; the export loader builds the class of the kind an export holds.
    """

    kind: ClassVar[str]
    """The export kind of this model (``"teacher"`` or ``"student"``), in ``model.json`` and
    in the ``model`` key of ``synthesis.json``."""

    audio: AudioConfig | None
    """The feature settings the mel input must be made with; ``None`` until set (the export
    loader sets it from the export; a model built for training has none)."""

    provenance: dict[str, Any]
    """The export's ``extra`` record: what the run that made it wrote (its training ``steps``;
    for a corpus with speakers its ``speakers`` ``{name: id}`` table; for a student the
    ``teacher`` export's path and ``teacher_sha256``). Empty until loaded."""

    n_mels: int
    """Mel bands of the input; a pitch-informed model's features have two more rows after them
    (log-F0 and voicing, :mod:`pwavenet.features`)."""

    speaker: nn.Embedding | None
    """The speaker embedding table of a model conditioned on speakers, else ``None``."""

    def __init_subclass__(cls, *, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind

    def __init__(self) -> None:
        super().__init__()
        self.audio = None
        self.provenance = {}

    def speaker_ids(self, speaker: str | int | None, batch: int) -> torch.Tensor | None:
        """``(batch,)`` ids for ``synthesize(speaker=...)`` from a speaker name of the training
        corpus (the export's ``speakers`` table) or an id; ``None`` for a model without
        speakers. Raises :class:`~pwavenet.errors.ConfigError` for a missing or unknown one."""
        if self.speaker is None:
            if speaker is not None:
                raise ConfigError(f"this {self.kind} has no speaker conditioning (got {speaker!r})")
            return None
        table: dict[str, int] = self.provenance.get("speakers", {})
        known = ", ".join(table) or f"ids 0-{self.speaker.num_embeddings - 1}"
        if speaker is None:
            raise ConfigError(f"this {self.kind} is conditioned on speakers: name one ({known})")
        index = table.get(str(speaker))
        if index is None and str(speaker).isdigit():
            index = int(speaker)
        if index is None or not 0 <= index < self.speaker.num_embeddings:
            raise ConfigError(f"unknown speaker {speaker!r} (known: {known})")
        return torch.full((batch,), index, dtype=torch.long, device=self.speaker.weight.device)

    @property
    @abstractmethod
    def hop_length(self) -> int:
        """Audio samples per mel frame (the conditioning upsampler's total factor)."""

    @torch.no_grad()
    def synthesize(
        self,
        mel: torch.Tensor,
        *,
        lengths: list[int] | None = None,
        speaker: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        chunk_samples: int | None = None,
        progress: Progress | None = None,
        noise: torch.Tensor | None = None,
        temperature: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Audio ``(B, F * hop)`` for ``mel: (B, n_mels, F)``, no gradient.

        ``lengths`` (samples) of utterances padded in a batch: output past each length is zero
        and padded frames never change the samples before it. ``speaker: (B,)`` ids for a model
        conditioned on speakers (:meth:`speaker_ids`). ``generator``: one, or one per utterance
        (then a batch draws what its utterances would draw one by one). ``chunk_samples``
        bounds memory where the model can work in chunks (same output); ``progress`` wraps the
        model's inner loop. ``noise``: the randomness given instead of drawn, where the model
        takes it whole (the student's base noise ``(B, F * hop)``). A model whose ``audio``
        sets ``preemphasis`` learnt the pre-emphasised signal: its output is de-emphasised here.
        ``temperature`` scales the random part of every sample (the teacher's logistic or
        Gaussian variate, the student's base noise) in voiced frames, or everywhere for a model
        without the voicing row (:meth:`temperature_profile`): below 1 it sharpens voiced
        sounds, FFTNet's conditional sampling and LPCNet's pitch-dependent temperature.
        ``dtype`` ``torch.bfloat16`` runs the student's flows' matrix products in bf16 (the
        sample and the scales stay float32; :func:`~pwavenet.models.precision.choose_precision`
        says when it pays); the teacher is float32 only.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        request = SynthesisRequest(
            lengths, speaker, generator, chunk_samples, progress, noise, temperature, dtype
        )
        audio = self._synthesize(mel, request)
        coef = self.audio.preemphasis if self.audio is not None else 0.0
        if coef:  # the model learnt the pre-emphasised signal: undo it
            audio = deemphasize(audio, coef)
            for b, n in enumerate(lengths or []):
                audio[b, n:] = 0
        return audio

    def temperature_profile(self, mel: torch.Tensor, temperature: float) -> torch.Tensor:
        """The temperature of every sample ``(B, F * hop)``: ``temperature`` in voiced frames
        (the voicing row after the log-F0 row of a pitch-informed model's features) and 1
        elsewhere; ``temperature`` everywhere for a mel-only model."""
        batch, rows, frames = mel.shape
        if rows < self.n_mels + 2:
            return mel.new_full((batch, frames * self.hop_length), temperature)
        voiced = torch.repeat_interleave(mel[:, self.n_mels + 1] > 0.5, self.hop_length, dim=-1)
        return torch.where(voiced, temperature, 1.0).to(mel.dtype)

    @abstractmethod
    def _synthesize(self, mel: torch.Tensor, request: SynthesisRequest) -> torch.Tensor:
        """What :meth:`synthesize` does for this kind of model (no gradient is recorded)."""


@dataclass(frozen=True)
class SynthesisRequest:
    """The options of :meth:`Vocoder.synthesize`, as one value for the subclasses."""

    lengths: list[int] | None = None
    speaker: torch.Tensor | None = None
    generator: torch.Generator | list[torch.Generator] | None = None
    chunk_samples: int | None = None
    progress: Progress | None = None
    noise: torch.Tensor | None = None
    temperature: float = 1.0
    dtype: torch.dtype = torch.float32  # of the matrix products (the student's bf16 path)
