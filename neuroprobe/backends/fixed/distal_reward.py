"""The distal-reward protocol (Izhikevich 2007) in integers, as the Lava runner's
``DistalRewardSource`` computes it on chip (the float protocol: :mod:`neuroprobe.tasks.distal_reward`)."""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError
from .lif import hash_uniform32

__all__ = ["FixedDistalReward"]


class FixedDistalReward:
    """The distal-reward protocol in integers, as the Lava runner's ``DistalRewardSource`` computes
    it on chip (bit-identical; one trial per ``seed``, batched over B seeds).

    Coincidence: post fires 1..``window`` steps after the last pre spike (one reward per pairing).
    Reward delay: ``delay_min + h % (delay_max − delay_min + 1)`` steps with h =
    ``hash_uniform32(seed, t, 0)`` (t = 1-based step). Dopamine (integer):
    ``d ← trunc(d·(4096 − r_d)/4096) + amp·(#rewards delivered this step)``.

    pre, post: (B,) neuron indices; seeds: (B,) ints; window, delay_min, delay_max: steps;
    r_d: 12-bit dopamine decay; amp: dopamine per reward (large, e.g. 2**14: the truncating decay
    drops at least 1 per step, so a small amp would fall linearly instead of exponentially)."""

    def __init__(self, pre: Tensor, post: Tensor, seeds: Tensor, window: int, delay_min: int, delay_max: int,
                 r_d: int, amp: int):
        if not 1 <= delay_min <= delay_max or window < 1 or not 0 < r_d <= 4095:
            raise ConfigError(f"fixed distal reward: need 1 <= delay_min <= delay_max (steps), window >= 1, "
                              f"0 < r_d <= 4095 (got {delay_min}, {delay_max}, {window}, {r_d})")
        self.pre, self.post, self.seeds = pre.long(), post.long(), seeds.long()
        self.B = self.pre.numel()
        self.window, self.delay_min, self.delay_max, self.r_d, self.amp = window, delay_min, delay_max, r_d, amp
        self.t = 0
        self.horizon = delay_max + 2
        self.last_pre = torch.full((self.B,), -10**9, dtype=torch.long)
        self.schedule = torch.zeros(self.B, self.horizon, dtype=torch.long)
        self.dopamine = torch.zeros(self.B, dtype=torch.long)
        self.coincidences = torch.zeros(self.B, dtype=torch.long)
        self.rewards = torch.zeros(self.B, dtype=torch.long)

    def step(self, z_pre: Tensor, z_post: Tensor) -> Tensor:
        """This step's spikes (B, N) of the pre and post populations → dopamine (B,) int64."""
        self.t += 1
        t, b = self.t, torch.arange(self.B)
        pre_fired, post_fired = z_pre[b, self.pre] > 0, z_post[b, self.post] > 0
        lag = t - self.last_pre
        hit = post_fired & (lag >= 1) & (lag <= self.window)
        self.last_pre = torch.where(pre_fired, torch.full_like(self.last_pre, t), self.last_pre)
        self.last_pre = torch.where(hit & ~pre_fired, torch.full_like(self.last_pre, -10**9), self.last_pre)
        h = hash_uniform32(self.seeds, t, torch.zeros(self.B, dtype=torch.int64))
        delay = self.delay_min + h % (self.delay_max - self.delay_min + 1)
        slot = (t + delay) % self.horizon
        self.schedule[b, slot] += hit.long()
        self.coincidences += hit.long()
        delivered = self.schedule[:, t % self.horizon].clone()
        self.schedule[:, t % self.horizon] = 0
        self.rewards += delivered
        y = self.dopamine * (4096 - self.r_d)
        self.dopamine = torch.sign(y) * (y.abs() >> 12) + self.amp * delivered
        return self.dopamine

    def state_dict(self) -> dict:
        return {"t": self.t, "last_pre": self.last_pre.clone(), "schedule": self.schedule.clone(),
                "dopamine": self.dopamine.clone(), "coincidences": self.coincidences.clone(),
                "rewards": self.rewards.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.t = int(s["t"])
        for k in ("last_pre", "schedule", "dopamine", "coincidences", "rewards"):
            setattr(self, k, s[k].clone())
