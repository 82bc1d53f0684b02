"""Probe bundles on a spiking network: B branches, each the same network with its own weight probe.

One window (a generation) runs B branches of one spiking network as one batch: branch b uses, in
every plastic projection m, the synapse weights

    w_b = θ_m + Δ_{m, A[b]}[syn],     Δ_{m,k} = (σ/√r) U_{m,k} V_{m,k}ᵀ  (n_post, n_pre), label 0 = null,

read at the projection's synapses (post_s, pre_s). The probes come from one keyed, antithetic
:class:`~neuroprobe.probes.ProbeDictionary` per projection (regime "pure": redrawn every window,
regenerated from (seed, projection index, window), so a checkpoint holds only the window count).
The assignment is fixed: the first ``null_branches`` branches are null (A = 0, they play θ itself),
branch ``null_branches + j`` uses probe j + 1 in every projection, so consecutive perturbed
branches are ± pairs (probe 2i = −probe 2i−1). Every entry of Δ has variance σ² and the entries
are uncorrelated (E[vec Δ vec Δᵀ] = σ² I for any rank r), so this is evolution strategies with
antithetic, low-rank (EGGROLL) perturbations.

At the window's end, with R_b the branches' episode returns:

    f_b  = fitness(R)_b      "none": R_b − mean(R); "std": that divided by its std over the
                              branches; "rank": centred ranks (ties share their mean rank), in [−½, ½]
    e_m[k] = (1/B) Σ_b f_b [A[b, m] = k]                      (module_coefficients of neuroprobe.probes)
    Δθ_m   = (1/σ²) Σ_k e_m[k] Δ_{m,k}[syn]                   (S_m,)

and ``θ.grad = −Δθ`` (the rules' convention), so ``SGD(lr=η).step()`` performs θ ← θ + η Δθ. With
fitness "none", Δθ = Σ_b (R_b − R̄) δw_b / (B σ²) (δw_b the branch's synapse perturbation), whose
expectation is (1 − n_null/B) ∇_θ E[R] for small σ. As a synaptic rule it is three-factor and
local: a synapse needs its own perturbation δw_{b,s} and one broadcast number per branch, f_b.

Shapes: θ (S_m,) per projection; branch weights (B, S_m); probes at the synapses (K, S_m).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._args import check_int, check_number
from ..errors import ConfigError, NonFiniteError
from ..probes import ProbeDictionary, module_coefficients, route
from ..spiking.network import Projection

__all__ = ["SpikingProbeRule", "synapse_probes", "fitness", "FITNESS", "probe_assignment"]

FITNESS = ("none", "std", "rank")


def synapse_probes(U: Tensor, V: Tensor, coef: float, post: Tensor, pre: Tensor) -> Tensor:
    """The K probes at a projection's synapses: (K, S) with [k, s] = coef Σ_r U[k, post_s, r] V[k, pre_s, r].

    U (K, n_post, r), V (K, n_pre, r) (a ProbeDictionary's factors), post/pre (S,) long.
    """
    return coef * (U[:, post, :] * V[:, pre, :]).sum(-1)


def fitness(returns: Tensor, kind: str = "rank") -> Tensor:
    """Per-branch credit f (B,) from the returns R (B,) (float64), with mean 0 over the branches.

    "none": R − mean(R); "std": (R − mean(R)) / std(R) (R all equal: zeros); "rank": centred ranks,
    (#{R_c < R_b} + (#{R_c = R_b} − 1)/2) / (B − 1) − ½ (ties share their mean rank; B = 1: 0).
    """
    if kind not in FITNESS:
        raise ConfigError(f"rule.fitness = {kind!r}: allowed {list(FITNESS)}")
    R = torch.as_tensor(returns, dtype=torch.float64)
    if R.dim() != 1 or R.numel() == 0:
        raise ConfigError(f"returns: need shape (B,) with B >= 1, got {tuple(R.shape)}")
    if not torch.isfinite(R).all():
        raise NonFiniteError("branch returns became NaN/Inf")
    B = R.numel()
    if kind == "rank":
        if B == 1:
            return torch.zeros_like(R)
        below = (R[None, :] < R[:, None]).sum(1).to(R.dtype)  # (B, B) comparisons: B is a few hundred at most
        ties = (R[None, :] == R[:, None]).sum(1).to(R.dtype)
        return (below + (ties - 1) / 2) / (B - 1) - 0.5
    adv = R - R.mean()
    if kind == "std":
        sd = adv.std(unbiased=False) if B > 1 else adv.new_zeros(())
        return adv / sd if float(sd) > 0 else torch.zeros_like(adv)
    return adv


def probe_assignment(branches: int, null_branches: int, modules: int) -> Tensor:
    """The fixed assignment A (B, M): rows < null_branches are 0 (null), row b ≥ null_branches holds
    b − null_branches + 1 in every column (the same probe label in every projection)."""
    labels = (torch.arange(branches) - null_branches + 1).clamp_min(0)
    return labels[:, None].expand(branches, modules).contiguous()


class SpikingProbeRule:
    """θ of the plastic projections, their probe dictionaries, and the window's credit (module docstring).

    Args:
        projections: the plastic projections of a SpikingNetwork built with ``batch = branches``
            (per-branch weights (B, S)); their current row 0 is θ's initial value.
        branches: B; null_branches: unperturbed branches (B − null_branches must be even, ≥ 2).
        rank: r of every probe (at most min(n_post, n_pre) of each projection); scale: σ.
        fitness: "none" | "std" | "rank" (:func:`fitness`).
        seed: keys the probes (the run's seed).

    Per window: :meth:`branch_weights` into the projections (the agent does it), run the branches,
    :meth:`update` (writes θ.grad), optimizer step on :attr:`theta`, :meth:`end_window`.
    """

    name = "spiking_probe"

    def __init__(self, projections: list[Projection], branches: int, rank: int = 1, scale: float = 0.05,
                 fitness: str = "rank", null_branches: int = 0, seed: int = 0):
        B = check_int("rule.branches", branches, ge=2, le=1_000_000)
        n0 = check_int("rule.null_branches", null_branches, ge=0, le=B)
        K = B - n0
        if K < 2 or K % 2:
            raise ConfigError(f"rule.branches − rule.null_branches = {K}: the perturbed branches come in ± pairs, "
                              f"so it must be even and >= 2")
        rank = check_int("rule.rank", rank, ge=1)
        self.scale = check_number("rule.scale", scale, gt=0)
        if fitness not in FITNESS:
            raise ConfigError(f"rule.fitness = {fitness!r}: allowed {list(FITNESS)}")
        if not projections:
            raise ConfigError("rule 'spiking_probe' needs at least one plastic projection")
        for p in projections:
            if p.weight.dim() != 2 or p.weight.shape[0] != B:
                raise ConfigError(f"rule 'spiking_probe' needs per-branch weights ({B}, S) on {p.name} (build the "
                                  f"network with batch = rule.branches)")
            if rank > min(p.n_post, p.n_pre):
                raise ConfigError(f"rule.rank = {rank}: must be <= min(n_post, n_pre) = {min(p.n_post, p.n_pre)} "
                                  f"of projection {p.name}")
        self.projections, self.branches, self.null_branches, self.num_probes = list(projections), B, n0, K
        self.rank, self.fitness = rank, fitness
        # θ: what is learned (one set per run); the projections' (B, S) weights are θ + the branch's probe
        self.theta = [torch.nn.Parameter(p.weight.detach()[0].clone()) for p in self.projections]
        self.dictionaries = [ProbeDictionary(p.n_post, p.n_pre, num_probes=K, rank=rank, scale=self.scale,
                                             antithetic=True, keyed=True, seed=int(seed), module_id=m,
                                             dtype=torch.float64)
                             for m, p in enumerate(self.projections)]
        self.assignment = probe_assignment(B, n0, len(self.projections))
        self._probes: list[Tensor] | None = None  # the window's probes at the synapses (K, S_m), float64, CPU

    # --- per window -------------------------------------------------------------------------
    def probes(self) -> list[Tensor]:
        """The current window's probes at the synapses, one (K, S_m) float64 tensor per projection (cached)."""
        if self._probes is None:
            out = []
            for p, d in zip(self.projections, self.dictionaries):
                U, V = d.factors()
                out.append(synapse_probes(U, V, d.coef, p.post.cpu(), p.pre.cpu()))
            self._probes = out
        return self._probes

    def branch_weights(self) -> list[Tensor]:
        """(B, S_m) weights of every branch: θ + its probe (null branches: θ), dtype/device of θ."""
        out = []
        for th, D in zip(self.theta, self.probes()):
            delta = torch.cat([D.new_zeros(1, D.shape[1]), D])[self.assignment[:, 0]]  # label 0 -> zero row
            out.append(th.detach()[None, :] + delta.to(device=th.device, dtype=th.dtype))
        return out

    def load_branch_weights(self) -> None:
        """Write :meth:`branch_weights` into the projections (in place: the network notices the change)."""
        with torch.no_grad():
            for p, w in zip(self.projections, self.branch_weights()):
                p.weight.copy_(w)

    def update(self, returns: Tensor) -> list[Tensor]:
        """Credit the window's branches (returns (B,)) and write −Δθ into every θ.grad; returns Δθ per
        projection (S_m,) float64 on the CPU."""
        R = torch.as_tensor(returns, dtype=torch.float64).cpu()
        if R.shape != (self.branches,):
            raise ConfigError(f"returns: need shape ({self.branches},), got {tuple(R.shape)}")
        f = fitness(R, self.fitness)
        A = self.assignment
        coeffs = module_coefficients(route(f, A), None, A, self.num_probes)  # (1/B) Σ_b f_b [A_bm = k], (K,) each
        steps = []
        for th, c, D in zip(self.theta, coeffs, self.probes()):
            step = (c @ D) / self.scale ** 2
            th.grad = (-step).to(device=th.device, dtype=th.dtype)
            steps.append(step)
        return steps

    def end_window(self) -> None:
        """New probes for the next window."""
        for d in self.dictionaries:
            d.refresh()
        self._probes = None

    @property
    def window(self) -> int:
        return self.dictionaries[0].window

    # --- checkpoint -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"window": self.window}

    def load_state_dict(self, s: dict) -> None:
        w = int(s["window"])
        if w < 0:
            raise ConfigError(f"rule state: window = {w} must be >= 0")
        for d in self.dictionaries:
            d.refresh(w)
        self._probes = None

