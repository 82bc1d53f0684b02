"""Evaluate the learned weights θ of a rule 'spiking_probe' run without probes (σ = 0): N CartPole-v1 episodes.

    python experiments/spiking_cartpole_probe_eval.py RUN_DIR [--episodes 100] [--seed 1000]

The run's learning curve counts the episodes of the perturbed branches (θ + δw_b) from common start
states; this plays θ itself, N episodes at once (one batch), each from its own start state
(environment seeds seed .. seed + N − 1) with independent Poisson input spikes (common_inputs off),
and prints the mean, sd, min and the fraction of episodes that reach the 500-step cap. No learning.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from neuroprobe.config import load_experiment
from neuroprobe.learners.spiking_probe import build_spiking_probe
from neuroprobe.protocols import BuildContext
from neuroprobe.rundir import load_checkpoint_file
from neuroprobe.tasks import make_vector_env


def evaluate(run: Path, episodes: int = 100, seed: int = 1000) -> np.ndarray:
    """Returns (episodes,) of θ from ``run``'s checkpoint (module docstring)."""
    B = episodes + episodes % 2 + 2  # the rule needs an even number >= 2 of perturbed branches: never used
    exp = load_experiment(run / "config.toml", [f"rule.branches={B}", f"rule.null_branches={B - 2}",
                                                f"task.episodes={B}"])
    torch.manual_seed(0)
    parts = build_spiking_probe(exp, BuildContext(torch.Generator().manual_seed(seed), torch.device("cpu")))
    agent, rule = parts.agent, parts.agent.rule
    parts.task.close()
    with torch.no_grad():
        for th, v in zip(rule.theta, load_checkpoint_file(run / "checkpoint.pt")["agent"]["theta"], strict=True):
            th.copy_(v)
    rule.assignment.zero_()        # every branch plays θ
    agent.common_inputs = False    # and draws its own input spikes
    envs = make_vector_env("CartPole-v1", B, seed=seed)
    obs, _ = envs.reset(seed=seed)
    ret, done = np.zeros(B), np.zeros(B, dtype=bool)
    while not done.all():
        obs, r, term, trunc, _ = envs.step(agent.act(obs))
        ret += np.where(done, 0.0, r)
        done |= term | trunc
    envs.close()
    return ret[:episodes]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000)
    a = ap.parse_args(argv)
    R = evaluate(a.run, a.episodes, a.seed)
    print(f"{a.run}: theta over {len(R)} episodes: mean {R.mean():.1f} sd {R.std():.1f} min {R.min():.0f} "
          f"fraction at 500: {(R >= 500).mean():.2f}")


if __name__ == "__main__":
    main()
