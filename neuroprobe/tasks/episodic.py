"""The episodic task of RL runs: a batch of environment copies with a per-copy episode budget.

Wraps a Gymnasium ``SyncVectorEnv`` (B copies, auto-reset): copy b counts its episodes and stops
counting (its rewards no longer reinforce, its episodes are no longer reported) once it has
finished ``episodes``; the task is finished when every copy is. ``info`` of each step holds
(arrays of shape (B,)):

    active     copies still within their budget *before* this step
    return     the episode's summed (delivered) reward so far, this step included
    length     the episode's steps so far, this step included
    finished   copies whose counted episode ended on this step (done & active)
    episode    index of that episode (valid where finished)
"""
from __future__ import annotations

import numpy as np

__all__ = ["EpisodicVectorTask"]


class EpisodicVectorTask:
    """Task protocol over a vector env with an episode budget per copy (see the module docstring)."""

    def __init__(self, envs, episodes: int):
        self.envs, self.E = envs, int(episodes)
        B = envs.num_envs
        self.B = B
        self.episodes = np.zeros(B, dtype=np.int64)
        self.ret = np.zeros(B, dtype=np.float64)
        self.length = np.zeros(B, dtype=np.int64)

    def reset(self, seed: int):
        return self.envs.reset(seed=seed)

    def step(self, action):
        active = self.episodes < self.E
        obs, r, term, trunc, info = self.envs.step(action)
        done = term | trunc
        self.ret += r
        self.length += 1
        finished = done & active
        out = {"active": active, "return": self.ret.copy(), "length": self.length.copy(), "finished": finished,
               "episode": self.episodes.copy(), "done": done}
        self.episodes += finished
        self.ret[done] = 0.0
        self.length[done] = 0
        return obs, r, term, trunc, out

    def finished(self) -> bool:
        return bool((self.episodes >= self.E).all())

    def state_dict(self) -> dict:
        from ..io.state import env_state

        return {"envs": env_state(self.envs), "episodes": self.episodes.copy(), "ret": self.ret.copy(),
                "length": self.length.copy()}

    def load_state_dict(self, s: dict) -> None:
        from ..io.state import load_env_state, restore_like

        load_env_state(self.envs, s["envs"])
        self.episodes = restore_like(self.episodes, s["episodes"])
        self.ret = restore_like(self.ret, s["ret"])
        self.length = restore_like(self.length, s["length"])

    def close(self) -> None:
        self.envs.close()
