"""Brian2 export: the same network, spikes and cascade-trace R-STDP as the torch engine, step for step."""
import dataclasses
import logging
import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("brian2")

from neuroprobe.backends.brian2 import run_brian2, save_recordings, to_brian2  # noqa: E402
from neuroprobe.errors import ConfigError  # noqa: E402
from neuroprobe.neurons.lif import LIFParameters  # noqa: E402
from neuroprobe.spiking.network import SpikingNetwork  # noqa: E402
from neuroprobe.spiking.spec import PopulationSpec, ProjectionSpec, SpikingSpec  # noqa: E402

DT, T = 1e-4, 2000
PLASTIC = "exc->exc"


@pytest.fixture(autouse=True, scope="module")
def _quiet_brian2():
    """Brian2 logs every generated code object at DEBUG level; pytest's log capture formats each
    record, which makes a run many times slower. Keep Brian2's logger at WARNING here."""
    logger = logging.getLogger("brian2")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def make_spec(engine: str = "torch") -> SpikingSpec:
    cuba = LIFParameters(tau_mem=10e-3, tau_syn=5e-3, dt=DT)
    box = LIFParameters(tau_mem=10e-3, tau_syn=0.0, dt=DT)                      # LIF without synaptic current
    refr = LIFParameters(tau_mem=10e-3, tau_syn=5e-3, t_ref=2e-3, dt=DT)        # 20 refractory steps
    box_refr = LIFParameters(tau_mem=10e-3, tau_syn=0.0, t_ref=1e-3, v_reset=-0.2, v_leak=0.1, dt=DT)
    pops = (PopulationSpec("inp", 20, "input"),
            PopulationSpec("exc", 50, "lif", lif=cuba, sign="excitatory"),
            PopulationSpec("inh", 30, "lif", lif=cuba, sign="inhibitory"),
            PopulationSpec("box", 20, "lif", lif=box, sign="excitatory"),
            PopulationSpec("refr", 20, "lif", lif=refr, i_ext=0.01),
            PopulationSpec("boxr", 15, "lif", lif=box_refr))
    projs = (ProjectionSpec("inp", "exc", p=0.5, weight=0.6, weight_std=0.1),
             ProjectionSpec("exc", "exc", p=0.1, weight=0.2, weight_std=0.05, w_max=0.4),
             ProjectionSpec("exc", "inh", p=0.2, weight=0.3),
             ProjectionSpec("inh", "exc", p=0.2, weight=0.2),
             ProjectionSpec("inp", "box", p=0.5, weight=5.0, weight_std=1.0),
             ProjectionSpec("box", "box", p=0.2, weight=3.0),
             ProjectionSpec("inp", "refr", p=0.5, weight=1.0),
             ProjectionSpec("exc", "refr", p=0.2, weight=0.3),
             ProjectionSpec("inp", "boxr", p=0.5, weight=8.0))
    return SpikingSpec(pops, projs, dt=DT, engine=engine)


def input_spikes(steps: int = T, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, 20)) < 0.03).astype(np.uint8)


def torch_run(spec, x, plasticity=None, dopamine=None, seed=0):
    """The torch engine (float64) with optional cascade R-STDP; returns spikes, v, eligibility, weights."""
    net = SpikingNetwork(spec, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                         propagation="dense")  # same sums as "event", faster here
    w0 = {p.name: p.weight.detach().clone() for p in net.projections}
    rule = proj = None
    if plasticity is not None:
        from neuroprobe.rules.rstdp import CascadeRSTDP

        proj = net.projection(plasticity["projection"])
        kw = {k: plasticity[k] for k in ("order", "delay", "tau_plus", "tau_minus", "a_plus", "a_minus", "normalize")}
        rule = CascadeRSTDP(proj, batch=1, dt=spec.dt, **kw)
    X = torch.as_tensor(x, dtype=torch.float64)
    out = {"spikes": {n: [] for n in net.pops}, "v": {n: [] for n, p in net.pops.items() if p.kind == "lif"},
           "i": {n: [] for n, p in net.pops.items() if p.kind == "lif"}, "e": [], "w": []}
    state = net.init_state(1)
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = net.step(state, {"inp": X[t:t + 1]})
            for n in net.pops:
                out["spikes"][n].append(z[n][0].numpy().copy())
            for n in out["v"]:
                out["v"][n].append(state["lif"][n].v[0].numpy().copy())
                out["i"][n].append(state["lif"][n].i[0].numpy().copy())
            if rule is not None:
                e = rule.step(z[proj.spec.pre], z[proj.spec.post])
                rule.reinforce(torch.tensor([float(dopamine[t])], dtype=torch.float64))
                proj.weight.sub_(plasticity["lr"] * proj.weight.grad)  # SGD: w <- w + lr d e
                proj.clamp_()
                out["e"].append(e[0].numpy().copy())
                out["w"].append(proj.weight.detach().numpy().copy())
    res = {k: {n: np.array(v) for n, v in d.items()} for k, d in out.items() if isinstance(d, dict)}
    res["e"], res["w"] = np.array(out["e"]), np.array(out["w"])
    return res, net, w0


def spike_steps(z: np.ndarray, j: int) -> np.ndarray:
    return np.nonzero(z[:, j])[0]


def compare_spikes(zt: np.ndarray, zb: np.ndarray) -> int:
    """Equal counts per neuron; returns the largest spike-time difference (steps)."""
    assert zt.shape == zb.shape
    np.testing.assert_array_equal(zt.sum(0), zb.sum(0))
    worst = 0
    for j in range(zt.shape[1]):
        a, b = spike_steps(zt, j), spike_steps(zb, j)
        if a.size:
            worst = max(worst, int(np.abs(a - b).max()))
    return worst


@pytest.fixture(scope="module")
def lif_runs():
    spec = make_spec("torch")
    x = input_spikes()
    ref, net, _ = torch_run(spec, x)
    mons = [f"v/{n}" for n in ("exc", "inh", "box", "refr", "boxr")] + ["i/exc", "i/box", "i/refr", "rho/refr"]
    rec = run_brian2(net, input_spikes={"inp": x}, monitors=mons, float_dtype=np.float64)
    return spec, x, ref, net, rec


def test_lif_network_matches_torch_engine(lif_runs):
    spec, x, ref, net, rec = lif_runs
    lif_pops = ("exc", "inh", "box", "refr", "boxr")
    for n in lif_pops:
        assert ref["spikes"][n].sum() > 20 * spec.population(n).size, f"{n} fires too little for a useful test"
    np.testing.assert_array_equal(rec["spikes/inp"], x)
    for n in lif_pops:
        zb = rec[f"spikes/{n}"]
        assert zb.dtype == np.uint8 and zb.shape == (T, spec.population(n).size)
        assert compare_spikes(ref["spikes"][n], zb) <= 1
        # identical spikes here, so the voltages and currents agree to rounding
        np.testing.assert_array_equal(ref["spikes"][n], zb)
        np.testing.assert_allclose(rec[f"v/{n}"], ref["v"][n], rtol=0, atol=1e-9)
        if f"i/{n}" in rec:
            np.testing.assert_allclose(rec[f"i/{n}"], ref["i"][n], rtol=0, atol=1e-9)
    # refractoriness (norse counter): no spike within t_ref after a spike, and the same counter
    R = spec.population("refr").lif.refractory_steps
    for j in range(20):
        s = spike_steps(rec["spikes/refr"], j)
        assert (np.diff(s) > R).all()
    rho = rec["rho/refr"]
    assert rho.max() == R and rec["time/rho/refr"][1] == pytest.approx(DT)


def test_norse_engine_agrees_too(lif_runs):
    spec, x, ref, net, rec = lif_runs
    pytest.importorskip("norse")
    steps = 600  # norse's cells are slower on tiny tensors; the first half of the same run
    ref_n, _, _ = torch_run(make_spec("norse"), x[:steps])
    for n in ("exc", "inh", "box", "refr", "boxr"):
        assert compare_spikes(ref_n["spikes"][n], rec[f"spikes/{n}"][:steps]) <= 1
        np.testing.assert_allclose(rec[f"v/{n}"][:steps], ref_n["v"][n], rtol=0, atol=1e-9)


def test_recordings_layout_and_save(lif_runs, tmp_path):
    _, _, _, _, rec = lif_runs
    assert rec["meta/dt"] == DT
    assert rec["indices/v/exc"].tolist() == list(range(50))
    np.testing.assert_allclose(rec["time/spikes/exc"], np.arange(T) * DT)
    path = save_recordings({k: v for k, v in rec.items() if k.startswith(("spikes/", "meta/dt"))}, tmp_path)
    with np.load(path) as f:
        np.testing.assert_array_equal(f["spikes/exc"], rec["spikes/exc"])


def rstdp(order, normalize="peak"):
    return {"projection": PLASTIC, "order": order, "delay": 2e-3, "normalize": normalize, "tau_plus": 3e-3,
            "tau_minus": 4e-3, "a_plus": 1.0, "a_minus": 1.2, "lr": 0.05}


@pytest.mark.parametrize("order,normalize", [(1, "peak"), (2, "area"), (6, "peak")])
def test_cascade_eligibility_matches_torch(lif_runs, order, normalize):
    """Without dopamine the weights stay put, so the network reproduces the fixture's spikes; the
    torch reference steps CascadeRSTDP on those spikes."""
    from neuroprobe.rules.rstdp import CascadeRSTDP

    spec, x, ref, net, _ = lif_runs
    steps = 600
    pl = rstdp(order, normalize)
    rec = run_brian2(net, plasticity=pl, input_spikes={"inp": x[:steps]}, float_dtype=np.float64)
    z = ref["spikes"]["exc"][:steps]
    np.testing.assert_array_equal(rec["spikes/exc"], z)
    proj = net.projection(PLASTIC)
    rule = CascadeRSTDP(proj, batch=1, dt=DT, **{k: pl[k] for k in ("order", "delay", "tau_plus", "tau_minus",
                                                                       "a_plus", "a_minus", "normalize")})
    zt = torch.as_tensor(z, dtype=torch.float64)
    e_t = np.stack([rule.step(zt[t:t + 1], zt[t:t + 1])[0].numpy() for t in range(steps)])
    e_b = rec[f"eligibility/{PLASTIC}"]
    assert e_b.shape == e_t.shape == (steps, proj.n_synapses)
    assert np.abs(e_t).max() > 0.1
    err = np.abs(e_b - e_t).max() / np.abs(e_t).max()
    assert err < 1e-6, err
    np.testing.assert_array_equal(rec[f"weight/{PLASTIC}"], np.broadcast_to(proj.weight.detach().numpy(), e_b.shape))


def test_plastic_run_with_dopamine_matches_torch():
    steps = 800
    spec, x = make_spec("torch"), input_spikes(steps, seed=1)
    pl = rstdp(2)
    d = np.sin(np.arange(steps) * 2 * math.pi / 400.0)  # positive and negative dopamine
    ref, net, w0 = torch_run(spec, x, pl, dopamine=d)
    # the torch run changed net's weights: start Brian2 from the initial ones
    rec = run_brian2(net, weights=w0, plasticity=pl, input_spikes={"inp": x}, dopamine=d, float_dtype=np.float64,
                     monitors=[("weight", PLASTIC, [0, 1, 2])])
    assert np.abs(ref["w"][-1] - w0[PLASTIC].numpy()).max() > 0.05  # the weights did move
    for n in ("exc", "inh", "refr"):
        assert compare_spikes(ref["spikes"][n], rec[f"spikes/{n}"]) <= 1
    np.testing.assert_array_equal(rec[f"indices/weight/{PLASTIC}"], [0, 1, 2])
    np.testing.assert_allclose(rec[f"weight/{PLASTIC}"], ref["w"][:, :3], rtol=0, atol=1e-9)
    np.testing.assert_allclose(rec[f"eligibility/{PLASTIC}"], ref["e"], rtol=0, atol=1e-9 * np.abs(ref["e"]).max())
    assert ref["w"].max() <= 0.4 + 1e-12 and ref["w"].min() >= 0.0  # bounds bind: clipping is exercised


def test_bad_target_and_plasticity_keys():
    spec, x = make_spec("torch"), input_spikes(10)
    cases = [dict(target="gpu"), dict(plasticity={**rstdp(2), "tau": 1.0}),
             dict(plasticity={k: v for k, v in rstdp(2).items() if k != "lr"}),
             dict(plasticity={**rstdp(2), "projection": "inh->inh"}), dict(plasticity={**rstdp(2), "order": 0}),
             dict(monitors=["eligibility/exc->inh"]), dict(monitors=["u/exc"])]
    for kw in cases:
        with pytest.raises(ConfigError) as ei:
            to_brian2(spec, input_spikes={"inp": x}, **kw)
        assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="'input' population"):
        to_brian2(spec)


def test_cython_target_without_a_compiler_is_a_config_error(monkeypatch):
    from brian2.codegen.runtime.cython_rt import CythonCodeObject

    monkeypatch.setattr(CythonCodeObject, "is_available", classmethod(lambda cls: False))
    with pytest.raises(ConfigError, match="target 'cython'") as ei:
        to_brian2(make_spec("torch"), input_spikes={"inp": input_spikes(10)}, target="cython")
    assert "\n" not in str(ei.value)


def test_missing_brian2_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "brian2", None)  # import brian2 -> ImportError
    with pytest.raises(ConfigError, match="pip install brian2") as ei:
        to_brian2(make_spec("torch"), input_spikes={"inp": input_spikes(10)})
    assert "\n" not in str(ei.value)


def test_noise_models_build_and_run():
    noisy = dataclasses.replace(LIFParameters(tau_mem=10e-3, tau_syn=5e-3, dt=DT, t_ref=1e-3), noise="membrane",
                                noise_std=0.05)
    escape = LIFParameters(tau_mem=10e-3, tau_syn=0.0, dt=DT, noise="escape", rho0=200.0, delta_u=0.2, t_ref=1e-3)
    spec = SpikingSpec((PopulationSpec("a", 10, "lif", lif=noisy, i_ext=0.02),
                        PopulationSpec("b", 10, "lif", lif=escape, i_ext=0.9),
                        PopulationSpec("p", 10, "poisson", rate=100.0)),
                       (ProjectionSpec("p", "a", p=0.5, weight=0.5),), dt=DT)
    rec = run_brian2(spec, steps=500, monitors=["v/a"])
    for n in ("a", "b"):
        z = rec[f"spikes/{n}"]
        assert z.sum() > 0
        for j in range(10):
            assert (np.diff(spike_steps(z, j)) > 10).all()
