"""Monitors: record spikes, state variables and population rates of a running network.

Attachable like Brian2's monitors, but pure bookkeeping: a monitor never holds the network. The
caller advances the network and hands a ``lookup(variable, population) -> Tensor`` to
:meth:`MonitorSet.record` once per step::

    mon = MonitorSet([SpikeMonitor("exc"), StateMonitor("v", "exc", indices=[0, 1, 2], every=5),
                      PopulationRateMonitor("exc")], dt=net.spec.dt)
    state = net.init_state(B)
    for t in range(T):
        z, state = net.step(state, inputs)
        mon.record(t, lambda var, pop: net.variable(state, pop, var))
    mon.save(run_dir / "recordings.npz")

``lookup`` may answer anything the caller can look up (traces, weights, eligibility of a
projection: the "population" is then a projection name such as ``"exc->exc"`` and the indices are
synapse indices). It is called only for the monitors due this step, at most once per
(variable, population) and step. It returns ``(B, N)`` (one row per trial; ``batch_index`` picks
the trial) or ``(N,)`` (shared by the trials, e.g. shared weights).

Only the selected entries are copied (``index_select`` on the tensor's device), kept on that device
in small chunks and moved to the CPU as numpy once per chunk, so recording neither copies whole
``(B, N)`` tensors nor synchronises a GPU every step. Memory grows with what is recorded only.

File layout of :meth:`MonitorSet.save` (``recordings.npz``, written atomically)::

    spikes/<population>      (T, n) uint8      spikes of the recorded neurons, one row per step
    <variable>/<population>  (T_k, n) float32  a state variable every ``every`` steps
    rate/<population>        (T_b,) float32    population rate (Hz), one value per bin
    time/<key>               (rows,) float64   time (s) of each row of <key> (step · dt; bin start)
    indices/<key>            (n,) int64        neuron / synapse index of each column of <key>
    meta/dt                  () float64        the integration step (s)
    meta/<anything>          extra entries given to ``save(meta=...)`` (e.g. ``highlight/<proj>``)
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from numbers import Integral
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError, ShapeError

__all__ = ["SpikeMonitor", "StateMonitor", "PopulationRateMonitor", "MonitorSet", "Lookup", "save_recordings",
           "load_recordings", "monitors_from_config", "RESERVED_PREFIXES", "CHUNK"]

Lookup = Callable[[str, str], Tensor]
RESERVED_PREFIXES = ("spikes", "rate", "time", "indices", "meta")
CHUNK = 256  # rows kept on the tensor's device before one transfer to the CPU


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise ConfigError(f"{what} = {value!r}: must be a non-empty string without '/'")
    return value


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{what} = {value!r}: must be an integer >= {minimum}")
    return int(value)


def _check_indices(indices: Any, what: str) -> np.ndarray | None:
    if indices is None:
        return None
    if isinstance(indices, Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.ndim != 1 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer) or
                                               all(isinstance(i, Integral) and not isinstance(i, bool)
                                                   for i in arr.tolist())):
        raise ConfigError(f"{what} = {indices!r}: must be a non-empty list of integers >= 0 (or omitted = all)")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ConfigError(f"{what} = {indices!r}: must be a non-empty list of integers >= 0 (or omitted = all)")
    return arr


class _Monitor:
    """Shared machinery: selection of one trial and of the chosen columns, chunked transfer."""

    variable: str
    population: str
    every: int = 1
    out_dtype: torch.dtype = torch.float32

    def __init__(self, population: str, indices: Any, batch_index: int):
        self.population = _check_name(population, f"{type(self).__name__}.population")
        self.indices = _check_indices(indices, f"{type(self).__name__}({population!r}).indices")
        self.batch_index = _check_int(batch_index, f"{type(self).__name__}({population!r}).batch_index", 0)
        self._idx_dev: dict[torch.device, Tensor] = {}
        self._pending: list[Tensor] = []
        self._chunks: list[np.ndarray] = []
        self._steps: list[int] = []
        self.n_total: int | None = None  # N of the looked-up tensor (known after the first record)

    @property
    def key(self) -> str:
        return f"{self.variable}/{self.population}"

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def _row(self, x: Tensor) -> Tensor:
        """The recorded trial's row, (N,), detached."""
        x = x.detach()
        if x.dim() == 2:
            if self.batch_index >= x.shape[0]:
                raise ShapeError(f"monitor {self.key}: batch_index {self.batch_index} but the batch has "
                                 f"{x.shape[0]} trial(s)")
            x = x[self.batch_index]
        elif x.dim() != 1:
            raise ShapeError(f"monitor {self.key}: lookup returned shape {tuple(x.shape)}, expected (B, N) or (N,)")
        if self.n_total is None:
            self.n_total = int(x.shape[0])
            if self.indices is not None and self.indices.size and self.indices.max() >= self.n_total:
                raise ConfigError(f"monitor {self.key}: index {int(self.indices.max())} out of range "
                                  f"(it has {self.n_total} entries)")
        elif x.shape[0] != self.n_total:
            raise ShapeError(f"monitor {self.key}: size changed from {self.n_total} to {x.shape[0]}")
        return x

    def _select(self, row: Tensor) -> Tensor:
        """Copy of the chosen columns (never a view: later in-place updates must not leak in)."""
        if self.indices is None:
            return row.clone()
        idx = self._idx_dev.get(row.device)
        if idx is None:
            idx = self._idx_dev[row.device] = torch.as_tensor(self.indices, device=row.device)
        return row.index_select(0, idx)

    def _push(self, step: int, value: Tensor) -> None:
        self._steps.append(int(step))
        self._pending.append(value.to(self.out_dtype))
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(torch.stack(self._pending).cpu().numpy())
            self._pending = []

    def _width(self) -> int:
        if self.indices is not None:
            return int(self.indices.size)
        return self.n_total or 0

    def _data(self) -> np.ndarray:
        self._flush()
        np_dtype = torch.empty((), dtype=self.out_dtype).numpy().dtype
        if not self._chunks:
            return np.zeros((0, self._width()), dtype=np_dtype)
        return np.concatenate(self._chunks, axis=0)

    def _column_indices(self) -> np.ndarray:
        if self.indices is not None:
            return self.indices.copy()
        return np.arange(self.n_total or 0, dtype=np.int64)

    def record(self, step: int, x: Tensor) -> None:
        self._push(step, self._select(self._row(x)))

    def arrays(self, dt: float) -> dict[str, np.ndarray]:
        """This monitor's entries of the recordings file."""
        return {self.key: self._data(), f"time/{self.key}": np.asarray(self._steps, dtype=np.float64) * dt,
                f"indices/{self.key}": self._column_indices()}

    def state_dict(self) -> dict[str, Any]:
        """Everything recorded so far (unflushed rows included) as a plain tree of tensors and
        numbers (``torch.load(weights_only=True)`` reads it): ``{"key", "data", "steps", "n_total"}``."""
        np_dtype = torch.empty((), dtype=self.out_dtype).numpy().dtype
        parts = [torch.from_numpy(np.ascontiguousarray(c, dtype=np_dtype)) for c in self._chunks]
        if self._pending:
            parts.append(torch.stack(self._pending).detach().cpu())
        if parts:
            data = torch.cat(parts, 0)
        else:
            data = torch.zeros((0,) if isinstance(self, PopulationRateMonitor) else (0, self._width()),
                               dtype=self.out_dtype)
        return {"key": self.key, "data": data, "steps": torch.tensor(self._steps, dtype=torch.int64),
                "n_total": self.n_total}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a monitor built with the same settings; recording continues."""
        try:
            key, data, steps, n_total = state["key"], state["data"], state["steps"], state["n_total"]
        except (KeyError, TypeError):
            raise ConfigError(f"monitor {self.key}: not a monitor state (needs key, data, steps, n_total)") from None
        if key != self.key:
            raise ConfigError(f"monitor state is for {key!r}, this monitor records {self.key!r}")
        data = torch.as_tensor(data).detach().cpu().to(self.out_dtype)
        steps = torch.as_tensor(steps, dtype=torch.int64).reshape(-1)
        if data.shape[0] != steps.numel():
            raise ConfigError(f"monitor state {key!r}: {data.shape[0]} rows but {steps.numel()} steps")
        self.n_total = None if n_total is None else int(n_total)
        self._chunks = [data.numpy().copy()] if data.shape[0] else []
        self._pending = []
        self._steps = [int(s) for s in steps.tolist()]

    def __repr__(self) -> str:
        idx = "all" if self.indices is None else self.indices.tolist()
        return f"{type(self).__name__}({self.key!r}, indices={idx}, every={self.every}, batch_index={self.batch_index})"


class SpikeMonitor(_Monitor):
    """Spikes of the chosen neurons (all when ``indices`` is None) of trial ``batch_index``, every step.

    Saved as ``spikes/<population>``: (T, n) uint8.
    """

    variable = "spikes"
    out_dtype = torch.uint8

    def __init__(self, population: str, indices: Sequence[int] | None = None, batch_index: int = 0):
        super().__init__(population, indices, batch_index)


class StateMonitor(_Monitor):
    """Any state variable (``v``, ``i``, ``rho``, or what the caller's lookup knows: ``weight``,
    ``eligibility``, traces, …) at the chosen indices, every ``every`` steps (steps with
    ``step % every == 0``).

    Saved as ``<variable>/<population>``: (T_k, n) float32. ``population`` may be a projection
    name (``"exc->exc"``); the indices are then synapse indices.
    """

    def __init__(self, variable: str, population: str, indices: Sequence[int] | None = None, every: int = 1,
                 batch_index: int = 0):
        self.variable = _check_name(variable, "StateMonitor.variable")
        if variable in RESERVED_PREFIXES:
            hint = {"spikes": " (use SpikeMonitor)", "rate": " (use PopulationRateMonitor)"}.get(variable, "")
            raise ConfigError(f"StateMonitor.variable = {variable!r}: reserved{hint}; reserved names "
                              f"{list(RESERVED_PREFIXES)}")
        super().__init__(population, indices, batch_index)
        self.every = _check_int(every, f"StateMonitor({variable!r}, {population!r}).every", 1)


class PopulationRateMonitor(_Monitor):
    """Population rate (Hz) of trial ``batch_index``: spikes of all N neurons / (N · bin duration),
    one value per bin of ``bin_steps`` steps (bin ``b`` covers steps ``b·bin_steps … (b+1)·bin_steps − 1``;
    a bin's duration counts the steps actually recorded in it). Needs ``dt`` (given to MonitorSet).

    Saved as ``rate/<population>``: (T_b,) float32; ``time/rate/<population>`` is each bin's start.
    """

    variable = "spikes"
    out_dtype = torch.float32

    def __init__(self, population: str, batch_index: int = 0, bin_steps: int = 1):
        super().__init__(population, None, batch_index)
        self.bin_steps = _check_int(bin_steps, f"PopulationRateMonitor({population!r}).bin_steps", 1)

    @property
    def key(self) -> str:
        return f"rate/{self.population}"

    def record(self, step: int, x: Tensor) -> None:
        self._push(step, self._row(x).sum())  # a 0-d count on the tensor's device; no sync here

    def _width(self) -> int:
        return 0

    def arrays(self, dt: float) -> dict[str, np.ndarray]:
        self._flush()
        counts = np.concatenate(self._chunks).astype(np.float64) if self._chunks else np.zeros(0)
        bins = np.asarray(self._steps, dtype=np.int64) // self.bin_steps
        ub, inv = np.unique(bins, return_inverse=True)
        total = np.bincount(inv, weights=counts, minlength=len(ub))
        n_steps = np.bincount(inv, minlength=len(ub))
        n = self.n_total or 1
        rate = (total / (n * n_steps * dt)).astype(np.float32) if len(ub) else np.zeros(0, np.float32)
        return {self.key: rate, f"time/{self.key}": ub.astype(np.float64) * self.bin_steps * dt,
                f"indices/{self.key}": self._column_indices()}

    def __repr__(self) -> str:
        return f"PopulationRateMonitor({self.population!r}, batch_index={self.batch_index}, bin_steps={self.bin_steps})"


class MonitorSet:
    """A group of monitors sharing one ``dt`` (s) and one file.

    :meth:`record` once per step with the step index and a lookup; :meth:`recordings` gives the
    arrays, :meth:`save` writes them (``recordings.npz``).
    """

    def __init__(self, monitors: Iterable[_Monitor], dt: float):
        self.monitors = list(monitors)
        for m in self.monitors:
            if not isinstance(m, _Monitor):
                raise ConfigError(f"MonitorSet: {m!r} is not a monitor (SpikeMonitor, StateMonitor, "
                                  "PopulationRateMonitor)")
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (np.isfinite(dt) and dt > 0):
            raise ConfigError(f"MonitorSet dt = {dt!r}: must be a positive number of seconds")
        self.dt = float(dt)
        keys = [m.key for m in self.monitors]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"MonitorSet: several monitors record {dup}; one monitor per variable and "
                              "population (merge their indices)")

    def __len__(self) -> int:
        return len(self.monitors)

    def __iter__(self):
        return iter(self.monitors)

    def record(self, step: int, lookup: Lookup) -> None:
        """Record step ``step`` (an integer >= 0; its time is ``step · dt``).

        ``lookup(variable, population)`` is called once per (variable, population) due this step.
        """
        cache: dict[tuple[str, str], Tensor] = {}
        for m in self.monitors:
            if not m.due(step):
                continue
            k = (m.variable, m.population)
            if k not in cache:
                cache[k] = lookup(*k)
            m.record(step, cache[k])

    def state_dict(self) -> dict[str, Any]:
        """Everything recorded so far, unflushed rows included, as a plain tree (dicts, lists, tensors,
        numbers; ``torch.load(weights_only=True)`` reads it). Recording is not disturbed."""
        return {"dt": self.dt, "monitors": [m.state_dict() for m in self.monitors]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a MonitorSet built from the same configuration (same monitors in
        the same order); recording then continues where the saved one stopped."""
        if not isinstance(state, Mapping) or "monitors" not in state:
            raise ConfigError("not a MonitorSet state (needs the key 'monitors')")
        saved = list(state["monitors"])
        keys = [s.get("key") if isinstance(s, Mapping) else None for s in saved]
        if keys != [m.key for m in self.monitors]:
            raise ConfigError(f"MonitorSet state records {keys}, this MonitorSet records "
                              f"{[m.key for m in self.monitors]}")
        if "dt" in state and float(state["dt"]) != self.dt:
            raise ConfigError(f"MonitorSet state has dt = {state['dt']!r}, this MonitorSet dt = {self.dt!r}")
        for m, s in zip(self.monitors, saved):
            m.load_state_dict(s)

    def recordings(self, meta: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Everything recorded so far, in the file layout (see the module docstring)."""
        out: dict[str, np.ndarray] = {}
        for m in self.monitors:
            out.update(m.arrays(self.dt))
        out["meta/dt"] = np.asarray(self.dt, dtype=np.float64)
        for k, v in (meta or {}).items():
            out[f"meta/{k}"] = np.asarray(v)
        return out

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
        """Write :meth:`recordings` to ``path`` (a ``.npz`` file, or a directory: ``<dir>/recordings.npz``).

        ``meta``: extra entries stored as ``meta/<key>``, e.g. ``{"highlight/exc->exc": [0]}`` (columns
        of the recorded synapses to highlight in plots) or ``{"v_th/exc": 1.0}``.
        """
        return save_recordings(path, self.recordings(meta))


def save_recordings(path: str | Path, recordings: Mapping[str, np.ndarray]) -> Path:
    """Write a recordings dict as an ``.npz`` atomically (temporary file + rename); returns the path."""
    path = Path(path)
    if path.is_dir():
        path = path / "recordings.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in recordings.items()})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_recordings(path: str | Path) -> dict[str, np.ndarray]:
    """Read a recordings file (or ``<dir>/recordings.npz``) into a dict of numpy arrays."""
    path = Path(path)
    if path.is_dir():
        path = path / "recordings.npz"
    if not path.is_file():
        raise ConfigError(f"recordings file {str(path)!r} not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            rec = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ConfigError(f"{str(path)!r} is not a readable recordings file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'corrupt'})") from None
    if "meta/dt" not in rec:
        raise ConfigError(f"{str(path)!r} is not a recordings file (no meta/dt)")
    return rec


# --------------------------------------------------------------------------- [monitor] TOML table

_TOP_KEYS = ("spikes", "rate", "state")
_ENTRY_KEYS = {
    "spikes": ("population", "indices", "batch_index"),
    "rate": ("population", "batch_index", "bin_steps"),
    "state": ("variable", "population", "indices", "every", "batch_index"),
}


def _entries(table: Mapping[str, Any], key: str) -> list:
    value = table[key]
    if not isinstance(value, list):
        kind = "tables" if key == "state" else "population names (or tables)"
        raise ConfigError(f"monitor.{key} = {value!r}: must be a list of {kind}")
    return value


def _entry_kwargs(key: str, i: int, entry: Any) -> dict:
    where = f"monitor.{key}[{i}]"
    if isinstance(entry, str) and key != "state":
        return {"population": entry}
    if not isinstance(entry, dict):
        allowed = "a table" if key == "state" else "a population name or a table"
        raise ConfigError(f"{where} = {entry!r}: must be {allowed} with keys {list(_ENTRY_KEYS[key])}")
    bad = sorted(set(entry) - set(_ENTRY_KEYS[key]))
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; allowed {list(_ENTRY_KEYS[key])}")
    required = ("variable", "population") if key == "state" else ("population",)
    missing = [r for r in required if r not in entry]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}; allowed {list(_ENTRY_KEYS[key])}")
    return dict(entry)


def monitors_from_config(table: Mapping[str, Any] | None) -> list[_Monitor]:
    """Monitors from a ``[monitor]`` TOML table, e.g.::

        [monitor]
        spikes = ["exc", "inh"]                      # or [{population = "exc", indices = [0, 1]}]
        rate = ["exc"]                               # or [{population = "exc", bin_steps = 10}]
        state = [{variable = "v", population = "exc", indices = [0, 1, 2], every = 1}]

    Unknown keys or bad values raise ConfigError naming the key and what is allowed.
    """
    if table is None:
        return []
    if not isinstance(table, Mapping):
        raise ConfigError(f"[monitor] must be a table with keys {list(_TOP_KEYS)} (got {table!r})")
    bad = sorted(set(table) - set(_TOP_KEYS))
    if bad:
        raise ConfigError(f"unknown key(s) monitor.{bad}; allowed {list(_TOP_KEYS)}")
    out: list[_Monitor] = []
    for key, cls in (("spikes", SpikeMonitor), ("rate", PopulationRateMonitor), ("state", StateMonitor)):
        if key not in table:
            continue
        for i, entry in enumerate(_entries(table, key)):
            kw = _entry_kwargs(key, i, entry)
            try:
                out.append(cls(**kw))
            except ConfigError as e:
                raise ConfigError(f"monitor.{key}[{i}]: {e}") from None
    keys = [m.key for m in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"[monitor]: {dup} recorded more than once; one entry per variable and population")
    return out
