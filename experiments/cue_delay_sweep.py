"""Cue–delay–action with distractors: reward arrives D steps after the decisive action.

Each rule's CartPole config (same hyper-parameters) is run on ``CueDelay-v0`` with the 7-64-2
network for D in ``--delays``; the learner only sees the episode's return (the delayed reward).
Metric: mean return of each seed's last 50 episodes (+1 correct, −1 wrong; chance 0), mean ± sd
over seeds. The probe rule runs one seed per process (``--probe-seeds``).

    python experiments/cue_delay_sweep.py --delays 5 20 100 --episodes 300
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.experiments.runner import run_experiment  # noqa: E402

RULES = {"NRL": "nrl_cartpole.toml", "RMHL": "rmhl_cartpole.toml", "weight perturbation": "wp_cartpole.toml",
         "forward gradient": "fg_cartpole.toml", "BP": "bp_cartpole.toml", "probe": "probe_cartpole.toml"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delays", type=int, nargs="*", default=[5, 20, 100])
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--probe-seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--out", default=str(ROOT / "runs" / "cue_delay"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "cue_delay.md"))
    args = ap.parse_args()
    out = Path(args.out)
    results: dict[tuple[str, int], list[float]] = {}
    for d in args.delays:
        for label, cfg in RULES.items():
            seeds = args.probe_seeds if label == "probe" else [0]
            vals = []
            for seed in seeds:
                run_dir = out / f"{cfg.split('_')[0]}_D{d}_s{seed}"
                sets = ["task.name=CueDelay-v0", f"task.reward_delay={d}", f"task.episodes={args.episodes}",
                        f'model.file="{ROOT / "models" / "mlp_7_64_2.toml"}"', "run.progress=false"]
                if not (run_dir / "summary.json").exists():
                    run_experiment(ROOT / "experiments" / cfg, overrides=sets, seed=seed, out=run_dir, figures=False,
                                   resume_if_exists=True)
                s = json.loads((run_dir / "summary.json").read_text())
                vals += s["per_seed"]
            results[(label, d)] = vals
            print(label, d, np.mean(vals), flush=True)
    lines = [f"CueDelay-v0 (2 cues, cue 2 steps, delay 5 steps with 4 distractor channels, reward D steps after the "
             f"decisive action), {args.episodes} episodes; mean return of the last 50 episodes (+1 correct, −1 wrong, "
             "chance 0), mean ± sd over seeds (n).", "",
             "| rule | " + " | ".join(f"D = {d}" for d in args.delays) + " |", "|---|" + "---|" * len(args.delays)]
    for label in RULES:
        cells = [f"{np.mean(results[(label, d)]):.2f} ± {np.std(results[(label, d)]):.2f} ({len(results[(label, d)])})"
                 for d in args.delays]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
