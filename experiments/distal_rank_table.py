"""Distal-reward sweeps: how often and how fast the rewarded synapse ends up above every other one.

For each point of a sweep directory (``neuroprobe sweep`` of a distal-reward config) and each
trial: the final rank of the rewarded synapse (fraction of the projection's other synapses below
it; 1 = above every other), whether the trial is *solved* (final rank 1), the first report time at
which it reached rank 1 (and stayed there to the end), and the final mean weight of the others
against its start. Prints a markdown table; ``--out`` also writes it to a file.

    python experiments/distal_rank_table.py runs/paper/izhikevich_orders [--out docs/x.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.sweep.report import read_sweep, summarize  # noqa: E402


def trial_rows(run_dir: Path) -> dict[int, dict]:
    """Per trial (seed): final rank, solved, time it reached rank 1 for good, mean weight start → end."""
    m = read_metrics(run_dir / "metrics.csv")
    seed, t = np.asarray(m["seed"]), np.asarray(m["time"], dtype=float)
    rank, wmean = np.asarray(m["rank"], dtype=float), np.asarray(m["w_mean"], dtype=float)
    out = {}
    for s in sorted(set(seed.tolist())):
        sel = seed == s
        r, tt, w = rank[sel], t[sel], wmean[sel]
        top = r >= 1.0
        # the first report from which the rank stays 1 to the end (None if it does not end at 1)
        since = None
        if top[-1]:
            k = len(top) - 1
            while k > 0 and top[k - 1]:
                k -= 1
            since = float(tt[k])
        out[int(s)] = {"final_rank": float(r[-1]), "solved": bool(top[-1]), "top_since": since,
                       "w_mean_start": float(w[0]), "w_mean_end": float(w[-1]), "time": float(tt[-1])}
    return out


def table(sweep_dir: Path) -> str:
    sweep = read_sweep(sweep_dir)
    lines = ["| point | trials | solved (final rank 1) | final rank, mean (min) | top rank for good since (s) | "
             "others' mean weight, start → end | simulated time (s) |", "|---|---:|---:|---|---|---|---:|"]
    for p in summarize(sweep):
        runs = sorted(set(p.runs.values()))
        rows = {}
        for r in runs:
            rows.update(trial_rows(sweep_dir / r))
        if not rows:
            continue
        v = list(rows.values())
        fr = np.array([x["final_rank"] for x in v])
        since = [x["top_since"] for x in v if x["top_since"] is not None]
        lines.append(f"| {p.label()} | {len(v)} | {sum(x['solved'] for x in v)} / {len(v)} | {fr.mean():.4f} "
                     f"({fr.min():.4f}) | {', '.join(f'{s:.0f}' for s in since) or '—'} | "
                     f"{np.mean([x['w_mean_start'] for x in v]):.3f} → {np.mean([x['w_mean_end'] for x in v]):.3f} | "
                     f"{max(x['time'] for x in v):.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    text = table(Path(args.sweep_dir))
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
