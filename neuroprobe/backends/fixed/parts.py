"""Run-loop adapters of the fixed-point engine (and of networks stepped on given inputs).

* :class:`GivenInputs` (task): T steps of pre-drawn input spikes, ``(T, N)`` shared by the trials
  or ``(T, B, N)`` per trial (plus optional per-step currents, e.g. the chip's membrane noise for a
  float twin); with a reward protocol (:class:`~neuroprobe.backends.fixed.distal_reward.FixedDistalReward`
  or the float :class:`~neuroprobe.tasks.distal_reward.DistalReward`) the step's reward is its dopamine;
* :class:`NetworkAgent` (agent): a :class:`~neuroprobe.spiking.SpikingNetwork` or
  :class:`~neuroprobe.backends.fixed.network.FixedPointNetwork` stepped on the task's inputs, B
  trials; acts = spikes;
* :class:`FixedRSTDPLearner`: the integer cascade R-STDP
  (:class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP`), weights changed in place.

They need only :mod:`neuroprobe.protocols` (and the state helpers); ``neuroprobe.learners.given_inputs``
re-exports them for ``neuroprobe deploy``.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from ...io.state import restore_like
from ...protocols import ModuleAgent, RuleLearner, Transition

__all__ = ["GivenInputs", "NetworkAgent", "FixedRSTDPLearner", "protocol_state", "load_protocol_state"]


def protocol_state(p) -> dict:
    """State of a reward protocol (FixedDistalReward or DistalReward)."""
    return p.state_dict()


def load_protocol_state(p, s: dict) -> None:
    p.load_state_dict(s)


class GivenInputs:
    """T steps of given inputs (Task protocol), B trials.

    inputs: per input population its (T, N) spikes (every trial the same) or (T, B, N);
    ``dtype``: what the network takes (bool for the fixed point, float64 for float). currents:
    ``t -> {population: (B, N) current}`` for the 1-based step t (added to the observation).
    protocol: a reward protocol stepped with the spikes of ``pops = (pre, post)``; its dopamine is
    the step's reward (else 0). ``info["t"]``: the step just done (1-based)."""

    def __init__(self, inputs: Mapping[str, Tensor], steps: int, dtype: torch.dtype,
                 currents: Callable[[int], dict] | None = None, protocol=None, pops: tuple[str, str] | None = None,
                 batch: int = 1):
        self.inputs, self.T, self.dtype, self.B = dict(inputs), int(steps), dtype, int(batch)
        self.currents, self.protocol, self.pops = currents, protocol, pops
        self.t = 0
        self._zero = torch.zeros(self.B, dtype=torch.int64)

    def _obs(self, t: int) -> dict:
        i = min(t, self.T - 1)  # after the last step: the last inputs again (the loop keeps an observation)
        obs = {}
        if self.currents is not None:
            obs.update(self.currents(i + 1))
        for k, v in self.inputs.items():
            x = v[i] if v.dim() == 3 else v[i:i + 1]
            if x.shape[0] != self.B:
                x = x.expand(self.B, -1)
            obs[k] = x.to(self.dtype, copy=True)
        return obs

    def reset(self, seed: int):
        self.t = 0
        return self._obs(0), {}

    def step(self, z):
        if self.protocol is not None:
            pre, post = self.pops
            reward = self.protocol.step(z[pre], z[post])
        else:
            reward = self._zero
        self.t += 1
        done = torch.full((self.B,), self.t >= self.T)
        return self._obs(self.t), reward, done, torch.zeros(self.B, dtype=torch.bool), {"t": self.t}

    def finished(self) -> bool:
        return self.t >= self.T

    def state_dict(self) -> dict:
        return {"t": self.t, "protocol": protocol_state(self.protocol) if self.protocol is not None else None}

    def load_state_dict(self, s: dict) -> None:
        self.t = int(s["t"])
        if self.protocol is not None:
            load_protocol_state(self.protocol, s["protocol"])


class NetworkAgent(ModuleAgent):
    """A network stepped on the task's inputs, B trials; ``plastic``: float projections whose
    weights a learner changes (clamped to their bounds after each update)."""

    def __init__(self, net, plastic: tuple = (), batch: int = 1):
        self.net, self.plastic, self.B = net, tuple(plastic), int(batch)
        self.fixed = hasattr(net, "fixed_projections")
        self.state = net.init_state(self.B)

    def act(self, obs):
        with torch.no_grad():
            z, self.state = self.net.step(self.state, obs)
        return z

    def voltage(self, name: str) -> Tensor:
        """(N,) membrane potential of trial 0 in the float model's voltage units."""
        return self.net.voltage(self.state, name)[0] if self.fixed else self.state["lif"][name].v[0]

    def constrain(self) -> None:
        with torch.no_grad():
            for pr in self.plastic:
                pr.clamp_()

    def state_dict(self) -> dict:
        if self.fixed:
            return {"state": self.state, "w_mant": {pr.name: pr.w_mant for pr in self.net.fixed_projections}}
        return {"state": self.state, "net": self.net.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.state = restore_like(self.net.init_state(self.B), s["state"])
        if self.fixed:
            for pr in self.net.fixed_projections:
                pr.w_mant = s["w_mant"][pr.name].clone()
        else:
            self.net.load_state_dict(s["net"])


class FixedRSTDPLearner(RuleLearner):
    """The integer cascade R-STDP on chip: ``rule.step(pre spikes, post spikes, dopamine)`` every
    step; the weights change in place (no ``.grad``, no optimizer)."""

    def __init__(self, rule, pre: str, post: str):
        self.rule, self.pre, self.post = rule, pre, post

    def learn(self, tr: Transition) -> bool:
        z = tr.action
        self.rule.step(z[self.pre], z[self.post], tr.reward)
        return False

    def state_dict(self) -> dict:
        r = self.rule
        return {"x": r.x.clone(), "y": r.y.clone(), "e": r.e.clone(), "w_acc": r.w_acc.clone()}

    def load_state_dict(self, s: dict) -> None:
        r = self.rule
        r.x, r.y, r.e, r.w_acc = (s[k].clone() for k in ("x", "y", "e", "w_acc"))
        r.proj.w_mant = r.w_acc >> r.p.frac_bits
