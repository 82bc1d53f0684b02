"""SpikingNetwork: LIF populations and sparse projections on the torch engine (CPU or GPU).

A thin stateful shell over pure functions: :func:`~neuroprobe.neurons.lif.lif_step` (norse's
functional steps when installed), :func:`~neuroprobe.spiking.projection.propagate`, and the input
generators. State is returned, never hidden (norse's style): ``state = net.init_state(B)``;
``spikes, state = net.step(state, inputs)``.

Time step semantics (what the Brian2 export reproduces): at step t every projection delivers the
spikes its pre population emitted at step t − 1 (one ``dt`` of synaptic delay) as a current jump
into the post population's LIF step; input populations ("input": spikes given by the caller,
"poisson": generated) emit their step-t spikes at step t; then every LIF population integrates.

Batch axis: every state tensor is (B, N) — B independent trials (seeds, conditions). Weights are
(S,) shared by the trials, or (B, S) with ``per_trial_weights=True`` (needed when each trial
learns its own weights).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..neurons.inputs import poisson_spikes
from ..neurons.lif import LIFState, default_engine, lif_init, lif_step
from .projection import csr_rowptr, propagate, random_connectivity
from .spec import SIGNS, ProjectionSpec, SpikingSpec

__all__ = ["SpikingNetwork", "Projection", "NetworkState"]

NetworkState = dict  # {"z": {pop: (B, N)}, "lif": {pop: LIFState}, "noise": {pop: (B, N) | None}}


class Projection(nn.Module):
    """Synapses pre → post as a CSR-by-pre edge list with signed weights.

    Buffers: ``pre``, ``post`` (S,) long; ``rowptr`` (n_pre + 1,); ``by_post`` (S,) the synapses
    ordered by post neuron and ``colptr`` (n_post + 1,) its row pointers (for event-driven STDP). Parameter ``weight``: (S,) or
    (B, S), signed (the pre population's Dale sign). ``sign`` (float) and the |w| bounds
    ``w_min``, ``w_max`` come from the spec; :meth:`clamp_` applies them keeping the sign.
    """

    def __init__(self, spec: ProjectionSpec, n_pre: int, n_post: int, sign: float, same_population: bool,
                 generator: torch.Generator | None, batch: int | None, dtype: torch.dtype):
        super().__init__()
        self.spec, self.n_pre, self.n_post, self.sign = spec, n_pre, n_post, float(sign)
        pre, post = random_connectivity(n_pre, n_post, spec.p, generator, allow_autapses=spec.autapses,
                                        same_population=same_population, fixed_indegree=spec.fixed_indegree)
        self.register_buffer("pre", pre)
        self.register_buffer("post", post)
        self.register_buffer("rowptr", csr_rowptr(pre, n_pre))
        by_post = torch.argsort(post, stable=True)  # synapses grouped by post neuron (CSR by post)
        self.register_buffer("by_post", by_post)
        self.register_buffer("colptr", csr_rowptr(post[by_post], n_post))
        S = pre.numel()
        mag = spec.weight + spec.weight_std * torch.randn(S, generator=generator, dtype=torch.float64)
        mag = mag.clamp(min=spec.w_min, max=spec.w_max).to(dtype)
        w = self.sign * mag
        self.weight = nn.Parameter(w if batch is None else w.expand(batch, S).clone())

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_synapses(self) -> int:
        return self.pre.numel()

    def forward(self, z_pre: Tensor, method: str = "auto") -> Tensor:
        """(B, n_pre) spikes -> (B, n_post) summed input currents."""
        return propagate(z_pre, self.pre, self.post, self.weight, self.n_post, self.rowptr, method)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep |w| within [w_min, w_max] and the Dale sign (in place)."""
        mag = (self.weight * self.sign).clamp(min=self.spec.w_min, max=self.spec.w_max)
        self.weight.copy_(mag * self.sign)

    def dense(self) -> Tensor:
        """(…, n_post, n_pre) dense weight matrix (for inspection, export and tests)."""
        lead = self.weight.shape[:-1]
        W = torch.zeros(*lead, self.n_post, self.n_pre, dtype=self.weight.dtype, device=self.weight.device)
        W[..., self.post, self.pre] = self.weight.detach()
        return W


class SpikingNetwork(nn.Module):
    """LIF populations and projections from a :class:`SpikingSpec`.

    Args:
        spec: the network description.
        generator: seeds connectivity and initial weights (the run's torch.Generator).
        batch: number of trials for per-trial weights (None = weights shared by every batch).
        dtype, device: of weights and states; ``device="cuda"`` runs on a GPU with no other change.
        propagation: "auto" | "dense" | "event" (see :func:`~neuroprobe.spiking.projection.propagate`).
    """

    def __init__(self, spec: SpikingSpec, generator: torch.Generator | None = None, batch: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 propagation: str = "auto"):
        super().__init__()
        self.spec, self.dtype, self.propagation = spec, dtype, propagation
        self.engine = spec.engine or default_engine()
        self.pops = {p.name: p for p in spec.populations}
        self.projections = nn.ModuleList(
            Projection(pr, self.pops[pr.pre].size, self.pops[pr.post].size, SIGNS[self.pops[pr.pre].sign],
                       pr.pre == pr.post, generator, batch, dtype) for pr in spec.projections)
        self._incoming = {name: [j for j, pr in enumerate(spec.projections) if pr.post == name] for name in self.pops}
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.projections[0].pre.device if len(self.projections) else torch.device("cpu")

    def projection(self, name: str) -> Projection:
        for p in self.projections:
            if p.name == name:
                return p
        raise ConfigError(f"unknown projection {name!r}; have {[p.name for p in self.projections]}")

    def init_state(self, batch: int) -> NetworkState:
        """Resting state of every population for a batch of trials; no spikes yet."""
        z, lif = {}, {}
        for name, p in self.pops.items():
            z[name] = torch.zeros(batch, p.size, dtype=self.dtype, device=self.device)
            if p.kind == "lif":
                lif[name] = lif_init((batch, p.size), p.lif, self.dtype, self.device)
        return {"z": z, "lif": lif, "noise": {}}

    def step(self, state: NetworkState, inputs: Mapping[str, Tensor] | None = None,
             generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], NetworkState]:
        """Advance every population by one dt.

        inputs: per "input" population its spikes (B, N) this step (required); per "lif"
            population an optional external current (B, N); per "poisson" population optional
            rates (B, N) in Hz replacing its constant rate.
        Returns ({population: spikes (B, N)}, new state); ``state["noise"][pop]`` holds the noise
        each stochastic LIF population injected (for node-perturbation rules).
        """
        inputs = inputs or {}
        bad = sorted(set(inputs) - set(self.pops))
        if bad:
            raise ConfigError(f"inputs for unknown population(s) {bad}; have {list(self.pops)}")
        z_prev, B = state["z"], next(iter(state["z"].values())).shape[0]
        z_new, lif_new, noise = {}, {}, {}
        for name, p in self.pops.items():
            if p.kind == "input":
                if name not in inputs:
                    raise ConfigError(f"population {name!r} is an 'input' population: pass its spikes in inputs")
                x = inputs[name]
                if x.shape != (B, p.size):
                    raise ShapeError(f"inputs[{name!r}] has shape {tuple(x.shape)}, expected {(B, p.size)}")
                z_new[name] = x.to(self.dtype)
            elif p.kind == "poisson":
                rates = inputs.get(name)
                if rates is None:
                    rates = torch.full((B, p.size), p.rate, dtype=self.dtype, device=self.device)
                z_new[name] = poisson_spikes(rates.to(self.dtype), self.spec.dt, generator)
        for name, p in self.pops.items():
            if p.kind != "lif":
                continue
            i_in = torch.zeros(B, p.size, dtype=self.dtype, device=self.device)
            for j in self._incoming[name]:
                proj = self.projections[j]
                i_in = i_in + proj(z_prev[proj.spec.pre], self.propagation)
            if p.i_ext:
                i_in = i_in + p.i_ext
            if name in inputs:
                i_in = i_in + inputs[name].to(self.dtype)
            z, lif_new[name], noise[name] = lif_step(i_in, state["lif"][name], p.lif, self.engine, generator)
            z_new[name] = z
        return z_new, {"z": z_new, "lif": lif_new, "noise": noise}

    def variable(self, state: NetworkState, population: str, name: str) -> Tensor:
        """A state variable of a population for monitors: "v", "i", "rho", "spikes" (B, N)."""
        if name == "spikes":
            return state["z"][population]
        if population not in state["lif"]:
            raise ConfigError(f"population {population!r} has no variable {name!r} (not a LIF population)")
        if name not in LIFState._fields:
            raise ConfigError(f"unknown variable {name!r}; allowed {list(LIFState._fields) + ['spikes']}")
        return getattr(state["lif"][population], name)
