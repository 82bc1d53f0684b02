"""Figures of a sweep report (matplotlib, Agg): learning curves, heat map, finals per point.

* ``curves.png``: per point, the mean over seeds of the learning curve (episode returns smoothed by
  a trailing mean of min(50, max(1, n // 10)) episodes, n = the curve's length) and a band from the
  lowest to the highest seed; one panel per value of the first grid key when the grid has several keys
  and that makes 2 to 6 panels, else one panel with every point.
* ``heatmap.png``: only for a grid of exactly two keys with at least two values each: mean final per
  cell, annotated with mean and ± sd; extra (off-grid) points are left out (they are in the table).
* ``finals.png``: always: the final metric of each seed (dots) and the mean with its bootstrap
  interval (bar) per point.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..errors import NeuroprobeError  # noqa: E402
from ..plotting import rolling_mean  # noqa: E402
from .results import read_run_result  # noqa: E402
from .stats import CONFIDENCE  # noqa: E402

if TYPE_CHECKING:
    from .report import PointSummary, Sweep

__all__ = ["PointCurve", "load_curves", "smoothing_window", "plot_curves", "plot_heatmap", "plot_finals",
           "write_figures", "FIGURE_NAMES"]

FIGURE_NAMES = ("curves.png", "heatmap.png", "finals.png")
MAX_PANELS = 6
_DPI = 110


@dataclass
class PointCurve:
    """One point's learning curve over its seeds; all arrays (n,), n = the shortest seed's length.

    x: the common x values; mean/lo/hi: mean, minimum and maximum over seeds of the (smoothed) y;
    n_seeds: seeds averaged; window: trailing-mean window applied to y (1 = none).
    """

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_seeds: int
    window: int


def smoothing_window(n: int) -> int:
    """Trailing-mean window for an episode-return curve of n points: 50, shorter for short runs."""
    return min(50, max(1, n // 10))


def load_curves(sweep: Sweep, points: list[PointSummary]) -> tuple[dict[int, PointCurve], str, str, list[str]]:
    """Read each run directory once (a batched run dir serves several rows) and align each point's
    per-seed curves; returns ({point: curve}, x_name, y_name, notes about what could not be read)."""
    cache: dict[str, object] = {}
    notes: list[str] = []
    unreadable: set[str] = set()
    per_point: dict[int, list[tuple[np.ndarray, np.ndarray, str, str]]] = {}
    for p in points:
        for seed, run in sorted(p.runs.items()):
            if run not in cache:
                try:
                    cache[run] = read_run_result(sweep.path / run)
                except (OSError, ValueError, KeyError, TypeError, NeuroprobeError) as e:
                    cache[run] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            res = cache[run]
            if isinstance(res, str):
                if run not in unreadable:  # one note per run dir, however many seeds it holds
                    notes.append(f"point {p.point}: run {run!r} unreadable, no curve ({res})")
                    unreadable.add(run)
                continue
            curve = res.curves.get(seed)
            if curve is None and len(res.curves) == 1:  # a one-seed run labelled otherwise: its only curve
                curve = next(iter(res.curves.values()))
            if curve is None or len(curve[0]) == 0:
                notes.append(f"point {p.point}, seed {seed}: run {run!r} has no learning curve")
                continue
            per_point.setdefault(p.point, []).append((curve[0], curve[1], res.x_name, res.y_name))
    names = Counter((xn, yn) for cs in per_point.values() for _, _, xn, yn in cs)
    if not names:
        return {}, "", "", notes
    (x_name, y_name), _ = names.most_common(1)[0]
    curves = {}
    for pt, cs in per_point.items():
        same = [(x, y) for x, y, xn, yn in cs if (xn, yn) == (x_name, y_name)]
        if len(same) < len(cs):
            notes.append(f"point {pt}: {len(cs) - len(same)} curve(s) of another kind than {x_name}/{y_name} "
                         f"left out of the curves figure")
        if not same:
            continue
        n = min(len(x) for x, _ in same)  # seeds share their x values; a shorter run ends earlier
        window = smoothing_window(n) if y_name == "return" else 1
        ys = np.stack([rolling_mean(y[:n], window) if window > 1 else np.asarray(y[:n], float) for _, y in same])
        curves[pt] = PointCurve(x=np.asarray(same[0][0][:n], float), mean=ys.mean(0), lo=ys.min(0), hi=ys.max(0),
                                n_seeds=len(same), window=window)
    return curves, x_name, y_name, notes


def _panels(sweep: Sweep, points: list[PointSummary]) -> list[tuple[str, list[PointSummary]]] | None:
    """[(panel title, points)] by the first grid key, or None when one panel reads better."""
    keys = list(sweep.grid)
    if len(keys) < 2:  # one key: its values side by side on one panel compare better
        return None
    k = keys[0]
    groups: dict[str, list[PointSummary]] = {}
    for v in sweep.grid[k]:
        groups[f"{k}={v}"] = [p for p in points if p.on_grid and p.values.get(k) == v]
    off = [p for p in points if not p.on_grid]
    if off:
        groups["other points"] = off
    groups = {t: ps for t, ps in groups.items() if ps}
    return list(groups.items()) if 2 <= len(groups) <= MAX_PANELS else None


def _colors(n: int) -> list:
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    return [plt.get_cmap("viridis")(i / max(1, n - 1)) for i in range(n)]


def plot_curves(sweep: Sweep, points: list[PointSummary], curves: dict[int, PointCurve], x_name: str,
                y_name: str) -> Figure:
    """Mean over seeds (line) and min-max over seeds (band) of each point's curve."""
    with_curve = [p for p in points if p.point in curves]
    panels = _panels(sweep, with_curve)
    first = list(sweep.grid)[:1]
    if panels is None:
        panels, label_keys = [("", with_curve)], None
    else:
        label_keys = [k for k in sweep.keys if k not in first]
    def lab_of(p: PointSummary) -> str:  # an extra point keeps all its keys: its panel is not one value
        return p.label(label_keys if p.on_grid else None)

    labels = list(dict.fromkeys(lab_of(p) for _, ps in panels for p in ps))
    color = dict(zip(labels, _colors(len(labels))))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.5, 4.8 * ncols + 0.5), 3.6 * nrows + 0.9), sharey=True,
                             squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    windows = sorted({curves[p.point].window for p in with_curve})
    for ax, (title, ps) in zip(axes.ravel(), panels):
        for p in ps:
            c, lab = curves[p.point], lab_of(p)
            ax.fill_between(c.x, c.lo, c.hi, color=color[lab], alpha=0.2, lw=0)
            ax.plot(c.x, c.mean, color=color[lab], lw=1.5, marker="o" if len(c.x) <= 30 else None, ms=3,
                    label=f"{lab} (n={c.n_seeds})")  # markers: a few evaluations are points, not a line
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x_name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2 if len(ps) > 8 else 1)
    ylab = y_name
    if windows != [1]:
        ylab += f" (trailing mean of {windows[0]})" if len(windows) == 1 else \
            f" (trailing mean of min(50, n/10): {windows[0]}-{windows[-1]})"
    for ax in axes[:, 0]:
        ax.set_ylabel(ylab)
    fig.suptitle(f"{sweep.spec.get('name', sweep.path.name)}: learning curves\nline = mean over seeds, "
                 f"band = min–max over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_keys(sweep: Sweep) -> tuple[str, str] | None:
    """The two grid keys of a heat map: only for exactly two keys with at least two values each."""
    keys = list(sweep.grid)
    if len(keys) == 2 and all(len(sweep.grid[k]) >= 2 for k in keys):
        return keys[0], keys[1]
    return None


def plot_heatmap(sweep: Sweep, points: list[PointSummary]) -> Figure:
    """Mean final per grid cell (rows: first key, columns: second key), annotated with mean and ± sd."""
    kr, kc = heatmap_keys(sweep)
    rv, cv = sweep.grid[kr], sweep.grid[kc]
    mean = np.full((len(rv), len(cv)), np.nan)
    sd = np.full_like(mean, np.nan)
    for p in points:
        if p.on_grid and p.stats.n:
            i, j = rv.index(p.values[kr]), cv.index(p.values[kc])
            mean[i, j], sd[i, j] = p.stats.mean, p.stats.sd
    fig, ax = plt.subplots(figsize=(1.3 * len(cv) + 2.8, 0.8 * len(rv) + 1.8))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.85")
    im = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, aspect="auto")
    metric = " / ".join(dict.fromkeys(p.metric for p in points if p.on_grid and p.metric)) or "final"
    fig.colorbar(im, ax=ax, label="mean over seeds")
    finite = mean[np.isfinite(mean)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for i in range(len(rv)):
        for j in range(len(cv)):
            if not math.isfinite(mean[i, j]):
                ax.text(j, i, "—", ha="center", va="center", fontsize=8)
                continue
            text = f"{mean[i, j]:.3g}" + (f"\n±{sd[i, j]:.2g}" if math.isfinite(sd[i, j]) else "")
            dark = hi == lo or (mean[i, j] - lo) / (hi - lo) < 0.5  # viridis is dark at its low end
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(cv)), cv)
    ax.set_yticks(range(len(rv)), rv)
    ax.set_xlabel(kc)
    ax.set_ylabel(kr)
    ax.set_title(f"mean over seeds (± sd) of: {metric}\n(grid cells only)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_finals(sweep: Sweep, points: list[PointSummary]) -> Figure:
    """Per point: each seed's final (dot), the mean (black tick) and its bootstrap interval (bar)."""
    fig, ax = plt.subplots(figsize=(min(30.0, max(5.0, 1.1 * len(points) + 2.0)), 4.4))
    rng = np.random.default_rng(0)  # horizontal jitter only, fixed so the figure is reproducible
    for i, p in enumerate(points):
        vals = np.array([v for v in p.finals.values() if math.isfinite(v)])
        if len(vals):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=14, color="C0", alpha=0.7, zorder=2,
                       label="one seed" if i == 0 else None)
        s = p.stats
        if s.n:
            yerr = None if s.ci is None else [[s.mean - s.ci[0]], [s.ci[1] - s.mean]]
            ax.errorbar([i + 0.25], [s.mean], yerr=yerr, fmt="_", ms=12, color="k", capsize=3, zorder=3,
                        label=f"mean, {CONFIDENCE:.0%} bootstrap CI" if i == 0 else None)
        if p.n_failed:
            ax.annotate(f"{p.n_failed} failed", (i, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=7, color="C3")
    grid = list(sweep.grid)
    # a grid point is named by its values (the keys are the axis label), an extra point by key=value
    names = ["\n".join(p.values[k] for k in grid) if p.on_grid else p.label(sep="\n") for p in points]
    many = len(points) > 10
    ax.set_xticks(range(len(points)), names, fontsize=7, rotation=45 if many else 0,
                  ha="right" if many else "center")
    ax.set_xlim(-0.6, len(points) - 0.4)
    metric = " / ".join(dict.fromkeys(p.metric for p in points if p.metric)) or "final"
    ax.set_ylabel(metric)
    ax.set_xlabel(" / ".join(grid) if grid else "point")
    ax.set_title(f"{sweep.spec.get('name', sweep.path.name)}: final {metric} per point", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=_DPI, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def write_figures(sweep: Sweep, points: list[PointSummary], fig_dir: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Write the figures that apply into ``fig_dir`` (and remove stale ones of a previous report);
    returns ([(path, caption)], notes)."""
    out: list[tuple[Path, str]] = []
    curves, x_name, y_name, notes = load_curves(sweep, points)
    if curves:
        out.append((_save(plot_curves(sweep, points, curves, x_name, y_name), fig_dir / "curves.png"),
                    f"Learning curves ({y_name} vs {x_name}) per point: line = mean over seeds, band = min–max "
                    f"over seeds" + ("; episode returns smoothed by a trailing mean of min(50, max(1, n // 10)) "
                                     "episodes" if y_name == "return" else "") + "."))
    if heatmap_keys(sweep) is not None and not any(p.on_grid and p.stats.n for p in points):
        notes.append("no heat map: no point of sweep.csv with a finished seed has grid values as listed in "
                     "sweep.toml's grid")
    elif heatmap_keys(sweep) is not None:
        kr, kc = heatmap_keys(sweep)
        out.append((_save(plot_heatmap(sweep, points), fig_dir / "heatmap.png"),
                    f"Mean final metric per grid cell ({kr} × {kc}), annotated with mean and ± sd over seeds "
                    f"(sample sd); grey: no finished seed; extra points are only in the table."))
    out.append((_save(plot_finals(sweep, points), fig_dir / "finals.png"),
                f"Final metric per point: dots = seeds, black = mean with its {CONFIDENCE:.0%} percentile "
                f"bootstrap interval over seeds (no bar when n = 1)."))
    written = {p.name for p, _ in out}
    for name in FIGURE_NAMES:  # a figure that no longer applies must not linger next to the new ones
        if name not in written and (fig_dir / name).is_file():
            (fig_dir / name).unlink()
    return out, notes
