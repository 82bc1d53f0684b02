"""Dopamine-like reward-prediction error with a running-average reward prediction.

    δ = r − r̄            (NRL paper, Eq. 2 / 14)
    r̄ ← r̄ + λ (r − r̄)     (Eq. 1 / 15), applied after δ is computed

Scaling options (the papers'): ``"none"``; ``"abs_reward"`` divides δ by |r| (NRL authors' code for
CartPole and Acrobot, "to stabilise synaptic updates"); ``"std"`` divides by a running standard
deviation of r. The baseline is initialised to the first reward (``init="first"``, the authors'
choice, so the first δ is 0) or to a given number.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._args import check_batch, check_number
from ..errors import ConfigError

SCALES = ("none", "abs_reward", "std")


class RewardPredictionError:
    """Running-average RPE over a batch of B independent learners (one baseline each).

    Args:
        batch: B, the number of independent baselines (e.g. seeds).
        smoothing: λ in (0, 1].
        scale: one of SCALES.
        init: "first" or a float for r̄ at start.
        eps: floor for the divisor of the scaled variants.
    """

    def __init__(self, batch: int = 1, smoothing: float = 0.66, scale: str = "none",
                 init: str | float = "first", eps: float = 1e-8, dtype: torch.dtype = torch.float64):
        batch = check_batch(batch)
        smoothing = check_number("modulator.smoothing", smoothing, gt=0, le=1)
        eps = check_number("modulator.eps", eps, gt=0)
        if scale not in SCALES:
            raise ConfigError(f"modulator.scale = {scale!r}: allowed {list(SCALES)}")
        if init != "first":
            if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
                raise ConfigError(f"modulator.init = {init!r}: allowed 'first' or a finite number")
        self.smoothing, self.scale, self.init, self.eps = smoothing, scale, init, eps
        self.baseline = torch.zeros(batch, dtype=dtype)
        self.seen = torch.zeros(batch, dtype=torch.bool)
        self.var = torch.ones(batch, dtype=dtype)  # running variance, for scale="std"
        if init != "first":
            self.baseline.fill_(float(init))
            self.seen.fill_(True)

    def __call__(self, reward: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return δ (B,) for rewards (B,) and update the baselines where mask (B,) is True.

        Entries outside the mask get δ = 0 and keep their baseline.
        """
        r = torch.as_tensor(reward, dtype=self.baseline.dtype).reshape(self.baseline.shape)
        m = torch.ones_like(self.seen) if mask is None else torch.as_tensor(mask, dtype=torch.bool).reshape(self.seen.shape)
        first = m & ~self.seen
        self.baseline = torch.where(first, r, self.baseline)
        self.seen = self.seen | m
        delta = r - self.baseline
        if self.scale == "abs_reward":
            delta = delta / r.abs().clamp_min(self.eps)
        elif self.scale == "std":
            delta = delta / self.var.sqrt().clamp_min(self.eps)
        lam = self.smoothing
        err = r - self.baseline
        self.baseline = torch.where(m, self.baseline + lam * err, self.baseline)
        self.var = torch.where(m & ~first, (1 - lam) * self.var + lam * err**2, self.var)
        return torch.where(m, delta, torch.zeros_like(delta))

    def state_dict(self) -> dict:
        return {"baseline": self.baseline.clone(), "seen": self.seen.clone(), "var": self.var.clone()}

    def load_state_dict(self, d: dict) -> None:
        self.baseline, self.seen, self.var = d["baseline"].clone(), d["seen"].clone(), d["var"].clone()
