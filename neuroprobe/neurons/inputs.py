"""Input populations: Poisson spike sources and rate coding of observations.

Shapes: rates (B, N) in Hz; spikes (B, N) in {0, 1}; dt in seconds.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["poisson_spikes", "rate_code"]


def poisson_spikes(rates: Tensor, dt: float, generator: torch.Generator | None = None) -> Tensor:
    """One step of independent Poisson (Bernoulli) spikes: P(spike) = 1 − exp(−rate·dt)."""
    if (rates < 0).any():
        raise ConfigError("poisson rates must be >= 0 Hz")
    p = -torch.expm1(-rates * dt)
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    return (u < p).to(p.dtype)


def rate_code(x: Tensor, low: Tensor | float, high: Tensor | float, neurons_per_dim: int, max_rate: float,
              width: float | None = None) -> Tensor:
    """Population (place) code of observations: x (B, D) -> rates (B, D·neurons_per_dim) in Hz.

    Each dimension d is covered by ``neurons_per_dim`` Gaussian tuning curves with centres evenly
    spaced over [low_d, high_d] (x is clipped to that range) and width ``width`` (default: the
    centre spacing); a neuron fires at ``max_rate`` Hz at its centre.
    """
    if neurons_per_dim < 1 or max_rate <= 0:
        raise ConfigError(f"rate_code needs neurons_per_dim >= 1 and max_rate > 0 (got {neurons_per_dim}, "
                          f"{max_rate})")
    low = torch.as_tensor(low, dtype=x.dtype, device=x.device).expand(x.shape[-1])
    high = torch.as_tensor(high, dtype=x.dtype, device=x.device).expand(x.shape[-1])
    frac = torch.linspace(0, 1, neurons_per_dim, dtype=x.dtype, device=x.device)
    centres = low[:, None] + (high - low)[:, None] * frac  # (D, n)
    w = (high - low) / max(neurons_per_dim - 1, 1) if width is None else torch.full_like(low, width)
    xc = torch.minimum(torch.maximum(x, low), high)
    r = max_rate * torch.exp(-0.5 * ((xc[..., None] - centres) / w[:, None]) ** 2)
    return r.flatten(-2)
