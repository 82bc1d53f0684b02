"""Runs neuroprobe's Lava runner in the Lava environment, over files, with a timeout.

Lava 0.10.0 needs Python 3.10; neuroprobe runs on 3.11. The setup (``make lava``, also run by
``make test``) creates ``.venv-lava`` at the repository root; ``NEUROPROBE_LAVA_PYTHON`` points
elsewhere. Every run has a timeout, starts the runner in its own process group and kills the whole
group on expiry (Lava's multiprocess runtime can hang); a missing interpreter or Lava install, a
timeout or a crash raises :class:`LavaError` with one line saying what happened.

The runner never outlives its parent: it gets the read end of a pipe on stdin (the driver keeps the
write end and never writes) and the parent's PID in ``NEUROPROBE_LAVA_PARENT``. When the pipe reaches
EOF or its parent PID changes — the driver's process ended in any way, SIGKILL included — a watchdog
thread in the runner kills the rest of its process group (Lava's runtime processes), removes the
job's temporary directory (``NEUROPROBE_LAVA_TMPDIR``; also the runner's ``TMPDIR`` where its path
is short enough for Lava's sockets, so Lava's own temporary files go with it) and multiprocessing's
temporary directory, and kills itself: within about 0.1 s (measured, tests/test_lava_driver.py).
On a timeout or an exception in the driver (Ctrl-C included) the driver closes the pipe itself,
and kills the group after 2 s if anything is left.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import NeuroprobeError

__all__ = ["LavaError", "lava_python", "lava_status", "run_job", "RUNNER"]

RUNNER = Path(__file__).resolve().parent / "lava_side" / "runner.py"
_REPO = Path(__file__).resolve().parents[3]
# Lava's multiprocessing puts AF_UNIX sockets at $TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX (≤ 107
# characters in all): a longer job directory is not made the runner's TMPDIR
_MAX_LAVA_TMPDIR = 70


class LavaError(NeuroprobeError):
    """The Lava environment is missing or broken, or a Lava run failed or timed out."""


def lava_python() -> Path:
    """The Lava environment's interpreter: $NEUROPROBE_LAVA_PYTHON, else <repo>/.venv-lava/bin/python."""
    env = os.environ.get("NEUROPROBE_LAVA_PYTHON")
    return Path(env) if env else _REPO / ".venv-lava" / "bin" / "python"


def _stop_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """End the runner and its whole process group, and reap the runner. Closing its stdin first lets
    the runner's watchdog do it (it also removes its temporary files); whatever is still alive after
    ``grace`` seconds (no watchdog: not the runner, or not started yet) is killed with the group."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    t0 = time.monotonic()
    while time.monotonic() - t0 < grace:
        # exited, not reaped (WNOWAIT): its PID, the group's ID, cannot be reused before proc.wait()
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.02)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _run(cmd: list[str], timeout: float, on_line: Callable[[str], None] | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new process group; on timeout, or any exception here (Ctrl-C), the whole
    group is killed. stderr lines are passed to ``on_line`` as they arrive (the runner reports
    progress there). stdin is a pipe this process holds open and never writes: its EOF tells the
    runner's watchdog that this process is gone (see the module docstring)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "NEUROPROBE_LAVA_PARENT": str(os.getpid()), **(env or {})})
    err_lines: list[str] = []
    out_parts: list[str] = []

    def pump_err() -> None:
        for line in proc.stderr:
            err_lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    def pump_out() -> None:
        out_parts.append(proc.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_err, pump_out)]
    for th in readers:
        th.start()
    try:
        proc.wait(timeout=max(0.0, timeout))
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise LavaError(f"Lava run timed out after {timeout:g} s (process group killed): {' '.join(cmd[1:2])}")
    except BaseException:  # Ctrl-C, SystemExit, …: no Lava process outlives this call
        _stop_group(proc)
        raise
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
    for th in readers:
        th.join(timeout=5)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out_parts), "".join(err_lines))


def lava_status(timeout: float = 60.0) -> dict:
    """{"python": path, "ok": bool, "version": str | None, "detail": one line} — whether the Lava
    environment exists and imports lava and its LIF process."""
    py = lava_python()
    if not py.exists():
        return {"python": str(py), "ok": False, "version": None,
                "detail": f"no Lava interpreter at {py} (run `make lava`, or set NEUROPROBE_LAVA_PYTHON)"}
    code = ("import importlib.metadata as m, sys; import lava.proc.lif.process; "
            "print(m.version('lava-nc'), sys.version.split()[0])")
    try:
        r = _run([str(py), "-c", code], timeout)
    except (LavaError, OSError) as e:
        return {"python": str(py), "ok": False, "version": None, "detail": str(e)}
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"python": str(py), "ok": False, "version": None, "detail": f"lava does not import: {last}"}
    version, pyver = r.stdout.split()
    return {"python": str(py), "ok": True, "version": version, "detail": f"lava-nc {version} on Python {pyver}"}


def run_job(job: dict, arrays: dict[str, np.ndarray], timeout: float = 600.0,
            workdir: str | Path | None = None, progress: bool = False, desc: str = "Lava") -> dict[str, np.ndarray]:
    """Write the job, run the Lava runner on it, return the result arrays (see runner.py).
    ``progress``: a progress bar fed by the runner's reports (needs ``report_every`` in the job)."""
    py = lava_python()
    if not py.exists():
        raise LavaError(f"no Lava interpreter at {py}: run `make lava` (creates .venv-lava with lava-nc 0.10.0 "
                        "on Python 3.10) or set NEUROPROBE_LAVA_PYTHON")
    with tempfile.TemporaryDirectory(prefix="neuroprobe-lava-", dir=workdir) as tmp:
        job_path, res_path = Path(tmp) / "job.npz", Path(tmp) / "result.npz"
        np.savez(job_path, **{"job.json": np.array(json.dumps(job))}, **arrays)
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(job.get("steps", 0)), desc=desc, unit="step", mininterval=2.0)

        def on_line(line: str) -> None:
            if bar is not None and line.startswith("progress "):
                bar.n = int(line.split()[1].split("/")[0])
                bar.refresh()

        try:
            env = {"NEUROPROBE_LAVA_TMPDIR": tmp}
            if len(tmp) <= _MAX_LAVA_TMPDIR:  # Lava's own temporary files (multiprocessing's) in it too
                env["TMPDIR"] = tmp
            r = _run([str(py), str(RUNNER), str(job_path), str(res_path)], timeout, on_line, env=env)
        finally:
            if bar is not None:
                bar.close()
        wall = time.perf_counter() - t0
        if r.returncode != 0 or not res_path.exists():
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            msg = next((ln for ln in reversed(lines) if ln.startswith("lava runner:")), lines[-1] if lines else "")
            raise LavaError(f"Lava run failed (exit {r.returncode}): {msg or 'no output'}")
        with np.load(res_path) as f:
            out = {k: f[k] for k in f.files}
    out["wall_s"] = np.array(wall)
    return out


if __name__ == "__main__":  # python -m neuroprobe.backends.lava.driver: print the status
    print(json.dumps(lava_status(), indent=1))
    sys.exit(0)
