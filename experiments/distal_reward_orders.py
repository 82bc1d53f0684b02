"""Distal reward (Izhikevich 2007) with cascade-trace R-STDP: eligibility orders compared.

Runs ``experiments/distal_reward.toml`` (1000 LIF neurons, one rewarded exc→exc synapse, rewards
1–3 s after its pre→post coincidences) with cascade orders 1, 2 and 6: order 1 is the classic
exponentially decaying eligibility (time constant ``delay``), orders 2 and 6 peak ``delay`` s after
the coincidence. Reported per setting (mean ± sd over the trials): the rewarded synapse's final
weight, the 99th percentile and mean of the other synapses, its rank (fraction of other synapses
below it; 1 = strongest), and the first time it exceeds every sampled other synapse... and a
figure of the rewarded weight vs the rest over time, one panel per setting.

The settings run as one sweep (:mod:`neuroprobe.sweep`) into ``--out``: one ``neuroprobe run`` per
setting with its ``--seeds`` trials batched (``--set seeds=N``, exactly as before), the settings in
parallel on an embedded Ray (or the cluster of ``--address``). Finished runs are skipped when
re-run, interrupted ones continue from their checkpoint; a run still going is reported as far as it
got. The run directories are the sweep's (``--out/order=6_delay=2.0/s0-1``); the run directories of
earlier versions of this script (``--out/order_6__peak_2_s``) are not reused. A sweep directory
holds one sweep: other ``--settings``, ``--seeds``, ``--duration`` or ``--set`` need another
``--out`` (``--report-only`` reads any subset of what is there). The same runs as a plain sweep:
``experiments/sweeps/distal_orders.toml`` (``neuroprobe report DIR``).

    python experiments/distal_reward_orders.py                      # 4 settings x 2 trials of 300 s
    python experiments/distal_reward_orders.py --report-only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.errors import ConfigError  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.sweep import SweepSpec, format_outcome, load_sweep_spec, run_sweep  # noqa: E402

CONFIG = ROOT / "experiments" / "distal_reward.toml"
# label: the setting's overrides (a point of the sweep)
SETTINGS = {
    "order 1, τ = 1 s (classic)": {"rule.order": 1, "rule.delay": 1.0},
    "order 1, τ = 2 s": {"rule.order": 1, "rule.delay": 2.0},
    "order 2, peak 2 s": {"rule.order": 2, "rule.delay": 2.0},
    "order 6, peak 2 s": {"rule.order": 6, "rule.delay": 2.0},
}


def build_spec(chosen: dict, duration: float, seeds: int, extra: list[str] = ()) -> SweepSpec:
    """The sweep: the chosen settings as points, ``seeds`` trials each (batched in one run)."""
    return load_sweep_spec(CONFIG, points=list(chosen.values()), seeds=seeds,
                           set=[f"task.duration={duration}", *extra], name="distal_reward_orders")


def run_dirs(out: Path, chosen: dict) -> dict[str, list[Path]]:
    """{label: run directories of that setting} from ``out``/sweep.csv (its ``run`` column; one run
    per setting when the trials are batched), for the chosen settings the sweep has; failed runs are
    left out (the sweep printed their errors)."""
    if not (out / "sweep.csv").is_file():
        return {}
    from neuroprobe.sweep.report import read_sweep
    from neuroprobe.sweep.spec import value_text

    rows = read_sweep(out).rows
    found = {}
    for lbl, setting in chosen.items():
        want = {k: value_text(v, k) for k, v in setting.items()}
        dirs = [out / r.run for r in rows
                if r.status != "failed" and all(r.values.get(k) == v for k, v in want.items())]
        if dirs:
            found[lbl] = list(dict.fromkeys(dirs))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="simulated seconds per run")
    ap.add_argument("--seeds", type=int, default=2, help="trials per setting (batched)")
    ap.add_argument("--settings", nargs="*", default=None, help="subset of setting labels")
    ap.add_argument("--set", action="append", default=[], help="extra overrides for every run")
    ap.add_argument("--out", default=str(ROOT / "runs" / "distal_orders"), help="the sweep directory")
    ap.add_argument("--report", default=str(ROOT / "docs" / "distal_reward.md"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--address", default=None, help="HOST:PORT of a Ray cluster (default: a local Ray)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all usable)")
    args = ap.parse_args()
    out = Path(args.out)
    unknown = sorted(set(args.settings or []) - set(SETTINGS))
    if unknown:
        ap.error(f"--settings {unknown}: unknown; allowed: {list(SETTINGS)}")
    chosen = {k: v for k, v in SETTINGS.items() if args.settings is None or k in args.settings}
    failed = False
    try:
        if not args.report_only:
            outcome = run_sweep(build_spec(chosen, args.duration, args.seeds, args.set), out,
                                address=args.address, num_cpus=args.num_cpus)
            print(format_outcome(outcome), flush=True)
            failed = outcome.failed > 0
        report(run_dirs(out, chosen), Path(args.report))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if failed else 0)


def report(done: dict[str, list[Path]], report_path: Path) -> None:
    """The table (report_path) and figure (figures/distal_reward_orders.png next to it, or
    figures/<stem>.png) of the runs in ``done`` that have metrics (finished or still running)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {k: [d for d in ds if (d / "metrics.csv").exists()] for k, ds in done.items()}
    done = {k: ds for k, ds in done.items() if ds}
    if not done:
        print("no finished runs")
        return
    fig, axes = plt.subplots(1, len(done), figsize=(4.0 * len(done), 3.4), sharey=True, squeeze=False)
    lines = ["| eligibility | trials | simulated s | rewarded |w| | others p99 | others mean | rank of rewarded | "
             "rewards delivered | first time above all others' p99 (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for j, (label, dirs) in enumerate(done.items()):
        vals = {k: [] for k in ("w_rewarded", "w_p99", "w_mean", "rank", "rewards", "first")}
        ax, i, t_max = axes[0, j], 0, 0.0
        for d in dirs:  # one run of batched trials, or one run per trial
            m = read_metrics(d / "metrics.csv")
            seeds, t = np.asarray(m["seed"]), np.asarray(m["time"], dtype=float)
            t_max = max(t_max, float(t.max()))
            for s in sorted(set(seeds)):
                sel = seeds == s
                wr, p99 = np.asarray(m["w_rewarded"], float)[sel], np.asarray(m["w_p99"], float)[sel]
                for k in ("w_rewarded", "w_p99", "w_mean", "rank", "rewards"):
                    vals[k].append(float(np.asarray(m[k], float)[sel][-1]))
                above = np.flatnonzero(wr > p99)
                vals["first"].append(float(t[sel][above[0]]) if len(above) else np.nan)
                ax.plot(t[sel], wr, color=f"C{i}", lw=1.5, label=f"rewarded (trial {i})")
                ax.plot(t[sel], p99, color=f"C{i}", lw=0.8, ls="--", label=f"others, 99th pct (trial {i})")
                i += 1
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
        f = np.asarray(vals["first"])
        first = f"{np.nanmean(f):.0f} ({np.isfinite(f).sum()}/{len(f)} trials)" if np.isfinite(f).any() else "never"
        lines.append(f"| {label} | {len(vals['rank'])} | {t_max:.0f} | " + " | ".join(
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
