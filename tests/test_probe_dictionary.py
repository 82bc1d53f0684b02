"""Tests of neuroprobe.probes.dictionary: regimes, keyed regeneration, antithetic pairs, memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.dictionary import ProbeDictionary, keyed_generator, lowrank_sum

F64 = torch.float64



def _dense_loop(d: ProbeDictionary) -> torch.Tensor:
    """ΔW_k = (σ/√r) Σ_i u_{k,i} v_{k,i}ᵀ, written as an explicit sum of outer products."""
    U, V = d.factors()
    out = torch.zeros(d.num_probes, d.n_out, d.n_in, dtype=U.dtype)
    for k in range(d.num_probes):
        for i in range(d.rank):
            out[k] += torch.outer(U[k, :, i], V[k, :, i])
    return out * d.scale / math.sqrt(d.rank)


# ----------------------------------------------------------------------------- basics


def test_shapes_delta_dense_and_null_probe():
    d = ProbeDictionary(7, 5, num_probes=6, rank=3, scale=0.2, dtype=F64)
    U, V = d.factors()
    assert U.shape == (6, 7, 3) and V.shape == (6, 5, 3)
    ref = _dense_loop(d)
    torch.testing.assert_close(d.dense(), ref, rtol=0, atol=1e-12)
    for k in range(1, 7):
        torch.testing.assert_close(d.delta(k), ref[k - 1], rtol=0, atol=1e-12)
    assert torch.equal(d.delta(0), torch.zeros(7, 5, dtype=F64))


def test_eggroll_scaling_entry_variance_is_scale_squared():
    d = ProbeDictionary(64, 64, num_probes=64, rank=4, scale=0.5, dtype=F64, seed=3)
    var = d.dense().var().item()
    # 262144 entries, each a sum of 4 products of standard normals (kurtosis ~ 9/4 * ...): 3 % is > 5 sd
    assert var == pytest.approx(0.25, rel=0.03)


def test_gram_and_cosine_match_flattened_dense():
    d = ProbeDictionary(9, 4, num_probes=5, rank=2, dtype=F64)
    flat = _dense_loop(d).reshape(5, -1)
    torch.testing.assert_close(d.gram(), flat @ flat.T, rtol=1e-12, atol=1e-18)
    n = flat.norm(dim=1)
    torch.testing.assert_close(d.cosine(), (flat @ flat.T) / (n[:, None] * n[None, :]), rtol=1e-10, atol=1e-12)


def test_lowrank_sum_matches_loop():
    g = torch.Generator().manual_seed(0)
    U, V, w = torch.randn(4, 6, 2, generator=g, dtype=F64), torch.randn(4, 3, 2, generator=g, dtype=F64), torch.randn(4, generator=g, dtype=F64)
    ref = sum(w[c] * U[c] @ V[c].T for c in range(4))
    torch.testing.assert_close(lowrank_sum(w, U, V), ref, rtol=0, atol=1e-12)


def test_pure_refresh_draws_new_probes_and_reports_all_labels():
    d = ProbeDictionary(6, 5, num_probes=4, rank=1, dtype=F64)
    before = d.dense().clone()
    ids0 = d.probe_ids().clone()
    replaced = d.refresh()
    assert d.window == 1 and torch.equal(replaced, torch.arange(1, 5))
    assert not torch.allclose(before, d.dense())
    assert set(d.probe_ids().tolist()).isdisjoint(ids0.tolist())


# ----------------------------------------------------------------------------- keyed


def test_keyed_regeneration_identical_and_equal_to_stored():
    keyed = ProbeDictionary(20, 12, num_probes=6, rank=2, keyed=True, seed=5, module_id=2, dtype=F64)
    stored = ProbeDictionary(20, 12, num_probes=6, rank=2, keyed=False, seed=5, module_id=2, dtype=F64)
    for w in (0, 3, 17):
        keyed.refresh(w)
        stored.refresh(w)
        U1, V1 = keyed.factors()
        U2, V2 = keyed.factors()
        assert torch.equal(U1, U2) and torch.equal(V1, V2)
        Us, Vs = stored.factors()
        assert torch.equal(U1, Us) and torch.equal(V1, Vs)
        assert torch.equal(keyed.factors(window=w)[0], U1)
    # another window, module or seed gives other probes
    assert not torch.equal(keyed.factors(window=4)[0], keyed.factors(window=3)[0])
    other = ProbeDictionary(20, 12, num_probes=6, rank=2, keyed=True, seed=5, module_id=3, dtype=F64)
    other.refresh(17)
    assert not torch.equal(other.factors()[0], keyed.factors()[0])
    with pytest.raises(ConfigError, match="window"):
        stored.factors(window=3)


def test_keyed_memory_is_constant_and_stored_memory_is_k_r_m_plus_n():
    sizes = [(8, 8), (64, 32), (512, 1024)]
    keyed = [ProbeDictionary(m, n, num_probes=16, rank=2, keyed=True).nbytes for m, n in sizes]
    assert len(set(keyed)) == 1 and keyed[0] <= 64
    for m, n in sizes:
        d = ProbeDictionary(m, n, num_probes=16, rank=2)  # float32
        assert d.nbytes == 16 * 2 * (m + n) * 4 + 16 * 8 + 3 * 8  # factors + probe ids + keys


def test_keyed_generator_is_deterministic():
    a = torch.randn(5, generator=keyed_generator(1, 2, 3))
    b = torch.randn(5, generator=keyed_generator(1, 2, 3))
    c = torch.randn(5, generator=keyed_generator(1, 2, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- antithetic


@pytest.mark.parametrize("regime, keyed", [("pure", False), ("pure", True), ("semi_persistent", False), ("learned_subspace", False)])
def test_antithetic_pairs_sum_to_zero(regime, keyed):
    d = ProbeDictionary(10, 7, num_probes=8, rank=2, regime=regime, antithetic=True, keyed=keyed, dtype=F64, num_explore=2 if regime == "learned_subspace" else None)
    for _ in range(2):
        D = d.dense()
        assert torch.equal(D[0::2], -D[1::2])
        assert D[0::2].abs().sum() > 0
        d.refresh()


def test_antithetic_needs_even_k():
    with pytest.raises(ConfigError, match="num_probes must be even"):
        ProbeDictionary(4, 4, num_probes=3, antithetic=True)


# ----------------------------------------------------------------------------- semi-persistent


def _semi(**kw) -> ProbeDictionary:
    base = dict(num_probes=6, rank=1, regime="semi_persistent", dtype=F64, yield_quantile=None, redundancy_threshold=1.0, yield_warmup=0)
    base.update(kw)
    return ProbeDictionary(12, 10, **base)


def test_semi_persistent_keeps_probes_without_reasons():
    d = _semi(max_age=100)
    D = d.dense().clone()
    for _ in range(5):
        assert d.refresh().numel() == 0
    assert torch.equal(D, d.dense())
    assert torch.equal(d.age, torch.full((6,), 5))


def test_semi_persistent_replaces_stale():
    d = _semi(max_age=2)
    d.age = torch.tensor([0, 2, 1, 5, 2, 0])  # after the refresh's +1: 1 3 2 6 3 1 -> stale: labels 2, 4, 5
    D = d.dense().clone()
    ids = d.probe_ids().clone()
    replaced = d.refresh()
    assert replaced.tolist() == [2, 4, 5]
    assert torch.equal(d.age, torch.tensor([1, 0, 2, 0, 0, 1]))
    kept = torch.tensor([0, 2, 5])
    assert torch.equal(d.dense()[kept], D[kept])
    assert not torch.isclose(d.dense()[[1, 3, 4]], D[[1, 3, 4]]).all(dim=(1, 2)).any()
    new = d.probe_ids()
    assert torch.equal(new[kept], ids[kept]) and set(new[[1, 3, 4]].tolist()).isdisjoint(ids.tolist())


def test_update_stats_is_an_ema_of_abs_credit():
    d = _semi(yield_decay=0.8)
    c1 = torch.tensor([1.0, -2.0, 0.0, 0.5, -0.5, 3.0], dtype=F64)
    c2 = torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0, -3.0], dtype=F64)
    d.update_stats(c1)
    d.update_stats(c2)
    ref = 0.8 * (0.2 * c1.abs()) + 0.2 * c2.abs()
    torch.testing.assert_close(d.yields, ref, rtol=0, atol=1e-15)


def test_semi_persistent_replaces_low_yield_by_threshold_with_warmup():
    d = _semi(yield_decay=0.0, yield_threshold=0.5, yield_warmup=2, max_age=100)
    d.update_stats(torch.tensor([1.0, 0.1, 0.9, 0.4, 2.0, 0.0], dtype=F64))
    assert d.refresh().numel() == 0  # age 1 < warmup 2: nothing is judged yet
    assert d.refresh().tolist() == [2, 4, 6]
    assert torch.equal(d.yields, torch.tensor([1.0, 0.0, 0.9, 0.0, 2.0, 0.0], dtype=F64))


def test_semi_persistent_replaces_low_yield_by_quantile():
    d = _semi(num_probes=8, yield_decay=0.0, yield_quantile=0.3, max_age=100)
    y = torch.tensor([0.7, 0.2, 0.9, 0.05, 0.4, 0.3, 0.8, 0.6], dtype=F64)
    d.update_stats(y)
    thr = np.quantile(y.numpy(), 0.3)
    expect = [k + 1 for k in range(8) if y[k] < thr]
    assert d.refresh().tolist() == expect == [2, 4, 6]  # threshold 0.31


def test_semi_persistent_replaces_redundant_lower_yield_probe():
    d = _semi(yield_decay=0.0, redundancy_threshold=0.95, max_age=100)
    U, V = d.factors()
    U, V = U.clone(), V.clone()
    U[3] = -2.0 * U[0]  # label 4 = -2 x label 1: |cos| = 1
    V[3] = V[0]
    U[5] = U[4] + 1e-3 * U[2]  # label 6 ~ label 5: |cos| ~ 1
    V[5] = V[4]
    d.U, d.V = U, V
    cos = d.cosine().abs()
    assert cos[0, 3] > 0.999 and cos[4, 5] > 0.95
    off = cos - torch.diag(torch.diag(cos))
    off[0, 3] = off[3, 0] = off[4, 5] = off[5, 4] = 0
    assert off.max() < 0.95  # no other overlaps by chance
    # label 4 earns more than label 1 -> label 1 goes; labels 5 and 6 tie -> the higher label goes
    d.update_stats(torch.tensor([0.1, 0.3, 0.3, 0.5, 0.2, 0.2], dtype=F64))
    stale, low, redundant = d.stale_low_redundant()
    assert not stale.any() and not low.any()
    assert (redundant.nonzero().flatten() + 1).tolist() == [1, 6]
    assert d.refresh().tolist() == [1, 6]
    assert d.cosine().abs().fill_diagonal_(0).max() < 0.95


def test_semi_persistent_antithetic_replaces_whole_pairs_and_partners_are_not_redundant():
    d = _semi(antithetic=True, max_age=2, redundancy_threshold=0.5)
    assert d.refresh().numel() == 0  # partners have cosine -1 but are exempt
    d.age = torch.tensor([0, 0, 2, 0, 0, 0])
    assert d.refresh().tolist() == [3, 4]
    D = d.dense()
    assert torch.equal(D[0::2], -D[1::2])


# ----------------------------------------------------------------------------- learned subspace


def _residuals(d: ProbeDictionary, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    Pu = torch.eye(d.n_out, dtype=F64) - d.basis_u @ d.basis_u.T
    Pv = torch.eye(d.n_in, dtype=F64) - d.basis_v @ d.basis_v.T
    n = D.flatten(1).norm(dim=1)
    return (Pu @ D).flatten(1).norm(dim=1) / n, (D @ Pv).flatten(1).norm(dim=1) / n


def test_learned_subspace_probes_stay_inside_the_basis():
    d = ProbeDictionary(30, 20, num_probes=8, rank=2, regime="learned_subspace", subspace_rank=4, num_explore=2, dtype=F64)
    eye = torch.eye(4, dtype=F64)
    for _ in range(3):
        torch.testing.assert_close(d.basis_u.T @ d.basis_u, eye, rtol=0, atol=1e-12)
        torch.testing.assert_close(d.basis_v.T @ d.basis_v, eye, rtol=0, atol=1e-12)
        ru, rv = _residuals(d, d.dense())
        assert ru[:6].max() < 1e-12 and rv[:6].max() < 1e-12
        assert ru[6:].min() > 0.5 and rv[6:].min() > 0.5  # exploration probes leave the basis
        d.update_basis(torch.randn(8, dtype=F64))
        d.refresh()


def test_learned_subspace_basis_is_the_truncated_svd_of_the_ema():
    q, beta = 8, 0.3
    d = ProbeDictionary(15, 11, num_probes=4, rank=1, regime="learned_subspace", subspace_rank=q, num_explore=2, basis_decay=beta, dtype=F64)
    S = torch.zeros(15, 11, dtype=F64)
    for w in range(2):  # rank(S) <= 2 * 4 = q: the truncation is exact
        c = torch.randn(4, dtype=F64)
        S = (1 - beta) * S + beta * torch.einsum("k,kon->on", c, d.dense())
        d.update_basis(c)
        d.refresh()
    torch.testing.assert_close(d.basis_u @ torch.diag(d.basis_s) @ d.basis_v.T, S, rtol=0, atol=1e-12)
    ref = torch.linalg.svdvals(S)[:q]
    torch.testing.assert_close(d.basis_s, ref, rtol=0, atol=1e-12)


def test_learned_subspace_absorbs_a_credited_exploration_direction():
    d = ProbeDictionary(25, 18, num_probes=4, rank=1, regime="learned_subspace", subspace_rank=2, num_explore=1, basis_decay=1.0, dtype=F64)
    target = d.delta(4)  # the exploration probe
    assert max(_residuals(d, target[None])) > 0.5
    d.update_basis(torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64))
    ru, rv = _residuals(d, target[None])
    assert ru.item() < 1e-12 and rv.item() < 1e-12


# ----------------------------------------------------------------------------- checkpoint, device, errors


@pytest.mark.parametrize("regime", ["pure", "semi_persistent", "learned_subspace"])
def test_state_dict_round_trip_resumes_identically(regime):
    kw = dict(num_probes=6, rank=2, regime=regime, dtype=F64, seed=11, yield_warmup=0)
    a = ProbeDictionary(9, 7, **kw)
    for _ in range(2):
        if regime == "semi_persistent":
            a.update_stats(torch.rand(6, dtype=F64))
        if regime == "learned_subspace":
            a.update_basis(torch.randn(6, dtype=F64))
        a.refresh()
    b = ProbeDictionary(9, 7, **kw)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.dense(), b.dense()) and torch.equal(a.probe_ids(), b.probe_ids())
    c = torch.rand(6, dtype=F64)
    for d in (a, b):
        d.update_stats(c)
        if regime == "learned_subspace":
            d.update_basis(c)
    assert torch.equal(a.refresh(), b.refresh())
    assert torch.equal(a.dense(), b.dense())
    with pytest.raises(ConfigError, match="rank"):
        ProbeDictionary(9, 7, **{**kw, "rank": 1}).load_state_dict(a.state_dict())


def test_to_casts_state():
    d = ProbeDictionary(5, 4, num_probes=2, regime="semi_persistent")
    d.to_(dtype=F64)
    assert d.factors()[0].dtype == F64 and d.yields.dtype == F64 and d.dtype == F64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(regime="lora"), "regime must be one of"),
        (dict(num_probes=0), "num_probes must be an integer >= 1"),
        (dict(rank=1.5), "rank must be an integer"),
        (dict(scale=-1.0), "scale must be a number"),
        (dict(keyed=True, regime="semi_persistent"), "keyed=True needs regime='pure'"),
        (dict(redundancy_threshold=0.0), "redundancy_threshold"),
        (dict(regime="learned_subspace", subspace_rank=9), "subspace_rank must be <="),
        (dict(num_explore=9), "num_explore must be in"),
        (dict(dtype=torch.long), "dtype must be a floating"),
    ],
)
def test_bad_config_raises_one_line_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        ProbeDictionary(8, 6, **{"num_probes": 4, **kwargs})
    assert "\n" not in str(e.value)


def test_bad_coefficients_and_regime_methods():
    d = ProbeDictionary(8, 6, num_probes=4)
    with pytest.raises(ShapeError, match=r"coefficients must be a tensor of shape \(num_probes,\) = \(4,\)"):
        d.update_stats(torch.zeros(5))
    with pytest.raises(ConfigError, match="update_basis needs regime='learned_subspace'"):
        d.update_basis(torch.zeros(4))
    with pytest.raises(ConfigError, match="k must be a probe label in 0..4"):
        d.delta(5)
