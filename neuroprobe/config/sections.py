"""Typed config sections shared by every experiment: top-level keys, model/network references,
the reward-prediction error, monitors and run settings."""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, StrictStr, model_validator

from .base import StrictInt, Finite, NonNegFloat, NonNegInt, PosFloat, PosInt, Size, StrictBool, StrictModel, UnitFloat

__all__ = ["ModelSection", "NetworkSection", "ModulatorSection", "MonitorSection", "RunSection", "NAME_PATTERN",
           "ACTIVATION_NAMES", "READOUT_NAMES", "INIT_NAMES"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$"  # run names become directory names: no '/', no '..'
ACTIVATION_NAMES = Literal["leaky_relu", "tanh", "relu", "identity"]
READOUT_NAMES = Literal["softmax", "identity"]
INIT_NAMES = Literal["xavier_normal", "xavier_uniform", "kaiming_uniform"]


class ModelSection(StrictModel):
    """A rate network: ``file = "models/x.toml"``, or the network inline (``sizes`` etc.)."""

    file: Optional[StrictStr] = None
    """TOML file of the network (relative to the config file's folder or the working directory)."""
    sizes: Optional[list[Size]] = Field(default=None, min_length=2, max_length=64)
    """Layer sizes, input first, e.g. ``[4, 64, 2]``."""
    activation: Optional[ACTIVATION_NAMES] = None
    """Hidden-layer nonlinearity (default leaky_relu, slope 0.1)."""
    readout: Optional[READOUT_NAMES] = None
    """Output readout (default softmax)."""
    bias: Optional[StrictBool] = None
    """Whether layers have a bias (default false)."""
    init: Optional[INIT_NAMES] = None
    """Weight initialisation (default xavier_normal)."""
    name: Optional[StrictStr] = None
    """Free-form name of the network."""

    @model_validator(mode="after")
    def _file_or_inline(self):
        inline = [k for k in ("sizes", "activation", "readout", "bias", "init", "name") if getattr(self, k) is not None]
        if self.file is not None and inline:
            raise ValueError(f"[model] has 'file' and also {inline}; give either a file or inline keys")
        if self.file is None and self.sizes is None:
            raise ValueError("'model.sizes' missing (required without model.file), e.g. sizes = [4, 64, 2]")
        return self


class NetworkSection(StrictModel):
    """A spiking network: ``file = "models/snn_x.toml"`` (populations and projections)."""

    file: StrictStr
    """TOML file of the spiking network (relative to the config file's folder or the working directory)."""


class ModulatorSection(StrictModel):
    """The reward-prediction error δ = r − r̄ broadcast to the learners (RL rules)."""

    smoothing: UnitFloat = 0.66
    """λ of the running average r̄ ← r̄ + λ (r − r̄), in (0, 1]."""
    scale: Literal["none", "abs_reward", "std"] = "none"
    """Scaling of δ: none, by |r̄| (abs_reward) or by the running std."""
    init: Union[Literal["first"], Finite] = "first"
    """Initial r̄: "first" (the first reward) or a number."""


class StateEntry(StrictModel):
    variable: StrictStr
    population: StrictStr
    indices: Optional[list[NonNegInt]] = Field(default=None, max_length=100_000)
    every: PosInt = 1
    batch_index: NonNegInt = 0


class SpikesEntry(StrictModel):
    population: StrictStr
    indices: Optional[list[NonNegInt]] = Field(default=None, max_length=100_000)
    batch_index: NonNegInt = 0


class RateEntry(StrictModel):
    population: StrictStr
    batch_index: NonNegInt = 0
    bin_steps: PosInt = 1


class MonitorSection(StrictModel):
    """What spiking runs record into ``recordings.npz`` (rate runs record their weights)."""

    spikes: list[Union[StrictStr, SpikesEntry]] = Field(default_factory=list, max_length=1000)
    """Populations whose spikes are recorded (names, or tables with indices/batch_index)."""
    rate: list[Union[StrictStr, RateEntry]] = Field(default_factory=list, max_length=1000)
    """Populations whose rate (Hz) is recorded."""
    state: list[StateEntry] = Field(default_factory=list, max_length=1000)
    """State variables: tables with variable, population, indices, every."""

    def as_table(self) -> dict:
        """The plain ``[monitor]`` table :func:`neuroprobe.monitors.monitors_from_config` reads."""
        d = self.model_dump(exclude_none=True)
        return {k: v for k, v in d.items() if v}


class RunSection(StrictModel):
    """How the run is executed and written (not what is learned)."""

    checkpoint_every: Optional[PosFloat] = None
    """Checkpoint period in the task's budget unit: episodes (task.episodes), steps (task.steps) or
    seconds of simulated time (task.duration). Default: a tenth of the budget."""
    rolling: Size = 50
    """Episodes in the progress bar's rolling mean and in the summary's final mean."""
    progress: StrictBool = True
    """Show a progress bar."""
    threads: Annotated[StrictInt, Field(ge=1, le=256)] = 1
    """CPU threads: torch's (small networks run fastest on one), and the event engine's threads over
    trials (each trial runs sequentially, so the results do not depend on it)."""
    backend: Literal["torch", "event", "brian2", "lava"] = "torch"
    """Engine of a spiking experiment: torch, event (the event-driven compiled CPU engine), Brian2 or
    Lava (neuroprobe.backends.BACKENDS)."""
    precision: Literal["float", "fixed"] = "float"
    """Arithmetic of the engine: float, or Loihi's fixed point (torch's integer engine, Lava fixed_pt)."""
    rng: Literal["auto", "generator", "hash"] = "auto"
    """Random numbers of a spiking run (membrane/escape noise, Poisson inputs, reward delays):
    "generator" (torch's generator seeded by the run), "hash" (counter-based: a hash of seed, step
    and neuron, the same numbers on every engine, so the torch and event engines give identical
    spikes), "auto" (hash on the event engine, fixed point and Lava; generator elsewhere)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Float precision of the torch and event engines' spiking networks (float64: engines agree
    spike for spike)."""
    propagation: Literal["auto", "dense", "event", "csr"] = "auto"
    """How spikes cross sparse projections in the torch engine."""
    record_last: NonNegFloat = 10.0
    """Spiking runs: [monitor] recordings cover the last seconds of the run (0 = all)."""

    @property
    def hash_rng(self) -> bool:
        """Whether the run draws counter-based hash noise (``rng``, "auto" resolved by the engine)."""
        if self.rng != "auto":
            return self.rng == "hash"
        return self.backend in ("event", "lava") or self.precision == "fixed"
