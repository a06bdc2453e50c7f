"""Streaming synthesis with the student: mel frames in as they arrive, audio out (docs/serving.md).

:class:`StudentStream` carries what the next sample needs instead of recomputing a lookback, so
every sample is computed once:

- per flow, the last value of the flow's input (the shift by one step) and, per residual layer,
  the last ``(k - 1) * dilation`` rows of the layer's input stream, in the time-major layout and
  with the weights of :meth:`~pwavenet.models.student.IAFFlow.params_time_major` (matrix
  products over shifted views, :meth:`~pwavenet.models.block.ResidualBlock.forward_time_major`);
- for the conditioning, the last frames the upsampler reaches back to, and the phase of the
  sine excitation at the first of them;
- for a model that learnt the pre-emphasised signal, the de-emphasis filter's state.

The upsampler smooths across frames: a frame's samples depend on up to ``lookahead``
(``upsampler.edge_frames``) later frames. :meth:`StudentStream.push` therefore releases the audio
of every frame but the last ``lookahead`` ones, and :meth:`StudentStream.flush` the rest (the end
then repeats the last frame, as offline synthesis does). The concatenated stream equals
:meth:`~pwavenet.models.student.Student.synthesize` of the whole mel for the same noise: the
same ``noise``, or the same generator for the logistic base (torch draws uniforms one at a
time, so drawing a chunk at a time gives the same numbers; its normal sampler works in blocks of
16, so a Gaussian-base stream equals offline synthesis only with ``noise`` given).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch

from .block import ResidualBlock
from .student import (
    TIME_MAJOR_ROWS,
    TIME_MAJOR_ROWS_GPU,
    IAFFlow,
    Student,
    TimeMajorFlow,
    autocast_dtype,
)

__all__ = ["FlowState", "StudentStream", "flow_weights"]

# Rows (steps x streams) a flow works through per pass; a larger release goes in pieces of about
# this size, which also bounds the carried buffers.
STREAM_ROWS = 2048


class FlowState:
    """What one flow carries between chunks, and its time-major pass over new steps.

    Buffer ``l`` holds the input stream of layer ``l`` (the last buffer: the last layer's output)
    in time-major rows (``t * B + b``), at least ``reach[l] = (k - 1) * dilation`` rows of
    history before the write position: the dilated convolution's past inputs. Writing goes on
    until a buffer is full; then its history is moved to the front (amortised: about once per
    :data:`STREAM_ROWS` rows).
    """

    def __init__(self, flow: IAFFlow, batch: int) -> None:
        self.flow, self.batch = flow, batch
        self.reach = [(b.conv.kernel_size[0] - 1) * b.conv.dilation[0] for b in flow.blocks]
        kept = [*self.reach, 0]  # history kept per buffer (none after the last layer)
        # A buffer is also the destination of the layer before: its view starts that far back.
        self.front = [max(kept[i], self.reach[i - 1] if i else 0) for i in range(len(kept))]
        self.kept = kept
        self.pos = list(self.front)
        self.last = None  # (B,) the flow input's last value: step t sees z_<t
        self.buffers: list[torch.Tensor] | None = None
        self.weights: dict[torch.dtype, tuple] = {}  # the flow's weights when first needed

    def _make_room(self, steps: int, like: torch.Tensor) -> None:
        """Buffers in ``like``'s dtype with room for ``steps`` more steps after their history."""
        batch, width = self.batch, self.flow.input.out_channels
        if self.buffers is None:
            self.buffers = [
                like.new_zeros(((f + max(steps, STREAM_ROWS // batch)) * batch, width))
                for f in self.front
            ]
        elif self.buffers[0].dtype != like.dtype:  # the autocast changed between chunks
            self.buffers = [b.to(like.dtype) for b in self.buffers]
        for i, buf in enumerate(self.buffers):
            if (self.pos[i] + steps) * batch <= buf.shape[0]:
                continue
            front, keep = self.front[i], self.kept[i]
            history = buf[(self.pos[i] - keep) * batch : self.pos[i] * batch].clone()
            if (front + steps) * batch > buf.shape[0]:
                buf = self.buffers[i] = buf.new_zeros(((front + steps) * batch, width))
            buf[(front - keep) * batch : front * batch] = history
            self.pos[i] = front

    def params(
        self, x: torch.Tensor, cond: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_s)``, both ``(n, B)`` in ``x``'s dtype, for the next ``n`` steps of the
        flow's input ``x: (n, B)`` and their conditioning ``cond: (n * B, C)`` in ``dtype``;
        equals the same rows of :meth:`IAFFlow.params_time_major` over the whole stream."""
        steps, batch = x.shape
        if dtype not in self.weights:
            self.weights[dtype] = flow_weights(self.flow, dtype)
        blocks, w_in, b_in, w_out, b_out = self.weights[dtype]
        self._make_room(steps, cond)
        last = x.new_zeros(batch) if self.last is None else self.last
        shifted = torch.cat([last[None], x[:-1]]).reshape(-1)
        self.last = x[-1].clone()
        bufs, pos, rows = self.buffers, self.pos, steps * batch
        torch.addr(b_in, shifted.to(dtype), w_in, out=bufs[0][pos[0] * batch :][:rows])
        block_rows = TIME_MAJOR_ROWS if x.device.type == "cpu" else TIME_MAJOR_ROWS_GPU
        for i, (w, reach) in enumerate(zip(blocks, self.reach, strict=True)):
            src = bufs[i][(pos[i] - reach) * batch : (pos[i] + steps) * batch]
            dst = bufs[i + 1][(pos[i + 1] - reach) * batch : (pos[i + 1] + steps) * batch]
            ResidualBlock.forward_time_major(w, src, dst, cond, reach, batch, block_rows)
        out = torch.addmm(b_out, bufs[-1][pos[-1] * batch :][:rows], w_out).to(x.dtype)
        self.pos = [p + steps for p in pos]
        mu, log_s = out.view(steps, batch, 2).unbind(2)
        return mu, log_s.clamp(self.flow.log_scale_min, self.flow.log_scale_max)


# The folded weights of each flow per dtype, with the parameters' versions they were made from:
# made once for every stream of a model (a new stream's first audio need not wait for them),
# made again after the parameters change in place (an optimizer step, load_state_dict).
_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def flow_weights(flow: IAFFlow, dtype: torch.dtype) -> TimeMajorFlow:
    """:meth:`IAFFlow.time_major_weights` (those of :meth:`IAFFlow.params_time_major`) in
    ``dtype``, kept for the next stream until the flow's parameters change."""
    params = list(flow.parameters())
    versions = tuple(-1 if p.is_inference() else p._version for p in params)
    versions += (params[0].device,)
    cache = _WEIGHTS.setdefault(flow, {})
    if dtype in cache and cache[dtype][0] == versions:
        return cache[dtype][1]
    weights = flow.time_major_weights(dtype)
    cache[dtype] = (versions, weights)
    return weights


class StudentStream:
    """Streaming synthesis: ``push(mel frames) -> audio`` as the frames arrive, ``flush()`` at
    the end. The concatenated audio equals ``model.synthesize(whole_mel, ...)`` with the same
    ``speaker``, ``temperature`` and noise (see the module's note on generators), up to float
    rounding.

    ``push(mel)``: ``mel (M, F)`` for one stream (returns ``(n,)``) or ``(B, M, F)`` for a batch
    of ``batch`` streams advancing together (returns ``(B, n)``); ``M`` is the model's feature
    rows. It returns the samples of the frames now final: all but the last :attr:`lookahead`
    frames received (``n`` may be 0). ``flush()`` returns the rest and ends the stream.

    ``generator``: one generator (``batch`` 1) or one per stream, drawn as
    :meth:`Student.synthesize` draws (``None``: torch's global generator). ``noise: (B, T)``:
    the base noise given instead (it must cover every sample synthesized). ``dtype``: the dtype
    of the flows' matrix products; ``None`` follows the autocast of each push, as
    :meth:`Student.transform_inference` does (bf16 there: products in bf16, the sample, the
    scales and their composition in float32). A stream uses the weights the model has when it
    first needs them (a model changed in place later takes a new stream).
    """

    def __init__(
        self,
        model: Student,
        *,
        batch: int = 1,
        speaker: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        noise: torch.Tensor | None = None,
        temperature: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for {batch} streams")
        if isinstance(generator, torch.Generator) and batch > 1:
            raise ValueError("a batch of streams needs one generator per stream (a list)")
        if noise is not None and (noise.dim() != 2 or noise.shape[0] != batch):
            raise ValueError(f"noise must be ({batch}, samples), got {tuple(noise.shape)}")
        if (model.speaker is None) != (speaker is None):
            need = "needs speaker ids" if speaker is None else "has no speaker conditioning"
            raise ValueError(f"this student {need}")
        weight = model.upsampler.convs[0].weight
        self.model, self.batch, self.temperature, self.dtype = model, batch, temperature, dtype
        self.device, self.mel_dtype = weight.device, weight.dtype
        self.speaker = None if speaker is None else speaker.to(self.device).expand(batch)
        self.generator, self.noise = generator, noise
        self.hop = model.hop_length
        self.lookahead = model.upsampler.edge_frames
        """Frames after a frame that must arrive before its audio is final."""
        self.flows = [FlowState(flow, batch) for flow in model.flows]
        coef = model.audio.preemphasis if model.audio is not None else 0.0
        self.preemphasis = float(coef)
        self.frames_in = 0  # frames received
        self.frames_out = 0  # frames whose audio was returned
        self.finished = False
        self._mel = None  # (B, M, frames) from frame _base on: what the upsampler still needs
        self._base = 0
        self._phase = None  # (B,) float64: the sine's phase at frame _base
        self._filter = np.zeros((batch, 1))  # de-emphasis state: coef * last output
        self._unbatched = batch == 1

    @property
    def samples_out(self) -> int:
        """Samples returned so far, per stream."""
        return self.frames_out * self.hop

    @torch.no_grad()
    def push(self, mel: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Add ``mel (M, F)`` or ``(B, M, F)`` frames; return the audio now final."""
        if self.finished:
            raise RuntimeError("this stream was flushed: start a new one")
        mel = self._checked(mel)
        self._mel = mel if self._mel is None else torch.cat([self._mel, mel], dim=-1)
        self.frames_in += mel.shape[-1]
        return self._release(self.frames_in - self.lookahead)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """The audio of the last frames (the end of the utterance); ends the stream."""
        if self.finished:
            raise RuntimeError("this stream was flushed already")
        audio = self._release(self.frames_in)
        self.finished, self._mel = True, None
        return audio

    def _checked(self, mel: torch.Tensor | np.ndarray) -> torch.Tensor:
        mel = torch.as_tensor(mel)
        rows = self.model.upsampler.channels
        self._unbatched = mel.dim() == 2
        if self._unbatched:
            mel = mel[None]
        if mel.dim() != 3 or mel.shape[:2] != (self.batch, rows):
            want = f"({rows}, frames)" if self.batch == 1 else f"({self.batch}, {rows}, frames)"
            raise ValueError(f"mel frames must be {want}, got {tuple(mel.shape)}")
        if not mel.is_floating_point() or not torch.isfinite(mel).all():
            raise ValueError("mel frames must be finite floating-point values")
        return mel.to(self.device, self.mel_dtype)

    def _release(self, upto: int) -> torch.Tensor:
        """Audio ``(B, n)`` (``(n,)`` after an unbatched push) of frames ``[frames_out, upto)``,
        in pieces of about :data:`STREAM_ROWS` rows."""
        pieces = [torch.zeros(self.batch, 0, device=self.device)]
        step = max(1, STREAM_ROWS // (self.hop * self.batch))
        while self.frames_out < upto:
            end = min(upto, self.frames_out + step)
            pieces.append(self._synthesize(self.frames_out, end))
            self._advance(end)
        audio = torch.cat(pieces, dim=-1)
        return audio[0] if self._unbatched else audio

    def _synthesize(self, start: int, end: int) -> torch.Tensor:
        """Audio ``(B, (end - start) * hop)`` of frames ``[start, end)``: the upsampler's
        window of frames around them (as :func:`~pwavenet.models.conditioning.features_window`
        takes it), the next noise, the flows from their carried state."""
        model, hop, base = self.model, self.hop, self._base
        hi = min(self.frames_in, end + self.lookahead)
        window = self._mel[:, :, : hi - base]
        cond = model.features(window, self.speaker, self._phase)
        cond = cond[:, :, (start - base) * hop : (end - base) * hop]
        z = self._draw((end - start) * hop)
        if self.temperature != 1.0:
            frames = self._mel[:, :, start - base : end - base]
            z = z * model.temperature_profile(frames, self.temperature).to(z.device)
        dtype = self.dtype or autocast_dtype(z)
        x = z.t().contiguous()  # (n, B), time-major as in Student.transform_inference
        c = cond.permute(2, 0, 1).reshape(-1, cond.shape[1]).to(dtype)
        for flow in self.flows:
            mu, log_s = flow.params(x, c, dtype)  # float32 whatever the dtype
            x = torch.addcmul(mu, x, log_s.exp())
        return self._deemphasize(x.t().contiguous())

    def _advance(self, done: int) -> None:
        """Frames up to ``done`` are out: keep only the frames the upsampler still needs."""
        self.frames_out = done
        base = max(0, done - self.lookahead)
        drop = base - self._base
        if drop <= 0:
            return
        excitation = self.model.excitation
        if excitation is not None:
            phase = excitation.phase_at(self._mel[:, :, :drop])
            if self._phase is not None:
                phase = torch.remainder(phase + self._phase, 2 * math.pi)
            self._phase = phase
        self._mel, self._base = self._mel[:, :, drop:], base

    def _draw(self, steps: int) -> torch.Tensor:
        """The next ``steps`` samples of base noise ``(B, steps)``."""
        if self.noise is not None:
            first = self.samples_out
            if first + steps > self.noise.shape[-1]:
                raise ValueError(
                    f"the given noise has {self.noise.shape[-1]} samples; the stream needs "
                    f"{first + steps}"
                )
            return self.noise[:, first : first + steps].to(self.device)
        return self.model.noise([steps] * self.batch, self.generator, self.device)

    def _deemphasize(self, audio: torch.Tensor) -> torch.Tensor:
        """The de-emphasis of a pre-emphasised model, carried across chunks (the filter of
        :func:`pwavenet.audio.deemphasize`, float64)."""
        if not self.preemphasis or audio.shape[-1] == 0:
            return audio
        from scipy.signal import lfilter

        coef = self.preemphasis
        x = audio.detach().cpu().double().numpy()
        y, self._filter = lfilter([1.0], [1.0, -coef], x, axis=-1, zi=self._filter)
        return torch.from_numpy(y).to(audio.device, audio.dtype)
