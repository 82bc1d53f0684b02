"""Figure and table of hour-long distal-reward runs (experiments/distal_reward_hour.toml).

    python experiments/distal_hour_report.py RUN_DIR [RUN_DIR ...] [--labels "order 6" "order 1"]
        [--figure docs/figures/distal_hour.png] [--out docs/distal_hour.md]

Per run: the rewarded synapse's |w| against the other synapses' mean and 99th percentile over
simulated time (one panel per run), and a table row: final |w| of the rewarded synapse, the others'
mean and p99, its rank, the rewards delivered, the first time it ranks above every other synapse
(rank 1.0; "never" if it does not), and the CPU time given with ``--seconds``.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(run: Path) -> dict[str, list[float]]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = [r for r in rows if r["seed"] == rows[0]["seed"]]  # the first trial
    return {k: [float(r[k]) for r in rows] for k in ("time", "w_rewarded", "w_mean", "w_p99", "rank", "rewards")}


def first_top(m: dict) -> str:
    for t, r in zip(m["time"], m["rank"]):
        if r >= 1.0:
            return f"{t:g}"
    return "never"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--labels", nargs="*", default=None)
    p.add_argument("--seconds", nargs="*", type=float, default=None,
                   help="CPU seconds of each run (e.g. from /usr/bin/time), for the table")
    p.add_argument("--figure", type=Path, default=Path("docs/figures/distal_hour.png"))
    p.add_argument("--out", type=Path, default=None, help="Markdown table (default: print it)")
    a = p.parse_args(argv)
    labels = a.labels or [r.name for r in a.runs]
    if len(labels) != len(a.runs):
        p.error(f"{len(a.runs)} runs but {len(labels)} labels")
    fig, axes = plt.subplots(1, len(a.runs), figsize=(5.5 * len(a.runs), 3.6), sharey=True, squeeze=False)
    lines = ["| eligibility | simulated s | rewarded |w| | others p99 | others mean | rank | rewards | first above all others (s) | CPU time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, (ax, run, label) in enumerate(zip(axes[0], a.runs, labels)):
        m = read(run)
        t = [x / 60 for x in m["time"]]
        ax.plot(t, m["w_rewarded"], color="C3", lw=1.8, label="rewarded synapse")
        ax.plot(t, m["w_p99"], color="0.4", lw=1.0, label="others, 99th percentile")
        ax.plot(t, m["w_mean"], color="0.6", lw=1.0, ls="--", label="others, mean")
        ax.set_title(label)
        ax.set_xlabel("simulated time (min)")
        ax.grid(alpha=0.3)
        cpu = a.seconds[i] if a.seconds and i < len(a.seconds) else None
        lines.append(f"| {label} | {m['time'][-1]:g} | {m['w_rewarded'][-1]:.3f} | {m['w_p99'][-1]:.3f} | "
                     f"{m['w_mean'][-1]:.3f} | {m['rank'][-1]:.4f} | {int(m['rewards'][-1])} | {first_top(m)} | "
                     f"{'' if cpu is None else f'{cpu:.0f} s'} |")
    axes[0][0].set_ylabel("|w|")
    axes[0][0].legend(fontsize=8, loc="center right")
    fig.tight_layout()
    a.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.figure, dpi=120)
    text = "\n".join(lines) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
