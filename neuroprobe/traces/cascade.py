"""Stateful eligibility traces over tensors of any shape: a pure functional core plus thin classes.

Transition convention (cascading eligibility trace, CET, of order ``n``): the state of one traced
element is a vector ``x`` of ``n`` sub-states, stored **last** so that a state tensor has shape
``(*shape, n)`` (batch axis leading, as in ``shape``).  One step is

    x_t = M x_{t-1} + e_0 u_t,        trace_t = scale * x_t[n-1],

with ``M = expm(A)``, ``A = -a I + S`` (``S``: ones on the sub-diagonal), ``a = (n-1)/delay``,
computed for every element at once as ``state @ M.T``.  The impulse response is exactly
``k^(n-1) exp(-a k) / (n-1)!`` (peak at ``k = delay`` steps).  Order 1 is the classic trace
``e <- beta e + u`` (``M = [[beta]]``).  ``scale`` implements ``normalize``: "area" makes the
response to a unit input sum to one over all future steps, "peak" makes its maximum one.

Memory is O(n x prod(shape)): traces are recurrences, never stored input histories (except the
perfect trace, a delay line of ``delay`` steps by nature).  Time is in steps throughout.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.traces.batched import apply_kernel
from neuroprobe.traces.kernels import (
    _check_int_delay,
    _check_order,
    cascade_kernel,
    cascade_transition,
    check_normalize,
    decay_rate,
    ltp_ltd_kernel,
    ltp_ltd_taus,
    normalization_scale,
    perfect_kernel,
)

__all__ = [
    "cascade_step",
    "ltp_ltd_step",
    "delay_step",
    "Trace",
    "CascadeTrace",
    "ExponentialTrace",
    "LtpLtdTrace",
    "PerfectTrace",
    "IdentityTrace",
    "TRACE_KINDS",
    "make_trace",
]

TRACE_KINDS = ("cascade", "exponential", "perfect", "ltp_ltd", "none")


# --------------------------------------------------------------------------- functional core


def cascade_step(state: Tensor, u: Tensor, transition: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """One CET step for every element at once; pure (inputs are not modified).

    state: ``(*shape, n)``; u: ``shape`` (enters sub-state 0); transition: ``(n, n)``, ``M``.
    Returns ``(new_state, out)`` with ``new_state = state @ M.T + e_0 u`` (``(*shape, n)``) and
    ``out = scale * new_state[..., n-1]`` (``shape``).

    The product is computed as one GEMM ``M @ X``, ``X = state.movedim(-1, 0)`` viewed as
    ``(n, prod(shape))`` (a view for contiguous or state-major input): a tall-skinny
    ``(N, n) @ (n, n)`` GEMM is several times slower on CPU.  The returned state therefore has
    state-major memory (order axis outermost); its logical shape is ``(*shape, n)`` as always.
    """
    n = transition.shape[-1]
    if n == 1:  # order 1: e <- beta e + u, no matmul needed
        new = state * transition[0]
    else:
        sm = state.movedim(-1, 0)  # (n, *shape)
        new = (transition @ sm.reshape(n, math.prod(sm.shape[1:]))).view(sm.shape).movedim(0, -1)
    new[..., 0] += u
    return new, new[..., -1] * scale


def ltp_ltd_step(state: Tensor, u: Tensor, decays: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """One LTP/LTD step; pure.  state: ``(*shape, 2)``; u: ``shape``; decays: ``(2,)`` =
    ``(exp(-1/tau1), exp(-1/tau2))``.  Both exponential states receive ``u``; the output is
    ``scale * (state[..., 0] - state[..., 1])`` (``shape``)."""
    new = state * decays + u.unsqueeze(-1)
    return new, (new[..., 0] - new[..., 1]) * scale


def delay_step(buffer: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """One step of a pure delay line of ``d`` steps; pure.  buffer: ``(*shape, d)``, oldest entry
    first; u: ``shape``.  Returns ``(new_buffer, out)`` with ``out = buffer[..., 0]`` (the input of
    ``d`` steps ago).  With ``d = 0`` the output is ``u``."""
    if buffer.shape[-1] == 0:
        return buffer, u.clone()
    return torch.cat([buffer[..., 1:], u.unsqueeze(-1)], dim=-1), buffer[..., 0].clone()


# --------------------------------------------------------------------------- stateful classes


def _check_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(shape, Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)  # type: ignore[union-attr]
    except TypeError:
        raise ConfigError(f"shape must be an int or a sequence of ints >= 0, got {shape!r}") from None
    if any(s < 0 or s != t for s, t in zip(out, shape)):  # type: ignore[arg-type]
        raise ConfigError(f"shape must be an int or a sequence of ints >= 0, got {shape!r}")
    return out


class Trace:
    """Common interface of all traces (subclasses fill in the dynamics).

    Attributes: ``shape`` (shape of the traced input and of the output, batch axis leading),
    ``dtype``, ``device``, ``scale`` (normalisation factor on the output).  Methods:
    ``step(u) -> out``, ``reset()``, ``state`` (get / set, ``(*shape, state_size)``),
    ``kernel(length)``, ``apply(sequence)``, ``state_dict()`` / ``load_state_dict()``, ``to()``,
    ``nbytes``.
    """

    kind: str = "trace"

    def __init__(self, shape: int | Sequence[int], dtype: torch.dtype, device: torch.device | str | None) -> None:
        self.shape: tuple[int, ...] = _check_shape(shape)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.scale: float = 1.0
        self._build()
        self.reset()

    # -- to be provided by subclasses
    @property
    def state_size(self) -> int:
        """Number of sub-states per traced element (last axis of ``state``)."""
        raise NotImplementedError

    def _build(self) -> None:
        """(Re)build derived tensors (transition, decays) in ``self.dtype`` on ``self.device``."""

    def step(self, u: Tensor) -> Tensor:
        """Advance one step with input ``u`` (shape ``shape``); return the trace (shape ``shape``)."""
        raise NotImplementedError

    def kernel(self, length: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """The trace's kernel ``h[k]``, ``k = 0..length-1``, output scale included: stepping from a
        zero state equals causal convolution of the input with it.  Shape ``(length,)``, on CPU."""
        raise NotImplementedError

    def _free_response(self, steps: int) -> Tensor:
        """Output over the next ``steps`` steps under zero input, from the current state;
        shape ``(steps, *shape)``."""
        raise NotImplementedError

    # -- shared machinery
    @property
    def state_shape(self) -> tuple[int, ...]:
        return (*self.shape, self.state_size)

    @property
    def state(self) -> Tensor:
        """Current state, ``(*shape, state_size)``.  May alias internal storage: do not modify."""
        return self._state

    @state.setter
    def state(self, value: Tensor) -> None:
        value = torch.as_tensor(value)
        if tuple(value.shape) != self.state_shape:
            raise ShapeError(f"state: expected shape {self.state_shape}, got {tuple(value.shape)}")
        self._set_state(value.detach().to(dtype=self.dtype, device=self.device).clone())

    def _set_state(self, value: Tensor) -> None:
        self._state = value

    def reset(self) -> None:
        """Set the state to zero (no past input)."""
        self._set_state(torch.zeros(self.state_shape, dtype=self.dtype, device=self.device))

    @property
    def nbytes(self) -> int:
        """Memory of the state in bytes."""
        return self._state.numel() * self._state.element_size()

    def state_dict(self) -> dict[str, Tensor]:
        """Plain dict of tensors, enough to resume exactly: ``{"state": (*shape, state_size)}``."""
        return {"state": self.state.detach().clone()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same kind, shape and parameters assumed)."""
        if "state" not in state_dict:
            raise ConfigError(f"state_dict must contain the key 'state', got keys {sorted(state_dict)}")
        self.state = state_dict["state"]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Trace":
        """Move (and/or cast) the trace in place; returns ``self``."""
        state = self.state
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype if dtype is not None else self.dtype
        self._build()
        self._set_state(state.to(dtype=self.dtype, device=self.device))
        return self

    def _as_input(self, u: Tensor, name: str, shape: tuple[int, ...]) -> Tensor:
        u = torch.as_tensor(u, dtype=self.dtype, device=self.device)
        if tuple(u.shape) != shape:
            raise ShapeError(f"{name}: expected shape {shape}, got {tuple(u.shape)}")
        return u

    def apply(self, sequence: Tensor, method: str = "auto") -> Tensor:
        """Outputs for a whole input sequence at once, as if :meth:`step` were called on each
        ``sequence[t]`` starting from the current state; the state itself is left unchanged.

        sequence: ``(T, *shape)``; returns ``(T, *shape)``.  ``method`` is passed to
        :func:`~neuroprobe.traces.batched.apply_kernel` ("auto", "fft" or "toeplitz").
        """
        seq = torch.as_tensor(sequence, dtype=self.dtype, device=self.device)
        if seq.dim() != len(self.shape) + 1 or tuple(seq.shape[1:]) != self.shape:
            raise ShapeError(f"sequence: expected shape (T, {', '.join(map(str, self.shape))}), got {tuple(seq.shape)}")
        steps = seq.shape[0]
        if steps == 0:
            return seq.clone()
        h = self.kernel(steps, dtype=self.dtype).to(self.device)
        return apply_kernel(seq, h, dim=0, method=method) + self._free_response(steps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class CascadeTrace(Trace):
    """Cascading eligibility trace of ``order`` sub-states, kernel peak at ``delay`` steps.

    Args:
        order: number of sub-states ``n >= 1`` (1 = exponential trace ``e <- beta e + u``).
        delay: peak time of the kernel in steps (``> 0``); for order 1, ``beta = exp(-1/delay)``.
        shape: shape of the traced input, batch axis leading, e.g. ``(B, n_in)``.
        normalize: "area", "peak" or ``None`` (see module docstring).
        beta: order 1 only: decay per step in ``[0, 1)``, overrides ``delay``.
    State: ``(*shape, order)``; ``step(u)`` takes and returns tensors of shape ``shape``.
    """

    kind = "cascade"

    def __init__(
        self,
        order: int,
        delay: float | None,
        shape: int | Sequence[int],
        normalize: str | None = "area",
        beta: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.order = _check_order(order)
        self.delay = delay
        self.beta = beta
        self.rate = decay_rate(self.order, delay, beta)  # validates delay / beta; a (per step)
        self.normalize = check_normalize(normalize)
        super().__init__(shape, dtype, device)
        self.scale = normalization_scale("cascade", self.normalize, self.order, delay, beta)

    @property
    def state_size(self) -> int:
        return self.order

    @property
    def transition(self) -> Tensor:
        """``M = expm(-a I + S)``, shape ``(order, order)``, in the trace's dtype and device."""
        return self._transition

    def _build(self) -> None:
        self._transition = cascade_transition(self.order, self.delay, self.beta, self.dtype, self.device)

    def step(self, u: Tensor) -> Tensor:
        u = self._as_input(u, "u", self.shape)
        self._state, out = cascade_step(self._state, u, self._transition, self.scale)
        return out

    def kernel(self, length: int, dtype: torch.dtype = torch.float64) -> Tensor:
        h = cascade_kernel(self.order, self.delay, length, normalize=None, beta=self.beta)
        return (h * self.scale).to(dtype)

    def _free_response(self, steps: int) -> Tensor:
        # Output at step t (t = 0..steps-1) from state x alone: scale * (M^(t+1) x)[n-1], with
        # (M^m)[n-1, j] = exp(-a m) m^(n-1-j) / (n-1-j)!.
        m = torch.arange(1, steps + 1, dtype=torch.float64)[:, None]
        p = torch.arange(self.order - 1, -1, -1, dtype=torch.float64)
        resp = torch.exp(-self.rate * m + p * torch.log(m) - torch.lgamma(p + 1)) * self.scale
        out = self._state @ resp.to(dtype=self.dtype, device=self.device).mT  # (*shape, steps)
        return out.movedim(-1, 0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(order={self.order}, delay={self.delay}, shape={self.shape}, "
            f"normalize={self.normalize!r}, beta={self.beta}, dtype={self.dtype}, device={self.device})"
        )


class ExponentialTrace(CascadeTrace):
    """Classic eligibility trace ``e <- beta e + u`` (the order-1 :class:`CascadeTrace`);
    ``beta = exp(-1/delay)`` unless ``beta`` is given.  State ``(*shape, 1)``."""

    kind = "exponential"

    def __init__(
        self,
        delay: float | None,
        shape: int | Sequence[int],
        normalize: str | None = "area",
        beta: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(1, delay, shape, normalize=normalize, beta=beta, dtype=dtype, device=device)


class LtpLtdTrace(Trace):
    """Composite LTP/LTD trace: two exponential traces with time constants ``tau1 = ratio * tau2``
    (solved so that the kernel ``exp(-k/tau1) - exp(-k/tau2)`` peaks at ``delay`` steps), output
    their difference.  State ``(*shape, 2)``."""

    kind = "ltp_ltd"

    def __init__(
        self,
        delay: float,
        shape: int | Sequence[int],
        ratio: float = 2.0,
        normalize: str | None = "area",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.tau1, self.tau2 = ltp_ltd_taus(delay, ratio)
        self.delay, self.ratio = delay, ratio
        self.normalize = check_normalize(normalize)
        super().__init__(shape, dtype, device)
        self.scale = normalization_scale("ltp_ltd", self.normalize, delay=delay, ratio=ratio)

    @property
    def state_size(self) -> int:
        return 2

    def _decays64(self) -> Tensor:
        return torch.tensor([math.exp(-1.0 / self.tau1), math.exp(-1.0 / self.tau2)], dtype=torch.float64)

    def _build(self) -> None:
        self._decays = self._decays64().to(dtype=self.dtype, device=self.device)

    def step(self, u: Tensor) -> Tensor:
        u = self._as_input(u, "u", self.shape)
        self._state, out = ltp_ltd_step(self._state, u, self._decays, self.scale)
        return out

    def kernel(self, length: int, dtype: torch.dtype = torch.float64) -> Tensor:
        return (ltp_ltd_kernel(self.delay, length, self.ratio, normalize=None) * self.scale).to(dtype)

    def _free_response(self, steps: int) -> Tensor:
        m = torch.arange(1, steps + 1, dtype=torch.float64)[:, None]
        resp = self._decays64() ** m * torch.tensor([1.0, -1.0], dtype=torch.float64) * self.scale
        return (self._state @ resp.to(dtype=self.dtype, device=self.device).mT).movedim(-1, 0)


class PerfectTrace(Trace):
    """Pure delay line: output ``u[t - delay]`` (zero before), the upper bound of a delayed trace.

    Keeps a ring buffer of ``delay`` steps (its nature).  ``delay = 0`` is the identity.  The
    ``state`` property is the buffer in chronological order, oldest first: ``(*shape, delay)``.
    """

    kind = "perfect"

    def __init__(
        self,
        delay: int,
        shape: int | Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.delay = _check_int_delay(delay)
        self._ptr = 0
        super().__init__(shape, dtype, device)

    @property
    def state_size(self) -> int:
        return self.delay

    @property
    def state(self) -> Tensor:
        return torch.roll(self._state, -self._ptr, dims=-1) if self.delay else self._state.clone()

    @state.setter
    def state(self, value: Tensor) -> None:
        Trace.state.fset(self, value)  # type: ignore[attr-defined]

    def _set_state(self, value: Tensor) -> None:
        self._state, self._ptr = value, 0

    def step(self, u: Tensor) -> Tensor:
        u = self._as_input(u, "u", self.shape)
        if self.delay == 0:
            return u.clone()
        out = self._state[..., self._ptr].clone()
        self._state[..., self._ptr] = u
        self._ptr = (self._ptr + 1) % self.delay
        return out

    def kernel(self, length: int, dtype: torch.dtype = torch.float64) -> Tensor:
        return perfect_kernel(self.delay, length, dtype=dtype)

    def apply(self, sequence: Tensor, method: str = "auto") -> Tensor:
        """Delay line on a whole ``(T, *shape)`` sequence (exact shift; ``method`` is unused)."""
        seq = torch.as_tensor(sequence, dtype=self.dtype, device=self.device)
        if seq.dim() != len(self.shape) + 1 or tuple(seq.shape[1:]) != self.shape:
            raise ShapeError(f"sequence: expected shape (T, {', '.join(map(str, self.shape))}), got {tuple(seq.shape)}")
        return torch.cat([self.state.movedim(-1, 0), seq], dim=0)[: seq.shape[0]].clone()


class IdentityTrace(Trace):
    """No trace: the output equals the input (kind "none").  State ``(*shape, 0)``, 0 bytes."""

    kind = "none"

    def __init__(
        self,
        shape: int | Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(shape, dtype, device)

    @property
    def state_size(self) -> int:
        return 0

    def step(self, u: Tensor) -> Tensor:
        return self._as_input(u, "u", self.shape).clone()

    def kernel(self, length: int, dtype: torch.dtype = torch.float64) -> Tensor:
        return perfect_kernel(0, length, dtype=dtype)

    def _free_response(self, steps: int) -> Tensor:
        return torch.zeros((steps, *self.shape), dtype=self.dtype, device=self.device)


_KIND_KWARGS = {
    "cascade": {"beta", "dtype", "device"},
    "exponential": {"beta", "dtype", "device"},
    "ltp_ltd": {"ratio", "dtype", "device"},
    "perfect": {"dtype", "device"},
    "none": {"dtype", "device"},
}


def make_trace(
    kind: str,
    shape: int | Sequence[int],
    order: int = 1,
    delay: float | None = None,
    normalize: str | None = "area",
    **kw: Any,
) -> Trace:
    """Build a trace by name (for configs).

    kind: "cascade" (uses ``order``), "exponential", "perfect" (integer ``delay``), "ltp_ltd"
    or "none" (identity).  ``order`` is used by "cascade" only; ``normalize`` is validated for all
    kinds and used by "cascade", "exponential" and "ltp_ltd" (Dirac kernels are normalised both
    ways).  Extra keywords: ``beta`` (cascade/exponential), ``ratio`` (ltp_ltd), ``dtype``,
    ``device``.
    """
    if kind not in TRACE_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(map(repr, TRACE_KINDS))}, got {kind!r}")
    normalize = check_normalize(normalize)
    extra = sorted(set(kw) - _KIND_KWARGS[kind])
    if extra:
        raise ConfigError(f"make_trace: unexpected argument(s) {extra} for kind {kind!r}; allowed: {sorted(_KIND_KWARGS[kind])}")
    if kind == "cascade":
        return CascadeTrace(order, delay, shape, normalize=normalize, **kw)
    if kind == "exponential":
        return ExponentialTrace(delay, shape, normalize=normalize, **kw)
    if kind == "ltp_ltd":
        return LtpLtdTrace(delay, shape, normalize=normalize, **kw)  # type: ignore[arg-type]
    if kind == "perfect":
        return PerfectTrace(delay, shape, **kw)  # type: ignore[arg-type]
    return IdentityTrace(shape, **kw)
