"""The spiking engine's fast paths give the reference results: propagation methods against a dense
weight matrix, the torch LIF engine against norse's own cells (bitwise), the network with engines
"norse" and "torch", merged propagation against per-projection propagation, weight caches that
follow in-place and replaced weights, event-driven STDP against the dense formula, and devices."""
import pytest
import torch

from neuroprobe.neurons.lif import LIFParameters, lif_init, lif_step
from neuroprobe.rules.rstdp import CascadeRSTDP, stdp_coincidence, stdp_coincidence_events
from neuroprobe.spiking import SpikingNetwork, propagate, spec_from_dict
from neuroprobe.spiking.projection import PROPAGATION_METHODS, csr_rowptr, random_connectivity
from neuroprobe.traces import CascadeTrace

F64 = torch.float64


def _activity(B, n, g, binary=True, p=0.2):
    z = (torch.rand(B, n, generator=g) < p).to(F64)
    return z if binary else z * torch.rand(B, n, generator=g, dtype=F64) * 3


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("per_trial", [False, True])
@pytest.mark.parametrize("binary", [True, False])
def test_propagate_methods_match_dense_matrix(B, per_trial, binary):
    g = torch.Generator().manual_seed(B + 2 * per_trial + 4 * binary)
    n_pre, n_post = 37, 23
    pre, post = random_connectivity(n_pre, n_post, 0.3, g)
    S = pre.numel()
    w = torch.randn(B, S, generator=g, dtype=F64) if per_trial else torch.randn(S, generator=g, dtype=F64)
    W = torch.zeros(*w.shape[:-1], n_post, n_pre, dtype=F64)
    W[..., post, pre] = w  # random_connectivity has no duplicate pairs
    rowptr = csr_rowptr(pre, n_pre)
    for p_active in (0.0, 0.02, 0.5):  # no spike at all, "auto" -> event, "auto" -> dense
        z = _activity(B, n_pre, g, binary, p_active)
        want = torch.einsum("bn,bmn->bm", z, W) if per_trial else z @ W.T
        for method in PROPAGATION_METHODS:
            got = propagate(z, pre, post, w, n_post, rowptr, method)
            assert got.shape == (B, n_post) and got.dtype == F64
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=f"{method} p={p_active}")
        # dense and event add each post neuron's inputs in the same order: equal exactly
        assert torch.equal(propagate(z, pre, post, w, n_post, rowptr, "dense"),
                           propagate(z, pre, post, w, n_post, rowptr, "event"))


def _spec(engine="torch", refractory=True, noise="membrane", with_input=True, poisson=True, extra_pops=(),
          extra_projs=()):
    lif_e = {"tau_mem": 20e-3, "tau_syn": 5e-3, "t_ref": 2e-3 if refractory else 0.0, "noise": noise, "noise_std": 0.5}
    lif_i = {"tau_mem": 10e-3, "tau_syn": 5e-3, "t_ref": 1e-3 if refractory else 0.0, "noise": noise, "noise_std": 0.5}
    pops = [{"name": "exc", "size": 80, "kind": "lif", "sign": "excitatory", "lif": lif_e},
            {"name": "inh", "size": 20, "kind": "lif", "sign": "inhibitory", "lif": lif_i}]
    projs = [{"pre": a, "post": b, "p": 0.2, "weight": 0.15, "weight_std": 0.05, "w_max": 1.0}
             for a in ("exc", "inh") for b in ("exc", "inh")]
    if poisson:
        pops.append({"name": "poi", "size": 30, "kind": "poisson", "rate": 40.0, "sign": "excitatory"})
        projs.append({"pre": "poi", "post": "exc", "p": 0.3, "weight": 0.4})
    if with_input:
        pops.append({"name": "inp", "size": 10, "kind": "input"})
        projs.append({"pre": "inp", "post": "inh", "p": 0.5, "weight": 0.3})
    pops += list(extra_pops)
    projs += list(extra_projs)
    return spec_from_dict({"network": {"dt": 1e-3, "engine": engine}, "population": pops, "projection": projs})


def _reference_currents(net, z_prev):
    """Per projection, dense weight matrix times last step's spikes, summed per post population."""
    out = {}
    for proj in net.projections:
        W = proj.dense()  # (n_post, n_pre) or (B, n_post, n_pre)
        z = z_prev[proj.spec.pre]
        i = torch.einsum("bn,bmn->bm", z, W) if W.dim() == 3 else z @ W.T
        out[proj.spec.post] = out.get(proj.spec.post, 0) + i
    return out


def _run(net, B, steps, seed=1, inputs_seed=2, record_currents=False):
    g, gi = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(inputs_seed)
    state = net.init_state(B)
    zs, vs, cur = [], [], []
    for _ in range(steps):
        inputs = {}
        if "inp" in net.pops:  # graded (non-binary) input activity
            inputs["inp"] = _activity(B, 10, gi, binary=False, p=0.1).to(net.dtype)
        if record_currents:
            cur.append((net._synaptic_input(state["z"], B), _reference_currents(net, state["z"])))
        z, state = net.step(state, inputs, generator=g)
        zs.append(torch.cat([z[k] for k in sorted(z)], 1))
        vs.append(torch.cat([state["lif"][k].v for k in sorted(state["lif"])], 1))
    return torch.stack(zs), torch.stack(vs), cur


@pytest.mark.parametrize("B", [1, 3])
def test_network_propagation_methods_match_dense_reference(B):
    """Merged propagation (all projections in one table) equals the per-projection dense-matrix
    sums for every method, with shared and per-trial weights mixed."""
    results = {}
    for method in PROPAGATION_METHODS:
        net = SpikingNetwork(_spec(), torch.Generator().manual_seed(0), dtype=F64, propagation=method)
        with torch.no_grad():  # one projection with per-trial weights, the others shared
            p = net.projection("exc->exc")
            p.weight = torch.nn.Parameter(p.weight.detach().expand(B, -1).clone()
                                          * (1 + 0.1 * torch.arange(B, dtype=F64))[:, None])
            z, v, cur = _run(net, B, 60, record_currents=True)
        assert z.sum() > 50, "the test network should spike"
        for got, want in cur:
            assert set(got) == set(want)
            for k in want:
                torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-12)
        results[method] = (z, v)
    # "dense" and "event" sum in the same order: the whole run is bitwise equal
    assert torch.equal(results["dense"][0], results["event"][0]) and torch.equal(results["dense"][1],
                                                                                  results["event"][1])


def _old_style_step(net, state, inputs, generator):
    """The engine before merged propagation: per projection ``propagate(..., "dense")`` added to
    zeros, then i_ext, then the LIF step (reference for bitwise equality)."""
    from neuroprobe.neurons.inputs import poisson_spikes

    B = next(iter(state["z"].values())).shape[0]
    z_new, lif_new = {}, {}
    for name, p in net.pops.items():
        if p.kind == "input":
            z_new[name] = inputs[name].to(net.dtype)
        elif p.kind == "poisson":
            z_new[name] = poisson_spikes(torch.full((B, p.size), p.rate, dtype=net.dtype), net.spec.dt, generator)
    for name, p in net.pops.items():
        if p.kind != "lif":
            continue
        i_in = torch.zeros(B, p.size, dtype=net.dtype)
        for proj in net.projections:
            if proj.spec.post == name:
                i_in = i_in + propagate(state["z"][proj.spec.pre], proj.pre, proj.post, proj.weight, proj.n_post,
                                        proj.rowptr, "dense")
        if p.i_ext:
            i_in = i_in + p.i_ext
        z_new[name], lif_new[name], _ = lif_step(i_in, state["lif"][name], p.lif, "norse", generator)
    return z_new, {"z": z_new, "lif": lif_new, "noise": {}}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_network_engines_norse_and_torch_bitwise_equal(dtype):
    pytest.importorskip("norse")
    esc = {"name": "esc", "size": 15, "kind": "lif",
           "lif": {"tau_mem": 10e-3, "tau_syn": 0.0, "t_ref": 2e-3, "noise": "escape", "v_leak": 0.2}}
    runs = {}
    for engine in ("norse", "torch"):
        spec = _spec(engine, extra_pops=[esc], extra_projs=[{"pre": "exc", "post": "esc", "p": 0.3, "weight": 0.5}])
        net = SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=dtype)
        assert net.engine == engine
        with torch.no_grad():
            runs[engine] = _run(net, 2, 300)
        if engine == "norse":  # also under autograd (norse's SuperSpike threshold): same values
            runs["norse-grad"] = _run(SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=dtype), 2, 60)
    z_n, v_n, _ = runs["norse"]
    z_t, v_t, _ = runs["torch"]
    assert z_n.sum() > 100
    assert torch.equal(z_n, z_t) and torch.equal(v_n, v_t)
    assert torch.equal(runs["norse-grad"][0], z_n[:60]) and torch.equal(runs["norse-grad"][1].detach(), v_n[:60])


def test_network_equals_per_projection_engine_bitwise():
    """Merged event/csr/auto propagation + torch engine reproduce the per-projection reference
    step exactly (float32, as experiments run)."""
    pytest.importorskip("norse")
    spec = _spec("torch", with_input=False)
    for method in ("auto", "event"):
        net = SpikingNetwork(spec, torch.Generator().manual_seed(0), propagation=method)
        ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        sa = sb = net.init_state(2)
        with torch.no_grad():
            for t in range(200):
                za, sa = net.step(sa, generator=ga)
                zb, sb = _old_style_step(net, sb, {}, gb)
                for k in za:
                    assert torch.equal(za[k], zb[k]), (method, t, k)
                for k in sa["lif"]:
                    assert torch.equal(sa["lif"][k].v, sb["lif"][k].v) and torch.equal(sa["lif"][k].i, sb["lif"][k].i)


def test_weight_cache_follows_inplace_and_replaced_weights_and_autograd():
    net = SpikingNetwork(_spec(with_input=False), torch.Generator().manual_seed(0), dtype=F64, propagation="event")
    g = torch.Generator().manual_seed(5)
    z = {k: _activity(2, p.size, g, p=0.3) for k, p in net.pops.items()}
    proj = net.projection("exc->inh")
    with torch.no_grad():
        first = net._synaptic_input(z, 2)
        proj.weight.mul_(2.0)  # in place (version counter)
        got = net._synaptic_input(z, 2)
        torch.testing.assert_close(got["inh"], _reference_currents(net, z)["inh"], rtol=0, atol=1e-12)
        assert not torch.allclose(got["inh"], first["inh"])
        proj.weight = torch.nn.Parameter(torch.full_like(proj.weight, 0.01))  # replaced
        got = net._synaptic_input(z, 2)
        torch.testing.assert_close(got["inh"], _reference_currents(net, z)["inh"], rtol=0, atol=1e-12)
        proj.weight.data = proj.weight.data * 3  # new storage behind the same Parameter
        got = net._synaptic_input(z, 2)
        torch.testing.assert_close(got["inh"], _reference_currents(net, z)["inh"], rtol=0, atol=1e-12)
    # while autograd records, gradients reach every projection's weight
    for method in ("event", "dense", "csr", "auto"):
        net.propagation = method
        for p in net.projections:
            p.weight.grad = None
        cur = net._synaptic_input(z, 2)
        (cur["exc"].sum() + 2 * cur["inh"].sum()).backward()
        for p in net.projections:
            want = (z[p.spec.pre][:, p.pre]).sum(0) * (1.0 if p.spec.post == "exc" else 2.0)
            torch.testing.assert_close(p.weight.grad, want, rtol=0, atol=1e-12)


def test_connectivity_change_rebuilds_tables():
    """load_state_dict with other synapses (same count: fixed in-degree) must not reuse stale tables."""
    spec = spec_from_dict({"network": {"dt": 1e-3, "engine": "torch"},
                           "population": [{"name": "a", "size": 30, "kind": "input"},
                                          {"name": "b", "size": 20, "kind": "lif", "lif": {}}],
                           "projection": [{"pre": "a", "post": "b", "p": 0.2, "weight": 0.3, "weight_std": 0.1,
                                           "fixed_indegree": True}]})
    n1 = SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=F64, propagation="event")
    n2 = SpikingNetwork(spec, torch.Generator().manual_seed(1), dtype=F64, propagation="event")
    z = {"a": _activity(1, 30, torch.Generator().manual_seed(2), p=0.5)}
    with torch.no_grad():
        n1._synaptic_input(z, 1)
        n1.load_state_dict(n2.state_dict())
        torch.testing.assert_close(n1._synaptic_input(z, 1)["b"], _reference_currents(n2, z)["b"], rtol=0, atol=1e-12)
    p = n1.projections[0]
    assert torch.equal(p.event_tables().out_slot[p.pre[0], 0], torch.tensor(0))


def _norse_cells(p: LIFParameters, dtype):
    import norse.torch as nt
    from norse.torch.functional.lif import LIFParameters as NP
    from norse.torch.functional.lif_box import LIFBoxParameters as NBP
    from norse.torch.functional.lif_refrac import LIFRefracParameters as NRP

    t = lambda x: torch.as_tensor(x, dtype=dtype)  # noqa: E731
    if p.tau_syn == 0:
        return nt.LIFBoxCell(NBP(tau_mem_inv=t(1 / p.tau_mem), v_leak=t(p.v_leak), v_th=t(p.v_th),
                                 v_reset=t(p.v_reset)), dt=p.dt)
    lp = NP(tau_syn_inv=t(1 / p.tau_syn), tau_mem_inv=t(1 / p.tau_mem), v_leak=t(p.v_leak), v_th=t(p.v_th),
            v_reset=t(p.v_reset))
    if p.refractory_steps:
        return nt.LIFRefracCell(NRP(lif=lp, rho_reset=t(float(p.refractory_steps))), dt=p.dt)
    return nt.LIFCell(lp, dt=p.dt)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kind", ["cuba", "box", "cuba_refrac"])
def test_torch_lif_equals_norse_cells(kind, dtype):
    pytest.importorskip("norse")
    from norse.torch.functional.lif import LIFFeedForwardState
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState
    from norse.torch.functional.lif_refrac import LIFRefracFeedForwardState

    p = LIFParameters(tau_mem=17e-3, tau_syn=0.0 if kind == "box" else 4e-3, t_ref=3e-3 if "refrac" in kind else 0.0,
                      v_leak=-0.15, v_reset=-0.3, v_th=0.9, dt=0.7e-3)
    cell = _norse_cells(p, dtype)
    g = torch.Generator().manual_seed(0)
    state = lif_init((4, 50), p, dtype)
    ns = {"cuba": LIFFeedForwardState(state.v, state.i), "box": LIFBoxFeedForwardState(state.v),
          "cuba_refrac": LIFRefracFeedForwardState(LIFFeedForwardState(state.v, state.i), state.rho)}[kind]
    spikes = 0
    with torch.no_grad():
        for t in range(500):
            x = torch.randn(4, 50, generator=g, dtype=dtype) * 0.4 + (1.2 if kind == "box" else 0.15)
            z, state, _ = lif_step(x, state, p, "torch")
            zn, ns = cell(x, ns)
            spikes += int(z.sum())
            assert torch.equal(z, zn), t
            if kind == "cuba_refrac":
                assert torch.equal(state.v, ns.lif.v) and torch.equal(state.i, ns.lif.i) and torch.equal(state.rho,
                                                                                                       ns.rho), t
            else:
                assert torch.equal(state.v, ns.v), t
                if kind == "cuba":
                    assert torch.equal(state.i, ns.i), t
    assert spikes > 200


@pytest.mark.parametrize("B", [1, 3])
def test_event_stdp_exact_and_rule_buffer_reuse(B):
    """Event-driven coincidences equal the dense formula exactly (also with graded spikes and pre
    and post spiking in the same step); CascadeRSTDP's reused coincidence buffer gives the same
    eligibility as the dense formula fed to a CascadeTrace, step after step."""
    net = SpikingNetwork(_spec(with_input=False), torch.Generator().manual_seed(0), dtype=F64)
    proj = net.projection("exc->exc")
    g = torch.Generator().manual_seed(B)
    for binary in (True, False):
        x, y = torch.rand(B, 80, generator=g, dtype=F64), torch.rand(B, 80, generator=g, dtype=F64)
        zp, zq = _activity(B, 80, g, binary, 0.3), _activity(B, 80, g, binary, 0.3)
        got = stdp_coincidence_events(x, y, zp, zq, proj, 0.7, 1.3)
        want = stdp_coincidence(x, y, zp, zq, proj.pre, proj.post, 0.7, 1.3)
        assert got.shape == want.shape and torch.equal(got, want)
    rule = CascadeRSTDP(proj, B, order=3, delay=0.02, dt=1e-3, a_plus=0.7, a_minus=1.3)
    trace = CascadeTrace(3, 20.0, (B, proj.n_synapses), normalize="peak", dtype=F64)
    xr, yr = torch.zeros(B, 80, dtype=F64), torch.zeros(B, 80, dtype=F64)
    for t in range(150):
        zp, zq = _activity(B, 80, g, p=0.1), _activity(B, 80, g, p=0.1)
        e = rule.step(zp, zq)
        xr.mul_(rule.decay_plus)
        yr.mul_(rule.decay_minus)
        want = trace.step(stdp_coincidence(xr, yr, zp, zq, proj.pre, proj.post, 0.7, 1.3))
        xr.add_(zp)
        yr.add_(zq)
        assert torch.equal(e, want), t
    assert rule._cbuf.abs().sum() == 0  # the buffer is clean between steps


def test_device_parameter_is_honoured():
    dev = torch.device("cpu")
    net = SpikingNetwork(_spec(), torch.Generator().manual_seed(0), device=dev, propagation="auto")
    assert net.device == dev and all(t.device == dev for t in list(net.parameters()) + list(net.buffers()))
    state = net.init_state(2)
    with torch.no_grad():
        z, state = net.step(state, {"inp": torch.zeros(2, 10)}, torch.Generator().manual_seed(0))
    assert all(v.device == dev for v in z.values())
    assert all(getattr(s, f).device == dev for s in state["lif"].values() for f in ("v", "i", "rho"))
    rule = CascadeRSTDP(net.projection("exc->exc"), 2, order=2, delay=0.01, dt=1e-3)
    assert rule.step(z["exc"], z["exc"]).device == dev


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    spec = _spec(noise="none", poisson=False)
    out = {}
    for dev in ("cpu", "cuda"):
        net = SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=F64, device=dev)
        state = net.init_state(2)
        zs, vs = [], []
        with torch.no_grad():
            for t in range(100):
                inp = (torch.arange(20, device=dev).view(2, 10) % (t % 7 + 2) == 0).to(F64)
                z, state = net.step(state, {"inp": inp, "exc": torch.full((2, 80), 0.06, dtype=F64, device=dev)})
                zs.append(z["exc"].cpu())
                vs.append(state["lif"]["exc"].v.cpu())
        out[dev] = torch.stack(zs), torch.stack(vs)
    assert out["cpu"][0].sum() > 20 and torch.equal(out["cpu"][0], out["cuda"][0])
    torch.testing.assert_close(out["cpu"][1], out["cuda"][1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("order", [1, 3])
def test_rule_in_place_trace_resumes_and_reinforce(order):
    """The in-place eligibility update follows a state restored by load_state_dict or reset, and
    reinforce writes −d·e (per-trial and shared weights, fresh and existing grad)."""
    net = SpikingNetwork(_spec(with_input=False), torch.Generator().manual_seed(0), dtype=F64)
    proj = net.projection("exc->exc")
    rule = CascadeRSTDP(proj, 1, order=order, delay=0.01, dt=1e-3)
    g = torch.Generator().manual_seed(7)
    zs = [(_activity(1, 80, g, p=0.1), _activity(1, 80, g, p=0.1)) for _ in range(60)]
    for zp, zq in zs[:30]:
        rule.step(zp, zq)
    saved = rule.state_dict()
    first = [rule.step(zp, zq).clone() for zp, zq in zs[30:]]
    rule.load_state_dict(saved)
    assert all(torch.equal(rule.step(zp, zq), e) for (zp, zq), e in zip(zs[30:], first))
    rule.trace.reset()
    rule.x_pre.zero_(), rule.y_post.zero_()
    fresh = CascadeRSTDP(proj, 1, order=order, delay=0.01, dt=1e-3)
    assert all(torch.equal(rule.step(zp, zq), fresh.step(zp, zq)) for zp, zq in zs)
    for w_batch, B in ((None, 1), (3, 3)):
        if w_batch:
            proj.weight = torch.nn.Parameter(proj.weight.detach().expand(w_batch, -1).clone())
        r = CascadeRSTDP(proj, B, order=order, delay=0.01, dt=1e-3)
        r.eligibility = torch.randn(B, proj.n_synapses, generator=g, dtype=F64)
        for d in (torch.tensor(0.7, dtype=F64), torch.linspace(-1, 1, B, dtype=F64)):
            proj.weight.grad = None
            for _ in range(2):  # fresh grad, then written in place
                r.reinforce(d)
                want = -(d.reshape(-1, 1) * r.eligibility) if d.dim() else -(d * r.eligibility)
                assert torch.equal(proj.weight.grad, want if w_batch else want.sum(0))


def test_free_signed_projection_keeps_each_synapse_sign():
    """sign "none": weights drawn as weight + std·N(0,1) keep their sign; bounds apply to |w|."""
    from neuroprobe.spiking import SpikingNetwork, spec_from_dict

    spec = spec_from_dict({"network": {"dt": 1e-3, "engine": "torch"}, "population": [
        {"name": "a", "size": 50, "kind": "input"},
        {"name": "b", "size": 40, "kind": "lif", "lif": {}}],
        "projection": [{"pre": "a", "post": "b", "p": 1.0, "weight": 0.0, "weight_std": 0.5, "w_min": 0.05,
                        "w_max": 0.6}]})
    pr = SpikingNetwork(spec, torch.Generator().manual_seed(0)).projection("a->b")
    w = pr.weight.detach()
    assert 0.4 < (w < 0).float().mean() < 0.6  # about half negative
    assert w.abs().min() >= 0.05 and w.abs().max() <= 0.6
    with torch.no_grad():
        pr.weight.mul_(3.0)
        pr.clamp_()
    w2 = pr.weight.detach()
    assert torch.equal(w2.sign(), w.sign()) and w2.abs().max() <= 0.6 and w2.abs().min() >= 0.05
