"""Teacher generation as one fixed sequence of tensor operations per step, replayable as a
CUDA graph.

:class:`~pwavenet.models.step.StepEngine` is the fast step on the CPU: numpy calls with
Python-side ring-buffer positions. On a GPU each of its few hundred small calls is a kernel
launch of several microseconds from Python, so a sample costs milliseconds whatever the GPU.
:class:`FusedSteps` computes the same step with every position held on the device (a step
counter tensor), every buffer allocated once and no Python decision inside a step, so the
step can be captured once in a CUDA graph and replayed per sample (``graph=True``). The same
code runs eagerly on any device, which is how the CPU tests check it against teacher forcing.

Per step, for ``L`` blocks of kernel ``k``:

- the conditioning of the step is one row of a chunk of projected conditioning (refilled
  between replays every ``chunk_steps`` steps);
- the ``k - 1`` older taps of every block come from one ring buffer ``(L, N, B, R)`` in one
  gather, and their contribution to every block's pre-activation is one batched matrix
  product; only the newest tap (the block's input, known once the block before has run) is a
  per-block product;
- per block: that product, ``tanh``, the gate and the residual update (four kernels);
- the skip outputs of all blocks are one batched product; the head and the sampler follow;
- the sample, each block's input and the step counter are written back into their buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .block import ResidualBlock, stream_scales
from .conditioning import FeatureWindows, feature_steps
from .distributions import sample_mixture_rows

__all__ = ["GENERATION_ENGINES", "FusedSteps", "choose_engine"]

GENERATION_ENGINES = ("auto", "step", "fused", "graph")


def choose_engine(engine: str, device: torch.device) -> str:
    """The engine that runs for ``engine`` on ``device``: ``auto`` is ``graph`` on CUDA and
    ``step`` elsewhere; ``graph`` needs CUDA. Raises ``ValueError`` for anything else."""
    if engine not in GENERATION_ENGINES:
        raise ValueError(f"engine must be one of {', '.join(GENERATION_ENGINES)}, got {engine!r}")
    if engine == "auto":
        return "graph" if device.type == "cuda" else "step"
    if engine == "graph" and device.type != "cuda":
        raise ValueError(f"engine 'graph' needs a CUDA device, got {device}")
    return engine


class FusedSteps:
    """Autoregressive steps of the teacher ``model`` (a
    :class:`~pwavenet.models.teacher.WaveNet`, which imports this module) over conditioning
    ``features: (B, C, T)``.

    ``noise: (T, B, V)`` are the output head's standard variates (or ``forced: (T, B)`` the
    samples to feed back instead of sampling); ``lags: (B, T)`` the pitch periods of a
    pitch-lag input (0 where unvoiced). :meth:`run` fills :attr:`audio` ``(T, B)`` and, with
    ``keep_params``, :attr:`params` ``(T, B, C_out)``.
    """

    def __init__(
        self,
        model: nn.Module,
        features: torch.Tensor | FeatureWindows,
        *,
        noise: torch.Tensor | None = None,
        forced: torch.Tensor | None = None,
        lags: torch.Tensor | None = None,
        keep_params: bool = False,
        chunk_steps: int = 256,
    ) -> None:
        if (noise is None) == (forced is None):
            raise ValueError("give exactly one of noise and forced")
        if isinstance(features, torch.Tensor):
            features = features.detach()
        self.model, self.features = model, features
        batch, _, steps = features.shape
        self.steps, self.chunk = steps, max(1, min(chunk_steps, steps))
        dev, self.batch = features.device, batch
        like = torch.empty(0, device=dev)  # what the buffers below are made like
        self._weights(model, dev)
        layers, gate = len(model.blocks), model.gate_channels
        width = model.blocks[0].conv.in_channels
        self.ring = like.new_zeros((layers, self.window, batch, width))
        self.xs = like.new_zeros((layers + 1, batch, width))  # each block's input
        self.a = like.new_zeros((layers, batch, gate))
        self.gates = like.new_zeros((layers, batch, gate // 2 + 1))
        self.gates[:, :, -1] = 1
        self.conds = like.new_zeros((self.chunk, layers, batch, gate))
        self.t = torch.zeros(1, dtype=torch.long, device=dev)
        self.x = like.new_zeros(batch)
        self.audio = like.new_zeros((steps, batch))
        out = model.output_head.channels
        self.params = like.new_zeros((steps if keep_params else 1, batch, out))
        self.keep_params = keep_params
        self.noise, self.forced = noise, forced
        self.sample = self._sampler(model, batch, dev)
        self.lag_index, self.lag_valid = self._lag_tables(lags, batch, steps, dev)
        self._graph: torch.cuda.CUDAGraph | None = None

    # ------------------------------------------------------------------ set-up

    def _weights(self, model: nn.Module, dev: torch.device) -> None:
        """The step's matrices, stacked over blocks, with the constants of
        :meth:`~pwavenet.models.block.ResidualBlock.new_state` folded in."""
        blocks: list[ResidualBlock] = list(model.blocks)
        scales = stream_scales(blocks)
        width = blocks[0].conv.in_channels
        pairs = [b.step_matrices(s) for b, s in zip(blocks, scales, strict=False)]
        convs, res = zip(*pairs, strict=True)
        conv = torch.stack(convs).to(dev)  # (L, k * R, G)
        self.w_hist, self.w_now = conv[:, :-width].contiguous(), conv[:, -width:].contiguous()
        self.res = [None if r is None else r.to(dev) for r in res]
        self.skip = torch.stack([b.skip_matrix() for b in blocks]).to(dev)  # (L, G/2 + 1, S)
        k = blocks[0].conv.kernel_size[0]
        back = torch.tensor(
            [[(k - 1 - j) * b.conv.dilation[0] for j in range(k - 1)] for b in blocks]
        )
        self.window = int(back.max()) + 1 if k > 1 else 1
        self.back, self.taps = back.to(dev), k - 1
        self.layer_index = torch.arange(len(blocks), device=dev)[:, None]
        self.w_in = model.input.weight.detach()[:, :, 0].t().contiguous().to(dev)  # (C_in, R)
        self.b_in = model.input.bias.detach().to(dev)
        _, c1, _, c2 = model.head
        self.head = [
            m.detach().to(dev).contiguous()
            for m in (c1.weight[:, :, 0].t(), c1.bias, c2.weight[:, :, 0].t(), c2.bias)
        ]
        cond_w, cond_b = model._cond_matrix()
        scale, shift = zip(*map(ResidualBlock.cond_affine, blocks), strict=True)
        self.cond_w, self.cond_b = cond_w.detach().to(dev), cond_b.detach().to(dev)
        self.cond_scale = torch.stack(scale).to(dev)[:, None]  # (L, 1, G)
        self.cond_shift = torch.stack(shift).to(dev)[:, None]

    def _sampler(self, model: nn.Module, batch: int, dev: torch.device) -> Callable:
        head = model.output_head
        if model.output == "mol":
            rows = torch.arange(batch, device=dev) * head.channels + head.mixtures
            floor = head.log_scale_min
            return lambda p, u: sample_mixture_rows(p, u, rows, floor)
        return head.sampler(batch, self.x)

    @staticmethod
    def _lag_tables(lags: torch.Tensor | None, batch: int, steps: int, dev: torch.device):
        """Flat indices into :attr:`audio` of each step's pitch-lag sample ``(T, B)`` and
        whether it exists ``(T, B)`` (None without a pitch-lag input)."""
        if lags is None:
            return None, None
        lags = lags.t().to(dev)  # (T, B)
        t = torch.arange(steps, device=dev)[:, None]
        rows = (t - lags).clamp(min=0)
        index = rows * batch + torch.arange(batch, device=dev)
        valid = ((lags > 0) & (t >= lags)).to(torch.float32)
        return index.contiguous(), valid.contiguous()

    def _fill(self, start: int) -> None:
        """Project the conditioning of steps ``[start, start + chunk)`` into :attr:`conds`
        (row ``t % chunk`` is step ``t``), laid out ``(steps, L, B, G)``."""
        layers, gate = self.conds.shape[1], self.conds.shape[3]
        n = min(self.chunk, self.steps - start)
        feats = feature_steps(self.features, start, start + n)
        cond = F.conv1d(feats, self.cond_w, self.cond_b).view(self.batch, layers, gate, n)
        rows = self.conds[:n]
        rows.copy_(cond.permute(3, 1, 0, 2))
        torch.addcmul(self.cond_shift, rows, self.cond_scale, out=rows)

    # ------------------------------------------------------------------ one step

    def step(self) -> None:
        """Step :attr:`t`: a fixed sequence of tensor operations (no Python branch on data,
        no host synchronisation), so that it can be captured in a CUDA graph."""
        t = self.t
        cond = self.conds.index_select(0, torch.remainder(t, self.chunk))[0]  # (L, B, G)
        x0 = self.xs[0]
        torch.mul(self.x[:, None], self.w_in[0], out=x0)  # the input conv, kernel 1
        if self.lag_index is not None:
            lag = self.audio.view(-1).index_select(0, self.lag_index.index_select(0, t)[0])
            x0.addcmul_((lag * self.lag_valid.index_select(0, t)[0])[:, None], self.w_in[1])
        x0 += self.b_in
        if self.taps:
            where = torch.remainder(t - self.back, self.window)  # (L, k - 1)
            hist = self.ring[self.layer_index, where]  # (L, k - 1, B, R), oldest first
            hist = hist.permute(0, 2, 1, 3).reshape(hist.shape[0], self.batch, -1)
            torch.baddbmm(cond, hist, self.w_hist, out=self.a)
        else:
            self.a.copy_(cond)
        half = self.gates.shape[2] - 1
        for i, res in enumerate(self.res):
            a = self.a[i]
            a.addmm_(self.xs[i], self.w_now[i])
            a.tanh_()
            torch.addcmul(a[:, :half], a[:, :half], a[:, half:], out=self.gates[i, :, :half])
            if res is not None:
                torch.addmm(self.xs[i], self.gates[i], res, out=self.xs[i + 1])
        if self.taps:
            self.ring.index_copy_(1, torch.remainder(t, self.window), self.xs[:-1, None])
        p = self._head(torch.bmm(self.gates, self.skip).sum(0))
        if self.keep_params:
            self.params.index_copy_(0, t, p[None])
        if self.forced is not None:
            x = self.forced.index_select(0, t)[0]
        else:
            x = self.sample(p, self.noise.index_select(0, t)[0])
        self.x.copy_(x)
        self.audio.index_copy_(0, t, x[None])
        t += 1

    def _head(self, skip: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.head
        h = torch.addmm(b1, skip.relu_(), w1)
        return torch.addmm(b2, h.relu_(), w2, out=self.params[0] if not self.keep_params else None)

    # ------------------------------------------------------------------ the loop

    @torch.no_grad()
    def capture(self) -> None:
        """Record :meth:`step` as a CUDA graph (after warm-up steps on a side stream, whose
        effects are then undone)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        self._fill(0)
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        self._reset()
        self._graph = graph

    def _reset(self) -> None:
        for buf in (self.ring, self.xs, self.a, self.t, self.x, self.audio, self.params):
            buf.zero_()

    @torch.no_grad()
    def run(self, progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> None:
        """Every step (or those ``progress`` lets through; later samples stay zero)."""
        steps = range(self.steps)
        for t in progress(steps) if progress else steps:
            if t % self.chunk == 0:
                self._fill(t)
            if self._graph is not None:
                self._graph.replay()
            else:
                self.step()
