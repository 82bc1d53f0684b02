"""A new rule is one module with its config class: this file adds one and runs it through the loop.

The toy rule "return_push" moves every weight by lr · c · (episode return) at each episode end
(``.grad = −c · R``). After the run the weights must equal the initial weights plus lr · c · Σ R
over the returns written to metrics.csv, per seed: an independent check that the loop applies a
learner's ``.grad`` with the optimizer exactly once per update and reports what it learned from.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import ClassVar, Literal

import numpy as np
import pytest
import torch

from neuroprobe.config import RULE_CONFIGS, RuleConfig, register_rule
from neuroprobe.config.base import PosFloat
from neuroprobe.config.experiment import experiment_json_schema, invalidate
from neuroprobe.protocols import RunParts
from neuroprobe.rundir import load_checkpoint_file, read_metrics
from neuroprobe.runner import run_experiment


class PushAgent:
    """Acts greedily (argmax of the network's output) on the batch of seeds."""

    def __init__(self, net):
        self.net = net

    def act(self, obs):
        with torch.no_grad():
            return self.net(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()

    def parameters(self):
        return self.net.parameters()

    def constrain(self):
        pass

    def state_dict(self):
        return {"net": self.net.state_dict()}

    def load_state_dict(self, s):
        self.net.load_state_dict(s["net"])


class PushLearner:
    """At each counted episode end: .grad = −c · R_b for seed b's weights (0 for the other seeds)."""

    def __init__(self, net, c):
        self.net, self.c = net, c

    def learn(self, tr):
        fin = torch.as_tensor(tr.info["finished"])
        if not fin.any():
            return False
        R = torch.as_tensor(tr.info["return"], dtype=torch.float32) * fin
        for p in self.net.parameters():
            p.grad = (-self.c * R).reshape((-1,) + (1,) * (p.dim() - 1)).expand_as(p).clone()
        return True

    def end_step(self):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


class ReturnPushConfig(RuleConfig):
    """Toy rule: push every weight along +1 by the episode return."""

    families: ClassVar[tuple[str, ...]] = ("rl",)
    name: Literal["return_push"]
    c: PosFloat = 1e-4
    """Step per unit of return."""

    def build(self, exp, ctx):
        from neuroprobe.network import RateNetwork
        from neuroprobe.reporters import EpisodeReporter
        from neuroprobe.tasks import make_vector_env
        from neuroprobe.tasks.episodic import EpisodicVectorTask

        net = RateNetwork(exp.model_spec, batch=exp.seeds, generator=ctx.generator)
        envs = make_vector_env(exp.task.name, exp.seeds, seed=exp.seed)
        return RunParts(agent=PushAgent(net), learner=PushLearner(net, self.c),
                        task=EpisodicVectorTask(envs, exp.task.episodes),
                        reporter=EpisodeReporter(exp.seed, exp.seeds, exp.task.episodes, exp.run.rolling),
                        optimizer=torch.optim.SGD(net.parameters(), lr=exp.rule.lr), description="return push")


@pytest.fixture
def toy_rule():
    register_rule(ReturnPushConfig)
    yield
    RULE_CONFIGS.pop("return_push", None)
    invalidate()


CONFIG = """
name = "toy"
seeds = 2
[model]
sizes = [4, 8, 2]
[task]
name = "CartPole-v1"
episodes = 5
[rule]
name = "return_push"
lr = 0.5
c = 1e-3
[run]
progress = false
"""


def test_a_rule_defined_in_a_test_file_runs_through_the_loop(tmp_path, toy_rule):
    cfg = tmp_path / "toy.toml"
    cfg.write_text(CONFIG)
    run = run_experiment(cfg, out=tmp_path / "run", figures=False)
    m = read_metrics(run / "metrics.csv")
    assert len(m["episode"]) == 10
    total = {s: sum(r for r, ss in zip(m["return"], m["seed"]) if ss == s) for s in (0, 1)}
    from neuroprobe.network import RateNetwork
    from neuroprobe.config import load_experiment

    exp = load_experiment(cfg)
    init = RateNetwork(exp.model_spec, batch=2, generator=torch.Generator().manual_seed(0))
    final = load_checkpoint_file(run / "checkpoint.pt")["agent"]["net"]
    for name, w0 in init.state_dict().items():
        for s in (0, 1):
            want = w0[s].double() + 0.5 * 1e-3 * total[s]
            assert torch.allclose(final[name][s].double(), want, atol=1e-5), (name, s)
    assert json.loads((run / "summary.json").read_text())["episodes"] == 5


def test_the_new_rule_is_in_the_schema_and_unknown_rules_are_refused(tmp_path, toy_rule):
    names = json.dumps(experiment_json_schema())
    assert "return_push" in names
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace('"return_push"', '"return_pull"'))
    from neuroprobe.cli import main

    assert main(["run", str(cfg), "--out", str(tmp_path / "r")]) == 2


def test_schema_command_prints_valid_json_schema():
    out = subprocess.run([sys.executable, "-m", "neuroprobe.cli", "schema"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert schema["type"] == "object" and "rule" in schema["properties"] and "task" in schema["properties"]
    tags = json.dumps(schema)
    for name in ("nrl", "rmhl", "wp", "fg", "bp"):
        assert f'"{name}"' in tags
    assert np.isfinite(len(tags))
