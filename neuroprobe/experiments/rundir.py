"""A run directory: the resolved config, an append-only ``metrics.csv``, checkpoints, figures.

Crash safety: metrics rows are appended and flushed as they are produced; checkpoints are written
to a temporary file and atomically renamed, and each records how many metric rows it covers. On
``--resume`` the CSV is cut back to that many rows (rows produced after the checkpoint are
recomputed, deterministically), so the finished file is the same as an uninterrupted run's: no row
lost, none duplicated.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import tomli_w
import torch

from ..errors import NeuroprobeError

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.csv"
CHECKPOINT_NAME = "checkpoint.pt"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def create(self, cfg: dict, fresh: bool) -> None:
        """Make the directory and write the resolved config. ``fresh`` refuses to overwrite an existing run."""
        if fresh and self.metrics_path.exists():
            raise NeuroprobeError(f"run directory {str(self.path)!r} already holds a run; use --resume {self.path} "
                                  f"to continue it or --out to pick another directory")
        self.path.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in cfg.items() if v is not None and k != "kind"}  # "kind" is derived
        (self.path / CONFIG_NAME).write_text(tomli_w.dumps(clean))

    def open_metrics(self, columns: list[str], keep_rows: int) -> "MetricsWriter":
        return MetricsWriter(self.metrics_path, columns, keep_rows)

    def save_checkpoint(self, state: dict) -> None:
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self) -> dict | None:
        if not self.checkpoint_path.exists():
            return None
        try:
            return torch.load(self.checkpoint_path, weights_only=False)
        except Exception as e:  # a torn file cannot happen (atomic rename), but a foreign one can
            raise NeuroprobeError(f"checkpoint {str(self.checkpoint_path)!r} cannot be read: {e}") from None


def learner_state(net, opt, rule, generator=None) -> dict:
    """The parts of a checkpoint every loop has: network, optimizer, rule and (optionally) RNG state."""
    state = {"net": net.state_dict(), "opt": opt.state_dict(), "rule": rule.state_dict()}
    if generator is not None:
        state["gen"] = generator.get_state()
    return state


def restore_learner(ckpt: dict, net, opt, rule, generator=None) -> None:
    """Inverse of :func:`learner_state`."""
    net.load_state_dict(ckpt["net"])
    opt.load_state_dict(ckpt["opt"])
    rule.load_state_dict(ckpt["rule"])
    if generator is not None:
        generator.set_state(ckpt["gen"])


class MetricsWriter:
    """Append-only CSV with a fixed header; on open, keeps only the first ``keep_rows`` data rows."""

    def __init__(self, path: Path, columns: list[str], keep_rows: int):
        self.path, self.columns = path, columns
        rows: list[str] = []
        if path.exists() and keep_rows > 0:
            lines = path.read_text().splitlines(keepends=True)
            header = lines[0].strip().split(",") if lines else []
            if header != columns:
                raise NeuroprobeError(f"{str(path)!r} has columns {header}, expected {columns}")
            rows = [ln for ln in lines[1:] if ln.endswith("\n")][:keep_rows]
            if len(rows) < keep_rows:
                raise NeuroprobeError(f"{str(path)!r} has {len(rows)} rows but the checkpoint covers {keep_rows}")
        with open(path, "w", newline="") as f:
            f.write(",".join(columns) + "\n")
            f.writelines(rows)
        self.rows = len(rows)
        self._f = open(path, "a", newline="")

    def write(self, row: dict) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_fmt(row[c]) for c in self.columns])
        self._f.write(buf.getvalue())
        self._f.flush()
        self.rows += 1

    def close(self) -> None:
        self._f.close()


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def read_metrics(path: str | Path) -> dict[str, list]:
    """Read a metrics.csv into columns of floats (or strings where not numeric)."""
    path = Path(path)
    if not path.is_file():
        raise NeuroprobeError(f"{str(path)!r} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols: dict[str, list] = {c: [] for c in reader.fieldnames or []}
        for row in reader:
            for c, v in row.items():
                try:
                    cols[c].append(float(v))
                except (TypeError, ValueError):
                    cols[c].append(v)
    return cols
