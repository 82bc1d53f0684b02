"""Description of a spiking network (populations and projections), loadable from TOML.

One description, several engines: the torch engine (:class:`~neuroprobe.spiking.SpikingNetwork`),
the Brian2 export and the Lava deployment all read this.

Files and dicts are validated by the pydantic models of :mod:`neuroprobe.config.networks`
(:class:`~neuroprobe.config.networks.SpikingNetworkFile`): numbers finite and in range, booleans
real TOML booleans, no unknown keys; a bad value is one :class:`ConfigError` line naming the file
and the key. The dataclasses below check themselves again for Python callers.

TOML layout (times in seconds, rates in Hz)::

    [network]
    dt = 1e-3            # integration step (s)
    engine = "norse"     # "norse" | "torch" (default: norse if installed)

    [[population]]
    name = "input"
    size = 100
    kind = "poisson"     # "lif" | "poisson" | "input" (spikes given each step)
    rate = 10.0          # poisson only (Hz)

    [[population]]
    name = "exc"
    size = 800
    kind = "lif"         # or "izhikevich" (docs/izhikevich.md)
    sign = "excitatory"  # "excitatory" | "inhibitory" | "none" (sign of its outgoing weights, Dale)
    i_ext = 0.0          # constant input current
    [population.lif]     # LIFParameters except dt (taken from [network])
    tau_mem = 20e-3
    tau_syn = 5e-3
    # kind "izhikevich": [population.izhikevich] a, b, c, d, v_peak, noise ("none" | "uniform"),
    # noise_amp (mV, ms; network.dt must be 1e-3; IzhikevichParameters)

    [[projection]]
    pre = "input"
    post = "exc"
    p = 0.1              # connection probability
    weight = 0.5         # mean |w| (the pre population's sign is applied)
    weight_std = 0.0
    fixed_indegree = false
    out_degree = 0       # > 0: exactly this many distinct targets per pre neuron (p unused)
    autapses = false     # i -> i synapses within one population
    w_min = 0.0          # bounds on |w| applied by plasticity (Dale: the sign never flips)
    w_max = 1.0          # (finite; leave it out for no upper bound)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..neurons.izhikevich import DT as IZHIKEVICH_DT
from ..neurons.izhikevich import IzhikevichParameters
from ..neurons.lif import ENGINES, LIFParameters

__all__ = ["PopulationSpec", "ProjectionSpec", "SpikingSpec", "load_spiking_spec", "POPULATION_KINDS", "NEURON_KINDS",
           "SIGNS"]

POPULATION_KINDS = ("lif", "poisson", "input", "izhikevich")
NEURON_KINDS = ("lif", "izhikevich")  # populations with a neuron model (projection targets)
SIGNS = {"excitatory": 1.0, "inhibitory": -1.0, "none": 1.0}


@dataclass(frozen=True)
class PopulationSpec:
    name: str
    size: int
    kind: str = "lif"
    lif: LIFParameters | None = None
    rate: float = 0.0
    sign: str = "none"
    i_ext: float = 0.0
    izhikevich: IzhikevichParameters | None = None  # kind "izhikevich" (a dict is validated and converted)

    def __post_init__(self) -> None:
        where = f"population {self.name!r}"
        if isinstance(self.izhikevich, Mapping):
            object.__setattr__(self, "izhikevich", IzhikevichParameters.from_dict(self.izhikevich, where))
        if not self.name or "/" in self.name:
            raise ConfigError(f"population name {self.name!r}: must be non-empty without '/'")
        if isinstance(self.size, bool) or not (isinstance(self.size, int) and 0 < self.size <= 1_000_000):
            raise ConfigError(f"{where}: size = {self.size!r}: must be an integer in 1 .. 1000000")
        if self.kind not in POPULATION_KINDS:
            raise ConfigError(f"{where}: kind = {self.kind!r}: allowed {list(POPULATION_KINDS)}")
        if self.kind == "lif" and self.lif is None:
            raise ConfigError(f"{where}: kind 'lif' needs LIF parameters")
        if self.kind == "izhikevich" and self.izhikevich is None:
            object.__setattr__(self, "izhikevich", IzhikevichParameters())
        if self.kind != "izhikevich" and self.izhikevich is not None:
            raise ConfigError(f"{where}: Izhikevich parameters are for kind 'izhikevich' (kind is {self.kind!r})")
        if self.izhikevich is not None and not isinstance(self.izhikevich, IzhikevichParameters):
            raise ConfigError(f"{where}: izhikevich = {type(self.izhikevich).__name__}: give IzhikevichParameters "
                              "or a dict")
        if self.sign not in SIGNS:
            raise ConfigError(f"{where}: sign = {self.sign!r}: allowed {list(SIGNS)}")
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ConfigError(f"{where}: rate = {self.rate!r}: must be >= 0 Hz")
        if not math.isfinite(self.i_ext):
            raise ConfigError(f"{where}: i_ext = {self.i_ext!r}: must be finite")


@dataclass(frozen=True)
class ProjectionSpec:
    pre: str
    post: str
    p: float = 0.1
    weight: float = 0.1
    weight_std: float = 0.0
    fixed_indegree: bool = False
    autapses: bool = False
    w_min: float = 0.0
    w_max: float = math.inf
    out_degree: int = 0  # > 0: exactly this many distinct post targets per pre neuron (p unused)

    @property
    def name(self) -> str:
        return f"{self.pre}->{self.post}"

    def __post_init__(self) -> None:
        where = f"projection {self.pre}->{self.post}"
        if not 0 < self.p <= 1:
            raise ConfigError(f"{where}: p = {self.p!r}: must be in (0, 1]")
        for k in ("p", "weight", "weight_std", "w_min"):
            if not math.isfinite(getattr(self, k)):
                raise ConfigError(f"{where}: {k} = {getattr(self, k)!r}: must be finite")
        if self.weight_std < 0 or self.weight < 0:
            raise ConfigError(f"{where}: weight and weight_std are magnitudes (>= 0); the pre population's sign "
                              "gives the sign")
        if not 0 <= self.w_min <= self.w_max:
            raise ConfigError(f"{where}: need 0 <= w_min <= w_max (got {self.w_min}, {self.w_max})")
        if isinstance(self.out_degree, bool) or not isinstance(self.out_degree, int) or self.out_degree < 0:
            raise ConfigError(f"{where}: out_degree = {self.out_degree!r}: must be an integer >= 0 (0 = use p)")
        if self.out_degree and self.fixed_indegree:
            raise ConfigError(f"{where}: give fixed_indegree or out_degree, not both")


@dataclass(frozen=True)
class SpikingSpec:
    populations: tuple[PopulationSpec, ...]
    projections: tuple[ProjectionSpec, ...] = ()
    dt: float = 1e-3
    engine: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names):
            raise ConfigError(f"population names must be unique (got {names})")
        if self.engine is not None and self.engine not in ENGINES:
            raise ConfigError(f"network.engine = {self.engine!r}: allowed {list(ENGINES)}")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ConfigError(f"network.dt = {self.dt!r}: must be a positive number of seconds")
        by = {p.name: p for p in self.populations}
        for pr in self.projections:
            for end in (pr.pre, pr.post):
                if end not in by:
                    raise ConfigError(f"projection {pr.name}: unknown population {end!r}; have {names}")
            if by[pr.post].kind not in NEURON_KINDS:
                raise ConfigError(f"projection {pr.name}: post population must be one of {list(NEURON_KINDS)} "
                                  f"(is {by[pr.post].kind!r})")
            if pr.out_degree:
                n_post = by[pr.post].size - (1 if pr.pre == pr.post and not pr.autapses else 0)
                if pr.out_degree > n_post:
                    raise ConfigError(f"projection {pr.name}: out_degree = {pr.out_degree} exceeds the {n_post} "
                                      "possible targets of a pre neuron")
        izh = [p.name for p in self.populations if p.kind == "izhikevich"]
        if izh and self.dt != IZHIKEVICH_DT:
            raise ConfigError(f"network.dt = {self.dt!r}: Izhikevich populations {izh} need dt = 1e-3 s (the "
                              "two-half-step scheme of Izhikevich's code)")

    def population(self, name: str) -> PopulationSpec:
        for p in self.populations:
            if p.name == name:
                return p
        raise ConfigError(f"unknown population {name!r}; have {[p.name for p in self.populations]}")

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations if p.kind in NEURON_KINDS)


def spec_from_dict(d: dict[str, Any], src: str = "<network>") -> SpikingSpec:
    """Validate the parsed TOML layout of the module docstring (pydantic
    :class:`~neuroprobe.config.networks.SpikingNetworkFile`) and build its SpikingSpec; a bad value
    is one :class:`ConfigError` line naming ``src`` and the key."""
    from ..config.networks import SpikingNetworkFile, validate_file

    f = validate_file(SpikingNetworkFile, d, src)
    dt = f.network.dt
    pops = tuple(PopulationSpec(name=p.name, size=p.size, kind=p.kind,
                                lif=None if p.lif is None else LIFParameters(**p.lif.model_dump(), dt=dt),
                                rate=p.rate, sign=p.sign, i_ext=p.i_ext,
                                izhikevich=None if p.izhikevich is None else IzhikevichParameters(
                                    **p.izhikevich.model_dump())) for p in f.population)
    projs = tuple(ProjectionSpec(pre=r.pre, post=r.post, p=r.p, weight=r.weight, weight_std=r.weight_std,
                                 fixed_indegree=r.fixed_indegree, autapses=r.autapses, w_min=r.w_min,
                                 w_max=math.inf if r.w_max is None else r.w_max, out_degree=r.out_degree)
                  for r in f.projection)
    return SpikingSpec(pops, projs, dt=dt, engine=f.network.engine)


def load_spiking_spec(path: str | Path) -> SpikingSpec:
    """Load and validate a spiking network description from a TOML file (see ``models/snn_*.toml``)."""
    from ..tomlio import read_toml

    return spec_from_dict(read_toml(path, "network file"), src=str(path))
