"""Schedulers: the global perturbation policy that emits an assignment matrix each window.

Every scheduler emits ``A_t`` (B × M, ``torch.long``, entries in 0..K_m, 0 = null probe) from
``.next()`` under a common budget (section 6 and 8 of the probe paper):

* ``modules_per_branch`` p: in each non-null branch exactly p modules get a non-null probe (fewer
  only where the scheduler's window offers fewer, e.g. a small round-robin block), the others
  the null probe. ``None``: every module the window offers.
* ``directions`` d: in one window module m uses at most min(d, K_m) distinct non-null probes,
  a subset drawn afresh each window. ``None``: all K_m.
* ``null_fraction`` f: the first ``num_null = ceil(f · B)`` rows are all-null branches (the
  baseline the router subtracts; at least one when f > 0). Every other row has at least one
  non-null entry, so "all-null row" and "baseline branch" coincide.

Randomness comes from one ``torch.Generator`` (pass the run's own, or an int seed); the same seed
gives the same sequence of matrices. ``state_dict()`` / ``load_state_dict()`` hold the window
counter, the generator state and any running statistic, so a restored scheduler continues the
exact sequence.

Schedulers: :class:`RandomScheduler`, :class:`RoundRobinScheduler`,
:class:`BlockwiseBundledScheduler`, :class:`UncertaintyWeightedScheduler`,
:class:`DiversityScheduler`; :func:`make_scheduler` builds one by name.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .assignment import normalize_num_probes, pairwise_mutual_information

__all__ = [
    "Scheduler", "RandomScheduler", "RoundRobinScheduler", "BlockwiseBundledScheduler",
    "UncertaintyWeightedScheduler", "DiversityScheduler", "SCHEDULERS", "make_scheduler",
]


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"{name} = {value!r}: must be an int {allowed}")
    return value


def _check_blocks(blocks, M: int, name: str = "blocks") -> list[list[int]]:
    """Non-empty, pairwise disjoint lists of module indices in 0..M-1."""
    try:
        out = [list(b) for b in blocks]
    except TypeError:
        raise ConfigError(f"{name} = {blocks!r}: must be a list of lists of module indices") from None
    if not out:
        raise ConfigError(f"{name} is empty: must hold at least one block of module indices")
    seen: set[int] = set()
    for i, blk in enumerate(out):
        if not blk or any(isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < M for m in blk):
            raise ConfigError(f"{name}[{i}] = {blk!r}: must be a non-empty list of module indices in 0..{M - 1}")
        if seen.intersection(blk) or len(set(blk)) != len(blk):
            raise ConfigError(f"{name}[{i}] = {blk!r}: blocks must not share or repeat modules")
        seen.update(blk)
    return out


class Scheduler:
    """Common budget, randomness and state of all schedulers (see the module docstring).

    Args:
        num_branches: B >= 1, rows of each assignment matrix.
        num_probes: K_m >= 1 per module, as an int (needs ``num_modules``) or a list of M ints.
        num_modules: M, only needed when ``num_probes`` is an int.
        modules_per_branch: p in 1..M, or None (all the window offers).
        directions: d >= 1 distinct non-null probes per module and window, or None (all K_m).
        null_fraction: f in [0, 1); ``ceil(f · B)`` all-null rows, which must leave >= 1 row.
        seed: an int, a ``torch.Generator`` (used and advanced in place), or None (a fresh
            generator with torch's fixed default seed).
    """

    name = "base"

    def __init__(self, num_branches: int, num_probes: int | Sequence[int], num_modules: int | None = None, *,
                 modules_per_branch: int | None = None, directions: int | None = None,
                 null_fraction: float = 0.0, seed: int | torch.Generator | None = None):
        self.num_branches = _check_int(num_branches, "num_branches", 1)
        if num_modules is not None:
            _check_int(num_modules, "num_modules", 1)
        self.num_probes = normalize_num_probes(num_probes, num_modules)
        M = len(self.num_probes)
        for m, k in enumerate(self.num_probes):
            if k < 1:
                raise ConfigError(f"num_probes[{m}] = {k}: a scheduled module needs >= 1 non-null probe")
        self.num_modules = M
        self.modules_per_branch = M if modules_per_branch is None else _check_int(
            modules_per_branch, "modules_per_branch", 1, M)
        self.directions = None if directions is None else _check_int(directions, "directions", 1)
        if isinstance(null_fraction, bool) or not isinstance(null_fraction, (int, float)) \
                or not 0.0 <= null_fraction < 1.0:
            raise ConfigError(f"null_fraction = {null_fraction!r}: must be a number in [0, 1)")
        self.null_fraction = float(null_fraction)
        self.num_null = math.ceil(self.null_fraction * self.num_branches - 1e-12) if null_fraction > 0 else 0
        if self.num_null >= self.num_branches:
            raise ConfigError(f"null_fraction = {null_fraction!r} leaves no perturbed branch out of "
                              f"num_branches = {num_branches}: lower it or add branches")
        if isinstance(seed, torch.Generator):
            self.generator = seed
        elif seed is None:
            self.generator = torch.Generator()
        else:
            self.generator = torch.Generator().manual_seed(_check_int(seed, "seed", 0))
        self.window = 0
        self._K = torch.tensor(self.num_probes, dtype=torch.long)
        d = self._K if self.directions is None else self._K.clamp_max(self.directions)
        self._d = d  # (M,) effective number of directions per module

    # ----------------------------------------------------------------- public
    @property
    def num_active(self) -> int:
        """Number of rows that are not baseline (all-null) branches."""
        return self.num_branches - self.num_null

    def next(self) -> Tensor:
        """The assignment matrix of the next window, (B, M) long."""
        A = torch.zeros(self.num_branches, self.num_modules, dtype=torch.long)
        A[self.num_null:] = self._draw(self.num_active)
        self.window += 1
        return A

    def __iter__(self):
        return self

    def __next__(self) -> Tensor:
        return self.next()

    def state_dict(self) -> dict:
        return {"window": self.window, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.window = int(state["window"])
        self.generator.set_state(state["generator"])

    # ----------------------------------------------------------------- helpers
    def _draw(self, n: int) -> Tensor:  # (n, M) long, every row with >= 1 non-null entry
        raise NotImplementedError

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=self.generator, dtype=torch.float64)

    def _direction_subsets(self) -> Tensor:
        """(M, Kmax) long: row m starts with this window's d_m allowed probes (values 1..K_m)."""
        M, Kmax = self.num_modules, max(self.num_probes)
        keys = self._rand(M, Kmax)
        keys[torch.arange(Kmax).unsqueeze(0) >= self._K.unsqueeze(1)] = 2.0  # invalid probes last
        return keys.argsort(dim=1) + 1

    def _random_mask(self, n: int, p: int, allowed: Tensor | None = None) -> Tensor:
        """(n, M) bool with exactly p True per row, chosen uniformly among ``allowed`` modules."""
        keys = self._rand(n, self.num_modules)
        if allowed is not None:
            keys[:, ~allowed] = -1.0
        idx = keys.topk(p, dim=1).indices
        return torch.zeros(n, self.num_modules, dtype=torch.bool).scatter_(1, idx, True)

    def _fill_uniform(self, mask: Tensor, subsets: Tensor | None = None, u: Tensor | None = None) -> Tensor:
        """Each True entry of ``mask`` (n, M) gets a probe uniform over its module's allowed set.

        ``u`` (n, M) in [0, 1) may be given to share draws between modules (tied probes).
        """
        S = self._direction_subsets() if subsets is None else subsets
        n, M = mask.shape
        if u is None:
            u = self._rand(n, M)
        slot = (u * self._d).floor().long().clamp_max(self._d - 1)
        vals = S[torch.arange(M).expand(n, M), slot]
        return torch.where(mask, vals, torch.zeros_like(vals))

    def _fill_balanced(self, mask: Tensor, subsets: Tensor | None = None) -> Tensor:
        """Like ``_fill_uniform`` but each column uses its allowed probes as evenly as possible.

        The active entries of column m, in random order, get the probes cyclically from a random
        starting point, so their counts differ by at most one (maximal entropy and coverage).
        """
        S = self._direction_subsets() if subsets is None else subsets
        n, M = mask.shape
        keys = self._rand(n, M)
        keys[~mask] = 2.0  # inactive entries ranked last
        order = keys.argsort(dim=0)
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(n).unsqueeze(1).expand(n, M))
        offset = (self._rand(M) * self._d).floor().long()
        slot = (rank + offset) % self._d
        vals = S[torch.arange(M).expand(n, M), slot]
        return torch.where(mask, vals, torch.zeros_like(vals))


class RandomScheduler(Scheduler):
    """Uniform random design: each non-null branch varies ``modules_per_branch`` modules chosen
    uniformly, each with a probe drawn uniformly from the window's allowed directions."""

    name = "random"

    def _draw(self, n: int) -> Tensor:
        return self._fill_uniform(self._random_mask(n, self.modules_per_branch))


class RoundRobinScheduler(Scheduler):
    """Varies one module (or one block of modules) per window, cycling in order.

    Window t varies block ``blocks[t mod len(blocks)]`` (default: each module its own block), so
    after ``len(blocks)`` windows (M for single modules) every module in a block has received
    non-null probes, provided ``num_active · p >= len(block)``. Within a window each non-null
    branch varies min(p, len(block)) modules of the block, spread cyclically over the branches
    so that every module of the block is used, with balanced probe counts per column.

    Extra args: ``blocks``: list of disjoint lists of module indices (modules in no block are
    never varied).
    """

    name = "round_robin"

    def __init__(self, num_branches: int, num_probes: int | Sequence[int], num_modules: int | None = None, *,
                 blocks: Sequence[Sequence[int]] | None = None, **kw):
        super().__init__(num_branches, num_probes, num_modules, **kw)
        M = self.num_modules
        self.blocks = [[m] for m in range(M)] if blocks is None else _check_blocks(blocks, M)
        self._explicit_p = kw.get("modules_per_branch") is not None

    def current_block(self) -> list[int]:
        """The module indices the next call to ``next()`` will vary."""
        return self.blocks[self.window % len(self.blocks)]

    def _draw(self, n: int) -> Tensor:
        block = torch.tensor(self.current_block(), dtype=torch.long)
        nb = block.numel()
        p = min(self.modules_per_branch, nb) if self._explicit_p else nb
        perm = block[torch.randperm(nb, generator=self.generator)]
        start = int(torch.randint(nb, (1,), generator=self.generator))
        pos = (torch.arange(n).unsqueeze(1) * p + torch.arange(p).unsqueeze(0) + start) % nb  # (n, p)
        mask = torch.zeros(n, self.num_modules, dtype=torch.bool).scatter_(1, perm[pos], True)
        return self._fill_balanced(mask)


class BlockwiseBundledScheduler(Scheduler):
    """Bundled probing: the modules of a block always vary together, in the same branches.

    Each non-null branch picks ``blocks_per_branch`` blocks uniformly without replacement and
    gives every module of those blocks a non-null probe (a joint hypothesis about how the block
    moves together). With ``tie_probes=True`` the modules of a block also share the probe slot
    (the same position in their allowed subsets), the most entangled design.

    Extra args: ``blocks`` (list of disjoint lists of module indices; default one block per
    module), ``blocks_per_branch`` (1..len(blocks)), ``tie_probes``. ``modules_per_branch``,
    when given, is checked as an upper bound: the ``blocks_per_branch`` largest blocks must fit.
    """

    name = "blockwise"

    def __init__(self, num_branches: int, num_probes: int | Sequence[int], num_modules: int | None = None, *,
                 blocks: Sequence[Sequence[int]] | None = None, blocks_per_branch: int = 1,
                 tie_probes: bool = False, **kw):
        super().__init__(num_branches, num_probes, num_modules, **kw)
        M = self.num_modules
        self.blocks = [[m] for m in range(M)] if blocks is None else _check_blocks(blocks, M)
        nb = len(self.blocks)
        self.blocks_per_branch = _check_int(blocks_per_branch, "blocks_per_branch", 1, nb)
        self.tie_probes = bool(tie_probes)
        largest = sum(sorted((len(b) for b in self.blocks), reverse=True)[: self.blocks_per_branch])
        if kw.get("modules_per_branch") is not None and largest > self.modules_per_branch:
            raise ConfigError(f"modules_per_branch = {self.modules_per_branch} is below the {largest} modules of the "
                              f"{self.blocks_per_branch} largest blocks: raise it or use smaller blocks")
        self._membership = torch.zeros(nb, M, dtype=torch.float64)  # (nb, M) 1 where module in block
        self._block_of = torch.full((M,), nb, dtype=torch.long)       # nb = "no block"
        for i, blk in enumerate(self.blocks):
            self._membership[i, blk] = 1.0
            self._block_of[blk] = i

    def _draw(self, n: int) -> Tensor:
        nb = len(self.blocks)
        keys = self._rand(n, nb)
        chosen = torch.zeros(n, nb, dtype=torch.float64).scatter_(
            1, keys.topk(self.blocks_per_branch, dim=1).indices, 1.0)
        mask = (chosen @ self._membership) > 0
        u = None
        if self.tie_probes:
            ub = torch.cat([self._rand(n, nb), torch.zeros(n, 1, dtype=torch.float64)], dim=1)
            u = ub[:, self._block_of]  # one uniform per (branch, block), shared by its modules
        return self._fill_uniform(mask, u=u)


class UncertaintyWeightedScheduler(Scheduler):
    """Probes modules in proportion to a running statistic of their recent traces.

    ``observe(stats)`` with stats (M,) >= 0 (e.g. per-module trace magnitude or credit variance)
    updates s ← (1 − ρ) s + ρ · stats (s starts at ``init``). Each non-null branch then draws
    ``modules_per_branch`` modules without replacement with probabilities

        π_m = (1 − ε) · s_m^γ / Σ_j s_j^γ + ε / M,

    ε = ``exploration`` keeping every module alive (uniform when all s are 0), γ = ``power``.
    Probes are uniform over the window's allowed directions.
    """

    name = "uncertainty"

    def __init__(self, num_branches: int, num_probes: int | Sequence[int], num_modules: int | None = None, *,
                 smoothing: float = 0.1, exploration: float = 0.1, power: float = 1.0, init: float = 1.0, **kw):
        super().__init__(num_branches, num_probes, num_modules, **kw)
        for key, val, ok, allowed in (("smoothing", smoothing, lambda v: 0 < v <= 1, "in (0, 1]"),
                                      ("exploration", exploration, lambda v: 0 <= v <= 1, "in [0, 1]"),
                                      ("power", power, lambda v: v >= 0, ">= 0"),
                                      ("init", init, lambda v: v >= 0, ">= 0")):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or not ok(val):
                raise ConfigError(f"{key} = {val!r}: must be a number {allowed}")
        self.smoothing, self.exploration, self.power = float(smoothing), float(exploration), float(power)
        self.statistic = torch.full((self.num_modules,), float(init), dtype=torch.float64)

    def observe(self, stats: Tensor) -> None:
        """Fold in one window's per-module statistic, stats (M,) finite and >= 0."""
        s = torch.as_tensor(stats, dtype=torch.float64).detach().cpu()
        if s.shape != (self.num_modules,):
            raise ShapeError(f"stats has shape {tuple(s.shape)}: must be ({self.num_modules},), one per module")
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ConfigError("stats must be finite and >= 0 (a magnitude or variance per module)")
        self.statistic = (1 - self.smoothing) * self.statistic + self.smoothing * s

    def probabilities(self) -> Tensor:
        """π (M,) float64, the per-draw module selection probabilities (sum to 1)."""
        w = self.statistic.pow(self.power)
        M = self.num_modules
        base = w / w.sum() if float(w.sum()) > 0 else torch.full((M,), 1.0 / M, dtype=torch.float64)
        return (1 - self.exploration) * base + self.exploration / M

    def _draw(self, n: int) -> Tensor:
        # tiny floor: without replacement, p modules must be drawable even where π_m = 0
        p = self.probabilities().clamp_min(1e-12)
        idx = torch.multinomial(p.expand(n, -1), self.modules_per_branch, replacement=False, generator=self.generator)
        mask = torch.zeros(n, self.num_modules, dtype=torch.bool).scatter_(1, idx, True)
        return self._fill_uniform(mask)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "statistic": self.statistic.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.statistic = state["statistic"].clone().to(torch.float64)


class DiversityScheduler(Scheduler):
    """Diversity-seeking design with an entanglement penalty.

    1. Builds ``candidates`` designs with the same budget, each maximally balanced: every column
       uses its allowed probes as evenly as possible (maximal entropy and coverage). When every
       module varies in every branch (p = M) half of them are Latin-square-like: with the row
       index i = i₁·d_m + i₀, module m gets slot (i₀ + c_m·i₁) mod d_m for distinct multipliers
       c_m, which makes pairs of modules exactly independent when d is prime and d² divides the
       number of perturbed rows; when p < M half of them spread the active modules cyclically
       over the branches, so every module is varied equally often.
    2. Among the candidates that vary the most modules and then cover the most (module, probe)
       pairs (equal coverage: an unvaried module would trivially have zero MI), keeps the one with the lowest entanglement
       (mean off-diagonal mutual information as ``assignment_stats`` measures it, null rows
       included; one batched bincount).
    3. Refines it for ``refine`` steps: each step proposes ``proposals`` swaps of two non-null
       entries of one column (cycling over modules) and keeps the swap that lowers that column's
       total MI with the others most. A swap preserves every column's distribution and every
       row's set of varied modules, so the budget, entropy and coverage stay unchanged.

    Extra args: ``candidates`` >= 1, ``refine`` >= 0 (default 2·M), ``proposals`` >= 1.
    ``last_entanglement`` holds the emitted design's mean off-diagonal MI.
    """

    name = "diversity"

    def __init__(self, num_branches: int, num_probes: int | Sequence[int], num_modules: int | None = None, *,
                 candidates: int = 16, refine: int | None = None, proposals: int = 32, **kw):
        super().__init__(num_branches, num_probes, num_modules, **kw)
        self.candidates = _check_int(candidates, "candidates", 1)
        self.refine = 2 * self.num_modules if refine is None else _check_int(refine, "refine", 0)
        self.proposals = _check_int(proposals, "proposals", 1)
        self.last_entanglement: float | None = None

    def _cyclic_mask(self, n: int, p: int) -> Tensor:
        M = self.num_modules
        cols = torch.randperm(M, generator=self.generator)
        rows = torch.randperm(n, generator=self.generator)
        pos = (rows.unsqueeze(1) * p + torch.arange(p).unsqueeze(0)) % M
        return torch.zeros(n, M, dtype=torch.bool).scatter_(1, cols[pos], True)

    def _latin(self, n: int, S: Tensor) -> Tensor:
        M, d = self.num_modules, self._d
        i = torch.randperm(n, generator=self.generator).unsqueeze(1)          # (n, 1)
        c = torch.randperm(M, generator=self.generator) % d                   # multipliers (M,)
        off = (self._rand(M) * d).floor().long()
        slot = (i % d + c * (i // d) + off) % d                               # (n, M)
        return S[torch.arange(M).expand(n, M), slot]

    def _column_mi(self, cols: Tensor, A: Tensor, L: int) -> Tensor:
        """MI (nats) of each proposed column cols (P, B) with every column of A (B, M): (P, M)."""
        P, B = cols.shape
        M = A.shape[1]
        idx = ((torch.arange(P).view(P, 1, 1) * M + torch.arange(M).view(1, 1, M)) * (L * L)
               + cols.unsqueeze(2) * L + A.unsqueeze(0))
        joint = torch.bincount(idx.reshape(-1), minlength=P * M * L * L).view(P, M, L, L).to(torch.float64) / B
        pi, pj = joint.sum(3, keepdim=True), joint.sum(2, keepdim=True)
        t = torch.where(joint > 0, joint * torch.log((joint / (pi * pj).clamp_min(1e-300)).clamp_min(1e-300)),
                        torch.zeros_like(joint))
        return t.sum(dim=(2, 3))

    def _draw(self, n: int) -> Tensor:
        M, p, L = self.num_modules, self.modules_per_branch, max(self.num_probes) + 1
        S = self._direction_subsets()  # one subset per window, shared by all candidates
        cands = []
        for c in range(self.candidates):
            if p == M:
                cands.append(self._latin(n, S) if c % 2 == 0 else
                             self._fill_balanced(torch.ones(n, M, dtype=torch.bool), S))
            else:
                mask = self._cyclic_mask(n, p) if c % 2 == 0 else self._random_mask(n, p)
                cands.append(self._fill_balanced(mask, S))
        designs = torch.zeros(self.candidates, self.num_branches, M, dtype=torch.long)
        designs[:, self.num_null:] = torch.stack(cands)
        off = ~torch.eye(M, dtype=torch.bool)
        if M == 1:
            self.last_entanglement = 0.0
            return cands[0]
        score = pairwise_mutual_information(designs, L)[:, off].mean(dim=1)
        # equal coverage first: a constant (unvaried) column has zero MI, so minimising MI alone
        # would reward dropping modules; only the candidates covering the most probes compete
        C = self.candidates
        hist = torch.bincount((designs + torch.arange(C * M).view(C, 1, M) * L).reshape(-1), minlength=C * M * L)
        hist = hist.view(C, M, L) > 0
        varied = (hist.sum(dim=2) > 1).sum(dim=1)           # modules with within-batch contrast
        covered = varied * (M * L) + hist[:, :, 1:].sum(dim=(1, 2))  # then (module, probe) pairs
        score = torch.where(covered == covered.max(), score, torch.full_like(score, math.inf))
        A = designs[int(score.argmin())].clone()
        for step in range(self.refine):
            m = step % M
            act = (A[:, m] != 0).nonzero().flatten()
            if act.numel() < 2:
                continue
            pick = act[torch.randint(act.numel(), (self.proposals, 2), generator=self.generator)]
            cols = A[:, m].expand(self.proposals + 1, -1).clone()   # proposal 0: no swap
            r = torch.arange(1, self.proposals + 1)
            vi, vj = cols[r, pick[:, 0]], cols[r, pick[:, 1]]
            cols[r, pick[:, 0]], cols[r, pick[:, 1]] = vj, vi
            others = torch.ones(M, dtype=torch.bool)
            others[m] = False
            total = self._column_mi(cols, A, L)[:, others].sum(dim=1)
            best = int(total.argmin())
            if best != 0 and float(total[best]) < float(total[0]) - 1e-12:
                A[:, m] = cols[best]
        self.last_entanglement = float(pairwise_mutual_information(A, L)[off].mean())
        return A[self.num_null:]


SCHEDULERS: dict[str, type[Scheduler]] = {
    "random": RandomScheduler,
    "round_robin": RoundRobinScheduler,
    "blockwise": BlockwiseBundledScheduler,
    "uncertainty": UncertaintyWeightedScheduler,
    "diversity": DiversityScheduler,
}


def make_scheduler(name: str, **kw) -> Scheduler:
    """Build a scheduler by name ("random", "round_robin", "blockwise", "uncertainty",
    "diversity"); keyword arguments go to its constructor."""
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler = {name!r}: allowed {list(SCHEDULERS)}")
    return SCHEDULERS[name](**kw)
