"""Loihi-style fixed-point LIF neurons and dense synaptic accumulation (pure integer tensor math).

Integer arithmetic exactly as Lava 0.10.0's bit-accurate ProcessModels define it
(``lava.proc.lif.models.PyLifModelBitAcc`` and ``lava.proc.dense.models.PyDenseModelBitAcc``);
the Lava backend's equivalence tests check the two bit for bit. All tensors are int64 (wide
enough for every intermediate product); values stay within the stated bit widths.

One step, per neuron (``>>`` is an arithmetic shift, ``trunc`` rounds toward zero)::

    u ← trunc(u · (4096 − (du + 1)) / 4096) + (a_in << 6)     current, 24-bit, wraps modulo 2**24
    v ← trunc(v · (4096 − dv) / 4096) + u + (bias_mant << bias_exp)     voltage, saturates to ±(2**23 − 1)
    s ← v > (vth << 6);  v ← 0 where s                         spike, reset to 0 (u is not reset)

``du`` and ``dv`` are 12-bit unsigned decays (Loihi adds 1 to ``du`` so that a decay of 4096,
"forget the current every step", is reachable; ``dv`` has no offset), ``vth`` a 17-bit threshold
mantissa, ``bias_mant`` 13-bit signed, ``bias_exp`` 3-bit. Loihi's LIF (and Lava's fixed_pt model)
has no refractory period.

Dense accumulation (per projection): ``a = Σ_j w_ij s_j`` over the spiking pre neurons with 8-bit
weight mantissas ``w_ij``, then ``a << weight_exp`` (``a >> −weight_exp`` for a negative exponent,
flooring). A projection's ``a`` reaches the post neurons one step after the spikes (Lava's Dense
sends last step's accumulation first, which is also the torch engine's one-step synaptic delay).

State units: with ``scale`` state units per voltage unit, a threshold ``v_th`` is ``vth =
round(v_th · scale / 64)``; one unit of ``a_in`` is 64 state units.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError
# the counter-based hash noise (Chris Wellons' "lowbias32" of (seed, step, neuron)): the same integers
# in torch, numba and NumPy (the Lava side re-implements it), so noisy runs are reproducible across
# engines without shipping noise arrays; it lives with the float engines' noise, re-exported here
from ...neurons.hash_rng import M32 as _M32, _lowbias32, hash_noise, hash_uniform32  # noqa: F401

__all__ = ["LoihiLIFParameters", "loihi_lif_step", "shift_accumulated", "UV_BITS", "DECAY_BITS",
           "ACT_SHIFT", "VTH_SHIFT", "hash_uniform32", "hash_noise"]

UV_BITS = 24  # u and v are 24-bit signed
DECAY_BITS = 12  # du, dv are 12-bit unsigned; decays multiply by (4096 − d) / 4096
ACT_SHIFT = 6  # synaptic input is MSB-aligned by 6 bits
VTH_SHIFT = 6  # so is the threshold
_MAX_UV = 2 ** (UV_BITS - 1)
_UNITY = 2 ** DECAY_BITS


@dataclass(frozen=True)
class LoihiLIFParameters:
    """One population's fixed-point LIF parameters (Lava's ``LIF(du=, dv=, vth=, bias_mant=,
    bias_exp=)`` in fixed_pt). Ranges as Loihi's registers: du, dv in [0, 4095]; vth in
    [0, 2**17 − 1]; bias_mant in [−4096, 4095]; bias_exp in [0, 7]."""

    du: int
    dv: int
    vth: int
    bias_mant: int = 0
    bias_exp: int = 0

    def __post_init__(self) -> None:
        for name, lo, hi in (("du", 0, 4095), ("dv", 0, 4095), ("vth", 0, 2 ** 17 - 1),
                             ("bias_mant", -4096, 4095), ("bias_exp", 0, 7)):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
                raise ConfigError(f"fixed-point LIF {name} = {val!r}: must be an integer in [{lo}, {hi}]")

    @property
    def effective_bias(self) -> int:
        return self.bias_mant << self.bias_exp

    @property
    def effective_vth(self) -> int:
        return self.vth << VTH_SHIFT


def _decay(x: Tensor, factor: int) -> Tensor:
    """trunc(x · factor / 4096): Lava's ``sign(x) · (|x · factor| >> 12)``."""
    y = x * factor
    return torch.sign(y) * (y.abs() >> DECAY_BITS)


def loihi_lif_step(a_in: Tensor, u: Tensor, v: Tensor, p: LoihiLIFParameters) -> tuple[Tensor, Tensor, Tensor]:
    """One fixed-point LIF step (the module docstring's equations).

    a_in: (B, N) int64 summed synaptic input (already shifted by each projection's weight_exp);
    u, v: (B, N) int64 state. Returns (spikes (B, N) bool, new u, new v)."""
    cur = _decay(u, _UNITY - (p.du + 1)) + (a_in << ACT_SHIFT)
    # wrap to 24 bits as Lava does: > 2**23 → −2**24; <= −2**23 → +2**24 (one wrap each way)
    wrapped = torch.where(cur > _MAX_UV, cur - 2 * _MAX_UV, cur)
    u_new = torch.where(wrapped <= -_MAX_UV, cur + 2 * _MAX_UV, wrapped)
    v_new = (_decay(v, _UNITY - p.dv) + u_new + p.effective_bias).clamp_(-_MAX_UV + 1, _MAX_UV - 1)
    s = v_new > p.effective_vth
    v_new = v_new.masked_fill(s, 0)
    return s, u_new, v_new


def shift_accumulated(a: Tensor, weight_exp: int) -> Tensor:
    """A projection's accumulated input scaled by its weight exponent, as Lava's Dense does it."""
    return a << weight_exp if weight_exp > 0 else a >> -weight_exp
