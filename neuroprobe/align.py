"""Gradient-alignment diagnostic: does a rule's expected update point along the true gradient?

On fixed inputs (states visited by the clean policy of the freshly initialised network) the rule's
update is averaged over N noise samples and compared, per layer, by cosine similarity with the
exact autograd gradient of the same objective:

* NRL, weight perturbation, forward gradient, BP: fixed actions a_t (sampled once from the clean policy) and fixed
  advantages A_t ~ N(0, 1) (an RPE-weighted episode); objective J = Σ_t A_t log π(a_t | s_t); the
  rule's update is Σ_t A_t · (its eligibility increment at step t).
* probe: same objective, fixed actions and advantages as NRL; each branch is scored by the exact
  J(W + ΔW_b) − J(W) (:func:`probe_alignment`).
* RMHL: its eligibility ξ ⊗ x̃ carries no information about a fixed action (the noise must *cause*
  the action), so its objective is the expected reward J = Σ_t Σ_a π(a|s_t) q_t(a) of a fixed
  random reward table q_t ~ N(0, 1); the noisy network acts and δ = q_t(ã) − Σ_a π(a|s_t) q_t(a).

Samples are drawn in chunks, all states and samples of a chunk as one batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .network import RateNetwork
from .rules.estimators import log_prob_of, node_perturbation_increment, sample_actions
from .rules.forward_gradient import fg_step
from .rules.nrl import nrl_step
from .rules.weight_perturbation import wp_step


def _per_layer(net: RateNetwork, tensors: list[Tensor]) -> dict[str, Tensor]:
    """Group a list in net.parameters() order into one flat vector per layer (weight + bias)."""
    out, it = {}, iter(tensors)
    for name, layer in zip(net.layer_names, net.layers):
        parts = [next(it).flatten()]
        if layer.bias is not None:
            parts.append(next(it).flatten())
        out[name] = torch.cat(parts)
    return out


def cosines(net: RateNetwork, estimate: list[Tensor], exact: list[Tensor]) -> dict[str, float]:
    e, g = _per_layer(net, estimate), _per_layer(net, exact)
    return {n: float(torch.nn.functional.cosine_similarity(e[n].double(), g[n].double(), dim=0)) for n in e}


def collect_states(net: RateNetwork, task: str, n_states: int, seed: int, generator: torch.Generator) -> Tensor:
    """States visited by the clean policy of ``net`` on ``task`` (episodes restart as needed)."""
    from .tasks import make_env

    env = make_env(task, seed=seed)
    obs, _ = env.reset(seed=seed)
    states = []
    with torch.no_grad():
        while len(states) < n_states:
            s = torch.as_tensor(obs, dtype=torch.float32)
            states.append(s)
            a = sample_actions(net(s), generator)
            obs, _, term, trunc, _ = env.step(int(a))
            if term or trunc:
                obs, _ = env.reset()
    env.close()
    return torch.stack(states)


def alignment(net: RateNetwork, rule: str, states: Tensor, samples: int, noise_std: float,
              generator: torch.Generator, passes_chunk: int = 250, noise_norm: str = "global",
              clean_pass: bool = True, passes: int = 1) -> dict[str, float]:
    """Per-layer cosine between the rule's expected update (over ``samples`` noise draws) and the exact
    gradient of its objective (module docstring). ``states`` (T, n_in). For NRL without a clean pass,
    each sample is a group of ``passes`` noisy passes whose mean log-probability is the reference."""
    T = states.shape[0]
    params = list(net.parameters())
    with torch.no_grad():
        clean = net.sweep(states.unsqueeze(-2))
        actions = sample_actions(clean.output[:, 0], generator)
    adv = torch.randn(T, generator=generator)
    q = torch.randn(T, net.layer_sizes[-1], generator=generator)

    # exact gradient of the objective
    with torch.enable_grad():
        sweep = net.sweep(states.unsqueeze(-2))
        if rule == "rmhl":
            objective = (sweep.output[:, 0] * q).sum()
        else:
            objective = (adv * log_prob_of(sweep.logits, actions)[:, 0]).sum()
        exact = torch.autograd.grad(objective, params)
    if rule == "bp":
        return cosines(net, list(exact), list(exact))

    est = [torch.zeros_like(p) for p in params]
    done = 0
    with torch.no_grad():
        while done < samples:
            k = min(passes_chunk, samples - done)
            if rule == "nrl" and clean_pass:
                _, dw, db = nrl_step(net, states, noise_std, k, True, noise_norm, generator, actions=actions)
                incs = _interleave(net, dw, db)
                weight = adv
            elif rule == "nrl":  # noisy passes only: groups of `passes` passes, each its own reference
                g = max(k // passes, 1)
                k = g * passes
                x = states.unsqueeze(1).expand(T, g, states.shape[-1])
                _, dw, db = nrl_step(net, x, noise_std, passes, False, noise_norm, generator,
                                     actions=actions.unsqueeze(1).expand(T, g))
                incs = [i.mean(1) for i in _interleave(net, dw, db)]
                weight = adv
            elif rule == "wp":
                _, incs = wp_step(net, states, noise_std, k, generator, actions=actions)
                weight = adv
            elif rule == "fg":  # k random tangents per state, one batched jvp
                _, incs = fg_step(net, states, k, generator, actions=actions)
                weight = adv
            elif rule == "rmhl":
                x = states.unsqueeze(-2).expand(T, k, states.shape[-1])
                noise = net.sample_noise((T, k), noise_std, generator)
                noisy = net.sweep(x, noise)
                a = sample_actions(noisy.output, generator)                       # (T, k)
                delta = q.gather(-1, a) - (clean.output[:, 0] * q).sum(-1, keepdim=True)
                dw, db = node_perturbation_increment(noisy.inputs, noise, delta)
                incs = _interleave(net, dw, db)
                weight = torch.ones(T)
            else:
                raise ValueError(f"alignment: unknown rule {rule!r}; allowed: nrl, wp, fg, rmhl, bp")
            for e, inc in zip(est, incs):
                e.add_((weight.reshape((T,) + (1,) * (inc.dim() - 1)) * inc).sum(0) * (k / samples))
            done += k
    return cosines(net, est, list(exact))


def _interleave(net: RateNetwork, dw: list[Tensor], db: list[Tensor]) -> list[Tensor]:
    out = []
    for l, layer in enumerate(net.layers):
        out.append(dw[l])
        if layer.bias is not None:
            out.append(db[l])
    return out


def probe_alignment(net: RateNetwork, states: Tensor, samples: int, generator: torch.Generator, rule_cfg,
                    seed: int = 0) -> dict[str, float]:
    """Rule "probe": per-layer cosine between the expected directional update and the autograd gradient.

    Same fixed states, actions a_t and advantages A_t ~ N(0, 1) as for NRL, objective
    J(W) = Σ_t A_t log π(a_t | s_t). Each window the scheduler emits A (B × M) and every branch b is
    scored by its outcome J(W + ΔW_b) − J(W) (all T states of all B branches in one probed sweep;
    the null baseline, exact because the null branches score J(W)); the rule's update
    (:meth:`~neuroprobe.rules.probe.ProbeRule.update`, history 1) is averaged over
    ceil(samples / B) windows, i.e. ``samples`` branches in all.
    """
    from .rules.probe import probed_sweep, rule_from_config

    T = states.shape[0]
    params = [layer.weight for layer in net.layers]
    with torch.no_grad():
        actions = sample_actions(net.sweep(states.unsqueeze(-2)).output[:, 0], generator)
    adv = torch.randn(T, generator=generator)
    with torch.enable_grad():
        objective = (adv * log_prob_of(net.sweep(states.unsqueeze(-2)).logits, actions)[:, 0]).sum()
        exact = torch.autograd.grad(objective, params)
    rule = rule_from_config(rule_cfg, net, seed=seed, history=1, decay=1.0, kernel="none")
    B = rule.branches
    windows = -(-samples // B)
    est = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    x = states.unsqueeze(0).expand(B, T, states.shape[-1])
    act = actions.unsqueeze(0).expand(B, T)
    with torch.no_grad():
        for _ in range(windows):
            A = rule.assignment()
            J = (adv * log_prob_of(probed_sweep(net, x, A, rule.dictionaries).logits.unsqueeze(-2), act)[..., 0]).sum(-1)
            j0 = (adv * log_prob_of(net.sweep(states.unsqueeze(-2)).logits, actions)[:, 0]).sum()
            rule.update(J.double() - j0.double(), A)
            for e, p in zip(est, params):
                e.sub_(p.grad.double() / windows)  # grad holds −Δθ
            rule.end_window()
        for p in params:
            p.grad = None
    return {n: float(torch.nn.functional.cosine_similarity(e.flatten(), g.double().flatten(), dim=0))
            for n, e, g in zip(net.layer_names, est, exact)}


def align_config(exp, samples: int = 2000, n_states: int = 64) -> dict[str, float]:
    """The ``neuroprobe align`` computation for a validated RL experiment (first seed's network)."""
    from .errors import ConfigError

    if exp.family != "rl":
        raise ConfigError(f"align: task {exp.task.name!r} is not an RL task; the CET alignment is a column of its "
                          f"metrics.csv (align_<layer>)")
    gen = torch.Generator().manual_seed(exp.seed)
    net = RateNetwork(exp.model_spec, generator=gen)
    states = collect_states(net, exp.task.name, n_states, exp.seed, gen)
    r = exp.rule
    if r.name == "probe":
        return probe_alignment(net, states, samples, gen, r, seed=exp.seed)
    return alignment(net, r.name, states, samples, getattr(r, "noise_std", 1e-3), gen,
                     noise_norm=getattr(r, "noise_norm", "global"), clean_pass=getattr(r, "clean_pass", True),
                     passes=getattr(r, "passes", 1))
