"""Monitors: what they record equals what the network computed; file layout; [monitor] config."""
import numpy as np
import pytest
import torch

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.monitors import (MonitorSet, PopulationRateMonitor, SpikeMonitor, StateMonitor, load_recordings,
                                 monitors_from_config, save_recordings)
from neuroprobe.spiking import SpikingNetwork, spec_from_dict

T, B, N_IN, N_EXC, DT = 200, 2, 12, 8, 1e-3


def _net():
    spec = spec_from_dict({
        "network": {"dt": DT, "engine": "torch"},
        "population": [{"name": "input", "size": N_IN, "kind": "input"},
                       {"name": "exc", "size": N_EXC, "kind": "lif", "sign": "excitatory",
                        "lif": {"tau_mem": 10e-3, "tau_syn": 5e-3}}],
        "projection": [{"pre": "input", "post": "exc", "p": 0.8, "weight": 0.6, "weight_std": 0.2}],
    })
    return SpikingNetwork(spec, generator=torch.Generator().manual_seed(0))


def _run(monitors, calls=None, modify_weights=False):
    """Run T steps with Bernoulli input; returns (MonitorSet, reference dict of what the net computed)."""
    net = _net()
    mon = MonitorSet(monitors, dt=DT)
    g = torch.Generator().manual_seed(1)
    state = net.init_state(B)
    proj = net.projection("input->exc")
    ref = {"z_exc": [], "z_in": [], "v": [], "w": []}

    def lookup(var, pop):
        if calls is not None:
            calls.append((var, pop))
        if var == "weight":
            return proj.weight
        return net.variable(state, pop, var)

    for t in range(T):
        x = (torch.rand(B, N_IN, generator=g) < 0.3).float()
        z, state = net.step(state, {"input": x})
        ref["z_exc"].append(z["exc"].clone())
        ref["z_in"].append(z["input"].clone())
        ref["v"].append(state["lif"]["exc"].v.clone())
        ref["w"].append(proj.weight.detach().clone())
        mon.record(t, lookup)
        if modify_weights:  # in-place plasticity after recording must not change what was recorded
            with torch.no_grad():
                proj.weight.mul_(1.01)
    return mon, {k: torch.stack(v).detach().numpy() for k, v in ref.items()}


def test_recorded_spikes_equal_network_spikes():
    mon, ref = _run([SpikeMonitor("exc"), SpikeMonitor("input", indices=[0, 3, 5], batch_index=1)])
    rec = mon.recordings()
    assert ref["z_exc"][:, 0].sum() > 5  # the network does spike
    np.testing.assert_array_equal(rec["spikes/exc"], ref["z_exc"][:, 0].astype(np.uint8))
    np.testing.assert_array_equal(rec["spikes/input"], ref["z_in"][:, 1][:, [0, 3, 5]].astype(np.uint8))
    np.testing.assert_array_equal(rec["indices/spikes/input"], [0, 3, 5])
    np.testing.assert_array_equal(rec["indices/spikes/exc"], np.arange(N_EXC))
    np.testing.assert_allclose(rec["time/spikes/exc"], np.arange(T) * DT)


def test_every_k_subsamples_and_only_calls_lookup_when_due():
    calls = []
    mon, ref = _run([StateMonitor("v", "exc", indices=[0, 1, 2], every=3, batch_index=1)], calls=calls)
    rec = mon.recordings()
    steps = np.arange(0, T, 3)
    assert rec["v/exc"].shape == (len(steps), 3) and rec["v/exc"].dtype == np.float32
    np.testing.assert_allclose(rec["time/v/exc"], steps * DT)
    np.testing.assert_array_equal(rec["v/exc"], ref["v"][steps][:, 1, :3])
    assert calls == [("v", "exc")] * len(steps)


def test_lookup_called_once_per_variable_and_step():
    calls = []
    _run([SpikeMonitor("exc"), PopulationRateMonitor("exc"), SpikeMonitor("input", indices=[1])], calls=calls)
    assert calls.count(("spikes", "exc")) == T and calls.count(("spikes", "input")) == T and len(calls) == 2 * T


def test_population_rate_is_spikes_over_n_dt():
    mon, ref = _run([PopulationRateMonitor("exc", batch_index=1), PopulationRateMonitor("input", bin_steps=7)])
    rec = mon.recordings()
    expected = ref["z_exc"][:, 1].sum(1) / N_EXC / DT
    assert rec["rate/exc"].dtype == np.float32 and rec["rate/exc"].shape == (T,)
    np.testing.assert_allclose(rec["rate/exc"], expected, rtol=1e-6)
    counts = ref["z_in"][:, 0].sum(1)
    n_bins = -(-T // 7)
    binned = [counts[b * 7:(b + 1) * 7].sum() / (N_IN * len(counts[b * 7:(b + 1) * 7]) * DT) for b in range(n_bins)]
    np.testing.assert_allclose(rec["rate/input"], binned, rtol=1e-6)
    np.testing.assert_allclose(rec["time/rate/input"], np.arange(n_bins) * 7 * DT)


def test_weights_recorded_by_index_are_copies():
    mon, ref = _run([StateMonitor("weight", "input->exc", indices=[0, 4, 7], every=10)], modify_weights=True)
    rec = mon.recordings()
    steps = np.arange(0, T, 10)
    np.testing.assert_allclose(rec["weight/input->exc"], ref["w"][steps][:, [0, 4, 7]], rtol=1e-6)
    assert not np.allclose(rec["weight/input->exc"][0], rec["weight/input->exc"][-1])  # it did change
    mon, ref = _run([StateMonitor("weight", "input->exc", every=50)], modify_weights=True)  # all synapses
    np.testing.assert_allclose(mon.recordings()["weight/input->exc"], ref["w"][::50], rtol=1e-6)


def test_save_load_round_trip(tmp_path):
    mon, _ = _run([SpikeMonitor("exc"), SpikeMonitor("input", indices=[2, 4]), PopulationRateMonitor("exc"),
                   StateMonitor("v", "exc", indices=[1, 6], every=4)])
    path = mon.save(tmp_path, meta={"highlight/input->exc": [0], "v_th/exc": 1.0})
    assert path == tmp_path / "recordings.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recordings.npz"]  # no temporary file left behind
    rec = load_recordings(path)
    data = ["spikes/exc", "spikes/input", "rate/exc", "v/exc"]
    assert set(rec) == {*data, *(f"time/{k}" for k in data), *(f"indices/{k}" for k in data), "meta/dt",
                        "meta/highlight/input->exc", "meta/v_th/exc"}
    assert rec["spikes/exc"].dtype == np.uint8 and rec["spikes/exc"].shape == (T, N_EXC)
    assert rec["spikes/input"].dtype == np.uint8 and rec["spikes/input"].shape == (T, 2)
    assert rec["v/exc"].dtype == np.float32 and rec["v/exc"].shape == (T // 4, 2)
    assert rec["rate/exc"].dtype == np.float32 and rec["rate/exc"].shape == (T,)
    assert rec["indices/v/exc"].tolist() == [1, 6] and rec["indices/v/exc"].dtype == np.int64
    assert float(rec["meta/dt"]) == DT
    for k, v in mon.recordings().items():
        np.testing.assert_array_equal(rec[k], v)


def test_empty_monitor_saves_empty_arrays(tmp_path):
    mon = MonitorSet([SpikeMonitor("exc", indices=[0, 1]), StateMonitor("v", "exc")], dt=DT)
    rec = load_recordings(mon.save(tmp_path / "r.npz"))
    assert rec["spikes/exc"].shape == (0, 2) and rec["spikes/exc"].dtype == np.uint8
    assert rec["v/exc"].shape[0] == 0 and rec["time/v/exc"].shape == (0,)


def test_load_missing_or_corrupt(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recordings(tmp_path / "nope.npz")
    bad = tmp_path / "recordings.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="not a readable recordings file") as e:
        load_recordings(tmp_path)
    assert "\n" not in str(e.value)
    save_recordings(bad, {"spikes/exc": np.zeros((2, 2), np.uint8)})
    with pytest.raises(ConfigError, match="meta/dt"):
        load_recordings(bad)


def test_bad_monitor_arguments():
    with pytest.raises(ConfigError, match="every"):
        StateMonitor("v", "exc", every=0)
    with pytest.raises(ConfigError, match="indices"):
        SpikeMonitor("exc", indices=[-1])
    with pytest.raises(ConfigError, match="indices"):
        SpikeMonitor("exc", indices=[0.5])
    with pytest.raises(ConfigError, match="SpikeMonitor"):
        StateMonitor("spikes", "exc")
    with pytest.raises(ConfigError, match="bin_steps"):
        PopulationRateMonitor("exc", bin_steps=0)
    with pytest.raises(ConfigError, match="more than once|several"):
        MonitorSet([SpikeMonitor("exc"), SpikeMonitor("exc", indices=[1])], dt=DT)
    with pytest.raises(ConfigError, match="dt"):
        MonitorSet([], dt=0)
    mon = MonitorSet([SpikeMonitor("exc", indices=[0, 99])], dt=DT)
    with pytest.raises(ConfigError, match="out of range"):
        mon.record(0, lambda var, pop: torch.zeros(1, 8))
    mon = MonitorSet([SpikeMonitor("exc", batch_index=3)], dt=DT)
    with pytest.raises(ShapeError, match="batch_index"):
        mon.record(0, lambda var, pop: torch.zeros(2, 8))


def test_monitors_from_config():
    ms = monitors_from_config({"spikes": ["exc", {"population": "inh", "indices": [0, 1]}], "rate": ["exc"],
                               "state": [{"variable": "v", "population": "exc", "indices": [0, 1, 2], "every": 2}]})
    assert [m.key for m in ms] == ["spikes/exc", "spikes/inh", "rate/exc", "v/exc"]
    assert ms[3].every == 2 and ms[1].indices.tolist() == [0, 1]
    assert monitors_from_config(None) == [] and monitors_from_config({}) == []


@pytest.mark.parametrize("table, words", [
    ({"spike": ["exc"]}, ["spike", "allowed", "spikes", "rate", "state"]),
    ({"spikes": "exc"}, ["monitor.spikes", "list"]),
    ({"state": ["v"]}, ["monitor.state[0]", "table"]),
    ({"state": [{"variable": "v", "population": "exc", "evry": 2}]}, ["evry", "allowed", "every"]),
    ({"state": [{"population": "exc"}]}, ["missing", "variable"]),
    ({"state": [{"variable": "v", "population": "exc", "every": -1}]}, ["monitor.state[0]", "every"]),
    ({"rate": [{"population": "exc", "bin_steps": 1.5}]}, ["monitor.rate[0]", "bin_steps"]),
    ({"spikes": ["exc", "exc"]}, ["spikes/exc", "more than once"]),
])
def test_bad_monitor_config(table, words):
    with pytest.raises(ConfigError) as e:
        monitors_from_config(table)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
