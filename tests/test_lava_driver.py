"""The Lava driver's robustness: the runner dies with its whole process group, and its temporary
directory goes, when its parent dies (SIGKILL included); ``neuroprobe deploy`` ends in one line
within seconds on any bad argument.

A fake Lava interpreter (``NEUROPROBE_LAVA_PYTHON``) tests the watchdog without Lava: it runs the
real ``runner.py`` with a fake ``lava`` package whose import starts three ``sleep`` children and
hangs. The ``lava``-marked test does the same with a real ``neuroprobe deploy``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLEANUP_S = 5.0  # the acceptance bound: no Lava process and no temporary directory after this

FAKE_LAVA_INIT = """
import os, subprocess, time
kids = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]
out = os.environ["FAKE_LAVA_PIDS"]
with open(out + ".part", "w") as f:
    f.write(" ".join(str(p) for p in [os.getpid(), *(k.pid for k in kids)]))
os.replace(out + ".part", out)
time.sleep(300)
"""

PARENT = ("from neuroprobe.backends.lava import run_job; "
          "run_job({'precision': 'fixed', 'steps': 1, 'populations': [], 'projections': []}, {}, timeout=300)")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after ``pid (comm)``: state, ppid, pgrp, …; None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has ended (its parent may not reap it)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] not in ("Z", "X") and int(st[2]) == pgid:
                out.append(int(entry))
    return out


def _wait_gone(pgid: int, pids: list[int], tmpdir: Path, limit: float, t0: float) -> float:
    """Seconds until no process of the group (nor any of ``pids``) lives and ``tmpdir`` (the
    parent's TMPDIR) is empty: no job directory, none of Lava's own temporary files, counted from
    ``t0`` (the signal); fails after ``limit``."""
    while True:  # looks at least once: the parent's own exit may already have taken ``limit``
        elapsed = time.monotonic() - t0
        left = set(group_members(pgid)) | {p for p in pids if _alive(p)}
        dirs = list(tmpdir.iterdir())
        if not left and not dirs:
            return elapsed
        if elapsed >= limit:
            pytest.fail(f"after {elapsed:.1f} s: processes {sorted(left)} alive, job directories {dirs} left")
        time.sleep(0.05)


def _fake_lava(tmp_path: Path, use_exec: bool) -> Path:
    pkg = tmp_path / "fakelava" / "lava"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_LAVA_INIT)
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path / 'fakelava'} {'exec ' if use_exec else ''}"
                    f"{sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("use_exec, sig", [(True, signal.SIGKILL), (False, signal.SIGKILL), (True, signal.SIGTERM),
                                           (True, signal.SIGINT)],
                         ids=["SIGKILL-runner-child-of-driver", "SIGKILL-runner-behind-a-shell", "SIGTERM", "SIGINT"])
def test_parent_death_kills_the_runner_group_and_removes_its_directory(tmp_path, use_exec, sig):
    """Runner started directly (pipe EOF and parent-PID change both fire) or behind a shell that
    does not exec (only the pipe's EOF tells): either way the whole group dies and the directory
    goes. SIGTERM ends the parent without clean-up (the watchdog acts); SIGINT is Ctrl-C (the
    driver kills the group itself)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pids_file = tmp_path / "pids"
    env = {**os.environ, "NEUROPROBE_LAVA_PYTHON": str(_fake_lava(tmp_path, use_exec)), "TMPDIR": str(tmpdir),
           "FAKE_LAVA_PIDS": str(pids_file)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while not pids_file.exists():
            assert parent.poll() is None, "the parent ended before the fake runner started"
            assert time.monotonic() - t0 < 60, "the fake runner did not start"
            time.sleep(0.05)
        runner, *kids = map(int, pids_file.read_text().split())
        pgid = int(_stat(runner)[2])
        assert pgid != os.getpgrp() and set(kids) <= set(group_members(pgid))
        assert len(list(tmpdir.glob("neuroprobe-lava-*"))) == 1
        t_kill = time.monotonic()
        os.kill(parent.pid, sig)
        parent.wait(timeout=30)
        took = _wait_gone(pgid, [runner, *kids], tmpdir, CLEANUP_S, t_kill)
        print(f"fake runner group gone and directory removed {took:.2f} s after {sig.name} of its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_runner_started_by_hand_has_no_watchdog(tmp_path):
    """Without NEUROPROBE_LAVA_PARENT (run by hand, stdin at EOF) the runner does its job normally."""
    from neuroprobe.backends.lava.driver import RUNNER

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROPROBE_LAVA_")}
    r = subprocess.run([sys.executable, str(RUNNER)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2 and "usage: runner.py" in r.stderr


def _runner_of(pid: int) -> int | None:
    """The Lava runner started by process ``pid`` once it has started processes, else None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None or int(st[1]) != pid:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"runner.py" in cmd and len(group_members(int(entry))) >= 3:
            return int(entry)
    return None


@pytest.fixture
def short_tmpdir():
    """A TMPDIR short enough to hold Lava's sockets (see driver._MAX_LAVA_TMPDIR), so that every
    temporary file of the run lands in it."""
    d = Path(tempfile.mkdtemp(prefix="np-lava-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.lava
def test_sigkill_of_deploy_leaves_no_lava_process_and_no_temporary_directory(tmp_path, short_tmpdir):
    tmpdir = short_tmpdir
    cmd = [sys.executable, "-m", "neuroprobe.cli", "deploy", "experiments/distal_reward_loihi.toml", "--steps",
           "100000", "--out", str(tmp_path / "out"), "--no-progress"]
    err = tmp_path / "deploy.err"
    with err.open("w") as f:
        deploy = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmpdir)},
                                  stdout=subprocess.DEVNULL, stderr=f)
    try:
        t0 = time.monotonic()
        runner = None
        while runner is None:
            assert deploy.poll() is None, \
                f"deploy ended (exit {deploy.returncode}) before Lava was up: {err.read_text()[-1000:]}"
            assert time.monotonic() - t0 < 300, "the Lava runner did not come up"
            time.sleep(0.2)
            runner = _runner_of(deploy.pid)
        members, stable_since = group_members(runner), time.monotonic()
        while time.monotonic() - stable_since < 1.5:  # Lava's runtime is up: its processes stop multiplying
            assert deploy.poll() is None and time.monotonic() - t0 < 300, "the Lava runtime did not settle"
            time.sleep(0.1)
            now = group_members(runner)
            if len(now) != len(members):
                members, stable_since = now, time.monotonic()
        assert len(members) >= 3
        assert len(list(tmpdir.glob("neuroprobe-lava-*"))) == 1
        t_kill = time.monotonic()
        os.kill(deploy.pid, signal.SIGKILL)
        deploy.wait()
        took = _wait_gone(runner, members, tmpdir, CLEANUP_S, t_kill)
        print(f"Lava runner and its {len(members) - 1} processes gone, directory removed {took:.2f} s after "
              f"SIGKILL of deploy")
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait()


# ---- deploy: any bad argument ends in one line within seconds -------------------------------------------

BAD_ARGS = {
    "record-steps-0": ["experiments/distal_reward_loihi.toml", "--record-steps", "0"],
    "record-steps-negative": ["experiments/distal_reward_loihi.toml", "--record-steps", "-3"],
    "timeout-0": ["experiments/distal_reward_loihi.toml", "--timeout", "0"],
    "timeout-negative": ["experiments/distal_reward_loihi.toml", "--timeout", "-1"],
    "timeout-nan": ["experiments/distal_reward_loihi.toml", "--timeout", "nan"],
    "timeout-inf": ["experiments/distal_reward_loihi.toml", "--timeout", "inf"],
    "steps-0": ["experiments/distal_reward_loihi.toml", "--steps", "0"],
    "steps-negative": ["experiments/distal_reward_loihi.toml", "--steps", "-5"],
    "missing-config": ["experiments/no_such_config.toml"],
    "rate-config": ["experiments/nrl_cartpole.toml"],
    "float-with-noise": ["experiments/distal_reward_loihi.toml", "--precision", "float"],
    "fixed-with-refractory-period": ["experiments/distal_reward.toml"],
}


def _deploy_cli(args: list[str], cwd: Path, tmpdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuroprobe.cli", "deploy", *args, "--no-progress"], cwd=cwd,
                          capture_output=True, text=True, timeout=30, env={**os.environ, "TMPDIR": str(tmpdir)})


def _assert_one_line_error(r: subprocess.CompletedProcess, tmpdir: Path) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert not list(tmpdir.glob("neuroprobe-lava-*"))


@pytest.mark.parametrize("args", list(BAD_ARGS.values()), ids=list(BAD_ARGS))
def test_deploy_bad_argument_is_one_line(args, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    _assert_one_line_error(_deploy_cli([*args, "--out", str(tmp_path / "out")], ROOT, tmpdir), tmpdir)


def test_deploy_run_directory_without_checkpoint_is_one_line(tmp_path):
    import tomli_w

    from neuroprobe.config import load_experiment

    run = tmp_path / "runs" / "distal_reward_loihi-0"
    run.mkdir(parents=True)
    exp = load_experiment(ROOT / "experiments" / "distal_reward_loihi.toml", [])
    (run / "config.toml").write_text(tomli_w.dumps(exp.to_toml_dict()))  # a run directory, no checkpoint.pt
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    r = _deploy_cli([str(run), "--out", str(tmp_path / "out")], tmp_path, tmpdir)
    _assert_one_line_error(r, tmpdir)
    assert "checkpoint" in r.stderr


@pytest.mark.lava
def test_deploy_timeout_is_one_line_and_leaves_nothing(tmp_path, short_tmpdir):
    """--timeout expiring mid-run: one line, exit 1, no Lava process, no temporary file."""
    r = subprocess.run([sys.executable, "-m", "neuroprobe.cli", "deploy", "experiments/distal_reward_loihi.toml",
                        "--steps", "100000", "--timeout", "5", "--out", str(tmp_path / "out"), "--no-progress"],
                       cwd=ROOT, env={**os.environ, "TMPDIR": str(short_tmpdir)}, capture_output=True, text=True,
                       timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: Lava run timed out after 5 s (process group killed)"), lines
    t0 = time.monotonic()
    while time.monotonic() - t0 < CLEANUP_S:
        left = [e for e in os.listdir("/proc") if e.isdigit() and str(short_tmpdir).encode() in
                _cmdline(int(e))]
        if not left and not any(short_tmpdir.iterdir()):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"left after the timeout: processes {left}, files {list(short_tmpdir.iterdir())}")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
