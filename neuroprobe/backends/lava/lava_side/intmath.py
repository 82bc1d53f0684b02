"""Integer helpers of the Lava-side ProcessModels (NumPy only; the torch side has its own copies in
neuroprobe/backends/fixed/lif.py and neuroprobe/backends/fixed/rstdp.py, and the tests compare them)."""
from __future__ import annotations

import numpy as np

M32 = 0xFFFFFFFF
MAX24 = 2 ** 23 - 1


# ------------------------------------------------------------------ integer helpers (NumPy)
def lowbias32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def hash_uniform32(seed: int, step: int, index: np.ndarray) -> np.ndarray:
    key = lowbias32(np.int64(((seed & M32) * 0x9E3779B1 + (step & M32)) & M32))
    return lowbias32((index.astype(np.int64) + key * 0x85EBCA6B) & M32)


def hash_noise(seed: int, step: int, index: np.ndarray, mant: int, shift: int) -> np.ndarray:
    h = hash_uniform32(seed, step, index)
    s = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255) - 510
    return (s * mant) >> shift


def decay_trunc(x: np.ndarray, factor: int) -> np.ndarray:
    """trunc(x·factor/4096) (Lava's LIF decay rounding)."""
    y = x.astype(np.int64) * factor
    return np.sign(y) * (np.abs(y) >> 12)


def round_shift(x: np.ndarray, bits: int) -> np.ndarray:
    """round(x / 2**bits), halves up: (x + 2**(bits−1)) >> bits."""
    return (x + (1 << (bits - 1))) >> bits if bits > 0 else x
