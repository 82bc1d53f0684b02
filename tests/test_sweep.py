"""``neuroprobe sweep``: every run equals the same ``neuroprobe run`` byte for byte (batched and not),
an interrupted sweep resumes without recomputing finished runs, failures are reported and do not
stop the others, and bad input is one line. One embedded Ray instance serves the in-process tests.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proc_helpers import alive, process_tree  # noqa: E402  (tests/ is on sys.path)

from cli_helpers import run_cli
from neuroprobe.errors import ConfigError
from neuroprobe.runner import run_experiment
from neuroprobe.sweep import load_sweep_spec, plan_runs, run_sweep
from neuroprobe.sweep.spec import point_slugs
from neuroprobe.sweep.sweepdir import csv_columns

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'neuroprobe[sweep]')")

ROOT = Path(__file__).resolve().parents[1]
NRL = ROOT / "experiments" / "nrl_cartpole.toml"
CET = ROOT / "experiments" / "cet_digits.toml"
EPISODES = "task.episodes=6"


@pytest.fixture(scope="module")
def ray_local():
    """One embedded Ray instance for this module (about 3 s to start); run_sweep uses it as is."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def _ref(tmp: Path, name: str, overrides: list[str], seed: int, config: Path = NRL) -> Path:
    """The same run made as `neuroprobe run CONFIG --seed s --set ...` does it (in this process)."""
    return run_experiment(config, overrides, seed=seed, out=tmp / "ref" / name, figures=False, progress=False)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------- spec and plan
def test_sweep_config_file_and_plan(tmp_path):
    sweep = tmp_path / "cet_sweep.toml"
    rel = os.path.relpath(CET, tmp_path)
    sweep.write_text(f'[sweep]\nconfig = "{rel}"\nseeds = 2\nset = ["task.steps=40"]\n'
                     '[sweep.grid]\n"rule.lr" = [0.01, 5e-2]\n"rule.optimizer" = ["sgd"]\n'
                     '[[sweep.points]]\n"rule.trace" = "none"\n')
    spec = load_sweep_spec(sweep, grid=["order=2,6"])
    assert spec.config == CET.resolve()
    assert spec.grid == {"rule.lr": ["0.01", "0.05"], "rule.optimizer": ["sgd"], "rule.order": ["2", "6"]}
    assert spec.points == [{"rule.trace": "none"}] and spec.seeds == [0, 1] and spec.set == ["task.steps=40"]
    runs = plan_runs(spec)
    # 4 grid points (last key fastest) + 1 extra point; cet never batches seeds
    assert [r.rel for r in runs[:4]] == ["lr=0.01_optimizer=sgd_order=2/s0", "lr=0.01_optimizer=sgd_order=2/s1",
                                        "lr=0.01_optimizer=sgd_order=6/s0", "lr=0.01_optimizer=sgd_order=6/s1"]
    assert [r.rel for r in runs[-2:]] == ["trace=none/s0", "trace=none/s1"] and len(runs) == 10
    assert runs[-1].overrides == ["task.steps=40", "rule.trace=none"] and runs[-1].seed == 1
    assert not any(r.batched for r in runs) and {r.cpus for r in runs} == {1.0} and {r.gpus for r in runs} == {0.0}
    assert csv_columns(spec) == ["point", "rule.lr", "rule.optimizer", "rule.order", "rule.trace", "seed", "run",
                                 "metric", "final", "wall_s", "status", "error"]
    # --point adds a point of its own; bare keys resolve like --set's
    more = load_sweep_spec(sweep, points=["lr=0.2,rule.order=3"])
    assert more.points == [{"rule.trace": "none"}, {"rule.lr": "0.2", "rule.order": "3"}]
    assert plan_runs(more)[-1].rel == "lr=0.2_order=3/s1"
    # command-line seeds replace the file's; a grid key also set is refused
    assert load_sweep_spec(sweep, seed_list="3,5").seeds == [3, 5]
    with pytest.raises(ConfigError, match=r"--set rule.lr=0.1: rule.lr is also a grid key"):
        load_sweep_spec(sweep, set=["rule.lr=0.1"])
    sweep.write_text(sweep.read_text().replace("seeds = 2", "seeds = 2\nbogus = 1"))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['bogus'\] in \[sweep\]; allowed: \['config'"):
        load_sweep_spec(sweep)


def test_batching_rule_and_slugs():
    spec = load_sweep_spec(NRL, grid=["rule.lr=0.02,0.05"], seeds=3, set=[EPISODES])
    runs = plan_runs(spec)
    assert [r.rel for r in runs] == ["lr=0.02/s0-2", "lr=0.05/s0-2"] and all(r.batched for r in runs)
    assert runs[0].overrides == [EPISODES, "rule.lr=0.02", "seeds=3"] and runs[0].seed == 0
    # not consecutive: one run per seed, with seeds=1 since the config says seeds = 5
    runs = plan_runs(load_sweep_spec(NRL, seed_list="0,2", set=[EPISODES]))
    assert [(r.rel, r.seed, r.overrides[-1]) for r in runs] == [("base/s0", 0, "seeds=1"), ("base/s2", 2, "seeds=1")]
    with pytest.raises(ConfigError, match="--batch-seeds on: the experiment cannot batch its seeds: the seeds"):
        plan_runs(load_sweep_spec(NRL, seed_list="0,2", batch_seeds="on"))
    assert point_slugs([{"a.x": "1/2"}, {"a.x": "1_2"}, {"b.x": "3", "a.y": "[4, 5]"}]) == \
        ["p00_a.x=1_2", "p01_a.x=1_2", "b.x=3_y=4_5"]


# ---------------------------------------------------------------------------------- runs equal plain runs
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_runs_equal_plain_runs(ray_local, tmp_path, mode):
    spec = load_sweep_spec(NRL, grid=["rule.lr=0.02,0.05"], seeds=2, set=[EPISODES], batch_seeds=mode)
    out = run_sweep(spec, tmp_path / "sw", progress=False)
    assert (out.done, out.failed, out.skipped) == ((2, 0, 0) if mode == "auto" else (4, 0, 0))
    rows = _csv(tmp_path / "sw" / "sweep.csv")
    assert [(r["point"], r["rule.lr"], r["seed"], r["status"]) for r in rows] == \
        [("0", "0.02", "0", "done"), ("0", "0.02", "1", "done"), ("1", "0.05", "0", "done"), ("1", "0.05", "1", "done")]
    for lr in ("0.02", "0.05"):
        if mode == "auto":  # neuroprobe run nrl_cartpole.toml --seed 0 --set seeds=2
            ref = _ref(tmp_path, lr, [EPISODES, f"rule.lr={lr}", "seeds=2"], 0)
            got = tmp_path / "sw" / f"lr={lr}" / "s0-1"
            assert (got / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
            per_seed = json.loads((ref / "summary.json").read_text())["per_seed"]
            assert [float(r["final"]) for r in rows if r["rule.lr"] == lr] == per_seed
        else:  # neuroprobe run nrl_cartpole.toml --seed s --set seeds=1
            for s in (0, 1):
                ref = _ref(tmp_path, f"{lr}-{s}", [EPISODES, f"rule.lr={lr}", "seeds=1"], s)
                got = tmp_path / "sw" / f"lr={lr}" / f"s{s}"
                assert (got / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    if mode == "auto":
        # a run found unfinished (config.toml, no summary) resumes from its checkpoint, others are kept
        run = tmp_path / "sw" / "lr=0.05" / "s0-1"
        kept = (tmp_path / "sw" / "lr=0.02" / "s0-1" / "metrics.csv").stat().st_mtime_ns
        before = (run / "metrics.csv").read_bytes()
        (run / "summary.json").unlink()
        again = run_sweep(spec, tmp_path / "sw", progress=False)
        assert (again.done, again.failed, again.skipped) == (1, 0, 1)
        assert (run / "metrics.csv").read_bytes() == before and (run / "summary.json").exists()
        assert (tmp_path / "sw" / "lr=0.02" / "s0-1" / "metrics.csv").stat().st_mtime_ns == kept
        now = _csv(tmp_path / "sw" / "sweep.csv")
        assert now[:2] == rows[:2]  # the kept run's rows, wall clock included
        assert [{**r, "wall_s": ""} for r in now[2:]] == [{**r, "wall_s": ""} for r in rows[2:]]


# ---------------------------------------------------------------------------------- failures
def test_failed_run_is_reported_and_others_finish(ray_local, tmp_path, capsys):
    d = str(tmp_path / "sw")
    argv = ["sweep", str(NRL), "--grid", "rule.lr=0.05,1e30", "--set", EPISODES, "--out", d, "--no-progress"]
    rc, out, err = run_cli(argv, capsys)
    # lr = 1e30 passes validation (a float32) but the policy's logits overflow at run time
    assert rc == 1 and err.strip().splitlines() == [
        "error: 1 of 2 runs failed (errors above and in sweep.csv); rerun with --retry-failed to try them again"]
    assert "runs: 1 done, 1 failed, 0 skipped (already done)" in out
    assert "failed lr=1e30/s0: NonFiniteError: policy probabilities became NaN/Inf" in out
    assert f"neuroprobe report {d}" in out
    rows = _csv(tmp_path / "sw" / "sweep.csv")
    assert [r["status"] for r in rows] == ["done", "failed"] and rows[0]["error"] == "" and rows[1]["final"] == ""
    assert rows[1]["error"].startswith("NonFiniteError: policy probabilities") and "\n" not in rows[1]["error"]
    assert (tmp_path / "sw" / "lr=1e30" / "s0" / "failed.json").exists()
    # the same sweep again: nothing reruns, the failure is kept (exit 1)
    rc, out, err = run_cli(argv, capsys)
    assert rc == 1 and "runs: 0 done, 1 failed, 1 skipped (already done)" in out
    # another sweep into the same directory: refused, naming what differs
    rc, out, err = run_cli([*argv[:3], "rule.lr=0.05,1e20", *argv[4:]], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {d}/sweep.toml records another sweep: grid (was ") and "use --out" in err
    rc, out, err = run_cli([*argv, "--seeds", "2"], capsys)
    assert rc == 2 and "records another sweep: seeds (was [0], now [0, 1])" in err


# ---------------------------------------------------------------------------------- one-line errors
def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("extra, message", [
    (["--grid", "rule.lrr=0.1"], "error: --grid rule.lrr=0.1: {cfg}: unknown key 'rule.lrr'; allowed: ["),
    (["--grid", "rule.lr=0.1,abc"], "error: --grid rule.lr=abc: {cfg}: 'rule.lr' = 'abc': must be a number"),
    (["--grid", "rule.lr=0.1", "--grid", "lr=0.2"], "error: --grid rule.lr: given twice"),
    (["--grid", "rule.lr="], "error: --grid rule.lr=: empty value list"),
    (["--grid", "rule.lr=0.1", "--set", "lr=0.2"], "error: --set lr=0.2: rule.lr is also a grid key"),
    (["--grid", "seeds=1,2"], "error: --grid seeds=1,2: 'seeds' cannot be swept or set here"),
    (["--address", "127.0.0.1:{port}"],
     "error: --address 127.0.0.1:{port}: no Ray head reachable there (connection refused); start one with ray start"),
    (["--resources", "gpu=2.5"], "error: --resources gpu=2.5: above 1 a run takes whole GPUs"),
])
def test_one_line_errors(tmp_path, capsys, extra, message):
    port = _closed_port()
    extra = [a.replace("{port}", str(port)) for a in extra]
    rc, out, err = run_cli(["sweep", str(NRL), "--out", str(tmp_path / "sw"), *extra], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(message.format(cfg=NRL, port=port)), err
    assert not (tmp_path / "sw").exists()  # nothing written before the sweep can start


def test_one_driver_per_sweep_directory(tmp_path, capsys):
    from neuroprobe.sweep.sweepdir import SweepLock

    with SweepLock(tmp_path / "sw"):  # another driver is sweeping there
        rc, out, err = run_cli(["sweep", str(NRL), "--out", str(tmp_path / "sw")], capsys)
    assert rc == 2 and err.startswith(f"error: sweep directory '{tmp_path / 'sw'}' is being swept by pid {os.getpid()} ")


def test_ray_missing_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc, out, err = run_cli(["sweep", str(NRL), "--out", str(tmp_path / "sw")], capsys)
    assert (rc, err) == (2, 'error: neuroprobe sweep needs ray: pip install "neuroprobe[sweep]"\n')


# ---------------------------------------------------------------------------------- killed driver
HANG_S = 600  # only against a hung sweep: on a loaded 2-core machine the rerun alone took over 120 s
def test_killed_sweep_resumes_without_recomputing(tmp_path):
    # two runs side by side: a short one that finishes, a long one that is killed mid-way
    d = tmp_path / "sw"
    budgets = ("10", "150")
    cmd = [sys.executable, "-m", "neuroprobe.cli", "sweep", str(NRL), "--grid", f"task.episodes={','.join(budgets)}",
           "--out", str(d), "--num-cpus", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    tree: list[int] = []
    try:
        t0 = time.time()
        while time.time() - t0 < HANG_S:
            if (d / "sweep.csv").exists() and any(r["status"] == "done" for r in _csv(d / "sweep.csv")):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail(f"no run finished within {HANG_S} s")
        tree = process_tree(proc.pid)  # the driver, Ray's processes (GCS, raylet, agents) and its workers
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.time()
        while any(alive(p) for p in tree) and time.time() - t0 < 60:  # a worker busy with a run within 0.1 s, an idle one ~2 s
            time.sleep(0.1)
        left = [p for p in tree if alive(p)]
        assert not left, f"processes of the killed sweep still alive 60 s later: {left}"
    finally:
        for p in tree:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    short, long = (d / f"episodes={b}" / "s0" for b in budgets)
    assert (short / "summary.json").exists() and not (long / "summary.json").exists()
    assert (long / "config.toml").exists()  # started: the rerun resumes it from its checkpoint
    kept = (short / "metrics.csv").stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S)
    assert again.returncode == 0, again.stderr
    assert "runs: 1 done, 0 failed, 1 skipped (already done)" in again.stdout
    assert (short / "metrics.csv").stat().st_mtime_ns == kept  # not recomputed
    for b, got in zip(budgets, (short, long)):
        ref = _ref(tmp_path, b, [f"task.episodes={b}", "seeds=1"], 0)
        assert (got / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    assert [r["status"] for r in _csv(d / "sweep.csv")] == ["done", "done"]
