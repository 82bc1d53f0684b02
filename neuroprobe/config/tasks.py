"""Typed configs of the tasks, one class per ``task.name`` (discriminated union in the experiment).

Each class states its ``family`` (which rules apply), its budget key and the budget's unit: the unit
``run.checkpoint_every`` is counted in.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, StrictStr

from .base import NonNegFloat, PosFloat, StrictInt, StrictModel
from typing import Annotated

__all__ = ["TaskConfig", "GymTaskConfig", "DigitsTaskConfig", "DistalRewardTaskConfig", "SpikingCartPoleTaskConfig",
           "TASK_CONFIGS", "register_task_config"]

Episodes = Annotated[StrictInt, Field(ge=1, le=100_000_000)]
Steps = Annotated[StrictInt, Field(ge=1, le=10_000_000_000)]
Delay = Annotated[StrictInt, Field(ge=0, le=100_000)]


class TaskConfig(StrictModel):
    """Base of task configs."""

    family: ClassVar[str] = ""
    """'rl' (episodic, rate models), 'supervised' (label stream, rate models) or 'spiking'."""
    budget_key: ClassVar[str] = ""
    unit: ClassVar[str] = ""

    @property
    def budget(self) -> float:
        return getattr(self, self.budget_key)


class GymTaskConfig(TaskConfig):
    """A reinforcement-learning environment (Gymnasium / NeuroGym / neuroprobe's CueDelay)."""

    family: ClassVar[str] = "rl"
    budget_key: ClassVar[str] = "episodes"
    unit: ClassVar[str] = "episodes"
    name: Literal["CartPole-v1", "Acrobot-v1", "Reaching1D-v0", "CueDelay-v0"]
    episodes: Episodes = 100
    """Episodes per seed."""
    reward: Literal["episode_end", "every_step"] = "episode_end"
    """When the rule is reinforced: with the episode's return at its end, or with every step's reward."""
    reward_delay: Delay = 0
    """Rewards delivered this many steps late (what is pending at episode end arrives on the last step);
    for CueDelay-v0 the task's own delay after the decisive action (0 = its default of 10)."""


class DigitsTaskConfig(TaskConfig):
    """Delayed-label supervised stream over scikit-learn's digits (or a local .npz)."""

    family: ClassVar[str] = "supervised"
    budget_key: ClassVar[str] = "steps"
    unit: ClassVar[str] = "steps"
    name: Literal["digits"]
    steps: Steps = 2000
    """Stream steps (one input per stream per step)."""
    batch: Annotated[StrictInt, Field(ge=1, le=65_536)] = 32
    """Parallel streams."""
    eval_every: Steps = 100
    """Steps between metrics rows (test accuracy)."""
    dataset: StrictStr = "digits"
    """'digits' or the path of a local .npz with x_train, y_train, x_test, y_test."""
    label_delay: Delay = 0
    """Labels arrive this many steps late (rule 'probe' only; CET's credit delay is rule.delay)."""


class DistalRewardTaskConfig(TaskConfig):
    """Izhikevich's (2007) distal reward problem on a spiking network (times in seconds)."""

    family: ClassVar[str] = "spiking"
    budget_key: ClassVar[str] = "duration"
    unit: ClassVar[str] = "seconds"
    name: Literal["distal_reward"]
    duration: Annotated[PosFloat, Field(le=1e7)] = 100.0
    """Simulated time (s)."""
    projection: StrictStr = "exc->exc"
    """The projection holding the rewarded synapse."""
    window: PosFloat = 10e-3
    """A post spike within this time (s) after the pre spike is a rewarded coincidence."""
    delay_min: NonNegFloat = 1.0
    """Shortest reward delay (s)."""
    delay_max: Annotated[NonNegFloat, Field(le=1e4)] = 3.0
    """Longest reward delay (s)."""
    dopamine_tau: PosFloat = 0.2
    """Decay time constant of the dopamine (s)."""
    dopamine_amp: PosFloat = 0.5
    """Dopamine increment per delivered reward."""
    report_every: PosFloat = 1.0
    """Seconds between metrics rows (one row per trial)."""
    tonic_dopamine: Annotated[NonNegFloat, Field(le=1e6)] = 0.0
    """A constant dopamine added to the phasic (reward) dopamine in every weight update:
    w += lr·(tonic_dopamine + d)·e (Izhikevich's ``0.002 + DA``; 0 = none). Engines: torch float, event float."""
    rewarded_weight: Annotated[NonNegFloat, Field(le=1e6)] | None = None
    """Initial weight (magnitude) of each trial's rewarded synapse, within the projection's
    [w_min, w_max] (Izhikevich starts it at 0); unset = the network's draw. Engines: torch float, event float."""


class SpikingCartPoleTaskConfig(TaskConfig):
    """CartPole-v1 controlled by a LIF network (rate-coded Poisson inputs)."""

    family: ClassVar[str] = "spiking"
    budget_key: ClassVar[str] = "episodes"
    unit: ClassVar[str] = "episodes"
    name: Literal["spiking_cartpole"]
    episodes: Episodes = 100
    """Episodes per trial."""
    steps_per_action: Annotated[StrictInt, Field(ge=1, le=100_000)] = 20
    """Network steps per environment step."""
    neurons_per_dim: Annotated[StrictInt, Field(ge=1, le=10_000)] = 10
    """Input neurons per observation dimension."""
    max_rate: Annotated[PosFloat, Field(le=1e5)] = 200.0
    """Peak input rate (Hz)."""


TASK_CONFIGS: list[type[TaskConfig]] = [GymTaskConfig, DigitsTaskConfig, DistalRewardTaskConfig,
                                        SpikingCartPoleTaskConfig]


def register_task_config(cls: type[TaskConfig]) -> type[TaskConfig]:
    """Add a task config class (its ``name`` must be a Literal) to the experiment's union."""
    from . import experiment

    if cls not in TASK_CONFIGS:
        TASK_CONFIGS.append(cls)
        experiment.invalidate()
    return cls
