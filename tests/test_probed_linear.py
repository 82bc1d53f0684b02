"""Tests of neuroprobe.probes.probed_linear.ProbedLinear against materialised per-branch weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.probed_linear import ProbedLinear

F64 = torch.float64



def _materialised(layer: ProbedLinear, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """y_b = x_b (W + ΔW_{a_b})ᵀ + bias, one dense weight matrix per branch (loop over branches)."""
    U, V = layer.dictionary.factors()
    coef = layer.scale / layer.rank**0.5
    out = []
    for b in range(x.shape[0]):
        k = int(a[b])
        W = layer.weight.detach().clone()
        if k:
            W = W + coef * U[k - 1] @ V[k - 1].T
        y = x[b] @ W.T
        out.append(y + layer.bias.detach() if layer.bias is not None else y)
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["mask", "gather", "auto"])
@pytest.mark.parametrize("mid", [(), (5,), (3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_equals_materialised_per_branch(mode, mid, bias):
    torch.manual_seed(0)
    layer = ProbedLinear(6, 4, num_probes=5, rank=2, bias=bias, scale=0.3, mode=mode, dtype=F64)
    B = 9
    x = torch.randn(B, *mid, 6, dtype=F64)
    a = torch.tensor([0, 1, 2, 3, 4, 5, 0, 3, 5])  # every probe and the null probe
    y = layer(x, a)
    assert y.shape == (B, *mid, 4)
    torch.testing.assert_close(y, _materialised(layer, x, a), rtol=0, atol=1e-10)
    # the null probe rows are the plain linear map
    torch.testing.assert_close(y[a == 0], layer(x[a == 0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(antithetic=True), dict(keyed=True), dict(regime="learned_subspace"), dict(regime="semi_persistent")])
def test_forward_with_other_dictionaries(kw):
    torch.manual_seed(1)
    layer = ProbedLinear(7, 5, num_probes=4, rank=1, scale=0.5, dtype=F64, **kw)
    x = torch.randn(6, 3, 7, dtype=F64)
    a = torch.tensor([4, 3, 2, 1, 0, 2])
    torch.testing.assert_close(layer(x, a), _materialised(layer, x, a), rtol=0, atol=1e-10)


def test_no_assignment_is_nn_linear_and_state_dicts_are_compatible():
    torch.manual_seed(3)
    lin = nn.Linear(8, 3)
    torch.manual_seed(3)
    pl = ProbedLinear(8, 3, num_probes=4, rank=2)
    assert isinstance(pl, nn.Linear)
    assert torch.equal(pl.weight, lin.weight) and torch.equal(pl.bias, lin.bias)  # same init
    assert list(pl.state_dict()) == list(lin.state_dict()) == ["weight", "bias"]
    other = ProbedLinear(8, 3)
    other.load_state_dict(lin.state_dict())  # strict
    x = torch.randn(4, 2, 8)
    assert torch.equal(other(x), lin(x)) and torch.equal(other(x, None), lin(x))
    lin2 = nn.Linear(8, 3)
    lin2.load_state_dict(pl.state_dict())
    assert torch.equal(lin2(x), pl(x))
    # a 1-D input works like nn.Linear
    assert torch.equal(other(x[0, 0]), lin(x[0, 0]))


def test_weight_gradient_flows_through_probed_forward():
    torch.manual_seed(4)
    layer = ProbedLinear(5, 3, num_probes=3, rank=1, scale=0.2, dtype=F64)
    x = torch.randn(6, 5, dtype=F64)
    a = torch.tensor([0, 1, 2, 3, 1, 2])
    layer(x, a).pow(2).sum().backward()
    g = layer.weight.grad.clone()
    W = layer.weight.detach().clone().requires_grad_(True)
    U, V = layer.dictionary.factors()
    coef = 0.2
    deltas = torch.cat([torch.zeros(1, 3, 5, dtype=F64), coef * torch.einsum("kor,knr->kon", U, V)])
    y = torch.einsum("bn,bon->bo", x, W + deltas[a]) + layer.bias.detach()
    y.pow(2).sum().backward()
    torch.testing.assert_close(g, W.grad, rtol=0, atol=1e-10)


def test_recurrent_transition_matches_per_branch_dynamics():
    torch.manual_seed(5)
    n, B, T = 6, 5, 7
    cell = ProbedLinear(n, n, num_probes=4, rank=2, scale=0.3, dtype=F64)
    drive = torch.randn(B, T, n, dtype=F64)
    a = torch.tensor([0, 1, 2, 3, 4])
    h = torch.zeros(B, n, dtype=F64)
    for t in range(T):
        h = torch.tanh(drive[:, t] + cell(h, a))
    Ws = [cell.weight.detach() + (cell.dictionary.delta(int(k)) if k else 0) for k in a]
    for b in range(B):
        hb = torch.zeros(n, dtype=F64)
        for t in range(T):
            hb = torch.tanh(drive[b, t] + Ws[b] @ hb + cell.bias.detach())
        torch.testing.assert_close(h[b], hb, rtol=0, atol=1e-10)


def test_collapse_equals_sum_of_materialised_probes():
    torch.manual_seed(6)
    layer = ProbedLinear(9, 4, num_probes=6, rank=3, scale=0.7, dtype=F64)
    c = torch.randn(6, dtype=F64)
    U, V = layer.dictionary.factors()
    ref = torch.zeros(4, 9, dtype=F64)
    for k in range(6):
        ref += c[k] * (0.7 / 3**0.5) * U[k] @ V[k].T
    torch.testing.assert_close(layer.collapse(c), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("credit, sign", [("reward", 1.0), ("cost", -1.0)])
def test_apply_update_writes_negated_step_and_sgd_applies_it(credit, sign):
    torch.manual_seed(7)
    layer = ProbedLinear(5, 4, num_probes=3, rank=1, scale=0.5, dtype=F64)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    W0 = layer.weight.detach().clone()
    grad = layer.apply_update(c, alpha=0.1, credit=credit)
    assert grad is layer.weight.grad
    delta = -grad.clone()
    torch.testing.assert_close(delta, sign * 0.1 * layer.collapse(c), rtol=0, atol=1e-14)
    torch.optim.SGD([layer.weight], lr=2.0).step()
    torch.testing.assert_close(layer.weight.detach(), W0 + 2.0 * delta, rtol=0, atol=1e-14)
    layer.apply_update(c, alpha=0.1, credit=credit, accumulate=True)
    torch.testing.assert_close(layer.weight.grad, -2 * delta, rtol=0, atol=1e-14)
    buf = layer.weight.grad
    layer.apply_update(c, alpha=0.1, credit=credit)  # overwrites the buffer in place
    assert layer.weight.grad is buf
    torch.testing.assert_close(buf, -delta, rtol=0, atol=1e-14)


def test_double_moves_the_dictionary_and_probe_state_round_trips():
    layer = ProbedLinear(4, 3, num_probes=2, rank=1, regime="semi_persistent")
    layer.double()
    assert layer.dictionary.dtype == F64 and layer.dictionary.factors()[0].dtype == F64
    layer.refresh()
    other = ProbedLinear(4, 3, num_probes=2, rank=1, regime="semi_persistent", dtype=F64)
    other.load_state_dict(layer.state_dict())
    other.load_probe_state_dict(layer.probe_state_dict())
    x, a = torch.randn(3, 4, dtype=F64), torch.tensor([0, 1, 2])
    assert torch.equal(layer(x, a), other(x, a))


def test_bad_inputs_raise_one_line_errors():
    layer = ProbedLinear(4, 3, num_probes=2)
    x = torch.randn(3, 4)
    cases = [
        (lambda: layer(torch.randn(3, 5), torch.zeros(3, dtype=torch.long)), ShapeError, "x must be a tensor of shape"),
        (lambda: layer(x, torch.zeros(2, dtype=torch.long)), ShapeError, r"assignment must be a 1-D tensor of shape \(B,\) = \(3,\)"),
        (lambda: layer(x, torch.tensor([0, 1, 3])), ConfigError, r"assignment values must be probe labels in 0..2"),
        (lambda: layer(x, torch.tensor([0, -1, 1])), ConfigError, r"in 0..2"),
        (lambda: layer(x, torch.zeros(3)), ConfigError, "assignment must be an integer"),
        (lambda: layer.collapse(torch.zeros(3)), ShapeError, r"coefficients must be a tensor of shape \(num_probes,\) = \(2,\)"),
        (lambda: layer.apply_update(torch.zeros(2), credit="gain"), ConfigError, "credit must be 'reward' or 'cost'"),
        (lambda: ProbedLinear(4, 3, mode="dense"), ConfigError, "mode must be one of"),
        (lambda: ProbedLinear(0, 3), ConfigError, "in_features must be an integer >= 1"),
        (lambda: ProbedLinear(4, 3, num_probes=-1), ConfigError, "num_probes must be an integer >= 1"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match) as e:
            fn()
        assert "\n" not in str(e.value)
