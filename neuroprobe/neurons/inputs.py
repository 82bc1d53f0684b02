"""Input populations: Poisson spike sources and rate coding of observations.

Shapes: rates (B, N) in Hz; spikes (B, N) in {0, 1}; dt in seconds.

Poisson spikes come from a ``torch.Generator`` or, given a
:class:`~neuroprobe.neurons.lif.HashKey`, from the counter-based hash of
:mod:`neuroprobe.neurons.hash_rng` (spike where ``(h + 0.5)/2**32 < p``, p promoted to float64): the
same spikes in every engine.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from .hash_rng import hash_uniform

__all__ = ["poisson_spikes", "poisson_probability", "rate_code"]


def poisson_probability(rates: Tensor, dt: float) -> Tensor:
    """P(spike) within one step, ``−expm1(−rate·dt)``, in the dtype of ``rates`` (every engine's p)."""
    if (rates < 0).any():
        raise ConfigError("poisson rates must be >= 0 Hz")
    return -torch.expm1(-rates * dt)


def poisson_spikes(rates: Tensor, dt: float, generator: torch.Generator | None = None, hash_key=None) -> Tensor:
    """One step of independent Poisson (Bernoulli) spikes: P(spike) = 1 − exp(−rate·dt).

    hash_key: a :class:`~neuroprobe.neurons.lif.HashKey` (seeds (B, 1), 1-based step, global neuron
    indices (N,)) to draw from the counter-based hash instead of ``generator``."""
    p = poisson_probability(rates, dt)
    if hash_key is not None:
        return (hash_uniform(*hash_key) < p).to(p.dtype)
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
