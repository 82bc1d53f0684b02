"""Fixed-point (Loihi-style) mode of the torch engine: quantisation of a float spiking network and
its integer simulation.

``FixedPointNetwork.from_float(net)`` turns a :class:`~neuroprobe.spiking.SpikingNetwork` (its
actual connectivity and weights) into Loihi's integer representation; ``step`` then simulates it
with :func:`~neuroprobe.backends.fixed.lif.loihi_lif_step`, bit for bit as Lava's ``fixed_pt``
LIF and Dense ProcessModels do (tests/test_lava_backend.py checks it against Lava itself).
A network written in Lava's own integers (``Dense`` weight matrices, ``LIF`` parameters) is built
with :meth:`FixedProjection.from_lava_dense` and :meth:`FixedPointNetwork.from_integers`;
:func:`lava_dense_weights` is what Lava's Dense does to the weights it is given (sign mode,
clipping, LSB truncation; tests/conformance/test_lava_tutorial.py).

Mapping of the float model (norse's Euler step; ``k = dt/tau_mem``, ``scale`` = state units per
voltage unit, a power of two)::

    float                                  fixed point (Lava LIF/Dense)
    i' = i + i_in ; i ← i'(1 − dt/tau_syn)  u (= k·i'·scale) decays by du = round(4096·dt/tau_syn) − 1
                                             (tau_syn = 0: du = 4095, u forgets every step)
    v ← v(1 − k) + k·i' + k·v_leak          v decays by dv = round(4096·k); bias = k·v_leak·scale
    spike v > v_th, v ← v_reset = 0         vth = round(v_th·scale/64), reset to 0
    weight w (current jump)                 mantissa round(w·k·scale / 64 / 2**e), one exponent e per
                                             projection (the smallest that fits); 0..255 in magnitude,
                                             mixed signs even values in [−256, 254] (Lava's mixed mode)
    membrane noise σ·ξ                       hash noise ((Σ 4 bytes − 510)·mant) >> 8, sd ≈ σ·k·scale/64

What cannot be mapped raises :class:`ConfigError` naming the population: a refractory period
(Lava's fixed_pt LIF has none), ``v_reset ≠ 0``, escape noise, ``i_ext`` on a CubaLIF population
(Loihi's bias adds to v, not to the synaptic current), Poisson populations (give their spikes as an
"input" population), decays too slow for 12 bits. The rounding of the decays and weights is the
quantisation error; :func:`quantization_report` states it per population and projection.

State: ``{"z": {pop: (B, N) bool}, "u": {pop: (B, N) int64}, "v": {pop: ...}, "t": int}``; step
t uses the spikes of step t − 1 (the torch engine's and Lava's one-step synaptic delay).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import ConfigError
from .lif import LoihiLIFParameters, hash_noise, loihi_lif_step, shift_accumulated
from ...neurons.hash_rng import NOISE_SD_BYTES  # noqa: F401  (re-exported)
from ...spiking.network import SpikingNetwork, input_spikes
from ...spiking.projection import find_projection
from ...spiking.spec import SpikingSpec

__all__ = ["FixedPointNetwork", "FixedProjection", "quantize_lif", "quantize_weights", "quantization_report",
           "NOISE_SD_BYTES", "NOISE_SHIFT", "default_scale", "SignMode", "determine_sign_mode", "lava_dense_weights",
           "optimize_weight_bits"]

NOISE_SHIFT = 8


def default_scale(spec: SpikingSpec) -> int:
    """State units per voltage unit: the power of two that puts the largest threshold's mantissa
    in [4096, 8192) (13 bits of the 17 available; v can reach ±16 thresholds within 24 bits)."""
    v_th = max(p.lif.v_th for p in spec.populations if p.kind == "lif")
    if not v_th > 0:
        raise ConfigError("fixed point needs positive thresholds v_th")
    return 2 ** int(math.floor(math.log2(8192 * 64 / v_th)))


def quantize_lif(name: str, p, i_ext: float, dt: float, scale: int) -> tuple[LoihiLIFParameters, float]:
    """(Loihi parameters, k = dt/tau_mem) of one float LIF population; ConfigError if unmappable."""
    where = f"population {name!r}"
    if p.t_ref > 0:
        raise ConfigError(f"{where}: t_ref = {p.t_ref} s: Lava's fixed_pt LIF has no refractory period (use 0)")
    if p.v_reset != 0:
        raise ConfigError(f"{where}: v_reset = {p.v_reset}: Loihi resets v to 0 (shift v_th and v_leak instead)")
    if p.noise == "escape":
        raise ConfigError(f"{where}: escape noise has no Loihi counterpart (use 'membrane' or 'none')")
    if p.tau_syn > 0 and i_ext:
        raise ConfigError(f"{where}: i_ext = {i_ext} with tau_syn > 0: Loihi's bias adds to v, not to the "
                          "synaptic current (use tau_syn = 0 or an input population)")
    k = dt / p.tau_mem
    dv = round(4096 * k)
    du = 4095 if p.tau_syn == 0 else round(4096 * dt / p.tau_syn) - 1
    if not (0 < dv <= 4095 and 0 <= du <= 4095):
        raise ConfigError(f"{where}: dt/tau_mem = {k:.3g}, dt/tau_syn = {dt / p.tau_syn if p.tau_syn else 0:.3g}: "
                          "12-bit decays need 1/4096 <= dt/tau < 1 (change dt)")
    vth = round(p.v_th * scale / 64)
    bias = k * (p.v_leak + (i_ext if p.tau_syn == 0 else 0.0)) * scale
    exp = 0
    while abs(round(bias / 2 ** exp)) > 4095 and exp < 7:
        exp += 1
    mant = round(bias / 2 ** exp)
    if abs(mant) > 4095 or not 0 <= vth < 2 ** 17:
        raise ConfigError(f"{where}: threshold or bias out of Loihi's range at scale {scale} (vth {vth}, bias {bias:.0f})")
    return LoihiLIFParameters(du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=exp), k


class SignMode(enum.Enum):
    """Sign mode of a Dense weight matrix: Lava's ``lava.utils.weightutils.SignMode`` (same names
    and values)."""

    NULL = 0
    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


def _sign_mode(mode) -> SignMode | None:
    """A SignMode from a SignMode, Lava's SignMode (by name), a name ("mixed") or None."""
    if mode is None or isinstance(mode, SignMode):
        return mode
    name = getattr(mode, "name", mode)
    if isinstance(name, str) and name.upper() in SignMode.__members__:
        return SignMode[name.upper()]
    raise ConfigError(f"sign_mode = {mode!r}: allowed {[m.name.lower() for m in SignMode]} or None (inferred)")


def _int32_weights(weights) -> Tensor:
    """The weight matrix as Lava's Dense stores it (an int32 Var: values truncated toward zero), int64."""
    w = torch.as_tensor(weights)
    if w.dtype == torch.bool:
        w = w.to(torch.int64)
    if w.is_floating_point():
        if not bool(torch.isfinite(w).all()):
            raise ConfigError("Dense weights must be finite")
        w = torch.trunc(w.double())
    if w.numel() and (float(w.min()) < -2 ** 31 or float(w.max()) >= 2 ** 31):
        raise ConfigError("Dense weights must fit in int32 (Lava stores them as int32)")
    return w.to(torch.int64)


def determine_sign_mode(weights) -> SignMode:
    """Lava's ``determine_sign_mode``: EXCITATORY if no weight is negative, else INHIBITORY if none
    is positive, else MIXED (an all-zero matrix is EXCITATORY)."""
    w = torch.as_tensor(weights)
    if not w.numel():
        raise ConfigError("determine_sign_mode: no weights")
    if float(w.min()) >= 0:
        return SignMode.EXCITATORY
    if float(w.max()) <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def lava_dense_weights(weights, num_weight_bits: int = 8, sign_mode=None) -> Tensor:
    """The integer weights Lava's fixed_pt Dense (``PyDenseModelBitAcc``, lava-nc 0.10.0) actually
    uses for the matrix a user gives it, int64, same shape::

        w      = int32(weights)                          (truncation toward zero, as the Var is int32)
        mode   = sign_mode or determine_sign_mode(w)
        clip:    MIXED [−256, 255]; INHIBITORY [−255, 0]; EXCITATORY, NULL [0, 255]
        n      = 8 − num_weight_bits + (mode is MIXED)
        MIXED, EXCITATORY, NULL: w ← (w >> n) << n        (floor: −3 → −4 for n = 1)
        INHIBITORY:              w ← −((−w >> n) << n)    (toward zero)

    So a mixed-sign matrix loses its least significant bit (even values in [−256, 254] at 8 bits)
    and out-of-range values are clipped. ``weight_exp`` is applied to the accumulated input, not
    here (:meth:`FixedProjection.accumulate`)."""
    if isinstance(num_weight_bits, bool) or not isinstance(num_weight_bits, int) or not 0 <= num_weight_bits <= 8:
        raise ConfigError(f"num_weight_bits = {num_weight_bits!r}: must be an integer in [0, 8]")
    w = _int32_weights(weights)
    mode = _sign_mode(sign_mode) or (determine_sign_mode(w) if w.numel() else SignMode.EXCITATORY)
    mixed = mode is SignMode.MIXED
    n = 8 - num_weight_bits + int(mixed)
    if mode is SignMode.INHIBITORY:
        return -(((-w).clamp(0, 255) >> n) << n)
    w = w.clamp(-256 if mixed else 0, 255)
    return (w >> n) << n


def _np_lshift32(x: Tensor, n: int) -> Tensor:
    """NumPy's ``int32 << n``: wraps to 32 bits; 0 for a negative count or one beyond 31."""
    if not 0 <= n < 32:
        return torch.zeros_like(x)
    return (((x << n) + 2 ** 31) % 2 ** 32) - 2 ** 31


def optimize_weight_bits(weights, sign_mode=None, loihi2: bool = False) -> tuple[Tensor, int, int]:
    """Lava's ``optimize_weight_bits`` (lava.utils.weightutils, 0.10.0), transcribed with its
    quirks: (weights << −weight_exp, num_weight_bits, weight_exp) for a matrix within its sign
    mode's range (MIXED [−256, 255], EXCITATORY [0, 255], INHIBITORY [−255, 0]; else ConfigError).
    What a Lava user may run before giving weights to Dense; not applied by Dense itself."""
    w = _int32_weights(weights)
    mode = _sign_mode(sign_mode) or determine_sign_mode(w)
    mixed, exc, inh = mode is SignMode.MIXED, mode is SignMode.EXCITATORY, mode is SignMode.INHIBITORY
    lo = -256 * (mixed + inh) + inh
    hi = 255 * (mixed + exc)
    if w.numel() and (int(w.max()) > hi or int(w.min()) < lo):
        raise ConfigError(f"weights have to be between {lo} and {hi} for sign mode {mode.name}")
    wmax, wmin = (int(w.max()), int(w.min())) if w.numel() else (0, 0)
    if wmax == wmin == 0:
        exp = 0
    else:  # (a NULL mode with nonzero weights was refused above)
        if mixed:
            scale = min(127 / wmax if wmax > 0 else math.inf, -128 / wmin if wmin < 0 else math.inf)
        else:
            scale = -255 / wmin if inh else 255 / wmax
        exp = -(int(np.floor(np.log2(np.float64(scale)))) + int(mixed))
    n = 8
    wd = w.double()
    while n > 0 and float((wd / 2 ** n - torch.round(wd / 2 ** n)).abs().sum()) != 0:
        n -= 1
    nbits = 8 + exp - n + int(mixed)
    out = _np_lshift32(w, -exp)
    if loihi2:
        if nbits > 8:
            raise ConfigError(f"optimize_weight_bits(loihi2=True): num_weight_bits {nbits} > 8 (Lava fails here too)")
        out = torch.trunc(out.double() / (1 << (8 - nbits)))
        if mixed:
            out = torch.trunc(out / 2)
        out = out.to(torch.int64)
    return out, nbits, exp


def quantize_weights(w_real: Tensor, bits: int = 8, span: float | None = None) -> tuple[Tensor, int]:
    """Real input values per spike (a-units) → (int64 mantissas, exponent) as Lava's Dense uses
    them (:func:`lava_dense_weights` leaves them unchanged): single-sign weights use ``bits`` bits
    of magnitude (0..255), mixed signs Lava's mixed range, even values in [−2**bits, 2**bits − 2]
    ([−256, 254]: Lava clears their least significant bit). ``span``: the largest |value| the
    mantissas must be able to reach (default: the largest given)."""
    mixed = bool((w_real > 0).any() and (w_real < 0).any())
    m = float(w_real.abs().max()) if w_real.numel() else 0.0
    if span is not None and span > 0:
        m = max(m, span)
    if m == 0:
        return torch.zeros(w_real.shape, dtype=torch.int64), 0
    if not mixed:
        top = 2 ** bits - 1
        exp = math.ceil(math.log2(m / top))
        while round(m / 2 ** exp) > top:
            exp += 1
        mant = torch.round(w_real.double() / 2 ** exp).to(torch.int64).clamp(-top, top)
    else:  # mant = 2·h, h in [−2**(bits−1), 2**(bits−1) − 1]: Lava's mixed mode (a 1-bit LSB truncation)
        top, bot = 2 ** (bits - 1) - 1, 2 ** (bits - 1)
        pos = max(float(w_real.max()), span or 0.0)
        neg = max(-float(w_real.min()), span or 0.0)
        exp = math.ceil(math.log2(max(pos / top, neg / bot))) - 1
        while round(pos / 2 ** (exp + 1)) > top or round(neg / 2 ** (exp + 1)) > bot:
            exp += 1
        mant = torch.round(w_real.double() / 2 ** (exp + 1)).to(torch.int64).clamp(-bot, top) * 2
    # what Lava's Dense does with them (a no-op, except that if rounding leaves only negative
    # mantissas Lava infers INHIBITORY and clips −256 to −255)
    return lava_dense_weights(mant), exp


@dataclass
class FixedProjection:
    """Synapses pre → post in fixed point: (S,) ``pre``, ``post`` long; ``w_mant`` (S,) or
    (B, S) int64 mantissas; ``weight_exp``; ``scale_w`` = float weight per mantissa unit."""

    name: str
    pre_pop: str
    post_pop: str
    n_pre: int
    n_post: int
    pre: Tensor
    post: Tensor
    w_mant: Tensor
    weight_exp: int
    scale_w: float

    @classmethod
    def from_lava_dense(cls, name: str, pre_pop: str, post_pop: str, weights, weight_exp: int = 0,
                        num_weight_bits: int = 8, sign_mode=None) -> "FixedProjection":
        """The projection a Lava user writes as ``Dense(weights=weights, weight_exp=weight_exp,
        num_weight_bits=num_weight_bits, sign_mode=sign_mode)`` run in fixed_pt: ``weights`` the
        (n_post, n_pre) integer matrix as given to Lava; the mantissas are what Lava's Dense makes
        of it (:func:`lava_dense_weights`: sign mode, clipping, LSB truncation) and the accumulated
        input is shifted by ``weight_exp``. Synapses: the nonzero entries given. ``scale_w`` =
        2**weight_exp (input units per mantissa unit; there is no float model)."""
        if isinstance(weight_exp, bool) or not isinstance(weight_exp, int):
            raise ConfigError(f"projection {name}: weight_exp = {weight_exp!r}: must be an integer")
        given = _int32_weights(weights)
        if given.dim() != 2:
            raise ConfigError(f"projection {name}: Dense weights must be a 2-D (n_post, n_pre) matrix, "
                              f"got shape {tuple(given.shape)}")
        W = lava_dense_weights(given, num_weight_bits, sign_mode)
        post, pre = given.nonzero(as_tuple=True)
        return cls(name, pre_pop, post_pop, int(given.shape[1]), int(given.shape[0]), pre, post,
                   W[post, pre].clone(), weight_exp, 2.0 ** weight_exp)

    def dense(self) -> Tensor:
        """(…, n_post, n_pre) int64 mantissa matrix (what Lava's Dense gets)."""
        lead = self.w_mant.shape[:-1]
        W = torch.zeros(*lead, self.n_post, self.n_pre, dtype=torch.int64)
        W[..., self.post, self.pre] = self.w_mant
        return W

    def accumulate(self, z_pre: Tensor) -> Tensor:
        """(B, n_pre) bool spikes → (B, n_post) int64 input after the weight exponent.

        Shared weights: one float64 product with the dense mantissa matrix (exact: every partial
        sum is an integer far below 2**53), rebuilt when ``w_mant`` is replaced; per-trial weights:
        a gather over the synapses."""
        B = z_pre.shape[0]
        w = self.w_mant
        if w.dim() == 2 and w.shape[0] == 1 and B > 1:
            w = w.expand(B, -1)
        if w.dim() == 1 or B == 1:
            cache = self.__dict__.get("_dense")
            if cache is None or cache[0] is not self.w_mant:
                Wd = torch.zeros(self.n_pre, self.n_post, dtype=torch.float64)
                Wd[self.pre, self.post] = w.reshape(-1).double()
                self._dense = cache = (self.w_mant, Wd)
            if B == 1:  # event-driven: the rows of the few neurons that spiked (exact integer sums)
                idx = z_pre[0].nonzero().view(-1)
                a = torch.round(cache[1].index_select(0, idx).sum(0, keepdim=True)).to(torch.int64)
            else:
                a = torch.round(z_pre.double() @ cache[1]).to(torch.int64)
        else:
            contrib = w * z_pre[:, self.pre].to(torch.int64)
            a = torch.zeros(B, self.n_post, dtype=torch.int64).index_add_(1, self.post, contrib)
        return shift_accumulated(a, self.weight_exp)


class FixedPointNetwork(nn.Module):
    """The integer twin of a SpikingNetwork (see the module docstring). Build with
    :meth:`from_float`. ``noise_seed`` seeds the counter-based membrane noise."""

    def __init__(self, spec: SpikingSpec, lif: dict[str, LoihiLIFParameters], k: dict[str, float],
                 projections: list[FixedProjection], noise: dict[str, tuple[int, int]], scale: int,
                 noise_seed: int = 0):
        super().__init__()
        self.spec, self.lif, self.k, self.scale = spec, lif, k, scale
        self.fixed_projections = projections
        self.noise, self.noise_seed = noise, noise_seed
        self.pops = {p.name: p for p in spec.populations}
        self._offset = {}  # global neuron index of each population's first neuron (noise counters)
        off = 0
        for p in spec.populations:
            self._offset[p.name] = off
            off += p.size

    @classmethod
    def from_float(cls, net: SpikingNetwork, scale: int | None = None, noise_seed: int = 0,
                   weight_bits: int = 8) -> "FixedPointNetwork":
        spec = net.spec
        for p in spec.populations:
            if p.kind == "izhikevich":
                raise ConfigError(f"population {p.name!r}: Izhikevich populations have no fixed-point (Loihi) "
                                  "version; run them on the float engines (torch, event, Brian2)")
        scale = scale or default_scale(spec)
        lif, k, noise = {}, {}, {}
        for p in spec.populations:
            if p.kind == "poisson":
                raise ConfigError(f"population {p.name!r}: Poisson populations are not deployed; make it kind "
                                  "'input' and give its spikes")
            if p.kind != "lif":
                continue
            lif[p.name], k[p.name] = quantize_lif(p.name, p.lif, p.i_ext, spec.dt, scale)
            if p.lif.noise == "membrane" and p.lif.noise_std > 0:
                mant = round(p.lif.noise_std * k[p.name] * scale / 64 / NOISE_SD_BYTES * 2 ** NOISE_SHIFT)
                noise[p.name] = (mant, NOISE_SHIFT)
        projs = []
        for pr in net.projections:
            kk = k[pr.spec.post]
            real = pr.weight.detach().double() * (kk * scale / 64)
            # the exponent must cover the weights' whole allowed range (w_max), not just today's
            # weights, or plasticity could never reach w_max in 8 bits
            span = pr.spec.w_max * (kk * scale / 64) if math.isfinite(pr.spec.w_max) else None
            mant, exp = quantize_weights(real, weight_bits, span)
            projs.append(FixedProjection(pr.name, pr.spec.pre, pr.spec.post, pr.n_pre, pr.n_post,
                                         pr.pre.cpu(), pr.post.cpu(), mant, exp, 2 ** exp / (kk * scale / 64)))
        return cls(spec, lif, k, projs, noise, scale, noise_seed)

    @classmethod
    def from_integers(cls, sizes: Mapping[str, int], lif: Mapping[str, LoihiLIFParameters],
                      projections: list[FixedProjection], dt: float = 1e-3,
                      noise_seed: int = 0) -> "FixedPointNetwork":
        """A network written directly in Loihi's integers, as a Lava user writes it: ``sizes`` per
        population (in order; those without ``lif`` parameters are "input" populations, their
        spikes given to :meth:`step`), ``lif`` its fixed-point LIF parameters (Lava's ``LIF(du=,
        dv=, vth=, bias_mant=, bias_exp=)``), ``projections`` e.g. from
        :meth:`FixedProjection.from_lava_dense`. ``scale`` is 64 (:meth:`voltage` gives v in
        threshold-mantissa units); the float spec is descriptive only (tau_mem = dt·4096/dv, …)."""
        from ...neurons.lif import LIFParameters
        from ...spiking.spec import PopulationSpec

        unknown = set(lif) - set(sizes)
        if unknown:
            raise ConfigError(f"LIF parameters for unknown populations {sorted(unknown)}")
        pops, k = [], {}
        for name, size in sizes.items():
            q = lif.get(name)
            if q is None:
                pops.append(PopulationSpec(name, size, "input"))
                continue
            k[name] = max(q.dv, 1) / 4096
            pops.append(PopulationSpec(name, size, "lif", LIFParameters(
                tau_mem=dt / k[name], tau_syn=dt * 4096 / (q.du + 1), v_th=float(q.vth), dt=dt)))
        for pr in projections:
            for end, n in ((pr.pre_pop, pr.n_pre), (pr.post_pop, pr.n_post)):
                if sizes.get(end) != n:
                    raise ConfigError(f"projection {pr.name}: population {end!r} of size {sizes.get(end)} "
                                      f"does not match the weights' {n}")
            if pr.post_pop not in lif:
                raise ConfigError(f"projection {pr.name}: post population {pr.post_pop!r} has no LIF parameters")
        return cls(SpikingSpec(tuple(pops), (), dt), dict(lif), k, list(projections), {}, 64, noise_seed)

    def projection(self, name: str) -> FixedProjection:
        return find_projection(self.fixed_projections, name)

    def init_state(self, batch: int) -> dict:
        z = {n: torch.zeros(batch, p.size, dtype=torch.bool) for n, p in self.pops.items()}
        u = {n: torch.zeros(batch, self.pops[n].size, dtype=torch.int64) for n in self.lif}
        v = {n: torch.zeros(batch, self.pops[n].size, dtype=torch.int64) for n in self.lif}
        return {"z": z, "u": u, "v": v, "t": 0}

    def noise_current(self, name: str, t: int, batch: int) -> Tensor:
        """(B, N) int64 membrane noise of population ``name`` at step t (1-based, as Lava's
        time_step); trial b draws from seed ``noise_seed + b``."""
        mant, shift = self.noise[name]
        idx = torch.arange(self.pops[name].size, dtype=torch.int64) + self._offset[name]
        seeds = self.noise_seed + torch.arange(batch, dtype=torch.int64)[:, None]
        return hash_noise(seeds, t, idx, mant, shift)

    def noise_as_current(self, name: str, t: int, batch: int) -> Tensor:
        """:meth:`noise_current` converted to the float model's current (a-units ÷ k·scale/64),
        float64: what a float twin adds to ``i_in`` to see the same noise."""
        return self.noise_current(name, t, batch).double() / (self.k[name] * self.scale / 64)

    def step(self, state: dict, inputs: Mapping[str, Tensor] | None = None) -> tuple[dict[str, Tensor], dict]:
        """Advance one step. inputs: per "input" population its (B, N) spikes this step.
        Returns ({population: (B, N) bool spikes}, new state)."""
        inputs = inputs or {}
        z_prev = state["z"]
        B = next(iter(z_prev.values())).shape[0]
        t = state["t"] + 1
        z_new, u_new, v_new = {}, {}, {}
        for name, p in self.pops.items():
            if p.kind == "input":
                z_new[name] = input_spikes(name, p.size, inputs, B).to(torch.bool)
        a = {name: torch.zeros(B, self.pops[name].size, dtype=torch.int64) for name in self.lif}
        for pr in self.fixed_projections:
            a[pr.post_pop] = a[pr.post_pop] + pr.accumulate(z_prev[pr.pre_pop])
        for name, p in self.lif.items():
            a_in = a[name]
            if name in self.noise:
                a_in = a_in + self.noise_current(name, t, B)
            z_new[name], u_new[name], v_new[name] = loihi_lif_step(a_in, state["u"][name], state["v"][name], p)
        return z_new, {"z": z_new, "u": u_new, "v": v_new, "t": t}

    def voltage(self, state: dict, name: str) -> Tensor:
        """(B, N) membrane potential of ``name`` in the float model's voltage units."""
        return state["v"][name].double() / self.scale


def noiseless_spec(spec: SpikingSpec) -> SpikingSpec:
    """The spec with every LIF population's own noise off (engine "torch"): for float twins that
    receive the fixed point's hash noise as an input current instead."""
    from dataclasses import replace

    from ...spiking.spec import PopulationSpec

    return SpikingSpec(tuple(PopulationSpec(p.name, p.size, p.kind, replace(p.lif, noise="none", noise_std=0.0),
                                            p.rate, p.sign, p.i_ext) if p.kind == "lif" else p
                             for p in spec.populations), spec.projections, spec.dt, "torch")


def quantization_report(net: SpikingNetwork, fixed: FixedPointNetwork) -> dict:
    """Per population the relative error of the decays and threshold, per projection the max and
    rms relative error of the weights (what rounding to Loihi's integers costs)."""
    rep = {"scale": fixed.scale, "populations": {}, "projections": {}}
    for name, q in fixed.lif.items():
        p = net.pops[name].lif
        k_syn = net.spec.dt / p.tau_syn if p.tau_syn else 1.0
        rep["populations"][name] = {
            "dv": q.dv, "du": q.du, "vth": q.vth,
            "decay_v_rel_err": abs(q.dv / 4096 - fixed.k[name]) / fixed.k[name],
            "decay_u_rel_err": abs((q.du + 1) / 4096 - k_syn) / k_syn,
            "vth_rel_err": abs(q.vth * 64 / fixed.scale - p.v_th) / p.v_th}
    for pr, fp in zip(net.projections, fixed.fixed_projections):
        w = pr.weight.detach().double()
        wq = fp.w_mant.double() * fp.scale_w
        nz = w != 0
        rel = ((wq - w).abs()[nz] / w.abs()[nz]) if nz.any() else torch.zeros(1, dtype=torch.float64)
        top = float(w.abs().max()) or 1.0
        rep["projections"][fp.name] = {"weight_exp": fp.weight_exp, "lsb": fp.scale_w,
                                       "max_abs_err_over_max_w": float((wq - w).abs().max()) / top,
                                       "max_rel_err": float(rel.max()), "rms_rel_err": float(rel.pow(2).mean().sqrt())}
    return rep


def quantization_error(net: SpikingNetwork, fixed: FixedPointNetwork, steps: int,
                       inputs: Mapping[str, Tensor] | None = None) -> dict:
    """What quantisation does to the dynamics: the float network (float64, norse's step) and its
    fixed-point twin run ``steps`` steps on the same input spikes and the same membrane noise (the
    fixed point's hash noise, converted to current for the float network, whose own noise is off).

    inputs: per input population (T, N) spikes. Returns per LIF population the spike counts of
    both, the fraction of float spikes matched by a fixed-point spike of the same neuron within ±1
    step, the RMS voltage difference (in units of v_th) and the first step where the spike trains
    differ (None if never)."""
    inputs = inputs or {}
    quiet = noiseless_spec(net.spec)
    fnet = SpikingNetwork(quiet, dtype=torch.float64)
    for fp, p in zip(fnet.projections, net.projections):  # the same synapses and (trial 0's) weights
        for name in ("pre", "post", "rowptr", "by_post", "colptr"):
            fp._buffers[name] = p._buffers[name].clone()
        w = p.weight.detach()
        fp.weight = nn.Parameter((w if w.dim() == 1 else w[0]).double().clone())
    lif = list(fixed.lif)
    sf, sx = fnet.init_state(1), fixed.init_state(1)
    zf = {n: [] for n in lif}
    zx = {n: [] for n in lif}
    dv2 = {n: 0.0 for n in lif}
    with torch.no_grad():
        for t in range(steps):
            x = {k: v[t:t + 1] for k, v in inputs.items()}
            ext = dict({k: v.double() for k, v in x.items()})
            for n in fixed.noise:  # the same noise, as current
                ext[n] = fixed.noise_as_current(n, t + 1, 1)
            z1, sf = fnet.step(sf, ext)
            z2, sx = fixed.step(sx, {k: v.bool() for k, v in x.items()})
            for n in lif:
                zf[n].append(z1[n][0].bool())
                zx[n].append(z2[n][0])
                dv2[n] += float(((sf["lif"][n].v - fixed.voltage(sx, n)) ** 2).mean())
    rep = {}
    for n in lif:
        a, b = torch.stack(zf[n]), torch.stack(zx[n])
        near = b.clone()
        near[1:] |= b[:-1]
        near[:-1] |= b[1:]
        diff = (a != b).any(1).nonzero()
        v_th = net.pops[n].lif.v_th
        rep[n] = {"spikes_float": int(a.sum()), "spikes_fixed": int(b.sum()),
                  "matched_within_1_step": float((a & near).sum() / max(1, int(a.sum()))),
                  "rms_dv_over_vth": (dv2[n] / steps) ** 0.5 / v_th,
                  "first_difference_step": int(diff[0]) + 1 if len(diff) else None}
    return rep
