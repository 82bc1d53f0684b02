"""Experiments: config validation, run directories, the RL and supervised loops."""
from .config import load_config, validate
from .runner import run_experiment, summarize

__all__ = ["load_config", "validate", "run_experiment", "summarize"]
