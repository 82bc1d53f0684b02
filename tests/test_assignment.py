"""Tests of assignment-matrix statistics against direct computations (scikit-learn, SciPy, NumPy)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import mutual_info_score

import neuroprobe.probes.assignment as assignment_mod
from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.assignment import assignment_stats, pairwise_mutual_information



def _random_A(B, ks, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k + 1, (B,), generator=g) for k in ks], dim=1)


def test_stats_match_sklearn_scipy_numpy():
    ks = [3, 5, 2, 4]
    A = _random_A(40, ks)
    A[:, 2] = 0  # one module never varied in this window
    s = assignment_stats(A, ks)
    a = A.numpy()
    B, M = a.shape
    for m in range(M):
        p = np.bincount(a[:, m], minlength=ks[m] + 1) / B
        np.testing.assert_allclose(s["distribution"][m].numpy(), p, atol=1e-15)
        assert s["distribution"][m].shape == (ks[m] + 1,)
        assert int(s["support"][m]) == len(np.unique(a[:, m]))
        assert float(s["entropy"][m]) == pytest.approx(scipy_entropy(p), abs=1e-12)
        assert float(s["null_fraction"][m]) == pytest.approx(float(np.mean(a[:, m] == 0)))
        used = len(set(a[:, m].tolist()) - {0})
        assert float(s["coverage"][m]) == pytest.approx(used / ks[m])
        assert bool(s["varied"][m]) == (len(np.unique(a[:, m])) > 1)
    mi = np.array([[mutual_info_score(a[:, i], a[:, j]) for j in range(M)] for i in range(M)])
    np.testing.assert_allclose(s["mutual_information"].numpy(), mi, atol=1e-12)
    assert s["mutual_information"].shape == (M, M)
    off = ~np.eye(M, dtype=bool)
    assert s["entanglement"] == pytest.approx(mi[off].mean(), abs=1e-12)
    assert s["max_entanglement"] == pytest.approx(mi[off].max(), abs=1e-12)
    assert s["mean_entropy"] == pytest.approx(float(np.mean(np.diag(mi))), abs=1e-12)
    used_total = sum(len(set(a[:, m].tolist()) - {0}) for m in range(M))
    assert s["total_coverage"] == pytest.approx(used_total / sum(ks))
    assert s["all_null_fraction"] == pytest.approx(float(np.mean((a == 0).all(axis=1))))
    assert s["distinct_bundles"] == len({tuple(r) for r in a.tolist()})
    assert (s["num_branches"], s["num_modules"], s["num_probes"]) == (B, M, ks)


def test_constant_and_identical_and_factorial_columns():
    # full factorial over 3 x 4 values: columns 0 and 1 independent (MI exactly 0);
    # column 2 = column 0 (MI = entropy); column 3 constant non-null (support 1, entropy 0).
    rows = list(itertools.product(range(3), range(4)))
    A = torch.tensor([[i, j, i, 2] for i, j in rows])
    s = assignment_stats(A, [2, 3, 2, 2])
    mi = s["mutual_information"]
    assert float(mi[0, 1]) == pytest.approx(0.0, abs=1e-14)
    assert float(mi[0, 2]) == pytest.approx(math.log(3), abs=1e-12)
    assert float(s["entropy"][1]) == pytest.approx(math.log(4), abs=1e-12)
    assert int(s["support"][3]) == 1 and float(s["entropy"][3]) == 0.0
    assert float(mi[3].abs().max()) == 0.0 and not bool(s["varied"][3])
    assert float(s["coverage"][3]) == pytest.approx(0.5)
    assert torch.equal(mi, mi.T)


def test_inferred_num_probes_and_single_module():
    A = torch.tensor([[0, 0], [2, 0], [1, 0]])
    s = assignment_stats(A)
    assert s["num_probes"] == [2, 0]
    assert float(s["coverage"][1]) == 0.0  # K = 0: no non-null probe to cover
    assert s["total_coverage"] == pytest.approx(1.0)
    s1 = assignment_stats(A[:, :1])
    assert s1["entanglement"] == 0.0 and s1["mutual_information"].shape == (1, 1)
    assert float(s1["mutual_information"][0, 0]) == pytest.approx(math.log(3))


def test_chunked_and_batched_pairwise_mi_agree(monkeypatch):
    ks = [4, 4, 3, 6, 2]
    designs = torch.stack([_random_A(30, ks, seed=s) for s in range(3)])
    L = max(ks) + 1
    full = pairwise_mutual_information(designs, L)
    one = [pairwise_mutual_information(designs[c], L) for c in range(3)]
    monkeypatch.setattr(assignment_mod, "_MAX_CELLS", 1)  # forces one row of pairs per bincount
    chunked = pairwise_mutual_information(designs, L)
    for c in range(3):
        torch.testing.assert_close(full[c], one[c], rtol=0, atol=1e-14)
    torch.testing.assert_close(full, chunked, rtol=0, atol=1e-14)


def test_bad_input():
    with pytest.raises(ConfigError, match="A has dtype"):
        assignment_stats(torch.zeros(3, 2))
    with pytest.raises(ShapeError, match=r"A has shape \(3,\)"):
        assignment_stats(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="negative"):
        assignment_stats(torch.tensor([[0, -1]]))
    with pytest.raises(ConfigError, match=r"A\[:, 1\] has value 3: allowed 0..2"):
        assignment_stats(torch.tensor([[0, 3]]), [2, 2])
    with pytest.raises(ConfigError, match="num_probes has 3 entries"):
        assignment_stats(torch.tensor([[0, 1]]), [2, 2, 2])
    with pytest.raises(ConfigError, match="must be a torch.Tensor"):
        assignment_stats([[0, 1]])
