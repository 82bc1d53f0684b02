"""Rule 'probe' on the delayed-label digits stream: metrics, resume, the label FIFO, config errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neuroprobe.errors import ConfigError
from neuroprobe.experiments.build import network_spec
from neuroprobe.experiments.config import load_config, validate
from neuroprobe.experiments.runner import run_experiment
from neuroprobe.network import RateNetwork
from neuroprobe.rules.probe import ProbeRule

ROOT = Path(__file__).resolve().parents[1]
B, S = 8, 4


def _toml(tmp_path: Path, delay: int = 0, extra: str = "") -> Path:
    text = f"""name = "probe_digits_test"
seed = 3
[model]
sizes = [64, 16, 10]
[task]
name = "digits"
steps = 8
batch = {S}
eval_every = 2
label_delay = {delay}
[rule]
name = "probe"
lr = 0.05
branches = {B}
num_probes = 4
scale = 0.1
{extra}
[modulator]
scale = "std"
[run]
checkpoint_every = 2
progress = false
"""
    p = tmp_path / f"probe_digits_{delay}.toml"
    p.write_text(text)
    return p


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["net"]


def test_run_writes_metrics(tmp_path):
    out = run_experiment(_toml(tmp_path, delay=1), out=tmp_path / "a", figures=True)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,accuracy,train_loss,train_accuracy,forward_passes" and len(lines) == 5
    rows = [ln.split(",") for ln in lines[1:]]
    assert [int(r[0]) for r in rows] == [2, 4, 6, 8]
    assert [int(r[4]) for r in rows] == [2 * B * S, 4 * B * S, 6 * B * S, 8 * B * S]
    assert all(0 <= float(r[1]) <= 1 and float(r[2]) > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "test accuracy" and summary["steps"] == 8
    assert summary["final"] == float(rows[-1][1])
    assert (out / "learning_curve.png").is_file()


@pytest.mark.parametrize("delay, extra", [(3, ""), (2, 'regime = "semi_persistent"\nhistory = 3\ndecay = 0.7'),
                                          (2, 'regime = "learned_subspace"\nhistory = 3\nkernel = "cascade"\n'
                                              'kernel_order = 3\nkernel_delay = 2.0')],
                         ids=["pure", "semi_persistent", "learned_cascade"])
def test_resume_after_interruption_is_byte_identical(tmp_path, delay, extra):
    """Stopped after step 6 with its last checkpoint at step 4 (D windows in the FIFO), resumed to 8."""
    cfg = _toml(tmp_path, delay, extra)
    full = run_experiment(cfg, out=tmp_path / "full", figures=False)
    part = run_experiment(cfg, out=tmp_path / "part", figures=False, overrides=["task.steps=6"])
    four = run_experiment(cfg, out=tmp_path / "four", figures=False, overrides=["task.steps=4"])
    assert len(torch.load(four / "checkpoint.pt", weights_only=False)["pending"]) == delay
    (part / "checkpoint.pt").write_bytes((four / "checkpoint.pt").read_bytes())
    run_experiment(resume=part, overrides=["task.steps=8"], figures=False)
    assert (part / "metrics.csv").read_text() == (full / "metrics.csv").read_text()
    wf, wp = _weights(full), _weights(part)
    assert all(torch.equal(wf[k], wp[k]) for k in wf)


def test_delayed_update_meets_the_probes_of_its_window(tmp_path, monkeypatch):
    """D = 3: no update during steps 0..2; the update at step 3 equals the D = 0 update of step 0
    (same inputs, same A, same probes, although the live probes at step 3 are window 3's)."""
    cfg = load_config(_toml(tmp_path, 3))
    init = RateNetwork(network_spec(cfg), generator=torch.Generator().manual_seed(cfg["seed"])).state_dict()
    d3_three = _weights(run_experiment(_toml(tmp_path, 3), out=tmp_path / "d3a", overrides=["task.steps=3"],
                                       figures=False))
    assert all(torch.equal(d3_three[k], init[k]) for k in init)  # nothing credited, nothing written
    d3_four = _weights(run_experiment(_toml(tmp_path, 3), out=tmp_path / "d3b", overrides=["task.steps=4"],
                                      figures=False))
    d0_one = _weights(run_experiment(_toml(tmp_path, 0), out=tmp_path / "d0a", overrides=["task.steps=1"],
                                     figures=False))
    w = "layers.0.weight"
    assert not torch.equal(d0_one[w], init[w])  # the step-0 update is not empty
    assert all(torch.equal(d3_four[k], d0_one[k]) for k in init)
    # the check has teeth: crediting window 0's outcomes to the live (window 3) probes differs
    update = ProbeRule.update
    monkeypatch.setattr(ProbeRule, "update", lambda self, out, A, dictionaries=None: update(self, out, A))
    live = _weights(run_experiment(_toml(tmp_path, 3), out=tmp_path / "live", overrides=["task.steps=4"],
                                   figures=False))
    assert not torch.equal(live[w], d0_one[w])


def _raw(task: dict, rule: dict | None = None, sizes=(64, 16, 10)) -> dict:
    return {"name": "t", "seed": 0, "model": {"sizes": list(sizes)}, "task": task,
            "rule": rule or {"name": "probe", "lr": 0.01}}


@pytest.mark.parametrize("raw, words", [
    (_raw({"name": "digits", "label_delay": -1}), ["task.label_delay", ">= 0"]),
    (_raw({"name": "digits", "label_delay": 2.5}), ["task.label_delay", "integer"]),
    (_raw({"name": "digits", "label_delay": 2}, {"name": "cet", "lr": 0.01}), ["task.label_delay", "rule.delay"]),
    (_raw({"name": "CartPole-v1", "label_delay": 2}, sizes=(4, 8, 2)), ["task.label_delay", "task.reward_delay"]),
])
def test_bad_label_delay_is_a_one_line_config_error(raw, words):
    with pytest.raises(ConfigError) as e:
        validate(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_probe_is_a_supervised_rule_and_example_config_loads():
    cfg = validate(_raw({"name": "digits", "label_delay": 4}))
    assert cfg["kind"] == "supervised" and cfg["task"]["label_delay"] == 4
    assert validate(_raw({"name": "digits"}))["task"]["label_delay"] == 0
    cfg = load_config(ROOT / "experiments" / "probe_digits.toml")
    assert cfg["rule"]["name"] == "probe" and cfg["task"]["name"] == "digits" and cfg["task"]["label_delay"] == 0
