"""Spiking runs through the one run loop: distal reward (torch engine and Brian2) and spiking CartPole.

A run killed with SIGKILL (its whole process group) and resumed with ``--resume`` ends with a
byte-identical metrics.csv and equal recordings.npz arrays; Brian2 runs are reproducible (Brian2's
generator is seeded per trial) and resume at trial boundaries.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.config import load_experiment, validate_experiment
from neuroprobe.config.experiment import read_config_file
from neuroprobe.errors import ConfigError, NeuroprobeError
from neuroprobe.rundir import load_checkpoint_file
from neuroprobe.runner import run_experiment
from spiking_nets import SMALL_NET

ROOT = Path(__file__).resolve().parents[1]
DISTAL = str(ROOT / "experiments" / "distal_reward.toml")
CARTPOLE = str(ROOT / "experiments" / "spiking_cartpole.toml")
# rewards within the short run (wide window, short delays) so that learning changes the weights
DISTAL_SMALL = ["task.duration=2", "task.report_every=0.5", "seeds=2", "run.progress=false", "task.window=0.05",
                "task.delay_min=0.05", "task.delay_max=0.2", "rule.order=2", "rule.delay=0.1", "rule.lr=0.05",
                "run.record_last=1.0"]
CARTPOLE_SMALL = ["task.episodes=16", "seeds=2", "run.progress=false", "run.checkpoint_every=4"]
BRIAN2_SMALL = ["task.duration=1", "task.report_every=0.5", "seeds=2", "run.progress=false", "run.backend=brian2"]




@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(cfg, overrides, out) -> Path:
    return run_experiment(cfg, overrides=overrides, out=out, figures=False)


def _rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def _kill_mid_run(cfg, overrides, out: Path, min_rows: int) -> bool:
    """Run in a subprocess (its own process group); SIGKILL the group once a checkpoint exists and
    metrics.csv has ``min_rows`` rows. Returns whether the kill landed before the run finished."""
    code = ("import sys; from neuroprobe.runner import run_experiment; "
            "run_experiment(sys.argv[1], overrides=sys.argv[3:], out=sys.argv[2], figures=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, cfg, str(out), *overrides], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    guard = time.monotonic() + 300  # only against a hung child; the result never depends on timing
    try:
        while proc.poll() is None and time.monotonic() < guard:
            if (out / "checkpoint.pt").exists() and _rows(out / "metrics.csv") >= min_rows:
                break
            time.sleep(0.002)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == (0 if finished else -signal.SIGKILL), err
    return not finished


def _same_recordings(a: Path, b: Path) -> None:
    with np.load(a) as fa, np.load(b) as fb:
        assert sorted(fa.files) == sorted(fb.files)
        for k in fa.files:
            x, y = fa[k], fb[k]
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), k


def _resume_matches(tmp_path, cfg, overrides, min_rows, recordings=True) -> None:
    ref = _run(cfg, overrides, tmp_path / "ref")
    want = (ref / "metrics.csv").read_bytes()
    total = want.count(b"\n") - 1
    out = tmp_path / "killed"
    if _kill_mid_run(cfg, overrides, out, min_rows):
        have = _rows(out / "metrics.csv")
        assert have < total
        assert load_checkpoint_file(out / "checkpoint.pt")["metrics"]["rows"] <= have  # rows past it are recomputed
    run_experiment(resume=out, figures=False)
    assert (out / "metrics.csv").read_bytes() == want
    assert json.loads((out / "summary.json").read_text()) == json.loads((ref / "summary.json").read_text())
    if recordings:
        _same_recordings(ref / "recordings.npz", out / "recordings.npz")



def _small_distal(tmp_path: Path) -> str:
    (tmp_path / "net.toml").write_text(SMALL_NET)
    cfg = tmp_path / "distal.toml"
    cfg.write_text("""
name = "distal_small"
seeds = 2
[network]
file = "net.toml"
[task]
name = "distal_reward"
duration = 1.5
report_every = 0.5
delay_min = 0.1
delay_max = 0.3
window = 0.02
[rule]
name = "rstdp"
order = 2
delay = 0.2
lr = 0.01
[monitor]
spikes = ["exc"]
state = [{variable = "v", population = "exc", indices = [0, 1]}]
[run]
progress = false
record_last = 0.5
checkpoint_every = 0.5
""")
    return str(cfg)


# ----------------------------------------------------------------------------------- torch engine


def test_distal_resume_after_sigkill(tmp_path):
    overrides = DISTAL_SMALL + ["run.checkpoint_every=0.7"]  # checkpoints between the rows (every 0.5 s)
    _resume_matches(tmp_path, DISTAL, overrides, min_rows=6)
    m = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    assert len(m) == 1 + 4 * 2 and m[0].startswith("time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences")
    assert float(m[-1].split(",")[6]) > 0  # rewards were delivered: learning acted


def test_distal_small_run_files(tmp_path):
    out = _run(_small_distal(tmp_path), [], tmp_path / "run")
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences,rate_exc,rate_inh"
    assert len(lines) == 1 + 3 * 2  # 3 reports x 2 trials
    with np.load(out / "recordings.npz") as rec:
        assert rec["spikes/exc"].dtype == np.uint8 and rec["spikes/exc"].shape == (500, 60)  # last 0.5 s
        assert rec["v/exc"].dtype == np.float32 and rec["v/exc"].shape == (500, 2)
        assert rec["weight/exc->exc"].shape[0] == 3 and rec["meta/highlight/exc->exc"].tolist() == [0]
    s = json.loads((out / "summary.json").read_text())
    assert len(s["per_seed"]) == 2 and 0 <= s["mean"] <= 1 and s["time"] == 1.5


def test_distal_resume_with_a_longer_duration(tmp_path):
    cfg = _small_distal(tmp_path)
    full = _run(cfg, [], tmp_path / "full")
    part = _run(cfg, ["task.duration=1.0"], tmp_path / "part")
    run_experiment(resume=part, overrides=["task.duration=1.5"], figures=False)
    assert (full / "metrics.csv").read_bytes() == (part / "metrics.csv").read_bytes()


def test_spiking_cartpole_resume_after_sigkill(tmp_path):
    _resume_matches(tmp_path, CARTPOLE, CARTPOLE_SMALL, min_rows=12, recordings=False)
    m = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    assert m[0] == "episode,seed,return,length" and len(m) == 1 + 16 * 2


def test_spiking_rule_checks():
    def err(cfg, *sets):
        with pytest.raises(ConfigError) as e:
            load_experiment(cfg, list(sets))
        msg = str(e.value)
        assert "\n" not in msg
        return msg

    assert "'rule.projection' = 'exc->inh'" in err(DISTAL, "rule.projection=exc->inh")
    assert "'task.projection'" in err(DISTAL, "task.projection=inh->exc")
    assert "'rule.delay'" in err(DISTAL, "rule.delay=1e-4")
    assert "'task.delay_min' = 3.5" in err(DISTAL, "task.delay_min=3.5")
    assert "applies to task 'distal_reward' only" in err(CARTPOLE, "rule.name=rstdp", "rule.lr=0.1")
    raw = read_config_file(Path(DISTAL))
    raw["rule"] = {"name": "spiking_nrl", "lr": 0.1}
    with pytest.raises(ConfigError, match="applies to task 'spiking_cartpole' only"):
        validate_experiment(raw, src=DISTAL, base_dir=Path(DISTAL).parent)
    assert "size 20 (4 x task.neurons_per_dim = 5)" in err(CARTPOLE, "task.neurons_per_dim=5")
    assert "'run.backend' = 'brian2'" in err(CARTPOLE, "run.backend=brian2")
    assert "nrl" in err(CARTPOLE, "rule.name=nrl")  # the rate rule's tag: needs a rate [model]


# ----------------------------------------------------------------------------------- Brian2


def test_brian2_distal_reproducible_and_resumes(tmp_path):
    """The killed run's first trial (another process) equals the reference's: Brian2 is seeded per
    trial; its second trial, interrupted, is rerun from its start on resume."""
    pytest.importorskip("brian2")
    overrides = BRIAN2_SMALL + ["run.checkpoint_every=0.7"]
    # the kill lands in the second trial, after the checkpoint at the end of the first
    _resume_matches(tmp_path, DISTAL, overrides, min_rows=3)
    m = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    assert len(m) == 1 + 2 * 2 and [r.split(",")[:2] for r in m[1:]] == [["0.5", "0"], ["1.0", "0"], ["0.5", "1"],
                                                                        ["1.0", "1"]]


def test_brian2_small_writes_the_same_files_as_torch(tmp_path):
    pytest.importorskip("brian2")
    cfg = _small_distal(tmp_path)
    torch_run = _run(cfg, [], tmp_path / "torch")
    b2_run = _run(cfg, ["run.backend=brian2"], tmp_path / "brian2")
    a, b = (torch_run / "metrics.csv").read_text().splitlines(), (b2_run / "metrics.csv").read_text().splitlines()
    assert a[0] == b[0] and len(a) == len(b)
    assert sorted(r.split(",")[:2] for r in a[1:]) == sorted(r.split(",")[:2] for r in b[1:])  # trials in turn
    with np.load(torch_run / "recordings.npz") as ra, np.load(b2_run / "recordings.npz") as rb:
        for k in ("spikes/exc", "v/exc", "weight/exc->exc"):
            assert ra[k].shape == rb[k].shape and ra[k].dtype == rb[k].dtype
        assert str(rb["meta/backend"]) == "brian2"
    # same network, independent noise: population rates agree in distribution
    rate = lambda lines: np.mean([float(x.split(",")[8]) for x in lines[1:]])  # noqa: E731
    assert abs(rate(a) - rate(b)) < 0.35 * rate(a)
    # completed trials fix the trial length of a Brian2 run
    with pytest.raises(NeuroprobeError, match="task.duration cannot change"):
        run_experiment(resume=b2_run, overrides=["task.duration=2.0"], figures=False)
