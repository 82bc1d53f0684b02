"""Delivery of a modulatory/credit signal to each layer with a per-layer delay.

A signal emitted at step t reaches layer l at step t + D_l. Delays are either constant across
layers or stacked with depth, the CET paper's "retrograde" setting: the last layer gets
``base``, the one before ``base + step``, then ``base + 2·step`` … (signals travel backwards,
one hop per layer). Implemented as one ring buffer per layer, O(D_l × signal size) memory.
"""
from __future__ import annotations

from torch import Tensor

from .._args import check_int
from ..errors import ConfigError


def layer_delays(n_layers: int, delay: int, mode: str = "constant", step: int | None = None) -> list[int]:
    """Per-layer delays, input layer first.

    mode="constant": every layer gets ``delay``.
    mode="retrograde": last layer ``delay``, each earlier layer ``step`` more (``step`` defaults to
    ``delay``, so the delays are D, 2D, 3D, … counted from the output when delay > 0).
    """
    n_layers = check_int("n_layers", n_layers, ge=1)
    delay = check_int("delay", delay, ge=0)
    if step is not None:
        step = check_int("step", step, ge=0)
    if mode == "constant":
        return [delay] * n_layers
    if mode == "retrograde":
        s = delay if step is None else step
        return [delay + s * (n_layers - 1 - l) for l in range(n_layers)]
    raise ConfigError(f"delay_mode = {mode!r}: allowed ['constant', 'retrograde']")


class DelayedBroadcast:
    """Per-layer delay lines for signals of per-layer shapes.

    ``push(signals) -> delivered``: signals[l] is emitted now; delivered[l] is what was emitted
    D_l steps ago (None while the line is still filling, i.e. for the first D_l steps).
    """

    def __init__(self, delays: list[int]):
        self.delays = list(delays)
        self.buffers: list[list[Tensor]] = [[] for _ in delays]

    def push(self, signals: list[Tensor]) -> list[Tensor | None]:
        if len(signals) != len(self.delays):
            raise ConfigError(f"DelayedBroadcast got {len(signals)} signals for {len(self.delays)} layers")
        out: list[Tensor | None] = []
        for buf, d, s in zip(self.buffers, self.delays, signals):
            buf.append(s)
            out.append(buf.pop(0) if len(buf) > d else None)
        return out

    def reset(self) -> None:
        self.buffers = [[] for _ in self.delays]

    def state_dict(self) -> dict:
        return {"buffers": [[t.clone() for t in b] for b in self.buffers]}

    def load_state_dict(self, d: dict) -> None:
        self.buffers = [[t.clone() for t in b] for b in d["buffers"]]
