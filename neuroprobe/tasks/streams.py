"""The label-stream task of supervised runs: S parallel streams of (input, label), one input each per step.

Wraps a :class:`~neuroprobe.tasks.SupervisedStream` (its order is seeded when it is built, with the
run's seed) as a batch-first Task: the observation is the inputs x_t (S, n_in) shown at step t;
``step(action)`` ignores the action (the labels do not depend on what the network predicts) and
returns the next step's inputs with the info of step t (tensors of shape (S,)):

    y          the labels of x_t (CET's credit uses them at once)
    delayed_y  the labels of the inputs shown ``label_delay`` steps ago (IGNORE_INDEX where not valid)
    valid      False during the first ``label_delay`` steps

The task is finished after ``steps`` steps. Each step draws the next inputs (also after the last
step), so a run resumed with a larger ``task.steps`` continues exactly as a longer run would.
"""
from __future__ import annotations

import torch

from .digits import DelayedLabelBatch, SupervisedStream

__all__ = ["LabelStreamTask"]


class LabelStreamTask:
    """Task protocol over a :class:`SupervisedStream` with a budget of ``steps`` (module docstring)."""

    def __init__(self, stream: SupervisedStream, steps: int):
        self.stream, self.steps = stream, int(steps)
        self.S = stream.batch_size
        self.t = 0                                  # steps taken
        self.batch: DelayedLabelBatch | None = None  # the inputs shown next, with their labels

    def reset(self, seed: int):
        """The first inputs (the stream's order was seeded when it was built, with the run's seed)."""
        self.t = 0
        self.batch = self.stream.next_delayed()
        return self.batch.x, {}

    def step(self, action):
        cur = self.batch
        self.t += 1
        self.batch = self.stream.next_delayed()
        info = {"y": cur.y, "delayed_y": cur.delayed_y, "valid": cur.valid}
        no = torch.zeros(self.S, dtype=torch.bool)
        return self.batch.x, torch.zeros(self.S), no, no, info

    def finished(self) -> bool:
        return self.t >= self.steps

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stream.test_set()

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "t": self.t, "batch": dict(self.batch._asdict())}

    def load_state_dict(self, s: dict) -> None:
        self.stream.load_state_dict(s["stream"])
        self.t = int(s["t"])
        b = s["batch"]
        self.batch = DelayedLabelBatch(*(b[k].clone() for k in DelayedLabelBatch._fields))
