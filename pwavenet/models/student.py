"""The Parallel WaveNet student: a stack of inverse autoregressive flows (docs/design.md §3).

Every flow follows one contract (shared with the toy flows of the seeds):
``forward(z, cond) -> (x, logabsdet)`` and ``inverse(x, cond) -> (z, logabsdet)``, with
``z, x: (B, T)``, ``cond: (B, C, T)`` the upsampled conditioning and ``logabsdet: (B,)`` the log
absolute Jacobian determinant of the map that was applied.

An :class:`IAFFlow` computes ``x_t = z_t * s_t + mu_t`` where ``mu_t, s_t`` come from a WaveNet
without skip connections over ``z_<t`` (its input is shifted right by one step): sampling is one
parallel pass, and the inverse is sequential over time (the IAF trade-off), done with the same
single-step queues as teacher generation.

:class:`Student` stacks flows over a logistic (Parallel WaveNet) or Gaussian (ClariNet) base and
returns, besides the sample, the per-step ``mu_tot`` and ``log s_tot`` of the composition
``x_t | z_<t ~ Base(mu_tot_t, s_tot_t)``: ``s_tot = prod_i s_i``,
``mu_tot = sum_i mu_i prod_{j>i} s_j``, kept in log space for the scales.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .arrays import step_array_like, to_array, zeros
from .block import ResidualBlock, TimeMajorWeights, stream_scales
from .conditioning import (
    Upsampler,
    extend_last_frame,
    features_window,
    mel_features,
    pitch_excitation,
)
from .conv import CausalConv1d, dilations, receptive_field
from .distributions import Gaussian, Logistic
from .step import StepEngine
from .vocoder import SynthesisRequest, Vocoder

__all__ = ["IAFFlow", "Student", "StudentSample", "log_scale_for_step_size"]

# Rows of the time-major layout a block works through at a time: on a CPU few enough that the
# pre-activations stay in cache (measured fastest); on a GPU many, so that a long batch costs
# tens of kernel launches per block rather than thousands.
TIME_MAJOR_ROWS = 4096
TIME_MAJOR_ROWS_GPU = 1 << 18


class TimeMajorFlow(NamedTuple):
    """A flow's weights for time-major inference (:meth:`IAFFlow.time_major_weights`)."""

    blocks: list[TimeMajorWeights]
    w_in: torch.Tensor  # (R,): the input layer (kernel 1, one channel)
    b_in: torch.Tensor  # (R,)
    w_out: torch.Tensor  # (R, 2): to (mu, log_s), the stream's last scale folded in
    b_out: torch.Tensor  # (2,)


class StudentSample(NamedTuple):
    """A student sample and its per-step distribution, all ``(B, T)``."""

    x: torch.Tensor
    loc: torch.Tensor  # mu_tot
    log_scale: torch.Tensor  # log s_tot


class IAFFlow(nn.Module):
    """One inverse autoregressive flow: ``x_t = z_t * exp(log_s_t) + mu_t``.

    ``mu_t, log_s_t`` depend on ``z_<t`` (never ``z_t``) and the conditioning; ``log_s`` is
    clamped to ``[log_scale_min, log_scale_max]``. The output layer starts at zero weights with
    ``log_s = log_scale_init``: the flow begins as a fixed rescaling.
    """

    def __init__(
        self,
        *,
        cond_channels: int,
        layers: int = 10,
        layers_per_cycle: int = 10,
        kernel_size: int = 3,
        residual_channels: int = 64,
        gate_channels: int = 128,
        log_scale_min: float = -9.0,
        log_scale_max: float = 7.0,
        log_scale_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.cycles = layers // min(layers_per_cycle, layers)
        self.dilations = dilations(layers, self.cycles)
        self.kernel_size = kernel_size
        self.log_scale_min, self.log_scale_max = log_scale_min, log_scale_max
        self.input = CausalConv1d(1, residual_channels, 1)
        self.cond = nn.ModuleList(
            nn.Conv1d(cond_channels, gate_channels, 1) for _ in self.dilations
        )
        self.blocks = nn.ModuleList(
            ResidualBlock(
                residual_channels=residual_channels,
                gate_channels=gate_channels,
                skip_channels=None,
                kernel_size=kernel_size,
                dilation=d,
            )
            for d in self.dilations
        )
        self.out = nn.Conv1d(residual_channels, 2, 1)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.copy_(torch.tensor([0.0, log_scale_init]))

    @property
    def receptive_field(self) -> int:
        """Steps of ``z`` before ``t`` that ``mu_t, s_t`` may depend on."""
        return receptive_field(len(self.dilations), self.cycles, self.kernel_size)

    def params(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_s)``, both ``(B, T)``, from ``z: (B, T)`` and ``cond: (B, C, T)``."""
        h = self.input(F.pad(z[:, None, :-1], (1, 0)))  # shift right: step t sees z_<t
        for block, proj in zip(self.blocks, self.cond, strict=True):
            h, _ = block(h, proj(cond))
        mu, log_s = self.out(h).unbind(1)
        return mu, log_s.clamp(self.log_scale_min, self.log_scale_max)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, logabsdet)``: ``x: (B, T)``, ``logabsdet: (B,)`` = sum of ``log_s``."""
        mu, log_s = self.params(z, cond)
        return z * log_s.exp() + mu, log_s.sum(-1)

    def inverse(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, logabsdet)`` with ``forward(z) == x``; sequential over time. ``logabsdet (B,)``
        is that of the inverse map, ``-sum(log_s)``."""
        z, log_s = self.inverse_steps(x, cond)
        return z, -log_s.sum(-1)

    @torch.no_grad()
    def time_major_weights(self, dtype: torch.dtype) -> TimeMajorFlow:
        """The weights of :meth:`params_time_major` in ``dtype``: every block's
        :meth:`~pwavenet.models.block.ResidualBlock.time_major` with its conditioning
        projection, the input layer, and the output layer with the stream's last scale folded
        in."""
        scales = stream_scales(self.blocks)
        w_out = self.out.weight.detach()[:, :, 0].t() * scales[-1]
        return TimeMajorFlow(
            [
                block.time_major(proj, scale).to(dtype)
                for block, proj, scale in zip(self.blocks, self.cond, scales, strict=False)
            ],
            self.input.weight.detach().reshape(-1).to(dtype),
            self.input.bias.detach().to(dtype),
            w_out.to(dtype).contiguous(),
            self.out.bias.detach().to(dtype),
        )

    @torch.no_grad()
    def params_time_major(
        self, z: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`params` for inference, a batch in time-major layout: ``z: (T, B)``,
        ``cond: (T * B, C)`` (row ``t * B + b``) -> ``(mu, log_s)``, both ``(T, B)``. Matrix
        products over shifted views instead of convolutions (see
        :meth:`~pwavenet.models.block.ResidualBlock.forward_time_major`); no gradient. Under a
        bf16 (or float16) autocast the blocks run in that dtype, weights and stream alike;
        ``mu`` and ``log_s`` come back in ``z``'s dtype (float32)."""
        steps, batch = z.shape
        dtype = autocast_dtype(z)
        blocks, w_in, b_in, w_out, b_out = self.time_major_weights(dtype)
        pad = max(max(w.offsets) for w in blocks)
        shape = ((pad + steps) * batch, self.input.out_channels)
        src, dst = z.new_zeros(shape, dtype=dtype), z.new_zeros(shape, dtype=dtype)
        shifted = F.pad(z[:-1], (0, 0, 1, 0)).reshape(-1)  # step t sees z_<t
        torch.addr(b_in, shifted.to(dtype), w_in, out=src[pad * batch :])
        cond = cond.to(dtype)
        rows = TIME_MAJOR_ROWS if z.device.type == "cpu" else TIME_MAJOR_ROWS_GPU
        for w in blocks:
            ResidualBlock.forward_time_major(w, src, dst, cond, pad, batch, rows)
            src, dst = dst, src
        out = torch.addmm(b_out, src[pad * batch :], w_out).to(z.dtype)
        mu, log_s = out.view(steps, batch, 2).unbind(2)
        return mu, log_s.clamp(self.log_scale_min, self.log_scale_max)

    @torch.no_grad()
    def inverse_steps(
        self, x: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log_s)``, both ``(B, T)``: the inverse one step at a time, O(layers) per step
        with the :class:`~pwavenet.models.step.StepEngine` (numpy on the CPU, see
        :func:`~pwavenet.models.arrays.step_array_like`). No gradient."""
        batch, steps = x.shape
        like = step_array_like(x)
        engine = StepEngine(
            input=self.input, blocks=self.blocks, cond=self.cond, features=cond, like=like
        )
        w_out = to_array(self.out.weight[:, :, 0].t() * engine.scale, like)  # (R, 2)
        b_out = to_array(self.out.bias, like)
        target = to_array(x.t(), like)  # (T, B)
        z, log_s = zeros(like, (steps, batch)), zeros(like, (steps, batch))
        prev, out = zeros(like, (batch,)), zeros(like, (batch, 2))
        xp = engine.xp
        with engine.threads():
            for t in range(steps):
                xp.matmul(engine.step(prev), w_out, out=out)
                out += b_out
                log_s[t] = out[:, 1].clip(self.log_scale_min, self.log_scale_max)
                z[t] = (target[t] - out[:, 0]) * xp.exp(-log_s[t])
                prev = z[t]
        as_tensor = lambda a: torch.as_tensor(a, device=x.device).t().contiguous()  # noqa: E731
        return as_tensor(z), as_tensor(log_s)


class Student(Vocoder, kind="student"):
    """IAF stack over a logistic (or Gaussian) base, conditioned on a log-mel spectrogram.

    ``forward(z: (B, T), mel: (B, M, T // hop)) -> StudentSample``; :meth:`synthesize` (the
    :class:`~pwavenet.models.vocoder.Vocoder` call) draws the noise and can work in chunks;
    :meth:`log_prob` scores external audio through the inverse.
    ``log_scale_init`` is the starting ``log s_tot`` (split evenly over the flows), meant to be
    the data's typical step size.
    """

    def __init__(
        self,
        *,
        n_mels: int = 80,
        flow_layers: Iterable[int] = (10, 10, 10, 30),
        layers_per_cycle: int = 10,
        kernel_size: int = 3,
        residual_channels: int = 64,
        gate_channels: int = 128,
        base: str = "logistic",
        log_scale_min: float = -9.0,
        log_scale_max: float = 7.0,
        log_scale_init: float = -5.0,
        upsample_scales: Iterable[int] = (4, 4, 16),
        speakers: int = 0,
        speaker_channels: int = 16,
        pitch: bool = False,
        excitation: str = "none",
        sample_rate: int = 0,
    ) -> None:
        super().__init__()
        if base not in ("logistic", "gaussian"):
            raise ValueError(f"base must be 'logistic' or 'gaussian', got {base!r}")
        flow_layers = list(flow_layers)
        self.base, self.n_mels = base, n_mels
        self.upsampler = Upsampler(list(upsample_scales), n_mels + (2 if pitch else 0))
        self.excitation = pitch_excitation(n_mels, pitch, excitation, self.hop_length, sample_rate)
        self.speaker = nn.Embedding(speakers, speaker_channels) if speakers > 0 else None
        cond_channels = self.upsampler.channels + (self.excitation is not None)
        cond_channels += speaker_channels if speakers > 0 else 0
        self.flows = nn.ModuleList(
            IAFFlow(
                cond_channels=cond_channels,
                layers=n,
                layers_per_cycle=layers_per_cycle,
                kernel_size=kernel_size,
                residual_channels=residual_channels,
                gate_channels=gate_channels,
                log_scale_min=log_scale_min,
                log_scale_max=log_scale_max,
                log_scale_init=log_scale_init / len(flow_layers),
            )
            for n in flow_layers
        )

    @property
    def hop_length(self) -> int:
        return self.upsampler.hop

    @property
    def lookback(self) -> int:
        """Steps of noise before ``t`` that ``x_t`` may depend on (sum of the flows' fields)."""
        return sum(flow.receptive_field for flow in self.flows)

    def features(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        phase0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Upsampled conditioning ``(B, n_mels [+ 2 pitch] [+ sine] [+ spk], F * hop)`` shared
        by every flow; ``phase0`` starts the sine excitation (a window of the utterance)."""
        return mel_features(self.upsampler, self.speaker, mel, speaker, self.excitation, phase0)

    def distribution(self, loc: torch.Tensor, log_scale: torch.Tensor) -> Logistic | Gaussian:
        """The base family at ``(loc, log_scale)``: the student's per-step distribution."""
        return (Logistic if self.base == "logistic" else Gaussian)(loc, log_scale)

    def transform(self, z: torch.Tensor, cond: torch.Tensor) -> StudentSample:
        """Apply the flows to base noise ``z: (B, T)`` with conditioning ``cond: (B, C, T)``."""
        x, loc, log_scale = z, torch.zeros_like(z), torch.zeros_like(z)
        for flow in self.flows:
            mu, log_s = flow.params(x, cond)
            s = log_s.exp()
            x = x * s + mu
            loc = loc * s + mu
            log_scale = log_scale + log_s
        return StudentSample(x, loc, log_scale)

    def forward(
        self, z: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> StudentSample:
        """The sample of noise ``z: (B, T)`` given ``mel: (B, M, T // hop)``, with its
        per-step ``loc`` (mu_tot) and ``log_scale`` (log s_tot)."""
        cond = self.features(mel, speaker)
        if cond.shape[-1] != z.shape[-1]:
            raise ValueError(
                f"noise has {z.shape[-1]} steps but mel covers {cond.shape[-1]} "
                f"({mel.shape[-1]} frames x hop {self.hop_length})"
            )
        return self.transform(z, cond)

    def inverse(
        self, x: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log_scale)``: the base noise that gives ``x: (B, T)`` and the per-step
        ``log s_tot (B, T)``; sequential over time in every flow. No gradient."""
        cond = self.features(mel, speaker)
        z, log_scale = x, torch.zeros_like(x)
        for flow in reversed(self.flows):
            z, log_s = flow.inverse_steps(z, cond)
            log_scale = log_scale + log_s
        return z, log_scale

    def log_prob(
        self, x: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-step log density (nats) of external audio ``x: (B, T)``: ``(B, T)``."""
        z, log_scale = self.inverse(x, mel, speaker)
        zeros_ = torch.zeros_like(z)
        return self.distribution(zeros_, zeros_).log_prob(z) - log_scale

    # ------------------------------------------------------------------ synthesis

    @property
    def teacher(self) -> dict[str, str | None]:
        """The teacher export this student was distilled from, as recorded in its
        :attr:`provenance`: ``{"path", "sha256"}`` (``None`` where not recorded)."""
        return {
            "path": self.provenance.get("teacher"),
            "sha256": self.provenance.get("teacher_sha256"),
        }

    def noise(
        self,
        lengths: list[int],
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str = "cpu",
        *,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Standard base noise ``(B, steps)`` (default ``max(lengths)``), zero past each length.
        With a list of generators utterance ``b`` draws exactly ``lengths[b]`` values from its
        own, so a batch gets the noise its utterances would get one by one."""
        gens = generator if isinstance(generator, list) else [generator] * len(lengths)
        z = torch.zeros(len(lengths), max(lengths) if steps is None else steps)
        eps = torch.finfo(torch.float32).eps
        for b, (n, g) in enumerate(zip(lengths, gens, strict=True)):
            if self.base == "gaussian":
                z[b, :n] = torch.randn(n, generator=g)
            else:
                u = torch.rand(n, generator=g).clamp(eps, 1 - eps)
                z[b, :n] = torch.log(u) - torch.log1p(-u)
        return z.to(device)

    def _synthesize(self, mel: torch.Tensor, request: SynthesisRequest) -> torch.Tensor:
        """Audio ``(B, F * hop)`` for ``mel: (B, M, F)`` in one parallel pass (or chunks).

        ``lengths`` (samples) of utterances padded in a batch: their padded frames repeat the
        last real one and their output past the length is zero. ``noise (B, F * hop)`` replaces
        the draw from ``generator``. With ``chunk_samples`` the output is computed that many
        samples at a time, each chunk recomputing :attr:`lookback` steps before it: the result
        equals the unchunked one (up to float rounding) with memory bounded by the chunk size.
        ``progress`` wraps the chunks (one when unchunked).
        """
        hop, batch, lengths = self.hop_length, mel.shape[0], request.lengths
        steps = mel.shape[-1] * hop
        if lengths is not None:
            mel = extend_last_frame(mel, lengths, hop)
        noise = request.noise
        if noise is None:
            draws = lengths or [steps] * batch
            noise = self.noise(draws, request.generator, mel.device, steps=steps)
        if request.temperature != 1.0:
            noise = noise * self.temperature_profile(mel, request.temperature)
        precision = contextlib.nullcontext()
        if request.dtype != torch.float32:  # the flows' products in bf16, see transform_inference
            precision = torch.autocast(mel.device.type, dtype=request.dtype)
        chunk = request.chunk_samples or steps
        chunk = max(1, min(chunk, steps))
        audio = noise.new_zeros(batch, steps)
        starts = range(0, steps, chunk)
        for start in request.progress(starts) if request.progress else starts:
            end = min(steps, start + chunk)
            first = max(0, start - self.lookback)
            cond = features_window(self, mel, request.speaker, first, end)
            with precision:
                part = self.transform_inference(noise[:, first:end], cond)
            audio[:, start:end] = part[:, start - first :]
        if lengths is not None:
            for b, n in enumerate(lengths):
                audio[b, n:] = 0
        return audio

    @torch.no_grad()
    def transform_inference(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The sample ``x (B, T)`` of :meth:`transform` for ``z: (B, T)``, ``cond: (B, C, T)``,
        computed the fast way for inference (time-major matrix products over the whole batch,
        :meth:`IAFFlow.params_time_major`); no gradient. Under a bf16 autocast the flows'
        matrix products run in bf16 while the sample, the scales and their composition stay
        float32."""
        x = z.t().contiguous()  # (T, B)
        c = cond.permute(2, 0, 1).reshape(-1, cond.shape[1])  # (T * B, C), row t * B + b
        for flow in self.flows:
            mu, log_s = flow.params_time_major(x, c)  # float32 whatever the autocast
            x = torch.addcmul(mu, x, log_s.exp())
        return x.t().contiguous()


def autocast_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matrix products run in for ``x``'s device: the autocast dtype when an
    autocast is on there, else ``x``'s own."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def log_scale_for_step_size(step_std: float, base: str = "logistic") -> float:
    """The log-scale of a base distribution whose standard deviation is ``step_std``."""
    factor = math.sqrt(3.0) / math.pi if base == "logistic" else 1.0
    return math.log(max(step_std, 1e-6) * factor)
