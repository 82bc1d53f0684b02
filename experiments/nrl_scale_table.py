"""NRL at the paper's scale: one table and one figure over NRL / BP / RMHL sweep directories.

Each argument is a sweep directory (``neuroprobe sweep`` of an ``experiments/{nrl,bp,rmhl}_*.toml``
config; its points may set ``rule.lr_scale`` or ``rule.variant``) or one run directory (with
``metrics.csv``): a run still going or stopped is read as a snapshot of the episodes it has done
(its wall clock is then not known and shows as "running"). Runs are grouped by task and
number of hidden layers (read from each run's resolved ``config.toml``). Per row:

- the mean return of each seed's last 50 episodes, mean ± sd over seeds;
- the episodes each seed needed before its trailing 50-episode mean first reached 95 % of BP's
  final level in the same group (for negative returns, as on Acrobot: BP's level minus 5 % of its
  magnitude); "never" where a seed did not get there, "—" where the group has no BP run and no
  ``--bp-level`` was given;
- the wall clock of the run (seeds batched in one process share it).

BP's level is the mean over seeds of BP's last-50 return in the group, or ``--bp-level
"CartPole-v1/1=407"`` (task/hidden layers=level) for a group whose BP run is not among the
arguments (e.g. a shorter BP run where BP had already plateaued: say so where the table is used).

    python experiments/nrl_scale_table.py runs/paper/nrl_cartpole_1h runs/paper/bp_cartpole_1h ... \\
        --out docs/nrl_scale.md --figure docs/figures/nrl_scale.png
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.errors import ConfigError  # noqa: E402
from neuroprobe.plotting import rolling_mean  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.sweep.report import read_sweep, summarize  # noqa: E402

WINDOW = 50  # the paper's "last 50 episodes"
FRACTION = 0.95  # "95 % of BP's final level"


@dataclass
class Row:
    """One run (a grid point of one sweep, its seeds batched or not)."""

    task: str
    hidden: int
    rule: str  # "NRL", "NRL (lr_scale=n_out)", "BP", ...
    curves: dict[int, np.ndarray]  # seed -> returns per episode
    wall_s: float | None  # None: a snapshot of an unfinished run

    @property
    def group(self) -> tuple[str, int]:
        return self.task, self.hidden

    def finals(self) -> np.ndarray:
        return np.array([c[-WINDOW:].mean() for c in self.curves.values()])


def rule_label(cfg: dict) -> str:
    """The rule's name plus any fidelity option that differs from the paper's equations."""
    rule = cfg["rule"]
    label = rule["name"].upper()
    extras = [f"{k}={rule[k]}" for k, default in (("lr_scale", "none"), ("variant", "paper")) if rule.get(k, default) != default]
    return f"{label} ({', '.join(extras)})" if extras else label


def read_curves(run_dir: Path) -> tuple[dict, dict[int, np.ndarray]]:
    """(resolved config, {seed: returns per episode}) of one run directory."""
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    m = read_metrics(run_dir / "metrics.csv")
    seed, ret = np.asarray(m["seed"], dtype=int), np.asarray(m["return"], dtype=float)
    return cfg, {s: ret[seed == s] for s in sorted(set(seed.tolist()))}


def make_row(cfg: dict, curves: dict[int, np.ndarray], wall_s: float | None) -> Row:
    return Row(task=cfg["task"]["name"], hidden=len(cfg["model"]["sizes"]) - 2, rule=rule_label(cfg),
               curves=curves, wall_s=wall_s)


def read_rows(path: Path) -> list[Row]:
    """Every finished run of a sweep directory as a :class:`Row` (one per grid point), or the
    snapshot of one run directory."""
    if (path / "metrics.csv").is_file():
        cfg, curves = read_curves(path)
        return [make_row(cfg, curves, None)]
    sweep_dir = path
    sweep = read_sweep(sweep_dir)
    rows = []
    for p in summarize(sweep):
        by_run: dict[str, list[int]] = {}
        for seed, run in p.runs.items():
            by_run.setdefault(run, []).append(seed)
        curves: dict[int, np.ndarray] = {}
        cfg = None
        for run in by_run:
            cfg, c = read_curves(sweep_dir / run)
            curves.update(c)
        if cfg is not None:
            rows.append(make_row(cfg, curves, p.wall_s))
    return rows


def threshold(level: float) -> float:
    """95 % of a level, on the side of worse returns whatever its sign (−100 → −105, 400 → 380)."""
    return level - (1.0 - FRACTION) * abs(level)


def episodes_to(curve: np.ndarray, target: float) -> int | None:
    """Episodes until the trailing 50-episode mean first reaches ``target`` (a full window needed)."""
    r = rolling_mean(curve, WINDOW)
    hit = np.nonzero(r[WINDOW - 1:] >= target)[0]
    return int(hit[0]) + WINDOW if hit.size else None


def bp_levels(rows: list[Row], given: dict[tuple[str, int], float]) -> dict[tuple[str, int], float]:
    levels = dict(given)
    for r in rows:
        if r.rule == "BP" and r.group not in levels:
            levels[r.group] = float(r.finals().mean())
    return levels


def wall_text(wall_s: float | None) -> str:
    """"running" for a snapshot, "—" where the sweep has no wall clock (a run adopted from elsewhere)."""
    if wall_s is None:
        return "running"
    return f"{wall_s / 60:.0f} min" if np.isfinite(wall_s) else "—"


def table(rows: list[Row], levels: dict[tuple[str, int], float]) -> str:
    lines = ["| task | hidden layers | rule | episodes/seed (fewest) | seeds | last-50 return, mean ± sd | per seed | "
             "episodes to 95 % of BP's level, per seed | wall clock |",
             "|---|---:|---|---:|---:|---|---|---|---:|"]
    for r in sorted(rows, key=lambda r: (r.task, r.hidden, r.rule)):
        f = r.finals()
        level = levels.get(r.group)
        if level is None:
            reach = "—"
        else:
            eps = [episodes_to(c, threshold(level)) for c in r.curves.values()]
            reach = ", ".join("never" if e is None else f"{e:,}".replace(",", " ") for e in eps)
            reach += f" (target {threshold(level):.0f})"
        n_ep = min(len(c) for c in r.curves.values())
        lines.append(f"| {r.task} | {r.hidden} | {r.rule} | {n_ep} | {len(f)} | {f.mean():.1f} ± {f.std(ddof=1) if len(f) > 1 else 0:.1f} | "
                     f"{', '.join(f'{x:.1f}' for x in f)} | {reach} | {wall_text(r.wall_s)} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[Row], levels: dict[tuple[str, int], float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r.group for r in rows})
    # one colour per rule (and its length), the same in every panel
    keys = sorted({(r.rule, min(len(c) for c in r.curves.values())) for r in rows})
    colour = {k: f"C{i}" for i, k in enumerate(keys)}
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for r in sorted((r for r in rows if r.group == g), key=lambda r: r.rule):
            n = min(len(c) for c in r.curves.values())
            sm = np.stack([rolling_mean(c[:n], WINDOW) for c in r.curves.values()])
            x = np.arange(1, n + 1)
            c = colour[(r.rule, n)]
            ax.plot(x, sm.mean(0), lw=1.2, color=c, label=f"{r.rule}, {n} episodes × {len(r.curves)} seeds")
            ax.fill_between(x, sm.min(0), sm.max(0), color=c, alpha=0.15, lw=0)
        if g in levels:
            ax.axhline(threshold(levels[g]), color="k", ls=":", lw=0.8, label="95 % of BP's level")
        ax.set_title(f"{g[0]}, {g[1]} hidden layer{'s' if g[1] > 1 else ''} (mean; band: min–max over seeds)", fontsize=9)
        ax.set_xlabel("episode")
        ax.set_ylabel(f"return, trailing mean of {WINDOW}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_levels(items: list[str]) -> dict[tuple[str, int], float]:
    out = {}
    for it in items:
        try:
            key, value = it.split("=")
            task, hidden = key.rsplit("/", 1)
            out[(task, int(hidden))] = float(value)
        except ValueError:
            raise ConfigError(f"--bp-level {it!r}: expected TASK/HIDDEN=LEVEL, e.g. CartPole-v1/1=407") from None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dirs", nargs="+")
    ap.add_argument("--bp-level", nargs="*", default=[], help="TASK/HIDDEN=LEVEL for groups without a BP run")
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    ap.add_argument("--figure", default=None, help="write the learning curves to this image")
    args = ap.parse_args()
    rows = [r for d in args.sweep_dirs for r in read_rows(Path(d))]
    if not rows:
        raise SystemExit("no finished runs in " + ", ".join(args.sweep_dirs))
    levels = bp_levels(rows, parse_levels(args.bp_level))
    text = table(rows, levels)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.figure:
        figure(rows, levels, Path(args.figure))


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
