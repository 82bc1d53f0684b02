"""The experiment config: network + task + rule + run, validated once, with seconds converted to steps.

    name, seed, seeds, device            top level (seeds: independent models/trials run as one batch)
    [model] or [network]                 a rate network (file or inline) or a spiking network file
    [task]      name = …                 one of the task configs (neuroprobe.config.tasks)
    [rule]      name = …                 one of the registered rules (neuroprobe.config.rules)
    [modulator] [monitor] [run]          neuroprobe.config.sections

:func:`load_experiment` reads a TOML file, applies ``--set`` overrides and returns a validated
:class:`Experiment`; every problem is one :class:`~neuroprobe.errors.ConfigError` line naming the
file, the key, the value and what is allowed. :func:`experiment_json_schema` is the JSON Schema
(``neuroprobe schema``).
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Optional, Union

import torch
from pydantic import Field, PrivateAttr, StrictStr, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from ..errors import ConfigError
from .base import PosInt, Seed, StrictModel, validation_message
from .rules import RULE_CONFIGS
from .sections import NAME_PATTERN, ModelSection, ModulatorSection, MonitorSection, NetworkSection, RunSection
from .tasks import TASK_CONFIGS, TaskConfig

__all__ = ["Experiment", "Schedule", "experiment_model", "load_experiment", "validate_experiment",
           "experiment_json_schema", "apply_overrides", "parse_value", "RESUME_SAFE_KEYS", "invalidate"]

MEMORY_LIMIT = 16 * 2**30  # bytes a run may plan to hold (weights, traces, activations): beyond, refused at load


def refuse_over_memory(nbytes: float, what: str) -> None:
    """ValueError "<what> would hold about N GiB of ...; the limit is 16 GiB" when ``nbytes`` (the
    bytes a setting plans to hold) exceeds MEMORY_LIMIT. ``what`` names the setting and ends with
    ``{} GiB of <tensors>``, where the size goes."""
    if nbytes > MEMORY_LIMIT:
        raise ValueError(what.format(f"{nbytes / 2**30:.0f}") + f"; the limit is {MEMORY_LIMIT / 2**30:.0f} GiB")


class Schedule(NamedTuple):
    """The run's schedule in loop units, computed once at load.

    unit: what the budget counts ("episodes", "steps"; a timed task counts network steps);
    total: the budget in those units; checkpoint_every: in the same units; dt: the network step (s)
    of spiking experiments, else None; report_every: steps between rows of timed tasks (else None).
    """

    unit: str
    total: int
    checkpoint_every: int
    dt: Optional[float] = None
    report_every: Optional[int] = None


class ExperimentBase(StrictModel):
    """Top-level keys of an experiment (the ``task`` and ``rule`` unions are added by the registry)."""

    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN)] = "experiment"
    """Experiment name; the default run directory is runs/<name>-<seed>."""
    seed: Seed = 0
    """Seed of the run's generator (seed s + i for the i-th model/trial of the batch)."""
    seeds: Annotated[PosInt, Field(le=4096)] = 1
    """Independent models (rate) or trials (spiking) run as one batch."""
    device: Annotated[StrictStr, Field(pattern=r"^(cpu|cuda(:[0-9]{1,2})?)$")] = "cpu"
    """torch device: cpu, cuda or cuda:N."""
    model: Optional[ModelSection] = None
    """Rate network (rate tasks)."""
    network: Optional[NetworkSection] = None
    """Spiking network (spiking tasks)."""
    modulator: ModulatorSection = Field(default_factory=ModulatorSection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    run: RunSection = Field(default_factory=RunSection)

    _model_spec: Any = PrivateAttr(default=None)
    _spiking_spec: Any = PrivateAttr(default=None)
    _schedule: Any = PrivateAttr(default=None)

    @field_validator("device")
    @classmethod
    def _device_exists(cls, v: str) -> str:
        if v.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"{v} requested but torch {torch.__version__} has no CUDA (a CPU build, or no GPU "
                                 f"visible); use device = \"cpu\"")
            idx = int(v.split(":")[1]) if ":" in v else 0
            if idx >= torch.cuda.device_count():
                raise ValueError(f"{v} requested but torch sees {torch.cuda.device_count()} CUDA device(s)")
        return v

    # ------------------------------------------------------------------ cross-field checks and resolution
    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo):
        base_dir = Path((info.context or {}).get("base_dir", "."))
        task, rule = self.task, self.rule  # type: ignore[attr-defined]
        fam = task.family
        if fam not in rule.families:
            allowed = sorted(n for n, c in RULE_CONFIGS.items() if fam in c.families)
            raise ValueError(f"'rule.name' = {rule.name!r} does not apply to task {task.name!r}; allowed: {allowed}")
        if fam in ("rl", "supervised"):
            if self.model is None:
                raise ValueError(f"missing table [model] (task {task.name!r} runs a rate network)")
            if self.network is not None:
                raise ValueError(f"[network] is for spiking tasks; task {task.name!r} takes [model]")
            self._model_spec = _resolve_model(self.model, base_dir)
            self.model = ModelSection(file=None, **_inline(self._model_spec))
            _check_model_fits_task(self._model_spec.sizes, task)
            from ..rate_monitors import check_rate_monitors

            check_rate_monitors(self.monitor, [f"fc{i + 1}" for i in range(len(self._model_spec.sizes) - 1)],
                                self._model_spec.bias)
        else:
            if self.network is None:
                raise ValueError(f"missing table [network] (task {task.name!r} runs a spiking network)")
            if self.model is not None:
                raise ValueError(f"[model] is for rate tasks; task {task.name!r} takes [network]")
            path = _find(self.network.file, base_dir, "network.file")
            from ..spiking.spec import load_spiking_spec

            self._spiking_spec = _read_network(load_spiking_spec, path, "network.file", self.network.file)
            self.network = NetworkSection(file=str(path.resolve()))
            _check_monitor(self.monitor, self._spiking_spec, self.seeds)
        if getattr(task, "label_delay", 0) and rule.name != "probe":
            raise ValueError(f"'task.label_delay' = {task.label_delay} applies only to rule 'probe' on a supervised "
                             f"task; CET's credit delay is rule.delay")
        if self.device != "cpu" and self.run.backend == "brian2":
            raise ValueError(f"'device' = {self.device!r}: Brian2 runs on the CPU (run.backend = 'brian2'); use "
                             f"device = \"cpu\" or run.backend = 'torch'")
        _check_backend(self)
        rule.check(self)
        self._schedule = _schedule(self)
        _check_memory(self)
        return self

    # ------------------------------------------------------------------ what the loop reads
    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @property
    def model_spec(self):
        """The rate network's :class:`~neuroprobe.network.NetworkSpec` (rate tasks)."""
        return self._model_spec

    @property
    def spiking_spec(self):
        """The spiking network's :class:`~neuroprobe.spiking.spec.SpikingSpec` (spiking tasks)."""
        return self._spiking_spec

    @property
    def family(self) -> str:
        return self.task.family  # type: ignore[attr-defined]

    def to_toml_dict(self) -> dict:
        """The resolved config as written to a run's ``config.toml`` (loads back to an equal Experiment)."""
        return self.model_dump(mode="json", exclude_none=True)


def _check_backend(exp) -> None:
    """The engine (run.backend, run.precision) exists and runs this experiment: Brian2 is float
    only; rate experiments run on torch in float only; a spiking rule runs on the pairs it lists
    in ``backends`` (default torch float only); fixed point and Lava run on the CPU."""
    run, task, rule = exp.run, exp.task, exp.rule
    pair = (run.backend, run.precision)
    if run.backend == "brian2" and run.precision != "float":
        raise ValueError(f"'run.precision' = {run.precision!r}: Brian2 runs in float only (run.backend = 'brian2'); "
                         f"use run.precision = 'float', or run.backend = 'torch' or 'lava' for fixed point")
    key, value = ("run.backend", run.backend) if run.backend != "torch" else ("run.precision", run.precision)
    if task.family != "spiking" and pair != ("torch", "float"):
        raise ValueError(f"'{key}' = {value!r}: rate experiments (task {task.name!r}) run on the torch engine in "
                         f"float only (run.backend = 'torch', run.precision = 'float')")
    allowed = tuple(getattr(type(rule), "backends", (("torch", "float"),)))
    if pair not in allowed:
        have = ", ".join(f"{b}/{p}" for b, p in allowed)
        raise ValueError(f"'{key}' = {value!r}: rule {rule.name!r} (task {task.name!r}) runs on {have} "
                         f"(run.backend/run.precision)")
    if run.backend == "brian2" and run.rng == "hash":
        raise ValueError("'run.rng' = 'hash': Brian2 draws its own random numbers (run.backend = 'brian2'); use "
                         "run.rng = 'auto' or 'generator'")
    if run.rng == "generator" and (run.backend in ("event", "lava") or run.precision == "fixed"):
        raise ValueError(f"'run.rng' = 'generator': the {run.backend} engine in {run.precision} draws counter-based "
                         f"hash noise only; use run.rng = 'auto' or 'hash'")
    if run.backend == "event" and exp.device != "cpu":
        raise ValueError(f"'device' = {exp.device!r}: the event engine runs on the CPU (run.backend = 'event'); use "
                         f"device = \"cpu\" or run.backend = 'torch' for GPUs")
    if exp.device != "cpu" and (run.precision == "fixed" or run.backend == "lava"):
        raise ValueError(f"'device' = {exp.device!r}: the fixed-point engine and Lava run on the CPU "
                         f"(run.backend = {run.backend!r}, run.precision = {run.precision!r}); use device = \"cpu\"")


def _inline(spec) -> dict:
    return {"sizes": list(spec.sizes), "activation": spec.activation, "readout": spec.readout, "bias": spec.bias,
            "init": spec.init, **({"name": spec.name} if spec.name else {})}


def _find(name: str, base_dir: Path, key: str) -> Path:
    p = Path(name)
    if not p.is_absolute() and not p.exists() and (base_dir / p).exists():
        p = base_dir / p
    if not p.is_file():
        raise ValueError(f"'{key}' = {name!r}: file not found")
    return p


def _check_monitor(mon: MonitorSection, spec, seeds: int) -> None:
    """[monitor] entries name populations (state variables also projections 'pre->post') of the
    spiking network, their indices are neurons of it and their batch_index a trial of the run."""
    size = {p.name: p.size for p in spec.populations}
    projections = [pr.name for pr in spec.projections]
    for kind in ("spikes", "rate", "state"):
        for i, entry in enumerate(getattr(mon, kind)):
            pop = entry if isinstance(entry, str) else entry.population
            key = f"monitor.{kind}[{i}]" + ("" if isinstance(entry, str) else ".population")
            allowed = list(size) + (projections if kind == "state" else [])
            if pop not in allowed:
                what = "population or projection" if kind == "state" else "population"
                raise ValueError(f"'{key}' = {pop!r}: not a {what} of the network; allowed: {allowed}")
            if isinstance(entry, str):
                continue
            if entry.batch_index >= seeds:
                raise ValueError(f"'monitor.{kind}[{i}].batch_index' = {entry.batch_index}: the run has {seeds} "
                                 f"trial(s) (seeds)")
            indices = getattr(entry, "indices", None)
            if indices and pop in size and max(indices) >= size[pop]:
                raise ValueError(f"'monitor.{kind}[{i}].indices' = {max(indices)}: population {pop!r} has "
                                 f"{size[pop]} neurons (indices 0 .. {size[pop] - 1})")


def _read_network(loader, path: Path, key: str, name: str):
    """``loader(path)`` with the file's encoding and I/O errors as one line naming ``key``."""
    try:
        return loader(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"'{key}' = {name!r}: not UTF-8 text (byte {e.start}); network files are TOML in UTF-8") \
            from None
    except OSError as e:
        raise ValueError(f"'{key}' = {name!r}: cannot be read ({e.strerror or type(e).__name__})") from None


def _resolve_model(m: ModelSection, base_dir: Path):
    from ..network import spec_from_dict, spec_from_toml

    if m.file is not None:
        return _read_network(spec_from_toml, _find(m.file, base_dir, "model.file"), "model.file", m.file)
    d = {k: v for k, v in m.model_dump(exclude_none=True).items() if k != "file"}
    return spec_from_dict(d, where="model")


DIGITS_SHAPE = (64, 10)  # scikit-learn digits: 8x8 features, 10 classes


def _check_model_fits_task(sizes, task: TaskConfig) -> None:
    if task.family == "rl":
        from ..tasks import task_info

        info = task_info(task.name)
        need, what = (info["obs_dim"], info["n_actions"]), "observations, actions"
    elif getattr(task, "dataset", None) == "digits":
        need, what = DIGITS_SHAPE, "features, classes"
    else:
        return  # a local dataset file is checked when it is loaded
    if (sizes[0], sizes[-1]) != need:
        raise ValueError(f"'model.sizes' = {list(sizes)} does not fit task {task.name!r} ({what} = {need}); "
                         f"the first size must be {need[0]} and the last {need[1]}")


def _schedule(exp: "ExperimentBase") -> Schedule:
    task, run = exp.task, exp.run  # type: ignore[attr-defined]
    if task.unit == "seconds":
        dt = exp.spiking_spec.dt
        total = int(round(task.budget / dt))
        if total < 1:
            raise ValueError(f"'task.{task.budget_key}' = {task.budget}: shorter than the network's dt = {dt} s")
        every = max(1, int(round(task.report_every / dt)))
        if task.report_every < dt:
            raise ValueError(f"'task.report_every' = {task.report_every}: shorter than the network's dt = {dt} s")
        ck = run.checkpoint_every if run.checkpoint_every is not None else max(task.budget / 10, dt)
        if ck < dt:
            raise ValueError(f"'run.checkpoint_every' = {ck}: shorter than the network's dt = {dt} s "
                             f"(unit: seconds, as task.duration)")
        return Schedule("steps", total, max(1, int(round(ck / dt))), dt, every)
    total = int(task.budget)
    ck = run.checkpoint_every
    if ck is None:
        ck = max(1, total // 10)
    elif ck != int(ck):
        raise ValueError(f"'run.checkpoint_every' = {ck}: must be a whole number of {task.unit} "
                         f"(the unit of task.{task.budget_key})")
    dt = exp.spiking_spec.dt if exp.spiking_spec is not None else None
    return Schedule(task.unit, total, int(ck), dt, None)


def _check_memory(exp) -> None:
    """Refuse at load what cannot fit: the planned tensors' bytes against MEMORY_LIMIT."""
    b = 0
    if exp.model_spec is not None:
        sizes = exp.model_spec.sizes
        params = sum(a * c for a, c in zip(sizes[:-1], sizes[1:]))
        width = max(sizes)
        branches = getattr(exp.rule, "branches", 1)
        batch = getattr(exp.task, "batch", 1)
        passes = getattr(exp.rule, "passes", 1) + 1
        b = 8 * params * exp.seeds * 4 + 8 * width * len(sizes) * exp.seeds * branches * batch * passes
    elif exp.spiking_spec is not None:
        spec = exp.spiking_spec
        size = {p.name: p.size for p in spec.populations}
        syn = sum(pr.p * size[pr.pre] * size[pr.post] for pr in spec.projections)
        order = getattr(exp.rule, "order", 1)
        b = 8 * syn * (3 + 4 + order) + 8 * exp.seeds * syn * (order + 2) + 8 * exp.seeds * sum(size.values()) * 8
    refuse_over_memory(b, "this experiment would hold about {} GiB of tensors (network size x seeds x branches x "
                          "batch)")


# ---------------------------------------------------------------------------------- the assembled model
_MODEL: Optional[type] = None


def invalidate() -> None:
    """Forget the assembled model (a rule or task config was registered)."""
    global _MODEL
    _MODEL = None


def experiment_model() -> type[ExperimentBase]:
    """The Experiment pydantic model over the registered tasks and rules."""
    global _MODEL
    if _MODEL is None:
        from .. import learners  # noqa: F401  (registers the shipped rules)

        tasks = tuple(TASK_CONFIGS)
        rules = tuple(dict.fromkeys(RULE_CONFIGS.values()))
        task_t = Annotated[Union[tasks], Field(discriminator="name")] if len(tasks) > 1 else tasks[0]
        rule_t = Annotated[Union[rules], Field(discriminator="name")] if len(rules) > 1 else rules[0]
        _MODEL = create_model("Experiment", __base__=ExperimentBase, __doc__=ExperimentBase.__doc__,
                              task=(task_t, Field(description="The task: one table per task name")),
                              rule=(rule_t, Field(description="The learning rule: one table per rule name")))
    return _MODEL


Experiment = ExperimentBase  # the type to annotate with; instances come from experiment_model()


def _tags() -> set[str]:
    names = set(RULE_CONFIGS)
    for t in TASK_CONFIGS:
        from typing import get_args

        names.update(get_args(t.model_fields["name"].annotation))
    return names


def validate_experiment(raw: Any, src: str = "<config>", base_dir: Path | None = None) -> ExperimentBase:
    """Validate a raw config dict; one ConfigError line on any problem."""
    model = experiment_model()
    try:
        return model.model_validate(raw, context={"base_dir": str(base_dir or Path("."))})
    except ValidationError as e:
        msg = validation_message(src, e, _tags())
        first = e.errors(include_url=False)[0]
        if first["type"] == "extra_forbidden":
            msg += _unknown_key_help(tuple(first["loc"]), raw)
        raise ConfigError(msg) from None
    except ConfigError as e:  # raised by a component while resolving (a network file's own errors)
        raise ConfigError(str(e) if str(e).startswith(src) else f"{src}: {e}") from None


# keys that belong to another task family: where their meaning lives instead
_MOVED = {"label_delay": "labels are delayed only on a supervised stream; RL tasks delay rewards with task.reward_delay",
          "reward_delay": "rewards are delayed only in RL tasks; a supervised stream delays labels with task.label_delay"}


def _unknown_key_help(loc: tuple, raw: Any) -> str:
    """'; allowed: [...]' for an unknown key of a known section (and a hint for keys of other tasks)."""
    from typing import get_args

    sec, key = loc[0], loc[-1]
    cls = {"modulator": ModulatorSection, "run": RunSection, "model": ModelSection, "network": NetworkSection,
           "monitor": MonitorSection}.get(sec)
    table = raw.get(sec) if isinstance(raw, dict) else None
    name = table.get("name") if isinstance(table, dict) else None
    if sec == "rule" and isinstance(name, str):
        cls = RULE_CONFIGS.get(name)
    elif sec == "task":
        cls = next((t for t in TASK_CONFIGS if name in get_args(t.model_fields["name"].annotation)), None)
    elif len(loc) == 1:
        return f"; allowed top-level keys and tables: {sorted(experiment_model().model_fields)}"
    if cls is None or len(loc) > 3:
        return ""
    hint = f" ({_MOVED[key]})" if key in _MOVED else ""
    return f"; allowed: {sorted(cls.model_fields)}{hint}"


def experiment_json_schema() -> dict:
    """JSON Schema of experiment configs (editors validate TOML configs with it)."""
    schema = experiment_model().model_json_schema()
    schema["title"] = "neuroprobe experiment"
    schema["$id"] = "https://neuroprobe.dev/schema/experiment.json"
    return schema


# ---------------------------------------------------------------------------------- files and overrides
def read_config_file(path: Path) -> dict:
    from ..tomlio import read_toml

    return read_toml(path, "config file")


def parse_value(text: str) -> Any:
    """A --set value: parsed as a TOML value (numbers, booleans, strings, lists), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


SECTIONS = ("model", "network", "task", "rule", "modulator", "monitor", "run")
TOP_KEYS = ("name", "seed", "seeds", "device")
RESUME_SAFE_KEYS = ("task.episodes", "task.steps", "task.duration", "run.progress", "run.checkpoint_every")


def _section_fields(raw: dict) -> dict[str, set[str]]:
    experiment_model()
    out = {"modulator": set(ModulatorSection.model_fields), "run": set(RunSection.model_fields)}
    tname, rname = (raw.get("task") or {}).get("name"), (raw.get("rule") or {}).get("name")
    for t in TASK_CONFIGS:
        from typing import get_args

        if tname in get_args(t.model_fields["name"].annotation):
            out["task"] = set(t.model_fields) - {"name"}
    if isinstance(rname, str) and rname in RULE_CONFIGS:
        out["rule"] = set(RULE_CONFIGS[rname].model_fields) - {"name"}
    return out


def split_override(item: str, raw: dict) -> tuple[str, Any]:
    """'rule.lr=0.01' → ('rule.lr', 0.01); a bare key is resolved to its section when unambiguous."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set rule.lr=0.01")
    key, text = item.split("=", 1)
    key = key.strip()
    value = parse_value(text.strip())
    if "." in key:
        sec = key.split(".", 1)[0]
        if sec not in SECTIONS:
            raise ConfigError(f"--set {key}: unknown section {sec!r}; allowed: {list(SECTIONS)}")
        return key, value
    if key in TOP_KEYS:
        return key, value
    owners = [s for s, fields in _section_fields(raw).items() if key in fields]
    if len(owners) != 1:
        raise ConfigError(f"--set {key}: {'ambiguous' if owners else 'unknown'} key; use section.key, sections: "
                          f"{list(SECTIONS)}")
    return f"{owners[0]}.{key}", value


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key=value`` overrides to a raw config dict (a copy is returned)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = split_override(item, raw)
        parts = key.split(".")
        if parts[0] == "model" and parts[1:] == ["file"]:  # a model file replaces the whole table
            raw["model"] = {"file": value}
            continue
        node = raw
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a table")
            node = nxt
        node[parts[-1]] = value
    return raw


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = (), seed: int | None = None
                    ) -> ExperimentBase:
    """Read, override and validate a TOML experiment config."""
    path = Path(path)
    raw = read_config_file(path)
    raw = apply_overrides(raw, list(overrides))
    if seed is not None:
        raw["seed"] = seed
    return validate_experiment(raw, src=str(path), base_dir=path.parent)
