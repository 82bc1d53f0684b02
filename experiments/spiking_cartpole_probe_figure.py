"""Learning curves of rule 'spiking_probe' runs (spiking CartPole): a figure and a table from run directories.

    python experiments/spiking_cartpole_probe_figure.py RUN_DIR [RUN_DIR ...] --out docs/figures/spiking_cartpole_probe
        [--labels "seed 0" "seed 1" ...] [--rolling 50]

Top: the mean return of the last ``rolling`` episodes against the episodes played (every branch-episode
counts); bottom: each generation's mean return over its B branches, against generations. The dotted
line is CartPole-v1's solved level (475). Prints one Markdown row per run:
generations and episodes played, the first episode (and generation) at which the last-``rolling``
mean reached 475, and the final last-``rolling`` mean.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuroprobe.plotting import plt, rolling_mean, save_figure
from neuroprobe.rundir import read_metrics

SOLVED = 475.0


def load(run: Path) -> dict:
    m = read_metrics(run / "metrics.csv")
    ret = np.asarray(m["return"], dtype=float)
    gen = np.asarray(m["generation"], dtype=int)
    B = int(np.max(m["branch"])) + 1
    return {"ret": ret, "gen": gen, "B": B}


def first_at(ret: np.ndarray, rolling: int, branches: int, target: float = SOLVED) -> int | None:
    """Episodes played by the end of the first generation at whose end the mean of the last ``rolling``
    episodes reached ``target`` (None: never); as rule.stop_return, checked at generation ends."""
    roll = rolling_mean(ret, rolling)
    i = np.arange(len(ret))
    hit = np.flatnonzero((roll >= target) & ((i + 1) % branches == 0) & (i >= rolling - 1))
    return int(hit[0]) + 1 if hit.size else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="figure stem (writes .png)")
    ap.add_argument("--labels", nargs="*", default=None)
    ap.add_argument("--rolling", type=int, default=50)
    a = ap.parse_args(argv)
    labels = a.labels or [r.name for r in a.runs]
    if len(labels) != len(a.runs):
        ap.error("--labels: one per run directory")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7))
    print(f"| run | B | generations | episodes | episodes (generations) to last-{a.rolling} >= 475 | "
          f"final last-{a.rolling} |")
    print("|---|---|---|---|---|---|")
    for i, (run, label) in enumerate(zip(a.runs, labels)):
        d = load(run)
        ret, gen, B = d["ret"], d["gen"], d["B"]
        ax1.plot(np.arange(1, len(ret) + 1), rolling_mean(ret, a.rolling), color=f"C{i}", lw=1.2, label=label)
        g = np.unique(gen)
        mean = np.array([ret[gen == k].mean() for k in g])
        ax2.plot(g, mean, color=f"C{i}", lw=1.0, label=label)
        hit = first_at(ret, a.rolling, B)
        when = "not reached" if hit is None else f"{hit} ({-(-hit // B)})"
        print(f"| {label} | {B} | {len(g)} | {len(ret)} | {when} | {ret[-a.rolling:].mean():.1f} |")
    for ax in (ax1, ax2):
        ax.axhline(SOLVED, color="k", ls=":", lw=1)
        ax.set_ylim(0, 520)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax1.set_xlabel("episodes played (all branches)")
    ax1.set_ylabel(f"return (mean of the last {a.rolling} episodes)")
    ax1.set_title("spiking CartPole · probe bundles (rule spiking_probe)")
    ax2.set_xlabel("generation")
    ax2.set_ylabel("mean return of the generation's\nB branches")
    fig.tight_layout()
    for p in save_figure(fig, a.out, formats=("png",)):
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
