"""Tests of ``neuroprobe.runner.run_experiment`` and ``neuroprobe run``: every shipped config runs,
runs are deterministic, run directories hold what they promise, non-finite weights stop a run.

Kill-and-resume, locking, checkpoint safety and ``--resume --set`` are in tests/test_run_directory.py.
Configs whose rule is not ported to the run loop yet are skipped with that reason.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.config import RULE_CONFIGS, experiment_model, validate_experiment
from neuroprobe.rundir import load_checkpoint_file, read_metrics
from neuroprobe.runner import run_experiment
from cli_helpers import run_cli as _cli

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
CONFIGS = sorted(EXPERIMENTS.glob("*.toml"))
NRL_CFG = EXPERIMENTS / "nrl_cartpole.toml"
CET_CFG = EXPERIMENTS / "cet_digits.toml"
RL_SMALL = ["task.episodes=6", "seeds=2", "run.progress=false"]
CET_SMALL = ["task.steps=60", "task.eval_every=10", "rule.delay=5", "rule.order=2", "run.progress=false"]


def _unported(cfg: Path) -> str | None:
    experiment_model()  # registers the shipped rules
    name = tomllib.loads(cfg.read_text())["rule"]["name"]
    return None if name in RULE_CONFIGS else f"rule {name!r} of {cfg.name} is not ported to the run loop yet"


def _skip_unported(cfg: Path) -> None:
    reason = _unported(cfg)
    if reason:
        pytest.skip(reason)


def _tiny(cfg: Path) -> list[str]:
    task = tomllib.loads(cfg.read_text())["task"]["name"]
    if task == "digits":
        return ["task.steps=4", "task.eval_every=2"]
    if task == "distal_reward":
        return ["task.duration=0.02", "task.report_every=0.01"]
    return ["task.episodes=1" if task == "Reaching1D-v0" else "task.episodes=2", "seeds=1"]


def _run(cfg, overrides, out, figures=False) -> Path:
    return run_experiment(cfg, overrides=overrides, out=out, figures=figures)


def _rows(path: Path) -> int:
    return max(0, path.read_bytes().count(b"\n") - 1)


# ----------------------------------------------------------------------------------- every shipped config


@pytest.mark.parametrize("cfg", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_runs(cfg, tmp_path, capsys):
    """``neuroprobe run`` of each config in experiments/ with a tiny budget: exit 0, the run
    directory's files, a config.toml that loads back to the same experiment."""
    _skip_unported(cfg)
    out = tmp_path / "run"
    argv = ["run", str(cfg), "--out", str(out), "--set", "run.progress=false"]
    for o in _tiny(cfg):
        argv += ["--set", o]
    rc, stdout, err = _cli(argv, capsys)
    assert rc == 0, err
    assert "Traceback" not in err and f"wrote {out}" in stdout
    for name in ("config.toml", "metrics.csv", "summary.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.png")), "no figure"
    assert _rows(out / "metrics.csv") >= 1
    m = read_metrics(out / "metrics.csv")
    assert all(isinstance(v, float) for col in m.values() for v in col)
    saved = tomllib.loads((out / "config.toml").read_text())
    again = validate_experiment(saved, src="config.toml", base_dir=out)
    assert again.to_toml_dict() == saved
    state = load_checkpoint_file(out / "checkpoint.pt")
    assert state["metrics"]["bytes"] == (out / "metrics.csv").stat().st_size  # the final checkpoint covers it all


# ----------------------------------------------------------------------------------- determinism


def test_rl_run_is_deterministic(tmp_path):
    a = _run(NRL_CFG, RL_SMALL, tmp_path / "a")
    b = _run(NRL_CFG, RL_SMALL, tmp_path / "b")
    ma, mb = (a / "metrics.csv").read_bytes(), (b / "metrics.csv").read_bytes()
    assert ma == mb
    assert ma.count(b"\n") == 1 + 6 * 2
    # the comparison can fail: another seed gives another file
    c = _run(NRL_CFG, RL_SMALL + ["seed=1"], tmp_path / "c")
    assert (c / "metrics.csv").read_bytes() != ma


def test_supervised_run_is_deterministic(tmp_path):
    _skip_unported(CET_CFG)
    a = _run(CET_CFG, CET_SMALL, tmp_path / "a")
    b = _run(CET_CFG, CET_SMALL, tmp_path / "b")
    ma = (a / "metrics.csv").read_bytes()
    assert ma == (b / "metrics.csv").read_bytes()
    assert ma.count(b"\n") == 1 + 60 // 10
    c = _run(CET_CFG, CET_SMALL + ["seed=1"], tmp_path / "c")
    assert (c / "metrics.csv").read_bytes() != ma


def test_resume_of_finished_run_keeps_metrics(tmp_path, capsys):
    out = _run(NRL_CFG, RL_SMALL, tmp_path / "r")
    before = (out / "metrics.csv").read_bytes()
    rc, _, err = _cli(["run", "--resume", str(out)], capsys)
    assert rc == 0, err
    assert (out / "metrics.csv").read_bytes() == before


# ----------------------------------------------------------------------------------- NaN / Inf


def test_supervised_nonfinite_weights_stop_the_run(tmp_path, capsys):
    _skip_unported(CET_CFG)
    out = tmp_path / "nan"
    rc, _, err = _cli(["run", str(CET_CFG), "--out", str(out), "--set", "task.steps=100", "--set", "task.eval_every=5",
                       "--set", "rule.lr=1e30", "--set", "run.checkpoint_every=5", "--set", "run.progress=false"],
                      capsys)
    assert rc == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "NaN/Inf" in lines[0], err
    assert not (out / "summary.json").exists()
    if (out / "checkpoint.pt").exists():
        state = load_checkpoint_file(out / "checkpoint.pt")
        weights = [t for t in _tensors(state["agent"]) if t.is_floating_point()]
        assert weights, "checkpoint holds no weights"
        assert all(torch.isfinite(t).all() for t in weights)
        assert state["metrics"]["rows"] <= _rows(out / "metrics.csv")


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def test_rl_absurd_lr_stops_with_one_line(tmp_path, capsys):
    rc, _, err = _cli(["run", str(NRL_CFG), "--out", str(tmp_path / "nan"), "--set", "task.episodes=20", "--set",
                       "seeds=2", "--set", "rule.lr=1e30", "--set", "run.progress=false"], capsys)
    assert rc == 1
    assert len(err.splitlines()) == 1 and "NaN/Inf" in err


# ----------------------------------------------------------------------------------- run directory


def test_rl_run_directory_contents(tmp_path, capsys):
    out = tmp_path / "rl"
    rc, stdout, err = _cli(["run", str(NRL_CFG), "--out", str(out)] + sum((["--set", o] for o in RL_SMALL), []),
                           capsys)
    assert rc == 0, err
    for name in ("config.toml", "metrics.csv", "summary.json", "learning_curve.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["task"]["episodes"] == 6 and cfg["seeds"] == 2 and cfg["rule"]["name"] == "nrl"
    assert "file" not in cfg["model"] and cfg["model"]["sizes"] == [4, 64, 2]  # the network is saved inline
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "episode,seed,return,length"
    rows = [ln.split(",") for ln in lines[1:]]
    by_seed = {}
    for ep, seed, ret, length in rows:
        assert float(ret) == float(length)  # CartPole: reward 1 per step
        by_seed.setdefault(int(seed), []).append((int(ep), float(ret)))
    assert sorted(by_seed) == [0, 1]
    assert all([e for e, _ in v] == list(range(6)) for v in by_seed.values())
    summary = json.loads((out / "summary.json").read_text())
    per_seed = [np.mean([r for _, r in by_seed[s]]) for s in (0, 1)]  # fewer than 50 episodes: all of them
    assert summary["per_seed"] == pytest.approx(per_seed)
    assert summary["mean"] == pytest.approx(np.mean(per_seed))
    assert summary["episodes"] == 6
    assert "wrote" in stdout and "mean return" in stdout


def test_supervised_run_directory_contents(tmp_path):
    _skip_unported(CET_CFG)
    out = _run(CET_CFG, CET_SMALL, tmp_path / "sup", figures=True)
    for name in ("config.toml", "metrics.csv", "summary.json", "learning_curve.png"):
        assert (out / name).is_file(), name
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == ["step", "accuracy", "train_loss", "train_accuracy", "align_fc1", "align_fc2",
                                   "align_fc3"]
    steps = [int(ln.split(",")[0]) for ln in lines[1:]]
    assert steps == [10, 20, 30, 40, 50, 60]
    acc = [float(ln.split(",")[1]) for ln in lines[1:]]
    assert all(0 <= a <= 1 for a in acc)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"] == pytest.approx(acc[-1])


def test_run_into_existing_directory_fails(tmp_path, capsys):
    out = _run(NRL_CFG, RL_SMALL, tmp_path / "r")
    before = (out / "metrics.csv").read_bytes()
    rc, _, err = _cli(["run", str(NRL_CFG), "--out", str(out)] + sum((["--set", o] for o in RL_SMALL), []), capsys)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--resume" in lines[0], err
    assert (out / "metrics.csv").read_bytes() == before


def test_default_run_directory(tmp_path, monkeypatch):
    """Without --out a run goes to runs/<name>-<seed> under the working directory."""
    monkeypatch.chdir(tmp_path)
    out = run_experiment(NRL_CFG, overrides=["task.episodes=1", "seeds=1", "run.progress=false"], seed=3,
                         figures=False)
    assert out == Path("runs") / "nrl_cartpole-3"
    assert (tmp_path / out / "metrics.csv").is_file()
