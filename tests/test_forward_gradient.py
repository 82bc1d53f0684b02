"""Forward-gradient rule: the jvp directional derivative against autograd, the unbiased expected
update against the autograd gradient, the model axis, config/build wiring, the CLI and a short run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroprobe.align import alignment
from neuroprobe.config import RULE_CONFIGS, load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.learners.rate_rl import FGConfig
from neuroprobe.modulators.rpe import RewardPredictionError
from neuroprobe.network import build_network
from neuroprobe.runner import run_experiment
from neuroprobe.rules import RL_RULES, ForwardGradient, directional_derivative, fg_step, log_prob_of

ROOT = Path(__file__).resolve().parents[1]
FG_CFG = ROOT / "experiments" / "fg_cartpole.toml"
SPEC = {"sizes": [4, 16, 3], "activation": "tanh", "readout": "softmax", "bias": True}


def _autograd_log_pi(net, obs, actions):
    """∇ log π(a_t|s_t) per state by autograd, as a list (per state) of lists (per parameter)."""
    out = []
    for t in range(obs.shape[0]):
        lp = log_prob_of(net.sweep(obs[t:t + 1].unsqueeze(-2)).logits, actions[t:t + 1]).sum()
        out.append(torch.autograd.grad(lp, list(net.parameters())))
    return out


def test_jvp_directional_derivative_equals_autograd():
    net = build_network(SPEC, seed=0).double()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(6, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 3, (6,), generator=g)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in net.parameters()]
    with torch.no_grad():
        d = directional_derivative(net, obs, actions, v)
    exact = torch.stack([sum((gi * vi).sum() for gi, vi in zip(grads, v))
                         for grads in _autograd_log_pi(net, obs, actions)])
    assert torch.allclose(d, exact, rtol=0, atol=1e-10)


def test_fg_step_increment_is_mean_of_directional_projections():
    """fg_step's increment equals (1/K) Σ_k (∇log π · v_k) v_k with the same tangents, ∇ by autograd."""
    net = build_network(SPEC, seed=0).double()
    obs = torch.randn(3, 4, dtype=torch.float64)
    actions = torch.tensor([0, 2, 1])
    K = 4
    g1 = torch.Generator().manual_seed(5)
    with torch.no_grad():
        a, incs = fg_step(net, obs, K, g1, actions=actions)
    assert torch.equal(a, actions)
    # redraw the same tangents: fg_step draws them first (actions given), in parameter order
    g2 = torch.Generator().manual_seed(5)
    params = list(net.parameters())
    v = [torch.randn((3, K) + tuple(p.shape), generator=g2, dtype=torch.float64) for p in params]
    grads = _autograd_log_pi(net, obs, actions)
    for i, p in enumerate(params):
        for t in range(3):
            d = torch.stack([sum((grads[t][j] * v[j][t, k]).sum() for j in range(len(params))) for k in range(K)])
            expect = (d.reshape((K,) + (1,) * p.dim()) * v[i][t]).sum(0) / K
            assert torch.allclose(incs[i][t], expect, rtol=0, atol=1e-10)


def test_expected_update_aligns_with_autograd():
    net = build_network(SPEC, seed=0)
    g = torch.Generator().manual_seed(2)
    states = torch.randn(16, 4, generator=g)
    cos = alignment(net, "fg", states, samples=6000, noise_std=1e-3, generator=g)
    assert set(cos) == {"fc1", "fc2"}
    assert min(cos.values()) >= 0.9, cos
    few = alignment(net, "fg", states, samples=5, noise_std=1e-3, generator=g)
    assert min(few.values()) < 0.9  # the test can fail: few samples are far from the gradient


def test_model_axis_and_rule_act_reinforce():
    M = 3
    net = build_network(SPEC, batch=M, seed=0)
    g = torch.Generator().manual_seed(0)
    rule = ForwardGradient(net, passes=2, generator=g)
    obs = torch.randn(M, 4)
    a = rule.act(obs)
    assert a.shape == (M,) and a.dtype == torch.long
    for e, p in zip(rule.elig, net.parameters()):
        assert e.shape == p.shape and torch.isfinite(e).all() and e.abs().sum() > 0
    # each model's increment uses its own weights: equal to the single-model computation on model m
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    with torch.no_grad():
        _, incs = fg_step(net, obs, 2, g1, actions=a)
    single = build_network(SPEC, seed=0)
    for m in range(M):
        with torch.no_grad():
            for ps, pm in zip(single.parameters(), net.parameters()):
                ps.copy_(pm[m])
            # same tangents as model m's slice of the batched draw
            g2.manual_seed(9)
            v = [torch.randn((M, 2) + tuple(p.shape[1:]), generator=g2) for p in net.parameters()]
            d = torch.stack([directional_derivative(single, obs[m], a[m], [vi[m, k] for vi in v]) for k in range(2)])
            for inc, vi in zip(incs, v):
                expect = (d.reshape((2,) + (1,) * (vi.dim() - 2)) * vi[m]).sum(0) / 2
                assert torch.allclose(inc[m], expect, atol=1e-5)
    elig = [e.clone() for e in rule.elig]
    mask = torch.tensor([True, False, True])
    delta = rule.reinforce(torch.tensor([1.0, 2.0, 3.0]), mask)
    for p, e in zip(rule.params, elig):
        assert torch.allclose(p.grad, -delta.float().reshape((M,) + (1,) * (p.dim() - 1)) * e)
    assert all(e[1].abs().sum() > 0 and e[0].abs().sum() == 0 for e in rule.elig)


def test_registry_config_and_build():
    assert RL_RULES["fg"] is ForwardGradient and ForwardGradient.name == "fg" and RULE_CONFIGS["fg"] is FGConfig
    exp = load_experiment(FG_CFG)
    assert isinstance(exp.rule, FGConfig) and exp.family == "rl"
    assert exp.rule.model_dump() == {"name": "fg", "lr": 1e-2, "passes": 1}
    net = build_network(exp.model_spec, batch=exp.seeds, seed=0)
    m = exp.modulator
    rpe = RewardPredictionError(batch=exp.seeds, smoothing=m.smoothing, scale=m.scale, init=m.init)
    rule = exp.rule.make_rule(net, rpe, torch.Generator().manual_seed(0))
    assert isinstance(rule, ForwardGradient) and rule.passes == 1 and rule.net is net and rule.rpe is rpe
    with pytest.raises(ConfigError, match=r"'rule.passes' = 0"):
        load_experiment(FG_CFG, ["rule.passes=0"])
    with pytest.raises(ConfigError, match=r"unknown key 'rule.noise_std'"):
        load_experiment(FG_CFG, ["rule.noise_std=0.1"])
    with pytest.raises(ConfigError, match="rule.passes"):
        ForwardGradient(net, passes=0)


def test_align_cli_json():
    proc = subprocess.run([sys.executable, "-m", "neuroprobe.cli", "align", str(FG_CFG), "--json", "--samples", "500",
                           "--states", "16"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"fc1", "fc2"} and all(-1 <= c <= 1 for c in out.values())


def test_five_episode_run(tmp_path):
    path = run_experiment(FG_CFG, overrides=["task.episodes=5", "seeds=2", "run.progress=false"], out=tmp_path / "r",
                          figures=False)
    lines = (path / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 5 * 2


def test_five_episode_run_on_cue_delay(tmp_path):
    cfg_text = FG_CFG.read_text().replace('file = "../models/mlp_4_64_2.toml"', "sizes = [7, 16, 2]") \
        .replace('name = "CartPole-v1"', 'name = "CueDelay-v0"')
    p = tmp_path / "fg_cue.toml"
    p.write_text(cfg_text)
    path = run_experiment(p, overrides=["task.episodes=5", "seeds=2", "run.progress=false"], out=tmp_path / "r", figures=False)
    rows = (path / "metrics.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == 10
    assert all(r.split(",")[2] in ("1.0", "-1.0") and r.split(",")[3] == "18" for r in rows)
