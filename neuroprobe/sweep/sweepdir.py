"""The sweep directory: ``sweep.toml`` (the resolved sweep), ``sweep.csv`` (one row per point x seed),
the run directories, and ``failed.json`` in a run that raised.

Layout (the contract with :mod:`neuroprobe.sweep.report`)::

    DIR/sweep.toml       name, config (absolute), config_sha256, grid {key: [values]}, points [{key: value}],
                         seeds [ints], set ["KEY=VALUE"], batch_seeds
    DIR/sweep.csv        point, <grid keys>, <keys of extra points>, seed, run, metric, final, wall_s,
                         status (done | failed | pending), error; rewritten atomically as runs finish
    DIR/<slug>/s<seed>   a run directory (``neuroprobe run``'s layout); s<first>-<last> when its seeds
                         are batched; failed.json {"error": one line, "wall_s": s} if the run raised
    DIR/.sweep.lock      held (flock) by the driver running the sweep: one driver per directory

A rerun into the same DIR with the same sweep resumes it: runs with summary.json are read back, runs
with config.toml continue from their checkpoint, failed runs stay failed (unless retried).
"""
from __future__ import annotations

import csv
import datetime as _dt
import errno
import fcntl
import io
import json
import math
import os
import socket
import tomllib
from pathlib import Path

import tomli_w

from ..errors import ConfigError
from ..rundir import atomic_write
from .spec import SweepSpec

__all__ = ["SWEEP_TOML", "SWEEP_CSV", "FAILED_NAME", "SweepLock", "check_sweep_toml", "run_state", "write_failed",
           "read_failed", "csv_columns", "write_csv", "read_csv_walls", "atomic_write"]

SWEEP_TOML = "sweep.toml"
SWEEP_CSV = "sweep.csv"
FAILED_NAME = "failed.json"
LOCK_NAME = ".sweep.lock"
SUMMARY_NAME = "summary.json"
_OWN = {SWEEP_TOML, SWEEP_CSV, LOCK_NAME, SWEEP_CSV + ".tmp", SWEEP_TOML + ".tmp"}
# what must match for a rerun to continue a sweep (the name and where it runs do not change results)
_COMPARED = ("config", "config_sha256", "grid", "points", "seeds", "set", "batch_seeds")


class SweepLock:
    """One driver per sweep directory: an exclusive ``flock`` on DIR/.sweep.lock (released by the OS
    when the driver dies, so a killed sweep never leaves a stale lock)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._fd: int | None = None

    def __enter__(self) -> "SweepLock":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {str(self.root)!r}: cannot create the sweep directory "
                              f"({e.strerror or type(e).__name__})") from None
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"sweep directory {str(self.root)!r} is being swept by {holder}; wait for it or "
                                  f"choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{_dt.datetime.now().isoformat(timespec='seconds')}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _short(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _ordered(v):
    """Tables compared with their order (the grid's order orders the points, a point's names its
    directory)."""
    if isinstance(v, list):
        return [_ordered(x) for x in v]
    return list(v.items()) if isinstance(v, dict) else v


def check_sweep_toml(root: Path, spec: SweepSpec) -> bool:
    """Write DIR/sweep.toml, or check that the one there records the same sweep.

    Returns True when an earlier sweep.toml matched (the sweep resumes). A differing one is refused
    with one line naming what differs, unless the directory holds no runs yet.
    """
    path = root / SWEEP_TOML
    new = spec.record()
    if path.exists():
        try:
            old = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: unreadable ({e}); remove it or choose another --out") from None
        diffs = [k for k in _COMPARED if _ordered(old.get(k)) != _ordered(new[k])]
        if not diffs:
            if old.get("name") != new["name"]:
                atomic_write(path, tomli_w.dumps(new).encode())
            return True
        if any(p.name not in _OWN for p in root.iterdir()):
            what = []
            for k in diffs:
                if k == "config_sha256":
                    what.append("config (the file's content changed since the sweep started)")
                else:
                    what.append(f"{k} (was {_short(old.get(k))}, now {_short(new[k])})")
            raise ConfigError(f"{path} records another sweep: {'; '.join(what)}; rerun the same sweep to continue "
                              f"it, or use --out for a new sweep directory")
    atomic_write(path, tomli_w.dumps(new).encode())
    return False


# ---------------------------------------------------------------------------------- run directories
def run_state(run_dir: Path) -> str:
    """'done' (summary.json: finished), 'failed' (failed.json), 'partial' (config.toml: resume it)
    or 'new'."""
    if (run_dir / SUMMARY_NAME).is_file():
        return "done"
    if (run_dir / FAILED_NAME).is_file():
        return "failed"
    if (run_dir / "config.toml").is_file():
        return "partial"
    return "new"


def write_failed(run_dir: Path, error: str, wall_s: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / FAILED_NAME, json.dumps({"error": error, "wall_s": wall_s}, indent=2).encode())


def read_failed(run_dir: Path) -> tuple[str, float]:
    """(error line, wall_s) of a failed run."""
    try:
        d = json.loads((run_dir / FAILED_NAME).read_text())
        return str(d.get("error", "failed")), float(d.get("wall_s", math.nan))
    except (OSError, ValueError, TypeError, AttributeError):
        return "failed (failed.json unreadable)", math.nan


# ---------------------------------------------------------------------------------- sweep.csv
def csv_columns(spec: SweepSpec) -> list[str]:
    """point, grid keys, keys only extra points set (first-seen order), then the per-run columns."""
    keys = list(spec.grid)
    for p in spec.points:
        keys += [k for k in p if k not in keys]
    return ["point", *keys, "seed", "run", "metric", "final", "wall_s", "status", "error"]


def _cell(v) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def write_csv(root: Path, columns: list[str], rows: list[dict]) -> Path:
    """Rewrite DIR/sweep.csv atomically (rows: {column: value}; missing cells are empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    path = root / SWEEP_CSV
    atomic_write(path, buf.getvalue().encode())
    return path


def read_csv_walls(root: Path) -> dict[str, float]:
    """{run: wall_s} of the finished rows of an earlier sweep.csv (a skipped run keeps its wall clock)."""
    path = root / SWEEP_CSV
    out: dict[str, float] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    if row.get("status") in ("done", "failed") and row.get("wall_s"):
                        out[row["run"]] = float(row["wall_s"])
                except (TypeError, ValueError, KeyError):
                    continue
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return out
