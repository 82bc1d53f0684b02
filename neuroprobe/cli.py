"""Command line: ``neuroprobe run | sweep | report | schema | align | plot | deploy | compare | info``.

Bad input (config, file, value, argument) prints one line, ``error: …``, and exits with code 2; a run
that stops (non-finite weights, a refused checkpoint) exits with code 1. No tracebacks for either.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from .errors import ConfigError, NeuroprobeError


def _cmd_run(args) -> None:
    from .runner import run_experiment

    overrides = (list(args.set) + ([f"run.backend={args.backend}"] if args.backend else [])
                 + ([f"run.precision={args.precision}"] if args.precision else []))
    path = run_experiment(args.config, overrides=overrides, seed=args.seed, out=args.out, resume=args.resume)
    summary = json.loads((path / "summary.json").read_text())
    files = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and not p.name.endswith(".tmp"))
    print(f"wrote {path}/{{{', '.join(files)}}}")
    if "mean" in summary and "std" in summary:
        print(f"{summary['metric']}: {summary['mean']:.3g} ± {summary['std']:.2g} over {len(summary['per_seed'])} seeds")
    elif "final" in summary:
        print(f"{summary['metric']}: {summary['final']:.3f}")


def _cmd_schema(args) -> None:
    from .config import experiment_json_schema

    print(json.dumps(experiment_json_schema(), indent=2))


def _cmd_align(args) -> None:
    from .align import align_config
    from .config import load_experiment

    exp = load_experiment(args.config, args.set, args.seed)
    result = align_config(exp, samples=args.samples, n_states=args.states)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'layer':8s} cosine(expected {exp.rule.name.upper()} update, autograd gradient)  N = {args.samples}")
    for k, v in result.items():
        print(f"{k:8s} {v:.3f}")


def _cmd_plot(args) -> None:
    from .plotting import plot_run

    for p in plot_run(args.run_dir, formats=tuple(args.format)):
        print(f"wrote {p}")


def _cmd_deploy(args) -> None:
    from .deploy import deploy

    deploy(args.source, backend=args.backend, precision=args.precision, steps=args.steps, out=args.out,
           overrides=args.set, timeout=args.timeout, record_steps=args.record_steps, progress=not args.no_progress)


def _cmd_compare(args) -> None:
    from .compare import compare_runs, format_report

    rep = compare_runs(args.run_a, args.run_b)
    print(json.dumps(rep) if args.json else format_report(rep))


def _cmd_sweep(args) -> None:
    from .sweep import format_outcome, load_sweep_spec, run_sweep
    from .sweep.execute import default_sweep_dir

    spec = load_sweep_spec(args.config, grid=args.grid, points=args.point, seeds=args.seeds, seed_list=args.seed_list,
                           set=args.set, batch_seeds=args.batch_seeds)
    out = args.out if args.out is not None else default_sweep_dir(spec)
    outcome = run_sweep(spec, out, address=args.address, resources=args.resources, progress=not args.no_progress,
                        retry_failed=args.retry_failed, num_cpus=args.num_cpus)
    print(format_outcome(outcome))
    print(f"tables and figures: neuroprobe report {out}")
    if outcome.failed:
        raise NeuroprobeError(f"{outcome.failed} of {outcome.done + outcome.failed + outcome.skipped} runs failed "
                              f"(errors above and in sweep.csv); rerun with --retry-failed to try them again")


def _cmd_report(args) -> None:
    from pathlib import Path

    from .sweep.report import write_report

    res = write_report(Path(args.sweep_dir), Path(args.out) if args.out is not None else None, best=args.best,
                       minimize=args.minimize)
    print(res["table"])
    paths = [res[k] for k in ("table_md", "table_csv", "html") if res.get(k)] + list(res.get("figures") or [])
    for p in paths:
        print(f"wrote {p}")


def _cmd_info(args) -> None:
    import importlib.metadata as md
    import platform

    print(f"neuroprobe {_version()} · Python {platform.python_version()}")
    for pkg in ("torch", "numpy", "scipy", "gymnasium", "neurogym", "scikit-learn", "matplotlib", "norse", "brian2", "nir",
                "pydantic"):
        try:
            print(f"  {pkg:13s} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"  {pkg:13s} not installed")
    import torch

    print(f"  torch device  {'cuda (' + torch.cuda.get_device_name(0) + ')' if torch.cuda.is_available() else 'cpu only'}")
    from .engines import available

    print("engines (neuroprobe run --backend/--precision):")
    for name, status, detail in available():
        print(f"  {name:13s} {status}: {detail}")


def _version() -> str:
    from . import __version__

    return __version__


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: …``, exit 2), like every other neuroprobe error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _int_arg(lo: int, hi: int = 2**62):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} must be in [{lo}, {hi}]")
        return v
    return parse


def _pos_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return v


_SWEEP_HELP = """\
Run an experiment over a grid of settings and seeds, one Ray task per run, into
DIR/<point>/s<seed> (DIR/sweep.csv: one row per point x seed). Rerunning the same command
continues an interrupted sweep: finished runs are kept, unfinished ones resume from their
checkpoint, failed ones stay failed unless --retry-failed.

Seed batching (--batch-seeds): "auto" runs a point's seeds as ONE run (one process, the seeds on
the loop's batch axis, as `neuroprobe run CONFIG --seed s0 --set seeds=N`) when the seeds are
consecutive and the run batches seeds: rate RL rules (nrl, rmhl, wp, fg, bp) and spiking rules on
run.backend torch or event; probe, cet, brian2 and lava runs take one seed per run. "on" batches or
refuses; "off" never batches. A batched seed k is not bit for bit the run `--seed k` alone (one
generator per run), so compare sweeps made with the same mode."""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="neuroprobe", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"neuroprobe {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run an experiment config (or resume a run)")
    r.add_argument("config", nargs="?", help="experiment TOML (see experiments/)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. rule.lr=0.01")
    r.add_argument("--seed", type=_int_arg(0, 2**31 - 1), default=None)
    r.add_argument("--out", default=None, help="run directory (default runs/<name>-<seed>)")
    r.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (--set may change only its budget)")
    r.add_argument("--backend", default=None, choices=["torch", "event", "brian2", "lava"],
                   help="engine of a spiking experiment (default: the config's run.backend, torch)")
    r.add_argument("--precision", default=None, choices=["float", "fixed"],
                   help="float, or Loihi's fixed point (default: the config's run.precision, float)")
    r.set_defaults(func=_cmd_run)
    sw = sub.add_parser("sweep", help="run an experiment over a grid of settings and seeds, on Ray",
                        description=_SWEEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("config", help="experiment TOML, or a sweep config (a TOML with a [sweep] table)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a grid axis (repeat for more; the points are their product, the last key fastest)")
    sw.add_argument("--point", action="append", default=[], metavar="KEY=V,KEY=V",
                    help="an extra point off the grid (its own settings, not crossed with the grid)")
    seeds = sw.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_int_arg(1, 4096), default=None, metavar="N",
                       help="N seeds per point: the config's seed s0 .. s0+N-1 (default 1)")
    seeds.add_argument("--seed-list", default=None, metavar="S0,S1,...", help="these seeds per point")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of every run")
    sw.add_argument("--out", default=None, help="sweep directory (default runs/sweep-<name>)")
    sw.add_argument("--address", default=None, metavar="HOST:PORT",
                    help="a Ray cluster's head (default: a local Ray instance on this machine)")
    sw.add_argument("--resources", default=None, metavar="cpu=N,gpu=F",
                    help="what each run takes (default: cpu = the config's run.threads, gpu = 1 on cuda else 0; "
                         "fractions share a GPU)")
    sw.add_argument("--num-cpus", type=_int_arg(1, 4096), default=None,
                    help="CPUs of the local Ray instance (default: those this process may use); not with --address")
    sw.add_argument("--batch-seeds", default=None, choices=["auto", "on", "off"],
                    help="run a point's seeds as one batched run (see above; default auto)")
    sw.add_argument("--retry-failed", action="store_true", help="run failed runs again (afresh)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    sw.set_defaults(func=_cmd_sweep)
    rp = sub.add_parser("report", help="tables and figures of a sweep directory")
    rp.add_argument("sweep_dir", metavar="SWEEP_DIR")
    rp.add_argument("--out", default=None, help="report directory (default SWEEP_DIR/report)")
    rp.add_argument("--best", default=None, metavar="KEY",
                    help="choose this grid key per setting of the others (largest mean final), e.g. rule.lr")
    rp.add_argument("--minimize", action="store_true", help="with --best: the smallest mean final wins")
    rp.set_defaults(func=_cmd_report)
    s = sub.add_parser("schema", help="print the JSON Schema of experiment configs")
    s.set_defaults(func=_cmd_schema)
    a = sub.add_parser("align", help="cosine between a rule's expected update and the autograd gradient")
    a.add_argument("config")
    a.add_argument("--samples", type=_int_arg(1, 10**7), default=2000)
    a.add_argument("--states", type=_int_arg(1, 10**6), default=64, help="number of fixed input states")
    a.add_argument("--seed", type=_int_arg(0, 2**31 - 1), default=None)
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a.add_argument("--json", action="store_true", help="print one JSON object {layer: cosine}")
    a.set_defaults(func=_cmd_align)
    pl = sub.add_parser("plot", help="write the figures of a run directory")
    pl.add_argument("run_dir")
    pl.add_argument("--format", action="append", default=None, choices=["png", "pdf"])
    pl.set_defaults(func=_cmd_plot)
    d = sub.add_parser("deploy", help="run a spiking config (or a run's trained network) under Lava, next to torch")
    d.add_argument("source", metavar="CONFIG_OR_RUN_DIR")
    d.add_argument("--backend", default="lava", choices=["lava"])
    d.add_argument("--precision", default="fixed", choices=["fixed", "float"])
    d.add_argument("--steps", type=_int_arg(1, 10**9), default=None, help="time steps (default: the task's duration)")
    d.add_argument("--out", default=None, help="output directory (default runs/<name>-lava-<precision>)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--timeout", type=_pos_float, default=3600.0, help="seconds before the Lava run is killed")
    d.add_argument("--record-steps", type=_int_arg(1, 10**9), default=2000,
                   help="spikes of the last N steps are recorded")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=_cmd_deploy)
    cm = sub.add_parser("compare", help="spike, voltage, weight and metric agreement of two run directories")
    cm.add_argument("run_a", metavar="RUN_A")
    cm.add_argument("run_b", metavar="RUN_B")
    cm.add_argument("--json", action="store_true", help="print one JSON object")
    cm.set_defaults(func=_cmd_compare)
    i = sub.add_parser("info", help="versions and backends found")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "format", None) is None and args.command == "plot":
        args.format = ["png"]
    try:
        args.func(args)
    except ConfigError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except NeuroprobeError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = {"run": " (continue it with: neuroprobe run --resume RUN_DIR)",
                "sweep": " (continue it: run the same neuroprobe sweep command again)"}.get(args.command, "")
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory (the experiment is too large for this machine)", file=sys.stderr)
        return 1
    return 0


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
