"""Noise-based reward-modulated learning (NRL; node perturbation with an RPE).

Per step, a clean pass and K noisy passes share weights (one batched sweep, passes on axis P).
The action is sampled from the clean policy π (or, without a clean pass, from the mean of the
noisy policies). With ρ_k = log π̃_k(a) − log π(a) the eligibility grows by

    e_l += (1/K) Σ_k ρ_k · ξ_l,k / ‖ξ_k‖² ⊗ x̃_l−1,k          (NRL paper, Eq. 13 and 17)

and at reward times W_l ← W_l + η δ e_l (δ from the RPE). Without a clean pass ("noisy passes
only", the paper's section 3.3), log π(a) is replaced by the mean of log π̃_k(a) over the K passes.

``variant="authors"`` (only without a clean pass) is the noisy-passes-only mode as the NRL authors'
code runs it: K *approximating* passes that draw no noise (so each equals the clean pass) and one
noisy pass ξ; the action is sampled from the last approximating pass, and

    ρ = log π̃(a) − log((1/K) Σ_k π_k(a)),     e_l += ρ · ξ_l / ‖ξ‖² ⊗ x̃_l−1   (the one noisy pass)

Since the approximating passes are noise-free this equals the clean-pass rule with one noisy pass.
``lr_scale`` ("none" | "n_out"): see :mod:`neuroprobe.rules.base`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._args import check_int, check_number
from ..errors import ConfigError
from ..modulators.rpe import RewardPredictionError
from ..network import RateNetwork
from .base import RewardModulatedRule
from .estimators import log_prob_of, node_perturbation_increment, noise_norms, sample_actions


VARIANTS = ("paper", "authors")


class NRL(RewardModulatedRule):
    """Args: noise_std σ of ξ; passes K noisy passes (variant "authors": K noise-free approximating
    passes plus one noisy pass); clean_pass; noise_norm "global"|"layer"; variant "paper"|"authors";
    lr_scale "none"|"n_out"."""

    name = "nrl"

    def __init__(self, net: RateNetwork, noise_std: float = 1e-3, passes: int = 1, clean_pass: bool = True,
                 noise_norm: str = "global", rpe: RewardPredictionError | None = None,
                 generator: torch.Generator | None = None, variant: str = "paper", lr_scale: str = "none"):
        super().__init__(net, rpe, generator, lr_scale=lr_scale)
        noise_std = check_number("rule.noise_std", noise_std, gt=0)
        if not isinstance(clean_pass, bool):
            raise ConfigError(f"rule.clean_pass = {clean_pass!r}: must be True or False")
        passes = check_int("rule.passes", passes, ge=1, le=1_000_000)
        if not clean_pass and passes < 2:
            raise ConfigError(f"rule.passes = {passes!r}: must be >= 2 without a clean pass")
        noise_norms([torch.zeros(1)], noise_norm)  # validates the name
        check_variant(variant, clean_pass)
        self.noise_std, self.passes, self.clean_pass, self.noise_norm = noise_std, passes, clean_pass, noise_norm
        self.variant = variant

    def act(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            a, dw, db = nrl_step(self.net, obs, self.noise_std, self.passes, self.clean_pass, self.noise_norm,
                                 self.generator, variant=self.variant)
            self._accumulate(dw, db)
        return a


def check_variant(variant: str, clean_pass: bool) -> str:
    """``variant`` if it is known and fits ``clean_pass``, else a one-line ConfigError."""
    if variant not in VARIANTS:
        raise ConfigError(f"rule.variant = {variant!r}: allowed {list(VARIANTS)}")
    if variant == "authors" and clean_pass:
        raise ConfigError("rule.variant = 'authors' is the noisy-passes-only mode: it needs rule.clean_pass = false")
    return variant


def nrl_step(net: RateNetwork, obs: Tensor, noise_std: float, passes: int, clean_pass: bool, noise_norm: str,
             generator: torch.Generator | None, actions: Tensor | None = None, variant: str = "paper",
             ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One NRL step, pure apart from the RNG: returns (actions, weight increments, bias increments).

    obs: (…, n_in). If ``actions`` (…) is given it is used instead of sampling (alignment diagnostic).
    ``variant="authors"`` (with ``clean_pass=False``): see the module docstring.
    """
    if check_variant(variant, clean_pass) == "authors":
        return _nrl_step_authors(net, obs, noise_std, passes, noise_norm, generator, actions)
    lead = tuple(obs.shape[:-1])
    n_pass = passes + int(clean_pass)
    x = obs.unsqueeze(-2).expand(lead + (n_pass, obs.shape[-1]))
    noise = net.sample_noise(lead + (n_pass,), noise_std, generator)
    if clean_pass:
        for n in noise:
            n[..., 0, :] = 0.0
    sweep = net.sweep(x, noise)
    if actions is None:
        probs = sweep.output[..., 0, :] if clean_pass else sweep.output.mean(-2)
        actions = sample_actions(probs, generator)
    lp = log_prob_of(sweep.logits, actions)
    if clean_pass:
        rho = lp[..., 1:] - lp[..., :1]
        noisy = slice(1, None)
    else:
        rho = lp - lp.mean(-1, keepdim=True)
        noisy = slice(None)
    xi = [n[..., noisy, :] for n in noise]
    inputs = [i[..., noisy, :] for i in sweep.inputs]
    coef = [rho / n2 for n2 in noise_norms(xi, noise_norm)]
    dw, db = node_perturbation_increment(inputs, xi, coef)
    return actions, dw, db


def _nrl_step_authors(net: RateNetwork, obs: Tensor, noise_std: float, passes: int, noise_norm: str,
                      generator: torch.Generator | None, actions: Tensor | None,
                      ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The authors' noisy-passes-only step: passes 0..K−1 approximate the clean pass and draw no
    noise; pass K is the one noisy pass (the only noise drawn: ξ of shape (…, 1, n_l))."""
    lead = tuple(obs.shape[:-1])
    k = passes
    x = obs.unsqueeze(-2).expand(lead + (k + 1, obs.shape[-1]))
    xi = net.sample_noise(lead + (1,), noise_std, generator)
    noise = [torch.cat([torch.zeros(lead + (k, n.shape[-1]), dtype=n.dtype, device=n.device), n], -2) for n in xi]
    sweep = net.sweep(x, noise)
    if actions is None:
        # the authors sample from the last approximating pass (all of them equal the clean policy)
        actions = sample_actions(sweep.output[..., k - 1, :], generator)
    lp = log_prob_of(sweep.logits, actions)                                  # (…, K+1)
    # log of the mean *probability* of the approximating passes, log((1/K) Σ_k π_k(a))
    lp_approx = torch.logsumexp(lp[..., :k], -1, keepdim=True) - math.log(k)
    rho = lp[..., k:] - lp_approx                                            # (…, 1)
    inputs = [i[..., k:, :] for i in sweep.inputs]
    coef = [rho / n2 for n2 in noise_norms(xi, noise_norm)]
    return (actions,) + node_perturbation_increment(inputs, xi, coef)
