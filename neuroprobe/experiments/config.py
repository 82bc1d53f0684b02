"""Experiment configuration: TOML in, a validated nested dict out.

Every problem is reported as one line naming the file, the key and what is allowed, raised as
:class:`~neuroprobe.errors.ConfigError` (the CLI prints it and exits with code 2).

Layout (see ``experiments/*.toml``)::

    name, seed, seeds, device                    top level
    [model]     file = "models/x.toml"  or  sizes = [...], activation, readout, bias, init
    [task]      name, episodes | steps, ...      (RL or supervised, by task name; label_delay: probe on digits)
    [rule]      name, lr, and the rule's own keys
    [modulator] smoothing, scale, init           (reward-prediction error, RL rules)
    [run]       checkpoint_every, rolling, progress
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    allowed: str = ""


def _pos(x) -> bool:
    return x > 0


def _nonneg(x) -> bool:
    return x >= 0


def _unit(x) -> bool:
    return 0 < x <= 1


def _choice(*opts):
    return (lambda x: x in opts), f"one of {list(opts)}"


NUM = (int, float)
RL_TASKS = ("CartPole-v1", "Acrobot-v1", "Reaching1D-v0", "CueDelay-v0")
SUPERVISED_TASKS = ("digits",)

TOP = {
    "name": Field(str, "experiment"),
    "seed": Field(int, 0, _nonneg, ">= 0"),
    "seeds": Field(int, 1, _pos, ">= 1 (independent models run as one batch)"),
    "device": Field(str, "cpu", *_choice("cpu", "cuda")),
    "model": Field(dict, None),
    "task": Field(dict, None),
    "rule": Field(dict, None),
    "modulator": Field(dict, {}),
    "run": Field(dict, {}),
}

TASK = {
    "name": Field(str, None, *_choice(*RL_TASKS, *SUPERVISED_TASKS)),
    # RL
    "episodes": Field(int, 100, _pos, ">= 1"),
    "reward": Field(str, "episode_end", *_choice("episode_end", "every_step")),
    "reward_delay": Field(int, 0, _nonneg, ">= 0 steps (rewards delivered this many steps late; "
                          "what is pending at episode end arrives on the last step; for CueDelay-v0 it "
                          "sets the task's own delay after the decisive action, 0 = its default of 10)"),
    # supervised
    "steps": Field(int, 2000, _pos, ">= 1"),
    "batch": Field(int, 32, _pos, ">= 1"),
    "eval_every": Field(int, 100, _pos, ">= 1"),
    "dataset": Field(str, "digits"),
    "label_delay": Field(int, 0, _nonneg, ">= 0 steps (labels arrive this many steps late; supervised task "
                         "with rule 'probe' only: CET's credit delay is rule.delay)"),
}

MODULATOR = {
    "smoothing": Field(NUM, 0.66, _unit, "in (0, 1]"),
    "scale": Field(str, "none", *_choice("none", "abs_reward", "std")),
    "init": Field((str, int, float), "first", lambda x: x == "first" or isinstance(x, (int, float)), "'first' or a number"),
}

RUN = {
    "checkpoint_every": Field(int, 100, _pos, ">= 1 (episodes for RL, steps for supervised)"),
    "rolling": Field(int, 50, _pos, ">= 1"),
    "progress": Field(bool, True),
    "threads": Field(int, 1, _pos, ">= 1 (torch CPU threads; small networks run fastest on one)"),
}

# RL rules always use plain SGD: with per-seed masked updates, a stateful optimizer would still
# move the weights of seeds whose gradient is zero this step.
_COMMON_RULE = {"name": Field(str, None), "lr": Field(NUM, None, _pos, "> 0")}
RULES = {
    "nrl": {**_COMMON_RULE, "noise_std": Field(NUM, 1e-3, _pos, "> 0"), "passes": Field(int, 1, _pos, ">= 1"),
            "clean_pass": Field(bool, True), "noise_norm": Field(str, "global", *_choice("global", "layer"))},
    "rmhl": {**_COMMON_RULE, "noise_std": Field(NUM, 1e-1, _pos, "> 0")},
    "wp": {**_COMMON_RULE, "noise_std": Field(NUM, 1e-3, _pos, "> 0"), "passes": Field(int, 1, _pos, ">= 1")},
    "bp": {**_COMMON_RULE},
    # forward gradient (neuroprobe.rules.forward_gradient): K random tangents per step, jvp of log π
    "fg": {**_COMMON_RULE, "passes": Field(int, 1, _pos, ">= 1 (K random tangent directions per step)")},
    "cet": {**_COMMON_RULE, "optimizer": Field(str, "sgd", *_choice("sgd", "adam")), "delay": Field(int, 0, _nonneg, ">= 0 steps"),
            "delay_mode": Field(str, "constant", *_choice("constant", "retrograde")),
            "trace": Field(str, "cascade", *_choice("cascade", "exponential", "perfect", "ltp_ltd", "none")),
            "order": Field(int, 1, _pos, ">= 1"),
            "normalize": Field(str, "peak", *_choice("area", "peak", "none")),
            "beta": Field(NUM, 0.0, lambda x: 0 <= x < 1, "in [0, 1) (0 = exp(-1/delay))"),
            "trace_on": Field(str, "presynaptic", *_choice("presynaptic", "synapse"))},
    # probe bundles (neuroprobe.rules.probe): B branches per window (episode), K probes of rank r per layer
    "probe": {**_COMMON_RULE,
              "branches": Field(int, 32, _pos, ">= 1 (B counterfactual branches per window)"),
              "num_probes": Field(int, 8, _pos, ">= 1 (K per layer; even when antithetic)"),
              "rank": Field(int, 1, _pos, ">= 1"),
              "scale": Field(NUM, 0.05, _pos, "> 0 (σ, entry std of each probe)"),
              "scheduler": Field(str, "random", *_choice("random", "round_robin", "blockwise", "uncertainty",
                                                         "diversity")),
              "null_fraction": Field(NUM, 0.125, lambda x: 0 <= x < 1, "in [0, 1)"),
              "history": Field(int, 1, _pos, ">= 1 (P windows)"),
              "decay": Field(NUM, 1.0, lambda x: 0 <= x <= 1, "in [0, 1] (λ)"),
              "kernel": Field(str, "none", *_choice("none", "cascade")),
              "kernel_order": Field(int, 6, _pos, ">= 1"),
              "kernel_delay": Field(NUM, 2.0, _pos, "> 0 windows"),
              "baseline": Field(str, "null", *_choice("null", "mean")),
              "antithetic": Field(bool, True),
              "regime": Field(str, "pure", *_choice("pure", "semi_persistent", "learned_subspace")),
              "noise_std": Field(NUM, 0.0, _nonneg, ">= 0 (node noise shared by all branches; 0 = off)")},
}
RL_RULES = ("nrl", "rmhl", "wp", "bp", "fg", "probe")
SUPERVISED_RULES = ("cet", "probe")


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "integer", float: "number", str: "string", bool: "true/false", dict: "table"}.get(t, t.__name__)


def _type_ok(value: Any, t) -> bool:
    ts = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool):  # bool is an int in Python; only accept it where bool is asked for
        return bool in ts
    if isinstance(value, float):
        return float in ts and math.isfinite(value)
    return isinstance(value, ts)


def _check_section(data: dict, schema: dict[str, Field], where: str, src: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: [{where}] must be a table")
    out = {}
    for key, value in data.items():
        if key not in schema:
            raise ConfigError(f"{src}: unknown key '{_join(where, key)}'; allowed: {sorted(schema)}")
        f = schema[key]
        ok_type = _type_ok(value, f.type)
        if not ok_type:
            raise ConfigError(f"{src}: '{_join(where, key)}' = {value!r} has the wrong type; expected {_type_name(f.type)}")
        if f.check is not None and not f.check(value):
            raise ConfigError(f"{src}: '{_join(where, key)}' = {value!r} is out of range; allowed: {f.allowed}")
        out[key] = value
    for key, f in schema.items():
        if key not in out:
            if f.default is None and f.type is not dict:
                raise ConfigError(f"{src}: missing key '{_join(where, key)}' ({_type_name(f.type)}{', ' + f.allowed if f.allowed else ''})")
            out[key] = copy.deepcopy(f.default)
    return out


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def validate(raw: dict, src: str = "<config>", base_dir: Path | None = None) -> dict:
    """Validate a raw config dict and fill defaults; returns the resolved config."""
    if isinstance(raw, dict) and "network" in raw:  # a spiking experiment ([network] instead of [model])
        from .spiking_config import validate_spiking

        return validate_spiking(raw, src, base_dir)
    cfg = _check_section(raw, TOP, "", src)
    for sec in ("model", "task", "rule"):
        if cfg[sec] is None:
            raise ConfigError(f"{src}: missing table [{sec}]")
    cfg["task"] = _check_section(cfg["task"], TASK, "task", src)
    rule = cfg["rule"]
    if "name" not in rule:
        raise ConfigError(f"{src}: missing key 'rule.name'; allowed: {sorted(RULES)}")
    if rule["name"] not in RULES:
        raise ConfigError(f"{src}: 'rule.name' = {rule['name']!r} is not a known rule; allowed: {sorted(RULES)}")
    cfg["rule"] = _check_section(rule, RULES[rule["name"]], "rule", src)
    kind = "rl" if cfg["task"]["name"] in RL_TASKS else "supervised"
    allowed_rules = RL_RULES if kind == "rl" else SUPERVISED_RULES
    if cfg["rule"]["name"] not in allowed_rules:
        raise ConfigError(f"{src}: 'rule.name' = {cfg['rule']['name']!r} does not apply to task "
                          f"{cfg['task']['name']!r}; allowed: {list(allowed_rules)}")
    if cfg["task"]["label_delay"] and (kind == "rl" or cfg["rule"]["name"] != "probe"):
        other = "RL tasks delay rewards with task.reward_delay" if kind == "rl" else "CET's credit delay is rule.delay"
        raise ConfigError(f"{src}: 'task.label_delay' = {cfg['task']['label_delay']} applies only to rule 'probe' on "
                          f"a supervised task; {other}")
    if cfg["rule"]["name"] == "probe":
        _check_probe(cfg, src)
    cfg["modulator"] = _check_section(cfg["modulator"], MODULATOR, "modulator", src)
    cfg["run"] = _check_section(cfg["run"], RUN, "run", src)
    cfg["model"] = _resolve_model(cfg["model"], src, base_dir)
    _check_model_fits_task(cfg["model"]["sizes"], cfg["task"], kind, src)
    cfg["kind"] = kind
    return cfg


def _check_probe(cfg: dict, src: str) -> None:
    """Cross-key checks of rule 'probe' (one line each, naming the keys)."""
    r = cfg["rule"]
    if cfg["seeds"] != 1:
        raise ConfigError(f"{src}: 'seeds' = {cfg['seeds']}: rule 'probe' runs one seed per process; use --seed S")
    if r["antithetic"] and r["num_probes"] % 2:
        raise ConfigError(f"{src}: 'rule.num_probes' = {r['num_probes']} must be even with rule.antithetic = true "
                          f"(± pairs)")
    if r["baseline"] == "null" and r["null_fraction"] == 0:
        raise ConfigError(f"{src}: 'rule.baseline' = 'null' needs 'rule.null_fraction' > 0 (all-null branches); "
                          f"raise it or use baseline = 'mean'")
    if r["null_fraction"] > 0 and math.ceil(r["null_fraction"] * r["branches"] - 1e-12) >= r["branches"]:
        raise ConfigError(f"{src}: 'rule.null_fraction' = {r['null_fraction']} leaves no perturbed branch out of "
                          f"rule.branches = {r['branches']}; lower it or add branches")
    if r["kernel"] == "cascade" and r["kernel_order"] >= 2 and r["kernel_delay"] > r["history"] - 1:
        raise ConfigError(f"{src}: 'rule.kernel_delay' = {r['kernel_delay']} must be <= rule.history - 1 = "
                          f"{r['history'] - 1} (the kernel's peak must fall inside the history)")


DIGITS_SHAPE = (64, 10)  # scikit-learn digits: 8x8 features, 10 classes


def _check_model_fits_task(sizes: list[int], task: dict, kind: str, src: str) -> None:
    """Model input/output sizes must match the task (a local dataset file is checked when loaded)."""
    if kind == "rl":
        from ..tasks import task_info

        info = task_info(task["name"])
        need = (info["obs_dim"], info["n_actions"])
        what = "observations, actions"
    elif task["dataset"] == "digits":
        need, what = DIGITS_SHAPE, "features, classes"
    else:
        return
    if (sizes[0], sizes[-1]) != need:
        raise ConfigError(f"{src}: model.sizes {sizes} does not fit task {task['name']!r} ({what} = {need}); "
                          f"the first size must be {need[0]} and the last {need[1]}")


def _resolve_model(model: dict, src: str, base_dir: Path | None) -> dict:
    from ..network import spec_from_dict, spec_from_toml

    if not isinstance(model, dict):
        raise ConfigError(f"{src}: [model] must be a table")
    if "file" in model:
        extra = set(model) - {"file"}
        if extra:
            raise ConfigError(f"{src}: [model] has 'file' and also {sorted(extra)}; give either a file or inline keys")
        p = Path(model["file"])
        if not p.is_absolute() and not p.exists() and base_dir is not None and (base_dir / p).exists():
            p = base_dir / p
        if not p.is_file():
            raise ConfigError(f"{src}: 'model.file' = {model['file']!r}: file not found")
        spec = spec_from_toml(p)
    else:
        spec = spec_from_dict(model, where=f"{src}: model")
    return spec.to_dict()


def parse_value(text: str) -> Any:
    """A --set value: parsed as a TOML value (numbers, booleans, strings, lists), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


SECTIONS = ("model", "network", "task", "rule", "modulator", "monitor", "run")


def apply_overrides(raw: dict, overrides: list[str], src: str) -> dict:
    """Apply ``key=value`` overrides; a key may be dotted (``rule.lr``) or bare when unambiguous."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set rule.lr=0.01")
        key, text = item.split("=", 1)
        key = key.strip()
        value = parse_value(text.strip())
        if "." in key:
            sec, sub = key.split(".", 1)
            if sec not in SECTIONS:
                raise ConfigError(f"--set {key}: unknown section {sec!r}; allowed: {list(SECTIONS)}")
            if sec == "model" and sub == "file":  # a model file replaces the whole table (also a resolved one)
                raw["model"] = {"file": value}
            else:
                raw.setdefault(sec, {})[sub] = value
        elif key in TOP:
            raw[key] = value
        else:
            owners = [s for s, schema in (("task", TASK), ("modulator", MODULATOR), ("run", RUN)) if key in schema]
            rule_name = raw.get("rule", {}).get("name")
            if rule_name in RULES and key in RULES[rule_name]:
                owners.append("rule")
            if len(owners) != 1:
                raise ConfigError(f"--set {key}: {'ambiguous' if owners else 'unknown'} key; use section.key, "
                                  f"sections: {list(SECTIONS)}")
            raw.setdefault(owners[0], {})[key] = value
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None, seed: int | None = None) -> dict:
    """Read, override and validate a TOML experiment config."""
    from ..tomlio import read_toml

    path = Path(path)
    raw = read_toml(path, "config file")
    raw = apply_overrides(raw, overrides or [], str(path))
    if seed is not None:
        raw["seed"] = seed
    return validate(raw, src=str(path), base_dir=path.parent)
