"""Distal reward (Izhikevich 2007) with cascade-trace R-STDP: eligibility orders compared.

Runs ``experiments/distal_reward.toml`` (1000 LIF neurons, one rewarded exc→exc synapse, rewards
1–3 s after its pre→post coincidences) with cascade orders 1, 2 and 6: order 1 is the classic
exponentially decaying eligibility (time constant ``delay``), orders 2 and 6 peak ``delay`` s after
the coincidence. Reported per setting (mean ± sd over the trials): the rewarded synapse's final
weight, the 99th percentile and mean of the other synapses, its rank (fraction of other synapses
below it; 1 = strongest), and the first time it exceeds every sampled other synapse... and a
figure of the rewarded weight vs the rest over time, one panel per setting, plus a raster.

    python experiments/distal_reward_orders.py                      # ~? min on one core
    python experiments/distal_reward_orders.py --report-only
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
from neuroprobe.runner import run_experiment  # noqa: E402

CONFIG = ROOT / "experiments" / "distal_reward.toml"
# label: overrides
SETTINGS = {
    "order 1, τ = 1 s (classic)": ["rule.order=1", "rule.delay=1.0"],
    "order 1, τ = 2 s": ["rule.order=1", "rule.delay=2.0"],
    "order 2, peak 2 s": ["rule.order=2", "rule.delay=2.0"],
    "order 6, peak 2 s": ["rule.order=6", "rule.delay=2.0"],
}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="simulated seconds per run")
    ap.add_argument("--seeds", type=int, default=2, help="trials per setting (batched)")
    ap.add_argument("--settings", nargs="*", default=None, help="subset of setting labels")
    ap.add_argument("--set", action="append", default=[], help="extra overrides for every run")
    ap.add_argument("--out", default=str(ROOT / "runs" / "distal_orders"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "distal_reward.md"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    unknown = sorted(set(args.settings or []) - set(SETTINGS))
    if unknown:
        ap.error(f"--settings {unknown}: unknown; allowed: {list(SETTINGS)}")
    chosen = {k: v for k, v in SETTINGS.items() if args.settings is None or k in args.settings}
    if not args.report_only:
        for label, sets in chosen.items():
            d = out / slug(label)
            if (d / "summary.json").exists():
                continue
            print(f"{label}: {args.duration} s x {args.seeds} trials", flush=True)
            run_experiment(CONFIG, overrides=sets + [f"task.duration={args.duration}", f"seeds={args.seeds}",
                                                     "run.progress=false"] + args.set,
                           out=d, figures=True, resume_if_exists=True)
    report(out, chosen, Path(args.report))


def report(out: Path, chosen: dict, report_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {k: out / slug(k) for k in chosen if (out / slug(k) / "metrics.csv").exists()}
    if not done:
        print("no finished runs")
        return
    fig, axes = plt.subplots(1, len(done), figsize=(4.0 * len(done), 3.4), sharey=True, squeeze=False)
    lines = ["| eligibility | trials | simulated s | rewarded |w| | others p99 | others mean | rank of rewarded | "
             "rewards delivered | first time above all others' p99 (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for j, (label, d) in enumerate(done.items()):
        m = read_metrics(d / "metrics.csv")
        seeds, t = np.asarray(m["seed"]), np.asarray(m["time"], dtype=float)
        vals = {k: [] for k in ("w_rewarded", "w_p99", "w_mean", "rank", "rewards", "first")}
        ax = axes[0, j]
        for i, s in enumerate(sorted(set(seeds))):
            sel = seeds == s
            wr, p99 = np.asarray(m["w_rewarded"], float)[sel], np.asarray(m["w_p99"], float)[sel]
            for k in ("w_rewarded", "w_p99", "w_mean", "rank", "rewards"):
                vals[k].append(float(np.asarray(m[k], float)[sel][-1]))
            above = np.flatnonzero(wr > p99)
            vals["first"].append(float(t[sel][above[0]]) if len(above) else np.nan)
            ax.plot(t[sel], wr, color=f"C{i}", lw=1.5, label=f"rewarded (trial {i})")
            ax.plot(t[sel], p99, color=f"C{i}", lw=0.8, ls="--", label=f"others, 99th pct (trial {i})")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
        f = np.asarray(vals["first"])
        first = f"{np.nanmean(f):.0f} ({np.isfinite(f).sum()}/{len(f)} trials)" if np.isfinite(f).any() else "never"
        lines.append(f"| {label} | {len(vals['rank'])} | {t.max():.0f} | " + " | ".join(
            f"{np.mean(vals[k]):.3f} ± {np.std(vals[k]):.3f}" for k in ("w_rewarded", "w_p99", "w_mean", "rank"))
            + f" | {np.mean(vals['rewards']):.0f} | {first} |")
    axes[0, 0].set_ylabel("|weight|")
    axes[0, -1].legend(fontsize=6)
    fig.suptitle("Distal reward: the rewarded synapse vs the other exc→exc synapses", fontsize=10)
    fig.tight_layout()
    stem = "distal_reward_orders" if report_path.stem == "distal_reward" else report_path.stem
    fig_path = report_path.parent / "figures" / f"{stem}.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    text = "\n".join(lines) + f"\n\n![weights](figures/{fig_path.name})\n"
    report_path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
