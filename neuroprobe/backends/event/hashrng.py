"""The counter-based hash noise in numba: twins of :mod:`neuroprobe.neurons.hash_rng` (same integers).

``lowbias32`` on int64 with 32-bit masks, exactly as the torch functions compute it. Per trial and
step the key (a hash of seed and step) is computed once (:func:`hash_key`); each neuron then costs
one more ``lowbias32`` (:func:`hash_at`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["lowbias32", "hash_key", "hash_at", "hash_uniform32", "byte_sum", "uniform"]

_M32 = np.int64(0xFFFFFFFF)
_INV_2_32 = 1.0 / 2 ** 32


@njit(cache=True, inline="always")
def lowbias32(x: np.int64) -> np.int64:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


@njit(cache=True, inline="always")
def hash_key(seed: np.int64, step: np.int64) -> np.int64:
    """The per-(seed, step) key of :func:`hash_uniform32`."""
    return lowbias32(((np.int64(seed) & _M32) * 0x9E3779B1 + (np.int64(step) & _M32)) & _M32)


@njit(cache=True, inline="always")
def hash_at(key: np.int64, index: np.int64) -> np.int64:
    """``hash_uniform32`` of neuron ``index`` given the step's :func:`hash_key`."""
    return lowbias32((np.int64(index) + key * 0x85EBCA6B) & _M32)


@njit(cache=True)
def hash_uniform32(seed: np.int64, step: np.int64, index: np.int64) -> np.int64:
    """Uniform 32-bit integer in [0, 2**32) (int64) of (seed, step, index)."""
    return hash_at(hash_key(seed, step), index)


@njit(cache=True, inline="always")
def byte_sum(h: np.int64) -> np.int64:
    """``b0 + b1 + b2 + b3 − 510`` of a hash value (in [−510, 510])."""
    return (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255) - 510


@njit(cache=True, inline="always")
def uniform(h: np.int64) -> float:
    """``(h + 0.5) / 2**32`` in float64 (exact)."""
    return (np.float64(h) + 0.5) * _INV_2_32
