"""config → run → results: the entry point behind ``neuroprobe run``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import load_config
from .rundir import CONFIG_NAME, RunDir, read_metrics


def default_out(cfg: dict) -> Path:
    return Path("runs") / f"{cfg['name']}-{cfg['seed']}"


def run_experiment(config_path: str | Path | None = None, overrides: list[str] | None = None,
                   seed: int | None = None, out: str | Path | None = None, resume: str | Path | None = None,
                   figures: bool = True, resume_if_exists: bool = False) -> Path:
    """Run (or resume) an experiment; returns the run directory.

    ``resume`` continues the run in that directory from its last checkpoint, with its saved config.
    ``resume_if_exists`` (for sweeps) resumes ``out`` when it already holds a run.
    """
    if resume is None and resume_if_exists and out is not None and (Path(out) / "metrics.csv").exists():
        resume = out
    if resume is not None:
        run = RunDir(resume)
        cfg = load_config(run.path / CONFIG_NAME, overrides)
        run.create(cfg, fresh=False)
    else:
        cfg = load_config(config_path, overrides, seed)
        run = RunDir(out if out is not None else default_out(cfg))
        run.create(cfg, fresh=True)
    if cfg["kind"] == "spiking":
        from .spiking_runs import run_spiking
        run_spiking(cfg, run, resume=resume is not None)
    elif cfg["kind"] == "rl" and cfg["rule"]["name"] == "probe":
        from .probe_rl import run_probe_rl
        run_probe_rl(cfg, run, resume=resume is not None)
    elif cfg["kind"] == "rl":
        from .rl import run_rl
        run_rl(cfg, run, resume=resume is not None)
    elif cfg["rule"]["name"] == "probe":
        from .probe_supervised import run_probe_supervised
        run_probe_supervised(cfg, run, resume=resume is not None)
    else:
        from .supervised import run_supervised
        run_supervised(cfg, run, resume=resume is not None)
    summary = summarize(run.path, cfg)
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2))
    if figures:
        from ..plotting import plot_run
        plot_run(run.path)
    return run.path


def summarize(path: Path, cfg: dict, last: int = 50) -> dict:
    """Final performance: RL, mean return of each seed's last ``last`` episodes (and their mean ± sd
    over seeds); supervised, the last test accuracy."""
    m = read_metrics(Path(path) / "metrics.csv")
    if cfg["kind"] == "spiking":
        from .spiking_runs import summarize_spiking
        return summarize_spiking(m, cfg, last)
    if cfg["kind"] == "rl":
        seeds = sorted(set(m["seed"]))
        ret, seed = np.asarray(m["return"]), np.asarray(m["seed"])
        per_seed = [float(ret[seed == s][-last:].mean()) for s in seeds]
        return {"metric": f"mean return of the last {last} episodes", "per_seed": per_seed,
                "mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)), "episodes": int(len(ret) / len(seeds))}
    acc = m["accuracy"]
    out = {"metric": "test accuracy", "final": float(acc[-1]), "steps": int(m["step"][-1])}
    for k in m:
        if k.startswith("align_"):
            v = np.asarray(m[k][-5:], dtype=float)
            out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    return out
