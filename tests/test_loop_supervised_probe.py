"""CET on the digits stream, rule 'probe' on CartPole and on the delayed-label digits stream, run by the
one loop: metrics equal to the old per-kind loops' (golden files below, written by
neuroprobe/experiments/{supervised,probe_rl,probe_supervised}.py before they were removed; equal to
float32 rounding, since float32 reductions differ in their last bits between CPUs), and a run
killed with SIGKILL after a checkpoint (rows written after it, a torn last line) and resumed ends
with the same metrics.csv byte for byte.

The kill is deterministic: the child process patches Loop.checkpoint and MetricsWriter.write to
SIGKILL itself after its n-th checkpoint and m more rows.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.rundir import load_checkpoint_file
from neuroprobe.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "experiments"

CET = (EXP / "cet_digits.toml", ["task.steps=60", "task.eval_every=10", "rule.delay=5", "rule.order=2"])
PROBE_RL = (EXP / "probe_cartpole.toml", ["task.episodes=5"])
PROBE_DIGITS = (EXP / "probe_digits.toml", ["task.steps=40", "task.eval_every=10", "task.label_delay=3"])


def assert_golden(got: bytes, case: str) -> None:
    """metrics.csv equals the golden file: same header and rows, every number to 1e-6 relative (the
    means of float32 losses and cosines differ in their last bits between CPUs: AVX2 vs AVX-512)."""
    want = GOLDEN[case].splitlines()
    have = got.decode().splitlines()
    assert have[0] == want[0] and len(have) == len(want), (have[:2], want[:2])
    for h, w in zip(have[1:], want[1:]):
        hv, wv = [float(x) for x in h.split(",")], [float(x) for x in w.split(",")]
        assert hv == pytest.approx(wv, rel=1e-6, abs=0.0), (h, w)

GOLDEN = {
    "cet": """step,accuracy,train_loss,train_accuracy,align_fc1,align_fc2,align_fc3
10,0.10000000149011612,2.3005940914154053,0.115625,0.8469097971916199,0.8406982898712159,0.8377851486206055
20,0.13555555045604706,2.293778586387634,0.14375,0.798077255487442,0.8004329383373261,0.8056320309638977
30,0.10444444417953491,2.2927060604095457,0.109375,0.7955675184726715,0.7852319777011871,0.7879202604293823
40,0.11777777969837189,2.2984288930892944,0.071875,0.8013117194175721,0.7819323718547821,0.7586061954498291
50,0.1599999964237213,2.2873480319976807,0.165625,0.7913690865039825,0.7855842411518097,0.7663775563240052
60,0.3199999928474426,2.281634545326233,0.29375,0.7839432775974273,0.7926452815532684,0.7898555338382721
""",
    "probe_rl": """episode,seed,return,length,forward_passes
0,0,19.0,19,1248
1,0,41.0,41,2720
2,0,20.0,20,1536
3,0,12.0,12,384
4,0,14.0,14,1376
""",
    "probe_digits": """step,accuracy,train_loss,train_accuracy,forward_passes
10,0.1733333319425583,2.301869662744658,0.14285714285714285,5120
20,0.10222221910953522,2.2904080972075462,0.1625,10240
30,0.1666666716337204,2.288667630404234,0.178125,15360
40,0.11777777969837189,2.282989403605461,0.1625,20480
""",
}

KILLER = r"""
import os, signal, sys
from neuroprobe import loop, rundir
from neuroprobe.cli import main

after, extra, torn = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
seen = {"ck": 0, "rows": None}
checkpoint, write = loop.Loop.checkpoint, rundir.MetricsWriter.write

def die(w):
    if torn:
        w._f.write(torn.encode()); w._f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def patched_checkpoint(self):
    checkpoint(self)
    seen["ck"] += 1
    if seen["ck"] == after:
        seen["rows"] = 0
        if extra == 0:
            die(self.metrics)

def patched_write(self, row):
    write(self, row)
    if seen["rows"] is not None:
        seen["rows"] += 1
        if seen["rows"] >= extra:
            die(self)

loop.Loop.checkpoint, rundir.MetricsWriter.write = patched_checkpoint, patched_write
sys.exit(main(sys.argv[4:]))
"""


def _run(cfg, overrides, out: Path) -> Path:
    return run_experiment(cfg, list(overrides) + ["run.progress=false"], out=out, figures=False)


def _kill(cfg, overrides, out: Path, after: int, extra: int, torn: str = "") -> None:
    """Run in a child that SIGKILLs itself after its ``after``-th checkpoint and ``extra`` more rows."""
    args = [sys.executable, "-c", KILLER, str(after), str(extra), torn, "run", str(cfg), "--out", str(out)]
    for o in list(overrides) + ["run.progress=false"]:
        args += ["--set", o]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def _resume_matches(tmp_path, cfg, overrides, want: bytes, after: int, extra: int, torn: str = "") -> dict:
    out = tmp_path / "killed"
    _kill(cfg, overrides, out, after, extra, torn)
    have = (out / "metrics.csv").read_bytes()
    complete = have[:have.rfind(b"\n") + 1]
    assert complete != want and want.startswith(complete) and have.endswith(torn.encode())
    ckpt = load_checkpoint_file(out / "checkpoint.pt")
    assert ckpt["metrics"]["bytes"] < len(have)  # rows (and a torn line) the checkpoint does not cover
    run_experiment(resume=out, figures=False)
    assert (out / "metrics.csv").read_bytes() == want
    return ckpt


def test_cet_golden_and_resume(tmp_path):
    cfg, ov = CET
    ref = _run(cfg, ov, tmp_path / "ref")
    want = (ref / "metrics.csv").read_bytes()
    assert_golden(want, "cet")
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["metric"] == "test accuracy" and summary["steps"] == 60 and "align_fc1" in summary
    # checkpoints every 7 steps: the one at step 14 falls between rows (running sums in the reporter)
    ckpt = _resume_matches(tmp_path, cfg, ov + ["run.checkpoint_every=7"], want, after=2, extra=1, torn="30,0.1")
    assert ckpt["loop"]["steps"] == 14 and ckpt["reporter"]["n"] == 4 and len(ckpt["reporter"]["align"]["fc1"]) == 4


def test_probe_rl_golden_and_resume(tmp_path):
    cfg, ov = PROBE_RL
    ref = _run(cfg, ov, tmp_path / "ref")
    want = (ref / "metrics.csv").read_bytes()
    assert_golden(want, "probe_rl")
    assert json.loads((ref / "summary.json").read_text())["episodes"] == 5
    ckpt = _resume_matches(tmp_path, cfg, ov + ["run.checkpoint_every=2"], want, after=1, extra=1)
    assert ckpt["loop"]["schedule_count"] == 2


def test_probe_digits_golden_and_resume(tmp_path):
    cfg, ov = PROBE_DIGITS
    ref = _run(cfg, ov, tmp_path / "ref")
    want = (ref / "metrics.csv").read_bytes()
    assert_golden(want, "probe_digits")
    # the checkpoint at step 14 holds D = 3 windows whose labels have not arrived, probes snapshots included
    ckpt = _resume_matches(tmp_path, cfg, ov + ["run.checkpoint_every=7"], want, after=2, extra=1, torn="3")
    pending = ckpt["learner"]["pending"]
    assert len(pending) == 3 and all(len(e["probes"]) == 3 for e in pending)
    assert ckpt["reporter"]["n"] == 4


def test_probe_digits_stateful_probes_resume(tmp_path):
    """Learned-subspace probes, the uncertainty scheduler, a cascade kernel over windows and node noise:
    every piece of state they add is checkpointed."""
    cfg = EXP / "probe_digits.toml"
    ov = ["task.steps=24", "task.eval_every=5", "task.label_delay=2", "task.batch=8", "rule.branches=8",
          "rule.regime=learned_subspace", "rule.scheduler=uncertainty", "rule.history=3", "rule.kernel=cascade",
          "rule.kernel_order=2", "rule.kernel_delay=1.0", "rule.noise_std=0.01"]
    want = (_run(cfg, ov, tmp_path / "ref") / "metrics.csv").read_bytes()
    _resume_matches(tmp_path, cfg, ov + ["run.checkpoint_every=6"], want, after=2, extra=1)


@pytest.mark.parametrize("case, key, short, full", [
    ("probe_rl", "task.episodes", 3, 5), ("probe_digits", "task.steps", 20, 40)])
def test_resume_with_a_larger_budget_continues_as_a_longer_run(tmp_path, case, key, short, full):
    cfg, ov = {"probe_rl": PROBE_RL, "probe_digits": PROBE_DIGITS}[case]
    out = _run(cfg, ov + [f"{key}={short}"], tmp_path / "run")
    run_experiment(resume=out, overrides=[f"{key}={full}"], figures=False)
    ref = _run(cfg, ov + [f"{key}={full}"], tmp_path / "ref")  # the longer run from the start, same machine
    assert (out / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    assert_golden((out / "metrics.csv").read_bytes(), case)


@pytest.mark.parametrize("sets, says", [
    (["seeds=2"], "'seeds' = 2: rule 'probe' runs one seed per process"),
    (["rule.num_probes=7"], "'rule.num_probes' = 7 must be even with rule.antithetic = true"),
    (["rule.null_fraction=0"], "'rule.baseline' = 'null' needs 'rule.null_fraction' > 0"),
    (["rule.null_fraction=0.99", "rule.branches=4"], "'rule.null_fraction' = 0.99 leaves no perturbed branch"),
    (["rule.kernel=cascade", "rule.kernel_order=3", "rule.kernel_delay=2.0", "rule.history=2"],
     "'rule.kernel_delay' = 2.0 must be <= rule.history - 1 = 1"),
    (["rule.null_fraction=1.0"], "'rule.null_fraction' = 1.0: must be < 1"),
    (["rule.scheduler=greedy"], "'rule.scheduler' = 'greedy'"),
])
def test_probe_config_checks(sets, says):
    with pytest.raises(ConfigError) as e:
        load_experiment(EXP / "probe_cartpole.toml", sets)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_cet_config_checks():
    with pytest.raises(ConfigError, match=r"'rule.beta' = 1.0: must be < 1"):
        load_experiment(EXP / "cet_digits.toml", ["rule.beta=1.0"])
    with pytest.raises(ConfigError, match=r"'task.label_delay' = 2 applies only to rule 'probe'"):
        load_experiment(EXP / "cet_digits.toml", ["task.label_delay=2"])
    with pytest.raises(ConfigError, match=r"GiB of traces"):
        load_experiment(EXP / "cet_digits.toml", ["rule.delay=100000", "task.batch=65536"])
    exp = load_experiment(EXP / "cet_digits.toml")
    assert (exp.rule.name, exp.rule.delay, exp.rule.order, exp.rule.normalize) == ("cet", 20, 6, "area")
    assert exp.schedule.unit == "steps" and exp.schedule.checkpoint_every == 300
