"""SpikingNetwork: LIF and Izhikevich populations and sparse projections on the torch engine (CPU or GPU).

A thin stateful shell over pure functions: :func:`~neuroprobe.neurons.lif.lif_step` (norse's
functional steps when installed), :func:`~neuroprobe.neurons.izhikevich.izhikevich_step`,
:func:`~neuroprobe.spiking.projection.propagate`, and the input generators. State is returned, never hidden (norse's style): ``state = net.init_state(B)``;
``spikes, state = net.step(state, inputs)``.

Time step semantics (what the Brian2 export reproduces): at step t every projection delivers the
spikes its pre population emitted at step t − 1 (one ``dt`` of synaptic delay) as a current jump
into the post population's LIF step; input populations ("input": spikes given by the caller,
"poisson": generated) emit their step-t spikes at step t; then every LIF population integrates.
Izhikevich populations take the same summed jumps as their input I of step t (mV/ms, held for the
step's two half-steps); their spike of step t is the crossing of v_peak in step t, reset at the
start of step t + 1 (:mod:`neuroprobe.neurons.izhikevich`), so a spike acts in the step after the
crossing, as in Izhikevich's code. Their state is ``state["izhikevich"][pop]`` (an
:class:`~neuroprobe.neurons.izhikevich.IzhikevichState`), present when the network has one.

Batch axis: every state tensor is (B, N) — B independent trials (seeds, conditions). Weights are
(S,) shared by the trials, or (B, S) with ``per_trial_weights=True`` (needed when each trial
learns its own weights).

Noise (membrane and escape noise, Poisson spikes): drawn from the ``generator`` passed to
:meth:`SpikingNetwork.step` (``rng="generator"``, the default), or from the counter-based hash of
:mod:`neuroprobe.neurons.hash_rng` (``rng="hash"``): trial b uses seed ``noise_seed + b``, the
1-based step number is kept in the state (``state["t"]``) and each neuron draws at its global index
(the offset of its population in spec order, all kinds, plus its index within it); the event
engine (:mod:`neuroprobe.backends.event`) draws the same numbers and produces the same spikes.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping

import torch
from torch import Tensor, nn

from .._args import check_batch
from ..errors import ConfigError, ShapeError
from ..neurons.inputs import poisson_spikes
from ..neurons.izhikevich import IzhikevichState, izhikevich_init, izhikevich_step
from ..neurons.lif import HashKey, LIFState, default_engine, lif_init, lif_step, torch_step_fn
from .projection import (csr_matmul, find_projection, csr_rowptr, padded_rows, propagate,
                         random_connectivity)
from .spec import NEURON_KINDS, SIGNS, ProjectionSpec, SpikingSpec

__all__ = ["SpikingNetwork", "Projection", "NetworkState"]

# "auto" propagation on the CPU (measured on a 1000- and a 10 000-neuron net, 5-10 % connectivity):
# an event entry (one padded synapse of a spiking neuron) costs about _EVENT_NS, a sparse-CSR
# product about _CSR_NS[0] + _CSR_NS[1]·B per synapse (ns; only their ratio matters)
_EVENT_NS, _CSR_NS = 20.0, (3.5, 0.3)

# {"z": {pop: (B, N)}, "lif": {pop: LIFState}, "noise": {pop: (B, N) | None}} (+ "t": steps done, rng "hash";
# + "izhikevich": {pop: IzhikevichState} when the network has Izhikevich populations)
NetworkState = dict
RNG_MODES = ("generator", "hash")


def input_spikes(name: str, size: int, inputs: Mapping[str, Tensor], B: int) -> Tensor:
    """The (B, size) spikes given for the "input" population ``name``; one-line errors if missing
    or misshapen (shared by the float and fixed-point engines)."""
    if name not in inputs:
        raise ConfigError(f"population {name!r} is an 'input' population: pass its spikes in inputs")
    x = inputs[name]
    if x.shape != (B, size):
        raise ShapeError(f"inputs[{name!r}] has shape {tuple(x.shape)}, expected {(B, size)}")
    return x


class Projection(nn.Module):
    """Synapses pre → post as a CSR-by-pre edge list with signed weights.

    Buffers: ``pre``, ``post`` (S,) long; ``rowptr`` (n_pre + 1,); ``by_post`` (S,) the synapses
    ordered by post neuron and ``colptr`` (n_post + 1,) its row pointers (for event-driven STDP). Parameter ``weight``: (S,) or
    (B, S), signed (the pre population's Dale sign). ``sign`` (float) and the |w| bounds
    ``w_min``, ``w_max`` come from the spec; :meth:`clamp_` applies them keeping the sign.
    ``free_sign`` (pre population sign "none"): each synapse keeps its own sign, drawn at
    initialisation (weight + weight_std·N(0, 1)); the bounds apply to |w|.
    """

    def __init__(self, spec: ProjectionSpec, n_pre: int, n_post: int, sign: float, same_population: bool,
                 generator: torch.Generator | None, batch: int | None, dtype: torch.dtype, free_sign: bool = False):
        super().__init__()
        self.spec, self.n_pre, self.n_post, self.sign = spec, n_pre, n_post, float(sign)
        self.free_sign = bool(free_sign)
        pre, post = random_connectivity(n_pre, n_post, spec.p, generator, allow_autapses=spec.autapses,
                                        same_population=same_population, fixed_indegree=spec.fixed_indegree,
                                        out_degree=spec.out_degree)
        self.register_buffer("pre", pre)
        self.register_buffer("post", post)
        self.register_buffer("rowptr", csr_rowptr(pre, n_pre))
        by_post = torch.argsort(post, stable=True)  # synapses grouped by post neuron (CSR by post)
        self.register_buffer("by_post", by_post)
        self.register_buffer("colptr", csr_rowptr(post[by_post], n_post))
        S = pre.numel()
        raw = spec.weight + spec.weight_std * torch.randn(S, generator=generator, dtype=torch.float64)
        if self.free_sign:  # the draw's sign is the synapse's sign; bound its magnitude
            w = (raw.sign() * raw.abs().clamp(min=spec.w_min, max=spec.w_max)).to(dtype)
        else:
            w = self.sign * raw.clamp(min=spec.w_min, max=spec.w_max).to(dtype)
        self.weight = nn.Parameter(w if batch is None else w.expand(batch, S).clone())

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_synapses(self) -> int:
        return self.pre.numel()

    def forward(self, z_pre: Tensor, method: str = "auto") -> Tensor:
        """(B, n_pre) spikes -> (B, n_post) summed input currents."""
        if method == "csr" and not (torch.is_grad_enabled() and self.weight.requires_grad):
            t = self.event_tables()
            return csr_matmul(z_pre, self.colptr, t.pre_by_post, self.weight[..., self.by_post], self.n_post)
        return propagate(z_pre, self.pre, self.post, self.weight, self.n_post, self.rowptr, method)

    def event_tables(self) -> SimpleNamespace:
        """Padded per-neuron synapse tables for event-driven code (built once per connectivity and
        device, rebuilt when ``pre``/``post`` change): ``out_post``, ``out_slot`` (n_pre, D_out):
        post neuron and synapse index of each outgoing synapse of a pre neuron (padding: post 0,
        slot S); ``in_pre``, ``in_slot`` (n_post, D_in): the same for incoming synapses of a post
        neuron (padding: pre 0, slot S); ``pre_by_post`` (S,): pre neuron of the synapses grouped
        by post neuron (the column indices of the CSR-by-post weight matrix)."""
        pre, post = self._buffers["pre"], self._buffers["post"]
        key = (pre._version, post._version)
        cache = self.__dict__.get("_tables")
        if cache is not None and cache[0] is pre and cache[1] is post and cache[2] == key:
            return cache[3]
        S = self.pre.numel()
        slots = torch.arange(S, device=self.pre.device)
        by_post = torch.argsort(self.post, stable=True)
        colptr = csr_rowptr(self.post[by_post], self.n_post)
        t = SimpleNamespace(out_post=padded_rows(self.rowptr, self.post, 0), out_slot=padded_rows(self.rowptr, slots, S),
                            in_pre=padded_rows(colptr, self.pre[by_post], 0), in_slot=padded_rows(colptr, by_post, S),
                            pre_by_post=self.pre[by_post])
        self._tables = (pre, post, key, t)
        return t

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep |w| within [w_min, w_max] and the Dale sign (in place); free-signed synapses keep
        their own sign (a weight at 0 stays 0)."""
        lo, hi = self.spec.w_min, self.spec.w_max
        if self.free_sign:
            self.weight.copy_(self.weight.sign() * self.weight.abs().clamp(min=lo, max=hi))
            return
        if self.sign < 0:  # (w·s).clamp(lo, hi)·s with s = −1 is w.clamp(−hi, −lo), exactly
            lo, hi = -hi, -lo
        elif self.sign != 1.0:
            mag = (self.weight * self.sign).clamp(min=self.spec.w_min, max=self.spec.w_max)
            self.weight.copy_(mag * self.sign)
            return
        self.weight.clamp_(min=lo, max=hi)

    def dense(self) -> Tensor:
        """(…, n_post, n_pre) dense weight matrix (for inspection, export and tests)."""
        lead = self.weight.shape[:-1]
        W = torch.zeros(*lead, self.n_post, self.n_pre, dtype=self.weight.dtype, device=self.weight.device)
        W[..., self.post, self.pre] = self.weight.detach()
        return W


class SpikingNetwork(nn.Module):
    """LIF and Izhikevich populations and projections from a :class:`SpikingSpec`.

    Args:
        spec: the network description.
        generator: seeds connectivity and initial weights (the run's torch.Generator).
        batch: number of trials for per-trial weights (None = weights shared by every batch).
        dtype, device: of weights and states; ``device="cuda"`` runs on a GPU with no other change.
        propagation: "auto" | "dense" | "event" | "csr" (see
            :func:`~neuroprobe.spiking.projection.propagate`).
        rng: "generator" (noise from the generator given to :meth:`step`) | "hash" (the
            counter-based hash, see the module docstring). noise_seed: the hash's seed of trial 0.

    All projections are propagated together: the spikes of every source population, concatenated,
    go through one merged synapse table (each projection keeps its own block of output columns,
    and a post population sums its incoming blocks in projection order, as separate propagation
    would). ``"event"`` gathers the padded rows of the spiking neurons, ``"dense"`` every synapse,
    ``"csr"`` multiplies by the merged sparse-CSR matrix (shared weights; per-trial weights use one
    product per trial); ``"auto"`` chooses ``"event"`` on the CPU while spikes are sparse and
    ``"csr"``/``"dense"`` otherwise (no host synchronisation off the CPU). Tables are built once;
    the merged weight vector is refreshed from the projections' weights when one of them changes
    (new tensor or in-place update, tracked by the tensor's version counter; while autograd
    records, it is concatenated afresh each step so gradients reach the weights).
    """

    def __init__(self, spec: SpikingSpec, generator: torch.Generator | None = None, batch: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 propagation: str = "auto", rng: str = "generator", noise_seed: int = 0):
        super().__init__()
        if rng not in RNG_MODES:
            raise ConfigError(f"rng = {rng!r}: allowed {list(RNG_MODES)}")
        if isinstance(noise_seed, bool) or not isinstance(noise_seed, int) or not 0 <= noise_seed < 2 ** 32:
            raise ConfigError(f"noise_seed = {noise_seed!r}: must be an integer in [0, 2**32)")
        self.rng, self.noise_seed = rng, noise_seed
        if not isinstance(spec, SpikingSpec):
            raise ConfigError(f"spec = {type(spec).__name__}: must be a SpikingSpec (load_spiking_spec(path) or "
                              "spec_from_dict(dict))")
        batch = check_batch(batch, allow_none=True)
        self.spec, self.dtype, self.propagation = spec, dtype, propagation
        self.engine = spec.engine or default_engine()
        self.pops = {p.name: p for p in spec.populations}
        self.projections = nn.ModuleList(
            Projection(pr, self.pops[pr.pre].size, self.pops[pr.post].size, SIGNS[self.pops[pr.pre].sign],
                       pr.pre == pr.post, generator, batch, dtype, free_sign=self.pops[pr.pre].sign == "none")
            for pr in spec.projections)
        self._incoming = {name: [j for j, pr in enumerate(spec.projections) if pr.post == name] for name in self.pops}
        self._lif = [(name, p) for name, p in self.pops.items() if p.kind == "lif"]
        self._izh = [(name, p) for name, p in self.pops.items() if p.kind == "izhikevich"]
        self._neurons = [(name, p) for name, p in self.pops.items() if p.kind in NEURON_KINDS]
        self._ext = [(name, p) for name, p in self.pops.items() if p.kind not in NEURON_KINDS]
        self._plan = None
        self._wcache = None
        self._rates: dict = {}
        self._hash_index: dict = {}
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.projections[0].pre.device if len(self.projections) else torch.device("cpu")

    def projection(self, name: str) -> Projection:
        return find_projection(self.projections, name)

    def init_state(self, batch: int) -> NetworkState:
        """Resting state of every population for a batch of trials; no spikes yet."""
        batch = check_batch(batch)
        z, lif, izh = {}, {}, {}
        for name, p in self.pops.items():
            z[name] = torch.zeros(batch, p.size, dtype=self.dtype, device=self.device)
            if p.kind == "lif":
                lif[name] = lif_init((batch, p.size), p.lif, self.dtype, self.device)
            elif p.kind == "izhikevich":
                izh[name] = izhikevich_init((batch, p.size), p.izhikevich, self.dtype, self.device)
        state = {"z": z, "lif": lif, "noise": {}}
        if self._izh:
            state["izhikevich"] = izh
        if self.rng == "hash":
            state["t"] = 0
        return state

    def step(self, state: NetworkState, inputs: Mapping[str, Tensor] | None = None,
             generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], NetworkState]:
        """Advance every population by one dt.

        inputs: per "input" population its spikes (B, N) this step (required); per "lif" or
            "izhikevich" population an optional external current (B, N); per "poisson" population
            optional rates (B, N) in Hz replacing its constant rate.
        Returns ({population: spikes (B, N)}, new state); ``state["noise"][pop]`` holds the noise
        each stochastic LIF or Izhikevich population injected (for node-perturbation rules).
        A neuron's input current is summed as ((synaptic jumps + i_ext) + given current) + noise.
        """
        inputs = inputs or {}
        if inputs:
            bad = sorted(set(inputs) - set(self.pops))
            if bad:
                raise ConfigError(f"inputs for unknown population(s) {bad}; have {list(self.pops)}")
        z_prev = state["z"]
        B = next(iter(z_prev.values())).shape[0]
        z_new, lif_new, noise = {}, {}, {}
        keys = self._hash_keys(B, int(state["t"]) + 1) if self.rng == "hash" else {}
        for name, p in self._ext:
            if p.kind == "input":
                z_new[name] = input_spikes(name, p.size, inputs, B).to(self.dtype)
            else:  # poisson
                rates = inputs.get(name)
                if rates is None:
                    rates = self._constant_rates(name, p, B)
                z_new[name] = poisson_spikes(rates.to(self.dtype), self.spec.dt, generator, keys.get(name))
        currents = self._synaptic_input(z_prev, B)
        lif_state = state["lif"]
        fast = self.engine == "torch"
        for name, p in self._lif:
            i_in = currents.get(name)
            if i_in is None:
                i_in = torch.zeros(B, p.size, dtype=self.dtype, device=lif_state[name].v.device)
            if p.i_ext:
                i_in = i_in + p.i_ext
            if name in inputs:
                i_in = i_in + inputs[name].to(self.dtype)
            if fast:  # lif_step(..., "torch") without its per-call dispatch
                z, lif_new[name], noise[name] = torch_step_fn(p.lif, i_in.dtype, i_in.device)(i_in, lif_state[name],
                                                                                            generator, keys.get(name))
            else:
                z, lif_new[name], noise[name] = lif_step(i_in, lif_state[name], p.lif, self.engine, generator,
                                                         keys.get(name))
            z_new[name] = z
        new_state = {"z": z_new, "lif": lif_new, "noise": noise}
        if self._izh:
            izh_state, izh_new = state["izhikevich"], {}
            for name, p in self._izh:
                i_in = currents.get(name)
                if i_in is None:
                    i_in = torch.zeros(B, p.size, dtype=self.dtype, device=izh_state[name].v.device)
                if p.i_ext:
                    i_in = i_in + p.i_ext
                if name in inputs:
                    i_in = i_in + inputs[name].to(self.dtype)
                z_new[name], izh_new[name], noise[name] = izhikevich_step(i_in, izh_state[name], p.izhikevich,
                                                                          generator, keys.get(name))
            new_state["izhikevich"] = izh_new
        if self.rng == "hash":
            new_state["t"] = int(state["t"]) + 1
        return z_new, new_state

    def global_offsets(self) -> dict[str, int]:
        """{population: index of its first neuron} in the global neuron numbering of the hash noise
        (populations in spec order, all kinds)."""
        off, n = {}, 0
        for p in self.spec.populations:
            off[p.name], n = n, n + p.size
        return off

    def _hash_keys(self, B: int, t: int) -> dict[str, HashKey]:
        """{population: HashKey} of step t (seeds ``noise_seed + b``, global neuron indices; cached)."""
        dev = self.device
        c = self._hash_index.get((B, dev))
        if c is None:
            seeds = (self.noise_seed + torch.arange(B, dtype=torch.int64, device=dev))[:, None]
            off = self.global_offsets()
            idx = {p.name: torch.arange(off[p.name], off[p.name] + p.size, dtype=torch.int64, device=dev)
                   for p in self.spec.populations}
            c = self._hash_index[(B, dev)] = (seeds, idx)
        seeds, idx = c
        return {name: HashKey(seeds, t, i) for name, i in idx.items()}

    # ------------------------------------------------------------------ propagation internals

    def _constant_rates(self, name: str, p, B: int) -> Tensor:
        key = (name, B, self.dtype, self.device)
        r = self._rates.get(key)
        if r is None:
            r = self._rates[key] = torch.full((B, p.size), p.rate, dtype=self.dtype, device=self.device)
        return r

    def _synaptic_input(self, z_prev: Mapping[str, Tensor], B: int) -> dict[str, Tensor]:
        """{LIF population: (B, N) summed synaptic input} from last step's spikes (populations with
        no incoming projection are left out)."""
        plan = self._merged_plan()
        if plan is None:
            return {}
        grad = torch.is_grad_enabled() and any(w.requires_grad for w in (p._parameters["weight"] for p in plan.projs))
        w, c = self._merged_weights(plan, B, grad)
        z = z_prev[plan.sources[0]] if len(plan.sources) == 1 else torch.cat([z_prev[s] for s in plan.sources], 1)
        if z.dtype != w.dtype:
            z = z.to(w.dtype)
        method = self.propagation
        on_cpu = z.is_cpu
        nz = None
        if method == "auto":
            shared = w.dim() == 1 and not grad
            if on_cpu:  # count the spikes (free on the CPU) and compare the estimated costs
                nz = z.nonzero(as_tuple=True) if B > 1 else (None, z.view(-1).nonzero().view(-1))
                entries = nz[1].numel() * plan.D
                if shared:
                    method = "event" if _EVENT_NS * entries <= plan.n_syn * (_CSR_NS[0] + _CSR_NS[1] * B) else "csr"
                else:
                    method = "event" if entries <= B * plan.n_syn else "dense"
            else:
                method = "csr" if shared else "dense"
        elif method not in ("dense", "event", "csr"):
            raise ConfigError(f"propagation = {method!r}: allowed ['auto', 'dense', 'event', 'csr']")
        if method == "csr" and grad:
            method = "dense"  # sparse-CSR products do not propagate gradients to the values
        P1 = plan.n_out + 1
        if method == "event":
            if nz is None:
                nz = z.nonzero(as_tuple=True) if B > 1 else (None, z.reshape(-1).nonzero().view(-1))
            b, g = nz
            cols = plan.fan_col.index_select(0, g)  # (k, D) output columns of the spiking neurons' synapses
            if B > 1:
                cols = cols + (b * P1)[:, None]
            fan_val = c.fan_val if c is not None and (w.dim() == 1 or B == 1) else None
            if fan_val is not None:  # weights laid out as the fan table (kept while weights are unchanged)
                vals = fan_val.index_select(0, g)
            else:
                slots = plan.fan_w.index_select(0, g)  # (k, D) their merged weight slots
                if w.dim() == 1 or B == 1:
                    vals = w.view(-1).index_select(0, slots.view(-1)).view(slots.shape)
                else:
                    vals = w[b[:, None], slots]
            if plan.amplitudes:
                vals = vals * (z[b, g] if B > 1 else z[0, g])[:, None]
            if on_cpu and not grad and g.numel() and w.dtype in (torch.float32, torch.float64):
                out = torch.bincount(cols.view(-1), vals.view(-1), B * P1)  # == index_add_ into zeros, same order
            else:
                out = torch.zeros(B * P1, dtype=w.dtype, device=w.device).index_add_(0, cols.view(-1), vals.view(-1))
            out = out.view(B, P1)
        elif method == "dense":
            out = torch.zeros(B, P1, dtype=w.dtype, device=w.device)
            out = out.index_add_(1, plan.col_g, z[:, plan.pre_g] * w)
        else:
            out = csr_matmul(z, plan.csr_crow, plan.csr_col, self._csr_values(plan, w, c), plan.n_out)
        blocks = out.split(plan.split if out.shape[1] == P1 else plan.split[:-1], 1)  # a view per projection
        currents = {}
        for name, js in plan.incoming:
            i_in = blocks[js[0]]
            for j in js[1:]:
                i_in = i_in + blocks[j]  # projection order, as separate propagation sums
            currents[name] = i_in
        return currents

    def _merged_plan(self) -> SimpleNamespace | None:
        """The merged synapse tables of all projections (rebuilt when connectivity or device change).

        Source index space: the source populations (pre of some projection) concatenated in
        population order. Output space: one block of n_post columns per projection (projection
        order), plus one dummy column (index n_out) that padding entries write to."""
        plan = self._plan
        if plan is not None and len(self.projections._modules) == len(plan.projs):
            for bufs, pre, post, vpre, vpost in plan.check:
                if bufs["pre"] is not pre or bufs["post"] is not post or pre._version != vpre or post._version != vpost:
                    break
            else:
                return plan
        projs = list(self.projections)
        if not projs:
            return None
        dev = self.device
        sources = [name for name in self.pops if any(p.spec.pre == name for p in projs)]
        src_off, n = {}, 0
        for s in sources:
            src_off[s], n = n, n + self.pops[s].size
        seg, w_off, n_out, s_tot = [], [], 0, 0
        for p in projs:
            seg.append((n_out, n_out + p.n_post))
            w_off.append(s_tot)
            n_out, s_tot = n_out + p.n_post, s_tot + p.n_synapses
        pre_g = torch.cat([p.pre + src_off[p.spec.pre] for p in projs])
        col_g = torch.cat([p.post + seg[j][0] for j, p in enumerate(projs)])
        order = torch.argsort(pre_g, stable=True)  # by source neuron; projection order, then slot order within
        rowptr = csr_rowptr(pre_g[order], n)
        by_out = torch.argsort(col_g, stable=True)  # CSR by output column; source neuron ascending within
        plan = SimpleNamespace(
            projs=projs, check=[(p._buffers, p.pre, p.post, p.pre._version, p.post._version) for p in projs],
            sources=sources, n_src=n, n_out=n_out, n_syn=s_tot, w_off=w_off, pre_g=pre_g, col_g=col_g,
            fan_col=padded_rows(rowptr, col_g[order], n_out), fan_w=padded_rows(rowptr, order, 0),
            csr_crow=csr_rowptr(col_g[by_out], n_out), csr_col=pre_g[by_out], csr_perm=by_out,
            amplitudes=any(self.pops[s].kind == "input" for s in sources),  # LIF and Poisson spikes are 0/1
            split=[p.n_post for p in projs] + [1],
            incoming=[(name, self._incoming[name]) for name, _ in self._neurons if self._incoming[name]])
        plan.D = plan.fan_col.shape[1]
        for k in ("pre_g", "col_g", "fan_col", "fan_w", "csr_crow", "csr_col", "csr_perm"):
            setattr(plan, k, getattr(plan, k).to(dev))
        self._plan, self._wcache = plan, None
        return plan

    def _merged_weights(self, plan: SimpleNamespace, B: int, grad: bool) -> tuple[Tensor, SimpleNamespace | None]:
        """All projections' weights concatenated in the merged slot order: (S_total,) when every
        projection shares its weights across trials, else (B, S_total); and the cache entry (None
        while autograd records: then a fresh, differentiable concatenation).

        Cached; a projection's block is copied again when its weight is replaced or changed (the
        tensor's version counter or storage changed). Once the weights have stayed unchanged for a
        step, a copy laid out like the fan table (``fan_val``) saves the event path one gather."""
        ws = [p._parameters["weight"] for p in plan.projs]
        per_trial = False
        for w in ws:
            if w.dim() == 2:
                if w.shape[0] != B:
                    raise ShapeError(f"projection weight has batch {w.shape[0]} but the spikes have batch {B}")
                per_trial = True
        if grad:
            if not per_trial:
                return (ws[0] if len(ws) == 1 else torch.cat(ws)), None
            return torch.cat([w.expand(B, -1) if w.dim() == 1 else w for w in ws], 1), None
        c = self._wcache
        shape = (B, plan.n_syn) if per_trial else (plan.n_syn,)
        if c is None or c.w.shape != shape or any(a is not b for a, b in zip(c.refs, ws)):
            dtype = ws[0].dtype
            for w in ws[1:]:
                dtype = torch.promote_types(dtype, w.dtype)
            c = self._wcache = SimpleNamespace(w=torch.empty(shape, dtype=dtype, device=ws[0].device), refs=ws,
                                               stamps=[None] * len(ws), csr=None, fan_val=None, stable=0)
        changed = False
        stamps = c.stamps
        for j, w in enumerate(ws):
            stamp = (w._version, w.data_ptr())  # in-place updates; new storage (.data =, dtype or device)
            if stamp != stamps[j]:
                with torch.no_grad():
                    c.w[..., plan.w_off[j]:plan.w_off[j] + w.shape[-1]].copy_(w.detach())
                stamps[j] = stamp
                changed = True
        if changed:
            c.csr = c.fan_val = None
            c.stable = 0
        elif c.fan_val is None and (c.w.dim() == 1 or c.w.shape[0] == 1):
            c.stable += 1
            if c.stable >= 2:
                c.fan_val = c.w.view(-1)[plan.fan_w]
        return c.w, c

    def _csr_values(self, plan: SimpleNamespace, w: Tensor, c: SimpleNamespace | None) -> Tensor:
        """Merged weights in CSR-by-output order (cached with the merged weights)."""
        if c is None:
            return w[..., plan.csr_perm]
        if c.csr is None:
            c.csr = w[..., plan.csr_perm]
        return c.csr

    def variable(self, state: NetworkState, population: str, name: str) -> Tensor:
        """A state variable of a population for monitors: "v", "i", "rho", "spikes" (B, N); for an
        Izhikevich population "v", "u", "spikes" (v, u after the step, before the reset of a spike)."""
        if name == "spikes":
            return state["z"][population]
        if population in state.get("izhikevich", {}):
            if name not in IzhikevichState._fields:
                raise ConfigError(f"unknown variable {name!r} of Izhikevich population {population!r}; allowed "
                                  f"{list(IzhikevichState._fields) + ['spikes']}")
            return getattr(state["izhikevich"][population], name)
        if population not in state["lif"]:
            raise ConfigError(f"population {population!r} has no variable {name!r} (not a LIF population)")
        if name not in LIFState._fields:
            raise ConfigError(f"unknown variable {name!r}; allowed {list(LIFState._fields) + ['spikes']}")
        return getattr(state["lif"][population], name)
