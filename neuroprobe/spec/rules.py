"""Plasticity rules described once: frozen, serialisable specs that every engine compiles.

* :class:`RSTDPSpec`: cascade-trace reward-modulated STDP on one projection (the torch float engine's
  :class:`~neuroprobe.rules.rstdp.CascadeRSTDP`, Brian2's plastic Synapses, the fixed-point
  :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP` and Lava's ``CascadeRSTDPConn``).
* :class:`SpikingNRLSpec`: node perturbation on spiking networks (membrane-noise neurons, RPE-gated
  eligibility; :class:`~neuroprobe.rules.spiking_nrl.SpikingNRL`).

``to_dict()`` gives a JSON-serialisable dict with a ``"type"`` tag; ``from_dict`` (and
:func:`rule_from_dict`, which dispatches on the tag) validates and also reads the rule's config
table (``{"name": "rstdp", "lr": …, "order": …, "delay": …}``, the form the NIR sidecar stored
before). Every problem is one :class:`~neuroprobe.errors.ConfigError` line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping

from ..errors import ConfigError
from .kernel import CascadeKernel

__all__ = ["RSTDPSpec", "SpikingNRLSpec", "RULE_TYPES", "rule_from_dict"]

RPE_SCALES = ("none", "abs_reward", "std")  # neuroprobe.modulators.rpe.SCALES (checked by a test)


def _number(where: str, v: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
        raise ConfigError(f"{where} = {v!r}: must be a finite number")
    if gt is not None and not v > gt:
        raise ConfigError(f"{where} = {v!r}: must be > {gt:g}")
    if ge is not None and not v >= ge:
        raise ConfigError(f"{where} = {v!r}: must be >= {ge:g}")
    if le is not None and not v <= le:
        raise ConfigError(f"{where} = {v!r}: must be <= {le:g}")
    return float(v)


def _keys(where: str, d: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    bad = sorted(set(d) - set(allowed))
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; allowed {list(allowed)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")


def _mapping(where: str, d: Any) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where} must be a dict (got {type(d).__name__})")
    return d


@dataclass(frozen=True)
class RSTDPSpec:
    """Cascade-trace R-STDP on the projection ``projection`` ("pre->post").

    kernel: the eligibility kernel (:class:`~neuroprobe.spec.CascadeKernel`; a dict is read with
    ``CascadeKernel.from_dict``). lr: learning rate η (w ← w + η d e), >= 0. tau_plus, tau_minus:
    STDP trace time constants (s), > 0. a_plus, a_minus: STDP amplitudes, >= 0. Defaults are the
    ``rstdp`` rule config's.
    """

    projection: str
    kernel: CascadeKernel
    lr: float
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    a_plus: float = 1.0
    a_minus: float = 1.5

    TYPE = "rstdp"

    def __post_init__(self) -> None:
        if not isinstance(self.projection, str) or not self.projection or len(self.projection) > 200:
            raise ConfigError(f"rstdp projection = {self.projection!r}: must be a projection name 'pre->post'")
        kernel = self.kernel if isinstance(self.kernel, CascadeKernel) else CascadeKernel.from_dict(self.kernel)
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "lr", _number("rstdp lr", self.lr, ge=0))
        for k in ("tau_plus", "tau_minus"):
            object.__setattr__(self, k, _number(f"rstdp {k}", getattr(self, k), gt=0))
        for k in ("a_plus", "a_minus"):
            object.__setattr__(self, k, _number(f"rstdp {k}", getattr(self, k), ge=0))

    def to_dict(self) -> dict:
        return {"type": self.TYPE, "projection": self.projection, "kernel": self.kernel.to_dict(), "lr": self.lr,
                "tau_plus": self.tau_plus, "tau_minus": self.tau_minus, "a_plus": self.a_plus,
                "a_minus": self.a_minus}

    def plasticity(self) -> dict:
        """The flat dict of the Brian2 export (``to_brian2(plasticity=…)``)."""
        k = self.kernel
        return {"projection": self.projection, "order": k.order, "delay": k.delay, "normalize": k.normalize,
                "tau_plus": self.tau_plus, "tau_minus": self.tau_minus, "a_plus": self.a_plus,
                "a_minus": self.a_minus, "lr": self.lr}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RSTDPSpec":
        """From :meth:`to_dict`'s form, or from the ``rstdp`` rule's config table
        (``{"name": "rstdp", "lr", "projection", "order", "delay", "normalize", "tau_plus", …}``)."""
        if isinstance(d, RSTDPSpec):
            return d
        d = _mapping("rstdp rule", d)
        fields = ("projection", "lr", "tau_plus", "tau_minus", "a_plus", "a_minus")
        if "type" in d:
            if d["type"] != cls.TYPE:
                raise ConfigError(f"rule type = {d['type']!r}: expected {cls.TYPE!r}")
            _keys("rstdp rule", d, ("type", "kernel") + fields, ("projection", "kernel", "lr"))
            kernel = CascadeKernel.from_dict(_mapping("rstdp kernel", d["kernel"]))
        else:
            if d.get("name") != cls.TYPE:
                raise ConfigError(f"rule name = {d.get('name')!r}: expected {cls.TYPE!r} (or a 'type' tag)")
            _keys("rstdp rule", d, ("name", "order", "delay", "normalize") + fields, ("projection", "lr"))
            kernel = CascadeKernel(d.get("order", 1), d.get("delay", 1.0), d.get("normalize", "peak"))
        return cls(kernel=kernel, **{k: d[k] for k in fields if k in d})


@dataclass(frozen=True)
class SpikingNRLSpec:
    """Node perturbation on a spiking network: the projections into membrane-noise populations
    learn from ξ·z_pre gated by the RPE of the return.

    projections: names of the plastic projections (empty: every projection into a population with
    membrane noise, what the ``spiking_nrl`` rule uses). lr: learning rate, >= 0.
    rpe_smoothing: the RPE baseline's λ in (0, 1]; rpe_scale: "none" | "abs_reward" | "std".
    """

    lr: float
    projections: tuple[str, ...] = ()
    rpe_smoothing: float = 0.66
    rpe_scale: str = "abs_reward"

    TYPE = "spiking_nrl"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _number("spiking_nrl lr", self.lr, ge=0))
        projs = self.projections
        if isinstance(projs, str) or not isinstance(projs, (list, tuple)) or not all(
                isinstance(p, str) and p for p in projs):
            raise ConfigError(f"spiking_nrl projections = {projs!r}: must be a list of projection names")
        object.__setattr__(self, "projections", tuple(projs))
        object.__setattr__(self, "rpe_smoothing", _number("spiking_nrl rpe_smoothing", self.rpe_smoothing, gt=0, le=1))
        if self.rpe_scale not in RPE_SCALES:
            raise ConfigError(f"spiking_nrl rpe_scale = {self.rpe_scale!r}: allowed {list(RPE_SCALES)}")

    def to_dict(self) -> dict:
        return {"type": self.TYPE, "lr": self.lr, "projections": list(self.projections),
                "rpe_smoothing": self.rpe_smoothing, "rpe_scale": self.rpe_scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpikingNRLSpec":
        """From :meth:`to_dict`'s form, or from the ``spiking_nrl`` rule's config table
        (``{"name": "spiking_nrl", "lr": …}``)."""
        if isinstance(d, SpikingNRLSpec):
            return d
        d = _mapping("spiking_nrl rule", d)
        fields = ("lr", "projections", "rpe_smoothing", "rpe_scale")
        tag = "type" if "type" in d else "name"
        if d.get(tag) != cls.TYPE:
            raise ConfigError(f"rule {tag} = {d.get(tag)!r}: expected {cls.TYPE!r}")
        _keys("spiking_nrl rule", d, (tag,) + fields, ("lr",))
        return cls(**{k: d[k] for k in fields if k in d})


RULE_TYPES: dict[str, type] = {RSTDPSpec.TYPE: RSTDPSpec, SpikingNRLSpec.TYPE: SpikingNRLSpec}


def rule_from_dict(d: Any) -> RSTDPSpec | SpikingNRLSpec:
    """A rule spec from its dict (``"type"`` tag, or a rule config table's ``"name"``); a spec is
    returned as is. ConfigError names the allowed types."""
    if isinstance(d, tuple(RULE_TYPES.values())):
        return d
    d = _mapping("rule", d)
    tag = d.get("type", d.get("name"))
    if tag not in RULE_TYPES:
        raise ConfigError(f"rule {'type' if 'type' in d else 'name'} = {tag!r}: allowed {list(RULE_TYPES)}")
    return RULE_TYPES[tag].from_dict(d)
