"""``neuroprobe report DIR``: the table, figures and one HTML page of a sweep directory.

Reads only files: ``DIR/sweep.toml`` (what was swept), ``DIR/sweep.csv`` (one row per grid point x
seed, with its status and final metric) and, for the learning curves, the run directories it names.
A sweep still running can be reported: pending and failed rows are counted per point, never dropped.

Writes, under ``DIR/report`` (or ``out``): ``table.md`` (caption + markdown table), ``table.csv`` (the
same, machine-readable, full precision), ``figures/{curves,heatmap,finals}.png`` and ``report.html``
(one self-contained page, see :mod:`.report_html`). Statistics over seeds: :mod:`.stats`.
"""
from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..tomlio import read_toml
from .stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, SeedStats, seed_stats

__all__ = ["SweepRow", "Sweep", "PointSummary", "read_sweep", "summarize", "select_best", "format_table", "write_report"]

SWEEP_TOML, SWEEP_CSV, REPORT_DIR = "sweep.toml", "sweep.csv", "report"
# sweep.csv columns around the value columns (the grid keys, then the extra points' keys)
_HEAD, _TAIL = ["point"], ["seed", "run", "metric", "final", "wall_s", "status", "error"]


@dataclass
class SweepRow:
    """One row of sweep.csv: one seed of one point. ``final``/``wall_s`` are NaN where empty;
    ``values`` maps every key column to its cell ('' where the point does not set the key)."""

    point: int
    values: dict[str, str]
    seed: int
    run: str
    metric: str
    final: float
    wall_s: float
    status: str
    error: str


@dataclass
class Sweep:
    """A sweep directory, read: ``spec`` is sweep.toml, ``keys`` the value columns of sweep.csv in
    order (grid keys first), ``grid`` the grid (key -> values as strings, in sweep.toml's order)."""

    path: Path
    spec: dict
    keys: list[str]
    grid: dict[str, list[str]]
    rows: list[SweepRow]
    date: str = ""


@dataclass
class PointSummary:
    """One point of the sweep over its seeds.

    finals: {seed: final} of the done rows (NaN where a done run wrote no value); stats: over their
    finite values; wall_s: mean wall clock (s) over the point's finished runs, a batched run (several
    seeds in one process, hence the same run dir on several rows) counted once; on_grid: the point is
    a cell of the grid (not an extra point), so it belongs in the heat map.
    """

    point: int
    values: dict[str, str]
    metric: str
    finals: dict[int, float]
    stats: SeedStats
    n_done: int
    n_failed: int
    n_pending: int
    wall_s: float
    on_grid: bool
    runs: dict[int, str] = field(default_factory=dict)  # {seed: run dir relative to DIR} of the done rows

    def label(self, keys: list[str] | None = None, sep: str = ", ") -> str:
        """``key=value`` of the keys this point sets (all of ``keys`` when given), or ``point N``."""
        items = [f"{k}={v}" for k, v in self.values.items() if v != "" and (keys is None or k in keys)]
        return sep.join(items) if items else f"point {self.point}"


# --------------------------------------------------------------------------- reading

def _where(sweep_dir: Path) -> str:
    return f"DIR {str(sweep_dir)!r}"


def _float(cell: str, what: str) -> float:
    if cell.strip() == "":
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise ConfigError(f"{what} = {cell!r} is not a number") from None


def _int(cell: str, what: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ConfigError(f"{what} = {cell!r} is not an integer") from None


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{str(path)!r}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise ConfigError(f"{str(path)!r} is not a readable CSV ({e})") from None
    except OSError as e:
        raise ConfigError(f"{str(path)!r} cannot be read ({e.strerror or type(e).__name__})") from None
    if not lines:
        raise ConfigError(f"{str(path)!r} is empty (no header)")
    return lines[0], lines[1:]


def _grid(spec: dict, path: Path) -> dict[str, list[str]]:
    grid = spec.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise ConfigError(f"{str(path)!r}: 'grid' must be a table of KEY = [values]")
    return {str(k): [str(x) for x in v] for k, v in grid.items()}


def read_sweep(sweep_dir: str | Path) -> Sweep:
    """Read DIR/sweep.toml and DIR/sweep.csv; one-line ConfigError naming DIR or the file if either is
    missing or malformed (a row's cell that is not what the column holds is named by row and column)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise ConfigError(f"{_where(sweep_dir)} not found")
    if not sweep_dir.is_dir():
        raise ConfigError(f"{_where(sweep_dir)} is not a directory")
    csv_path, toml_path = sweep_dir / SWEEP_CSV, sweep_dir / SWEEP_TOML
    for p in (csv_path, toml_path):
        if not p.is_file():
            raise ConfigError(f"{_where(sweep_dir)}: no {p.name} (not a sweep directory; run neuroprobe sweep first)")
    spec = read_toml(toml_path, "sweep file")
    grid = _grid(spec, toml_path)
    header, lines = _read_csv(csv_path)
    n = len(header)
    if n < len(_HEAD) + len(_TAIL) or header[:1] != _HEAD or header[-len(_TAIL):] != _TAIL:
        raise ConfigError(f"{str(csv_path)!r}: columns {header} are not a sweep table (expected "
                          f"{', '.join(_HEAD + ['<keys>'] + _TAIL)})")
    keys = header[1:n - len(_TAIL)]
    missing = [k for k in grid if k not in keys]
    if missing:
        raise ConfigError(f"{str(csv_path)!r} has no column for the grid key(s) {missing} of {SWEEP_TOML}")
    rows = []
    for i, cells in enumerate(lines, start=2):
        if not cells:
            continue
        if len(cells) != n:
            raise ConfigError(f"{str(csv_path)!r}: row {i} has {len(cells)} cells, the header {n}")
        c = dict(zip(header, cells))
        what = f"{str(csv_path)!r}: row {i}, column"
        rows.append(SweepRow(point=_int(c["point"], f"{what} 'point'"), values={k: c[k] for k in keys},
                             seed=_int(c["seed"], f"{what} 'seed'"), run=c["run"], metric=c["metric"],
                             final=_float(c["final"], f"{what} 'final'"), wall_s=_float(c["wall_s"], f"{what} 'wall_s'"),
                             status=c["status"].strip(), error=c["error"]))
    date = next((str(spec[k]) for k in ("date", "created", "started") if k in spec), "")
    if not date:  # the table's last rewrite: when the newest result came in
        date = _dt.datetime.fromtimestamp(csv_path.stat().st_mtime).isoformat(sep=" ", timespec="minutes")
    return Sweep(path=sweep_dir, spec=spec, keys=keys, grid=grid, rows=rows, date=date)


# --------------------------------------------------------------------------- summarizing

def _on_grid(values: dict[str, str], grid: dict[str, list[str]]) -> bool:
    return bool(grid) and all(values.get(k, "") in vs for k, vs in grid.items()) \
        and all(v == "" for k, v in values.items() if k not in grid)


def summarize(sweep: Sweep) -> list[PointSummary]:
    """One :class:`PointSummary` per point index of sweep.csv, in point order."""
    by_point: dict[int, list[SweepRow]] = {}
    for r in sweep.rows:
        by_point.setdefault(r.point, []).append(r)
    out, seen_cells = [], set()
    for p in sorted(by_point):
        rows = by_point[p]
        done = [r for r in rows if r.status == "done"]
        finals = {r.seed: r.final for r in done}
        walls: dict[str, float] = {}
        for r in done:  # a batched run repeats its wall clock on each of its seeds: count it once
            if math.isfinite(r.wall_s):
                walls.setdefault(r.run, r.wall_s)
        metrics = list(dict.fromkeys(r.metric for r in done if r.metric))
        cell = tuple(rows[0].values.get(k, "") for k in sweep.grid)
        on_grid = _on_grid(rows[0].values, sweep.grid) and cell not in seen_cells  # a repeated cell: first only
        if on_grid:
            seen_cells.add(cell)
        out.append(PointSummary(
            point=p, values=dict(rows[0].values), metric=" / ".join(metrics), finals=finals,
            stats=seed_stats(list(finals.values())), n_done=len(done),
            n_failed=sum(r.status == "failed" for r in rows),
            n_pending=sum(r.status not in ("done", "failed") for r in rows),
            wall_s=sum(walls.values()) / len(walls) if walls else math.nan, on_grid=on_grid,
            runs={r.seed: r.run for r in done}))
    return out


def select_best(sweep: Sweep, points: list[PointSummary], key: str, minimize: bool = False
                ) -> tuple[Sweep, list[PointSummary]]:
    """Reduce the grid by ``key``: for each setting of the other grid keys keep the point whose value
    of ``key`` gives the best mean final over seeds (the largest, or the smallest with ``minimize``;
    points without a finite mean lose). This is how the CET paper picks a learning rate per setting.

    Returns the sweep with ``key`` out of its grid (its column stays: the chosen value) and the kept
    points (every off-grid point is kept). ConfigError if ``key`` is not a grid key."""
    if key not in sweep.grid:
        raise ConfigError(f"--best {key}: not a grid key of this sweep; grid keys: {list(sweep.grid)}")
    rest = [k for k in sweep.grid if k != key]
    best: dict[tuple, PointSummary] = {}
    sign = -1.0 if minimize else 1.0
    score = (lambda p: sign * p.stats.mean if p.stats.n and math.isfinite(p.stats.mean) else -math.inf)
    for p in points:
        if p.on_grid:
            cell = tuple(p.values.get(k, "") for k in rest)
            if cell not in best or score(p) > score(best[cell]):
                best[cell] = p
    kept = [p for p in points if not p.on_grid or best.get(tuple(p.values.get(k, "") for k in rest)) is p]
    grid = {k: v for k, v in sweep.grid.items() if k != key}
    spec = {**sweep.spec, "best": {"key": key, "minimize": bool(minimize), "over": sweep.grid[key]}}
    return Sweep(sweep.path, spec, sweep.keys, grid, sweep.rows, sweep.date), kept


# --------------------------------------------------------------------------- the table

def _g(v: float, digits: int = 4) -> str:
    return "—" if not math.isfinite(v) else f"{v:.{digits}g}"


def _decimals(sd: float) -> int | None:
    """Decimals that show ``sd`` to two significant digits (the mean and CI get as many); None when
    there is no spread to go by (n < 2 or sd = 0): then 4 significant digits."""
    if not math.isfinite(sd) or sd <= 0:
        return None
    return min(12, max(0, 1 - math.floor(math.log10(sd))))


def _num(v: float, dec: int | None) -> str:
    return _g(v) if dec is None or not math.isfinite(v) else f"{v:.{dec}f}"


def table_cells(sweep: Sweep, points: list[PointSummary]) -> tuple[list[str], list[list[str]]]:
    """The table as text cells: (header, rows); table.md and report.html show exactly these."""
    show_pending = any(p.n_pending for p in points)
    header = (["point"] + sweep.keys + ["metric", "n", "mean ± sd", f"{CONFIDENCE:.0%} CI of the mean", "failed"]
              + (["pending"] if show_pending else []) + ["wall s / run"])
    rows = []
    for p in points:
        s = p.stats
        dec = _decimals(s.sd)
        ms = "—" if s.n == 0 else _num(s.mean, dec) + (f" ± {_num(s.sd, dec)}" if s.n >= 2 else "")
        ci = "—" if s.ci is None else f"[{_num(s.ci[0], dec)}, {_num(s.ci[1], dec)}]"
        n = str(p.n_done) + (f" ({p.n_done - s.n} without value)" if s.n < p.n_done else "")
        rows.append([str(p.point)] + [p.values.get(k, "") for k in sweep.keys]
                    + [p.metric or "—", n, ms, ci, str(p.n_failed)]
                    + ([str(p.n_pending)] if show_pending else []) + [_g(p.wall_s, 3)])
    return header, rows


def table_note() -> str:
    """What the table's numbers are (one line, under the table)."""
    return (f"n: seeds done; mean ± sd over seeds (sd: sample sd, ddof = 1, shown to 2 significant digits, the "
            f"mean and CI to as many decimals; only the mean when n = 1); "
            f"{CONFIDENCE:.0%} CI: percentile bootstrap of the mean over seeds (scipy.stats.bootstrap, "
            f"{BOOTSTRAP_RESAMPLES} resamples, rng seed {BOOTSTRAP_SEED}; — when n = 1); "
            f"wall s / run: mean wall clock of the point's finished runs (a batched run counted once).")


def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_table(sweep: Sweep, points: list[PointSummary]) -> str:
    """The markdown table (one row per point) followed by :func:`table_note`."""
    header, rows = table_cells(sweep, points)
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---:" if h in ("point", "n", "failed", "pending") else "---" for h in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + table_note() + "\n"


def caption(sweep: Sweep, points: list[PointSummary]) -> str:
    """Sweep name, config, metric, seeds, date: one line above the table."""
    spec = sweep.spec
    metrics = list(dict.fromkeys(p.metric for p in points if p.metric))
    seeds = spec.get("seeds", sorted({r.seed for r in sweep.rows}))
    best = spec.get("best")
    chosen = (f" · {best['key']} chosen per setting from {best['over']} ({'smallest' if best['minimize'] else 'largest'}"
              f" mean)" if isinstance(best, dict) else "")
    return (f"Sweep {spec.get('name', sweep.path.name)!s} · config {spec.get('config', '?')!s} · "
            f"metric: {' / '.join(metrics) or '?'} · seeds {seeds}{chosen} · {sweep.date}")


def _csv_float(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else repr(float(v))


def _write_table_csv(path: Path, sweep: Sweep, points: list[PointSummary]) -> None:
    header = (["point"] + sweep.keys + ["on_grid", "metric", "n_done", "n_failed", "n_pending", "n", "mean", "sd",
                                        "ci_low", "ci_high", "wall_s_mean"])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for p in points:
            s = p.stats
            w.writerow([p.point] + [p.values.get(k, "") for k in sweep.keys]
                       + [int(p.on_grid), p.metric, p.n_done, p.n_failed, p.n_pending, s.n, _csv_float(s.mean),
                          _csv_float(s.sd), _csv_float(s.ci[0] if s.ci else None),
                          _csv_float(s.ci[1] if s.ci else None), _csv_float(p.wall_s)])
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the report

def regenerate_command(sweep_dir: Path, out: Path | None, best: str | None = None, minimize: bool = False) -> str:
    """``neuroprobe report DIR [--out OUT] [--best KEY [--minimize]]`` with absolute paths: it works
    from any directory."""
    cmd = "neuroprobe report " + shlex.quote(str(sweep_dir.absolute()))
    cmd += f" --out {shlex.quote(str(out.absolute()))}" if out is not None else ""
    return cmd + (f" --best {shlex.quote(best)}" + (" --minimize" if minimize else "") if best else "")


def write_report(sweep_dir: str | Path, out: str | Path | None = None, sections: list[dict] | None = None,
                 title: str | None = None, best: str | None = None, minimize: bool = False,
                 command: str | None = None) -> dict:
    """Write the report of a sweep directory; returns {"table": markdown str, "table_md", "table_csv",
    "html": Path, "figures": [Path]}.

    ``out``: the report directory (default DIR/report). ``sections``: extra results shown first on the
    HTML page (see :func:`.report_html.render_sections`; ``make demo`` adds its spiking experiments
    this way), ``title``: the page's title. ``best``: a grid key chosen per setting of the other keys
    (:func:`select_best`, largest mean final, or smallest with ``minimize``): one row per setting, and
    the heat map over the other two keys. ``command``: what regenerates the page, when not ``neuroprobe
    report`` (a script that adds ``sections``). One-line ConfigError when DIR is not a sweep directory or
    has no finished run yet.
    """
    from .report_figures import write_figures  # matplotlib: imported only when a report is written
    from .report_html import render_html

    sweep_dir = Path(sweep_dir)
    sweep = read_sweep(sweep_dir)
    if not any(r.status == "done" for r in sweep.rows):
        failed = [r for r in sweep.rows if r.status == "failed"]
        first = f"; first error: {failed[0].error}" if failed and failed[0].error else ""
        raise ConfigError(f"{_where(sweep_dir)}: no finished run yet ({len(sweep.rows)} rows: {len(failed)} failed, "
                          f"{len(sweep.rows) - len(failed)} pending{first})")
    points = summarize(sweep)
    if best is not None:
        sweep, points = select_best(sweep, points, best, minimize)
    rdir = Path(out) if out is not None else sweep_dir / REPORT_DIR
    try:
        (rdir / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"report directory {str(rdir)!r} cannot be created ({e.strerror or type(e).__name__})") \
            from None
    table = format_table(sweep, points)
    cap = caption(sweep, points)
    md_path, csv_path = rdir / "table.md", rdir / "table.csv"
    _write_text(md_path, f"# Sweep report: {sweep.spec.get('name', sweep_dir.name)}\n\n{cap}\n\n{table}")
    _write_table_csv(csv_path, sweep, points)
    figures, notes = write_figures(sweep, points, rdir / "figures")
    html_path = rdir / "report.html"
    _write_text(html_path, render_html(sweep, points, cap, figures, notes,
                                       command or regenerate_command(sweep_dir, Path(out) if out is not None else None,
                                                                     best, minimize),
                                       sections=sections, title=title))
    return {"table": table, "table_md": md_path, "table_csv": csv_path, "html": html_path,
            "figures": [path for path, _ in figures]}
