"""Distal reward on Lava next to the torch engine: figure and table for docs/results.md.

Reads a `neuroprobe deploy` directory (Lava fixed point with on-chip learning: ``metrics.csv``,
the torch fixed-point engine: ``metrics_torch_fixed.csv``, ``deploy.json``) and optionally a torch
float run of the same config (``neuroprobe run``, its ``metrics.csv``), and plots the rewarded
synapse's weight against the 99th percentile and mean of the other exc→exc synapses for each.

    python experiments/distal_lava_report.py --deploy runs/distal_lava_order6 \\
        --float-run runs/distal_loihi_float_order6 --out docs/figures/distal_lava.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.rundir import read_metrics  # noqa: E402


def curves(path: Path) -> dict[str, np.ndarray]:
    m = read_metrics(path)
    seeds = np.asarray(m["seed"])
    sel = seeds == seeds[0]  # trial 0
    return {k: np.asarray(m[k], dtype=float)[sel] for k in ("time", "w_rewarded", "w_p99", "w_mean", "rank", "rewards")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploy", required=True)
    ap.add_argument("--float-run", default=None)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures" / "distal_lava.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dep = Path(args.deploy)
    panels = [("Lava fixed_pt (on-chip learning)", curves(dep / "metrics.csv")),
              ("torch engine, fixed point", curves(dep / "metrics_torch_fixed.csv"))]
    twin = dep / "metrics_torch_float_twin.csv"  # experiments/distal_float_twin.py
    if twin.exists():
        panels.append(("torch engine, float, the chip's noise and rewards", curves(twin)))
    if args.float_run:
        panels.append(("torch engine, float (own noise)", curves(Path(args.float_run) / "metrics.csv")))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.4), sharey=True)
    rows = ["| engine | simulated s | rewarded |w| | others p99 | others mean | rank | rewards |", "|---|---|---|---|---|---|---|"]
    for ax, (title, c) in zip(np.atleast_1d(axes), panels):
        ax.plot(c["time"], c["w_rewarded"], lw=1.6, label="rewarded synapse")
        ax.plot(c["time"], c["w_p99"], lw=0.9, ls="--", label="others, 99th percentile")
        ax.plot(c["time"], c["w_mean"], lw=0.9, ls=":", label="others, mean")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
        rows.append(f"| {title} | {c['time'][-1]:.0f} | {c['w_rewarded'][-1]:.3f} | {c['w_p99'][-1]:.3f} | "
                    f"{c['w_mean'][-1]:.3f} | {c['rank'][-1]:.3f} | {c['rewards'][-1]:.0f} |")
    np.atleast_1d(axes)[0].set_ylabel("|weight| (current jump per spike)")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle("Distal reward, cascade R-STDP (order 6, peak 2 s): Lava vs the torch engine", fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    rep = json.loads((dep / "deploy.json").read_text())
    w = rep.get("wall_s", {})
    print("\n".join(rows))
    print(f"\nagreement: {rep.get('agreement')}")
    print(f"wall clock: Lava {w.get('lava', float('nan')):.0f} s (run {w.get('lava_run', float('nan')):.0f} s), "
          f"torch fixed point {w.get('torch_fixed', float('nan')):.0f} s, for {rep['steps']} steps")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
