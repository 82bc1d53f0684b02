"""Weight perturbation: perturb every weight, ε ~ N(0, σ²), and compare noisy and clean policies.

    e_l += (1/K) Σ_k ρ_k ε_l,k / ‖ε_k‖²,  ρ_k = log π_{W+ε_k}(a) − log π_W(a)   (NRL paper, Eq. 8)

The clean policy acts. Biases, if any, are perturbed as well.
"""
from __future__ import annotations

import torch

from .._rng import randn
from torch import Tensor

from .._args import check_int, check_number
from ..modulators.rpe import RewardPredictionError
from ..network import RateNetwork
from .base import RewardModulatedRule
from .estimators import log_prob_of, sample_actions


class WeightPerturbation(RewardModulatedRule):
    name = "wp"

    def __init__(self, net: RateNetwork, noise_std: float = 1e-3, passes: int = 1,
                 rpe: RewardPredictionError | None = None, generator: torch.Generator | None = None):
        super().__init__(net, rpe, generator)
        noise_std = check_number("rule.noise_std", noise_std, gt=0)
        passes = check_int("rule.passes", passes, ge=1, le=1_000_000)
        self.noise_std, self.passes = noise_std, passes

    def act(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            a, de = wp_step(self.net, obs, self.noise_std, self.passes, self.generator)
            for e, d in zip(self.elig, de):
                e.add_(d)
        return a


def wp_step(net: RateNetwork, obs: Tensor, noise_std: float, passes: int, generator: torch.Generator | None,
            actions: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
    """One weight-perturbation step; returns (actions, increments in net.parameters() order).

    obs (…, n_in); the network's model axes, if any, must equal … . Each of the K perturbations
    per leading index runs as one batch: weights (…, K, n_out, n_in). Increments are (…, param shape
    without model axes).
    """
    lead = tuple(obs.shape[:-1])
    params = list(net.parameters())
    clean = net.sweep(obs.unsqueeze(-2))
    if actions is None:
        actions = sample_actions(clean.output[..., 0, :], generator)
    mlead = len(net.layers[0].weight.shape) - 2  # model axes of the parameters: () or (M,) == lead
    eps = [randn(lead + (passes,) + tuple(p.shape[mlead:]), generator, p.dtype, p.device) * noise_std
           for p in params]
    perturbed = [p.reshape(tuple(p.shape[:mlead]) + (1,) + tuple(p.shape[mlead:])) + e for p, e in zip(params, eps)]
    weights, biases, it = [], [], iter(perturbed)
    for layer in net.layers:
        weights.append(next(it))
        biases.append(next(it) if layer.bias is not None else None)
    x = obs.unsqueeze(-2).unsqueeze(-2).expand(lead + (passes, 1, obs.shape[-1]))
    noisy = net.sweep(x, weights=weights, biases=biases)
    lp_clean = log_prob_of(clean.logits, actions)                           # (…, 1)
    lp_noisy = log_prob_of(noisy.logits.squeeze(-2), actions)              # (…, K)
    rho = lp_noisy - lp_clean
    norm2 = sum((e * e).flatten(len(lead) + 1).sum(-1) for e in eps)      # (…, K)
    coef = rho / norm2 / passes
    incs = [(coef.reshape(coef.shape + (1,) * (e.dim() - coef.dim())) * e).sum(len(lead)) for e in eps]
    return actions, incs

