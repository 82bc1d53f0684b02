"""config → run directory → results: the entry point behind ``neuroprobe run``.

``run_experiment`` validates the experiment, takes the run directory's lock, builds the run's parts
with the rule's ``build`` and runs :class:`~neuroprobe.loop.Loop`; ``--resume`` continues from the
directory's checkpoint with its own config (only budgets may change, recorded in
config_history.toml).
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import torch

from .config import RESUME_SAFE_KEYS, load_experiment
from .config.experiment import apply_overrides, read_config_file, split_override, validate_experiment
from .errors import ConfigError, NeuroprobeError
from .loop import BuildContext, Loop
from .rundir import CONFIG_NAME, RunDir, check_out_name, dump_json, read_metrics

__all__ = ["run_experiment", "default_out"]


def default_out(exp) -> Path:
    return Path("runs") / f"{exp.name}-{exp.seed}"


def _resume_config(run: RunDir, overrides: list[str]):
    """The run's own config with only budget-like overrides applied; records what changed."""
    src = run.config_path
    if not src.is_file():
        raise ConfigError(f"--resume {str(run.path)!r}: no {CONFIG_NAME} there (not a run directory)")
    raw = read_config_file(src)
    changes = []
    for item in overrides:
        key, value = split_override(item, raw)
        if key not in RESUME_SAFE_KEYS:
            raise ConfigError(f"--resume with --set {key}: only {list(RESUME_SAFE_KEYS)} may change when a run "
                              f"continues (anything else would mix two experiments in one run); start a new run")
        sec, sub = key.split(".")
        changes.append({"key": key, "from": raw.get(sec, {}).get(sub, "default"), "to": value})
    new = apply_overrides(raw, overrides)
    exp = validate_experiment(new, src=str(src), base_dir=run.path)
    return exp, changes


def run_experiment(config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                   seed: int | None = None, out: str | Path | None = None, resume: str | Path | None = None,
                   figures: bool = True, resume_if_exists: bool = False, progress: bool | None = None) -> Path:
    """Run (or resume) an experiment; returns the run directory.

    ``resume`` continues the run in that directory from its last checkpoint, with its saved config;
    ``resume_if_exists`` (sweeps, scripts) resumes ``out`` when it already holds a run, with that run's
    saved config (``config``, ``seed`` and ``overrides`` are then not used). ``progress`` shows or
    hides the run's progress bar without changing its saved config (None: the config's
    ``run.progress``); a sweep hides them behind its own bar.
    """
    overrides = list(overrides or [])
    if resume is None and resume_if_exists and out is not None and (Path(out) / CONFIG_NAME).exists():
        # continue the run that is there, with its own saved config (seed and overrides included)
        resume, config, seed, overrides = out, None, None, []
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume RUN_DIR continues a run with the config saved in it; drop CONFIG (or run it "
                              "into a new --out)")
        if seed is not None:
            raise ConfigError("--seed cannot change when a run is resumed (the run keeps its seed); drop --seed")
        run = RunDir(check_out_name(str(resume), "--resume"))
        if not run.path.is_dir():
            raise ConfigError(f"--resume {str(resume)!r}: no such run directory")
        run.lock()
        try:
            exp, changes = _resume_config(run, overrides)
        except BaseException:
            run.unlock()
            raise
    else:
        if config is None:
            raise ConfigError("run: give CONFIG.toml, or --resume RUN_DIR")
        exp = load_experiment(config, overrides, seed)
        run = RunDir(check_out_name(str(out)) if out is not None else default_out(exp))
        run.lock()
        changes = []
        if run.config_path.exists() or run.metrics_path.exists():
            run.unlock()
            raise ConfigError(f"run directory {str(run.path)!r} already holds a run; use --resume {run.path} to "
                              f"continue it or --out to pick another directory")
    try:
        return _run(exp, run, resume is not None, changes, figures, progress)
    finally:
        run.unlock()


def _run(exp, run: RunDir, resume: bool, changes: list[dict], figures: bool, progress: bool | None = None) -> Path:
    state = run.load_checkpoint() if resume else None
    if changes:
        try:
            done = int(state["loop"]["schedule_count"]) if state is not None else 0
        except (KeyError, TypeError, ValueError, OverflowError, IndexError, AttributeError, RuntimeError):
            raise NeuroprobeError(f"checkpoint {str(run.checkpoint_path)!r} refused: its state does not fit this run "
                                  f"(no loop.schedule_count)") from None
        if exp.schedule.total < done and exp.schedule.unit != "steps":
            raise ConfigError(f"--set {changes[0]['key']}={changes[0]['to']}: below the {done} {exp.schedule.unit} "
                              f"this run has already done")
        when = _dt.datetime.now().isoformat(timespec="seconds")
        for c in changes:
            run.append_history({**c, "when": when})
    run.write_config(exp.to_toml_dict())
    threads = torch.get_num_threads()
    torch.set_num_threads(exp.run.threads)  # tiny tensors: extra threads only add synchronisation
    try:
        gen = torch.Generator().manual_seed(exp.seed)
        parts = exp.rule.build(exp, BuildContext(gen, torch.device(exp.device)))
        loop = Loop(parts, run, exp.seed, gen, exp.schedule.checkpoint_every,
                    exp.run.progress if progress is None else progress)
        try:
            loop.run_loop(state)
        finally:
            close = getattr(parts.task, "close", None)
            if close is not None:
                close()
    finally:
        torch.set_num_threads(threads)
    m = read_metrics(run.metrics_path)
    from .reporters import default_summary

    summary = parts.summary(m) if parts.summary is not None else default_summary(m, exp.run.rolling)
    dump_json(run.path / "summary.json", summary)
    if figures:
        from .plotting import plot_run

        plot_run(run.path)
    return run.path
