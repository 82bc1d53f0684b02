"""Reward-modulated Hebbian learning (RMHL; Legenstein et al. 2010, Miconi 2017) as the NRL
authors ran it: the *noisy* network acts, and every synapse accumulates the product of its
postsynaptic noise and presynaptic activity, e_l += ξ_l ⊗ x̃_l−1 (no normalisation); at reward
times W_l ← W_l + η δ e_l.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._args import check_number
from ..modulators.rpe import RewardPredictionError
from ..network import RateNetwork
from .base import RewardModulatedRule
from .estimators import node_perturbation_increment, sample_actions


class RMHL(RewardModulatedRule):
    name = "rmhl"

    def __init__(self, net: RateNetwork, noise_std: float = 1e-1, rpe: RewardPredictionError | None = None,
                 generator: torch.Generator | None = None):
        super().__init__(net, rpe, generator)
        self.noise_std = check_number("rule.noise_std", noise_std, gt=0)

    def act(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            a, dw, db = rmhl_step(self.net, obs, self.noise_std, self.generator)
            self._accumulate(dw, db)
        return a


def rmhl_step(net: RateNetwork, obs: Tensor, noise_std: float, generator: torch.Generator | None,
              ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One RMHL step: the noisy pass acts; returns (actions, ξ⊗x̃ per layer, ξ per layer)."""
    lead = tuple(obs.shape[:-1])
    x = obs.unsqueeze(-2)
    noise = net.sample_noise(lead + (1,), noise_std, generator)
    sweep = net.sweep(x, noise)
    actions = sample_actions(sweep.output[..., 0, :], generator)
    ones = torch.ones(lead + (1,), dtype=obs.dtype, device=obs.device)
    dw, db = node_perturbation_increment(sweep.inputs, noise, ones)
    return actions, dw, db
