"""The CET paper's salience gate (``rule.salience``) and undelayed output layer (``rule.output_credit``).

The gate: per step, the per-sample losses ℓ_b join a window of the last ⌈W/B⌉ steps' losses; the
samples with ℓ_b >= the (1 − s) quantile (linear interpolation) of the window are salient (mask m);
only they enter the traces (u_b · m_b) and emit credit, from the gated loss Σ_b m_b ℓ_b / (s·B).
Pinned here to float64 transcriptions written from that description: a hand quantile (sort and
interpolate), hand forward/backprop, direct convolution of the traces (numpy loops on a 3-4-4-2
net); and a resume test (state round trip and ``neuroprobe run --resume``, byte for byte).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.io.state import to_plain
from neuroprobe.protocols import BuildContext
from neuroprobe.rules import CETDelayed
from neuroprobe.rules.cet import SalienceGate, cet_layer_delays, salience_gate
from neuroprobe.runner import run_experiment
from cet_reference import assert_close, cet_data, cet_kernel, cet_net
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
CET_CFG = ROOT / "experiments" / "cet_digits.toml"
F64 = torch.float64
SIZES, B = [3, 4, 4, 2], 6
TOL = 1e-12


def _close(got, want, what=""):
    assert_close(got, want, TOL, what)


def _quantile(values, q):
    """Linear-interpolation quantile by hand: v_(⌊p⌋) + (p − ⌊p⌋)(v_(⌊p⌋+1) − v_(⌊p⌋)), p = q(n − 1)."""
    v = sorted(float(x) for x in np.ravel(values))
    p = q * (len(v) - 1)
    lo = int(math.floor(p))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (p - lo) * (v[hi] - v[lo])


# ----------------------------------------------------------------------------------- the gate alone


@pytest.mark.parametrize("n, keep", [(1280, 0.0125), (32, 0.0125), (96, 0.1), (7, 0.5), (50, 1.0)])
def test_gate_is_the_top_quantile(n, keep):
    g = np.random.default_rng(n)
    window = g.exponential(size=n)
    losses = window[-min(n, 32):]  # the current step's losses are part of the window
    mask = salience_gate(torch.as_tensor(window), torch.as_tensor(losses), keep).numpy()
    np.testing.assert_array_equal(mask, losses >= _quantile(window, 1.0 - keep))
    if (n, keep) == (1280, 0.0125):  # the paper's 1.25 % of the authors' batch of 1280: 16 samples
        full = salience_gate(torch.as_tensor(window), torch.as_tensor(window), keep).numpy()
        assert full.sum() == 16 and set(np.flatnonzero(full)) == set(np.argsort(window)[-16:])
    if keep == 1.0:
        assert mask.all()


def test_gate_with_ties_keeps_every_tied_sample():
    window = torch.tensor([1.0, 2.0, 3.0, 3.0, 3.0, 0.5], dtype=F64)
    assert salience_gate(window, window, 0.2).tolist() == [False, False, True, True, True, False]


@pytest.mark.parametrize("batch, window", [(4, 10), (5, 5), (3, 1)])
def test_gate_window_is_the_last_whole_steps(batch, window):
    """The ring buffer holds the last ⌈W/B⌉ steps (fewer while filling), the current one included."""
    gate = SalienceGate(0.25, batch, window, dtype=F64, device=torch.device("cpu"))
    k = math.ceil(window / batch)
    assert gate.steps == k
    g = np.random.default_rng(batch)
    hist = []
    for _ in range(9):
        losses = g.exponential(size=batch)
        hist.append(losses)
        got = gate(torch.as_tensor(losses)).numpy()
        np.testing.assert_array_equal(got, losses >= _quantile(np.concatenate(hist[-k:]), 0.75))


# ----------------------------------------------------------------------------------- the rule


def _lrelu(h):
    return np.where(h >= 0, h, 0.1 * h)


def _lrelu_grad(h):
    return np.where(h >= 0, 1.0, 0.1)


def _net(seed):
    return cet_net(SIZES, seed)


def _data(T, seed):
    return cet_data(SIZES, B, T, seed, scale=1.5)


def _reference(net, data, trace_on, delays, kind, order, normalize, keep, window):
    """Per step (weight grads, bias grads, cosines, number salient), written from the gate's
    description: mask m_b = [ℓ_b >= Q_(1−s)(last ⌈W/B⌉ steps' losses)], credit of the gated loss
    Σ_b m_b ℓ_b /(s·B), traces of m_b·u_b, credit of step t − D_l paired with the trace at t."""
    W = [layer.weight.detach().numpy() for layer in net.layers]
    Bv = [layer.bias.detach().numpy() for layer in net.layers]
    L, T = len(W), len(data)
    k_win = math.ceil(window / B)
    kernels = [cet_kernel(kind, order, normalize, d, T) for d in delays]
    losses, hist_u, hist_cr, hist_d, hist_x = [], [], [], [], []
    out = []
    for t, (x, y) in enumerate(data):
        xs, hs, a = [], [], x
        for l in range(L):
            xs.append(a)
            h = a @ W[l].T + Bv[l]
            hs.append(h)
            a = _lrelu(h) if l < L - 1 else h
        z = hs[-1]
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        ell = lse - z[np.arange(B), y]
        losses.append(ell)
        m = (ell >= _quantile(np.concatenate(losses[-k_win:]), 1.0 - keep)).astype(np.float64)
        p = np.exp(z - lse[:, None])
        delta, post = [None] * L, [None] * L
        delta[-1] = post[-1] = (p - np.eye(SIZES[-1])[y]) * m[:, None] / (keep * B)
        for l in range(L - 2, -1, -1):
            post[l] = delta[l + 1] @ W[l + 1]
            delta[l] = post[l] * _lrelu_grad(hs[l])
        fp = [_lrelu_grad(hs[l]) if l < L - 1 else np.ones_like(hs[l]) for l in range(L)]
        syn = [fp[l][:, :, None] * xs[l][:, None, :] for l in range(L)]
        if trace_on == "presynaptic":
            u, cr, xt = xs, delta, xs
        elif trace_on == "synapse":
            u, cr, xt = syn, post, syn
        else:
            u, cr, xt = [syn[l] if l < L - 1 else xs[l] for l in range(L)], delta, xs
        hist_u.append([ul * m.reshape((B,) + (1,) * (ul.ndim - 1)) for ul in u])
        hist_cr.append(cr), hist_d.append(delta), hist_x.append(xt)
        gw, gb, cos = [], [], []
        for l in range(L):
            if t < delays[l]:
                gw.append(np.zeros_like(W[l])), gb.append(np.zeros_like(Bv[l])), cos.append(None)
                continue
            c = hist_cr[t - delays[l]][l]
            trace = sum(kernels[l][k] * hist_u[t - k][l] for k in range(t + 1))

            def pair(e):
                return c.T @ e if e.ndim == 2 else np.einsum("bo,boi->oi", c, e)

            g, gt = pair(trace), pair(hist_x[t - delays[l]][l])
            gw.append(g), gb.append(hist_d[t - delays[l]][l].sum(0))
            if not c.any():  # no salient sample's credit arrives: no cosine
                cos.append(None)
            else:
                norm = np.linalg.norm(g) * np.linalg.norm(gt)
                cos.append(float((g * gt).sum() / norm) if norm > 0 else 0.0)
        out.append((gw, gb, cos, int(m.sum())))
    return out


CASES = [  # (trace, order, normalize, delay, delay_mode, output_credit, keep, window)
    ("cascade", 3, "peak", 2, "constant", "delayed", 0.3, 12),
    ("cascade", 2, "area", 1, "retrograde", "immediate", 0.2, 18),
    ("perfect", 1, "peak", 2, "retrograde", "delayed", 0.5, 7),
    ("cascade", 4, "area", 3, "constant", "immediate", 0.0125, 1280),
    ("none", 1, "peak", 0, "constant", "delayed", 0.25, 6),
]


@pytest.mark.parametrize("trace_on", ["presynaptic", "synapse", "synapse_preact"])
@pytest.mark.parametrize("trace, order, normalize, delay, mode, out_credit, keep, window", CASES)
def test_gated_rule_matches_transcription(trace, order, normalize, delay, mode, out_credit, keep, window, trace_on):
    net = _net(1)
    rule = CETDelayed(net, batch=B, delay=delay, delay_mode=mode, trace=trace, order=order, normalize=normalize,
                      trace_on=trace_on, salience=keep, salience_window=window, output_credit=out_credit)
    n = len(SIZES) - 1
    want_delays = {("constant", "delayed"): [delay] * n, ("retrograde", "delayed"): [3 * delay, 2 * delay, delay],
                   ("constant", "immediate"): [delay, delay, 0],
                   ("retrograde", "immediate"): [2 * delay, delay, 0]}[(mode, out_credit)]
    assert rule.delays == want_delays
    data = _data(10, seed=2)
    ref = _reference(net, data, trace_on, want_delays, trace, order, normalize, keep, window)
    salient = 0
    for t, ((x, y), (gw, gb, cos, n_sal)) in enumerate(zip(data, ref)):
        rule.step(torch.as_tensor(x), torch.as_tensor(y))
        assert rule.last_salient == n_sal, t
        salient += n_sal
        for l, layer in enumerate(net.layers):
            _close(layer.weight.grad.numpy(), gw[l], f"t={t} W{l}")
            _close(layer.bias.grad.numpy(), gb[l], f"t={t} b{l}")
            name = net.layer_names[l]
            if cos[l] is None:
                assert name not in rule.last_alignment, (t, l)
            else:
                assert abs(rule.last_alignment[name] - cos[l]) <= 1e-12, (t, l)
    assert 0 < salient < 10 * B  # the gate both passed and blocked samples


@pytest.mark.parametrize("trace_on", ["presynaptic", "synapse", "synapse_preact"])
def test_salience_one_is_the_ungated_rule(trace_on):
    """s = 1 passes every sample and divides by B: the ungated rule (to rounding of the loss sum)."""
    data = _data(6, seed=5)
    grads = []
    for sal in (None, 1.0):
        net = _net(3)
        rule = CETDelayed(net, batch=B, delay=2, trace="cascade", order=3, trace_on=trace_on, salience=sal)
        g = []
        for x, y in data:
            rule.step(torch.as_tensor(x), torch.as_tensor(y))
            g.append([p.grad.clone() for p in net.parameters()])
        grads.append(g)
    for a, b in zip(*grads):
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-15)


def test_defaults_are_the_ungated_rule_bit_for_bit():
    """output_credit = "delayed" and no gate: the grads of the rule as it was (same code path)."""
    data = _data(5, seed=6)
    grads = []
    for kw in ({}, {"output_credit": "delayed", "salience": None}):
        net = _net(4)
        rule = CETDelayed(net, batch=B, delay=1, delay_mode="retrograde", trace="cascade", order=2, **kw)
        for x, y in data:
            rule.step(torch.as_tensor(x), torch.as_tensor(y))
        grads.append([p.grad.clone() for p in net.parameters()])
        assert "salience" not in rule.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_layer_delays_with_an_immediate_output_layer():
    assert cet_layer_delays(3, 600, "retrograde", "immediate") == [1200, 600, 0]  # the paper's 0, D, 2D
    assert cet_layer_delays(3, 5, "retrograde") == [15, 10, 5]
    assert cet_layer_delays(3, 5, "constant", "immediate") == [5, 5, 0]
    assert cet_layer_delays(1, 5, "constant", "immediate") == [0]


# ----------------------------------------------------------------------------------- resume


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(to_plain(state), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_gated_rule_state_continues_bit_for_bit():
    """Checkpointed mid-run (the gate's window half full, then wrapped), a fresh rule continues
    exactly as the uninterrupted one: same losses, same salient samples, same weights."""
    def make(seed):
        net = _net(seed)
        rule = CETDelayed(net, batch=B, delay=2, delay_mode="retrograde", trace="cascade", order=3,
                          trace_on="synapse_preact", salience=0.2, salience_window=20, output_credit="immediate")
        return net, rule, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)

    def run(net, rule, opt, data):
        out = []
        for x, y in data:
            res = rule.step(torch.as_tensor(x), torch.as_tensor(y))
            opt.step()
            out.append((res["loss"], rule.last_salient))
        return out, [p.detach().clone() for p in net.parameters()]

    data = _data(16, seed=7)
    for cut in (2, 9):  # window (4 steps) filling / wrapped
        net, rule, opt = make(0)
        run(net, rule, opt, data[:cut])
        ckpt = _roundtrip({"net": net.state_dict(), "rule": rule.state_dict(), "opt": opt.state_dict()})
        assert ckpt["rule"]["salience"]["filled"] == min(cut, 4)
        ref = run(net, rule, opt, data[cut:])
        net2, rule2, opt2 = make(5)
        net2.load_state_dict(ckpt["net"])
        rule2.load_state_dict(ckpt["rule"])
        opt2.load_state_dict(ckpt["opt"])
        got = run(net2, rule2, opt2, data[cut:])
        assert got[0] == ref[0] and all(torch.equal(a, b) for a, b in zip(got[1], ref[1]))
        # the gate's state matters: without it the continuation differs
        net3, rule3, opt3 = make(5)
        net3.load_state_dict(ckpt["net"])
        rule3.load_state_dict({**ckpt["rule"], "salience": SalienceGate(0.2, B, 20, F64, torch.device("cpu")).state_dict()})
        opt3.load_state_dict(ckpt["opt"])
        assert run(net3, rule3, opt3, data[cut:])[0] != ref[0]


def test_checkpoint_without_the_gate_is_refused_with_the_gate_on():
    net = _net(0)
    plain = CETDelayed(net, batch=B, delay=1).state_dict()
    with pytest.raises(ConfigError, match="salience") as ei:
        CETDelayed(net, batch=B, delay=1, salience=0.1).load_state_dict(plain)
    assert "\n" not in str(ei.value)


GATED = ["task.steps=40", "task.eval_every=10", "rule.delay=3", "rule.order=2", "rule.delay_mode=retrograde",
         "rule.salience=0.05", "rule.salience_window=320", "rule.output_credit=immediate",
         "rule.trace_on=synapse_preact", "run.progress=false"]


def test_resumed_gated_run_is_byte_identical(tmp_path, capsys):
    """A gated run of 20 steps resumed to 40 writes the metrics.csv of an uninterrupted 40-step run."""
    ref = run_experiment(CET_CFG, overrides=GATED, out=tmp_path / "ref", figures=False)
    run = run_experiment(CET_CFG, overrides=[o if o != "task.steps=40" else "task.steps=20" for o in GATED],
                         out=tmp_path / "run", figures=False)
    want = (ref / "metrics.csv").read_bytes()
    assert want.startswith((run / "metrics.csv").read_bytes())
    rc, _, err = run_cli(["run", "--resume", str(run), "--set", "task.steps=40"], capsys)
    assert rc == 0, err
    assert (run / "metrics.csv").read_bytes() == want


# ----------------------------------------------------------------------------------- configs


def test_config_passes_the_options():
    exp = load_experiment(CET_CFG, ["task.batch=4", "rule.delay=3", "rule.delay_mode=retrograde",
                                    "rule.salience=0.0125", "rule.output_credit=immediate"])
    ctx = BuildContext(generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    rule = exp.rule.build(exp, ctx).learner.rule
    assert (rule.salience, rule.gate.steps, rule.delays) == (0.0125, 320, [6, 3, 0])
    exp = load_experiment(CET_CFG, ["task.batch=32", "rule.salience=0.1", "rule.salience_window=100"])
    assert exp.rule.build(exp, ctx).learner.rule.gate.steps == 4
    # defaults: no gate, and a default run's config.toml gets no salience keys
    exp = load_experiment(CET_CFG)
    assert (exp.rule.salience, exp.rule.salience_window, exp.rule.output_credit) == (None, None, "delayed")
    assert "salience" not in exp.to_toml_dict()["rule"]


@pytest.mark.parametrize("sets, word", [
    (["rule.salience=0"], "rule.salience"),
    (["rule.salience=1.5"], "rule.salience"),
    (["rule.salience=nan"], "rule.salience"),
    (["rule.salience_window=100"], "rule.salience_window"),
    (["rule.salience=0.1", "rule.salience_window=0"], "rule.salience_window"),
    (["rule.output_credit=now"], "rule.output_credit"),
    (["rule.output_credit=immediate", "rule.credit_lag=D-1", "rule.delay=2"], "credit_lag"),
])
def test_config_bad_values_are_one_line_errors(sets, word):
    with pytest.raises(ConfigError, match=word) as ei:
        load_experiment(CET_CFG, sets)
    assert "\n" not in str(ei.value).strip()


def test_rule_bad_values_are_one_line_errors():
    net = _net(0)
    for kw, word in (({"salience": 0.0}, "salience"), ({"salience": 2}, "salience"),
                     ({"salience": 0.1, "salience_window": 0}, "salience_window"),
                     ({"output_credit": "never"}, "output_credit")):
        with pytest.raises(ConfigError, match=word) as ei:
            CETDelayed(net, batch=B, **kw)
        assert "\n" not in str(ei.value)
