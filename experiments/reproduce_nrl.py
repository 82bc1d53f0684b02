"""NRL paper reproduction: NRL vs BP vs RMHL on Reaching1D, Acrobot and CartPole (+ 2 hidden layers).

Runs each config of ``experiments/{rule}_{task}.toml`` (5 seeds batched in one process), then
writes a table (mean of the last 50 episodes per seed, mean ± sd over seeds) and a figure of the
learning curves. Finished runs are skipped, interrupted ones resumed, so the script can be
re-run until done.

It compares different config files (one per rule and task) at the same number of episodes, which
a sweep's grid over the keys of one config does not express, so it stays a script; a sweep of any
one of its configs is ``neuroprobe sweep experiments/nrl_cartpole.toml --grid rule.lr=0.02,0.05,0.1
--seeds 5`` (docs/sweeps.md).

    python experiments/reproduce_nrl.py --episodes cartpole=1000 acrobot=500 reaching=300
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.plotting import rolling_mean  # noqa: E402
from neuroprobe.rundir import CHECKPOINT_NAME, read_metrics  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402

TASKS = {"reaching": "Reaching1D-v0", "acrobot": "Acrobot-v1", "cartpole": "CartPole-v1", "cartpole_2h": "CartPole-v1 (2 hidden)"}
RULES = ("nrl", "bp", "rmhl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", nargs="*", default=["reaching=300", "acrobot=500", "cartpole=1000", "cartpole_2h=1000"])
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--rules", nargs="*", default=list(RULES))
    ap.add_argument("--out", default=str(ROOT / "runs" / "nrl_repro"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "nrl_reproduction.md"))
    ap.add_argument("--report-only", action="store_true", help="only rebuild the table and figure from finished runs")
    args = ap.parse_args()
    episodes = dict(e.split("=") for e in args.episodes)
    out = Path(args.out)
    if args.report_only:
        report(out, Path(args.report), args.tasks, args.rules)
        return
    for task in args.tasks:
        for rule in args.rules:
            run_dir = out / f"{rule}_{task}"
            cfg = ROOT / "experiments" / f"{rule}_{task}.toml"
            sets = [f"task.episodes={episodes[task]}"] if task in episodes else []
            if (run_dir / "summary.json").exists():
                done = json.loads((run_dir / "summary.json").read_text())["episodes"]
                if task not in episodes or done >= int(episodes[task]):
                    continue  # finished; a larger --episodes extends it from its last checkpoint
            if (run_dir / CHECKPOINT_NAME).exists():
                run_experiment(resume=run_dir, overrides=sets)
            else:
                run_experiment(cfg, overrides=sets, out=run_dir)
            report(out, Path(args.report), args.tasks, args.rules)
    report(out, Path(args.report), args.tasks, args.rules)


def report(out: Path, path: Path, tasks: list[str], rules: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| task | " + " | ".join(f"{r.upper()} (episodes/seed)" for r in rules) + " | NRL vs BP |",
             "|---|" + "---|" * len(rules) + "---|"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        cells, means = [], {}
        for rule in rules:
            d = out / f"{rule}_{task}"
            if not (d / "summary.json").exists():
                cells.append("—")
                continue
            s = json.loads((d / "summary.json").read_text())
            means[rule] = s["mean"]
            cells.append(f"{s['mean']:.1f} ± {s['std']:.1f} ({s['episodes']})")
            m = read_metrics(d / "metrics.csv")
            seeds, ret = np.asarray(m["seed"]), np.asarray(m["return"])
            curves = [rolling_mean(ret[seeds == k], 50) for k in sorted(set(seeds))]
            n = min(len(c) for c in curves)
            mu = np.mean([c[:n] for c in curves], 0)
            sd = np.std([c[:n] for c in curves], 0)
            ax.plot(mu, label=rule.upper())
            ax.fill_between(np.arange(n), mu - sd, mu + sd, alpha=0.2)
        # signed relative difference (NRL − BP)/|BP|: meaningful for negative returns too (Acrobot)
        ratio = (f"{100 * (means['nrl'] - means['bp']) / abs(means['bp']):+.0f} %"
                 if "nrl" in means and "bp" in means and means["bp"] else "—")
        lines.append(f"| {TASKS[task]} | " + " | ".join(cells) + f" | {ratio} |")
        ax.set_title(TASKS[task])
        ax.set_xlabel("episode")
        ax.set_ylabel("return (rolling mean of 50, ± sd over 5 seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig_path = path.parent / "figures" / "nrl_reproduction.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    path.write_text("\n".join(lines) + "\n\n![learning curves](figures/nrl_reproduction.png)\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
