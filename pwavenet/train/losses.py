"""Distillation losses (docs/design.md §§4, 5), computed in float32.

- :func:`monte_carlo_kl`: KL(student || teacher) per step = Monte Carlo cross-entropy minus the
  closed-form entropy of the student's per-step distribution. The frozen teacher has been run
  once on the student's sample ``x`` (all steps in parallel), which gives ``p_T(. | x_<t)`` for
  every ``t``; M fresh reparameterised draws ``x'_t ~ p_S(. | x_<t)`` per step are scored under
  it. The teacher's *continuous* density scores the draws (the mixture's density, not its bin
  masses): the entropy is a differential entropy, so the estimate is a proper KL, zero when the
  two conditionals agree.
- :func:`distillation_kl`: the KL of a student sample against the frozen teacher, as the
  distillation and the evaluation compute it (one teacher pass, then either of the two below).
- :func:`gaussian_kl_regularized`: ClariNet's closed form for a Gaussian student and teacher,
  plus ``lambda * (log sigma_p - log sigma_q)^2``.
- Spectral losses: :func:`power_loss` (the paper's time-averaged ``|STFT|^2``),
  :func:`log_power_loss` (the same spectra compared on a log scale),
  :func:`magnitude_loss` (``|STFT|`` frames) and :func:`mrstft_loss` (spectral convergence +
  log-magnitude L1 at three resolutions), all with a Hann window. The first two are divided by
  the reference's energy, so that their weights do not depend on the signal level.
- :func:`loudness_loss`: the squared difference of log frame energies (the energy envelope):
  the explicit guard against a student that whispers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..models.distributions import Gaussian, Logistic, gaussian_kl

__all__ = [
    "MRSTFT_RESOLUTIONS",
    "KLEstimate",
    "distillation_kl",
    "gaussian_kl_regularized",
    "log_power_loss",
    "loudness_loss",
    "magnitude_loss",
    "masked_mean",
    "monte_carlo_kl",
    "mrstft_loss",
    "power_loss",
    "stft_magnitude",
]

# (n_fft, hop, window) of the multi-resolution STFT loss: Parallel WaveGAN's set, given at
# 24 kHz. It stays fixed whatever ``audio.n_fft/hop_length/win_length`` say: the evaluation's
# MR-STFT distance uses the same set, so distances stay comparable across runs with other
# feature settings (at the default 22.05 kHz the windows are within 10% of the paper's
# durations), and scaling it would change the loss of every existing config.
MRSTFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = (
    (1024, 120, 600),
    (2048, 240, 1200),
    (512, 50, 240),
)
_EPS = 1e-12  # keeps a square root's gradient and a ratio's denominator finite on silence


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values (..., B, T)`` over the steps where ``mask (B, T)`` is 1."""
    if mask is None:
        return values.mean()
    mask = mask.expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class KLEstimate:
    """Per-step terms of the Monte Carlo KL, all ``(B, T)``, and the per-draw means ``(M,)``
    (the spread of the estimate across draws)."""

    kl: Tensor
    cross_entropy: Tensor
    entropy: Tensor
    draws: Tensor


def monte_carlo_kl(
    teacher_log_density: Callable[[Tensor], Tensor],
    student: Logistic | Gaussian,
    samples: int,
    *,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> KLEstimate:
    """``KL(p_S || p_T)`` per step by M = ``samples`` reparameterised draws.

    ``teacher_log_density`` maps draws ``(M, B, T)`` to the teacher's log density at each step
    ``(M, B, T)`` (its distribution from the one pass over the student's sample); ``student`` is
    the student's per-step distribution with batch shape ``(B, T)``. Gradients reach the
    student through the draws and, via ``teacher_log_density``, through the teacher's input.
    """
    draws = student.rsample((samples,), generator=generator)
    cross = -teacher_log_density(draws)  # (M, B, T)
    per_draw = torch.stack([masked_mean(c, mask) for c in cross.detach()])
    ce = cross.mean(0)
    entropy = student.entropy()
    return KLEstimate(kl=ce - entropy, cross_entropy=ce, entropy=entropy, draws=per_draw)


def gaussian_kl_regularized(
    student: Gaussian, teacher: Gaussian, regularizer: float = 4.0
) -> Tensor:
    """ClariNet's per-step ``KL(q || p) + lambda (log sigma_p - log sigma_q)^2``: ``(B, T)``."""
    kl = gaussian_kl(student.loc, student.log_scale, teacher.loc, teacher.log_scale)
    return kl + regularizer * (teacher.log_scale - student.log_scale) ** 2


def distillation_kl(
    student: Any,
    teacher: Any,
    out: Any,
    mel: Tensor,
    speaker: Tensor | None = None,
    *,
    samples: int,
    mask: Tensor | None = None,
    regularizer: float = 4.0,
    closed_form: bool = True,
    max_draws: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Mean per-step ``KL(student || teacher given mel)`` of a student sample, and diagnostics.

    ``out`` is the student's output on its noise (``x, loc, log_scale: (B, T)``), ``mel (B,
    n_mels, T // hop)``, ``mask (B, T)`` its real samples. The teacher runs once on ``out.x``.
    With ``closed_form`` and both sides Gaussian this is ClariNet's closed form with its
    log-scale ``regularizer``; otherwise the Monte Carlo estimate with ``samples`` draws per
    step, with diagnostics ``kl/cross_entropy``, ``kl/entropy`` and ``kl/ce_std``. With
    ``max_draws`` the draws are made at most that many at a time (bounded memory) and the
    groups' means pooled, without diagnostics. Both distillation and evaluation call this.
    """
    params = teacher(out.x[:, None], mel, speaker)  # one pass over the student's sample
    with torch.autocast(device_type=out.x.device.type, enabled=False):
        q = student.distribution(out.loc.float(), out.log_scale.float())
        p = teacher.distribution(params.float())
        if closed_form and student.base == "gaussian" and teacher.output == "gaussian":
            return masked_mean(gaussian_kl_regularized(q, p, regularizer), mask), {}
        if max_draws is not None:
            groups = [min(max_draws, samples - i) for i in range(0, samples, max_draws)]
            total = sum(
                n
                * masked_mean(
                    monte_carlo_kl(p.log_density, q, n, mask=mask, generator=generator).kl, mask
                )
                for n in groups
            )
            # The division in float64 adds no float32 rounding to the pooled sum.
            return total.double() / samples, {}
        est = monte_carlo_kl(p.log_density, q, samples, mask=mask, generator=generator)
        return masked_mean(est.kl, mask), {
            "kl/cross_entropy": float(masked_mean(est.cross_entropy.detach(), mask)),
            "kl/entropy": float(masked_mean(est.entropy.detach(), mask)),
            "kl/ce_std": float(est.draws.std()) if est.draws.numel() > 1 else 0.0,
        }


def stft_magnitude(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    """``|STFT(x)|`` with a Hann window: ``(B, T) -> (B, n_fft // 2 + 1, frames)``.

    ``sqrt(re^2 + im^2 + eps)`` instead of ``abs``: the gradient stays finite on silent frames.
    """
    window = torch.hann_window(win, device=x.device, dtype=x.dtype)
    spec = torch.stft(
        x,
        n_fft,
        hop_length=hop,
        win_length=win,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return torch.sqrt(spec.real**2 + spec.imag**2 + _EPS)


def power_loss(x: Tensor, y: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    """The paper's power loss ``||phi(x) - phi(y)||^2``, ``phi = |STFT|^2`` averaged over time
    (per frequency bin), divided by ``||phi(y)||^2`` over the batch. ``x, y: (B, T)``."""
    phi_x = stft_magnitude(x, n_fft, hop, win).pow(2).mean(-1)
    phi_y = stft_magnitude(y, n_fft, hop, win).pow(2).mean(-1)
    return (phi_x - phi_y).pow(2).sum() / phi_y.pow(2).sum().clamp(min=_EPS)


def log_power_loss(
    x: Tensor, y: Tensor, n_fft: int, hop: int, win: int, floor: float = 1e-4
) -> Tensor:
    """The power loss on a log scale: mean over frequency bins of
    ``(log(phi(x) + e) - log(phi(y) + e))^2`` with ``phi`` the time-averaged ``|STFT|^2`` and
    ``e = floor * mean(phi(y))``. Every bin counts alike, so a uniformly quieter student (a
    whisper) is penalised by ``(2 ln g)^2`` for an amplitude gain ``g`` whatever the spectral
    shape, where the linear form is dominated by the few loudest bins. ``(B, T)``."""
    phi_x = stft_magnitude(x, n_fft, hop, win).pow(2).mean(-1)
    phi_y = stft_magnitude(y, n_fft, hop, win).pow(2).mean(-1)
    e = floor * phi_y.mean(-1, keepdim=True).detach()
    return ((phi_x + e).log() - (phi_y + e).log()).pow(2).mean()


def loudness_loss(x: Tensor, y: Tensor, win: int, hop: int, floor: float = 1e-4) -> Tensor:
    """Mean over frames of ``(log(E_x + e) - log(E_y + e))^2``: ``E`` the mean square of each
    ``win``-sample frame (every ``hop`` samples), ``e = floor * mean(E_y)`` so that near-silent
    frames do not dominate. A uniform amplitude gain ``g`` costs about ``(2 ln g)^2`` (0.21 at
    2 dB). ``x, y: (B, T)`` with ``T >= win``."""
    e_x = x.unfold(-1, win, hop).pow(2).mean(-1)
    e_y = y.unfold(-1, win, hop).pow(2).mean(-1)
    e = floor * e_y.mean().detach().clamp(min=_EPS)
    return ((e_x + e).log() - (e_y + e).log()).pow(2).mean()


def magnitude_loss(x: Tensor, y: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    """Frame-wise linear ``|STFT|`` distance ``|| |X| - |Y| ||^2 / || |Y| ||^2``. ``(B, T)``."""
    mag_x = stft_magnitude(x, n_fft, hop, win)
    mag_y = stft_magnitude(y, n_fft, hop, win)
    return (mag_x - mag_y).pow(2).sum() / mag_y.pow(2).sum().clamp(min=_EPS)


def mrstft_loss(
    x: Tensor,
    y: Tensor,
    resolutions: Sequence[tuple[int, int, int]] = MRSTFT_RESOLUTIONS,
    floor: float = 1e-5,
) -> Tensor:
    """Multi-resolution STFT loss: mean over resolutions of spectral convergence
    ``|| |Y| - |X| ||_F / || |Y| ||_F`` plus the mean absolute log-magnitude difference
    (magnitudes clamped at ``floor``). ``x, y: (B, T)``; 0 for identical signals."""
    total = x.new_zeros(())
    for n_fft, hop, win in resolutions:
        mag_x = stft_magnitude(x, n_fft, hop, win)
        mag_y = stft_magnitude(y, n_fft, hop, win)
        sc = torch.linalg.vector_norm(mag_y - mag_x) / torch.linalg.vector_norm(mag_y).clamp(
            min=_EPS
        )
        log_l1 = (mag_y.clamp(min=floor).log() - mag_x.clamp(min=floor).log()).abs().mean()
        total = total + sc + log_l1
    return total / len(resolutions)
