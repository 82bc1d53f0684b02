"""The distal reward problem (Izhikevich 2007, Cerebral Cortex 17:2443) as a protocol on a network.

One synapse s* = (i → j) of a recurrent projection is chosen. Whenever neuron j fires within
``window`` seconds after neuron i (a pre→post coincidence of the rewarded synapse), a reward is
scheduled ``U(delay_min, delay_max)`` seconds later, amid the ongoing activity of the whole
network. Each delivered reward increments the dopamine concentration, which decays with
``dopamine_tau``:

    d ← d · exp(−dt/τ_d) + amp · (#rewards delivered this step)

The learner (R-STDP with an eligibility trace) must make w_{s*} grow well above the other
synapses although every synapse's coincidences are rewarded at random times too.

Batch: B independent trials (seeds), each with its own rewarded synapse (``rewarded`` (B,)) and
its own pending rewards. Tensors: spikes (B, N); dopamine (B,).

Reward delays: drawn from ``generator`` (``rng = "generator"``), or counter-based (``rng =
"hash"``, what the event engine computes in compiled code): on a hit of trial k at the 1-based step
t, ``u = (hash_uniform32(seeds[k], t, hash_index) + 0.5) / 2**32`` (``hash_index``: one past the
network's last neuron, a counter no neuron's noise uses).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["DistalReward", "window_steps"]


def window_steps(window: float, dt: float) -> int:
    """The coincidence window in steps: post lags ``1 … window_steps`` after the pre spike count
    (``floor(window/dt)``, with a tolerance for the rounding of ``window/dt``: 10 ms at 1 ms is 10
    steps). Every float engine's protocol uses this integer; the fixed-point protocol's
    ``round(window/dt)`` is the same for windows that are whole numbers of steps."""
    return max(1, int(math.floor(window / dt + 1e-9)))


class DistalReward:
    """Reward protocol for one rewarded synapse per trial.

    Args:
        pre, post: (B,) neuron indices (in the pre and post populations) of each trial's rewarded synapse.
        dt: step (s). window: coincidence window (s). delay_min, delay_max: reward delay range (s).
        dopamine_tau: decay of d (s). dopamine_amp: increment per reward.
        generator: draws the reward delays (``rng = "generator"``).
        rng: "generator" or "hash" (see the module docstring); seeds: (B,) hash seeds per trial
        (``rng = "hash"``); hash_index: the hash counter of the delays.
    """

    def __init__(self, pre: Tensor, post: Tensor, dt: float, window: float = 10e-3, delay_min: float = 1.0,
                 delay_max: float = 3.0, dopamine_tau: float = 0.2, dopamine_amp: float = 0.5,
                 generator: torch.Generator | None = None, rng: str = "generator", seeds: Tensor | None = None,
                 hash_index: int = 0):
        if rng not in ("generator", "hash"):
            raise ConfigError(f"rng = {rng!r}: allowed 'generator' or 'hash'")
        if rng == "hash" and (seeds is None or torch.as_tensor(seeds).numel() != torch.as_tensor(pre).numel()):
            raise ConfigError("rng = 'hash' needs seeds, one per trial")
        self.rng, self.hash_index = rng, int(hash_index)
        self.seeds = None if seeds is None else torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
        if not 0 <= delay_min <= delay_max:
            raise ConfigError(f"task.delay_min/delay_max = {delay_min}, {delay_max}: need 0 <= min <= max (s)")
        if window <= 0 or dopamine_tau <= 0:
            raise ConfigError("task.window and task.dopamine_tau must be > 0 s")
        self.pre, self.post = pre.long(), post.long()
        self.B = self.pre.numel()
        self.dt, self.window = float(dt), float(window)
        self.window_steps = window_steps(self.window, self.dt)
        self.delay_min, self.delay_max = float(delay_min), float(delay_max)
        self.decay = math.exp(-dt / dopamine_tau)
        self.amp = float(dopamine_amp)
        self.generator = generator
        self.step_index = 0
        self.last_pre = torch.full((self.B,), -10**9, dtype=torch.long)  # step of the last pre spike
        # rewards scheduled per trial in a ring buffer over the longest delay: slot s % H holds the
        # number of rewards due at step s (delivery is one vectorised read per step, no loop over trials)
        self.horizon = int(round(self.delay_max / self.dt)) + 2
        self.schedule = torch.zeros(self.B, self.horizon, dtype=torch.float64)
        self.dopamine = torch.zeros(self.B, dtype=torch.float64)
        self.coincidences = torch.zeros(self.B, dtype=torch.long)
        self.rewards = torch.zeros(self.B, dtype=torch.long)

    def step(self, z_pre: Tensor, z_post: Tensor) -> Tensor:
        """Observe the step's spikes of the pre and post populations (B, N); returns dopamine (B,)."""
        t = self.step_index
        b = torch.arange(self.B)
        pre_fired = z_pre[b, self.pre].detach().cpu() > 0
        post_fired = z_post[b, self.post].detach().cpu() > 0
        lag = t - self.last_pre
        hit = post_fired & (lag > 0) & (lag <= self.window_steps)
        self.last_pre = torch.where(pre_fired, torch.full_like(self.last_pre, t), self.last_pre)
        if hit.any():
            for k in hit.nonzero().flatten().tolist():
                u = self._uniform(k, t + 1)
                delay = self.delay_min + (self.delay_max - self.delay_min) * u
                self.schedule[k, (t + max(1, int(round(delay / self.dt)))) % self.horizon] += 1
                self.coincidences[k] += 1
                self.last_pre[k] = -10**9  # one reward per pairing
        delivered = self.schedule[:, t % self.horizon].clone()
        self.schedule[:, t % self.horizon] = 0
        self.rewards += delivered.long()
        self.dopamine = self.dopamine * self.decay + self.amp * delivered
        self.step_index += 1
        return self.dopamine

    def _uniform(self, k: int, t1: int) -> float:
        """The delay's uniform draw of trial k at the 1-based step t1."""
        if self.rng == "hash":
            from ..neurons.hash_rng import hash_uniform32

            h = int(hash_uniform32(self.seeds[k:k + 1], t1, torch.tensor([self.hash_index]))[0])
            return (h + 0.5) / 2.0 ** 32
        return float(torch.rand((), generator=self.generator, dtype=torch.float64))

    def state_dict(self) -> dict:
        return {"step_index": self.step_index, "last_pre": self.last_pre.clone(), "schedule": self.schedule.clone(),
                "dopamine": self.dopamine.clone(), "coincidences": self.coincidences.clone(),
                "rewards": self.rewards.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.step_index = s["step_index"]
        self.last_pre = s["last_pre"].clone()
        self.schedule = s["schedule"].clone()
        self.dopamine = s["dopamine"].clone()
        self.coincidences = s["coincidences"].clone()
        self.rewards = s["rewards"].clone()
