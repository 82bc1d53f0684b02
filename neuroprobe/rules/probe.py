"""Probe rule: directional credit assignment over B counterfactual branches per window.

One window (an RL episode) runs B branches of the same network as one batch. Branch b uses, in
every layer (module) m, the weight W_m + ΔW_{m, A[b, m]}, where A (B × M, from a scheduler) picks a
probe of the layer's :class:`~neuroprobe.probes.ProbeDictionary` (label 0 = null probe) and
ΔW_k = (σ/√r) U_k V_kᵀ. The branch forward never forms B weight matrices: per layer the shared
product x Wᵀ is computed once and each branch adds its low-rank correction (σ/√r)(x V_a) U_aᵀ
(:func:`probed_sweep`, the "mask" computation of :class:`~neuroprobe.probes.ProbedLinear`).

After the window, with outcomes R_b (the branches' returns):

    adv_b   = R_b − baseline                      (branch_advantage: null branches, or the batch mean;
                                                   optionally divided by its std over the branches)
    μ[b, m] = adv_b · 1[A[b, m] ≠ 0]              (route)
    e_m[k]  = (1/B) Σ_b μ[b, m] [A[b, m] = k]     (module_coefficients)
    Δθ_m    = (1/σ²) Σ_j w_j Σ_k e_{m,t−j}[k] ΔW_{m,t−j,k}   (DirectionalTrace, w_j = λ^j or a cascade kernel)

Sign convention: outcomes are rewards (higher is better; ``credit="reward"``), so Δθ ascends the
return. As for every rule of :mod:`neuroprobe.rules`, ``param.grad = −Δθ`` is written, so
``torch.optim.SGD(lr=η).step()`` performs W ← W + η Δθ. The factor 1/σ² (ES convention) makes the
expected single-window update (1 − f)·∇J for small σ (f = the null fraction; the probes have
isotropic entry covariance σ²), so ``lr`` is a step size on the return gradient.

Only weights are probed and learned; biases (if the model has them) stay at their initial values.

Node noise (``noise_std`` > 0) adds Gaussian ξ to every pre-activation, drawn once per step and
shared by all B branches (common random numbers), so branches still differ only through their
probes. It is exploration noise inside each branch; its NRL eligibility is not used.

Devices: the branches run on the network's device (``device = "cuda"``: a window's B branches are
one batch on the GPU, and so is the weight update); the probe dictionaries, traces, scheduler and the
window's credit (B numbers) stay on the CPU, so a GPU run draws the same probes as a CPU run; the
probe factors (K·r·(n_in + n_out) numbers per layer) are copied to the device by each sweep.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._args import check_int, check_number
from ..errors import ConfigError, NonFiniteError
from ..network import NetworkPass, RateNetwork
from ..neurons.rate import rate_layer_step
from ..probes import (DirectionalTrace, ProbeDictionary, branch_advantage, keyed_generator, make_scheduler,
                      module_coefficients, route)

if TYPE_CHECKING:  # pragma: no cover
    from ..learners.probe import ProbeConfig

__all__ = ["ProbeRule", "probed_sweep", "inverse_cdf_actions"]

_SALT_SCHEDULER = 0x5C4ED
ADVANTAGE_SCALES = ("none", "std", "abs_reward")


def probed_sweep(net: RateNetwork, x: Tensor, assignment: Tensor, probes: list[ProbeDictionary],
                 noise: list[Tensor | None] | None = None) -> NetworkPass:
    """All branches of a window in one sweep; pure apart from reading the probes.

    Args:
        net: a single-model RateNetwork (weights (n_out, n_in)).
        x: (B, …, n_in), branch b's inputs on row b (… e.g. P states per branch).
        assignment: (B, M) long, A[b, m] in 0..K_m the probe of layer m in branch b.
        probes: one ProbeDictionary per layer (same order as ``net.layers``).
        noise: per layer, node noise broadcastable to (B, …, n_out_l), or None.

    Returns:
        a NetworkPass (inputs, pre-activations, logits, readout), each (B, …, n).

    Per layer: h = x Wᵀ + b + coef · ((x [V_1…V_K]) ⊙ onehot(A[:, m])) [U_1…U_K]ᵀ — one shared
    full-rank product and one (K·r)-column correction; no (B, n_out, n_in) tensor is formed.
    """
    if net.batch is not None:
        raise ConfigError("probed_sweep: the probe rule runs one model (batch=None)")
    B = x.shape[0]
    A = assignment.to(x.device)  # (B, M) small: the scheduler draws it on the CPU
    inputs, preacts = [], []
    h = x
    for l, (layer, d) in enumerate(zip(net.layers, probes)):
        inputs.append(x)
        K, r = d.num_probes, d.rank
        Us, Vs = d.stacked()  # (n_out, K r), (n_in, K r); the probes live on the CPU, the branches on x's device
        z = x @ Vs.to(device=x.device, dtype=x.dtype)  # (B, …, K r)
        onehot = (A[:, l, None] == torch.arange(1, K + 1, device=x.device)).to(x.dtype) * d.coef  # (B, K)
        z = (z.unflatten(-1, (K, r)) * onehot.view((B,) + (1,) * (x.dim() - 2) + (K, 1))).flatten(-2)
        corr = z @ Us.to(device=x.device, dtype=x.dtype).T  # (B, …, n_out)
        xi = None if noise is None else noise[l]
        x, h = rate_layer_step(x, layer.weight, layer.bias, corr if xi is None else corr + xi, net.activation_of(l))
        preacts.append(h)
    out = torch.softmax(h, dim=-1) if net.spec.readout == "softmax" else h
    return NetworkPass(inputs, preacts, h, out)


def inverse_cdf_actions(probs: Tensor, u: Tensor | float) -> Tensor:
    """Categorical samples of every row of probs (B, A) from ONE uniform u in [0, 1) (common random
    numbers): a = #{j : CDF_j < u}. Rows with equal probabilities get equal actions."""
    p = probs.to(torch.float64)
    if not torch.isfinite(p).all():
        raise NonFiniteError("policy probabilities became NaN/Inf (the logits overflowed)")
    c = p.clamp_min(0).cumsum(-1)
    a = (c < torch.as_tensor(u, dtype=torch.float64) * c[..., -1:]).sum(-1)
    return a.clamp_max(p.shape[-1] - 1)


class ProbeRule:
    """The probe rule's state: per-layer probe dictionaries and directional traces, a scheduler.

    Args:
        net: single-model RateNetwork.
        branches: B; num_probes: K; rank: r; scale: σ.
        scheduler: name for :func:`~neuroprobe.probes.make_scheduler`; null_fraction: its f.
        history, decay, kernel ("none" | "cascade"), kernel_order, kernel_delay: the trace's window
            weights (λ^j, or a cascade kernel peaking ``kernel_delay`` windows back).
        baseline: "null" | "mean" (:func:`~neuroprobe.probes.branch_advantage`).
        antithetic, regime: of the dictionaries.
        noise_std: node noise shared by all branches (module docstring), 0 = off.
        advantage_scale: ``[modulator] scale`` of the config: "none" (raw return differences),
            "std" (advantages divided by their std over the window's branches: fitness shaping,
            so the step size does not grow with the return), "abs_reward" (divided by |baseline|).
        seed: keys the probes and the scheduler's generator.

    Per window: ``A = rule.assignment()``; run the branches with :meth:`policy`;
    ``rule.update(outcomes, A)`` (writes ``.grad``); ``opt.step()``; ``rule.end_window()``.

    Delayed outcomes (e.g. labels that arrive D windows late, :mod:`neuroprobe.learners.probe`):
    keep ``snap = rule.snapshot_probes()`` with the window's A, and when its outcomes arrive call
    ``rule.update(outcomes, A, dictionaries=snap)``: the trace then holds the probes that produced the
    outcomes, not the current window's (``end_window`` refreshes the probes every window).
    """

    name = "probe"

    def __init__(self, net: RateNetwork, branches: int = 32, num_probes: int = 8, rank: int = 1, scale: float = 0.05,
                 scheduler: str = "random", null_fraction: float = 0.125, history: int = 1, decay: float = 1.0,
                 kernel: str = "none", kernel_order: int = 6, kernel_delay: float = 2.0, baseline: str = "null",
                 antithetic: bool = True, regime: str = "pure", noise_std: float = 0.0, seed: int = 0,
                 advantage_scale: str = "none"):
        if not isinstance(net, RateNetwork):
            raise ConfigError(f"net = {type(net).__name__}: must be a RateNetwork")
        if net.batch is not None:
            raise ConfigError(f"net.batch = {net.batch}: rule 'probe' runs one model: build the network with "
                              "batch=None (its branches are the rule's batch)")
        branches = check_int("rule.branches", branches, ge=1, le=1_000_000)
        scale = check_number("rule.scale", scale, gt=0)
        noise_std = check_number("rule.noise_std", noise_std, ge=0)
        null_fraction = check_number("rule.null_fraction", null_fraction, ge=0, le=1)
        if kernel == "cascade":
            kernel_order = check_int("rule.kernel_order", kernel_order, ge=1)
            kernel_delay = check_number("rule.kernel_delay", kernel_delay, gt=0)
        if baseline == "null" and null_fraction <= 0:
            raise ConfigError("rule.baseline = 'null' needs rule.null_fraction > 0 (all-null branches)")
        if advantage_scale not in ADVANTAGE_SCALES:
            raise ConfigError(f"modulator.scale = {advantage_scale!r}: allowed {list(ADVANTAGE_SCALES)}")
        self.net, self.branches, self.baseline, self.noise_std = net, branches, baseline, float(noise_std)
        self.advantage_scale = advantage_scale
        self.scale = float(scale)
        w = net.layers[0].weight
        self.dictionaries = [
            ProbeDictionary(layer.out_features, layer.in_features, num_probes=num_probes, rank=rank, scale=scale,
                            regime=regime, antithetic=antithetic, seed=seed, module_id=l, dtype=w.dtype)
            for l, layer in enumerate(net.layers)]
        M = len(net.layers)
        self.scheduler = make_scheduler(scheduler, num_branches=branches, num_probes=num_probes, num_modules=M,
                                        null_fraction=null_fraction,
                                        seed=keyed_generator(seed, _SALT_SCHEDULER))
        self.traces = [DirectionalTrace(num_probes, history=history, decay=decay,
                                        kernel=None if kernel == "none" else kernel, order=kernel_order,
                                        delay=kernel_delay, alpha=1.0 / self.scale**2, credit="reward")
                       for _ in range(M)]
        self.num_probes = [num_probes] * M

    # --- per step ---------------------------------------------------------------------------
    def policy(self, obs: Tensor, assignment: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Readout of every branch, obs (B, n_in) -> (B, n_out). Draws the shared node noise (if any)."""
        noise = None
        if self.noise_std > 0:
            noise = self.net.sample_noise((1,), self.noise_std, generator)  # one draw, shared by all branches
        with torch.no_grad():
            return probed_sweep(self.net, obs, assignment, self.dictionaries, noise).output

    # --- per window -------------------------------------------------------------------------
    def assignment(self) -> Tensor:
        """The scheduler's A (B, M) for the next window."""
        return self.scheduler.next()

    def snapshot_probes(self) -> list[ProbeDictionary]:
        """Copies of the current window's dictionaries (one per layer), for a delayed :meth:`update`.

        Every state tensor is cloned (``refresh`` may change some in place); the configuration is
        shared. A deep copy, at a fraction of ``copy.deepcopy``'s cost.
        """
        snaps = []
        for d in self.dictionaries:
            s = copy.copy(d)
            for k in ProbeDictionary._STATE:
                t = getattr(d, k)
                setattr(s, k, None if t is None else t.clone())
            snaps.append(s)
        return snaps

    def update(self, outcomes: Tensor, assignment: Tensor,
               dictionaries: list[ProbeDictionary] | None = None) -> list[Tensor]:
        """Credit the window's branches and write −Δθ into each layer's ``weight.grad``.

        outcomes (B,) reward-like (higher is better); assignment (B, M) the A that produced them.
        dictionaries: the probes that produced them, one per layer (a :meth:`snapshot_probes` of an
        earlier window, when the outcomes arrive late); None = the current ones (the window just run).
        Returns the window's coefficients (K,) per layer.
        """
        out = torch.as_tensor(outcomes, dtype=torch.float64).cpu()  # (B,): the credit is bookkept on the CPU
        if not torch.isfinite(out).all():
            raise NonFiniteError("branch outcomes became NaN/Inf")
        adv = branch_advantage(out, assignment, baseline=self.baseline)
        if self.advantage_scale == "std":  # fitness shaping: scale-free in the return's units
            adv = adv / adv.std().clamp_min(1e-8) if adv.numel() > 1 else adv
        elif self.advantage_scale == "abs_reward":
            adv = adv / (out - adv).abs().mean().clamp_min(1.0)  # out − adv is the baseline
        mu = route(adv, assignment)
        coeffs = module_coefficients(mu, None, assignment, self.num_probes)
        probes = self.dictionaries if dictionaries is None else dictionaries
        for layer, d, trace, c in zip(self.net.layers, probes, self.traces, coeffs):
            trace.push(c, d)
            trace.write_grad(layer.weight)
        self._last = coeffs
        self._last_probes = dictionaries
        return coeffs

    def end_window(self) -> None:
        """Probe bookkeeping after the optimizer step: yields/basis, scheduler statistics, new probes."""
        coeffs = getattr(self, "_last", None)
        if coeffs is not None:
            if hasattr(self.scheduler, "observe"):
                self.scheduler.observe(torch.stack([c.abs().mean() for c in coeffs]))
            snaps = getattr(self, "_last_probes", None) or self.dictionaries
            for d, snap, c in zip(self.dictionaries, snaps, coeffs):
                if d.regime == "semi_persistent":
                    if snap is not d:  # delayed credit: a probe replaced since that window earns none of it
                        c = torch.where(d.probe_ids() == snap.probe_ids(), c, torch.zeros_like(c))
                    d.update_stats(c)
                elif d.regime == "learned_subspace":
                    if snap is not d:  # delayed credit: the live basis moves along the credited window's probes
                        snap.basis_u, snap.basis_v, snap.basis_s = d.basis_u, d.basis_v, d.basis_s
                        snap.update_basis(c)
                        d.basis_u, d.basis_v, d.basis_s = snap.basis_u, snap.basis_v, snap.basis_s
                    else:
                        d.update_basis(c)
        self._last = self._last_probes = None
        for d in self.dictionaries:
            d.refresh()

    # --- checkpoint -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"dictionaries": [d.state_dict() for d in self.dictionaries],
                "traces": [t.state_dict() for t in self.traces], "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for d, s in zip(self.dictionaries, state["dictionaries"]):
            d.load_state_dict(s)
        for t, s in zip(self.traces, state["traces"]):
            t.load_state_dict(s)
        self.scheduler.load_state_dict(state["scheduler"])
        self._last = self._last_probes = None


def rule_from_config(rule: "ProbeConfig", net: RateNetwork, seed: int = 0, advantage_scale: str = "none",
                     **override) -> ProbeRule:
    """A ProbeRule from a validated rule config (:class:`~neuroprobe.learners.probe.ProbeConfig`);
    ``seed`` keys the probes and the scheduler (the run's seed), ``advantage_scale`` is the
    experiment's ``[modulator] scale``; ``override`` replaces keys (e.g. ``history=1``)."""
    r = {**{k: getattr(rule, k) for k in _RULE_KEYS}, **override}
    return ProbeRule(net, seed=seed, advantage_scale=advantage_scale, **{k: r[k] for k in _RULE_KEYS})


_RULE_KEYS = ("branches", "num_probes", "rank", "scale", "scheduler", "null_fraction", "history", "decay", "kernel",
              "kernel_order", "kernel_delay", "baseline", "antithetic", "regime", "noise_std")


def window_seed(seed: int, window: int) -> int:
    """Environment seed shared by all branches of a window, from (run seed, window index)."""
    g = keyed_generator(seed, window, 0xE57)
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))

