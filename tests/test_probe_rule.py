"""Rule 'probe' in RL: config, batched branch forward, common random numbers (one window driven
through the loop's parts), determinism and resume of the stateful probe regimes, gradient alignment
and sign convention. (The pure regime's golden metrics and resume after SIGKILL, and the config
checks shared with digits, are in test_loop_supervised_probe.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neuroprobe.align import align_config
from neuroprobe.cli import main
from neuroprobe.errors import ConfigError
from neuroprobe.config import load_experiment, validate_experiment
from neuroprobe.learners.probe import ProbeWindowAgent
from neuroprobe.network import NetworkSpec, RateNetwork
from neuroprobe.rules.estimators import log_prob_of
from neuroprobe.rules.probe import ProbeRule, inverse_cdf_actions, probed_sweep
from neuroprobe.rundir import load_checkpoint_file
from neuroprobe.runner import run_experiment
from neuroprobe.tasks import make_vector_env
from neuroprobe.tasks.probe_windows import CommonSeedWindows

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ROOT / "experiments" / "probe_cartpole.toml"


def _raw(**rule) -> dict:
    return {"name": "p", "seed": 0, "model": {"sizes": [4, 8, 2]}, "task": {"name": "CartPole-v1", "episodes": 3},
            "rule": {"name": "probe", "lr": 1e-2, **rule}, "run": {"progress": False}}


# --------------------------------------------------------------------------- config


def test_config_defaults_and_example_file():
    r = validate_experiment(_raw()).rule
    assert (r.branches, r.num_probes, r.rank, r.scheduler, r.baseline, r.kernel) == (32, 8, 1, "random", "null", "none")
    assert r.antithetic is True and r.regime == "pure" and r.noise_std == 0.0
    exp = load_experiment(CARTPOLE)
    assert exp.modulator.scale == "std" and exp.family == "rl"
    assert exp.rule.name == "probe" and exp.seeds == 1 and list(exp.model_spec.sizes) == [4, 64, 2]


# (scheduler, num_probes parity, null baseline without null branches, no perturbed branch,
# kernel_delay vs history, null_fraction = 1 and seeds are checked in test_loop_supervised_probe.py)
@pytest.mark.parametrize("raw, words", [
    (_raw(kernel="exp"), ["'rule.kernel'", "cascade"]),
    (_raw(regime="fixed"), ["'rule.regime'", "semi_persistent"]),
    (_raw(baseline="median"), ["'rule.baseline'", "mean"]),
    (_raw(branches=0), ["'rule.branches'", ">= 1"]),
    (_raw(scale=-0.1), ["'rule.scale'", "> 0"]),
    (_raw(decay=1.5), ["'rule.decay'", "<= 1"]),
    (_raw(noise_std=-1.0), ["'rule.noise_std'", ">= 0"]),
    (_raw(antithetic="yes"), ["'rule.antithetic'", "true or false"]),
    (_raw(history=2.5), ["'rule.history'", "integer"]),
    (_raw(kernel="cascade", history=3, kernel_delay=4.0), ["'rule.kernel_delay' = 4.0", "rule.history - 1 = 2"]),
    (_raw(bogus=1), ["unknown key", "rule.bogus"]),
])
def test_config_errors_are_one_line(raw, words):
    with pytest.raises(ConfigError) as e:
        validate_experiment(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_mean_baseline_without_null_branches_is_valid():
    r = validate_experiment(_raw(baseline="mean", null_fraction=0.0, antithetic=False, num_probes=3)).rule
    assert r.null_fraction == 0.0 and r.num_probes == 3


# --------------------------------------------------------------------------- batched forward


@pytest.mark.parametrize("rank, bias", [(1, False), (3, True)])
def test_batched_branch_forward_equals_materialised(rank, bias):
    gen = torch.Generator().manual_seed(1)
    net = RateNetwork(NetworkSpec([5, 7, 6, 3], bias=bias), generator=gen, dtype=torch.float64)
    if bias:
        for layer in net.layers:
            layer.bias.data.normal_(generator=gen)
    rule = ProbeRule(net, branches=12, num_probes=4, rank=rank, scale=0.3, null_fraction=0.25, seed=3)
    A = rule.assignment()
    assert (A == 0).all(1).sum() == 3 and (A != 0).any()
    x = torch.randn(12, 4, 5, generator=gen, dtype=torch.float64)  # 4 states per branch
    got = probed_sweep(net, x, A, rule.dictionaries)
    for b in range(12):
        ws = [layer.weight + d.delta(int(A[b, l])) for l, (layer, d) in enumerate(zip(net.layers, rule.dictionaries))]
        ref = net.sweep(x[b], weights=ws)
        torch.testing.assert_close(got.logits[b], ref.logits, atol=1e-10, rtol=0)
        torch.testing.assert_close(got.output[b], ref.output, atol=1e-10, rtol=0)
        for h, hr in zip(got.preacts, ref.preacts):
            torch.testing.assert_close(h[b], hr, atol=1e-10, rtol=0)
    # and through the (B, n_in) path the runner uses
    one = probed_sweep(net, x[:, 0], A, rule.dictionaries).output
    torch.testing.assert_close(one, got.output[:, 0], atol=1e-12, rtol=0)


def test_inverse_cdf_actions():
    probs = torch.tensor([[0.2, 0.8], [0.2, 0.8], [0.9, 0.1], [0.0, 1.0]])
    assert inverse_cdf_actions(probs, 0.1).tolist() == [0, 0, 0, 1]
    assert inverse_cdf_actions(probs, 0.5).tolist() == [1, 1, 0, 1]
    # over many uniforms the samples follow the policy
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = inverse_cdf_actions(torch.tensor([[0.3, 0.7]]).expand(20000, 2), u.unsqueeze(-1))
    assert abs(float(a.double().mean()) - 0.7) < 0.02


# --------------------------------------------------------------------------- common random numbers


def run_window(rule: ProbeRule, envs, assignment: torch.Tensor, seed: int, generator: torch.Generator):
    """One window (episode) of all B branches with a given assignment, driven through the loop's parts
    (the common-seed window task and the probe agent); returns (returns (B,), lengths (B,))."""
    task = CommonSeedWindows(envs, windows=1)
    agent = ProbeWindowAgent(rule, generator)
    agent.assignment, agent.new_window = assignment, False
    obs, _ = task.reset(seed)
    while True:
        obs, _, _, _, info = task.step(agent.act(obs))
        if info["window_end"]:
            assert task.finished() and info["window"] == 0
            return info["return"], info["length"]


@pytest.mark.parametrize("noise_std", [0.0, 0.05])
def test_common_random_numbers(noise_std):
    gen = torch.Generator().manual_seed(0)
    net = RateNetwork(NetworkSpec([4, 16, 2]), generator=gen)
    B = 8
    rule = ProbeRule(net, branches=B, num_probes=4, scale=0.5, null_fraction=0.5, noise_std=noise_std, seed=0)
    envs = make_vector_env("CartPole-v1", B, seed=0)
    # all-null assignment: every branch is the same policy, so every trajectory is identical
    ret, length = run_window(rule, envs, torch.zeros(B, 2, dtype=torch.long), 123, gen)
    assert (ret == ret[0]).all() and (length == length[0]).all()
    # a scheduled window: the 4 null branches agree, the probed ones (σ = 0.5) differ somewhere
    A = rule.assignment()
    null = (A == 0).all(1).numpy()
    ret, length = run_window(rule, envs, A, 123, gen)
    assert null.sum() == 4 and len(set(ret[null])) == 1 and len(set(length[null])) == 1
    assert len(set(ret)) > 1
    envs.close()


# --------------------------------------------------------------------------- runs


def _toml(tmp_path: Path, extra: str = "") -> Path:
    text = f"""name = "probe_test"
seed = 4
[model]
file = "{(ROOT / 'models' / 'mlp_4_64_2.toml').as_posix()}"
[task]
name = "CartPole-v1"
episodes = 6
[rule]
name = "probe"
lr = 1e-2
branches = 8
num_probes = 4
scale = 0.1
{extra}
[run]
checkpoint_every = 2
progress = false
"""
    p = tmp_path / "probe.toml"
    p.write_text(text)
    return p


# the pure regime (golden metrics, SIGKILL resume, resume with a larger budget) is in test_loop_supervised_probe.py
VARIANTS = [
    'scheduler = "uncertainty"\nregime = "semi_persistent"\nhistory = 3\ndecay = 0.5\nnoise_std = 0.05',
    'scheduler = "round_robin"\nregime = "learned_subspace"\nhistory = 4\nkernel = "cascade"\nkernel_order = 3\n'
    'kernel_delay = 2.0\nbaseline = "mean"\nnull_fraction = 0.0\nantithetic = false',
]


@pytest.mark.parametrize("extra", VARIANTS, ids=["semi_persistent", "learned_cascade_mean"])
def test_determinism_and_resume(tmp_path, extra):
    cfg_path = _toml(tmp_path, extra)
    a = run_experiment(cfg_path, out=tmp_path / "a", figures=False)
    b = run_experiment(cfg_path, out=tmp_path / "b", figures=False)
    ma = (a / "metrics.csv").read_text()
    assert ma == (b / "metrics.csv").read_text()
    lines = ma.splitlines()
    assert lines[0] == "episode,seed,return,length,forward_passes" and len(lines) == 7
    assert [ln.split(",")[1] for ln in lines[1:]] == ["4"] * 6
    # stopped after 5 windows with its last checkpoint at window 4 (the probes' state of a later window
    # than the rows it covers), then resumed to 6: window 5 is recomputed, byte-identical
    c = run_experiment(cfg_path, out=tmp_path / "c", figures=False, overrides=["task.episodes=5"])
    assert len((c / "metrics.csv").read_text().splitlines()) == 6
    four = run_experiment(cfg_path, out=tmp_path / "four", figures=False, overrides=["task.episodes=4"])
    (c / "checkpoint.pt").write_bytes((four / "checkpoint.pt").read_bytes())
    run_experiment(resume=c, overrides=["task.episodes=6"], figures=False)
    assert (c / "metrics.csv").read_text() == ma
    wa = load_checkpoint_file(a / "checkpoint.pt")["agent"]["net"]
    wc = load_checkpoint_file(c / "checkpoint.pt")["agent"]["net"]
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    summary = json.loads((a / "summary.json").read_text())
    assert summary["episodes"] == 6


# --------------------------------------------------------------------------- alignment and sign


def test_alignment_with_autograd_gradient_cartpole():
    exp = load_experiment(CARTPOLE, ["rule.branches=64", "rule.num_probes=56", "rule.scale=0.01"])
    cos = align_config(exp, samples=16000, n_states=8)
    assert set(cos) == {"fc1", "fc2"}
    assert min(cos.values()) >= 0.9, cos


def test_align_cli_json(capsys):
    rc = main(["align", str(CARTPOLE), "--json", "--samples", "64", "--states", "4"])
    out = capsys.readouterr().out
    assert rc in (0, None)
    res = json.loads(out)
    assert set(res) == {"fc1", "fc2"} and all(-1 <= v <= 1 for v in res.values())


def test_sign_convention_update_increases_objective():
    """outcome = J(W + ΔW_b) (reward: higher is better); grad = −Δθ; SGD ascends J."""
    gen = torch.Generator().manual_seed(0)
    net = RateNetwork(NetworkSpec([3, 6, 2]), generator=gen, dtype=torch.float64)
    T = 16
    s = torch.randn(T, 3, generator=gen, dtype=torch.float64)
    a = torch.randint(0, 2, (T,), generator=gen)
    adv = torch.randn(T, generator=gen, dtype=torch.float64)
    rule = ProbeRule(net, branches=64, num_probes=32, scale=1e-2, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)

    @torch.no_grad()
    def J(weights=None):
        return float((adv * log_prob_of(net.sweep(s.unsqueeze(-2), weights=weights).logits, a)[:, 0]).sum())

    with torch.enable_grad():
        obj = (adv * log_prob_of(net.sweep(s.unsqueeze(-2)).logits, a)[:, 0]).sum()
        g = torch.autograd.grad(obj, [layer.weight for layer in net.layers])
    j = [J()]
    x = s.unsqueeze(0).expand(64, T, 3)
    for w in range(5):
        A = rule.assignment()
        with torch.no_grad():
            out = (adv * log_prob_of(probed_sweep(net, x, A, rule.dictionaries).logits.unsqueeze(-2),
                                     a.expand(64, T))[..., 0]).sum(-1)
        rule.update(out, A)
        if w == 0:  # −grad points uphill
            assert sum(float((-layer.weight.grad * gl).sum()) for layer, gl in zip(net.layers, g)) > 0
        opt.step()
        rule.end_window()
        j.append(J())
    assert j[-1] > j[0] + 1e-3 and sum(b > a_ for a_, b in zip(j, j[1:])) >= 4, j
