"""Leaky integrate-and-fire neurons (LIF and current-based CubaLIF), pure functions + parameters.

Parameters are in physical units (seconds, and voltage/current in the model's own units with
membrane resistance 1). One Euler step of ``dt`` seconds, exactly as norse computes it
(``lif_feed_forward_step``; the torch engine calls norse when it is installed):

CubaLIF (``tau_syn > 0``)::

    i'   = i + i_in                                  (input current jumps: synaptic input)
    v_d  = v + dt/tau_mem · (v_leak − v + i')        (membrane integrates the jumped current)
    i_n  = i' − dt/tau_syn · i'                       (synaptic current decays)
    z    = [v_d − v_th > 0]                           (spike)
    v_n  = (1 − z) v_d + z v_reset                    (reset)

LIF (``tau_syn = 0``, norse's ``lif_box``): ``v_d = v + dt/tau_mem · (v_leak − v + i_in)``; no
synaptic current state.

Refractory period ``t_ref`` (norse's ``lif_refrac`` semantics): a spike sets a counter ρ to
``round(t_ref/dt)`` steps; while ρ > 0 the voltage is held at its previous value and no spike is
emitted; ρ decreases by one per step.

Stochastic neurons (the source of node perturbation):

- ``noise = "membrane"``: a current ξ·σ with ξ ~ N(0, 1) (fresh per neuron and step) is added to
  ``i_in``; ξ·σ is returned so the rules can correlate it with the reward.
- ``noise = "escape"``: no hard threshold; the neuron spikes with probability
  ``p = 1 − exp(−dt · rho0 · exp((v_d − v_th)/delta_u))`` (escape noise, Gerstner & Kistler) and
  resets where it spiked. The returned noise is ``z − p`` (spike minus its expectation), whose
  correlation with the reward gives the REINFORCE/node-perturbation eligibility.

Shapes: every state tensor is ``(B, N)`` or any shape with the batch axis leading; parameters are
scalars (one value per population).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor

from ..backends.norse_cells import box_step, cuba_step, norse_available, refractory_update, require_norse
from ..errors import ConfigError

__all__ = ["LIFParameters", "LIFState", "lif_step", "lif_init", "NOISE_KINDS", "ENGINES", "default_engine",
           "escape_probability"]

NOISE_KINDS = ("none", "membrane", "escape")
ENGINES = ("norse", "torch")


@dataclass(frozen=True)
class LIFParameters:
    """One population's LIF parameters, physical units.

    tau_mem: membrane time constant (s), > 0. tau_syn: synaptic current time constant (s); 0 = LIF
    without synaptic current (input drives v directly). v_th, v_reset, v_leak: threshold, reset and
    resting potential. t_ref: refractory period (s), >= 0. dt: integration step (s), > 0.
    noise: "none" | "membrane" | "escape"; noise_std: σ of the membrane-noise current;
    rho0 (1/s), delta_u: escape-noise rate at threshold and its softness (voltage units).
    """

    tau_mem: float = 20e-3
    tau_syn: float = 5e-3
    v_th: float = 1.0
    v_reset: float = 0.0
    v_leak: float = 0.0
    t_ref: float = 0.0
    dt: float = 1e-3
    noise: str = "none"
    noise_std: float = 0.0
    rho0: float = 100.0
    delta_u: float = 0.1

    def __post_init__(self) -> None:
        for name in ("tau_mem", "dt"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ConfigError(f"LIF {name} = {getattr(self, name)!r}: must be a positive number of seconds")
        for name in ("tau_syn", "t_ref", "noise_std"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ConfigError(f"LIF {name} = {getattr(self, name)!r}: must be >= 0")
        if self.noise not in NOISE_KINDS:
            raise ConfigError(f"LIF noise = {self.noise!r}: allowed {list(NOISE_KINDS)}")
        if self.noise == "escape" and not (self.rho0 > 0 and self.delta_u > 0):
            raise ConfigError(f"LIF escape noise needs rho0 > 0 and delta_u > 0 (got {self.rho0}, {self.delta_u})")
        if self.dt > self.tau_mem or (self.tau_syn > 0 and self.dt > self.tau_syn):
            raise ConfigError(f"LIF dt = {self.dt} s exceeds a time constant (tau_mem {self.tau_mem}, tau_syn "
                              f"{self.tau_syn}): the Euler step is unstable; use a smaller dt")
        if self.v_th <= self.v_reset:
            raise ConfigError(f"LIF v_th = {self.v_th} must exceed v_reset = {self.v_reset}")

    @property
    def refractory_steps(self) -> int:
        return int(round(self.t_ref / self.dt))

    @property
    def model(self) -> str:
        return "cuba_lif" if self.tau_syn > 0 else "lif"

    @classmethod
    def from_dict(cls, d: dict, where: str = "population") -> "LIFParameters":
        allowed = {f.name for f in fields(cls)}
        bad = sorted(set(d) - allowed)
        if bad:
            raise ConfigError(f"{where}: unknown LIF parameter(s) {bad}; allowed {sorted(allowed)}")
        return cls(**{k: (float(v) if k != "noise" else v) for k, v in d.items()})

    def to_dict(self) -> dict:
        return asdict(self)


class LIFState(NamedTuple):
    """v: membrane potential; i: synaptic current (zeros for LIF); rho: refractory steps left
    (float, 0 = free). Each (B, N)."""

    v: Tensor
    i: Tensor
    rho: Tensor


def lif_init(shape: tuple[int, ...], p: LIFParameters, dtype: torch.dtype = torch.float32,
             device: torch.device | str | None = None) -> LIFState:
    """Resting state: v = v_leak, i = 0, not refractory."""
    v = torch.full(shape, p.v_leak, dtype=dtype, device=device)
    return LIFState(v, torch.zeros_like(v), torch.zeros_like(v))


def default_engine() -> str:
    return "norse" if norse_available() else "torch"


def escape_probability(v: Tensor, p: LIFParameters) -> Tensor:
    """Spike probability within one step for the pre-threshold voltage v."""
    return -torch.expm1(-p.dt * p.rho0 * torch.exp(((v - p.v_th) / p.delta_u).clamp(max=50.0)))


def _torch_cuba(i_in: Tensor, v: Tensor, i: Tensor, p: LIFParameters, v_th: float) -> tuple[Tensor, Tensor, Tensor]:
    # transcription of norse's lif_feed_forward_step (same operation order: bitwise equal)
    i_new = i + i_in
    dv = p.dt * (1.0 / p.tau_mem) * ((p.v_leak - v) + i_new)
    v_d = v + dv
    di = -p.dt * (1.0 / p.tau_syn) * i_new
    i_d = i_new + di
    z = torch.gt(v_d - v_th, 0.0).to(v.dtype)
    return z, (1 - z) * v_d + z * p.v_reset, i_d


def _torch_box(i_in: Tensor, v: Tensor, p: LIFParameters, v_th: float) -> tuple[Tensor, Tensor]:
    dv = p.dt * (1.0 / p.tau_mem) * (i_in + p.v_leak - v)
    v_d = v + dv
    z = torch.gt(v_d - v_th, 0.0).to(v.dtype)
    return z, (1 - z) * v_d + z * p.v_reset


def _torch_refractory(z: Tensor, v_new: Tensor, v_old: Tensor, rho: Tensor, rho_reset: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    mask = torch.gt(rho, 0.0).to(v_new.dtype)
    v = (1 - mask) * v_new + mask * v_old
    z = (1 - mask) * z
    rho = (1 - z) * torch.relu(rho - mask) + z * rho_reset
    return z, v, rho


def lif_step(i_in: Tensor, state: LIFState, p: LIFParameters, engine: str | None = None,
             generator: torch.Generator | None = None) -> tuple[Tensor, LIFState, Tensor | None]:
    """One step of ``dt`` for a population; pure.

    Args:
        i_in: input current this step (B, N) (synaptic jumps for CubaLIF, drive for LIF).
        state: LIFState of (B, N) tensors.
        p: the population's parameters.
        engine: "norse" (norse's functional steps) or "torch" (own transcription); None = norse if
            installed.
        generator: for membrane/escape noise.

    Returns:
        (z, new_state, noise): spikes (B, N) in {0, 1} (state dtype); noise is the injected
        membrane current σξ, or z − p for escape noise, or None without noise.
    """
    engine = engine or default_engine()
    if engine not in ENGINES:
        raise ConfigError(f"engine = {engine!r}: allowed {list(ENGINES)}")
    if engine == "norse":
        require_norse()
    noise = None
    if p.noise == "membrane" and p.noise_std > 0:
        noise = p.noise_std * torch.randn(i_in.shape, generator=generator, dtype=i_in.dtype, device=i_in.device)
        i_in = i_in + noise
    v_th = math.inf if p.noise == "escape" else p.v_th  # escape: no hard threshold, spikes drawn below
    if p.model == "cuba_lif":
        if engine == "norse":
            z, v_new, i_new = cuba_step(i_in, state.v, state.i, 1.0 / p.tau_mem, 1.0 / p.tau_syn, p.v_leak, v_th,
                                        p.v_reset, p.dt)
        else:
            z, v_new, i_new = _torch_cuba(i_in, state.v, state.i, p, v_th)
    else:
        if engine == "norse":
            z, v_new = box_step(i_in, state.v, 1.0 / p.tau_mem, p.v_leak, v_th, p.v_reset, p.dt)
        else:
            z, v_new = _torch_box(i_in, state.v, p, v_th)
        i_new = state.i
    if p.noise == "escape":
        prob = escape_probability(v_new, p)  # v_new is the pre-threshold voltage here (no hard reset)
        u = torch.rand(prob.shape, generator=generator, dtype=prob.dtype, device=prob.device)
        z = (u < prob).to(v_new.dtype)
        v_new = (1 - z) * v_new + z * p.v_reset
    rho = state.rho
    if p.refractory_steps > 0:
        refr = refractory_update if engine == "norse" else _torch_refractory
        z, v_new, rho = refr(z, v_new, state.v, state.rho, p.refractory_steps)
    if p.noise == "escape":
        prob = prob * (state.rho <= 0).to(prob.dtype)  # a refractory neuron cannot spike: expectation 0
        noise = z - prob
    return z, LIFState(v_new, i_new, rho), noise
