"""Izhikevich's (2007) distal-reward protocol as his code (dastdp.m) runs it: the tonic dopamine
added to the phasic one (``task.tonic_dopamine``), the rewarded synapse's initial weight
(``task.rewarded_weight``) and R-STDP on several projections (``rule.projection`` a list).

References are independent computations:

* a float64 NumPy transcription of the every-step rule (STDP traces, cascade eligibility, the
  reward protocol, ``w ← clamp(w + lr·(tonic + d)·e)``) driven by the event engine's spikes of a
  tiny Izhikevich network, for both plastic projections;
* the torch engine's every-step :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` (one per projection)
  as :mod:`neuroprobe.backends.torch_run` drives it (identical spikes, weights to rounding), and the
  two engines' whole runs of experiments/distal_reward_izhikevich_full.toml;
* Izhikevich's own 10-ms update ``s += (0.002 + DA)·sd`` against neuroprobe's every-ms one, for the
  unit mapping of docs/izhikevich.md.

With ``tonic_dopamine = 0`` and one projection nothing changes (tests/test_event_engine.py,
tests/test_event_run.py and tests/test_event_cascade.py cover that path unchanged).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from neuroprobe.backends.event.cascade import lazy_constants  # noqa: E402
from neuroprobe.backends.event.sim import DistalParams, EventSimulator  # noqa: E402
from neuroprobe.backends.torch_run import set_rewarded_weight  # noqa: E402
from neuroprobe.config import load_experiment  # noqa: E402
from neuroprobe.errors import ConfigError  # noqa: E402
from neuroprobe.monitors import load_recordings  # noqa: E402
from neuroprobe.rules.rstdp import CascadeRSTDP  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402
from neuroprobe.spec import CascadeKernel, RSTDPSpec  # noqa: E402
from neuroprobe.spiking import SpikingNetwork, spec_from_dict  # noqa: E402
from neuroprobe.tasks.distal_loop import DistalRewardTask  # noqa: E402
from neuroprobe.tasks.distal_reward import DistalReward  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "experiments" / "distal_reward_izhikevich_full.toml"
PLASTIC = ("exc->exc", "exc->inh")
DT = 1e-3


def _izh(a: float, d: float) -> dict:
    return {"a": a, "b": 0.2, "c": -65.0, "d": d, "noise": "uniform", "noise_amp": 13.0}


# Izhikevich's network in miniature (40 regular spiking, 10 fast spiking), driven to ~15 Hz
TINY = {
    "network": {"dt": DT},
    "population": [
        {"name": "exc", "size": 40, "kind": "izhikevich", "sign": "excitatory", "i_ext": 4.0,
         "izhikevich": _izh(0.02, 8.0)},
        {"name": "inh", "size": 10, "kind": "izhikevich", "sign": "inhibitory", "i_ext": 2.0,
         "izhikevich": _izh(0.1, 2.0)}],
    "projection": [
        {"pre": "exc", "post": "exc", "out_degree": 8, "weight": 2.0, "w_min": 0.0, "w_max": 4.0},
        {"pre": "exc", "post": "inh", "out_degree": 4, "weight": 2.0, "w_min": 0.0, "w_max": 4.0},
        {"pre": "inh", "post": "exc", "out_degree": 10, "weight": 2.0}]}
# a wide window and a fixed 20 ms reward delay: rewards arrive within the 200 ms simulated
PROTOCOL = dict(window=0.1, delay_min=0.02, delay_max=0.02, dopamine_tau=0.05, dopamine_amp=0.5)
STEPS, SEED = 200, 3


def _setup(B: int, order: int, rewarded_weight: float | None = 0.0):
    """(net, projections, rewarded synapse per trial, rule specs) of the tiny network."""
    net = SpikingNetwork(spec_from_dict(TINY), torch.Generator().manual_seed(0), dtype=torch.float64,
                         propagation="event", rng="hash", noise_seed=SEED)
    projs = [net.projection(n) for n in PLASTIC]
    rew = torch.randint(0, projs[0].n_synapses, (B,), generator=torch.Generator().manual_seed(1))
    set_rewarded_weight(projs[0], rew, rewarded_weight)
    kernel = CascadeKernel(order, 0.05 if order > 1 else 0.1)
    rules = [RSTDPSpec(n, kernel, lr=0.5) for n in PLASTIC]
    return net, projs, rew, rules


def _transcription(spikes: dict, projs, w0: list, rew_pre: int, rew_post: int, kernel: CascadeKernel, lr: float,
                   tonic: float) -> tuple[list, int]:
    """Float64 NumPy loop over the steps (vectorised over synapses) of the every-step rule on trial 0's
    spikes: the reward protocol (fixed delay), per projection the STDP traces, coincidences, cascade
    and ``w ← clip(w + lr·((tonic + d)·e), lo, hi)``. Returns (weights per projection, rewards)."""
    n = kernel.order
    M, scale = np.asarray(kernel.transition(DT), dtype=np.float64), float(kernel.grid_scale(DT))
    dec_p, dec_m = math.exp(-DT / 20e-3), math.exp(-DT / 20e-3)
    win = int(round(PROTOCOL["window"] / DT))
    delay = int(round(PROTOCOL["delay_min"] / DT))
    gamma, amp = math.exp(-DT / PROTOCOL["dopamine_tau"]), PROTOCOL["dopamine_amp"]
    st = []
    for p, w in zip(projs, w0):
        pre, post = p.pre.numpy(), p.post.numpy()
        st.append({"pre": pre, "post": post, "pp": p.spec.pre, "po": p.spec.post, "w": w.copy(),
                   "x": np.zeros(p.n_pre), "y": np.zeros(p.n_post), "X": np.zeros((len(pre), n)),
                   "lo": p.spec.w_min, "hi": p.spec.w_max})
    d, last_pre, due, rewards = 0.0, -10 ** 9, {}, 0
    for k in range(spikes["exc"].shape[0]):
        z = {name: s[k].astype(np.float64) for name, s in spikes.items()}
        # the protocol (0-based step k): a post spike 1 … win steps after the last pre spike is a pairing
        lag = k - last_pre
        hit = z["exc"][rew_post] > 0 and 0 < lag <= win
        if z["exc"][rew_pre] > 0:
            last_pre = k
        if hit:
            due[k + delay] = due.get(k + delay, 0) + 1
            last_pre = -10 ** 9
        delivered = due.pop(k, 0)
        rewards += delivered
        d = d * gamma + amp * delivered
        for s in st:
            s["x"] *= dec_p
            s["y"] *= dec_m
            c = 1.0 * s["x"][s["pre"]] * z[s["po"]][s["post"]] - 1.5 * s["y"][s["post"]] * z[s["pp"]][s["pre"]]
            s["x"] += z[s["pp"]]
            s["y"] += z[s["po"]]
            s["X"] = s["X"] @ M.T
            s["X"][:, 0] += c
            e = scale * s["X"][:, n - 1]
            s["w"] = np.clip(s["w"] + lr * ((tonic + d) * e), s["lo"], s["hi"])
    return [s["w"] for s in st], rewards


@pytest.mark.parametrize("order", [1, 3])
def test_tonic_plus_phasic_on_two_projections_equals_a_numpy_transcription(order):
    """(b), (d): the event engine's weights of exc->exc and exc->inh equal the NumPy loop's under
    ``tonic + d`` (tonic and lr large enough that weights reach both bounds)."""
    B, tonic = 2, 0.05
    net, projs, rew, rules = _setup(B, order)
    pre, post = projs[0].pre[rew], projs[0].post[rew]
    sim = EventSimulator(net, B, rule=rules, tonic_dopamine=tonic,
                         distal=DistalParams("exc->exc", pre, post, **PROTOCOL))
    assert sim.plastic == PLASTIC
    w0 = [sim.weights(n)[0].copy() for n in PLASTIC]
    out = [sim.run(120, rec_spikes=("exc", "inh")), sim.run(80, rec_spikes=("exc", "inh"))]  # two chunks
    spikes = {p: np.concatenate([o["spikes"][p] for o in out]) for p in ("exc", "inh")}
    ref, rewards = _transcription(spikes, projs, w0, int(pre[0]), int(post[0]), rules[0].kernel, 0.5, tonic)
    assert rewards > 0 and sim.rewards[0] == rewards, "no reward delivered: the phasic part would be untested"
    for name, w_ref, w_start in zip(PLASTIC, ref, w0):
        w = sim.weights(name)[0]
        assert (w != w_start).sum() > 0.5 * w.size, f"{name}: the weights hardly changed"
        np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-12 * 4.0, err_msg=name)
    both = np.concatenate(ref)
    assert (both == 0.0).any() and (both == 4.0).any(), "no weight reached a bound: the clamp would be untested"
    # the tonic part matters: without it the transcription differs
    ref0, _ = _transcription(spikes, projs, w0, int(pre[0]), int(post[0]), rules[0].kernel, 0.5, 0.0)
    assert np.abs(ref0[1] - ref[1]).max() > 1e-3


@pytest.mark.parametrize("order", [1, 6])
def test_event_equals_torch_rules_with_the_new_options(order):
    """Event engine against the torch engine's every-step rules (two projections, tonic + phasic,
    the rewarded synapse at 0; B = 2): identical spikes, weights to float64 rounding."""
    B, tonic = 2, 0.05
    net, projs, rew, rules = _setup(B, order)
    pre, post = projs[0].pre[rew], projs[0].post[rew]
    sim = EventSimulator(net, B, rule=rules, tonic_dopamine=tonic,
                         distal=DistalParams("exc->exc", pre, post, **PROTOCOL))
    ez = [sim.run(c, rec_spikes=("exc",))["spikes"]["exc"] for c in (90, 110)]
    # the torch engine as torch_run drives it: step, protocol (+ tonic), every rule's step, reinforce, SGD, clamp
    tr = []
    for p in projs:
        with torch.no_grad():
            if p.weight.dim() == 1:
                p.weight = torch.nn.Parameter(p.weight.detach().expand(B, -1).clone())
        tr.append(CascadeRSTDP(p, B, order=order, delay=rules[0].kernel.delay, dt=DT))
    prot = DistalReward(pre, post, DT, rng="hash", seeds=SEED + torch.arange(B), hash_index=50, **PROTOCOL)
    task = DistalRewardTask(prot, "exc", "exc", STEPS, tonic=tonic)
    opt = torch.optim.SGD([p.weight for p in projs], lr=0.5)
    st = net.init_state(B)
    zs = []
    for _ in range(STEPS):
        with torch.no_grad():
            z, st = net.step(st)
            _, d, *_ = task.step(z)
            for rule, p in zip(tr, projs):
                rule.step(z[p.spec.pre], z[p.spec.post])
        for rule in tr:
            rule.reinforce(d.to(torch.float64))
        opt.step()
        for p in projs:
            p.clamp_()
        zs.append(z["exc"][0].numpy().copy())
    np.testing.assert_array_equal(np.concatenate(ez), np.array(zs))
    assert prot.rewards.sum() > 0
    np.testing.assert_array_equal(sim.rewards, prot.rewards.numpy())
    for name, p in zip(PLASTIC, projs):
        np.testing.assert_allclose(sim.weights(name), p.weight.detach().numpy(), rtol=1e-12, atol=1e-12 * 4.0,
                                   err_msg=name)
        np.testing.assert_allclose(sim.eligibility(name), tr[PLASTIC.index(name)].eligibility.numpy(), rtol=1e-10,
                                   atol=1e-13)


def test_resume_with_two_projections_and_tonic_dopamine():
    """A simulator loading another's state mid-run continues exactly (both blocks, the tonic
    dopamine); the torch learner's checkpoint holds every projection's rule state."""
    from neuroprobe.backends.torch_run import RSTDPLearner

    B = 2
    net, projs, rew, rules = _setup(B, 6)
    dp = DistalParams("exc->exc", projs[0].pre[rew], projs[0].post[rew], **PROTOCOL)
    a, b = (EventSimulator(net, B, rule=rules, distal=dp, tonic_dopamine=0.05) for _ in range(2))
    a.run(70)
    b.load_state_dict(a.state_dict())
    a.run(130)
    b.run(130)
    for k in EventSimulator._STATE:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert a.W.shape == (B, sum(p.n_synapses for p in projs))
    rs = [CascadeRSTDP(p, B, order=2, delay=0.05, dt=DT) for p in projs]
    for r in rs:
        r.x_pre.uniform_()
    learner = RSTDPLearner(rs[0], "exc", "exc", [(rs[1], "exc", "inh")])
    sd = learner.state_dict()
    assert set(sd) == {"x_pre", "y_post", "trace", "eligibility", "extra"}
    fresh = [CascadeRSTDP(p, B, order=2, delay=0.05, dt=DT) for p in projs]
    RSTDPLearner(fresh[0], "exc", "exc", [(fresh[1], "exc", "inh")]).load_state_dict(sd)
    for r, f in zip(rs, fresh):
        assert torch.equal(r.x_pre, f.x_pre)
    assert set(RSTDPLearner(rs[0], "exc", "exc").state_dict()) == {"x_pre", "y_post", "trace", "eligibility"}


def test_rewarded_synapse_starts_at_the_given_weight():
    """(c): each trial's rewarded synapse holds ``rewarded_weight``; every other weight is the draw."""
    B = 3
    net, projs, rew, rules = _setup(B, 1, rewarded_weight=0.75)
    drawn = SpikingNetwork(spec_from_dict(TINY), torch.Generator().manual_seed(0), dtype=torch.float64,
                           propagation="event", rng="hash", noise_seed=SEED).projection("exc->exc").weight.detach()
    sim = EventSimulator(net, B, rule=rules)
    w = sim.weights("exc->exc")
    expect = drawn.numpy()[None].repeat(B, 0)
    expect[np.arange(B), rew.numpy()] = 0.75
    np.testing.assert_array_equal(w, expect)
    np.testing.assert_array_equal(sim.weights("exc->inh"), projs[1].weight.detach().numpy()[None].repeat(B, 0))


def test_full_config_event_and_torch_runs_agree(tmp_path):
    """experiments/distal_reward_izhikevich_full.toml on both engines (float64, hash noise, 0.3 s,
    2 trials): the same rows to float64 rounding; the rewarded synapse recorded at 0 first; the
    tonic dopamine moves the other weights although no reward is delivered."""
    common = ["run.progress=false", "task.duration=0.3", "task.report_every=0.1", "run.record_last=0.05", "seeds=2",
              "run.dtype=float64", "run.rng=hash"]
    ev = run_experiment(FULL, overrides=common + ["run.backend=event"], out=tmp_path / "event", figures=False)
    to = run_experiment(FULL, overrides=common + ["run.backend=torch", "run.propagation=event"], out=tmp_path / "torch",
                        figures=False)
    rows = [list(csv.DictReader(open(d / "metrics.csv", newline=""))) for d in (ev, to)]
    assert len(rows[0]) == len(rows[1]) == 6
    for x, y in zip(*rows):
        for k in ("time", "seed", "rewards", "coincidences", "rate_exc", "rate_inh"):
            assert x[k] == y[k], (k, x, y)
        for k in ("w_rewarded", "w_mean", "w_p99", "rank"):
            assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-12, abs=1e-15), (k, x, y)
        assert float(x["w_rewarded"]) == 0.0 and float(x["rank"]) == 0.0
        assert float(x["w_mean"]) != 1.0  # the tonic dopamine changed the weights (all start at 1)
    for d in (ev, to):
        rec = load_recordings(d / "recordings.npz")
        assert rec["weight/exc->exc"][0, 0] == 0.0  # the highlighted (rewarded) synapse, first sample


def _bad(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_experiment(FULL, overrides)
    msg = str(e.value)
    assert "\n" not in msg and words in msg, msg


@pytest.mark.parametrize("overrides, words", [
    (["task.tonic_dopamine=-0.002"], "tonic_dopamine"),
    (['rule.projection=["exc->exc", "exc->nope"]'], "exc->nope"),
    (['rule.projection=["exc->exc", "exc->exc"]'], "twice"),
    (['rule.projection=["exc->inh"]'], "task.projection"),
    (["task.rewarded_weight=4.5"], "rewarded_weight"),
    (["task.rewarded_weight=-1"], "rewarded_weight"),
    (["run.precision=fixed"], "run.precision = 'fixed'"),
    (["run.backend=brian2"], "run.backend = 'brian2'"),
])
def test_bad_values_are_one_line(overrides, words):
    """(e): one-line ConfigErrors naming the key; engines without the options refuse them."""
    _bad(overrides, words)


def test_bad_values_of_the_python_api():
    net, projs, rew, rules = _setup(1, 1)
    dp = DistalParams("exc->exc", projs[0].pre[rew], projs[0].post[rew], **PROTOCOL)
    cases = [
        (lambda: EventSimulator(net, 1, rule=rules, distal=dp, tonic_dopamine=-0.1), "tonic_dopamine"),
        (lambda: EventSimulator(net, 1, rule=[rules[1]], distal=dp), "not plastic"),
        (lambda: EventSimulator(net, 1, rule=[rules[0], RSTDPSpec("exc->inh", CascadeKernel(2, 0.1), lr=0.5)]),
         "kernels differ"),
        (lambda: EventSimulator(net, 1, rule=[rules[0], rules[0]]), "at most once"),
        (lambda: EventSimulator(net, 1, rule=[rules[0], RSTDPSpec("exc->nope", CascadeKernel(1, 0.1), lr=0.5)]),
         "unknown projection"),
        (lambda: lazy_constants(CascadeKernel(1, 1.0), DT, 0.99, 0.01, 0.0, 4.0, tonic=-1e-3), "tonic"),
        (lambda: DistalRewardTask(DistalReward(rew, rew, DT), "exc", "exc", 10, tonic=float("nan")), "tonic"),
    ]
    for make, words in cases:
        with pytest.raises(ConfigError) as e:
            make()
        assert "\n" not in str(e.value) and words in str(e.value), str(e.value)
    sim = EventSimulator(net, 1, rule=rules)
    with pytest.raises(ConfigError, match="not plastic here"):
        sim.weights("inh->exc")


def test_izhikevich_units_tonic_0002_is_his_0002():
    """docs/izhikevich.md's mapping: his sd jumps by 0.1 per pairing, decays ×0.99 and
    ``s += (0.002 + DA)·sd`` every 10 ms; ours e jumps by 1, decays with τ = 1 s and
    ``w += 0.01·(tonic + d)·e`` every ms. One pairing's total weight change agrees for the tonic
    part to 0.1 % with tonic = 0.002, and for a reward 1.5 s later to 5 % (his DA is sampled at
    the end of each 10-ms block, ours every ms: ~2.5 % less)."""
    T = 10_000

    def his(reward_at, tonic):
        sd, s, da = 0.1, 0.0, 0.0
        for t in range(1, T + 1):
            da *= 0.995
            if t % 10 == 0:
                s += (tonic + da) * sd
                sd *= 0.99
            if t == reward_at:
                da += 0.5
        return s

    def ours(reward_at, tonic):
        beta = float(CascadeKernel(1, 1.0).transition(DT)[0, 0])
        x, w, d, g = 0.0, 0.0, 0.0, math.exp(-DT / 0.2)
        for t in range(1, T + 1):
            d = d * g + (0.5 if t == reward_at else 0.0)
            x = beta * x + (1.0 if t == 1 else 0.0)
            w += 0.01 * (tonic + d) * x
        return w

    assert ours(None, 0.002) == pytest.approx(his(None, 0.002), rel=1e-3)
    assert ours(1500, 0.0) == pytest.approx(his(1500, 0.0), rel=0.05)
