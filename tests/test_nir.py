"""NIR export and import (neuroprobe.io.nir): export -> import restores the spec, the connectivity
and the dynamics bitwise (with the sidecar), import without the sidecar loses only the sidecar's
fields, norse models exported by norse's to_nir run the same in neuroprobe, neuroprobe graphs run
the same in norse's from_nir, and every malformed graph is one ConfigError naming the node."""
import dataclasses
import json
import math
import warnings

import h5py
import nir
import numpy as np
import pytest
import torch

from neuroprobe.backends.norse_cells import norse_available
from neuroprobe.errors import ConfigError
from neuroprobe.io import NIRImport, export_nir, import_nir
from neuroprobe.io.nir import SIDECAR_FORMAT, sidecar_path
from neuroprobe.spec import CascadeKernel, RSTDPSpec, SpikingNRLSpec
from neuroprobe.spiking import SpikingNetwork, spec_from_dict

needs_norse = pytest.mark.skipif(not norse_available(), reason="norse is not installed")

RULE = RSTDPSpec(projection="exc->exc", kernel=CascadeKernel(6, 2.0, "peak"), lr=0.01)
RULE_TABLE = {"name": "rstdp", "lr": 0.01, "projection": "exc->exc", "order": 6, "delay": 2.0, "normalize": "peak"}


def _spec(sidecar_fields=True, engine="torch"):
    """input + CubaLIF (excitatory, refractory, i_ext, v_leak, v_reset) + LIF (inhibitory,
    refractory, membrane noise); ``sidecar_fields=False``: without refractoriness and noise."""
    t = (lambda x: x) if sidecar_fields else (lambda x: 0.0)
    return spec_from_dict({
        "network": {"dt": 1e-3, "engine": engine},
        "population": [
            {"name": "inp", "size": 8, "kind": "input"},
            {"name": "exc", "size": 12, "kind": "lif", "sign": "excitatory", "i_ext": 0.05,
             "lif": {"tau_mem": 20e-3, "tau_syn": 5e-3, "t_ref": t(2e-3), "v_leak": 0.1, "v_reset": -0.1}},
            {"name": "inh", "size": 6, "kind": "lif", "sign": "inhibitory",
             "lif": {"tau_mem": 10e-3, "tau_syn": 0.0, "t_ref": t(1e-3), "v_th": 0.8,
                     "noise": "membrane" if sidecar_fields else "none", "noise_std": t(0.2)}}],
        "projection": [
            {"pre": "inp", "post": "exc", "p": 0.6, "weight": 1.5, "weight_std": 0.5},
            {"pre": "exc", "post": "exc", "p": 0.3, "weight": 0.3, "weight_std": 0.2, "w_max": 1.0},
            {"pre": "exc", "post": "inh", "p": 0.5, "weight": 0.8},
            {"pre": "inh", "post": "exc", "p": 0.5, "weight": 0.7, "weight_std": 0.1}]})


def _network(spec):
    """Seeded network; inp -> exc gets mixed-sign weights (sign "none") with some exact zeros."""
    net = SpikingNetwork(spec, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w = net.projection("inp->exc").weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(2)) * 2 + 0.5)
        w[:3] = 0.0
    return net


def _inputs(T, B, n, seed=3, p=0.3):
    return (torch.rand(T, B, n, generator=torch.Generator().manual_seed(seed)) < p).float()


@torch.no_grad()
def _run(net, x, name="inp"):
    """Drive population ``name`` with x (T, B, n); per step (spikes, LIF states) of every
    population. Noise is drawn from a generator seeded the same for every run."""
    s = net.init_state(x.shape[1])
    g = torch.Generator().manual_seed(7)
    out = []
    for t in range(x.shape[0]):
        z, s = net.step(s, {name: x[t]}, generator=g)
        out.append((z, s["lif"]))
    return out


def _assert_same_runs(a, b):
    for t, ((za, la), (zb, lb)) in enumerate(zip(a, b)):
        for k in za:
            assert torch.equal(za[k], zb[k]), f"spikes of {k} differ at step {t}"
        for k in la:
            for f in ("v", "i", "rho"):
                assert torch.equal(getattr(la[k], f), getattr(lb[k], f)), f"{k}.{f} differs at step {t}"


def _spike_counts(run):
    return {k: sum(float(z[k].sum()) for z, _ in run) for k in run[0][0]}


def test_round_trip_restores_spec_connectivity_rule_and_dynamics(tmp_path):
    net = _network(_spec())
    path = export_nir(net, tmp_path / "net.nir", rule=RULE, extra={"seed": 1, "note": "test"})
    assert path == tmp_path / "net.nir" and path.is_file() and sidecar_path(path).is_file()
    imp = import_nir(path)
    assert isinstance(imp, NIRImport)
    assert imp.spec == net.spec  # every population and projection field, dt and engine
    assert imp.rule == RULE and imp.extra == {"seed": 1, "note": "test"}
    assert imp.outputs == ["exc", "inh"]
    assert imp.nodes["inp->exc"] == "inp->exc" and imp.nodes["exc"] == "exc"
    for a, b in zip(net.projections, imp.network.projections):  # zero-weight synapses included
        for buf in ("pre", "post", "rowptr", "by_post", "colptr", "weight"):
            assert torch.equal(getattr(a, buf), getattr(b, buf)), f"{a.name}.{buf}"
    assert (net.projection("inp->exc").weight == 0).any() and (net.projection("inp->exc").weight < 0).any()
    x = _inputs(200, 2, 8)
    ref, got = _run(net, x), _run(imp.network, x)
    counts = _spike_counts(ref)
    assert counts["exc"] > 50 and counts["inh"] > 5, counts  # the comparison has spikes to compare
    _assert_same_runs(ref, got)


def test_sidecar_layout(tmp_path):
    net = _network(_spec())
    path = export_nir(net, tmp_path / "net.nir", rule=RULE)
    assert sidecar_path(path).name == "net.nir.neuroprobe.json"
    side = json.loads(sidecar_path(path).read_text())
    assert side["format"] == SIDECAR_FORMAT and side["version"] == 2 and side["graph"] == "net.nir"
    assert side["dt"] == 1e-3 and side["engine"] == "torch" and side["time_scaling_factor"] == 1.0
    assert side["cuba_input"] == "jump" and side["synaptic_delay_steps"] == 1
    assert side["rule"] == RULE.to_dict() and side["extra"] is None
    assert side["rule"]["kernel"] == {"type": "cascade_kernel", "order": 6, "delay": 2.0, "normalize": "peak"}
    pops = {p["name"]: p for p in side["populations"]}
    assert pops["inp"]["lif"] is None and pops["inp"]["kind"] == "input"
    assert pops["exc"]["lif"] == {"v_reset": -0.1, "t_ref": 2e-3, "noise": "none", "noise_std": 0.0, "rho0": 100.0,
                                  "delta_u": 0.1}
    assert pops["exc"]["i_ext"] == 0.05 and pops["inh"]["sign"] == "inhibitory"
    assert pops["inh"]["lif"]["noise"] == "membrane" and pops["inh"]["lif"]["noise_std"] == 0.2
    projs = {p["node"]: p for p in side["projections"]}
    assert projs["exc->exc"]["w_max"] == 1.0 and projs["inp->exc"]["w_max"] is None  # inf -> null
    w = net.projection("inp->exc")
    zero = w.weight == 0
    assert projs["inp->exc"]["zero_weight_synapses"] == [[int(a), int(b)] for a, b in zip(w.pre[zero], w.post[zero])]
    # the graph itself: population nodes, signed Linear/Affine weights, outputs
    g = nir.read(path)
    assert isinstance(g.nodes["inp"], nir.Input) and isinstance(g.nodes["exc"], nir.CubaLIF)
    assert isinstance(g.nodes["inh"], nir.LIF) and isinstance(g.nodes["exc.out"], nir.Output)
    assert isinstance(g.nodes["inp->exc"], nir.Affine)  # exc's i_ext rides on its first incoming projection
    np.testing.assert_array_equal(g.nodes["inp->exc"].bias, np.full(12, 0.05))
    assert g.nodes["inh->exc"].weight.dtype == np.float32
    np.testing.assert_array_equal(g.nodes["inh->exc"].weight, net.projection("inh->exc").dense().numpy())
    assert (g.nodes["inh->exc"].weight <= 0).all()
    assert ("inp", "inp->exc") in g.edges and ("inp->exc", "exc") in g.edges and ("exc", "exc.out") in g.edges


def test_import_without_sidecar_needs_dt_and_loses_only_sidecar_fields(tmp_path):
    net = _network(_spec())
    path = export_nir(net, tmp_path / "net.nir", rule=RULE)
    with pytest.raises(ConfigError, match=r"net\.nir: dt is needed"):
        import_nir(path, sidecar=False)
    sidecar_path(path).unlink()
    imp = import_nir(path, dt=1e-3)
    assert imp.rule is None and imp.extra is None
    spec, ref = imp.spec, net.spec
    assert [p.name for p in spec.populations] == ["inp", "exc", "inh"]
    assert spec.dt == ref.dt and spec.engine is None
    for p, q in zip(spec.populations, ref.populations):
        assert (p.size, p.kind, p.sign, p.i_ext) == (q.size, q.kind, q.sign, q.i_ext)  # signs from the weights
        if p.lif is not None:  # the graph's parameters; refractoriness and noise are sidecar fields
            assert p.lif == dataclasses.replace(q.lif, t_ref=0.0, noise="none", noise_std=0.0)
    for p, q in zip(spec.projections, ref.projections):
        assert (p.pre, p.post, p.w_min, p.w_max) == (q.pre, q.post, 0.0, math.inf)
    for a, b in zip(net.projections, imp.network.projections):  # the graph's nonzero synapses, same order
        keep = a.weight != 0
        assert torch.equal(a.pre[keep], b.pre) and torch.equal(a.post[keep], b.post)
        assert torch.equal(a.weight[keep], b.weight)
    # same dynamics as the original without refractoriness and noise (its dynamic sidecar fields)
    x = _inputs(100, 2, 8)
    _assert_same_runs(_run(_network(_spec(sidecar_fields=False)), x), _run(imp.network, x))


def _norse_model(cell, bias):
    import norse.torch as norse_torch

    lin = torch.nn.Linear(5, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(4, 5, generator=torch.Generator().manual_seed(1)) * 1.5 + 0.6)
        lin.bias.fill_(bias)
    return norse_torch.SequentialState(lin, getattr(norse_torch, cell)())


@needs_norse
@pytest.mark.parametrize("cell", ["LIFCell", "LIFBoxCell"])
def test_norse_to_nir_imports_and_gives_the_same_spikes(tmp_path, cell):
    """norse 1.1.0's to_nir (Linear + LIFCell -> Affine + CubaLIF; LIFBoxCell -> LIF) with its
    dt-scaled time constants. neuroprobe delivers a projection's input one step later, so
    neuroprobe driven by x equals the norse model driven by x delayed one step (zeros first)."""
    import norse.torch as norse_torch

    model = _norse_model(cell, bias=0.25)
    graph = norse_torch.to_nir(model, torch.zeros(1, 5), dt=1e-3)
    path = tmp_path / "norse.nir"
    nir.write(path, graph, compression=None)  # norse leaves 0-dim arrays, which gzip'd datasets refuse
    with pytest.raises(ConfigError, match=r"node '1' \(.*LIF\).*time_scaling_factor=dt"):
        import_nir(path, dt=1e-3)
    imp = import_nir(path, dt=1e-3, time_scaling_factor=1e-3)
    (out,) = imp.outputs
    pop = imp.spec.population(out)
    assert pop.i_ext == 0.25 and pop.sign == "none" and imp.spec.population("input").sign == "none"
    assert (pop.lif.tau_mem, pop.lif.tau_syn) == ((0.01, 0.005) if cell == "LIFCell" else (0.01, 0.0))
    assert imp.nodes["0"] == f"input->{out}"
    x = _inputs(100, 3, 5, seed=2)
    got = _run(imp.network, x, name="input")
    xd = torch.cat([torch.zeros(1, 3, 5), x[:-1]])
    state, z_norse, v_norse = None, [], []
    with torch.no_grad():
        for t in range(100):
            z, state = model(xd[t], state)
            z_norse.append(z)
            v_norse.append(state[1].v)
    z_np = torch.stack([z[out] for z, _ in got])
    assert z_np.sum() > 20
    assert torch.equal(z_np, torch.stack(z_norse))
    v_np, v_norse = torch.stack([s[out].v for _, s in got]), torch.stack(v_norse)
    if cell == "LIFCell":
        assert torch.equal(v_np, v_norse)
    else:  # norse's dense Linear and neuroprobe's sparse sum add in another order
        torch.testing.assert_close(v_np, v_norse, rtol=0, atol=1e-6)


def _one_layer(tau_syn, i_ext):
    spec = spec_from_dict({
        "network": {"dt": 1e-3},
        "population": [{"name": "inp", "size": 6, "kind": "input"},
                       {"name": "out", "size": 5, "kind": "lif", "i_ext": i_ext,
                        "lif": {"tau_mem": 20e-3, "tau_syn": tau_syn}}],
        "projection": [{"pre": "inp", "post": "out", "p": 0.7, "weight": 0.0, "weight_std": 1.0}]})
    net = SpikingNetwork(spec, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # mixed signs
        w = net.projections[0].weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(2)) * (3.0 if tau_syn == 0 else 1.0))
    return net


@needs_norse
@pytest.mark.parametrize("tau_syn, cuba_input", [(0.0, "jump"), (5e-3, "euler")])
def test_neuroprobe_graph_runs_the_same_in_norse_from_nir(tmp_path, tau_syn, cuba_input):
    """norse's from_nir: LIF -> LIFBoxCell; CubaLIF -> a leaky-integrator synapse (input scaled by
    w_in·dt/tau_syn) + LIFBoxCell, which matches with cuba_input="euler" (and v_leak = 0)."""
    import norse.torch as norse_torch

    net = _one_layer(tau_syn, i_ext=0.4)
    path = export_nir(net, tmp_path / "one.nir", cuba_input=cuba_input)
    assert import_nir(path).spec == net.spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch.load's deprecation warning
        model = norse_torch.from_nir(nir.read(path), dt=1e-3)
    x = _inputs(100, 3, 6, seed=2)
    got = _run(net, x)
    xd = torch.cat([torch.zeros(1, 3, 6), x[:-1]])
    state, z_norse = None, []
    with torch.no_grad():
        for t in range(100):
            z, state = model(xd[t], state)
            z_norse.append(z)
    z_np = torch.stack([z["out"] for z, _ in got])
    assert z_np.sum() > 20
    assert torch.equal(z_np, torch.stack(z_norse))


def test_per_trial_weights_and_sidecar_checks(tmp_path):
    spec = _one_layer(0.0, 0.0).spec
    net = SpikingNetwork(spec, generator=torch.Generator().manual_seed(1), batch=3)
    with pytest.raises(ConfigError, match="trial=k"):
        export_nir(net, tmp_path / "b.nir")
    with torch.no_grad():
        net.projections[0].weight[2] *= 2
    path = export_nir(net, tmp_path / "b.nir", trial=2)
    assert torch.equal(import_nir(path).network.projections[0].weight, net.projections[0].weight[2])
    with pytest.raises(ConfigError, match=r"dt = 0\.001 in the sidecar but dt = 0\.002"):
        import_nir(path, dt=2e-3)
    assert import_nir(path, dt=2e-3, sidecar=False).spec.dt == 2e-3
    with pytest.raises(ConfigError, match=r"export_nir: rule name = 'x': allowed \['rstdp', 'spiking_nrl'\]"):
        export_nir(net, tmp_path / "c.nir", trial=0, rule={"name": "x", "f": object()})
    with pytest.raises(ConfigError, match=r"export_nir: kernel delay = -1\.0"):
        export_nir(net, tmp_path / "c.nir", trial=0, rule={**RULE_TABLE, "delay": -1.0})
    with pytest.raises(ConfigError, match="rule must be an RSTDPSpec"):
        export_nir(net, tmp_path / "c.nir", trial=0, rule="rstdp")
    assert not (tmp_path / "c.nir").exists()  # nothing written


# ------------------------------------------------------------------------------------ errors

def _lif(n, tau=0.02):
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n))


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _chain(**replace):
    """Input(4) -> Linear 'w' (3, 4) -> LIF 'pop' (3) -> Output."""
    nodes = {"x": nir.Input(np.array([4])), "w": nir.Linear(np.ones((3, 4), np.float32)), "pop": _lif(3),
             "pop.out": nir.Output(np.array([3]))}
    nodes.update(replace)
    return nodes, [("x", "w"), ("w", "pop"), ("pop", "pop.out")]


def test_chain_imports():
    imp = import_nir(_graph(*_chain()), dt=1e-3)
    assert imp.outputs == ["pop"] and imp.spec.population("x").sign == "excitatory"
    assert imp.network.projections[0].n_synapses == 12


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.nir: no such NIR file"):
        import_nir(tmp_path / "missing.nir")
    bad = tmp_path / "text.nir"
    bad.write_text("not hdf5")
    with pytest.raises(ConfigError, match=r"text\.nir: not a NIR file"):
        import_nir(bad, dt=1e-3)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.ones(3))
    with pytest.raises(ConfigError, match=r"other\.h5: not a NIR file .*'node'"):
        import_nir(tmp_path / "other.h5", dt=1e-3)


SUPPORTED = r"supported types: LIF, CubaLIF, Affine, Linear, Input, Output"


@pytest.mark.parametrize("node", [
    nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
    nir.Threshold(threshold=np.ones(3)),
    nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
    nir.Conv2d(input_shape=None, weight=np.ones((1, 1, 2, 2)), stride=1, padding=0, dilation=1, groups=1,
               bias=np.zeros(1)),
], ids=lambda n: type(n).__name__)
def test_unsupported_node_type(node):
    nodes, edges = _chain()
    with pytest.raises(ConfigError, match=rf"node 'spiky' has type {type(node).__name__}, .*{SUPPORTED}"):
        import_nir(_graph({**nodes, "spiky": node}, edges + [("pop", "spiky")]), dt=1e-3)


def test_unsupported_and_unknown_types_in_files(tmp_path):
    nodes, edges = _chain()
    path = tmp_path / "if.nir"
    nir.write(path, _graph({**nodes, "spiky": nir.IF(r=np.ones(3), v_threshold=np.ones(3))}, edges + [("pop", "spiky")]))
    with pytest.raises(ConfigError, match=rf"if\.nir: node 'spiky' has type IF, .*{SUPPORTED}"):
        import_nir(path, dt=1e-3)
    with h5py.File(path, "r+") as f:  # a type nir itself does not know: nir.read fails, the node is still named
        del f["node/nodes/spiky/type"]
        f["node/nodes/spiky"].create_dataset("type", data="Spiky", dtype=h5py.string_dtype())
    with pytest.raises(ConfigError, match=rf"if\.nir: node 'spiky' has type Spiky, .*{SUPPORTED}"):
        import_nir(path, dt=1e-3)


def test_edge_to_missing_node():
    nodes, edges = _chain()
    with pytest.raises(ConfigError, match=r"edge 'w' -> 'ghost' names node 'ghost', which is not in the graph"):
        import_nir(_graph(nodes, edges + [("w", "ghost")]), dt=1e-3)


def test_weight_shape_mismatch():
    with pytest.raises(ConfigError, match=r"node 'w' \(Linear\): weight shape \(3, 5\) does not fit 'x' \(4 neurons\)"):
        import_nir(_graph(*_chain(w=nir.Linear(np.ones((3, 5), np.float32)))), dt=1e-3)
    with pytest.raises(ConfigError, match=r"node 'w' \(Linear\): weight shape \(3, 4\) does not fit .*'pop' \(5 neu"):
        import_nir(_graph(*_chain(pop=_lif(5))), dt=1e-3)


def test_parameters_of_inconsistent_shapes(tmp_path):
    bad = _lif(3)
    bad.v_threshold = np.ones(4)  # NIR's constructor checks this; a node changed afterwards does not
    with pytest.raises(ConfigError, match=r"node 'pop' \(LIF\): parameters have inconsistent shapes"):
        import_nir(_graph(*_chain(pop=bad)), dt=1e-3)
    path = tmp_path / "shapes.nir"
    nir.write(path, _graph(*_chain(pop=bad)))  # nir.read then fails on its assertion: the node is named
    with pytest.raises(ConfigError, match=r"shapes\.nir: node 'pop' \(LIF\): invalid node"):
        import_nir(path, dt=1e-3)


def test_parameters_that_vary_across_neurons():
    bad = _lif(3)
    bad.tau = np.array([0.02, 0.02, 0.03])
    with pytest.raises(ConfigError, match=r"node 'pop' \(LIF\): parameter tau varies across neurons"):
        import_nir(_graph(*_chain(pop=bad)), dt=1e-3)
    nodes, edges = _chain(w=nir.Affine(np.ones((3, 4), np.float32), np.array([0.1, 0.2, 0.1])))
    with pytest.raises(ConfigError, match=r"node 'w' \(Affine\): bias varies across the neurons of 'pop'"):
        import_nir(_graph(nodes, edges), dt=1e-3)


def test_linear_must_sit_between_a_source_and_a_lif():
    lin = nir.Linear(np.ones((3, 4), np.float32))
    readout = {"x": nir.Input(np.array([4])), "w": lin, "y": nir.Output(np.array([3]))}
    with pytest.raises(ConfigError, match=r"node 'w' \(Linear\) feeds Output 'y' directly"):
        import_nir(_graph(readout, [("x", "w"), ("w", "y")]), dt=1e-3)
    nodes, edges = _chain()
    chained = {**nodes, "w2": nir.Linear(np.ones((3, 3), np.float32))}
    with pytest.raises(ConfigError, match=r"node 'w' \(Linear\) must have exactly one outgoing edge, to a LIF .*'w2'"):
        import_nir(_graph(chained, [("x", "w"), ("w", "w2"), ("w2", "pop"), ("pop", "pop.out")]), dt=1e-3)
    dangling = {**nodes, "w3": nir.Linear(np.ones((2, 3), np.float32))}
    with pytest.raises(ConfigError, match=r"node 'w3' \(Linear\) must have exactly one outgoing edge, to a LIF"):
        import_nir(_graph(dangling, edges + [("pop", "w3")]), dt=1e-3)


def test_direct_edges_and_input_scales_fold_into_the_weights():
    """A source -> LIF edge is a one-to-one projection of weight 1; r (and CubaLIF's w_in, read
    per cuba_input) scales the node's input and is folded into weights and bias, as snnTorch's
    export needs (r = tau_mem/dt, w_in = tau_syn/dt)."""
    direct = import_nir(_graph({"x": nir.Input(np.array([3])), "pop": _lif(3)}, [("x", "pop")]), dt=1e-3)
    proj = direct.network.projections[0]
    assert proj.name == "x->pop" and direct.nodes["x->pop"] == "x->pop"
    assert proj.pre.tolist() == [0, 1, 2] and proj.post.tolist() == [0, 1, 2] and proj.weight.tolist() == [1.0] * 3
    n = 3
    W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10 - 0.5
    cuba = nir.CubaLIF(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 20e-3), r=np.full(n, 20e-3 / 1e-3),
                       v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.full(n, 5e-3 / 1e-3))
    nodes = {"x": nir.Input(np.array([4])), "w": nir.Affine(W, np.full(n, 0.1)), "pop": cuba,
             "pop.out": nir.Output(np.array([n]))}
    edges = [("x", "w"), ("w", "pop"), ("pop", "pop.out")]
    for cuba_input, scale in (("euler", 20.0), ("jump", 100.0)):
        imp = import_nir(_graph(nodes, edges), dt=1e-3, cuba_input=cuba_input)
        dense = imp.network.projections[0].dense().double().numpy()
        np.testing.assert_allclose(dense, W * scale, rtol=1e-6)
        assert imp.spec.population("pop").i_ext == pytest.approx(0.1 * scale)
        assert imp.spec.population("x").sign == "none"


@pytest.mark.parametrize("edit, message", [
    (lambda n, e: (n, e + [("pop.out", "pop")]), r"Output node 'pop.out' has an outgoing edge to 'pop'"),
    (lambda n, e: (n, e + [("pop", "x")]), r"Input node 'x' has an incoming edge from 'pop'"),
    (lambda n, e: (n, e + [("w", "pop")]), r"edge 'w' -> 'pop' appears twice"),
    (lambda n, e: ({**n, "x2": nir.Input(np.array([3]))}, e + [("x2", "pop.out")]),
     r"Output node 'pop.out' has 2 incoming edges"),
    (lambda n, e: ({**n, "x2": nir.Input(np.array([2]))}, e + [("x2", "pop")]),
     r"edge 'x2' -> 'pop' connects 2 to 3 neurons directly"),
    (lambda n, e: ({**n, "pop": nir.LIF(tau=np.array(0.02), r=np.array(1.0), v_leak=np.array(0.0),
                                        v_threshold=np.array(1.0))}, e), None),  # scalars: size from 'w'
    (lambda n, e: ({**n, "lone": nir.LIF(tau=np.array(0.02), r=np.array(1.0), v_leak=np.array(0.0),
                                         v_threshold=np.array(1.0))}, e), r"node 'lone' \(LIF\): its size cannot"),
    (lambda n, e: ({**n, "pop": _lif(3, tau=5e-4)}, e), r"node 'pop' \(LIF\): time constant 0.0005 s is shorter"),
])
def test_graph_structure_errors(edit, message):
    graph = _graph(*edit(*_chain()))
    if message is None:
        assert import_nir(graph, dt=1e-3).spec.population("pop").size == 3
    else:
        with pytest.raises(ConfigError, match=message):
            import_nir(graph, dt=1e-3)


def test_sidecar_that_does_not_match_the_graph(tmp_path):
    net = _network(_spec())
    path = export_nir(net, tmp_path / "net.nir")
    g = nir.read(path)
    w00 = g.nodes["exc->inh"].weight[0, 0]
    g.nodes["exc->inh"].weight[0, 0] = -1.0  # exc is "excitatory" in the sidecar
    nir.write(path, g)
    with pytest.raises(ConfigError, match=r"population 'exc' is 'excitatory' in the sidecar but its weights"):
        import_nir(path)
    assert import_nir(path, sidecar=False, dt=1e-3).spec.population("exc").sign == "none"
    g.nodes["exc->inh"].weight[0, 0] = w00
    g.nodes["inh"].v_reset = np.full(6, 0.5)
    nir.write(path, g)
    with pytest.raises(ConfigError, match=r"node 'inh' \(LIF\): v_reset = 0.5 in the graph but 0.0 in the sidecar"):
        import_nir(path)


def test_rule_specs_in_the_sidecar(tmp_path):
    """The sidecar stores rule specs: an RSTDPSpec, its config-table dict (converted and
    validated) and a SpikingNRLSpec come back as specs; a version-1 sidecar's config table is read
    as a spec; a bad rule in a sidecar is one line naming it."""
    net = _network(_spec())
    path = export_nir(net, tmp_path / "a.nir", rule=RULE_TABLE)
    assert import_nir(path).rule == RULE
    nrl = SpikingNRLSpec(lr=0.05, projections=("exc->inh",))
    assert import_nir(export_nir(net, tmp_path / "b.nir", rule=nrl)).rule == nrl
    assert import_nir(export_nir(net, tmp_path / "c.nir")).rule is None
    side_file = sidecar_path(path)
    side = json.loads(side_file.read_text())
    side_file.write_text(json.dumps({**side, "version": 1, "rule": RULE_TABLE}))  # a version-1 sidecar
    assert import_nir(path).rule == RULE
    side_file.write_text(json.dumps({**side, "rule": {**RULE.to_dict(), "tau_plus": 0}}))
    with pytest.raises(ConfigError, match=r"a\.nir\.neuroprobe\.json: rstdp tau_plus = 0") as ei:
        import_nir(path)
    assert "\n" not in str(ei.value)


def _lif_scalars_as_ones(n_written: int, tau=0.02):
    """A LIF node whose parameters are written as shape (1,) (v_threshold (n,) when n_written > 1:
    NIR's constructor refuses mixed shapes, so that node is changed after construction)."""
    node = nir.LIF(tau=np.array([tau]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([1.0]),
                   v_reset=np.array([0.0]))
    if n_written > 1:
        node.v_threshold = np.full(n_written, 1.0)
    return node


@pytest.mark.parametrize("n_written", [1, 3])
def test_shape_one_parameters_are_scalars(tmp_path, n_written):
    """Parameters of shape (1,) are scalars: a LIF node of 3 neurons (its size from the weights)
    with all, or some, parameters written as shape (1,) imports as the same population as with
    (3,) parameters, and (needs norse) runs the same as norse's from_nir of that graph."""
    nodes, edges = _chain(pop=_lif_scalars_as_ones(n_written))
    imp = import_nir(_graph(nodes, edges), dt=1e-3)
    ref = import_nir(_graph(*_chain()), dt=1e-3)
    assert imp.spec == ref.spec and imp.spec.population("pop").size == 3
    # a node with (1,) parameters and nothing else giving a size is one neuron
    one = import_nir(_graph({"pop": _lif_scalars_as_ones(1), "pop.out": nir.Output(np.array([1]))},
                            [("pop", "pop.out")]), dt=1e-3)
    assert one.spec.population("pop").size == 1
    if n_written > 1 or not norse_available():  # a file holds what NIR's constructor accepts: all (1,)
        return
    import norse.torch as norse_torch

    nodes["w"] = nir.Linear(np.full((3, 4), 0.9, np.float32))
    path = tmp_path / "ones.nir"
    nir.write(path, _graph(nodes, edges))
    imp = import_nir(path, dt=1e-3)
    assert imp.spec.population("pop").size == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch.load's deprecation warning
        model = norse_torch.from_nir(nir.read(path, type_check=False), dt=1e-3)
    x = _inputs(60, 2, 4, seed=5, p=0.5)
    got = _run(imp.network, x, name="x")
    xd = torch.cat([torch.zeros(1, 2, 4), x[:-1]])
    state, z_norse = None, []
    with torch.no_grad():
        for t in range(60):
            z, state = model(xd[t], state)
            z_norse.append(z)
    z_np = torch.stack([z["pop"] for z, _ in got])
    assert z_np.sum() > 10
    assert torch.equal(z_np, torch.stack(z_norse).reshape(z_np.shape))
