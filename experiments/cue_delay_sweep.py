"""Cue–delay–action with distractors at an equal budget of forward passes.

Reward arrives D steps after the decisive action. Each rule's CartPole config (same
hyper-parameters) runs on ``CueDelay-v0`` with the 7-64-2 network for D in ``--delays``; the learner
only sees the episode's return (the delayed reward). The probe rule runs ``--windows`` windows of B
branches (one seed per process, ``--probe-seeds``); every other rule gets the same number of
single-sample forward passes: ``windows × B / c`` episodes, c = forwards per environment step
(NRL, weight perturbation, forward gradient 2; RMHL, BP 1 — BP's backward pass is not counted).
CueDelay episodes have a fixed length, so equal episodes × c means equal passes.

Metric: mean return of each seed's last 50 episodes (+1 correct, −1 wrong; chance 0), mean ± sd
over seeds, plus the learning curves against forward passes.

It compares different config files (one per rule) at budgets matched across them, which a sweep's
grid over the keys of one config does not express, so it stays a script; a sweep of any one of
its configs is ``neuroprobe sweep``, e.g. ``neuroprobe sweep experiments/nrl_cartpole.toml --grid
task.reward_delay=0,5,10 --seeds 5 --set task.name=CueDelay-v0 --set model.file=../models/mlp_7_64_2.toml``
(docs/sweeps.md).

    python experiments/cue_delay_sweep.py                      # ~45-60 min on one core
    python experiments/cue_delay_sweep.py --report-only        # table + figure from finished runs
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.config import load_experiment  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402
from neuroprobe.plotting import rolling_mean  # noqa: E402

# label: (config, single-sample forwards per environment step; None = the run's forward_passes column)
RULES = {"NRL": ("nrl_cartpole.toml", 2), "RMHL": ("rmhl_cartpole.toml", 1),
         "weight perturbation": ("wp_cartpole.toml", 2), "forward gradient": ("fg_cartpole.toml", 2),
         "BP": ("bp_cartpole.toml", 1), "probe": ("probe_cartpole.toml", None)}


def run_dir(out: Path, cfg: str, d: int, seed: int) -> Path:
    return out / f"{cfg.split('_')[0]}_D{d}_s{seed}"


def windows_for(args, d: int) -> int:
    """Probe windows (the budget) at delay d: ``--windows`` holds one value, or one per delay."""
    w = args.windows
    if len(w) not in (1, len(args.delays)):
        raise SystemExit(f"--windows: give one value or one per delay ({len(args.delays)})")
    return w[0] if len(w) == 1 else w[args.delays.index(d)]


def run_all(args, out: Path, branches: int) -> None:
    # probe first: its runs are short and set the budget; the long baseline runs come after
    order = ["probe"] + [k for k in RULES if k != "probe"]
    for d in args.delays:
        for label in order:
            cfg, cost = RULES[label]
            W = windows_for(args, d)
            episodes = W if cost is None else W * branches // cost
            for seed in (args.probe_seeds if cost is None else [0]):  # baselines: 5 seeds batched in one run
                rd = run_dir(out, cfg, d, seed)
                if (rd / "summary.json").exists():
                    continue
                sets = ["task.name=CueDelay-v0", f"task.reward_delay={d}", f"task.episodes={episodes}",
                        f'model.file="{ROOT / "models" / "mlp_7_64_2.toml"}"', "run.progress=false"]
                print(f"{label} D={d} seed {seed}: {episodes} episodes", flush=True)
                run_experiment(ROOT / "experiments" / cfg, overrides=sets, seed=seed, out=rd, figures=False,
                               resume_if_exists=True)


def curves(rd: Path, cost: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed: (cumulative forward passes at each episode end, returns)."""
    m = read_metrics(rd / "metrics.csv")
    seeds, ret = np.asarray(m["seed"]), np.asarray(m["return"])
    c = np.asarray(m["forward_passes"]) if cost is None else np.asarray(m["length"]) * cost
    return [(np.cumsum(c[seeds == s]), ret[seeds == s]) for s in sorted(set(seeds))]


def report(args, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [f"CueDelay-v0 (2 cues, cue 2 steps, delay 5 steps with 4 distractor channels, reward D steps after the "
             "decisive action). Equal budget: the probe rule's first W windows of B branches (W below); every "
             "other rule the same single-sample forward passes (runs are cut at the budget). Mean return of each seed's last 50 episodes (+1 correct, "
             "−1 wrong, chance 0), mean ± sd over seeds (n); budget in forward passes per seed.", "",
             "| rule | " + " | ".join(f"D = {d}" for d in args.delays) + " |", "|---|" + "---|" * len(args.delays)]
    fig, axes = plt.subplots(1, len(args.delays), figsize=(4.2 * len(args.delays), 3.6), sharey=True, squeeze=False)
    table: dict[str, list[str]] = {}
    budgets = []
    for j, d in enumerate(args.delays):
        ax = axes[0, j]
        W = windows_for(args, d)
        probe_cfg = RULES["probe"][0]
        probe_curves = [c for s in args.probe_seeds if (run_dir(out, probe_cfg, d, s) / "metrics.csv").exists()
                        for c in curves(run_dir(out, probe_cfg, d, s), None)]
        # the budget: forward passes of the probe's first W windows (median over its seeds)
        budget = float(np.median([c[min(W, len(c)) - 1] for c, _ in probe_curves])) if probe_curves else np.inf
        for i, (label, (cfg, cost)) in enumerate(RULES.items()):
            per_seed = []
            for seed in (args.probe_seeds if cost is None else [0]):
                rd = run_dir(out, cfg, d, seed)
                if (rd / "metrics.csv").exists():
                    per_seed += curves(rd, cost)
            finals = [float(r[c <= budget][-50:].mean()) for c, r in per_seed if (c <= budget).any()]
            table.setdefault(label, []).append(
                f"{np.mean(finals):.2f} ± {np.std(finals):.2f} ({len(finals)})" if finals else "—")
            if label == "probe" and per_seed:
                budgets.append(f"D = {d}: {budget:.3g} ({W} probe windows)")
            for k, (c, r) in enumerate(per_seed):
                c, r = c[c <= budget], r[c <= budget]
                ax.plot(c, rolling_mean(r, 50), color=f"C{i}", lw=0.8, alpha=0.7, label=label if k == 0 else None)
        ax.set_title(f"reward {d} steps after the action")
        ax.set_xlabel("forward passes per seed")
        ax.set_xscale("log")
        ax.axhline(0, color="k", lw=0.5, ls=":")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("return (rolling mean of 50)")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle("CueDelay-v0 with distractors, equal forward-pass budget", fontsize=10)
    fig.tight_layout()
    fig_path = Path(args.report).parent / "figures" / "cue_delay.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    for label, cells in table.items():
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Budget (median over the probe seeds): " + "; ".join(budgets) + ".", "",
              f"![cue-delay curves](figures/{fig_path.name})"]
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delays", type=int, nargs="*", default=[5, 20, 100])
    ap.add_argument("--windows", type=int, nargs="*", default=[150],
                    help="probe windows (one value, or one per delay); sets every rule's budget")
    ap.add_argument("--probe-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=str(ROOT / "runs" / "cue_delay_budget"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "cue_delay.md"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    branches = load_experiment(ROOT / "experiments" / "probe_cartpole.toml").rule.branches
    if not args.report_only:
        run_all(args, out, branches)
    report(args, out)


if __name__ == "__main__":
    main()
