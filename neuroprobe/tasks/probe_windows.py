"""The common-seed window task of rule 'probe' in RL: one window = one episode run by B branches at once.

B copies of the environment (a Gymnasium ``SyncVectorEnv``) are the window's branches. At the start
of window w every copy is reset with the same seed, :func:`~neuroprobe.rules.probe.window_seed` of
(run seed, w), so all branches share the start state (common random numbers). A branch whose
episode has ended is masked (its auto-reset copy idles, its rewards no longer count) until every
branch is done; then the window ends and the next one starts at once (its reset is the observation
the step returns; also after the last window, so a run resumed with more episodes continues
exactly as a longer run would).

A branch's outcome is its episode return, the sum of the rewards it received (delayed rewards still
pending at the end arrive on the last step). ``info`` of each step:

    active      (B,) branches still running before this step
    window_end  whether the window ended on this step
    window      index of the window this step belongs to
    return      (B,) float64 the branches' returns so far, this step included
    length      (B,) int64 the branches' lengths so far, this step included
"""
from __future__ import annotations

import numpy as np

__all__ = ["CommonSeedWindows"]


class CommonSeedWindows:
    """Task protocol: ``windows`` windows of B common-seed branches (module docstring)."""

    def __init__(self, envs, windows: int):
        self.envs, self.E = envs, int(windows)
        self.B = envs.num_envs
        self.seed = 0
        self.window = 0
        self._start_window()

    def _start_window(self) -> None:
        self.active = np.ones(self.B, dtype=bool)
        self.ret = np.zeros(self.B, dtype=np.float64)
        self.length = np.zeros(self.B, dtype=np.int64)

    def _reset_envs(self):
        from ..rules.probe import window_seed

        obs, _ = self.envs.reset(seed=[window_seed(self.seed, self.window)] * self.B)
        return obs

    def reset(self, seed: int):
        self.seed, self.window = int(seed), 0
        self._start_window()
        return self._reset_envs(), {}

    def step(self, action):
        active = self.active.copy()
        obs, r, term, trunc, _ = self.envs.step(action)
        self.ret += np.where(active, r, 0.0)
        self.length += active
        self.active &= ~(term | trunc)
        end = not self.active.any()
        info = {"active": active, "window_end": end, "window": self.window, "return": self.ret.copy(),
                "length": self.length.copy()}
        if end:
            self.window += 1
            self._start_window()
            obs = self._reset_envs()
        return obs, r, term, trunc, info

    def finished(self) -> bool:
        return self.window >= self.E

    def state_dict(self) -> dict:
        from ..io.state import env_state

        return {"envs": env_state(self.envs), "seed": self.seed, "window": self.window, "active": self.active.copy(),
                "ret": self.ret.copy(), "length": self.length.copy()}

    def load_state_dict(self, s: dict) -> None:
        from ..io.state import load_env_state, restore_like

        load_env_state(self.envs, s["envs"])
        self.seed, self.window = int(s["seed"]), int(s["window"])
        self.active = restore_like(self.active, s["active"])
        self.ret = restore_like(self.ret, s["ret"])
        self.length = restore_like(self.length, s["length"])

    def close(self) -> None:
        self.envs.close()
