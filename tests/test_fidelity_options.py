"""Fidelity options (issue 14): each pinned to a float64 transcription of its formula written here.

NRL ``lr_scale = "n_out"`` (grad W_l = −δ·n_l·e_l) and ``variant = "authors"`` (K noise-free
approximating passes + one noisy pass, ρ = log π̃(a) − log((1/K) Σ_k π_k(a))); CET
``trace_on = "synapse_preact"`` (f'(h)⊗x traced per synapse, paired with the delayed pre-activation
error: f' twice) and ``credit_lag = "D-1"`` (the credit of D_l − 1 steps back meets a kernel peaking
at D_l). The references are plain numpy loops over steps, layers and passes on tiny networks; they
share only the random draws with the rules (same generator, same draw order).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.modulators import RewardPredictionError
from neuroprobe.network import NetworkSpec, RateNetwork
from neuroprobe.protocols import BuildContext
from neuroprobe.rules import NRL, CETDelayed, nrl_step
from cet_reference import assert_close, cet_data, cet_kernel, cet_net

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
TOL = 1e-12


def _assert_close(got, want, what=""):
    assert_close(got, want, TOL, what)


def _lrelu(h):
    return np.where(h >= 0, h, 0.1 * h)


def _lrelu_grad(h):
    return np.where(h >= 0, 1.0, 0.1)


def _log_softmax(z):
    m = z.max()
    return z - m - math.log(np.exp(z - m).sum())


def _forward(ws, bs, x, noise):
    """Hand MLP for one input x (n_in,): LeakyReLU 0.1 hidden, identity last; ξ_l added to h_l.
    Returns (logits, presynaptic inputs per layer)."""
    inputs, h = [], None
    for l, (w, b) in enumerate(zip(ws, bs)):
        inputs.append(x)
        h = w @ x + (0.0 if b is None else b) + noise[l]
        x = _lrelu(h) if l < len(ws) - 1 else h
    return h, inputs


def _params(net):
    """Per model m: lists of numpy weights and biases (None without biases)."""
    ws = [l.weight.detach().numpy() for l in net.layers]
    bs = [None if l.bias is None else l.bias.detach().numpy() for l in net.layers]
    if net.batch is None:
        return [ws], [bs]
    return ([[w[m] for w in ws] for m in range(net.batch)],
            [[None if b is None else b[m] for b in bs] for m in range(net.batch)])


def _sample(probs, gen):
    """The rule's categorical draw: one multinomial call on the (M, A) probabilities."""
    return torch.multinomial(torch.as_tensor(np.stack(probs)), 1, generator=gen).squeeze(-1).numpy()


# ----------------------------------------------------------------------------------- NRL references


def _nrl_paper_reference(net, obs_seq, sigma, passes, noise_norm, seed):
    """Eligibility (weights, biases) after the steps of obs_seq, clean pass + K noisy passes:
    e_l += (1/K) Σ_k ρ_k ξ_l,k/‖ξ_k‖² ⊗ x̃_l−1,k,  ρ_k = log π̃_k(a) − log π(a)."""
    gen = torch.Generator().manual_seed(seed)
    W, Bb = _params(net)
    M, L, P = len(W), len(net.layers), passes + 1
    sizes = [l.out_features for l in net.layers]
    ew = [[np.zeros_like(w) for w in W[m]] for m in range(M)]
    eb = [[np.zeros(n) for n in sizes] for _ in range(M)]
    for obs in obs_seq:
        lead = (M,) if net.batch is not None else ()
        z = [(torch.randn(lead + (P, n), generator=gen, dtype=F64) * sigma).numpy().reshape(M, P, n)
             for n in sizes]
        clean = [_forward(W[m], Bb[m], obs[m], [np.zeros(n) for n in sizes]) for m in range(M)]
        probs = [np.exp(_log_softmax(c[0])) for c in clean]
        acts = _sample(probs, gen)
        for m in range(M):
            a = acts[m]
            lp0 = _log_softmax(clean[m][0])[a]
            for k in range(1, P):
                xi = [z[l][m, k] for l in range(L)]
                logits, inputs = _forward(W[m], Bb[m], obs[m], xi)
                rho = _log_softmax(logits)[a] - lp0
                total = sum(float(x @ x) for x in xi)
                for l in range(L):
                    n2 = total if noise_norm == "global" else float(xi[l] @ xi[l])
                    ew[m][l] += rho / n2 * np.outer(xi[l], inputs[l]) / passes
                    eb[m][l] += rho / n2 * xi[l] / passes
    return ew, eb


def _nrl_authors_reference(net, obs_seq, sigma, passes, noise_norm, seed):
    """The NRL authors' noisy-passes-only step: K approximating passes without noise, one noisy
    pass (the only noise drawn), a from the last approximating pass, ρ = log π̃(a) − log((1/K) Σ π_k(a))."""
    gen = torch.Generator().manual_seed(seed)
    W, Bb = _params(net)
    M, L = len(W), len(net.layers)
    sizes = [l.out_features for l in net.layers]
    ew = [[np.zeros_like(w) for w in W[m]] for m in range(M)]
    eb = [[np.zeros(n) for n in sizes] for _ in range(M)]
    for obs in obs_seq:
        lead = (M,) if net.batch is not None else ()
        z = [(torch.randn(lead + (1, n), generator=gen, dtype=F64) * sigma).numpy().reshape(M, n) for n in sizes]
        approx = [[np.exp(_log_softmax(_forward(W[m], Bb[m], obs[m], [np.zeros(n) for n in sizes])[0]))
                   for _ in range(passes)] for m in range(M)]
        acts = _sample([approx[m][-1] for m in range(M)], gen)
        for m in range(M):
            a = acts[m]
            xi = [z[l][m] for l in range(L)]
            logits, inputs = _forward(W[m], Bb[m], obs[m], xi)
            rho = _log_softmax(logits)[a] - math.log(sum(p[a] for p in approx[m]) / passes)
            total = sum(float(x @ x) for x in xi)
            for l in range(L):
                n2 = total if noise_norm == "global" else float(xi[l] @ xi[l])
                ew[m][l] += rho / n2 * np.outer(xi[l], inputs[l])
                eb[m][l] += rho / n2 * xi[l]
    return ew, eb


def _nrl_net(batch, bias, seed=0):
    net = RateNetwork(NetworkSpec([3, 4, 2], bias=bias, init="xavier_normal"), batch=batch,
                      generator=torch.Generator().manual_seed(seed), dtype=F64)
    if bias:  # non-zero biases, so the bias path is exercised
        g = torch.Generator().manual_seed(seed + 50)
        with torch.no_grad():
            for l in net.layers:
                l.bias.copy_(torch.randn(l.bias.shape, generator=g, dtype=F64) * 0.3)
    return net


def _obs(batch, T, seed):
    g = np.random.default_rng(seed)
    return [g.standard_normal((batch or 1, 3)) for _ in range(T)]


def _run_rule(net, obs_seq, reward, **kw):
    """Act on obs_seq, reinforce with ``reward`` (RPE baseline 0: δ = reward); returns the rule
    (its ``elig_before``: the eligibility just before the reinforcement)."""
    M = net.batch or 1
    rule = NRL(net, rpe=RewardPredictionError(batch=M, init=0.0), generator=torch.Generator().manual_seed(7), **kw)
    for obs in obs_seq:
        o = torch.as_tensor(obs if net.batch is not None else obs[0], dtype=F64)
        rule.act(o)
    rule.elig_before = [e.clone() for e in rule.elig]
    delta = rule.reinforce(torch.as_tensor(reward if net.batch is not None else reward[0], dtype=F64))
    np.testing.assert_array_equal(delta.numpy(), np.asarray(reward, dtype=np.float64))
    return rule


def _want_grads(net, ew, eb, reward, scale):
    """−δ·f_l·e_l in net.parameters() order, models stacked when the net has a model axis."""
    out = []
    for l, layer in enumerate(net.layers):
        f = float(layer.out_features) if scale == "n_out" else 1.0
        for e in (ew, eb) if layer.bias is not None else (ew,):
            g = np.stack([-reward[m] * f * e[m][l] for m in range(len(reward))])
            out.append(g if net.batch is not None else g[0])
    return out


@pytest.mark.parametrize("batch, bias", [(None, True), (2, False)])
@pytest.mark.parametrize("lr_scale", ["none", "n_out"])
def test_nrl_lr_scale_grad_and_sgd_step(batch, bias, lr_scale):
    """grad W_l = −δ·n_l·e_l ("n_out") or −δ·e_l ("none"), every layer, biases too; SGD(η) then
    gives W_l + η·n_l·δ·e_l (the authors' W += lr·n_out·dW)."""
    net = _nrl_net(batch, bias)
    obs_seq, reward = _obs(batch, 4, seed=1), [1.7, -0.6][: batch or 1]
    w0 = [p.detach().clone() for p in net.parameters()]
    rule = _run_rule(net, obs_seq, reward, noise_std=0.05, passes=2, lr_scale=lr_scale)
    ew, eb = _nrl_paper_reference(net, obs_seq, 0.05, 2, "global", seed=7)
    want = _want_grads(net, ew, eb, reward, lr_scale)
    for i, (p, w) in enumerate(zip(net.parameters(), want)):
        _assert_close(p.grad.numpy(), w, f"grad {i}")
    eta = 0.3
    torch.optim.SGD(net.parameters(), lr=eta).step()
    for i, (p, p0, w) in enumerate(zip(net.parameters(), w0, want)):
        _assert_close((p.detach() - p0).numpy(), -eta * w, f"step {i}")
    assert rule.lr_scale == lr_scale


def test_nrl_lr_scale_none_is_the_unscaled_rule_bit_for_bit():
    """The default writes exactly −δ·e (no multiplication by 1.0 anywhere), and "n_out" is n_l × it."""
    obs_seq, reward = _obs(None, 3, seed=2), [0.9]
    grads = {}
    for mode in ("none", "n_out"):
        net = _nrl_net(None, True)
        rule = _run_rule(net, obs_seq, reward, noise_std=0.05, lr_scale=mode)
        grads[mode] = [p.grad.clone() for p in net.parameters()]
        if mode == "none":
            for g, e in zip(grads[mode], rule.elig_before):
                assert torch.equal(g, -(torch.tensor([0.9], dtype=F64).reshape(()) * e))
    outs = [4, 4, 2, 2]  # fc1 weight, bias; fc2 weight, bias
    for g0, g1, n in zip(grads["none"], grads["n_out"], outs):
        torch.testing.assert_close(g1, g0 * n, rtol=0, atol=0)


@pytest.mark.parametrize("noise_norm", ["global", "layer"])
@pytest.mark.parametrize("batch, bias", [(None, True), (2, False)])
@pytest.mark.parametrize("passes", [2, 3])
def test_nrl_authors_variant_matches_transcription(noise_norm, batch, bias, passes):
    net = _nrl_net(batch, bias, seed=3)
    obs_seq, reward = _obs(batch, 3, seed=4), [1.3, -2.1][: batch or 1]
    _run_rule(net, obs_seq, reward, noise_std=0.05, passes=passes, clean_pass=False, variant="authors",
              noise_norm=noise_norm, lr_scale="n_out")
    ew, eb = _nrl_authors_reference(net, obs_seq, 0.05, passes, noise_norm, seed=7)
    for i, (p, w) in enumerate(zip(net.parameters(), _want_grads(net, ew, eb, reward, "n_out"))):
        _assert_close(p.grad.numpy(), w, f"grad {i}")


def test_nrl_authors_variant_is_the_clean_pass_rule_with_one_noisy_pass():
    """Its approximating passes draw no noise, so its increment is the clean-pass formula evaluated
    at its one noisy pass (same ξ, same action)."""
    net = _nrl_net(None, False, seed=5)
    obs = torch.as_tensor(_obs(None, 1, seed=6)[0][0])
    a = torch.tensor(1)
    with torch.no_grad():
        _, dw, _ = nrl_step(net, obs, 0.05, 3, False, "global", torch.Generator().manual_seed(8), actions=a,
                            variant="authors")
    g = torch.Generator().manual_seed(8)
    xi = [torch.randn(1, n, generator=g, dtype=F64) * 0.05 for n in (4, 2)]
    W, Bb = _params(net)
    logits, inputs = _forward(W[0], Bb[0], obs.numpy(), [x[0].numpy() for x in xi])
    clean, _ = _forward(W[0], Bb[0], obs.numpy(), [np.zeros(4), np.zeros(2)])
    rho = _log_softmax(logits)[1] - _log_softmax(clean)[1]
    n2 = sum(float((x * x).sum()) for x in xi)
    for l in range(2):
        _assert_close(dw[l].numpy(), rho / n2 * np.outer(xi[l][0].numpy(), inputs[l]), f"layer {l}")


def test_nrl_defaults_unchanged():
    """variant "paper" without a clean pass is the existing rule (same draws, same increments)."""
    net = _nrl_net(None, False, seed=9)
    obs = torch.as_tensor(_obs(None, 1, seed=10)[0][0])
    a = torch.tensor(0)
    with torch.no_grad():
        r0 = nrl_step(net, obs, 0.05, 3, False, "layer", torch.Generator().manual_seed(1), actions=a)
        r1 = nrl_step(net, obs, 0.05, 3, False, "layer", torch.Generator().manual_seed(1), actions=a, variant="paper")
    for x, y in zip(r0[1] + r0[2], r1[1] + r1[2]):
        assert torch.equal(x, y)


def test_nrl_bad_values_are_one_line_errors():
    net = _nrl_net(None, False)
    cases = [({"variant": "authors"}, "clean_pass"),
             ({"variant": "mine", "clean_pass": False, "passes": 2}, "variant"),
             ({"lr_scale": "fan_in"}, "lr_scale")]
    for kw, word in cases:
        with pytest.raises(ConfigError, match=word) as ei:
            NRL(net, **kw)
        assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="variant"):
        nrl_step(net, torch.zeros(3, dtype=F64), 0.05, 2, True, "global", None, variant="authors")


# ----------------------------------------------------------------------------------- CET reference

CET_SIZES, CET_B = [3, 4, 4, 2], 2


def _cet_net(seed=0):
    return cet_net(CET_SIZES, seed)


def _cet_data(T, seed):
    return cet_data(CET_SIZES, CET_B, T, seed)


def _cet_reference(net, data, trace_on, lags, delays, kind, order, normalize):
    """Per step: (weight grads, bias grads, alignment cosines) by hand backprop and direct convolution.

    δ_l = ∂loss/∂h_l (pre-activation), c_l = ∂loss/∂x_l (post-activation), loss = mean CE.
    presynaptic:    grad = Σ_b δ_l,t−L ⊗ Σ_k h[k] x_t−k
    synapse:        grad = Σ_b c_l,t−L ⊙ Σ_k h[k] f'(h_t−k) ⊗ x_t−k
    synapse_preact: grad = Σ_b δ_l,t−L ⊙ Σ_k h[k] f'(h_t−k) ⊗ x_t−k   (hidden; x alone at the output)
    bias:           Σ_b δ_l,t−L in every mode.  L = the credit's lag, h peaks at D_l.
    """
    W = [l.weight.detach().numpy() for l in net.layers]
    Bv = [l.bias.detach().numpy() for l in net.layers]
    L = len(W)
    T = len(data)
    kernels = [cet_kernel(kind, order, normalize, d, T) for d in delays]
    hist_u, hist_cr, hist_d, hist_true = [], [], [], []
    out = []
    for t, (x, y) in enumerate(data):
        xs, hs = [], []
        a = x
        for l in range(L):
            xs.append(a)
            h = a @ W[l].T + Bv[l]
            hs.append(h)
            a = _lrelu(h) if l < L - 1 else h
        z = hs[-1] - hs[-1].max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        delta = [None] * L
        post = [None] * L
        delta[-1] = post[-1] = (p - np.eye(CET_SIZES[-1])[y]) / CET_B
        for l in range(L - 2, -1, -1):
            post[l] = delta[l + 1] @ W[l + 1]
            delta[l] = post[l] * _lrelu_grad(hs[l])
        fp = [_lrelu_grad(hs[l]) if l < L - 1 else np.ones_like(hs[l]) for l in range(L)]
        per_syn = [fp[l][:, :, None] * xs[l][:, None, :] for l in range(L)]
        if trace_on == "presynaptic":
            u, credit, true_u = xs, delta, xs
        elif trace_on == "synapse":
            u, credit, true_u = per_syn, post, per_syn
        else:
            u = [per_syn[l] if l < L - 1 else xs[l] for l in range(L)]
            credit, true_u = delta, xs
        hist_u.append(u), hist_cr.append(credit), hist_d.append(delta), hist_true.append(true_u)
        gw, gb, cos = [], [], []
        for l in range(L):
            if t < lags[l]:
                gw.append(np.zeros_like(W[l])), gb.append(np.zeros_like(Bv[l])), cos.append(None)
                continue
            c = hist_cr[t - lags[l]][l]
            trace = sum(kernels[l][k] * hist_u[t - k][l] for k in range(t + 1))
            true = hist_true[t - lags[l]][l]
            pair = (lambda e: c.T @ e if e.ndim == 2 else np.einsum("bo,boi->oi", c, e))
            g, gt = pair(trace), pair(true)
            gw.append(g), gb.append(hist_d[t - lags[l]][l].sum(0))
            norm = np.linalg.norm(g) * np.linalg.norm(gt)  # an empty trace (kernel not yet reached): 0
            cos.append(float((g * gt).sum() / norm) if norm > 0 else 0.0)
        out.append((gw, gb, cos))
    return out


CET_CASES = [  # (trace, order, normalize, delay, delay_mode)
    ("cascade", 3, "peak", 3, "constant"),
    ("cascade", 2, None, 2, "retrograde"),
    ("cascade", 4, "area", 3, "constant"),
    ("perfect", 1, "peak", 2, "constant"),
    ("exponential", 1, "peak", 0, "constant"),
]


@pytest.mark.parametrize("credit_lag", ["D", "D-1"])
@pytest.mark.parametrize("trace_on", ["presynaptic", "synapse", "synapse_preact"])
@pytest.mark.parametrize("trace, order, normalize, delay, mode", CET_CASES)
def test_cet_grad_matches_transcription(trace, order, normalize, delay, mode, trace_on, credit_lag):
    """Constant weights: every step's .grad (weights, biases) and alignment equal the transcription."""
    if credit_lag == "D-1" and delay == 0:
        pytest.skip("D-1 needs a delay (refused: see test_cet_bad_values_are_one_line_errors)")
    net = _cet_net(1)
    rule = CETDelayed(net, batch=CET_B, delay=delay, delay_mode=mode, trace=trace, order=order,
                      normalize=normalize, trace_on=trace_on, credit_lag=credit_lag)
    delays = list(rule.delays)
    lags = [d - 1 for d in delays] if credit_lag == "D-1" else delays
    assert rule.lags == lags and (mode == "constant" or delays == [3 * delay, 2 * delay, delay])
    data = _cet_data(9, seed=2)
    ref = _cet_reference(net, data, trace_on, lags, delays, trace, order, normalize)
    for t, ((x, y), (gw, gb, cos)) in enumerate(zip(data, ref)):
        rule.step(torch.as_tensor(x), torch.as_tensor(y))
        for l, layer in enumerate(net.layers):
            _assert_close(layer.weight.grad.numpy(), gw[l], f"t={t} W{l}")
            _assert_close(layer.bias.grad.numpy(), gb[l], f"t={t} b{l}")
            name = net.layer_names[l]
            if cos[l] is None:
                assert name not in rule.last_alignment
            else:
                assert abs(rule.last_alignment[name] - cos[l]) <= 1e-12, (t, l)


def test_cet_synapse_preact_uses_fprime_twice():
    """With no delay the authors' form is not backprop in hidden layers (f'² instead of f'),
    and is at the output layer; the other two modes are backprop everywhere."""
    data = _cet_data(1, seed=3)
    x, y = (torch.as_tensor(v) for v in data[0])
    grads = {}
    for mode in ("presynaptic", "synapse", "synapse_preact"):
        net = _cet_net(4)
        CETDelayed(net, batch=CET_B, delay=0, trace="none", trace_on=mode).step(x, y)
        grads[mode] = [l.weight.grad.clone() for l in net.layers]
    for a, b in zip(grads["presynaptic"], grads["synapse"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grads["synapse_preact"][-1], grads["presynaptic"][-1], rtol=1e-12, atol=1e-15)
    for l in range(len(CET_SIZES) - 2):
        assert not torch.allclose(grads["synapse_preact"][l], grads["presynaptic"][l], rtol=1e-3)


def test_cet_bad_values_are_one_line_errors():
    net = _cet_net()
    cases = [({"credit_lag": "D-2"}, "credit_lag"), ({"credit_lag": "D-1", "delay": 0}, "credit_lag"),
             ({"credit_lag": 1, "delay": 3}, "credit_lag"), ({"trace_on": "preact"}, "trace_on")]
    for kw, word in cases:
        with pytest.raises(ConfigError, match=word) as ei:
            CETDelayed(net, batch=CET_B, **kw)
        assert "\n" not in str(ei.value)


# ----------------------------------------------------------------------------------- configs


def _ctx():
    return BuildContext(generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))


def test_configs_pass_the_options_to_the_rules():
    exp = load_experiment(ROOT / "experiments/nrl_cartpole.toml",
                          ["seeds=1", "rule.clean_pass=false", "rule.passes=2", "rule.variant=authors",
                           "rule.lr_scale=n_out"])
    rule = exp.rule.build(exp, _ctx()).learner.rule
    assert (rule.variant, rule.lr_scale, rule.clean_pass) == ("authors", "n_out", False)
    exp = load_experiment(ROOT / "experiments/cet_digits.toml",
                          ["task.batch=2", "rule.delay=3", "rule.trace_on=synapse_preact", "rule.credit_lag=D-1"])
    rule = exp.rule.build(exp, _ctx()).learner.rule
    assert (rule.trace_on, rule.credit_lag, rule.lags[0], rule.delays[0]) == ("synapse_preact", "D-1", 2, 3)
    # defaults: the papers' equations
    exp = load_experiment(ROOT / "experiments/nrl_cartpole.toml")
    assert (exp.rule.variant, exp.rule.lr_scale) == ("paper", "none")
    exp = load_experiment(ROOT / "experiments/cet_digits.toml")
    assert (exp.rule.trace_on, exp.rule.credit_lag) == ("presynaptic", "D")


@pytest.mark.parametrize("path, sets, word", [
    ("nrl_cartpole", ["rule.variant=authors"], "clean_pass"),
    ("nrl_cartpole", ["rule.variant=both"], "variant"),
    ("nrl_cartpole", ["rule.lr_scale=64"], "lr_scale"),
    ("cet_digits", ["rule.credit_lag=D-1", "rule.delay=0"], "credit_lag"),
    ("cet_digits", ["rule.credit_lag=D-2"], "credit_lag"),
    ("cet_digits", ["rule.trace_on=twice"], "trace_on"),
])
def test_config_bad_values_are_one_line_errors(path, sets, word):
    with pytest.raises(ConfigError, match=word) as ei:
        load_experiment(ROOT / f"experiments/{path}.toml", sets)
    assert "\n" not in str(ei.value).strip()
