"""The distal-reward problem as tasks of the run loop (:mod:`neuroprobe.loop`).

* :class:`DistalRewardTask` (torch engine): one loop step is one network step of dt. The action is
  the step's spikes ``{population: (B, N)}``; the task's
  :class:`~neuroprobe.tasks.distal_reward.DistalReward` protocol turns the rewarded synapses'
  coincidences into delayed rewards and returns the dopamine (B,), plus a constant tonic
  dopamine if given, as the step's reward. The
  observation is None (the network has no external input). ``info["time"]`` is the simulated time
  (s) at the end of the step.
* :class:`TrialChunks` (Brian2): trials simulated one after another, each in chunks of at most
  ``chunk`` network steps. The observation ``(trial, step)`` tells the agent what to simulate next
  (``step == 0``: a new trial starts); the action is what the chunk produced (its metrics rows).
"""
from __future__ import annotations

import math

import numpy as np

from .distal_reward import DistalReward

__all__ = ["DistalRewardTask", "TrialChunks"]


class DistalRewardTask:
    """Task protocol over :class:`DistalReward` for ``n_steps`` network steps (see the module docstring).

    tonic: a constant dopamine (>= 0) added to the protocol's in the reward (the dopamine the rule
    sees: Izhikevich's ``0.002 + DA``), in float64; 0: the protocol's dopamine itself."""

    def __init__(self, protocol: DistalReward, pre: str, post: str, n_steps: int, tonic: float = 0.0):
        from ..errors import ConfigError

        if isinstance(tonic, bool) or not isinstance(tonic, (int, float)) or not (tonic >= 0 and math.isfinite(tonic)):
            raise ConfigError(f"task.tonic_dopamine = {tonic!r}: must be a finite number >= 0")
        self.protocol, self.pre, self.post, self.n_steps = protocol, pre, post, int(n_steps)
        self.tonic = float(tonic)
        self._false = np.zeros(protocol.B, dtype=bool)

    def reset(self, seed: int):
        return None, {}

    def step(self, spikes: dict):
        d = self.protocol.step(spikes[self.pre], spikes[self.post])
        if self.tonic:
            d = d + self.tonic
        return None, d, self._false.copy(), self._false.copy(), {"time": self.protocol.step_index * self.protocol.dt}

    def finished(self) -> bool:
        return self.protocol.step_index >= self.n_steps

    @property
    def dopamine(self):
        return self.protocol.dopamine

    def state_dict(self) -> dict:
        return self.protocol.state_dict()

    def load_state_dict(self, s: dict) -> None:
        self.protocol.load_state_dict({**s, "step_index": int(s["step_index"])})


class TrialChunks:
    """``trials`` trials of ``n_steps`` steps each, one loop step per chunk of at most ``chunk`` steps."""

    def __init__(self, trials: int, n_steps: int, chunk: int):
        self.trials, self.n_steps, self.chunk = int(trials), int(n_steps), int(chunk)
        self.trial, self.t = 0, 0

    def reset(self, seed: int):
        return (self.trial, self.t), {}

    def next_chunk(self) -> int:
        """Steps the agent simulates for the current observation."""
        return min(self.chunk, self.n_steps - self.t)

    def step(self, action):
        self.t += self.next_chunk()
        ended = self.t >= self.n_steps
        info = {"trial": self.trial, "trial_ended": ended}
        if ended:
            self.trial, self.t = self.trial + 1, 0
        flag = np.array([ended])
        return (self.trial, self.t), np.zeros(1), flag, np.zeros(1, dtype=bool), info

    def finished(self) -> bool:
        return self.trial >= self.trials

    def steps_done(self) -> int:
        return self.trial * self.n_steps + self.t

    def state_dict(self) -> dict:
        if self.t != 0:  # checkpoints are taken at trial boundaries only (a Brian2 model cannot be saved)
            raise RuntimeError(f"TrialChunks.state_dict in the middle of trial {self.trial} (step {self.t})")
        return {"trial": self.trial}

    def load_state_dict(self, s: dict) -> None:
        self.trial, self.t = int(s["trial"]), 0
