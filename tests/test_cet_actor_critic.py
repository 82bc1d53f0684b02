"""Rule 'cet_ac' (the CET paper's actor-critic, neuroprobe.rules.cet_actor_critic), against
independent computations in float64:

* trace "none", no delay: the actor's update is autograd's gradient of the GAE policy-gradient loss
  (advantages summed by an explicit double loop), entropy bonus included;
* a perfect trace at delay D (every trace_on mode): the update is that exact gradient on the steps
  D back, and the alignment is 1;
* a cascade trace: the update pairs the delayed credit with ``cascade_filter`` of the activity (the
  traces' batched form) inside the λ-return's RL eligibility trace, a loop written out here; the
  rule's traces are those of the supervised rule ``CETDelayed``;
* the critic's gradient is autograd's on ½ vf mean (V − R)², R the λ-return by a double loop;
* runs: a short CartPole run learns (fixed seed, margin over a random policy), a run stopped after a
  checkpoint and resumed writes the uninterrupted run's metrics.csv byte for byte, bad configs are
  one-line errors.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.network import NetworkSpec, RateNetwork
from neuroprobe.rundir import read_metrics
from neuroprobe.rules.cet import CETDelayed
from neuroprobe.rules.cet_actor_critic import CETActorCritic, gae, split_signs
from neuroprobe.traces import cascade_filter, cascade_kernel

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "experiments" / "cet_cartpole_ac.toml"
F64 = torch.float64
GAMMA, LAM = 0.97, 0.9


def _nets(sizes=(3, 5, 4, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    n0 = 2 * sizes[0]
    actor = RateNetwork(NetworkSpec([n0, *sizes[1:]], activation="relu", readout="softmax", bias=False),
                        generator=g, dtype=F64)
    critic = RateNetwork(NetworkSpec([n0, *sizes[1:-1], 1], activation="relu", readout="identity", bias=True),
                         generator=g, dtype=F64)
    with torch.no_grad():
        for layer in critic.layers:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=F64) * 0.3)
    return actor, critic


def _rule(B, T, seed=0, **kw):
    actor, critic = _nets(seed=seed)
    opts = dict(envs=B, rollout=T, gamma=GAMMA, lam=LAM, ent_coef=0.0, vf_coef=0.5, max_grad_norm=None,
                generator=torch.Generator().manual_seed(seed + 100))
    opts.update(kw)
    return CETActorCritic(actor, critic, **opts)


def _drive(rule, steps, seed=1):
    """Step the rule on random observations/rewards/ends; returns the sequence and the update flags."""
    g = torch.Generator().manual_seed(seed)
    B = rule.B
    obs = torch.randn(steps + 1, B, 3, generator=g, dtype=F64)
    rew = torch.rand(steps, B, generator=g, dtype=F64)
    done = (torch.rand(steps, B, generator=g, dtype=F64) < 0.2).to(F64)
    acts, flags = [], []
    for t in range(steps):
        acts.append(rule.act(obs[t]).clone())
        flags.append(rule.observe(rew[t], done[t], obs[t + 1]))
    return obs, torch.stack(acts), rew, done, flags


def _hand_policy(weights, x):
    """log π and entropy of a ReLU MLP without biases, softmax readout (explicit formulas)."""
    h = x
    for l, w in enumerate(weights):
        h = h @ w.T
        if l < len(weights) - 1:
            h = torch.relu(h)
    logp = h - torch.logsumexp(h, -1, keepdim=True)
    return logp, -(logp.exp() * logp).sum(-1)


def _values(critic, x):
    h = x
    for l, layer in enumerate(critic.layers):
        h = h @ layer.weight.T + layer.bias
        if l < len(critic.layers) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)


def _advantages(delta, done, upto):
    """Â_k = Σ_{t=k}^{upto-1} (γλ)^{t-k} Π_{j=k}^{t-1} (1 − d_j) δ_t, by an explicit double loop."""
    A = torch.zeros(upto, delta.shape[1], dtype=F64)
    for k in range(upto):
        for b in range(delta.shape[1]):
            w, s = 1.0, 0.0
            for t in range(k, upto):
                s += w * float(delta[t, b])
                w *= GAMMA * LAM * (1.0 - float(done[t, b]))
            A[k, b] = s
    return A


def _expected_actor_grad(rule, obs, acts, rew, done, T, D, ent_coef):
    """Autograd's gradient of −(1/BT)[Σ_k Â_k log π(a_k|s_k) over k < T − D] − c/(BT) Σ_t H_t over t < T."""
    B = rule.B
    x = split_signs(obs)
    with torch.no_grad():
        v = _values(rule.critic, x)
    delta = rew[:T] + GAMMA * (1 - done[:T]) * v[1:T + 1] - v[:T]
    A = _advantages(delta, done, T - D)
    weights = [layer.weight.detach().clone().requires_grad_(True) for layer in rule.actor.layers]
    logp, ent = _hand_policy(weights, x[:T])
    lp = logp.gather(-1, acts[:T].unsqueeze(-1)).squeeze(-1)
    loss = -(A * lp[:T - D]).sum() / (B * T) - ent_coef * ent.sum() / (B * T)
    return torch.autograd.grad(loss, weights)


# ----------------------------------------------------------------------------------- actor: exact cases


def test_no_trace_no_delay_is_autograds_policy_gradient():
    B, T = 3, 9
    rule = _rule(B, T, trace="none", delay=0, ent_coef=0.05)
    obs, acts, rew, done, flags = _drive(rule, T)
    assert flags == [False] * (T - 1) + [True]
    want = _expected_actor_grad(rule, obs, acts, rew, done, T, 0, 0.05)
    for layer, w in zip(rule.actor.layers, want):
        torch.testing.assert_close(layer.weight.grad, w, rtol=1e-10, atol=1e-12)
    assert all(abs(c - 1) < 1e-12 for c in rule.last["alignment"].values())


@pytest.mark.parametrize("trace_on", ["presynaptic", "synapse", "synapse_preact"])
def test_perfect_trace_is_the_exact_gradient_of_d_steps_back(trace_on):
    B, T, D = 3, 11, 3
    rule = _rule(B, T, trace="perfect", delay=D, ent_coef=0.02, trace_on=trace_on)
    obs, acts, rew, done, _ = _drive(rule, T, seed=4)
    want = _expected_actor_grad(rule, obs, acts, rew, done, T, D, 0.02)
    for layer, w in zip(rule.actor.layers, want):
        torch.testing.assert_close(layer.weight.grad, w, rtol=1e-10, atol=1e-12)
    assert all(abs(c - 1) < 1e-12 for c in rule.last["alignment"].values())
    # the RL eligibility trace and the delay lines carry on: the second rollout's first update pairs
    # the credit of the first rollout's last D steps (here just: it is finite and not the first one)
    _drive(rule, T, seed=5)
    assert rule.updates == 2 and all(torch.isfinite(layer.weight.grad).all() for layer in rule.actor.layers)


def test_credit_lag_d_minus_1_is_off_by_one_step():
    """credit_lag = "D-1" (the authors' RL code) with a perfect trace peaking at D pairs the credit of
    D − 1 steps back with the activity of D steps back: no longer the exact gradient."""
    B, T, D = 3, 11, 3
    rule = _rule(B, T, trace="perfect", delay=D, credit_lag="D-1")
    _drive(rule, T, seed=4)
    assert rule.lags == [D - 1] * 3
    assert all(c < 0.999 for c in rule.last["alignment"].values())


# ----------------------------------------------------------------------------------- actor: the cascade


def test_cascade_update_pairs_delayed_credit_with_cascade_filter():
    """CET at D: E_t = cascade_filter(u)_t (order n, peak at D); the update is the RL-trace loop over
    ĝ_t = g_{t−D} ⊗ E_t, δ_{t−D}, d_{t−D}, written out here (g from autograd of log π)."""
    B, T, D, n = 2, 14, 4, 6
    rule = _rule(B, T, trace="cascade", order=n, delay=D, normalize="peak")
    obs, acts, rew, done, _ = _drive(rule, T, seed=7)
    x = split_signs(obs)
    with torch.no_grad():
        v = _values(rule.critic, x)
    delta = rew + GAMMA * (1 - done) * v[1:] - v[:-1]
    weights = [layer.weight.detach().clone().requires_grad_(True) for layer in rule.actor.layers]
    # per-step pre-activation credits ∂ log π(a_t)/∂h_l (autograd) and presynaptic activity
    credits, acts_in = [[] for _ in weights], [[] for _ in weights]
    for t in range(T):
        h, pres = x[t], []
        for l, w in enumerate(weights):
            acts_in[l].append(h.detach())
            pres.append(h @ w.T)
            h = torch.relu(pres[-1]) if l < len(weights) - 1 else pres[-1]
        lp = torch.log_softmax(h, -1).gather(-1, acts[t].unsqueeze(-1)).sum()
        for l, gl in enumerate(torch.autograd.grad(lp, pres)):
            credits[l].append(gl / (B * T))
    for l, layer in enumerate(rule.actor.layers):
        E = cascade_filter(torch.stack(acts_in[l]), n, D, normalize="peak")  # (T, B, n_in)
        z = torch.zeros(B, *layer.weight.shape, dtype=F64)
        acc = torch.zeros(layer.weight.shape, dtype=F64)
        for t in range(D, T):
            g = credits[l][t - D]
            z = GAMMA * LAM * z + g.unsqueeze(-1) * E[t].unsqueeze(-2)
            for b in range(B):
                acc += float(delta[t - D, b]) * z[b]
            z = z * (1 - done[t - D]).view(-1, 1, 1)
        torch.testing.assert_close(layer.weight.grad, -acc, rtol=1e-9, atol=1e-13)


def test_traces_are_the_supervised_rules_cet():
    """Each actor layer's trace is the supervised rule's (same order, delay, normalisation): equal
    kernels, equal to cascade_kernel (peak 1 at D), and equal outputs on the same inputs."""
    B, D, n = 3, 8, 6
    rule = _rule(B, 16, trace="cascade", order=n, delay=D, normalize="peak")
    net = RateNetwork(NetworkSpec([6, 5, 4, 2], activation="relu"), dtype=F64)
    sup = CETDelayed(net, batch=B, delay=D, trace="cascade", order=n, normalize="peak")
    want = cascade_kernel(n, D, 64, normalize="peak")
    assert int(want.argmax()) == D
    g = torch.Generator().manual_seed(3)
    for ours, theirs in zip(rule.traces, sup.traces):
        torch.testing.assert_close(ours.kernel(64), theirs.kernel(64), rtol=0, atol=0)
        torch.testing.assert_close(ours.kernel(64), want, rtol=1e-12, atol=1e-15)
        for _ in range(5):
            u = torch.randn(ours.shape, generator=g, dtype=F64)
            assert torch.equal(ours.step(u), theirs.step(u))


# ----------------------------------------------------------------------------------- critic, clipping


def test_critic_gradient_is_autograd_on_the_lambda_return_loss():
    B, T = 3, 8
    rule = _rule(B, T, trace="cascade", order=2, delay=2, vf_coef=0.7)
    obs, _, rew, done, _ = _drive(rule, T, seed=2)
    x = split_signs(obs)
    with torch.no_grad():
        v = _values(rule.critic, x)
    delta = rew + GAMMA * (1 - done) * v[1:] - v[:-1]
    R = _advantages(delta, done, T) + v[:T]
    params = [p.detach().clone().requires_grad_(True) for p in rule.critic.parameters()]
    crit = RateNetwork(rule.critic.spec, dtype=F64)
    with torch.no_grad():
        for q, p in zip(crit.parameters(), params):
            q.copy_(p)
    ws, bs = params[0::2], params[1::2]
    h = x[:T]
    for l, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if l < len(ws) - 1:
            h = torch.relu(h)
    loss = 0.7 * 0.5 * ((h.squeeze(-1) - R) ** 2).mean()
    want = torch.autograd.grad(loss, params)
    for p, w in zip(rule.critic.parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-10, atol=1e-12)
    # the rule's gae() is the same λ-return
    _, R2 = gae(rew, v[:T], done, v[T], GAMMA, LAM)
    torch.testing.assert_close(R2, R, rtol=1e-12, atol=1e-12)


def test_gradient_norm_is_clipped_over_actor_and_critic():
    B, T = 3, 6
    free, clipped = _rule(B, T, delay=1, order=2), _rule(B, T, delay=1, order=2, max_grad_norm=0.01)
    _drive(free, T), _drive(clipped, T)
    g1 = torch.cat([p.grad.flatten() for n in (free.actor, free.critic) for p in n.parameters()])
    g2 = torch.cat([p.grad.flatten() for n in (clipped.actor, clipped.critic) for p in n.parameters()])
    assert float(g1.norm()) > 0.01
    torch.testing.assert_close(g2, g1 * (0.01 / float(g1.norm())), rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------------- runs

SMALL = ["rule.total_steps=768", "rule.rollout=32", "rule.delay=5", "rule.order=3", "run.progress=false",
         "run.checkpoint_every=1"]


def _small_cfg(tmp_path) -> Path:
    """The shipped config with an inline 4-16-16-2 network (fast)."""
    text = CFG.read_text().replace('file = "../models/mlp_4_256_256_2.toml"',
                                   'sizes = [4, 16, 16, 2]\nactivation = "relu"\nbias = false')
    path = tmp_path / "small.toml"
    path.write_text(text)
    return path


def test_resumed_run_is_byte_identical(tmp_path, monkeypatch):
    from neuroprobe.loop import Loop
    from neuroprobe.runner import run_experiment

    cfg = _small_cfg(tmp_path)
    ref = run_experiment(cfg, overrides=SMALL, out=tmp_path / "ref", figures=False)
    want = (ref / "metrics.csv").read_bytes()
    m = {k: np.asarray(v, dtype=float) for k, v in read_metrics(ref / "metrics.csv").items()}
    # one row per episode; the 6th update ends the run after the last episode ended (not written)
    assert list(m["episode"]) == list(range(len(m["episode"]))) and m["update"][-1] == 5 and m["step"][-1] <= 768
    upd = np.isfinite(m["lr"])  # the rows right after an update (every episode is shorter than a rollout)
    assert list(m["update"][upd]) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(m["lr"][upd], 9e-4 * (1 - np.arange(1, 6) / 7), rtol=1e-12)  # annealed, N = 6
    assert np.isfinite(m["align"][upd]).all() and (m["align"][upd] < 1).all()
    s = json.loads((ref / "summary.json").read_text())
    assert math.isclose(s["per_seed"][0], float(m["return"][-50:].mean())) and s["updates"] == 5
    assert math.isclose(s["mean_align"], float(m["align"][upd].mean()))

    class Stop(Exception):
        pass

    real = Loop.checkpoint
    calls = {"n": 0}

    def stop_after_some(self):
        real(self)
        calls["n"] += 1
        if calls["n"] == 9:  # mid-run, mid-rollout (a checkpoint every episode of a copy)
            raise Stop

    monkeypatch.setattr(Loop, "checkpoint", stop_after_some)
    with pytest.raises(Stop):
        run_experiment(cfg, overrides=SMALL, out=tmp_path / "run", figures=False)
    monkeypatch.setattr(Loop, "checkpoint", real)
    partial = (tmp_path / "run" / "metrics.csv").read_bytes()
    assert want.startswith(partial) and partial != want
    run_experiment(resume=tmp_path / "run", figures=False)
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == want


def test_short_cartpole_run_learns(tmp_path):
    """Backprop reference (trace none, D = 0) on CartPole, 8192 steps, fixed seed: the last-50 mean
    return is twice a random policy's (about 22; seeds 0-3 gave 72, 66, 85, 95)."""
    from neuroprobe.runner import run_experiment

    cfg = _small_cfg(tmp_path)
    out = run_experiment(cfg, overrides=["rule.total_steps=8192", "rule.rollout=16", "rule.trace=none",
                                         "rule.delay=0", "rule.lr=0.005", "rule.anneal_lr=false",
                                         "run.progress=false"], out=tmp_path / "learn", figures=False)
    s = json.loads((out / "summary.json").read_text())
    assert s["per_seed"][0] > 45, s


@pytest.mark.parametrize("override, key", [
    ("seeds=2", "seeds"),
    ("task.reward=episode_end", "task.reward"),
    ("rule.credit_lag=D-1", "credit_lag"),   # with rule.delay = 0
    ("rule.total_steps=100", "rule.total_steps"),
    ("rule.beta=0.9", "rule.beta"),           # order 6
    ("rule.trace_on=post", "rule.trace_on"),
    ("rule.order=0", "rule.order"),
    ("rule.delay=100000", "rule.delay"),      # memory
    ("rule.envs=0", "rule.envs"),
])
def test_bad_config_values_are_one_line_errors(override, key):
    sets = [override] + (["rule.delay=0"] if "credit_lag" in override else []) \
        + (["rule.trace_on=synapse", "rule.order=1000"] if "100000" in override else [])
    with pytest.raises(ConfigError) as ei:
        load_experiment(CFG, sets)
    msg = str(ei.value)
    assert "\n" not in msg and key in msg, msg


def test_model_bias_is_refused(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(CFG.read_text().replace('file = "../models/mlp_4_256_256_2.toml"',
                                            'sizes = [4, 8, 2]\nbias = true'))
    with pytest.raises(ConfigError, match="model.bias") as ei:
        load_experiment(path)
    assert "\n" not in str(ei.value)


def test_shipped_config_loads():
    exp = load_experiment(CFG)
    assert exp.rule.name == "cet_ac" and exp.rule.envs == 4 and exp.rule.rollout == 128
    assert exp.rule.total_steps == 100_000 and exp.rule.normalize == "peak"
    assert math.isclose(exp.rule.gamma, 0.99) and math.isclose(exp.rule.gae_lambda, 0.95)


def test_step_alignment_is_the_cosine_of_the_outer_products():
    from neuroprobe.rules.cet_actor_critic import _pair_cosine

    g = torch.Generator().manual_seed(0)
    gr, e, x = (torch.randn(3, 4, generator=g, dtype=F64), torch.rand(3, 5, generator=g, dtype=F64),
                torch.rand(3, 5, generator=g, dtype=F64))
    want = torch.nn.functional.cosine_similarity((gr[:, :, None] * e[:, None]).flatten(),
                                                 (gr[:, :, None] * x[:, None]).flatten(), dim=0)
    assert math.isclose(_pair_cosine(gr, e, x), float(want), rel_tol=1e-12)
    es = torch.rand(3, 4, 5, generator=g, dtype=F64)
    want = torch.nn.functional.cosine_similarity((gr[:, :, None] * es).flatten(),
                                                 (gr[:, :, None] * x[:, None]).flatten(), dim=0)
    assert math.isclose(_pair_cosine(gr, es, x), float(want), rel_tol=1e-12)


@pytest.mark.parametrize("n", [0, 1, 7])
def test_replay_equals_the_per_step_lambda_trace(n):
    """replay_lambda_trace (two matrix products per rollout) against n steps of the per-step
    recursion z ← decay·z + g ⊗ e; acc += Σ_b δ_b z_b; z ← keep·z, from a non-zero z, with episode ends."""
    from neuroprobe.rules.cet_actor_critic import replay_lambda_trace

    g = torch.Generator().manual_seed(3)
    B, o, i, decay = 3, 4, 5, 0.9 * 0.95
    G, E = torch.randn(n, B, o, generator=g, dtype=F64), torch.randn(n, B, i, generator=g, dtype=F64)
    delta = torch.randn(n, B, generator=g, dtype=F64)
    keep = (torch.rand(n, B, generator=g, dtype=F64) > 0.3).to(F64)
    z0, acc0 = torch.randn(B, o, i, generator=g, dtype=F64), torch.randn(o, i, generator=g, dtype=F64)
    z, acc = z0.clone(), acc0.clone()
    for j in range(n):  # the recursion written out, per environment and synapse
        for b in range(B):
            z[b] = decay * z[b] + torch.outer(G[j, b], E[j, b])
            acc += delta[j, b] * z[b]
            z[b] = keep[j, b] * z[b]
    z_r, acc_r = z0.clone(), acc0.clone()
    replay_lambda_trace(z_r, acc_r, G, E, delta, keep, decay)
    torch.testing.assert_close(acc_r, acc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z_r, z, rtol=1e-12, atol=1e-12)


def test_checkpoint_without_replay_buffers_resumes():
    """A state written before the replay (z and acc already hold every arrived step, no "arrived")
    resumes to the same update as an uninterrupted rule, to float64 rounding."""
    ref = _rule(2, 6, trace="cascade", order=3, delay=2)
    _drive(ref, 16)
    ref._replay_arrived()  # what the per-step update had already added to z and acc
    state = ref.state_dict()
    del state["arrived"]
    resumed = _rule(2, 6, trace="cascade", order=3, delay=2)
    resumed.load_state_dict(state)
    resumed.generator.set_state(ref.generator.get_state())  # the actions' generator lives in the run's checkpoint
    for r in (ref, resumed):
        _drive(r, 8, seed=5)
    for a, b in zip(ref.actor.layers, resumed.actor.layers):
        torch.testing.assert_close(b.weight.grad, a.weight.grad, rtol=1e-12, atol=1e-14)
