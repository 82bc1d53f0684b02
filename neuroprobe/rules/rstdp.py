"""Reward-modulated STDP with cascading eligibility traces (three-factor Hebbian rule).

The survey's R-STDP (Eq. 14–15: an eligibility e_ij fed by STDP coincidences, Δw_ij = η d(t) e_ij)
generalised from one eligibility state to a cascade of ``order`` states (the CET paper): the
coincidence term enters the first state of a linear cascade whose last state is the eligibility,
so its impulse response is an Erlang kernel peaking ``delay`` seconds after the coincidence
(order 1 = the classic exponentially decaying trace with time constant ``delay``).

Per step of ``dt`` seconds, after the network step that produced spikes z_pre (B, n_pre) and
z_post (B, n_post), for every synapse s = (pre_s → post_s):

    x_pre  ← x_pre  · exp(−dt/τ+)          y_post ← y_post · exp(−dt/τ−)     (per neuron)
    c_s    = A+ · x_pre[pre_s] · z_post[post_s] − A− · y_post[post_s] · z_pre[pre_s]
    x_pre  += z_pre                          y_post += z_post
    state  ← M state + e_0 c                 e = scale · state[order − 1]     (CascadeTrace)

``c`` uses the traces before this step's spikes are added (a pre and a post spike in the same
step do not pair). At a dopamine/RPE value d (per trial), :meth:`reinforce` writes
``weight.grad = −d · e`` (cost convention: ``SGD(lr=η).step()`` performs w ← w + η d e); then
:meth:`~neuroprobe.spiking.Projection.clamp_` keeps |w| in [w_min, w_max] with the Dale sign
(R-STDP's weight bounds). Shapes: eligibility (B, S); weight (S,) shared (the gradient is summed
over trials) or (B, S) per trial.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from ..spiking.network import Projection
from ..spiking.projection import expand_rows
from ..traces.cascade import CascadeTrace

__all__ = ["CascadeRSTDP", "stdp_coincidence", "stdp_coincidence_events"]


def stdp_coincidence(x_pre: Tensor, y_post: Tensor, z_pre: Tensor, z_post: Tensor, pre: Tensor, post: Tensor,
                     a_plus: float, a_minus: float) -> Tensor:
    """STDP coincidence per synapse (B, S) from per-neuron traces and spikes; pure (dense
    reference: touches every synapse)."""
    return a_plus * x_pre[:, pre] * z_post[:, post] - a_minus * y_post[:, post] * z_pre[:, pre]


def stdp_coincidence_events(x_pre: Tensor, y_post: Tensor, z_pre: Tensor, z_post: Tensor, proj: Projection,
                            a_plus: float, a_minus: float) -> Tensor:
    """Same as :func:`stdp_coincidence`, touching only the synapses of neurons that spiked
    (O(spikes × fan-in/out) instead of O(B·S)); pure. Returns dense (B, S)."""
    B, S = z_pre.shape[0], proj.n_synapses
    c = torch.zeros(B * S, dtype=x_pre.dtype, device=x_pre.device)
    b, j = z_post.nonzero(as_tuple=True)  # LTP: pre trace at post spikes
    if b.numel():
        k, brep, slot = expand_rows(proj.colptr, b, j)
        syn = proj.by_post[slot]
        c.index_add_(0, brep * S + syn, a_plus * x_pre[brep, proj.pre[syn]] * z_post[b, j][k])
    b, i = z_pre.nonzero(as_tuple=True)  # LTD: post trace at pre spikes
    if b.numel():
        k, brep, syn = expand_rows(proj.rowptr, b, i)
        c.index_add_(0, brep * S + syn, -a_minus * y_post[brep, proj.post[syn]] * z_pre[b, i][k])
    return c.view(B, S)


class CascadeRSTDP:
    """Cascade-trace R-STDP on one projection.

    Args:
        projection: the plastic :class:`~neuroprobe.spiking.Projection`.
        batch: number of trials B.
        order: cascade order n >= 1. delay: kernel peak (order >= 2) or time constant (order 1), s.
        dt: step (s). tau_plus, tau_minus: STDP trace time constants (s). a_plus, a_minus: STDP
            amplitudes. normalize: the kernel's "peak" (max 1, default), "area" or None.
    """

    name = "rstdp"

    def __init__(self, projection: Projection, batch: int, order: int = 1, delay: float = 1.0, dt: float = 1e-3,
                 tau_plus: float = 20e-3, tau_minus: float = 20e-3, a_plus: float = 1.0, a_minus: float = 1.5,
                 normalize: str | None = "peak"):
        for k, v in (("delay", delay), ("dt", dt), ("tau_plus", tau_plus), ("tau_minus", tau_minus)):
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"rule.{k} = {v!r}: must be a positive number of seconds")
        if delay < dt:
            raise ConfigError(f"rule.delay = {delay} s is shorter than dt = {dt} s")
        if a_plus < 0 or a_minus < 0:
            raise ConfigError(f"rule.a_plus / a_minus must be >= 0 (got {a_plus}, {a_minus})")
        self.projection, self.batch = projection, int(batch)
        self.order, self.delay, self.dt = int(order), float(delay), float(dt)
        self.a_plus, self.a_minus = float(a_plus), float(a_minus)
        w = projection.weight
        if w.dim() == 2 and w.shape[0] != batch:
            raise ShapeError(f"projection {projection.name} has per-trial weights for {w.shape[0]} trials, not {batch}")
        self.decay_plus = math.exp(-dt / tau_plus)
        self.decay_minus = math.exp(-dt / tau_minus)
        kw = dict(dtype=w.dtype, device=w.device)
        self.x_pre = torch.zeros(batch, projection.n_pre, **kw)
        self.y_post = torch.zeros(batch, projection.n_post, **kw)
        self.trace = CascadeTrace(self.order, self.delay / self.dt, (batch, projection.n_synapses),
                                  normalize=normalize, **kw)
        self.eligibility = torch.zeros(batch, projection.n_synapses, **kw)

    def step(self, z_pre: Tensor, z_post: Tensor) -> Tensor:
        """Advance traces and eligibility by one step; returns the eligibility (B, S)."""
        p = self.projection
        self.x_pre.mul_(self.decay_plus)
        self.y_post.mul_(self.decay_minus)
        c = stdp_coincidence_events(self.x_pre, self.y_post, z_pre, z_post, p, self.a_plus, self.a_minus)
        self.x_pre.add_(z_pre)
        self.y_post.add_(z_post)
        self.eligibility = self.trace.step(c)
        return self.eligibility

    def reinforce(self, dopamine: Tensor | float) -> None:
        """Write ``weight.grad = −d · e`` (d: scalar or (B,), the third factor of each trial)."""
        w = self.projection.weight
        d = torch.as_tensor(dopamine, dtype=w.dtype, device=w.device)
        d = d.reshape(-1, 1) if d.dim() == 1 else d
        upd = d * self.eligibility  # (B, S)
        g = -(upd if w.dim() == 2 else upd.sum(0))
        w.grad = g if w.grad is None else w.grad.copy_(g)

    def state_dict(self) -> dict:
        return {"x_pre": self.x_pre.clone(), "y_post": self.y_post.clone(), "trace": self.trace.state_dict(),
                "eligibility": self.eligibility.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.x_pre.copy_(s["x_pre"])
        self.y_post.copy_(s["y_post"])
        self.trace.load_state_dict(s["trace"])
        self.eligibility = s["eligibility"].clone()
