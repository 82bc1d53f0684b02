"""The event engine's order-1 R-STDP against NEST's ``stdp_dopamine_synapse`` (an independent
implementation), driven by the same pre/post spike trains and dopamine spikes.

Mapping (NEST in ms; ours in steps of dt, 1-based, an event at step t ↔ time t·dt):

* NEST: all-to-all traces ``Kplus`` (τ+) and the post neuron's ``Kminus`` (τ−); eligibility c
  jumps by ``A+·Kplus`` at a post spike and ``−A−·Kminus`` at a pre spike and decays with τ_c;
  dopamine n jumps by ``1/τ_n`` per dopamine spike and decays with τ_n; ``dw/dt = c·(n − b)``
  integrated exactly between events (b = 0 here).
* ours (neuroprobe.backends.event.cascade, the lazy rule the EventSimulator runs): the same
  coincidences (traces before the step's spikes; same-step pairs do not pair), the order-1 cascade
  ``e_t = β e_{t−1} + c_t`` with ``β = exp(−dt/τ_c)`` (``CascadeKernel(1, delay=τ_c)``), dopamine
  ``d_t = γ d_{t−1} + amp·(#dopamine spikes at t)`` with ``γ = exp(−dt/τ_n)``, ``amp = 1/τ_n``, and
  ``w ← w + lr·d_t·e_t`` with ``lr = dt`` (ms): the right-endpoint Riemann sum of NEST's integral.

Tolerance: both integrate the same products of decaying exponentials; the Riemann sum of
``c·n ∝ e^(−t/τ_s)`` (``1/τ_s = 1/τ_c + 1/τ_n``) over steps of dt exceeds the integral by a factor
``(dt/τ_s)/(1 − e^(−dt/τ_s)) = 1 + dt/(2τ_s) + O((dt/τ_s)²)`` (and the interval ends shift by at
most a step), so per synapse ``|w_ours − w_NEST| <= (dt/τ_s)·∫|c|·n`` (twice the leading term).
NEST's own numerics are exact integration in double precision (its weights equal the closed form
to ~1e-15 here: checked below, which also pins the spike-time mapping of tests/nest_helpers.py).
The error is first order in dt, so halving dt must roughly halve it (a test that fails if the two
rules differ in anything but the discretisation).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nest_helpers import closed_form_weights, nest_available, nest_dopamine_stdp  # noqa: E402  (tests/ is on sys.path)

if not nest_available():  # not imported here: NEST runs in a child process (tests/nest_helpers.py)
    pytest.skip("NEST (nest-simulator) is not installed", allow_module_level=True)
pytest.importorskip("numba")

from neuroprobe.backends.event.cascade import explicit_step, flush_all, lazy_constants  # noqa: E402
from neuroprobe.spec.kernel import CascadeKernel  # noqa: E402

# ms; A± small enough that no weight reaches a bound (NEST clips only at events, ours every step)
P = dict(w0=1.0, tau_c=100.0, tau_n=200.0, tau_plus=20.0, tau_minus=20.0, a_plus=0.05, a_minus=0.06)
END = 1000.0  # ms
GRID = 0.1  # ms: every spike time is a multiple of it (a step boundary at dt = 0.1 and 0.05)


@pytest.fixture(scope="module")
def trains():
    """8 pre and 6 post Poisson trains (~20 Hz) and 10 dopamine spikes, on a 0.1 ms grid in (1, END − 50) ms."""
    rng = np.random.default_rng(12)

    def poisson(rate_hz: float) -> np.ndarray:
        k = rng.poisson(rate_hz * (END - 51) / 1000)
        return np.unique(np.round(rng.uniform(1.0, END - 50, k) / GRID)) * GRID

    pre = [poisson(20.0) for _ in range(8)]
    post = [poisson(20.0) for _ in range(6)]
    dopamine = np.unique(np.round(rng.uniform(1.0, END - 50, 10) / GRID)) * GRID
    return pre, post, dopamine


def event_weights(pre: list, post: list, dopamine: np.ndarray, dt: float) -> np.ndarray:
    """The event engine's lazy order-1 rule on the given trains (times in ms, step dt in ms):
    one explicit step per synapse at each of its pre/post spikes, then a flush to END."""
    step = lambda t: int(round(t / dt))  # noqa: E731  time (ms) -> 1-based step
    gamma = math.exp(-dt / P["tau_n"])
    kf, tab = lazy_constants(CascadeKernel(1, P["tau_c"] * 1e-3), dt * 1e-3, gamma, dt, 0.0, 1e6)
    # dopamine pieces: a new piece at every step with dopamine spikes, d = γ·d + amp·count
    steps, counts = np.unique([step(t) for t in dopamine], return_counts=True)
    pt = steps.astype(np.int64)[None, :]
    pv = np.zeros((1, steps.size))
    d, last = 0.0, 0
    for k, (t, m) in enumerate(zip(steps, counts)):
        d = d * gamma ** (t - last) + m / P["tau_n"]
        pv[0, k], last = d, t
    pn = np.array([steps.size], dtype=np.int64)

    def dopamine_at(t: int) -> float:
        k = np.searchsorted(steps, t, side="right") - 1
        return 0.0 if k < 0 else pv[0, k] * gamma ** (t - steps[k])

    n_pre, n_post = len(pre), len(post)
    S = n_pre * n_post
    X, T = np.zeros((1, S, 1)), np.zeros((1, S), dtype=np.int64)
    W = np.full((1, S), P["w0"])
    pre_s = [np.array([step(t) for t in p]) for p in pre]
    post_s = [np.array([step(t) for t in q]) for q in post]
    dec_plus, dec_minus = math.exp(-dt / P["tau_plus"]), math.exp(-dt / P["tau_minus"])
    for t in np.unique(np.concatenate(pre_s + post_s)):
        d_t = dopamine_at(t)
        for i in range(n_pre):
            for j in range(n_post):
                fired_pre, fired_post = t in pre_s[i], t in post_s[j]
                if not (fired_pre or fired_post):
                    continue
                # traces before this step's spikes: Σ over earlier spikes of decay^(lag in steps)
                x = sum(dec_plus ** (t - tp) for tp in pre_s[i] if tp < t)
                y = sum(dec_minus ** (t - tq) for tq in post_s[j] if tq < t)
                c = P["a_plus"] * x * fired_post - P["a_minus"] * y * fired_pre
                explicit_step(X, T, W, 0, i * n_post + j, int(t), c, d_t, pt, pv, pn, kf, tab)
    flush_all(X, T, W, step(END), pt, pv, pn, kf, tab)
    return W[0].reshape(n_pre, n_post)


@pytest.fixture(scope="module")
def nest_w(trains):
    pre, post, dopamine = trains
    return {res: nest_dopamine_stdp(pre, post, dopamine, END, res, **P) for res in (0.1, 0.05)}


def test_nest_equals_the_closed_form(trains, nest_w):
    """NEST integrates exactly: its weights equal the continuous-time closed form (this also checks
    that tests/nest_helpers.py puts every spike where the closed form expects it), at both resolutions."""
    pre, post, dopamine = trains
    exact = closed_form_weights(pre, post, dopamine, END, **P)
    assert np.abs(exact - P["w0"]).max() > 0.02  # the trains really change the weights
    for res, w in nest_w.items():
        np.testing.assert_allclose(w, exact, rtol=0, atol=1e-12, err_msg=f"resolution {res} ms")


def test_event_rule_agrees_with_nest_within_the_discretisation(trains, nest_w):
    """At dt = 0.1 ms the event engine's weights equal NEST's within (dt/τ_s)·∫|c|·n per synapse,
    and the disagreement shrinks about linearly with dt (0.1 → 0.05 ms)."""
    pre, post, dopamine = trains
    size = closed_form_weights(pre, post, dopamine, END, absolute=True, **P)  # ∫|c|·n per synapse
    rate_s = 1.0 / P["tau_c"] + 1.0 / P["tau_n"]
    err = {}
    for dt in (0.1, 0.05):
        w = event_weights(pre, post, dopamine, dt)
        diff = np.abs(w - nest_w[dt])
        bound = dt * rate_s * size
        assert (diff <= bound).all(), f"dt {dt} ms: worst excess {np.max(diff - bound):.3g}"
        err[dt] = diff.max()
    assert err[0.1] > 0  # a discretisation error exists (the two are not the same code)
    assert err[0.05] < 0.6 * err[0.1], f"error {err[0.1]:.3g} → {err[0.05]:.3g} when halving dt"


# ------------------------------------------------------------------ the whole engine, tonic dopamine
TONIC = 0.004  # dopamine (1/ms): NEST's baseline b = −TONIC with no dopamine spikes, ours tonic_dopamine


def simulator_weights(pre: list, post: list, dt: float) -> np.ndarray:
    """The EventSimulator (coincidences, lazy order-1 rule, tonic dopamine all in its compiled
    chunk): an "input" population replays ``pre``; a LIF population (no synaptic current, 20 ms,
    threshold 1) is made to spike at ``post`` by a given current of 1e4 at those steps (the plastic
    synapses' own input, ~0.005 per spike, cannot make it spike). Times in ms, dt in ms."""
    import torch

    from neuroprobe.backends.event.sim import EventSimulator
    from neuroprobe.neurons.lif import LIFParameters
    from neuroprobe.spec.rules import RSTDPSpec
    from neuroprobe.spiking.network import SpikingNetwork
    from neuroprobe.spiking.spec import PopulationSpec, ProjectionSpec, SpikingSpec

    n_pre, n_post, steps = len(pre), len(post), int(round(END / dt))
    lif = LIFParameters(tau_mem=20e-3, tau_syn=0.0, v_th=1.0, dt=dt * 1e-3)
    spec = SpikingSpec((PopulationSpec("pre", n_pre, "input", sign="excitatory"),
                        PopulationSpec("post", n_post, "lif", lif=lif)),
                       (ProjectionSpec("pre", "post", p=1.0, weight=P["w0"], w_max=1e6),), dt=dt * 1e-3)
    net = SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=torch.float64)
    rule = RSTDPSpec("pre->post", CascadeKernel(1, P["tau_c"] * 1e-3), lr=dt, tau_plus=P["tau_plus"] * 1e-3,
                     tau_minus=P["tau_minus"] * 1e-3, a_plus=P["a_plus"], a_minus=P["a_minus"])
    sim = EventSimulator(net, 1, dtype=torch.float64, rule=rule, tonic_dopamine=TONIC, currents=("post",),
                         parallel=False)
    z_pre = np.zeros((steps, 1, n_pre), dtype=np.uint8)
    drive = np.zeros((steps, 1, n_post))
    want = np.zeros((steps, n_post), dtype=np.uint8)
    for i, times in enumerate(pre):
        z_pre[np.round(np.asarray(times) / dt).astype(int) - 1, 0, i] = 1  # step t is row t − 1
    for j, times in enumerate(post):
        rows = np.round(np.asarray(times) / dt).astype(int) - 1
        drive[rows, 0, j], want[rows, j] = 1e4, 1
    out = sim.run(steps, rec_spikes=("post",), inputs={"pre": z_pre}, currents={"post": drive})
    np.testing.assert_array_equal(out["spikes"]["post"], want)  # the post neurons spiked where asked, only there
    proj = net.projection("pre->post")
    W = np.full((n_pre, n_post), np.nan)
    W[proj.pre.numpy(), proj.post.numpy()] = sim.weights()[0]
    return W


def test_event_simulator_agrees_with_nest_under_tonic_dopamine(trains):
    """The whole engine's order-1 R-STDP (STDP traces and coincidences in the compiled chunk, lazy
    cascade, tonic dopamine d) against NEST with dopamine baseline b = −d and no dopamine spikes
    (dw/dt = c·d): within (dt/τ_c)·∫|c|·d per synapse at dt = 0.1 ms, about halved at 0.05 ms."""
    pre, post, _ = trains
    kw = dict(P, b=-TONIC)
    size = closed_form_weights(pre, post, [], END, absolute=True, **kw)
    err = {}
    for dt in (0.1, 0.05):
        w_nest = nest_dopamine_stdp(pre, post, [], END, dt, **kw)
        if dt == 0.1:
            np.testing.assert_allclose(w_nest, closed_form_weights(pre, post, [], END, **kw), rtol=0, atol=1e-12)
            assert np.abs(w_nest - P["w0"]).max() > 0.02
        diff = np.abs(simulator_weights(pre, post, dt) - w_nest)
        bound = dt / P["tau_c"] * size
        assert (diff <= bound).all(), f"dt {dt} ms: worst excess {np.max(diff - bound):.3g}"
        err[dt] = diff.max()
    assert err[0.1] > 0
    assert err[0.05] < 0.6 * err[0.1], f"error {err[0.1]:.3g} → {err[0.05]:.3g} when halving dt"
