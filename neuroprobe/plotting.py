"""Figures from run directories (matplotlib, Agg): learning curves, and spiking recordings.

Reads only files (``metrics.csv``, ``config.toml``, ``recordings.npz``), never live objects, so any
finished or interrupted run can be plotted with ``neuroprobe plot RUN_DIR``.

Spiking recordings (see :mod:`neuroprobe.monitors` for the file layout): :func:`plot_raster`
(raster + population rate), :func:`plot_membrane`, :func:`plot_state`, :func:`plot_weights`,
:func:`plot_traces`, :func:`plot_rates`, and :func:`plot_kernels` (the cascade eligibility kernels);
:func:`plot_recordings` makes every figure a ``recordings.npz`` allows. Each function draws into
``ax`` when given (else a new figure) and returns the Figure; :func:`save_figure` writes it.
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .errors import ConfigError, NeuroprobeError  # noqa: E402
from .rundir import read_metrics  # noqa: E402

__all__ = ["rolling_mean", "plot_run", "plot_recordings", "plot_raster", "plot_rates", "plot_membrane",
           "plot_state", "plot_kernels", "plot_weights", "plot_traces", "save_figure", "WEIGHT_VARIABLES"]

def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (shorter at the start), same length as x."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=float), 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_run(run_dir: str | Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write the figures of a run directory; returns the paths.

    ``learning_curve.<fmt>`` from ``metrics.csv``; when ``recordings.npz`` exists also every figure
    of :func:`plot_recordings` (always PNG and PDF, plus ``formats``). A directory with only
    recordings (a spiking run without metrics) is plotted too.
    """
    run_dir = Path(run_dir)
    has_metrics = (run_dir / "metrics.csv").is_file()
    has_recordings = (run_dir / "recordings.npz").is_file()
    if not has_metrics and not has_recordings:
        raise NeuroprobeError(f"{str(run_dir)!r} is not a run directory (no metrics.csv or recordings.npz)")
    paths: list[Path] = []
    if has_metrics:
        m = read_metrics(run_dir / "metrics.csv")
        if m and next(iter(m.values())):
            _check_metrics(run_dir / "metrics.csv", m)
            paths += _plot_learning_curve(run_dir, m, formats)
        elif not has_recordings:
            raise NeuroprobeError(f"{str(run_dir / 'metrics.csv')!r} has no rows yet")
    if has_recordings:
        paths += plot_recordings(run_dir, formats=tuple(dict.fromkeys((*formats, "png", "pdf"))))
    return paths


# the metrics layouts plot_run draws: the column that identifies it, and the columns it plots
_LAYOUTS = (("w_rewarded", ("time", "seed", "w_rewarded", "w_p99", "w_mean")),
            ("return", ("episode", "seed", "return")),
            ("accuracy", ("step", "accuracy", "train_accuracy")))


def _check_metrics(path: Path, m: dict) -> None:
    """A known layout whose plotted columns hold numbers; else one ConfigError line naming the file."""
    for tag, need in _LAYOUTS:
        if tag in m:
            break
    else:
        raise ConfigError(f"{str(path)!r}: columns {list(m)} are not a metrics layout neuroprobe plots (one with "
                          f"{' / '.join(t for t, _ in _LAYOUTS)})")
    missing = [c for c in need if c not in m]
    if missing:
        raise ConfigError(f"{str(path)!r}: column {tag!r} without {missing}")
    for c in need:
        for i, v in enumerate(m[c]):
            if not isinstance(v, float) or (c == "seed" and not math.isfinite(v)):
                raise ConfigError(f"{str(path)!r}: row {i + 2}, column {c!r} = {v!r} is not a "
                                  f"{'finite ' if c == 'seed' else ''}number")


def _run_config(run_dir: Path) -> dict:
    """The run's config.toml as a dict ({} when absent); one ConfigError line if unreadable."""
    path = run_dir / "config.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{str(path)!r}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{str(path)!r}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{str(path)!r}: nested too deeply") from None
    except OSError as e:
        raise ConfigError(f"{str(path)!r}: cannot be read ({e.strerror})") from None


def _table(cfg: dict, key: str) -> dict:
    v = cfg.get(key, {})
    return v if isinstance(v, dict) else {}


def _plot_learning_curve(run_dir: Path, m: dict, formats: tuple[str, ...]) -> list[Path]:
    cfg = _run_config(run_dir)
    window = _table(cfg, "run").get("rolling", 50)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 10**9:
        raise ConfigError(f"{str(run_dir / 'config.toml')!r}: 'run.rolling' = {window!r}: must be an integer >= 1")
    rule = _table(cfg, "rule")
    title = (f"{cfg.get('name', run_dir.name)} · {str(rule.get('name', '?')).upper()} · "
             f"{_table(cfg, 'task').get('name', '?')}")
    if rule.get("name") == "cet":  # the setting is what distinguishes CET runs
        title += f" · {rule.get('trace')} n={rule.get('order')} D={rule.get('delay')} lr={rule.get('lr')}"
    if rule.get("name") == "rstdp":
        title += f" · n={rule.get('order')} peak {rule.get('delay')} s"
    fig, ax = plt.subplots(figsize=(7, 4))
    if "w_rewarded" in m:  # distal reward: the rewarded synapse against the rest, per trial
        seeds, t = np.asarray(m["seed"]), np.asarray(m["time"], dtype=float)
        for i, s in enumerate(sorted(set(seeds))):
            sel = seeds == s
            ax.plot(t[sel], np.asarray(m["w_rewarded"], dtype=float)[sel], color=f"C{i}", lw=1.5,
                    label=f"rewarded synapse (trial {int(s)})")
            ax.plot(t[sel], np.asarray(m["w_p99"], dtype=float)[sel], color=f"C{i}", lw=0.8, ls="--",
                    label=f"99th percentile of the others (trial {int(s)})")
            ax.plot(t[sel], np.asarray(m["w_mean"], dtype=float)[sel], color=f"C{i}", lw=0.8, ls=":",
                    label=f"mean of the others (trial {int(s)})")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("|weight| (current jump per spike)")
    elif "return" in m:
        seeds, ret, ep = np.asarray(m["seed"]), np.asarray(m["return"]), np.asarray(m["episode"])
        curves = []
        for s in sorted(set(seeds)):
            sel = seeds == s
            r = rolling_mean(ret[sel], window)
            ax.plot(ep[sel], r, lw=0.8, alpha=0.5, label=f"seed {int(s)}")
            curves.append(r)
        n = min(len(c) for c in curves)
        ax.plot(np.arange(n), np.mean([c[:n] for c in curves], 0), color="k", lw=2, label="mean over seeds")
        ax.set_xlabel("episode")
        ax.set_ylabel(f"return (rolling mean of {window})")
    else:
        ax.plot(m["step"], m["accuracy"], "o-", ms=3, label="test accuracy")
        ax.plot(m["step"], m["train_accuracy"], lw=1, alpha=0.7, label="train accuracy (since last eval)")
        ax.set_xlabel("step (one input per stream per step)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    paths = []
    for fmt in formats:
        p = run_dir / f"learning_curve.{fmt}"
        fig.savefig(p, dpi=120)
        paths.append(p)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- spiking recordings

Recordings = Mapping[str, np.ndarray]
_NAMESPACES = ("spikes", "rate", "time", "indices", "meta")
WEIGHT_VARIABLES = ("weight", "w")
_TRACE_PREFIXES = ("elig", "trace")


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 120,
                close: bool = True) -> list[Path]:
    """Write ``<stem>.<fmt>`` for each format; returns the paths (closes the figure by default)."""
    stem = Path(stem)
    paths = []
    for fmt in formats:
        p = stem.parent / f"{stem.name}.{fmt}"
        fig.savefig(p, dpi=dpi)
        paths.append(p)
    if close:
        plt.close(fig)
    return paths


def _dt(rec: Recordings) -> float:
    if "meta/dt" not in rec:
        raise ConfigError("recordings have no meta/dt (the integration step)")
    return float(rec["meta/dt"])


def _variables(rec: Recordings) -> dict[str, list[str]]:
    """{variable: [populations]} of the recorded state variables (not spikes/rate/time/indices/meta)."""
    out: dict[str, list[str]] = {}
    for k in rec:
        var, _, pop = k.partition("/")
        if pop and var not in _NAMESPACES:
            out.setdefault(var, []).append(pop)
    return out


def _recorded(rec: Recordings, prefix: str) -> list[str]:
    return [k.split("/", 1)[1] for k in rec if k.startswith(prefix + "/")]


def _get(rec: Recordings, key: str) -> np.ndarray:
    if key not in rec:
        have = sorted(k for k in rec if k.split("/", 1)[0] not in ("time", "indices", "meta"))
        raise ConfigError(f"no {key!r} in the recordings; have {have}")
    return np.asarray(rec[key])


def _time(rec: Recordings, key: str) -> np.ndarray:
    n = len(rec[key])
    t = rec.get(f"time/{key}")
    return np.asarray(t, dtype=float) if t is not None else np.arange(n) * _dt(rec)


def _columns(rec: Recordings, key: str) -> np.ndarray:
    idx = rec.get(f"indices/{key}")
    return np.asarray(idx) if idx is not None else np.arange(np.asarray(rec[key]).shape[1])


def _new_ax(ax: Axes | None, figsize=(8, 4)) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _legend(ax: Axes, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**{"fontsize": 7, "loc": "best", **kw})


def plot_rates(rec: Recordings, populations: Sequence[str] | None = None, ax: Axes | None = None,
               window_s: float = 0.01) -> Figure:
    """Population rates (Hz) vs time (s): ``rate/<pop>`` where recorded, else the rate of the
    recorded neurons from ``spikes/<pop>``; a trailing mean over ``window_s`` seconds drawn over it."""
    dt = _dt(rec)
    pops = list(populations) if populations is not None else list(dict.fromkeys(
        _recorded(rec, "spikes") + _recorded(rec, "rate")))
    fig, ax = _new_ax(ax, (8, 2.5))
    for i, pop in enumerate(pops):
        if f"rate/{pop}" in rec:
            r, t, label = np.asarray(rec[f"rate/{pop}"], float), _time(rec, f"rate/{pop}"), pop
        else:
            S = _get(rec, f"spikes/{pop}")
            if S.shape[1] == 0:
                continue
            r, t = S.sum(1) / S.shape[1] / dt, _time(rec, f"spikes/{pop}")
            label = f"{pop} ({S.shape[1]} recorded neurons)"
        step = float(np.median(np.diff(t))) if len(t) > 1 else dt
        window = max(1, int(round(window_s / step))) if step > 0 else 1
        if window > 1:
            ax.plot(t, r, color=f"C{i}", lw=0.5, alpha=0.3)
            ax.plot(t, rolling_mean(r, window), color=f"C{i}", lw=1.5,
                    label=f"{label}, {window * step * 1e3:g} ms mean")
        else:
            ax.plot(t, r, color=f"C{i}", lw=1, label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("rate (Hz)")
    ax.set_title("Population rate")
    ax.grid(alpha=0.3)
    _legend(ax, loc="upper right")
    return fig


def plot_raster(rec: Recordings, populations: Sequence[str] | None = None,
                ax: Axes | Sequence[Axes] | None = None, rate_window_s: float = 0.01) -> Figure:
    """Spike raster (time in s vs neuron index; populations stacked and colour-coded) with the
    population rates (Hz) below.

    ``ax``: None (new figure, raster above rate), one Axes (raster only) or a pair (raster, rate).
    """
    pops = list(populations) if populations is not None else _recorded(rec, "spikes")
    if not pops:
        raise ConfigError("no spikes recorded (no 'spikes/<population>' in the recordings)")
    if ax is None:
        fig, (ax_r, ax_rate) = plt.subplots(2, 1, sharex=True, figsize=(8, 5.5), height_ratios=[3, 1])
    elif isinstance(ax, Axes):
        fig, ax_r, ax_rate = ax.figure, ax, None
    else:
        ax_r, ax_rate = ax
        fig = ax_r.figure
    arrays = [(pop, _get(rec, f"spikes/{pop}")) for pop in pops]
    total = sum(S.shape[1] for _, S in arrays)
    ms = float(np.clip(300.0 / max(total, 1), 1.0, 6.0))
    offset = 0
    for i, (pop, S) in enumerate(arrays):
        t = _time(rec, f"spikes/{pop}")
        rows, cols = np.nonzero(S)
        ax_r.plot(t[rows], cols + offset, "|", color=f"C{i}", ms=ms, mew=0.8,
                  label=f"{pop} ({S.shape[1]} neurons, {len(rows)} spikes)")
        if offset:
            ax_r.axhline(offset - 0.5, color="0.6", lw=0.5)
        offset += S.shape[1]
    ax_r.set_ylim(-0.5, max(offset, 1) - 0.5)
    ax_r.set_ylabel("neuron index (populations stacked)")
    ax_r.set_title("Spike raster")
    _legend(ax_r, loc="upper right", markerscale=max(1.0, 6.0 / ms))
    if ax_rate is None:
        ax_r.set_xlabel("time (s)")
    else:
        plot_rates(rec, pops, ax=ax_rate, window_s=rate_window_s)
        if ax is None:
            ax_r.tick_params(labelbottom=False)
            fig.tight_layout()
    return fig


def plot_state(rec: Recordings, variable: str, population: str, ax: Axes | None = None, max_lines: int = 20,
               ylabel: str | None = None, title: str | None = None) -> Figure:
    """Any recorded state variable ``<variable>/<population>`` of its recorded neurons vs time (s)."""
    key = f"{variable}/{population}"
    X = _get(rec, key)
    t, cols = _time(rec, key), _columns(rec, key)
    fig, ax = _new_ax(ax)
    for j in range(min(X.shape[1], max_lines)):
        ax.plot(t, X[:, j], lw=0.8, label=f"neuron {int(cols[j])}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel or f"{variable} (model units)")
    shown = "" if X.shape[1] <= max_lines else f" (first {max_lines} of {X.shape[1]})"
    ax.set_title(title or f"{variable} · {population}{shown}")
    ax.grid(alpha=0.3)
    _legend(ax, ncol=2 if min(X.shape[1], max_lines) > 6 else 1)
    return fig


def plot_membrane(rec: Recordings, population: str, v_th: float | None = None, ax: Axes | None = None,
                  max_lines: int = 20) -> Figure:
    """Membrane potentials ``v/<population>`` of the recorded neurons; the threshold as a dashed
    line (``v_th``, else ``meta/v_th/<population>`` when stored)."""
    n = _get(rec, f"v/{population}").shape[1]
    shown = "" if n <= max_lines else f" (first {max_lines} of {n})"
    fig = plot_state(rec, "v", population, ax=ax, max_lines=max_lines,
                     ylabel="membrane potential v (model units)", title=f"Membrane potential · {population}{shown}")
    ax = fig.axes[0] if ax is None else ax
    if v_th is None and f"meta/v_th/{population}" in rec:
        v_th = float(rec[f"meta/v_th/{population}"])
    if v_th is not None:
        ax.axhline(v_th, ls="--", color="k", lw=1, label=f"threshold v_th = {v_th:g}")
        _legend(ax, ncol=2 if min(n, max_lines) > 6 else 1)
    return fig


def plot_kernels(orders: Sequence[int] = (1, 2, 6), delay_s: float = 0.5, dt: float = 1e-3,
                 length_s: float | None = None, normalize: str | None = "peak", ax: Axes | None = None) -> Figure:
    """The eligibility kernels of cascade orders ``orders`` (time in s), peaks marked.

    ``delay_s``: the cascade delay D (s; orders >= 2 peak there); ``length_s``: window shown
    (default 4 D); ``normalize``: "peak" | "area" | None, as in :func:`~neuroprobe.traces.kernels.cascade_kernel`.
    """
    from .traces.kernels import cascade_kernel

    for name, value in (("delay_s", delay_s), ("dt", dt)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (np.isfinite(value) and value > 0):
            raise ConfigError(f"plot_kernels {name} = {value!r}: must be a positive number of seconds")
    length_s = 4 * delay_s if length_s is None else length_s
    length = int(round(length_s / dt)) + 1
    fig, ax = _new_ax(ax, (7, 4))
    t = np.arange(length) * dt
    for i, order in enumerate(orders):
        h = cascade_kernel(order, delay_s / dt, length, normalize=normalize).numpy()
        k = int(np.argmax(h))
        ax.plot(t, h, color=f"C{i}", lw=1.5, label=f"order {order}")
        ax.plot(t[k], h[k], "o", color=f"C{i}", ms=6, label=f"peak of order {order} at {t[k]:.3g} s")
    ax.axvline(delay_s, color="0.5", ls=":", lw=1, label=f"delay D = {delay_s:g} s")
    norm = {"peak": "peak = 1", "area": "area = 1"}.get(normalize or "none", "unnormalised")
    ax.set_xlabel("time since the event (s)")
    ax.set_ylabel(f"kernel h(t) (dimensionless, {norm})")
    ax.set_title(f"Cascade eligibility kernels (D = {delay_s:g} s, dt = {dt * 1e3:g} ms)")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _plot_synapses(rec: Recordings, key: str, highlight: Sequence[int] | None, ax: Axes | None, ylabel: str,
                   title: str) -> Figure:
    X = _get(rec, key).astype(float)
    t, cols = _time(rec, key), _columns(rec, key)
    projection = key.split("/", 1)[1]
    if highlight is None and f"meta/highlight/{projection}" in rec:
        highlight = np.atleast_1d(rec[f"meta/highlight/{projection}"])
    hl = [int(h) for h in np.atleast_1d(highlight)] if highlight is not None else []
    bad = [h for h in hl if not 0 <= h < X.shape[1]]
    if bad:
        raise ConfigError(f"highlight {bad} for {key}: must be columns of the recorded synapses (0..{X.shape[1] - 1})")
    rest = [j for j in range(X.shape[1]) if j not in hl]
    fig, ax = _new_ax(ax)
    if rest:
        R = X[:, rest]
        if R.shape[0]:
            lo, med, hi = np.percentile(R, [5, 50, 95], axis=1)
        else:
            lo = med = hi = np.zeros(0)
        ax.fill_between(t, lo, hi, color="0.6", alpha=0.35, lw=0, label=f"other synapses, 5–95 % ({len(rest)})")
        ax.plot(t, med, color="0.25", lw=1.2, label="other synapses, median")
    for i, h in enumerate(hl):
        ax.plot(t, X[:, h], color=f"C{(i + 3) % 10}", lw=2, label=f"synapse {int(cols[h])} (highlighted)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def plot_weights(rec: Recordings, projection: str, highlight: Sequence[int] | None = None, ax: Axes | None = None,
                 variable: str = "weight") -> Figure:
    """Weight evolution of ``<variable>/<projection>``: the highlighted synapses (columns of the
    recorded synapses; default ``meta/highlight/<projection>``) against the median and 5–95 % band
    of the others."""
    return _plot_synapses(rec, f"{variable}/{projection}", highlight, ax, "weight w (model units)",
                          f"Weight evolution · {projection}")


def plot_traces(rec: Recordings, projection: str, highlight: Sequence[int] | None = None, ax: Axes | None = None,
                variable: str = "eligibility") -> Figure:
    """Eligibility traces ``<variable>/<projection>`` over time, highlighted synapses vs the others
    (median and 5–95 % band), as :func:`plot_weights`."""
    return _plot_synapses(rec, f"{variable}/{projection}", highlight, ax, f"{variable} trace (a.u.)",
                          f"{variable.capitalize()} traces · {projection}")


def _check_recordings(path: Path, rec: Recordings) -> None:
    """The layout of :mod:`neuroprobe.monitors` (shapes, numbers, finite times); else one ConfigError
    line naming the file and the entry."""
    def bad(key: str, what: str) -> ConfigError:
        a = np.asarray(rec[key])
        return ConfigError(f"{str(path)!r}: {key!r} (shape {a.shape}, {a.dtype}) {what}")

    def numeric(key: str) -> np.ndarray:
        a = np.asarray(rec[key])
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise bad(key, "must hold numbers")
        return a

    def positive_scalar(key: str, limit: float = 1e9) -> float:
        a = numeric(key)
        if a.size != 1 or not (np.isfinite(a).all() and 0 < float(a.reshape(-1)[0]) <= limit):
            raise bad(key, f"must be one finite number in (0, {limit:g}]")
        return float(a.reshape(-1)[0])

    dt = positive_scalar("meta/dt", 1e3)
    for key in rec:
        ns, slash, rest = key.partition("/")
        if slash and (not ns or not rest):
            raise ConfigError(f"{str(path)!r}: entry {key!r} is not '<kind>/<name>' (e.g. 'spikes/exc')")
    data = [k for k in rec if k.partition("/")[2] and k.partition("/")[0] not in ("meta", "time", "indices")]
    for key in data:
        a = numeric(key)
        if key.startswith("rate/"):
            if a.ndim != 1:
                raise bad(key, "must be 1-D (one value per bin)")
        elif a.ndim != 2:
            raise bad(key, "must be 2-D (one row per recorded step, one column per neuron or synapse)")
    for key in rec:
        ns, _, rest = key.partition("/")
        if ns not in ("time", "indices") or not rest:
            continue
        a = numeric(key)
        if a.ndim != 1:
            raise bad(key, "must be 1-D")
        if ns == "time" and not np.isfinite(a).all():
            raise bad(key, "must hold finite times")
        if ns == "indices" and not np.issubdtype(a.dtype, np.integer):
            raise bad(key, "must hold integers")
        of = np.asarray(rec[rest]) if rest in data else None
        if of is not None and ((ns == "time" and len(a) != len(of)) or
                               (ns == "indices" and of.ndim == 2 and len(a) != of.shape[1])):
            raise bad(key, f"does not match {rest!r} (shape {of.shape})")
    for key in rec:
        if key.startswith(("meta/v_th/", "meta/highlight/")):
            a = numeric(key)
            if key.startswith("meta/v_th/") and (a.size != 1 or not np.isfinite(a).all()):
                raise bad(key, "must be one finite number")
            if key.startswith("meta/highlight/") and not np.issubdtype(a.dtype, np.integer):
                raise bad(key, "must hold integers")
    if "meta/kernel/delay_s" in rec:
        positive_scalar("meta/kernel/delay_s", 1e4 * dt)
        if "meta/kernel/orders" in rec:
            a = numeric("meta/kernel/orders")
            if not np.issubdtype(a.dtype, np.integer) or a.size > 16 or ((a < 1) | (a > 64)).any():
                raise bad("meta/kernel/orders", "must hold at most 16 integers in 1 .. 64")


def _stacked(n: int, height: float = 3.0) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(n, 1, figsize=(8, height * n), squeeze=False)
    return fig, list(axes[:, 0])


def plot_recordings(run_dir: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Every figure the recordings allow, written next to ``recordings.npz``; returns the paths.

    ``raster`` (spikes; rates below), ``rate`` (rates without spikes), ``membrane`` (v),
    ``weights`` (weight/w), ``traces`` (elig*/trace*), ``state_<var>`` (any other variable, e.g.
    i, rho), ``kernels`` (when ``meta/kernel/delay_s`` is stored; orders from ``meta/kernel/orders``).
    ``run_dir``: a run directory or the ``.npz`` file itself.
    """
    from .monitors import load_recordings

    path = Path(run_dir)
    rec_path = path if path.suffix == ".npz" else path / "recordings.npz"
    out_dir = rec_path.parent
    rec = load_recordings(rec_path)
    _check_recordings(rec_path, rec)
    name = out_dir.name
    paths: list[Path] = []
    variables = _variables(rec)
    if _recorded(rec, "spikes"):
        fig = plot_raster(rec)
        fig.suptitle(name, fontsize=8, x=0.99, ha="right")
        paths += save_figure(fig, out_dir / "raster", formats)
    elif _recorded(rec, "rate"):
        fig = plot_rates(rec)
        fig.tight_layout()
        paths += save_figure(fig, out_dir / "rate", formats)

    def stacked(pops: list[tuple[str, str]], draw, stem: str) -> None:
        fig, axes = _stacked(len(pops))
        for ax, (var, pop) in zip(axes, pops):
            draw(var, pop, ax)
        fig.tight_layout()
        paths.extend(save_figure(fig, out_dir / stem, formats))

    if "v" in variables:
        stacked([("v", p) for p in variables["v"]], lambda v, p, ax: plot_membrane(rec, p, ax=ax), "membrane")
    weights = [(v, p) for v in variables if v in WEIGHT_VARIABLES for p in variables[v]]
    if weights:
        stacked(weights, lambda v, p, ax: plot_weights(rec, p, ax=ax, variable=v), "weights")
    traces = [(v, p) for v in variables if v.startswith(_TRACE_PREFIXES) for p in variables[v]]
    if traces:
        stacked(traces, lambda v, p, ax: plot_traces(rec, p, ax=ax, variable=v), "traces")
    for var, pops in variables.items():
        if var == "v" or var in WEIGHT_VARIABLES or var.startswith(_TRACE_PREFIXES):
            continue
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in var)
        stacked([(var, p) for p in pops], lambda v, p, ax: plot_state(rec, v, p, ax=ax), f"state_{safe}")
    if "meta/kernel/delay_s" in rec:
        orders = tuple(int(o) for o in np.atleast_1d(rec.get("meta/kernel/orders", np.array([1, 2, 6]))))
        fig = plot_kernels(orders, float(rec["meta/kernel/delay_s"]), _dt(rec))
        fig.tight_layout()
        paths += save_figure(fig, out_dir / "kernels", formats)
    if not paths:
        raise NeuroprobeError(f"{str(rec_path)!r} holds nothing to plot (no spikes, rates or state variables)")
    return paths
