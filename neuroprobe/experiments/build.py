"""Turn a validated config into the objects of a run: network, rule, optimizer."""
from __future__ import annotations

import torch

from ..modulators.rpe import RewardPredictionError
from ..network import NetworkSpec, RateNetwork
from ..rules import CETDelayed, ForwardGradient, NRL, RMHL, Reinforce, WeightPerturbation
from ..rules.base import RewardModulatedRule


def network_spec(cfg: dict) -> NetworkSpec:
    return NetworkSpec(**cfg["model"]).validate()


def build_rl_rule(cfg: dict, net: RateNetwork, generator: torch.Generator) -> RewardModulatedRule:
    r, m = cfg["rule"], cfg["modulator"]
    rpe = RewardPredictionError(batch=cfg["seeds"], smoothing=m["smoothing"], scale=m["scale"], init=m["init"])
    name = r["name"]
    if name == "nrl":
        return NRL(net, noise_std=r["noise_std"], passes=r["passes"], clean_pass=r["clean_pass"],
                   noise_norm=r["noise_norm"], rpe=rpe, generator=generator)
    if name == "rmhl":
        return RMHL(net, noise_std=r["noise_std"], rpe=rpe, generator=generator)
    if name == "wp":
        return WeightPerturbation(net, noise_std=r["noise_std"], passes=r["passes"], rpe=rpe, generator=generator)
    if name == "fg":
        return ForwardGradient(net, passes=r["passes"], rpe=rpe, generator=generator)
    return Reinforce(net, rpe=rpe, generator=generator)


def build_cet_rule(cfg: dict, net: RateNetwork) -> CETDelayed:
    r = cfg["rule"]
    return CETDelayed(net, batch=cfg["task"]["batch"], delay=r["delay"], delay_mode=r["delay_mode"],
                      trace=r["trace"], order=r["order"],
                      normalize=None if r["normalize"] == "none" else r["normalize"],
                      beta=r["beta"] or None, trace_on=r["trace_on"])


def build_optimizer(cfg: dict, net: RateNetwork) -> torch.optim.Optimizer:
    r = cfg["rule"]
    if r.get("optimizer", "sgd") == "adam":
        return torch.optim.Adam(net.parameters(), lr=r["lr"])
    return torch.optim.SGD(net.parameters(), lr=r["lr"])
