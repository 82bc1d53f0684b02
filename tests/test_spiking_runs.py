"""Spiking experiments through the command line: config errors are one line naming the file and the
key (exit 2). How spiking runs run and resume is tested in tests/test_loop_spiking.py."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuroprobe.config import RULE_CONFIGS, experiment_model, load_experiment
from neuroprobe.errors import ConfigError
from spiking_nets import SMALL_NET
from cli_helpers import run_cli as _cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _rstdp_ported():
    experiment_model()
    if "rstdp" not in RULE_CONFIGS:
        pytest.skip("rule 'rstdp' is not ported to the run loop yet")


def _config(tmp_path: Path, sections: dict[str, str]) -> Path:
    (tmp_path / "net.toml").write_text(SMALL_NET)
    base = {"[network]": "file = 'net.toml'", "[task]": "name = 'distal_reward'\nduration = 0.5",
            "[rule]": "name = 'rstdp'\nlr = 1.0", "[run]": "progress = false"}
    base.update(sections)
    path = tmp_path / "c.toml"
    path.write_text("\n".join(f"{k}\n{v}" for k, v in base.items() if v is not None) + "\n")
    return path


@pytest.mark.parametrize("sections, words", [
    ({"[rule]": "name = 'rstdp'\nlr = 1.0\nprojection = 'exc->nowhere'"}, ["rule.projection", "exc->nowhere"]),
    ({"[rule]": "name = 'hebb'\nlr = 1.0"}, ["rule", "hebb"]),
    ({"[rule]": "name = 'cet'\nlr = 1.0"}, ["cet", "distal_reward"]),
    ({"[rule]": "name = 'rstdp'\nlr = 1.0\ntau = 1.0"}, ["unknown key 'rule.tau'"]),
    ({"[rule]": "name = 'rstdp'\nlr = 'fast'"}, ["rule.lr", "fast"]),
    ({"[task]": "name = 'distal_reward'\ndelay_min = 3.0\ndelay_max = 1.0"}, ["delay_min"]),
    ({"[task]": "name = 'distal_reward'\nduration = 1e-4"}, ["task.duration", "dt"]),
    ({"[task]": "name = 'distal_reward'\nduration = -1.0"}, ["task.duration"]),
    ({"[task]": "name = 'distal_reward'\nduration = nan"}, ["task.duration"]),
    ({"[task]": "name = 'distal_reward'\nreport_every = 1e-5"}, ["task.report_every", "dt"]),
    ({"[run]": "checkpoint_every = 1e-5"}, ["run.checkpoint_every", "dt"]),
    ({"[run]": "progress = 'no'"}, ["run.progress"]),
    ({"[network]": "file = 'missing.toml'"}, ["network.file", "missing.toml"]),
    ({"[network]": None, "[model]": "sizes = [4, 8, 2]"}, ["network"]),
    ({"[monitor]": "spikes = ['nowhere']"}, ["monitor.spikes[0]", "nowhere"]),
    ({"[monitor]": "rate = ['exc->exc']"}, ["monitor.rate[0]", "exc->exc"]),
    ({"[monitor]": "state = [{variable = 'v', population = 'nowhere'}]"}, ["monitor.state[0].population"]),
    ({"[monitor]": "spikes = [{population = 'exc', indices = [60]}]"}, ["monitor.spikes[0].indices", "60"]),
    ({"[monitor]": "spikes = [{population = 'exc', batch_index = 3}]"}, ["monitor.spikes[0].batch_index"]),
    ({"[monitor]": "spikes = 'exc'"}, ["monitor.spikes"]),
])
def test_spiking_config_errors(tmp_path, capsys, sections, words):
    path = _config(tmp_path, sections)
    out = tmp_path / "out"
    rc, _, err = _cli(["run", str(path), "--out", str(out)], capsys)
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), err
    assert all(w in lines[0] for w in words), err
    assert not out.exists()  # refused at load: nothing is created
    with pytest.raises(ConfigError):
        load_experiment(path)


def test_cli_spiking_error_is_one_line(tmp_path):
    (tmp_path / "c.toml").write_text("[network]\nfile = 'missing.toml'\n[task]\nname = 'distal_reward'\n"
                                     "[rule]\nname = 'rstdp'\nlr = 1.0\n")
    p = subprocess.run([sys.executable, "-m", "neuroprobe.cli", "run", str(tmp_path / "c.toml")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not found" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
