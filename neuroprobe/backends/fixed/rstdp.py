"""Cascade-trace R-STDP in Loihi-style integer arithmetic (the on-chip learning rule).

The fixed-point twin of :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` for a
:class:`~neuroprobe.backends.fixed.network.FixedProjection`. The Lava backend runs the same arithmetic as
a custom fixed_pt ProcessModel (``backends/lava/lava_side/processes.py``, ``CascadeRSTDPConn``);
tests/test_lava_backend.py checks that the weights after a run are bit-identical.

Bit widths (Loihi 2 has 8-bit weights, 8-bit tags and 7-bit traces; wider where the custom
ProcessModel allows it, as documented in docs/deploy.md):

* pre and post traces x, y: 7-bit unsigned (0..127), truncating decay by ``dx``/``dy`` (12-bit), an
  impulse ``impulse`` per spike, saturating at 127;
* eligibility cascade e_1..e_n: ``e_bits`` = 32-bit signed per synapse (8-bit tags cannot hold a
  slowly decaying n-stage cascade: its rounding would stall the decay; with 24 bits the rounding
  moves the maximum of a flat kernel, e.g. order 2 peaking at 2 s, by up to 21 steps), a unit
  coincidence entering as ``(impulse·16) << c_shift`` = 2**26; rate ``r / 2**r_shift`` with a
  16-bit mantissa ``r``, rounding to nearest;
* weights: 8-bit mantissas used for propagation, kept as 16-bit accumulators ``w_acc`` with
  ``frac_bits`` = 8 fractional bits (the weight update is far below one mantissa step per time
  step); bounds [lo, hi] in accumulator units keep the Dale sign;
* dopamine: a signed integer per step (third factor).

One step (pre spikes s, post spikes q, dopamine d; all integers)::

    x ← trunc(x·(4096 − dx)/4096);  y ← trunc(y·(4096 − dy)/4096)
    c = a_plus·x[pre]·q[post] − a_minus·y[post]·s[pre]
    x ← min(x + impulse·s, 127);  y ← min(y + impulse·q, 127)
    e_k ← e_k + round((e_{k−1} − e_k)·r/2**r_shift) for every stage (e_0 ≡ 0);  e_1 += c << c_shift
    w_acc ← clip(w_acc + ((d·lr_mant·e_n) >> lr_shift), lo, hi);  w_mant = w_acc >> frac_bits

The weights updated at step t carry the spikes of step t to the post population at step t + 1.

The cascade rate comes from :class:`~neuroprobe.spec.CascadeKernel`: ``r / 2**r_shift`` is
``CascadeKernel.chain_rate(dt)`` (``(n−1)/(delay/dt + 1/2)``; order 1: ``1 − e^(−dt/delay)``), so the
integer eligibility peaks at the configured delay (the step nearest to it; order 1: falls to 1/e at
``delay``). Before, ``r = round(4096·n·dt/delay)`` put the peak at ``(n−1)/n·delay`` (order 6,
delay 2 s: 1.70 s).
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ...errors import ConfigError
from ...spec.kernel import CascadeKernel
from .network import FixedProjection
from ...spiking.projection import csr_rowptr, padded_rows

__all__ = ["FixedRSTDPParams", "FixedCascadeRSTDP", "fixed_rstdp_params", "chain_rate_bits", "integer_peak", "R_BITS"]

R_BITS = 16  # mantissa bits of the cascade rate r (r / 2**r_shift)
MAX_SHIFT = 62  # lr_shift, r_shift bound: |d·lr_mant·e_n| < 2**23·2**8·2**31 fits int64


@dataclass(frozen=True)
class FixedRSTDPParams:
    order: int
    r: int  # cascade rate mantissa: r / 2**r_shift = CascadeKernel(order, delay).chain_rate(dt)
    dx: int  # pre-trace decay, 4096·dt/tau_plus
    dy: int  # post-trace decay, 4096·dt/tau_minus
    r_shift: int = 12
    impulse: int = 64
    a_plus: int = 16
    a_minus: int = 16
    c_shift: int = 16
    e_bits: int = 32  # width of the cascade states e_1..e_n (saturating)
    lr_mant: int = 1
    lr_shift: int = 16
    frac_bits: int = 8
    lo: int = 0
    hi: int = 255 << 8
    weight_exp: int = 0

    def __post_init__(self) -> None:
        for name in ("dx", "dy"):
            v = getattr(self, name)
            if not 0 < v <= 4095:
                raise ConfigError(f"fixed R-STDP {name} = {v}: must be in [1, 4095] (12-bit decay; change dt or "
                                  "the time constant)")
        if not 1 <= self.r_shift <= MAX_SHIFT or not 0 < self.r < 2 ** R_BITS or self.r > 2 ** self.r_shift:
            raise ConfigError(f"fixed R-STDP rate r = {self.r} / 2**{self.r_shift}: need a {R_BITS}-bit mantissa "
                              f"r >= 1, r_shift in [1, {MAX_SHIFT}] and r / 2**r_shift <= 1 (change dt or the delay)")
        if not 1 <= self.order <= 16:
            raise ConfigError(f"fixed R-STDP order = {self.order}: must be in [1, 16]")
        if not 0 <= self.impulse <= 127:
            raise ConfigError(f"fixed R-STDP impulse = {self.impulse}: 7-bit traces allow [0, 127]")
        if not 16 <= self.e_bits <= 32 or not 0 <= self.c_shift <= self.e_bits - 12:
            raise ConfigError(f"fixed R-STDP e_bits = {self.e_bits}, c_shift = {self.c_shift}: need e_bits in "
                              "[16, 32] and c_shift in [0, e_bits - 12]")
        if not 0 <= self.lr_shift <= MAX_SHIFT:
            raise ConfigError(f"fixed R-STDP lr_shift = {self.lr_shift}: must be in [0, {MAX_SHIFT}]")
        if self.lo > self.hi:
            raise ConfigError(f"fixed R-STDP bounds lo = {self.lo} > hi = {self.hi}")

    @property
    def e_max(self) -> int:
        """Saturation bound of the cascade states, 2**(e_bits − 1) − 1."""
        return (1 << (self.e_bits - 1)) - 1

    @property
    def unit(self) -> int:
        """e_1 after a float coincidence of 1 (trace 1 × a 1): ``(impulse·16) << c_shift``."""
        return (self.impulse * 16) << self.c_shift

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def chain_rate_bits(kernel: CascadeKernel, dt: float) -> tuple[int, int]:
    """``(r, r_shift)`` with ``r / 2**r_shift`` the nearest ``R_BITS``-bit mantissa fraction to
    ``kernel.chain_rate(dt)`` (the integer engines' rate; relative error <= 2**−16)."""
    rate = kernel.chain_rate(dt)
    shift = min(MAX_SHIFT, R_BITS - 1 - math.floor(math.log2(rate)))
    r = round(rate * 2 ** shift)
    if r >= 2 ** R_BITS:  # rounded up to the next power of two
        shift -= 1
        r = round(rate * 2 ** shift)
    if r < 1:
        raise ConfigError(f"kernel delay {kernel.delay} s at dt = {dt} s: the integer cascade rate {rate:.3g} per step "
                          f"is below 2**-{MAX_SHIFT}")
    return int(r), int(shift)


def integer_peak(p: FixedRSTDPParams, steps: int) -> tuple[int, int]:
    """(maximum of e_n, its step) over ``steps`` steps after a unit coincidence ``p.unit`` entered
    e_1 at step 0: the integer cascade itself, its rounding included."""
    return _integer_peak(p.order, p.r, p.r_shift, p.e_max, p.unit, int(steps))


@functools.lru_cache(maxsize=256)
def _integer_peak(order: int, r: int, r_shift: int, e_max: int, unit: int, steps: int) -> tuple[int, int]:
    e = torch.zeros(order, 1, dtype=torch.int64)
    e[0] = unit
    peak, at = int(e[-1, 0]), 0
    for t in range(1, steps):
        e = _cascade_update(e, r, r_shift, e_max)
        v = int(e[-1, 0])
        if v > peak:
            peak, at = v, t
    return peak, at


def fixed_rstdp_params(proj: FixedProjection, dt: float, order: int, delay: float, tau_plus: float,
                       tau_minus: float, a_plus: float, a_minus: float, lr: float, w_min: float, w_max: float,
                       sign: float, dopamine_unit: float) -> FixedRSTDPParams:
    """Integer parameters approximating the float rule (``CascadeRSTDP`` with kernel normalised to
    a peak of 1 and SGD learning rate ``lr``) on ``proj``. ``dopamine_unit``: float dopamine per
    integer dopamine step. The cascade's rate is :class:`~neuroprobe.spec.CascadeKernel`'s
    (``chain_rate``, see :func:`chain_rate_bits`). The cascade's peak for a unit coincidence is
    measured by running the integer cascade itself, so the float→fixed learning-rate mapping
    includes its rounding."""
    kernel = CascadeKernel(order, delay, "peak")
    r, r_shift = chain_rate_bits(kernel, dt)
    p0 = FixedRSTDPParams(order=kernel.order, r=r, r_shift=r_shift, dx=round(4096 * dt / tau_plus),
                          dy=round(4096 * dt / tau_minus), a_plus=max(1, round(16 * a_plus)),
                          a_minus=max(1, round(16 * a_minus)), weight_exp=proj.weight_exp)
    # float coincidence of 1 (trace 1 × a 1) ↔ p0.unit in e_1 units; peak of e_n after it (at the
    # step nearest to delay/dt; order 1: step 0)
    peak, _ = integer_peak(p0, int(1.5 * kernel.delay_steps(dt)) + 10 if order > 1 else 1)
    # Δw_acc per step = d_int·lr_mant·e_n >> lr_shift  ≈  lr·d·e_float · (2**frac / scale_w)
    target = lr * dopamine_unit * (2 ** p0.frac_bits / proj.scale_w) / max(peak, 1)  # per (d_int·e_n)
    shift = max(0, min(MAX_SHIFT, math.floor(math.log2(255 / target)))) if target > 0 else MAX_SHIFT
    mant = max(1, min(255, round(target * 2 ** shift))) if target > 0 else 0  # lr = 0: no change at all
    lo, hi = w_min / proj.scale_w * 2 ** p0.frac_bits, min(w_max / proj.scale_w, 255) * 2 ** p0.frac_bits
    lo_i, hi_i = (round(lo), round(hi)) if sign >= 0 else (-round(hi), -round(lo))
    return FixedRSTDPParams(**{**p0.as_dict(), "lr_mant": mant, "lr_shift": shift, "lo": lo_i, "hi": hi_i})


def _round_shift(x: Tensor, bits: int = 12) -> Tensor:
    return (x + (1 << (bits - 1))) >> bits


def _cascade_update(e: Tensor, r: int, r_shift: int, e_max: int) -> Tensor:
    """One integer cascade step on (order, …) states (a new tensor), saturating to ±e_max. Every
    stage k: e_k += round((e_{k−1} − e_k)·r/2**r_shift) with e_0 ≡ 0 (halves up)."""
    d = torch.empty_like(e)
    torch.neg(e[0], out=d[0])
    if e.shape[0] > 1:
        torch.sub(e[:-1], e[1:], out=d[1:])
    new = d.mul_(r).add_(1 << (r_shift - 1)).bitwise_right_shift_(r_shift).add_(e)
    return new.clamp_(-e_max, e_max)


def _decay_trunc(x: Tensor, factor: int) -> Tensor:
    y = x * factor
    return torch.sign(y) * (y.abs() >> 12)


class FixedCascadeRSTDP:
    """Integer cascade R-STDP on one FixedProjection, batched over B trials (per-trial weights).

    State: ``x`` (B, n_pre), ``y`` (B, n_post), ``e`` (order, B, S), ``w_acc`` (B, S), all int64.
    ``step(s_pre, q_post, d)`` updates them and writes ``proj.w_mant = w_acc >> frac_bits``."""

    def __init__(self, proj: FixedProjection, batch: int, params: FixedRSTDPParams):
        if params.weight_exp != proj.weight_exp:
            raise ConfigError(f"fixed R-STDP weight_exp {params.weight_exp} != projection {proj.name}'s "
                              f"{proj.weight_exp}")
        self.proj, self.p, self.B = proj, params, batch
        S = proj.pre.numel()
        w0 = proj.w_mant if proj.w_mant.dim() == 2 else proj.w_mant.expand(batch, S)
        self.w_acc = (w0.to(torch.int64) << params.frac_bits).clamp(params.lo, params.hi).clone()
        self.x = torch.zeros(batch, proj.n_pre, dtype=torch.int64)
        self.y = torch.zeros(batch, proj.n_post, dtype=torch.int64)
        self.e = torch.zeros(params.order, batch, S, dtype=torch.int64)
        proj.w_mant = self.w_acc >> params.frac_bits
        # per neuron the synapse indices it sends / receives (padded with S): coincidences are
        # computed only on the synapses of neurons that spiked this step
        order = torch.argsort(proj.pre, stable=True)
        self._out = padded_rows(csr_rowptr(proj.pre[order], proj.n_pre), order, S)
        by_post = torch.argsort(proj.post, stable=True)
        self._in = padded_rows(csr_rowptr(proj.post[by_post], proj.n_post), by_post, S)
        self._S = S

    def _active_synapses(self, s_pre: Tensor, q_post: Tensor) -> tuple[Tensor, Tensor]:
        """(trial, synapse) of every synapse whose pre or post neuron spiked (each once)."""
        S = self._S
        bp, ip = s_pre.nonzero(as_tuple=True)
        bq, iq = q_post.nonzero(as_tuple=True)
        out_rows, in_rows = self._out[ip], self._in[iq]  # (k, D_out), (k', D_in) synapse indices, pad S
        b = torch.cat([bp[:, None].expand_as(out_rows).reshape(-1), bq[:, None].expand_as(in_rows).reshape(-1)])
        rows = torch.cat([out_rows.reshape(-1), in_rows.reshape(-1)])
        keep = rows < S
        key = torch.unique(b[keep] * S + rows[keep])
        return key // S, key % S

    def step(self, s_pre: Tensor, q_post: Tensor, d: Tensor | int) -> None:
        """s_pre (B, n_pre), q_post (B, n_post) bool spikes of this step; d: (B,) or int dopamine."""
        p, pre, post = self.p, self.proj.pre, self.proj.post
        s, q = s_pre.to(torch.int64), q_post.to(torch.int64)
        x, y = _decay_trunc(self.x, 4096 - p.dx), _decay_trunc(self.y, 4096 - p.dy)
        # coincidences only where a pre or post neuron spiked (sparse): same integers as the dense formula
        b, k = self._active_synapses(s_pre.bool(), q_post.bool())
        pk, qk = pre[k], post[k]
        c = p.a_plus * x[b, pk] * q[b, qk] - p.a_minus * y[b, qk] * s[b, pk]
        self.x = (x + p.impulse * s).clamp_(max=127)
        self.y = (y + p.impulse * q).clamp_(max=127)
        e = _cascade_update(self.e, p.r, p.r_shift, p.e_max)
        if k.numel():
            e[0].index_put_((b, k), c << p.c_shift, accumulate=True)
            e[0].clamp_(-p.e_max, p.e_max)
        self.e = e
        d = torch.as_tensor(d, dtype=torch.int64).reshape(-1, 1).expand(self.B, 1)
        if bool((d != 0).any()):  # no dopamine, no weight change (w_acc is always within [lo, hi])
            self.w_acc = (self.w_acc + ((d * p.lr_mant * e[-1]) >> p.lr_shift)).clamp_(p.lo, p.hi)
            self.proj.w_mant = self.w_acc >> p.frac_bits
