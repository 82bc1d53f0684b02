"""Forward gradient: the directional derivative of log π along random tangents, by forward-mode AD.

Per step, K tangent directions v_k ~ N(0, I) (same shapes as the parameters, all parameters
together) are drawn and the directional derivative d_k = ∇_θ log π(a|s) · v_k is computed with
``torch.func.jvp`` (one forward pass carrying tangents; no backward pass, no activity stored for
one). The eligibility grows by

    e += (1/K) Σ_k d_k v_k

which is an unbiased estimate of ∇_θ log π(a|s), because E[v vᵀ] = I (Baydin et al. 2022,
"Gradients without backpropagation"; the survey's forward-gradient family). At reward times
θ ← θ + η δ e (δ from the RPE), as for every reward-modulated rule. The clean policy acts; biases
are perturbed along with the weights.
"""
from __future__ import annotations

import torch

from .._rng import randn
from torch import Tensor

from .._args import check_int
from ..modulators.rpe import RewardPredictionError
from ..network import RateNetwork
from .base import RewardModulatedRule
from .estimators import log_prob_of, sample_actions


class ForwardGradient(RewardModulatedRule):
    """Args: passes K random tangents per step (the estimate's variance falls as 1/K)."""

    name = "fg"

    def __init__(self, net: RateNetwork, passes: int = 1, rpe: RewardPredictionError | None = None,
                 generator: torch.Generator | None = None):
        super().__init__(net, rpe, generator)
        self.passes = check_int("rule.passes", passes, ge=1, le=1_000_000)

    def act(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            a, de = fg_step(self.net, obs, self.passes, self.generator)
            for e, d in zip(self.elig, de):
                e.add_(d)
        return a


def fg_step(net: RateNetwork, obs: Tensor, passes: int, generator: torch.Generator | None,
            actions: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
    """One forward-gradient step; returns (actions, increments in net.parameters() order).

    obs (…, n_in); the network's model axes, if any, must equal … (obs (M, n_in) with weights
    (M, n_out, n_in)), else the parameters are shared by all leading indices (obs (T, n_in), as in
    :mod:`neuroprobe.align`). Actions (…) are sampled from the clean policy unless given. Tangents
    v are (…, K, param shape without model axes); all K directions of all leading indices run as
    one batched jvp. Increments are (…, param shape without model axes):
    (1/K) Σ_k (∇ log π(a|s) · v_k) v_k.
    """
    lead = tuple(obs.shape[:-1])
    params = [p.detach() for p in net.parameters()]
    if actions is None:
        clean = net.sweep(obs.unsqueeze(-2))
        actions = sample_actions(clean.output[..., 0, :], generator)
    mlead = len(net.layers[0].weight.shape) - 2  # model axes of the parameters: () or (M,) == lead
    tangents = [randn(lead + (passes,) + tuple(p.shape[mlead:]), generator, p.dtype, p.device) for p in params]
    # jvp needs primals shaped like their tangents (and not expanded views): every direction
    # sees the same weights, copied once per direction
    primals = [p.reshape(tuple(p.shape[:mlead]) + (1,) + tuple(p.shape[mlead:])).expand_as(v).contiguous()
               for p, v in zip(params, tangents)]
    has_bias = [layer.bias is not None for layer in net.layers]
    x = obs.unsqueeze(-2).unsqueeze(-2).expand(lead + (passes, 1, obs.shape[-1]))

    def log_pi(*flat: Tensor) -> Tensor:
        weights, biases, it = [], [], iter(flat)
        for b in has_bias:
            weights.append(next(it))
            biases.append(next(it) if b else None)
        logits = net.sweep(x, weights=weights, biases=biases).logits.squeeze(-2)   # (…, K, A)
        return log_prob_of(logits, actions)                                          # (…, K)

    _, deriv = torch.func.jvp(log_pi, tuple(primals), tuple(tangents))            # d_k, (…, K)
    coef = deriv / passes
    incs = [(coef.reshape(coef.shape + (1,) * (v.dim() - coef.dim())) * v).sum(len(lead)) for v in tangents]
    return actions, incs


def directional_derivative(net: RateNetwork, obs: Tensor, actions: Tensor, tangents: list[Tensor]) -> Tensor:
    """∇_θ log π(a|s) · v by ``torch.func.jvp`` for one tangent v (a list in net.parameters() order,
    parameter shapes); obs (…, n_in), actions (…) -> (…). Exposed for tests and diagnostics."""
    params = tuple(p.detach() for p in net.parameters())

    def log_pi(*flat: Tensor) -> Tensor:
        weights, biases, it = [], [], iter(flat)
        for layer in net.layers:
            weights.append(next(it))
            biases.append(next(it) if layer.bias is not None else None)
        return log_prob_of(net.sweep(obs.unsqueeze(-2), weights=weights, biases=biases).logits, actions)[..., 0]

    _, d = torch.func.jvp(log_pi, params, tuple(tangents))
    return d
