"""Tests of the schedulers' guarantees, each checked on the scheduler's own output."""
from __future__ import annotations

import math

import pytest
import torch

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.assignment import assignment_stats
from neuroprobe.probes.schedulers import (SCHEDULERS, BlockwiseBundledScheduler, DiversityScheduler,
                                          RandomScheduler, RoundRobinScheduler, UncertaintyWeightedScheduler,
                                          make_scheduler)



KS = [4, 3, 5, 4, 2, 6]
NAMES = list(SCHEDULERS)


def _check_common(A, sched, B, ks, p_exact=None, p_max=None, d=None):
    M = len(ks)
    assert A.shape == (B, M) and A.dtype == torch.long
    assert bool((A >= 0).all()) and bool((A <= torch.tensor(ks)).all())
    n0 = sched.num_null
    assert bool((A[:n0] == 0).all())
    nonnull = (A[n0:] != 0).sum(dim=1)
    assert bool((nonnull >= 1).all())  # only the baseline rows are all-null
    if p_exact is not None:
        assert bool((nonnull == p_exact).all())
    if p_max is not None:
        assert bool((nonnull <= p_max).all())
    if d is not None:
        for m in range(M):
            assert len(set(A[:, m].tolist()) - {0}) <= min(d, ks[m])


@pytest.mark.parametrize("name", NAMES)
def test_budget_respected(name):
    B, p, d, f = 40, 3, 2, 0.1
    kw = dict(num_branches=B, num_probes=KS, modules_per_branch=p, directions=d, null_fraction=f, seed=3)
    if name == "blockwise":
        kw.update(blocks=[[0, 1, 2], [3, 4], [5]], blocks_per_branch=1)
    sched = make_scheduler(name, **kw)
    assert sched.num_null == math.ceil(f * B) == 4
    for _ in range(5):
        A = sched.next()
        exact = None if name in ("round_robin", "blockwise") else p
        _check_common(A, sched, B, KS, p_exact=exact, p_max=p, d=d)
        assert assignment_stats(A, KS)["all_null_fraction"] == pytest.approx(sched.num_null / B)
    assert sched.window == 5


@pytest.mark.parametrize("name", NAMES)
def test_defaults_seed_determinism_and_state_roundtrip(name):
    kw = dict(num_branches=12, num_probes=3, num_modules=4, null_fraction=0.01)
    a, b = make_scheduler(name, seed=7, **kw), make_scheduler(name, seed=7, **kw)
    assert a.num_null == 1  # any f > 0 gives at least one baseline branch
    seq = [a.next() for _ in range(3)]
    assert all(torch.equal(x, b.next()) for x in seq)
    if name == "uncertainty":
        a.observe(torch.tensor([4.0, 1.0, 0.0, 2.0]))
    state = a.state_dict()
    cont = [a.next() for _ in range(3)]
    c = make_scheduler(name, seed=99, **kw)
    c.load_state_dict(state)
    assert all(torch.equal(x, c.next()) for x in cont)
    # with no modules_per_branch, every non-baseline row varies every module the window offers
    A = make_scheduler(name, seed=1, **kw).next()
    if name in ("random", "uncertainty", "diversity"):
        assert bool((A[1:] != 0).all())


def test_shared_generator_is_advanced_in_place():
    g = torch.Generator().manual_seed(5)
    s = RandomScheduler(8, 3, 2, seed=g)
    before = g.get_state().clone()
    s.next()
    assert not torch.equal(before, g.get_state())


def test_round_robin_coverage_after_M_windows():
    M, B = len(KS), 10
    s = RoundRobinScheduler(B, KS, null_fraction=0.2, seed=0)
    varied = torch.zeros(M, dtype=torch.bool)
    for t in range(M):
        expected = s.current_block()
        A = s.next()
        on = (A != 0).any(dim=0)
        assert on.nonzero().flatten().tolist() == expected == [t % M]  # only this window's module
        varied |= on
    assert bool(varied.all())
    # balanced probe use inside the window: counts differ by at most one over the non-null rows
    counts = torch.bincount(A[s.num_null:, M - 1], minlength=KS[-1] + 1)[1:]
    assert int(counts.max() - counts.min()) <= 1


def test_round_robin_blocks_and_partial_budget():
    blocks = [[0, 3], [1, 2, 4], [5]]
    s = RoundRobinScheduler(9, KS, blocks=blocks, modules_per_branch=2, seed=1)
    varied = torch.zeros(len(KS), dtype=torch.bool)
    for t in range(len(blocks)):
        A = s.next()
        on = (A != 0).any(dim=0)
        assert set(on.nonzero().flatten().tolist()) == set(blocks[t])  # whole block covered
        assert bool(((A != 0).sum(dim=1) == min(2, len(blocks[t]))).all())
        varied |= on
    assert bool(varied.all())
    assert s.current_block() == blocks[0]  # cycles


def test_blockwise_bundling():
    blocks = [[0, 1, 2], [3, 4], [5]]
    s = BlockwiseBundledScheduler(30, 4, 6, blocks=blocks, blocks_per_branch=2, null_fraction=0.1, seed=2)
    sizes = torch.tensor([len(b) for b in blocks])
    for _ in range(4):
        A = s.next()
        on = A != 0
        for blk in blocks:  # modules of a block vary together, in exactly the same branches
            assert bool((on[:, blk] == on[:, blk[:1]]).all())
        chosen = torch.stack([on[:, blk[0]] for blk in blocks], dim=1)
        assert bool((chosen[s.num_null:].sum(dim=1) == 2).all())
        assert torch.equal(on.sum(dim=1)[s.num_null:], (chosen.long() * sizes)[s.num_null:].sum(dim=1))
    tied = BlockwiseBundledScheduler(30, 4, 6, blocks=blocks, tie_probes=True, directions=4, seed=2)
    A = tied.next()
    for blk in blocks:
        # tied probes: within a block the joint assignment is one-to-one (every module of an
        # active block uses the same slot of its allowed subset), so I(i; j) = H_i = H_j
        st = assignment_stats(A[:, blk], 4)
        H, mi = st["entropy"], st["mutual_information"]
        for i in range(len(blk)):
            for j in range(len(blk)):
                assert float(mi[i, j]) == pytest.approx(float(H[i]), abs=1e-12)
                assert float(H[i]) == pytest.approx(float(H[j]), abs=1e-12)
        assert float(H[0]) > 0
    with pytest.raises(ConfigError, match="modules_per_branch = 2 is below the 3 modules"):
        BlockwiseBundledScheduler(8, 4, 6, blocks=blocks, modules_per_branch=2)


def test_uncertainty_weighting_prefers_high_statistics():
    M = 5
    s = UncertaintyWeightedScheduler(200, 3, M, modules_per_branch=1, smoothing=0.5, exploration=0.1, seed=0)
    stats = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0])
    for _ in range(30):
        s.observe(stats)
    expected = 0.9 * stats / stats.sum() + 0.1 / M  # the statistic has converged to ``stats``
    torch.testing.assert_close(s.probabilities(), expected.double(), rtol=1e-6, atol=1e-8)
    freq = torch.zeros(M)
    for _ in range(10):
        freq += (s.next() != 0).sum(dim=0)
    freq = freq / freq.sum()
    assert torch.all(freq[:-1] > freq[1:])  # strictly ordered like the statistics
    assert torch.allclose(freq, expected.float(), atol=0.03)  # 2000 draws: a few-sigma band
    assert float(freq[-1]) > 0  # exploration keeps the zero-statistic module alive
    with pytest.raises(ShapeError, match=r"stats has shape \(3,\): must be \(5,\)"):
        s.observe(torch.ones(3))
    with pytest.raises(ConfigError, match="stats must be finite and >= 0"):
        s.observe(-torch.ones(M))


def test_uncertainty_ema_by_hand():
    s = UncertaintyWeightedScheduler(4, 2, 2, smoothing=0.25, init=1.0, exploration=0.0, power=2.0)
    s.observe(torch.tensor([3.0, 0.0]))
    s.observe(torch.tensor([1.0, 2.0]))
    v = [1.0, 1.0]
    for obs in ([3.0, 0.0], [1.0, 2.0]):
        v = [0.75 * a + 0.25 * o for a, o in zip(v, obs)]
    torch.testing.assert_close(s.statistic, torch.tensor(v, dtype=torch.float64))
    w = [x**2 for x in v]
    torch.testing.assert_close(s.probabilities(), torch.tensor([x / sum(w) for x in w], dtype=torch.float64))


@pytest.mark.parametrize("kw", [
    dict(num_branches=32, num_probes=4, num_modules=6),
    dict(num_branches=32, num_probes=[4, 3, 5, 4, 4, 2], modules_per_branch=3, null_fraction=0.1, directions=3),
    dict(num_branches=48, num_probes=6, num_modules=4, null_fraction=0.05),
])
def test_diversity_less_entangled_than_random_at_equal_coverage(kw):
    rnd, div = RandomScheduler(seed=4, **kw), DiversityScheduler(seed=4, **kw)
    ks = rnd.num_probes
    e_r, e_d, c_r, c_d = [], [], [], []
    for _ in range(6):
        sr, sd = assignment_stats(rnd.next(), ks), assignment_stats(A := div.next(), ks)
        assert div.last_entanglement == pytest.approx(sd["entanglement"], abs=1e-12)
        _check_common(A, div, kw["num_branches"], ks, p_exact=div.modules_per_branch, d=kw.get("directions"))
        e_r.append(sr["entanglement"]), e_d.append(sd["entanglement"])
        c_r.append(sr["total_coverage"]), c_d.append(sd["total_coverage"])
        # balanced columns: the diversity design never covers fewer probes than random
        assert sd["total_coverage"] >= sr["total_coverage"] - 1e-12
    assert sum(c_d) / 6 == pytest.approx(sum(c_r) / 6, abs=0.05)
    assert sum(e_d) < 0.8 * sum(e_r)


def test_diversity_never_buys_low_entanglement_with_lost_coverage():
    # 4 perturbed rows, 3 modules, 1 module per row: dropping a module would give zero MI;
    # the scheduler must keep every module varied (the cyclic spread covers all three)
    s = DiversityScheduler(7, [3, 2, 2], modules_per_branch=1, null_fraction=0.3, seed=0)
    for _ in range(10):
        st = assignment_stats(s.next(), [3, 2, 2])
        assert bool(st["varied"].all())


def test_diversity_latin_square_is_exactly_disentangled():
    # d = 5 prime, 25 perturbed rows, 3 modules: the Latin-square construction has MI = 0
    s = DiversityScheduler(25, 5, 3, seed=0)
    A = s.next()
    st = assignment_stats(A, 5)
    assert st["entanglement"] == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(st["entropy"], torch.full((3,), math.log(5), dtype=torch.float64))


def test_make_scheduler_and_config_errors():
    assert isinstance(make_scheduler("round_robin", num_branches=4, num_probes=[1, 2]), RoundRobinScheduler)
    with pytest.raises(ConfigError, match=r"scheduler = 'greedy': allowed \['random', 'round_robin'"):
        make_scheduler("greedy", num_branches=4, num_probes=2, num_modules=2)
    with pytest.raises(ConfigError, match="null_fraction = 1.0"):
        RandomScheduler(4, 2, 2, null_fraction=1.0)
    with pytest.raises(ConfigError, match="leaves no perturbed branch"):
        RandomScheduler(1, 2, 2, null_fraction=0.5)
    with pytest.raises(ConfigError, match=r"num_probes\[1\] = 0"):
        RandomScheduler(4, [2, 0])
    with pytest.raises(ConfigError, match="modules_per_branch = 3: must be an int in 1..2"):
        RandomScheduler(4, 2, 2, modules_per_branch=3)
    with pytest.raises(ConfigError, match="directions = 0"):
        RandomScheduler(4, 2, 2, directions=0)
    with pytest.raises(ConfigError, match="num_modules must be given"):
        RandomScheduler(4, 2)
    with pytest.raises(ConfigError, match=r"blocks\[1\] = \[1, 2\]: blocks must not share"):
        RoundRobinScheduler(4, 2, 3, blocks=[[0, 1], [1, 2]])
    with pytest.raises(ConfigError, match=r"blocks\[0\] = \[5\]"):
        BlockwiseBundledScheduler(4, 2, 3, blocks=[[5]])
    with pytest.raises(ConfigError, match="smoothing = 0"):
        UncertaintyWeightedScheduler(4, 2, 2, smoothing=0)
