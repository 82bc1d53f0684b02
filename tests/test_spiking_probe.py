"""Rule 'spiking_probe' (probe bundles on a spiking CartPole policy): the update against an independent
NumPy computation, antithetic cancellation, fitness shaping, resume, config errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.learners.spiking_probe import probe_summary
from neuroprobe.rules.spiking_probe import SpikingProbeRule, fitness, probe_assignment, synapse_probes
from neuroprobe.runner import run_experiment
from neuroprobe.spiking import SpikingNetwork
from neuroprobe.spiking.spec import spec_from_dict

TINY_NET = {
    "network": {"dt": 1e-3},
    "population": [
        {"name": "obs", "size": 3, "kind": "input"},
        {"name": "hid", "size": 5, "kind": "lif", "lif": {"tau_mem": 10e-3, "tau_syn": 5e-3}},
        {"name": "out", "size": 4, "kind": "lif", "lif": {"tau_mem": 10e-3, "tau_syn": 5e-3}},
    ],
    "projection": [
        {"pre": "obs", "post": "hid", "p": 1.0, "weight": 0.0, "weight_std": 0.5},
        {"pre": "hid", "post": "out", "p": 0.6, "weight": 0.0, "weight_std": 0.3},  # sparse: synapses != dense
    ],
}

CARTPOLE_NET = """
[network]
dt = 1e-3
[[population]]
name = "obs"
size = 8
kind = "input"
[[population]]
name = "hidden"
size = 12
kind = "lif"
[population.lif]
tau_mem = 10e-3
tau_syn = 5e-3
[[population]]
name = "out"
size = 4
kind = "lif"
[population.lif]
tau_mem = 10e-3
tau_syn = 5e-3
[[projection]]
pre = "obs"
post = "hidden"
p = 1.0
weight = 0.0
weight_std = 0.5
[[projection]]
pre = "hidden"
post = "out"
p = 1.0
weight = 0.0
weight_std = 0.3
"""

CARTPOLE_CFG = """
name = "probe_small"
seed = 3
[network]
file = "net.toml"
[task]
name = "spiking_cartpole"
episodes = 16
steps_per_action = 3
neurons_per_dim = 2
[rule]
name = "spiking_probe"
lr = 0.05
branches = 4
rank = 2
scale = 0.1
[run]
progress = false
checkpoint_every = 4
rolling = 6
"""


def _rule(B=6, null=2, rank=2, scale=0.07, fit="none", seed=5):
    net = SpikingNetwork(spec_from_dict(TINY_NET), torch.Generator().manual_seed(1), batch=B, dtype=torch.float64)
    rule = SpikingProbeRule(list(net.projections), B, rank=rank, scale=scale, fitness=fit, null_branches=null,
                            seed=seed)
    return net, rule


def _numpy_probes(rule):
    """Per projection (B, S) perturbations of every branch from the dictionaries' raw factors, in NumPy."""
    out = []
    for p, d in zip(rule.projections, rule.dictionaries):
        U, V = (t.numpy() for t in d.factors())
        dense = np.stack([d.coef * U[k] @ V[k].T for k in range(d.num_probes)])  # (K, n_post, n_pre)
        per_branch = np.zeros((rule.branches, p.n_synapses))
        for b in range(rule.branches):
            k = b - rule.null_branches
            if k >= 0:
                per_branch[b] = dense[k][p.post.numpy(), p.pre.numpy()]
        out.append(per_branch)
    return out


def test_update_equals_numpy_estimator():
    """θ.grad = −Σ_b (R_b − R̄) δw_b / (B σ²), δw_b read back from the weights the branches run with."""
    net, rule = _rule()
    rule.load_branch_weights()
    B, sigma = rule.branches, rule.scale
    deltas = [p.weight.detach().numpy() - th.detach().numpy()[None] for p, th in zip(rule.projections, rule.theta)]
    for got, want in zip(deltas, _numpy_probes(rule)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        assert np.all(got[:2] == 0)                      # the null branches play θ itself
        np.testing.assert_allclose(got[2::2], -got[3::2], atol=1e-15)  # ± pairs
    R = np.array([17.0, 40.0, 12.0, 95.0, 33.0, 21.0])
    steps = rule.update(torch.tensor(R))
    for th, d, step in zip(rule.theta, deltas, steps):
        want = ((R - R.mean())[:, None] * d).sum(0) / (B * sigma**2)
        np.testing.assert_allclose(step.numpy(), want, rtol=1e-10)
        np.testing.assert_allclose(th.grad.numpy(), -want, rtol=1e-10)
    opt = torch.optim.SGD(rule.theta, lr=0.1)
    before = [th.detach().clone() for th in rule.theta]
    opt.step()
    for th, b0, step in zip(rule.theta, before, steps):
        np.testing.assert_allclose((th.detach() - b0).numpy(), 0.1 * step.numpy(), rtol=1e-9)


@pytest.mark.parametrize("fit", ["none", "std", "rank"])
def test_antithetic_pairs_cancel_for_equal_returns(fit):
    net, rule = _rule(B=8, null=0, fit=fit)
    R = torch.tensor([5.0, 5.0, 80.0, 80.0, 12.0, 12.0, 500.0, 500.0])  # each ± pair scores the same
    for step in rule.update(R):
        assert float(step.abs().max()) < 1e-12
    R[0] = 6.0  # one pair differs: only that pair's probe moves θ
    steps = rule.update(R)
    assert float(steps[0].abs().max()) > 0


def test_fitness_shapes():
    R = torch.tensor([3.0, 9.0, 9.0, 1.0, 500.0])
    from scipy.stats import rankdata

    want = (rankdata(R.numpy()) - 1) / (len(R) - 1) - 0.5
    np.testing.assert_allclose(fitness(R, "rank").numpy(), want)
    adv = R.numpy() - R.numpy().mean()
    np.testing.assert_allclose(fitness(R, "none").numpy(), adv)
    np.testing.assert_allclose(fitness(R, "std").numpy(), adv / adv.std())
    assert torch.equal(fitness(torch.full((4,), 7.0), "std"), torch.zeros(4, dtype=torch.float64))


def test_synapse_probes_and_assignment():
    g = torch.Generator().manual_seed(0)
    U = torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
    V = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    post, pre = torch.tensor([0, 4, 2, 2]), torch.tensor([1, 0, 2, 0])
    D = synapse_probes(U, V, 0.3, post, pre)
    for k in range(4):
        dense = 0.3 * U[k] @ V[k].T
        assert torch.allclose(D[k], dense[post, pre])
    assert probe_assignment(5, 1, 2).tolist() == [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]


def test_new_probes_each_window_and_state():
    net, rule = _rule()
    w0 = [w.clone() for w in rule.branch_weights()]
    rule.end_window()
    w1 = rule.branch_weights()
    assert not torch.equal(w0[0], w1[0])
    _, other = _rule()
    other.load_state_dict(rule.state_dict())  # keyed probes: the window count is the whole state
    assert all(torch.equal(a, b) for a, b in zip(other.branch_weights(), w1))


def _write(tmp_path: Path, cfg: str = CARTPOLE_CFG) -> Path:
    (tmp_path / "net.toml").write_text(CARTPOLE_NET)
    (tmp_path / "exp.toml").write_text(cfg)
    return tmp_path / "exp.toml"


def test_run_rows_summary_and_resume(tmp_path):
    cfg = _write(tmp_path)
    full = run_experiment(cfg, out=tmp_path / "full", figures=False)
    lines = (full / "metrics.csv").read_text().splitlines()
    assert lines[0] == "episode,seed,generation,branch,return,length" and len(lines) == 1 + 16
    rows = [r.split(",") for r in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(16)) and {int(r[2]) for r in rows} == {0, 1, 2, 3}
    s = json.loads((full / "summary.json").read_text())
    assert s["episodes"] == 16 and s["generations"] == 4 and s["branches"] == 4
    ret = np.array([float(r[4]) for r in rows])
    assert s["mean"] == pytest.approx(ret[-6:].mean())
    # a shorter run resumed with the full budget writes the same rows
    part = run_experiment(cfg, ["task.episodes=8"], out=tmp_path / "part", figures=False)
    run_experiment(resume=part, overrides=["task.episodes=16"], figures=False)
    assert (part / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()


def test_budget_rounds_up_to_whole_generations(tmp_path):
    out = run_experiment(_write(tmp_path), ["task.episodes=5"], out=tmp_path / "r", figures=False)
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 8  # 2 generations of 4 branches


def test_stop_return_ends_the_run(tmp_path):
    cfg = _write(tmp_path)
    out = run_experiment(cfg, ["rule.stop_return=1.0"], out=tmp_path / "stop", figures=False)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 8  # 6 rolling episodes need two generations of 4
    s = json.loads((out / "summary.json").read_text())
    assert s["episodes_to_target"] is None  # the summary's target is CartPole's 475


def test_start_states_per_pair_and_shared():
    from neuroprobe.learners.spiking_probe import GenerationWindows, start_groups
    from neuroprobe.tasks import make_vector_env

    assert start_groups(7, 1).tolist() == [0, 1, 1, 2, 2, 3, 3]
    pairs = GenerationWindows(make_vector_env("CartPole-v1", 6, seed=0), 2, groups=start_groups(6, 0))
    obs, _ = pairs.reset(4)
    assert np.array_equal(obs[0], obs[1]) and np.array_equal(obs[4], obs[5]) and not np.array_equal(obs[0], obs[2])
    shared = GenerationWindows(make_vector_env("CartPole-v1", 6, seed=0), 2)
    obs2, _ = shared.reset(4)
    assert all(np.array_equal(o, obs2[0]) for o in obs2)
    assert np.array_equal(obs2[0], obs[0])  # group 0 starts where the shared generation does


def test_probe_summary_first_episode_at_target():
    ret = [10.0] * 4 + [480.0] * 4 + [490.0] * 4
    s = probe_summary({"seed": [0] * 12, "return": ret}, rolling=4, branches=4)
    assert s["episodes_to_target"] == 8 and s["generations_to_target"] == 2 and s["generations"] == 3
    assert probe_summary({"seed": [0] * 3, "return": [500.0] * 3}, rolling=4)["episodes_to_target"] is None
    # crossed inside a generation (after its first branches' rows) but not at its end: not counted
    ret = [10.0] * 4 + [500.0] * 3 + [0.0] + [500.0] * 4
    s = probe_summary({"seed": [0] * 12, "return": ret}, rolling=3, branches=4)
    assert s["episodes_to_target"] == 12 and s["generations_to_target"] == 3


@pytest.mark.parametrize("sets, needle", [
    (["rule.branches=5"], "leaves 5 perturbed branches"),
    (["rule.null_branches=1"], "leaves 3 perturbed branches"),
    (["seeds=2"], "'seeds' = 2"),
    (["rule.rank=5"], "'rule.rank' = 5: must be <= 4"),
    (["rule.fitness=best"], "rule.fitness"),
    (["rule.scale=0"], "rule.scale"),
    (["task.neurons_per_dim=3"], "size 12 (4 x task.neurons_per_dim = 3)"),
    (["run.rng=hash"], "'run.rng' = 'hash'"),
    (["run.backend=brian2"], "run.backend"),
])
def test_bad_config_values_are_one_line_errors(tmp_path, sets, needle):
    cfg = _write(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_experiment(cfg, sets)
    assert "\n" not in str(e.value) and needle in str(e.value)


def test_dale_signed_network_is_refused(tmp_path):
    cfg = _write(tmp_path)
    (tmp_path / "net.toml").write_text(CARTPOLE_NET.replace('kind = "input"', 'kind = "input"\nsign = "excitatory"'))
    with pytest.raises(ConfigError) as e:
        load_experiment(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "learns free-signed weights; population 'obs' has sign 'excitatory'" in msg


def test_shipped_config_loads_and_refuses_huge_bundles():
    cfg = Path(__file__).resolve().parents[1] / "experiments" / "spiking_cartpole_probe.toml"
    exp = load_experiment(cfg)
    assert exp.rule.name == "spiking_probe" and exp.rule.branches == 32 and exp.task.episodes == 12800
    with pytest.raises(ConfigError) as e:
        load_experiment(cfg, ["rule.branches=100000", "rule.rank=20"])
    assert "\n" not in str(e.value) and "would hold about" in str(e.value) and "rule.branches = 100000" in str(e.value)


def test_rule_constructor_errors():
    net = SpikingNetwork(spec_from_dict(TINY_NET), torch.Generator().manual_seed(1), batch=4)
    with pytest.raises(ConfigError, match="per-branch weights"):
        SpikingProbeRule(list(net.projections), 6)
    with pytest.raises(ConfigError, match="rule.rank = 4"):
        SpikingProbeRule(list(net.projections), 4, rank=4)
    with pytest.raises(ConfigError, match="even"):
        SpikingProbeRule(list(net.projections), 4, null_branches=1)
    with pytest.raises(ConfigError, match="rule.fitness"):
        SpikingProbeRule(list(net.projections), 4, fitness="max")
