"""The WaveNet teacher: an autoregressive density over 16-bit audio given a log-mel spectrogram.

Teacher forcing (:meth:`WaveNet.forward`) computes the distribution of every sample in one
parallel pass over the input shifted right by one step, so ``p(x_t | x_<t, mel)`` never sees
``x_t`` or later. :meth:`WaveNet.generate` samples autoregressively with per-layer input queues
(O(layers) per sample); :meth:`WaveNet.generate_naive` recomputes the receptive field at every
step and exists for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .arrays import Array, array_module, step_array_like, to_array, zeros
from .block import ResidualBlock
from .conditioning import (
    FeatureWindows,
    Upsampler,
    extend_last_frame,
    lagged,
    mel_features,
    pitch_excitation,
    pitch_lags,
)
from .conv import CausalConv1d, dilations, receptive_field
from .fused import FusedSteps, choose_engine
from .heads import HEADS, HeadDistribution, OutputHead
from .step import StepEngine
from .vocoder import SynthesisRequest, Vocoder

__all__ = ["WaveNet"]


class WaveNet(Vocoder, kind="teacher"):
    """WaveNet with gated residual layers, skip connections and mel (+ speaker) conditioning.

    Output head (:mod:`~pwavenet.models.heads`, looked up by ``output`` in
    :data:`~pwavenet.models.heads.HEADS`): ``output="mol"`` gives a discretized mixture of
    ``mixtures`` logistics (``3 * mixtures`` channels: logits, means, log-scales);
    ``output="gaussian"`` gives a single Gaussian (2 channels: mean, log-sigma), ClariNet's
    teacher.
    """

    def __init__(
        self,
        *,
        n_mels: int = 80,
        layers: int = 24,
        cycles: int = 4,
        kernel_size: int = 3,
        residual_channels: int = 128,
        gate_channels: int = 256,
        skip_channels: int = 128,
        output: str = "mol",
        mixtures: int = 10,
        log_scale_min: float = -16.0,
        upsample_scales: Iterable[int] = (4, 4, 16),
        speakers: int = 0,
        speaker_channels: int = 16,
        pitch: bool = False,
        excitation: str = "none",
        pitch_lag: bool = False,
        sample_rate: int = 0,
        log_scale_init: float = -4.0,
    ) -> None:
        super().__init__()
        if output not in HEADS:
            names = " or ".join(repr(name) for name in HEADS)
            raise ValueError(f"output must be {names}, got {output!r}")
        self.output, self.mixtures, self.log_scale_min = output, mixtures, log_scale_min
        self.output_head: OutputHead = HEADS[output].from_settings(
            mixtures=mixtures, log_scale_min=log_scale_min
        )
        self.n_mels, self.gate_channels = n_mels, gate_channels
        self.cycles, self.dilations = cycles, dilations(layers, cycles)
        self.kernel_size = kernel_size
        self.upsampler = Upsampler(list(upsample_scales), n_mels + (2 if pitch else 0))
        self.excitation = pitch_excitation(n_mels, pitch, excitation, self.hop_length, sample_rate)
        self.speaker = nn.Embedding(speakers, speaker_channels) if speakers > 0 else None
        self.cond = self._projections(layers, gate_channels)
        if pitch_lag and not pitch:
            raise ValueError("a pitch-lag input needs the pitch rows (pitch=True)")
        self.pitch_lag, self.sample_rate = pitch_lag, sample_rate
        self.input = CausalConv1d(2 if pitch_lag else 1, residual_channels, 1)
        self.blocks = nn.ModuleList(
            ResidualBlock(
                residual_channels=residual_channels,
                gate_channels=gate_channels,
                skip_channels=skip_channels,
                kernel_size=kernel_size,
                dilation=d,
                residual=i < layers - 1,
            )
            for i, d in enumerate(self.dilations)
        )
        self.head = self._output_layers(skip_channels, log_scale_init)

    def _output_layers(self, skip_channels: int, log_scale_init: float) -> nn.Sequential:
        """ReLU, 1x1 conv, ReLU, 1x1 conv to the output head's channels, the last bias set by
        the head: narrow output scales at the start were measured to halve the time to a given
        NLL compared with a zero bias (docs/design.md §8)."""
        head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(skip_channels, skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(skip_channels, self.output_head.channels, 1),
        )
        with torch.no_grad():
            self.output_head.init_bias(head[-1].bias, log_scale_init)
        return head

    def _projections(self, layers: int, gate_channels: int) -> nn.ModuleList:
        """The 1x1 conv of each layer that projects the conditioning (mel, pitch rows, sine,
        speaker embedding). One shared conv split per layer costs the same FLOPs but makes
        autograd concatenate a (B, layers * gate, T) gradient: 3x slower for the conditioning and
        most of the training memory (measured on CPU)."""
        cond_in = self.upsampler.channels + (self.excitation is not None)
        cond_in += self.speaker.embedding_dim if self.speaker is not None else 0
        return nn.ModuleList(nn.Conv1d(cond_in, gate_channels, 1) for _ in range(layers))

    # ------------------------------------------------------------------ shapes and conditioning

    @property
    def receptive_field(self) -> int:
        """Samples of context each output sees (the input conv has kernel 1)."""
        return receptive_field(len(self.dilations), self.cycles, self.kernel_size)

    @property
    def hop_length(self) -> int:
        return self.upsampler.hop

    def condition(self, mel: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Per-layer conditioning ``(B, layers * gate, F * hop)`` from ``mel: (B, n_mels, F)``."""
        weight, bias = self._cond_matrix()
        return F.conv1d(self.features(mel, speaker), weight, bias)

    def _cond_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All layers' conditioning projections stacked: ``(layers * gate, C, 1)``, ``(...)``."""
        return torch.cat([c.weight for c in self.cond]), torch.cat([c.bias for c in self.cond])

    def features(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        phase0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Upsampled mel (and speaker embedding, sine excitation starting at ``phase0``)
        ``(B, n_mels [+ ...], F * hop)``, before the per-layer projection. Generation reads it a
        window at a time (:class:`~pwavenet.models.conditioning.FeatureWindows`)."""
        return mel_features(self.upsampler, self.speaker, mel, speaker, self.excitation, phase0)

    # ------------------------------------------------------------------ teacher forcing

    def forward(
        self, audio: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Distribution parameters for every step: ``audio (B, 1, T), mel (B, M, T // hop)``
        -> ``(B, C_out, T)``; column ``t`` depends on ``audio[..., :t]`` and the mel only."""
        feats = self.features(mel, speaker)
        if feats.shape[-1] != audio.shape[-1]:
            raise ValueError(
                f"audio has {audio.shape[-1]} samples but mel covers {feats.shape[-1]} "
                f"({mel.shape[-1]} frames x hop {self.hop_length})"
            )
        x = self.input(self._inputs(audio, mel))
        skips = 0
        for block, proj in zip(self.blocks, self.cond, strict=True):
            x, s = block(x, proj(feats))
            skips = skips + s
        return self.head(skips)

    def _inputs(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """The input conv's input ``(B, 1 [+ 1], T)`` for ``audio (B, 1, T)``: the audio shifted
        right (step t sees ``x_<t``) and, with ``pitch_lag``, the sample one pitch period back."""
        shifted = F.pad(audio[..., :-1], (1, 0))
        if not self.pitch_lag:
            return shifted
        lags = self._lags(mel)[:, : audio.shape[-1]]
        return torch.cat([shifted, lagged(audio[:, 0], lags)[:, None]], dim=1)

    def _lags(self, mel: torch.Tensor) -> torch.Tensor:
        """Each sample's pitch period ``(B, F * hop)`` (:func:`pitch_lags`)."""
        if self.sample_rate <= 0:
            raise ValueError(f"a pitch-lag input needs the sample rate, got {self.sample_rate}")
        return pitch_lags(mel, self.n_mels, self.hop_length, self.sample_rate)

    def distribution(self, params: torch.Tensor) -> HeadDistribution:
        """The output distribution of parameters ``(B, C_out, T)``, batch shape ``(B, T)``."""
        return self.output_head.distribution(params)

    def log_prob(
        self, audio: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log probability (nats) of each 16-bit sample: ``(B, 1, T) -> (B, T)``.

        For the Gaussian head this is the density at the sample times the bin width, which makes
        bits per sample comparable between heads.
        """
        return self.sample_log_prob(self(audio, mel, speaker), audio)

    def sample_log_prob(self, params: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of ``audio (B, 1, T)`` under output ``params (B, C_out, T)``,
        computed in float32 whatever the autocast dtype. ``(B, T)``."""
        with torch.autocast(device_type=params.device.type, enabled=False):
            return self.output_head.log_prob(params.float(), audio[:, 0].float())

    # ------------------------------------------------------------------ generation

    def _head_state(self, like: Array) -> tuple[Array, ...]:
        """The skip outputs of every block and the output head as matrices for
        :meth:`_head_step`: ``(skip (L * (G/2 + 1), S), w1, b1, w2, b2, 0)``."""
        _, c1, _, c2 = self.head
        skip = torch.cat([block.skip_matrix() for block in self.blocks])
        mats = (skip, c1.weight[:, :, 0].t(), c1.bias, c2.weight[:, :, 0].t(), c2.bias)
        return (*(to_array(m, like) for m in mats), zeros(like, ()))

    def _head_step(self, gates: Array, head: tuple[Array, ...], out: Array) -> Array:
        """Output parameters ``out (B, C_out)`` of one step from every block's gate buffer
        ``gates (B, L * (G/2 + 1))`` (one matmul gives the sum of the skip outputs)."""
        skip_w, w1, b1, w2, b2, zero = head
        xp = array_module(gates)
        s = xp.matmul(gates, skip_w)
        h = xp.matmul(xp.maximum(s, zero, out=s), w1)
        h += b1
        out = xp.matmul(xp.maximum(h, zero, out=h), w2, out=out)
        out += b2
        return out

    @torch.no_grad()
    def generate(
        self,
        mel: torch.Tensor,
        *,
        lengths: list[int] | None = None,
        speaker: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        forced: torch.Tensor | None = None,
        return_params: bool = False,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
        temperature: float = 1.0,
        engine: str = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Autoregressive sampling with per-layer queues, O(layers) per sample.

        ``mel: (B, M, F)``; ``lengths`` (samples per utterance) truncate the result of utterances
        shorter than ``F * hop`` (padded mel frames never influence earlier samples). With
        ``forced: (B, T)`` the given samples are fed back instead of sampled (used to check that
        this path reproduces :meth:`forward`). ``progress`` wraps the range of steps (a progress
        bar, or a timer that may stop early: later samples stay zero). Returns ``(audio (B, T),
        params (B, C_out, T) or None)``; audio past an utterance's length is zero. On the CPU
        the step loop (:class:`~pwavenet.models.step.StepEngine`) runs on numpy arrays
        (:func:`~pwavenet.models.arrays.step_array_like`). ``temperature`` scales each step's
        logistic (or Gaussian) variate where :meth:`temperature_profile` says so. ``engine``
        (:func:`~pwavenet.models.fused.choose_engine`): ``step`` (the numpy step loop, the CPU
        default), ``fused`` (:class:`~pwavenet.models.fused.FusedSteps`, eager) or ``graph``
        (the fused step replayed as a CUDA graph, the CUDA default).
        """
        if lengths is not None:
            mel = extend_last_frame(mel, lengths, self.hop_length)
        cond = FeatureWindows(self, mel, speaker)  # bounded memory; projected chunk by chunk
        batch, _, steps = cond.shape
        draws = None
        if forced is None:
            draws = self.output_head.noise(batch, steps, generator, cond.device)
            if temperature != 1.0:  # scale the location-scale variate, not the mixture choice
                draws[..., -1] *= self.temperature_profile(mel, temperature).t()
        choice = choose_engine(engine, cond.device)
        if choice == "step":
            audio, params = self._step_loop(mel, cond, draws, forced, return_params, progress)
        else:
            lags = self._lags(mel) if self.pitch_lag else None
            fed = None if forced is None else forced.t().to(cond.device, cond.dtype)
            fused = FusedSteps(
                self, cond, noise=draws, forced=fed, lags=lags, keep_params=return_params
            )
            if choice == "graph":
                fused.capture()
            fused.run(progress)
            audio, params = fused.audio, fused.params
        audio = torch.as_tensor(audio, device=cond.device).t().contiguous()
        if lengths is not None:
            for b, n in enumerate(lengths):
                audio[b, n:] = 0
        if not return_params:
            return audio, None
        return audio, torch.as_tensor(params, device=cond.device).permute(1, 2, 0).contiguous()

    def _step_loop(
        self,
        mel: torch.Tensor,
        cond: torch.Tensor,
        draws: torch.Tensor | None,
        forced: torch.Tensor | None,
        return_params: bool,
        progress: Callable[[Iterable[int]], Iterable[int]] | None,
    ) -> tuple[Array, Array]:
        """The step loop of :meth:`generate` on :class:`~pwavenet.models.step.StepEngine`:
        ``(audio (T, B), params (T or 1, B, C_out))`` as step arrays."""
        batch, _, steps = cond.shape
        like = step_array_like(torch.empty(0, dtype=cond.dtype, device=cond.device))
        engine = StepEngine(
            input=self.input, blocks=self.blocks, cond=self.cond, features=cond, like=like
        )
        head = self._head_state(like)
        params = zeros(like, (steps if return_params else 1, batch, self.output_head.channels))
        if forced is None:
            noise = to_array(draws, like)
            sample = self.output_head.sampler(batch, like)
        else:
            forced = to_array(forced.t(), like)
        audio, x = zeros(like, (steps, batch)), zeros(like, (batch,))
        lag = self._lag_reader(mel, audio, like) if self.pitch_lag else None
        with engine.threads():
            for t in progress(range(steps)) if progress else range(steps):
                engine.step(x, lag(t) if lag else None)
                p = self._head_step(engine.gates, head, params[t if return_params else 0])
                x = forced[t] if forced is not None else sample(p, noise[t])
                audio[t] = x
        return audio, params

    def _lag_reader(self, mel: torch.Tensor, audio: Array, like: Array) -> Callable[[int], Array]:
        """``lag(t)``: the samples one pitch period before step ``t`` ``(B,)`` read from the
        generated ``audio (steps, B)`` (0 where unvoiced or before the start)."""
        lags = self._lags(mel).t()  # (steps, B)
        steps = torch.arange(lags.shape[0], device=lags.device)[:, None]
        index = to_array((steps - lags).clamp(min=0), like)
        valid = to_array(((lags > 0) & (steps >= lags)).float(), like)
        cols = to_array(torch.arange(lags.shape[1], device=lags.device), like)
        return lambda t: audio[index[t], cols] * valid[t]

    @torch.no_grad()
    def generate_naive(
        self,
        mel: torch.Tensor,
        *,
        steps: int | None = None,
        speaker: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    ) -> torch.Tensor:
        """Reference sampler: recomputes the whole receptive field for every sample.

        Slow by design (O(receptive field x layers) per sample); ``steps`` limits the number of
        samples generated. ``progress`` wraps the range of steps (a progress bar, or a timer
        that may stop early or skip steps: samples not computed stay zero, i.e. silence).
        Returns ``(B, steps)``.
        """
        cond = self.condition(mel, speaker)
        total = cond.shape[-1] if steps is None else min(steps, cond.shape[-1])
        field = self.receptive_field
        audio = cond.new_zeros(cond.shape[0], 1, total)
        noise = self.output_head.noise(cond.shape[0], total, generator, cond.device)
        sample = self.output_head.sampler(cond.shape[0], cond)
        for t in progress(range(total)) if progress else range(total):
            lo = max(0, t + 1 - field)
            x = self.input(self._inputs(audio, mel)[:, :, lo : t + 1])  # audio[t:] is still 0
            skips = 0
            chunks = torch.split(cond[:, :, lo : t + 1], self.gate_channels, dim=1)
            for block, c in zip(self.blocks, chunks, strict=True):
                x, s = block(x, c)
                skips = skips + s
            params = self.head(skips[:, :, -1:])[:, :, 0]
            audio[:, 0, t] = sample(params.float(), noise[t])
        return audio[:, 0]

    def _synthesize(self, mel: torch.Tensor, request: SynthesisRequest) -> torch.Tensor:
        """The :class:`~pwavenet.models.vocoder.Vocoder` call: audio sampled with
        :meth:`generate` (cached, O(layers) per sample); ``progress`` wraps its steps.
        ``chunk_samples`` is unused: the cached sampler's memory does not grow with the length.
        The teacher draws its own per-step noise from ``generator``: ``noise`` is refused."""
        if request.noise is not None:
            raise ValueError("the teacher draws its noise step by step: pass generator, not noise")
        if request.dtype != torch.float32:
            raise ValueError(f"the teacher generates in float32 only, not {request.dtype}")
        audio, _ = self.generate(
            mel,
            lengths=request.lengths,
            speaker=request.speaker,
            generator=request.generator,
            progress=request.progress,
            temperature=request.temperature,
        )
        return audio
