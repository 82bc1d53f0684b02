"""Directional eligibility traces: per-window probe coefficients and their decayed history.

For module m and window t (the paper's section 5)

    e_{m,t} = (1/B) Σ_b μ_{m,b,t} ℓ_{m,b,t} δ_{m, A_{b,m}}  =  Σ_k e_{m,t}[k] ΔW_{m,t,k},
    e_{m,t}[k] = (1/B) Σ_b μ_{m,b,t} ℓ_{m,b,t} [A_{b,m} = k]

so a window's trace is stored as K coefficients (the null probe's direction is zero and its
coefficient is dropped), never as a dense matrix.  A history of P windows is combined as

    Δθ_m = s · α · Σ_{j=0}^{P-1} w_j Σ_k e_{m,t-j}[k] ΔW_{m,t-j,k}

with ``w_j = λ^j`` (``kernel=None``) or ``w_j = h[j]``, the cascading-eligibility kernel
:func:`neuroprobe.traces.cascade_kernel` evaluated over window lags (``kernel="cascade"``: credit of
a window peaks ``delay`` windows later).

Sign convention.  ``credit="reward"`` (default): μ is reward-like (higher is better), s = +1 and the
update *ascends*; ``credit="cost"``: μ is a cost/error (lower is better), s = −1, which is the
paper's ``Δθ = −α Σ_j λ^j e_{t−j}``.  Either way :meth:`DirectionalTrace.write_grad` stores
``−Δθ`` in ``weight.grad`` (the cost convention of :mod:`neuroprobe.rules`), so
``torch.optim.SGD(lr=η).step()`` moves ``W ← W + η·Δθ``.

Memory of a trace: the (P, K) coefficient ring, a (P, K) index into a pool of probe factors, and
the pool itself, in which every distinct probe (by :meth:`ProbeDictionary.probe_ids`) is stored
once: K·r·(n_out+n_in) for persistent probes, O(P·K·r·(n_out+n_in)) for stored pure probes that
change every window.  Keyed dictionaries store only the window key per slot (P ints) and
regenerate the factors in :meth:`DirectionalTrace.update`.  Total O(K·r·(n_out+n_in) + P·K) for
persistent or keyed probes; see :attr:`DirectionalTrace.nbytes`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Sequence, Union

import torch
from torch import Tensor

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.dictionary import ProbeDictionary, lowrank_sum
from neuroprobe.probes.probed_linear import ProbedLinear
from neuroprobe.traces import cascade_kernel

__all__ = ["directional_coefficients", "module_coefficients", "history_weights", "DirectionalTrace", "CREDITS"]

CREDITS = ("reward", "cost")
Probes = Union[ProbeDictionary, ProbedLinear, tuple]


# --------------------------------------------------------------------------- pure functions


def directional_coefficients(
    mu: Tensor, ell: Tensor | None, assignment_m: Tensor, num_probes: int, include_null: bool = False
) -> Tensor:
    """Per-probe coefficients of one module's window trace: e[k] = (1/B) Σ_b μ_b ℓ_b [A_b = k].

    Args:
        mu: (B,) modulatory signal of each branch for this module.
        ell: (B,) participation factor, or None (= 1).
        assignment_m: (B,) long labels in 0..num_probes (this module's column of A).
        num_probes: K.
        include_null: also return the null probe's coefficient at index 0.

    Returns:
        (K,) coefficients for labels 1..K (index k-1), or (K+1,) with ``include_null``.
        Computed with one ``index_add`` (no loop over branches or probes).
    """
    if isinstance(num_probes, bool) or not isinstance(num_probes, Integral) or num_probes < 1:
        raise ConfigError(f"num_probes must be an integer >= 1, got {num_probes!r}")
    if not isinstance(mu, Tensor) or mu.dim() != 1 or not mu.is_floating_point():
        raise ShapeError(f"mu must be a 1-D float tensor of shape (B,), got {_desc(mu)}")
    B = mu.shape[0]
    if B == 0:
        raise ShapeError("mu must hold at least one branch (B >= 1), got shape (0,)")
    if not isinstance(assignment_m, Tensor) or assignment_m.shape != (B,):
        raise ShapeError(f"assignment_m must be a tensor of shape (B,) = ({B},) like mu, got {_desc(assignment_m)}")
    if assignment_m.dtype == torch.bool or assignment_m.is_floating_point():
        raise ConfigError(f"assignment_m must be an integer (long) tensor of probe labels, got dtype {assignment_m.dtype}")
    a = assignment_m.long()
    if int(a.min()) < 0 or int(a.max()) > num_probes:
        raise ConfigError(f"assignment_m values must be in 0..{num_probes} (0 = null probe), got range {int(a.min())}..{int(a.max())}")
    w = mu
    if ell is not None:
        if not isinstance(ell, Tensor) or ell.shape != (B,):
            raise ShapeError(f"ell must be None or a tensor of shape (B,) = ({B},) like mu, got {_desc(ell)}")
        w = mu * ell.to(mu.dtype)
    e = torch.zeros(num_probes + 1, dtype=mu.dtype, device=mu.device).index_add_(0, a, w) / B
    return e if include_null else e[1:]


def module_coefficients(mu: Tensor, ell: Tensor | None, assignment: Tensor, num_probes: Sequence[int] | int) -> list[Tensor]:
    """All modules at once: mu (B, M), ell (B, M) or None, assignment (B, M) -> M tensors (K_m,).

    One ``index_add`` over a flattened (Σ_m (K_m+1)) coefficient vector, then split per module.
    """
    if not isinstance(mu, Tensor) or mu.dim() != 2 or not mu.is_floating_point():
        raise ShapeError(f"mu must be a 2-D float tensor of shape (B, M), got {_desc(mu)}")
    B, M = mu.shape
    ks = [num_probes] * M if isinstance(num_probes, Integral) else list(num_probes)
    if len(ks) != M or any(isinstance(k, bool) or not isinstance(k, Integral) or k < 1 for k in ks):
        raise ConfigError(f"num_probes must be an integer >= 1 or a list of M={M} such integers, got {num_probes!r}")
    if not isinstance(assignment, Tensor) or assignment.shape != (B, M):
        raise ShapeError(f"assignment must be a tensor of shape (B, M) = ({B}, {M}) like mu, got {_desc(assignment)}")
    if assignment.dtype == torch.bool or assignment.is_floating_point():
        raise ConfigError(f"assignment must be an integer (long) tensor, got dtype {assignment.dtype}")
    a = assignment.long()
    kt = torch.tensor(ks, device=a.device)
    if bool((a < 0).any()) or bool((a > kt).any()):
        raise ConfigError(f"assignment[:, m] values must be in 0..K_m with K = {ks} (0 = null probe)")
    w = mu
    if ell is not None:
        if not isinstance(ell, Tensor) or ell.shape != (B, M):
            raise ShapeError(f"ell must be None or a tensor of shape (B, M) = ({B}, {M}), got {_desc(ell)}")
        w = mu * ell.to(mu.dtype)
    sizes = [k + 1 for k in ks]
    offsets = torch.tensor([0] + sizes[:-1], device=a.device).cumsum(0)
    flat = torch.zeros(sum(sizes), dtype=mu.dtype, device=mu.device).index_add_(0, (a + offsets).flatten(), w.flatten()) / B
    return [e[1:] for e in flat.split(sizes)]


def history_weights(
    history: int,
    decay: float = 1.0,
    kernel: str | None = None,
    order: int = 6,
    delay: float = 2.0,
    normalize: str | None = "peak",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Weights w_j of window lag j = 0..history-1: ``decay**j``, or the cascade kernel h[j]."""
    if isinstance(history, bool) or not isinstance(history, Integral) or history < 1:
        raise ConfigError(f"history must be an integer >= 1 (windows), got {history!r}")
    if kernel is None:
        if isinstance(decay, bool) or not isinstance(decay, Real) or not 0.0 <= decay <= 1.0:
            raise ConfigError(f"decay must be a number in [0, 1], got {decay!r}")
        return torch.tensor(float(decay), dtype=torch.float64).pow(torch.arange(history, dtype=torch.float64)).to(dtype)
    if kernel != "cascade":
        raise ConfigError(f"kernel must be None (decay**j) or 'cascade', got {kernel!r}")
    return cascade_kernel(order, delay, history, normalize=normalize, dtype=dtype)


def _desc(t: Any) -> str:
    return f"shape {tuple(t.shape)} dtype {t.dtype}" if isinstance(t, Tensor) else type(t).__name__


# --------------------------------------------------------------------------- stateful trace


class DirectionalTrace:
    """History of P windows of K probe coefficients (plus the probes they refer to), for one module.

    Args:
        num_probes: K.
        history: P, number of windows kept (ring buffer).
        decay: λ, weight λ^j of the window j steps back (``kernel=None``).
        kernel: None or ``"cascade"``: weights from :func:`neuroprobe.traces.cascade_kernel` with
            ``order``, ``delay`` (in windows) and ``normalize`` over the P lags.
        alpha: α, learning-rate factor of :meth:`update`.
        credit: ``"reward"`` (μ higher is better, update ascends) or ``"cost"`` (paper's sign).
        dtype: of the coefficient ring.

    Use per window: ``trace.push(directional_coefficients(...), layer)``, then
    ``trace.write_grad(layer)`` and an optimizer step, then ``layer.refresh()``.
    """

    def __init__(
        self,
        num_probes: int,
        history: int = 1,
        decay: float = 1.0,
        kernel: str | None = None,
        order: int = 6,
        delay: float = 2.0,
        normalize: str | None = "peak",
        alpha: float = 1.0,
        credit: str = "reward",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if isinstance(num_probes, bool) or not isinstance(num_probes, Integral) or num_probes < 1:
            raise ConfigError(f"num_probes must be an integer >= 1, got {num_probes!r}")
        if credit not in CREDITS:
            raise ConfigError(f"credit must be 'reward' or 'cost', got {credit!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha):
            raise ConfigError(f"alpha must be a finite number, got {alpha!r}")
        self.num_probes, self.history = int(num_probes), history
        self.weights = history_weights(history, decay, kernel, order, delay, normalize, dtype=dtype)
        self.kernel, self.decay = kernel, decay
        self.alpha, self.credit, self.dtype = float(alpha), credit, dtype
        P, K = int(history), self.num_probes
        self.coeffs = torch.zeros(P, K, dtype=dtype)
        self.index = torch.zeros(P, K, dtype=torch.long)  # into the pool (stored probes)
        self.keys = torch.full((P,), -1, dtype=torch.long)  # window key per slot (keyed probes)
        self.count = 0
        self.shape: tuple[int, int] | None = None
        self.keyed_source: ProbeDictionary | None = None
        self.pool_ids = torch.zeros(0, dtype=torch.long)
        self.pool_u: Tensor | None = None
        self.pool_v: Tensor | None = None
        self.pool_coef = torch.zeros(0, dtype=dtype)
        self._anon = -1  # ids for anonymous (tuple) probes: negative, never reused

    # ----------------------------------------------------------------------- memory

    @property
    def nbytes(self) -> int:
        """Bytes held: coefficient ring, pool index, window keys, and the probe-factor pool."""
        ts = [self.coeffs, self.index, self.keys, self.pool_ids, self.pool_coef, self.pool_u, self.pool_v]
        return sum(t.numel() * t.element_size() for t in ts if t is not None)

    @property
    def filled(self) -> int:
        """Number of windows currently held (≤ P)."""
        return min(self.count, self.history)

    def lag_weights(self) -> Tensor:
        """(P,) weight of each ring slot: w_j for the window j pushes back, 0 for empty slots."""
        P = self.history
        slots = torch.arange(P)
        lag = (self.count - 1 - slots) % P
        w = self.weights[lag]
        return torch.where(lag < self.count, w, torch.zeros_like(w))

    # ----------------------------------------------------------------------- push

    def push(self, coeffs: Tensor, probes: Probes, coef: float | None = None) -> None:
        """Record one window: coefficients (K,) of the probes ``probes`` used in that window.

        ``probes``: a :class:`ProbeDictionary`, a :class:`ProbedLinear` (its dictionary), or a tuple
        ``(U (K, n_out, r), V (K, n_in, r))`` of raw factors with ΔW_k = ``coef``·U_k V_kᵀ
        (``coef`` default 1 for tuples; dictionaries supply σ/√r).  Stored dictionaries' probes
        are copied into the pool once per distinct probe; keyed ones are recorded by window key.
        """
        K, P = self.num_probes, self.history
        if not isinstance(coeffs, Tensor) or coeffs.shape != (K,):
            raise ShapeError(f"coeffs must be a tensor of shape (num_probes,) = ({K},), got {_desc(coeffs)}")
        if isinstance(probes, ProbedLinear):
            probes = probes.dictionary
        slot = self.count % P
        if isinstance(probes, ProbeDictionary):
            if probes.num_probes != K:
                raise ShapeError(f"probes hold {probes.num_probes} probes, this trace num_probes={K}")
            self._check_shape((probes.n_out, probes.n_in))
            if probes.keyed:
                if self.keyed_source is None and self.pool_u is None:
                    self.keyed_source = probes
                if self.keyed_source is not probes:
                    raise ConfigError("probes: a trace fed a keyed dictionary must always be fed that same dictionary")
                self.keys[slot] = probes.window
                self._store(slot, coeffs)
                return
            U, V = probes.factors()
            ids, c = probes.probe_ids().cpu(), probes.coef
        elif isinstance(probes, tuple) and len(probes) == 2 and all(isinstance(t, Tensor) for t in probes):
            U, V = probes
            if U.dim() != 3 or V.dim() != 3 or U.shape[0] != K or V.shape[0] != K or U.shape[2] != V.shape[2]:
                raise ShapeError(f"probes must be factors U (K={K}, n_out, r), V (K={K}, n_in, r), got {tuple(U.shape)}, {tuple(V.shape)}")
            self._check_shape((U.shape[1], V.shape[1]))
            ids = torch.arange(self._anon, self._anon - K, -1)
            self._anon -= K
            c = 1.0 if coef is None else float(coef)
        else:
            raise ConfigError(f"probes must be a ProbeDictionary, a ProbedLinear or a tuple (U, V), got {type(probes).__name__}")
        if self.keyed_source is not None:
            raise ConfigError("probes: this trace records a keyed dictionary; it cannot mix in stored probes")
        self._store(slot, coeffs)
        self._pool_add(slot, ids, U.detach(), V.detach(), c)

    def _check_shape(self, shape: tuple[int, int]) -> None:
        if self.shape is None:
            self.shape = shape
        elif self.shape != shape:
            raise ShapeError(f"probes are for a ({shape[0]}, {shape[1]}) weight, this trace holds ({self.shape[0]}, {self.shape[1]})")

    def _store(self, slot: int, coeffs: Tensor) -> None:
        self.coeffs[slot] = coeffs.detach().to(dtype=self.dtype, device="cpu")
        self.count += 1

    def _pool_add(self, slot: int, ids: Tensor, U: Tensor, V: Tensor, coef: float) -> None:
        """Point ring ``slot`` (already counted) at the pool entries of ``ids``, adding new probes
        and dropping the ones no held window refers to any more (vectorised; no loop over probes)."""
        if self.pool_u is None:
            self.pool_u, self.pool_v = U[:0].clone(), V[:0].clone()
        assert self.pool_v is not None
        C = self.pool_ids.shape[0]
        others = (torch.arange(self.history) < self.filled) & (torch.arange(self.history) != slot)
        match = ids[:, None] == self.pool_ids[None, :]  # (K, C)
        keep = match.any(0)
        keep[self.index[others].flatten()] = True
        if not bool(keep.all()):  # compact the pool first
            remap = keep.long().cumsum(0) - 1
            self.index[others] = remap[self.index[others]]
            km = keep.to(self.pool_u.device)
            self.pool_u, self.pool_v = self.pool_u[km], self.pool_v[km]
            self.pool_ids, self.pool_coef = self.pool_ids[keep], self.pool_coef[keep]
            match = match[:, keep]
            C = self.pool_ids.shape[0]
        present = match.any(1)
        new = ~present
        n_new = int(new.sum())
        found = match.to(torch.uint8).argmax(1) if C else torch.zeros_like(ids)
        self.index[slot] = torch.where(present, found, C + new.long().cumsum(0) - 1)
        if n_new:
            if n_new < ids.shape[0]:
                nm = new.to(U.device)
                U, V, ids = U[nm], V[nm], ids[new]
            self.pool_u = torch.cat([self.pool_u, U.to(self.pool_u.dtype)])
            self.pool_v = torch.cat([self.pool_v, V.to(self.pool_v.dtype)])
            self.pool_ids = torch.cat([self.pool_ids, ids])
            self.pool_coef = torch.cat([self.pool_coef, torch.full((n_new,), coef, dtype=self.dtype)])

    # ----------------------------------------------------------------------- update

    def _weighted_factors(self, alpha: float | None) -> tuple[Tensor, Tensor, Tensor]:
        """(U (C, n_out, r), V (C, n_in, r), w (C,)) with Δθ = Σ_c w_c U_c V_cᵀ."""
        if self.count == 0 or self.shape is None:
            raise ConfigError("update() needs at least one push() (the trace is empty)")
        a = self.alpha if alpha is None else float(alpha)
        sign = 1.0 if self.credit == "reward" else -1.0
        wc = self.lag_weights()[:, None] * self.coeffs  # (P, K)
        held = torch.arange(self.history) < self.filled
        if self.keyed_source is not None:
            src = self.keyed_source
            slots = held.nonzero().flatten().tolist()
            # regenerate each held window's probes from its key (a loop over windows only)
            fs = [src.factors(window=int(self.keys[s])) for s in slots]
            U, V = torch.cat([f[0] for f in fs]), torch.cat([f[1] for f in fs])
            w = (sign * a * src.coef) * wc[slots].flatten()
            return U, V, w.to(device=src.device)
        assert self.pool_u is not None and self.pool_v is not None
        pw = torch.zeros(self.pool_ids.shape[0], dtype=self.dtype).index_add_(0, self.index[held].flatten(), wc[held].flatten())
        return self.pool_u, self.pool_v, ((sign * a) * pw * self.pool_coef).to(self.pool_u.device)

    def update(self, alpha: float | None = None) -> Tensor:
        """Δθ = s·α·Σ_j w_j Σ_k e_{t−j}[k] ΔW_{t−j,k}, shape (n_out, n_in) (s from ``credit``).

        Stored probes: the weights of each pooled probe are summed with one ``index_add`` and the
        pool is collapsed by one matmul.  Keyed probes: each held window's probes are regenerated
        from its key (a loop over the P windows, not over probes or branches), then one matmul.
        """
        U, V, w = self._weighted_factors(alpha)
        return lowrank_sum(w, U, V)

    def write_grad(self, module: ProbedLinear | torch.nn.Parameter | Tensor, alpha: float | None = None, accumulate: bool = False) -> Tensor:
        """Store −Δθ in ``.grad`` of ``module.weight`` (or of the given parameter); returns that ``.grad``.

        ``torch.optim.SGD(lr=η).step()`` then applies ``W ← W + η·Δθ``.  An existing grad buffer
        is overwritten in place (or added to, with ``accumulate``), so no (n_out, n_in) tensor is
        allocated per window.
        """
        p = module.weight if isinstance(module, torch.nn.Module) else module
        if not isinstance(p, Tensor) or tuple(p.shape) != self.shape:
            raise ShapeError(f"module must be a ProbedLinear or parameter of shape {self.shape}, got {_desc(p)}")
        U, V, w = self._weighted_factors(alpha)
        U, V, w = U.to(device=p.device, dtype=p.dtype), V.to(device=p.device, dtype=p.dtype), -w.to(p.device)
        with torch.no_grad():
            if p.grad is not None and accumulate:
                lowrank_sum(w, U, V, out=p.grad, accumulate=True)
            elif p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == p.dtype:
                lowrank_sum(w, U, V, out=p.grad)
            else:
                p.grad = lowrank_sum(w, U, V)
        return p.grad

    def reset(self) -> None:
        """Forget all windows (coefficients, keys and pooled probes)."""
        self.coeffs.zero_()
        self.index.zero_()
        self.keys.fill_(-1)
        self.count = 0
        self.pool_ids = self.pool_ids[:0]
        self.pool_coef = self.pool_coef[:0]
        if self.pool_u is not None and self.pool_v is not None:
            self.pool_u, self.pool_v = self.pool_u[:0], self.pool_v[:0]

    # ----------------------------------------------------------------------- checkpoint

    def state_dict(self) -> dict[str, Any]:
        """Ring, pool and counters (a keyed source dictionary is checkpointed by its owner)."""
        return {
            "num_probes": self.num_probes, "history": self.history, "count": self.count, "shape": self.shape,
            "coeffs": self.coeffs.clone(), "index": self.index.clone(), "keys": self.keys.clone(),
            "pool_ids": self.pool_ids.clone(), "pool_coef": self.pool_coef.clone(), "anon": self._anon,
            "pool_u": None if self.pool_u is None else self.pool_u.clone(),
            "pool_v": None if self.pool_v is None else self.pool_v.clone(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any], keyed_source: ProbeDictionary | None = None) -> None:
        """Restore from :meth:`state_dict`; pass the keyed dictionary again if the trace used one."""
        if state.get("num_probes") != self.num_probes or state.get("history") != self.history:
            raise ConfigError(
                f"state is for num_probes={state.get('num_probes')}, history={state.get('history')}; "
                f"this trace has num_probes={self.num_probes}, history={self.history}"
            )
        shape = state["shape"]  # a list after a plain (weights-only) checkpoint round trip
        self.count, self._anon = int(state["count"]), int(state["anon"])
        self.shape = None if shape is None else tuple(int(n) for n in shape)
        self.coeffs, self.index, self.keys = state["coeffs"].clone(), state["index"].clone(), state["keys"].clone()
        self.pool_ids, self.pool_coef = state["pool_ids"].clone(), state["pool_coef"].clone()
        self.pool_u = None if state["pool_u"] is None else state["pool_u"].clone()
        self.pool_v = None if state["pool_v"] is None else state["pool_v"].clone()
        self.keyed_source = keyed_source
