"""Callbacks of the run loop (:class:`neuroprobe.loop.Callback`) shared by several rules.

* :class:`MonitorsCallback`: spiking runs on the torch engine record ``[monitor]`` (and whatever
  else the rule watches, e.g. weights) with :class:`~neuroprobe.monitors.MonitorSet` s and write
  ``recordings.npz`` when the run ends; what is recorded so far is in the checkpoint, so a resumed
  run writes the same arrays.
* :class:`RecordingsCallback`: writes recordings an agent collected itself (Brian2 runs) when the
  run ends.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .protocols import Callback

__all__ = ["MonitorsCallback", "RecordingsCallback"]


class MonitorsCallback(Callback):
    """Record monitor sets every loop step and save them to ``<run>/recordings.npz`` at the end.

    Args:
        sets: ``[(MonitorSet, first_step)]``: each set records the steps ``>= first_step``.
        lookup: ``lookup(variable, population) -> Tensor`` of the current step (MonitorSet.record's).
        clock: index of the step just taken (0-based), called after each loop step.
        meta: ``meta/<key>`` entries of the file (given to the first set's ``recordings``).
    """

    name = "monitors"

    def __init__(self, sets: list[tuple[Any, int]], lookup: Callable, clock: Callable[[], int],
                 meta: Mapping[str, Any] | None = None, filename: str = "recordings.npz"):
        self.sets, self.lookup, self.clock = list(sets), lookup, clock
        self.meta, self.filename = dict(meta or {}), filename

    def on_step(self, loop, tr) -> None:
        step = self.clock()
        for ms, first in self.sets:
            if step >= first:
                ms.record(step, self.lookup)

    def recordings(self) -> dict:
        out: dict = {}
        for i, (ms, _) in enumerate(self.sets):
            out.update(ms.recordings(self.meta if i == 0 else None))
        return out

    def on_end(self, loop) -> None:
        from .monitors import save_recordings

        if self.sets:
            save_recordings(Path(loop.run.path) / self.filename, self.recordings())

    def state_dict(self) -> dict:
        return {"sets": [ms.state_dict() for ms, _ in self.sets]}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("sets") if state else None
        if saved is None:
            return
        for (ms, _), s in zip(self.sets, saved):
            ms.load_state_dict(s)


class RecordingsCallback(Callback):
    """Save ``recordings()`` (a dict of arrays) to ``<run>/recordings.npz`` when the run ends."""

    name = "recordings"

    def __init__(self, recordings: Callable[[], Mapping[str, Any]], filename: str = "recordings.npz"):
        self.recordings, self.filename = recordings, filename

    def on_end(self, loop) -> None:
        from .monitors import save_recordings

        rec = self.recordings()
        if rec:
            save_recordings(Path(loop.run.path) / self.filename, rec)
