"""Spiking experiments through the runner/CLI: distal reward and spiking CartPole, config errors,
interrupted runs resumed to identical results."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroprobe.errors import ConfigError
from neuroprobe.experiments.config import load_config
from neuroprobe.experiments.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent

SMALL_NET = """
[network]
dt = 1e-3
[[population]]
name = "exc"
size = 60
kind = "lif"
sign = "excitatory"
[population.lif]
tau_mem = 20e-3
tau_syn = 5e-3
noise = "membrane"
noise_std = 0.8
[[population]]
name = "inh"
size = 15
kind = "lif"
sign = "inhibitory"
[population.lif]
tau_mem = 10e-3
noise = "membrane"
noise_std = 0.8
[[projection]]
pre = "exc"
post = "exc"
p = 0.2
weight = 0.1
w_max = 0.4
[[projection]]
pre = "inh"
post = "exc"
p = 0.2
weight = 0.1
"""


def _distal_cfg(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "net.toml").write_text(SMALL_NET)
    cfg = tmp_path / "distal.toml"
    cfg.write_text(f"""
name = "distal_small"
seeds = 2
[network]
file = "net.toml"
[task]
name = "distal_reward"
duration = 1.5
report_every = 0.5
delay_min = 0.1
delay_max = 0.3
window = 0.02
[rule]
name = "rstdp"
order = 2
delay = 0.2
lr = 0.01
[monitor]
spikes = ["exc"]
state = [{{variable = "v", population = "exc", indices = [0, 1]}}]
[run]
progress = false
record_last = 0.5
checkpoint_every = 0.5
{extra}
""")
    return cfg


def test_distal_reward_run_writes_metrics_and_recordings(tmp_path):
    out = run_experiment(_distal_cfg(tmp_path), out=tmp_path / "run", figures=False)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences,rate_exc,rate_inh")
    assert len(lines) == 1 + 3 * 2  # 3 reports x 2 trials
    rec = np.load(out / "recordings.npz")
    assert rec["spikes/exc"].dtype == np.uint8 and rec["spikes/exc"].shape == (500, 60)  # last 0.5 s
    assert rec["v/exc"].dtype == np.float32 and rec["v/exc"].shape == (500, 2)
    assert rec["weight/exc->exc"].shape[0] == 3
    s = json.loads((out / "summary.json").read_text())
    assert len(s["per_seed"]) == 2 and 0 <= s["mean"] <= 1


def test_distal_reward_resume_is_identical(tmp_path):
    cfg = _distal_cfg(tmp_path)
    full = run_experiment(cfg, out=tmp_path / "full", figures=False)
    part = run_experiment(cfg, out=tmp_path / "part", figures=False, overrides=["task.duration=1.0"])
    # continue the shorter run with the full duration: the checkpoint at 1.0 s is where it stopped
    import tomllib

    import tomli_w
    conf = tomllib.loads((part / "config.toml").read_text())
    conf["task"]["duration"] = 1.5
    (part / "config.toml").write_text(tomli_w.dumps(conf))
    (part / "summary.json").unlink()
    run_experiment(resume=part, figures=False)
    assert (full / "metrics.csv").read_text() == (part / "metrics.csv").read_text()


def test_spiking_cartpole_runs(tmp_path):
    out = run_experiment(ROOT / "experiments" / "spiking_cartpole.toml", out=tmp_path / "sc", figures=False,
                         overrides=["task.episodes=2", "seeds=2", "run.progress=false"])
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "episode,seed,return,length" and len(lines) == 1 + 2 * 2


@pytest.mark.parametrize("extra, match", [
    ("[rule]\nname = 'rstdp'\nlr = 1.0\nprojection = 'exc->nowhere'", "not a projection"),
    ("[rule]\nname = 'hebb'\nlr = 1.0", "spiking rules allowed"),
    ("[task]\nname = 'distal_reward'\ndelay_min = 3.0\ndelay_max = 1.0", "delay_min"),
    ("[rule]\nname = 'rstdp'\nlr = 1.0\ntau = 1.0", "unknown key 'rule.tau'"),
])
def test_spiking_config_errors(tmp_path, extra, match):
    (tmp_path / "net.toml").write_text(SMALL_NET)
    base = {"[network]": "file = 'net.toml'", "[task]": "name = 'distal_reward'", "[rule]": "name = 'rstdp'\nlr = 1.0"}
    head = extra.splitlines()[0]
    base[head] = "\n".join(extra.splitlines()[1:])
    (tmp_path / "c.toml").write_text("\n".join(f"{k}\n{v}" for k, v in base.items()))
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "c.toml")


def test_cli_spiking_error_is_one_line(tmp_path):
    (tmp_path / "c.toml").write_text("[network]\nfile = 'missing.toml'\n[task]\nname = 'distal_reward'\n"
                                     "[rule]\nname = 'rstdp'\nlr = 1.0\n")
    p = subprocess.run([sys.executable, "-m", "neuroprobe.cli", "run", str(tmp_path / "c.toml")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not found" in p.stderr


def test_distal_reward_on_brian2_writes_the_same_files(tmp_path):
    pytest.importorskip("brian2")
    import logging
    logging.getLogger("brian2").setLevel(logging.WARNING)  # Brian2's DEBUG code-generation logs are slow under pytest
    cfg = _distal_cfg(tmp_path)
    torch_run = run_experiment(cfg, out=tmp_path / "torch", figures=False)
    b2_run = run_experiment(cfg, out=tmp_path / "brian2", figures=False, overrides=["run.backend=brian2"])
    a, b = (torch_run / "metrics.csv").read_text().splitlines(), (b2_run / "metrics.csv").read_text().splitlines()
    assert a[0] == b[0] and len(a) == len(b)
    ra, rb = np.load(torch_run / "recordings.npz"), np.load(b2_run / "recordings.npz")
    for k in ("spikes/exc", "v/exc", "weight/exc->exc"):
        assert ra[k].shape == rb[k].shape and ra[k].dtype == rb[k].dtype
    # same network, independent noise: population rates agree in distribution
    rate = lambda lines: np.mean([float(x.split(",")[8]) for x in lines[1:]])  # noqa: E731
    assert abs(rate(a) - rate(b)) < 0.35 * rate(a)
