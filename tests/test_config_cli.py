"""Tests of config validation and the command line: every bad input is one ``error:`` line naming
the file and the key, exit 2; ``--set`` bare keys resolve to their section.

Most paths call ``neuroprobe.cli.main`` in-process (fast); one runs the real executable as a
subprocess to check the process exit status and that no traceback reaches stderr.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from neuroprobe.config import apply_overrides, load_experiment
from neuroprobe.errors import ConfigError
from cli_helpers import run_cli as _cli

ROOT = Path(__file__).resolve().parents[1]
MODEL = (ROOT / "models" / "mlp_4_64_2.toml").as_posix()


def _rl_toml(**edits) -> str:
    """A small valid CartPole/NRL config; ``edits`` maps 'section.key' or 'key' to a raw TOML value
    (None removes the key)."""
    sections = {
        "": {"name": '"t"', "seed": "0", "seeds": "1"},
        "model": {"file": f'"{MODEL}"'},
        "task": {"name": '"CartPole-v1"', "episodes": "3"},
        "rule": {"name": '"nrl"', "lr": "0.05", "noise_std": "1e-3"},
        "modulator": {"smoothing": "0.66", "scale": '"abs_reward"'},
        "run": {"progress": "false"},
    }
    for k, v in edits.items():
        sec, key = k.split(".", 1) if "." in k else ("", k)
        if v is None:
            sections[sec].pop(key, None)
        else:
            sections[sec][key] = v
    out = [f"{k} = {v}" for k, v in sections[""].items()]
    for sec, kv in sections.items():
        if sec:
            out.append(f"[{sec}]")
            out += [f"{k} = {v}" for k, v in kv.items()]
    return "\n".join(out) + "\n"


def _write(tmp_path, text, name="c.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _assert_one_error_line(rc, err, *words, code=2):
    assert rc == code, (rc, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], (w, err)


def test_valid_config_validates(tmp_path):
    exp = load_experiment(_write(tmp_path, _rl_toml()))
    assert exp.family == "rl"
    assert exp.rule.passes == 1 and exp.rule.clean_pass is True  # defaults filled
    assert exp.model_spec.sizes == [4, 64, 2] or list(exp.model_spec.sizes) == [4, 64, 2]
    assert exp.run.checkpoint_every is None
    assert exp.schedule.unit == "episodes" and exp.schedule.total == 3
    assert exp.schedule.checkpoint_every == 1  # a tenth of the budget, at least one episode


@pytest.mark.parametrize("edits, words", [
    ({"colour": '"red"'}, ["colour"]),                                # unknown top-level key
    ({"task.horizon": "10"}, ["task.horizon"]),                        # unknown key in a section
    ({"rule.momentum": "0.9"}, ["rule.momentum"]),
    ({"rule.lr": '"fast"'}, ["rule.lr", "fast"]),                      # wrong type
    ({"task.episodes": "true"}, ["task.episodes"]),
    ({"seeds": "2.5"}, ["seeds"]),
    ({"rule.lr": "inf"}, ["rule.lr"]),
    ({"rule.lr": "-1"}, ["rule.lr", "-1"]),                            # out of range
    ({"rule.lr": "0"}, ["rule.lr"]),
    ({"rule.lr": "1e39"}, ["rule.lr"]),                                # beyond float32
    ({"modulator.smoothing": "2"}, ["modulator.smoothing"]),
    ({"modulator.scale": '"minmax"'}, ["modulator.scale"]),
    ({"seeds": "0"}, ["seeds"]),
    ({"seed": "-1"}, ["seed"]),
    ({"rule.noise_norm": '"unit"'}, ["rule.noise_norm"]),
    ({"rule.passes": "1000000000000000000"}, ["rule.passes"]),
    ({"rule.name": '"hebb"'}, ["rule", "hebb"]),                       # unknown rule
    ({"task.name": '"Pong-v5"'}, ["task", "Pong-v5"]),                 # unknown task
    ({"rule.name": '"cet"', "rule.noise_std": None}, ["rule.name", "cet", "CartPole-v1"]),  # not applicable
    ({"rule.lr": None}, ["rule.lr"]),                                  # missing key
    ({"model.file": '"no/such/model.toml"'}, ["model.file", "no/such/model.toml"]),  # missing model file
    ({"run.progress": '"no"'}, ["run.progress", "'no'"]),              # a string is not a boolean
    ({"run.checkpoint_every": "1.5"}, ["run.checkpoint_every"]),        # not whole episodes
    ({"name": '"../x"'}, ["name"]),                                     # run names become directories
])
def test_config_errors_exit_2_with_one_line(tmp_path, capsys, edits, words):
    path = _write(tmp_path, _rl_toml(**edits))
    out_dir = tmp_path / "out"
    rc, out, err = _cli(["run", path, "--out", str(out_dir)], capsys)
    _assert_one_error_line(rc, err, path, *words)
    assert not out_dir.exists()  # nothing is created for a bad config
    with pytest.raises(ConfigError):
        load_experiment(path)


def test_missing_table(tmp_path, capsys):
    text = _rl_toml().split("[rule]")[0]
    rc, _, err = _cli(["run", _write(tmp_path, text)], capsys)
    _assert_one_error_line(rc, err, "rule")


def test_missing_config_file(tmp_path, capsys):
    rc, _, err = _cli(["run", str(tmp_path / "absent.toml")], capsys)
    _assert_one_error_line(rc, err, "absent.toml")


def test_invalid_toml(tmp_path, capsys):
    path = _write(tmp_path, _rl_toml() + "[rule\nlr = \n")
    rc, _, err = _cli(["run", path], capsys)
    _assert_one_error_line(rc, err, "c.toml", "TOML")


def test_invalid_model_files(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text("[network]\nsizes = [4, 64\n")
    rc, _, err = _cli(["run", _write(tmp_path, _rl_toml(**{"model.file": f'"{bad.as_posix()}"'}))], capsys)
    _assert_one_error_line(rc, err, "m.toml")
    bad.write_text('[network]\nsizes = [4, 64, 2]\nactivation = "swish"\n')
    rc, _, err = _cli(["run", _write(tmp_path, _rl_toml(**{"model.file": f'"{bad.as_posix()}"'}))], capsys)
    _assert_one_error_line(rc, err, "m.toml", "activation", "swish")


def test_inline_model_errors(tmp_path, capsys):
    text = _rl_toml(**{"model.file": None, "model.sizes": "[4]"})
    rc, _, err = _cli(["run", _write(tmp_path, text)], capsys)
    _assert_one_error_line(rc, err, "sizes")
    text = _rl_toml(**{"model.sizes": "[4, 8, 2]"})  # file and inline keys together
    rc, _, err = _cli(["run", _write(tmp_path, text)], capsys)
    _assert_one_error_line(rc, err, "file", "sizes")


@pytest.mark.parametrize("sets, words", [
    (["rulelr0.1"], ["--set", "rulelr0.1"]),          # no '='
    (["rule.lr=fast"], ["rule.lr", "fast"]),           # wrong type through --set
    (["rule.lr=-1"], ["rule.lr"]),
    (["modulator.smoothing=2"], ["modulator.smoothing"]),
    (["physics.g=9.8"], ["physics"]),                   # unknown section
    (["warp=9"], ["warp"]),                             # unknown bare key
    (["delay=3"], ["delay"]),                           # a CET key does not apply to an NRL rule
    (["task.colour=1"], ["task.colour"]),
])
def test_bad_set_overrides(tmp_path, capsys, sets, words):
    argv = ["run", _write(tmp_path, _rl_toml()), "--out", str(tmp_path / "o")]
    for s in sets:
        argv += ["--set", s]
    rc, _, err = _cli(argv, capsys)
    _assert_one_error_line(rc, err, *words)


def test_set_bare_key_resolution(tmp_path):
    raw = tomllib.loads(_rl_toml())
    got = apply_overrides(raw, ["episodes=7", "lr=0.25", "smoothing=0.5", "progress=true", "seeds=3",
                                "noise_std=0.01", "rule.passes=4", "scale=\"none\""])
    assert got["task"]["episodes"] == 7
    assert got["rule"]["lr"] == 0.25 and got["rule"]["noise_std"] == 0.01 and got["rule"]["passes"] == 4
    assert got["modulator"]["smoothing"] == 0.5 and got["modulator"]["scale"] == "none"
    assert got["run"]["progress"] is True
    assert got["seeds"] == 3
    assert raw["task"]["episodes"] == 3  # the input is not modified
    exp = load_experiment(_write(tmp_path, _rl_toml()), ["episodes=5", "checkpoint_every=2"])
    assert exp.task.episodes == 5 and exp.run.checkpoint_every == 2 and exp.schedule.checkpoint_every == 2


def test_set_bare_key_end_to_end(tmp_path, capsys):
    out_dir = tmp_path / "run"
    rc, out, err = _cli(["run", _write(tmp_path, _rl_toml()), "--out", str(out_dir), "--set", "episodes=2",
                         "--set", "seeds=2"], capsys)
    assert rc == 0, err
    saved = tomllib.loads((out_dir / "config.toml").read_text())
    assert saved["task"]["episodes"] == 2 and saved["seeds"] == 2
    rows = (out_dir / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == 4  # 2 episodes x 2 seeds
    assert sorted({r.split(",")[1] for r in rows}) == ["0", "1"]
    assert "wrote" in out


def test_run_without_config(capsys):
    rc, _, err = _cli(["run"], capsys)
    _assert_one_error_line(rc, err, "CONFIG")


def test_align_errors(tmp_path, capsys):
    rc, _, err = _cli(["align", str(ROOT / "experiments" / "cet_digits.toml"), "--samples", "5"], capsys)
    _assert_one_error_line(rc, err, "not an RL task")
    rc, _, err = _cli(["align", _write(tmp_path, _rl_toml()), "--samples", "0"], capsys)
    _assert_one_error_line(rc, err, "--samples")


def test_align_runs(tmp_path, capsys):
    rc, out, err = _cli(["align", _write(tmp_path, _rl_toml()), "--samples", "4", "--states", "2", "--json"], capsys)
    assert rc == 0, err
    import json

    assert all(-1 <= v <= 1 for v in json.loads(out).values())


def test_info_exits_0(capsys):
    rc, out, err = _cli(["info"], capsys)
    assert rc == 0, err
    assert out.startswith("neuroprobe ")
    assert "torch" in out and "gymnasium" in out


def test_schema_is_json(capsys):
    import json

    rc, out, err = _cli(["schema"], capsys)
    assert rc == 0, err
    schema = json.loads(out)
    assert schema["title"] == "neuroprobe experiment"


def test_plot_on_non_run_directory(tmp_path, capsys):
    rc, out, err = _cli(["plot", str(tmp_path)], capsys)
    _assert_one_error_line(rc, err, "run directory", code=1)
    (tmp_path / "metrics.csv").write_text("episode,seed,return,length\n")
    rc, out, err = _cli(["plot", str(tmp_path)], capsys)
    _assert_one_error_line(rc, err, "no rows", code=1)


def _subprocess(args, cwd):
    return subprocess.run([sys.executable, "-m", "neuroprobe.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_process_exit_codes(tmp_path):
    """The real executable: exit status 2, one 'error:' line on stderr, no traceback, nothing on stdout."""
    path = _write(tmp_path, _rl_toml(**{"rule.lr": '"fast"'}))
    proc = _subprocess(["run", path, "--set", "progress=false", "--out", str(tmp_path / "o")], tmp_path)
    _assert_one_error_line(proc.returncode, proc.stderr, "rule.lr")
    assert proc.stdout == ""


def test_bad_argument_value_is_one_line(tmp_path, capsys):
    rc, _, err = _cli(["run", _write(tmp_path, _rl_toml()), "--seed", "abc"], capsys)
    _assert_one_error_line(rc, err, "--seed")


def test_model_not_fitting_rl_task_exits_2(tmp_path, capsys):
    text = _rl_toml(**{"model.file": None, "model.sizes": "[5, 8, 2]"})
    rc, _, err = _cli(["run", _write(tmp_path, text), "--out", str(tmp_path / "o")], capsys)
    _assert_one_error_line(rc, err, "[5, 8, 2]")


def test_model_not_fitting_supervised_task_exits_2(tmp_path, capsys):
    text = "\n".join(['name = "s"', "[model]", "sizes = [5, 8, 10]", "[task]", 'name = "digits"', "steps = 2",
                      "[rule]", 'name = "cet"', "lr = 0.1", "[run]", "progress = false"]) + "\n"
    rc, _, err = _cli(["run", _write(tmp_path, text), "--out", str(tmp_path / "o")], capsys)
    _assert_one_error_line(rc, err, "[5, 8, 10]", "64")
