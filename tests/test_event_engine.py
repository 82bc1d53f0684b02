"""The event engine (float): identical spikes to the torch engine with the counter-based hash noise.

References are independent computations: the torch engine (``SpikingNetwork(rng="hash")``) for the
network, the torch every-step :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` driven as
:mod:`neuroprobe.backends.torch_run` drives it for plasticity, and the torch hash functions for the
numba hash. Every model shipped is compared spike for spike (float64), plus a small network with
every population kind and feature (LIF without synaptic current, escape noise, refractory periods,
i_ext, v_leak, given spikes and currents, Poisson input, free signs; B = 3).

The numba kernels are compiled once (float64 and float32, about 15 s and 10 s of CPU on a cold cache)
and cached on disk (``cache=True``), so later runs load them in about a second.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from neuroprobe.backends.event import hashrng  # noqa: E402
from neuroprobe.backends.event.sim import DistalParams, EventSimulator  # noqa: E402
from neuroprobe.tasks.distal_reward import window_steps  # noqa: E402
from neuroprobe.errors import ConfigError, ShapeError  # noqa: E402
from neuroprobe.neurons import hash_rng  # noqa: E402
from neuroprobe.rules.rstdp import CascadeRSTDP  # noqa: E402
from neuroprobe.spec.kernel import CascadeKernel  # noqa: E402
from neuroprobe.spec.rules import RSTDPSpec  # noqa: E402
from neuroprobe.spiking import SpikingNetwork, load_spiking_spec, spec_from_dict  # noqa: E402
from neuroprobe.tasks.distal_reward import DistalReward  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
V_RTOL = 1e-12


def _lif(**kw) -> dict:
    return {"tau_mem": 20e-3, "tau_syn": 5e-3, "v_th": 1.0, "v_reset": 0.0, **kw}


# every population kind and feature of the float engines in one small network
SMALL = {
    "network": {"dt": 1e-3, "engine": "torch"},
    "population": [
        {"name": "in", "size": 30, "kind": "input"},
        {"name": "poi", "size": 20, "kind": "poisson", "rate": 40.0, "sign": "excitatory"},
        {"name": "box", "size": 25, "kind": "lif", "sign": "excitatory", "i_ext": 0.4,
         "lif": _lif(tau_syn=0.0, tau_mem=15e-3, v_leak=0.3, t_ref=3e-3, v_reset=-0.2)},
        {"name": "esc", "size": 20, "kind": "lif", "sign": "inhibitory",
         "lif": _lif(noise="escape", rho0=50.0, delta_u=0.2, t_ref=2e-3, v_leak=0.1)},
        {"name": "free", "size": 15, "kind": "lif", "sign": "none", "i_ext": 0.9,
         "lif": _lif(noise="membrane", noise_std=0.5, tau_syn=0.0, tau_mem=10e-3)}],
    "projection": [
        {"pre": "in", "post": "box", "p": 0.3, "weight": 0.8, "weight_std": 0.2},
        {"pre": "poi", "post": "box", "p": 0.3, "weight": 0.5},
        {"pre": "box", "post": "esc", "p": 0.4, "weight": 0.6, "weight_std": 0.1},
        {"pre": "esc", "post": "box", "p": 0.4, "weight": 0.3},
        {"pre": "free", "post": "box", "p": 0.3, "weight": 0.0, "weight_std": 0.5},
        {"pre": "box", "post": "free", "p": 0.5, "weight": 0.4},
        {"pre": "esc", "post": "esc", "p": 0.2, "weight": 0.2},
        {"pre": "in", "post": "esc", "p": 0.2, "weight": 0.5}]}


def _net(spec, dtype=torch.float64, seed=7) -> SpikingNetwork:
    return SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=dtype, propagation="event", rng="hash",
                          noise_seed=seed)


def _torch_run(net, B, steps, inputs=None, currents=None):
    """({pop: (T, B, N) spikes}, {lif pop: (T, B, N) v}, final state) of the torch engine."""
    st = net.init_state(B)
    zs, vs = {}, {}
    with torch.no_grad():
        for k in range(steps):
            x = {n: torch.as_tensor(a[k], dtype=net.dtype) for n, a in {**(inputs or {}), **(currents or {})}.items()}
            z, st = net.step(st, x)
            for n in z:
                zs.setdefault(n, []).append(z[n].numpy().copy())
            for n in st["lif"]:
                vs.setdefault(n, []).append(st["lif"][n].v.numpy().copy())
    return {n: np.array(a) for n, a in zs.items()}, {n: np.array(a) for n, a in vs.items()}, st


def _event_run(sim, chunks, inputs=None, currents=None):
    """Run ``sim`` in the given chunk lengths: ({pop: (T, N) trial-0 spikes}, {lif: (T, N) v}, counts)."""
    pops = sim.en.names
    lif = sim.lif_pops
    z, v, counts, done = {n: [] for n in pops}, {n: [] for n in lif}, {n: 0 for n in lif}, 0
    for c in chunks:
        sl = slice(done, done + c)
        o = sim.run(c, rec_spikes=pops, rec_v=lif, inputs={n: a[sl] for n, a in (inputs or {}).items()},
                    currents={n: a[sl] for n, a in (currents or {}).items()})
        assert o["t0"] == done
        done += c
        for n in pops:
            z[n].append(o["spikes"][n])
        for n in lif:
            v[n].append(o["v"][n])
            counts[n] = counts[n] + o["counts"][n]
    return {n: np.concatenate(a) for n, a in z.items()}, {n: np.concatenate(a) for n, a in v.items()}, counts


def _assert_same(net, sim, B, steps, chunks, inputs=None, currents=None):
    zs, vs, st = _torch_run(net, B, steps, inputs, currents)
    ez, ev, counts = _event_run(sim, chunks, inputs, currents)
    total = 0
    for n in sim.en.names:
        np.testing.assert_array_equal(ez[n], zs[n][:, 0], err_msg=f"spikes of {n}")
        total += int(ez[n].sum())
    for n in sim.lif_pops:
        np.testing.assert_allclose(ev[n], vs[n][:, 0], rtol=V_RTOL, atol=1e-300, err_msg=f"v of {n}")
        np.testing.assert_array_equal(counts[n], zs[n].sum((0, 2)).astype(np.int64), err_msg=f"counts of {n}")
        off, size = sim.en.offset(n), net.pops[n].size  # every trial's final state
        np.testing.assert_allclose(sim.v[:, off:off + size], st["lif"][n].v.numpy(), rtol=V_RTOL, atol=1e-300)
        np.testing.assert_allclose(sim.i[:, off:off + size], st["lif"][n].i.numpy(), rtol=V_RTOL, atol=1e-300)
        assert int(zs[n].sum()) > 0, f"population {n} never spiked: the comparison would be empty"
    return total


def _small_io(B, steps, seed=1):
    rng = np.random.default_rng(seed)
    return ({"in": (rng.random((steps, B, 30)) < 0.05).astype(np.uint8)},
            {"esc": rng.normal(0.0, 0.3, (steps, B, 20))})


# ---------------------------------------------------------------- the hash
def test_numba_hash_equals_torch_hash():
    rng = np.random.default_rng(0)
    seeds = np.concatenate([[0, 1, 2 ** 32 - 1], rng.integers(0, 2 ** 32, 20)])
    steps = np.concatenate([[1, 2, 2 ** 31], rng.integers(1, 10 ** 7, 20)])
    idx = np.concatenate([[0, 1, 999_999], rng.integers(0, 10 ** 6, 20)])
    for s, t in zip(seeds, steps):
        ref = hash_rng.hash_uniform32(int(s), int(t), torch.as_tensor(idx)).numpy()
        got = np.array([hashrng.hash_uniform32(int(s), int(t), int(i)) for i in idx])
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal([hashrng.byte_sum(int(h)) for h in got],
                                      hash_rng.hash_byte_sum(int(s), int(t), torch.as_tensor(idx)).numpy())
        np.testing.assert_array_equal([hashrng.uniform(int(h)) for h in got],
                                      hash_rng.hash_uniform(torch.tensor([[int(s)]]), int(t),
                                                            torch.as_tensor(idx))[0].numpy())


def test_hash_noise_statistics_and_fixed_point_reexport():
    from neuroprobe.backends.fixed import lif as fixed_lif
    from neuroprobe.backends.fixed.network import NOISE_SD_BYTES

    assert fixed_lif.hash_uniform32 is hash_rng.hash_uniform32 and NOISE_SD_BYTES == hash_rng.NOISE_SD_BYTES
    c = torch.tensor(0.8 / hash_rng.NOISE_SD_BYTES, dtype=torch.float64)
    x = hash_rng.hash_membrane_noise(torch.tensor([[3], [4]]), 5, torch.arange(50_000), c)
    assert x.shape == (2, 50_000) and x.dtype == torch.float64
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 0.8) < 0.02
    u = hash_rng.hash_uniform(torch.tensor([[3]]), 5, torch.arange(50_000))
    assert float(u.min()) > 0 and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01


# ---------------------------------------------------------------- the torch engine's hash mode
def test_torch_hash_mode_ignores_the_generator_and_default_is_unchanged():
    spec = spec_from_dict(SMALL)
    B, steps = 2, 30
    inputs, currents = _small_io(B, steps)
    nets = [_net(spec) for _ in range(2)]
    runs = []
    for net, g in zip(nets, (1, 2)):
        st = net.init_state(B)
        assert st["t"] == 0
        out = []
        with torch.no_grad():
            for k in range(steps):
                z, st = net.step(st, {"in": torch.as_tensor(inputs["in"][k], dtype=torch.float64)},
                                 generator=torch.Generator().manual_seed(g))
                out.append(torch.cat(list(z.values()), 1))
        assert st["t"] == steps
        runs.append(torch.stack(out))
    assert torch.equal(runs[0], runs[1]) and runs[0].sum() > 0
    gen = SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert gen.rng == "generator" and "t" not in gen.init_state(B)
    with pytest.raises(ConfigError, match="rng"):
        SpikingNetwork(spec, rng="philox")
    with pytest.raises(ConfigError, match="noise_seed"):
        SpikingNetwork(spec, rng="hash", noise_seed=-1)


# ---------------------------------------------------------------- identical spikes, no plasticity
@pytest.mark.parametrize("model", ["snn_distal_reward", "snn_distal_reward_loihi", "snn_distal_reward_lava_float",
                                   "snn_cartpole"])
def test_shipped_models_identical_spikes(model):
    spec = load_spiking_spec(MODELS / f"{model}.toml")
    B, steps = 2, 500
    inputs = None
    if any(p.kind == "input" for p in spec.populations):
        rng = np.random.default_rng(0)
        inputs = {p.name: (rng.random((steps, B, p.size)) < 0.1).astype(np.uint8)
                  for p in spec.populations if p.kind == "input"}
    net = _net(spec)
    sim = EventSimulator(net, B)
    assert _assert_same(net, sim, B, steps, [200, 1, 299], inputs) > 0


def test_small_network_every_feature_identical_spikes_b3():
    spec = spec_from_dict(SMALL)
    B, steps = 3, 1500
    inputs, currents = _small_io(B, steps)
    net = _net(spec)
    sim = EventSimulator(net, B, currents=("esc",))
    _assert_same(net, sim, B, steps, [700, 800], inputs, currents)


def test_float32_identical_spikes():
    """float32: the same operations on the same float32 values (no transcendental function in this
    model), so the spikes and voltages are identical too."""
    spec = load_spiking_spec(MODELS / "snn_distal_reward.toml")
    net = _net(spec, torch.float32)
    sim = EventSimulator(net, 2)
    assert sim.v.dtype == np.float32
    _assert_same(net, sim, 2, 300, [300])


def test_parallel_equals_serial_and_state_resume():
    spec = spec_from_dict(SMALL)
    B, steps = 3, 400
    inputs, currents = _small_io(B, steps, seed=5)
    net = _net(spec)
    par, ser = EventSimulator(net, B, currents=("esc",)), EventSimulator(net, B, currents=("esc",), parallel=False)
    a = _event_run(par, [steps], inputs, currents)
    b = _event_run(ser, [150, 250], inputs, currents)
    for x, y in zip(a[:2], b[:2]):
        for n in x:
            np.testing.assert_array_equal(x[n], y[n])
    np.testing.assert_array_equal(par.v, ser.v)
    # resume: a fresh simulator loading the state at step 150 continues identically
    again = EventSimulator(net, B, currents=("esc",))
    _event_run(again, [150], inputs, currents)
    sd = again.state_dict()
    fresh = EventSimulator(net, B, currents=("esc",))
    fresh.load_state_dict(sd)
    assert fresh.t == 150
    tail = {n: x[150:] for n, x in inputs.items()}, {n: x[150:] for n, x in currents.items()}
    out = fresh.run(250, rec_spikes=("box", "esc"), inputs=tail[0], currents=tail[1])
    np.testing.assert_array_equal(out["spikes"]["box"], a[0]["box"][150:])
    np.testing.assert_array_equal(fresh.v, par.v)
    np.testing.assert_array_equal(fresh.rho, par.rho)


def test_recording_window_and_errors():
    spec = spec_from_dict(SMALL)
    B = 1
    inputs, _ = _small_io(B, 50)
    sim = EventSimulator(_net(spec), B, currents=("esc",))
    o = sim.run(50, record_from=30, rec_spikes=("in",), rec_v=("box",), inputs=inputs)
    assert o["t0"] == 30 and o["spikes"]["in"].shape == (20, 30) and o["v"]["box"].shape == (20, 25)
    np.testing.assert_array_equal(o["spikes"]["in"], inputs["in"][30:, 0])
    assert set(o["counts"]) == {"box", "esc", "free"} and o["counts"]["box"].shape == (B,)
    with pytest.raises(ConfigError, match="'input' population"):
        sim.run(5)
    with pytest.raises(ShapeError, match="expected"):
        sim.run(5, inputs={"in": inputs["in"][:4]})
    with pytest.raises(ConfigError, match="unknown population"):
        sim.run(5, rec_spikes=("nope",), inputs={"in": inputs["in"][:5]})
    with pytest.raises(ConfigError, match="no voltage"):
        sim.run(5, rec_v=("poi",), inputs={"in": inputs["in"][:5]})
    with pytest.raises(ConfigError, match="no plastic projection"):
        sim.weights()
    with pytest.raises(ConfigError, match="free-signed"):
        EventSimulator(_net(spec), B, rule=RSTDPSpec("free->box", CascadeKernel(1, 0.1), lr=0.1))
    with pytest.raises(ConfigError, match="unknown projection"):
        EventSimulator(_net(spec), B, rule=RSTDPSpec("in->free", CascadeKernel(1, 0.1), lr=0.1))


@pytest.mark.parametrize("window, dt, steps", [(10e-3, 1e-3, 10), (20e-3, 1e-4, 200), (7e-3, 1e-3, 7),
                                             (7.5e-3, 1e-3, 7), (0.3e-3, 1e-3, 1)])
def test_window_steps(window, dt, steps):
    """A 10 ms window at 1 ms counts lags 1 … 10 (not 9, as float32 ``lag·dt`` did); at least one."""
    assert window_steps(window, dt) == steps


# ---------------------------------------------------------------- plasticity against the torch rule
def _plastic_spec():
    """The distal-reward network at a quarter of its size (200 exc, 50 inh; same features)."""
    d = tomllib.loads((MODELS / "snn_distal_reward.toml").read_text())
    d["population"][0]["size"], d["population"][1]["size"] = 200, 50
    for pr in d["projection"]:
        pr["p"] = 0.2
    return spec_from_dict(d)


@pytest.mark.parametrize("order, dopamine", [(6, "distal"), (1, "distal"), (3, "tonic")])
def test_rstdp_equals_the_every_step_torch_rule(order, dopamine):
    spec = _plastic_spec()
    B, steps, seed, name = 2, 1500, 3, "exc->exc"
    net = _net(spec, seed=seed)
    proj = net.projection(name)
    rew = torch.randint(0, proj.n_synapses, (B,), generator=torch.Generator().manual_seed(1))
    kw = dict(window=100e-3, delay_min=0.02, delay_max=0.1, dopamine_tau=0.2, dopamine_amp=0.5)
    rule = RSTDPSpec(name, CascadeKernel(order, 0.05 if order > 1 else 0.2), lr=0.05 if dopamine == "distal" else 2.0)
    if dopamine == "distal":
        sim = EventSimulator(net, B, rule=rule, distal=DistalParams(name, proj.pre[rew], proj.post[rew], **kw))
    else:
        sim = EventSimulator(net, B, rule=rule, tonic_dopamine=0.01)
    ez, _, _ = _event_run(sim, [600, 900])
    # the torch float engine as torch_run drives it: step, protocol, rule.step, reinforce + SGD + clamp
    with torch.no_grad():
        proj.weight = torch.nn.Parameter(proj.weight.detach().expand(B, -1).clone())
    w0 = proj.weight.detach().clone()
    tr = CascadeRSTDP(proj, B, order=order, delay=rule.kernel.delay, dt=spec.dt, tau_plus=rule.tau_plus,
                      tau_minus=rule.tau_minus, a_plus=rule.a_plus, a_minus=rule.a_minus)
    prot = DistalReward(proj.pre[rew], proj.post[rew], spec.dt, rng="hash", seeds=seed + torch.arange(B),
                        hash_index=250, **kw)
    opt = torch.optim.SGD([proj.weight], lr=rule.lr)
    st = net.init_state(B)
    zs = []
    for _ in range(steps):
        with torch.no_grad():
            z, st = net.step(st)
            d = prot.step(z["exc"], z["exc"]) if dopamine == "distal" else torch.full((B,), 0.01, dtype=torch.float64)
            tr.step(z["exc"], z["exc"])
        if bool((d != 0).any()):
            tr.reinforce(d.to(torch.float64))
            opt.step()
            proj.clamp_()
        zs.append(z["exc"][0].numpy().copy())
    np.testing.assert_array_equal(ez["exc"], np.array(zs))
    wt, we = proj.weight.detach().numpy(), sim.weights()
    assert (wt != w0.numpy()).sum() > 100, "the weights hardly changed: the comparison would be empty"
    # relative 1e-12, and 1e-12 of the bound for weights that went to (near) zero
    np.testing.assert_allclose(we, wt, rtol=1e-12, atol=1e-12 * proj.spec.w_max)
    np.testing.assert_allclose(sim.eligibility(), tr.eligibility.numpy(), rtol=1e-10, atol=1e-13)
    if dopamine == "distal":
        assert prot.rewards.sum() > 0, "no reward delivered: the dopamine path would be untested"
        np.testing.assert_array_equal(sim.rewards, prot.rewards.numpy())
        np.testing.assert_array_equal(sim.coincidences, prot.coincidences.numpy())
        np.testing.assert_allclose(sim.dopamine, prot.dopamine.numpy(), rtol=1e-15)


def test_plastic_chunks_and_resume():
    """A resumed simulator continues exactly; other chunk lengths flush the lazy synapses at other
    steps, which changes only the rounding (closed-form intervals split differently)."""
    spec = _plastic_spec()
    B, name = 2, "exc->exc"
    net = _net(spec, seed=3)
    proj = net.projection(name)
    rew = torch.randint(0, proj.n_synapses, (B,), generator=torch.Generator().manual_seed(1))
    dp = DistalParams(name, proj.pre[rew], proj.post[rew], window=0.1, delay_min=0.02, delay_max=0.1)
    rule = RSTDPSpec(name, CascadeKernel(4, 0.05), lr=0.05)
    one = EventSimulator(net, B, rule=rule, distal=dp)
    one.run(1000, rec_spikes=("exc",))
    parts = EventSimulator(net, B, rule=rule, distal=dp)
    parts.run(123)
    parts.run(77)
    resumed = EventSimulator(net, B, rule=rule, distal=dp)
    resumed.load_state_dict(parts.state_dict())
    a, b = parts.run(800, rec_spikes=("exc",)), resumed.run(800, rec_spikes=("exc",))
    np.testing.assert_array_equal(a["spikes"]["exc"], b["spikes"]["exc"])
    for k in EventSimulator._STATE:
        np.testing.assert_array_equal(getattr(resumed, k), getattr(parts, k), err_msg=k)
    assert one.rewards.sum() > 0 and (one.weights() != proj.weight.detach().numpy()).sum() > 0  # it learnt
    np.testing.assert_array_equal(parts.rewards, one.rewards)
    np.testing.assert_array_equal(parts.v, one.v)  # the same spikes all along
    np.testing.assert_allclose(parts.weights(), one.weights(), rtol=1e-12, atol=1e-12 * proj.spec.w_max)
