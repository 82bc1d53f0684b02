"""Tests of modulatory routing: advantages, per-module projection, designed weights, delays."""
from __future__ import annotations

import math

import pytest
import torch

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.modulators import layer_delays
from neuroprobe.probes.routing import (CreditStatistics, DelayedRouter, branch_advantage, distance_weights,
                                       participation, precision_weights, route, temporal_weights)
from neuroprobe.probes.schedulers import RandomScheduler

F64 = torch.float64



A4 = torch.tensor([[0, 0, 0],
                   [1, 0, 2],
                   [0, 0, 0],
                   [2, 1, 0]])
OUT4 = torch.tensor([1.0, 4.0, 3.0, -2.0], dtype=F64)


def test_branch_advantage_by_hand():
    # null rows 0 and 2: baseline (1 + 3)/2 = 2
    torch.testing.assert_close(branch_advantage(OUT4, A4, "null"), torch.tensor([-1.0, 2.0, 1.0, -4.0], dtype=F64))
    # batch mean (1 + 4 + 3 - 2)/4 = 1.5
    torch.testing.assert_close(branch_advantage(OUT4, A4, "mean"), torch.tensor([-0.5, 2.5, 1.5, -3.5], dtype=F64))
    with pytest.raises(ConfigError, match="baseline = 'null' but A has no all-null row"):
        branch_advantage(OUT4[1::2], A4[1::2], "null")
    with pytest.raises(ConfigError, match=r"baseline = 'median': allowed \['null', 'mean'\]"):
        branch_advantage(OUT4, A4, "median")
    with pytest.raises(ShapeError, match=r"outcomes has shape \(3,\): must be \(4,\)"):
        branch_advantage(OUT4[:3], A4)


def test_route_masks_unperturbed_modules():
    adv = torch.tensor([-1.0, 2.0, 1.0, -4.0], dtype=F64)
    w = torch.tensor([1.0, 0.5, 2.0], dtype=F64)
    mu = route(adv, A4, w)
    expected = torch.zeros(4, 3, dtype=F64)
    for b in range(4):
        for m in range(3):
            if int(A4[b, m]) != 0:
                expected[b, m] = adv[b] * w[m]
    torch.testing.assert_close(mu, expected, rtol=0, atol=0)
    assert float(mu[1, 1]) == 0.0 and float(mu[3, 2]) == 0.0  # null probe: no credit
    torch.testing.assert_close(route(adv, A4), (A4 != 0).to(F64) * adv[:, None])
    with pytest.raises(ShapeError, match=r"weights has shape \(2,\): must be \(3,\)"):
        route(adv, A4, w[:2])
    assert route(adv.float(), A4).dtype == torch.float32


def test_designed_weights_by_hand():
    d = torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(distance_weights(d, 2.0),
                               torch.tensor([1.0, math.exp(-0.5), math.exp(-1.0)]))
    torch.testing.assert_close(temporal_weights([0, 3, 6], tau=3.0),
                               torch.tensor([1.0, math.exp(-1.0), math.exp(-2.0)], dtype=F64))
    var = torch.tensor([1.0, 4.0, 0.25], dtype=F64)
    inv = [1.0, 0.25, 4.0]
    expected = torch.tensor([x / (sum(inv) / 3) for x in inv], dtype=F64)
    torch.testing.assert_close(precision_weights(var, eps=1e-300), expected)
    torch.testing.assert_close(precision_weights(torch.full((4,), 2.5)), torch.ones(4))
    with pytest.raises(ConfigError, match="scale = 0"):
        distance_weights(d, 0)
    with pytest.raises(ConfigError, match="distances must be finite and >= 0"):
        distance_weights(-d - 1, 1.0)
    with pytest.raises(ConfigError, match="tau = -1"):
        temporal_weights(d, -1)
    with pytest.raises(ConfigError, match="running_var must be finite and >= 0"):
        precision_weights(torch.tensor([1.0, -1.0]))
    with pytest.raises(ShapeError, match=r"distances has shape \(2, 2\)"):
        distance_weights(torch.zeros(2, 2), 1.0)


def test_participation_by_hand():
    g = torch.Generator().manual_seed(0)
    h1 = torch.randn(5, 3, generator=g, dtype=F64)
    h2 = torch.randn(5, 2, 4, generator=g, dtype=F64)  # extra dims are averaged too
    ell = participation([h1, h2])
    assert ell.shape == (5, 2)
    for b in range(5):
        assert float(ell[b, 0]) == pytest.approx(sum(abs(float(x)) for x in h1[b]) / 3, abs=1e-14)
        assert float(ell[b, 1]) == pytest.approx(sum(abs(float(x)) for x in h2[b].flatten()) / 8, abs=1e-14)
    with pytest.raises(ShapeError, match=r"activations\[1\] has batch 4: must match activations\[0\] \(5\)"):
        participation([h1, h2[:4]])
    with pytest.raises(ShapeError, match=r"activations\[0\] has shape \(5,\)"):
        participation([h1[:, 0]])
    with pytest.raises(ConfigError, match="activations is empty"):
        participation([])


def test_credit_statistics_against_scalar_reference():
    cs = CreditStatistics(3, smoothing=0.3, init_var=1.0)
    g = torch.Generator().manual_seed(1)
    mean, var = [0.0] * 3, [1.0] * 3
    for t in range(5):
        A = torch.randint(0, 3, (6, 3), generator=g)
        A[:, 2] = 0 if t % 2 == 0 else A[:, 2]  # module 2 unperturbed every other window
        mu = torch.randn(6, 3, generator=g, dtype=F64)
        c = cs.update(mu, A)
        for m in range(3):
            rows = [b for b in range(6) if int(A[b, m]) != 0]
            if not rows:
                assert math.isnan(float(c[m]))
                continue
            x = sum(float(mu[b, m]) for b in rows) / len(rows)
            assert float(c[m]) == pytest.approx(x, abs=1e-14)
            diff = x - mean[m]
            mean[m] += 0.3 * diff
            var[m] = 0.7 * (var[m] + 0.3 * diff * diff)
    torch.testing.assert_close(cs.mean, torch.tensor(mean, dtype=F64))
    torch.testing.assert_close(cs.var, torch.tensor(var, dtype=F64))
    with pytest.raises(ShapeError, match=r"mu has shape \(6, 2\): must be \(6, 3\) like A"):
        cs.update(torch.zeros(6, 2), torch.zeros(6, 3, dtype=torch.long))


def test_delayed_router_per_module_delays_and_state():
    delays = [0, 2, 1]
    r = DelayedRouter(delays)
    B, M = 2, 3
    mus = [torch.full((B, M), float(t + 1), dtype=F64) * torch.tensor([1.0, 10.0, 100.0], dtype=F64)
           for t in range(5)]
    As = [torch.full((B, M), t % 3, dtype=torch.long) for t in range(5)]
    for t in range(5):
        if t == 2:
            state = r.state_dict()
        out = r.push(mus[t], As[t])
        for m, d in enumerate(delays):
            if t >= d:
                assert bool(out.ready[m])
                torch.testing.assert_close(out.mu[:, m], mus[t - d][:, m], rtol=0, atol=0)
                assert torch.equal(out.assignment[:, m], As[t - d][:, m])
            else:  # line still filling: no credit, null probe
                assert not bool(out.ready[m])
                assert float(out.mu[:, m].abs().sum()) == 0.0 and int(out.assignment[:, m].abs().sum()) == 0
        if t == 2:
            last = out
    r2 = DelayedRouter(delays)
    r2.load_state_dict(state)
    again = r2.push(mus[2], As[2])
    assert torch.equal(again.mu, last.mu) and torch.equal(again.assignment, last.assignment)
    with pytest.raises(ConfigError, match="assignment must be passed on every push or on none"):
        r.push(mus[0])
    with pytest.raises(ShapeError, match=r"mu has shape \(2, 2\): must be \(B, 3\)"):
        r.push(torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="delays = \\[1, -1\\]"):
        DelayedRouter([1, -1])
    r.reset()
    assert r.push(mus[0]).assignment is None  # after reset the assignment choice is free again


def test_delayed_router_retrograde_from_layers():
    r = DelayedRouter.from_layers(3, 1, "retrograde")
    assert r.delays == layer_delays(3, 1, "retrograde") == [3, 2, 1]
    deliveries = [r.push(torch.full((1, 3), float(t))) for t in range(4)]
    assert [d.ready.tolist() for d in deliveries] == [[False, False, False], [False, False, True],
                                                      [False, True, True], [True, True, True]]
    assert deliveries[3].mu.tolist() == [[0.0, 1.0, 2.0]]  # module m sees the signal of t − D_m


def test_end_to_end_scheduler_to_mu():
    s = RandomScheduler(10, [3, 2, 4], null_fraction=0.2, modules_per_branch=2, seed=0)
    A = s.next()
    out = torch.arange(10, dtype=F64)
    adv = branch_advantage(out, A, "null")
    assert float(adv[: s.num_null].sum()) == pytest.approx(0.0)  # baseline rows: zero advantage
    w = distance_weights([2.0, 1.0, 0.0], 1.0)
    mu = route(adv, A, w)
    base = out[: s.num_null].mean()
    for b in range(10):
        for m in range(3):
            want = (float(out[b]) - float(base)) * math.exp(-(2 - m)) if int(A[b, m]) else 0.0
            assert float(mu[b, m]) == pytest.approx(want, abs=1e-12)
