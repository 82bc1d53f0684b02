"""The main job (``make demo``): one short, real experiment of each kind neuroprobe is for.

1. **Distal reward** (Izhikevich 2007's problem) with a cascade eligibility trace: 1000 LIF neurons
   (800 exc / 200 inh, the Loihi-deployable network ``models/snn_distal_reward_loihi.toml``), one
   rewarded exc→exc synapse, rewards 1–3 s after its pre→post coincidences, an order-6 cascade
   peaking 2 s after a coincidence; 2 trials on the fastest engine available (the compiled
   event-driven CPU engine when numba is installed, else torch). Figures: raster with population
   rates, membrane potentials, the rewarded synapse against the rest.
2. **The same network in fixed point** (Loihi's integers, on-chip learning rule and reward protocol)
   next to the float run, and their agreement: the trained float network and its fixed-point twin on
   the same inputs and noise (spikes matched within ±1 step, RMS voltage difference).
3. **A sweep** of the CET paper's grid, cascade order × credit delay on delayed-label digits, with
   seeds, on an embedded Ray (``neuroprobe sweep``), and its report (``neuroprobe report``).

It ends with one HTML page (the sweep's report with the distal-reward sections added) and a printed
summary table. Every step is resumable: re-running skips what is finished.

    python experiments/demo.py                 # about 2-3 min on 2 cores from a fresh clone
    python experiments/demo.py --out runs/demo2 --duration 200
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.backends import event as event_engine  # noqa: E402
from neuroprobe.rundir import read_metrics  # noqa: E402
from neuroprobe.runner import run_experiment  # noqa: E402

DISTAL = ROOT / "experiments" / "distal_reward_loihi.toml"
CET_SWEEP = ROOT / "experiments" / "sweeps" / "cet_order_delay.toml"
RULE = ["rule.order=6", "rule.delay=2.0"]


def fastest_spiking_engine() -> str:
    """'event' when the compiled event-driven engine can run here, else 'torch'."""
    return "event" if event_engine.available() else "torch"


def distal_runs(out: Path, duration: float, trials: int, engine: str) -> dict[str, Path]:
    """Step 1 and 2: the float run and its fixed-point deployment (same network, seeds, protocol)."""
    common = RULE + [f"task.duration={duration}", f"seeds={trials}", f"run.backend={engine}",
                     "run.record_last=2.0"]
    runs = {}
    for precision in ("float", "fixed"):
        d = out / f"distal_{precision}"
        if not (d / "summary.json").exists():
            print(f"\n[{'1' if precision == 'float' else '2'}/3] distal reward, {precision}"
                  f"{' point' if precision == 'fixed' else ''}, {engine} engine: {duration:g} s x {trials} trials",
                  flush=True)
            run_experiment(DISTAL, overrides=common + [f"run.precision={precision}"], out=d, resume_if_exists=True)
        runs[precision] = d
    return runs


def float_vs_fixed_figure(runs: dict[str, Path], path: Path) -> Path:
    """The rewarded synapse and the others' 99th percentile over time, float vs fixed point, per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    colors = {"float": "tab:blue", "fixed": "tab:orange"}
    for precision, d in runs.items():
        m = read_metrics(d / "metrics.csv")
        seed, t = np.asarray(m["seed"]), np.asarray(m["time"], dtype=float)
        for k, s in enumerate(sorted(set(seed.tolist()))):
            sel = seed == s
            lab = f"{precision}: rewarded synapse" if k == 0 else None
            ax.plot(t[sel], np.asarray(m["w_rewarded"], dtype=float)[sel], color=colors[precision], lw=1.4, label=lab,
                    ls="-" if k == 0 else "--")
            ax.plot(t[sel], np.asarray(m["w_p99"], dtype=float)[sel], color=colors[precision], lw=0.8, alpha=0.5,
                    ls="-" if k == 0 else "--", label=f"{precision}: others' 99th percentile" if k == 0 else None)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("weight")
    ax.set_title("Distal reward: float vs fixed point (solid trial 0, dashed trial 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def distal_rows(runs: dict[str, Path]) -> list[dict]:
    rows = []
    for precision, d in runs.items():
        s = json.loads((d / "summary.json").read_text())
        rows.append({"precision": precision, "w_rewarded": s["final_w_rewarded"], "w_p99": s["final_w_p99"],
                     "w_mean": s["final_w_mean"], "rank": s["per_seed"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "demo"))
    ap.add_argument("--duration", type=float, default=100.0, help="simulated seconds of each distal-reward run")
    ap.add_argument("--trials", type=int, default=2, help="distal-reward trials (batched)")
    ap.add_argument("--steps", type=int, default=1500, help="training steps of each CET run")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per CET grid point")
    ap.add_argument("--fresh", action="store_true", help="delete OUT first (otherwise finished parts are reused)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    engine = fastest_spiking_engine()

    runs = distal_runs(out, args.duration, args.trials, engine)
    t_distal = time.perf_counter() - t0
    from neuroprobe.deploy import quantisation_check

    qpath = out / "quantisation.json"
    if not qpath.exists():
        qpath.write_text(json.dumps(quantisation_check(runs["float"]), indent=1))
    quant = json.loads(qpath.read_text())["quantization_error"]
    fig_cmp = float_vs_fixed_figure(runs, out / "distal_float_vs_fixed.png")

    print(f"\n[3/3] CET order x delay sweep on an embedded Ray: {CET_SWEEP.relative_to(ROOT)}", flush=True)
    from neuroprobe.sweep import load_sweep_spec, run_sweep
    from neuroprobe.sweep.report import write_report

    spec = load_sweep_spec(CET_SWEEP, grid=["rule.order=1,6", "rule.delay=5,20"], seeds=args.seeds,
                           set=[f"task.steps={args.steps}", "task.eval_every=250"])
    t1 = time.perf_counter()
    sweep_dir = out / "cet_sweep"
    run_sweep(spec, sweep_dir)
    t_sweep = time.perf_counter() - t1
    sections = demo_sections(runs, quant, fig_cmp, engine, args)
    rep = write_report(sweep_dir, out=out / "report", sections=sections, title="neuroprobe demo",
                       command=f"make demo   # or: python experiments/demo.py --out {out}")
    print_summary(runs, quant, rep, engine, args, t_distal, t_sweep, time.perf_counter() - t0)


def demo_sections(runs, quant, fig_cmp, engine, args) -> list[dict]:
    """The distal-reward parts of the demo's page: text, tables and figures (see write_report)."""
    rows = distal_rows(runs)
    dist = [["precision", "rewarded synapse (per trial)", "others' 99th pct", "others' mean", "rank (1 = strongest)"]]
    for r in rows:
        dist.append([r["precision"], " / ".join(f"{v:.3f}" for v in r["w_rewarded"]),
                     " / ".join(f"{v:.3f}" for v in r["w_p99"]), " / ".join(f"{v:.3f}" for v in r["w_mean"]),
                     " / ".join(f"{v:.4f}" for v in r["rank"])])
    q = [["population", "spikes float", "spikes fixed", "float spikes matched ±1 step", "RMS |Δv| / v_th",
          "first differing step"]]
    for pop, e in quant["populations"].items():
        q.append([pop, str(e["spikes_float"]), str(e["spikes_fixed"]), f"{100 * e['matched_within_1_step']:.1f} %",
                  f"{e['rms_dv_over_vth']:.3f}", str(e["first_difference_step"])])
    f = runs["float"]
    return [
        {"title": "Distal reward with a cascade eligibility trace",
         "text": (f"1000 LIF neurons (800 exc / 200 inh, 10 % connectivity), one rewarded exc→exc synapse, rewards "
                  f"1–3 s after its pre→post coincidences (post within 10 ms); R-STDP with an order-6 cascade trace "
                  f"peaking 2 s after a coincidence; {args.duration:g} s × {args.trials} trials on the {engine} "
                  f"engine (float32). Final weights:"),
         "table": dist,
         "figures": [(f / "raster.png", "Raster of the last 2 s with population rates (trial 0)"),
                     (f / "membrane.png", "Membrane potentials of 4 excitatory neurons (trial 0)"),
                     (f / "weights.png", "The rewarded synapse against the rest of the projection")]},
        {"title": "The same network in fixed point (Loihi integers) next to the float run",
         "text": (f"The fixed-point run executes Loihi's integer LIF, the integer cascade R-STDP and the integer "
                  f"reward protocol (bit-identical to Lava's fixed_pt models, docs/results.md) with the same seeds. "
                  f"Its noise is the chip's, so the two learning runs are statistically, not spike-for-spike, alike. "
                  f"Agreement of the dynamics: the trained float network and its fixed-point twin on the same inputs "
                  f"and noise for {quant['steps']} steps:"),
         "table": q,
         "figures": [(fig_cmp, "Rewarded synapse and the others' 99th percentile, float vs fixed point")]},
    ]


def print_summary(runs, quant, rep, engine, args, t_distal, t_sweep, t_total) -> None:
    print("\n" + "=" * 78)
    print(f"neuroprobe demo · {t_total:.0f} s in all (distal reward {t_distal:.0f} s, sweep {t_sweep:.0f} s)")
    print(f"\nDistal reward, order-6 cascade, {args.duration:g} s x {args.trials} trials, {engine} engine")
    print(f"  {'precision':10s} {'rewarded w':>16s} {'others p99':>16s} {'rank':>16s}")
    for r in distal_rows(runs):
        fmt = lambda v, p=3: " / ".join(f"{x:.{p}f}" for x in v)  # noqa: E731
        print(f"  {r['precision']:10s} {fmt(r['w_rewarded']):>16s} {fmt(r['w_p99']):>16s} {fmt(r['rank']):>16s}")
    print(f"\nFloat vs fixed point, same inputs and noise, first {quant['steps']} steps:")
    for pop, e in quant["populations"].items():
        print(f"  {pop}: {e['spikes_float']} vs {e['spikes_fixed']} spikes, {100 * e['matched_within_1_step']:.1f} % "
              f"matched within ±1 step, RMS |dv| {e['rms_dv_over_vth']:.3f} v_th")
    print("\nCET digits, cascade order x credit delay (final test accuracy over seeds):")
    print(rep["table"])
    print(f"\nreport: {rep['html']}")


if __name__ == "__main__":
    main()
