"""Configuration of spiking experiments (a ``[network]`` table instead of ``[model]``).

Layout::

    name, seed, seeds, device                     top level (seeds = trials run as one batch)
    [network]   file = "models/snn_x.toml"        a spiking network (neuroprobe.spiking.spec layout)
    [task]      name = "distal_reward" | "spiking_cartpole", and the task's keys (seconds)
    [rule]      name = "rstdp" | "nrl", lr, and the rule's keys (seconds)
    [monitor]   spikes, rate, state, window        (neuroprobe.monitors.monitors_from_config)
    [run]       checkpoint_every (s of simulated time or episodes), progress, threads, backend

Every problem is one ConfigError line naming the file, the key and what is allowed.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError
from .config import NUM, Field, _check_section, _choice, _nonneg, _pos

SPIKING_TASKS = ("distal_reward", "spiking_cartpole")

TOP = {
    "name": Field(str, "spiking"),
    "seed": Field(int, 0, _nonneg, ">= 0"),
    "seeds": Field(int, 1, _pos, ">= 1 (independent trials run as one batch)"),
    "device": Field(str, "cpu", *_choice("cpu", "cuda")),
    "network": Field(dict, None),
    "task": Field(dict, None),
    "rule": Field(dict, None),
    "monitor": Field(dict, {}),
    "run": Field(dict, {}),
}
TASKS = {
    "distal_reward": {
        "name": Field(str, None),
        "duration": Field(NUM, 100.0, _pos, "> 0 s of simulated time"),
        "projection": Field(str, "exc->exc"),
        "window": Field(NUM, 10e-3, _pos, "> 0 s (post spike within this time after the pre spike)"),
        "delay_min": Field(NUM, 1.0, _nonneg, ">= 0 s"),
        "delay_max": Field(NUM, 3.0, _nonneg, ">= 0 s"),
        "dopamine_tau": Field(NUM, 0.2, _pos, "> 0 s"),
        "dopamine_amp": Field(NUM, 0.5, _pos, "> 0"),
        "report_every": Field(NUM, 1.0, _pos, "> 0 s (one metrics row per trial)"),
    },
    "spiking_cartpole": {
        "name": Field(str, None),
        "episodes": Field(int, 100, _pos, ">= 1"),
        "steps_per_action": Field(int, 20, _pos, ">= 1 network steps per environment step"),
        "neurons_per_dim": Field(int, 10, _pos, ">= 1 input neurons per observation dimension"),
        "max_rate": Field(NUM, 200.0, _pos, "> 0 Hz"),
    },
}
RULES = {
    "rstdp": {"name": Field(str, None), "lr": Field(NUM, None, _pos, "> 0"),
              "projection": Field(str, "exc->exc"),
              "order": Field(int, 1, _pos, ">= 1 (cascade states)"),
              "delay": Field(NUM, 1.0, _pos, "> 0 s (kernel peak; order 1: time constant)"),
              "normalize": Field(str, "peak", *_choice("peak", "area", "none")),
              "tau_plus": Field(NUM, 20e-3, _pos, "> 0 s"), "tau_minus": Field(NUM, 20e-3, _pos, "> 0 s"),
              "a_plus": Field(NUM, 1.0, _nonneg, ">= 0"), "a_minus": Field(NUM, 1.5, _nonneg, ">= 0")},
    "nrl": {"name": Field(str, None), "lr": Field(NUM, None, _pos, "> 0")},
}
RUN = {
    "checkpoint_every": Field(NUM, 50.0, _pos, "> 0 (s of simulated time, or episodes)"),
    "progress": Field(bool, True),
    "threads": Field(int, 1, _pos, ">= 1"),
    "backend": Field(str, "torch", *_choice("torch", "brian2")),
    "propagation": Field(str, "auto", *_choice("auto", "dense", "event", "csr")),
    "rolling": Field(int, 50, _pos, ">= 1"),
    "record_last": Field(NUM, 10.0, _nonneg, ">= 0 s ([monitor] recordings cover the run's last seconds; 0 = all)"),
}


def validate_spiking(raw: dict, src: str = "<config>", base_dir: Path | None = None) -> dict:
    """Validate a spiking experiment config; returns the resolved dict with ``kind = "spiking"``."""
    from ..spiking.spec import load_spiking_spec

    cfg = _check_section(raw, TOP, "", src)
    for sec in ("network", "task", "rule"):
        if cfg[sec] is None:
            raise ConfigError(f"{src}: missing table [{sec}]")
    task = cfg["task"]
    if task.get("name") not in TASKS:
        raise ConfigError(f"{src}: 'task.name' = {task.get('name')!r}: spiking tasks allowed: {list(TASKS)}")
    cfg["task"] = _check_section(task, TASKS[task["name"]], "task", src)
    rule = cfg["rule"]
    if rule.get("name") not in RULES:
        raise ConfigError(f"{src}: 'rule.name' = {rule.get('name')!r}: spiking rules allowed: {list(RULES)}")
    cfg["rule"] = _check_section(rule, RULES[rule["name"]], "rule", src)
    cfg["run"] = _check_section(cfg["run"], RUN, "run", src)
    t = cfg["task"]
    if t["name"] == "distal_reward":
        if t["delay_min"] > t["delay_max"]:
            raise ConfigError(f"{src}: 'task.delay_min' = {t['delay_min']} exceeds 'task.delay_max' = {t['delay_max']}")
        if cfg["rule"]["name"] != "rstdp":
            raise ConfigError(f"{src}: task 'distal_reward' is learned by rule 'rstdp' (got {cfg['rule']['name']!r})")
    net = cfg["network"]
    if set(net) != {"file"}:
        raise ConfigError(f"{src}: [network] takes one key, file = \"models/snn_….toml\" (got {sorted(net)})")
    p = Path(net["file"])
    if not p.is_absolute() and not p.exists() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    spec = load_spiking_spec(p)
    cfg["network"] = {"file": str(p.resolve())}
    if cfg["rule"]["name"] == "rstdp":
        names = [f"{pr.pre}->{pr.post}" for pr in spec.projections]
        if cfg["rule"]["projection"] not in names:
            raise ConfigError(f"{src}: 'rule.projection' = {cfg['rule']['projection']!r} is not a projection of "
                              f"{p.name}; have {names}")
        if cfg["rule"]["delay"] < spec.dt:
            raise ConfigError(f"{src}: 'rule.delay' = {cfg['rule']['delay']} s is shorter than network dt = {spec.dt} s")
    if t["name"] == "distal_reward" and t["projection"] != cfg["rule"].get("projection", t["projection"]):
        raise ConfigError(f"{src}: 'task.projection' and 'rule.projection' must name the same projection")
    if not math.isfinite(t.get("duration", 1.0)):
        raise ConfigError(f"{src}: 'task.duration' must be finite")
    cfg["kind"] = "spiking"
    return cfg
