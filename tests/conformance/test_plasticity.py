"""Engine conformance, the plasticity update: cascade R-STDP on a small case (3 pre neurons, 2 post
neurons, 6 synapses, given pre and post spikes over 320 steps, a given dopamine signal at 4
steps; an order-3 kernel peaking at 50 ms)
changes the weights by what an independent float64 reference (a numpy loop over the spikes with the
kernel's closed form) computes: to 1e-9 (relative to the largest change) on the float engines, and
within the stated quantisation bound (:func:`_fixed_bound`) on the fixed-point engines (torch-fixed
and Lava, which also agree with each other bit for bit).

Each engine is driven with its own code: torch: :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` and
SGD; event: the lazy closed-form cascade of :mod:`neuroprobe.backends.event.cascade` (explicit steps
at the coincidences only); torch-fixed: :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP`; brian2 and Lava:
the network, whose post neurons spike one step after a "drive" input population does (given
spikes), through the Brian2 export and a Lava job.
"""
import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln

from neuroprobe.spec import CascadeKernel, RSTDPSpec

from .conftest import FLOAT_ENGINES

DT, T = 1e-3, 320
RULE = RSTDPSpec(projection="pre->post", kernel=CascadeKernel(3, 0.05, "peak"), lr=0.02, tau_plus=20e-3,
                 tau_minus=20e-3, a_plus=1.0, a_minus=1.5)
# spike steps: pre→post pairs at lags 1, 2, 3 and post→pre pairs at lag 1, groups ~120 steps apart
# (6 trace time constants: the 7-bit traces' truncation, which grows with the lag, stays small)
PRE = {0: (5, 125), 1: (9,), 2: (120, 241)}
POST = {0: (6, 128, 240), 1: (8, 122)}
DOPAMINE = {55: 1.0, 62: -1.0, 175: 2.0, 290: 1.0}
W0, W_MAX, SCALE_W = 1.0, 2.55, 0.01  # initial weight, bound, fixed-point weight per mantissa unit


def _spikes(table: dict, n: int) -> np.ndarray:
    z = np.zeros((T, n))
    for i, steps in table.items():
        z[list(steps), i] = 1
    return z


Z_PRE, Z_POST = _spikes(PRE, 3), _spikes(POST, 2)
D = np.array([DOPAMINE.get(t, 0.0) for t in range(T)])


def _network():
    from neuroprobe.spiking import SpikingNetwork, spec_from_dict

    spec = spec_from_dict({
        "network": {"dt": DT},
        "population": [{"name": "pre", "size": 3, "kind": "input"}, {"name": "drive", "size": 2, "kind": "input"},
                       {"name": "post", "size": 2, "kind": "lif",
                        "lif": {"tau_mem": 20e-3, "tau_syn": 0.0, "v_th": 1.0, "v_reset": 0.0}}],
        "projection": [{"pre": "pre", "post": "post", "p": 1.0, "weight": W0, "w_max": W_MAX},
                       {"pre": "drive", "post": "post", "p": 1.0, "weight": 1000.0}]})
    return SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=torch.float64)


def _synapses() -> tuple[np.ndarray, np.ndarray]:
    p = _network().projection("pre->post")
    return p.pre.numpy(), p.post.numpy()


# ------------------------------------------------------------------------------- reference
def _kernel(k: np.ndarray) -> np.ndarray:
    """Peak-normalised cascade kernel at lags k (steps): (k/D)^(n−1) e^(−(n−1)(k−D)/D)."""
    n, Dk = RULE.kernel.order, RULE.kernel.delay / DT
    k = np.asarray(k, dtype=np.float64)
    return np.where(k > 0, (k / Dk) ** (n - 1) * np.exp(-(n - 1) * (k - Dk) / Dk), 0.0)


def _events() -> list[list[tuple[int, float]]]:
    """Per synapse the STDP coincidences (step, c): traces decayed, c from the traces before this
    step's spikes, then the spikes added (a float64 numpy loop)."""
    pre, post = _synapses()
    x, y = np.zeros(3), np.zeros(2)
    out = [[] for _ in pre]
    for t in range(T):
        x *= math.exp(-DT / RULE.tau_plus)
        y *= math.exp(-DT / RULE.tau_minus)
        for s, (i, j) in enumerate(zip(pre, post)):
            c = RULE.a_plus * x[i] * Z_POST[t, j] - RULE.a_minus * y[j] * Z_PRE[t, i]
            if c:
                out[s].append((t, c))
        x += Z_PRE[t]
        y += Z_POST[t]
    return out


def _reference() -> np.ndarray:
    """Δw per synapse: lr · Σ_t d(t) · Σ_events c · h(t − t_event)."""
    dw = []
    for ev in _events():
        e = np.array([sum(c * _kernel(t - tc) for tc, c in ev if tc <= t) for t in range(T)])
        dw.append(RULE.lr * float(np.dot(D, e)))
    return np.array(dw)


def _fixed_bound(prm) -> np.ndarray:
    """|Δw_fixed − Δw_reference| per synapse is at most lr·Σ_t |d(t)|·Σ_events [|c|·ε_h(k) +
    δc·(h(k) + ε_h(k))] + 2**−7·|Δw| + n_d·LSB, with k = t − t_event and

    * ε_h(k): the integer engine's forward-Euler chain (rate r/2**r_shift, closed form
      C(k, n−1) r^(n−1) (1−r)^(k−n+1), peak-normalised) against the float kernel, plus 1e-4 for
      its integer rounding (tests/test_kernels.py bounds it far lower);
    * δc: the 7-bit STDP traces (impulse 64): the 12-bit decay against e^(−dt/τ) and the
      truncation deficit (``trace_error`` below), times a± (a± = 1, 1.5 are exact in sixteenths);
    * 2**−7: the learning-rate mantissa (>= 128, rounded to nearest: relative error <= 2**−8) and
      the integer peak P of the normalisation;
    * LSB: the weight accumulator's unit, 2**−8·scale_w, floored at each of the n_d dopamine steps.
    """
    n = RULE.kernel.order
    rate = prm.r / 2 ** prm.r_shift
    k = np.arange(4 * T, dtype=np.float64)
    m = np.maximum(k - n + 2, 1.0)
    chain = np.where(k >= n - 1, np.exp(gammaln(k + 1) - gammaln(n) - gammaln(m) + (n - 1) * math.log(rate)
                                        + (k - n + 1) * math.log1p(-rate)), 0.0)
    chain /= chain.max()
    eps_h = np.abs(chain - _kernel(k)) + 1e-4

    def trace_error(z: np.ndarray, dx: int, tau: float) -> np.ndarray:
        """(T, n) bound on |x_int/64 − x| at the coincidences of each step (after the decay): the
        12-bit decay f = 1 − dx/4096 against e^(−dt/τ), plus the truncation deficit δ (units),
        δ_t <= min(f·δ_{t−1} + 1, 64·x_f(t)) (each truncation loses less than a unit; the trace
        is never negative)."""
        f, g = (4096 - dx) / 4096, math.exp(-DT / tau)
        xu, xf, deficit = np.zeros(z.shape[1]), np.zeros(z.shape[1]), np.zeros(z.shape[1])
        out = np.zeros(z.shape)
        for t in range(T):
            xu, xf = xu * f, xf * g
            deficit = np.minimum(deficit * f + 1, 64 * xu)
            out[t] = deficit / 64 + np.abs(xu - xf)
            xu, xf = xu + z[t], xf + z[t]
        return out

    err_x, err_y = trace_error(Z_PRE, prm.dx, RULE.tau_plus), trace_error(Z_POST, prm.dy, RULE.tau_minus)
    pre, post = _synapses()
    bound = []
    for s, ev in enumerate(_events()):
        total = 0.0
        for tc, c in ev:
            i, j = pre[s], post[s]
            dc = RULE.a_plus * err_x[tc, i] * Z_POST[tc, j] + RULE.a_minus * err_y[tc, j] * Z_PRE[tc, i]
            for t in range(tc, T):
                total += abs(D[t]) * (abs(c) * eps_h[t - tc] + dc * (_kernel(t - tc) + eps_h[t - tc]))
        bound.append(RULE.lr * total)
    lsb = 2.0 ** -8 * SCALE_W
    return np.array(bound) + 2 ** -7 * np.abs(_reference()) + len(DOPAMINE) * lsb


# ------------------------------------------------------------------------------- engines
def _torch() -> np.ndarray:
    from neuroprobe.rules.rstdp import CascadeRSTDP

    proj = _network().projection("pre->post")
    rule = CascadeRSTDP.from_spec(proj, 1, RULE, DT)
    opt = torch.optim.SGD([proj.weight], lr=RULE.lr)
    w0 = proj.weight.detach().clone()
    for t in range(T):
        rule.step(torch.from_numpy(Z_PRE[t:t + 1]), torch.from_numpy(Z_POST[t:t + 1]))
        if D[t]:
            rule.reinforce(float(D[t]))
            opt.step()
    return (proj.weight.detach() - w0).numpy()


def _event() -> np.ndarray:
    """The event engine's lazy cascade (neuroprobe.backends.event.cascade): each synapse takes an
    explicit step only at its coincidences (and is advanced in closed form in between, through the
    dopamine impulses given as pieces of a constant dopamine, γ = 1); everything flushed at the end."""
    from neuroprobe.backends.event.cascade import explicit_step, flush_all, lazy_constants

    pre, post = _synapses()
    S, n = len(pre), RULE.kernel.order
    kf, tab = lazy_constants(RULE.kernel, DT, 1.0, RULE.lr, 0.0, W_MAX)
    steps = sorted(DOPAMINE)  # impulses: the value at step t (1-based t + 1), 0 from the next step on
    pt = np.array([[u for t in steps for u in (t + 1, t + 2)]], dtype=np.int64)
    pv = np.array([[v for t in steps for v in (DOPAMINE[t], 0.0)]])
    pn = np.array([pt.shape[1]], dtype=np.int64)
    X, Tl, W = np.zeros((1, S, n)), np.zeros((1, S), dtype=np.int64), np.full((1, S), W0)
    x, y = np.zeros(3), np.zeros(2)
    for t in range(T):  # the STDP traces per neuron, as the engine keeps them
        x *= math.exp(-DT / RULE.tau_plus)
        y *= math.exp(-DT / RULE.tau_minus)
        for s, (i, j) in enumerate(zip(pre, post)):
            if Z_POST[t, j] or Z_PRE[t, i]:
                c = RULE.a_plus * x[i] * Z_POST[t, j] - RULE.a_minus * y[j] * Z_PRE[t, i]
                explicit_step(X, Tl, W, 0, s, t + 1, c, D[t], pt, pv, pn, kf, tab)
        x += Z_PRE[t]
        y += Z_POST[t]
    flush_all(X, Tl, W, T, pt, pv, pn, kf, tab)
    return W[0] - W0


def _drive() -> np.ndarray:
    """Drive spikes one step before the post spikes (the post neurons fire one step after them)."""
    z = np.zeros((T, 2))
    z[:-1] = Z_POST[1:]
    assert not Z_POST[0].any()
    return z


def _brian2() -> np.ndarray:
    from neuroprobe.backends.brian2 import run_brian2

    one = np.arange(2)
    rec = run_brian2(_network(), weights={"drive->post": (one, one, np.full(2, 1000.0))},
                     plasticity=RULE.plasticity(), input_spikes={"pre": Z_PRE, "drive": _drive()}, dopamine=D,
                     float_dtype=np.float64)
    np.testing.assert_array_equal(rec["spikes/post"], Z_POST)  # the given post spikes
    return rec["weight/pre->post"][-1] - W0


def _fixed_rule():
    from neuroprobe.backends.fixed.network import FixedProjection
    from neuroprobe.backends.fixed.rstdp import FixedCascadeRSTDP, fixed_rstdp_params

    pre, post = _synapses()
    proj = FixedProjection(name="pre->post", pre_pop="pre", post_pop="post", n_pre=3, n_post=2,
                           pre=torch.from_numpy(pre), post=torch.from_numpy(post),
                           w_mant=torch.full((len(pre),), round(W0 / SCALE_W), dtype=torch.int64), weight_exp=0,
                           scale_w=SCALE_W)
    k = RULE.kernel
    prm = fixed_rstdp_params(proj, DT, k.order, k.delay, RULE.tau_plus, RULE.tau_minus, RULE.a_plus, RULE.a_minus,
                             RULE.lr, 0.0, W_MAX, 1.0, 1.0)
    return proj, prm, FixedCascadeRSTDP(proj, 1, prm)


def _w_acc_to_float(w_acc: np.ndarray, prm) -> np.ndarray:
    return w_acc.astype(np.float64) / 2 ** prm.frac_bits * SCALE_W


def _torch_fixed() -> tuple[np.ndarray, np.ndarray]:
    _, prm, rule = _fixed_rule()
    w0 = rule.w_acc[0].numpy().copy()
    for t in range(T):
        rule.step(torch.from_numpy(Z_PRE[t:t + 1]).bool(), torch.from_numpy(Z_POST[t:t + 1]).bool(), int(D[t]))
    w = rule.w_acc[0].numpy()
    return _w_acc_to_float(w - w0, prm), w


def _lava() -> tuple[np.ndarray, np.ndarray]:
    from neuroprobe.backends.lava import run_job

    proj, prm, rule = _fixed_rule()
    w0 = rule.w_acc[0].numpy().copy()
    arrays = {"in/pre": Z_PRE.T.astype(np.int32), "in/drive": _drive().T.astype(np.int32),
              "w/drive": np.diag([255, 255]).astype(np.int32), "pre": proj.pre.numpy(), "post": proj.post.numpy(),
              "w0": w0, "dopamine": D.astype(np.int64)}
    # post: u and v reset every step (du = dv = 4095), spike when the step's input exceeds vth = 1000:
    # the drive's 255 << 3 does, the plastic synapses' mantissas (<= 3·255) do not
    job = {"precision": "fixed", "steps": T, "noise_seed": 0, "record": {"spikes": ["post"]}, "dopamine": "dopamine",
           "report_every": None,
           "populations": [{"name": "pre", "size": 3, "kind": "input", "data": "in/pre"},
                           {"name": "drive", "size": 2, "kind": "input", "data": "in/drive"},
                           {"name": "post", "size": 2, "kind": "lif", "du": 4095, "dv": 4095, "vth": 1000,
                            "bias_mant": 0, "bias_exp": 0, "noise": None}],
           "projections": [{"name": "drive->post", "pre": "drive", "post": "post", "weights": "w/drive",
                            "weight_exp": 3, "plastic": None},
                           {"name": "pre->post", "pre": "pre", "post": "post", "n_pre": 3, "n_post": 2,
                            "weight_exp": 0, "plastic": {"pre_idx": "pre", "post_idx": "post", "w_acc": "w0",
                                                         "params": {a: int(b) for a, b in prm.as_dict().items()}}}]}
    out = run_job(job, arrays, timeout=300)
    np.testing.assert_array_equal(out["spikes/post"], Z_POST)  # the given post spikes
    w = out["w_acc/pre->post"]
    return _w_acc_to_float(w - w0, prm), w


def test_one_rstdp_update_equals_the_float64_reference(engine):
    ref = _reference()
    assert np.count_nonzero(np.abs(ref) > 1e-3) >= 4  # several synapses change, both signs
    assert (ref > 0).any() and (ref < 0).any()
    assert np.all(np.abs(ref) < W_MAX - W0) and np.all(W0 + ref > 0)  # no bound is reached
    if engine in FLOAT_ENGINES:
        got = {"torch": _torch, "event": _event, "brian2": _brian2}[engine]()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
        return
    got, w_int = {"torch-fixed": _torch_fixed, "lava": _lava}[engine]()
    _, prm, _ = _fixed_rule()
    bound = _fixed_bound(prm)
    assert np.all(np.abs(got - ref) <= bound), (got, ref, bound)
    assert np.all(bound <= 0.15 * np.abs(ref).max()), bound  # the bound says something
    if engine == "lava":
        np.testing.assert_array_equal(w_int, _torch_fixed()[1])  # bit-identical to the torch twin


def test_rule_spec_round_trip_and_errors():
    from neuroprobe.errors import ConfigError
    from neuroprobe.spec import SpikingNRLSpec, rule_from_dict

    assert RSTDPSpec.from_dict(RULE.to_dict()) == RULE and rule_from_dict(RULE.to_dict()) == RULE
    old = {"name": "rstdp", "lr": 0.02, "projection": "pre->post", "order": 3, "delay": 0.05, "normalize": "peak",
           "tau_plus": 20e-3, "tau_minus": 20e-3, "a_plus": 1.0, "a_minus": 1.5}
    assert RSTDPSpec.from_dict(old) == RULE
    nrl = SpikingNRLSpec(lr=0.01, projections=["obs->out"])
    assert rule_from_dict(nrl.to_dict()) == nrl and nrl.projections == ("obs->out",)
    assert rule_from_dict({"name": "spiking_nrl", "lr": 0.1}) == SpikingNRLSpec(lr=0.1)
    for bad in ({"name": "rstdp", "lr": 0.1}, {"name": "rstdp", "projection": "a->b", "lr": -1},
                {"name": "rstdp", "projection": "a->b", "lr": 0.1, "order": 0},
                {"name": "rstdp", "projection": "a->b", "lr": 0.1, "tau_plus": 0},
                {"name": "rstdp", "projection": "a->b", "lr": 0.1, "bogus": 1},
                {"type": "rstdp", "projection": "a->b", "lr": 0.1, "kernel": "x"},
                {"name": "nrl", "lr": 0.1}, {"type": "spiking_nrl", "lr": 0.1, "rpe_scale": "max"}, "rstdp"):
        with pytest.raises(ConfigError) as ei:
            rule_from_dict(bad)
        assert "\n" not in str(ei.value)


def test_rpe_scales_match_the_modulator():
    from neuroprobe.modulators.rpe import SCALES
    from neuroprobe.spec.rules import RPE_SCALES

    assert tuple(RPE_SCALES) == tuple(SCALES)
