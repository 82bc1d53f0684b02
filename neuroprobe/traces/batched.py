"""Whole-sequence (batched-time) trace filtering: causal convolution along the time axis.

Useful when the full input sequence is known in advance (offline analysis, tests, computing the
traces for a stored episode); it gives the same result as stepping the matching stateful trace from
a zero state, up to floating-point rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.traces.kernels import cascade_kernel, normalization_scale

__all__ = ["apply_kernel", "cascade_filter", "TOEPLITZ_MAX_STEPS"]

#: "auto" uses the Toeplitz matmul up to this many steps, the FFT beyond.
TOEPLITZ_MAX_STEPS = 256


def apply_kernel(u: Tensor, kernel: Tensor, dim: int = 0, method: str = "auto") -> Tensor:
    """Causal convolution along ``dim``: ``y[t] = sum_{0 <= k <= t} h[k] u[t-k]``.

    u: any shape with time (``T`` steps) on axis ``dim``; kernel: ``(L,)``, any ``L >= 1``
    (lags ``>= T`` are irrelevant; a shorter kernel is zero beyond ``L``).  Returns a tensor shaped
    like ``u``, in ``u``'s dtype.  ``method``: "fft" (zero-padded ``torch.fft.rfft``, O(T log T)),
    "toeplitz" (lower-triangular ``(T, T)`` matmul, exact summation order, O(T^2) memory) or
    "auto" (Toeplitz for ``T <= TOEPLITZ_MAX_STEPS``, else FFT).
    """
    if method not in ("auto", "fft", "toeplitz"):
        raise ConfigError(f"method must be 'auto', 'fft' or 'toeplitz', got {method!r}")
    if kernel.dim() != 1 or kernel.shape[0] < 1:
        raise ShapeError(f"kernel: expected a non-empty 1-D tensor (L,), got shape {tuple(kernel.shape)}")
    if u.dim() == 0:
        raise ShapeError("u: expected at least one dimension (time), got a scalar")
    if not -u.dim() <= dim < u.dim():
        raise ShapeError(f"dim: must be in [{-u.dim()}, {u.dim() - 1}] for u of shape {tuple(u.shape)}, got {dim}")
    if u.is_complex() or not u.is_floating_point():
        raise ConfigError(f"u: expected a real floating-point tensor, got dtype {u.dtype}")
    steps = u.shape[dim]
    if steps == 0:
        return u.clone()
    x = u.movedim(dim, -1)  # (..., T)
    h = kernel[:steps].to(dtype=u.dtype, device=u.device)
    if method == "auto":
        method = "toeplitz" if steps <= TOEPLITZ_MAX_STEPS else "fft"
    if method == "toeplitz":
        t = torch.arange(steps, device=u.device)
        lag = t[:, None] - t[None, :]  # (T, T): t - s
        hk = torch.cat([h, h.new_zeros(steps - h.shape[0] + 1)])  # index -1 -> 0 for s > t
        toeplitz = hk[torch.where(lag >= 0, lag, -1)]
        y = x @ toeplitz.mT
    else:
        n = steps + h.shape[0] - 1
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(h, n=n), n=n)[..., :steps]
    return y.movedim(-1, dim)


def cascade_filter(
    u_seq: Tensor,
    order: int,
    delay: float | None,
    normalize: str | None = "area",
    beta: float | None = None,
    dim: int = 0,
    method: str = "auto",
) -> Tensor:
    """Outputs of a :class:`~neuroprobe.traces.cascade.CascadeTrace` (same order, delay,
    normalisation — infinite-support "area"/"peak" scale) stepped from a zero state over
    ``u_seq``; time on axis ``dim`` (steps).  Returns a tensor shaped like ``u_seq``."""
    if u_seq.dim() == 0:
        raise ShapeError("u_seq: expected at least one dimension (time), got a scalar")
    steps = max(int(u_seq.shape[dim]), 1)
    h = cascade_kernel(order, delay, steps, normalize=None, beta=beta)
    h = h * normalization_scale("cascade", normalize, order=order, delay=delay, beta=beta)
    return apply_kernel(u_seq, h, dim=dim, method=method)
