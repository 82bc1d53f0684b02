"""Modulatory routing: from branch outcomes to the per-module, per-branch signal μ (B, M).

Section 5 of the probe paper: every counterfactual branch b gets a scalar evaluation, and each
module m sees a scalar μ[b, m] derived from it by a *designed* projection (topology/distance
from the error source, temporal decay, precision weighting), optionally delayed per module, and
optionally multiplied by a local participation factor ℓ[b, m] (activation magnitude).

Pipeline (pure functions, then one small stateful delay line)::

    adv = branch_advantage(outcomes, A, baseline="null")          # (B,)
    w   = distance_weights(d, scale) * precision_weights(var)      # (M,)
    mu  = route(adv, A, w)                                         # (B, M)
    ell = participation([h1, h2, ...])                             # (B, M), optional
    mu_late, A_late, ready = DelayedRouter(delays).push(mu, A)     # module m: D_m windows late

Sign: ``branch_advantage`` is outcome minus baseline, in the units of the outcome. Whether a
positive advantage means "better" (reward) or "worse" (cost) is the caller's convention; the
directional trace that consumes μ states and applies it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from ..modulators import DelayedBroadcast, layer_delays
from .assignment import check_assignment

__all__ = [
    "BASELINES", "branch_advantage", "route", "distance_weights", "temporal_weights", "precision_weights",
    "participation", "CreditStatistics", "Delivery", "DelayedRouter",
]

BASELINES = ("null", "mean")


def _vector(x, name: str, n: int | None = None, like: Tensor | None = None) -> Tensor:
    """x as a 1-D floating tensor (float64 unless already floating), optionally of length n."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=torch.float64)  # lists: float64
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64 if like is None or not like.dtype.is_floating_point else like.dtype)
    if t.dim() != 1 or (n is not None and t.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise ShapeError(f"{name} has shape {tuple(t.shape)}: must be {want}")
    return t


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} = {value!r}: must be a finite number > 0")
    return float(value)


def branch_advantage(outcomes: Tensor, A: Tensor, baseline: str = "null") -> Tensor:
    """Outcome of each branch minus a baseline, (B,).

    Args:
        outcomes: (B,) float, one evaluation per branch (return, reward, loss …).
        A: (B, M) long assignment matrix of the window; all-zero rows are the null branches.
        baseline: "null": subtract the mean outcome of the null branches (ConfigError if there
            is none); "mean": subtract the mean outcome of the whole batch.
    """
    A, _ = check_assignment(A)
    out = _vector(outcomes, "outcomes", A.shape[0])
    if baseline == "null":
        null = (A == 0).all(dim=1)
        if not bool(null.any()):
            raise ConfigError("baseline = 'null' but A has no all-null row: schedule null_fraction > 0 "
                              "or use baseline = 'mean'")
        base = out[null].mean()
    elif baseline == "mean":
        base = out.mean()
    else:
        raise ConfigError(f"baseline = {baseline!r}: allowed {list(BASELINES)}")
    return out - base


def route(advantage: Tensor, A: Tensor, weights: Tensor | None = None) -> Tensor:
    """Per-module projection of branch advantages: μ[b, m] = advantage[b] · w_m · 1[A[b, m] ≠ 0].

    A module that used the null probe in a branch gets no credit from that branch.

    Args:
        advantage: (B,) float.
        A: (B, M) long assignment matrix.
        weights: (M,) per-module weights, or None (all 1).
    Returns:
        μ: (B, M), dtype of ``advantage``.
    """
    A, _ = check_assignment(A)
    B, M = A.shape
    adv = _vector(advantage, "advantage", B)
    w = torch.ones(M, dtype=adv.dtype, device=adv.device) if weights is None else \
        _vector(weights, "weights", M, like=adv).to(dtype=adv.dtype, device=adv.device)
    return adv.unsqueeze(1) * w.unsqueeze(0) * (A != 0).to(device=adv.device, dtype=adv.dtype)


def distance_weights(distances: Tensor | Sequence[float], scale: float) -> Tensor:
    """Topological routing weights w_m = exp(−d_m / scale), (M,) float.

    d_m >= 0 is module m's distance from the error source (e.g. hops from the output layer: the
    output layer 0, the one before it 1, …), ``scale`` > 0 in the same units.
    """
    d = _vector(distances, "distances")
    if not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
        raise ConfigError("distances must be finite and >= 0 (distance of each module from the error source)")
    return torch.exp(-d / _positive(scale, "scale"))


def temporal_weights(age: Tensor | Sequence[float], tau: float) -> Tensor:
    """Temporal-decay weights w_m = exp(−age_m / τ), (M,) float.

    age_m >= 0: windows (or steps) between the module's perturbation and the error signal,
    τ > 0 in the same units.
    """
    a = _vector(age, "age")
    if not bool(torch.isfinite(a).all()) or bool((a < 0).any()):
        raise ConfigError("age must be finite and >= 0 (windows since each module was perturbed)")
    return torch.exp(-a / _positive(tau, "tau"))


def precision_weights(running_var: Tensor | Sequence[float], eps: float = 1e-8) -> Tensor:
    """Precision weights w_m ∝ 1 / (var_m + eps), normalised to mean 1, (M,) float.

    ``running_var`` (M,) >= 0 is the recent variance of each module's credit (e.g. from
    :class:`CreditStatistics`). Mean-1 normalisation leaves the overall learning rate unchanged:
    equal variances give all-ones weights.
    """
    v = _vector(running_var, "running_var")
    if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
        raise ConfigError("running_var must be finite and >= 0 (a variance per module)")
    p = 1.0 / (v + _positive(eps, "eps"))
    return p / p.mean()


def participation(activations: Sequence[Tensor]) -> Tensor:
    """Local participation factor ℓ[b, m] = mean |activation| of module m in branch b, (B, M).

    activations: list of M tensors, the m-th (B, n_m) or (B, …) (all non-batch dims averaged),
    same B for all. Returns the common floating dtype.
    """
    acts = list(activations)
    if not acts:
        raise ConfigError("activations is empty: must be a list of one (B, n_m) tensor per module")
    cols = []
    B = None
    for m, a in enumerate(acts):
        if not isinstance(a, Tensor) or a.dim() < 2 or a[0].numel() == 0:
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise ShapeError(f"activations[{m}] has shape {shape}: must be (B, n_m) with n_m >= 1")
        if B is None:
            B = a.shape[0]
        elif a.shape[0] != B:
            raise ShapeError(f"activations[{m}] has batch {a.shape[0]}: must match activations[0] ({B})")
        a = a if a.dtype.is_floating_point else a.to(torch.float64)
        cols.append(a.detach().abs().reshape(B, -1).mean(dim=1))
    dtype = torch.promote_types(*[c.dtype for c in cols]) if len(cols) > 1 else cols[0].dtype
    return torch.stack([c.to(dtype) for c in cols], dim=1)


class CreditStatistics:
    """Running mean and variance of each module's credit, for precision weighting.

    ``update(mu, A)``: the window's credit of module m is the mean of μ[b, m] over the branches
    where m was perturbed (A[b, m] ≠ 0); modules perturbed nowhere keep their statistics.
    Exponential moving averages with smoothing ρ:  mean ← mean + ρ (c − mean),
    var ← (1 − ρ) (var + ρ (c − mean_old)²)  (the standard EW variance).
    """

    def __init__(self, num_modules: int, smoothing: float = 0.1, init_var: float = 1.0):
        if isinstance(num_modules, bool) or not isinstance(num_modules, int) or num_modules < 1:
            raise ConfigError(f"num_modules = {num_modules!r}: must be an int >= 1")
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 < smoothing <= 1:
            raise ConfigError(f"smoothing = {smoothing!r}: must be in (0, 1]")
        if isinstance(init_var, bool) or not isinstance(init_var, (int, float)) or init_var < 0:
            raise ConfigError(f"init_var = {init_var!r}: must be a number >= 0")
        self.smoothing = float(smoothing)
        self.mean = torch.zeros(num_modules, dtype=torch.float64)
        self.var = torch.full((num_modules,), float(init_var), dtype=torch.float64)

    def update(self, mu: Tensor, A: Tensor) -> Tensor:
        """Fold in one window; mu (B, M), A (B, M). Returns this window's credit c (M,), NaN
        for modules perturbed in no branch."""
        A, _ = check_assignment(A)
        if not isinstance(mu, Tensor) or mu.shape != A.shape:
            shape = tuple(mu.shape) if isinstance(mu, Tensor) else type(mu).__name__
            raise ShapeError(f"mu has shape {shape}: must be {tuple(A.shape)} like A")
        if A.shape[1] != self.mean.shape[0]:
            raise ShapeError(f"A has {A.shape[1]} modules: CreditStatistics tracks {self.mean.shape[0]}")
        on = (A != 0).to(torch.float64)
        n = on.sum(dim=0)
        c = (mu.detach().to(torch.float64).cpu() * on).sum(dim=0) / n.clamp_min(1)
        seen = n > 0
        r = self.smoothing
        diff = c - self.mean
        self.var = torch.where(seen, (1 - r) * (self.var + r * diff**2), self.var)
        self.mean = torch.where(seen, self.mean + r * diff, self.mean)
        return torch.where(seen, c, torch.full_like(c, float("nan")))

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "var": self.var.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var = state["mean"].clone(), state["var"].clone()


class Delivery(NamedTuple):
    """What a :class:`DelayedRouter` hands over in one window.

    mu: (B, M), column m emitted ``delays[m]`` windows ago (zeros while its line fills);
    assignment: (B, M) long, the matching columns of the assignment matrices (zeros, the null
    probe, while filling), or None when no assignment was pushed; ready: (M,) bool.
    """

    mu: Tensor
    assignment: Tensor | None
    ready: Tensor


class DelayedRouter:
    """Delivers μ to module m ``delays[m]`` windows after it was emitted.

    Wraps :class:`neuroprobe.modulators.DelayedBroadcast` (one delay line per module). Because
    credit is only meaningful together with the probes it credits, ``push`` can carry the
    window's assignment matrix along, delayed column by column in the same way.

    Args:
        delays: D_m >= 0 per module (windows), e.g. ``layer_delays(M, D, "retrograde")``.
    """

    def __init__(self, delays: Sequence[int]):
        ds = list(delays) if not isinstance(delays, (str, bytes)) else None
        if not ds or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in ds):
            raise ConfigError(f"delays = {delays!r}: must be a non-empty list of ints >= 0, one per module")
        self.delays = ds
        self._mu = DelayedBroadcast(ds)
        self._assign = DelayedBroadcast(ds)
        self._with_assignment: bool | None = None  # fixed by the first push, so both lines stay in step

    @classmethod
    def from_layers(cls, num_modules: int, delay: int, mode: str = "constant", step: int | None = None) -> "DelayedRouter":
        """Delays from :func:`neuroprobe.modulators.layer_delays` (modules ordered input first)."""
        return cls(layer_delays(num_modules, delay, mode, step))

    @property
    def num_modules(self) -> int:
        return len(self.delays)

    def push(self, mu: Tensor, assignment: Tensor | None = None) -> Delivery:
        """Emit this window's μ (B, M) (and optionally A (B, M)); return what arrives now."""
        M = self.num_modules
        if not isinstance(mu, Tensor) or mu.dim() != 2 or mu.shape[1] != M:
            shape = tuple(mu.shape) if isinstance(mu, Tensor) else type(mu).__name__
            raise ShapeError(f"mu has shape {shape}: must be (B, {M}), one column per module")
        with_a = assignment is not None
        if self._with_assignment is not None and with_a != self._with_assignment:
            raise ConfigError("assignment must be passed on every push or on none (the delay lines would drift)")
        got = self._mu.push(list(mu.unbind(dim=1)))
        ready = torch.tensor([g is not None for g in got], dtype=torch.bool)
        out = torch.stack([g if g is not None else torch.zeros_like(mu[:, 0]) for g in got], dim=1)
        delivered_A = None
        if assignment is not None:
            A, _ = check_assignment(assignment, name="assignment")
            if A.shape != mu.shape:
                raise ShapeError(f"assignment has shape {tuple(A.shape)}: must be {tuple(mu.shape)} like mu")
            gotA = self._assign.push(list(A.unbind(dim=1)))
            delivered_A = torch.stack([g if g is not None else torch.zeros_like(A[:, 0]) for g in gotA], dim=1)
        self._with_assignment = with_a
        return Delivery(out, delivered_A, ready)

    def reset(self) -> None:
        self._mu.reset()
        self._assign.reset()
        self._with_assignment = None

    def state_dict(self) -> dict:
        return {"delays": list(self.delays), "mu": self._mu.state_dict(), "assignment": self._assign.state_dict(),
                "with_assignment": self._with_assignment}

    def load_state_dict(self, state: dict) -> None:
        if list(state["delays"]) != self.delays:
            raise ConfigError(f"state delays {state['delays']} differ from this router's {self.delays}")
        self._mu.load_state_dict(state["mu"])
        self._assign.load_state_dict(state["assignment"])
        self._with_assignment = state.get("with_assignment")
