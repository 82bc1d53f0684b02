"""Specs: what a network and its plasticity are, described once, frozen and serialisable.

Every engine (torch float, torch fixed point, Brian2, Lava) compiles these into what it runs:

* :class:`CascadeKernel` (kernel.py): the only definition of the cascade eligibility's rate, its
  transition over a step, its peak and its continuous impulse response.
* :class:`RSTDPSpec`, :class:`SpikingNRLSpec` (rules.py): plasticity rules; :func:`rule_from_dict`.
* :class:`SpikingSpec` (populations and projections; defined in :mod:`neuroprobe.spiking.spec`,
  exported here too).
"""
from __future__ import annotations

from typing import Any

from .kernel import KERNEL_TYPE, CascadeKernel
from .rules import RULE_TYPES, RSTDPSpec, SpikingNRLSpec, rule_from_dict

__all__ = ["CascadeKernel", "KERNEL_TYPE", "RSTDPSpec", "SpikingNRLSpec", "RULE_TYPES", "rule_from_dict",
           "SpikingSpec", "PopulationSpec", "ProjectionSpec"]

_SPIKING = ("SpikingSpec", "PopulationSpec", "ProjectionSpec")


def __getattr__(name: str) -> Any:
    # the network specs live in neuroprobe.spiking.spec; imported on first use, so that the
    # low-level modules importing CascadeKernel (neuroprobe.traces) do not pull in the spiking package
    if name in _SPIKING:
        from ..spiking import spec as _spiking_spec

        return getattr(_spiking_spec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
