"""Reporters: turn loop steps into ``metrics.csv`` rows and count the run's progress.

A reporter's counters (rolling returns, per-row sums) are in its ``state_dict``, so a resumed run
writes the same rows as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["EpisodeReporter", "episode_summary", "default_summary"]


class EpisodeReporter:
    """One row ``episode,seed,return,length`` per counted episode end (RL and spiking CartPole).

    Reads the :class:`~neuroprobe.tasks.episodic.EpisodicVectorTask` info of each step; the
    schedule counts episodes per copy (the slowest copies' count, as a whole number of episodes
    of the batch).
    """

    columns = ["episode", "seed", "return", "length"]
    key = ["episode", "seed"]

    def __init__(self, seed: int, batch: int, episodes: int, rolling: int):
        self.seed, self.B, self.E, self.rolling = seed, batch, episodes, rolling
        self.done = 0
        self.recent: list[float] = []

    def rows(self, tr) -> list[dict]:
        info = tr.info
        out = []
        for s in np.flatnonzero(info["finished"]):
            r = float(info["return"][s])
            out.append({"episode": int(info["episode"][s]), "seed": self.seed + int(s), "return": r,
                        "length": int(info["length"][s])})
            self.recent = (self.recent + [r])[-self.rolling:]
            self.done += 1
        return out

    def progress(self) -> tuple[int, int]:
        return self.done, self.B * self.E

    def schedule_count(self) -> int:
        return self.done // self.B

    def where(self) -> str:
        return f"episode {self.done // self.B}"

    def postfix(self) -> str:
        return f"last-{len(self.recent)} return {np.mean(self.recent):.1f}" if self.recent else ""

    def state_dict(self) -> dict:
        return {"done": self.done, "recent": list(self.recent)}

    def load_state_dict(self, s: dict) -> None:
        self.done = int(s["done"])
        self.recent = [float(x) for x in s["recent"]]


def episode_summary(m: dict, last: int = 50) -> dict:
    """Mean return of each seed's last ``last`` episodes, and their mean ± sd over seeds."""
    seeds = sorted(set(m["seed"]))
    ret, seed = np.asarray(m["return"], dtype=float), np.asarray(m["seed"])
    per_seed = [float(ret[seed == s][-last:].mean()) for s in seeds]
    return {"metric": f"mean return of the last {last} episodes", "per_seed": per_seed,
            "mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
            "episodes": int(len(ret) / max(1, len(seeds)))}


def default_summary(m: dict, last: int = 50) -> dict:
    """Summary of a run whose parts give none: episode returns if reported, else the last row."""
    if "return" in m and "seed" in m:
        return episode_summary(m, last)
    if "accuracy" in m and m["accuracy"]:
        return {"metric": "test accuracy", "final": float(m["accuracy"][-1])}
    return {"metric": "rows", "rows": len(next(iter(m.values()), []))}
