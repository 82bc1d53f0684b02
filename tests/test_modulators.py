"""Tests of the reward-prediction error and the delayed per-layer broadcast."""
from __future__ import annotations

import math

import pytest
import torch

from neuroprobe.errors import ConfigError
from neuroprobe.modulators import DelayedBroadcast, RewardPredictionError, layer_delays

F64 = torch.float64



class HandRPE:
    """Independent scalar reference: δ = r − r̄; r̄ ← r̄ + λ(r − r̄); r̄ starts at the first reward."""

    def __init__(self, lam, scale="none", init="first"):
        self.lam, self.scale = lam, scale
        self.b = None if init == "first" else float(init)
        self.var = 1.0
        self.first = init == "first"

    def __call__(self, r):
        first = self.b is None
        if first:
            self.b = r
        err = r - self.b
        d = err
        if self.scale == "abs_reward":
            d = err / max(abs(r), 1e-8)
        elif self.scale == "std":
            d = err / max(math.sqrt(self.var), 1e-8)
        self.b = self.b + self.lam * err
        if not first:
            self.var = (1 - self.lam) * self.var + self.lam * err * err
        return d


REWARDS = [[10.0, -3.0, 0.5], [14.0, 2.0, 0.5], [9.0, -1.0, 7.0], [30.0, 5.0, -2.0], [12.0, 0.0, 1.0],
           [11.0, 4.0, 3.0]]


@pytest.mark.parametrize("scale", ["none", "abs_reward", "std"])
def test_rpe_matches_hand_computation(scale):
    lam = 0.66
    rpe = RewardPredictionError(batch=3, smoothing=lam, scale=scale)
    hands = [HandRPE(lam, scale) for _ in range(3)]
    for t, r in enumerate(REWARDS):
        d = rpe(torch.tensor(r))
        want = [h(x) for h, x in zip(hands, r)]
        if t == 0:
            assert d.tolist() == [0.0, 0.0, 0.0]  # baseline starts at the first reward
        torch.testing.assert_close(d, torch.tensor(want, dtype=F64), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rpe.baseline, torch.tensor([h.b for h in hands], dtype=F64), rtol=1e-12, atol=1e-12)


def test_rpe_first_steps_by_hand():
    """Hand numbers: λ = 0.5, rewards 4, 8, 2 -> δ = 0, 4, −4; r̄ = 4, 6, 4."""
    rpe = RewardPredictionError(batch=1, smoothing=0.5)
    assert float(rpe(torch.tensor([4.0]))) == 0.0
    assert float(rpe.baseline) == 4.0
    assert float(rpe(torch.tensor([8.0]))) == 4.0
    assert float(rpe.baseline) == 6.0
    assert float(rpe(torch.tensor([2.0]))) == -4.0
    assert float(rpe.baseline) == 4.0


def test_rpe_abs_reward_scaling_by_hand():
    """λ = 0.5, rewards 4, 8, −2 with δ/|r|: 0, 4/8 = 0.5, (−2 − 6)/2 = −4."""
    rpe = RewardPredictionError(batch=1, smoothing=0.5, scale="abs_reward")
    got = [float(rpe(torch.tensor([r]))) for r in (4.0, 8.0, -2.0)]
    assert got == [0.0, 0.5, -4.0]


def test_rpe_masks():
    lam = 0.25
    rpe = RewardPredictionError(batch=3, smoothing=lam)
    hands = [HandRPE(lam) for _ in range(3)]
    masks = [[True, False, True], [True, True, False], [False, True, True], [True, True, True], [False, False, True]]
    for r, m in zip(REWARDS, masks):
        before = rpe.baseline.clone()
        d = rpe(torch.tensor(r), torch.tensor(m))
        for i in range(3):
            if m[i]:
                assert float(d[i]) == pytest.approx(hands[i](r[i]), rel=1e-12, abs=1e-12)
                assert float(rpe.baseline[i]) == pytest.approx(hands[i].b, rel=1e-12)
            else:
                assert float(d[i]) == 0.0
                assert float(rpe.baseline[i]) == float(before[i])  # kept
    # model 1 was masked out on the first step: its first *own* reward (step 2) initialised it, δ = 0 there
    rpe2 = RewardPredictionError(batch=2, smoothing=0.5)
    rpe2(torch.tensor([1.0, 100.0]), torch.tensor([True, False]))
    d = rpe2(torch.tensor([3.0, 7.0]))
    # model 0: r̄ = 1 after step 1, δ = 3 − 1 = 2, r̄ = 2; model 1: initialised now, δ = 0, r̄ = 7
    assert d.tolist() == [2.0, 0.0]
    assert rpe2.baseline.tolist() == [2.0, 7.0]


def test_rpe_numeric_init():
    rpe = RewardPredictionError(batch=2, smoothing=0.5, init=1.0)
    d = rpe(torch.tensor([3.0, -1.0]))
    assert d.tolist() == [2.0, -2.0]  # no "first reward" rule with a numeric init
    assert rpe.baseline.tolist() == [2.0, 0.0]
    rpe0 = RewardPredictionError(batch=1, smoothing=1.0, init=0)
    assert rpe0(torch.tensor([5.0])).tolist() == [5.0]
    assert rpe0(torch.tensor([2.0])).tolist() == [-3.0]  # λ = 1: baseline = last reward


def test_rpe_state_dict_round_trip():
    a = RewardPredictionError(batch=2, smoothing=0.3, scale="std")
    for r in REWARDS[:3]:
        a(torch.tensor(r[:2]))
    b = RewardPredictionError(batch=2, smoothing=0.3, scale="std")
    b.load_state_dict(a.state_dict())
    for r in REWARDS[3:]:
        torch.testing.assert_close(a(torch.tensor(r[:2])), b(torch.tensor(r[:2])), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, key", [
    ({"smoothing": 0.0}, "smoothing"),
    ({"smoothing": 1.5}, "smoothing"),
    ({"smoothing": -0.2}, "smoothing"),
    ({"smoothing": float("nan")}, "smoothing"),
    ({"scale": "minmax"}, "scale"),
    ({"init": "last"}, "init"),
    ({"init": None}, "init"),
])
def test_rpe_bad_arguments(kwargs, key):
    with pytest.raises(ConfigError) as ei:
        RewardPredictionError(batch=2, **kwargs)
    assert key in str(ei.value) and "\n" not in str(ei.value)


# ----------------------------------------------------------------------------------- broadcast


def test_layer_delays():
    assert layer_delays(3, 2) == [2, 2, 2]
    assert layer_delays(3, 2, "constant") == [2, 2, 2]
    assert layer_delays(3, 2, "retrograde") == [6, 4, 2]
    assert layer_delays(4, 1, "retrograde") == [4, 3, 2, 1]
    assert layer_delays(3, 5, "retrograde", step=1) == [7, 6, 5]
    assert layer_delays(2, 0, "retrograde") == [0, 0]
    with pytest.raises(ConfigError, match="delay"):
        layer_delays(3, -1)
    with pytest.raises(ConfigError, match="delay_mode"):
        layer_delays(3, 2, "anterograde")


@pytest.mark.parametrize("delays", [[0, 0, 0], [2, 2, 2], [6, 4, 2], [0, 3, 1]])
def test_broadcast_delivers_at_t_plus_d(delays):
    bc = DelayedBroadcast(delays)
    T = 12
    sig = [[torch.full((2,), 100.0 * l + t) for l in range(len(delays))] for t in range(T)]
    for t in range(T):
        out = bc.push(sig[t])
        for l, d in enumerate(delays):
            if t < d:
                assert out[l] is None
            else:
                assert torch.equal(out[l], sig[t - d][l]), (t, l)


def test_broadcast_with_retrograde_delays_and_reset():
    delays = layer_delays(3, 2, "retrograde")
    bc = DelayedBroadcast(delays)
    first_seen = {}
    for t in range(10):
        out = bc.push([torch.tensor([float(t)])] * 3)
        for l, o in enumerate(out):
            if o is not None and l not in first_seen:
                first_seen[l] = (t, float(o))
    assert first_seen == {0: (6, 0.0), 1: (4, 0.0), 2: (2, 0.0)}
    # state_dict round trip continues identically
    other = DelayedBroadcast(delays)
    other.load_state_dict(bc.state_dict())
    a = bc.push([torch.tensor([99.0])] * 3)
    b = other.push([torch.tensor([99.0])] * 3)
    assert [float(x) for x in a] == [float(x) for x in b] == [4.0, 6.0, 8.0]
    bc.reset()
    assert bc.push([torch.tensor([1.0])] * 3) == [None, None, None]
    with pytest.raises(ConfigError):
        bc.push([torch.tensor([1.0])] * 2)
