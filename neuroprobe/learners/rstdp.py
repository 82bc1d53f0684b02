"""Cascade-trace R-STDP on the distal-reward problem (Izhikevich 2007), on any engine.

The rule's config (:class:`RSTDPConfig`) builds its run through the backend registry
(:mod:`neuroprobe.backends`, chosen by ``run.backend`` and ``run.precision``): torch float32
(:mod:`neuroprobe.backends.torch_run`), torch fixed point (Loihi's integers), Brian2 or Lava. Every engine makes the same
draws (:func:`neuroprobe.backends.distal_network`: connectivity and initial weights, each trial's
rewarded synapse, the synapses whose weights are recorded) and writes the same metrics columns
(:func:`neuroprobe.reporters_spiking.distal_row`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictStr

from ..config.base import NonNegFloat, PosFloat, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..backends import BACKENDS, compile_distal as compile_on_backend
from ..protocols import BuildContext, RunParts

__all__ = ["RSTDPConfig"]


ProjectionName = Annotated[StrictStr, Field(min_length=1, max_length=200)]

# engines that run the distal-reward options beyond the original protocol (several plastic
# projections, a tonic dopamine, a set rewarded weight)
_EXTENDED = (("torch", "float"), ("event", "float"))


# ------------------------------------------------------------------------------------------ config
@register_rule
class RSTDPConfig(RuleConfig):
    """Reward-modulated STDP with a cascade eligibility trace (distal reward; torch float or fixed
    point, Brian2, Lava)."""

    families: ClassVar[tuple[str, ...]] = ("spiking",)
    backends: ClassVar[tuple[tuple[str, str], ...]] = tuple(BACKENDS)
    """The (run.backend, run.precision) pairs this rule runs on (checked when a config loads)."""
    name: Literal["rstdp"]
    projection: ProjectionName | Annotated[list[ProjectionName], Field(min_length=1, max_length=64)] = "exc->exc"
    """The plastic projection ("pre->post"), or a list of them (Izhikevich's ["exc->exc", "exc->inh"]:
    one rule, one kernel, each projection its own traces and weights; the one holding the rewarded
    synapse, ``task.projection``, must be among them; torch float and event float engines only)."""
    order: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    """Cascade states n (1 = the classic exponential eligibility trace)."""
    delay: Annotated[PosFloat, Field(le=1e4)] = 1.0
    """Kernel peak (s); order 1: the trace's time constant."""
    normalize: Literal["peak", "area", "none"] = "peak"
    """Normalisation of the eligibility kernel."""
    tau_plus: Annotated[PosFloat, Field(le=1e4)] = 20e-3
    """Time constant (s) of the presynaptic STDP trace."""
    tau_minus: Annotated[PosFloat, Field(le=1e4)] = 20e-3
    """Time constant (s) of the postsynaptic STDP trace."""
    a_plus: NonNegFloat = 1.0
    """Amplitude of potentiation (pre before post)."""
    a_minus: NonNegFloat = 1.5
    """Amplitude of depression (post before pre)."""

    @property
    def projections(self) -> tuple[str, ...]:
        """The plastic projections (``projection`` as a tuple)."""
        return (self.projection,) if isinstance(self.projection, str) else tuple(self.projection)

    def check(self, exp) -> None:
        t, spec = exp.task, exp.spiking_spec
        if t.name != "distal_reward":
            raise ValueError(f"'rule.name' = 'rstdp' applies to task 'distal_reward' only (got task {t.name!r})")
        names = [f"{pr.pre}->{pr.post}" for pr in spec.projections]
        for p in self.projections:
            if p not in names:
                raise ValueError(f"'rule.projection' = {p!r} is not a projection of "
                                 f"{Path(exp.network.file).name}; have {names}")
        if len(set(self.projections)) != len(self.projections):
            raise ValueError(f"'rule.projection' = {list(self.projections)}: names a projection twice")
        if self.delay < spec.dt:
            raise ValueError(f"'rule.delay' = {self.delay} s is shorter than the network's dt = {spec.dt} s")
        if isinstance(self.projection, str) and t.projection != self.projection:
            raise ValueError(f"'task.projection' = {t.projection!r} and 'rule.projection' = {self.projection!r} must "
                             f"name the same projection")
        if t.projection not in self.projections:
            raise ValueError(f"'task.projection' = {t.projection!r} must be one of 'rule.projection' = "
                             f"{list(self.projections)} (the rewarded synapse's projection is plastic)")
        engine = (exp.run.backend, exp.run.precision)
        extended = [k for k, on in (("rule.projection (a list)", not isinstance(self.projection, str)),
                                    ("task.tonic_dopamine", t.tonic_dopamine != 0),
                                    ("task.rewarded_weight", t.rewarded_weight is not None)) if on]
        if extended and engine not in _EXTENDED:
            raise ValueError(f"{extended[0]}: run.backend = {engine[0]!r} with run.precision = {engine[1]!r} does not "
                             f"support it; use run.backend 'torch' or 'event' with run.precision 'float'")
        if t.rewarded_weight is not None:
            pr = spec.projections[names.index(t.projection)]
            if not pr.w_min <= t.rewarded_weight <= pr.w_max:
                raise ValueError(f"'task.rewarded_weight' = {t.rewarded_weight} is outside {t.projection}'s bounds "
                                 f"[{pr.w_min}, {pr.w_max}]")
        if t.delay_min > t.delay_max:
            raise ValueError(f"'task.delay_min' = {t.delay_min} exceeds 'task.delay_max' = {t.delay_max}")
        if exp.run.precision == "fixed" and self.normalize != "peak":
            raise ValueError(f"'rule.normalize' = {self.normalize!r}: the fixed-point rule normalises the kernel to "
                             f"its peak only (run.precision = 'fixed'); use normalize = \"peak\"")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return compile_on_backend(exp, ctx)
