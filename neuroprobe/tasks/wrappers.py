"""Gymnasium wrappers that change *when* reward arrives, and record what an episode earned.

Reward delay is a property of the task, not of the learning rule (docs/architecture.md: "Reward delay,
label delay and episode-end reward are wrappers"), so rules see only the delivered reward.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym

from neuroprobe.errors import ConfigError

__all__ = ["DelayedReward", "EpisodeStatistics", "REWARD_DELAY_MODES"]

REWARD_DELAY_MODES = ("episode_end", "steps")


class DelayedReward(gym.Wrapper):
    """Deliver the environment's reward later, without changing the episode return.

    Modes:
      * ``"episode_end"``: every step returns reward 0 except the step on which the episode
        ends (``terminated or truncated``), which returns the sum of all the episode's rewards.
        ``delay`` must be 0 (it has no meaning here).
      * ``"steps"``: the reward earned on step ``t`` of an episode is delivered on step
        ``t + delay``. Whatever is still pending when the episode ends (terminated or truncated)
        is delivered, summed, on the final step, so the episode return is preserved exactly.
        ``delay=0`` is the identity.

    ``reset`` clears pending reward. The undelayed reward of each step is recorded in
    ``info["true_reward"]`` (a float).
    """

    def __init__(self, env: gym.Env, mode: str = "episode_end", delay: int = 0):
        super().__init__(env)
        if mode not in REWARD_DELAY_MODES:
            raise ConfigError(
                f"DelayedReward: mode={mode!r} is not allowed; use one of {list(REWARD_DELAY_MODES)}"
            )
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ConfigError(f"DelayedReward: delay={delay!r} must be a non-negative integer (steps)")
        if mode == "episode_end" and delay != 0:
            raise ConfigError(
                f"DelayedReward: delay={delay} has no meaning with mode='episode_end' "
                "(the whole return arrives on the last step); use mode='steps' or delay=0"
            )
        self.mode = mode
        self.delay = delay
        self._pending: deque[float] = deque()  # true rewards not yet delivered, oldest first

    def reset(self, **kwargs) -> tuple[Any, dict]:
        self._pending.clear()
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = float(reward)
        info = dict(info)
        info["true_reward"] = reward
        self._pending.append(reward)
        if terminated or truncated:
            delivered = float(sum(self._pending))
            self._pending.clear()
        elif self.mode == "steps" and len(self._pending) > self.delay:
            delivered = self._pending.popleft()
        else:
            delivered = 0.0
        return obs, delivered, terminated, truncated, info


class EpisodeStatistics(gym.Wrapper):
    """On the step that ends an episode, put ``info["episode"] = {"r": return, "l": length}``.

    ``r`` is the sum of the rewards this wrapper saw (the delivered rewards, which equal the true
    ones summed over an episode when :class:`DelayedReward` sits inside) and ``l`` the number of
    steps. Unlike ``gymnasium.wrappers.RecordEpisodeStatistics`` it records no wall-clock time,
    so infos are bit-reproducible.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._return = 0.0
        self._length = 0

    def reset(self, **kwargs) -> tuple[Any, dict]:
        self._return = 0.0
        self._length = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            info = dict(info)
            info["episode"] = {"r": self._return, "l": self._length}
        return obs, reward, terminated, truncated, info
