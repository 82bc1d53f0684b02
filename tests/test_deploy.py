"""`neuroprobe deploy`: a small distal-reward network with on-chip learning under Lava (fixed point)
agrees bit for bit with the torch engine's fixed-point mode; a float open-loop deploy agrees with
the float engine; the outputs are a run directory that `neuroprobe plot` reads; bad input is one line;
the torch side runs through the run loop and resumes an interrupted run to identical weights."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.backends.lava import lava_status
from neuroprobe.cli import main
from neuroprobe.rundir import load_checkpoint_file, read_metrics

_status = lava_status()
needs_lava = pytest.mark.lava  # skipped only by NEUROPROBE_SKIP_LAVA=1 (tests/conftest.py)

MODEL = """
[network]
dt = 1e-3
engine = "torch"

[[population]]
name = "in"
size = 20
kind = "poisson"
rate = 40.0

[[population]]
name = "exc"
size = 40
kind = "lif"
sign = "excitatory"
[population.lif]
tau_mem = 20e-3
tau_syn = 5e-3
t_ref = {t_ref}
noise = "{noise}"
noise_std = 0.4

[[population]]
name = "inh"
size = 10
kind = "lif"
sign = "inhibitory"
[population.lif]
tau_mem = 10e-3
tau_syn = 0.0

[[projection]]
pre = "in"
post = "exc"
p = 0.3
weight = 0.8
[[projection]]
pre = "exc"
post = "exc"
p = 0.3
weight = 0.3
w_max = 1.0
[[projection]]
pre = "exc"
post = "inh"
p = 0.3
weight = 0.5
[[projection]]
pre = "inh"
post = "exc"
p = 0.3
weight = 0.5
"""

CONFIG = """
name = "tiny_distal"
seed = 3
[network]
file = "model.toml"
[task]
name = "distal_reward"
duration = 1.0
projection = "exc->exc"
delay_min = 0.05
delay_max = 0.1
window = 20e-3
[rule]
name = "rstdp"
projection = "exc->exc"
order = 2
delay = 0.05
lr = 0.05
"""


def write(tmp_path, t_ref=0.0, noise="membrane"):
    (tmp_path / "model.toml").write_text(MODEL.format(t_ref=t_ref, noise=noise))
    (tmp_path / "cfg.toml").write_text(CONFIG)
    return tmp_path / "cfg.toml"


@needs_lava
def test_deploy_distal_on_chip_learning_matches_torch_fixed_point(tmp_path, capsys):
    cfg = write(tmp_path)
    out = tmp_path / "dep"
    assert main(["deploy", str(cfg), "--steps", "600", "--out", str(out), "--no-progress",
                 "--set", "task.report_every=0.1"]) == 0
    rep = json.loads((out / "deploy.json").read_text())
    a = rep["agreement"]
    assert rep["learning_on_chip"] and a["weights_identical_all_reports"] and a["final_weight_mismatches"] == 0
    assert a["spike_mismatches_last_window"] == {"exc": 0, "inh": 0}
    assert a["rewards_lava"] == a["rewards_torch"] > 0  # the on-chip protocol delivered rewards
    m = read_metrics(out / "metrics.csv")
    w = np.asarray(m["w_rewarded"], float)
    assert len(w) >= 6 and np.ptp(np.asarray(m["w_mean"], float)) > 0  # weights moved
    with np.load(out / "recordings.npz") as rec:
        assert rec["spikes/exc"].shape == (600, 40) and rec["spikes/exc"].dtype == np.uint8
        assert rec["weight/exc->exc"].shape[0] == len(w)
    assert main(["plot", str(out)]) == 0
    assert (out / "raster.png").exists() and (out / "learning_curve.png").exists()
    printed = capsys.readouterr().out
    assert "deployed to Lava (fixed point, 600 steps)" in printed and "quantisation (exc)" in printed
    q = rep["quantization_error"]["populations"]["exc"]
    assert q["matched_within_1_step"] > 0.5 and abs(q["spikes_fixed"] - q["spikes_float"]) < 0.2 * q["spikes_float"]
    # the torch side is a run directory of the loop; metrics_torch_fixed.csv is its metrics.csv
    assert (out / "torch-fixed" / "checkpoint.pt").is_file()
    assert (out / "metrics_torch_fixed.csv").read_bytes() == (out / "torch-fixed" / "metrics.csv").read_bytes()
    mt = read_metrics(out / "metrics_torch_fixed.csv")
    assert mt["w_rewarded"] == m["w_rewarded"] and mt["rewards"] == m["rewards"]
    # one row function (reporters_spiking.distal_row) and one format (floats as repr) on both sides
    assert (out / "metrics.csv").read_bytes() == (out / "metrics_torch_fixed.csv").read_bytes()
    # the float twin of the deployment (experiments/distal_float_twin.py) runs through the same loop
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
    import distal_float_twin

    distal_float_twin.main([str(out), "--no-progress"])
    tw = read_metrics(out / "metrics_torch_float_twin.csv")
    assert tw["time"] == m["time"] and (out / "torch-float-twin" / "checkpoint.pt").is_file()


@needs_lava
def test_deploy_float_open_loop_matches_float_engine(tmp_path, capsys):
    cfg = write(tmp_path, noise="none")
    out = tmp_path / "depf"
    assert main(["deploy", str(cfg), "--precision", "float", "--steps", "400", "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "deploy.json").read_text())
    for pop in ("exc", "inh"):
        assert rep["agreement"][pop]["spike_mismatches"] == 0
        assert rep["agreement"][pop]["max_abs_dv"] < 1e-9
    assert rep["agreement"]["exc"]["rate_hz_lava"] > 1.0
    with np.load(out / "recordings.npz") as rec:
        assert rec["v/exc"].shape == (400, 40)
    capsys.readouterr()  # a second deploy of the same job reuses the saved Lava result
    assert main(["deploy", str(cfg), "--precision", "float", "--steps", "400", "--out", str(out), "--no-progress"]) == 0
    assert "reusing the Lava result" in capsys.readouterr().out
    assert json.loads((out / "deploy.json").read_text())["agreement"]["exc"]["spike_mismatches"] == 0


def test_deploy_errors_are_one_line(tmp_path, capsys):
    cfg = write(tmp_path, t_ref=2e-3)
    assert main(["deploy", str(cfg), "--steps", "10", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "population 'exc'" in err and "refractory" in err
    assert main(["deploy", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = write(tmp_path)
    assert main(["deploy", str(cfg), "--precision", "float", "--steps", "10", "--out", str(tmp_path / "y")]) == 2
    assert "no noise" in capsys.readouterr().err


@needs_lava
def test_deploy_a_trained_run_directory_uses_its_checkpoint_weights(tmp_path):
    """A torch run's directory deploys with the weights of its checkpoint (trial 0)."""
    cfg = write(tmp_path)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run), "--set", "task.duration=0.3", "--set", "run.progress=false"]) == 0
    w_trained = load_checkpoint_file(run / "checkpoint.pt")["agent"]["net"]["projections.1.weight"]
    w_trained = w_trained[0] if w_trained.dim() == 2 else w_trained
    out = tmp_path / "dep"
    assert main(["deploy", str(run / "checkpoint.pt"), "--steps", "100", "--out", str(out), "--no-progress",
                 "--set", "task.report_every=0.01"]) == 0
    # the first report (10 steps) comes before any reward can arrive (delay_min 50 steps): the
    # weights reported there are the deployed ones
    m = read_metrics(out / "metrics.csv")
    others = np.delete(w_trained.abs().double().numpy(), json.loads((out / "deploy.json").read_text())["rewarded_synapse"])
    assert abs(others.mean() - 0.3) > 0.05  # training moved the weights away from their initial 0.3
    assert abs(float(m["w_mean"][0]) - others.mean()) < 0.005  # the trained weights, quantised
    assert int(m["rewards"][0]) == 0


class _Kill(Exception):
    pass


class _KillAt:
    """Callback: stops the loop after ``n`` steps, as a kill would (rows after the last checkpoint
    are already written)."""

    name = "kill"

    def __init__(self, n):
        self.n = n

    def on_start(self, loop):
        pass

    def on_step(self, loop, tr):
        if loop.steps == self.n:
            raise _Kill

    def on_end(self, loop):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def test_torch_side_of_a_fixed_point_deploy_resumes_to_identical_weights(tmp_path):
    """The torch fixed-point engine of a distal deploy, killed after 137 steps (checkpoints every 50)
    and resumed, ends with the weights and the metrics.csv of an uninterrupted run (no Lava needed)."""
    from neuroprobe.config import load_experiment
    from neuroprobe.deploy import deployed_network, distal_protocol, distal_setup
    from neuroprobe.learners.given_inputs import fixed_distal_parts, run_side
    from neuroprobe.backends.fixed.rstdp import FixedCascadeRSTDP
    from neuroprobe.backends.fixed.network import FixedPointNetwork

    exp = load_experiment(write(tmp_path))
    T, every = 400, 30

    def side(path, kill=None, job="job-1"):
        net, inputs, gen = deployed_network(exp, T)
        fx = FixedPointNetwork.from_float(net, noise_seed=exp.seed)
        su = distal_setup(exp, fx, net, gen)
        rule = FixedCascadeRSTDP(su["proj"], 1, su["prm"])
        w0 = rule.w_acc.clone()
        parts = fixed_distal_parts(fx, rule, distal_protocol(su["dparams"]), inputs, T, every, exp.seed,
                                   su["rewarded"])
        if kill is not None:
            parts.callbacks.append(_KillAt(kill))
        resumed = run_side(parts, path, {"name": exp.name}, job, exp.seed, 50, progress=False)
        return w0, rule.w_acc.clone(), resumed

    w0, w_ref, _ = side(tmp_path / "ref")
    ref = read_metrics(tmp_path / "ref" / "metrics.csv")
    assert len(ref["time"]) == 14 and int(ref["rewards"][-1]) > 0 and not torch.equal(w0, w_ref)  # it learned
    with pytest.raises(_Kill):
        side(tmp_path / "cut", kill=137)
    assert (tmp_path / "cut" / "metrics.csv").read_text().count("\n") == 1 + 137 // every  # rows past the checkpoint
    _, w, resumed = side(tmp_path / "cut")
    assert resumed and torch.equal(w, w_ref)
    assert (tmp_path / "cut" / "metrics.csv").read_bytes() == (tmp_path / "ref" / "metrics.csv").read_bytes()
    _, w, resumed = side(tmp_path / "cut")  # a finished run of the same job: reloaded, nothing recomputed
    assert resumed and torch.equal(w, w_ref)
    with pytest.raises(_Kill):  # another job in the same directory starts afresh
        side(tmp_path / "cut", kill=10, job="job-2")
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
