"""Plain checkpoint state: everything a run checkpoints goes through ``to_plain`` and
``torch.load(weights_only=True)`` (no code runs on load) and continues bit-identically.

Every round trip below is ``torch.save(to_plain(x), buf)`` then ``torch.load(buf, weights_only=True)``,
loaded into a *fresh* object, and checked by running both the original and the restored one on.
"""
from __future__ import annotations

import collections
import io
import pickle
import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch

from neuroprobe.errors import NeuroprobeError
from neuroprobe.io.state import env_state, is_plain, load_env_state, restore_like, to_plain
from neuroprobe.modulators import RewardPredictionError
from neuroprobe.monitors import CHUNK, MonitorSet, PopulationRateMonitor, SpikeMonitor, StateMonitor
from neuroprobe.network import NetworkSpec, RateNetwork
from neuroprobe.neurons.lif import LIFState
from neuroprobe.rules import NRL, RMHL, CETDelayed, ForwardGradient, Reinforce, WeightPerturbation
from neuroprobe.rules.probe import ProbeRule
from neuroprobe.rules.rstdp import CascadeRSTDP
from neuroprobe.rules.spiking_nrl import SpikingNRL
from neuroprobe.spiking import SpikingNetwork, spec_from_dict
from neuroprobe.tasks import make_vector_env
from neuroprobe.tasks.distal_reward import DistalReward

F64 = torch.float64


def _roundtrip(obj):
    """to_plain -> torch.save -> torch.load(weights_only=True)."""
    plain = to_plain(obj)
    assert is_plain(plain)
    buf = io.BytesIO()
    torch.save(plain, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _equal(a, b) -> bool:
    """Exact structural equality of nested containers of tensors / arrays / scalars."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, collections.deque)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- the loader refuses code

_CALLED = []


def _payload():
    _CALLED.append("code ran")


class _Evil:
    def __reduce__(self):
        return (_payload, ())


def test_weights_only_loader_refuses_a_pickled_object_that_runs_code():
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2), "x": _Evil()}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf, weights_only=True)
    assert _CALLED == []  # the restricted unpickler never called the payload
    buf.seek(0)
    torch.load(buf, weights_only=False)  # the old way executes it
    assert _CALLED == ["code ran"]
    _CALLED.clear()
    with pytest.raises(NeuroprobeError, match=r"state\['x'\]: cannot store <class '.*_Evil'>"):
        to_plain({"w": torch.ones(2), "x": _Evil()})


# --------------------------------------------------------------------------- to_plain / restore_like


class _Pair(NamedTuple):
    a: torch.Tensor
    b: tuple


def _sample_tree():
    return {
        "lif": {"exc": LIFState(torch.randn(2, 3), torch.zeros(2, 3), torch.ones(2, 3))},
        "pair": _Pair(torch.arange(3), (1, 2.5, "x")),
        "arrays": [np.arange(5).astype(dt) for dt in (np.float32, np.float64, np.int8, np.uint32, np.uint64, np.bool_)],
        "scalars": (np.float64(0.1), np.int64(-3), np.bool_(True), 7, None, "s"),
        "pending": collections.deque([0.5, 1.0], maxlen=4),
        "np_gen": np.random.default_rng(3),
        "mt_gen": np.random.Generator(np.random.MT19937(4)),
        "rs": np.random.RandomState(5),
        "torch_gen": torch.Generator().manual_seed(6),
        "param": torch.nn.Parameter(torch.ones(2)),
        "opt_like": {0: {"momentum_buffer": torch.ones(1)}},  # int keys (torch.optim state)
        "big": 2**100,
    }


def test_to_plain_roundtrip_and_restore_like_rebuilds_types():
    tree = _sample_tree()
    for g in ("np_gen", "mt_gen", "rs"):  # advance the generators, so their state is not the seed's
        tree[g].random(3)
    torch.rand(3, generator=tree["torch_gen"])
    loaded = _roundtrip(tree)
    assert isinstance(loaded["lif"]["exc"], dict) and set(loaded["lif"]["exc"]) == {"v", "i", "rho"}
    assert isinstance(loaded["scalars"], list) and loaded["scalars"][0] == 0.1 and type(loaded["scalars"][1]) is int
    assert loaded["arrays"][4].dtype == torch.uint64 and loaded["big"] == 2**100
    assert type(loaded["param"]) is torch.Tensor

    fresh = _sample_tree()  # same structure, different values and generator states
    got = restore_like(fresh, loaded)
    assert type(got["lif"]["exc"]) is LIFState and torch.equal(got["lif"]["exc"].v, tree["lif"]["exc"].v)
    assert type(got["pair"]) is _Pair and got["pair"].b == (1, 2.5, "x")
    for a, b in zip(got["arrays"], tree["arrays"]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert _equal(got["scalars"], tree["scalars"]) and type(got["scalars"][0]) is np.float64
    assert type(got["pending"]) is collections.deque and got["pending"].maxlen == 4
    assert list(got["pending"]) == [0.5, 1.0]
    assert got["opt_like"][0]["momentum_buffer"].item() == 1.0
    # generators: restored in place, continuing the saved streams
    for g in ("np_gen", "mt_gen", "rs"):
        assert got[g] is fresh[g]
        np.testing.assert_array_equal(got[g].random(4), tree[g].random(4))
    assert got["torch_gen"] is fresh["torch_gen"]
    assert torch.equal(torch.rand(4, generator=got["torch_gen"]), torch.rand(4, generator=tree["torch_gen"]))


def test_norse_state_tuples():
    lif = pytest.importorskip("norse.torch.functional.lif")
    s = lif.LIFFeedForwardState(v=torch.randn(2, 3), i=torch.randn(2, 3))
    loaded = _roundtrip({"s": s})
    assert set(loaded["s"]) == {"v", "i"}
    back = restore_like({"s": lif.LIFFeedForwardState(torch.zeros(2, 3), torch.zeros(2, 3))}, loaded)["s"]
    assert type(back) is lif.LIFFeedForwardState and torch.equal(back.v, s.v) and torch.equal(back.i, s.i)


class _Opaque:
    pass


def test_to_plain_errors_name_the_entry():
    msg = r"^state\['lif'\]\['exc'\]: cannot store <class '.*_Opaque'> in a checkpoint"
    with pytest.raises(NeuroprobeError, match=msg):
        to_plain({"lif": {"exc": _Opaque()}})
    with pytest.raises(NeuroprobeError, match=r"state\['a'\]\[1\]: cannot store a numpy array of dtype object"):
        to_plain({"a": [np.zeros(1), np.array([None, 1], dtype=object)]})
    with pytest.raises(NeuroprobeError, match="dict key"):
        to_plain({(1, 2): 3})
    with pytest.raises(NeuroprobeError, match="cannot store <class 'set'>"):
        to_plain({"s": {1, 2}})
    with pytest.raises(NeuroprobeError, match="cannot store <class 'torch.dtype'>"):
        to_plain({"d": torch.float32})
    cyc: list = []
    cyc.append(cyc)
    with pytest.raises(NeuroprobeError, match="contains itself"):
        to_plain(cyc)


def test_restore_like_mismatches_name_the_entry():
    tmpl = {"lif": {"exc": LIFState(torch.zeros(1), torch.zeros(1), torch.zeros(1))}, "t": (1, 2)}
    good = to_plain(tmpl)
    bad = {"lif": {"exc": {"v": torch.zeros(1), "i": torch.zeros(1)}}, "t": [1, 2]}
    with pytest.raises(NeuroprobeError, match=r"state\['lif'\]\['exc'\]: saved fields .* do not match LIFState"):
        restore_like(tmpl, bad)
    with pytest.raises(NeuroprobeError, match=r"^state: saved state lacks key\(s\) \['t'\]"):
        restore_like(tmpl, {"lif": good["lif"]})
    with pytest.raises(NeuroprobeError, match=r"state\['lif'\]\['exc'\]\['v'\]: saved list does not match"):
        restore_like(tmpl, {**good, "lif": {"exc": {"v": [0.0], "i": torch.zeros(1), "rho": torch.zeros(1)}}})
    with pytest.raises(NeuroprobeError, match=r"state\['t'\]: saved 3 item\(s\), the template has 2"):
        restore_like({"t": (1, "a")}, {"t": [1, 2, 3]})
    with pytest.raises(NeuroprobeError, match="bit generator 'PCG64'"):
        restore_like(np.random.Generator(np.random.MT19937(0)), to_plain(np.random.default_rng(0)))


# --------------------------------------------------------------------------- spiking network state


def _spiking_net(seed=0, noise=True):
    lif = {"tau_mem": 10e-3, "tau_syn": 5e-3, **({"noise": "membrane", "noise_std": 0.3} if noise else {})}
    spec = spec_from_dict({
        "network": {"dt": 1e-3, "engine": "torch"},
        "population": [{"name": "input", "size": 10, "kind": "input"},
                       {"name": "exc", "size": 8, "kind": "lif", "sign": "excitatory", "lif": lif}],
        "projection": [{"pre": "input", "post": "exc", "p": 0.8, "weight": 0.6, "weight_std": 0.2},
                       {"pre": "exc", "post": "exc", "p": 0.3, "weight": 0.2}],
    })
    return SpikingNetwork(spec, generator=torch.Generator().manual_seed(seed))


def _drive(net, state, gen, steps, B=2):
    zs = []
    for _ in range(steps):
        x = (torch.rand(B, 10, generator=gen) < 0.3).float()
        z, state = net.step(state, {"input": x}, generator=gen)
        zs.append(torch.cat([z["exc"], state["lif"]["exc"].v], 1))
    return state, torch.stack(zs)


def test_spiking_network_state_and_parameters_continue():
    net, gen = _spiking_net(0), torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.2)  # as plasticity would: the fresh network's weights differ until loaded
    state, _ = _drive(net, net.init_state(2), gen, 30)
    ckpt = _roundtrip({"net": net.state_dict(), "state": state, "gen": gen})
    _, ref = _drive(net, state, gen, 40)

    net2 = _spiking_net(0)  # rebuilt from the same config (same connectivity)
    net2.load_state_dict(ckpt["net"])
    gen2 = restore_like(torch.Generator(), ckpt["gen"])
    state2 = restore_like(net2.init_state(2), ckpt["state"])  # init_state has no noise entries: kept plain
    assert type(state2["lif"]["exc"]) is LIFState
    _, got = _drive(net2, state2, gen2, 40)
    assert torch.equal(got, ref) and ref[:, :, :8].sum() > 0


# --------------------------------------------------------------------------- environments

TASK_NAMES = ["CartPole-v1", "Acrobot-v1", "Reaching1D-v0", "CueDelay-v0"]


def _venv(name, delay, n=2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_vector_env(name, n, seed=11, reward_delay=delay)


def _steps(venv, actions):
    out = []
    for a in actions:
        obs, rew, term, trunc, _ = venv.step(a)
        out.append((obs.copy(), rew.copy(), term.copy(), trunc.copy()))
    return out


@pytest.mark.parametrize("delay", [None, 3, "episode_end"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_env_roundtrip_continues_identically(name, delay):
    # 250 steps before and 300 after the checkpoint: every task ends episodes after it (Acrobot and
    # Reaching1D by truncation at 500 / 300 steps), so autoreset and the reseeding logic are covered
    venv = _venv(name, delay)
    venv.reset()
    acts = np.random.default_rng(0).integers(venv.single_action_space.n, size=(550, 2))
    _steps(venv, acts[:250])
    saved = env_state(venv)
    assert is_plain(saved)
    ckpt = _roundtrip({"envs": saved})
    ref = _steps(venv, acts[250:])
    ref_sample = venv.action_space.sample()

    fresh = _venv(name, delay)
    load_env_state(fresh, ckpt["envs"])
    got = _steps(fresh, acts[250:])
    for t, (r, g) in enumerate(zip(ref, got)):
        for what, x, y in zip(("obs", "reward", "terminated", "truncated"), r, g):
            assert np.array_equal(x, y), f"{name} reward_delay={delay}: {what} differs {t} steps after the restore"
    assert np.array_equal(fresh.action_space.sample(), ref_sample)
    assert sum(int((r[2] | r[3]).sum()) for r in ref) >= 2  # episodes did end after the checkpoint
    # the comparison is sensitive: the same fresh env without the restored state goes elsewhere
    other = _venv(name, delay)
    other.reset()
    diverged = _steps(other, acts[250:])
    assert any(not np.array_equal(r[0], d[0]) for r, d in zip(ref, diverged))


def test_env_state_holds_pending_delayed_rewards():
    venv = _venv("CartPole-v1", 5)
    venv.reset()
    venv.step(np.array([0, 1]))
    venv.step(np.array([1, 0]))
    layers = env_state(venv)["envs"][0]
    delayed = next(l for l in layers if l["class"] == "DelayedReward")
    assert delayed["attrs"]["_pending"]["items"] == [1.0, 1.0]
    assert next(l for l in layers if l["class"] == "TimeLimit")["attrs"]["_elapsed_steps"] == 2


def test_load_env_state_mismatches():
    venv = _venv("CartPole-v1", None)
    venv.reset()
    state = env_state(venv)
    with pytest.raises(NeuroprobeError, match="holds 2 environment"):
        load_env_state(_venv("CartPole-v1", None, n=3), state)
    with pytest.raises(NeuroprobeError, match="wrapper layer"):
        load_env_state(_venv("CartPole-v1", 3), state)
    with pytest.raises(NeuroprobeError, match="'CartPoleEnv' layer, this environment has 'AcrobotEnv'"):
        load_env_state(_venv("Acrobot-v1", None), state)
    venv.envs[0].unwrapped.extra = _Opaque()
    with pytest.raises(NeuroprobeError, match=r"envs\[0\]\.CartPoleEnv\.extra: cannot store <class '.*_Opaque'>"):
        env_state(venv)


# --------------------------------------------------------------------------- monitors


def _monitors():
    return MonitorSet([SpikeMonitor("exc"), SpikeMonitor("input", indices=[1, 4], batch_index=1),
                       StateMonitor("v", "exc", indices=[0, 5], every=3), PopulationRateMonitor("exc", bin_steps=7),
                       StateMonitor("weight", "input->exc", every=50)], dt=1e-3)


def _record(net, mon, state, gen, t0, t1):
    proj = net.projection("input->exc")
    for t in range(t0, t1):
        x = (torch.rand(2, 10, generator=gen) < 0.3).float()
        z, state = net.step(state, {"input": x}, generator=gen)
        mon.record(t, lambda var, pop: proj.weight if var == "weight" else net.variable(state, pop, var))
        with torch.no_grad():
            proj.weight.mul_(1.001)
    return state


@pytest.mark.parametrize("split", [100, CHUNK + 44])  # only unflushed rows / flushed chunks and unflushed rows
def test_monitor_set_resumes_recording_identically(split):
    T = CHUNK + 150
    net, gen = _spiking_net(0), torch.Generator().manual_seed(2)
    mon = _monitors()
    state = _record(net, mon, net.init_state(2), gen, 0, split)
    ckpt = _roundtrip({"net": net.state_dict(), "state": state, "gen": gen, "monitors": mon.state_dict()})
    _record(net, mon, state, gen, split, T)
    ref = mon.recordings()

    net2 = _spiking_net(0)
    net2.load_state_dict(ckpt["net"])
    mon2 = _monitors()
    mon2.load_state_dict(ckpt["monitors"])
    _record(net2, mon2, restore_like(net2.init_state(2), ckpt["state"]), restore_like(torch.Generator(), ckpt["gen"]),
            split, T)
    got = mon2.recordings()
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), k
    assert ref["spikes/exc"].shape == (T, 8) and ref["spikes/exc"].sum() > 0

    with pytest.raises(Exception, match="records"):
        MonitorSet([SpikeMonitor("exc")], dt=1e-3).load_state_dict(ckpt["monitors"])


# --------------------------------------------------------------------------- rate rules and optimizers


def _rate_net(seed=0, batch=3, bias=True):
    return RateNetwork(NetworkSpec([4, 6, 2], bias=bias), batch=batch,
                       generator=torch.Generator().manual_seed(seed), dtype=F64)


def _make_rl(cls, seed, opt_name):
    net = _rate_net(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    kw = {"noise_std": 0.1} if cls in (NRL, RMHL, WeightPerturbation) else {}
    rule = cls(net, rpe=RewardPredictionError(batch=3, scale="std"), generator=gen, **kw)
    opt = (torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.8, 0.9)))
    return net, gen, rule, opt


def _rl_steps(net, rule, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        obs = torch.randn(3, 4, generator=g, dtype=F64)
        a = rule.act(obs)
        if t % 3 == 2:  # a reward every third step, for two of the three models
            rule.reinforce(a.to(F64) + torch.randn(3, generator=g, dtype=F64), torch.tensor([True, False, True]))
            opt.step()
        out.append(a)
    return torch.stack(out), [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("cls", [NRL, RMHL, WeightPerturbation, ForwardGradient, Reinforce])
def test_rate_rules_and_optimizers_continue(cls, opt_name):
    net, gen, rule, opt = _make_rl(cls, 0, opt_name)
    _rl_steps(net, rule, opt, 8, seed=5)
    ckpt = _roundtrip({"net": net.state_dict(), "rule": rule.state_dict(), "opt": opt.state_dict(), "gen": gen})
    ref = _rl_steps(net, rule, opt, 9, seed=6)

    net2, gen2, rule2, opt2 = _make_rl(cls, 7, opt_name)
    net2.load_state_dict(ckpt["net"])
    rule2.load_state_dict(ckpt["rule"])
    opt2.load_state_dict(ckpt["opt"])
    gen2.set_state(ckpt["gen"])
    got = _rl_steps(net2, rule2, opt2, 9, seed=6)
    assert torch.equal(got[0], ref[0]) and all(torch.equal(a, b) for a, b in zip(got[1], ref[1]))


def test_reward_prediction_error_continues():
    rpe = RewardPredictionError(batch=3, scale="std")
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(12, 3, generator=g, dtype=F64)
    masks = torch.rand(12, 3, generator=g) < 0.7
    for t in range(5):
        rpe(rewards[t], masks[t])
    rpe2 = RewardPredictionError(batch=3, scale="std")
    rpe2.load_state_dict(_roundtrip(rpe.state_dict()))
    for t in range(5, 12):
        assert torch.equal(rpe(rewards[t], masks[t]), rpe2(rewards[t], masks[t]))


@pytest.mark.parametrize("trace, trace_on, delay", [("cascade", "presynaptic", 3), ("perfect", "synapse", 2),
                                                   ("ltp_ltd", "presynaptic", 2)])
def test_cet_delayed_continues(trace, trace_on, delay):
    def make(seed):
        net = _rate_net(seed, batch=None)
        rule = CETDelayed(net, batch=4, delay=delay, delay_mode="retrograde", trace=trace, order=2, trace_on=trace_on)
        return net, rule, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)

    def run(net, rule, opt, steps, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(steps):
            res = rule.step(torch.randn(4, 4, generator=g, dtype=F64), torch.randint(2, (4,), generator=g))
            opt.step()
            out.append(res["loss"])
        return out, [p.detach().clone() for p in net.parameters()]

    net, rule, opt = make(0)
    run(net, rule, opt, 7, 1)
    ckpt = _roundtrip({"net": net.state_dict(), "rule": rule.state_dict(), "opt": opt.state_dict()})
    ref = run(net, rule, opt, 6, 2)
    net2, rule2, opt2 = make(3)
    net2.load_state_dict(ckpt["net"])
    rule2.load_state_dict(ckpt["rule"])
    opt2.load_state_dict(ckpt["opt"])
    got = run(net2, rule2, opt2, 6, 2)
    assert got[0] == ref[0] and all(torch.equal(a, b) for a, b in zip(got[1], ref[1]))


@pytest.mark.parametrize("regime, scheduler, kernel", [("semi_persistent", "uncertainty", "cascade"),
                                                       ("learned_subspace", "diversity", "none"),
                                                       ("pure", "round_robin", "none")])
def test_probe_rule_continues(regime, scheduler, kernel):
    def make(seed):
        net = _rate_net(seed, batch=None, bias=False)
        rule = ProbeRule(net, branches=8, num_probes=4, rank=1, scale=0.2, scheduler=scheduler, null_fraction=0.25,
                         history=3, decay=0.8, kernel=kernel, kernel_order=2, kernel_delay=1.5, regime=regime, seed=4)
        return net, rule, torch.optim.SGD(net.parameters(), lr=0.05)

    def windows(net, rule, opt, n, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            A = rule.assignment()
            obs = torch.randn(8, 4, generator=g, dtype=F64)
            outcomes = rule.policy(obs, A)[:, 0] + 0.1 * torch.randn(8, generator=g, dtype=F64)
            opt.zero_grad()
            rule.update(outcomes, A)
            opt.step()
            rule.end_window()
            out.append(A)
        return torch.stack(out), [p.detach().clone() for p in net.parameters()]

    net, rule, opt = make(0)
    windows(net, rule, opt, 5, 1)
    ckpt = _roundtrip({"net": net.state_dict(), "rule": rule.state_dict(), "opt": opt.state_dict()})
    ref = windows(net, rule, opt, 5, 2)
    net2, rule2, opt2 = make(0)
    net2.load_state_dict(ckpt["net"])
    rule2.load_state_dict(ckpt["rule"])
    opt2.load_state_dict(ckpt["opt"])
    got = windows(net2, rule2, opt2, 5, 2)
    assert torch.equal(got[0], ref[0]) and all(torch.equal(a, b) for a, b in zip(got[1], ref[1]))


# --------------------------------------------------------------------------- spiking rules and tasks


def _plastic_net(seed, batch=None):
    spec = spec_from_dict({"network": {"dt": 1e-3},
                           "population": [{"name": "a", "size": 12, "kind": "input"},
                                          {"name": "b", "size": 9, "kind": "lif", "lif": {}}],
                           "projection": [{"pre": "a", "post": "b", "p": 0.5, "weight": 0.2, "weight_std": 0.1}]})
    return SpikingNetwork(spec, torch.Generator().manual_seed(seed), batch=batch, dtype=F64)


@pytest.mark.parametrize("order", [1, 3])
def test_cascade_rstdp_and_distal_reward_continue(order):
    def make(seed):
        net = _plastic_net(seed)
        proj = net.projections[0]
        rule = CascadeRSTDP(proj, 2, order=order, delay=0.01, dt=1e-3, tau_plus=5e-3, tau_minus=5e-3)
        gen = torch.Generator().manual_seed(seed + 1)
        task = DistalReward(torch.tensor([0, 3]), torch.tensor([1, 2]), 1e-3, window=5e-3, delay_min=0.003,
                            delay_max=0.008, generator=gen)
        return proj, rule, task, gen, torch.optim.SGD(net.parameters(), lr=0.01)

    def run(proj, rule, task, opt, steps, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(steps):
            z_pre = (torch.rand(2, 12, generator=g) < 0.4).double()
            z_post = (torch.rand(2, 9, generator=g) < 0.4).double()
            out.append(rule.step(z_pre, z_post).clone())
            d = task.step(z_pre, z_post)
            rule.reinforce(d)
            opt.step()
        return torch.stack(out), proj.weight.detach().clone(), task.rewards.clone()

    proj, rule, task, gen, opt = make(0)
    run(proj, rule, task, opt, 20, 1)
    ckpt = _roundtrip({"w": proj.state_dict(), "rule": rule.state_dict(), "task": task.state_dict(),
                       "gen": gen, "opt": opt.state_dict()})
    ref = run(proj, rule, task, opt, 25, 2)
    proj2, rule2, task2, gen2, opt2 = make(0)
    proj2.load_state_dict(ckpt["w"])
    rule2.load_state_dict(ckpt["rule"])
    task2.load_state_dict(ckpt["task"])
    gen2.set_state(ckpt["gen"])
    opt2.load_state_dict(ckpt["opt"])
    got = run(proj2, rule2, task2, opt2, 25, 2)
    assert all(torch.equal(a, b) for a, b in zip(got, ref)) and ref[2].sum() > 0


def test_spiking_nrl_continues():
    def make(seed):
        net = _plastic_net(seed, batch=3)
        p = net.projections[0]
        return p, SpikingNRL([p], {p.name: 0.5}, 3), torch.optim.SGD([p.weight], lr=0.01)

    def run(p, rule, opt, steps, seed):
        g = torch.Generator().manual_seed(seed)
        for t in range(steps):
            rule.accumulate({"a": (torch.rand(3, 12, generator=g) < 0.3).double()},
                            {"b": torch.randn(3, 9, generator=g, dtype=F64)})
            if t % 4 == 3:
                rule.reinforce(torch.randn(3, generator=g, dtype=F64), torch.rand(3, generator=g) < 0.7)
                opt.step()
        return p.weight.detach().clone(), rule.elig[0].clone()

    p, rule, opt = make(0)
    run(p, rule, opt, 9, 1)
    ckpt = _roundtrip({"w": p.state_dict(), "rule": rule.state_dict(), "opt": opt.state_dict()})
    ref = run(p, rule, opt, 10, 2)
    p2, rule2, opt2 = make(0)
    p2.load_state_dict(ckpt["w"])
    rule2.load_state_dict(ckpt["rule"])
    opt2.load_state_dict(ckpt["opt"])
    got = run(p2, rule2, opt2, 10, 2)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))


def test_supervised_stream_continues():
    from neuroprobe.tasks import DigitsStream

    stream = DigitsStream(3, seed=1, label_delay=2)
    for _ in range(stream.num_samples - 3):  # the epoch boundary (new permutations) comes after the restore
        stream.next_delayed()
    ckpt = _roundtrip(stream.state_dict())
    ref = [stream.next_delayed() for _ in range(6)]
    fresh = DigitsStream(3, seed=9, label_delay=2)
    fresh.load_state_dict(ckpt)
    got = [fresh.next_delayed() for _ in range(6)]
    for r, g in zip(ref, got):
        assert all(torch.equal(a, b) for a, b in zip(r, g))
    assert fresh.epoch == stream.epoch == 1
