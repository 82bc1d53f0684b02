"""Sweeps: one experiment over a grid of settings and seeds, run on Ray (``neuroprobe sweep``), and
what their run directories say (``neuroprobe report``).

    from neuroprobe.sweep import load_sweep_spec, run_sweep
    spec = load_sweep_spec("experiments/cet_digits.toml", grid=["rule.delay=10,20"], seeds=2)
    outcome = run_sweep(spec, "runs/sweep-delay")      # rows of sweep.csv, counts of runs

Ray is imported only when a sweep runs (``pip install "neuroprobe[sweep]"``).
"""
from .execute import SweepOutcome, format_outcome, run_sweep
from .spec import PlannedRun, SweepSpec, load_sweep_spec, plan_runs

__all__ = ["run_sweep", "SweepSpec", "SweepOutcome", "load_sweep_spec", "plan_runs", "PlannedRun", "format_outcome"]
