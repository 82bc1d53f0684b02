"""Sparse projections between populations: connectivity, weights, spike propagation.

A projection from a population of ``n_pre`` neurons to one of ``n_post`` stores its synapses as an
edge list sorted by presynaptic neuron (CSR by pre): ``pre`` (S,), ``post`` (S,), ``rowptr``
(n_pre + 1,); weights are ``(S,)`` (shared by the batch) or ``(B, S)`` (one set per trial).

Propagation, ``I_post[b, j] = Σ_{s: post_s = j} w[b, s] z_pre[b, pre_s]``, is computed several ways
with the same result: ``"dense"`` gathers every synapse (O(B·S), no host synchronisation: the GPU
choice for per-trial weights), ``"event"`` touches only the synapses of neurons that spiked
(O(#spikes × fan-out), best for sparse activity on the CPU, as Brian2 does), ``"csr"`` multiplies
by the weight matrix stored as a ``torch.sparse_csr_tensor`` (O(B·S) in one library call, no host
synchronisation; not differentiable w.r.t. the weights, so "dense" is used instead when autograd
records). ``"auto"`` picks: on the CPU "event" while the active fraction of presynaptic entries is
below :data:`EVENT_FRACTION`, else "dense"; on other devices "dense" (no host synchronisation).
``"dense"`` and ``"event"`` add each post neuron's inputs in the order of its synapses (by pre
neuron), so they agree exactly; ``"csr"`` leaves the summation order to the sparse library
(equal to rounding).

:func:`propagate` is pure and caches nothing (``"csr"`` sorts the synapses by post neuron on every
call); :class:`~neuroprobe.spiking.SpikingNetwork` keeps these structures between steps.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["random_connectivity", "propagate", "csr_rowptr", "expand_rows", "PROPAGATION_METHODS",
           "EVENT_FRACTION"]

PROPAGATION_METHODS = ("auto", "dense", "event", "csr")
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
EVENT_FRACTION = 0.05  # "auto" on the CPU: event-driven below this fraction of active presynaptic entries


def random_connectivity(n_pre: int, n_post: int, p: float, generator: torch.Generator | None = None,
                        allow_autapses: bool = True, same_population: bool = False,
                        fixed_indegree: bool = False, out_degree: int = 0) -> tuple[Tensor, Tensor]:
    """Random synapses, each pre→post pair present with probability p (or exactly round(p·n_pre)
    inputs per post neuron when ``fixed_indegree``, or exactly ``out_degree`` distinct targets per
    pre neuron, drawn uniformly without replacement, when ``out_degree > 0``: p is then unused).
    Returns (pre, post) long tensors sorted by pre.

    ``same_population`` with ``allow_autapses=False`` removes i→i synapses.
    """
    if not 0 < p <= 1:
        raise ConfigError(f"connection probability p = {p!r}: must be in (0, 1]")
    if out_degree:
        k = int(out_degree)
        exclude = same_population and not allow_autapses
        if k < 0 or k > n_post - int(exclude):
            raise ConfigError(f"out_degree = {out_degree!r}: must be in 0 .. {n_post - int(exclude)} "
                              "(possible targets)")
        scores = torch.rand(n_pre, n_post, generator=generator)
        if exclude:
            scores.fill_diagonal_(2.0)  # never among the k smallest
        post = scores.argsort(dim=1)[:, :k]  # (n_pre, k): k distinct targets, uniformly chosen
        pre = torch.arange(n_pre)[:, None].expand(-1, k)
        pre, post = pre.reshape(-1), post.reshape(-1)
    elif fixed_indegree:
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
    start = rowptr[i]
    counts = rowptr[i + 1] - start
    k = torch.repeat_interleave(counts)  # == repeat_interleave(arange(len(i)), counts)
    # entry e of pair k sits at start[k] + (e - first entry of pair k)
    slot = torch.arange(k.numel(), device=rowptr.device) + (start - (counts.cumsum(0) - counts))[k]
    return k, b[k], slot


def padded_rows(rowptr: Tensor, values: Tensor, pad: int) -> Tensor:
    """(n_rows, D) table of CSR rows: row r holds ``values[rowptr[r]:rowptr[r+1]]`` in order,
    then ``pad`` up to D = the longest row (at least 1). One gather of a table row replaces
    :func:`expand_rows`' bookkeeping in the event-driven paths."""
    counts = rowptr[1:] - rowptr[:-1]
    D = max(int(counts.max()) if counts.numel() else 0, 1)
    pos = torch.arange(D, device=rowptr.device)
    idx = rowptr[:-1, None] + pos
    valid = pos < counts[:, None]
    if values.numel() == 0:
        return torch.full(idx.shape, pad, dtype=values.dtype, device=values.device)
    return torch.where(valid, values[idx.clamp(max=values.numel() - 1)], pad)


def csr_matmul(z_pre: Tensor, colptr: Tensor, pre_by_post: Tensor, weight_by_post: Tensor, n_post: int) -> Tensor:
    """(B, n_pre) activity -> (B, n_post) input through the weight matrix W (n_post, n_pre) given
    in CSR (rows = post neurons: ``colptr``, column indices ``pre_by_post``, values
    ``weight_by_post`` (S,) or (B, S), synapses grouped by post neuron). One sparse-dense product
    for shared weights, one per trial for (B, S) weights."""
    n_pre = z_pre.shape[1]
    z = z_pre.to(weight_by_post.dtype)
    if weight_by_post.dim() == 1:
        W = torch.sparse_csr_tensor(colptr, pre_by_post, weight_by_post, (n_post, n_pre), check_invariants=False)
        return (W @ z.T).T
    rows = [torch.sparse_csr_tensor(colptr, pre_by_post, weight_by_post[b], (n_post, n_pre), check_invariants=False)
            @ z[b] for b in range(z.shape[0])]
    return torch.stack(rows)


def _event(z_pre: Tensor, pre: Tensor, post: Tensor, weight: Tensor, n_post: int, rowptr: Tensor) -> Tensor:
    B = z_pre.shape[0]
    b, i = z_pre.nonzero(as_tuple=True)
    k, brep, syn = expand_rows(rowptr, b, i)
    amp = z_pre[b, i].to(weight.dtype)[k]
    w = weight[syn] if weight.dim() == 1 else weight[brep, syn]
    out = torch.zeros(B * n_post, dtype=weight.dtype, device=weight.device)
    return out.index_add_(0, brep * n_post + post[syn], w * amp).view(B, n_post)


def propagate(z_pre: Tensor, pre: Tensor, post: Tensor, weight: Tensor, n_post: int, rowptr: Tensor | None = None,
              method: str = "auto") -> Tensor:
    """Summed synaptic input of the post population.

    Args:
        z_pre: (B, n_pre) presynaptic spikes (or any activity).
        pre, post: (S,) synapse endpoints, sorted by pre for ``"event"``.
        weight: (S,) or (B, S).
        n_post: size of the post population.
        rowptr: (n_pre + 1,) from :func:`csr_rowptr` (needed by ``"event"``).
        method: "auto" | "dense" | "event" | "csr" (see the module docstring).

    Returns:
        (B, n_post) input currents, dtype of ``weight``.
    """
    if method not in PROPAGATION_METHODS:
        raise ConfigError(f"propagation = {method!r}: allowed {list(PROPAGATION_METHODS)}")
    B = z_pre.shape[0]
    if weight.dim() == 2 and weight.shape[0] != B:
        raise ShapeError(f"projection weight has batch {weight.shape[0]} but the spikes have batch {B}")
    if method == "auto":
        method = "dense"
        if rowptr is not None and z_pre.device.type == "cpu":  # counting is free of host syncs on the CPU
            if int(torch.count_nonzero(z_pre)) < EVENT_FRACTION * z_pre.numel():
                method = "event"
    if method == "csr" and torch.is_grad_enabled() and weight.requires_grad:
        method = "dense"  # sparse-CSR products do not propagate gradients to the values
    if method == "dense":
        out = torch.zeros(B, n_post, dtype=weight.dtype, device=weight.device)
        return out.index_add_(1, post, z_pre[:, pre].to(weight.dtype) * weight)
    if method == "csr":
        order = torch.argsort(post, stable=True)  # synapses by post neuron, pre ascending within
        return csr_matmul(z_pre, csr_rowptr(post[order], n_post), pre[order], weight[..., order], n_post)
    if rowptr is None:
        raise ConfigError("event-driven propagation needs the projection's rowptr")
    return _event(z_pre, pre, post, weight, n_post, rowptr)


def find_projection(projections, name: str):
    """The projection called ``name`` (``"<pre>-><post>"``) among ``projections`` (anything with a
    ``.name``); ConfigError listing the names otherwise."""
    for p in projections:
        if p.name == name:
            return p
    raise ConfigError(f"unknown projection {name!r}; have {[p.name for p in projections]}")
