"""``neuroprobe run … --backend event``: the event-driven engine through the run loop.

* float64 with hash noise: the same files as the torch engine with ``run.rng = "hash"`` (identical
  spikes, the same metrics rows up to the last bits of the weights, ``neuroprobe compare`` agrees);
* fixed point: metrics.csv byte-identical to the torch fixed-point engine (the same integers);
* a run stopped at a checkpoint and resumed writes the same bytes as an uninterrupted one;
* what the event engine cannot run or record is one line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from neuroprobe.monitors import load_recordings
from neuroprobe.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
# one second, 3 trials, a wide coincidence window and short reward delays: rewards are delivered
SHORT = ["run.progress=false", "task.duration=1.0", "task.report_every=0.25", "run.record_last=0.3", "seeds=3",
         "rule.order=6", "rule.delay=0.2", "rule.lr=0.05", "task.delay_min=0.02", "task.delay_max=0.1",
         "task.window=0.1"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(tmp_path: Path, name: str, config: str, overrides: list[str]) -> Path:
    return run_experiment(EXP / config, overrides=SHORT + overrides, out=tmp_path / name, figures=False)


@pytest.fixture(scope="module")
def float_pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("event_float")
    common = ["run.dtype=float64", "run.rng=hash"]
    torch_dir = _run(tmp, "torch", "distal_reward.toml", common + ["run.backend=torch", "run.propagation=event"])
    event_dir = _run(tmp, "event", "distal_reward.toml", common + ["run.backend=event"])
    return torch_dir, event_dir


def test_float64_event_run_writes_the_torch_engines_files(float_pair):
    a, b = float_pair
    names = {p.name for p in a.iterdir()} - {"lock"}
    assert names <= {p.name for p in b.iterdir()}
    ra, rb = _rows(a / "metrics.csv"), _rows(b / "metrics.csv")
    assert len(ra) == len(rb) == 12 and list(ra[0]) == list(rb[0])
    rewards = 0
    for x, y in zip(ra, rb):
        for k in ("time", "seed", "rewards", "coincidences", "rate_exc", "rate_inh"):
            assert x[k] == y[k], (k, x, y)  # spike counts and the protocol: exactly the same
        for k in ("w_rewarded", "w_mean", "w_p99", "rank"):
            assert float(y[k]) == pytest.approx(float(x[k]), rel=1e-12, abs=1e-15), (k, x, y)
        rewards += int(x["rewards"])
    assert rewards > 0  # the protocol delivered rewards: the weights moved under dopamine
    ea, eb = load_recordings(a / "recordings.npz"), load_recordings(b / "recordings.npz")
    assert set(ea) <= set(eb) and all(k.startswith("meta/") for k in set(eb) - set(ea))
    assert str(eb["meta/backend"]) == "event"
    for k in ea:
        if k.startswith("spikes/") or k.startswith("time/") or k.startswith("indices/"):
            np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)
        elif ea[k].dtype.kind == "f":
            np.testing.assert_allclose(eb[k], ea[k], rtol=1e-6, atol=1e-7, err_msg=k)  # recorded as float32
    assert ea["spikes/exc"].sum() > 0


def test_compare_reports_the_two_engines_agree(float_pair, capsys):
    a, b = float_pair
    rc, out, err = run_cli(["compare", str(a), str(b)], capsys)
    assert rc == 0, err
    assert "spikes" in out


def test_event_checkpoint_deploys_the_same_trained_weights_as_torch(float_pair):
    """deploy/quantisation_check read an event run's trained weights (its simulator's W) as the torch
    network's projection weights: equal to the torch run's, which learned the same (float64, hash)."""
    from neuroprobe.config import load_experiment
    from neuroprobe.deploy import quantisation_check, trained_network_state
    from neuroprobe.rundir import load_checkpoint_file

    a, b = float_pair
    exp = load_experiment(b / "config.toml", [])
    wa = trained_network_state(load_checkpoint_file(a / "checkpoint.pt"), "torch", exp)
    wb = trained_network_state(load_checkpoint_file(b / "checkpoint.pt"), "event", exp)
    (key,) = wb
    assert key in wa and wa[key].shape == wb[key].shape and float(wa[key].std()) > 0
    np.testing.assert_allclose(wb[key].double().numpy(), wa[key].double().numpy(), rtol=1e-12, atol=1e-15)
    q = quantisation_check(EXP / "distal_reward_loihi.toml", steps=200)["quantization_error"]
    assert q["steps"] == 200 and q["populations"]["exc"]["spikes_float"] > 0
    assert 0.5 < q["populations"]["exc"]["matched_within_1_step"] <= 1.0


def test_fixed_point_event_run_is_byte_identical_to_torch_fixed(tmp_path):
    common = ["run.precision=fixed"]
    a = _run(tmp_path, "torch", "distal_reward_loihi.toml", common + ["run.backend=torch"])
    b = _run(tmp_path, "event", "distal_reward_loihi.toml", common + ["run.backend=event"])
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    ra = _rows(a / "metrics.csv")
    assert sum(int(r["rewards"]) for r in ra) > 0
    ea, eb = load_recordings(a / "recordings.npz"), load_recordings(b / "recordings.npz")
    for k in ea:
        if not k.startswith("meta/"):
            np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_resumed_event_run_matches_uninterrupted(tmp_path, precision, capsys):
    config = "distal_reward_loihi.toml" if precision == "fixed" else "distal_reward.toml"
    extra = [f"run.precision={precision}", "run.backend=event", "run.checkpoint_every=0.25"]
    ref = _run(tmp_path, "ref", config, extra)
    part = run_experiment(EXP / config, overrides=SHORT + extra + ["task.duration=0.5"], out=tmp_path / "part",
                          figures=False)
    rc, _, err = run_cli(["run", "--resume", str(part), "--set", "task.duration=1.0"], capsys)
    assert rc == 0, err
    assert (part / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()


@pytest.mark.parametrize("override, words", [
    (["run.rng=generator"], ["run.rng", "hash"]),
    (["device=cuda"], ["device"]),
])
def test_event_engine_refusals_are_one_line(tmp_path, capsys, override, words):
    argv = ["run", str(EXP / "distal_reward.toml"), "--backend", "event", "--out", str(tmp_path / "r")]
    for o in SHORT + override:
        argv += ["--set", o]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err


def test_unrecordable_monitor_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    text = (EXP / "distal_reward.toml").read_text().replace(
        'state = [{variable = "v"', 'state = [{variable = "i", population = "exc", indices = [0]}, {variable = "v"')
    text = text.replace('file = "../models/', f'file = "{ROOT}/models/')
    cfg.write_text(text)
    argv = ["run", str(cfg), "--backend", "event", "--out", str(tmp_path / "r")]
    for o in SHORT:
        argv += ["--set", o]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "'i'" in err and "event" in err
