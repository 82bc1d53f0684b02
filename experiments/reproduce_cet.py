"""CET paper reproduction (supervised, behavioural time scale) on the delayed-label digits stream.

Grid: trace orders {1, 2, 6, 10} × credit delays {1, 5, 10, 20, 50} steps, plus the perfect trace
(a pure delay line, the upper bound) at each delay and the no-delay baseline (exact backprop).
Each setting is trained with every learning rate of ``--lrs``; the best final test accuracy is
reported (the CET paper selects its learning rate per setting the same way). A run whose weights
blow up counts as failed at that learning rate. Outputs: a markdown table of accuracy and of the
gradient alignment (cosine between the CET update and the exact delayed gradient, mean over
layers, last 500 steps), and a heat map. Finished runs are skipped when re-run.

    python experiments/reproduce_cet.py                 # full grid (~15 min on 2 cores)
    python experiments/reproduce_cet.py --quick         # demo (make demo): orders {1, 10}, delays {5, 20}
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.errors import NeuroprobeError  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402


def settings(orders, delays):
    out = [("none", 0, 0)]
    for d in delays:
        out += [("cascade", n, d) for n in orders] + [("perfect", 0, d)]
    return out


def label(kind: str, order: int) -> str:
    return {"none": "no delay (BP)", "perfect": "perfect trace"}.get(kind, f"order {order}")


def run_setting(kind, order, delay, lr, steps, out: Path, progress: bool) -> dict:
    name = f"{kind}_n{order}_d{delay}_lr{lr}"
    d = out / name
    if (d / "summary.json").exists():
        return json.loads((d / "summary.json").read_text())
    if (d / "failed.json").exists():
        return json.loads((d / "failed.json").read_text())
    sets = [f"rule.trace={kind}", f"rule.order={max(order, 1)}", f"rule.delay={delay}", f"rule.lr={lr}",
            f"task.steps={steps}", f"run.progress={'true' if progress else 'false'}"]
    try:
        run_experiment(ROOT / "experiments" / "cet_digits.toml", overrides=sets, out=d, figures=False,
                       resume_if_exists=True)
    except NeuroprobeError as e:  # non-finite weights at this learning rate
        res = {"final": float("nan"), "failed": str(e)}
        (d / "failed.json").write_text(json.dumps(res))
        return res
    return json.loads((d / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, nargs="*", default=[1, 2, 6, 10])
    ap.add_argument("--delays", type=int, nargs="*", default=[1, 5, 10, 20, 50])
    ap.add_argument("--lrs", type=float, nargs="*", default=[0.003, 0.01, 0.05, 0.2])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="demo: orders {1, 10}, delays {5, 20}, 2000 steps, lr {0.01, 0.05}")
    ap.add_argument("--out", default=str(ROOT / "runs" / "cet_repro"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "cet_reproduction.md"))
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.orders, args.delays, args.steps, args.lrs = [1, 10], [5, 20], 2000, [0.01, 0.05]
    out = Path(args.out)
    from tqdm.auto import tqdm

    grid = settings(args.orders, args.delays)
    results = {}
    with tqdm(total=len(grid) * len(args.lrs), desc="CET digits grid", unit="run") as bar:
        for kind, order, delay in grid:
            best = None
            for lr in args.lrs:
                r = run_setting(kind, order, delay, lr, args.steps, out, args.progress)
                r["lr"] = lr
                if best is None or (np.nan_to_num(r["final"], nan=-1) > np.nan_to_num(best["final"], nan=-1)):
                    best = r
                bar.update(1)
                bar.set_postfix_str(f"{label(kind, order)} D={delay}: {best['final']:.3f}")
            results[(kind, order, delay)] = best
    report(results, args.orders, args.delays, Path(args.report), args.steps, args.lrs)


def report(results: dict, orders, delays, path: Path, steps: int, lrs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("cascade", n) for n in orders] + [("perfect", 0)]
    base = results[("none", 0, 0)]
    acc = np.array([[results[(k, n, d)]["final"] for d in delays] for k, n in rows])

    def align(r):
        v = [r[k] for k in r if k.startswith("align_")]
        return float(np.mean(v)) if v else float("nan")

    cos = np.array([[align(results[(k, n, d)]) for d in delays] for k, n in rows])
    head = "| trace | " + " | ".join(f"D = {d}" for d in delays) + " |\n|---|" + "---|" * len(delays)
    lines = [f"Final test accuracy (digits, 450 test images; {steps} steps × 32 streams; best lr of {list(lrs)}). "
             f"No delay (exact backprop): **{base['final']:.3f}**.", "", head]
    for (k, n), a in zip(rows, acc):
        lines.append(f"| {label(k, n)} | " + " | ".join("failed" if np.isnan(x) else f"{x:.3f}" for x in a) + " |")
    lines += ["", "Gradient alignment: cosine(CET update, exact delayed gradient), mean over layers and the last 500 steps.",
              "", head]
    for (k, n), c in zip(rows, cos):
        lines.append(f"| {label(k, n)} | " + " | ".join("—" if np.isnan(x) else f"{x:.2f}" for x in c) + " |")
    lines += ["", "Learning rate chosen per setting:", "", head]
    for k, n in rows:
        lines.append(f"| {label(k, n)} | " + " | ".join(f"{results[(k, n, d)]['lr']:g}" for d in delays) + " |")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, data, title, vmin in ((axes[0], acc, "final test accuracy", 0.0), (axes[1], cos, "cosine(update, true gradient)", 0.0)):
        im = ax.imshow(np.nan_to_num(data, nan=0.0), vmin=vmin, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(delays)), [str(d) for d in delays])
        ax.set_yticks(range(len(rows)), [label(k, n) for k, n in rows])
        ax.set_xlabel("credit delay D (steps)")
        ax.set_title(title)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, "×" if np.isnan(data[i, j]) else f"{data[i, j]:.2f}", ha="center", va="center",
                        color="w" if np.nan_to_num(data[i, j]) < 0.6 else "k", fontsize=8)
        fig.colorbar(im, ax=ax)
    fig.suptitle(f"Delayed-label digits: CET order × delay (no-delay backprop {base['final']:.3f})")
    fig.tight_layout()
    fig_path = path.parent / "figures" / (path.stem + ".png")
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    lines += ["", f"![heat map](figures/{fig_path.name})"]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(rows) + 3]))
    print(f"wrote {path} and {fig_path}")


if __name__ == "__main__":
    main()
