"""Counter-based noise: a stateless hash of (seed, step, neuron) instead of a random generator.

The same integers come out of torch (here), numba (:mod:`neuroprobe.backends.event.hashrng`) and
NumPy (the Lava side's ``intmath``), so engines that draw their noise this way produce identical
spike trains without shipping noise arrays. The hash is Chris Wellons' "lowbias32" applied twice
(to a key of seed and step, then to the neuron index plus the key); all arithmetic is int64 with
32-bit masks.

Conventions (every engine): trial ``b`` uses seed ``noise_seed + b``; ``step`` is the 1-based step
number t; ``index`` is the global neuron index (the offset of its population, in spec order over
all population kinds, plus its index within the population).

* membrane noise current: ``s · c`` with ``s = b0 + b1 + b2 + b3 − 510`` (the four bytes of the
  hash, an integer in [−510, 510], sd :data:`NOISE_SD_BYTES`) and ``c = dtype(σ / NOISE_SD_BYTES)``;
* uniform for escape noise and Poisson spikes: ``u = (h + 0.5) / 2**32`` in float64 (in (0, 1),
  exact); spike if ``u < p``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["hash_uniform32", "hash_noise", "hash_byte_sum", "hash_membrane_noise", "hash_uniform",
           "NOISE_SD_BYTES", "M32"]

M32 = 0xFFFFFFFF
NOISE_SD_BYTES = math.sqrt(4 * (256 ** 2 - 1) / 12)  # sd of a sum of 4 uniform bytes (≈ 147.8)
_INV_2_32 = 1.0 / 2 ** 32


def _lowbias32(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def hash_uniform32(seed: int | Tensor, step: int, index: Tensor) -> Tensor:
    """Uniform 32-bit integers (int64 in [0, 2**32)) for each entry of ``index`` at ``step``;
    ``seed`` an int or an int64 tensor broadcasting against ``index`` (e.g. (B, 1) per trial)."""
    seed = torch.as_tensor(seed, dtype=torch.int64)
    key = _lowbias32(((seed & M32) * 0x9E3779B1 + (step & M32)) & M32)
    return _lowbias32((index.to(torch.int64) + key * 0x85EBCA6B) & M32)


def hash_byte_sum(seed: int | Tensor, step: int, index: Tensor) -> Tensor:
    """``b0 + b1 + b2 + b3 − 510`` of :func:`hash_uniform32` (int64 in [−510, 510]; Irwin–Hall of
    four bytes: mean 0, sd :data:`NOISE_SD_BYTES`)."""
    h = hash_uniform32(seed, step, index)
    return (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255) - 510


def hash_noise(seed: int | Tensor, step: int, index: Tensor, mant: int, shift: int) -> Tensor:
    """Approximately Gaussian integer noise (the fixed-point engines'):
    ``((b0 + b1 + b2 + b3 − 510) · mant) >> shift``."""
    return (hash_byte_sum(seed, step, index) * mant) >> shift


def hash_membrane_noise(seeds: Tensor, t: int, index: Tensor, c: Tensor) -> Tensor:
    """Membrane-noise current of the float engines: ``s · c`` (B, N) in ``c``'s dtype.

    seeds: (B, 1) int64 (``noise_seed + b``); t: 1-based step; index: (N,) global neuron indices;
    c: 0-dim tensor ``dtype(σ / NOISE_SD_BYTES)`` (s is exact in every float dtype, so the product
    is rounded once, in the network's dtype)."""
    return hash_byte_sum(seeds, t, index).to(c.dtype) * c


def hash_uniform(seeds: Tensor, t: int, index: Tensor) -> Tensor:
    """Uniforms ``(h + 0.5) / 2**32`` (float64, exact, in (0, 1)) of shape broadcast(seeds, index):
    spike where ``u < p`` (p promoted to float64)."""
    return (hash_uniform32(seeds, t, index).to(torch.float64) + 0.5) * _INV_2_32
