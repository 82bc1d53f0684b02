"""``neuroprobe compare RUN_A RUN_B``: agreement of two run directories, every count checked against
a direct numpy computation on the files themselves."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.compare import compare_runs, format_report, spike_agreement
from neuroprobe.errors import ConfigError
from neuroprobe.rundir import RunDir, load_checkpoint_file
from neuroprobe.runner import run_experiment
from spiking_nets import SMALL_NET
from cli_helpers import run_cli as _cli

CONFIG = """name = "tiny"
seed = 0
[network]
file = 'net.toml'
[task]
name = 'distal_reward'
duration = 0.4
report_every = 0.1
[rule]
name = 'rstdp'
lr = 1.0
[monitor]
spikes = ["exc", "inh"]
state = [{variable = "v", population = "exc", indices = [0, 1, 2, 3], every = 1}]
[run]
progress = false
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of one small spiking config: A and B with seed 0, C with seed 1."""
    d = tmp_path_factory.mktemp("compare")
    (d / "net.toml").write_text(SMALL_NET)
    (d / "c.toml").write_text(CONFIG)
    out = {}
    for name, seed in (("A", 0), ("B", 0), ("C", 1)):
        out[name] = run_experiment(d / "c.toml", seed=seed, out=d / name, figures=False)
    return out


def _rec(run: Path) -> dict:
    with np.load(run / "recordings.npz") as f:
        return {k: f[k] for k in f.files}


def _metrics(run: Path) -> tuple[list[str], list[list[str]]]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_same_config_and_seed_is_identical(runs, capsys):
    rep = compare_runs(runs["A"], runs["B"])
    assert rep["identical"] and not rep["notes"], rep["notes"]
    T = _rec(runs["A"])["spikes/exc"].shape[0]
    for pop in ("exc", "inh"):
        s = rep["spikes"][pop]
        assert s["steps"] == T and s["mismatches"] == 0 and s["matched_within_1_step"] == 1.0
        assert s["spikes_a"] == s["spikes_b"] == int(_rec(runs["A"])[f"spikes/{pop}"].sum()) > 0
    assert rep["states"]["v/exc"]["max_abs_diff"] == 0 and rep["states"]["v/exc"]["rms_abs_diff"] == 0
    w = next(iter(rep["weights"].values()))
    assert w["max_abs_diff"] == 0 and w["differing_synapses"] == 0
    assert set(rep["final_weights"]) == {"exc->exc", "inh->exc"}  # checkpoint keys named as in the config
    assert all(f["differing_synapses"] == 0 for f in rep["final_weights"].values())
    header, rows = _metrics(runs["A"])
    assert rep["metrics"]["rows"] == len(rows) and rep["metrics"]["key"] == ["time"]
    assert set(rep["metrics"]["columns"]) == set(header) - {"time"}
    assert all(c["identical"] and c["max_abs_diff"] == 0 for c in rep["metrics"]["columns"].values())
    rc, out, err = _cli(["compare", str(runs["A"]), str(runs["B"])], capsys)
    assert rc == 0 and not err and out.rstrip().splitlines()[-1].startswith("identical")
    rc, out, err = _cli(["compare", str(runs["A"]), str(runs["B"]), "--json"], capsys)
    assert rc == 0 and len(out.strip().splitlines()) == 1 and json.loads(out) == rep


def _matched(z: np.ndarray, other: np.ndarray) -> float:
    """Fraction of the spikes of z with a spike of the same neuron in ``other`` within ±1 step (loops)."""
    t_idx, j_idx = np.nonzero(z)
    hits = sum(bool(other[max(0, t - 1):t + 2, j].any()) for t, j in zip(t_idx, j_idx))
    return hits / len(t_idx) if len(t_idx) else 1.0


def test_different_seeds_counts(runs, capsys):
    a, c = runs["A"], runs["C"]
    rep = compare_runs(a, c)
    assert not rep["identical"]
    ra, rc_ = _rec(a), _rec(c)
    for pop in ("exc", "inh"):
        za, zc = ra[f"spikes/{pop}"], rc_[f"spikes/{pop}"]
        s = rep["spikes"][pop]
        assert s["mismatches"] == int((za != zc).sum()) > 0
        assert (s["spikes_a"], s["spikes_b"]) == (int(za.sum()), int(zc.sum()))
        assert s["matched_a_in_b"] == pytest.approx(_matched(za, zc))
        assert s["matched_b_in_a"] == pytest.approx(_matched(zc, za))
        assert s["matched_within_1_step"] == min(s["matched_a_in_b"], s["matched_b_in_a"]) < 1
        assert s["first_mismatch_step"] == int(np.nonzero((za != zc).any(1))[0][0])
    dv = ra["v/exc"].astype(np.float64) - rc_["v/exc"].astype(np.float64)
    st = rep["states"]["v/exc"]
    assert st["max_abs_diff"] == pytest.approx(np.abs(dv).max()) and st["max_abs_diff"] > 0
    assert st["rms_abs_diff"] == pytest.approx(np.sqrt((dv ** 2).mean()))
    # other connectivity: the final weights have other shapes (noted, not compared)
    assert not rep["final_weights"] and any("final weights exc->exc: shapes" in n for n in rep["notes"])
    # metrics: single-seed runs are paired by time; the seed column itself differs
    ha, rows_a = _metrics(a)
    hc, rows_c = _metrics(c)
    assert rep["metrics"]["key"] == ["time"] and rep["metrics"]["rows"] == len(rows_a)
    for col in ("rate_exc", "rate_inh", "seed"):
        x = np.array([float(r[ha.index(col)]) for r in rows_a])
        y = np.array([float(r[hc.index(col)]) for r in rows_c])
        m = rep["metrics"]["columns"][col]
        assert m["max_abs_diff"] == pytest.approx(np.abs(x - y).max())
        assert m["differing_rows"] == int((x != y).sum()) and m["identical"] == bool((x == y).all())
    assert not rep["metrics"]["columns"]["seed"]["identical"]
    text = format_report(rep)
    assert "DIFFERENT" in text and "v/exc" in text and "Traceback" not in text


def test_weight_counts_and_partial_windows(runs, tmp_path):
    """B = A with some final weights and recorded weight snapshots changed, and only the last 150
    steps of spikes recorded (as deploy records): counts against numpy."""
    a = runs["A"]
    b = tmp_path / "B"
    shutil.copytree(a, b)
    state = load_checkpoint_file(b / "checkpoint.pt")
    w = state["agent"]["net"]["projections.0.weight"]
    w0 = w.clone()
    g = torch.Generator().manual_seed(3)
    pick = torch.randperm(w.numel(), generator=g)[:17]
    w.view(-1)[pick] += torch.linspace(0.01, 0.2, 17, dtype=w.dtype)
    RunDir(b).save_checkpoint(state)
    rec = _rec(a)
    wk = next(k for k in rec if k.startswith("weight/"))
    rec[wk] = rec[wk].copy()
    rec[wk][-1, [1, 5, 9]] += 0.5
    rec[wk][0, 5] -= 0.25
    K = 150
    for pop in ("exc", "inh"):
        rec[f"spikes/{pop}"] = rec[f"spikes/{pop}"][-K:].copy()
        rec[f"time/spikes/{pop}"] = rec[f"time/spikes/{pop}"][-K:]
    rec["spikes/inh"][10, 3] ^= 1
    np.savez(b / "recordings.npz", **rec)
    rep = compare_runs(a, b)
    fw = rep["final_weights"]["exc->exc"]
    dw = (w.double() - w0.double()).abs()
    assert fw["differing_synapses"] == int((dw > 0).sum()) == 17
    assert fw["max_abs_diff"] == pytest.approx(float(dw.max()))
    assert rep["final_weights"]["inh->exc"]["identical"]
    rw = rep["weights"][wk.split("/", 1)[1]]
    ref = _rec(a)[wk].astype(np.float64)
    assert rw["differing_synapses"] == int((ref != rec[wk]).any(0).sum()) == 3
    assert rw["max_abs_diff"] == pytest.approx(np.abs(ref - rec[wk]).max())
    assert rep["spikes"]["exc"]["steps"] == K and rep["spikes"]["exc"]["mismatches"] == 0
    assert rep["spikes"]["inh"]["mismatches"] == 1
    assert any(f"spikes/exc: {K} steps in common" in n for n in rep["notes"])
    assert not rep["identical"]


def test_spike_agreement_gaps_are_not_neighbours():
    za = np.array([[1], [0], [0]], np.uint8)
    zb = np.array([[0], [1], [0]], np.uint8)
    assert spike_agreement(za, zb)["matched_within_1_step"] == 1.0
    assert spike_agreement(za, zb, np.array([0, 5, 6]))["matched_within_1_step"] == 0.0  # steps 0 and 5


def test_bad_inputs_are_one_line(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for other in (tmp_path / "missing", tmp_path / "empty", tmp_path / "file.txt"):
        with pytest.raises(ConfigError):
            compare_runs(runs["A"], other)
        rc, out, err = _cli(["compare", str(runs["A"]), str(other)], capsys)
        assert rc == 2 and not out and len(err.strip().splitlines()) == 1 and err.startswith("error: compare:")
    rc, out, err = _cli(["compare", str(runs["A"])], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    # damaged / missing / misshapen files: notes in the report, no traceback
    b = tmp_path / "damaged"
    shutil.copytree(runs["A"], b)
    (b / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (b / "metrics.csv").unlink()
    rec = _rec(runs["A"])
    rec["spikes/exc"] = rec["spikes/exc"][:, :7]
    del rec["indices/spikes/exc"]
    rec["v/exc"] = np.concatenate([rec["v/exc"], rec["v/exc"]], axis=0)
    np.savez(b / "recordings.npz", **rec)
    rc, out, err = _cli(["compare", str(runs["A"]), str(b)], capsys)
    assert rc == 0 and not err and "Traceback" not in out
    rep = compare_runs(runs["A"], b)
    notes = "\n".join(rep["notes"])
    assert "spikes/exc: 60 columns in A, 7 in B" in notes and "exc" not in rep["spikes"]
    assert "checkpoint" in notes and "metrics.csv only in A" in notes
    assert rep["states"]["v/exc"]["rows"] == 400  # rows without matching time stamps: the first 400
    (b / "recordings.npz").write_bytes(b"PK\x03\x04 broken")
    rep = compare_runs(runs["A"], b)
    assert any("unreadable recordings" in n for n in rep["notes"]) and not rep["spikes"]
