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

from .._args import check_batch, check_int, check_number
from ..errors import ConfigError, ShapeError
from ..spec.kernel import CascadeKernel
from ..spec.rules import RSTDPSpec
from ..spiking.network import Projection
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
    c = torch.zeros(B, S + 1, dtype=x_pre.dtype, device=x_pre.device)  # column S: padding entries land there
    _add_coincidences(c, x_pre, y_post, z_pre, z_post, proj, a_plus, a_minus)
    c = c[:, :S]
    return c if B == 1 else c.contiguous()


def _add_coincidences(c: Tensor, x_pre: Tensor, y_post: Tensor, z_pre: Tensor, z_post: Tensor, proj: Projection,
                      a_plus: float, a_minus: float) -> list[Tensor]:
    """Add the step's coincidences into ``c`` (B, S + 1), zero on entry: first the LTP terms at post
    spikes, then the LTD terms at pre spikes, each synapse's in that order (as the dense formula
    ``a+ x z_post − a− y z_pre``). Uses the projection's padded synapse tables; padding entries
    write to column S. Returns the flat indices written (to clear them again)."""
    t = proj.event_tables()
    B, S1 = c.shape
    flat = c.view(-1)
    written = []
    for z, trace, amp, slot_table, other_table in ((z_post, x_pre, a_plus, t.in_slot, t.in_pre),  # LTP at post spikes
                                                   (z_pre, y_post, -a_minus, t.out_slot, t.out_post)):  # LTD at pre
        b, j = z.nonzero(as_tuple=True)
        if not j.numel():
            continue
        idx = slot_table.index_select(0, j)  # (k, D) synapse slots, padding -> column S
        partner = other_table.index_select(0, j)  # (k, D) the other end of each synapse
        if B == 1:
            tr = trace.reshape(-1).index_select(0, partner.view(-1)).view(idx.shape)
            zj = z.reshape(-1).index_select(0, j)
        else:
            b1 = b[:, None]
            tr = trace[b1, partner]
            zj = z[b, j]
            idx = idx + b1 * S1
        flat.index_add_(0, idx.view(-1), (amp * tr * zj[:, None]).view(-1))
        written.append(idx.view(-1))
    return written


class CascadeRSTDP:
    """Cascade-trace R-STDP on one projection.

    Args:
        projection: the plastic :class:`~neuroprobe.spiking.Projection`.
        batch: number of trials B.
        order: cascade order n >= 1. delay: kernel peak (order >= 2) or time constant (order 1), s.
        dt: step (s). tau_plus, tau_minus: STDP trace time constants (s). a_plus, a_minus: STDP
            amplitudes. normalize: the kernel's "peak" (max 1, default), "area" or None.

    ``kernel`` (a :class:`~neuroprobe.spec.CascadeKernel` of ``order``, ``delay``, ``normalize``)
    defines the cascade: the trace's rate per step and transition are ``kernel.step_rate(dt)``
    and ``kernel.transition(dt)``. :meth:`from_spec` builds the rule from an
    :class:`~neuroprobe.spec.RSTDPSpec`.
    """

    name = "rstdp"

    def __init__(self, projection: Projection, batch: int, order: int = 1, delay: float = 1.0, dt: float = 1e-3,
                 tau_plus: float = 20e-3, tau_minus: float = 20e-3, a_plus: float = 1.0, a_minus: float = 1.5,
                 normalize: str | None = "peak"):
        for k, v in (("delay", delay), ("dt", dt), ("tau_plus", tau_plus), ("tau_minus", tau_minus)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"rule.{k} = {v!r}: must be a positive number of seconds")
        if delay < dt:
            raise ConfigError(f"rule.delay = {delay} s is shorter than dt = {dt} s")
        a_plus = check_number("rule.a_plus", a_plus, ge=0)
        a_minus = check_number("rule.a_minus", a_minus, ge=0)
        batch = check_batch(batch)
        order = check_int("rule.order", order, ge=1)
        if not isinstance(projection, Projection):
            raise ConfigError(f"projection = {type(projection).__name__}: must be a spiking Projection "
                              "(SpikingNetwork.projection(name))")
        self.projection, self.batch = projection, batch
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
        self.kernel = CascadeKernel(self.order, self.delay, normalize)
        # the trace's rate is the kernel's (traces.kernels.decay_rate delegates to CascadeKernel)
        self.trace = CascadeTrace(self.order, self.kernel.delay_steps(self.dt), (batch, projection.n_synapses),
                                  normalize=self.kernel.normalize, **kw)
        self.eligibility = torch.zeros(batch, projection.n_synapses, **kw)
        self._cbuf = None  # (B, S + 1) coincidence buffer of the CPU path, zero between steps
        self._state_bufs = None  # order >= 2: the two state-major trace buffers and the trace's current view

    @classmethod
    def from_spec(cls, projection: Projection, batch: int, spec: RSTDPSpec, dt: float) -> "CascadeRSTDP":
        """The rule of an :class:`~neuroprobe.spec.RSTDPSpec` (its ``lr`` is the optimiser's, not
        the rule's) on ``projection``."""
        if not isinstance(spec, RSTDPSpec):
            raise ConfigError(f"spec = {type(spec).__name__}: must be an RSTDPSpec")
        if projection.name != spec.projection:
            raise ConfigError(f"spec is for projection {spec.projection!r}, got projection {projection.name!r}")
        k = spec.kernel
        return cls(projection, batch, k.order, k.delay, dt, spec.tau_plus, spec.tau_minus, spec.a_plus, spec.a_minus,
                   k.normalize)

    def step(self, z_pre: Tensor, z_post: Tensor) -> Tensor:
        """Advance traces and eligibility by one step; returns the eligibility (B, S).

        On the CPU the coincidences are computed event-driven into a persistent zero buffer whose
        touched entries are cleared again afterwards (no O(B·S) allocation per step); elsewhere
        with the dense formula (no host synchronisation). Both give the same values."""
        p = self.projection
        self.x_pre.mul_(self.decay_plus)
        self.y_post.mul_(self.decay_minus)
        if self.x_pre.device.type == "cpu":
            S = p.n_synapses
            buf = self._cbuf
            if buf is None or buf.shape != (self.batch, S + 1) or buf.dtype != self.x_pre.dtype:
                buf = self._cbuf = torch.zeros(self.batch, S + 1, dtype=self.x_pre.dtype)
            written = _add_coincidences(buf, self.x_pre, self.y_post, z_pre, z_post, p, self.a_plus, self.a_minus)
            self.x_pre.add_(z_pre)
            self.y_post.add_(z_post)
            self.eligibility = self._trace_step(buf[:, :S])
            for idx in written:
                buf.view(-1).index_fill_(0, idx, 0.0)
            return self.eligibility
        c = stdp_coincidence(self.x_pre, self.y_post, z_pre, z_post, p.pre, p.post, self.a_plus, self.a_minus)
        self.x_pre.add_(z_pre)
        self.y_post.add_(z_post)
        self.eligibility = self._trace_step(c)
        return self.eligibility

    def _trace_step(self, u: Tensor) -> Tensor:
        """``self.trace.step(u)`` computed in place: the same operations on the same values
        (``M @ X`` as one GEMM on the state-major (order, B·S) state, ``+ u`` into sub-state 0,
        ``scale ·`` the last), without allocating an O(order·B·S) state per step (order ≥ 2 keeps
        two state buffers and swaps them). The trace's state stays a (B, S, order) view that its
        own methods (``state_dict``, ``reset``, ``apply`` …) use as before; a state set from outside
        (``reset``, ``load_state_dict``) is picked up. Other trace types use their ``step``."""
        tr = self.trace
        st = getattr(tr, "_state", None)
        if type(tr) is not CascadeTrace or st is None or tuple(u.shape) != tr.shape or u.dtype != st.dtype:
            return tr.step(u)
        n = tr.order
        if n == 1:
            s = st[..., 0]
            s.mul_(tr._transition[0, 0]).add_(u)  # state * beta, then + u (as cascade_step)
            return s * tr.scale
        bufs = self._state_bufs
        if bufs is None or st is not bufs[2]:  # first step, or the trace's state was replaced
            x = st.movedim(-1, 0).contiguous()  # state-major (order, B, S)
            bufs = [x, torch.empty_like(x), None]
        x, y = bufs[0], bufs[1]
        torch.matmul(tr._transition, x.view(n, -1), out=y.view(n, -1))
        y[0].add_(u)
        tr._state = y.movedim(0, -1)
        self._state_bufs = [y, x, tr._state]
        return y[n - 1] * tr.scale

    def reinforce(self, dopamine: Tensor | float) -> None:
        """Write ``weight.grad = −d · e`` (d: scalar or (B,), the third factor of each trial)."""
        w, e = self.projection.weight, self.eligibility
        d = torch.as_tensor(dopamine, dtype=w.dtype, device=w.device)
        d = d.reshape(-1, 1) if d.dim() == 1 else d
        if w.dim() == 2 or (e.shape[0] == 1 and d.numel() == 1):  # −(d·e) == e·(−d): one kernel, in place
            a, b = (e, -d) if w.dim() == 2 else (e[0], -d.reshape(-1))
            if w.grad is not None and w.grad.shape == w.shape and w.grad.dtype == w.dtype:
                torch.mul(a, b, out=w.grad)
            else:
                w.grad = torch.mul(a, b).reshape(w.shape)
            return
        g = -((d * e).sum(0))  # shared weights, several trials: summed over trials
        w.grad = g if w.grad is None else w.grad.copy_(g)

    def state_dict(self) -> dict:
        return {"x_pre": self.x_pre.clone(), "y_post": self.y_post.clone(), "trace": self.trace.state_dict(),
                "eligibility": self.eligibility.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.x_pre.copy_(s["x_pre"])
        self.y_post.copy_(s["y_post"])
        self.trace.load_state_dict(s["trace"])
        self.eligibility = s["eligibility"].clone()
