"""Tests of the learning rules against autograd, closed forms and hand computations.

NRL / weight perturbation: expected updates vs the autograd policy gradient; NRL's small-noise
limit; RMHL's ξ ⊗ x̃; REINFORCE eligibility vs the closed form; the δ-gated update and its sign;
CETDelayed vs autograd gradients of earlier batches and a direct convolution with the cascade kernel.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from neuroprobe.align import alignment
from neuroprobe.errors import ConfigError
from neuroprobe.modulators import RewardPredictionError
from neuroprobe.network import NetworkSpec, RateNetwork
from neuroprobe.rules import NRL, RMHL, CETDelayed, Reinforce, WeightPerturbation, nrl_step, rmhl_step, wp_step
from neuroprobe.traces import cascade_kernel

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64



def _net(sizes, batch=None, bias=False, seed=0, dtype=F64, init="xavier_normal"):
    return RateNetwork(NetworkSpec(list(sizes), bias=bias, init=init), batch=batch,
                       generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _lrelu(h):
    return torch.where(h >= 0, h, 0.1 * h)


def _lrelu_grad(h):
    return torch.where(h >= 0, torch.ones_like(h), torch.full_like(h, 0.1))


def _cos(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def _hand_logits(ws, bs, x, noise=None):
    """Hand MLP (LeakyReLU 0.1 hidden, identity last) -> (logits, list of layer inputs, list of preacts)."""
    inputs, preacts = [], []
    h = None
    for l, (w, b) in enumerate(zip(ws, bs)):
        inputs.append(x)
        h = x @ w.T
        if b is not None:
            h = h + b
        if noise is not None:
            h = h + noise[l]
        preacts.append(h)
        x = _lrelu(h)
    return h, inputs, preacts


def _policy_gradient(net, states, actions, adv):
    """Autograd gradient of J = Σ_t A_t log π(a_t|s_t) w.r.t. the weights (hand-written forward)."""
    ws = [l.weight.detach().clone().requires_grad_(True) for l in net.layers]
    logits, _, _ = _hand_logits(ws, [None] * len(ws), states)
    logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
    return torch.autograd.grad((adv * logp).sum(), ws)


def _fixed_problem(net, T, seed):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(T, net.layers[0].in_features, generator=g, dtype=F64)
    with torch.no_grad():
        probs = net(states)
    actions = torch.multinomial(probs, 1, generator=g).squeeze(-1)
    adv = torch.randn(T, generator=g, dtype=F64)
    return states, actions, adv


# ----------------------------------------------------------------------------------- NRL


def test_nrl_expected_update_aligns_with_autograd():
    net = _net([4, 16, 3], seed=1)
    states, actions, adv = _fixed_problem(net, T=8, seed=2)
    exact = _policy_gradient(net, states, actions, adv)
    gen = torch.Generator().manual_seed(3)
    est = [torch.zeros_like(l.weight) for l in net.layers]
    with torch.no_grad():
        for _ in range(2):  # 2 chunks x 2000 passes
            a, dw, _ = nrl_step(net, states, 1e-3, 2000, True, "global", gen, actions=actions)
            assert torch.equal(a, actions)
            for e, d in zip(est, dw):
                e += (adv[:, None, None] * d).sum(0) / 2
    for l, (e, g) in enumerate(zip(est, exact)):
        assert _cos(e, g) >= 0.9, (l, _cos(e, g))
    # the estimate is of ∇J / N (N = 19 noise dimensions, global norm): check the scale too
    ratio = float((est[1] * exact[1]).sum() / (exact[1] * exact[1]).sum())
    assert 0.7 / 19 < ratio < 1.3 / 19
    # and a wrong objective (flipped advantages) must not align
    flipped = _policy_gradient(net, states, actions, -adv)
    assert _cos(est[1], flipped[1]) < -0.9


@pytest.mark.parametrize("rule, threshold", [("nrl", 0.9), ("wp", 0.8)])
def test_alignment_function(rule, threshold):
    net = _net([4, 16, 3], seed=4)
    states = torch.randn(16, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    cos = alignment(net, rule, states, samples=2000, noise_std=1e-3, generator=torch.Generator().manual_seed(6))
    assert set(cos) == {"fc1", "fc2"}
    assert all(c >= threshold for c in cos.values()), cos


@pytest.mark.parametrize("noise_norm", ["global", "layer"])
def test_nrl_small_noise_limit(noise_norm):
    """σ → 0: ρ = ξ·∇_h log π, so the increment is (ξ ξᵀ/‖ξ‖²)∇ ⊗ x for one noisy pass."""
    sigma, T, seed = 1e-4, 5, 11
    net = _net([4, 16, 3], seed=7)
    states, actions, _ = _fixed_problem(net, T=T, seed=8)
    with torch.no_grad():
        _, dw, db = nrl_step(net, states, sigma, 1, True, noise_norm, torch.Generator().manual_seed(seed),
                             actions=actions)
    # the same noise, drawn again: one clean + one noisy pass per state and layer, clean zeroed
    g2 = torch.Generator().manual_seed(seed)
    xi = [(torch.randn(T, 2, m, generator=g2, dtype=F64) * sigma)[:, 1] for m in (16, 3)]
    # ∇_h log π(a|s) at the clean pass, by autograd on zero perturbations of the pre-activations
    ws = [l.weight.detach() for l in net.layers]
    zs = [torch.zeros(T, m, dtype=F64, requires_grad=True) for m in (16, 3)]
    logits, inputs, _ = _hand_logits(ws, [None, None], states, zs)
    logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).sum()
    grads = torch.autograd.grad(logp, zs)
    rho = sum((x * g).sum(-1) for x, g in zip(xi, grads))  # (T,)
    if noise_norm == "global":
        norms = [sum((x * x).sum(-1) for x in xi)] * 2
    else:
        norms = [(x * x).sum(-1) for x in xi]
    for l in range(2):
        want = (rho / norms[l])[:, None, None] * xi[l][:, :, None] * inputs[l].detach()[:, None, :]
        rel = float((dw[l] - want).norm() / want.norm())
        assert rel < 2e-3, (l, rel)  # O(σ) corrections; measured ~2e-4
        assert db[l].shape == (T, xi[l].shape[-1])
    # the tolerance is meaningful: a different noise draw gives a different increment
    with torch.no_grad():
        _, dw_other, _ = nrl_step(net, states, sigma, 1, True, noise_norm, torch.Generator().manual_seed(seed + 1),
                                  actions=actions)
    assert float((dw_other[1] - dw[1]).norm() / dw[1].norm()) > 0.1


def test_nrl_without_clean_pass_uses_mean_of_noisy_passes():
    net = _net([3, 5, 2], seed=0)
    obs = torch.randn(2, 3, dtype=F64)
    a = torch.tensor([0, 1])
    sigma = 0.05
    with torch.no_grad():
        _, dw, _ = nrl_step(net, obs, sigma, 3, False, "layer", torch.Generator().manual_seed(1), actions=a)
    g2 = torch.Generator().manual_seed(1)
    xi = [torch.randn(2, 3, m, generator=g2, dtype=F64) * sigma for m in (5, 2)]
    ws = [l.weight.detach() for l in net.layers]
    logits, inputs, _ = _hand_logits(ws, [None, None], obs[:, None, :].expand(2, 3, 3), xi)
    lp = torch.log_softmax(logits, -1).gather(-1, a[:, None, None].expand(2, 3, 1)).squeeze(-1)  # (2, 3)
    rho = lp - lp.mean(-1, keepdim=True)
    for l in range(2):
        coef = rho / (xi[l] ** 2).sum(-1)
        want = torch.einsum("bk,bko,bki->boi", coef, xi[l], inputs[l]) / 3
        torch.testing.assert_close(dw[l], want, rtol=1e-10, atol=1e-12)


def test_nrl_rejects_bad_arguments():
    net = _net([3, 5, 2])
    with pytest.raises(ConfigError, match="noise_std"):
        NRL(net, noise_std=0.0)
    with pytest.raises(ConfigError, match="passes"):
        NRL(net, passes=1, clean_pass=False)
    with pytest.raises(ConfigError, match="noise_norm"):
        NRL(net, noise_norm="unit")


def test_align_cli_json():
    proc = subprocess.run([sys.executable, "-m", "neuroprobe.cli", "align", "experiments/nrl_cartpole.toml",
                           "--samples", "2000", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    assert set(result) == {"fc1", "fc2"}
    assert result["fc1"] >= 0.9 and result["fc2"] >= 0.9, result


# ----------------------------------------------------------------------------------- RMHL


@pytest.mark.parametrize("batch", [None, 2])
def test_rmhl_increment_is_noise_times_noisy_input(batch):
    sigma, seed = 0.3, 21
    net = _net([4, 6, 3], batch=batch, seed=3)
    lead = () if batch is None else (batch,)
    obs = torch.randn(lead + (4,), generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        a, dw, db = rmhl_step(net, obs, sigma, torch.Generator().manual_seed(seed))
    assert a.shape == lead
    g2 = torch.Generator().manual_seed(seed)
    xi = [torch.randn(lead + (1, m), generator=g2, dtype=F64) * sigma for m in (6, 3)]
    w1 = net.layers[0].weight.detach()
    x0 = obs.unsqueeze(-2)                                 # (…, 1, 4)
    x1 = _lrelu(x0 @ w1.transpose(-1, -2) + xi[0])         # noisy hidden activity x̃
    for l, (x, n) in enumerate(zip((x0, x1), xi)):
        want = n[..., 0, :, None] * x[..., 0, None, :]     # ξ ⊗ x̃
        torch.testing.assert_close(dw[l], want, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(db[l], n[..., 0, :], rtol=1e-12, atol=1e-14)


def test_rmhl_rule_accumulates_eligibility_over_steps():
    sigma = 0.2
    net = _net([4, 6, 2], batch=2, seed=3)
    rule = RMHL(net, noise_std=sigma, generator=torch.Generator().manual_seed(5))
    ref_gen = torch.Generator().manual_seed(5)
    total = [torch.zeros_like(l.weight) for l in net.layers]
    for t in range(3):
        obs = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(100 + t))
        rule.act(obs)
        with torch.no_grad():
            _, dw, _ = rmhl_step(net, obs, sigma, ref_gen)
        for s, d in zip(total, dw):
            s += d
    for e, s in zip(rule.elig, total):
        torch.testing.assert_close(e, s, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------- weight perturbation


def test_weight_perturbation_expected_update_aligns_with_autograd():
    """Linear-softmax policy: E[WP update] ∥ ∇ Σ A_t log π(a_t|s_t) (closed form (onehot − π) ⊗ s)."""
    net = _net([5, 3], seed=2)
    states, actions, adv = _fixed_problem(net, T=6, seed=3)
    with torch.no_grad():
        pi = net(states)
    closed = ((adv[:, None] * (F.one_hot(actions, 3).to(F64) - pi)).T @ states)
    torch.testing.assert_close(_policy_gradient(net, states, actions, adv)[0], closed, rtol=1e-10, atol=1e-12)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        _, incs = wp_step(net, states, 1e-3, 3000, gen, actions=actions)
    est = (adv[:, None, None] * incs[0]).sum(0)
    assert _cos(est, closed) > 0.8, _cos(est, closed)
    assert _cos(est, -closed) < -0.8


def test_weight_perturbation_rule_accumulates():
    net = _net([3, 2], batch=2, seed=0)
    rule = WeightPerturbation(net, noise_std=1e-3, passes=4, generator=torch.Generator().manual_seed(1))
    rule.act(torch.randn(2, 3, dtype=F64))
    assert rule.elig[0].shape == (2, 2, 3)
    assert float(rule.elig[0].abs().sum()) > 0
    with pytest.raises(ConfigError, match="passes"):
        WeightPerturbation(net, passes=0)


# ----------------------------------------------------------------------------------- REINFORCE & sign


def test_reinforce_eligibility_equals_grad_log_pi():
    M = 3
    net = _net([4, 6, 2], batch=M, seed=5)
    rule = Reinforce(net, generator=torch.Generator().manual_seed(0))
    want = [torch.zeros_like(l.weight) for l in net.layers]
    for t in range(3):
        obs = torch.randn(M, 4, dtype=F64, generator=torch.Generator().manual_seed(t))
        a = rule.act(obs)
        assert a.shape == (M,)
        for m in range(M):
            ws = [l.weight[m].detach().clone().requires_grad_(True) for l in net.layers]
            logits, _, _ = _hand_logits(ws, [None, None], obs[m])
            grads = torch.autograd.grad(torch.log_softmax(logits, -1)[a[m]], ws)
            for w, g in zip(want, grads):
                w[m] += g
    for e, w in zip(rule.elig, want):
        torch.testing.assert_close(e, w, rtol=1e-10, atol=1e-12)


def test_reinforce_eligibility_linear_softmax_closed_form():
    net = _net([5, 3], seed=1)
    rule = Reinforce(net, generator=torch.Generator().manual_seed(2))
    s = torch.randn(5, dtype=F64)
    a = rule.act(s)
    with torch.no_grad():
        pi = torch.softmax(net.layers[0].weight @ s, -1)
    torch.testing.assert_close(rule.elig[0], torch.outer(F.one_hot(a, 3).to(F64) - pi, s), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rule_cls", [NRL, RMHL, Reinforce])
def test_reinforce_sign_and_masks(rule_cls):
    """param.grad = −δ e; SGD(η) then gives W + η δ e; masked-out models: zero grad, eligibility kept."""
    M, lr = 3, 0.1
    net = _net([4, 8, 2], batch=M, seed=2)
    rpe = RewardPredictionError(batch=M, smoothing=0.5, init=0.0)  # δ = r on the first reward
    kw = {"noise_std": 0.05} if rule_cls is not Reinforce else {}
    rule = rule_cls(net, rpe=rpe, generator=torch.Generator().manual_seed(3), **kw)
    for t in range(4):
        rule.act(torch.randn(M, 4, dtype=F64, generator=torch.Generator().manual_seed(t)))
    w0 = [p.detach().clone() for p in net.parameters()]
    e0 = [e.clone() for e in rule.elig]
    assert all(float(e[m].abs().sum()) > 0 for e in e0 for m in range(M))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    mask = torch.tensor([True, False, True])
    delta = rule.reinforce(torch.tensor([2.0, 5.0, 3.0]), mask)
    assert delta.tolist() == [2.0, 0.0, 3.0]
    d = torch.tensor([2.0, 0.0, 3.0], dtype=F64)[:, None, None]
    for p, e in zip(net.parameters(), e0):
        torch.testing.assert_close(p.grad, -d * e, rtol=0, atol=0)
        assert float(p.grad[1].abs().max()) == 0.0
    opt.step()
    for p, w, e in zip(net.parameters(), w0, e0):
        torch.testing.assert_close(p.detach(), w + lr * d * e, rtol=1e-14, atol=1e-16)
        assert torch.equal(p.detach()[1], w[1])  # masked model unchanged
    for e, before in zip(rule.elig, e0):
        assert torch.equal(e[1], before[1])      # eligibility kept where masked out
        assert float(e[0].abs().max()) == 0.0 and float(e[2].abs().max()) == 0.0
    # and the update ascends the "objective" δ·e: moving along +η δ e increases ⟨W, e⟩ for δ > 0
    for p, w, e in zip(net.parameters(), w0, e0):
        assert float(((p.detach() - w)[0] * e[0]).sum()) > 0


def test_reinforce_without_model_axis():
    net = _net([3, 4, 2], seed=0)
    rpe = RewardPredictionError(batch=1, smoothing=0.5, init=1.0)
    rule = NRL(net, noise_std=0.05, rpe=rpe, generator=torch.Generator().manual_seed(0))
    rule.act(torch.randn(3, dtype=F64))
    e0 = [e.clone() for e in rule.elig]
    delta = rule.reinforce(4.0)
    assert delta.tolist() == [3.0]
    for p, e in zip(net.parameters(), e0):
        torch.testing.assert_close(p.grad, -3.0 * e, rtol=0, atol=0)
    assert all(float(e.abs().max()) == 0.0 for e in rule.elig)


# ----------------------------------------------------------------------------------- CETDelayed

B, SIZES = 4, [5, 7, 6, 3]


def _cet_net(seed=0):
    net = RateNetwork(NetworkSpec(SIZES, bias=True, init="kaiming_uniform"),
                      generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for l in net.layers:
            l.bias.copy_(torch.randn(l.bias.shape, generator=g) * 0.3)
    return net


def _batches(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, SIZES[0], generator=g), torch.randint(0, SIZES[-1], (B,), generator=g)) for _ in range(T)]


def _autograd(net, x, y):
    """Autograd of the mean cross-entropy (hand forward): weight grads, bias grads, ∂L/∂h_l, layer inputs."""
    ws = [l.weight.detach().clone().requires_grad_(True) for l in net.layers]
    bs = [l.bias.detach().clone().requires_grad_(True) for l in net.layers]
    logits, inputs, preacts = _hand_logits(ws, bs, x)
    for h in preacts:
        h.retain_grad()
    F.cross_entropy(logits, y).backward()
    return ([w.grad for w in ws], [b.grad for b in bs], [h.grad.detach() for h in preacts],
            [i.detach() for i in inputs])


def _grads(net):
    return [l.weight.grad.clone() for l in net.layers], [l.bias.grad.clone() for l in net.layers]


@pytest.mark.parametrize("trace_on", ["presynaptic", "synapse"])
@pytest.mark.parametrize("trace", ["none", "cascade", "perfect"])
def test_cet_no_delay_is_backprop(trace, trace_on):
    net = _cet_net()
    rule = CETDelayed(net, batch=B, delay=0, trace=trace, order=3, trace_on=trace_on)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    for x, y in _batches(5):
        stats = rule.step(x, y)
        gw, gb, _, _ = _autograd(net, x, y)
        with torch.no_grad():
            logits = _hand_logits([l.weight for l in net.layers], [l.bias for l in net.layers], x)[0]
        assert stats["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
        for l, layer in enumerate(net.layers):
            torch.testing.assert_close(layer.weight.grad, gw[l], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(layer.bias.grad, gb[l], rtol=1e-5, atol=1e-6)
        assert all(c == pytest.approx(1.0, abs=1e-5) for c in rule.last_alignment.values())
        opt.step()  # weights change every step: the gradient must follow them


@pytest.mark.parametrize("trace_on", ["presynaptic", "synapse"])
def test_cet_perfect_trace_delayed_gradient(trace_on):
    """Constant weights: .grad at step t is the autograd gradient of batch t − D (zero before D)."""
    D, T = 3, 9
    net = _cet_net(1)
    rule = CETDelayed(net, batch=B, delay=D, trace="perfect", trace_on=trace_on)
    data = _batches(T, seed=1)
    ref = [_autograd(net, x, y) for x, y in data]
    for t, (x, y) in enumerate(data):
        rule.step(x, y)
        gw, gb = _grads(net)
        for l in range(3):
            if t < D:
                assert float(gw[l].abs().max()) == 0.0 and float(gb[l].abs().max()) == 0.0
            else:
                torch.testing.assert_close(gw[l], ref[t - D][0][l], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(gb[l], ref[t - D][1][l], rtol=1e-5, atol=1e-6)
                # and it is not the gradient of the current batch
                assert not torch.allclose(gw[l], ref[t][0][l], rtol=1e-3, atol=1e-4)
        if t >= D:
            assert all(c == pytest.approx(1.0, abs=1e-5) for c in rule.last_alignment.values())


def test_cet_retrograde_delays_per_layer():
    D, T = 2, 10
    net = _cet_net(2)
    rule = CETDelayed(net, batch=B, delay=D, delay_mode="retrograde", trace="perfect")
    assert rule.delays == [6, 4, 2]
    data = _batches(T, seed=2)
    ref = [_autograd(net, x, y) for x, y in data]
    for t, (x, y) in enumerate(data):
        rule.step(x, y)
        gw, gb = _grads(net)
        for l, d in enumerate([6, 4, 2]):
            if t < d:
                assert float(gw[l].abs().max()) == 0.0
            else:
                torch.testing.assert_close(gw[l], ref[t - d][0][l], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(gb[l], ref[t - d][1][l], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, order, normalize", [("cascade", 3, "area"), ("cascade", 2, "peak"),
                                                     ("cascade", 4, None), ("exponential", 1, "area")])
def test_cet_cascade_trace_equals_direct_convolution(kind, order, normalize):
    """grad W_l(t) = Σ_b g_{t−D,b} ⊗ Σ_k h[k] x_{t−k,b} with the normalised cascade kernel h."""
    D, T = 3, 12
    net = _cet_net(3)
    rule = CETDelayed(net, batch=B, delay=D, trace=kind, order=order, normalize=normalize)
    data = _batches(T, seed=3)
    ref = [_autograd(net, x, y) for x, y in data]
    raw = cascade_kernel(order, D, T, normalize=None)
    long = cascade_kernel(order, D, 20000, normalize=None)  # infinite-horizon area / peak
    scale = {"area": 1 / float(long.sum()), "peak": 1 / float(long.max()), None: 1.0}[normalize]
    h = raw * scale
    if normalize == "peak":
        assert float(h[D]) == pytest.approx(1.0)  # integer delay: the kernel peaks at D
    for t, (x, y) in enumerate(data):
        rule.step(x, y)
        gw, gb = _grads(net)
        for l in range(3):
            if t < D:
                assert float(gw[l].abs().max()) == 0.0
                continue
            g = ref[t - D][2][l].double()                            # (B, n_out) credit of batch t − D
            trace = sum(h[k] * ref[t - k][3][l].double() for k in range(t + 1))  # (B, n_in)
            want = g.T @ trace
            torch.testing.assert_close(gw[l].double(), want, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(gb[l].double(), g.sum(0), rtol=1e-5, atol=1e-6)


def test_cet_synapse_bias_gradient_is_backprop():
    net = _cet_net()
    rule = CETDelayed(net, batch=B, delay=0, trace="none", trace_on="synapse")
    x, y = _batches(1)[0]
    rule.step(x, y)
    _, gb, _, _ = _autograd(net, x, y)
    torch.testing.assert_close(net.layers[-1].bias.grad, gb[-1], rtol=1e-5, atol=1e-6)  # identity layer: fine
    for l in range(len(net.layers) - 1):
        torch.testing.assert_close(net.layers[l].bias.grad, gb[l], rtol=1e-5, atol=1e-6)


def test_cet_rejects_bad_arguments():
    net = _cet_net()
    with pytest.raises(ConfigError, match="trace"):
        CETDelayed(net, batch=B, trace="boxcar")
    with pytest.raises(ConfigError, match="trace_on"):
        CETDelayed(net, batch=B, trace_on="dendrite")
    with pytest.raises(ConfigError):
        CETDelayed(_net([3, 2], batch=2), batch=B)
    rule = CETDelayed(net, batch=B)
    with pytest.raises(ConfigError, match="batch"):
        rule.step(torch.randn(B + 1, SIZES[0]), torch.zeros(B + 1, dtype=torch.long))


def test_cet_supports_float64_network():
    net = RateNetwork(NetworkSpec([5, 7, 3], bias=True), generator=torch.Generator().manual_seed(0), dtype=F64)
    rule = CETDelayed(net, batch=B, delay=0, trace="none")
    x, y = torch.randn(B, 5, dtype=F64), torch.randint(0, 3, (B,))
    rule.step(x, y)
    assert net.layers[0].weight.grad.dtype == F64
