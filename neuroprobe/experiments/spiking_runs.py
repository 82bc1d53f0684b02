"""Dispatch of spiking experiments (``kind = "spiking"``) and their summaries."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .rundir import RunDir


def run_spiking(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    task, backend = cfg["task"]["name"], cfg["run"]["backend"]
    if backend == "brian2":
        from .distal_brian2 import run_distal_brian2

        if task != "distal_reward":
            raise ConfigError(f"--backend brian2 runs the distal_reward task (got task {task!r}); run {task!r} on torch")
        return run_distal_brian2(cfg, run, resume=resume)
    if task == "distal_reward":
        from .distal import run_distal

        return run_distal(cfg, run, resume=resume)
    from .spiking_cartpole import run_spiking_cartpole

    return run_spiking_cartpole(cfg, run, resume=resume)


def summarize_spiking(m: dict, cfg: dict, last: int = 50) -> dict:
    """Distal reward: per trial the final weight of the rewarded synapse, the 99th percentile of the
    others and the rewarded synapse's rank; spiking CartPole: last-``last`` returns per seed."""
    seeds = np.asarray(m["seed"])
    order = sorted(set(seeds.tolist()))
    if cfg["task"]["name"] == "distal_reward":
        t = np.asarray(m["time"], dtype=float)
        final = {k: [float(np.asarray(m[k], dtype=float)[(seeds == s)][-1]) for s in order]
                 for k in ("w_rewarded", "w_mean", "w_p99", "rank")}
        rank = np.asarray(final["rank"])
        return {"metric": "rank of the rewarded synapse among the projection's synapses (1 = largest)",
                "per_seed": rank.tolist(), "mean": float(rank.mean()), "std": float(rank.std()),
                "time": float(t.max()), **{f"final_{k}": v for k, v in final.items()}}
    ret = np.asarray(m["return"], dtype=float)
    per_seed = [float(ret[seeds == s][-last:].mean()) for s in order]
    return {"metric": f"mean return of the last {last} episodes", "per_seed": per_seed,
            "mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)), "episodes": int(len(ret) / len(order))}
