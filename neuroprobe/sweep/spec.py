"""What a sweep runs: the experiment, its grid of settings, extra points, seeds, and how seeds batch.

A :class:`SweepSpec` comes from :func:`load_sweep_spec`: an experiment TOML, or a *sweep config*
(a TOML holding one ``[sweep]`` table, below), plus command-line additions. :func:`plan_runs` turns
it into the runs to make, after validating every point x seed with
:func:`~neuroprobe.config.load_experiment` (so a typo stops the sweep before anything runs).

Sweep config::

    [sweep]
    config = "../cet_digits.toml"      # the experiment, relative to this file
    name = "cet_delay"                 # default: the experiment's name
    seeds = 2                          # or seed_list = [0, 1]; default 1 (the experiment's seed)
    set = ["task.steps=2000"]          # overrides of every run
    batch_seeds = "auto"               # auto | on | off
    [sweep.grid]                       # cartesian product, last key fastest
    "rule.delay" = [10, 20]
    "rule.order" = [2, 6]
    [[sweep.points]]                   # extra settings, each a full point (not crossed with the grid)
    "rule.trace" = "none"

Values keep their TOML text form as overrides (0.01 -> "0.01", true -> "true", strings as-is).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_experiment
from ..config.experiment import parse_value, read_config_file, split_override
from ..errors import ConfigError

__all__ = ["SweepSpec", "PlannedRun", "load_sweep_spec", "plan_runs", "split_values", "BATCH_MODES",
           "RATE_BATCH_RULES"]

BATCH_MODES = ("auto", "on", "off")
SWEEP_KEYS = ("config", "name", "seeds", "seed_list", "set", "batch_seeds", "grid", "points")
# rules whose runs put seeds on the loop's batch axis (one process, one generator): rate RL rules;
# spiking rules batch trials on the torch and event engines. probe refuses seeds != 1 and CET ignores
# seeds, so their seeds always run one per process.
RATE_BATCH_RULES = ("nrl", "rmhl", "wp", "fg", "bp")
SPIKING_BATCH_BACKENDS = ("torch", "event")
_RESERVED = {"seed": "the sweep's seeds are --seeds N or --seed-list S0,S1,...",
             "seeds": "the sweep's seeds are --seeds N or --seed-list S0,S1,... (batching: --batch-seeds)"}
_MAX_SEEDS = 4096


@dataclass
class SweepSpec:
    """A resolved sweep: everything that determines its results (not where or how it runs).

    config: absolute path of the experiment TOML. grid: ordered {key: [value text, ...]} (cartesian
    product, last key fastest). points: extra settings, each its own point ({key: value text}).
    seeds: the seeds of every point. set: "KEY=VALUE" overrides of every run. batch_seeds: auto | on
    | off. name: the sweep's name (progress bar, default directory runs/sweep-<name>).
    """

    config: Path
    grid: dict[str, list[str]] = field(default_factory=dict)
    points: list[dict[str, str]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    set: list[str] = field(default_factory=list)
    batch_seeds: str = "auto"
    name: str = "sweep"
    # where each key came from, for error messages ("--grid", "[sweep.grid]", ...): not part of the sweep
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def point_settings(self) -> list[dict[str, str]]:
        """Every point's own overrides: the grid's product (last key fastest), then the extra points."""
        keys = list(self.grid)
        grid = [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))] if keys else []
        out = grid + [dict(p) for p in self.points]
        return out or [{}]

    def config_sha256(self) -> str:
        return hashlib.sha256(Path(self.config).read_bytes()).hexdigest()

    def record(self) -> dict:
        """The table written to DIR/sweep.toml (see :mod:`neuroprobe.sweep.sweepdir`)."""
        return {"name": self.name, "config": str(self.config), "config_sha256": self.config_sha256(),
                "grid": {k: list(v) for k, v in self.grid.items()}, "points": [dict(p) for p in self.points],
                "seeds": list(self.seeds), "set": list(self.set), "batch_seeds": self.batch_seeds}


@dataclass
class PlannedRun:
    """One run of a sweep (one process): a point and one seed, or a point's seeds batched.

    point: the point's index; settings: its own overrides {key: value text}; seeds: the seeds it
    covers; rel: its directory relative to the sweep directory (POSIX); overrides: every --set of the
    run (the sweep's, the point's, and ``seeds=`` where needed); seed: the run's --seed; cpus, gpus:
    what one run takes from the cluster (fractions allowed); batched: whether seeds share the run.
    """

    point: int
    settings: dict[str, str]
    seeds: list[int]
    rel: str
    overrides: list[str]
    seed: int
    cpus: float
    gpus: float
    batched: bool


# ---------------------------------------------------------------------------------- values as text
def value_text(v: Any, where: str) -> str:
    """A TOML value as the text of an override: 0.01 -> "0.01", true -> "true", strings as-is."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        # a string that would read back as another value ("5", "true", " x") keeps its quotes
        return v if v and v == v.strip() and parse_value(v) == v else json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) if isinstance(x, str) else value_text(x, where) for x in v) + "]"
    raise ConfigError(f"{where}: {v!r} is a {type(v).__name__}; give numbers, booleans, strings or lists")


def split_values(text: str, what: str) -> list[str]:
    """'0.01,0.05,[4, 8]' -> ['0.01', '0.05', '[4, 8]']: commas inside brackets or quotes do not split."""
    out, buf, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    out.append("".join(buf).strip())
    if quote or depth:
        raise ConfigError(f"{what}: unbalanced {'quote' if quote else 'brackets'}")
    if any(not v for v in out):
        raise ConfigError(f"{what}: empty value (values are separated by single commas)")
    return out


# ---------------------------------------------------------------------------------- loading
def _read_toml(path: Path) -> dict:
    return read_config_file(path)


def _canonical_key(key: str, raw: dict, what: str) -> str:
    """'lr' -> 'rule.lr' (as --set resolves it); refuses the sweep's own keys."""
    key = key.strip()
    if not key:
        raise ConfigError(f"{what}: empty key")
    try:
        full, _ = split_override(f"{key}=0", raw)
    except ConfigError as e:
        msg = str(e)
        msg = msg.split(": ", 1)[1] if msg.startswith("--set ") and ": " in msg else msg
        raise ConfigError(f"{what}: {msg}") from None
    if full in _RESERVED:
        raise ConfigError(f"{what}: {full!r} cannot be swept or set here; {_RESERVED[full]}")
    return full


def _parse_seeds(seeds: int | None, seed_list: Sequence[int] | str | None, default: int, what: str) -> list[int]:
    if seeds is not None and seed_list is not None:
        raise ConfigError(f"{what}: give seeds = N or seed_list = [...], not both")
    if seed_list is not None:
        if isinstance(seed_list, str):
            try:
                seed_list = [int(s) for s in split_values(seed_list, "--seed-list")]
            except ValueError:
                raise ConfigError(f"--seed-list {seed_list!r}: give integers, e.g. --seed-list 0,1,2") from None
        if not isinstance(seed_list, (list, tuple)) or not seed_list or \
                not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seed_list):
            raise ConfigError(f"{what}: seed_list must be a non-empty list of integers in [0, 2^31)")
        if len(set(seed_list)) != len(seed_list):
            raise ConfigError(f"{what}: seed_list {list(seed_list)} repeats a seed")
        return list(seed_list)
    n = 1 if seeds is None else seeds
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_SEEDS:
        raise ConfigError(f"{what}: seeds = {n!r} must be an integer in [1, {_MAX_SEEDS}]")
    if default + n > 2**31:
        raise ConfigError(f"{what}: seeds {default}..{default + n - 1} go past 2^31 - 1")
    return list(range(default, default + n))


def _grid_item(item: str, raw: dict) -> tuple[str, list[str]]:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid rule.lr=0.01,0.05")
    key, text = item.split("=", 1)
    if not text.strip():
        raise ConfigError(f"--grid {item}: empty value list")
    return _canonical_key(key, raw, f"--grid {item}"), split_values(text, f"--grid {item}")


def _point_item(item: str | Mapping, raw: dict, what: str) -> dict[str, str]:
    if isinstance(item, Mapping):
        pairs = [(str(k), value_text(v, f"{what} {k}")) for k, v in item.items()]
    else:
        pairs = []
        for part in split_values(item, f"{what} {item}"):
            if "=" not in part:
                raise ConfigError(f"{what} {item}: {part!r} is not KEY=VALUE (e.g. --point rule.trace=none,rule.lr=0.1)")
            k, v = part.split("=", 1)
            if not v.strip():
                raise ConfigError(f"{what} {item}: empty value for {k.strip()}")
            pairs.append((k, v.strip()))
    out: dict[str, str] = {}
    for k, v in pairs:
        full = _canonical_key(k, raw, f"{what} {k}={v}")
        if full in out:
            raise ConfigError(f"{what} {k}={v}: {full} given twice in one point")
        out[full] = v
    return out


def load_sweep_spec(path: str | Path, grid: Sequence[str] | Mapping[str, Sequence[Any]] = (),
                    points: Sequence[str | Mapping[str, Any]] = (), seeds: int | None = None,
                    seed_list: Sequence[int] | str | None = None, set: Sequence[str] = (),
                    batch_seeds: str | None = None, name: str | None = None) -> SweepSpec:
    """A sweep from an experiment TOML or a sweep config (``[sweep]`` table), plus additions.

    grid: "KEY=V1,V2" strings (or {key: [values]}); a key the file's grid has replaces its values in
    place, a new key comes last. points: "KEY=V,KEY=V" strings or {key: value} tables, added after the
    file's. seeds / seed_list replace the file's; set: "KEY=VALUE" added to the file's (a key both
    places: this one wins). One-line ConfigError on any problem.
    """
    path = Path(path)
    doc = _read_toml(path)
    sweep: dict = {}
    if "sweep" in doc:
        sweep = doc["sweep"]
        if not isinstance(sweep, dict):
            raise ConfigError(f"{path}: [sweep] must be a table")
        other = [k for k in doc if k != "sweep"]
        if other:
            raise ConfigError(f"{path}: a sweep config holds only the [sweep] table (found {other}); the experiment "
                              f"goes in its own file, named by sweep.config")
        unknown = [k for k in sweep if k not in SWEEP_KEYS]
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown} in [sweep]; allowed: {list(SWEEP_KEYS)}")
        if not isinstance(sweep.get("config"), str) or not sweep["config"]:
            raise ConfigError(f"{path}: [sweep] needs config = \"<experiment TOML>\" (relative to this file)")
        config = Path(sweep["config"])
        config = (path.parent / config if not config.is_absolute() else config).resolve()
        if not config.is_file():
            raise ConfigError(f"{path}: sweep.config = {sweep['config']!r}: file not found ({config})")
    else:
        config = path.resolve()
    raw = _read_toml(config)
    if "sweep" in raw:
        raise ConfigError(f"{path}: sweep.config names another sweep config ({config}); name an experiment TOML")

    origins: dict[str, str] = {}
    # ---- grid: the file's, then the command line's (same key: values replaced in place)
    g: dict[str, list[str]] = {}
    fgrid = sweep.get("grid", {})
    if not isinstance(fgrid, dict):
        raise ConfigError(f"{path}: [sweep.grid] must be a table of KEY = [values]")
    for k, vals in fgrid.items():
        what = f"[sweep.grid] {k}"
        if not isinstance(vals, list):
            vals = [vals]
        if not vals:
            raise ConfigError(f"{what}: empty value list")
        full = _canonical_key(k, raw, what)
        if full in g:
            raise ConfigError(f"{what}: {full} is in the grid twice")
        g[full] = [value_text(v, what) for v in vals]
        origins[full] = "[sweep.grid]"
    cli_grid = list(grid.items()) if isinstance(grid, Mapping) else list(grid)
    seen: list[str] = []
    for item in cli_grid:
        if isinstance(item, tuple):
            k, vals = item
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or not vals:
                raise ConfigError(f"--grid {k}: give a non-empty list of values")
            full, texts = _canonical_key(k, raw, f"--grid {k}"), [value_text(v, f"--grid {k}") for v in vals]
        else:
            full, texts = _grid_item(item, raw)
        if full in seen:
            raise ConfigError(f"--grid {full}: given twice; list every value in one --grid {full}=V1,V2,...")
        seen.append(full)
        if len(dict.fromkeys(texts)) != len(texts):
            raise ConfigError(f"--grid {full}={','.join(texts)}: repeats a value")
        g[full] = texts
        origins[full] = "--grid"
    for k, vals in g.items():
        if len(dict.fromkeys(vals)) != len(vals):
            raise ConfigError(f"{origins[k]} {k} = {vals}: repeats a value")

    # ---- set: the file's, then the command line's (same key: the command line wins)
    fset = sweep.get("set", [])
    if isinstance(fset, str) or not isinstance(fset, list) or not all(isinstance(s, str) for s in fset):
        raise ConfigError(f"{path}: sweep.set must be a list of \"KEY=VALUE\" strings")
    sets: dict[str, str] = {}
    for origin, items in (("sweep.set", fset), ("--set", list(set))):
        for item in items:
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"{origin} {item!r}: expected KEY=VALUE, e.g. rule.lr=0.01")
            k, v = item.split("=", 1)
            full = _canonical_key(k, raw, f"{origin} {item}")
            if full in g:
                raise ConfigError(f"{origin} {item}: {full} is also a grid key ({origins[full]}); a key is either "
                                  f"swept or set")
            sets.pop(full, None)  # re-insert: the last one given wins and sits last
            sets[full] = v.strip()
            origins[f"set:{full}"] = origin

    # ---- extra points
    fpoints = sweep.get("points", [])
    if not isinstance(fpoints, list) or not all(isinstance(p, dict) for p in fpoints):
        raise ConfigError(f"{path}: sweep.points must be an array of tables ([[sweep.points]])")
    pts: list[dict[str, str]] = []
    for origin, items in (("[[sweep.points]]", fpoints), ("--point", list(points))):
        for item in items:
            p = _point_item(item, raw, origin)
            for k in p:
                if k in sets:
                    raise ConfigError(f"{origin} {_fmt_point(p)}: {k} is also set for every run ({origins['set:' + k]}"
                                      f" {k}={sets[k]}); a key is either set or varied")
            if p in pts:
                raise ConfigError(f"{origin} {_fmt_point(p)}: the same point is given twice")
            pts.append(p)
            origins[f"point:{len(pts) - 1}"] = origin

    # ---- seeds, batching, name
    default_seed = raw.get("seed", 0)
    if isinstance(default_seed, bool) or not isinstance(default_seed, int) or default_seed < 0:
        default_seed = 0  # the experiment's own validation names the bad seed
    if seeds is not None or seed_list is not None:
        seed_values = _parse_seeds(seeds, seed_list, default_seed, "--seeds/--seed-list")
    else:
        seed_values = _parse_seeds(sweep.get("seeds"), sweep.get("seed_list"), default_seed, f"{path} [sweep]")
    mode = batch_seeds if batch_seeds is not None else sweep.get("batch_seeds", "auto")
    if mode not in BATCH_MODES:
        raise ConfigError(f"batch_seeds = {mode!r}: allowed: {list(BATCH_MODES)}")
    nm = name if name is not None else sweep.get("name", raw.get("name", config.stem))
    if not isinstance(nm, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", nm):
        raise ConfigError(f"sweep name {nm!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    spec = SweepSpec(config=config, grid=g, points=pts, seeds=seed_values,
                     set=[f"{k}={v}" for k, v in sets.items()], batch_seeds=mode, name=nm, origins=origins)
    if len(spec.point_settings()) > 100_000:
        raise ConfigError(f"the sweep has {len(spec.point_settings())} points; at most 100000")
    return spec


def _fmt_point(p: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in p.items())


# ---------------------------------------------------------------------------------- planning
def _slug_value(v: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", v.strip("\"'")).strip("_") or "_"


def point_slugs(settings: list[dict[str, str]]) -> list[str]:
    """Readable, filesystem-safe, unique directory names: 'lr=0.01_order=6' (a key's last component,
    unless two keys share it; then the full key); 'pNN_' in front where two points still collide."""
    keys = list(dict.fromkeys(k for s in settings for k in s))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}
    slugs = []
    for s in settings:
        text = "_".join(f"{short[k]}={_slug_value(v)}" for k, v in s.items()) or "base"
        if len(text) > 120:  # file names are at most 255 bytes; keep it readable and unique
            text = f"{text[:100]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
        slugs.append(text)
    width = max(2, len(str(len(settings) - 1)))
    return [f"p{i:0{width}d}_{s}" if slugs.count(s) > 1 else s for i, s in enumerate(slugs)]


def _batchable(exp) -> tuple[bool, str]:
    """Whether this run kind puts seeds on the loop's batch axis; else why not."""
    rule = exp.rule.name
    if exp.family == "spiking":
        if exp.run.backend in SPIKING_BATCH_BACKENDS:
            return True, ""
        return False, f"spiking runs on run.backend = {exp.run.backend!r} take one seed per process"
    if rule in RATE_BATCH_RULES:
        return True, ""
    why = {"probe": "rule 'probe' runs one seed per process", "cet": "rule 'cet' ignores seeds (one model per run)"}
    return False, why.get(rule, f"rule {rule!r} does not batch seeds")


def _label(spec: SweepSpec, settings: dict[str, str], index: int, n_grid: int) -> str:
    """How to name a point in an error: the flag that gave it."""
    if index >= n_grid:
        origin = spec.origins.get(f"point:{index - n_grid}", "--point")
        return f"{origin} {_fmt_point(settings)}"
    return " ".join(f"{spec.origins.get(k, '--grid')} {k}={v}" for k, v in settings.items())


def _load(spec: SweepSpec, overrides: list[str], seed: int, label: str):
    try:
        return load_experiment(spec.config, overrides, seed)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}" if label else str(e)) from None


def _culprit(spec: SweepSpec, settings: dict[str, str], seed: int, index: int, n_grid: int, one: list[str]) -> str:
    """The label of the setting that makes a point fail: the first that fails on its own."""
    if index < n_grid:
        for k, v in settings.items():
            try:
                load_experiment(spec.config, [*spec.set, f"{k}={v}", *one], seed)
            except ConfigError:
                return f"{spec.origins.get(k, '--grid')} {k}={v}"
    return _label(spec, settings, index, n_grid)


def plan_runs(spec: SweepSpec, resources: Mapping[str, float] | None = None) -> list[PlannedRun]:
    """Validate every point x seed and return the runs, in order (points, then seeds).

    resources: {"cpu": n, "gpu": f} for every run; default cpu = the run's run.threads, gpu = 1 on a
    cuda device else 0. One-line ConfigError naming the flag and value of the first bad setting.
    """
    resources = dict(resources or {})
    base_seed = spec.seeds[0]
    # the checks below run each point as one seed (what a run's kind does not depend on); the
    # config's own seeds is replaced by the sweep's anyway
    raw_seeds = read_config_file(spec.config).get("seeds", 1)
    one = ["seeds=1"] if raw_seeds != 1 else []
    try:
        load_experiment(spec.config, [*spec.set, *one], base_seed)
    except ConfigError as e:
        culprit = ""
        for item in spec.set:  # name the --set that fails on its own, if one does
            try:
                load_experiment(spec.config, [item, *one], base_seed)
            except ConfigError:
                culprit = f"{spec.origins.get('set:' + item.split('=', 1)[0], '--set')} {item}"
                break
        raise ConfigError(f"{culprit}: {e}" if culprit else str(e)) from None
    settings = spec.point_settings()
    n_grid = math.prod(len(v) for v in spec.grid.values()) if spec.grid else (0 if spec.points else 1)
    slugs = point_slugs(settings)
    n = len(spec.seeds)
    consecutive = spec.seeds == list(range(base_seed, base_seed + n))
    runs: list[PlannedRun] = []
    for i, (s, slug) in enumerate(zip(settings, slugs)):
        point_ov = [*spec.set, *(f"{k}={v}" for k, v in s.items())]
        try:
            exp = load_experiment(spec.config, point_ov + one, base_seed)
        except ConfigError as e:
            raise ConfigError(f"{_culprit(spec, s, base_seed, i, n_grid, one)}: {e}") from None
        label = _label(spec, s, i, n_grid)
        ok, why = _batchable(exp)
        batched = False
        if spec.batch_seeds != "off" and n > 1:
            if not consecutive:
                why = f"the seeds {spec.seeds} are not consecutive"
            batched = ok and consecutive
            if spec.batch_seeds == "on" and not batched:
                raise ConfigError(f"--batch-seeds on: {label or 'the experiment'} cannot batch its seeds: {why}; "
                                  f"use --batch-seeds auto or off")
        cpus = float(resources.get("cpu", exp.run.threads))
        gpus = float(resources.get("gpu", 1.0 if exp.device.startswith("cuda") else 0.0))
        if batched:
            ov = point_ov + ([f"seeds={n}"] if raw_seeds != n else [])
            _load(spec, ov, base_seed, f"{label + ' ' if label else ''}with its seeds batched (seeds={n})".strip())
            rel = f"{slug}/s{spec.seeds[0]}-{spec.seeds[-1]}"
            runs.append(PlannedRun(i, s, list(spec.seeds), rel, ov, base_seed, cpus, gpus, True))
            continue
        ov = point_ov + one
        for seed in spec.seeds:
            _load(spec, ov, seed, f"{label} --seed {seed}".strip())
            runs.append(PlannedRun(i, s, [seed], f"{slug}/s{seed}", ov, seed, cpus, gpus, False))
    return runs
