"""Izhikevich (2003) neurons, integrated as Izhikevich's published distal-reward code does; pure.

Model (v, u in mV, t in ms, the input I in mV/ms, as in Izhikevich's code)::

    dv/dt = 0.04 v² + 5 v + 140 − u + I        du/dt = a (b v − u)
    if v >= v_peak (30 mV):  v ← c,  u ← u + d

One step of 1 ms, operation for operation as the loop of Izhikevich's ``dastdp.m`` / ``daspnet.m``
(Izhikevich 2007) computes it::

    fired = v >= v_peak                       (on the previous step's v)
    v[fired] = c;  u[fired] = u + d           (reset, at the start of the step)
    I = i_in + noise                          (this step's input)
    v = v + 0.5·((((0.04·v + 5)·v + 140) − u) + I)     (two half-steps of 0.5 ms,
    v = v + 0.5·((((0.04·v + 5)·v + 140) − u) + I)      the same u and I)
    u = u + a·((b·v) − u)                     (with the new v)
    z = v >= v_peak                           (the spike of this step)

The spike test of Izhikevich's loop at the start of step t+1 is the same comparison on the same v
as ``z`` at the end of step t: neuroprobe reports the spike at step t (the step in which v crossed
v_peak; Izhikevich's ``fired`` of step t+1) and applies the reset at the start of step t+1. With
the spiking engines' one-step synaptic delay (the spikes of step t are added to the input of step
t+1) a spike therefore reaches its targets in the step that follows the crossing, exactly as in
Izhikevich's code (his spikes of step t+1, found at its start, are added to that step's I).
Consequence for monitors: the v (and u) stored after a spiking step is the value that crossed
v_peak (before the reset), as in Izhikevich's own v array.

Only ``dt = 1 ms`` is supported (the half-step scheme is defined for it; the spiking specs refuse
another ``network.dt`` for an Izhikevich population).

Noise (``noise = "uniform"``, Izhikevich's random thalamic input ``I = 13·(rand − 0.5)``): a
current ``noise_amp·(ξ − 0.5)``, ξ uniform in (0, 1), fresh per neuron and step, added to the
input. ξ comes from a ``torch.Generator`` (drawn in the state dtype), or, given a
:class:`~neuroprobe.neurons.lif.HashKey`, from the counter-based hash
(:func:`~neuroprobe.neurons.hash_rng.hash_uniform`): ``dtype((ξ − 0.5)·noise_amp)`` computed in
float64 and rounded once, the same numbers in every engine.

Shapes: every state tensor is ``(B, N)`` (or any shape with the batch axis leading); parameters are
scalars (one value per population).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Mapping, NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError
from .hash_rng import hash_uniform

__all__ = ["IzhikevichParameters", "IzhikevichState", "izhikevich_init", "izhikevich_step", "izhikevich_noise",
           "IZHIKEVICH_NOISE_KINDS", "REGULAR_SPIKING", "FAST_SPIKING", "DT"]

IZHIKEVICH_NOISE_KINDS = ("none", "uniform")
DT = 1e-3  # the only integration step (s) of the half-step scheme


@dataclass(frozen=True)
class IzhikevichParameters:
    """One population's Izhikevich parameters (mV, ms; dimensionless a, b as in the paper).

    a: recovery rate (1/ms), > 0. b: sensitivity of u to v. c: reset of v (mV), below v_peak.
    d: jump of u at a spike (mV). v_peak: spike cut-off (mV). noise: "none" | "uniform";
    noise_amp: amplitude A of the uniform current ``A·(ξ − 0.5)`` (mV/ms), >= 0.
    Initial state: v = c, u = b·c (Izhikevich's ``v = −65``, ``u = 0.2·v``).
    """

    a: float = 0.02
    b: float = 0.2
    c: float = -65.0
    d: float = 8.0
    v_peak: float = 30.0
    noise: str = "none"
    noise_amp: float = 0.0

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "v_peak", "noise_amp"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ConfigError(f"Izhikevich {name} = {x!r}: must be a finite number")
            object.__setattr__(self, name, float(x))
        if not self.a > 0:
            raise ConfigError(f"Izhikevich a = {self.a!r}: must be > 0 (the recovery rate, 1/ms)")
        if not self.c < self.v_peak:
            raise ConfigError(f"Izhikevich c = {self.c!r}: the reset must be below v_peak = {self.v_peak}")
        if self.noise not in IZHIKEVICH_NOISE_KINDS:
            raise ConfigError(f"Izhikevich noise = {self.noise!r}: allowed {list(IZHIKEVICH_NOISE_KINDS)}")
        if self.noise_amp < 0:
            raise ConfigError(f"Izhikevich noise_amp = {self.noise_amp!r}: must be >= 0")

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "population") -> "IzhikevichParameters":
        """Validate a dict (pydantic :class:`~neuroprobe.config.networks.IzhikevichEntry`: finite
        numbers, known keys only) and build the parameters; a bad value is one ConfigError line."""
        from ..config.networks import IzhikevichEntry, validate_file

        return cls(**validate_file(IzhikevichEntry, dict(d), where).model_dump())

    def to_dict(self) -> dict:
        return asdict(self)


REGULAR_SPIKING = IzhikevichParameters(a=0.02, b=0.2, c=-65.0, d=8.0)
FAST_SPIKING = IzhikevichParameters(a=0.1, b=0.2, c=-65.0, d=2.0)


class IzhikevichState(NamedTuple):
    """v: membrane potential (mV); u: recovery variable (mV). Each (B, N). After a spiking step v
    is the value that crossed v_peak (the reset comes at the start of the next step)."""

    v: Tensor
    u: Tensor


def izhikevich_init(shape: tuple[int, ...], p: IzhikevichParameters, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> IzhikevichState:
    """Resting state: v = c, u = b·c (both rounded to ``dtype`` from the float64 values)."""
    v = torch.full(shape, p.c, dtype=dtype, device=device)
    return IzhikevichState(v, torch.full(shape, p.b * p.c, dtype=dtype, device=device))


class _Consts(NamedTuple):
    """0-dim tensors of the state's dtype and device (rounded once from the Python floats)."""

    k2: Tensor  # 0.04
    k1: Tensor  # 5
    k0: Tensor  # 140
    half: Tensor  # 0.5
    a: Tensor
    b: Tensor
    c: Tensor
    d: Tensor
    v_peak: Tensor


@lru_cache(maxsize=256)
def _consts(p: IzhikevichParameters, dtype: torch.dtype, device: torch.device) -> _Consts:
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    return _Consts(t(0.04), t(5.0), t(140.0), t(0.5), t(p.a), t(p.b), t(p.c), t(p.d), t(p.v_peak))


def izhikevich_noise(p: IzhikevichParameters, shape: tuple[int, ...], dtype: torch.dtype,
                     device: torch.device | str | None = None, generator: torch.Generator | None = None,
                     hash_key=None) -> Tensor | None:
    """The uniform noise current ``noise_amp·(ξ − 0.5)`` of one step, (B, N) in ``dtype``; None
    without noise. ``hash_key`` (a :class:`~neuroprobe.neurons.lif.HashKey`): ξ from the hash,
    ``dtype((ξ − 0.5)·noise_amp)`` in float64; else ξ ~ U[0, 1) from ``generator`` in ``dtype``."""
    if p.noise != "uniform" or p.noise_amp == 0:
        return None
    if hash_key is not None:
        return ((hash_uniform(*hash_key) - 0.5) * p.noise_amp).to(dtype)
    xi = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    return (xi - 0.5) * p.noise_amp


def izhikevich_step(i_in: Tensor, state: IzhikevichState, p: IzhikevichParameters,
                    generator: torch.Generator | None = None, hash_key=None
                    ) -> tuple[Tensor, IzhikevichState, Tensor | None]:
    """One step of 1 ms for a population (the module docstring's update, in this order); pure.

    Args:
        i_in: input current of this step (B, N), mV/ms (synaptic jumps Σw, constant and given currents).
        state: IzhikevichState of (B, N) tensors (the previous step's v, u: not yet reset).
        p: the population's parameters.
        generator: for ``noise = "uniform"``; hash_key: draw that noise from the hash instead.

    Returns:
        (z, new_state, noise): spikes (B, N) in {0, 1} (state dtype), the state after the step
        (v not reset where z = 1), and the noise current added (None without noise).
    """
    k = _consts(p, state.v.dtype, state.v.device)
    v, u = state
    fired = v >= k.v_peak  # the spikes of the previous step: reset now
    v = torch.where(fired, k.c, v)
    u = torch.where(fired, u + k.d, u)
    noise = izhikevich_noise(p, tuple(i_in.shape), i_in.dtype, i_in.device, generator, hash_key)
    current = i_in if noise is None else i_in + noise
    for _ in range(2):  # two half-steps of 0.5 ms with the same u and I
        v = v + k.half * ((((k.k2 * v + k.k1) * v) + k.k0 - u) + current)
    u = u + k.a * (k.b * v - u)
    zb = v >= k.v_peak
    return zb.to(v.dtype), IzhikevichState(v, u), noise
