"""CET paper reproduction (supervised, behavioural time scale) on the delayed-label digits stream.

Grid: trace orders {1, 2, 6, 10} × credit delays {1, 5, 10, 20, 50} steps, plus the perfect trace
(a pure delay line, the upper bound) at each delay and the no-delay baseline (exact backprop).
Each setting is trained with every learning rate of ``--lrs``; the best final test accuracy is
reported (the CET paper selects its learning rate per setting the same way). A run whose weights
blow up counts as failed at that learning rate. Outputs: a markdown table of accuracy and of the
gradient alignment (cosine between the CET update and the exact delayed gradient, mean over
layers, last 500 steps), the learning rate chosen per setting, and a heat map.

Every setting × learning rate is one ``neuroprobe run`` of ``experiments/cet_digits.toml`` (seed 0),
run as one sweep (:mod:`neuroprobe.sweep`) into ``--out``: in parallel on an embedded Ray (or the
cluster of ``--address``), each run the same as the plain ``neuroprobe run`` (same metrics.csv, byte
for byte); a blown-up run is a failed row of ``--out/sweep.csv``. Finished runs are skipped when
re-run, interrupted ones continue from their checkpoint. The run directories are the sweep's
(``--out/trace=cascade_order=6_delay=20_lr=0.05/s0``, ...); the run directories written by earlier
versions of this script (``cascade_n6_d20_lr0.05``) are not reused. The cascade part alone, with
the learning rate as a grid key, is also a plain sweep: ``experiments/sweeps/cet_order_delay_lr.toml``
(``neuroprobe report DIR --best rule.lr``).

    python experiments/reproduce_cet.py                 # full grid (104 runs, ~5.5 min on 2 cores)
    python experiments/reproduce_cet.py --quick         # small grid: orders {1, 10}, delays {5, 20}
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.errors import ConfigError  # noqa: E402
from neuroprobe.sweep import SweepSpec, load_sweep_spec, run_sweep  # noqa: E402

CONFIG = ROOT / "experiments" / "cet_digits.toml"


def settings(orders, delays) -> list[tuple[str, int, int]]:
    """(trace kind, order, delay) of every setting: the baseline, then per delay the cascades and
    the perfect trace."""
    out = [("none", 0, 0)]
    for d in delays:
        out += [("cascade", n, d) for n in orders] + [("perfect", 0, d)]
    return out


def label(kind: str, order: int) -> str:
    return {"none": "no delay (BP)", "perfect": "perfect trace"}.get(kind, f"order {order}")


def point(kind: str, order: int, delay: int, lr: float) -> dict:
    """The overrides of one run (the same four the script has always set: order 1 where unused)."""
    return {"rule.trace": kind, "rule.order": max(order, 1), "rule.delay": delay, "rule.lr": lr}


def grid(orders, delays, lrs) -> list[tuple[str, int, int, float]]:
    """(kind, order, delay, lr) of every run, in the sweep's point order (point index = position)."""
    return [(k, n, d, lr) for k, n, d in settings(orders, delays) for lr in lrs]


def build_spec(orders, delays, lrs, steps: int, extra: list[str] = ()) -> SweepSpec:
    """The sweep: every setting × learning rate as an explicit point, one seed (the config's)."""
    pts = [point(*run) for run in grid(orders, delays, lrs)]
    return load_sweep_spec(CONFIG, points=pts, set=[f"task.steps={steps}", *extra], name="reproduce_cet")


def collect(out: Path, rows: list[dict], orders, delays, lrs) -> dict:
    """{(kind, order, delay): summary.json of the best lr, with "lr"} from the rows of sweep.csv; a
    failed run is final = NaN and loses to any finished one (where every lr failed, the first lr's
    NaN is kept)."""
    by_point = {r["point"]: r for r in rows}  # one seed: one row per point
    results: dict = {}
    for i, (kind, order, delay, lr) in enumerate(grid(orders, delays, lrs)):
        row = by_point[i]
        if row["status"] == "done":
            r = json.loads((out / row["run"] / "summary.json").read_text())
        else:
            r = {"final": math.nan, "failed": row.get("error", "")}
        r["lr"] = lr
        best = results.get((kind, order, delay))
        if best is None or np.nan_to_num(r["final"], nan=-1) > np.nan_to_num(best["final"], nan=-1):
            results[(kind, order, delay)] = r
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, nargs="*", default=[1, 2, 6, 10])
    ap.add_argument("--delays", type=int, nargs="*", default=[1, 5, 10, 20, 50])
    ap.add_argument("--lrs", type=float, nargs="*", default=[0.003, 0.01, 0.05, 0.2])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true",
                    help="a small grid: orders {1, 10}, delays {5, 20}, 2000 steps, lr {0.01, 0.05}")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra override of every run (e.g. task.eval_every=20)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "cet_repro"), help="the sweep directory")
    ap.add_argument("--report", default=str(ROOT / "docs" / "cet_reproduction.md"))
    ap.add_argument("--address", default=None, help="HOST:PORT of a Ray cluster (default: a local Ray)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all usable)")
    # per-run progress bars no longer exist (the sweep shows one bar over the runs); kept so old
    # command lines still parse
    ap.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.orders, args.delays, args.steps, args.lrs = [1, 10], [5, 20], 2000, [0.01, 0.05]
    out = Path(args.out)
    try:
        spec = build_spec(args.orders, args.delays, args.lrs, args.steps, args.set)
        outcome = run_sweep(spec, out, address=args.address, num_cpus=args.num_cpus)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"runs: {outcome.done} done, {outcome.failed} failed, {outcome.skipped} skipped (already done); "
          f"{outcome.csv}")
    # a blow-up at a learning rate is part of the experiment; anything else is worth a look
    for rel, err in outcome.failures:
        if not err.startswith("NonFiniteError"):
            print(f"failed {rel}: {err}")
    results = collect(out, outcome.rows, args.orders, args.delays, args.lrs)
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
