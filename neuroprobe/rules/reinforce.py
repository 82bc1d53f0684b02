"""BP baseline: REINFORCE by autograd with the same running-average RPE baseline.

    e += ∇_θ log π(a_t | s_t)  each step;   θ ← θ + η δ e  at reward times,

i.e. gradient descent on −Σ_t log π(a_t|s_t) δ (NRL paper, Eq. 6; the authors' BP baseline).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..modulators.rpe import RewardPredictionError
from ..network import RateNetwork
from .base import RewardModulatedRule
from .estimators import log_prob_of, sample_actions


class Reinforce(RewardModulatedRule):
    name = "bp"

    def __init__(self, net: RateNetwork, rpe: RewardPredictionError | None = None,
                 generator: torch.Generator | None = None):
        super().__init__(net, rpe, generator)

    def act(self, obs: Tensor) -> Tensor:
        with torch.enable_grad():
            sweep = self.net.sweep(obs.unsqueeze(-2))
            with torch.no_grad():
                a = sample_actions(sweep.output[..., 0, :], self.generator)
            lp = log_prob_of(sweep.logits, a).sum()  # models are independent: per-model gradients
            grads = torch.autograd.grad(lp, self.params)
        for e, g in zip(self.elig, grads):
            e.add_(g)
        return a
