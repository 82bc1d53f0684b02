"""The experiment scripts that run as sweeps (experiments/reproduce_cet.py,
experiments/distal_reward_orders.py) and the sweep configs of experiments/sweeps/.

Each script runs at its smallest size in a subprocess (an embedded Ray, as a user runs it): its
report has the rows computed here from the run directories, a rerun recomputes nothing, and a run of
the sweep is byte for byte the plain ``neuroprobe run`` with the same overrides.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroprobe.config import load_experiment
from neuroprobe.rundir import read_metrics
from neuroprobe.runner import run_experiment
from neuroprobe.sweep import load_sweep_spec, plan_runs

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "experiments"
CET_ARGS = ["--orders", "1", "--delays", "5", "--lrs", "0.05", "1e6", "--steps", "60", "--set", "task.eval_every=20"]
DISTAL = ["order 1, τ = 1 s (classic)", "order 6, peak 2 s"]
DISTAL_ARGS = ["--duration", "0.3", "--seeds", "2", "--set", "task.report_every=0.1", "--settings", *DISTAL]


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXP / name), "--num-cpus", "2", *args], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{Path(name).stem}", EXP / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _main(name: str, args: list[str], capsys) -> tuple[int, str, str]:
    """The script's main() in this process (a rerun starts no Ray: nothing is left to run), as
    (exit code, stdout, stderr)."""
    mod = _load(name)
    argv, sys.argv = sys.argv, [name, *args]
    capsys.readouterr()
    try:
        mod.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    got = capsys.readouterr()
    return code, got.out, got.err


def _rows(out: Path) -> list[dict]:
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def _state(out: Path) -> tuple[bytes, dict]:
    """sweep.csv's bytes and every metrics.csv's mtime: what a rerun must leave alone."""
    return (out / "sweep.csv").read_bytes(), {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")}


def test_reproduce_cet(tmp_path, capsys):
    out, rep = tmp_path / "cet", tmp_path / "doc" / "cet.md"
    p = _script("reproduce_cet.py", *CET_ARGS, "--out", str(out), "--report", str(rep))
    assert p.returncode == 0, p.stderr[-2000:]
    rows = _rows(out)
    # 3 settings (baseline, order 1, perfect) x 2 learning rates, one seed each
    assert len(rows) == 6 and {r["seed"] for r in rows} == {"0"}
    # lr = 1e6 blows up: a failed row, which the script counts as NaN at that lr
    assert all((r["status"] == "failed") == (r["rule.lr"] == "1000000.0") for r in rows)
    assert all(r["error"].startswith("NonFiniteError") for r in rows if r["status"] == "failed")
    ok = {(r["rule.trace"], r["rule.delay"]): json.loads((out / r["run"] / "summary.json").read_text())
          for r in rows if r["status"] == "done"}
    text = rep.read_text()
    assert f"No delay (exact backprop): **{ok[('none', '0')]['final']:.3f}**" in text
    assert f"| order 1 | {ok[('cascade', '5')]['final']:.3f} |" in text
    assert f"| perfect trace | {ok[('perfect', '5')]['final']:.3f} |" in text
    align = np.mean([v for k, v in ok[("cascade", "5")].items() if k.startswith("align_")])
    assert f"| order 1 | {align:.2f} |" in text
    assert text.count("| 0.05 |") == 2  # the chosen lr of both rows: the one that did not blow up
    assert (rep.parent / "figures" / "cet.png").stat().st_size > 0

    before, first = _state(out), text
    code, stdout, err = _main("reproduce_cet.py", [*CET_ARGS, "--out", str(out), "--report", str(rep)], capsys)
    assert code == 0, err
    assert "runs: 0 done, 3 failed, 3 skipped" in stdout
    assert _state(out) == before and rep.read_text() == first

    # a run of the sweep is the plain run with the script's overrides, byte for byte
    row = next(r for r in rows if r["rule.trace"] == "cascade" and r["status"] == "done")
    ref = run_experiment(EXP / "cet_digits.toml", ["rule.trace=cascade", "rule.order=1", "rule.delay=5", "rule.lr=0.05",
                                                   "task.steps=60", "task.eval_every=20"],
                         out=tmp_path / "ref", figures=False, progress=False)
    assert (ref / "metrics.csv").read_bytes() == (out / row["run"] / "metrics.csv").read_bytes()
    # and the baseline of experiments/sweeps/cet_order_delay_lr.toml (no rule.order) is the script's
    spec = load_sweep_spec(EXP / "sweeps" / "cet_order_delay_lr.toml", grid=["rule.lr=0.05"],
                           set=["task.steps=60", "task.eval_every=20"])
    want = {"rule.trace": "none", "rule.delay": "0", "rule.lr": "0.05"}
    base = next(r for r in plan_runs(spec) if r.settings == want)
    ref = run_experiment(spec.config, base.overrides, seed=base.seed, out=tmp_path / "ref_lr", figures=False,
                         progress=False)
    row = next(r for r in rows if r["rule.trace"] == "none" and r["status"] == "done")
    assert (ref / "metrics.csv").read_bytes() == (out / row["run"] / "metrics.csv").read_bytes()
    # its cascade points resolve to the script's configs (which the runs are a function of)
    casc = next(r for r in plan_runs(spec) if r.settings == {"rule.order": "1", "rule.delay": "5", "rule.lr": "0.05"})
    mine = load_experiment(EXP / "cet_digits.toml", ["rule.trace=cascade", "rule.order=1", "rule.delay=5",
                                                     "rule.lr=0.05", "task.steps=60", "task.eval_every=20"], 0)
    assert load_experiment(spec.config, casc.overrides, casc.seed).to_toml_dict() == mine.to_toml_dict()


def test_distal_reward_orders(tmp_path, capsys):
    out, rep = tmp_path / "distal", tmp_path / "doc" / "distal.md"
    p = _script("distal_reward_orders.py", *DISTAL_ARGS, "--out", str(out), "--report", str(rep))
    assert p.returncode == 0, p.stderr[-2000:]
    rows = _rows(out)
    # 2 settings x 2 trials, the trials of a setting batched in one run (seeds=2, as before)
    assert len(rows) == 4 and len({r["run"] for r in rows}) == 2 and all(r["status"] == "done" for r in rows)
    runs = {(r["rule.order"], r["rule.delay"]): out / r["run"] for r in rows}
    assert set(runs) == {("1", "1.0"), ("6", "2.0")}
    assert all('seeds = 2' in (d / "config.toml").read_text() for d in runs.values())
    lines = rep.read_text().splitlines()
    for label, d in zip(DISTAL, (runs[("1", "1.0")], runs[("6", "2.0")])):
        m = read_metrics(d / "metrics.csv")
        seed = np.asarray(m["seed"])
        last = {k: [float(np.asarray(m[k], float)[seed == s][-1]) for s in (0, 1)]
                for k in ("w_rewarded", "rank")}
        line = next(x for x in lines if x.startswith(f"| {label} |"))
        w = last["w_rewarded"]
        assert line.startswith(f"| {label} | 2 | 0 | {np.mean(w):.3f} ± {np.std(w):.3f} |")
        assert f"| {np.mean(last['rank']):.3f} ± {np.std(last['rank']):.3f} |" in line
    assert (rep.parent / "figures" / "distal.png").stat().st_size > 0

    before, first = _state(out), rep.read_text()
    code, stdout, err = _main("distal_reward_orders.py", [*DISTAL_ARGS, "--out", str(out), "--report", str(rep)],
                              capsys)
    assert code == 0, err
    assert "runs: 0 done, 0 failed, 2 skipped" in stdout
    assert _state(out) == before and rep.read_text() == first

    # --report-only: any subset of the settings there, nothing run
    rep1 = tmp_path / "doc" / "one.md"
    code, _, err = _main("distal_reward_orders.py", ["--report-only", "--settings", DISTAL[1], "--out", str(out),
                                                     "--report", str(rep1)], capsys)
    assert code == 0, err
    assert [x.split(" |")[0] for x in rep1.read_text().splitlines() if x.startswith("| order")] == [f"| {DISTAL[1]}"]
    assert _state(out) == before

    # the run of a setting is the old script's run (its overrides, seeds=2 batched), byte for byte
    ref = run_experiment(EXP / "distal_reward.toml", ["rule.order=6", "rule.delay=2.0", "task.duration=0.3",
                                                      "seeds=2", "task.report_every=0.1"],
                         out=tmp_path / "ref", figures=False, progress=False)
    assert (ref / "metrics.csv").read_bytes() == (runs[("6", "2.0")] / "metrics.csv").read_bytes()

    # bad input: one line, exit 2, before anything runs
    code, _, err = _main("distal_reward_orders.py", [*DISTAL_ARGS, "--set", "rule.nope=1", "--out",
                                                    str(tmp_path / "bad")], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "bad" / "sweep.csv").exists()


@pytest.mark.parametrize("name, n_points, n_runs, batched", [("distal_orders.toml", 4, 4, True),
                                                            ("cet_order_delay_lr.toml", 84, 84, False),
                                                            ("cet_order_delay.toml", 21, 63, False),
                                                            ("izhikevich_orders.toml", 2, 2, True),
                                                            ("izhikevich_long_delay.toml", 2, 2, True),
                                                            ("cet_retrograde_seeds.toml", 42, 126, False),
                                                            ("izhikevich_full_orders.toml", 2, 2, True),
                                                            ("izhikevich_full_long_delay.toml", 2, 2, True),
                                                            ("cet_ac_order_delay.toml", 21, 63, False),
                                                            ("cet_ac_paper_budget.toml", 4, 4, False),
                                                            ("cet_ac_retrograde.toml", 4, 4, False),
                                                            ("acrobot_depth_nrl.toml", 3, 3, True),
                                                            ("acrobot_depth_bp.toml", 3, 3, True)])
def test_sweep_configs_plan(name, n_points, n_runs, batched):
    spec = load_sweep_spec(EXP / "sweeps" / name)
    runs = plan_runs(spec)  # validates every point x seed
    assert len(spec.point_settings()) == n_points and len(runs) == n_runs
    assert all(r.batched == batched for r in runs)


def test_every_shipped_sweep_config_is_planned_above():
    tested = {"distal_orders.toml", "cet_order_delay_lr.toml", "cet_order_delay.toml", "izhikevich_orders.toml",
              "izhikevich_long_delay.toml", "cet_retrograde_seeds.toml", "izhikevich_full_orders.toml",
              "izhikevich_full_long_delay.toml", "cet_ac_order_delay.toml", "cet_ac_paper_budget.toml",
              "cet_ac_retrograde.toml", "acrobot_depth_nrl.toml", "acrobot_depth_bp.toml"}
    assert {p.name for p in (EXP / "sweeps").glob("*.toml")} == tested


def test_distal_orders_config_is_the_script():
    """The sweep config's points are the script's settings, with its default 2 trials."""
    script = _load("distal_reward_orders.py")
    cfg = load_sweep_spec(EXP / "sweeps" / "distal_orders.toml")
    mine = script.build_spec(script.SETTINGS, 300.0, 2)
    assert cfg.points == mine.points and cfg.seeds == mine.seeds == [0, 1]
    assert [r.overrides[1:] for r in plan_runs(cfg)] == [r.overrides[1:] for r in plan_runs(mine)]


def test_distal_rank_table_trial_rows(tmp_path):
    """experiments/distal_rank_table.py: solved = final rank 1; 'top since' = the first report of the final
    unbroken run of rank-1 reports; computed by hand for two crafted trials."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("distal_rank_table", ROOT / "experiments" / "distal_rank_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = ["time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences"]
    ranks = {0: [0.5, 1.0, 0.9, 1.0, 1.0], 1: [0.2, 1.0, 1.0, 1.0, 0.99]}
    for k, t in enumerate([10, 20, 30, 40, 50]):
        for s in (0, 1):
            rows.append(f"{t},{s},1.0,{1.0 - 0.01 * k},2.0,{ranks[s][k]},0,0")
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    out = mod.trial_rows(tmp_path)
    assert out[0]["solved"] and out[0]["top_since"] == 40.0 and out[0]["final_rank"] == 1.0
    assert not out[1]["solved"] and out[1]["top_since"] is None and out[1]["final_rank"] == 0.99
    assert out[0]["w_mean_start"] == 1.0 and abs(out[0]["w_mean_end"] - 0.96) < 1e-12 and out[1]["time"] == 50.0


def test_acrobot_plateau_row():
    """experiments/acrobot_plateau_table.py on three crafted seeds: one succeeds at episode 2 and learns,
    one has a single success at episode 1 and ends at -500, one never succeeds."""
    mod = _load("acrobot_plateau_table.py")
    curves = {0: np.array([-500.0, -500.0, -300.0] + [-100.0] * 60),
              1: np.array([-500.0, -480.0] + [-500.0] * 61),
              2: np.full(63, -500.0)}
    row = mod.plateau_row(mod.Row(task="Acrobot-v1", hidden=1, rule="NRL", curves=curves, wall_s=None))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["Acrobot-v1", "1", "NRL", "63", "3", "2", "1.5 (1–2)", "1", "-100.0 ± 0.0", "1, 2"]


def test_sweep_pivot_table(tmp_path, capsys):
    """experiments/sweep_pivot_table.py on a crafted sweep directory: cells are mean ± sd (numpy,
    ddof 1) of the done seeds of the one matching point per split value; a pending seed is left out
    and counted; two points in one cell and an unknown key are one-line errors."""
    mod = _load("sweep_pivot_table.py")
    d = tmp_path / "sw"
    d.mkdir()
    (d / "sweep.toml").write_text('name = "crafted"\nconfig = "x.toml"\n')
    head = "point,rule.form,rule.order,rule.delay,rule.lr,seed,run,metric,final,wall_s,status,error\n"
    finals = {(0, "a", 1, 5, 0.1): [0.5, 0.7, 0.9], (1, "b", 1, 5, 0.3): [0.2, 0.4, None],
              (2, "a", 2, 50, 0.1): [0.1, 0.3, 0.2]}
    lines = [f"{p},{f},{o},{dl},{lr},{s},r{p},test accuracy,{'' if v is None else v},1.0,"
             f"{'pending' if v is None else 'done'},\n"
             for (p, f, o, dl, lr), vs in finals.items() for s, v in enumerate(vs)]
    (d / "sweep.csv").write_text(head + "".join(lines))
    assert mod.main([str(d), "--rows", "rule.order", "--col", "rule.delay", "--split", "rule.form",
                     "--out", str(tmp_path / "t.md"), "--figure", str(tmp_path / "f.png")]) == 0
    table = (tmp_path / "t.md").read_text()
    a, b, c = np.array([0.5, 0.7, 0.9]), np.array([0.2, 0.4]), np.array([0.1, 0.3, 0.2])
    cell = f"{a.mean():.3f} ± {a.std(ddof=1):.3f} / {b.mean():.3f} ± {b.std(ddof=1):.3f} (2 seeds)"
    assert f"| 1 | {cell} | — / — |" in table
    assert f"| 2 | — / — | {c.mean():.3f} ± {c.std(ddof=1):.3f} / — |" in table
    assert (tmp_path / "f.png").stat().st_size > 0
    capsys.readouterr()
    assert mod.main([str(d), "--rows", "rule.order", "--col", "rule.delay"]) == 2  # without the split, 0 and 1 meet
    err = capsys.readouterr().err
    assert err.startswith("error: points 0 and 1 fill the same cell") and len(err.splitlines()) == 1
    assert mod.main([str(d), "--rows", "rule.nope", "--col", "rule.delay"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'rule.nope' is not a key of") and "rule.form" in err


def test_cet_ac_curves(tmp_path, capsys):
    """experiments/cet_ac_curves.py on a crafted sweep: last-50 mean, the first step of a trailing
    50-episode mean >= 475 (a Python loop here), the fraction of the last 100 at the cap and the mean
    alignments; a running run is marked; a metrics.csv without a step column is a one-line error."""
    mod = _load("cet_ac_curves.py")
    d = tmp_path / "sw"
    (d / "a" / "s0").mkdir(parents=True)
    (d / "b" / "s0").mkdir(parents=True)
    (d / "sweep.toml").write_text('name = "crafted"\nconfig = "x.toml"\n')
    (d / "sweep.csv").write_text("point,rule.order,seed,run,metric,final,wall_s,status,error\n"
                                 "0,1,0,a/s0,return,0,600.0,done,\n1,5,0,b/s0,,,,running,\n")
    rng = np.random.default_rng(0)
    ret = np.concatenate([rng.uniform(10, 60, 80), np.linspace(100, 500, 100), np.full(70, 500.0)])
    lengths = ret.astype(int)
    step = np.cumsum(lengths)
    align = rng.uniform(-1, 1, len(ret))
    align[::3] = np.nan
    head = "episode,seed,return,length,step,update,align,step_align_fc1,step_align_fc2\n"
    rows = [f"{i},0,{r},{n},{s},{i},{a},0.5,{0.7 if i % 2 else 'nan'}\n"
            for i, (r, n, s, a) in enumerate(zip(ret, lengths, step, align))]
    (d / "a" / "s0" / "metrics.csv").write_text(head + "".join(rows))
    (d / "b" / "s0" / "metrics.csv").write_text(head + "".join(rows[:60]))
    assert mod.main([str(d), "--out", str(tmp_path / "t.md"), "--figure", str(tmp_path / "f.png")]) == 0
    first = next(int(step[i + 49]) for i in range(len(ret) - 49) if sum(ret[i:i + 50]) / 50 >= 475)
    want_align = np.nanmean(align)
    want_step = np.mean([(0.5 + 0.7) / 2 for i in range(len(ret)) if i % 2])  # an even row's NaN leaves it out
    at_cap = sum(r >= 500 for r in ret[-100:])  # 71: the ramp ends at 500
    fmt = lambda v: f"{v:,}".replace(",", " ")  # noqa: E731
    table = (tmp_path / "t.md").read_text()
    assert (f"| order=1 | 0 | {fmt(int(step[-1]))} | 250 | {ret[-50:].mean():.1f} | {fmt(first)} | {at_cap} % | "
            f"{want_align:.2f} | {want_step:.2f} | 10 min |") in table
    assert f"| order=5 | 0 | {fmt(int(step[59]))} | 60 | {ret[10:60].mean():.1f} | — | 0 % |" in table
    assert table.rstrip().endswith("| running |") and (tmp_path / "f.png").stat().st_size > 0
    # a plain run directory (neuroprobe run): label and seed from its config.toml, done by its summary.json
    run = tmp_path / "plain"
    run.mkdir()
    (run / "config.toml").write_text('seed = 3\n[rule]\ntrace = "cascade"\norder = 5\ndelay = 160\nlr = 0.00025\n'
                                     'beta = 0.0\n')
    (run / "metrics.csv").write_text(head + "".join(rows))
    (run / "summary.json").write_text("{}")
    capsys.readouterr()
    assert mod.main([str(run)]) == 0
    assert f"| order=5, delay=160, lr=0.00025 | 3 | {fmt(int(step[-1]))} | 250 |" in capsys.readouterr().out
    (d / "b" / "s0" / "metrics.csv").write_text("episode,seed,return\n0,0,1.0\n")
    assert mod.main([str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no column ['step']" in err and len(err.splitlines()) == 1
