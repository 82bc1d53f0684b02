"""Tests of neuroprobe.probes.directional: coefficients, trace history, memory, gradient alignment, sign."""

from __future__ import annotations


import pytest
import torch

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.dictionary import ProbeDictionary
from neuroprobe.probes.directional import (
    DirectionalTrace,
    directional_coefficients,
    history_weights,
    module_coefficients,
)
from neuroprobe.probes.probed_linear import ProbedLinear

F64 = torch.float64



def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


# ----------------------------------------------------------------------------- coefficients


def test_directional_coefficients_match_a_loop_over_branches():
    g = torch.Generator().manual_seed(0)
    B, K = 40, 5
    mu, ell = torch.randn(B, generator=g, dtype=F64), torch.rand(B, generator=g, dtype=F64)
    a = torch.randint(0, K + 1, (B,), generator=g)
    ref = torch.zeros(K + 1, dtype=F64)
    for b in range(B):
        ref[a[b]] += mu[b] * ell[b] / B
    torch.testing.assert_close(directional_coefficients(mu, ell, a, K, include_null=True), ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(directional_coefficients(mu, ell, a, K), ref[1:], rtol=0, atol=1e-15)
    ref1 = torch.zeros(K + 1, dtype=F64).index_put_((a,), mu / B, accumulate=True)
    torch.testing.assert_close(directional_coefficients(mu, None, a, K), ref1[1:], rtol=0, atol=1e-15)


def test_module_coefficients_equal_per_column_coefficients():
    g = torch.Generator().manual_seed(1)
    B, ks = 30, [3, 7, 1]
    mu, ell = torch.randn(B, 3, generator=g, dtype=F64), torch.rand(B, 3, generator=g, dtype=F64)
    A = torch.stack([torch.randint(0, k + 1, (B,), generator=g) for k in ks], dim=1)
    out = module_coefficients(mu, ell, A, ks)
    for m, k in enumerate(ks):
        torch.testing.assert_close(out[m], directional_coefficients(mu[:, m], ell[:, m], A[:, m], k), rtol=0, atol=1e-15)
    assert [o.shape[0] for o in module_coefficients(mu, None, A.clamp(max=1), 1)] == [1, 1, 1]


def test_trace_equals_mean_of_branch_directions():
    """Σ_k e[k] ΔW_k = (1/B) Σ_b μ_b ℓ_b δ_{A_b} (the paper's definition, materialised per branch)."""
    d = ProbeDictionary(5, 4, num_probes=3, rank=2, dtype=F64, scale=0.3)
    g = torch.Generator().manual_seed(2)
    B = 11
    mu, ell, a = torch.randn(B, generator=g, dtype=F64), torch.rand(B, generator=g, dtype=F64), torch.randint(0, 4, (B,), generator=g)
    e = directional_coefficients(mu, ell, a, 3)
    lhs = torch.einsum("k,kon->on", e, d.dense())
    rhs = sum(mu[b] * ell[b] * d.delta(int(a[b])) for b in range(B)) / B
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- history weights


def test_history_weights_decay_and_cascade():
    torch.testing.assert_close(history_weights(5, decay=0.5), torch.tensor([1, 0.5, 0.25, 0.125, 0.0625], dtype=F64))
    assert torch.equal(history_weights(3, decay=0.0), torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    order, delay, P = 4, 3.0, 12
    a = (order - 1) / delay
    k = torch.arange(P, dtype=F64)
    h = k ** (order - 1) * torch.exp(-a * k)  # Erlang kernel, closed form
    torch.testing.assert_close(history_weights(P, kernel="cascade", order=order, delay=delay), h / h.max(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(history_weights(P, kernel="cascade", order=order, delay=delay, normalize="area"), h / h.sum(), rtol=1e-12, atol=1e-15)
    assert int(history_weights(P, kernel="cascade", order=order, delay=delay).argmax()) == 3


def _dense_history(pushes, weights, P):
    """Σ_j w_j Σ_k e_{t-j}[k] ΔW_{t-j,k} over the last P pushes, each with its own dense probes."""
    out = 0
    for j, (e, dense) in enumerate(reversed(pushes[-P:])):
        out = out + weights[j] * torch.einsum("k,kon->on", e, dense)
    return out


@pytest.mark.parametrize("kernel", [None, "cascade"])
def test_trace_update_equals_weighted_history_of_changing_probes(kernel):
    P, K = 3, 4
    trace = DirectionalTrace(K, history=P, decay=0.7, kernel=kernel, order=3, delay=1.0, alpha=0.5)
    d = ProbeDictionary(6, 5, num_probes=K, rank=2, dtype=F64, scale=0.2)
    g = torch.Generator().manual_seed(3)
    pushes = []
    for _ in range(5):  # wraps the ring
        e = torch.randn(K, generator=g, dtype=F64)
        trace.push(e, d)
        pushes.append((e, d.dense().clone()))
        torch.testing.assert_close(trace.update(), 0.5 * _dense_history(pushes, trace.weights, P), rtol=0, atol=1e-13)
        d.refresh()
    assert trace.pool_ids.shape[0] == P * K  # pure probes: one pool entry per probe per held window
    w = history_weights(P, 0.7, kernel, order=3, delay=1.0)
    assert torch.equal(trace.weights, w)
    # lag weights follow the ring: the newest slot (4 % 3 = 1) has lag 0
    torch.testing.assert_close(trace.lag_weights(), w[torch.tensor([1, 0, 2])])


def test_keyed_and_stored_and_tuple_probes_give_the_same_update():
    P, K = 4, 3
    mk = lambda keyed: ProbeDictionary(7, 4, num_probes=K, rank=1, keyed=keyed, seed=9, dtype=F64, scale=0.1)
    dk, ds = mk(True), mk(False)
    tk, ts, tt = (DirectionalTrace(K, history=P, decay=0.8) for _ in range(3))
    g = torch.Generator().manual_seed(4)
    for _ in range(6):
        e = torch.randn(K, generator=g, dtype=F64)
        tk.push(e, dk)
        ts.push(e, ds)
        tt.push(e, ds.factors(), coef=ds.coef)
        dk.refresh()
        ds.refresh()
    torch.testing.assert_close(tk.update(), ts.update(), rtol=0, atol=1e-14)
    torch.testing.assert_close(tt.update(), ts.update(), rtol=0, atol=1e-14)
    assert tk.pool_u is None and ts.pool_u.shape[0] == P * K


def test_semi_persistent_probes_are_pooled_once_and_replacements_are_tracked():
    K, P = 4, 5
    d = ProbeDictionary(8, 6, num_probes=K, rank=1, regime="semi_persistent", dtype=F64, yield_quantile=None, redundancy_threshold=1.0, max_age=2)
    trace = DirectionalTrace(K, history=P, decay=0.9)
    g = torch.Generator().manual_seed(5)
    pushes = []
    for _ in range(7):
        e = torch.randn(K, generator=g, dtype=F64)
        trace.push(e, d)
        pushes.append((e, d.dense().clone()))
        live = set(torch.cat([p for p in [trace.pool_ids]]).tolist())
        assert len(live) == trace.pool_ids.shape[0]  # no duplicates
        d.refresh()
    torch.testing.assert_close(trace.update(), _dense_history(pushes, trace.weights, P), rtol=0, atol=1e-13)
    # probes live 3 windows (max_age 2): the 5 held windows reference at most 2 generations + 1
    assert trace.pool_ids.shape[0] <= 3 * K < P * K


# ----------------------------------------------------------------------------- memory


def _fixed_trace_nbytes(m: int, n: int, P: int, K: int = 8, r: int = 2) -> int:
    d = ProbeDictionary(m, n, num_probes=K, rank=r, regime="semi_persistent", max_age=10**6, yield_quantile=None, redundancy_threshold=1.0)
    t = DirectionalTrace(K, history=P)
    for _ in range(P + 2):
        t.push(torch.randn(K, dtype=F64), d)
        d.refresh()  # persistent: nothing replaced
    return t.nbytes + d.nbytes


def test_memory_is_k_r_m_plus_n_plus_p_k():
    K, r = 8, 2
    base = _fixed_trace_nbytes(64, 32, 10)
    # exact accounting: dictionary factors stored once in the dictionary and once in the pool (float32),
    # ids/age (int64), yields (float32), keys; ring coeffs (float64) + index (int64) + window keys
    dict_bytes = K * r * (64 + 32) * 4 + K * 8 * 2 + K * 4 + 3 * 8
    trace_bytes = 10 * K * (8 + 8) + 10 * 8 + K * r * (64 + 32) * 4 + K * (8 + 8)
    assert base == dict_bytes + trace_bytes
    # doubling m + n adds only factor memory; doubling P adds only ring memory
    grow_mn = _fixed_trace_nbytes(128, 64, 10) - base
    grow_p = _fixed_trace_nbytes(64, 32, 20) - base
    assert grow_mn == 2 * K * r * 96 * 4
    assert grow_p == 10 * K * 16 + 10 * 8
    # a dense per-window history would be P·m·n floats
    assert base < 10 * 64 * 32 * 4


def test_keyed_trace_memory_does_not_grow_with_layer_size():
    sizes = []
    for m, n in [(16, 16), (1024, 512)]:
        d = ProbeDictionary(m, n, num_probes=8, rank=2, keyed=True)
        t = DirectionalTrace(8, history=6)
        for _ in range(9):
            t.push(torch.randn(8, dtype=F64), d)
            d.refresh()
        sizes.append(t.nbytes + d.nbytes)
    assert sizes[0] == sizes[1] == 6 * 8 * 16 + 6 * 8 + 3 * 8


# ----------------------------------------------------------------------------- alignment and sign


def test_expected_trace_aligns_with_true_gradient_on_a_quadratic():
    """L(W) = ½‖W − W*‖², μ_b = −(L(W + ΔW_b) − L(W)); Σ_j Σ_k e ΔW ≈ −∇L = W* − W."""
    torch.manual_seed(0)
    m, n, K, B, windows = 6, 5, 32, 512, 20
    W, Wstar = torch.randn(m, n, dtype=F64), torch.randn(m, n, dtype=F64)
    loss = lambda Wb: 0.5 * (Wb - Wstar).pow(2).sum(dim=(-1, -2))
    d = ProbeDictionary(m, n, num_probes=K, rank=1, scale=1e-3, seed=1, dtype=F64)
    trace = DirectionalTrace(K, history=windows, decay=1.0)
    g = torch.Generator().manual_seed(2)
    for _ in range(windows):
        a = torch.randint(0, K + 1, (B,), generator=g)
        deltas = torch.cat([torch.zeros(1, m, n, dtype=F64), d.dense()])[a]  # (B, m, n)
        mu = -(loss(W + deltas) - loss(W))  # baseline: the null branch (unperturbed W)
        trace.push(directional_coefficients(mu, None, a, K), d)
        d.refresh()
    assert _cos(trace.update(), Wstar - W) >= 0.9


def test_expected_trace_aligns_with_autograd_gradient_on_linear_regression():
    """Branches through ProbedLinear; true gradient by autograd; antithetic probes."""
    torch.manual_seed(1)
    n_in, n_out, N, K, B, windows = 5, 3, 64, 16, 256, 40
    layer = ProbedLinear(n_in, n_out, num_probes=K, rank=2, scale=1e-3, antithetic=True, dtype=F64)
    X = torch.randn(N, n_in, dtype=F64)
    Y = X @ torch.randn(n_in, n_out, dtype=F64) + 0.1 * torch.randn(N, n_out, dtype=F64)
    loss = 0.5 * (layer(X) - Y).pow(2).sum(-1).mean()
    (grad,) = torch.autograd.grad(loss, layer.weight)
    trace = DirectionalTrace(K, history=windows, decay=1.0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        base = 0.5 * (layer(X) - Y).pow(2).sum(-1).mean()
        for _ in range(windows):
            a = torch.randint(1, K + 1, (B,), generator=g)
            out = layer(X.expand(B, N, n_in), a)  # (B, N, n_out), all branches at once
            mu = -(0.5 * (out - Y).pow(2).sum(-1).mean(-1) - base)
            trace.push(directional_coefficients(mu, None, a, K), layer)
            layer.refresh()
    assert _cos(trace.update(), -grad) >= 0.9


@pytest.mark.parametrize("credit", ["reward", "cost"])
def test_sign_convention_one_sgd_step_improves(credit):
    """credit='reward': μ = reward gain, the step ascends reward; credit='cost': μ = cost change,
    the step descends cost.  Both use .grad = −Δθ and a plain SGD step."""
    torch.manual_seed(2)
    m, n, K, B = 4, 3, 16, 256
    layer = ProbedLinear(n, m, num_probes=K, rank=1, scale=1e-2, bias=False, dtype=F64)
    Wstar = torch.randn(m, n, dtype=F64)
    cost = lambda Wb: 0.5 * (Wb - Wstar).pow(2).sum(dim=(-1, -2))
    d = layer.dictionary
    a = torch.randint(0, K + 1, (B,), generator=torch.Generator().manual_seed(4))
    W = layer.weight.detach()
    dc = cost(W + torch.cat([torch.zeros(1, m, n, dtype=F64), d.dense()])[a]) - cost(W)
    mu = -dc if credit == "reward" else dc
    trace = DirectionalTrace(K, history=1, credit=credit, alpha=1.0)
    trace.push(directional_coefficients(mu, None, a, K), layer)
    grad = trace.write_grad(layer)
    delta = trace.update()
    assert grad is layer.weight.grad
    torch.testing.assert_close(grad, -delta, rtol=0, atol=1e-18)
    expected_sign = _cos(delta, Wstar - W)
    assert expected_sign > 0  # the step points downhill in cost (uphill in reward)
    before = float(cost(W))
    opt = torch.optim.SGD(layer.parameters(), lr=1e3)  # Δθ is O(σ²): scale the step up
    opt.step()
    assert float(cost(layer.weight.detach())) < before
    # the reward-convention update with a cost μ goes the wrong way: the sign matters
    wrong = DirectionalTrace(K, history=1, credit="reward")
    wrong.push(directional_coefficients(dc, None, a, K), d)
    assert _cos(wrong.update(), Wstar - W) < 0


def test_write_grad_accumulates_and_checkpoint_round_trips():
    d = ProbeDictionary(4, 3, num_probes=2, rank=1, dtype=F64)
    t = DirectionalTrace(2, history=3, decay=0.5)
    for _ in range(4):
        t.push(torch.randn(2, dtype=F64), d)
        d.refresh()
    p = torch.nn.Parameter(torch.zeros(4, 3, dtype=F64))
    g = t.write_grad(p).clone()
    torch.testing.assert_close(g, -t.update(), rtol=0, atol=1e-15)
    buf = p.grad
    t.write_grad(p, accumulate=True)
    torch.testing.assert_close(p.grad, 2 * g)
    t.write_grad(p)  # overwrites the existing buffer in place
    assert p.grad is buf
    torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    # keyed sources write the same gradient
    dk = ProbeDictionary(4, 3, num_probes=2, rank=1, dtype=F64, keyed=True, seed=3)
    ds = ProbeDictionary(4, 3, num_probes=2, rank=1, dtype=F64, seed=3)
    tk, ts = DirectionalTrace(2, history=2), DirectionalTrace(2, history=2)
    for _ in range(3):
        e = torch.randn(2, dtype=F64)
        tk.push(e, dk), ts.push(e, ds), dk.refresh(), ds.refresh()
    torch.testing.assert_close(tk.write_grad(torch.zeros(4, 3, dtype=F64)), -ts.update(), rtol=0, atol=1e-15)
    t2 = DirectionalTrace(2, history=3, decay=0.5)
    t2.load_state_dict(t.state_dict())
    torch.testing.assert_close(t2.update(), t.update(), rtol=0, atol=0)
    e = torch.randn(2, dtype=F64)
    t.push(e, d)
    t2.push(e, d)
    torch.testing.assert_close(t2.update(), t.update(), rtol=0, atol=0)


def test_bad_inputs_raise_one_line_errors():
    d = ProbeDictionary(4, 3, num_probes=2)
    t = DirectionalTrace(2, history=2)
    mu, a = torch.zeros(5), torch.zeros(5, dtype=torch.long)
    cases = [
        (lambda: directional_coefficients(mu, None, a, 0), ConfigError, "num_probes must be an integer >= 1"),
        (lambda: directional_coefficients(mu[:, None], None, a, 2), ShapeError, r"mu must be a 1-D float tensor of shape \(B,\)"),
        (lambda: directional_coefficients(mu, None, a[:4], 2), ShapeError, r"assignment_m must be a tensor of shape \(B,\) = \(5,\)"),
        (lambda: directional_coefficients(mu, None, a + 3, 2), ConfigError, "assignment_m values must be in 0..2"),
        (lambda: directional_coefficients(mu, torch.ones(4), a, 2), ShapeError, "ell must be None or a tensor of shape"),
        (lambda: module_coefficients(mu[:, None], None, a[:, None], [2, 3]), ConfigError, "list of M=1"),
        (lambda: history_weights(0), ConfigError, "history must be an integer >= 1"),
        (lambda: history_weights(3, decay=1.5), ConfigError, r"decay must be a number in \[0, 1\]"),
        (lambda: history_weights(3, kernel="box"), ConfigError, "kernel must be None"),
        (lambda: DirectionalTrace(2, credit="gain"), ConfigError, "credit must be 'reward' or 'cost'"),
        (lambda: t.update(), ConfigError, "needs at least one push"),
        (lambda: t.push(torch.zeros(3), d), ShapeError, r"coeffs must be a tensor of shape \(num_probes,\) = \(2,\)"),
        (lambda: t.push(torch.zeros(2), "probes"), ConfigError, "probes must be a ProbeDictionary"),
        (lambda: t.push(torch.zeros(2), ProbeDictionary(4, 3, num_probes=3)), ShapeError, "probes hold 3 probes"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match) as e:
            fn()
        assert "\n" not in str(e.value)
    t.push(torch.zeros(2), d)
    with pytest.raises(ShapeError, match=r"probes are for a \(5, 3\) weight"):
        t.push(torch.zeros(2), ProbeDictionary(5, 3, num_probes=2))
    with pytest.raises(ShapeError, match="module must be a ProbedLinear or parameter of shape"):
        t.write_grad(torch.zeros(3, 3))
