"""Figures from run directories (matplotlib, Agg): learning curves with a rolling mean.

Reads only files (``metrics.csv``, ``config.toml``), never live objects, so any finished or
interrupted run can be plotted with ``neuroprobe plot RUN_DIR``.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .errors import NeuroprobeError  # noqa: E402
from .experiments.rundir import read_metrics  # noqa: E402


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (shorter at the start), same length as x."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=float), 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_run(run_dir: str | Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write ``learning_curve.<fmt>`` into the run directory; returns the paths."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.csv").is_file():
        raise NeuroprobeError(f"{str(run_dir)!r} is not a run directory (no metrics.csv)")
    cfg = tomllib.loads((run_dir / "config.toml").read_text()) if (run_dir / "config.toml").is_file() else {}
    m = read_metrics(run_dir / "metrics.csv")
    if not m or not next(iter(m.values())):
        raise NeuroprobeError(f"{str(run_dir / 'metrics.csv')!r} has no rows yet")
    window = cfg.get("run", {}).get("rolling", 50)
    rule = cfg.get("rule", {})
    title = f"{cfg.get('name', run_dir.name)} · {rule.get('name', '?').upper()} · {cfg.get('task', {}).get('name', '?')}"
    if rule.get("name") == "cet":  # the setting is what distinguishes CET runs
        title += f" · {rule.get('trace')} n={rule.get('order')} D={rule.get('delay')} lr={rule.get('lr')}"
    fig, ax = plt.subplots(figsize=(7, 4))
    if "return" in m:
        seeds, ret, ep = np.asarray(m["seed"]), np.asarray(m["return"]), np.asarray(m["episode"])
        curves = []
        for s in sorted(set(seeds)):
            sel = seeds == s
            r = rolling_mean(ret[sel], window)
            ax.plot(ep[sel], r, lw=0.8, alpha=0.5, label=f"seed {int(s)}")
            curves.append(r)
        n = min(len(c) for c in curves)
        ax.plot(np.arange(n), np.mean([c[:n] for c in curves], 0), color="k", lw=2, label="mean over seeds")
        ax.set_xlabel("episode")
        ax.set_ylabel(f"return (rolling mean of {window})")
    else:
        ax.plot(m["step"], m["accuracy"], "o-", ms=3, label="test accuracy")
        ax.plot(m["step"], m["train_accuracy"], lw=1, alpha=0.7, label="train accuracy (since last eval)")
        ax.set_xlabel("step (one input per stream per step)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    paths = []
    for fmt in formats:
        p = run_dir / f"learning_curve.{fmt}"
        fig.savefig(p, dpi=120)
        paths.append(p)
    plt.close(fig)
    return paths
