"""Delayed labels on digits: directional traces (rule 'probe') vs CET at an equal budget of forward passes.

The label of the input shown at step t arrives D steps later (D in ``--delays``). The probe rule
(``experiments/probe_digits.toml``, tuned at D = 0) keeps a FIFO of the windows whose labels are on
their way, each with the probes that produced it, so the credit always meets the right probes
whatever D is; its trace over windows then only decides how much *old* credit is reused:

* history 1: each credited window's update alone (plain ES-like step);
* λ-history: the last 4 credited windows, weights λ^j (λ = 0.7);
* cascade kernel: the last 4 credited windows, weights of a cascade of order 2 peaking 1 window
  back (0, 1, 0.74, 0.41). A kernel peaking at D windows would only add another D windows of
  latency on top of the FIFO's, so its peak does not follow D here.

Every probe variant's ``rule.lr`` is divided by its window weights' sum Σ_j w_j, so the variants take
the same step size and differ only in how credit is spread over windows.

CET (``experiments/cet_digits.toml``, cascade trace of order 6 peaking at the credit delay,
``rule.delay = D``; at D = 0 it is exact backprop) gets the same number of single-sample forward
passes: the probe rule costs B × S per step (B branches, S streams), CET S per step, so CET runs B
times as many steps. CET's backward pass is counted as free.

Metric: the last test accuracy (held-out 25 % of the digits, unperturbed network), mean ± sd over
``--seeds``; learning curves against forward passes in ``docs/figures/probe_digits.png``.

    python experiments/probe_digits_sweep.py                    # 18.6 min CPU (34.8 min wall on a busy 2-core machine)
    python experiments/probe_digits_sweep.py --report-only      # table + figure from finished runs

Runs are resumable: a finished run (summary.json) is skipped, an interrupted one continues from its
last checkpoint.

It compares two config files (probe rule, CET) at matched forward-pass budgets, which a sweep's
grid over the keys of one config does not express, so it stays a script; a sweep of either config
is ``neuroprobe sweep experiments/probe_digits.toml --grid KEY=V1,V2 --seeds N`` (docs/sweeps.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.config import load_experiment  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402
from neuroprobe.probes import history_weights  # noqa: E402

PROBE_CFG = ROOT / "experiments" / "probe_digits.toml"
CET_CFG = ROOT / "experiments" / "cet_digits.toml"
# label: (short name, probe rule overrides; None = CET)
METHODS = {
    "probe, history 1": ("probe_h1", {"history": 1, "decay": 1.0, "kernel": "none"}),
    "probe, λ-history (4 windows, λ = 0.7)": ("probe_lam", {"history": 4, "decay": 0.7, "kernel": "none"}),
    "probe, cascade kernel (4 windows, n = 2, peak 1)": ("probe_casc", {"history": 4, "kernel": "cascade",
                                                                         "kernel_order": 2, "kernel_delay": 1.0}),
    "CET (cascade n = 6 peaking at D)": ("cet", None),
}


def run_dir(out: Path, short: str, d: int, seed: int) -> Path:
    return out / f"{short}_D{d}_s{seed}"


def probe_overrides(base, rule: dict, d: int, steps: int, evals: int) -> list[str]:
    r = {**base.rule.model_dump(), **rule}
    w = history_weights(r["history"], r["decay"], None if r["kernel"] == "none" else r["kernel"], r["kernel_order"],
                        r["kernel_delay"])
    lr = base.rule.lr / float(w.sum())  # equal step size: the trace sums Σ_j w_j windows of credit
    return [f"rule.{k}={json.dumps(v)}" for k, v in rule.items()] + [
        f"rule.lr={lr!r}", f"task.label_delay={d}", f"task.steps={steps}",
        f"task.eval_every={max(1, steps // evals)}", "run.progress=false"]


def budget(base, steps: int) -> int:
    """Single-sample forward passes of one probe run: steps × B × S."""
    return steps * base.rule.branches * base.task.batch


def run_all(args, out: Path, base, cet) -> None:
    passes = budget(base, args.steps)
    cet_steps = passes // cet.task.batch
    for d in args.delays:
        for label, (short, rule) in METHODS.items():
            for seed in args.seeds:
                rd = run_dir(out, short, d, seed)
                if (rd / "summary.json").exists():
                    continue
                if rule is None:
                    cfg, sets = CET_CFG, [f"rule.delay={d}", f"task.steps={cet_steps}",
                                          f"task.eval_every={max(1, cet_steps // args.evals)}", "run.progress=false"]
                else:
                    cfg, sets = PROBE_CFG, probe_overrides(base, rule, d, args.steps, args.evals)
                print(f"{label} D={d} seed {seed}", flush=True)
                t0, c0 = time.perf_counter(), time.process_time()
                run_experiment(cfg, overrides=sets, seed=seed, out=rd, figures=False, resume_if_exists=True)
                prev = json.loads((rd / "time.json").read_text()) if (rd / "time.json").exists() else {}
                (rd / "time.json").write_text(json.dumps({  # summed over resumed parts
                    "seconds": prev.get("seconds", 0.0) + time.perf_counter() - t0,
                    "cpu_seconds": prev.get("cpu_seconds", 0.0) + time.process_time() - c0}))


def curve(rd: Path, per_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative forward passes, test accuracy) at each metrics row."""
    m = read_metrics(rd / "metrics.csv")
    step = np.asarray(m["step"])
    fp = np.asarray(m["forward_passes"]) if "forward_passes" in m else step * per_step
    return fp, np.asarray(m["accuracy"])


def report(args, out: Path, base, cet) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = budget(base, args.steps)
    r = base.rule.model_dump()
    lines = [
        f"Delayed labels on scikit-learn's digits (8x8, 10 classes, chance 0.1; held-out 25 %), model 64-128-128-10, "
        f"S = {base.task.batch} parallel streams; the label of step t arrives D steps later. Equal budget: "
        f"{passes:,} single-sample forward passes per run (probe rule: {args.steps} steps × B = {r['branches']} "
        f"branches × S; CET: {passes // cet.task.batch} steps × S, its backward pass counted as free). "
        f"Last test accuracy of the unperturbed network, mean ± sd over seeds (n).",
        "",
        f"Probe rule: `experiments/probe_digits.toml` (K = {r['num_probes']} antithetic rank-{r['rank']} probes per "
        f"layer, σ = {r['scale']}, null fraction {r['null_fraction']}, advantages divided by their std, "
        f"lr = {r['lr']} / Σ_j w_j). "
        "A FIFO pairs each window's delayed labels with the probes that produced it (see "
        "`neuroprobe/learners/probe.py`); the trace variants differ only in how much old credit "
        "they reuse. CET: `experiments/cet_digits.toml` with `rule.delay = D`.",
        "",
        "| method | " + " | ".join(f"D = {d}" for d in args.delays) + " |",
        "|---|" + "---|" * len(args.delays),
    ]
    fig, axes = plt.subplots(1, len(args.delays), figsize=(4.3 * len(args.delays), 3.6), sharey=True, squeeze=False)
    seconds, cpu = 0.0, 0.0  # cpu: None once a run lacks it
    late = ["", f"Mean of the last 5 rows (the last {5 / args.evals:.0%} of the budget), mean ± sd over seeds: "
            "less sensitive to where an oscillating run stops.", "",
            "| method | " + " | ".join(f"D = {d}" for d in args.delays) + " |", "|---|" + "---|" * len(args.delays)]
    for i, (label, (short, rule)) in enumerate(METHODS.items()):
        cells, late_cells = [], []
        for j, d in enumerate(args.delays):
            ax = axes[0, j]
            finals, lates, cs = [], [], []
            for seed in args.seeds:
                rd = run_dir(out, short, d, seed)
                if not (rd / "summary.json").exists():
                    continue
                if (rd / "time.json").exists():
                    t = json.loads((rd / "time.json").read_text())
                    seconds += t["seconds"]
                    cpu = cpu + t["cpu_seconds"] if cpu is not None and "cpu_seconds" in t else None
                fp, acc = curve(rd, cet.task.batch)  # CET rows: step × S
                finals.append(float(acc[-1]))
                lates.append(float(acc[-5:].mean()))
                cs.append((fp, acc))
            cells.append(f"{np.mean(finals):.3f} ± {np.std(finals):.3f} ({len(finals)})" if finals else "—")
            late_cells.append(f"{np.mean(lates):.3f} ± {np.std(lates):.3f}" if lates else "—")
            for k, (fp, acc) in enumerate(cs):
                ax.plot(fp, acc, color=f"C{i}", lw=0.7, alpha=0.35)
            if cs:
                n = min(len(c[1]) for c in cs)
                ax.plot(cs[0][0][:n], np.mean([c[1][:n] for c in cs], 0), color=f"C{i}", lw=1.8, label=label)
            ax.set_title(f"label delay D = {d}")
            ax.set_xlabel("forward passes per run")
            ax.set_xscale("log")
            ax.axhline(0.1, color="k", lw=0.5, ls=":")
            ax.grid(alpha=0.3)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        late.append(f"| {label} | " + " | ".join(late_cells) + " |")
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].set_ylim(0, 1)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(METHODS))
    fig.suptitle("Delayed-label digits, equal forward-pass budget (thin: seeds, thick: mean)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig_path = Path(args.report).parent / "figures" / "probe_digits.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    S, C = base.task.batch, base.model_spec.sizes[-1]
    sizes = base.model_spec.sizes
    per_window = r["branches"] * S * C + r["num_probes"] * r["rank"] * sum(sizes[:-1]) + r["num_probes"] * r[
        "rank"] * sum(sizes[1:])
    lines += late + [
        "",
        "Notes:",
        "",
        "* With the FIFO the probe rule's credit meets the probes that earned it whatever D is: a delay only "
        "postpones each update by D steps (the outcome was computed with the weights of step t − D and the update "
        "is applied to those of step t: a stale gradient). The price is memory: per pending window the "
        f"branches' log-probabilities (B·S·C = {r['branches'] * S * C}) and the probe factors "
        f"(K·r·Σ(n_in + n_out) = {per_window - r['branches'] * S * C}), {per_window:,} numbers, times D.",
        "* CET bridges the delay with eligibility traces (no stored outputs or labels) and gets exact credit "
        "only at D = 0 (then it is backprop); at D > 0 the credit meets a cascade trace that approximates the "
        f"activity of D steps ago. Its settings are `cet_digits.toml`'s (lr = {cet.rule.lr}, trace order "
        f"{cet.rule.order}, normalize = {cet.rule.normalize!r}), not re-tuned per D.",
        "* The trace variants reuse credit of earlier windows; with a FIFO there is nothing for a kernel peaking at D "
        "to recover, so they act as a smoothing of the update over windows (their lr is divided by Σ_j w_j, so the "
        "summed step equals history 1's).",
        "",
        f"Wall time of the runs: {seconds / 60:.1f} min in all"
        + (f" ({cpu / 60:.1f} min CPU)" if cpu is not None else "") + ", one core, on a shared 2-core machine.",
        "", f"![learning curves](figures/{fig_path.name})"]
    Path(args.report).write_text("# Delayed-label digits: directional traces vs CET\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delays", type=int, nargs="*", default=[0, 5, 20])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500, help="probe steps; sets every method's budget")
    ap.add_argument("--evals", type=int, default=20, help="metrics rows per run")
    ap.add_argument("--out", default=str(ROOT / "runs" / "probe_digits_sweep"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "probe_digits.md"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    base, cet = load_experiment(PROBE_CFG), load_experiment(CET_CFG)
    if not args.report_only:
        run_all(args, out, base, cet)
    report(args, out, base, cet)


if __name__ == "__main__":
    main()
