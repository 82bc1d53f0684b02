"""Typed models (pydantic v2) of neuroprobe's network files: rate models (``models/mlp_*.toml``) and
spiking networks (``models/snn_*.toml``).

The loaders (:func:`neuroprobe.network.spec_from_toml`, :func:`neuroprobe.spiking.load_spiking_spec`,
:meth:`neuroprobe.neurons.lif.LIFParameters.from_dict`) validate a parsed file with these models
(:func:`validate_file`) and then build the runtime objects (``NetworkSpec``, ``SpikingSpec`` …) from
the validated values. Every number is finite and range-checked, booleans are TOML booleans, unknown
keys are refused with the allowed ones named, and every failure is one line naming the file and
the key::

    models/snn.toml: 'projection[0].autapses' = 'no': must be true or false

This module does not import torch: the names of activations, engines … are spelled out here (the
tests check that they match the runtime tables).
"""
from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..errors import ConfigError
from .base import Finite, NonNegFloat, PosFloat, Size, StrictBool, StrictModel, UnitFloat, validation_message

__all__ = ["RateNetworkFile", "RateModelFile", "SpikingNetworkFile", "SpikingNetworkTable", "PopulationEntry",
           "ProjectionEntry", "LIFEntry", "LIFParametersEntry", "IzhikevichEntry", "FieldIssue", "validate_file",
           "ACTIVATION_NAMES", "READOUT_NAMES", "INIT_NAMES", "POPULATION_KINDS", "SIGN_NAMES", "NOISE_KINDS",
           "IZHIKEVICH_NOISE_KINDS", "ENGINE_NAMES", "NEURON_KINDS"]

# the runtime tables these mirror: neurons/rate.py ACTIVATIONS, READOUTS; network.py INITS;
# spiking/spec.py POPULATION_KINDS, NEURON_KINDS, SIGNS; neurons/lif.py NOISE_KINDS, ENGINES;
# neurons/izhikevich.py IZHIKEVICH_NOISE_KINDS, DT
ACTIVATION_NAMES = ("identity", "leaky_relu", "relu", "tanh")
READOUT_NAMES = ("softmax", "identity")
INIT_NAMES = ("kaiming_uniform", "xavier_normal", "xavier_uniform")
POPULATION_KINDS = ("lif", "poisson", "input", "izhikevich")
NEURON_KINDS = ("lif", "izhikevich")
SIGN_NAMES = ("excitatory", "inhibitory", "none")
NOISE_KINDS = ("none", "membrane", "escape")
IZHIKEVICH_NOISE_KINDS = ("none", "uniform")
IZHIKEVICH_DT = 1e-3
ENGINE_NAMES = ("norse", "torch")

Activation = Literal[ACTIVATION_NAMES]  # type: ignore[valid-type]
Readout = Literal[READOUT_NAMES]  # type: ignore[valid-type]
Init = Literal[INIT_NAMES]  # type: ignore[valid-type]
PopulationKind = Literal[POPULATION_KINDS]  # type: ignore[valid-type]
Sign = Literal[SIGN_NAMES]  # type: ignore[valid-type]
NoiseKind = Literal[NOISE_KINDS]  # type: ignore[valid-type]
IzhikevichNoiseKind = Literal[IZHIKEVICH_NOISE_KINDS]  # type: ignore[valid-type]
Engine = Literal[ENGINE_NAMES]  # type: ignore[valid-type]


class FieldIssue(ValueError):
    """A cross-field check that failed, raised inside a model validator; its text names the key the
    way single-field errors do: ``'projection[0].post' = 'x': no such population``."""

    def __init__(self, key: str, value: Any, message: str):
        super().__init__(key, value, message)
        self.key, self.value, self.message = key, value, message

    def __str__(self) -> str:
        return f"'{self.key}' = {self.value!r}: {self.message}"


def _population_name(name: str) -> str:
    if "/" in name or "->" in name or not name.strip():
        raise ValueError("must be a non-empty name without '/' or '->'")
    return name


PopulationName = Annotated[str, AfterValidator(_population_name)]


# ------------------------------------------------------------------------------------ rate networks


class RateNetworkFile(StrictModel):
    """A rate network (the ``[network]`` table of ``models/mlp_*.toml``, or a config's inline model)."""

    sizes: Annotated[list[Size], Field(min_length=2, max_length=1024)]
    """Layer sizes, input first, e.g. [4, 64, 2] (each 1 .. 1_000_000)."""
    activation: Activation = "leaky_relu"
    """Hidden-layer activation."""
    readout: Readout = "softmax"
    """Readout of the last layer."""
    bias: StrictBool = False
    """Whether layers have biases."""
    init: Init = "xavier_normal"
    """Initialisation of the weights."""
    name: str = ""
    """Free-form name of the model."""


class RateModelFile(StrictModel):
    """A rate model file with a ``[network]`` table (a file without one is read at top level as a
    :class:`RateNetworkFile`)."""

    network: RateNetworkFile
    """The rate network."""


# ------------------------------------------------------------------------------------ spiking networks


class LIFEntry(StrictModel):
    """``[population.lif]``: one population's LIF parameters (seconds; dt comes from ``[network]``)."""

    unknown_key_hints: ClassVar[dict[str, str]] = {"dt": "dt is set once, in [network]"}

    tau_mem: PosFloat = 20e-3
    """Membrane time constant (s), > 0."""
    tau_syn: NonNegFloat = 5e-3
    """Synaptic current time constant (s); 0 = LIF without synaptic current."""
    v_th: Finite = 1.0
    """Threshold."""
    v_reset: Finite = 0.0
    """Reset potential, below v_th."""
    v_leak: Finite = 0.0
    """Resting potential."""
    t_ref: NonNegFloat = 0.0
    """Refractory period (s), >= 0."""
    noise: NoiseKind = "none"
    """Stochastic neurons: "none", "membrane" (noise current) or "escape" (escape noise)."""
    noise_std: NonNegFloat = 0.0
    """σ of the membrane-noise current."""
    rho0: NonNegFloat = 100.0
    """Escape-noise rate at threshold (1/s); > 0 with escape noise."""
    delta_u: NonNegFloat = 0.1
    """Escape-noise softness (voltage units); > 0 with escape noise."""

    @field_validator("v_reset")
    @classmethod
    def _reset_below_threshold(cls, v: float, info: ValidationInfo) -> float:
        v_th = info.data.get("v_th")
        if v_th is not None and not v < v_th:
            raise ValueError(f"must be below v_th = {v_th}")
        return v

    @field_validator("rho0", "delta_u")
    @classmethod
    def _escape_needs_positive(cls, v: float, info: ValidationInfo) -> float:
        if info.data.get("noise") == "escape" and not v > 0:
            raise ValueError("must be > 0 with escape noise")
        return v


def _too_long_dt(dt: float, tau_mem: float, tau_syn: float) -> str | None:
    """The time constant that dt exceeds (the Euler step would be unstable), or None."""
    if dt > tau_mem:
        return "tau_mem"
    if tau_syn > 0 and dt > tau_syn:
        return "tau_syn"
    return None


class LIFParametersEntry(LIFEntry):
    """All of :class:`~neuroprobe.neurons.lif.LIFParameters`, dt included (its ``from_dict``)."""

    unknown_key_hints: ClassVar[dict[str, str]] = {}

    dt: PosFloat = 1e-3
    """Integration step (s), > 0, at most the time constants."""

    @field_validator("dt")
    @classmethod
    def _dt_stable(cls, dt: float, info: ValidationInfo) -> float:
        tau_mem, tau_syn = info.data.get("tau_mem"), info.data.get("tau_syn")
        if tau_mem is not None and tau_syn is not None:
            key = _too_long_dt(dt, tau_mem, tau_syn)
            if key:
                raise ValueError(f"exceeds {key} = {info.data[key]} s: the Euler step is unstable; use a smaller dt")
        return dt


class IzhikevichEntry(StrictModel):
    """``[population.izhikevich]``: one population's Izhikevich (2003) parameters (mV, ms; the
    defaults are regular spiking; fast spiking: a = 0.1, d = 2). Needs network.dt = 1e-3."""

    unknown_key_hints: ClassVar[dict[str, str]] = {"dt": "dt is set once, in [network] (1e-3 for Izhikevich)"}

    a: Finite = 0.02
    """Recovery rate of u (1/ms), > 0."""
    b: Finite = 0.2
    """Sensitivity of u to v."""
    c: Finite = -65.0
    """Reset of v after a spike (mV), below v_peak; also the initial v (u starts at b·c)."""
    d: Finite = 8.0
    """Jump of u at a spike (mV)."""
    v_peak: Finite = 30.0
    """Spike cut-off (mV)."""
    noise: IzhikevichNoiseKind = "none"
    """"none" or "uniform": Izhikevich's random thalamic input noise_amp·(rand − 0.5) per neuron and step."""
    noise_amp: NonNegFloat = 0.0
    """Amplitude of the uniform noise current (mV/ms; Izhikevich 2007: 13)."""

    @field_validator("a")
    @classmethod
    def _positive_rate(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("must be > 0 (the recovery rate, 1/ms)")
        return v

    @field_validator("v_peak")
    @classmethod
    def _peak_above_reset(cls, v: float, info: ValidationInfo) -> float:
        c = info.data.get("c")
        if c is not None and not c < v:
            raise ValueError(f"must be above the reset c = {c}")
        return v


class SpikingNetworkTable(StrictModel):
    """``[network]`` of a spiking network file."""

    dt: PosFloat = 1e-3
    """Integration step (s)."""
    engine: Optional[Engine] = None
    """"norse" or "torch" (default: norse if installed)."""


class PopulationEntry(StrictModel):
    """One ``[[population]]``."""

    name: PopulationName
    """Unique name (no '/' or '->')."""
    size: Size
    """Number of neurons, 1 .. 1_000_000."""
    kind: PopulationKind = "lif"
    """"lif", "poisson", "input" (spikes given each step) or "izhikevich"."""
    lif: Optional[LIFEntry] = None
    """LIF parameters (kind "lif" only; the defaults if absent)."""
    izhikevich: Optional[IzhikevichEntry] = None
    """Izhikevich parameters (kind "izhikevich" only; regular spiking if absent)."""
    rate: NonNegFloat = 0.0
    """Firing rate of a Poisson population (Hz)."""
    sign: Sign = "none"
    """Sign of the population's outgoing weights (Dale): "excitatory", "inhibitory" or "none"."""
    i_ext: Finite = 0.0
    """Constant input current."""

    @field_validator("lif")
    @classmethod
    def _lif_for_lif_only(cls, v: LIFEntry | None, info: ValidationInfo) -> LIFEntry | None:
        if v is None and info.data.get("kind") == "lif":
            return LIFEntry()
        return v  # a [population.lif] of another kind: refused by SpikingNetworkFile (names the kind)

    @field_validator("izhikevich")
    @classmethod
    def _izhikevich_default(cls, v: IzhikevichEntry | None, info: ValidationInfo) -> IzhikevichEntry | None:
        if v is None and info.data.get("kind") == "izhikevich":
            return IzhikevichEntry()
        return v


class ProjectionEntry(StrictModel):
    """One ``[[projection]]`` (a sparse random projection pre -> post)."""

    pre: str
    """Presynaptic population."""
    post: str
    """Postsynaptic population (a 'lif' or 'izhikevich' population)."""
    p: UnitFloat = 0.1
    """Connection probability, in (0, 1]."""
    weight: NonNegFloat = 0.1
    """Mean |w| (the pre population's sign is applied)."""
    weight_std: NonNegFloat = 0.0
    """Standard deviation of the initial weights."""
    fixed_indegree: StrictBool = False
    """Every post neuron gets round(p · n_pre) synapses (instead of Bernoulli(p) per pair)."""
    out_degree: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 0
    """> 0: every pre neuron gets exactly this many synapses to distinct post neurons, drawn
    uniformly (p is not used; not with fixed_indegree). 0: p decides."""
    autapses: StrictBool = False
    """Allow i -> i synapses within one population."""
    w_min: NonNegFloat = 0.0
    """Lower bound on |w| applied by plasticity."""
    w_max: Optional[NonNegFloat] = None
    """Upper bound on |w| applied by plasticity (>= w_min; absent = unbounded)."""

    @field_validator("w_max")
    @classmethod
    def _bounds_ordered(cls, v: float | None, info: ValidationInfo) -> float | None:
        w_min = info.data.get("w_min")
        if v is not None and w_min is not None and v < w_min:
            raise ValueError(f"must be >= w_min = {w_min}")
        return v


class SpikingNetworkFile(StrictModel):
    """A spiking network file (``models/snn_*.toml``): ``[network]``, ``[[population]]``, ``[[projection]]``."""

    network: SpikingNetworkTable = SpikingNetworkTable()
    """Integration step and engine."""
    population: Annotated[list[PopulationEntry], Field(min_length=1, max_length=10_000)]
    """The populations (at least one)."""
    projection: Annotated[list[ProjectionEntry], Field(max_length=100_000)] = []
    """The projections."""

    @model_validator(mode="after")
    def _cross_checks(self) -> "SpikingNetworkFile":
        kinds: dict[str, str] = {}
        for i, pop in enumerate(self.population):
            if pop.name in kinds:
                raise FieldIssue(f"population[{i}].name", pop.name, "used twice; population names must be unique")
            kinds[pop.name] = pop.kind
            if pop.kind != "lif" and pop.lif is not None:
                raise FieldIssue(f"population[{i}].kind", pop.kind,
                                 "takes no [population.lif] table (LIF parameters are for kind 'lif')")
            if pop.kind != "izhikevich" and pop.izhikevich is not None:
                raise FieldIssue(f"population[{i}].kind", pop.kind, "takes no [population.izhikevich] table "
                                 "(Izhikevich parameters are for kind 'izhikevich')")
            if pop.kind == "izhikevich" and self.network.dt != IZHIKEVICH_DT:
                raise FieldIssue("network.dt", self.network.dt, f"population[{i}] is 'izhikevich': its two-half-step "
                                 "scheme needs dt = 1e-3 s")
            if pop.lif is not None:
                key = _too_long_dt(self.network.dt, pop.lif.tau_mem, pop.lif.tau_syn)
                if key:
                    raise FieldIssue(f"population[{i}].lif.{key}", getattr(pop.lif, key),
                                     f"shorter than network.dt = {self.network.dt} s (unstable Euler step); "
                                     "use a smaller dt")
        seen: set[tuple[str, str]] = set()
        for j, pr in enumerate(self.projection):
            for end in ("pre", "post"):
                name = getattr(pr, end)
                if name not in kinds:
                    raise FieldIssue(f"projection[{j}].{end}", name, f"no such population; have {list(kinds)}")
            if kinds[pr.post] not in NEURON_KINDS:
                raise FieldIssue(f"projection[{j}].post", pr.post,
                                 f"is a {kinds[pr.post]!r} population; the post population must be 'lif' or "
                                 "'izhikevich'")
            if pr.out_degree:
                if pr.fixed_indegree:
                    raise FieldIssue(f"projection[{j}].out_degree", pr.out_degree,
                                     "give fixed_indegree or out_degree, not both")
                if "p" in pr.model_fields_set:
                    raise FieldIssue(f"projection[{j}].out_degree", pr.out_degree,
                                     "give p or out_degree, not both (out_degree fixes the number of targets)")
                sizes = {p.name: p.size for p in self.population}
                n_post = sizes[pr.post] - (1 if pr.pre == pr.post and not pr.autapses else 0)
                if pr.out_degree > n_post:
                    raise FieldIssue(f"projection[{j}].out_degree", pr.out_degree,
                                     f"exceeds the {n_post} possible targets of a pre neuron")
            if (pr.pre, pr.post) in seen:
                raise FieldIssue(f"projection[{j}]", f"{pr.pre}->{pr.post}",
                                 "a second projection between the same populations")
            seen.add((pr.pre, pr.post))
        return self


# ------------------------------------------------------------------------------------ validation


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional/Union (keeping the first non-None member)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if not members:
                return tp
            tp = members[0]
        else:
            return tp


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class holding the key at ``loc`` (the last entry), or None."""
    tp: Any = root
    for part in loc[:-1]:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = get_args(tp)
            if not args:
                return None
            tp = args[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def validate_file(model: type[BaseModel], data: Any, src: str) -> BaseModel:
    """``model.model_validate(data)``; on failure one :class:`ConfigError` line naming ``src``, the key,
    the value and what is allowed (unknown keys: the allowed ones)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            holder = _model_at(model, loc)
            msg = f"{src}: unknown key '{_path(loc)}'"
            if holder is not None:
                hint = getattr(holder, "unknown_key_hints", {}).get(str(loc[-1]))
                if hint:
                    msg += f" ({hint})"
                msg += f"; allowed: {', '.join(holder.model_fields)}"
            raise ConfigError(msg) from None
        raise ConfigError(validation_message(src, e)) from None
