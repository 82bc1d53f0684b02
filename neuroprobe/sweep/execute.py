"""Run a sweep on Ray: each run is one Ray task (one process), collected as it finishes.

Without an address, an embedded local Ray instance is started (and shut down at the end); with
``address="HOST:PORT"`` the runs go to that cluster, whose nodes must all see the sweep directory
and the experiment files at the same paths (a shared filesystem, like Ray Tune's storage_path).
One run failing (an exception, a crashed worker) never stops the others: it is written to its run's
failed.json and to sweep.csv, and the sweep goes on.
"""
from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, NeuroprobeError
from ..rundir import CONFIG_NAME, LOCK_NAME, check_out_name
from .results import read_run_result
from .spec import PlannedRun, SweepSpec, plan_runs
from .sweepdir import (FAILED_NAME, SweepLock, check_sweep_toml, csv_columns, read_csv_walls, read_failed,
                       run_state, write_csv, write_failed)

__all__ = ["run_sweep", "SweepOutcome", "parse_resources", "default_sweep_dir", "format_outcome", "run_one"]

RAY_MISSING = 'neuroprobe sweep needs ray: pip install "neuroprobe[sweep]"'
CONNECT_TIMEOUT_S = 5.0
WRITER_WAIT_S = 30.0


@dataclass
class SweepOutcome:
    """What a sweep did: rows of sweep.csv (one per point x seed) and counts of runs (a batched run
    is one run): done (finished now), failed (now or kept from an earlier attempt), skipped
    (finished before); failures: (run directory relative to DIR, error line)."""

    dir: Path
    csv: Path
    rows: list[dict] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def default_sweep_dir(spec: SweepSpec) -> Path:
    return Path("runs") / f"sweep-{spec.name}"


def one_line(e: BaseException) -> str:
    """'TypeName: message' on one line (no traceback)."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# ---------------------------------------------------------------------------------- the task
def run_one(config: str, overrides: list[str], seed: int, out: str) -> dict:
    """One run of the sweep (the body of a Ray task): ``neuroprobe run`` into ``out``, or its resume.

    Returns {"status": "done"|"failed", "wall_s": seconds, "error": one line}; an exception is caught
    here and written to out/failed.json, so the driver sees every failure the same way.
    """
    from ..runner import run_experiment

    _exit_with_parent()
    t0 = time.perf_counter()
    path = Path(out)
    try:
        _wait_for_writer(path)
        if (path / CONFIG_NAME).exists():
            # a run an earlier driver started: it continues from its checkpoint with its saved config
            run_experiment(resume=path, figures=False, progress=False)
        else:
            run_experiment(config, overrides, seed=seed, out=path, figures=False, progress=False,
                           resume_if_exists=True)
    except Exception as e:  # noqa: BLE001  (every failure becomes one line in sweep.csv)
        wall, err = time.perf_counter() - t0, one_line(e)
        try:
            write_failed(path, err, wall)
        except OSError:
            pass
        return {"status": "failed", "wall_s": wall, "error": err}
    return {"status": "done", "wall_s": time.perf_counter() - t0, "error": ""}


_WATCHING = False


def _exit_with_parent() -> None:
    """End this worker as soon as its parent (Ray's raylet) is gone: a killed driver takes its local
    Ray instance with it, and the worker would otherwise go on with its run for about 1.5 s (Ray's
    own check), writing into a directory the next sweep resumes. Its files stay consistent: the
    checkpoint is replaced atomically and a resume cuts metrics.csv back to the checkpoint's rows."""
    global _WATCHING
    if _WATCHING:
        return
    _WATCHING = True
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, name="neuroprobe-sweep-parent-watch", daemon=True).start()


def _wait_for_writer(path: Path, timeout_s: float = WRITER_WAIT_S) -> None:
    """Wait (up to ``timeout_s``) while another process holds the run directory's lock (a worker of
    a killed driver that has not ended yet). If it still holds the lock, run_experiment refuses the
    directory with one line naming it."""
    lock = path / LOCK_NAME
    if not lock.is_file():
        return
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- arguments
def parse_resources(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """'cpu=1,gpu=0.25' -> {"cpu": 1.0, "gpu": 0.25}: what each run takes from the cluster."""
    if spec is None:
        return {}
    items = spec.items() if isinstance(spec, Mapping) else \
        [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in str(spec).split(",") if p.strip()]
    out: dict[str, float] = {}
    for k, v in items:
        k = str(k).strip().lower()
        what = f"--resources {k}={v}"
        if k not in ("cpu", "gpu"):
            raise ConfigError(f"{what}: unknown resource; allowed: cpu, gpu (e.g. --resources cpu=1,gpu=0.25)")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: not a number") from None
        if not math.isfinite(x) or x < 0 or (k == "cpu" and x == 0):
            raise ConfigError(f"{what}: must be a finite number {'> 0' if k == 'cpu' else '>= 0'}")
        if x > 1 and x != int(x):
            raise ConfigError(f"{what}: above 1 a run takes whole {k.upper()}s (fractions are for sharing one)")
        out[k] = x
    return out


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = str(address).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r}: expected HOST:PORT of a Ray head, e.g. --address 10.0.0.1:6379")
    return host, int(port)


def check_address(address: str) -> None:
    """A plain TCP connect to the head first: Ray's own connect waits a long time before failing."""
    host, port = _split_address(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except socket.gaierror:
        raise ConfigError(f"--address {address}: unknown host {host!r}") from None
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise ConfigError(f"--address {address}: no Ray head reachable there ({why}); start one with "
                          f"ray start --head") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def _send_token_if_any() -> None:
    """Ray (2.5x+) enables token authentication on a head started where a token exists
    (~/.ray/auth_token), but a driver given an explicit address sends no token unless
    RAY_AUTH_MODE=token, and then waits about 20 s before failing: send the token we have (a head
    without authentication accepts it too), as ray.init does for a cluster it finds by itself."""
    if "RAY_AUTH_MODE" in os.environ or not _token_available():
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray read the mode when it was imported: refresh it (what Ray's own _enable_token_auth does)
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # noqa: BLE001  (another Ray version: the environment variable is what counts)
        pass


def _cpus() -> int:
    """The CPUs this process may use (a cpuset from taskset or SLURM counts, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _start_ray(ray, address: str | None, num_cpus: int | None) -> bool:
    """Connect (address) or start an embedded instance; True when this call started Ray."""
    if ray.is_initialized():
        if address is not None:
            raise ConfigError(f"--address {address}: Ray is already initialized in this process; call "
                              f"ray.shutdown() first, or run without an address to use it")
        return False
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        try:
            # "local": a new instance even when a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=num_cpus or _cpus(), include_dashboard=False, **quiet)
        except Exception as e:  # noqa: BLE001
            raise NeuroprobeError(f"cannot start a local Ray instance: {one_line(e)}") from None
        return True
    _send_token_if_any()
    try:
        ray.init(address=address, **quiet)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--address {address}: cannot connect to the Ray cluster there ({one_line(e)[:300]}); "
                          f"if its head uses token authentication, this machine needs the same token "
                          f"(~/.ray/auth_token or RAY_AUTH_TOKEN)") from None
    return True


def _check_fits(ray, runs: list[PlannedRun], resources: Mapping[str, float]) -> None:
    """Refuse what no node can ever run (Ray would wait forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    max_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    max_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    for cpus, gpus in dict.fromkeys((r.cpus, r.gpus) for r in runs):
        if any(n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus for n in nodes):
            continue
        if gpus > max_gpu:
            src = f"--resources gpu={gpus:g}" if "gpu" in resources else "device = \"cuda\" (1 GPU per run)"
            have = f"at most {max_gpu:g} GPU(s) on a node" if max_gpu else "no GPU"
            raise ConfigError(f"{src}: the Ray cluster has {have}; runs asking for it would wait forever")
        src = f"--resources cpu={cpus:g}" if "cpu" in resources else f"run.threads = {cpus:g} (CPUs per run)"
        raise ConfigError(f"{src}: the largest node of the Ray cluster has {max_cpu:g} CPUs"
                          f"{f' with {gpus:g} GPU' if gpus else ''}; lower it (--resources cpu=N)")


# ---------------------------------------------------------------------------------- rows
def _rows_of(run: PlannedRun, root: Path, status: str, wall: float | None, error: str) -> list[dict]:
    metric, finals = "", {}
    if status == "done":
        try:
            res = read_run_result(root / run.rel, curves=False)
            metric, finals = res.metric, res.finals
        except Exception as e:  # noqa: BLE001  (a damaged summary is one failed row, not a crash)
            status, error = "failed", f"finished but unreadable: {one_line(e)}"
    return [{"point": run.point, **run.settings, "seed": s, "run": run.rel, "metric": metric,
             "final": finals.get(s), "wall_s": wall, "status": status, "error": error} for s in run.seeds]


def _fmt_final(rows: list[dict]) -> str:
    vals = [r["final"] for r in rows if isinstance(r.get("final"), float)]
    return f"{sum(vals) / len(vals):.4g}" if vals else "-"


def run_sweep(spec: SweepSpec, out: str | Path | None = None, address: str | None = None,
              resources: str | Mapping[str, float] | None = None, progress: bool = True,
              retry_failed: bool = False, num_cpus: int | None = None) -> SweepOutcome:
    """Run every point x seed of ``spec`` into ``out`` (default runs/sweep-<name>) on Ray.

    address: "HOST:PORT" of a Ray head (default: an embedded local instance with ``num_cpus``, all
    CPUs by default; a Ray already initialized in this process is used as is). resources: what each
    run takes ("cpu=1,gpu=0.25"; default: the run's run.threads CPUs, 1 GPU on cuda). A rerun with
    the same sweep continues it (finished runs are read back; failed ones stay failed unless
    ``retry_failed``). Returns the rows of sweep.csv and counts; one-line ConfigError on bad input.
    """
    res = parse_resources(resources)
    if num_cpus is not None and address is not None:
        raise ConfigError("--num-cpus sizes the embedded local Ray; a cluster (--address) has its own")
    runs = plan_runs(spec, res)  # validates every point x seed before anything starts
    root = check_out_name(str(out) if out is not None else str(default_sweep_dir(spec)), "--out").resolve()
    ray = _import_ray()
    if address is not None:
        check_address(address)
    with SweepLock(root):
        check_sweep_toml(root, spec)
        return _execute(ray, spec, runs, root, address, res, progress, retry_failed, num_cpus)


def _execute(ray, spec: SweepSpec, runs: list[PlannedRun], root: Path, address: str | None,
             res: Mapping[str, float], progress: bool, retry_failed: bool, num_cpus: int | None) -> SweepOutcome:
    outcome = SweepOutcome(dir=root, csv=root / "sweep.csv")
    columns = csv_columns(spec)
    walls = read_csv_walls(root)
    rows: dict[str, list[dict]] = {}
    todo: list[PlannedRun] = []
    for run in runs:
        d = root / run.rel
        state = run_state(d)
        if state == "failed" and retry_failed:
            shutil.rmtree(d)  # a retry starts afresh: the failed attempt's checkpoint may be the problem
            state = "new"
        if state == "done":
            rows[run.rel] = _rows_of(run, root, "done", walls.get(run.rel), "")
            outcome.skipped += 1
        elif state == "failed":
            err, wall = read_failed(d)
            rows[run.rel] = _rows_of(run, root, "failed", wall, err)
            outcome.failed += 1
            outcome.failures.append((run.rel, err))
        else:
            rows[run.rel] = _rows_of(run, root, "pending", None, "")
            todo.append(run)

    def flush() -> None:
        outcome.rows = [r for run in runs for r in rows[run.rel]]
        write_csv(root, columns, outcome.rows)

    flush()
    if not todo:
        return outcome
    started = _start_ray(ray, address, num_cpus)
    pending: dict = {}
    try:
        _check_fits(ray, todo, res)
        task = ray.remote(max_retries=0)(run_one)
        for run in todo:
            ref = task.options(num_cpus=run.cpus, num_gpus=run.gpus, name=f"sweep:{run.rel}").remote(
                str(spec.config), run.overrides, run.seed, str(root / run.rel))
            pending[ref] = (run, time.perf_counter())
        from tqdm import tqdm

        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"sweep {spec.name}", unit="run",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    run, t0 = pending.pop(ref)
                    try:
                        r = ray.get(ref)
                    except ray.exceptions.RayError as e:  # a crashed worker or node, a cancelled task
                        r = {"status": "failed", "wall_s": time.perf_counter() - t0, "error": one_line(e)[:500]}
                        if not (root / run.rel / FAILED_NAME).exists():
                            write_failed(root / run.rel, r["error"], r["wall_s"])
                    rows[run.rel] = _rows_of(run, root, r["status"], r["wall_s"], r["error"])
                    status = rows[run.rel][0]["status"]
                    if status == "done":
                        outcome.done += 1
                    else:
                        outcome.failed += 1
                        outcome.failures.append((run.rel, rows[run.rel][0]["error"]))
                    flush()  # a killed driver loses nothing already finished
                    bar.update(1)
                    bar.set_postfix_str(f"last {run.rel}: {_fmt_final(rows[run.rel]) if status == 'done' else 'failed'}"
                                        f", {outcome.failed} failed", refresh=True)
        finally:
            bar.close()
    finally:
        for ref in pending:  # interrupted: stop what still runs (the runs resume on the next sweep)
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        if started:
            ray.shutdown()
    return outcome


def format_outcome(o: SweepOutcome) -> str:
    """The end-of-sweep summary: counts, where the table is, and each failed run's error line."""
    lines = [f"runs: {o.done} done, {o.failed} failed, {o.skipped} skipped (already done)", f"wrote {o.csv}"]
    lines += [f"failed {rel}: {err}" for rel, err in o.failures]
    return "\n".join(lines)
