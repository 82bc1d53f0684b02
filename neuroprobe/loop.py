"""The one run loop of neuroprobe, over three small protocols, with callbacks for everything else.

    obs, info = task.reset(seed)
    until task.finished():
        action = agent.act(obs)                                  # network + how it acts
        obs, reward, terminated, truncated, info = task.step(action)   # a batch-first vector env
        if learner.learn(transition):                            # eligibility + credit -> .grad
            optimizer.step(); agent.constrain()
        learner.end_step()
        callbacks: non-finite guard, metrics rows, monitors, progress bar, checkpoints

* an :class:`Agent` owns the network, its encoders/decoders and sub-stepping;
* a :class:`Learner` turns activity and a modulatory signal into ``.grad`` (accumulated, so rules
  compose with each other and with backprop) and has ``state_dict``/``load_state_dict``;
* a :class:`Task` is a batch-first Gymnasium-style vector env (reward delays, label streams,
  common-seed probe branches and spike encoders are wrappers) that knows its budget;
* a :class:`Reporter` turns steps into metrics rows (``metrics.csv``) and counts progress.

Everything a step needs to be repeated exactly is in the checkpoint (the components' state dicts,
the generator, the loop's observation and counters, the metrics file's position), so a run killed
at any moment and resumed ends with a byte-identical ``metrics.csv``.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import NeuroprobeError, NonFiniteError
from .protocols import (Agent, BuildContext, Callback, Learner, Reporter, RunParts, Task, Transition,  # noqa: F401
                        check_finite)
from .rundir import RunDir

__all__ = ["Agent", "Learner", "Task", "Reporter", "Callback", "Transition", "RunParts", "BuildContext", "Loop",
           "check_finite"]


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0][:160] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Loop:
    """Runs :class:`RunParts` in a :class:`~neuroprobe.rundir.RunDir` (see the module docstring)."""

    def __init__(self, parts: RunParts, run: RunDir, seed: int, generator: torch.Generator, checkpoint_every: int,
                 progress: bool = True):
        self.parts, self.run, self.seed, self.generator = parts, run, seed, generator
        self.checkpoint_every = int(checkpoint_every)
        self.show_progress = progress
        self.steps = 0                    # loop steps taken
        self.last_checkpoint = 0          # schedule count at the last checkpoint
        self.checkpointed_at: str | None = None
        self.obs: Any = None
        self.metrics = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        from .io.state import to_plain

        p = self.parts
        return to_plain({
            "agent": p.agent.state_dict(), "learner": p.learner.state_dict(), "task": p.task.state_dict(),
            "reporter": p.reporter.state_dict(),
            "optimizer": p.optimizer.state_dict() if p.optimizer is not None else None,
            "generator": self.generator.get_state(),
            "callbacks": {cb.name: cb.state_dict() for cb in p.callbacks},
            "loop": {"obs": self.obs, "steps": self.steps, "schedule_count": p.reporter.schedule_count(),
                     "where": p.reporter.where()},
            "metrics": self.metrics.position(),
        })

    def load_state_dict(self, s: dict) -> None:
        from .io.state import restore_like

        p = self.parts
        p.agent.load_state_dict(s["agent"])
        p.learner.load_state_dict(s["learner"])
        p.task.load_state_dict(s["task"])
        p.reporter.load_state_dict(s["reporter"])
        if p.optimizer is not None:
            p.optimizer.load_state_dict(s["optimizer"])
        self.generator.set_state(s["generator"])
        for cb in p.callbacks:
            cb.load_state_dict(s["callbacks"].get(cb.name, {}))
        self.obs = restore_like(self.obs, s["loop"]["obs"])
        self.steps = int(s["loop"]["steps"])
        self.last_checkpoint = int(s["loop"]["schedule_count"])
        self.checkpointed_at = s["loop"].get("where")

    def checkpoint(self) -> None:
        self.run.save_checkpoint(self.state_dict())
        self._unverified = False
        self.last_checkpoint = self.parts.reporter.schedule_count()
        self.checkpointed_at = self.parts.reporter.where()

    # ------------------------------------------------------------------ guard
    def _stop(self, what: str) -> NonFiniteError:
        where = self.parts.reporter.where()
        if self.checkpointed_at is not None:
            kept = f"last good checkpoint kept at {self.run.checkpoint_path} ({self.checkpointed_at})"
        else:
            kept = f"no checkpoint was written yet; metrics up to {where} are in {self.run.metrics_path}"
        return NonFiniteError(f"{what} at {where}; stopped; {kept} ({self.parts.hint})")

    def _guard(self) -> None:
        bad = check_finite(self._named_parameters())
        if bad is not None:
            raise self._stop(f"weights became NaN/Inf ({bad})")

    def _named_parameters(self):
        named = getattr(self.parts.agent, "named_parameters", None)
        if named is not None:
            return named()
        return ((f"parameter {i}", p) for i, p in enumerate(self.parts.agent.parameters()))

    # ------------------------------------------------------------------ the loop
    def run_loop(self, resume_state: dict | None) -> None:
        p = self.parts
        self._unverified = resume_state is not None  # until a checkpoint is written after resuming
        self.obs, _ = p.task.reset(self.seed)
        if resume_state is None:
            self.metrics = self.run.open_metrics(p.reporter.columns, p.reporter.key, None)
        else:
            # a checkpoint that passed its checksum but does not fit this run's parts (crafted, or
            # written by another version) is refused with one line before anything is written
            refused = f"checkpoint {str(self.run.checkpoint_path)!r} refused: its state does not fit this run"
            bad = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError)
            try:
                # torch's warnings about a damaged state (a tensor indexed by a key) would print lines of
                # their own: the refusal below says it in one
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.load_state_dict(resume_state)
                position = resume_state["metrics"]
            except NeuroprobeError as e:  # a component's own check (one line)
                raise NeuroprobeError(f"{refused} ({' '.join(str(e).split())[:200]})") from None
            except bad as e:
                raise NeuroprobeError(f"{refused} ({_first_line(e)})") from None
            try:
                self.metrics = self.run.open_metrics(p.reporter.columns, p.reporter.key, position)
            except bad as e:  # a malformed metrics position (the file's own refusals name the file)
                raise NeuroprobeError(f"{refused} (metrics position: {_first_line(e)})") from None
        for cb in p.callbacks:
            cb.on_start(self)
        done, total = p.reporter.progress()
        bar = tqdm(total=total, initial=min(done, total), unit=p.unit, desc=p.description, dynamic_ncols=True,
                   disable=not self.show_progress, unit_scale=p.unit == "step")
        try:
            try:
                self._run_steps(bar)
            except Exception as e:
                # a checkpoint that loaded but breaks the first steps after resuming (a crafted or
                # foreign state of the right structure) is refused with one line, not a traceback
                if not self._unverified or isinstance(e, NeuroprobeError):
                    raise
                raise NeuroprobeError(f"checkpoint {str(self.run.checkpoint_path)!r} refused: the run fails right "
                                      f"after resuming from it ({_first_line(e)})") from None
            for cb in p.callbacks:
                cb.on_end(self)
        finally:
            bar.close()
            self.metrics.close()

    def _run_steps(self, bar) -> None:
        p = self.parts
        last_postfix = time.monotonic()
        while not p.task.finished():
            obs = self.obs
            try:
                action = p.agent.act(obs)
                nxt, r, term, trunc, info = p.task.step(action)
                tr = Transition(obs, action, nxt, r, term, trunc, info)
                if p.learner.learn(tr):
                    if p.optimizer is not None:
                        p.optimizer.step()
                    p.agent.constrain()
                    tr.updated = True
                    self._guard()
                p.learner.end_step()
            except NonFiniteError as e:
                if "stopped;" in str(e):
                    raise
                raise self._stop(str(e)) from None
            self.obs = nxt
            self.steps += 1
            for row in p.reporter.rows(tr):
                self.metrics.write(row)
            for cb in p.callbacks:
                cb.on_step(self, tr)
            d, _ = p.reporter.progress()
            if d != bar.n:
                bar.update(d - bar.n)
                now = time.monotonic()
                if now - last_postfix > 0.5:
                    bar.set_postfix_str(p.reporter.postfix(), refresh=False)
                    last_postfix = now
            count = p.reporter.schedule_count()
            if count // self.checkpoint_every > self.last_checkpoint // self.checkpoint_every \
                    and not p.task.finished():
                self.checkpoint()
        bar.set_postfix_str(p.reporter.postfix(), refresh=False)
        self.checkpoint()
