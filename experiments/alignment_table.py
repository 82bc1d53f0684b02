"""Gradient alignment at initialisation of the CartPole networks, for every RL rule.

For each config, the cosine between the rule's expected update (mean over N noise samples on 64
fixed states) and the autograd gradient of the same objective (see neuroprobe/align.py), per layer,
at N = 2000 and N = 20000. Writes a markdown table.

    python experiments/alignment_table.py --out docs/alignment.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.align import align_config  # noqa: E402
from neuroprobe.config import load_experiment  # noqa: E402

CASES = [
    ("NRL (clean + 1 noisy pass)", "nrl_cartpole.toml", []),
    ("NRL, noisy passes only (K = 2)", "nrl_cartpole.toml", ["rule.clean_pass=false", "rule.passes=2"]),
    ("NRL, noisy passes only (K = 10)", "nrl_cartpole.toml", ["rule.clean_pass=false", "rule.passes=10"]),
    ("weight perturbation", "wp_cartpole.toml", []),
    ("RMHL (σ = 0.1)", "rmhl_cartpole.toml", []),
    ("BP (REINFORCE, exact)", "bp_cartpole.toml", []),
    ("NRL, 2 hidden layers", "nrl_cartpole_2h.toml", []),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="*", default=[2000, 20000])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = ["| rule (CartPole network at initialisation) | " + " | ".join(f"N = {n}" for n in args.samples) + " |",
             "|---|" + "---|" * len(args.samples)]
    for label, cfg_name, sets in CASES:
        cfg = load_experiment(ROOT / "experiments" / cfg_name, sets)
        cells = []
        for n in args.samples:
            cos = align_config(cfg, samples=n)
            cells.append(", ".join(f"{k} {v:.3f}" for k, v in cos.items()))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
