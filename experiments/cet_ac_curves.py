"""CET actor-critic runs (sweeps or single runs) against environment steps: a table and a figure.

``neuroprobe report`` plots returns against episodes. For the actor-critic (rule ``cet_ac``) the
budget is environment steps, and a run that learns plays far fewer, longer episodes than one that
does not, so here every curve is against the step count (metrics.csv's ``step``: environment
steps summed over the rule's ``envs`` copies). Runs still going are read as they stand and marked.
A directory argument is a sweep (its sweep.csv) or one run of ``neuroprobe run`` (its config.toml).

    python experiments/cet_ac_curves.py runs/paper/cet_ac_budget \\
        --out docs/cet_ac_budget.md --figure docs/figures/cet_ac_budget.png

Table columns, per run (one seed of one point):
  steps and episodes played; last-50 return (mean of the last 50 episodes); the first step at which
  the trailing 50-episode mean reaches ``--solved`` (475, CartPole-v1's threshold); the fraction of
  the last 100 episodes at the 500-step cap; the mean over the run's updates of the cosine between
  the CET update and the exact delayed policy gradient (``align``) and of the authors' per-step
  measure (mean of ``step_align_*``); the wall clock (sweep.csv; for a single run the time from its
  config.toml to its last metrics row; "running" for a run still going).
"""
from __future__ import annotations

import argparse
import math
import sys
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.errors import ConfigError  # noqa: E402
from neuroprobe.plotting import rolling_mean, save_figure  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.sweep.report import read_sweep  # noqa: E402
from neuroprobe.sweep.report_figures import smoothing_window  # noqa: E402


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """metrics.csv of a cet_ac run (neuroprobe.rundir.read_metrics) as float arrays, empty cells NaN."""
    cols = read_metrics(path)
    if not cols or not cols[next(iter(cols))]:
        return {}
    missing = {"step", "return"} - set(cols)
    if missing:
        raise ConfigError(f"{path}: no column {sorted(missing)} (not a cet_ac run; columns: {list(cols)})")
    return {k: np.array([v if isinstance(v, float) else math.nan for v in col]) for k, col in cols.items()}


def first_step_at(step: np.ndarray, ret: np.ndarray, level: float, window: int = 50) -> float:
    """The step at which the trailing ``window``-episode mean return first reaches ``level`` (NaN if never)."""
    full = rolling_mean(ret, window)[window - 1:]  # full[i]: the mean of episodes i .. i+window-1
    hit = np.flatnonzero(full >= level)
    return float(step[hit[0] + window - 1]) if len(hit) else math.nan


def _mean(a: np.ndarray | None) -> float:
    if a is None:
        return math.nan
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else math.nan


def run_row(run: Path, label: str, seed: int, done: bool, wall_s: float, solved: float) -> dict | None:
    """One run directory's table row and curve (None while it has written no episode)."""
    if not (run / "metrics.csv").is_file():
        return None
    m = read_columns(run / "metrics.csv")
    if not m:
        return None
    ret, step = m["return"], m["step"]
    step_cols = [k for k in m if k.startswith("step_align_")]
    step_align = np.stack([m[k] for k in step_cols]).mean(0) if step_cols else None  # NaN rows stay NaN
    return {"label": label, "seed": seed, "done": done, "steps": int(step[-1]), "episodes": len(ret),
            "last50": float(ret[-50:].mean()), "solved_at": first_step_at(step, ret, solved),
            "cap_frac": float((ret[-100:] >= 500).mean()), "align": _mean(m.get("align")),
            "step_align": _mean(step_align), "wall_s": wall_s if done else math.nan, "step": step, "return": ret}


LABEL_KEYS = ("trace", "order", "delay", "lr", "beta")  # of a plain run's [rule], in this order


def plain_run_row(run: Path, solved: float) -> dict | None:
    """A run directory made by ``neuroprobe run``: label and seed from its config.toml; done once it
    has a summary.json; wall clock = metrics.csv's last write − config.toml's write (its start)."""
    try:
        cfg = tomllib.loads((run / "config.toml").read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{run / 'config.toml'}: not valid TOML ({e})") from None
    rule = cfg.get("rule", {})
    label = ", ".join(f"{k}={rule[k]}" for k in LABEL_KEYS
                      if k in rule and not (k == "trace" and rule[k] == "cascade") and not (k == "beta" and not rule[k]))
    done = (run / "summary.json").is_file()
    wall = (run / "metrics.csv").stat().st_mtime - (run / "config.toml").stat().st_mtime
    return run_row(run, label, int(cfg.get("seed", 0)), done, wall, solved)


def collect(dirs: list[Path], solved: float) -> list[dict]:
    """Rows of every run in the given sweep directories (sweep.csv) and plain run directories."""
    out = []
    for d in dirs:
        if not (d / "sweep.csv").is_file() and (d / "config.toml").is_file():
            rows = [plain_run_row(d, solved)]
        else:
            rows = []
            for row in read_sweep(d).rows:
                label = ", ".join(f"{k.removeprefix('rule.')}={v}" for k, v in row.values.items() if v != "")
                rows.append(run_row(d / row.run, label or f"point {row.point}", row.seed, row.status == "done",
                                    row.wall_s, solved))
        out += [r for r in rows if r is not None]
    if not out:
        raise ConfigError(f"no run with a metrics.csv under {', '.join(map(str, dirs))}")
    return out


def _f(v: float, fmt: str) -> str:
    """``v`` formatted, thousands separated by a space; a dash when not finite."""
    return "—" if not math.isfinite(v) else format(v, fmt).replace(",", " ")


def table(rows: list[dict], solved: float) -> str:
    head = (f"| setting | seed | steps | episodes | last-50 return | first step with a 50-episode mean ≥ {solved:g} "
            f"| last 100 at the cap | update alignment | per-step alignment | wall clock |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        wall = f"{r['wall_s'] / 60:.0f} min" if math.isfinite(r["wall_s"]) else ("running" if not r["done"] else "—")
        lines.append(f"| {r['label']} | {r['seed']} | {_f(r['steps'], ',')} | {_f(r['episodes'], ',')} | {r['last50']:.1f} | "
                     f"{_f(r['solved_at'], ',.0f')} | {100 * r['cap_frac']:.0f} % | {_f(r['align'], '.2f')} | "
                     f"{_f(r['step_align'], '.2f')} | {wall} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path, solved: float) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        y = rolling_mean(r["return"], smoothing_window(len(r["return"])))
        ax.plot(r["step"], y, lw=1.2, label=f"{r['label']} (seed {r['seed']})" + ("" if r["done"] else ", running"))
    ax.axhline(solved, color="k", lw=0.6, ls=":")
    ax.set_xlabel("environment steps (all copies)")
    ax.set_ylabel("return, trailing mean of 50 episodes")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path.with_suffix(""), formats=(path.suffix.lstrip(".") or "png",))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="sweep directories of rule cet_ac runs, or run directories")
    ap.add_argument("--out", type=Path, help="write the table here (markdown); default: print it")
    ap.add_argument("--figure", type=Path, help="write the curves here (png)")
    ap.add_argument("--solved", type=float, default=475.0, help="the return that counts as solved (default 475)")
    args = ap.parse_args(argv)
    try:
        rows = collect(args.dirs, args.solved)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = table(rows, args.solved)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python experiments/cet_ac_curves.py " + " ".join(map(str, args.dirs))
        args.out.write_text(f"# CET actor-critic against environment steps\n\nGenerated by `{cmd}`.\n\n{text}")
    print(text, end="")
    if args.figure:
        figure(rows, args.figure, args.solved)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
