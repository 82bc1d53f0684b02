"""Pure functions: the local eligibility increments of the perturbation rules.

Shapes: ``…`` are leading batch axes (models, states); ``K`` is the axis of noisy passes (or
noise samples), which every function averages over. Layer l has presynaptic activity x̃ (…, K, n_in)
and node noise ξ (…, K, n_out). The increments have the shape of the layer's weight with the
leading axes kept: (…, n_out, n_in), and of its bias: (…, n_out).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._rng import multinomial

from ..errors import ConfigError, NonFiniteError

NOISE_NORMS = ("global", "layer")


def noise_norms(noise: list[Tensor], mode: str = "global") -> list[Tensor]:
    """‖ξ‖² per pass, (…, K), for each layer: summed over all layers ("global", the NRL authors'
    episodic tasks) or over the layer's own units ("layer", their Reaching task)."""
    per_layer = [(n * n).sum(-1) for n in noise]
    if mode == "layer":
        return per_layer
    if mode == "global":
        total = torch.stack(per_layer).sum(0)
        return [total] * len(noise)
    raise ConfigError(f"rule.noise_norm = {mode!r}: allowed {list(NOISE_NORMS)}")


def node_perturbation_increment(inputs: list[Tensor], noise: list[Tensor], coef: list[Tensor] | Tensor,
                                ) -> tuple[list[Tensor], list[Tensor]]:
    """Σ_k coef_k · ξ_k ⊗ x̃_k / K for every layer (weights) and Σ_k coef_k ξ_k / K (biases).

    NRL uses coef = ρ / ‖ξ‖²; RMHL uses coef = 1. ``coef`` is (…, K) or a per-layer list of them.
    """
    coefs = coef if isinstance(coef, list) else [coef] * len(noise)
    dw, db = [], []
    for x, xi, c in zip(inputs, noise, coefs):
        k = xi.shape[-2]
        cxi = xi * (c.unsqueeze(-1) / k)
        dw.append(torch.einsum("...ko,...ki->...oi", cxi, x))
        db.append(cxi.sum(-2))
    return dw, db


def log_prob_of(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a) for logits (…, P, A) and actions (…) shared by all P passes -> (…, P)."""
    logp = torch.log_softmax(logits, dim=-1)
    idx = actions.reshape(actions.shape + (1, 1)).expand(logp.shape[:-1] + (1,))
    return logp.gather(-1, idx).squeeze(-1)


def sample_actions(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One categorical sample per row of probs (…, A) -> (…) long."""
    flat = probs.reshape(-1, probs.shape[-1]).to(torch.float64).clamp_min(0)
    if not torch.isfinite(flat).all():
        raise NonFiniteError("policy probabilities became NaN/Inf (the logits overflowed)")
    return multinomial(flat, generator).reshape(probs.shape[:-1])
