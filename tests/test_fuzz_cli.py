"""Property tests of the command line: whatever the input, ``neuroprobe`` ends with exit 0, or with
exactly one line on stderr starting ``error:`` and exit 2 (bad input) or 1 (a run that stops); never
a traceback, never a hang.

Inputs: mutated experiment configs (every shipped config in experiments/, wrong types, huge and
non-finite numbers, unknown keys, tables replaced), config bytes that are not UTF-8 or not TOML,
mutated network files (rate and spiking), command-line arguments, and the files of run directories
(``plot`` on malformed metrics.csv / config.toml / recordings.npz, ``--resume`` from damaged or
crafted checkpoints and metrics).

Most cases call ``neuroprobe.cli.main`` in-process with tiny budgets (an interval timer turns a hang
into a failure); the few inputs that could block a process (FIFOs where files are read) run the real
executable in a subprocess with a timeout. Configs whose rule is not registered yet are skipped with
that reason, so the skip disappears when the rule is ported.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from hypothesis import assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from neuroprobe.cli import main
from neuroprobe.config import RULE_CONFIGS, experiment_model, load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.rundir import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
MODELS = ROOT / "models"
CONFIGS = sorted(EXPERIMENTS.glob("*.toml"))
HANG_S = 120  # one in-process case running longer than this is a hang
_fewer = settings(max_examples=max(1, settings.default.max_examples * 2 // 3))  # the slower properties


# ----------------------------------------------------------------------------------- helpers


def _raw(path: Path) -> dict:
    """A shipped config as a dict, its network file made absolute (so copies can live anywhere)."""
    raw = tomllib.loads(path.read_text())
    for sec in ("model", "network"):
        f = raw.get(sec, {}).get("file")
        if isinstance(f, str):
            raw[sec]["file"] = str((path.parent / f).resolve())
    return raw


def _unported(path: Path) -> str | None:
    """Why a shipped config cannot run yet (its rule is not registered), or None."""
    experiment_model()  # registers the shipped rules
    name = tomllib.loads(path.read_text()).get("rule", {}).get("name")
    if name not in RULE_CONFIGS:
        return f"rule {name!r} of {path.name} is not ported to the run loop yet"
    return None


PORTED = [p for p in CONFIGS if _unported(p) is None]


def _tiny(raw: dict) -> list[str]:
    """--set overrides that make a run of this config take well under a second."""
    task = raw.get("task", {}).get("name") if isinstance(raw.get("task"), dict) else None
    if task == "digits":
        return ["task.steps=4", "task.eval_every=2"]
    if task == "distal_reward":
        return ["task.duration=0.02", "task.report_every=0.01"]
    if task == "Reaching1D-v0":
        return ["task.episodes=1", "seeds=1"]
    return ["task.episodes=2", "seeds=1"]


class _Hang(BaseException):
    """Raised by the interval timer: an in-process case ran longer than HANG_S."""


@contextlib.contextmanager
def _deadline(seconds: float = HANG_S):
    def on_alarm(signum, frame):
        raise _Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process -> (exit code, stdout, stderr); a traceback or a hang fails the test."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with _deadline(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse
                rc = e.code
    except _Hang as e:
        pytest.fail(f"neuroprobe {argv!r} hung ({e})")
    except Exception as e:  # what the user would see as a traceback
        import traceback

        pytest.fail(f"neuroprobe {argv!r} raised instead of one error line:\n"
                    + "".join(traceback.format_exception(e))[-3000:])
    finally:
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


def _assert_clean(rc, err: str, argv=None, codes=(0, 1, 2)) -> None:
    """Exit 0, or one 'error:' line and exit 2 (bad input) / 1 (a run that stops); no traceback."""
    if currently_in_test_context():
        event(f"exit {rc}")
    assert "Traceback" not in err, (argv, err)
    assert rc in codes, (argv, rc, err)
    if rc != 0:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, rc, err)


def _run_argv(cfg: Path, raw: dict, out: Path, keep: set[str] = frozenset()) -> list[str]:
    """run CFG --out OUT with tiny budgets (except for keys in ``keep``: the case's own mutations)."""
    argv = ["run", str(cfg), "--out", str(out)]
    for o in _tiny(raw) + ["run.progress=false"]:
        if o.split("=")[0] not in keep:
            argv += ["--set", o]
    return argv


def _sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]


def _too_long(cfg: Path, argv: list[str]) -> bool:
    """Whether ``run`` with these arguments is a *valid* experiment too large for a unit test (a
    mutation that made a budget or a size big but legal): such cases are not run."""
    try:
        exp = load_experiment(cfg, _sets(argv))
    except ConfigError:
        return False  # refused at load: cheap, and exactly what is tested
    small = {"episodes": 4, "steps": 400}.get(exp.schedule.unit, 0)
    if exp.schedule.total > small or exp.seeds > 4:
        return True
    if exp.model_spec is not None and max(exp.model_spec.sizes) > 256:
        return True
    if exp.spiking_spec is not None and sum(p.size for p in exp.spiking_spec.populations) > 2000:
        return True
    ints = [v for sec in (exp.task, exp.rule) for v in sec.model_dump().values()
            if isinstance(v, int) and not isinstance(v, bool)]
    return any(v > 64 for v in ints)


# values of the wrong type or out of range for most keys
BAD_VALUES = [[1, 2], ["a"], "x", "", "no", True, 10**30, -10**30, 10**18, 2**63, 1e39, -1e39, float("nan"),
              float("inf"), float("-inf"), -1, 0, -0.5, 1e-12, {}, {"k": 1}]


def _leaves(raw: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every key of a config (tables and their keys)."""
    out = []
    for k, v in raw.items():
        path = f"{prefix}{k}"
        out.append(path)
        if isinstance(v, dict):
            out += _leaves(v, path + ".")
    return out


def _set(raw: dict, path: str, value, delete: bool = False) -> dict:
    raw = copy.deepcopy(raw)
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    if delete:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return raw


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="np_fuzz_"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------- configs, key by key


@pytest.mark.parametrize("cfg", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_key_of_shipped_configs_with_bad_values(cfg, work):
    """Each key of each shipped config set to each bad value (or removed): the config loads, or one
    ConfigError line names the file and the key (or its table)."""
    reason = _unported(cfg)
    if reason:
        pytest.skip(reason)
    raw = _raw(cfg)
    path = work / cfg.name
    for key in _leaves(raw):
        for value in BAD_VALUES + [None]:
            mutated = _set(raw, key, value, delete=value is None)
            path.write_text(tomli_w.dumps(mutated))
            try:
                load_experiment(path)
            except ConfigError as e:
                msg = str(e)
                assert "\n" not in msg and msg.startswith(str(path)), (key, value, msg)
                section = key.split(".")[0]
                # the key itself, or (a table replaced or removed, its tag removed) its table
                names_it = key in msg or any(s in msg for s in (f"'{section}'", f"[{section}]", f"'{section}."))
                assert names_it or "would hold" in msg, (key, value, msg)


@pytest.mark.parametrize("cfg, edits, key", [
    ("probe_cartpole", {"rule.branches": 10**18}, "rule.branches"),
    ("probe_digits", {"rule.branches": 10**18}, "rule.branches"),
    ("distal_reward", {"task.duration": 1e-4}, "task.duration"),
    ("distal_reward", {"task.duration": 0.0}, "task.duration"),
    ("nrl_cartpole", {"task.episodes": 10**30}, "task.episodes"),
    ("nrl_cartpole", {"seed": 10**30}, "seed"),
    ("nrl_cartpole", {"rule.lr": 1e39}, "rule.lr"),
    ("nrl_cartpole", {"rule.noise_std": float("nan")}, "rule.noise_std"),
    ("nrl_cartpole", {"modulator.init": float("-inf")}, "modulator.init"),
    ("nrl_cartpole", {"seeds": -2}, "seeds"),
    ("nrl_cartpole", {"model": {"sizes": [4, -64, 2]}}, "model.sizes"),
    ("nrl_cartpole", {"model": {"sizes": [4, 10**30, 2]}}, "model.sizes"),
    ("nrl_cartpole", {"task.name": ["CartPole-v1"]}, "task"),
    ("nrl_cartpole", {"task.reward": ["every_step"]}, "task.reward"),
    ("nrl_cartpole", {"rule.noise_norm": ["layer"]}, "rule.noise_norm"),
    ("nrl_cartpole", {"rule.clean_pass": "no"}, "rule.clean_pass"),
    ("nrl_cartpole", {"run": {"progress": "yes"}}, "run.progress"),
    ("cet_digits", {"task.batch": -32}, "task.batch"),
    ("cet_digits", {"task.steps": 10**18}, "task.steps"),
    ("spiking_cartpole", {"task.neurons_per_dim": 0}, "task.neurons_per_dim"),
    ("nrl_cartpole", {"run.checkpoint_every": 0}, "run.checkpoint_every"),
    ("nrl_cartpole", {"run.threads": 10**6}, "run.threads"),
])
def test_named_bad_values(work, cfg, edits, key):
    """The inputs named in the acceptance brief, through ``neuroprobe run``: exit 2, one line naming the key."""
    cfg = EXPERIMENTS / f"{cfg}.toml"
    reason = _unported(cfg)
    if reason:
        pytest.skip(reason)
    raw = _raw(cfg)
    for k, v in edits.items():
        raw = _set(raw, k, v)
    path = work / "c.toml"
    path.write_text(tomli_w.dumps(raw))
    rc, _, err = _cli(["run", str(path), "--out", str(work / "o")])
    _assert_clean(rc, err, codes=(2,))
    assert f"'{key}" in err and str(path) in err, err
    assert not (work / "o").exists()


# ----------------------------------------------------------------------------------- configs, mutated and run

_value = st.one_of(st.sampled_from(BAD_VALUES), st.integers(min_value=-2**70, max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.booleans(),
                   st.lists(st.integers(min_value=-3, max_value=3), max_size=3))


@st.composite
def _mutated_config(draw):
    cfg = draw(st.sampled_from(PORTED))
    raw = _raw(cfg)
    keys = _leaves(raw)
    n = draw(st.integers(min_value=1, max_value=3))
    touched = set()
    for _ in range(n):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "new"]))
        if op == "new":
            sec = draw(st.sampled_from(["", "task.", "rule.", "run.", "modulator.", "model.", "network.", "monitor."]))
            key = sec + draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
        else:
            key = draw(st.sampled_from(keys))
        raw = _set(raw, key, draw(_value), delete=op == "delete")
        touched.add(key)
    return cfg, raw, touched


@given(case=_mutated_config())
def test_mutated_configs_run_or_fail_with_one_line(case):
    cfg, raw, touched = case
    d = Path(tempfile.mkdtemp(prefix="np_fuzz_"))
    try:
        path = d / "c.toml"
        try:
            path.write_text(tomli_w.dumps(raw))
        except (TypeError, ValueError):
            assume(False)  # not expressible in TOML
        argv = _run_argv(path, raw, d / "out", keep=touched)
        if _too_long(path, argv):
            event("valid but too long to run")
            return
        rc, _, err = _cli(argv)
        _assert_clean(rc, err, touched)
    finally:
        shutil.rmtree(d, ignore_errors=True)


_TOML_BITS = st.text(alphabet='[]={}"\'.,#\n\\ 0123456789eE+-_xnaif', max_size=8).map(str.encode)


@given(cfg=st.sampled_from(PORTED), edits=st.lists(st.tuples(
    st.floats(min_value=0, max_value=1), st.integers(min_value=0, max_value=40),
    st.one_of(st.binary(max_size=8), _TOML_BITS)), min_size=1, max_size=3))
def test_config_bytes_not_utf8_or_not_toml(cfg, edits):
    """Byte-level damage (cuts, inserted bytes that are not UTF-8, TOML punctuation) of a config."""
    data = bytearray(tomli_w.dumps(_raw(cfg)).encode())
    for where, cut, insert in edits:
        i = int(where * len(data))
        data[i:i + cut] = insert
    d = Path(tempfile.mkdtemp(prefix="np_fuzz_"))
    try:
        path = d / "c.toml"
        path.write_bytes(bytes(data))
        argv = _run_argv(path, {"task": {"name": tomllib.loads(cfg.read_text())["task"]["name"]}}, d / "o")
        if _too_long(path, argv):
            event("valid but too long to run")
            return
        rc, _, err = _cli(argv)
        _assert_clean(rc, err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("text, words", [
    (b'name = "\xff\xfe"\n', ["not UTF-8"]),
    (b"\x00\x01\x02", []),
    (b"[rule\nlr = \n", ["not valid TOML"]),
    (b"a = " + b"[" * 5000 + b"]" * 5000, []),
    (b"[task]\nname = 'CartPole-v1'\n[task]\n", ["not valid TOML"]),
    (b"", ["task"]),
])
def test_config_files_that_are_not_toml(work, text, words):
    path = work / "c.toml"
    path.write_bytes(text)
    rc, _, err = _cli(["run", str(path), "--out", str(work / "o")])
    _assert_clean(rc, err, codes=(2,))
    assert all(w in err for w in words), err
    assert not (work / "o").exists()


# ----------------------------------------------------------------------------------- network files

RATE_CFG = EXPERIMENTS / "nrl_cartpole.toml"
SPIKING_CFGS = [p for p in CONFIGS if "network" in tomllib.loads(p.read_text())]


def _spiking_unported() -> str | None:
    for p in SPIKING_CFGS:
        if _unported(p) is None:
            return None
    return "no spiking rule is ported to the run loop yet"


def _net_case(work: Path, cfg: Path, net_text: bytes) -> tuple[int, str]:
    net = work / "net.toml"
    net.write_bytes(net_text)
    raw = _raw(cfg)
    sec = "network" if "network" in raw else "model"
    argv = _run_argv(cfg, raw, work / "o") + ["--set", f"{sec}.file={tomli_w.dumps({'v': str(net)})[4:]}"]
    if _too_long(cfg, argv):
        return 0, ""  # a valid network too large for a unit test: not run
    rc, _, err = _cli(argv)
    return rc, err


@pytest.mark.parametrize("edit, words", [
    (("network.sizes", [4, float("nan"), 2]), ["sizes"]),
    (("network.sizes", [4, 10**30, 2]), ["sizes"]),
    (("network.sizes", [4, -64, 2]), ["sizes"]),
    (("network.sizes", "4,64,2"), ["sizes"]),
    (("network.bias", "no"), ["bias", "'no'"]),
    (("network.activation", 3), ["activation"]),
    (("network.init", float("inf")), ["init"]),
    (("network.colour", "red"), ["colour"]),
])
def test_rate_network_files(work, edit, words):
    raw = tomllib.loads((MODELS / "mlp_4_64_2.toml").read_text())
    rc, err = _net_case(work, RATE_CFG, tomli_w.dumps(_set(raw, *edit)).encode())
    _assert_clean(rc, err, codes=(2,))
    assert "net.toml" in err and all(w in err for w in words), err


@pytest.mark.parametrize("edit, words", [
    (("network.dt", float("nan")), ["dt"]),
    (("network.dt", float("inf")), ["dt"]),
    (("population[0].size", -5), ["size"]),
    (("population[0].size", 10**30), ["size"]),
    (("population[1].lif.tau_mem", float("inf")), ["tau_mem"]),
    (("population[1].lif.noise_std", float("nan")), ["noise_std"]),
    (("population[1].lif.v_th", "high"), ["v_th"]),
    (("projection[0].autapses", "no"), ["autapses", "'no'"]),
    (("projection[0].p", 2.0), ["p"]),
    (("projection[0].weight", float("nan")), ["weight"]),
    (("projection[0].pre", ["obs"]), ["pre"]),
    (("projection[0].post", "nowhere"), ["nowhere"]),
])
def test_spiking_network_files(work, edit, words):
    reason = _spiking_unported()
    if reason:
        pytest.skip(reason)
    cfg = next(p for p in SPIKING_CFGS if _unported(p) is None)
    raw = tomllib.loads((MODELS / "snn_cartpole.toml").read_text())
    key, value = edit
    node, parts = raw, key.replace("[", ".[").split(".")
    for p in parts[:-1]:
        node = node[int(p[1:-1])] if p.startswith("[") else node[p]
    node[parts[-1]] = value
    rc, err = _net_case(work, cfg, tomli_w.dumps(raw).encode())
    _assert_clean(rc, err, codes=(2,))
    assert "net.toml" in err and all(w in err for w in words), err


def _users() -> dict[str, Path]:
    """Network file name -> a ported shipped config that runs it."""
    out: dict[str, Path] = {}
    for p in PORTED:
        raw = _raw(p)
        for sec in ("model", "network"):
            f = raw.get(sec, {}).get("file")
            if f:
                out.setdefault(Path(f).name, p)
    return out


USERS = _users()


@given(model=st.sampled_from(sorted(USERS)), n=st.integers(min_value=1, max_value=3), data=st.data())
def test_mutated_network_files(model, n, data):
    """Random entries of a shipped network file set to bad values, run through a config that uses it."""
    cfg = USERS[model]
    model = MODELS / model
    raw = tomllib.loads(model.read_text())

    def paths(node, prefix=""):
        out = []
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(prefix + k)
                out += paths(v, prefix + k + ".")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, prefix[:-1] + f"[{i}].")
        return out

    for _ in range(n):
        key = data.draw(st.sampled_from(paths(raw)))
        node, parts = raw, key.replace("[", ".[").split(".")
        for p in parts[:-1]:
            node = node[int(p[1:-1])] if p.startswith("[") else node[p]
        leaf = parts[-1]
        value = data.draw(_value)
        if leaf.startswith("["):
            node[int(leaf[1:-1])] = value
        else:
            node[leaf] = value
    try:
        text = tomli_w.dumps(raw).encode()
    except (TypeError, ValueError):
        assume(False)
    d = Path(tempfile.mkdtemp(prefix="np_fuzz_"))
    try:
        rc, err = _net_case(d, cfg, text)
        _assert_clean(rc, err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------- command-line arguments


@pytest.mark.parametrize("argv, words", [
    (["run", "{cfg}", "--out", ""], ["--out"]),
    (["run", "{cfg}", "--out", "{file}"], ["--out", "not a directory"]),
    (["run", "{cfg}", "--out", "{work}/a/../b"], ["'..'"]),
    (["run", "{cfg}", "--out", "a\x00b"], ["NUL"]),
    (["run", "{cfg}", "--seed", "-1"], ["--seed"]),
    (["run", "{cfg}", "--seed", "1e3"], ["--seed"]),
    (["run", "{cfg}", "--seed", str(2**31)], ["--seed"]),
    (["run", "{cfg}", "--frobnicate"], ["--frobnicate"]),
    (["run", "{cfg}", "--set"], ["--set"]),
    (["run", "{cfg}", "--set", "rule.lr"], ["rule.lr"]),
    (["run", "{cfg}", "--set", "=1"], ["--set"]),
    (["run", "{cfg}", "--set", "rule.lr=[1,2]"], ["rule.lr"]),
    (["run", "{cfg}", "--set", "rule.lr=nan"], ["rule.lr"]),
    (["run", "{cfg}", "--set", "task.episodes=1e30"], ["task.episodes"]),
    (["run", "{cfg}", "--set", "a.b.c.d=1"], ["'a'"]),
    (["run", "{cfg}", "--set", "rule.lr.x=1"], ["rule.lr"]),
    (["run", "{cfg}", "--backend", "tpu"], ["--backend"]),
    (["run", "--resume", ""], ["--resume"]),
    (["run", "--resume", "{work}/none"], ["--resume"]),
    (["run", "--resume", "{file}"], ["--resume"]),
    (["run", "{work}/absent.toml"], ["absent.toml"]),
    (["run", "{work}"], ["not a file"]),
    (["run"], ["CONFIG"]),
    (["align", "{cfg}", "--states", "0"], ["--states"]),
    (["align", "{cfg}", "--samples", "0"], ["--samples"]),
    (["align", "{cfg}", "--samples", "-3"], ["--samples"]),
    (["align", "{cfg}", "--samples", "x"], ["--samples"]),
    (["deploy", "{cfg}", "--record-steps", "0"], ["--record-steps"]),
    (["deploy", "{cfg}", "--record-steps", "-1"], ["--record-steps"]),
    (["deploy", "{cfg}", "--timeout", "0"], ["--timeout"]),
    (["deploy", "{cfg}", "--timeout", "-1"], ["--timeout"]),
    (["deploy", "{cfg}", "--timeout", "nan"], ["--timeout"]),
    (["deploy", "{cfg}", "--timeout", "inf"], ["--timeout"]),
    (["deploy", "{cfg}", "--steps", "0"], ["--steps"]),
    (["deploy", "{cfg}", "--precision", "double"], ["--precision"]),
    (["deploy", "{work}/absent.toml"], ["absent.toml"]),
    (["plot", "{work}/absent"], ["absent"]),
    (["plot", "{file}"], ["run directory"]),
    (["plot", "{work}", "--format", "gif"], ["--format"]),
    (["frobnicate"], ["frobnicate"]),
    ([], ["command"]),
])
def test_bad_arguments(work, argv, words):
    f = work / "afile"
    f.write_text("x")
    subs = {"{cfg}": str(RATE_CFG), "{file}": str(f), "{work}": str(work)}
    argv = [a for a in argv]
    for i, a in enumerate(argv):
        for k, v in subs.items():
            a = a.replace(k, v)
        argv[i] = a
    rc, out, err = _cli(argv)
    _assert_clean(rc, err, argv, codes=(1, 2))
    assert all(w in err for w in words), (argv, err)


_ARG_VALUES = st.sampled_from(["", "0", "-1", "1", "2", "nan", "inf", "-inf", "1e400", "10000000000000000000000",
                               "x", ".", "..", "a/../b", "sub/dir", "/dev/null", "\x00", "--", "-", "rule.lr=1", "lr=-1",
                               "task.episodes=0", "seeds=0", "=", "a=b=c", "é", "[1,2]", '"s"'])


@given(command=st.sampled_from(["run", "align", "plot", "deploy"]), data=st.data())
def test_fuzzed_arguments(command, data):
    """Random flags and values. Runs in a fresh temporary working directory: every path the case
    names (relative values, default run directories) lands there."""
    work = Path(tempfile.mkdtemp(prefix="np_fuzz_"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        _fuzzed_arguments(command, data, work)
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


def _fuzzed_arguments(command, data, work: Path):
    flags = {"run": ["--set", "--seed", "--out", "--resume", "--backend", "--bogus"],
             "align": ["--samples", "--states", "--seed", "--set", "--json", "--bogus"],
             "plot": ["--format", "--bogus"],
             "deploy": ["--record-steps", "--timeout", "--steps", "--precision", "--backend", "--bogus"]}[command]
    argv = [command]
    # deploy never gets a real config (it would start Lava): its source is absent or not a config
    positional = data.draw(st.sampled_from(["cfg", "none", "value"] if command != "deploy" else ["none", "value"]))
    if positional == "cfg":
        argv.append(str(RATE_CFG))
    elif positional == "value":
        argv.append(data.draw(_ARG_VALUES))
    for _ in range(data.draw(st.integers(min_value=0, max_value=4))):
        argv.append(data.draw(st.sampled_from(flags)))
        if data.draw(st.booleans()):
            argv.append(data.draw(_ARG_VALUES))
    if command == "run":  # a valid command that really runs: keep it tiny
        argv += ["--set", "task.episodes=1", "--set", "seeds=1", "--set", "run.progress=false"]
    if command == "align":
        argv += ["--samples", "2", "--states", "2"]
    rc, _, err = _cli(argv)
    _assert_clean(rc, err, argv)
    assert not any(work.parent.glob("metrics.csv")), "a run was written outside the test's directory"


# ----------------------------------------------------------------------------------- plot on run directories

_METRICS_HEADERS = ["episode,seed,return,length", "step,accuracy,train_loss,train_accuracy",
                    "time,seed,w_rewarded,w_mean,w_p99,rank", "a,b", ""]
_CELL = st.one_of(st.integers(min_value=-10**20, max_value=10**20).map(str), st.floats().map(repr),
                  st.sampled_from(["", "x", "nan", "inf", "-inf", "1e999", '"', "\x00", "é"]))


@st.composite
def _metrics_csv(draw) -> bytes:
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        return draw(st.binary(max_size=200))
    header = draw(st.sampled_from(_METRICS_HEADERS))
    n = len(header.split(","))
    if draw(st.booleans()):  # well-formed rows of numbers (odd ones: nan, inf, huge, negative)
        cell = st.one_of(st.integers(min_value=-3, max_value=10**6).map(str), st.floats(width=32).map(repr))
        rows = draw(st.lists(st.lists(cell, min_size=n, max_size=n), min_size=1, max_size=6))
    else:
        rows = draw(st.lists(st.lists(_CELL, min_size=max(0, n - 1), max_size=n + 1), max_size=6))
    return (header + "\n" + "".join(",".join(r) + "\n" for r in rows)).encode("utf-8", "surrogatepass")


@st.composite
def _config_toml(draw) -> bytes | None:
    kind = draw(st.sampled_from(["none", "ok", "ok", "types", "bytes"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    cfg = {"name": "x", "run": {"rolling": 5}, "rule": {"name": "nrl", "lr": 0.1}, "task": {"name": "CartPole-v1"}}
    if kind == "types":
        key = draw(st.sampled_from(["name", "run", "rule", "task", "run.rolling", "rule.name", "task.name"]))
        cfg = _set(cfg, key, draw(_value))
    try:
        return tomli_w.dumps(cfg).encode()
    except (TypeError, ValueError):
        return b"run = 3\n"


_KEYS = st.sampled_from(["spikes/exc", "v/exc", "rate/exc", "weight/exc->exc", "time/spikes/exc", "time/v/exc",
                         "indices/v/exc", "meta/dt", "meta/v_th/exc", "meta/highlight/exc->exc",
                         "meta/kernel/delay_s", "meta/kernel/orders", "elig/exc->exc", "x", "spikes/", "/"])
_ARRAY = st.one_of(
    st.tuples(st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_]),
              st.lists(st.integers(min_value=0, max_value=5), max_size=3),
              st.sampled_from([0.0, 1.0, -1.0, 1e-3, np.nan, np.inf, 1e30])).map(
        lambda t: np.full(t[1], t[2]).astype(t[0]) if not (t[0] in (np.int64, np.uint8, np.bool_) and
                                                          not np.isfinite(t[2])) else np.zeros(t[1], t[0])),
    st.text(max_size=5).map(np.array))


@st.composite
def _recordings(draw) -> bytes | None:
    kind = draw(st.sampled_from(["none", "none", "arrays", "arrays", "bytes"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    arrays = {"meta/dt": np.array(1e-3)} if draw(st.booleans()) else {}
    arrays.update(draw(st.dictionaries(_KEYS, _ARRAY, max_size=5)))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@_fewer
@given(metrics=st.one_of(st.none(), _metrics_csv()), config=_config_toml(), recordings=_recordings())
def test_plot_on_damaged_run_directories(metrics, config, recordings):
    d = Path(tempfile.mkdtemp(prefix="np_fuzz_"))
    try:
        for name, data in (("metrics.csv", metrics), ("config.toml", config), ("recordings.npz", recordings)):
            if data is not None:
                (d / name).write_bytes(data)
        rc, _, err = _cli(["plot", str(d)])
        _assert_clean(rc, err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("files, words", [
    ({"metrics.csv": b"\xff\xfe\x00garbage"}, ["metrics.csv", "not a readable CSV"]),
    ({"metrics.csv": b"episode,seed,return,length\n1,2\n"}, ["fewer cells"]),
    ({"metrics.csv": b"episode,seed,return,length\n1,2,3,4,5\n"}, ["more cells"]),
    ({"metrics.csv": b"a,b\n1,2\n"}, ["metrics.csv", "columns"]),
    ({"metrics.csv": b"episode,seed,return,length\nx,0,1,1\n"}, ["'episode'", "'x'"]),
    ({"metrics.csv": b"step,accuracy\n1,0.5\n"}, ["train_accuracy"]),
    ({"metrics.csv": b"episode,seed,return,length\n0,inf,1,1\n"}, ["'seed'"]),
    ({"metrics.csv": b"episode,seed,return,length\n0,0,1,1\n", "config.toml": b"\xff[["}, ["config.toml", "UTF-8"]),
    ({"metrics.csv": b"episode,seed,return,length\n0,0,1,1\n", "config.toml": b"[run\n"}, ["config.toml", "TOML"]),
    ({"metrics.csv": b"episode,seed,return,length\n0,0,1,1\n", "config.toml": b"[run]\nrolling = 'x'\n"},
     ["run.rolling"]),
    ({"recordings.npz": b"PK\x03\x04garbage"}, ["recordings.npz"]),
    ({"recordings.npz": {"spikes/exc": np.zeros(3), "meta/dt": np.array(1e-3)}}, ["spikes/exc", "2-D"]),
    ({"recordings.npz": {"v/exc": np.zeros((3, 2)), "meta/dt": np.array("x")}}, ["meta/dt"]),
    ({"recordings.npz": {"v/exc": np.zeros((3, 2)), "meta/dt": np.array(-1.0)}}, ["meta/dt"]),
    ({"recordings.npz": {"v/exc": np.zeros((3, 2)), "time/v/exc": np.zeros(4), "meta/dt": np.array(1e-3)}},
     ["time/v/exc"]),
    ({"recordings.npz": {"v/exc": np.array([["a"]]), "meta/dt": np.array(1e-3)}}, ["v/exc", "numbers"]),
])
def test_plot_malformed_files(work, files, words):
    for name, data in files.items():
        if isinstance(data, dict):
            np.savez(work / name, **data)
        else:
            (work / name).write_bytes(data)
    rc, _, err = _cli(["plot", str(work)])
    _assert_clean(rc, err, codes=(2,))
    assert all(w in err for w in words), err


# ----------------------------------------------------------------------------------- --resume from damaged files


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny NRL run (checkpointed every episode), copied by the cases below."""
    out = tmp_path_factory.mktemp("resume_src") / "run"
    rc, _, err = _cli(["run", str(RATE_CFG), "--out", str(out), "--set", "task.episodes=3", "--set", "seeds=2",
                       "--set", "run.progress=false", "--set", "run.checkpoint_every=1"])
    assert rc == 0, err
    for p in out.glob("*.png"):
        p.unlink()
    return out


def _copy(src: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="np_fuzz_")) / "run"
    shutil.copytree(src, d)
    return d


def _save_plain(path: Path, state) -> None:
    """A checkpoint file as neuroprobe writes it (valid checksum) around an arbitrary plain state."""
    from neuroprobe.rundir import RunDir

    RunDir(path.parent).save_checkpoint(state)


def _mutate_tree(state: dict, draw) -> dict:
    """A copy of a checkpoint's plain state with one component (agent, learner, task, ...) removed or
    replaced by a value of another type, or one entry of a component removed.

    Deeper edits (a tensor of another shape inside a component, a counter of another type) are not
    made: the components' ``load_state_dict`` methods restore such values as given, and a crafted
    state (with a valid checksum) can then fail later in the loop with a traceback; that is a limit
    of the components (reported), not of the run directory's format checks tested here."""
    out = dict(state)
    key = draw(st.sampled_from(sorted(out)))
    op = draw(st.sampled_from(["delete", "replace", "delete entry"]))
    if op == "delete":
        del out[key]
    elif op == "replace" or not isinstance(out[key], dict) or not out[key]:
        out[key] = draw(_plain_value)
    else:
        inner = dict(out[key])
        del inner[draw(st.sampled_from(sorted(inner, key=str)))]
        out[key] = inner
    return out


_plain_value = st.one_of(st.sampled_from([None, 0, -1, 2**62, 1.5, float("nan"), float("inf"),
                                          "x", [], {}, [1, 2], True]),
                         st.sampled_from([(3,), (0,), (2, 2), (1, 64, 4)]).map(lambda s: torch.zeros(s)),
                         st.just(torch.full((4,), float("nan"))))


@_fewer
@given(data=st.data(), how=st.sampled_from(["truncate", "flip", "random", "empty", "crafted", "crafted",
                                            "metrics", "metrics"]))
def test_resume_from_damaged_files(finished_run, data, how):
    d = _copy(finished_run)
    try:
        ck = d / "checkpoint.pt"
        raw = ck.read_bytes()
        if how == "truncate":
            ck.write_bytes(raw[:data.draw(st.integers(min_value=0, max_value=len(raw) - 1))])
        elif how == "flip":
            b = bytearray(raw)
            for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
                i = data.draw(st.integers(min_value=0, max_value=len(b) - 1))
                b[i] ^= data.draw(st.integers(min_value=1, max_value=255))
            ck.write_bytes(bytes(b))
        elif how == "random":
            ck.write_bytes(data.draw(st.binary(min_size=1, max_size=4000)))
        elif how == "empty":
            ck.write_bytes(b"")
        elif how == "crafted":
            _save_plain(ck, _mutate_tree(load_checkpoint_file(ck), data.draw))
        else:
            m = bytearray((d / "metrics.csv").read_bytes())
            i = data.draw(st.integers(min_value=0, max_value=len(m)))
            m[i:i + data.draw(st.integers(min_value=0, max_value=20))] = data.draw(st.binary(max_size=20))
            (d / "metrics.csv").write_bytes(bytes(m))
        argv = ["run", "--resume", str(d)]
        if data.draw(st.booleans()):
            argv += ["--set", "task.episodes=4"]
        rc, _, err = _cli(argv)
        _assert_clean(rc, err, how)
    finally:
        shutil.rmtree(d.parent, ignore_errors=True)


# ----------------------------------------------------------------------------------- inputs that could block


_CASES_CHILD = """
import contextlib, io, json, sys
from neuroprobe.cli import main
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    print(json.dumps([argv, rc, err.getvalue()]), flush=True)
"""


def test_fifos_where_files_are_read_do_not_block(finished_run, work):
    """A FIFO named checkpoint.pt, .lock, config.toml, metrics.csv, a config or a network file (a read
    would wait forever) is refused with one line: run in a child process with a timeout."""
    import json

    cases = []
    for name in ("checkpoint.pt", ".lock", "config.toml", "metrics.csv"):
        d = work / name.strip(".")
        shutil.copytree(finished_run, d)
        (d / name).unlink(missing_ok=True)
        os.mkfifo(d / name)
        cases.append(["run", "--resume", str(d)])
    p = work / "plotdir"
    p.mkdir()
    os.mkfifo(p / "metrics.csv")
    os.mkfifo(p / "recordings.npz")
    cases.append(["plot", str(p)])
    os.mkfifo(work / "c.toml")
    cases.append(["run", str(work / "c.toml"), "--out", str(work / "o")])
    net = work / "net.toml"
    os.mkfifo(net)
    cases.append(["run", str(RATE_CFG), "--set", f"model.file={net}", "--out", str(work / "o2")])
    try:
        proc = subprocess.run([sys.executable, "-c", _CASES_CHILD, json.dumps(cases)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"neuroprobe {cases[out.count(chr(10))]!r} hung")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(cases)
    for argv, rc, err in results:
        # metrics.csv as a FIFO with no rows behind the checkpoint: refused, or (no checkpoint) restarted
        _assert_clean(rc, err, argv, codes=(0, 1, 2) if argv[-1].endswith("metrics") else (1, 2))
