"""Reporters: turn loop steps into ``metrics.csv`` rows and count the run's progress.

A reporter's counters (rolling returns, per-row sums) are in its ``state_dict``, so a resumed run
writes the same rows as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["EpisodeReporter", "episode_summary", "default_summary"]


class _ReturnsReporter:
    """Counts finished episodes (or windows) and keeps the last ``rolling`` returns for the bar."""

    def __init__(self, rolling: int):
        self.rolling = rolling
        self.done = 0
        self.recent: list[float] = []

    def _finished(self, r: float) -> None:
        self.recent = (self.recent + [r])[-self.rolling:]
        self.done += 1

    def postfix(self) -> str:
        return f"last-{len(self.recent)} return {np.mean(self.recent):.1f}" if self.recent else ""

    def state_dict(self) -> dict:
        return {"done": self.done, "recent": list(self.recent)}

    def load_state_dict(self, s: dict) -> None:
        self.done = int(s["done"])
        self.recent = [float(x) for x in s["recent"]]


class EpisodeReporter(_ReturnsReporter):
    """One row ``episode,seed,return,length`` per counted episode end (RL and spiking CartPole).

    Reads the :class:`~neuroprobe.tasks.episodic.EpisodicVectorTask` info of each step; the
    schedule counts episodes per copy (the slowest copies' count, as a whole number of episodes
    of the batch).
    """

    columns = ["episode", "seed", "return", "length"]
    key = ["episode", "seed"]

    def __init__(self, seed: int, batch: int, episodes: int, rolling: int):
        super().__init__(rolling)
        self.seed, self.B, self.E = seed, batch, episodes

    def rows(self, tr) -> list[dict]:
        info = tr.info
        out = []
        for s in np.flatnonzero(info["finished"]):
            r = float(info["return"][s])
            out.append({"episode": int(info["episode"][s]), "seed": self.seed + int(s), "return": r,
                        "length": int(info["length"][s])})
            self._finished(r)
        return out

    def progress(self) -> tuple[int, int]:
        return self.done, self.B * self.E

    def schedule_count(self) -> int:
        return self.done // self.B

    def where(self) -> str:
        return f"episode {self.done // self.B}"


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


class WindowReporter(_ReturnsReporter):
    """One row ``episode,seed,return,length,forward_passes`` per window of rule 'probe' in RL.

    Reads the :class:`~neuroprobe.tasks.probe_windows.CommonSeedWindows` info of each step and the
    window's assignment A (B, M) from ``assignment()``: return/length are those of the unperturbed
    policy, i.e. of the all-null branches (identical); without null branches the mean return of all
    branches and their rounded mean length. ``forward_passes`` is the window's cost in single-sample
    network forwards, B x the longest branch's length (idle branches ride along in the batch). The
    schedule counts windows (episodes).
    """

    columns = ["episode", "seed", "return", "length", "forward_passes"]
    key = ["episode", "seed"]

    def __init__(self, seed: int, windows: int, rolling: int, assignment: Callable[[], object]):
        super().__init__(rolling)
        self.seed, self.E, self.assignment = seed, windows, assignment

    def rows(self, tr) -> list[dict]:
        info = tr.info
        if not info["window_end"]:
            return []
        ret, length = info["return"], info["length"]
        r0, l0 = window_row(self.assignment(), ret, length)
        self._finished(r0)
        return [{"episode": int(info["window"]), "seed": self.seed, "return": r0, "length": l0,
                 "forward_passes": int(len(length) * length.max())}]

    def progress(self) -> tuple[int, int]:
        return self.done, self.E

    def schedule_count(self) -> int:
        return self.done

    def where(self) -> str:
        return f"episode {self.done}"


def window_row(A, ret: np.ndarray, length: np.ndarray) -> tuple[float, int]:
    """(return, length) of the unperturbed policy: the null branches' (A (B, M) all 0), else the branch mean."""
    null = (A == 0).all(dim=1).cpu().numpy()
    if null.any():
        i = int(np.flatnonzero(null)[0])
        return float(ret[i]), int(length[i])
    return float(ret.mean()), int(round(float(length.mean())))


class StreamReporter:
    """Rows of supervised stream runs, every ``eval_every`` steps and at the last step.

    ``step,accuracy,train_loss,train_accuracy`` then ``align_<layer>`` (per layer, with
    ``layer_names``) and/or ``forward_passes`` (with ``passes_per_step``):

    * accuracy: test accuracy of the network (``evaluate()``) after the step's update;
    * train_loss, train_accuracy: means over the steps credited since the last row (``stats()``
      gives ``{"loss", "accuracy", "alignment"}`` of the step, or None when nothing was credited;
      NaN when no step was);
    * align_<layer>: mean of the layer's alignment values since the last row (NaN if none);
    * forward_passes: cumulative single-sample forward passes, ``step x passes_per_step``.

    The running sums are in the state dict, so a run resumed between two rows writes the same row.
    The schedule counts steps.
    """

    key = ["step"]

    def __init__(self, steps: int, eval_every: int, stats: Callable[[], dict | None], evaluate: Callable[[], float],
                 layer_names: list[str] | None = None, passes_per_step: int | None = None):
        self.T, self.every, self.stats, self.evaluate = int(steps), int(eval_every), stats, evaluate
        self.layer_names = list(layer_names or [])
        self.passes_per_step = passes_per_step
        self.columns = (["step", "accuracy", "train_loss", "train_accuracy"]
                        + [f"align_{n}" for n in self.layer_names]
                        + (["forward_passes"] if passes_per_step is not None else []))
        self.step = 0
        self.last_accuracy: float | None = None
        self._clear()

    def _clear(self) -> None:
        self.loss_sum = self.acc_sum = 0.0
        self.n = 0
        self.align: dict[str, list[float]] = {n: [] for n in self.layer_names}

    def rows(self, tr) -> list[dict]:
        self.step += 1
        st = self.stats()
        if st is not None:
            self.loss_sum += st["loss"]
            self.acc_sum += st["accuracy"]
            self.n += 1
            for n, c in st.get("alignment", {}).items():
                self.align[n].append(c)
        if self.step % self.every and self.step != self.T:
            return []
        acc = self.evaluate()
        nan = float("nan")
        row = {"step": self.step, "accuracy": acc, "train_loss": self.loss_sum / self.n if self.n else nan,
               "train_accuracy": self.acc_sum / self.n if self.n else nan}
        row.update({f"align_{n}": float(np.mean(v)) if v else nan for n, v in self.align.items()})
        if self.passes_per_step is not None:
            row["forward_passes"] = self.step * self.passes_per_step
        self.last_accuracy = acc
        self._clear()
        return [row]

    def progress(self) -> tuple[int, int]:
        return self.step, self.T

    def schedule_count(self) -> int:
        return self.step

    def where(self) -> str:
        return f"step {self.step}"

    def postfix(self) -> str:
        return f"test acc {self.last_accuracy:.3f}" if self.last_accuracy is not None else ""

    def state_dict(self) -> dict:
        return {"step": self.step, "loss_sum": self.loss_sum, "acc_sum": self.acc_sum, "n": self.n,
                "align": {n: list(v) for n, v in self.align.items()}, "last_accuracy": self.last_accuracy}

    def load_state_dict(self, s: dict) -> None:
        self.step, self.n = int(s["step"]), int(s["n"])
        self.loss_sum, self.acc_sum = float(s["loss_sum"]), float(s["acc_sum"])
        self.align = {n: [float(x) for x in s["align"].get(n, [])] for n in self.layer_names}
        self.last_accuracy = None if s.get("last_accuracy") is None else float(s["last_accuracy"])


def stream_summary(m: dict, last: int = 5) -> dict:
    """Supervised runs: the last test accuracy, the steps, and each align_<layer>'s mean over the last rows."""
    acc = m["accuracy"]
    out = {"metric": "test accuracy", "final": float(acc[-1]), "steps": int(m["step"][-1])}
    for k in m:
        if k.startswith("align_"):
            v = np.asarray(m[k][-last:], dtype=float)
            out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    return out
