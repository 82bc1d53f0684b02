"""The protocols of the run loop, and small bases for their implementations.

The loop (:mod:`neuroprobe.loop`) drives an :class:`Agent` (network + how it acts), a
:class:`Learner` (eligibility + credit → ``.grad``), a :class:`Task` (a batch-first vector env
with its budget) and a :class:`Reporter` (metrics rows), with :class:`Callback`s for everything
else; a rule config's ``build(exp, ctx)`` returns them as :class:`RunParts`. This module imports
nothing of neuroprobe's, so every layer (backends included) can implement the protocols.

Bases: :class:`ModuleAgent` (an agent over one torch module ``self.net``: its parameters, no
constraint, its state ``{"net": net.state_dict()}``), :class:`RuleLearner` (a learner over a rule
``self.rule``: nothing at the end of a step, its state the rule's), :class:`NullLearner` (learns
nothing: a frozen network, or one that learns inside the agent).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .loop import Loop

__all__ = ["Agent", "Learner", "Task", "Reporter", "Callback", "Transition", "RunParts", "BuildContext",
           "check_finite", "ModuleAgent", "RuleLearner", "NullLearner"]


@dataclass
class Transition:
    """One step of the loop, as learners, reporters and callbacks see it."""

    obs: Any            # the observation the agent acted on
    action: Any         # what the agent returned
    next_obs: Any       # the task's observation after the step
    reward: Any         # (B,) reward (or modulatory signal) of the step
    terminated: Any     # (B,) bool
    truncated: Any      # (B,) bool
    info: dict          # the task's info (episode ends, labels, active mask, ...)
    updated: bool = False  # the learner wrote .grad and the optimizer stepped


@runtime_checkable
class Agent(Protocol):
    def act(self, obs: Any) -> Any: ...
    def parameters(self) -> Iterable[torch.Tensor]: ...
    def constrain(self) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class Learner(Protocol):
    def learn(self, tr: Transition) -> bool: ...
    def end_step(self) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class Task(Protocol):
    def reset(self, seed: int) -> tuple[Any, dict]: ...
    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict]: ...
    def finished(self) -> bool: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class Reporter(Protocol):
    columns: list[str]
    key: list[str]           # columns that identify a row (resume truncates to the checkpoint's key)
    def rows(self, tr: Transition) -> list[dict]: ...
    def progress(self) -> tuple[int, int]: ...       # (done, total) in progress-bar units
    def schedule_count(self) -> int: ...             # budget units done (run.checkpoint_every counts these)
    def where(self) -> str: ...                      # "episode 12", "t = 3.000 s"
    def postfix(self) -> str: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class Callback:
    """Hooks around the loop; ``state_dict`` entries are checkpointed under the callback's name."""

    name = "callback"

    def on_start(self, loop: "Loop") -> None: ...
    def on_step(self, loop: "Loop", tr: Transition) -> None: ...
    def on_end(self, loop: "Loop") -> None: ...
    def state_dict(self) -> dict:
        return {}
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class BuildContext:
    """What a rule's ``build`` gets besides the experiment: the run's generator and device."""

    generator: torch.Generator
    device: torch.device


@dataclass
class RunParts:
    """Everything :class:`Loop` runs: made by a rule config's ``build(exp, ctx)``."""

    agent: Agent
    learner: Learner
    task: Task
    reporter: Reporter
    optimizer: torch.optim.Optimizer | None
    description: str                                   # progress-bar label
    unit: str = "step"                                  # progress-bar unit
    callbacks: list[Callback] = field(default_factory=list)
    hint: str = "lower rule.lr"                         # what the non-finite guard suggests
    summary: Callable[[dict], dict] | None = None       # metrics columns -> summary.json


def check_finite(params: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Name of the first parameter holding NaN/Inf, else None."""
    for name, p in params:
        if not bool(torch.isfinite(p).all()):
            return name
    return None



class ModuleAgent:
    """Agent protocol over the module ``self.net`` (set by the subclass), except ``act``."""

    def parameters(self):
        return self.net.parameters()

    def named_parameters(self):
        return self.net.named_parameters()

    def constrain(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.net.load_state_dict(s["net"])


class RuleLearner:
    """Learner protocol over the rule ``self.rule`` (set by the subclass), except ``learn``."""

    def end_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, s: dict) -> None:
        self.rule.load_state_dict(s)


class NullLearner:
    """Learns nothing: a frozen network, or one whose learning happens inside the agent (Brian2's
    synapses)."""

    def learn(self, tr: Transition) -> bool:
        return False

    def end_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, s: dict) -> None:
        pass
