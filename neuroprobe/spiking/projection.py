"""Sparse projections between populations: connectivity, weights, spike propagation.

A projection from a population of ``n_pre`` neurons to one of ``n_post`` stores its synapses as an
edge list sorted by presynaptic neuron (CSR by pre): ``pre`` (S,), ``post`` (S,), ``rowptr``
(n_pre + 1,); weights are ``(S,)`` (shared by the batch) or ``(B, S)`` (one set per trial).

Propagation, ``I_post[b, j] = Σ_{s: post_s = j} w[b, s] z_pre[b, pre_s]``, is computed two ways
with the same result: ``"dense"`` gathers every synapse (O(B·S), best when many neurons spike) and
``"event"`` touches only the synapses of neurons that spiked (O(#spikes × fan-out), best for sparse
activity, as Brian2 does); ``"auto"`` picks by the fraction of active presynaptic neurons.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["random_connectivity", "propagate", "csr_rowptr", "expand_rows", "PROPAGATION_METHODS"]

PROPAGATION_METHODS = ("auto", "dense", "event")


def random_connectivity(n_pre: int, n_post: int, p: float, generator: torch.Generator | None = None,
                        allow_autapses: bool = True, same_population: bool = False,
                        fixed_indegree: bool = False) -> tuple[Tensor, Tensor]:
    """Random synapses, each pre→post pair present with probability p (or exactly round(p·n_pre)
    inputs per post neuron when ``fixed_indegree``). Returns (pre, post) long tensors sorted by pre.

    ``same_population`` with ``allow_autapses=False`` removes i→i synapses.
    """
    if not 0 < p <= 1:
        raise ConfigError(f"connection probability p = {p!r}: must be in (0, 1]")
    if fixed_indegree:
        k = max(1, int(round(p * n_pre)))
        scores = torch.rand(n_post, n_pre, generator=generator)
        if same_population and not allow_autapses:
            scores.fill_diagonal_(2.0)  # never among the k smallest
        pre = scores.argsort(dim=1)[:, :k]  # (n_post, k)
        post = torch.arange(n_post)[:, None].expand(-1, k)
        pre, post = pre.reshape(-1), post.reshape(-1)
    else:
        mask = torch.rand(n_pre, n_post, generator=generator) < p
        if same_population and not allow_autapses:
            mask.fill_diagonal_(False)
        pre, post = mask.nonzero(as_tuple=True)
    order = torch.argsort(pre * n_post + post)
    return pre[order].contiguous(), post[order].contiguous()


def csr_rowptr(pre: Tensor, n_pre: int) -> Tensor:
    """Row pointers of an edge list sorted by pre: synapses of neuron i are rowptr[i]:rowptr[i+1]."""
    counts = torch.bincount(pre, minlength=n_pre)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def expand_rows(rowptr: Tensor, b: Tensor, i: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All entries of CSR rows ``i`` (one row per (b, i) pair): returns (k, brep, slot) with k the
    index of the pair each entry comes from, brep = b[k], and slot the entry's position in the
    edge arrays. O(number of entries); used for event-driven propagation and STDP."""
    start, counts = rowptr[i], rowptr[i + 1] - rowptr[i]
    total = int(counts.sum()) if counts.numel() else 0
    k = torch.repeat_interleave(torch.arange(counts.numel(), device=rowptr.device), counts)
    if total == 0:
        return k, b[:0], k
    slot = torch.arange(total, device=rowptr.device) + torch.repeat_interleave(start - (counts.cumsum(0) - counts),
                                                                               counts)
    return k, b[k], slot


def propagate(z_pre: Tensor, pre: Tensor, post: Tensor, weight: Tensor, n_post: int, rowptr: Tensor | None = None,
              method: str = "auto") -> Tensor:
    """Summed synaptic input of the post population.

    Args:
        z_pre: (B, n_pre) presynaptic spikes (or any activity).
        pre, post: (S,) synapse endpoints, sorted by pre for ``"event"``.
        weight: (S,) or (B, S).
        n_post: size of the post population.
        rowptr: (n_pre + 1,) from :func:`csr_rowptr` (needed by ``"event"``).
        method: "auto" | "dense" | "event".

    Returns:
        (B, n_post) input currents, dtype of ``weight``.
    """
    if method not in PROPAGATION_METHODS:
        raise ConfigError(f"propagation = {method!r}: allowed {list(PROPAGATION_METHODS)}")
    B = z_pre.shape[0]
    if weight.dim() == 2 and weight.shape[0] != B:
        raise ShapeError(f"projection weight has batch {weight.shape[0]} but the spikes have batch {B}")
    out = torch.zeros(B, n_post, dtype=weight.dtype, device=weight.device)
    if method == "auto":
        method = "event" if rowptr is not None and bool((z_pre != 0).float().mean() < 0.05) else "dense"
    if method == "dense":
        return out.index_add_(1, post, z_pre[:, pre].to(weight.dtype) * weight)
    if rowptr is None:
        raise ConfigError("event-driven propagation needs the projection's rowptr")
    b, i = z_pre.nonzero(as_tuple=True)
    if b.numel() == 0:
        return out
    k, brep, syn = expand_rows(rowptr, b, i)
    if syn.numel() == 0:
        return out
    amp = z_pre[b, i].to(weight.dtype)[k]
    w = weight[syn] if weight.dim() == 1 else weight[brep, syn]
    return out.view(-1).index_add_(0, brep * n_post + post[syn], w * amp).view(B, n_post)
