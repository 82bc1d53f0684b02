"""Lazy cascade eligibility (neuroprobe.backends.event.cascade) against the every-step rule.

The reference below is the every-step float64 rule written out in NumPy, independent of the closed
forms: per step ``x ← M x + e_0 c``, ``e = scale·x[n−1]``, ``w ← clip(w + lr·(e·d))`` where
``d != 0``, with ``M = CascadeKernel.transition(dt)`` and ``scale = grid_scale(dt)`` (the torch
trace's own step, checked in test_reference_is_the_torch_trace) and the dopamine decayed step by
step as the protocol does.

Tolerance: ``|lazy − ref| <= 1e-12·scale + 1e-290`` where ``scale`` is the magnitude of what was
summed: ``Xabs`` (the state propagated from ``|x0|`` with ``|c|`` inputs, ``>= |x|``) for states,
``|w0| + Σ_t |lr·d_t|·scale·Xabs_t[n−1]`` for weights. A sum of signed terms cannot be computed
(by either side) to better than ``ulp × Σ|terms|``; where nothing cancels, ``scale = |value|`` and
this is the plain relative error. The 1e-290 floor covers values that decayed to the subnormal
range (below ~1e-292 a double holds fewer than 12 significant digits of such products).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroprobe.backends.event import cascade as lc
from neuroprobe.errors import ConfigError
from neuroprobe.spec.kernel import CascadeKernel

DT = 1e-3
PHASIC = math.exp(-DT / 0.2)  # dopamine decay per step, tau_d = 0.2 s
RTOL = 1e-12
FLOOR = 1e-290
LO, HI = -0.5, 1.0


@functools.lru_cache(maxsize=None)
def consts(order: int, delay: float, gamma: float, lr: float, lmax: int = 1024):
    k = CascadeKernel(order, delay)
    kf, tab = lc.lazy_constants(k, DT, gamma, lr, LO, HI, lmax=lmax)
    return k.transition(DT), k.grid_scale(DT), kf, tab


def dopamine(pt, pv, pn, steps, gamma):
    """(steps + 1, B) dopamine per step, decayed step by step as the protocol does."""
    B = pt.shape[0]
    d = np.zeros((steps + 1, B))
    for b in range(B):
        starts = dict(zip(pt[b, :pn[b]].tolist(), pv[b, :pn[b]].tolist()))
        v = 0.0
        for t in range(1, steps + 1):
            v = starts[t] if t in starts else v * gamma
            d[t, b] = v
    return d


def reference(M, scale, lr, X0, W0, steps, dop, inputs=None, snaps=()):
    """Every-step rule for N = B·S synapses (trial-major). X0 (N, n), W0 (N,), dop (steps + 1, B),
    inputs {t: (synapse index array, c array)}. Returns {t: (X, W, Xabs, Wabs, W_unclamped)} at
    the steps in snaps and at ``steps``."""
    N, n = X0.shape
    trial = np.arange(N) // (N // dop.shape[1])
    X, W, Xa, Wa, Wu = X0.copy(), W0.astype(np.float64).copy(), np.abs(X0), np.abs(W0).astype(np.float64), W0 * 1.0
    MT = np.ascontiguousarray(M.T)
    inputs = inputs or {}
    want = set(snaps) | {steps}
    out = {}
    for t in range(1, steps + 1):
        X = X @ MT
        Xa = Xa @ MT
        if t in inputs:
            idx, c = inputs[t]
            X[idx, 0] += c
            Xa[idx, 0] += np.abs(c)
        d = dop[t][trial]
        nz = d != 0
        if nz.any():
            e = X[:, n - 1] * scale
            W = np.where(nz, np.clip(W + (e * d) * lr, LO, HI), W)
            Wu = Wu + (e * d) * lr
            Wa = Wa + np.abs(lr * d * scale) * Xa[:, n - 1]
        if t % 64 == 0:  # flush what decayed below 1e-300 (subnormals stick and slow NumPy down 100×;
            tiny = Xa < 1e-300  # at most 1e-300 × the kernel's gain, far below the 1e-290 floor)
            X[tiny] = 0.0
            Xa[tiny] = 0.0
        if t in want:
            out[t] = (X.copy(), W.copy(), Xa.copy(), Wa.copy(), Wu.copy())
    return out


def check(got, ref, mag, what):
    err = np.abs(np.asarray(got, np.float64) - ref)
    worst = float(np.max(err / (RTOL * mag + FLOOR)))
    assert worst <= 1.0, f"{what}: error {worst:.3g} × tolerance (max |err|/scale = {np.max(err / (mag + FLOOR)):.3g})"


def random_pieces(rng, B, steps, max_pieces, first_after=1, early=False):
    """Up to max_pieces dopamine pieces per trial (trial 0: exactly max_pieces), mixed signs;
    ``early``: the first within 20 steps of ``first_after`` (while short kernels still respond)."""
    P = max(max_pieces, 1)
    pt = np.zeros((B, P), np.int64)
    pv = np.zeros((B, P))
    pn = np.zeros(B, np.int64)
    for b in range(B):
        k = int(rng.integers(0, max_pieces + 1)) if b else max_pieces  # trial 0 always has all pieces
        starts = np.sort(rng.choice(np.arange(first_after, steps + 1), size=k, replace=False))
        if early and k:
            starts[0] = min(starts[0], first_after + int(rng.integers(0, 20)))
        pt[b, :k] = starts
        pv[b, :k] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(0.2, 2.0, size=k)
        pn[b] = k
    return pt, pv, pn


def random_state(rng, B, S, n):
    """Mixed-sign states spanning four decades; weights at the bounds and inside."""
    X0 = rng.normal(size=(B, S, n)) * 10.0 ** rng.uniform(-2, 1, size=(B, S, 1))
    W0 = rng.uniform(LO, HI, size=(B, S))
    W0[:, 0::3] = HI
    W0[:, 1::3] = LO
    return X0, W0


# ------------------------------------------------------------------ the reference is the engine's rule


def test_reference_is_the_torch_trace():
    """The reference's M and scale are CascadeTrace's (the torch rule's eligibility) step for step."""
    import torch

    from neuroprobe.traces.cascade import CascadeTrace

    k = CascadeKernel(6, 0.05)
    M, scale = k.transition(DT), k.grid_scale(DT)
    tr = CascadeTrace(6, k.delay_steps(DT), (1, 4), normalize="peak", dtype=torch.float64)
    rng = np.random.default_rng(0)
    x = np.zeros((4, 6))
    for _ in range(60):
        u = rng.normal(size=4) * (rng.random(4) < 0.3)
        out = tr.step(torch.from_numpy(u[None]))
        x = x @ M.T
        x[:, 0] += u
        np.testing.assert_allclose(out[0].numpy(), scale * x[:, 5], rtol=1e-13, atol=1e-300)


def test_tables_are_the_definitions():
    """Rows of ``tab`` against matrix powers and direct sums (c = 1 … 40, and c = 2·lmax)."""
    order, delay = 6, 0.05
    M, scale, kf, tab = consts(order, delay, PHASIC, 1.0, lmax=16)
    col = lc.tab_columns(order)
    E = M[0, 0]
    for c in list(range(1, 17)) + [32, 64]:
        r = c - 1 if c <= 16 else 16 - 1 + int(math.log2(c // 16))
        Mc = np.linalg.matrix_power(M, c)
        np.testing.assert_allclose(tab[r, col["A"]], Mc[:, 0], rtol=1e-13)
        j = np.arange(1, c + 1)
        G = [math.fsum(PHASIC ** (jj - 1) * E ** jj * jj ** m / math.factorial(m) for jj in j) for m in range(order)]
        np.testing.assert_allclose(tab[r, col["G"]], G, rtol=1e-13)
        assert tab[r, col["gamma_c"]] == pytest.approx(PHASIC ** c, rel=1e-14)
        if c <= 16:  # γ^(lmax·c): long intervals' dopamine decay without pow
            assert tab[r, col["gamma_lc"]] == pytest.approx(PHASIC ** (16 * c), rel=1e-13)


# ------------------------------------------------------------------ one interval, every length

LENGTHS = (1, 2, 3, 7, 100, 1000, 1023, 1024, 1025, 3000, 10000, 50000)
CASES = [  # order, delay (s), gamma, lmax
    (1, 0.05, PHASIC, 1024), (1, 2.0, 1.0, 1024),
    (2, 0.2, PHASIC, 1024), (2, 2.0, 1.0, 8),
    (6, 1.0, PHASIC, 1024), (6, 0.05, 1.0, 1024),
    (10, 0.05, PHASIC, 8), (10, 2.0, 1.0, 1024),
]


@pytest.mark.parametrize("order,delay,gamma,lmax", CASES)
def test_one_interval_equals_every_step(order, delay, gamma, lmax):
    """advance_to over 1 … 50,000 steps from mixed-sign states, weights at and between the bounds,
    random dopamine pieces (the first steps before any piece): states and clamped weights."""
    rng = np.random.default_rng(order * 100 + int(gamma == 1.0) + lmax)
    B, S, steps = 3, 24, max(LENGTHS)
    lr = (0.04 if gamma == 1.0 else 0.01) / delay  # weight paths of O(1) … O(100): bounds are hit
    M, scale, kf, tab = consts(order, delay, gamma, lr, lmax)
    X0, W0 = random_state(rng, B, S, order)
    pt, pv, pn = random_pieces(rng, B, 2000, 6, first_after=2, early=True)
    dop = dopamine(pt, pv, pn, steps, gamma)
    ref = reference(M, scale, lr, X0.reshape(B * S, order), W0.reshape(-1), steps, dop, snaps=LENGTHS)
    clamped = 0
    for L in LENGTHS:
        X, W, T = X0.copy(), W0.copy(), np.zeros((B, S), np.int64)
        lc.flush_all(X, T, W, L, pt, pv, pn, kf, tab)
        Xr, Wr, Xa, Wa, Wu = ref[L]
        check(X.reshape(B * S, order), Xr, Xa, f"x after {L} steps")
        check(W.reshape(-1), Wr, Wa, f"w after {L} steps")
        assert np.all(T == L)
        clamped += int(np.sum(np.abs(Wr - np.clip(Wu, LO, HI)) > 1e-6))
    assert clamped > 0  # per-step clamping differed from one clamp at the end somewhere: it was tested


def test_sign_splitting_is_exercised_and_exact():
    """States whose eligibility changes sign, weights at the bounds, strong tonic dopamine: chunks
    need splitting into runs of one sign; the result is still the every-step one."""
    order, steps = 6, 3000
    M, scale, kf, tab = consts(order, 0.05, 1.0, 0.05)
    rng = np.random.default_rng(7)
    B, S = 2, 40
    X0 = np.zeros((B, S, order))
    X0[..., 3] = rng.uniform(0.5, 2.0, size=(B, S)) * 1000  # an early strong bump (clamped) …
    X0[..., 0] = -rng.uniform(0.1, 0.4, size=(B, S))  # … then a late weak one of the other sign
    W0 = np.where(rng.random((B, S)) < 0.5, LO, HI)
    pt = np.array([[1], [1]], np.int64)
    pv = np.array([[1.0], [-1.0]])
    pn = np.array([1, 1], np.int64)
    dop = dopamine(pt, pv, pn, steps, 1.0)
    ref = reference(M, scale, 0.05, X0.reshape(B * S, order), W0.reshape(-1), steps, dop)[steps]
    X, W, T = X0.copy(), W0.copy(), np.zeros((B, S), np.int64)
    nref = sum(lc._advance(X, T, W, b, s, steps, pt, pv, pn, kf, tab) for b in range(B) for s in range(S))
    assert nref > 0
    check(X.reshape(-1, order), ref[0], ref[2], "x")
    check(W.reshape(-1), ref[1], ref[3], "w")
    assert np.sum(np.abs(ref[1] - np.clip(ref[4], LO, HI)) > 0.01) > 60  # one clamp at the end would be wrong


def test_flush_all_is_independent_of_threads_and_serial_order():
    """flush_all (prange over all synapses) gives the bits of the serial per-trial flush."""
    M, scale, kf, tab = consts(6, 1.0, PHASIC, 0.2)
    rng = np.random.default_rng(3)
    X0, W0 = random_state(rng, 3, 50, 6)
    pt, pv, pn = random_pieces(rng, 3, 5000, 5)
    T0 = rng.integers(0, 3000, size=(3, 50)).astype(np.int64)
    a = (X0.copy(), T0.copy(), W0.copy())
    b = (X0.copy(), T0.copy(), W0.copy())
    lc.flush_all(*a, 6000, pt, pv, pn, kf, tab)
    for trial in range(3):
        lc.flush_trial(*b, trial, 6000, pt, pv, pn, kf, tab)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)


def test_no_dopamine_is_decay_only():
    """Without pieces the weight stays, the state is M^L x0 (also an out-of-bounds weight stays:
    the every-step rule clamps only where d != 0)."""
    M, scale, kf, tab = consts(10, 0.05, PHASIC, 0.2)
    rng = np.random.default_rng(5)
    X0 = rng.normal(size=(1, 5, 10))
    W0 = np.array([[LO, HI, 0.3, 2.0, -3.0]])
    X, W, T = X0.copy(), W0.copy(), np.zeros((1, 5), np.int64)
    pt, pv, pn = np.zeros((1, 1), np.int64), np.zeros((1, 1)), np.zeros(1, np.int64)
    lc.flush_all(X, T, W, 700, pt, pv, pn, kf, tab)
    assert np.array_equal(W, W0)
    ref = reference(M, scale, 0.2, X0[0], W0[0], 700, np.zeros((701, 1)))[700]
    check(X[0], ref[0], ref[2], "x")


def test_out_of_bounds_weight_is_clamped_at_the_first_dopamine_step():
    """A weight outside [lo, hi] (never produced by the rule, but possible from outside) follows the
    per-step semantics: clamped at the first step with d != 0, then integrated."""
    M, scale, kf, tab = consts(2, 0.2, PHASIC, 0.01)
    X0 = np.array([[[0.3, -0.2], [0.0, 0.0], [1.0, 1.0]]])
    W0 = np.array([[2.0, -3.0, -0.9]])
    pt, pv, pn = np.array([[40]], np.int64), np.array([[1.0]]), np.array([1], np.int64)
    dop = dopamine(pt, pv, pn, 900, PHASIC)
    ref = reference(M, scale, 0.01, X0[0], W0[0], 900, dop)[900]
    X, W, T = X0.copy(), W0.copy(), np.zeros((1, 3), np.int64)
    lc.flush_all(X, T, W, 900, pt, pv, pn, kf, tab)
    check(W[0], ref[1], ref[3], "w")
    assert W[0, 1] == LO


# ------------------------------------------------------------------ a long scenario, touched lazily


@pytest.mark.parametrize("order,gamma", [(6, PHASIC), (1, 1.0), (10, PHASIC)])
def test_lazy_scenario_equals_every_step(order, gamma):
    """Random coincidences (explicit steps), random reads (advance_to) and a final flush over
    20,000 steps: every read and the end state equal the every-step run."""
    rng = np.random.default_rng(11 + order)
    B, S, steps = 2, 30, 20000
    lr = 0.05
    M, scale, kf, tab = consts(order, 0.5, gamma, lr)
    X0, W0 = random_state(rng, B, S, order)
    pt, pv, pn = random_pieces(rng, B, steps, 12)
    dop = dopamine(pt, pv, pn, steps, gamma)
    # coincidences: each synapse gets a Poisson number of events at random steps (intervals 1 … ~20,000)
    events = {}
    for i in range(B * S):
        for t in rng.choice(np.arange(1, steps + 1), size=int(rng.integers(0, 40)), replace=False):
            events.setdefault(int(t), []).append((i, float(rng.normal() * rng.choice([0.1, 1.0, 3.0]))))
    for t in (1, 2, 3):  # back-to-back steps
        events.setdefault(t, []).append((0, 0.5))
    inputs = {t: (np.array([i for i, _ in v]), np.array([c for _, c in v])) for t, v in events.items()}
    reads = {}
    for _ in range(300):
        reads.setdefault(int(rng.integers(1, steps + 1)), []).append(int(rng.integers(0, B * S)))
    ref = reference(M, scale, lr, X0.reshape(B * S, order), W0.reshape(-1), steps, dop, inputs, snaps=reads)
    X, W, T = X0.copy(), W0.copy(), np.zeros((B, S), np.int64)
    for t in sorted(set(events) | set(reads)):
        for i, c in events.get(t, ()):
            lc.explicit_step(X, T, W, i // S, i % S, t, c, dop[t, i // S], pt, pv, pn, kf, tab)
        for i in reads.get(t, ()):
            b, s = divmod(i, S)
            lc.advance_to(X, T, W, b, s, t, pt, pv, pn, kf, tab)
            Xr, Wr, Xa, Wa, _ = ref[t]
            check(X[b, s], Xr[i], Xa[i], f"x of synapse {i} read at step {t}")
            check(W[b, s], Wr[i], Wa[i], f"w of synapse {i} read at step {t}")
    lc.flush_all(X, T, W, steps, pt, pv, pn, kf, tab)
    Xr, Wr, Xa, Wa, _ = ref[steps]
    check(X.reshape(B * S, order), Xr, Xa, "x at the end")
    check(W.reshape(-1), Wr, Wa, "w at the end")


def test_float32_weights():
    """Network dtype float32: weights are integrated in float64 and stored once, equal to the
    float64 weights to float32 rounding."""
    M, scale, kf, tab = consts(6, 0.5, PHASIC, 0.05)
    rng = np.random.default_rng(2)
    X0, W0 = random_state(rng, 2, 20, 6)
    pt, pv, pn = random_pieces(rng, 2, 3000, 4)
    a = (X0.copy(), np.zeros((2, 20), np.int64), W0.copy())
    b = (X0.copy(), np.zeros((2, 20), np.int64), W0.astype(np.float32))
    for t in (500, 1500, 4000):
        lc.flush_all(*a, t, pt, pv, pn, kf, tab)
        lc.flush_all(*b, t, pt, pv, pn, kf, tab)
    assert b[2].dtype == np.float32
    np.testing.assert_allclose(b[2], a[2], rtol=0, atol=4e-7)


# ------------------------------------------------------------------ errors


def test_explicit_step_refuses_a_second_step_at_the_same_time():
    M, scale, kf, tab = consts(2, 0.2, PHASIC, 0.1)
    X, W, T = np.zeros((1, 1, 2)), np.zeros((1, 1)), np.zeros((1, 1), np.int64)
    pt, pv, pn = np.zeros((1, 1), np.int64), np.zeros((1, 1)), np.zeros(1, np.int64)
    lc.explicit_step(X, T, W, 0, 0, 5, 1.0, 0.0, pt, pv, pn, kf, tab)
    assert T[0, 0] == 5 and X[0, 0, 0] == 1.0
    with pytest.raises(ValueError, match="already at or past"):
        lc.explicit_step(X, T, W, 0, 0, 5, 1.0, 0.0, pt, pv, pn, kf, tab)


@pytest.mark.parametrize("kw,match", [
    (dict(gamma=0.0), "gamma"), (dict(gamma=1.5), "gamma"), (dict(lo=1.0, hi=0.0), "lo <= hi"),
    (dict(dt=0.0), "dt"), (dict(lmax=0), "lmax"), (dict(lr=float("nan")), "lr"),
])
def test_lazy_constants_refuses_bad_input(kw, match):
    args = dict(kernel=CascadeKernel(2, 0.2), dt=DT, gamma=PHASIC, lr=0.1, lo=0.0, hi=1.0) | kw
    with pytest.raises(ConfigError, match=match):
        lc.lazy_constants(**args)


# ------------------------------------------------------------------ property test: one synapse


@given(order=st.sampled_from([1, 2, 3, 6, 10]), delay=st.sampled_from([0.05, 0.3, 2.0]),
       tonic=st.booleans(), lmax=st.sampled_from([4, 1024]), seed=st.integers(0, 2 ** 31),
       L=st.integers(1, 3000), w_at=st.sampled_from(["lo", "hi", "in"]), npieces=st.integers(0, 4))
def test_property_one_synapse(order, delay, tonic, lmax, seed, L, w_at, npieces):
    gamma = 1.0 if tonic else PHASIC
    lr = 0.01 if tonic else 0.1
    M, scale, kf, tab = consts(order, delay, gamma, lr, lmax)
    rng = np.random.default_rng(seed)
    X0 = (rng.normal(size=order) * 10.0 ** rng.uniform(-2, 1))[None]
    W0 = np.array([{"lo": LO, "hi": HI, "in": float(rng.uniform(LO, HI))}[w_at]])
    pt, pv, pn = random_pieces(rng, 1, L, min(npieces, L))
    dop = dopamine(pt, pv, pn, L, gamma)
    ref = reference(M, scale, lr, X0, W0, L, dop)[L]
    X, W, T = X0[None].copy(), W0[None].copy(), np.zeros((1, 1), np.int64)
    lc.advance_to(X, T, W, 0, 0, L, pt, pv, pn, kf, tab)
    check(X[0], ref[0], ref[2], "x")
    check(W[0], ref[1], ref[3], "w")
