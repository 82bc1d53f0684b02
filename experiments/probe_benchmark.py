"""Probe-bundle diagnostic benchmark (probe paper, section 11), CartPole slice.

Question: where do directional traces beat scalar traces (RMHL) and plain perturbation (NRL,
weight perturbation), at the same budget of forward passes, with BP as the upper bound?

Task: CartPole-v1 with the reward used only at episode end (the learner sees the episode return).
Methods: probe bundles with the random, round-robin and diversity schedulers (λ history) and with
a cascade kernel over windows; NRL, RMHL, weight perturbation, forward gradient and BP from their
``experiments/*_cartpole.toml`` configs (5 seeds batched). Cost model, in single-sample network
forwards per environment step: NRL 2, weight perturbation 2, forward gradient 2 (primal + tangent),
RMHL 1, BP 1 (its backward pass is not counted, so BP is favoured), probe: its ``forward_passes``
column (B × the window's longest branch). Methods are compared at the same budgets (``--budgets``). Final performance = mean return of a seed's last 50
episodes within the budget; mean ± sd over seeds. Also: per-layer gradient alignment at
initialisation (``neuroprobe align``) and the assignment statistics of each scheduler.

    python experiments/probe_benchmark.py --seeds 0 1 2            # ~30-40 min on 2 cores
    python experiments/probe_benchmark.py --report-only             # rebuild the tables
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.align import align_config  # noqa: E402
from neuroprobe.config import load_experiment  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402
from neuroprobe.plotting import rolling_mean  # noqa: E402

PROBE = ROOT / "experiments" / "probe_cartpole.toml"
PROBE_VARIANTS = {
    "probe · random": [],
    "probe · round-robin": ["rule.scheduler=round_robin"],
    "probe · diversity": ["rule.scheduler=diversity"],
    "probe · cascade kernel (P=4, n=2, peak 1)": ["rule.history=4", "rule.kernel=cascade", "rule.kernel_order=2",
                                                  "rule.kernel_delay=1.0"],
}
# (label, config, forwards per env step, run directory of an existing 5-seed run)
BASELINES = [
    ("NRL", "nrl_cartpole.toml", 2, "nrl_repro/nrl_cartpole"),
    ("RMHL", "rmhl_cartpole.toml", 1, "nrl_repro/rmhl_cartpole"),
    ("weight perturbation", "wp_cartpole.toml", 2, "probe_bench/wp_cartpole"),
    ("forward gradient", "fg_cartpole.toml", 2, "probe_bench/fg_cartpole"),
    ("BP (upper bound)", "bp_cartpole.toml", 1, "nrl_repro/bp_cartpole"),
]


def curves(run_dir: Path, per_step: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed: (cumulative forward passes at each episode end, returns)."""
    m = read_metrics(run_dir / "metrics.csv")
    seeds, ret = np.asarray(m["seed"]), np.asarray(m["return"])
    cost = np.asarray(m["forward_passes"]) if per_step is None else np.asarray(m["length"]) * per_step
    return [(np.cumsum(cost[seeds == s]), ret[seeds == s]) for s in sorted(set(seeds))]


def final_at(budget: float, per_seed: list[tuple[np.ndarray, np.ndarray]], last: int = 50) -> tuple[float, float]:
    vals = []
    for cum, ret in per_seed:
        sel = ret[cum <= budget]
        if len(sel):
            vals.append(float(sel[-last:].mean()))
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (float("nan"), float("nan"))


def scheduler_stats(sets: list[str], windows: int = 50) -> dict:
    import torch

    from neuroprobe.network import RateNetwork
    from neuroprobe.probes import assignment_stats
    from neuroprobe.rules.probe import rule_from_config

    exp = load_experiment(PROBE, sets)
    rule = rule_from_config(exp.rule, RateNetwork(exp.model_spec, generator=torch.Generator().manual_seed(0)),
                            seed=exp.seed, advantage_scale=exp.modulator.scale)
    ent, mi, cov = [], [], []
    for _ in range(windows):
        s = assignment_stats(rule.assignment())
        ent.append(float(s["entropy"].mean()))
        mi.append(s["entanglement"])
        cov.append(s["total_coverage"])
    return {"entropy": np.mean(ent), "entanglement": np.mean(mi), "coverage": np.mean(cov)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--windows", type=int, default=150, help="probe windows (episodes) per seed")
    ap.add_argument("--episodes", type=int, default=1000, help="episodes for baselines that must be run here")
    ap.add_argument("--budgets", type=float, nargs="*", default=[2e4, 1.2e5, 1.2e6],
                    help="forward-pass budgets per seed at which final returns are compared")
    ap.add_argument("--align-samples", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "runs"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "probe_benchmark.md"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.report_only:
        for label, sets in PROBE_VARIANTS.items():
            for seed in args.seeds:
                d = out / "probe_bench" / f"{_slug(label)}-{seed}"
                if not (d / "summary.json").exists():
                    run_experiment(PROBE, overrides=sets + [f"task.episodes={args.windows}"], seed=seed, out=d,
                                   figures=False, resume_if_exists=True)
        for label, cfg, _, rel in BASELINES:
            d = out / rel
            if not (d / "summary.json").exists() and (ROOT / "experiments" / cfg).exists():
                run_experiment(ROOT / "experiments" / cfg, overrides=[f"task.episodes={args.episodes}"], out=d,
                               figures=False, resume_if_exists=True)
    report(out, args)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def report(out: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods: dict[str, list] = {}
    for label in PROBE_VARIANTS:
        runs = [out / "probe_bench" / f"{_slug(label)}-{s}" for s in args.seeds]
        runs = [r for r in runs if (r / "summary.json").exists()]  # finished runs only
        if runs:
            methods[label] = [c for r in runs for c in curves(r, None)]
    for label, _, per_step, rel in BASELINES:
        if (out / rel / "metrics.csv").exists():
            methods[label] = curves(out / rel, per_step)
    totals = {k: min(c[0][-1] for c in v) for k, v in methods.items()}
    budgets = sorted(args.budgets)
    lines = ["Final return = mean of each seed's last 50 episodes within the budget (single-sample forward "
             "passes per seed), mean ± sd over seeds; — where the method's run did not reach that budget.", "",
             "| method | seeds | " + " | ".join(f"at {b:.2g} passes" for b in budgets) + " | passes run (min over seeds) |",
             "|---|---|" + "---|" * len(budgets) + "---|"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for k, v in methods.items():
        cells = []
        for b in budgets:
            mu, sd = final_at(b, v)
            cells.append(f"{mu:.1f} ± {sd:.1f}" if totals[k] >= b else "—")
        lines.append(f"| {k} | {len(v)} | " + " | ".join(cells) + f" | {totals[k]:.3g} |")
        for i, (c, r) in enumerate(v):
            ax.plot(c, rolling_mean(r, 50), color=f"C{list(methods).index(k)}", lw=0.8, alpha=0.7,
                    label=k if i == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("forward passes (single-sample network forwards)")
    ax.set_ylabel("return (rolling mean of 50), one line per seed")
    ax.set_title("CartPole-v1, reward at episode end: equal forward-pass budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig_path = Path(args.report).parent / "figures" / "probe_benchmark.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    lines += ["", f"![curves](figures/{fig_path.name})", "",
              f"Gradient alignment at initialisation, cosine per layer (N = {args.align_samples}):", "",
              "| method | alignment |", "|---|---|"]
    for label, sets in PROBE_VARIANTS.items():
        if "cascade" in label:
            continue  # same probes and estimator as "random" at initialisation
        cos = align_config(load_experiment(PROBE, sets), samples=args.align_samples)
        lines.append(f"| {label} | " + ", ".join(f"{k} {v:.2f}" for k, v in cos.items()) + " |")
    for label, cfg, _, _ in BASELINES:
        if (ROOT / "experiments" / cfg).exists():
            cos = align_config(load_experiment(ROOT / "experiments" / cfg), samples=args.align_samples)
            lines.append(f"| {label} | " + ", ".join(f"{k} {v:.2f}" for k, v in cos.items()) + " |")
    lines += ["", "Assignment statistics of the schedulers (mean over 50 windows of the probe config; natural log):",
              "", "| scheduler | mean entropy per module | entanglement (mean off-diagonal MI) | coverage |",
              "|---|---|---|---|"]
    for label, sets in PROBE_VARIANTS.items():
        if "cascade" in label:
            continue
        s = scheduler_stats(sets)
        lines.append(f"| {label} | {s['entropy']:.3f} | {s['entanglement']:.4f} | {s['coverage']:.3f} |")
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    (out / "probe_bench").mkdir(parents=True, exist_ok=True)
    (out / "probe_bench" / "budgets.json").write_text(json.dumps({"budgets": budgets}))


if __name__ == "__main__":
    main()
