"""The cascade eligibility kernel, described once: :class:`CascadeKernel`.

A cascade of ``n`` leaky states ``x_1 … x_n`` fed at ``x_1`` and read at ``x_n`` (the CET paper's
cascading eligibility trace; order 1 is the classic exponentially decaying trace). Every engine
takes its numbers from this class, nowhere else:

* **rate** ``a = (n−1)/delay`` (1/s) for ``n >= 2``, ``1/delay`` for order 1. The continuous
  impulse response ``g(t) = (a t)^(n−1) e^(−a t)/(n−1)!`` (an Erlang density times ``1/a``)
  peaks at ``t = (n−1)/a = delay``; order 1 decays as ``e^(−t/delay)`` (time constant
  ``delay``, peak at 0).
* **transition over a step dt** (the float engines: torch, Brian2): ``M = expm(A)``,
  ``A = −a_dt I + S`` with ``a_dt = (n−1)/(delay/dt)`` the rate per step and ``S`` ones on the
  sub-diagonal (unit coupling per step), closed form ``M[i, j] = e^(−a_dt)/(i−j)!`` for ``i >= j``.
  ``x_t = M x_{t−1} + e_0 u_t`` has the impulse response ``k^(n−1) e^(−a_dt k)/(n−1)!`` at lag
  ``k`` steps: the continuous response sampled at ``t = k·dt`` (up to the factor ``a_dt^(n−1)``
  that any normalisation removes); its maximum is at ``k = delay/dt``.
* **chain rate over a step dt** (the integer engines: torch fixed point, Lava): the forward-Euler
  chain ``e_k ← e_k + r (e_{k−1} − e_k)`` (``e_0 ≡ 0``) has the impulse response
  ``C(k, n−1) r^(n−1) (1−r)^(k−n+1)``, whose maximum is at ``k = floor((n−1)/r)``:
  ``r = (n−1)/(delay/dt + 1/2)`` puts it at the step nearest to ``delay`` (``r = a_dt`` would put
  it half a step early, a tie between ``delay/dt − 1`` and ``delay/dt``). Order 1:
  ``r = 1 − e^(−dt/delay)``, the same decay per step as the float engines.
* **normalisation** (``normalize``): ``"peak"`` (the maximum is 1), ``"area"`` (the response
  integrates to 1: over time in 1/s for the continuous response, summed over steps on a grid)
  or ``None`` (raw).

All closed forms are evaluated in float64. Bad arguments raise one-line
:class:`~neuroprobe.errors.ConfigError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["CascadeKernel", "KERNEL_TYPE", "NORMALIZE_CHOICES", "transition_matrix"]

KERNEL_TYPE = "cascade_kernel"
NORMALIZE_CHOICES = ("peak", "area", None)
_KEYS = ("type", "order", "delay", "normalize")


def _check_dt(dt: Any) -> float:
    if isinstance(dt, bool) or not isinstance(dt, Real) or not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt = {dt!r}: must be a positive number of seconds")
    return float(dt)


def transition_matrix(order: int, step_rate: float) -> torch.Tensor:
    """``M = expm(−a I + S)`` for the rate per step ``a``: ``M[i, j] = e^(−a)/(i−j)!`` (``i >= j``),
    float64, shape ``(order, order)``. The one implementation of the float cascade's step (torch
    arithmetic, so every engine gets the same bits)."""
    i = torch.arange(order, dtype=torch.float64)
    lag = i[:, None] - i[None, :]
    return torch.exp(-step_rate - torch.lgamma(lag.clamp(min=0) + 1)) * (lag >= 0)


@dataclass(frozen=True)
class CascadeKernel:
    """Cascade eligibility kernel of ``order`` states peaking ``delay`` seconds after its input.

    Args:
        order: number of states ``n >= 1`` (1: exponential decay with time constant ``delay``).
        delay: peak time (``n >= 2``) or time constant (order 1), seconds, finite and > 0.
        normalize: ``"peak"`` (default), ``"area"`` or ``None`` (``"none"`` is read as ``None``).

    Frozen and hashable; :meth:`to_dict` / :meth:`from_dict` serialise it (type tag
    ``"cascade_kernel"``).
    """

    order: int
    delay: float
    normalize: str | None = "peak"

    def __post_init__(self) -> None:
        n = self.order
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ConfigError(f"kernel order = {n!r}: must be an integer >= 1")
        d = self.delay
        if isinstance(d, bool) or not isinstance(d, Real) or not (math.isfinite(d) and d > 0):
            raise ConfigError(f"kernel delay = {d!r}: must be a finite number of seconds > 0")
        norm = None if self.normalize == "none" else self.normalize
        if norm not in NORMALIZE_CHOICES:
            raise ConfigError(f"kernel normalize = {self.normalize!r}: allowed 'peak', 'area' or None ('none')")
        object.__setattr__(self, "order", int(n))
        object.__setattr__(self, "delay", float(d))
        object.__setattr__(self, "normalize", norm)

    # ------------------------------------------------------------------ the definitions
    @property
    def rate(self) -> float:
        """Decay rate ``a`` (1/s): ``(n−1)/delay`` for ``n >= 2``, ``1/delay`` for order 1."""
        return (self.order - 1) / self.delay if self.order >= 2 else 1.0 / self.delay

    @property
    def peak_time(self) -> float:
        """Time (s) of the continuous response's maximum: ``delay`` (order >= 2), 0 (order 1)."""
        return self.delay if self.order >= 2 else 0.0

    def delay_steps(self, dt: float) -> float:
        """``delay/dt``: the peak (order >= 2) or time constant (order 1) in steps."""
        return self.delay / _check_dt(dt)

    def step_rate(self, dt: float) -> float:
        """Rate per step of the float engines, ``a·dt``, computed as ``(n−1)/(delay/dt)``
        (``1/(delay/dt)`` for order 1): the expression the engines have always used, so their
        results keep their bits."""
        steps = self.delay_steps(dt)
        return (self.order - 1) / steps if self.order >= 2 else 1.0 / steps

    def transition(self, dt: float) -> np.ndarray:
        """The float engines' ``(n, n)`` transition over one step of ``dt`` (float64):
        ``M[i, j] = e^(−a·dt)/(i−j)!`` for ``i >= j`` (see the module docstring)."""
        return transition_matrix(self.order, self.step_rate(dt)).numpy()

    def chain_rate(self, dt: float) -> float:
        """Transfer fraction per step ``r`` of the integer engines' forward-Euler chain
        ``e_k ← e_k + r (e_{k−1} − e_k)``: ``(n−1)/(delay/dt + 1/2)`` (maximum of its impulse
        response at the step nearest to ``delay``), order 1: ``1 − e^(−dt/delay)``. ConfigError
        if ``r > 1`` (the chain would oscillate: delay shorter than about ``(n − 1.5)·dt``)."""
        steps = self.delay_steps(dt)
        r = (self.order - 1) / (steps + 0.5) if self.order >= 2 else -math.expm1(-1.0 / steps)
        if r > 1:
            raise ConfigError(f"kernel order {self.order}, delay {self.delay} s at dt = {dt} s: the integer cascade "
                              f"needs delay >= {(self.order - 1.5) * dt:g} s (its rate per step would be {r:.3g} > 1)")
        return r

    # ------------------------------------------------------------------ closed-form responses
    def _raw_steps(self, k: np.ndarray, a: float) -> np.ndarray:
        """``k^(n−1) e^(−a k)/(n−1)!`` at lags ``k >= 0`` (order 1: ``e^(−a k)``), float64."""
        n = self.order
        k = np.asarray(k, dtype=np.float64)
        if n == 1:
            return np.exp(-a * k)
        with np.errstate(divide="ignore"):
            return np.where(k > 0, np.exp((n - 1) * np.log(np.where(k > 0, k, 1.0)) - a * k - math.lgamma(n)), 0.0)

    def grid_scale(self, dt: float) -> float:
        """Normalisation factor of the float engines' response on a grid of ``dt``: ``1/max_k h[k]``
        ("peak": the larger of the lags ``floor`` and ``ceil`` of ``delay/dt``; 1 for order 1),
        ``1/Σ_k h[k]`` ("area", closed form ``Σ_k k^m x^k = x A_m(x)/(1−x)^(m+1)`` with Eulerian
        polynomials ``A_m``, ``x = e^(−a·dt)``), or 1 (None); ``h`` the raw response above."""
        a = self.step_rate(dt)
        if self.normalize is None:
            return 1.0
        n = self.order
        if self.normalize == "peak":
            if n == 1:
                return 1.0
            D = self.delay_steps(dt)
            return 1.0 / float(self._raw_steps(np.array([math.floor(D), math.ceil(D)]), a).max())
        m = n - 1
        x = math.exp(-a)
        one_minus_x = -math.expm1(-a)
        if m == 0:
            return one_minus_x
        euler = [sum((-1) ** i * math.comb(m + 1, i) * (j + 1 - i) ** m for i in range(j + 1)) for j in range(m)]
        poly = sum(c * x ** j for j, c in enumerate(euler))
        return one_minus_x ** (m + 1) * math.factorial(m) / (x * poly)

    def sampled_response(self, dt: float, steps: int) -> np.ndarray:
        """What a float engine's eligibility is ``k`` steps after a unit input (``k = 0 … steps−1``),
        in closed form: ``grid_scale(dt) · k^(n−1) e^(−a·dt·k)/(n−1)!``; float64 ``(steps,)``."""
        if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 1:
            raise ConfigError(f"steps = {steps!r}: must be an integer >= 1")
        k = np.arange(int(steps), dtype=np.float64)
        return self._raw_steps(k, self.step_rate(dt)) * self.grid_scale(dt)

    def impulse_response(self, t: Any) -> np.ndarray:
        """Continuous impulse response at times ``t`` (s; array-like, 0 for ``t < 0``), float64:
        "peak": ``(t/delay)^(n−1) e^(−a (t − delay))`` (maximum 1 at ``delay``; order 1:
        ``e^(−t/delay)``); "area": ``a g(t)`` (integrates to 1 over time, units 1/s); None:
        ``g(t) = (a t)^(n−1) e^(−a t)/(n−1)!``."""
        t = np.asarray(t, dtype=np.float64)
        a, n = self.rate, self.order
        tp = np.where(t > 0, t, 0.0)
        with np.errstate(divide="ignore"):
            logt = np.log(np.where(tp > 0, tp, 1.0))
        if self.normalize == "peak" and n >= 2:
            h = np.exp((n - 1) * (logt - math.log(self.delay)) - a * (tp - self.delay))
        else:
            h = np.exp((n - 1) * (logt + math.log(a)) - a * tp - math.lgamma(n))
            if self.normalize == "area":
                h = h * a
        if n >= 2:
            h = np.where(tp > 0, h, 0.0)
        return np.where(t >= 0, h, 0.0)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """``{"type": "cascade_kernel", "order", "delay", "normalize"}`` (JSON-serialisable)."""
        return {"type": KERNEL_TYPE, "order": self.order, "delay": self.delay, "normalize": self.normalize}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CascadeKernel":
        """Inverse of :meth:`to_dict` (``type`` may be left out); ConfigError on anything else."""
        if isinstance(d, CascadeKernel):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"kernel must be a dict {{'type': '{KERNEL_TYPE}', 'order', 'delay', 'normalize'}} "
                              f"(got {type(d).__name__})")
        if d.get("type", KERNEL_TYPE) != KERNEL_TYPE:
            raise ConfigError(f"kernel type = {d.get('type')!r}: expected {KERNEL_TYPE!r}")
        bad = sorted(set(d) - set(_KEYS))
        if bad:
            raise ConfigError(f"kernel: unknown key(s) {bad}; allowed {list(_KEYS)}")
        for k in ("order", "delay"):
            if k not in d:
                raise ConfigError(f"kernel: missing key {k!r}")
        return cls(d["order"], d["delay"], d.get("normalize", "peak"))
