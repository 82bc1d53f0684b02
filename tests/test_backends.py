"""Backends chosen by the run configuration: one distal-reward config runs with
``neuroprobe run --backend {torch,brian2,lava} --precision {float,fixed}``; every engine writes a
run directory with the same metrics columns (one row function); the torch fixed-point engine and
Lava fixed_pt write byte-identical metrics.csv; bad combinations are one line with exit code 2."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from neuroprobe.backends import BACKENDS, backend_module
from neuroprobe.cli import main
from neuroprobe.reporters_spiking import DISTAL_COLUMNS, distal_row
from neuroprobe.rundir import read_metrics
from spiking_nets import SMALL_NET

# the shared small network with more membrane noise: ~20 Hz, so that rewards arrive within 0.5 s
NET = SMALL_NET.replace("noise_std = 0.8", "noise_std = 2.0")
CONFIG = """
name = "distal_backends"
seeds = 2
[network]
file = "net.toml"
[task]
name = "distal_reward"
duration = 0.5
report_every = 0.1
delay_min = 0.02
delay_max = 0.05
window = 0.05
[rule]
name = "rstdp"
order = 2
delay = 0.2
lr = 0.5
[monitor]
spikes = ["exc"]
[run]
progress = false
record_last = 0.2
"""
HEADER = "time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences,rate_exc,rate_inh"




def _config(tmp_path) -> str:
    (tmp_path / "net.toml").write_text(NET)
    (tmp_path / "distal.toml").write_text(CONFIG)
    return str(tmp_path / "distal.toml")


def _run(cfg, out, *flags) -> bytes:
    assert main(["run", cfg, "--out", str(out), *flags]) == 0
    return (out / "metrics.csv").read_bytes()


def _keys(data: bytes) -> list[list[str]]:
    return [r.split(",")[:2] for r in data.decode().splitlines()[1:]]


def test_registry_names_a_module_for_every_pair():
    assert set(BACKENDS) == {("torch", "float"), ("torch", "fixed"), ("event", "float"), ("event", "fixed"),
                             ("brian2", "float"), ("lava", "fixed"), ("lava", "float")}
    for backend, precision in BACKENDS:
        if backend != "brian2":  # Brian2's module imports brian2 only when it runs
            assert callable(backend_module(backend, precision).compile_distal)


def test_distal_row_against_an_independent_computation():
    rng = np.random.default_rng(1)
    w = -rng.uniform(0, 1, 301)  # signed weights (an inhibitory projection): the row uses |w|
    k = 17
    row = distal_row(0.7, 5, w, k, 3, 4, {"exc": (37, 60)}, 300, 1e-3)
    assert list(row)[:8] == DISTAL_COLUMNS and list(row)[8:] == ["rate_exc"]
    others = sorted(abs(x) for i, x in enumerate(w.tolist()) if i != k)
    pos = 0.99 * (len(others) - 1)  # linear interpolation between order statistics
    lo = math.floor(pos)
    p99 = others[lo] + (others[lo + 1] - others[lo]) * (pos - lo)
    assert float(row["w_rewarded"]) == abs(w[k])
    assert math.isclose(float(row["w_mean"]), statistics.fmean(others), rel_tol=1e-14)
    assert math.isclose(float(row["w_p99"]), p99, rel_tol=1e-14)
    assert float(row["rank"]) == sum(x < abs(w[k]) for x in others) / len(others)
    assert float(row["rate_exc"]) == 37 / (60 * 0.3)
    assert (row["time"], row["seed"], row["rewards"], row["coincidences"]) == ("0.7", "5", "3", "4")
    assert list(distal_row(0.7, 5, w, k, 3, 4)) == DISTAL_COLUMNS  # no spike counts: no rate columns


def test_torch_float_fixed_and_brian2_write_the_same_columns(tmp_path):
    cfg = _config(tmp_path)
    runs = {"float": _run(cfg, tmp_path / "float"), "fixed": _run(cfg, tmp_path / "fixed", "--precision", "fixed")}
    pytest.importorskip("brian2")
    runs["brian2"] = _run(cfg, tmp_path / "brian2", "--backend", "brian2")
    for name, data in runs.items():
        assert data.decode().splitlines()[0] == HEADER, name
        assert sorted(_keys(data)) == sorted(_keys(runs["float"])), name  # 5 reports x 2 trials
    m = read_metrics(tmp_path / "fixed" / "metrics.csv")
    assert max(m["rewards"]) > 0 and len(set(m["w_mean"])) > 1  # the integer rule learned
    with np.load(tmp_path / "fixed" / "recordings.npz") as rec:
        assert rec["spikes/exc"].shape == (200, 60) and str(rec["meta/precision"]) == "fixed"


def test_torch_fixed_resumes_with_a_longer_duration(tmp_path):
    cfg = _config(tmp_path)
    full = _run(cfg, tmp_path / "full", "--precision", "fixed")
    _run(cfg, tmp_path / "part", "--precision", "fixed", "--set", "task.duration=0.3")
    assert main(["run", "--resume", str(tmp_path / "part"), "--set", "task.duration=0.5"]) == 0
    assert (tmp_path / "part" / "metrics.csv").read_bytes() == full


@pytest.mark.lava
def test_lava_fixed_equals_torch_fixed_byte_for_byte(tmp_path, capsys):
    cfg = _config(tmp_path)
    torch_fixed = _run(cfg, tmp_path / "torch", "--precision", "fixed")
    lava = _run(cfg, tmp_path / "lava", "--backend", "lava", "--precision", "fixed")
    assert lava == torch_fixed
    m = read_metrics(tmp_path / "lava" / "metrics.csv")
    assert max(m["rewards"]) > 0 and len(set(m["w_mean"])) > 1  # learning on chip, same weights as torch
    with np.load(tmp_path / "lava" / "recordings.npz") as rl, np.load(tmp_path / "torch" / "recordings.npz") as rt:
        assert np.array_equal(rl["spikes/exc"], rt["spikes/exc"]) and str(rl["meta/backend"]) == "lava"
    # a finished Lava job is reused: the run directory resumed without its checkpoint reruns nothing on Lava
    (tmp_path / "lava" / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "lava")]) == 0
    assert capsys.readouterr().out.count("reusing the Lava result") == 2  # one job per trial
    assert (tmp_path / "lava" / "metrics.csv").read_bytes() == torch_fixed
    # Lava's floating_pt models have no membrane noise: one line, exit 2
    assert "no noise" in _one_line_error(capsys, ["run", cfg, "--backend", "lava", "--precision", "float", "--out",
                                                  str(tmp_path / "lava-float")])


# a network Lava's floating_pt models can run (no noise, no refractory period): regular firing from i_ext
QUIET_NET = """
[network]
dt = 1e-3
[[population]]
name = "exc"
size = 60
kind = "lif"
sign = "excitatory"
i_ext = 1.2
[population.lif]
tau_mem = 20e-3
tau_syn = 0.0
[[population]]
name = "inh"
size = 15
kind = "lif"
sign = "inhibitory"
[population.lif]
tau_mem = 10e-3
[[projection]]
pre = "exc"
post = "exc"
p = 0.2
weight = 0.1
w_max = 0.4
[[projection]]
pre = "exc"
post = "inh"
p = 0.2
weight = 0.3
[[projection]]
pre = "inh"
post = "exc"
p = 0.2
weight = 0.1
"""


@pytest.mark.lava
def test_lava_float_runs_the_frozen_network(tmp_path):
    """Lava's floating_pt models have no plastic connection: the weights stay, the rows count the
    float protocol's rewards on Lava's spikes; same columns as every engine."""
    cfg = _config(tmp_path)
    (tmp_path / "net.toml").write_text(QUIET_NET)
    data = _run(cfg, tmp_path / "lava-float", "--backend", "lava", "--precision", "float")
    assert data.decode().splitlines()[0] == HEADER and len(_keys(data)) == 5 * 2
    m = read_metrics(tmp_path / "lava-float" / "metrics.csv")
    assert len(set(m["w_mean"])) == 1 and m["w_rewarded"][0] == 0.1  # frozen: the initial weights
    assert min(m["rate_exc"]) > 0 and max(m["coincidences"]) > 0


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's refusals exit from inside parse_args
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_combinations_are_one_line(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = _config(tmp_path)
    out = ["--out", str(tmp_path / "never")]
    assert "Brian2 runs in float only" in _one_line_error(
        capsys, ["run", cfg, "--backend", "brian2", "--precision", "fixed", *out])
    cartpole = str(root / "experiments" / "spiking_cartpole.toml")
    assert "'run.precision' = 'fixed': rule 'spiking_nrl'" in _one_line_error(
        capsys, ["run", cartpole, "--precision", "fixed", *out])
    assert "'run.backend' = 'lava': rule 'spiking_nrl'" in _one_line_error(capsys, ["run", cartpole, "--backend", "lava",
                                                                                    *out])
    rate = str(root / "experiments" / "nrl_cartpole.toml")
    assert "rate experiments" in _one_line_error(capsys, ["run", rate, "--backend", "lava", *out])
    assert "rate experiments" in _one_line_error(capsys, ["run", rate, "--precision", "fixed", *out])
    assert "normalises the kernel to its peak only" in _one_line_error(
        capsys, ["run", cfg, "--precision", "fixed", "--set", "rule.normalize=area", *out])
    assert "invalid choice" in _one_line_error(capsys, ["run", cfg, "--precision", "half", *out])
    assert not (tmp_path / "never").exists()  # refused at load: nothing written
    monkeypatch.setenv("NEUROPROBE_LAVA_PYTHON", str(tmp_path / "no-lava" / "python"))
    assert "needs the Lava environment" in _one_line_error(
        capsys, ["run", cfg, "--backend", "lava", "--precision", "fixed", "--out", str(tmp_path / "nolava")])
