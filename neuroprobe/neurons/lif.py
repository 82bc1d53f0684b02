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

Noise source: a ``torch.Generator`` (default), or the counter-based hash of
:mod:`neuroprobe.neurons.hash_rng` when a :class:`HashKey` (per-trial seeds, 1-based step, global
neuron indices) is given: membrane noise ``s · c`` (``s`` the hash's byte sum, ``c =
dtype(σ / NOISE_SD_BYTES)``) instead of ``σ·ξ``, and escape spikes where the hash uniform
``u < p`` — the same numbers in every engine (the event engine draws them in numba).

Shapes: every state tensor is ``(B, N)`` or any shape with the batch axis leading; parameters are
scalars (one value per population).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor

from ..backends.norse_cells import box_step, cuba_step, norse_available, refractory_update, require_norse
from ..errors import ConfigError
from .hash_rng import NOISE_SD_BYTES, hash_membrane_noise, hash_uniform

__all__ = ["LIFParameters", "LIFState", "HashKey", "lif_step", "lif_init", "NOISE_KINDS", "ENGINES",
           "default_engine", "escape_probability"]

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
        for name in ("v_th", "v_reset", "v_leak", "rho0", "delta_u"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"LIF {name} = {getattr(self, name)!r}: must be finite")
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
        """Validate a dict of parameters (pydantic
        :class:`~neuroprobe.config.networks.LIFParametersEntry`: finite numbers in range, known keys
        only) and build the parameters; a bad value is one :class:`ConfigError` line naming ``where``
        and the key."""
        from ..config.networks import LIFParametersEntry, validate_file

        return cls(**validate_file(LIFParametersEntry, d, where).model_dump())

    def to_dict(self) -> dict:
        return asdict(self)


class HashKey(NamedTuple):
    """Where a population's counter-based noise is drawn: ``seeds`` (B, 1) int64 (``noise_seed + b``),
    ``t`` the 1-based step, ``index`` (N,) int64 global neuron indices."""

    seeds: Tensor
    t: int
    index: Tensor


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


class _Consts(NamedTuple):
    """A population's step constants as norse computes them: 0-dim tensors of the state's dtype
    and device (norse's parameter tensors; as operands they cost less than Python numbers and
    round identically)."""

    c_mem: Tensor  # dt * tau_mem_inv
    c_syn: Tensor  # -dt * tau_syn_inv (0 for LIF)
    v_leak: Tensor
    v_th: Tensor  # inf with escape noise (no hard threshold)
    v_reset: Tensor
    rho_reset: Tensor
    zero: Tensor
    one: Tensor
    noise_std: Tensor
    v_leak_zero: bool
    refractory: bool
    hash_c: Tensor  # dtype(noise_std / NOISE_SD_BYTES): the hash noise's current per unit of byte sum


@lru_cache(maxsize=256)
def _consts(p: LIFParameters, dtype: torch.dtype, device: torch.device) -> _Consts:
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    c_syn = -p.dt * t(1.0 / p.tau_syn) if p.tau_syn > 0 else t(0.0)
    v_th = math.inf if p.noise == "escape" else p.v_th
    return _Consts(p.dt * t(1.0 / p.tau_mem), c_syn, t(p.v_leak), t(v_th), t(p.v_reset), t(float(p.refractory_steps)),
                   t(0.0), t(1.0), t(p.noise_std), p.v_leak == 0.0, p.refractory_steps > 0,
                   t(p.noise_std / NOISE_SD_BYTES))


def lif_step(i_in: Tensor, state: LIFState, p: LIFParameters, engine: str | None = None,
             generator: torch.Generator | None = None, hash_key: HashKey | None = None
             ) -> tuple[Tensor, LIFState, Tensor | None]:
    """One step of ``dt`` for a population; pure.

    Args:
        i_in: input current this step (B, N) (synaptic jumps for CubaLIF, drive for LIF).
        state: LIFState of (B, N) tensors.
        p: the population's parameters.
        engine: "norse" (norse's functional steps) or "torch" (own transcription); None = norse if
            installed.
        generator: for membrane/escape noise.
        hash_key: draw the noise from the counter-based hash instead (the generator is unused).

    Returns:
        (z, new_state, noise): spikes (B, N) in {0, 1} (state dtype); noise is the injected
        membrane current σξ, or z − p for escape noise, or None without noise.
    """
    engine = engine or default_engine()
    if engine not in ENGINES:
        raise ConfigError(f"engine = {engine!r}: allowed {list(ENGINES)}")
    if engine == "norse":
        require_norse()
    if engine == "torch":
        return torch_step_fn(p, i_in.dtype, i_in.device)(i_in, state, generator, hash_key)
    noise = None
    if p.noise == "membrane" and p.noise_std > 0:
        if hash_key is not None:
            noise = hash_membrane_noise(*hash_key, _consts(p, i_in.dtype, i_in.device).hash_c)
        else:
            noise = p.noise_std * torch.randn(i_in.shape, generator=generator, dtype=i_in.dtype, device=i_in.device)
        i_in = i_in + noise
    v_th = math.inf if p.noise == "escape" else p.v_th  # escape: no hard threshold, spikes drawn below
    if p.model == "cuba_lif":
        z, v_new, i_new = cuba_step(i_in, state.v, state.i, 1.0 / p.tau_mem, 1.0 / p.tau_syn, p.v_leak, v_th,
                                    p.v_reset, p.dt)
    else:
        z, v_new = box_step(i_in, state.v, 1.0 / p.tau_mem, p.v_leak, v_th, p.v_reset, p.dt)
        i_new = state.i
    if p.noise == "escape":
        prob = escape_probability(v_new, p)  # v_new is the pre-threshold voltage here (no hard reset)
        if hash_key is not None:
            u = hash_uniform(*hash_key).to(prob.device)  # float64: compared with p promoted to float64
        else:
            u = torch.rand(prob.shape, generator=generator, dtype=prob.dtype, device=prob.device)
        z = (u < prob).to(v_new.dtype)
        v_new = (1 - z) * v_new + z * p.v_reset
    rho = state.rho
    if p.refractory_steps > 0:
        z, v_new, rho = refractory_update(z, v_new, state.v, state.rho, p.refractory_steps)
    if p.noise == "escape":
        prob = prob * (state.rho <= 0).to(prob.dtype)  # a refractory neuron cannot spike: expectation 0
        noise = z - prob
    return z, LIFState(v_new, i_new, rho), noise


@lru_cache(maxsize=256)
def torch_step_fn(p: LIFParameters, dtype: torch.dtype, device: torch.device):
    """The torch engine's step for one population, specialised once per (parameters, dtype,
    device): ``fn(i_in, state, generator, hash_key=None) -> (z, new_state, noise)``, the same as
    ``lif_step(i_in, state, p, "torch", generator, hash_key)``.

    norse's equations with fewer kernels and the same values: spikes are kept as a bool mask
    ``zb`` until the end; ``(1 − z) a + z b`` becomes ``where(zb, b, a)``; the refractory update
    ``(1 − z) relu(rho − [rho > 0]) + z rho_reset`` becomes ``where(zb, rho_reset, max(rho − 1, 0))``
    (equal for every rho); constants are norse's 0-dim parameter tensors."""
    k = _consts(p, dtype, device)
    c_mem, c_syn, v_leak, v_th, v_reset, rho_reset, zero, one, sigma = k[:9]
    hash_c = k.hash_c
    cuba, v_leak_zero, refractory = p.tau_syn > 0, k.v_leak_zero, k.refractory
    membrane, escape = p.noise == "membrane" and p.noise_std > 0, p.noise == "escape"
    gt, where, randn, sub, mul, add = torch.gt, torch.where, torch.randn, torch.sub, torch.mul, torch.add

    def step(i_in: Tensor, state: LIFState, generator: torch.Generator | None = None,
             hash_key: HashKey | None = None) -> tuple[Tensor, LIFState, Tensor | None]:
        v, i, rho = state
        noise = None
        if membrane:
            if hash_key is not None:
                noise = hash_membrane_noise(*hash_key, hash_c)
            else:
                noise = randn(i_in.shape, generator=generator, dtype=dtype, device=device).mul_(sigma)
            i_in = i_in + noise
        if cuba:  # lif_feed_forward_step
            i_new = i + i_in
            dv = (i_new - v) if v_leak_zero else sub(v_leak, v).add_(i_new)  # (0 - v) + i_new == i_new - v
            v_d = dv.mul_(c_mem).add_(v)
            i_new = mul(i_new, c_syn).add_(i_new)
        else:  # lif_box_feed_forward_step
            dv = (i_in - v) if v_leak_zero else add(i_in, v_leak).sub_(v)  # i_in + 0 == i_in
            v_d = dv.mul_(c_mem).add_(v)
            i_new = i
        if escape:  # no hard threshold (v_th = inf): spikes drawn from the escape rate
            prob = escape_probability(v_d, p)
            if hash_key is not None:  # float64 uniforms: the comparison promotes p to float64
                zb = hash_uniform(*hash_key) < prob
            else:
                zb = torch.rand(prob.shape, generator=generator, dtype=dtype, device=device) < prob
        else:
            zb = gt(v_d, v_th)  # == heaviside(v_d - v_th)
        if refractory:
            refr = gt(rho, zero)
            zb = gt(zb, refr)  # zb and not refractory
            v_new = where(zb, v_reset, where(refr, v, v_d))
            rho = where(zb, rho_reset, sub(rho, one).clamp_min_(zero))
        else:
            v_new = where(zb, v_reset, v_d)
        z = zb.to(dtype)
        if escape:
            noise = z - prob * (state.rho <= 0).to(dtype)  # a refractory neuron cannot spike: expectation 0
        return z, LIFState(v_new, i_new, rho), noise

    return step
