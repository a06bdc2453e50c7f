"""The checks every flow must pass (one helper, shared by the student's flows and the toy flows).

A flow maps ``z: (B, T)`` to ``x`` with ``forward(z, cond) -> (x, logabsdet)`` and back with
``inverse(x, cond) -> (z, logabsdet)``. For an autoregressive flow ``x_t`` may depend on
``z_<=t`` only, so its Jacobian is lower triangular.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``d fn(z)[t] / d z[t']`` for a 1-D ``z: (T,)``: ``(T, T)``."""
    return torch.autograd.functional.jacobian(fn, z)


def check_flow(flow, z: torch.Tensor, cond, *, atol: float = 1e-6) -> None:
    """Invertibility, log-determinant against autograd, and causality for one utterance
    ``z: (1, T)`` (float64 recommended)."""
    x, logdet = flow(z, cond)
    back, inv_logdet = flow.inverse(x, cond)
    torch.testing.assert_close(back, z, atol=atol, rtol=0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=atol, rtol=0)
    jac = jacobian(lambda v: flow(v[None], cond)[0][0], z[0])
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    torch.testing.assert_close(logabs, logdet[0], atol=atol, rtol=1e-9)
    assert_lower_triangular(jac)


def assert_lower_triangular(jac: torch.Tensor, *, strict: bool = False) -> None:
    """Output t never depends on inputs after t (nor on input t itself when ``strict``); and the
    check is not vacuous: some entry below the diagonal is non-zero."""
    above = torch.triu(jac, diagonal=0 if strict else 1)
    assert float(above.abs().max()) == 0.0, "an output depends on a later input"
    below = torch.tril(jac, diagonal=-1)
    assert float(below.abs().max()) > 0.0, "no output depends on earlier inputs (vacuous test)"


def check_bijection(flow, z: torch.Tensor, cond=None, *, atol: float = 1e-6) -> None:
    """Invertibility both ways and both log-determinants against autograd's Jacobians, for a batch
    of vectors ``z: (B, D)`` (float64 recommended) and any Jacobian structure (coupling and
    planar flows are not triangular)."""
    x, logdet = flow(z, cond)
    assert logdet.shape == (z.shape[0],)
    back, inv_logdet = flow.inverse(x, cond)
    torch.testing.assert_close(back, z, atol=atol, rtol=0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=atol, rtol=0)
    again, _ = flow(back, cond)
    torch.testing.assert_close(again, x, atol=atol, rtol=0)
    for b in range(z.shape[0]):
        for fn, point, expected in ((flow, z[b], logdet[b]), (flow.inverse, x[b], inv_logdet[b])):
            jac = jacobian(lambda v, fn=fn: fn(v[None], cond)[0][0], point)
            sign, logabs = torch.linalg.slogdet(jac)
            assert sign != 0
            torch.testing.assert_close(logabs, expected, atol=atol, rtol=1e-9)
