"""Shared pieces of the float64 CET references (tests/test_fidelity_options.py, tests/test_cet_salience.py).

Written from the papers' formulas, independent of neuroprobe's trace code: the Erlang cascade kernel
by direct evaluation, a tiny float64 MLP with random biases, and random input/label streams.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from neuroprobe.network import NetworkSpec, RateNetwork

F64 = torch.float64


def cet_kernel(kind: str, order: int, normalize: str, delay: int, length: int) -> np.ndarray:
    """h[k], k = 0..length−1: Erlang cascade k^(n−1) e^(−ak)/(n−1)!, a = (n−1)/D (peak at k = D),
    or a Dirac at D ("perfect"); D = 0 is no trace (h[0] = 1). normalize: "peak" (max 1), "area"
    (sum 1 over 50 000 steps) or "none"."""
    k = np.arange(length, dtype=np.float64)
    if delay == 0:
        return (k == 0).astype(np.float64)
    if kind == "perfect":
        return (k == delay).astype(np.float64)
    a = (order - 1) / delay
    raw = k ** (order - 1) * np.exp(-a * k) / math.factorial(order - 1)
    if normalize == "peak":
        return raw / (delay ** (order - 1) * math.exp(-a * delay) / math.factorial(order - 1))
    if normalize == "area":
        kk = np.arange(50_000, dtype=np.float64)
        return raw / float((kk ** (order - 1) * np.exp(-a * kk) / math.factorial(order - 1)).sum())
    return raw


def cet_net(sizes: list[int], seed: int = 0) -> RateNetwork:
    """A float64 MLP with Kaiming-uniform weights and N(0, 0.3²) biases (so biases matter)."""
    net = RateNetwork(NetworkSpec(sizes, bias=True, init="kaiming_uniform"),
                      generator=torch.Generator().manual_seed(seed), dtype=F64)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=F64) * 0.3)
    return net


def cet_data(sizes: list[int], batch: int, steps: int, seed: int, scale: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``steps`` pairs of inputs (batch, sizes[0]) ~ N(0, scale²) and labels (batch,) in 0..sizes[-1]−1."""
    g = np.random.default_rng(seed)
    return [(g.standard_normal((batch, sizes[0])) * scale, g.integers(0, sizes[-1], batch)) for _ in range(steps)]


def assert_close(got, want, tol: float, what: str = "") -> None:
    """max |got − want| <= tol · max |want| (relative to the reference's scale)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-300)
    assert err <= tol * scale, (what, err, scale)
