"""Tests of the experiment runner: determinism, crash-safe resume, NaN handling, run-directory layout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.cli import main
from neuroprobe.experiments.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
NRL_CFG = str(ROOT / "experiments" / "nrl_cartpole.toml")
CET_CFG = str(ROOT / "experiments" / "cet_digits.toml")
RL_SMALL = ["task.episodes=6", "seeds=2", "run.progress=false"]
CET_SMALL = ["task.steps=60", "task.eval_every=10", "rule.delay=5", "rule.order=2", "run.progress=false"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Runs set torch's thread count (run.threads); give the next test back what it had."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(cfg, overrides, out, figures=False) -> Path:
    return run_experiment(cfg, overrides=overrides, out=out, figures=figures)


def _cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


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
    a = _run(CET_CFG, CET_SMALL, tmp_path / "a")
    b = _run(CET_CFG, CET_SMALL, tmp_path / "b")
    ma = (a / "metrics.csv").read_bytes()
    assert ma == (b / "metrics.csv").read_bytes()
    assert ma.count(b"\n") == 1 + 60 // 10
    c = _run(CET_CFG, CET_SMALL + ["seed=1"], tmp_path / "c")
    assert (c / "metrics.csv").read_bytes() != ma


# ----------------------------------------------------------------------------------- resume after SIGKILL


def _rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def _kill_mid_run(cfg, overrides, out: Path, min_rows: int) -> bool:
    """Start a run as a subprocess; SIGKILL it as soon as a checkpoint exists and metrics.csv has
    ``min_rows`` rows. Returns whether the kill landed before the run finished."""
    args = [sys.executable, "-m", "neuroprobe.cli", "run", cfg, "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    guard = time.monotonic() + 300  # only against a hung child; the result never depends on timing
    try:
        while proc.poll() is None and time.monotonic() < guard:
            if (out / "checkpoint.pt").exists() and _rows(out / "metrics.csv") >= min_rows:
                break
            time.sleep(0.002)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    if finished:
        assert proc.returncode == 0
    else:
        assert proc.returncode == -signal.SIGKILL
    return not finished


def _resume_matches_uninterrupted(tmp_path, capsys, cfg, overrides, ckpt_rows):
    ref = _run(cfg, overrides, tmp_path / "ref")
    want = (ref / "metrics.csv").read_bytes()
    total = want.count(b"\n") - 1
    out = tmp_path / "killed"
    killed = _kill_mid_run(cfg, overrides, out, min_rows=ckpt_rows + 3)
    if killed:  # the interrupted run really is incomplete, and has rows the checkpoint does not cover
        have = _rows(out / "metrics.csv")
        assert ckpt_rows + 3 <= have < total
        ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
        assert ckpt["rows"] < have
    rc, _, err = _cli(["run", "--resume", str(out)], capsys)
    assert rc == 0, err
    assert (out / "metrics.csv").read_bytes() == want
    assert json.loads((out / "summary.json").read_text()) == json.loads((ref / "summary.json").read_text())


# These tests caught a bug: RunDir.create wrote the derived key 'kind' into config.toml, and --resume then
# failed with "unknown key 'kind'" (exit 2). Fixed in neuroprobe/experiments/rundir.py.


def test_rl_resume_after_sigkill(tmp_path, capsys):
    k = 8
    overrides = ["task.episodes=40", "seeds=2", "rule.lr=1e-4", f"run.checkpoint_every={k}", "run.progress=false"]
    _resume_matches_uninterrupted(tmp_path, capsys, NRL_CFG, overrides, ckpt_rows=k)


def test_supervised_resume_after_sigkill(tmp_path, capsys):
    k = 4  # rows (of eval_every = 5 steps each)
    overrides = ["task.steps=250", "task.eval_every=5", "rule.delay=5", "rule.order=2", f"run.checkpoint_every={k}",
                 "run.progress=false"]
    _resume_matches_uninterrupted(tmp_path, capsys, CET_CFG, overrides, ckpt_rows=k)


def test_resume_of_finished_run_keeps_metrics(tmp_path, capsys):
    out = _run(NRL_CFG, RL_SMALL, tmp_path / "r")
    before = (out / "metrics.csv").read_bytes()
    rc, _, err = _cli(["run", "--resume", str(out)], capsys)
    assert rc == 0, err
    assert (out / "metrics.csv").read_bytes() == before


# ----------------------------------------------------------------------------------- NaN / Inf


def test_nonfinite_weights_stop_the_run(tmp_path, capsys):
    out = tmp_path / "nan"
    rc, _, err = _cli(["run", CET_CFG, "--out", str(out), "--set", "task.steps=100", "--set", "task.eval_every=5",
                       "--set", "rule.lr=1e6", "--set", "run.checkpoint_every=1", "--set", "run.progress=false"], capsys)
    assert rc == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "NaN/Inf" in lines[0], err
    assert not (out / "summary.json").exists()
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        assert ckpt["net"], "checkpoint holds no weights"
        for name, t in ckpt["net"].items():
            assert torch.isfinite(t).all(), name
        assert ckpt["rows"] <= _rows(out / "metrics.csv")


def test_rl_absurd_lr_stops_with_one_line(tmp_path, capsys):
    rc, _, err = _cli(["run", NRL_CFG, "--out", str(tmp_path / "nan"), "--set", "task.episodes=20", "--set", "seeds=2",
                       "--set", "rule.lr=1e30", "--set", "run.progress=false"], capsys)
    assert rc == 1
    assert len(err.splitlines()) == 1 and "NaN/Inf" in err


# ----------------------------------------------------------------------------------- run directory


def test_rl_run_directory_contents(tmp_path, capsys):
    out = tmp_path / "rl"
    rc, stdout, err = _cli(["run", NRL_CFG, "--out", str(out)] + sum((["--set", o] for o in RL_SMALL), []), capsys)
    assert rc == 0, err
    for name in ("config.toml", "metrics.csv", "summary.json", "learning_curve.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["task"]["episodes"] == 6 and cfg["seeds"] == 2 and cfg["rule"]["name"] == "nrl"
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


def test_supervised_run_directory_contents(tmp_path):
    out = _run(CET_CFG, CET_SMALL, tmp_path / "sup", figures=True)
    for name in ("config.toml", "metrics.csv", "summary.json", "learning_curve.png"):
        assert (out / name).is_file(), name
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,accuracy")
    assert lines[0].split(",") == ["step", "accuracy", "train_loss", "train_accuracy", "align_fc1", "align_fc2",
                                   "align_fc3"]
    steps = [int(ln.split(",")[0]) for ln in lines[1:]]
    assert steps == [10, 20, 30, 40, 50, 60]
    acc = [float(ln.split(",")[1]) for ln in lines[1:]]
    assert all(0 <= a <= 1 for a in acc)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"] == pytest.approx(acc[-1]) and summary["steps"] == 60


def test_run_into_existing_directory_fails(tmp_path, capsys):
    out = _run(NRL_CFG, RL_SMALL, tmp_path / "r")
    before = (out / "metrics.csv").read_bytes()
    rc, _, err = _cli(["run", NRL_CFG, "--out", str(out)] + sum((["--set", o] for o in RL_SMALL), []), capsys)
    assert rc != 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--resume" in lines[0], err
    assert (out / "metrics.csv").read_bytes() == before
