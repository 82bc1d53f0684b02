"""Cue–delay–action task with distractors and a delayed reward (``CueDelay-v0``).

One episode (a trial), in environment steps t = 0, 1, …; the observation returned by ``reset`` is
the one seen at t = 0 and ``step`` returns the one of t + 1::

    phase      steps t                                    cue channels   distractors   go
    cue        0 … C−1                                    one-hot(c)     0             0
    delay      C … C+L−1                                  see below      random        0
    go         G = C+L                                    see below      0             1
    feedback   G+1 … G+D                                  see below      random        0

with C = ``cue_steps``, L = ``delay``, D = ``reward_delay``. The cue c is drawn uniformly from
``n_cues`` at reset. The action taken at the go step G (the one chosen after seeing the go flag)
is the decisive one: it is correct iff it equals c. **Actions at every other step have no effect**
(they are accepted and ignored). The reward of the decision, ``correct_reward`` (+1) or
``wrong_reward`` (−1, or e.g. 0), is returned by the step whose action index is G + D, i.e. D
steps after the decisive action, and that step ends the episode (``terminated=True``); every
other step returns 0. With D = 0 the go step itself ends the episode. The episode length is
C + L + 1 + D steps.

Cue visibility (``cue_visible``): ``"always"`` (default) keeps the cue one-hot on in every phase,
so a feed-forward policy can solve the task (the credit still arrives D steps late, through
D steps of distractors); ``"cue_period"`` shows it only during the cue phase, which needs memory.

Distractors: during the delay and feedback phases each of the ``n_distractors`` channels is 1
with probability ``distractor_prob``, independently per step, else 0 (separate channels from the
cue). The go flag is on only at step G. Observation, float32:
``[cue one-hot (n_cues), distractors (n_distractors), go flag (1)]``.

Seeding: ``reset(seed=...)`` seeds ``self.np_random`` (Gymnasium), which draws the cue and the
distractors; the same seed gives the same episodes. ``info`` holds ``cue``, ``phase`` and, on the
final step, ``decision`` and ``correct``.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from neuroprobe.errors import ConfigError

__all__ = ["CueDelayEnv", "CUE_VISIBLE", "DEFAULTS"]

CUE_VISIBLE = ("always", "cue_period")
DEFAULTS = {"n_cues": 2, "cue_steps": 2, "delay": 5, "n_distractors": 4, "reward_delay": 10}


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"CueDelay-v0: {name}={value!r} must be an integer >= {minimum}")
    return int(value)


def _num(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise ConfigError(f"CueDelay-v0: {name}={value!r} must be a finite number")
    return float(value)


class CueDelayEnv(gym.Env):
    """Cue, delay with distractors, go, reward ``reward_delay`` steps after the decision (module docstring).

    Args:
        n_cues: number of cues = number of actions (>= 2).
        cue_steps: steps the cue is shown (>= 1).
        delay: steps between the cue and the go signal (>= 0).
        n_distractors: distractor channels (>= 0).
        reward_delay: steps D from the decisive action to the reward (>= 0; the episode ends then).
        correct_reward, wrong_reward: reward of a correct / wrong decision.
        cue_visible: "always" or "cue_period".
        distractor_prob: probability that a distractor channel is on in a delay/feedback step, in [0, 1].
    """

    metadata = {"render_modes": []}

    def __init__(self, n_cues: int = 2, cue_steps: int = 2, delay: int = 5, n_distractors: int = 4,
                 reward_delay: int = 10, correct_reward: float = 1.0, wrong_reward: float = -1.0,
                 cue_visible: str = "always", distractor_prob: float = 0.5):
        self.n_cues = _int("n_cues", n_cues, 2)
        self.cue_steps = _int("cue_steps", cue_steps, 1)
        self.delay = _int("delay", delay, 0)
        self.n_distractors = _int("n_distractors", n_distractors, 0)
        self.reward_delay = _int("reward_delay", reward_delay, 0)
        self.correct_reward = _num("correct_reward", correct_reward)
        self.wrong_reward = _num("wrong_reward", wrong_reward)
        if cue_visible not in CUE_VISIBLE:
            raise ConfigError(f"CueDelay-v0: cue_visible={cue_visible!r} is not allowed; use one of {list(CUE_VISIBLE)}")
        self.cue_visible = cue_visible
        p = _num("distractor_prob", distractor_prob)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"CueDelay-v0: distractor_prob={distractor_prob!r} must be in [0, 1]")
        self.distractor_prob = p
        self.obs_dim = self.n_cues + self.n_distractors + 1
        self.go_step = self.cue_steps + self.delay
        self.episode_length = self.go_step + 1 + self.reward_delay
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.n_cues)
        self._t = 0
        self._cue = 0
        self._decision: int | None = None

    # --- phases -------------------------------------------------------------------------------
    def phase(self, t: int) -> str:
        """Phase of step t: "cue", "delay", "go" or "feedback"."""
        if t < self.cue_steps:
            return "cue"
        if t < self.go_step:
            return "delay"
        if t == self.go_step:
            return "go"
        return "feedback"

    def _obs(self, t: int) -> np.ndarray:
        obs = np.zeros(self.obs_dim, dtype=np.float32)
        ph = self.phase(t)
        if ph == "cue" or self.cue_visible == "always":
            obs[self._cue] = 1.0
        if ph in ("delay", "feedback") and self.n_distractors:
            on = self.np_random.random(self.n_distractors) < self.distractor_prob
            obs[self.n_cues:self.n_cues + self.n_distractors] = on
        if ph == "go":
            obs[-1] = 1.0
        return obs

    # --- Gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._cue = int(self.np_random.integers(self.n_cues))
        self._decision = None
        return self._obs(0), {"cue": self._cue, "phase": "cue"}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ConfigError(f"CueDelay-v0: action {action!r} is not in 0..{self.n_cues - 1}")
        t = self._t
        if t >= self.episode_length:
            raise RuntimeError("CueDelay-v0: step() after the episode ended; call reset()")
        if t == self.go_step:
            self._decision = int(action)  # the only action that matters
        info: dict[str, Any] = {"cue": self._cue, "phase": self.phase(t)}
        self._t = t + 1
        terminated = self._t == self.episode_length
        reward = 0.0
        if terminated:
            correct = self._decision == self._cue
            reward = self.correct_reward if correct else self.wrong_reward
            info.update(decision=self._decision, correct=bool(correct))
            obs = self._terminal_obs()
        else:
            obs = self._obs(self._t)
        return obs, reward, terminated, False, info

    def _terminal_obs(self) -> np.ndarray:
        """After the last step: the cue (if always visible), no distractors, no go flag."""
        obs = np.zeros(self.obs_dim, dtype=np.float32)
        if self.cue_visible == "always":
            obs[self._cue] = 1.0
        return obs
