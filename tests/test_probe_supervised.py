"""Rule 'probe' on the delayed-label digits stream: metrics, resume of the semi-persistent regime, the
label FIFO, config errors. (Golden metrics and resume after SIGKILL of the pure and learned-subspace
regimes are in test_loop_supervised_probe.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neuroprobe.config import load_experiment, validate_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.network import RateNetwork
from neuroprobe.rules.probe import ProbeRule
from neuroprobe.rundir import load_checkpoint_file
from neuroprobe.runner import run_experiment

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
    return load_checkpoint_file(run / "checkpoint.pt")["agent"]["net"]


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


# the pure and learned-subspace/cascade regimes: test_loop_supervised_probe.py (SIGKILL and resume)
@pytest.mark.parametrize("delay, extra", [(2, 'regime = "semi_persistent"\nhistory = 3\ndecay = 0.7')],
                         ids=["semi_persistent"])
def test_resume_after_interruption_is_byte_identical(tmp_path, delay, extra):
    """Stopped after step 6 with its last checkpoint at step 4 (D windows in the FIFO), resumed to 8."""
    cfg = _toml(tmp_path, delay, extra)
    full = run_experiment(cfg, out=tmp_path / "full", figures=False)
    part = run_experiment(cfg, out=tmp_path / "part", figures=False, overrides=["task.steps=6"])
    four = run_experiment(cfg, out=tmp_path / "four", figures=False, overrides=["task.steps=4"])
    assert len(load_checkpoint_file(four / "checkpoint.pt")["learner"]["pending"]) == delay
    (part / "checkpoint.pt").write_bytes((four / "checkpoint.pt").read_bytes())
    run_experiment(resume=part, overrides=["task.steps=8"], figures=False)
    assert (part / "metrics.csv").read_text() == (full / "metrics.csv").read_text()
    wf, wp = _weights(full), _weights(part)
    assert all(torch.equal(wf[k], wp[k]) for k in wf)


def test_delayed_update_meets_the_probes_of_its_window(tmp_path, monkeypatch):
    """D = 3: no update during steps 0..2; the update at step 3 equals the D = 0 update of step 0
    (same inputs, same A, same probes, although the live probes at step 3 are window 3's)."""
    exp = load_experiment(_toml(tmp_path, 3))
    init = RateNetwork(exp.model_spec, generator=torch.Generator().manual_seed(exp.seed)).state_dict()
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


# (label_delay with rule 'cet': test_loop_supervised_probe.py::test_cet_config_checks)
@pytest.mark.parametrize("raw, words", [
    (_raw({"name": "digits", "label_delay": -1}), ["'task.label_delay' = -1", ">= 0"]),
    (_raw({"name": "digits", "label_delay": 2.5}), ["'task.label_delay' = 2.5", "integer"]),
    (_raw({"name": "CartPole-v1", "label_delay": 2}, sizes=(4, 8, 2)), ["unknown key 'task.label_delay'"]),
])
def test_bad_label_delay_is_a_one_line_config_error(raw, words):
    with pytest.raises(ConfigError) as e:
        validate_experiment(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_probe_is_a_supervised_rule_and_example_config_loads():
    exp = validate_experiment(_raw({"name": "digits", "label_delay": 4}))
    assert exp.family == "supervised" and exp.task.label_delay == 4
    assert validate_experiment(_raw({"name": "digits"})).task.label_delay == 0
    exp = load_experiment(ROOT / "experiments" / "probe_digits.toml")
    assert exp.rule.name == "probe" and exp.task.name == "digits" and exp.task.label_delay == 0
