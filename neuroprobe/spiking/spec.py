"""Description of a spiking network (populations and projections), loadable from TOML.

One description, several engines: the torch engine (:class:`~neuroprobe.spiking.SpikingNetwork`),
the Brian2 export and the Lava deployment all read this.

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
    kind = "lif"
    sign = "excitatory"  # "excitatory" | "inhibitory" | "none" (sign of its outgoing weights, Dale)
    i_ext = 0.0          # constant input current
    [population.lif]     # LIFParameters except dt (taken from [network])
    tau_mem = 20e-3
    tau_syn = 5e-3

    [[projection]]
    pre = "input"
    post = "exc"
    p = 0.1              # connection probability
    weight = 0.5         # mean |w| (the pre population's sign is applied)
    weight_std = 0.0
    fixed_indegree = false
    autapses = false     # i -> i synapses within one population
    w_min = 0.0          # bounds on |w| applied by plasticity (Dale: the sign never flips)
    w_max = 1.0
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..neurons.lif import ENGINES, LIFParameters

__all__ = ["PopulationSpec", "ProjectionSpec", "SpikingSpec", "load_spiking_spec", "POPULATION_KINDS", "SIGNS"]

POPULATION_KINDS = ("lif", "poisson", "input")
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

    def __post_init__(self) -> None:
        where = f"population {self.name!r}"
        if not self.name or "/" in self.name:
            raise ConfigError(f"population name {self.name!r}: must be non-empty without '/'")
        if not (isinstance(self.size, int) and self.size > 0):
            raise ConfigError(f"{where}: size = {self.size!r}: must be a positive integer")
        if self.kind not in POPULATION_KINDS:
            raise ConfigError(f"{where}: kind = {self.kind!r}: allowed {list(POPULATION_KINDS)}")
        if self.kind == "lif" and self.lif is None:
            raise ConfigError(f"{where}: kind 'lif' needs LIF parameters")
        if self.sign not in SIGNS:
            raise ConfigError(f"{where}: sign = {self.sign!r}: allowed {list(SIGNS)}")
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ConfigError(f"{where}: rate = {self.rate!r}: must be >= 0 Hz")


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

    @property
    def name(self) -> str:
        return f"{self.pre}->{self.post}"

    def __post_init__(self) -> None:
        where = f"projection {self.pre}->{self.post}"
        if not 0 < self.p <= 1:
            raise ConfigError(f"{where}: p = {self.p!r}: must be in (0, 1]")
        if self.weight_std < 0 or self.weight < 0:
            raise ConfigError(f"{where}: weight and weight_std are magnitudes (>= 0); the pre population's sign "
                              "gives the sign")
        if not 0 <= self.w_min <= self.w_max:
            raise ConfigError(f"{where}: need 0 <= w_min <= w_max (got {self.w_min}, {self.w_max})")


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
        if not self.dt > 0:
            raise ConfigError(f"network.dt = {self.dt!r}: must be a positive number of seconds")
        by = {p.name: p for p in self.populations}
        for pr in self.projections:
            for end in (pr.pre, pr.post):
                if end not in by:
                    raise ConfigError(f"projection {pr.name}: unknown population {end!r}; have {names}")
            if by[pr.post].kind != "lif":
                raise ConfigError(f"projection {pr.name}: post population must be 'lif' (is {by[pr.post].kind!r})")

    def population(self, name: str) -> PopulationSpec:
        for p in self.populations:
            if p.name == name:
                return p
        raise ConfigError(f"unknown population {name!r}; have {[p.name for p in self.populations]}")

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations if p.kind == "lif")


_POP_KEYS = {f.name for f in fields(PopulationSpec)}
_PROJ_KEYS = {f.name for f in fields(ProjectionSpec)}


def spec_from_dict(d: dict[str, Any], src: str = "<network>") -> SpikingSpec:
    """Build and validate a SpikingSpec from the parsed TOML layout of the module docstring."""
    bad = sorted(set(d) - {"network", "population", "projection"})
    if bad:
        raise ConfigError(f"{src}: unknown section(s) {bad}; allowed ['network', 'population', 'projection']")
    net = dict(d.get("network", {}))
    bad = sorted(set(net) - {"dt", "engine"})
    if bad:
        raise ConfigError(f"{src}: unknown key(s) network.{bad}; allowed ['dt', 'engine']")
    dt = float(net.get("dt", 1e-3))
    pops = []
    for raw in d.get("population", []):
        raw = dict(raw)
        bad = sorted(set(raw) - _POP_KEYS)
        if bad:
            raise ConfigError(f"{src}: population {raw.get('name')!r}: unknown key(s) {bad}; allowed {sorted(_POP_KEYS)}")
        if raw.get("kind", "lif") == "lif":
            lif = dict(raw.get("lif", {}))
            if "dt" in lif:
                raise ConfigError(f"{src}: population {raw.get('name')!r}: dt is set once, in [network]")
            raw["lif"] = LIFParameters.from_dict({**lif, "dt": dt}, where=f"{src}: population {raw.get('name')!r}")
        for k in ("rate", "i_ext"):
            if k in raw:
                raw[k] = float(raw[k])
        pops.append(PopulationSpec(**raw))
    if not pops:
        raise ConfigError(f"{src}: no [[population]] defined")
    projs = []
    for raw in d.get("projection", []):
        bad = sorted(set(raw) - _PROJ_KEYS)
        if bad:
            raise ConfigError(f"{src}: projection {raw.get('pre')}->{raw.get('post')}: unknown key(s) {bad}; "
                              f"allowed {sorted(_PROJ_KEYS)}")
        projs.append(ProjectionSpec(**{k: (float(v) if k in ("p", "weight", "weight_std", "w_min", "w_max") else v)
                                       for k, v in raw.items()}))
    return SpikingSpec(tuple(pops), tuple(projs), dt=dt, engine=net.get("engine"))


def load_spiking_spec(path: str | Path) -> SpikingSpec:
    """Load and validate a spiking network description from a TOML file (see ``models/snn_*.toml``)."""
    from ..tomlio import read_toml

    return spec_from_dict(read_toml(path, "network file"), src=str(path))
