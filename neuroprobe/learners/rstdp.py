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


# ------------------------------------------------------------------------------------------ config
@register_rule
class RSTDPConfig(RuleConfig):
    """Reward-modulated STDP with a cascade eligibility trace (distal reward; torch float or fixed
    point, Brian2, Lava)."""

    families: ClassVar[tuple[str, ...]] = ("spiking",)
    backends: ClassVar[tuple[tuple[str, str], ...]] = tuple(BACKENDS)
    """The (run.backend, run.precision) pairs this rule runs on (checked when a config loads)."""
    name: Literal["rstdp"]
    projection: Annotated[StrictStr, Field(min_length=1, max_length=200)] = "exc->exc"
    """The plastic projection ("pre->post")."""
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

    def check(self, exp) -> None:
        t, spec = exp.task, exp.spiking_spec
        if t.name != "distal_reward":
            raise ValueError(f"'rule.name' = 'rstdp' applies to task 'distal_reward' only (got task {t.name!r})")
        names = [f"{pr.pre}->{pr.post}" for pr in spec.projections]
        if self.projection not in names:
            raise ValueError(f"'rule.projection' = {self.projection!r} is not a projection of "
                             f"{Path(exp.network.file).name}; have {names}")
        if self.delay < spec.dt:
            raise ValueError(f"'rule.delay' = {self.delay} s is shorter than the network's dt = {spec.dt} s")
        if t.projection != self.projection:
            raise ValueError(f"'task.projection' = {t.projection!r} and 'rule.projection' = {self.projection!r} must "
                             f"name the same projection")
        if t.delay_min > t.delay_max:
            raise ValueError(f"'task.delay_min' = {t.delay_min} exceeds 'task.delay_max' = {t.delay_max}")
        if exp.run.precision == "fixed" and self.normalize != "peak":
            raise ValueError(f"'rule.normalize' = {self.normalize!r}: the fixed-point rule normalises the kernel to "
                             f"its peak only (run.precision = 'fixed'); use normalize = \"peak\"")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return compile_on_backend(exp, ctx)
