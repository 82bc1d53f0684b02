"""Eligibility-trace kernels as pure tensor functions.

A trace convolves its input with a causal kernel ``h[k]`` (``k`` = lag in steps, ``k >= 0``):
``y[t] = sum_{k <= t} h[k] u[t - k]``.  This module gives the kernels on a finite grid
``k = 0 .. length-1``, the closed-form cascade transition matrix, and the infinite-support area and
peak used by the stateful traces in :mod:`neuroprobe.traces.cascade` to normalise their output.

The cascade's rate and transition are those of :class:`neuroprobe.spec.CascadeKernel` (the one
definition every engine uses; here with delays in steps, i.e. a step of 1); this module keeps the
step-unit functions and the finite-grid kernels.

Kernels (all lags and delays in steps):

* cascade, order ``n >= 2``: ``h[k] = k^(n-1) exp(-a k) / (n-1)!`` with ``a = (n-1)/delay``;
  peaks at ``k = delay``, ``h[0] = 0``.  This is exactly the impulse response of the discrete
  state-space model ``x_t = expm(A) x_{t-1} + e_0 u_t``, ``y_t = x_t[n-1]``, ``A = -a I + S``.
* cascade, order 1 (exponential): ``h[k] = beta^k``, ``beta = exp(-1/delay)`` unless given.
* perfect: Dirac at ``k = delay`` (a pure delay line).
* LTP/LTD: ``exp(-k/tau1) - exp(-k/tau2)``, ``tau1 = ratio * tau2``, continuous peak at ``delay``.

Normalisation (``normalize``): ``"area"`` (finite kernels sum to 1 over ``length``), ``"peak"``
(maximum is 1) or ``None`` / ``"none"`` (the raw state-space response above).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor

from neuroprobe.errors import ConfigError
from neuroprobe.spec.kernel import CascadeKernel, transition_matrix

__all__ = [
    "NORMALIZE_CHOICES",
    "check_normalize",
    "decay_rate",
    "ltp_ltd_taus",
    "cascade_transition",
    "cascade_kernel",
    "exponential_kernel",
    "perfect_kernel",
    "ltp_ltd_kernel",
    "kernel_area",
    "kernel_peak",
    "normalization_scale",
]

NORMALIZE_CHOICES = ("area", "peak", None)
_KINDS = ("cascade", "exponential", "perfect", "ltp_ltd", "none")


# --------------------------------------------------------------------------- validation helpers


def check_normalize(normalize: str | None) -> str | None:
    """Return ``"area"``, ``"peak"`` or ``None``; ``"none"`` (for TOML configs) maps to ``None``."""
    if normalize is None or normalize == "none":
        return None
    if normalize in ("area", "peak"):
        return normalize
    raise ConfigError(f"normalize must be 'area', 'peak' or None ('none'), got {normalize!r}")


def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, Integral) or order < 1:
        raise ConfigError(f"order must be an integer >= 1, got {order!r}")
    return int(order)


def _check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, Integral) or length < 1:
        raise ConfigError(f"length must be an integer >= 1, got {length!r}")
    return int(length)


def _check_delay(delay: float | None, what: str = "delay") -> float:
    if isinstance(delay, bool) or not isinstance(delay, Real) or not math.isfinite(delay) or delay <= 0:
        raise ConfigError(f"{what} must be a finite number > 0 (steps), got {delay!r}")
    return float(delay)


def _check_int_delay(delay: int) -> int:
    ok = isinstance(delay, Real) and not isinstance(delay, bool) and math.isfinite(delay)
    if not ok or delay < 0 or int(delay) != delay:
        raise ConfigError(f"delay must be an integer >= 0 (steps) for the perfect trace, got {delay!r}")
    return int(delay)


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not math.isfinite(ratio) or ratio <= 1:
        raise ConfigError(f"ratio must be a finite number > 1 (tau1/tau2), got {ratio!r}")
    return float(ratio)


def decay_rate(order: int, delay: float | None, beta: float | None = None) -> float:
    """Continuous decay rate ``a`` (per step) of a cascade of ``order`` states: the rate of
    :class:`~neuroprobe.spec.CascadeKernel` (its one definition) for a delay in steps.

    Order ``n >= 2``: ``a = (n-1)/delay`` (``beta`` must be ``None``).  Order 1:
    ``a = -log(beta)`` with ``beta = exp(-1/delay)`` unless ``beta`` (in ``[0, 1)``) is given, in
    which case ``delay`` is ignored.  Returns ``inf`` for ``beta = 0``.
    """
    order = _check_order(order)
    if order >= 2:
        if beta is not None:
            raise ConfigError(f"beta is only used by order 1 (exponential) traces, got beta={beta!r} with order={order}")
    if beta is None:  # the rate is CascadeKernel's (delay in steps: a step of dt = 1)
        return CascadeKernel(order, _check_delay(delay), None).step_rate(1.0)
    if isinstance(beta, bool) or not isinstance(beta, Real) or not 0 <= beta < 1:
        raise ConfigError(f"beta must be a number in [0, 1), got {beta!r}")
    return math.inf if beta == 0 else -math.log(beta)


def ltp_ltd_taus(delay: float, ratio: float = 2.0) -> tuple[float, float]:
    """Time constants ``(tau1, tau2)`` (steps), ``tau1 = ratio * tau2``, such that the continuous
    kernel ``exp(-t/tau1) - exp(-t/tau2)`` peaks at ``t = delay``:
    ``tau1 = delay (ratio - 1) / log(ratio)``."""
    delay, ratio = _check_delay(delay), _check_ratio(ratio)
    tau1 = delay * (ratio - 1.0) / math.log(ratio)
    return tau1, tau1 / ratio


# --------------------------------------------------------------------------- transition matrix


def cascade_transition(
    order: int,
    delay: float | None,
    beta: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Discrete transition ``M = expm(A)``, ``A = -a I + S`` (``S``: ones on the sub-diagonal).

    Closed form (``S`` is nilpotent): ``M[i, j] = exp(-a) / (i-j)!`` for ``i >= j``, else 0;
    for order 1, ``M = [[beta]]``.  Built in float64 by
    :func:`neuroprobe.spec.kernel.transition_matrix` (``CascadeKernel.transition``), then cast.
    Shape ``(order, order)``.
    """
    order = _check_order(order)
    a = decay_rate(order, delay, beta)
    return transition_matrix(order, a).to(dtype=dtype, device=device)


# --------------------------------------------------------------------------- kernels


def _raw_cascade(order: int, a: float, k: Tensor) -> Tensor:
    """Raw response ``k^(n-1) exp(-a k) / (n-1)!`` at float64 lags ``k >= 0`` (``beta^k`` for n=1)."""
    if order == 1:
        return torch.pow(torch.tensor(math.exp(-a), dtype=torch.float64), k)
    return torch.exp((order - 1) * torch.log(k) - a * k - math.lgamma(order))


def _normalize_finite(h: Tensor, normalize: str | None, length: int) -> Tensor:
    normalize = check_normalize(normalize)
    if normalize is None:
        return h
    total = h.sum() if normalize == "area" else h.max()
    if not total > 0:
        raise ConfigError(f"length={length} is too short for normalize={normalize!r}: the kernel is zero on it")
    return h / total


def cascade_kernel(
    order: int,
    delay: float | None,
    length: int,
    normalize: str | None = "area",
    beta: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Cascade (Erlang) kernel ``h[k]``, ``k = 0 .. length-1``; shape ``(length,)``.

    Order ``n >= 2``: ``h[k] ∝ k^(n-1) exp(-a k)``, ``a = (n-1)/delay`` (argmax at ``delay`` steps
    for integer ``delay``; ``h[0] = 0``).  Order 1: ``h[k] = beta^k``, ``beta = exp(-1/delay)``
    unless ``beta`` is given.  ``normalize``: ``"area"`` (sum over ``length`` is 1), ``"peak"``
    (max is 1) or ``None`` (raw state-space response, ``/(n-1)!`` included).
    """
    order, length = _check_order(order), _check_length(length)
    a = decay_rate(order, delay, beta)
    h = _raw_cascade(order, a, torch.arange(length, dtype=torch.float64))
    return _normalize_finite(h, normalize, length).to(dtype)


def exponential_kernel(
    delay: float | None,
    length: int,
    normalize: str | None = "area",
    beta: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Exponential kernel ``beta^k`` (the order-1 cascade); shape ``(length,)``."""
    return cascade_kernel(1, delay, length, normalize=normalize, beta=beta, dtype=dtype)


def perfect_kernel(delay: int, length: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Dirac kernel ``h[k] = 1 if k == delay else 0``; shape ``(length,)`` (all zero if
    ``delay >= length``).  Area and peak are both 1, so no normalisation applies."""
    delay, length = _check_int_delay(delay), _check_length(length)
    h = torch.zeros(length, dtype=dtype)
    if delay < length:
        h[delay] = 1
    return h


def ltp_ltd_kernel(
    delay: float,
    length: int,
    ratio: float = 2.0,
    normalize: str | None = "area",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Composite LTP/LTD kernel ``exp(-k/tau1) - exp(-k/tau2)``, ``tau1 = ratio * tau2`` solved so
    that the continuous peak is at ``delay`` steps (see :func:`ltp_ltd_taus`); shape ``(length,)``."""
    tau1, tau2 = ltp_ltd_taus(delay, ratio)
    length = _check_length(length)
    k = torch.arange(length, dtype=torch.float64)
    h = torch.exp(-k / tau1) - torch.exp(-k / tau2)
    return _normalize_finite(h, normalize, length).to(dtype)


# --------------------------------------------------------------------------- infinite-support norms


def _check_kind(kind: str) -> str:
    if kind not in _KINDS:
        raise ConfigError(f"kind must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}")
    return kind


def kernel_area(
    kind: str,
    order: int = 1,
    delay: float | None = None,
    beta: float | None = None,
    ratio: float = 2.0,
) -> float:
    """Area ``sum_{k >= 0} h[k]`` of the raw (``normalize=None``) kernel over infinite support.

    cascade/exponential: ``[(I - M)^-1]_{n-1, 0}`` (exact geometric series of the transition);
    ltp_ltd: ``1/(1-r1) - 1/(1-r2)`` with ``r_i = exp(-1/tau_i)``; perfect and none: 1.
    """
    kind = _check_kind(kind)
    if kind in ("perfect", "none"):
        return 1.0
    if kind == "ltp_ltd":
        tau1, tau2 = ltp_ltd_taus(delay, ratio)  # type: ignore[arg-type]
        return 1.0 / -math.expm1(-1.0 / tau1) - 1.0 / -math.expm1(-1.0 / tau2)
    order = 1 if kind == "exponential" else _check_order(order)
    m = cascade_transition(order, delay, beta)
    g = torch.linalg.solve_triangular(torch.eye(order, dtype=torch.float64) - m, torch.eye(order, dtype=torch.float64)[:, :1], upper=False)
    return float(g[-1, 0])


def kernel_peak(
    kind: str,
    order: int = 1,
    delay: float | None = None,
    beta: float | None = None,
    ratio: float = 2.0,
) -> float:
    """Maximum over ``k >= 0`` of the raw (``normalize=None``) kernel.

    Both cascade (order >= 2) and LTP/LTD kernels are unimodal with continuous peak at ``delay``,
    so the discrete maximum is at ``floor(delay)`` or ``ceil(delay)``; order 1, perfect, none: 1.
    """
    kind = _check_kind(kind)
    if kind in ("perfect", "none"):
        return 1.0
    if kind == "exponential" or (kind == "cascade" and _check_order(order) == 1):
        decay_rate(1, delay, beta)  # validates delay / beta; h[0] = 1 is the maximum
        return 1.0
    delay = _check_delay(delay)
    k = torch.tensor([math.floor(delay), math.ceil(delay)], dtype=torch.float64)
    if kind == "ltp_ltd":
        tau1, tau2 = ltp_ltd_taus(delay, ratio)
        h = torch.exp(-k / tau1) - torch.exp(-k / tau2)
    else:
        h = _raw_cascade(order, decay_rate(order, delay, beta), k)
    return float(h.max())


def normalization_scale(
    kind: str,
    normalize: str | None,
    order: int = 1,
    delay: float | None = None,
    beta: float | None = None,
    ratio: float = 2.0,
) -> float:
    """Output scale of a stateful trace: ``1/area`` ("area": the response to a unit input
    integrates to one across all future steps), ``1/peak`` ("peak": its maximum is one), or 1."""
    normalize = check_normalize(normalize)
    if normalize is None:
        _check_kind(kind)
        return 1.0
    fn = kernel_area if normalize == "area" else kernel_peak
    return 1.0 / fn(kind, order=order, delay=delay, beta=beta, ratio=ratio)
