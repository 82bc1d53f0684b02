"""Per-module probe dictionaries: the null probe and K low-rank perturbation directions.

A dictionary for a linear map ``W`` of shape ``(n_out, n_in)`` holds K non-null directions

    ΔW_k = (σ/√r) U_k V_kᵀ,   U: (K, n_out, r),  V: (K, n_in, r),   k = 1..K

(EGGROLL scaling: with standard-normal factors every entry of ΔW_k has variance σ²), plus the null
probe δ₀ = 0, which is never stored.  Labels follow the assignment convention shared by all of
``neuroprobe.probes``: label 0 is the null probe and label ``k >= 1`` is probe ``k``; in the factor
tensors probe ``k`` sits at index ``k - 1``.

Regimes (the paper's section 3):

* ``"pure"``: ephemeral random probes, redrawn by every :meth:`ProbeDictionary.refresh`.
  With ``keyed=True`` nothing is stored: the probes of window ``t`` are regenerated on demand from
  a ``torch.Generator`` seeded by ``(seed, module_id, t)`` (EGGROLL), so the state is O(1).
  Stored pure probes are drawn from the same keyed generator, so keyed and stored dictionaries with
  the same seed hold identical probes.
* ``"semi_persistent"``: probes persist across windows; :meth:`update_stats` keeps a running
  |credit| (EMA, the probe's *yield*) and :meth:`refresh` replaces probes that are stale
  (``age > max_age``), low-yield (yield below ``yield_threshold``, or strictly below the
  ``yield_quantile`` of the matured probes' yields), or redundant (|cosine| between flattened
  ΔW_a and ΔW_b above ``redundancy_threshold``; computed from the factors without materialising,
  ``<U_a V_aᵀ, U_b V_bᵀ> = trace((U_aᵀU_b)(V_bᵀV_a))``).
* ``"learned_subspace"``: a slowly updated rank-q summary ``S ≈ Q_u diag(s) Q_vᵀ`` of the credited
  updates (EMA with rate ``basis_decay``, kept rank-q by a factored QR + SVD, never materialised);
  the first ``K - num_explore`` probes are random combinations inside the basis,
  ``U_k = √(n_out/q) Q_u C_k``, ``V_k = √(n_in/q) Q_v D_k`` (C, D standard normal, the √ keeps the
  probe norm comparable to a pure probe); the last ``num_explore`` probes are pure random
  directions, through which new directions can enter the basis.

``antithetic=True`` makes probes come in ± pairs: probe ``2j`` is ``−`` probe ``2j−1`` (labels
1-based; ``K`` must be even).  Pairs are replaced together.

Memory (:attr:`ProbeDictionary.nbytes`): stored probes ``K·r·(n_out+n_in)`` elements plus O(K)
statistics; keyed pure probes O(1); learned subspace adds ``q·(n_out+n_in+1)``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

from neuroprobe.errors import ConfigError, ShapeError

__all__ = ["REGIMES", "ProbeDictionary", "keyed_generator", "lowrank_sum", "stack_layout"]

REGIMES = ("pure", "semi_persistent", "learned_subspace")
_MASK64 = (1 << 64) - 1
_KEY_BYTES = 8  # one int64 per stored key (seed, module id, window)
_SALT_DRAW, _SALT_REPLACE, _SALT_BASIS = 0, 1, 2


# --------------------------------------------------------------------------- pure helpers


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def keyed_generator(*key: int, device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` seeded deterministically from the integers ``key`` (splitmix64 chain).

    Same key, same stream, on every run and process; different keys give unrelated streams.
    """
    h = 0x243F6A8885A308D3
    for k in key:
        h = _splitmix64(h ^ (int(k) & _MASK64))
    g = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    g.manual_seed(h)
    return g


def lowrank_sum(weights: Tensor, U: Tensor, V: Tensor, out: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """``Σ_c weights[c] U_c V_cᵀ`` as one matmul; U: (C, n_out, r), V: (C, n_in, r), weights: (C,).

    Returns (n_out, n_in).  Nothing of size (C, n_out, n_in) is formed.  With ``out`` the result
    is written into it (``accumulate``: added to it) without allocating an (n_out, n_in) tensor.
    """
    C, n_out, r = U.shape
    n_in = V.shape[1]
    Uw = (U * weights.to(U.dtype)[:, None, None]).permute(1, 0, 2).reshape(n_out, C * r)
    Vt = V.permute(1, 0, 2).reshape(n_in, C * r).T
    if out is None:
        return Uw @ Vt
    if accumulate:
        return out.addmm_(Uw.to(out.dtype), Vt.to(out.dtype))
    return torch.mm(Uw.to(out.dtype), Vt.to(out.dtype), out=out)


def stack_layout(t: Tensor) -> Tensor:
    """Same values as ``t`` (K, n, r), laid out in memory as (n, K, r), so that
    ``t.permute(1, 0, 2).reshape(n, K * r)`` (the stacked factors used by the batched forward) is a
    view, not a copy."""
    return t.permute(1, 0, 2).contiguous().permute(1, 0, 2)


def _pos_int(name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral) or v < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _real(name: str, v: Any, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    ok = isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ConfigError(f"{name} must be a number in {lb}{lo}, {hi}{rb}, got {v!r}")
    return float(v)


def _gaussian_factors(
    g: torch.Generator, K: int, n_out: int, n_in: int, r: int, antithetic: bool, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """K standard-normal factor pairs (U (K, n_out, r), V (K, n_in, r)); antithetic: U_{2j+1} = −U_{2j}."""
    n = K // 2 if antithetic else K
    U = torch.randn(n, n_out, r, generator=g, dtype=dtype, device=device)
    V = torch.randn(n, n_in, r, generator=g, dtype=dtype, device=device)
    if antithetic:
        U = torch.stack([U, -U], dim=1).reshape(K, n_out, r)
        V = torch.stack([V, V], dim=1).reshape(K, n_in, r)
    return U, V


# --------------------------------------------------------------------------- the dictionary


class ProbeDictionary:
    """K low-rank probe directions ΔW_k = (σ/√r) U_k V_kᵀ for one (n_out, n_in) module.

    Args:
        n_out, n_in: shape of the module's weight.
        num_probes: K, number of non-null probes (labels 1..K; label 0 is the null probe).
        rank: r, rank of every probe.
        scale: σ, std of each entry of ΔW_k (EGGROLL scaling σ/√r).
        regime: ``"pure"``, ``"semi_persistent"`` or ``"learned_subspace"`` (module docstring).
        antithetic: probes in ± pairs (probe 2j = −probe 2j−1); K must be even.
        keyed: regenerate probes from a keyed RNG instead of storing them (``regime="pure"`` only).
        seed, module_id: the key of the RNG streams (window index is the third part).
        max_age: semi-persistent; a probe older than this many windows is stale.
        yield_decay: semi-persistent; EMA factor of the running |credit|: y ← d·y + (1−d)·|c|.
        yield_threshold: semi-persistent; absolute low-yield threshold (overrides the quantile).
        yield_quantile: semi-persistent; a matured probe whose yield is strictly below this
            quantile of the matured yields is low-yield; ``None`` disables the rule.
        yield_warmup: semi-persistent; probes younger than this many windows are never low-yield.
        redundancy_threshold: semi-persistent; |cosine| above which the lower-yield probe of a pair
            is replaced (in (0, 1]; 1 disables the rule in practice).
        subspace_rank: learned subspace; q, rank of the basis (default ``min(n_out, n_in, 4r)``).
        num_explore: learned subspace; how many probes are pure random (default ``K // 4``, even
            when antithetic).
        basis_decay: learned subspace; EMA rate β of :meth:`update_basis`.
        dtype, device: of all stored tensors and drawn probes.
    """

    def __init__(
        self,
        n_out: int,
        n_in: int,
        num_probes: int = 8,
        rank: int = 1,
        scale: float = 1e-2,
        regime: str = "pure",
        antithetic: bool = False,
        keyed: bool = False,
        seed: int = 0,
        module_id: int = 0,
        *,
        max_age: int = 20,
        yield_decay: float = 0.9,
        yield_threshold: float | None = None,
        yield_quantile: float | None = 0.25,
        yield_warmup: int = 3,
        redundancy_threshold: float = 0.9,
        subspace_rank: int | None = None,
        num_explore: int | None = None,
        basis_decay: float = 0.1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.n_out = _pos_int("n_out", n_out)
        self.n_in = _pos_int("n_in", n_in)
        self.num_probes = _pos_int("num_probes", num_probes)
        self.rank = _pos_int("rank", rank)
        self.scale = _real("scale", scale, 0.0, math.inf, hi_open=True)
        if regime not in REGIMES:
            raise ConfigError(f"regime must be one of {', '.join(map(repr, REGIMES))}, got {regime!r}")
        self.regime = regime
        if not isinstance(antithetic, bool) or not isinstance(keyed, bool):
            raise ConfigError(f"antithetic and keyed must be True or False, got {antithetic!r}, {keyed!r}")
        if antithetic and self.num_probes % 2:
            raise ConfigError(f"num_probes must be even with antithetic=True (± pairs), got {num_probes}")
        if keyed and regime != "pure":
            raise ConfigError(f"keyed=True needs regime='pure' (persistent probes must be stored), got regime={regime!r}")
        self.antithetic, self.keyed = antithetic, keyed
        for name, v in (("seed", seed), ("module_id", module_id)):
            if isinstance(v, bool) or not isinstance(v, Integral):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
        self.seed, self.module_id = int(seed), int(module_id)
        self.max_age = _pos_int("max_age", max_age)
        self.yield_decay = _real("yield_decay", yield_decay, 0.0, 1.0, hi_open=True)
        self.yield_threshold = None if yield_threshold is None else _real("yield_threshold", yield_threshold, 0.0, math.inf, hi_open=True)
        self.yield_quantile = None if yield_quantile is None else _real("yield_quantile", yield_quantile, 0.0, 1.0)
        self.yield_warmup = _pos_int("yield_warmup", yield_warmup, minimum=0)
        self.redundancy_threshold = _real("redundancy_threshold", redundancy_threshold, 0.0, 1.0, lo_open=True)
        self.basis_decay = _real("basis_decay", basis_decay, 0.0, 1.0, lo_open=True)
        q_default = min(self.n_out, self.n_in, 4 * self.rank)
        self.subspace_rank = q_default if subspace_rank is None else _pos_int("subspace_rank", subspace_rank)
        if self.subspace_rank > min(self.n_out, self.n_in):
            raise ConfigError(f"subspace_rank must be <= min(n_out, n_in) = {min(self.n_out, self.n_in)}, got {subspace_rank}")
        ne_default = self.num_probes // 4
        if antithetic:
            ne_default -= ne_default % 2
        self.num_explore = ne_default if num_explore is None else _pos_int("num_explore", num_explore, minimum=0)
        if self.num_explore > self.num_probes or (antithetic and self.num_explore % 2):
            raise ConfigError(f"num_explore must be in 0..num_probes={self.num_probes} (even when antithetic), got {num_explore!r}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ConfigError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")

        self.window = 0
        self._next_id = 0
        self.replaced: Tensor = torch.arange(1, self.num_probes + 1, device=self.device)
        self.U: Tensor | None = None
        self.V: Tensor | None = None
        self.ids: Tensor | None = None
        self.age: Tensor | None = None
        self.yields: Tensor | None = None
        self.basis_u: Tensor | None = None
        self.basis_v: Tensor | None = None
        self.basis_s: Tensor | None = None
        if regime == "learned_subspace":
            g = keyed_generator(self.seed, self.module_id, -1, _SALT_BASIS, device=self.device)
            q = self.subspace_rank
            self.basis_u = torch.linalg.qr(torch.randn(self.n_out, q, generator=g, dtype=dtype, device=self.device))[0]
            self.basis_v = torch.linalg.qr(torch.randn(self.n_in, q, generator=g, dtype=dtype, device=self.device))[0]
            self.basis_s = torch.zeros(q, dtype=dtype, device=self.device)
        if regime == "semi_persistent":
            self.age = torch.zeros(self.num_probes, dtype=torch.long, device=self.device)
            self.yields = torch.zeros(self.num_probes, dtype=dtype, device=self.device)
        if not keyed:
            self.U, self.V = self._draw(0, _SALT_DRAW)
            self.ids = self._new_ids(self.num_probes)

    # ----------------------------------------------------------------------- properties

    @property
    def coef(self) -> float:
        """σ/√r, the factor in ΔW_k = coef · U_k V_kᵀ."""
        return self.scale / math.sqrt(self.rank)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored state: tensors held plus one int64 per stored key."""
        tensors = (self.U, self.V, self.ids, self.age, self.yields, self.basis_u, self.basis_v, self.basis_s)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None) + 3 * _KEY_BYTES

    def probe_ids(self) -> Tensor:
        """(K,) long: a serial number per current probe, new whenever a probe is (re)drawn.

        Keyed probes get ``window·K + k - 1`` (unique per window).  Used by
        :class:`~neuroprobe.probes.directional.DirectionalTrace` to store each probe once.
        """
        if self.keyed:
            return self.window * self.num_probes + torch.arange(self.num_probes, device=self.device)
        assert self.ids is not None
        return self.ids

    # ----------------------------------------------------------------------- drawing

    def _new_ids(self, n: int) -> Tensor:
        ids = torch.arange(self._next_id, self._next_id + n, device=self.device)
        self._next_id += n
        return ids

    def _draw(self, window: int, salt: int) -> tuple[Tensor, Tensor]:
        """All K probes for ``window`` from the keyed stream ``(seed, module_id, window, salt)``."""
        g = keyed_generator(self.seed, self.module_id, window, salt, device=self.device)
        K, r = self.num_probes, self.rank
        if self.regime != "learned_subspace":
            U, V = _gaussian_factors(g, K, self.n_out, self.n_in, r, self.antithetic, self.dtype, self.device)
            return stack_layout(U), stack_layout(V)
        assert self.basis_u is not None and self.basis_v is not None
        q, ks = self.subspace_rank, K - self.num_explore
        C, D = _gaussian_factors(g, ks, q, q, r, self.antithetic, self.dtype, self.device)
        Us = math.sqrt(self.n_out / q) * torch.einsum("oq,kqr->kor", self.basis_u, C)
        Vs = math.sqrt(self.n_in / q) * torch.einsum("nq,kqr->knr", self.basis_v, D)
        Ue, Ve = _gaussian_factors(g, self.num_explore, self.n_out, self.n_in, r, self.antithetic, self.dtype, self.device)
        return stack_layout(torch.cat([Us, Ue])), stack_layout(torch.cat([Vs, Ve]))

    def factors(self, window: int | None = None) -> tuple[Tensor, Tensor]:
        """Raw factors (U (K, n_out, r), V (K, n_in, r)); ΔW_k = coef · U[k-1] V[k-1]ᵀ.

        ``window``: keyed dictionaries regenerate the probes of any window (default: the current
        one); stored dictionaries only hold the current window's probes.
        """
        if window is not None and (isinstance(window, bool) or not isinstance(window, Integral)):
            raise ConfigError(f"window must be an integer or None, got {window!r}")
        if self.keyed:
            return self._draw(self.window if window is None else int(window), _SALT_DRAW)
        if window is not None and window != self.window:
            raise ConfigError(f"window={window}: a stored (keyed=False) dictionary only holds window {self.window}")
        assert self.U is not None and self.V is not None
        return self.U, self.V

    def stacked(self, window: int | None = None) -> tuple[Tensor, Tensor]:
        """Factors side by side: (U_1 … U_K) as (n_out, K·r) and (V_1 … V_K) as (n_in, K·r).

        A view (no copy) for stored probes, whose memory is kept in this layout.
        """
        U, V = self.factors(window)
        return U.permute(1, 0, 2).reshape(self.n_out, -1), V.permute(1, 0, 2).reshape(self.n_in, -1)

    def delta(self, k: int) -> Tensor:
        """Dense ΔW_k, shape (n_out, n_in); k = 0 is the null probe (zeros).  For tests/plots."""
        if isinstance(k, bool) or not isinstance(k, Integral) or not 0 <= k <= self.num_probes:
            raise ConfigError(f"k must be a probe label in 0..{self.num_probes}, got {k!r}")
        if k == 0:
            return torch.zeros(self.n_out, self.n_in, dtype=self.dtype, device=self.device)
        U, V = self.factors()
        return self.coef * U[k - 1] @ V[k - 1].T

    def dense(self) -> Tensor:
        """All K dense probes, shape (K, n_out, n_in) (label k at index k-1).  For tests/plots."""
        U, V = self.factors()
        return self.coef * torch.einsum("kor,knr->kon", U, V)

    def gram(self) -> Tensor:
        """(K, K) Frobenius inner products <ΔW_a, ΔW_b> from the factors (nothing dense formed)."""
        U, V = self.factors()
        uu = torch.einsum("aor,bos->abrs", U, U)
        vv = torch.einsum("anr,bns->abrs", V, V)
        return self.coef**2 * (uu * vv).sum((-1, -2))

    def cosine(self) -> Tensor:
        """(K, K) cosine between flattened probes, from :meth:`gram`."""
        G = self.gram()
        d = G.diagonal().clamp_min(torch.finfo(G.dtype).tiny).sqrt()
        return G / (d[:, None] * d[None, :])

    # ----------------------------------------------------------------------- per-window updates

    def update_stats(self, coefficients: Tensor) -> None:
        """Record one window's per-probe credit (K,) (signed or |·|; the magnitude is used).

        Semi-persistent: yield ← d·yield + (1−d)·|c|.  Other regimes: no state, nothing done.
        """
        c = self._check_coefficients(coefficients, "coefficients")
        if self.regime != "semi_persistent":
            return
        assert self.yields is not None
        self.yields.mul_(self.yield_decay).add_((1.0 - self.yield_decay) * c.abs())

    def _check_coefficients(self, c: Tensor, name: str) -> Tensor:
        if not isinstance(c, Tensor) or c.shape != (self.num_probes,):
            shape = tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
            raise ShapeError(f"{name} must be a tensor of shape (num_probes,) = ({self.num_probes},), got {shape}")
        return c.to(dtype=self.dtype, device=self.device)

    def stale_low_redundant(self) -> tuple[Tensor, Tensor, Tensor]:
        """Semi-persistent replacement masks (K,) bool at the current ages/yields: (stale, low, redundant).

        * stale: ``age > max_age``;
        * low-yield: ``age >= yield_warmup`` and yield < ``yield_threshold`` (or, without a
          threshold, strictly below the ``yield_quantile`` of the matured probes' yields);
        * redundant: among probes neither stale nor low-yield, a probe whose |cosine| with a
          higher-priority kept probe exceeds ``redundancy_threshold`` (priority: higher yield, then
          lower label; antithetic partners are exempt from each other).
        """
        if self.regime != "semi_persistent":
            raise ConfigError(f"replacement rules need regime='semi_persistent', got {self.regime!r}")
        assert self.age is not None and self.yields is not None
        K = self.num_probes
        stale = self.age > self.max_age
        matured = self.age >= self.yield_warmup
        low = torch.zeros_like(stale)
        if self.yield_threshold is not None:
            low = matured & (self.yields < self.yield_threshold)
        elif self.yield_quantile is not None and bool(matured.any()):
            thr = torch.quantile(self.yields[matured].double(), self.yield_quantile).to(self.yields.dtype)
            low = matured & (self.yields < thr)
        kept = ~(stale | low)
        order = torch.argsort(-self.yields, stable=True)
        priority = torch.empty(K, dtype=torch.long, device=self.device)
        priority[order] = torch.arange(K, device=self.device)  # 0 = highest priority
        labels = torch.arange(K, device=self.device)
        partner = labels ^ 1 if self.antithetic else labels
        overlap = self.cosine().abs() > self.redundancy_threshold
        dominated = (
            overlap
            & kept[:, None]
            & kept[None, :]
            & (priority[:, None] < priority[None, :])
            & (labels[:, None] != labels[None, :])
            & (partner[:, None] != labels[None, :])
        )
        redundant = dominated.any(0)
        return stale, low, redundant

    def refresh(self, window: int | None = None) -> Tensor:
        """Move to ``window`` (default: current + 1) and renew probes; returns the renewed labels.

        pure: all K probes are new (keyed: nothing is drawn until :meth:`factors` is called).
        semi_persistent: ages advance by one, then stale, low-yield and redundant probes
        (:meth:`stale_low_redundant`) are replaced by fresh random probes (antithetic: whole pairs);
        replaced probes restart with age 0 and yield 0.
        learned_subspace: new random combinations inside the current basis, new explore probes.
        Returns a (n_replaced,) long tensor of labels in 1..K, also kept in :attr:`replaced`.
        """
        if window is None:
            window = self.window + 1
        if isinstance(window, bool) or not isinstance(window, Integral):
            raise ConfigError(f"window must be an integer or None, got {window!r}")
        self.window = int(window)
        K = self.num_probes
        if self.regime != "semi_persistent":
            if not self.keyed:
                self.U, self.V = self._draw(self.window, _SALT_DRAW)
                self.ids = self._new_ids(K)
            self.replaced = torch.arange(1, K + 1, device=self.device)
            return self.replaced
        assert self.age is not None and self.yields is not None and self.U is not None and self.V is not None
        assert self.ids is not None
        self.age += 1
        stale, low, redundant = self.stale_low_redundant()
        mask = stale | low | redundant
        if self.antithetic:
            mask = mask.view(K // 2, 2).any(1, keepdim=True).expand(K // 2, 2).reshape(K)
        if bool(mask.any()):
            Un, Vn = self._draw(self.window, _SALT_REPLACE)
            self.U = stack_layout(torch.where(mask[:, None, None], Un, self.U))
            self.V = stack_layout(torch.where(mask[:, None, None], Vn, self.V))
            n = int(mask.sum())
            self.ids = self.ids.masked_scatter(mask, self._new_ids(n))
            self.age.masked_fill_(mask, 0)
            self.yields.masked_fill_(mask, 0.0)
        self.replaced = mask.nonzero().flatten() + 1
        return self.replaced

    def update_basis(self, coefficients: Tensor) -> None:
        """Learned subspace: S ← (1−β) S + β Σ_k c_k ΔW_k, truncated to rank q; basis ← top-q of S.

        ``coefficients``: (K,) signed credit of the current probes (e.g. a window's directional
        coefficients).  S is held as ``basis_u diag(basis_s) basis_vᵀ``; the update stacks the
        factors of both terms (rank ≤ q + K·r), orthonormalises each side by QR and takes the SVD
        of the small core, so no (n_out, n_in) matrix is formed.  The probes drawn so far are not
        changed; the next :meth:`refresh` draws inside the new basis.
        """
        if self.regime != "learned_subspace":
            raise ConfigError(f"update_basis needs regime='learned_subspace', got {self.regime!r}")
        c = self._check_coefficients(coefficients, "coefficients")
        assert self.basis_u is not None and self.basis_v is not None and self.basis_s is not None
        U, V = self.factors()
        K, r, q, beta = self.num_probes, self.rank, self.subspace_rank, self.basis_decay
        Ud = (U * (beta * self.coef * c)[:, None, None]).permute(1, 0, 2).reshape(self.n_out, K * r)
        Vd = V.permute(1, 0, 2).reshape(self.n_in, K * r)
        L = torch.cat([self.basis_u * ((1.0 - beta) * self.basis_s), Ud], dim=1)
        R = torch.cat([self.basis_v, Vd], dim=1)
        Ql, Rl = torch.linalg.qr(L)
        Qr, Rr = torch.linalg.qr(R)
        P, s, Th = torch.linalg.svd(Rl @ Rr.T)
        self.basis_u = Ql @ P[:, :q]
        self.basis_v = Qr @ Th[:q].T
        self.basis_s = s[:q].clone()

    # ----------------------------------------------------------------------- device / checkpoint

    def to_(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "ProbeDictionary":
        """Move/cast every stored tensor in place (floating tensors get ``dtype``); returns self."""
        dtype = dtype or self.dtype
        device = torch.device(device) if device is not None else self.device
        for name in ("U", "V", "yields", "basis_u", "basis_v", "basis_s"):
            t = getattr(self, name)
            if t is not None:
                t = t.to(dtype=dtype, device=device)
                setattr(self, name, stack_layout(t) if name in ("U", "V") else t)
        for name in ("ids", "age", "replaced"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device=device))
        self.dtype, self.device = dtype, device
        return self

    _CONFIG = (
        "n_out", "n_in", "num_probes", "rank", "scale", "regime", "antithetic", "keyed", "seed",
        "module_id", "max_age", "yield_decay", "yield_threshold", "yield_quantile", "yield_warmup",
        "redundancy_threshold", "subspace_rank", "num_explore", "basis_decay",
    )  # fmt: skip
    _STATE = ("U", "V", "ids", "age", "yields", "basis_u", "basis_v", "basis_s", "replaced")

    def state_dict(self) -> dict[str, Any]:
        """Configuration, window, id counter and cloned tensors (checkpoint/resume)."""
        d: dict[str, Any] = {"config": {k: getattr(self, k) for k in self._CONFIG}}
        d["window"], d["next_id"] = self.window, self._next_id
        for k in self._STATE:
            t = getattr(self, k)
            d[k] = None if t is None else t.detach().clone()
        return d

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the configuration must match this dictionary's."""
        if not isinstance(state, dict) or "config" not in state:
            raise ConfigError("state must be a dict from ProbeDictionary.state_dict() (missing 'config')")
        for k in self._CONFIG:
            if state["config"].get(k) != getattr(self, k):
                raise ConfigError(f"state config {k}={state['config'].get(k)!r} does not match this dictionary's {getattr(self, k)!r}")
        self.window, self._next_id = int(state["window"]), int(state["next_id"])
        for k in self._STATE:
            t = state.get(k)
            if t is not None:
                t = t.to(device=self.device, dtype=self.dtype if t.is_floating_point() else t.dtype).clone()
                if k in ("U", "V"):
                    t = stack_layout(t)
            setattr(self, k, t)

    def __repr__(self) -> str:
        return (
            f"ProbeDictionary(n_out={self.n_out}, n_in={self.n_in}, num_probes={self.num_probes}, rank={self.rank}, "
            f"scale={self.scale}, regime={self.regime!r}, antithetic={self.antithetic}, keyed={self.keyed}, window={self.window})"
        )
