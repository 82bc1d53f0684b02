"""Node perturbation on spiking networks: membrane-noise neurons and an RPE-gated eligibility.

Stochastic LIF neurons (``noise = "membrane"``) receive an input current
``i_in(t) = Σ_j w_ij z_j(t−1) + ξ_i(t)`` with ξ ~ N(0, σ²) drawn fresh every step. For a projection
into such a population the eligibility accumulated over an episode is the likelihood ratio of the
injected noise (the exact REINFORCE gradient of Gaussian current perturbations, NRL's node
perturbation on spiking neurons):

    e_s += ξ_{post_s}(t) / σ² · z_{pre_s}(t − 1)         (per synapse s, per trial)

At the episode's end the reward-prediction error δ = RPE(R) (the core's
:class:`~neuroprobe.modulators.RewardPredictionError`) gates it: ``weight.grad = −δ · e``, so
``SGD(lr=η).step()`` performs w ← w + η δ e (E[δ e] = ∇_w E[R]); e is reset for finished trials.

Shapes: spikes (B, n), noise (B, n_post), eligibility and per-trial weights (B, S).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._args import check_batch, check_number
from ..errors import ConfigError
from ..modulators.rpe import RewardPredictionError
from ..spiking.network import Projection

__all__ = ["SpikingNRL"]


class SpikingNRL:
    """Node-perturbation eligibility for the projections into noisy LIF populations.

    Args:
        projections: plastic projections with per-trial weights (B, S); each post population must
            use membrane noise with σ = ``noise_std[proj.name]`` > 0.
        noise_std: {projection name: σ of its post population's noise current}.
        batch: B trials. rpe: the reward-prediction error (default: λ = 0.66, scale "abs_reward").
    """

    name = "nrl"

    def __init__(self, projections: list[Projection], noise_std: dict[str, float], batch: int,
                 rpe: RewardPredictionError | None = None):
        batch = check_batch(batch)
        if not isinstance(noise_std, dict):
            raise ConfigError(f"noise_std = {noise_std!r}: must be a dict {{projection name: σ}}")
        for p in projections:
            if p.name in noise_std:
                check_number(f"noise_std[{p.name!r}]", noise_std[p.name], gt=0)
            if noise_std.get(p.name, 0) <= 0:
                raise ConfigError(f"rule 'nrl' on projection {p.name}: its post population {p.spec.post!r} needs "
                                  "membrane noise (lif.noise = \"membrane\", noise_std > 0)")
            if p.weight.dim() != 2 or p.weight.shape[0] != batch:
                raise ConfigError(f"rule 'nrl' needs per-trial weights (B, S) on {p.name}")
        self.projections, self.batch = list(projections), batch
        self.inv_var = {p.name: 1.0 / noise_std[p.name] ** 2 for p in projections}
        self.rpe = rpe if rpe is not None else RewardPredictionError(batch=batch, scale="abs_reward")
        self.elig = [torch.zeros_like(p.weight, dtype=torch.float64) for p in projections]

    def accumulate(self, z_prev: dict[str, Tensor], noise: dict[str, Tensor | None],
                   active: Tensor | None = None) -> None:
        """Add one step's ξ·z_pre to the eligibility. z_prev: the spikes the step's input came from
        (the state's ``z`` before the step); noise: the step's ``state["noise"]``; active (B,) bool."""
        for p, e in zip(self.projections, self.elig):
            xi = noise[p.spec.post]
            inc = (xi[:, p.post] * z_prev[p.spec.pre][:, p.pre]).double() * self.inv_var[p.name]
            if active is not None:
                inc = inc * active[:, None].to(inc.dtype)
            e.add_(inc)

    def reinforce(self, reward: Tensor, mask: Tensor) -> Tensor:
        """δ = RPE(reward) for trials in ``mask`` (B,) bool; writes ``weight.grad``; resets their
        eligibility. Returns δ (B,) (0 outside the mask)."""
        delta = self.rpe(reward.double(), mask)
        d = torch.where(mask, delta, torch.zeros_like(delta))
        for p, e in zip(self.projections, self.elig):
            p.weight.grad = (-(d[:, None] * e)).to(p.weight.dtype)
            e.mul_((~mask)[:, None].to(e.dtype))
        return d

    def state_dict(self) -> dict:
        return {"elig": [e.clone() for e in self.elig], "rpe": self.rpe.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        for e, v in zip(self.elig, s["elig"]):
            e.copy_(v)
        self.rpe.load_state_dict(s["rpe"])
