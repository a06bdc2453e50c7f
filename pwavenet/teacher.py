"""The WaveNet teacher: an autoregressive density over 16-bit audio given a log-mel spectrogram.

Teacher forcing (:meth:`WaveNet.forward`) computes the distribution of every sample in one
parallel pass over the input shifted right by one step, so ``p(x_t | x_<t, mel)`` never sees
``x_t`` or later. :meth:`WaveNet.generate` samples autoregressively with per-layer input queues
(O(layers) per sample); :meth:`WaveNet.generate_naive` recomputes the receptive field at every
step and exists for tests and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .distributions import HALF_BIN, DiscretizedMixtureLogistics, Gaussian
from .layers import CausalConv1d, ResidualBlock, Upsampler, dilations

__all__ = ["WaveNet"]

GAUSSIAN_LOG_SCALE_MIN = -9.0  # ClariNet clamps the Gaussian log-sigma (SPEC section 5)


class WaveNet(nn.Module):
    """WaveNet with gated residual layers, skip connections and mel (+ speaker) conditioning.

    Output head: ``output="mol"`` gives a discretized mixture of ``mixtures`` logistics
    (``3 * mixtures`` channels: logits, means, log-scales); ``output="gaussian"`` gives a single
    Gaussian (2 channels: mean, log-sigma), ClariNet's teacher.
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
        log_scale_init: float = -4.0,
    ) -> None:
        super().__init__()
        if output not in ("mol", "gaussian"):
            raise ValueError(f"output must be 'mol' or 'gaussian', got {output!r}")
        self.output, self.mixtures, self.log_scale_min = output, mixtures, log_scale_min
        self.n_mels, self.gate_channels = n_mels, gate_channels
        self.dilations = dilations(layers, cycles)
        self.kernel_size = kernel_size
        self.upsampler = Upsampler(list(upsample_scales), n_mels)
        self.speaker = nn.Embedding(speakers, speaker_channels) if speakers > 0 else None
        cond_in = n_mels + (speaker_channels if speakers > 0 else 0)
        # One 1x1 conv projects the conditioning for every layer at once; blocks get a split.
        self.cond = nn.Conv1d(cond_in, gate_channels * layers, 1)
        self.input = CausalConv1d(1, residual_channels, 1)
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
        out_channels = 3 * mixtures if output == "mol" else 2
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(skip_channels, skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(skip_channels, out_channels, 1),
        )
        # Start with narrow output scales: SPEC section 8 measured this halves the time to a
        # given NLL compared with a zero bias.
        with torch.no_grad():
            last = self.head[-1]
            if output == "mol":
                last.bias[2 * mixtures :].fill_(log_scale_init)
            else:
                last.bias[1].fill_(log_scale_init)

    # ------------------------------------------------------------------ shapes and conditioning

    @property
    def receptive_field(self) -> int:
        """Samples of context each output sees (the input conv has kernel 1)."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    @property
    def hop_length(self) -> int:
        return self.upsampler.hop

    def condition(self, mel: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Per-layer conditioning ``(B, layers * gate, F * hop)`` from ``mel: (B, n_mels, F)``."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"mel must be (B, {self.n_mels}, frames), got {tuple(mel.shape)}")
        c = self.upsampler(mel)
        if self.speaker is not None:
            if speaker is None:
                raise ValueError("this teacher needs speaker ids")
            emb = self.speaker(speaker)[:, :, None].expand(-1, -1, c.shape[-1])
            c = torch.cat([c, emb], dim=1)
        return self.cond(c)

    # ------------------------------------------------------------------ teacher forcing

    def forward(
        self, audio: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Distribution parameters for every step: ``audio (B, 1, T), mel (B, M, T // hop)``
        -> ``(B, C_out, T)``; column ``t`` depends on ``audio[..., :t]`` and the mel only."""
        cond = self.condition(mel, speaker)
        if cond.shape[-1] != audio.shape[-1]:
            raise ValueError(
                f"audio has {audio.shape[-1]} samples but mel covers {cond.shape[-1]} "
                f"({mel.shape[-1]} frames x hop {self.hop_length})"
            )
        x = self.input(F.pad(audio[..., :-1], (1, 0)))  # shift right: step t sees x_<t
        skips = 0
        for block, c in zip(self.blocks, torch.split(cond, self.gate_channels, dim=1), strict=True):
            x, s = block(x, c)
            skips = skips + s
        return self.head(skips)

    def distribution(self, params: torch.Tensor) -> DiscretizedMixtureLogistics | Gaussian:
        """The output distribution of parameters ``(B, C_out, T)``, batch shape ``(B, T)``."""
        if self.output == "mol":
            return DiscretizedMixtureLogistics.from_channels(
                params, log_scale_min=self.log_scale_min
            )
        loc, log_scale = params.float().unbind(1)
        return Gaussian(loc, log_scale.clamp(min=GAUSSIAN_LOG_SCALE_MIN))

    def log_prob(
        self, audio: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log probability (nats) of each 16-bit sample: ``(B, 1, T) -> (B, T)``.

        For the Gaussian head this is the density at the sample times the bin width, which makes
        bits per sample comparable between heads.
        """
        dist = self.distribution(self(audio, mel, speaker))
        x = audio[:, 0].float()
        if self.output == "mol":
            return dist.log_prob(x)
        return dist.log_prob(x) + math.log(2 * HALF_BIN)

    # ------------------------------------------------------------------ generation

    def _noise(
        self,
        batch: int,
        steps: int,
        generator: torch.Generator | list[torch.Generator] | None,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """Uniform noise for every step drawn up front: ``(steps, B, K + 1)`` (K component
        choices + 1 for the sample). With a list of generators each utterance draws its own
        rows, so a batch draws exactly what its utterances would draw one by one."""
        width = (self.mixtures if self.output == "mol" else 0) + 1
        if isinstance(generator, list):
            u = torch.stack([torch.rand(steps, width, generator=g) for g in generator], dim=1)
        else:
            u = torch.rand(steps, batch, width, generator=generator)
        eps = torch.finfo(torch.float32).eps
        return u.clamp(eps, 1 - eps).to(like.device)

    def _sample(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Sample ``(B,)`` from output parameters ``params (B, C_out)``, noise ``u (B, K+1)``."""
        params = params.float()
        if self.output == "gaussian":
            loc, log_scale = params[:, 0], params[:, 1].clamp(min=GAUSSIAN_LOG_SCALE_MIN)
            z = torch.erfinv(2 * u[:, 0] - 1) * math.sqrt(2.0)
            return (loc + log_scale.exp() * z).clamp(-1.0, 1.0)
        k = self.mixtures
        gumbel = -torch.log(-torch.log(u[:, :k]))
        pick = (params[:, :k] + gumbel).argmax(dim=1, keepdim=True)
        loc = params[:, k : 2 * k].gather(1, pick)[:, 0]
        log_scale = params[:, 2 * k :].gather(1, pick)[:, 0].clamp(min=self.log_scale_min)
        v = u[:, k]
        return (loc + log_scale.exp() * (torch.log(v) - torch.log1p(-v))).clamp(-1.0, 1.0)

    def _head_step(self, skips: torch.Tensor) -> torch.Tensor:
        """The output head on one step ``(B, S) -> (B, C_out)``."""
        _, c1, _, c2 = self.head
        h = F.linear(torch.relu(skips), c1.weight[:, :, 0], c1.bias)
        return F.linear(torch.relu(h), c2.weight[:, :, 0], c2.bias)

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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Autoregressive sampling with per-layer queues, O(layers) per sample.

        ``mel: (B, M, F)``; ``lengths`` (samples per utterance) truncate the result of utterances
        shorter than ``F * hop`` (padded mel frames never influence earlier samples). With
        ``forced: (B, T)`` the given samples are fed back instead of sampled (used to check that
        this path reproduces :meth:`forward`). Returns ``(audio (B, T), params (B, C_out, T) or
        None)``; audio past an utterance's length is zero.
        """
        if lengths is not None:  # frames past an utterance's end repeat its last frame
            mel = mel.clone()
            for b, n in enumerate(lengths):
                last = -(-n // self.hop_length)
                mel[b, :, last:] = mel[b, :, last - 1 : last]
        cond = self.condition(mel, speaker)
        batch, _, steps = cond.shape
        cond = cond.permute(2, 0, 1).contiguous()  # (T, B, layers * gate): one view per step
        conds = [
            cond[:, :, i * self.gate_channels : (i + 1) * self.gate_channels]
            for i in range(len(self.blocks))
        ]
        states = [block.new_state(batch, cond) for block in self.blocks]
        noise = self._noise(batch, steps, generator, cond) if forced is None else None
        x = cond.new_zeros(batch)  # the shifted input: step 0 sees silence
        audio = cond.new_zeros(batch, steps)
        params_out = []
        w_in, b_in = self.input.weight[:, 0, 0], self.input.bias
        for t in progress(range(steps)) if progress else range(steps):
            h = torch.addcmul(b_in, x[:, None], w_in)
            skips = None
            for block, state, c in zip(self.blocks, states, conds, strict=True):
                h, s = block.step(h, c[t], state)
                skips = s if skips is None else skips + s
            params = self._head_step(skips)
            if return_params:
                params_out.append(params)
            x = forced[:, t] if forced is not None else self._sample(params, noise[t])
            audio[:, t] = x
        if lengths is not None:
            for b, n in enumerate(lengths):
                audio[b, n:] = 0
        return audio, torch.stack(params_out, dim=-1) if return_params else None

    @torch.no_grad()
    def generate_naive(
        self,
        mel: torch.Tensor,
        *,
        steps: int | None = None,
        speaker: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reference sampler: recomputes the whole receptive field for every sample.

        Slow by design (O(receptive field x layers) per sample); ``steps`` limits the number of
        samples generated. Returns ``(B, steps)``.
        """
        cond = self.condition(mel, speaker)
        total = cond.shape[-1] if steps is None else min(steps, cond.shape[-1])
        field = self.receptive_field
        audio = cond.new_zeros(cond.shape[0], 1, total)
        noise = self._noise(cond.shape[0], total, generator, cond)
        for t in range(total):
            lo = max(0, t + 1 - field)
            shifted = F.pad(audio[:, :, :t], (1, 0))  # shifted[..., u] = audio[..., u - 1]
            x = self.input(shifted[:, :, lo:])
            skips = 0
            chunks = torch.split(cond[:, :, lo : t + 1], self.gate_channels, dim=1)
            for block, c in zip(self.blocks, chunks, strict=True):
                x, s = block(x, c)
                skips = skips + s
            params = self.head(skips[:, :, -1:])[:, :, 0]
            audio[:, 0, t] = self._sample(params, noise[t])
        return audio[:, 0]
