"""Reporters of spiking runs: the distal-reward metrics rows (torch engine and Brian2) and the summary.

Distal reward, one row per trial every ``task.report_every`` seconds (and at the end): ``time`` (s),
``seed``, ``w_rewarded``, ``w_mean`` and ``w_p99`` (mean and 99th percentile of |w| of the other
synapses of the projection), ``rank`` (fraction of other synapses below the rewarded one),
``rewards`` and ``coincidences`` (cumulative), ``rate_<population>`` (Hz, mean since the last row,
every LIF population). The per-row spike counters are in the reporter's ``state_dict``.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["distal_columns", "DistalReporter", "Brian2DistalReporter", "distal_summary", "spiking_summary"]


def distal_columns(spec) -> list[str]:
    return (["time", "seed", "w_rewarded", "w_mean", "w_p99", "rank", "rewards", "coincidences"]
            + [f"rate_{p.name}" for p in spec.populations if p.kind == "lif"])


class DistalReporter:
    """Distal-reward rows of the torch engine (one loop step = one network step).

    Reads the step's spikes (the transition's action), the plastic projection's weights and the
    protocol's reward counters.
    """

    key = ["time", "seed"]

    def __init__(self, spec, proj, protocol, rewarded: torch.Tensor, seed: int, n_steps: int, every: int):
        self.columns = distal_columns(spec)
        self.proj, self.protocol, self.rewarded = proj, protocol, rewarded
        self.seed, self.n_steps, self.every, self.dt = seed, int(n_steps), int(every), spec.dt
        self.B = int(rewarded.numel())
        self.sizes = {p.name: p.size for p in spec.populations if p.kind == "lif"}
        self.step = 0
        self.steps_in_row = 0
        self.counts = self._zeros()
        self._postfix = ""

    def _zeros(self) -> dict:
        return {p: torch.zeros(self.B, dtype=torch.float64) for p in self.sizes}

    def rows(self, tr) -> list[dict]:
        z = tr.action
        for p in self.sizes:
            self.counts[p] += z[p].sum(1).double().cpu()
        self.steps_in_row += 1
        self.step += 1
        if not (self.step % self.every == 0 or self.step == self.n_steps):
            return []
        B, dt = self.B, self.dt
        w = self.proj.weight.detach().double().cpu()
        mag = w.abs()
        wr = mag[torch.arange(B), self.rewarded]
        mask = torch.ones_like(mag, dtype=torch.bool)
        mask[torch.arange(B), self.rewarded] = False
        others = mag[mask].view(B, -1)
        out = []
        for b in range(B):
            row = {"time": self.step * dt, "seed": self.seed + b, "w_rewarded": float(wr[b]),
                   "w_mean": float(others[b].mean()), "w_p99": float(others[b].quantile(0.99)),
                   "rank": float((others[b] < wr[b]).double().mean()), "rewards": int(self.protocol.rewards[b]),
                   "coincidences": int(self.protocol.coincidences[b])}
            row.update({f"rate_{p}": float(self.counts[p][b]) / (n * self.steps_in_row * dt)
                        for p, n in self.sizes.items()})
            out.append(row)
        self._postfix = (f"w* {float(wr.mean()):.3f} vs p99 {float(others.quantile(0.99, dim=1).mean()):.3f}"
                         f" · rewards {int(self.protocol.rewards.sum())}")
        self.counts = self._zeros()
        self.steps_in_row = 0
        return out

    def progress(self) -> tuple[int, int]:
        return self.step, self.n_steps

    def schedule_count(self) -> int:
        return self.step

    def where(self) -> str:
        return f"t = {self.step * self.dt:.3f} s"

    def postfix(self) -> str:
        return self._postfix

    def state_dict(self) -> dict:
        return {"step": self.step, "steps_in_row": self.steps_in_row,
                "counts": {p: c.clone() for p, c in self.counts.items()}}

    def load_state_dict(self, s: dict) -> None:
        self.step, self.steps_in_row = int(s["step"]), int(s["steps_in_row"])
        self.counts = {p: torch.as_tensor(s["counts"][p], dtype=torch.float64).clone() for p in self.sizes}


class Brian2DistalReporter:
    """Distal-reward rows of Brian2 runs: the agent computes them inside Brian2's closed loop (the
    action of a loop step is the chunk's rows); trials run one after another, so the schedule
    counts the steps of completed trials (checkpoints fall on trial boundaries)."""

    key = ["time", "seed"]

    def __init__(self, spec, task, trials: int):
        self.columns = distal_columns(spec)
        self.task, self.trials, self.dt = task, int(trials), spec.dt
        self._postfix = ""

    def rows(self, tr) -> list[dict]:
        rows = list(tr.action)
        if rows:
            r = rows[-1]
            self._postfix = f"trial {r['seed']} · w* {r['w_rewarded']:.3f} vs p99 {r['w_p99']:.3f} · rewards {r['rewards']}"
        return rows

    def progress(self) -> tuple[int, int]:
        return self.task.steps_done(), self.trials * self.task.n_steps

    def schedule_count(self) -> int:
        return self.task.trial * self.task.n_steps

    def where(self) -> str:
        return f"trial {self.task.trial}, t = {self.task.t * self.dt:.3f} s"

    def postfix(self) -> str:
        return self._postfix

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, s: dict) -> None:
        pass


def distal_summary(m: dict) -> dict:
    """Per trial the final weight of the rewarded synapse, the 99th percentile and mean of the others
    and the rewarded synapse's rank; their mean ± sd over trials."""
    seeds = np.asarray(m["seed"])
    order = sorted(set(seeds.tolist()))
    t = np.asarray(m["time"], dtype=float)
    final = {k: [float(np.asarray(m[k], dtype=float)[(seeds == s)][-1]) for s in order]
             for k in ("w_rewarded", "w_mean", "w_p99", "rank")}
    rank = np.asarray(final["rank"])
    return {"metric": "rank of the rewarded synapse among the projection's synapses (1 = largest)",
            "per_seed": rank.tolist(), "mean": float(rank.mean()), "std": float(rank.std()),
            "time": float(t.max()), **{f"final_{k}": v for k, v in final.items()}}


def spiking_summary(m: dict, task: str, last: int = 50) -> dict:
    """The old ``summarize_spiking``: distal reward (:func:`distal_summary`) or the episode returns."""
    if task == "distal_reward":
        return distal_summary(m)
    from .reporters import episode_summary

    return episode_summary(m, last)
