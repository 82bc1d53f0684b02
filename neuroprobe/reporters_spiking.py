"""Reporters of spiking runs: the distal-reward metrics rows (every engine) and the summary.

Distal reward, one row per trial every ``task.report_every`` seconds (and at the end): ``time`` (s),
``seed``, ``w_rewarded``, ``w_mean`` and ``w_p99`` (mean and 99th percentile of |w| of the other
synapses of the projection), ``rank`` (fraction of other synapses below the rewarded one),
``rewards`` and ``coincidences`` (cumulative), ``rate_<population>`` (Hz, mean since the last row,
every LIF population). The per-row spike counters are in the reporter's ``state_dict``.

:func:`distal_row` is the one computation of such a row, for every engine (torch float, torch
fixed point, Brian2, Lava, and ``neuroprobe deploy``): it returns the cells as text (floats as
Python's shortest round-trip ``repr`` of the float64 value, integers in decimal), so every engine
writes the same bytes for the same state.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

__all__ = ["DISTAL_COLUMNS", "distal_columns", "distal_row", "distal_rows", "DistalReporter", "ChunkRowsReporter",
           "Brian2DistalReporter", "distal_summary", "spiking_summary"]

DISTAL_COLUMNS = ["time", "seed", "w_rewarded", "w_mean", "w_p99", "rank", "rewards", "coincidences"]


def distal_columns(spec) -> list[str]:
    """The columns of a distal-reward run: :data:`DISTAL_COLUMNS` and ``rate_<p>`` per LIF population."""
    return DISTAL_COLUMNS + [f"rate_{p.name}" for p in spec.populations if p.kind in ("lif", "izhikevich")]


def _cell(x) -> str:
    return repr(float(x))


def distal_row(time: float, seed: int, w, rewarded: int, rewards: int, coincidences: int,
               spikes: Mapping[str, tuple[float, int]] | None = None, steps: int = 0, dt: float = 0.0) -> dict:
    """One distal-reward metrics row, as text cells.

    time: end of the report (s; give ``step * dt`` with an integer step); w: (S,) weights of the
    plastic projection in float units (signed or |w|; numpy or torch); rewarded: the rewarded
    synapse's index in w; rewards, coincidences: the protocol's cumulative counts; spikes: per LIF
    population ``(spike count since the last row, population size)`` over ``steps`` steps of
    ``dt`` (adds ``rate_<population>`` = count / (size · steps · dt) Hz; without it the row has the
    first eight columns only). Statistics in float64: |w| of the other synapses, their mean, their
    99th percentile (linear interpolation) and the fraction below the rewarded synapse."""
    mag = torch.as_tensor(np.asarray(w) if not isinstance(w, torch.Tensor) else w).detach()
    mag = mag.to(device="cpu", dtype=torch.float64).abs().reshape(-1)
    k = int(rewarded)
    wr = mag[k]
    others = torch.cat([mag[:k], mag[k + 1:]])
    if others.numel() == 0:  # a one-synapse projection: no others to compare with
        others = torch.full((1,), float("nan"), dtype=torch.float64)
    row = {"time": _cell(time), "seed": str(int(seed)), "w_rewarded": _cell(wr), "w_mean": _cell(others.mean()),
           "w_p99": _cell(others.quantile(0.99)), "rank": _cell((others < wr).double().mean()),
           "rewards": str(int(rewards)), "coincidences": str(int(coincidences))}
    for p, (count, size) in (spikes or {}).items():
        row[f"rate_{p}"] = _cell(float(count) / (int(size) * int(steps) * dt))
    return row


def distal_rows(time: float, seed: int, w, rewarded, rewards, coincidences, counts: Mapping, sizes: Mapping,
                steps: int, dt: float) -> tuple[list[dict], str]:
    """The rows of B trials at one report (trial b: seed ``seed + b``, weights ``w[b]``, rewarded
    synapse ``rewarded[b]``, the protocol's counters, ``counts[p][b]`` spikes of LIF population p of
    size ``sizes[p]`` over ``steps`` steps), and the progress bar's postfix."""
    rows = [distal_row(time, seed + b, w[b], int(rewarded[b]), int(rewards[b]), int(coincidences[b]),
                       {p: (float(counts[p][b]), n) for p, n in sizes.items()}, steps, dt)
            for b in range(len(rewarded))]
    wr = np.mean([float(r["w_rewarded"]) for r in rows])
    p99 = np.mean([float(r["w_p99"]) for r in rows])
    return rows, f"w* {wr:.3f} vs p99 {p99:.3f} · rewards {int(sum(int(r) for r in rewards))}"


class DistalReporter:
    """Distal-reward rows of a network batched over B trials, one loop step = one network step
    (the torch engine, float or fixed point).

    Reads the step's spikes (the transition's action: ``{population: (B, N)}``), the plastic
    projection's weights (``weights()``: (B, S) or (S,) in float units; default
    ``proj.weight``) and the protocol's counters ``rewards``/``coincidences`` (B,).
    """

    key = ["time", "seed"]

    def __init__(self, spec, proj, protocol, rewarded: torch.Tensor, seed: int, n_steps: int, every: int,
                 weights: Callable[[], torch.Tensor] | None = None):
        self.columns = distal_columns(spec)
        self.proj, self.protocol, self.rewarded = proj, protocol, rewarded
        self.weights = weights if weights is not None else (lambda: proj.weight.detach())
        self.seed, self.n_steps, self.every, self.dt = seed, int(n_steps), int(every), spec.dt
        self.B = int(rewarded.numel())
        self.sizes = {p.name: p.size for p in spec.populations if p.kind in ("lif", "izhikevich")}
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
        w = self.weights()
        w = w.expand(self.B, -1) if w.dim() == 1 else w
        out, self._postfix = distal_rows(self.step * self.dt, self.seed, w, self.rewarded, self.protocol.rewards,
                                         self.protocol.coincidences, self.counts, self.sizes, self.steps_in_row,
                                         self.dt)
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


class ChunkRowsReporter:
    """Distal-reward rows computed by the agent (Brian2's closed loop, a finished Lava run): the
    action of a loop step is the rows of its chunk; trials run one after another in
    :class:`~neuroprobe.tasks.distal_loop.TrialChunks`, so the schedule counts the steps of
    completed trials (checkpoints fall on trial boundaries)."""

    key = ["time", "seed"]

    def __init__(self, spec, task, trials: int):
        self.columns = distal_columns(spec)
        self.task, self.trials, self.dt = task, int(trials), spec.dt
        self._postfix = ""

    def rows(self, tr) -> list[dict]:
        rows = list(tr.action)
        if rows:
            r = rows[-1]
            self._postfix = (f"trial {r['seed']} · w* {float(r['w_rewarded']):.3f} vs p99 {float(r['w_p99']):.3f}"
                             f" · rewards {r['rewards']}")
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


Brian2DistalReporter = ChunkRowsReporter  # the name of earlier versions


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
