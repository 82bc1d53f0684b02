"""What one finished run directory says, per seed: its final metric and its learning curve.

Every run kind writes ``summary.json`` and ``metrics.csv`` (see :mod:`neuroprobe.reporters`); this
module reads them the same way for every kind, so the sweep table and the report need no per-kind
code:

* runs whose metrics have a ``seed`` column (RL returns, spiking trials, distal reward) give one
  value per seed: ``summary["per_seed"]`` in sorted seed order, and one curve per seed
  (``episode``/``return`` or ``time``/``rank``);
* supervised stream runs (CET, probes on digits) are one seed: ``summary["final"]`` and the
  ``step``/``accuracy`` curve, labelled with the config's ``seed``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..rundir import CONFIG_NAME, read_metrics
from ..tomlio import read_toml

__all__ = ["RunResult", "read_run_result"]

# metrics.csv columns that make a learning curve: (x column, y column), first match wins
_CURVES = (("episode", "return"), ("time", "rank"), ("step", "accuracy"))


@dataclass
class RunResult:
    """One run directory, read back.

    metric: what ``finals`` measures (the run's summary metric, e.g. "test accuracy").
    finals: {seed: final value}; NaN where the run wrote no value.
    x_name, y_name: the curve's axes (metrics.csv column names); "" when the run has no curve.
    curves: {seed: (x, y)} as float arrays of equal length.
    """

    metric: str = ""
    finals: dict[int, float] = field(default_factory=dict)
    x_name: str = ""
    y_name: str = ""
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _config_seed(run_dir: Path) -> int:
    try:
        return int(read_toml(run_dir / CONFIG_NAME).get("seed", 0))
    except (OSError, ValueError, TypeError):
        return 0


def read_run_result(run_dir: str | Path, curves: bool = True) -> RunResult:
    """Read ``summary.json`` (finals) and, with ``curves``, ``metrics.csv`` (curves) of a finished run."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    m = read_metrics(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else {}
    res = RunResult(metric=str(summary.get("metric", "")))
    if "seed" in m and m["seed"]:
        seeds = sorted({int(s) for s in m["seed"]})
    else:
        seeds = [_config_seed(run_dir)]
    if "per_seed" in summary:
        vals = [float(v) for v in summary["per_seed"]]
        res.finals = dict(zip(seeds, vals)) if len(vals) == len(seeds) else dict(enumerate(vals))
    else:
        res.finals = {seeds[0]: float(summary.get("final", math.nan))}
    if not curves or not m:
        return res
    for xn, yn in _CURVES:
        if xn in m and yn in m:
            res.x_name, res.y_name = xn, yn
            x, y = np.asarray(m[xn], dtype=float), np.asarray(m[yn], dtype=float)
            if "seed" in m:
                s = np.asarray(m["seed"], dtype=np.int64)
                res.curves = {k: (x[s == k], y[s == k]) for k in seeds}
            else:
                res.curves = {seeds[0]: (x, y)}
            break
    return res
