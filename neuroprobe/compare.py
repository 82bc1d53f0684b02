"""``neuroprobe compare RUN_A RUN_B``: how far two run directories agree.

Any two run directories (``neuroprobe run`` with any backend, ``neuroprobe deploy`` outputs, resumed
runs) are compared on what both hold:

* **spikes** ``spikes/<pop>`` of ``recordings.npz``, over the steps both recorded (rows aligned by
  ``time/spikes/<pop>`` ÷ ``meta/dt``) and the neurons both recorded (``indices/…``): the number of
  mismatching (step, neuron) entries, the spike counts and the fraction of each run's spikes matched
  by a spike of the same neuron in the other run within ±1 step (``matched_within_1_step`` is the
  smaller of the two directions; 1.0 when there is no spike to match);
* **states** every other recorded variable ``<var>/<pop>`` (``v/<pop>``, ``i/<pop>``, rates,
  eligibilities): max and RMS |Δ| over the common rows and columns;
* **weights** ``weight/<proj>`` snapshots (common snapshot times and synapse indices): max |Δw| and the
  number of synapses that differ in any common snapshot; and the **final weights** of each run's
  ``checkpoint.pt`` (read with :func:`neuroprobe.rundir.load_checkpoint_file`; every floating tensor
  named ``…weight`` under the agent's state, projections named as in the run's config): max |Δw| and
  the number of differing synapses;
* **metrics** ``metrics.csv``: the columns both have, over the rows whose key (``episode``, ``seed``,
  ``step``, ``time``, … where present in both) appears in both: max |Δ| per column and whether the
  column is identical.

Anything that cannot be compared (a file missing on one side, shapes or time bases that do not
match, an unreadable file) is one line in ``notes``; a path that is not a run directory (no
metrics.csv, recordings.npz or checkpoint.pt) is a one-line ConfigError (CLI exit 2).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, NeuroprobeError

__all__ = ["compare_runs", "format_report", "RUN_FILES", "KEY_COLUMNS"]

RUN_FILES = ("metrics.csv", "recordings.npz", "checkpoint.pt")
KEY_COLUMNS = ("episode", "seed", "step", "time", "epoch", "trial", "batch")  # metric row keys, where present
_NOT_STATES = ("spikes", "weight", "time", "indices", "meta")


def _check_run_dir(path: str | Path, which: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"compare: {which} {str(p)!r} does not exist")
    if not p.is_dir():
        raise ConfigError(f"compare: {which} {str(p)!r} is not a directory (give a run directory)")
    if not any((p / f).is_file() for f in RUN_FILES):
        raise ConfigError(f"compare: {which} {str(p)!r} is not a run directory (none of {', '.join(RUN_FILES)})")
    return p


def compare_runs(run_a: str | Path, run_b: str | Path) -> dict:
    """The agreement of two run directories (see the module docstring) as a JSON-serialisable dict:
    ``{"a", "b", "spikes", "states", "weights", "final_weights", "metrics", "notes", "identical"}``."""
    a, b = _check_run_dir(run_a, "RUN_A"), _check_run_dir(run_b, "RUN_B")
    notes: list[str] = []
    rep: dict[str, Any] = {"a": str(a), "b": str(b), "spikes": {}, "states": {}, "weights": {}, "final_weights": {},
                           "metrics": None, "notes": notes}
    _compare_recordings(a, b, rep, notes)
    _compare_checkpoints(a, b, rep, notes)
    _compare_metrics(a, b, rep, notes)
    parts = [*rep["spikes"].values(), *rep["states"].values(), *rep["weights"].values(),
             *rep["final_weights"].values()]
    if rep["metrics"] is not None:
        parts += list(rep["metrics"]["columns"].values())
    rep["compared"] = len(parts)
    rep["identical"] = bool(parts) and all(p["identical"] for p in parts)
    return _json_safe(rep)


def _json_safe(x: Any) -> Any:
    """Non-finite floats as the strings "inf"/"nan" (JSON has no such numbers)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# --------------------------------------------------------------------------- recordings

def _load_npz(path: Path, notes: list[str]) -> dict | None:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        notes.append(f"{path}: unreadable recordings ({type(e).__name__}); not compared")
        return None


def _dt(rec: dict) -> float | None:
    d = rec.get("meta/dt")
    try:
        v = float(np.asarray(d))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _rows(ra: dict, rb: dict, key: str, dt: float | None, notes: list[str]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (into A, into B) of the steps both recorded for ``key`` and those steps (sorted);
    without times (or dt) the first min(T_a, T_b) rows, noted."""
    na, nb = ra[key].shape[0], rb[key].shape[0]
    ta, tb = ra.get(f"time/{key}"), rb.get(f"time/{key}")
    if dt is None or ta is None or tb is None or ta.shape != (na,) or tb.shape != (nb,):
        n = min(na, nb)
        if na != nb:
            notes.append(f"{key}: no step times in both runs; compared the first {n} rows (A has {na}, B has {nb})")
        return np.arange(n), np.arange(n), np.arange(n)
    sa, sb = np.rint(np.asarray(ta, np.float64) / dt).astype(np.int64), np.rint(np.asarray(tb, np.float64) / dt
                                                                               ).astype(np.int64)
    steps, ia, ib = np.intersect1d(sa, sb, assume_unique=False, return_indices=True)
    if len(steps) < max(na, nb):
        notes.append(f"{key}: {len(steps)} steps in common (A recorded {na}, B {nb})")
    return ia, ib, steps


def _cols(ra: dict, rb: dict, key: str, notes: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Column indices (into A, into B) of the neurons/synapses both recorded."""
    ca, cb = ra[key].shape[1], rb[key].shape[1]
    ia, ib = ra.get(f"indices/{key}"), rb.get(f"indices/{key}")
    if ia is None or ib is None or ia.shape != (ca,) or ib.shape != (cb,):
        if ca != cb:
            notes.append(f"{key}: {ca} columns in A, {cb} in B and no indices to match them; not compared")
            return None
        return np.arange(ca), np.arange(cb)
    if np.array_equal(ia, ib):
        return np.arange(ca), np.arange(cb)
    _, ja, jb = np.intersect1d(ia, ib, return_indices=True)
    notes.append(f"{key}: {len(ja)} recorded indices in common (A has {ca}, B {cb})")
    if not len(ja):
        return None
    return ja, jb


def _aligned(ra: dict, rb: dict, key: str, dt: float | None, notes: list[str]):
    """The common rows (steps) and columns of ``key`` in both runs: (A part, B part, steps) or None."""
    xa, xb = ra[key], rb[key]
    if xa.ndim == 0 or xb.ndim == 0 or xa.ndim > 2 or xb.ndim > 2 or xa.ndim != xb.ndim:
        if xa.shape != xb.shape:
            notes.append(f"{key}: shapes {xa.shape} and {xb.shape}; not compared")
            return None
        return xa.reshape(1, -1), xb.reshape(1, -1), np.zeros(1, np.int64)
    if xa.ndim == 1:  # one value per row (population rates)
        ra, rb = {**ra, key: xa[:, None]}, {**rb, key: xb[:, None]}
    ia, ib, steps = _rows(ra, rb, key, dt, notes)
    cols = _cols(ra, rb, key, notes) if xa.ndim == 2 else (np.arange(1), np.arange(1))
    if cols is None:
        return None
    if not len(ia):
        notes.append(f"{key}: no step in common; not compared")
        return None
    return ra[key][ia][:, cols[0]], rb[key][ib][:, cols[1]], steps


def spike_agreement(za: np.ndarray, zb: np.ndarray, steps: np.ndarray | None = None) -> dict:
    """Agreement of two (T, N) spike arrays over the same steps (``steps``: their step numbers,
    default 0…T−1; neighbours are rows whose steps differ by one)."""
    za, zb = np.asarray(za) != 0, np.asarray(zb) != 0
    steps = np.arange(len(za)) if steps is None else np.asarray(steps)
    adj = np.diff(steps) == 1  # rows i, i+1 are consecutive steps

    def near(z):
        n = z.copy()
        n[1:][adj] |= z[:-1][adj]
        n[:-1][adj] |= z[1:][adj]
        return n

    na, nb = int(za.sum()), int(zb.sum())
    ma, mb = int((za & near(zb)).sum()), int((zb & near(za)).sum())
    fa, fb = (ma / na if na else 1.0), (mb / nb if nb else 1.0)
    mism = int((za != zb).sum())
    return {"steps": int(za.shape[0]), "neurons": int(za.shape[1]), "spikes_a": na, "spikes_b": nb,
            "mismatches": mism, "matched_a_in_b": fa, "matched_b_in_a": fb, "matched_within_1_step": min(fa, fb),
            "first_mismatch_step": int(steps[np.nonzero((za != zb).any(1))[0][0]]) if mism else None,
            "identical": mism == 0}


def _diff_stats(xa: np.ndarray, xb: np.ndarray) -> dict:
    xa, xb = np.asarray(xa, np.float64), np.asarray(xb, np.float64)
    same = (xa == xb) | (np.isnan(xa) & np.isnan(xb))
    d = np.abs(xa - xb)
    d[same] = 0.0
    d[np.isnan(d)] = np.inf  # a NaN against a number: as far apart as can be
    return {"max_abs_diff": float(d.max()) if d.size else 0.0,
            "rms_abs_diff": float(np.sqrt((d ** 2).mean())) if d.size else 0.0,
            "differing": int((~same).sum()), "identical": bool(same.all())}


def _compare_recordings(a: Path, b: Path, rep: dict, notes: list[str]) -> None:
    pa, pb = a / "recordings.npz", b / "recordings.npz"
    if not pa.is_file() or not pb.is_file():
        if pa.is_file() or pb.is_file():
            notes.append(f"recordings.npz only in {'A' if pa.is_file() else 'B'}; recordings not compared")
        return
    ra, rb = _load_npz(pa, notes), _load_npz(pb, notes)
    if ra is None or rb is None:
        return
    da, db = _dt(ra), _dt(rb)
    dt = da
    if da is None or db is None or not math.isclose(da, db, rel_tol=1e-9):
        notes.append(f"meta/dt differs or is missing (A {da}, B {db}); recordings aligned by row, not by step")
        dt = None
    data = lambda r: {k for k in r if k.split("/", 1)[0] not in ("time", "indices", "meta")}  # noqa: E731
    only_a, only_b = sorted(data(ra) - data(rb)), sorted(data(rb) - data(ra))
    if only_a:
        notes.append(f"recorded only in A: {', '.join(only_a)}")
    if only_b:
        notes.append(f"recorded only in B: {', '.join(only_b)}")
    for key in sorted(data(ra) & data(rb)):
        kind, _, name = key.partition("/")
        al = _aligned(ra, rb, key, dt, notes)
        if al is None:
            continue
        xa, xb, steps = al
        if kind == "spikes":
            rep["spikes"][name] = spike_agreement(xa, xb, steps)
        elif kind == "weight":
            st = _diff_stats(xa, xb)
            differing = int((~((xa == xb) | (np.isnan(xa) & np.isnan(xb)))).any(0).sum())
            rep["weights"][name] = {"snapshots": int(xa.shape[0]), "synapses": int(xa.shape[1]),
                                    "max_abs_diff": st["max_abs_diff"], "differing_synapses": differing,
                                    "identical": st["identical"]}
        else:
            st = _diff_stats(xa, xb)
            rep["states"][key] = {"rows": int(xa.shape[0]), "columns": int(xa.shape[1]), **st}


# --------------------------------------------------------------------------- checkpoints

def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    else:
        out[prefix] = tree
    return out


def final_weights(run: Path, notes: list[str], which: str) -> dict[str, np.ndarray] | None:
    """Every floating tensor named ``…weight`` under the checkpoint's agent state (float64 numpy),
    spiking projections under their names (``projections.<j>.weight`` → the config's j-th projection)."""
    import torch

    from .rundir import CHECKPOINT_NAME, load_checkpoint_file

    path = run / CHECKPOINT_NAME
    try:
        state = load_checkpoint_file(path)
    except NeuroprobeError as e:
        notes.append(f"{which}: {e}; final weights not compared")
        return None
    agent = state.get("agent")
    flat = _flatten(agent if isinstance(agent, dict) else {})
    out = {k: v.detach().double().numpy() for k, v in flat.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and k.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
           == "weight"}
    names = _projection_names(run)
    renamed = {}
    for k, v in out.items():
        leaf = k.rsplit("/", 1)[-1]
        parts = leaf.split(".")
        j = int(parts[1]) if len(parts) == 3 and parts[0] == "projections" and parts[1].isdigit() else None
        if names and j is not None and j < len(names):
            renamed[names[j]] = v
        else:
            renamed[k] = v
    return renamed


def _projection_names(run: Path) -> list[str] | None:
    cfg = run / "config.toml"
    if not cfg.is_file():
        return None
    try:
        from .config import load_experiment

        spec = load_experiment(cfg).spiking_spec
    except Exception:  # a config of another version, a moved network file: keep the raw keys
        return None
    return [p.name for p in spec.projections] if spec is not None else None


def _compare_checkpoints(a: Path, b: Path, rep: dict, notes: list[str]) -> None:
    ca, cb = (a / "checkpoint.pt").exists(), (b / "checkpoint.pt").exists()
    if not (ca and cb):
        if ca or cb:
            notes.append(f"checkpoint.pt only in {'A' if ca else 'B'}; final weights not compared")
        return
    wa, wb = final_weights(a, notes, "A"), final_weights(b, notes, "B")
    if wa is None or wb is None:
        return
    if not wa and not wb:
        notes.append("no weights found in either checkpoint's agent state")
    for k in sorted(set(wa) - set(wb)):
        notes.append(f"final weights {k}: only in A's checkpoint")
    for k in sorted(set(wb) - set(wa)):
        notes.append(f"final weights {k}: only in B's checkpoint")
    for k in sorted(set(wa) & set(wb)):
        xa, xb = wa[k], wb[k]
        if xa.shape != xb.shape:
            notes.append(f"final weights {k}: shapes {xa.shape} and {xb.shape} (different connectivity); not compared")
            continue
        st = _diff_stats(xa, xb)
        rep["final_weights"][k] = {"synapses": int(xa.size), "max_abs_diff": st["max_abs_diff"],
                                   "differing_synapses": st["differing"], "identical": st["identical"]}


# --------------------------------------------------------------------------- metrics

def _read_csv(path: Path, notes: list[str], which: str) -> tuple[list[str], list[list[str]]] | None:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        notes.append(f"{which}: metrics.csv unreadable ({type(e).__name__}); metrics not compared")
        return None
    if not rows:
        notes.append(f"{which}: metrics.csv is empty; metrics not compared")
        return None
    header, body = rows[0], [r for r in rows[1:] if r]
    bad = [i for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        notes.append(f"{which}: metrics.csv row {bad[0] + 2} has {len(body[bad[0]])} cells, the header {len(header)}; "
                     f"those rows skipped")
        body = [r for r in body if len(r) == len(header)]
    return header, body


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _compare_metrics(a: Path, b: Path, rep: dict, notes: list[str]) -> None:
    pa, pb = a / "metrics.csv", b / "metrics.csv"
    if not pa.is_file() or not pb.is_file():
        if pa.is_file() or pb.is_file():
            notes.append(f"metrics.csv only in {'A' if pa.is_file() else 'B'}; metrics not compared")
        return
    ma, mb = _read_csv(pa, notes, "A"), _read_csv(pb, notes, "B")
    if ma is None or mb is None:
        return
    (ha, rows_a), (hb, rows_b) = ma, mb
    common = [c for c in ha if c in hb]
    for side, h in (("A", ha), ("B", hb)):
        extra = [c for c in h if c not in common]
        if extra:
            notes.append(f"metrics columns only in {side}: {', '.join(extra)}")
    if not common:
        notes.append("metrics.csv: no column in common; not compared")
        return
    key = [c for c in KEY_COLUMNS if c in common]
    if "seed" in key and len(key) > 1:  # single-seed runs (of different seeds) pair rows by the other keys
        ia, ib = ha.index("seed"), hb.index("seed")
        if len({r[ia] for r in rows_a}) <= 1 and len({r[ib] for r in rows_b}) <= 1:
            key.remove("seed")
    ka, kb = [ha.index(c) for c in key], [hb.index(c) for c in key]
    if key:
        def keyed(rows, idx):
            out = {}
            for r in rows:
                out.setdefault(tuple(_canon(r[i]) for i in idx), r)
            return out
        da, db = keyed(rows_a, ka), keyed(rows_b, kb)
        keys = [k for k in da if k in db]
        pairs = [(da[k], db[k]) for k in keys]
        if len(keys) < max(len(rows_a), len(rows_b)):
            notes.append(f"metrics.csv: {len(keys)} rows with the same key ({', '.join(key)}) in both "
                         f"(A has {len(rows_a)}, B {len(rows_b)})")
    else:
        n = min(len(rows_a), len(rows_b))
        pairs = list(zip(rows_a[:n], rows_b[:n]))
        notes.append(f"metrics.csv: no key column ({', '.join(KEY_COLUMNS)}); compared the first {n} rows by position")
    if not pairs:
        notes.append("metrics.csv: no row in common; not compared")
        return
    cols = {}
    for c in common:
        if c in key:
            continue
        i, j = ha.index(c), hb.index(c)
        va, vb = [r[i] for r, _ in pairs], [r[j] for _, r in pairs]
        fa, fb = [_num(x) for x in va], [_num(x) for x in vb]
        numeric = all(x is not None for x in fa + fb)
        if numeric:
            st = _diff_stats(np.array(fa, np.float64), np.array(fb, np.float64))
            cols[c] = {"max_abs_diff": st["max_abs_diff"], "differing_rows": st["differing"],
                       "identical": st["identical"]}
        else:
            diff = sum(x != y for x, y in zip(va, vb))
            cols[c] = {"max_abs_diff": None, "differing_rows": diff, "identical": diff == 0}
    rep["metrics"] = {"rows": len(pairs), "key": key, "columns": cols}


def _canon(s: str) -> str:
    """A key cell as text that compares equal for equal numbers ('1' and '1.0')."""
    v = _num(s)
    return repr(v) if v is not None else s


# --------------------------------------------------------------------------- text

def _g(x: float | None) -> str:
    return "—" if x is None else x if isinstance(x, str) else ("0" if x == 0 else f"{x:.3g}")


def format_report(rep: dict) -> str:
    """The report as a readable table."""
    yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
    L = [f"compare  A = {rep['a']}", f"         B = {rep['b']}"]
    if rep["spikes"]:
        L.append(f"\n{'spikes':24s} {'steps':>7s} {'neurons':>7s} {'spikes A':>9s} {'spikes B':>9s} "
                 f"{'mismatch':>9s} {'±1 step':>8s} {'same':>5s}")
        for n, s in rep["spikes"].items():
            L.append(f"  {n:22s} {s['steps']:7d} {s['neurons']:7d} {s['spikes_a']:9d} {s['spikes_b']:9d} "
                     f"{s['mismatches']:9d} {100 * s['matched_within_1_step']:7.1f}% {yes(s['identical']):>5s}")
    if rep["states"]:
        L.append(f"\n{'states':24s} {'rows':>7s} {'columns':>7s} {'max |Δ|':>10s} {'rms |Δ|':>10s} {'same':>5s}")
        for n, s in rep["states"].items():
            L.append(f"  {n:22s} {s['rows']:7d} {s['columns']:7d} {_g(s['max_abs_diff']):>10s} "
                     f"{_g(s['rms_abs_diff']):>10s} {yes(s['identical']):>5s}")
    if rep["weights"]:
        L.append(f"\n{'weights (recorded)':24s} {'snaps':>7s} {'synapses':>8s} {'max |Δw|':>10s} {'differ':>7s} "
                 f"{'same':>5s}")
        for n, s in rep["weights"].items():
            L.append(f"  {n:22s} {s['snapshots']:7d} {s['synapses']:8d} {_g(s['max_abs_diff']):>10s} "
                     f"{s['differing_synapses']:7d} {yes(s['identical']):>5s}")
    if rep["final_weights"]:
        L.append(f"\n{'final weights (ckpt)':24s} {'synapses':>8s} {'max |Δw|':>10s} {'differ':>7s} {'same':>5s}")
        for n, s in rep["final_weights"].items():
            L.append(f"  {n:22s} {s['synapses']:8d} {_g(s['max_abs_diff']):>10s} {s['differing_synapses']:7d} "
                     f"{yes(s['identical']):>5s}")
    m = rep["metrics"]
    if m is not None:
        L.append(f"\nmetrics: {m['rows']} common rows (key {', '.join(m['key']) or 'row position'})")
        L.append(f"  {'column':22s} {'max |Δ|':>10s} {'rows differ':>11s} {'same':>5s}")
        for c, s in m["columns"].items():
            L.append(f"  {c:22s} {_g(s['max_abs_diff']):>10s} {s['differing_rows']:11d} {yes(s['identical']):>5s}")
    if rep["notes"]:
        L.append("\nnotes:")
        L += [f"  - {n}" for n in rep["notes"]]
    verdict = ("identical" if rep["identical"] else "nothing in common to compare" if not rep["compared"]
               else "DIFFERENT")
    L.append(f"\n{verdict} ({rep['compared']} items compared)")
    return "\n".join(L)
