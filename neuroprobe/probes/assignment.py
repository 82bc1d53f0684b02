"""Statistics of an assignment matrix: diversity per module, entanglement between modules.

An assignment matrix ``A`` (B × M, ``torch.long``) says which probe each of the M perturbable
modules uses in each of the B counterfactual branches: ``A[b, m] ∈ {0, …, K_m}``, 0 being the
null probe. Following section 4.3 of the probe paper, per module m

    p_m(k) = (1/B) Σ_b 1[A_bm = k]                       (empirical distribution)
    support_m = #{k : p_m(k) > 0},   H_m = −Σ_k p_m(k) log p_m(k)

and per pair of modules (i, j) the entanglement

    I(i; j) = Σ_{k,l} p_ij(k, l) log( p_ij(k, l) / (p_i(k) p_j(l)) ),   I(i; i) = H_i.

All logarithms are natural (nats). The joint histograms of all M² pairs are computed with one
``torch.bincount`` over combined indices ``pair · L² + A_bi · L + A_bj`` (L = max_m K_m + 1), so
no Python loop runs over branches or pairs (rows of pairs are chunked only when M² L² is huge).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["assignment_stats", "check_assignment", "normalize_num_probes", "pairwise_mutual_information"]

# Above this many histogram cells per bincount the pairs are processed in chunks of rows.
_MAX_CELLS = 1 << 24


def normalize_num_probes(num_probes: int | Sequence[int], num_modules: int | None = None,
                         name: str = "num_probes") -> list[int]:
    """Return K as a list of M ints (>= 0) from an int (needs ``num_modules``) or a sequence."""
    if isinstance(num_probes, bool):
        raise ConfigError(f"{name} = {num_probes!r}: must be an int >= 0 or a list of such ints")
    if isinstance(num_probes, int):
        if num_probes < 0:
            raise ConfigError(f"{name} = {num_probes!r}: must be >= 0")
        if num_modules is None:
            raise ConfigError(f"{name} = {num_probes!r} is a single int: num_modules must be given too")
        return [num_probes] * int(num_modules)
    try:
        ks = list(num_probes)
    except TypeError:
        raise ConfigError(f"{name} = {num_probes!r}: must be an int >= 0 or a list of such ints") from None
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in ks):
        raise ConfigError(f"{name} = {num_probes!r}: must be a non-empty list of ints >= 0")
    if num_modules is not None and len(ks) != num_modules:
        raise ConfigError(f"{name} has {len(ks)} entries: must have one per module ({num_modules})")
    return ks


def check_assignment(A: Tensor, num_probes: int | Sequence[int] | None = None,
                     name: str = "A") -> tuple[Tensor, list[int]]:
    """Validate an assignment matrix and return it as ``torch.long`` with K as a list of M ints.

    A: (B, M) integer tensor, B >= 1, M >= 1, entries in 0..K_m. With ``num_probes=None``,
    K_m is the largest value in column m.
    """
    if not isinstance(A, Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor of probe indices, got {type(A).__name__}")
    if A.dim() != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise ShapeError(f"{name} has shape {tuple(A.shape)}: must be (B, M) with B >= 1 and M >= 1")
    if A.dtype.is_floating_point or A.dtype.is_complex or A.dtype == torch.bool:
        raise ConfigError(f"{name} has dtype {A.dtype}: must be an integer tensor (torch.long)")
    A = A.long()
    M = A.shape[1]
    colmax = A.max(dim=0).values
    if bool((A < 0).any()):
        raise ConfigError(f"{name} has negative entries: allowed values are 0 (null probe) .. K_m")
    if num_probes is None:
        ks = [int(k) for k in colmax.tolist()]
    else:
        ks = normalize_num_probes(num_probes, M)
        bad = (colmax > torch.tensor(ks, dtype=torch.long, device=A.device)).nonzero().flatten()
        if bad.numel():
            m = int(bad[0])
            raise ConfigError(f"{name}[:, {m}] has value {int(colmax[m])}: allowed 0..{ks[m]} (num_probes)")
    return A, ks


def pairwise_mutual_information(A: Tensor, levels: int) -> Tensor:
    """Empirical mutual information (nats) between all pairs of columns, batched over designs.

    A: (C, B, M) or (B, M) long, entries in 0..levels-1. Returns (C, M, M) or (M, M) float64;
    the diagonal holds each column's entropy.
    """
    squeeze = A.dim() == 2
    if squeeze:
        A = A.unsqueeze(0)
    C, B, M = A.shape
    L = int(levels)
    cells_per_row = M * L * L
    rows = max(1, _MAX_CELLS // max(1, C * cells_per_row))
    out = torch.empty(C, M, M, dtype=torch.float64, device=A.device)
    cand = torch.arange(C, device=A.device).view(C, 1, 1, 1)
    jj = torch.arange(M, device=A.device).view(1, 1, 1, M)
    for i0 in range(0, M, rows):
        i1 = min(M, i0 + rows)
        R = i1 - i0
        ii = torch.arange(R, device=A.device).view(1, 1, R, 1)
        # combined index of (candidate, pair, value_i, value_j) -> one bincount for all pairs
        idx = ((cand * R + ii) * M + jj) * (L * L) + A[:, :, i0:i1, None] * L + A[:, :, None, :]
        joint = torch.bincount(idx.reshape(-1), minlength=C * R * M * L * L)
        joint = joint.view(C, R, M, L, L).to(torch.float64) / B
        pi = joint.sum(dim=4, keepdim=True)   # (C, R, M, L, 1): marginal of column i
        pj = joint.sum(dim=3, keepdim=True)   # (C, R, M, 1, L): marginal of column j
        ratio = joint / (pi * pj).clamp_min(1e-300)
        terms = torch.where(joint > 0, joint * torch.log(ratio.clamp_min(1e-300)), torch.zeros_like(joint))
        out[:, i0:i1] = terms.sum(dim=(3, 4))
    out = out.clamp_min(0.0)  # rounding can leave -1e-17 where the true value is 0
    return out[0] if squeeze else out


def assignment_stats(A: Tensor, num_probes: int | Sequence[int] | None = None) -> dict:
    """Diversity and entanglement statistics of an assignment matrix (natural log).

    Args:
        A: (B, M) long, entries in 0..K_m (0 = null probe).
        num_probes: K as an int (same for all modules) or a list of M ints; None infers
            K_m = max(A[:, m]) (then ``coverage`` only counts probes up to the largest seen).

    Returns a dict with
        per module (tensors):
            ``distribution``: list of M float64 tensors, the m-th of shape (K_m + 1,), p_m(k);
            ``support`` (M,) long: number of distinct values (null included) in column m;
            ``entropy`` (M,) float64: H_m in nats (0 for a constant column);
            ``null_fraction`` (M,) float64: fraction of branches with A[b, m] = 0;
            ``coverage`` (M,) float64: fraction of module m's K_m non-null probes that appear
            (0 where K_m = 0);
            ``varied`` (M,) bool: support > 1 (the column carries within-batch contrast);
        per pair: ``mutual_information`` (M, M) float64, symmetric, diagonal = entropy;
        batch summary (Python numbers):
            ``num_branches`` B, ``num_modules`` M, ``num_probes`` list of K_m,
            ``mean_entropy``, ``entanglement`` (mean off-diagonal MI, 0 when M = 1),
            ``max_entanglement`` (largest off-diagonal MI), ``total_coverage``
            (non-null probes used / Σ K_m, 0 when Σ K_m = 0), ``all_null_fraction`` (fraction
            of rows that are all null, the baseline branches), ``distinct_bundles`` (number of
            distinct rows).
    """
    A, ks = check_assignment(A, num_probes)
    B, M = A.shape
    L = max(ks) + 1
    dev = A.device
    # per-module histograms in one bincount: index m·L + A_bm
    offs = torch.arange(M, device=dev) * L
    counts = torch.bincount((A + offs).reshape(-1), minlength=M * L).view(M, L)
    P = counts.to(torch.float64) / B
    K = torch.tensor(ks, dtype=torch.long, device=dev)
    support = (counts > 0).sum(dim=1)
    entropy = -torch.where(P > 0, P * torch.log(P.clamp_min(1e-300)), torch.zeros_like(P)).sum(dim=1)
    used_nonnull = (counts[:, 1:] > 0).sum(dim=1)
    coverage = torch.where(K > 0, used_nonnull.to(torch.float64) / K.clamp_min(1).to(torch.float64),
                           torch.zeros(M, dtype=torch.float64, device=dev))
    mi = pairwise_mutual_information(A, L)
    mi = 0.5 * (mi + mi.T)
    mi.diagonal().copy_(entropy)
    off = ~torch.eye(M, dtype=torch.bool, device=dev)
    total_k = int(K.sum())
    return {
        "num_branches": B,
        "num_modules": M,
        "num_probes": ks,
        "distribution": [P[m, : ks[m] + 1].clone() for m in range(M)],
        "support": support,
        "entropy": entropy,
        "null_fraction": P[:, 0].clone(),
        "coverage": coverage,
        "varied": support > 1,
        "mutual_information": mi,
        "mean_entropy": float(entropy.mean()),
        "entanglement": float(mi[off].mean()) if M > 1 else 0.0,
        "max_entanglement": float(mi[off].max()) if M > 1 else 0.0,
        "total_coverage": float(used_nonnull.sum()) / total_k if total_k > 0 else 0.0,
        "all_null_fraction": float((A == 0).all(dim=1).to(torch.float64).mean()),
        "distinct_bundles": int(torch.unique(A, dim=0).shape[0]),
    }
