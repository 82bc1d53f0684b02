"""Acceptance tests of run directories (neuroprobe/rundir.py through the public entry points):

(a) a run SIGKILLed at random moments (its whole process group; once right while checkpoint.pt is
    being written) and resumed until done writes the same metrics.csv bytes as an uninterrupted run,
    for every rate RL kind;
(b) one writer per directory: a second ``run``/``--resume`` into a directory held by a running
    process exits 2 naming the holder's pid; a killed run leaves no stale lock;
(c) checkpoints are plain and checksummed: a pickle that would run code is refused with one line
    (and never runs), a flipped byte fails the checksum;
(d) resume truncates metrics.csv by content: rows after the checkpoint (garbled or torn) are
    recomputed, a change before it is refused;
(e) ``--resume --set`` may only change the budget (recorded in config_history.toml);
(f) a run whose weights become NaN stops with exit 1 naming the last checkpoint (or saying there is
    none yet); (g) ``device = "cuda"`` without CUDA is refused at load.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch

from neuroprobe.cli import main
from neuroprobe.config import RULE_CONFIGS, experiment_model
from neuroprobe.rundir import RunDir, load_checkpoint_file
from neuroprobe.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
MODELS = ROOT / "models"
FAST = ["run.progress=false"]
GUARD_S = 180  # only against a hung child: no result depends on timing

# the rate RL kinds: config and overrides (checkpoint every episode); long enough that kills land mid-run
KINDS = {
    "nrl_every_step": ("nrl_cartpole.toml", ["task.reward=every_step", "task.episodes=20", "seeds=2"]),
    "nrl_reward_delay": ("nrl_cartpole.toml", ["task.reward_delay=3", "task.episodes=20", "seeds=2"]),
    "rmhl_acrobot": ("rmhl_acrobot.toml", ["task.episodes=4", "seeds=2"]),
    "wp": ("wp_cartpole.toml", ["task.episodes=20", "seeds=2"]),
    "fg": ("fg_cartpole.toml", ["task.episodes=16", "seeds=2"]),
    "bp": ("bp_cartpole.toml", ["task.episodes=20", "seeds=2"]),
    "cue_delay": ("nrl_cartpole.toml", ["task.name=CueDelay-v0", f"model.file={MODELS / 'mlp_7_64_2.toml'}",
                                        "task.episodes=60", "seeds=2"]),
    "reaching": ("nrl_reaching.toml", ["task.episodes=3", "seeds=2"]),
}


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code
    finally:
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


def _one_line(rc, err, code, *words):
    assert rc == code, (rc, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, err)


def _rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------------------------- subprocesses


def _start(argv: list[str], prefix: list[str] | None = None) -> subprocess.Popen:
    """``python -m neuroprobe.cli ARGV`` in its own process group (session)."""
    cmd = (prefix or [sys.executable, "-m", "neuroprobe.cli"]) + argv
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait(proc: subprocess.Popen, cond, poll: float = 0.0005) -> bool:
    """Poll ``cond()`` until it holds (True) or the process ends (False)."""
    guard = time.monotonic() + GUARD_S
    while proc.poll() is None:
        if cond():
            return True
        if time.monotonic() > guard:
            _kill_group(proc)
            pytest.fail(f"{proc.args} hung")
        time.sleep(poll)
    return False


def _finish(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        pytest.fail(f"{proc.args} hung")
    return err.decode()


@contextlib.contextmanager
def _running(proc: subprocess.Popen):
    try:
        yield proc
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        if proc.stderr:
            proc.stderr.close()


def _unported(cfg: str) -> str | None:
    experiment_model()
    name = tomllib.loads((EXP / cfg).read_text())["rule"]["name"]
    return None if name in RULE_CONFIGS else f"rule {name!r} is not ported to the run loop yet"


# ----------------------------------------------------------------------------------- (a) kill and resume


@pytest.mark.parametrize("kind", list(KINDS))
def test_killed_and_resumed_run_matches_uninterrupted(kind, tmp_path):
    cfg, overrides = KINDS[kind]
    if _unported(cfg):
        pytest.skip(_unported(cfg))
    overrides = overrides + ["run.checkpoint_every=1"] + FAST
    rng = random.Random(kind)  # the kill moments differ per kind, the same every time
    ref = run_experiment(EXP / cfg, overrides=overrides, out=tmp_path / "ref", figures=False)
    want = (ref / "metrics.csv").read_bytes()
    total = _rows(ref / "metrics.csv")
    out = tmp_path / "killed"
    ck, tmp, metrics = out / "checkpoint.pt", out / "checkpoint.pt.tmp", out / "metrics.csv"

    # kill 1: right after a checkpoint.pt.tmp appears, once a few rows are written
    k = rng.randint(1, 4)
    with _running(_start(["run", str(EXP / cfg), "--out", str(out)] + _sets(overrides))) as proc:
        landed = _wait(proc, lambda: _rows(metrics) >= k and tmp.exists())
        _kill_group(proc)
    assert landed and proc.returncode == -signal.SIGKILL, f"the run ended before the kill ({total} rows)"
    assert _rows(metrics) < total

    # kill 2: the resumed run, at a random moment after it started writing rows again
    before, delay = _rows(metrics), rng.uniform(0.0, 0.3)
    with _running(_start(["run", "--resume", str(out)])) as proc:
        if _wait(proc, lambda: ck.exists() and _rows(metrics) > before):
            time.sleep(delay)
            _kill_group(proc)
        else:
            assert proc.returncode == 0, _finish(proc)

    # finish in-process (the same public entry point as the CLI's)
    rc, _, err = _cli(["run", "--resume", str(out)])
    assert rc == 0, err
    assert metrics.read_bytes() == want
    assert json.loads((out / "summary.json").read_text()) == json.loads((ref / "summary.json").read_text())
    assert not tmp.exists()  # the final checkpoint replaced the torn one


# The kill above lands right after checkpoint.pt.tmp appears, so usually while it is being written, but
# a fast writer may finish first. Here the write is held half-way (the CLI's main runs in a child
# whose atomic write sleeps after half the checkpoint's bytes), so the kill always tears the file.
_TORN_WRITER = """
import sys, time
import neuroprobe.rundir as rd
_write = rd.atomic_write
def _slow(path, data):
    if path.name == "checkpoint.pt" and _slow.n >= int(sys.argv[1]):
        with open(path.with_name(path.name + ".tmp"), "wb") as f:
            f.write(data[: len(data) // 2]); f.flush()
            open(sys.argv[2], "w").close()  # tell the test: held half-way
            time.sleep(600)
    _slow.n += path.name == "checkpoint.pt"
    _write(path, data)
_slow.n = 0
rd.atomic_write = _slow
from neuroprobe.cli import main
sys.exit(main(sys.argv[3:]))
"""


def test_kill_while_checkpoint_is_written(tmp_path):
    overrides = ["task.episodes=12", "seeds=2", "run.checkpoint_every=1"] + FAST
    cfg = EXP / "nrl_cartpole.toml"
    ref = run_experiment(cfg, overrides=overrides, out=tmp_path / "ref", figures=False)
    out = tmp_path / "torn"
    tmp, held = out / "checkpoint.pt.tmp", tmp_path / "held"
    with _running(_start(["3", str(held), "run", str(cfg), "--out", str(out)] + _sets(overrides),
                         prefix=[sys.executable, "-c", _TORN_WRITER])) as proc:
        assert _wait(proc, held.exists), _finish(proc)
        _kill_group(proc)
    # the torn write left the previous checkpoint intact; it is what the resume starts from
    assert tmp.exists() and tmp.stat().st_size < (out / "checkpoint.pt").stat().st_size
    load_checkpoint_file(out / "checkpoint.pt")
    rc, _, err = _cli(["run", "--resume", str(out)])
    assert rc == 0, err
    assert (out / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    assert not tmp.exists()


# ----------------------------------------------------------------------------------- (b) one writer


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    cfg = EXP / "nrl_cartpole.toml"
    out = tmp_path / "run"
    long = ["task.episodes=100000", "seeds=1", "run.checkpoint_every=1"] + FAST
    with _running(_start(["run", str(cfg), "--out", str(out)] + _sets(long))) as proc:
        assert _wait(proc, lambda: (out / "checkpoint.pt").exists()), _finish(proc)
        holder = f"pid {proc.pid}"
        rc, _, err = _cli(["run", str(cfg), "--out", str(out)] + _sets(["task.episodes=2"] + FAST))
        _one_line(rc, err, 2, holder, str(out))
        rc, _, err = _cli(["run", "--resume", str(out)])
        _one_line(rc, err, 2, holder)
        assert proc.poll() is None  # the holder runs on, undisturbed
        _kill_group(proc)
    # the OS released the killed holder's lock: the directory can be taken again at once
    run = RunDir(out)
    run.lock()
    run.unlock()


def test_two_concurrent_processes(tmp_path):
    """Two processes started together into one --out: one runs, the other exits 2 naming the pid."""
    cfg = EXP / "nrl_cartpole.toml"
    out = tmp_path / "run"
    argv = ["run", str(cfg), "--out", str(out)] + _sets(["task.episodes=100000", "seeds=1"] + FAST)
    with _running(_start(argv)) as a, _running(_start(argv)) as b:
        # whichever takes the lock first runs on; the other ends with one line naming the holder
        guard = time.monotonic() + GUARD_S
        while a.poll() is None and b.poll() is None and time.monotonic() < guard:
            time.sleep(0.01)
        loser, winner = (a, b) if a.poll() is not None else (b, a)
        err = _finish(loser)
        _one_line(loser.returncode, err, 2, f"pid {winner.pid}")
        assert winner.poll() is None


# ----------------------------------------------------------------------------------- (c) plain, checksummed


@pytest.fixture
def finished(tmp_path) -> Path:
    return run_experiment(EXP / "nrl_cartpole.toml", overrides=["task.episodes=3", "seeds=1"] + FAST,
                          out=tmp_path / "run", figures=False)


class _Marker:
    """Unpickling this would create the marker file (what a malicious checkpoint could do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle", "inside a valid envelope"])
def test_pickle_checkpoint_is_refused_and_never_run(finished, tmp_path, how):
    marker = tmp_path / "marker"
    evil = {"agent": _Marker(marker)}
    ck = finished / "checkpoint.pt"
    if how == "torch.save":
        torch.save(evil, ck)
    elif how == "pickle":
        ck.write_bytes(pickle.dumps(evil))
    else:
        # the outer format and checksum are right; the payload is a pickle of live objects
        import hashlib

        buf = io.BytesIO()
        torch.save(evil, buf)
        data = buf.getvalue()
        torch.save({"format": "neuroprobe-checkpoint-1", "sha256": hashlib.sha256(data).hexdigest(),
                    "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}, ck)
    before = (finished / "metrics.csv").read_bytes()
    rc, _, err = _cli(["run", "--resume", str(finished)])
    # a torch file is recognised as holding objects; a bare protocol-4 pickle fails earlier, as unreadable
    _one_line(rc, err, 1, "checkpoint.pt", "refused", "Python objects" if how != "pickle" else "")
    assert not marker.exists()
    assert (finished / "metrics.csv").read_bytes() == before


def test_flipped_byte_fails_the_checksum(finished):
    ck = finished / "checkpoint.pt"
    raw = bytearray(ck.read_bytes())
    outer = torch.load(ck, weights_only=True)
    payload = outer["payload"].numpy().tobytes()
    at = bytes(raw).find(payload)
    assert at > 0
    raw[at + len(payload) // 2] ^= 0x01
    ck.write_bytes(bytes(raw))
    rc, _, err = _cli(["run", "--resume", str(finished)])
    _one_line(rc, err, 1, "checkpoint.pt", "checksum")


def test_a_checksummed_state_that_breaks_the_run_is_refused_in_one_line(finished):
    """A checkpoint of the right structure and a valid checksum whose values break the first step
    after resuming (here an observation of the wrong width) ends in one line, not a traceback."""
    state = load_checkpoint_file(finished / "checkpoint.pt")
    state["loop"]["obs"] = torch.zeros(1, 3)
    RunDir(finished).save_checkpoint(state)
    rc, _, err = _cli(["run", "--resume", str(finished), "--set", "task.episodes=5"])
    _one_line(rc, err, 1, "checkpoint.pt", "refused", "after resuming")


def test_checkpoint_holds_only_plain_state(finished):
    """The checkpoint loads with weights_only and holds tensors, numbers, strings, lists and dicts."""
    state = load_checkpoint_file(finished / "checkpoint.pt")

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (bool, int, float, str, torch.Tensor))

    assert plain(state)
    assert {"agent", "learner", "task", "reporter", "generator", "loop", "metrics"} <= set(state)


# ----------------------------------------------------------------------------------- (d) metrics by content


def test_rows_after_the_checkpoint_are_recomputed(tmp_path):
    """A run checkpointed after 3 episodes whose metrics.csv then got more rows, one garbled and a
    torn last line (as a run killed between checkpoints leaves it): resumed to 6 episodes, the file
    is byte-identical to an uninterrupted 6-episode run."""
    cfg = EXP / "nrl_cartpole.toml"
    ref = run_experiment(cfg, overrides=["task.episodes=6", "seeds=1"] + FAST, out=tmp_path / "ref", figures=False)
    run = run_experiment(cfg, overrides=["task.episodes=3", "seeds=1"] + FAST, out=tmp_path / "run", figures=False)
    want = (ref / "metrics.csv").read_bytes()
    have = (run / "metrics.csv").read_bytes()
    assert want.startswith(have)
    later = want[len(have):].splitlines(keepends=True)
    garbled = b"3,0,1e9,nan\n" + later[1][:-3] + b"\xff\xfe\n" + later[2][: len(later[2]) // 2]
    (run / "metrics.csv").write_bytes(have + garbled)
    rc, _, err = _cli(["run", "--resume", str(run), "--set", "task.episodes=6"])
    assert rc == 0, err
    assert (run / "metrics.csv").read_bytes() == want


@pytest.mark.parametrize("edit", ["change a row", "drop a row", "edit the header", "truncate"])
def test_a_change_before_the_checkpoint_is_refused(finished, edit):
    m = finished / "metrics.csv"
    lines = m.read_bytes().splitlines(keepends=True)
    if edit == "change a row":
        lines[2] = lines[2].replace(b",", b",9", 1)
    elif edit == "drop a row":
        del lines[1]
    elif edit == "edit the header":
        lines[0] = lines[0].upper()
    else:
        lines = lines[:2]
    m.write_bytes(b"".join(lines))
    before = m.read_bytes()
    rc, _, err = _cli(["run", "--resume", str(finished), "--set", "task.episodes=5"])
    _one_line(rc, err, 1, "metrics.csv", "cannot resume")
    assert m.read_bytes() == before  # refused: nothing truncated or appended


# ----------------------------------------------------------------------------------- (e) what --resume may change


def test_resume_extends_the_budget_and_records_it(finished):
    rc, _, err = _cli(["run", "--resume", str(finished), "--set", "task.episodes=5"])
    assert rc == 0, err
    assert _rows(finished / "metrics.csv") == 5
    assert tomllib.loads((finished / "config.toml").read_text())["task"]["episodes"] == 5
    hist = tomllib.loads((finished / "config_history.toml").read_text())["change"]
    assert [(c["key"], c["from"], c["to"]) for c in hist] == [("task.episodes", 3, 5)]
    assert "when" in hist[0]
    # a bare key resolves the same way, and a second change is appended
    rc, _, err = _cli(["run", "--resume", str(finished), "--set", "episodes=6"])
    assert rc == 0, err
    hist = tomllib.loads((finished / "config_history.toml").read_text())["change"]
    assert [(c["key"], c["from"], c["to"]) for c in hist] == [("task.episodes", 3, 5), ("task.episodes", 5, 6)]
    assert _rows(finished / "metrics.csv") == 6


@pytest.mark.parametrize("argv, words", [
    (["--set", "rule.lr=0.1"], ["rule.lr", "start a new run"]),
    (["--set", "lr=0.1"], ["rule.lr"]),
    (["--set", "seeds=3"], ["seeds"]),
    (["--set", "model.file=x.toml"], ["model.file"]),
    (["--set", "task.episodes=2"], ["task.episodes", "below"]),
    (["--set", "task.episodes=x"], ["task.episodes"]),
    (["--seed", "3"], ["--seed"]),
    (["CONFIG"], ["CONFIG"]),
])
def test_resume_refuses_other_changes(finished, argv, words):
    argv = [str(EXP / "nrl_cartpole.toml") if a == "CONFIG" else a for a in argv]
    files = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file() and p.name != ".lock"}
    rc, _, err = _cli(["run", "--resume", str(finished)] + argv)
    _one_line(rc, err, 2, *words)
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file() and p.name != ".lock"} == files


# ----------------------------------------------------------------------------------- (f) non-finite weights


def _nan_run(tmp_path, every: int):
    out = tmp_path / f"nan{every}"
    rc, _, err = _cli(["run", str(EXP / "nrl_cartpole.toml"), "--out", str(out)] + _sets(
        ["rule.lr=1e30", "task.episodes=30", "seeds=2", f"run.checkpoint_every={every}"] + FAST))
    return out, rc, err


def test_nan_weights_stop_naming_the_last_checkpoint(tmp_path):
    out, rc, err = _nan_run(tmp_path, every=1)
    _one_line(rc, err, 1, "NaN", "stopped", "last good checkpoint", str(out / "checkpoint.pt"), "rule.lr")
    assert not (out / "summary.json").exists()
    state = load_checkpoint_file(out / "checkpoint.pt")
    for name, w in state["agent"]["net"].items():
        assert torch.isfinite(w).all(), name
    assert state["metrics"]["rows"] <= _rows(out / "metrics.csv")


def test_nan_weights_before_any_checkpoint(tmp_path):
    out, rc, err = _nan_run(tmp_path, every=20)
    _one_line(rc, err, 1, "NaN", "stopped", "no checkpoint was written yet", str(out / "metrics.csv"))
    assert not (out / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------------- (g) device


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA: device = 'cuda' is valid here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_cpu_torch_is_refused_at_load(tmp_path, device):
    out = tmp_path / "o"
    rc, _, err = _cli(["run", str(EXP / "nrl_cartpole.toml"), "--out", str(out), "--set", f"device={device}"])
    _one_line(rc, err, 2, "'device'", device, "CUDA")
    assert not out.exists()
