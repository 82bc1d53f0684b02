"""Spiking rules and tasks: cascade R-STDP, the distal-reward protocol, spiking node perturbation,
checked against direct (loop / convolution) computations."""
import numpy as np
import pytest
import torch

from neuroprobe.errors import ConfigError
from neuroprobe.rules.rstdp import CascadeRSTDP, stdp_coincidence
from neuroprobe.rules.spiking_nrl import SpikingNRL
from neuroprobe.spiking import SpikingNetwork, spec_from_dict
from neuroprobe.tasks.distal_reward import DistalReward
from neuroprobe.traces.kernels import cascade_kernel


def _net(batch=None, sign="excitatory", w_max=1.0):
    spec = spec_from_dict({"network": {"dt": 1e-3},
                           "population": [{"name": "a", "size": 12, "kind": "input", "sign": sign},
                                          {"name": "b", "size": 9, "kind": "lif", "lif": {}}],
                           "projection": [{"pre": "a", "post": "b", "p": 0.5, "weight": 0.2, "weight_std": 0.1,
                                           "w_max": w_max}]})
    return SpikingNetwork(spec, torch.Generator().manual_seed(0), batch=batch, dtype=torch.float64)


@pytest.mark.parametrize("order", [1, 2, 6])
def test_rstdp_eligibility_matches_loop_and_convolution(order):
    net = _net(batch=2)
    proj = net.projections[0]
    T, dt, tau = 400, 1e-3, 20e-3
    g = torch.Generator().manual_seed(1)
    zp = (torch.rand(T, 2, 12, generator=g) < 0.05).double()
    zq = (torch.rand(T, 2, 9, generator=g) < 0.05).double()
    rule = CascadeRSTDP(proj, 2, order=order, delay=0.05, dt=dt, tau_plus=tau, tau_minus=tau, a_plus=1.0,
                        a_minus=1.5, normalize="peak")
    got = torch.stack([rule.step(zp[t], zq[t]) for t in range(T)])  # (T, B, S)
    # independent: per-neuron traces by explicit loop, coincidences, then the Erlang kernel by np.convolve
    pre, post = proj.pre.numpy(), proj.post.numpy()
    lam = np.exp(-dt / tau)
    x = np.zeros((2, 12))
    y = np.zeros((2, 9))
    c = np.zeros((T, 2, len(pre)))
    for t in range(T):
        x *= lam
        y *= lam
        c[t] = 1.0 * x[:, pre] * zq[t].numpy()[:, post] - 1.5 * y[:, post] * zp[t].numpy()[:, pre]
        x += zp[t].numpy()
        y += zq[t].numpy()
    h = cascade_kernel(order, 50.0, T, normalize=None).numpy() * rule.trace.scale
    want = np.stack([[np.convolve(c[:, b, s], h)[:T] for s in range(len(pre))] for b in range(2)]).transpose(2, 0, 1)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)


def test_event_coincidence_equals_dense_reference():
    net = _net(batch=3)
    p = net.projections[0]
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(3, 12, generator=g, dtype=torch.float64), torch.rand(3, 9, generator=g, dtype=torch.float64)
    zp, zq = (torch.rand(3, 12, generator=g) < 0.3).double(), (torch.rand(3, 9, generator=g) < 0.3).double()
    from neuroprobe.rules.rstdp import stdp_coincidence_events
    torch.testing.assert_close(stdp_coincidence_events(x, y, zp, zq, p, 1.0, 1.5),
                               stdp_coincidence(x, y, zp, zq, p.pre, p.post, 1.0, 1.5), rtol=0, atol=1e-15)


def test_rstdp_reinforce_writes_minus_d_e_and_clamp_keeps_sign_and_bounds():
    for sign, batch in (("excitatory", 2), ("inhibitory", None)):
        net = _net(batch=batch, sign=sign, w_max=0.25)
        proj = net.projections[0]
        rule = CascadeRSTDP(proj, 2, order=2, delay=0.01, dt=1e-3)
        rule.eligibility = torch.randn(2, proj.n_synapses, dtype=torch.float64)
        d = torch.tensor([0.5, -2.0], dtype=torch.float64)
        rule.reinforce(d)
        want = -(d[:, None] * rule.eligibility)
        torch.testing.assert_close(proj.weight.grad, want if batch else want.sum(0))
        torch.optim.SGD([proj.weight], lr=10.0).step()  # a huge step: bounds must hold afterwards
        proj.clamp_()
        s = 1.0 if sign == "excitatory" else -1.0
        assert (proj.weight * s >= 0).all() and (proj.weight.abs() <= 0.25 + 1e-15).all()


def test_distal_reward_protocol_schedules_delayed_rewards():
    dt = 1e-3
    task = DistalReward(torch.tensor([3]), torch.tensor([5]), dt, window=10e-3, delay_min=0.5, delay_max=0.5,
                        dopamine_tau=0.2, dopamine_amp=0.5)
    zpre, zpost = torch.zeros(1, 8), torch.zeros(1, 8)
    d = []
    for t in range(1200):
        a, b = zpre.clone(), zpost.clone()
        if t in (10, 100, 300):
            a[0, 3] = 1  # pre spikes
        if t in (15, 99, 330):
            b[0, 5] = 1  # post 5 ms after (rewarded), post before pre (no), post 30 ms after (too late)
        d.append(float(task.step(a, b)[0]))
    d = np.asarray(d)
    assert task.coincidences.item() == 1 and task.rewards.item() == 1
    assert np.all(d[:515] == 0) and d[515] == pytest.approx(0.5)  # delivered 0.5 s after the post spike
    assert d[615] == pytest.approx(0.5 * np.exp(-100 * dt / 0.2))


def test_distal_reward_bad_values():
    with pytest.raises(ConfigError, match="delay_min"):
        DistalReward(torch.tensor([0]), torch.tensor([1]), 1e-3, delay_min=3.0, delay_max=1.0)


def test_spiking_nrl_eligibility_and_masked_reinforce():
    net = _net(batch=3)
    p = net.projections[0]
    rule = SpikingNRL([p], {p.name: 0.5}, 3)
    g = torch.Generator().manual_seed(3)
    W = torch.zeros(3, 9, 12, dtype=torch.float64)
    for _ in range(5):
        z = {"a": (torch.rand(3, 12, generator=g) < 0.3).double()}
        xi = {"b": torch.randn(3, 9, generator=g, dtype=torch.float64)}
        rule.accumulate(z, xi)
        W += torch.einsum("bi,bj->bij", xi["b"], z["a"]) / 0.25  # dense ξ z_preᵀ / σ²
    torch.testing.assert_close(rule.elig[0], W[:, p.post, p.pre])
    rule.reinforce(torch.tensor([10.0, 20.0, 30.0]), torch.tensor([True, True, True]))  # first reward: baseline
    e0 = rule.elig[0].clone()
    assert torch.all(e0 == 0)
    rule.accumulate(z, xi)
    e1 = rule.elig[0].clone()
    d = rule.reinforce(torch.tensor([20.0, 20.0, 40.0]), torch.tensor([True, False, True]))
    assert d[1] == 0 and d[0] > 0
    torch.testing.assert_close(p.weight.grad, (-(d[:, None] * e1)).to(p.weight.dtype))
    assert torch.all(rule.elig[0][[0, 2]] == 0) and torch.equal(rule.elig[0][1], e1[1])


def test_spiking_nrl_needs_noise():
    net = _net(batch=2)
    with pytest.raises(ConfigError, match="membrane noise"):
        SpikingNRL([net.projections[0]], {}, 2)


def test_rstdp_kernel_is_the_cascade_kernel_spec():
    """CascadeRSTDP takes its cascade from neuroprobe.spec.CascadeKernel: its trace's transition is
    kernel.transition(dt) bit for bit, and from_spec builds the same rule from an RSTDPSpec."""
    from neuroprobe.spec import CascadeKernel, RSTDPSpec

    proj = _net().projections[0]
    rule = CascadeRSTDP(proj, 1, order=6, delay=2.0, dt=1e-3, normalize="peak")
    assert rule.kernel == CascadeKernel(6, 2.0, "peak")
    assert torch.equal(rule.trace.transition, torch.from_numpy(rule.kernel.transition(1e-3)))
    spec = RSTDPSpec(projection=proj.name, kernel=CascadeKernel(6, 2.0), lr=0.1, a_minus=1.5)
    other = CascadeRSTDP.from_spec(proj, 1, spec, 1e-3)
    assert torch.equal(other.trace.transition, rule.trace.transition) and other.trace.scale == rule.trace.scale
    with pytest.raises(ConfigError, match="spec is for projection"):
        CascadeRSTDP.from_spec(proj, 1, RSTDPSpec(projection="x->y", kernel=CascadeKernel(2, 0.1), lr=0.1), 1e-3)
