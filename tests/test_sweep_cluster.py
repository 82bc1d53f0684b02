"""``neuroprobe sweep --address``: a sweep on a Ray cluster (a head started with ``ray start``) gives
the same runs as ``neuroprobe run``.

The head is this test's own: ``ray start --head --block`` in a new session, its own port and temp
directory, and it is stopped by killing exactly its process tree (never ``ray stop``, which stops
every Ray instance of the user, such as another test's embedded one under ``pytest -n 2``).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from proc_helpers import alive, process_tree  # noqa: E402  (tests/ is on sys.path)

from neuroprobe.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
NRL = ROOT / "experiments" / "nrl_cartpole.toml"
RAY_CLI = Path(sys.executable).parent / "ray"

pytestmark = pytest.mark.skipif(not RAY_CLI.exists(), reason=f"the ray CLI ({RAY_CLI}) is not installed "
                                                             f"(pip install 'neuroprobe[sweep]')")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def ray_head():
    """HOST:PORT of a one-node Ray cluster with 2 CPUs, stopped (its processes killed) afterwards."""
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="np_ray_"))
    log = open(tmp / "head.log", "w+")
    head = subprocess.Popen([str(RAY_CLI), "start", "--head", "--block", "--port", str(port), "--node-ip-address",
                             "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir",
                             str(tmp / "ray"), "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    tree: set[int] = set()
    try:
        t0 = time.time()
        while "Ray runtime started" not in (tmp / "head.log").read_text():
            tree.update(process_tree(head.pid))
            if head.poll() is not None or time.time() - t0 > 60:
                pytest.fail(f"ray start --head failed:\n{(tmp / 'head.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        tree.update(process_tree(head.pid))
        for p in tree:  # the head's own processes only: GCS, raylet, agents, workers
            if p != os.getpid() and alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        t0 = time.time()
        while any(alive(p) for p in tree) and time.time() - t0 < 10:
            time.sleep(0.1)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_sweep_on_a_cluster_equals_plain_runs(ray_head, tmp_path):
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "neuroprobe.cli", "sweep", str(NRL), "--grid", "rule.lr=0.02,0.05", "--set",
           "task.episodes=6", "--address", ray_head, "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "runs: 2 done, 0 failed, 0 skipped (already done)" in r.stdout
    for lr in ("0.02", "0.05"):
        ref = run_experiment(NRL, ["task.episodes=6", f"rule.lr={lr}", "seeds=1"], seed=0,
                             out=tmp_path / "ref" / lr, figures=False, progress=False)
        assert (out / f"lr={lr}" / "s0" / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    # a run asking more than any node has is refused at once, not queued forever
    r = subprocess.run([*cmd[:-3], "--out", str(tmp_path / "sw2"), "--resources", "cpu=3"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --resources cpu=3: the largest node of the Ray cluster has 2 CPUs; lower it (--resources cpu=N)"]
