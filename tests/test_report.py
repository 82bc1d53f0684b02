"""`neuroprobe report DIR` on synthetic sweep directories (no Ray, no experiment is run).

The run directories are written in the formats the real run kinds write (rate RL: metrics
episode,seed,return,length and summary {metric, per_seed, mean, std, episodes}, one directory holding
a batch of seeds; supervised: metrics step,accuracy,train_accuracy and summary {metric, final}), and
the numbers of the report are compared with numpy / scipy computed here on the same finals.
"""
from __future__ import annotations

import base64
import csv
import json
import math
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import tomli_w

from neuroprobe.errors import ConfigError
from neuroprobe.sweep import report_figures
from neuroprobe.sweep.report import format_table, read_sweep, summarize, write_report
from neuroprobe.sweep.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_ci, seed_stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TAIL = ["seed", "run", "metric", "final", "wall_s", "status", "error"]


# --------------------------------------------------------------------------- synthetic sweep dirs

def _rl_run(path: Path, seeds: list[int], episodes: int, level: float, rng) -> list[float]:
    """A rate-RL run dir holding ``seeds`` as one batch; returns the per-seed finals it reports."""
    path.mkdir(parents=True)
    rows, ret = [], {}
    for s in seeds:
        ret[s] = level * np.linspace(0.2, 1.0, episodes) + rng.normal(0, 5, episodes)
    for e in range(episodes):
        for s in seeds:
            rows.append(f"{e},{s},{float(ret[s][e])!r},{int(abs(ret[s][e])) + 1}")
    (path / "metrics.csv").write_text("episode,seed,return,length\n" + "\n".join(rows) + "\n")
    per_seed = [float(ret[s][-50:].mean()) for s in seeds]
    (path / "summary.json").write_text(json.dumps({
        "metric": "mean return of the last 50 episodes", "per_seed": per_seed, "mean": float(np.mean(per_seed)),
        "std": float(np.std(per_seed)), "episodes": episodes}))
    (path / "config.toml").write_text(tomli_w.dumps({"name": "nrl_cartpole", "seed": seeds[0], "seeds": len(seeds)}))
    return per_seed


def _sup_run(path: Path, seed: int, acc: float, steps: int = 60, every: int = 20) -> float:
    """A supervised-stream run dir (one seed); returns its final test accuracy."""
    path.mkdir(parents=True)
    xs = list(range(every, steps + 1, every))
    accs = [acc * (i + 1) / len(xs) for i in range(len(xs))]
    (path / "metrics.csv").write_text("step,accuracy,train_accuracy\n" + "".join(
        f"{x},{a!r},{a * 0.9!r}\n" for x, a in zip(xs, accs)))
    (path / "summary.json").write_text(json.dumps({"metric": "test accuracy", "final": accs[-1], "steps": steps}))
    (path / "config.toml").write_text(tomli_w.dumps({"name": "cet_digits", "seed": seed}))
    return accs[-1]


def _write_sweep(d: Path, spec: dict, keys: list[str], rows: list[dict]) -> None:
    (d / "sweep.toml").write_text(tomli_w.dumps(spec))
    with open(d / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["point"] + keys + TAIL)
        for r in rows:
            w.writerow([r["point"]] + [r.get(k, "") for k in keys] + [r.get(c, "") for c in TAIL])


def _two_key_sweep(d: Path) -> dict:
    """2 x 2 grid + one extra point; seeds 0,1 batched in one run dir, seed 2 alone; one failed run.
    Returns {point: {seed: final}} of the done rows."""
    rng = np.random.default_rng(1)
    lrs, noises = ["0.01", "0.05"], ["0.001", "0.01"]
    cells = [{"rule.lr": a, "rule.noise_std": b} for a in lrs for b in noises] + [{"rule.lr": "0.2",
                                                                                 "modulator.smoothing": "0.9"}]
    rows, finals = [], {}
    for p, values in enumerate(cells):
        level = 100 + 40 * p
        f01 = _rl_run(d / f"p{p}_s0-1", [0, 1], 80, level, rng)
        finals[p] = {0: f01[0], 1: f01[1]}
        for s in (0, 1):
            rows.append({"point": p, **values, "seed": s, "run": f"p{p}_s0-1", "metric":
                         "mean return of the last 50 episodes", "final": repr(f01[s]), "wall_s": "12.5",
                         "status": "done"})
        if p == 3:  # seed 2 of point 3 raised
            (d / "p3_s2").mkdir()
            (d / "p3_s2" / "failed.json").write_text(json.dumps({"error": "NonFiniteError: weights <NaN> at ep 12"}))
            rows.append({"point": p, **values, "seed": 2, "run": "p3_s2", "wall_s": "3.0", "status": "failed",
                         "error": "NonFiniteError: weights <NaN> at ep 12"})
        else:
            f2 = _rl_run(d / f"p{p}_s2", [2], 80, level, rng)[0]
            finals[p][2] = f2
            rows.append({"point": p, **values, "seed": 2, "run": f"p{p}_s2", "metric":
                         "mean return of the last 50 episodes", "final": repr(f2), "wall_s": "7.5", "status": "done"})
    spec = {"name": "lr_noise", "config": "/abs/experiments/nrl_cartpole.toml",
            "grid": {"rule.lr": lrs, "rule.noise_std": noises}, "points": [{"rule.lr": "0.2",
                                                                          "modulator.smoothing": "0.9"}],
            "seeds": [0, 1, 2], "set": ["task.episodes=80"], "batch_seeds": "auto"}
    _write_sweep(d, spec, ["rule.lr", "rule.noise_std", "modulator.smoothing"], rows)
    return finals


def _read_table_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.text, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        if tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell += data


# --------------------------------------------------------------------------- stats

def test_bootstrap_matches_scipy_and_edge_cases():
    x = np.array([101.5, 98.2, 110.7, 95.1, 104.9])
    ci = bootstrap_ci(x)
    ref = scipy.stats.bootstrap((x,), np.mean, method="percentile", n_resamples=BOOTSTRAP_RESAMPLES,
                                confidence_level=0.95, rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    assert ci == (pytest.approx(ref.low, abs=0), pytest.approx(ref.high, abs=0))
    assert ci[0] < x.mean() < ci[1]
    assert ci[0] >= x.min() and ci[1] <= x.max()
    s = seed_stats(list(x) + [math.nan])  # NaN (a done run without value) is left out
    assert s.n == 5 and s.mean == pytest.approx(x.mean()) and s.sd == pytest.approx(np.std(x, ddof=1))
    assert bootstrap_ci([3.0]) is None and seed_stats([3.0]).ci is None and math.isnan(seed_stats([3.0]).sd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([0.1, 0.1, 0.1]) == (0.1, 0.1)


def test_bootstrap_width_and_coverage_sanity():
    # a large sample: the percentile interval is close to the normal one, mean ± 1.96 sd / sqrt(n)
    x = np.random.default_rng(5).normal(3.0, 2.0, 400)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert lo < x.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    # repeated small samples of N(0, 1): the 95 % interval holds 0 about 95 % of the time
    # (the percentile bootstrap is a little narrow for n = 20: expect 0.88-0.99)
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(150):
        lo, hi = bootstrap_ci(rng.normal(0, 1, 20))
        hits += lo <= 0 <= hi
    assert 0.88 <= hits / 150 <= 0.99


# --------------------------------------------------------------------------- the report

def test_report_two_key_grid(tmp_path, monkeypatch):
    d = tmp_path / "sw"
    d.mkdir()
    finals = _two_key_sweep(d)
    reads = []
    real = report_figures.read_run_result
    monkeypatch.setattr(report_figures, "read_run_result", lambda p, **kw: reads.append(Path(p).name) or real(p, **kw))
    res = write_report(d)

    # every run dir read once, though a batched dir serves two rows of sweep.csv
    assert sorted(reads) == sorted({f"p{p}_s0-1" for p in range(5)} | {f"p{p}_s2" for p in range(5) if p != 3})
    rep = d / "report"
    assert res["table_md"] == rep / "table.md" and res["html"] == rep / "report.html"
    assert [p.name for p in res["figures"]] == ["curves.png", "heatmap.png", "finals.png"]
    for p in res["figures"]:
        assert p.read_bytes().startswith(PNG_MAGIC)

    # table.csv: mean / sd / CI against numpy and scipy on the per-seed finals of summary.json
    rows = _read_table_csv(res["table_csv"])
    assert [int(r["point"]) for r in rows] == [0, 1, 2, 3, 4]
    for r in rows:
        v = np.array(list(finals[int(r["point"])].values()))
        assert int(r["n"]) == int(r["n_done"]) == len(v)
        assert float(r["mean"]) == pytest.approx(v.mean(), rel=1e-12)
        assert float(r["sd"]) == pytest.approx(np.std(v, ddof=1), rel=1e-12)
        ref = scipy.stats.bootstrap((v,), np.mean, method="percentile", n_resamples=10000,
                                    rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
        assert (float(r["ci_low"]), float(r["ci_high"])) == (ref.low, ref.high)
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
    assert [r["n_failed"] for r in rows] == ["0", "0", "0", "1", "0"]
    assert [r["on_grid"] for r in rows] == ["1", "1", "1", "1", "0"]
    assert rows[4]["modulator.smoothing"] == "0.9" and rows[4]["rule.noise_std"] == ""
    # wall clock per run: the batched run (12.5 s on two rows) counted once, with the single run
    assert float(rows[0]["wall_s_mean"]) == pytest.approx(10.0)
    assert float(rows[3]["wall_s_mean"]) == pytest.approx(12.5)  # the failed run is not a finished run

    # table.md: caption, one row per point, the numbers of table.csv rounded
    md = res["table_md"].read_text()
    assert "lr_noise" in md and "/abs/experiments/nrl_cartpole.toml" in md and "ddof = 1" in md
    table_lines = [ln for ln in res["table"].splitlines() if ln.startswith("|")]
    assert len(table_lines) == 2 + 5
    sd1 = float(rows[1]["sd"])  # the sd to 2 significant digits, the mean to as many decimals
    dec = 1 - math.floor(math.log10(sd1))
    assert f"| {float(rows[1]['mean']):.{dec}f} ± {sd1:.{dec}f} | [{float(rows[1]['ci_low']):.{dec}f}, " \
           f"{float(rows[1]['ci_high']):.{dec}f}] |" in table_lines[3]
    assert res["table"] in md

    # report.html: parses; one <img> per figure, each a PNG data URI; table cells and error as text
    html = res["html"].read_text()
    page = _Page()
    page.feed(html)
    page.close()
    assert len(page.imgs) == len(res["figures"]) == 3
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    md_cells = [c.strip().replace("\\|", "|") for ln in table_lines[2:] for c in ln.strip("|").split(" | ")]
    assert page.cells[:len(md_cells)] == md_cells
    text = "".join(page.text)
    assert "NonFiniteError: weights <NaN> at ep 12" in text  # escaped in the source, intact as text
    assert "weights <NaN>" not in html
    assert "neuroprobe report" in text and "task.episodes=80" in text
    assert not any(t in html for t in ("<link", "<script", "url(", "href="))  # no external file, no JS


def test_report_one_key_grid_supervised(tmp_path):
    d = tmp_path / "sw1"
    d.mkdir()
    rows = []
    f = {}
    for p, lr in enumerate(["0.1", "0.2", "0.4"]):
        for s in (0, 1):
            run = f"lr{lr}_s{s}"
            if p == 2 and s == 1:  # still pending: counted, not dropped
                rows.append({"point": p, "rule.lr": lr, "seed": s, "run": run, "status": "pending"})
                continue
            acc = 0.75 if p == 1 else 0.5 + 0.1 * s + 0.05 * p  # point 1: equal finals -> degenerate CI
            f[(p, s)] = _sup_run(d / run, s, acc)
            rows.append({"point": p, "rule.lr": lr, "seed": s, "run": run, "metric": "test accuracy",
                         "final": repr(f[(p, s)]), "wall_s": "2.0", "status": "done"})
    (d / "lr0.1_s1" / "summary.json").unlink()  # a done run whose dir lost its files: a note, no crash
    _write_sweep(d, {"name": "cet_lr", "config": "/abs/cet_digits.toml", "grid": {"rule.lr": ["0.1", "0.2", "0.4"]},
                     "points": [], "seeds": [0, 1], "set": [], "batch_seeds": "off"}, ["rule.lr"], rows)
    (d / "report" / "figures").mkdir(parents=True)
    (d / "report" / "figures" / "heatmap.png").write_bytes(PNG_MAGIC)  # stale, from an older report
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = write_report(d, out=tmp_path / "rep")
    assert [p.name for p in res["figures"]] == ["curves.png", "finals.png"]
    assert not (tmp_path / "rep" / "figures" / "heatmap.png").exists()
    assert (d / "report" / "figures" / "heatmap.png").exists()  # another directory: untouched
    rows = _read_table_csv(res["table_csv"])
    assert rows[1]["ci_low"] == rows[1]["ci_high"] == repr(f[(1, 0)])  # all equal: [v, v]
    assert rows[2]["n_pending"] == "1" and rows[2]["n"] == "1" and rows[2]["ci_low"] == "" and rows[2]["sd"] == ""
    assert float(rows[0]["mean"]) == pytest.approx((f[(0, 0)] + f[(0, 1)]) / 2)
    last = [ln for ln in res["table"].splitlines() if ln.startswith("| 2 |")][0]
    assert "| — |" in last and "pending" in res["table"]
    html = res["html"].read_text()
    assert "1 run(s) still pending" in html and "unreadable" in html and "--out" in html
    assert html.count("<img ") == 2


def test_summarize_and_format_table_without_figures(tmp_path):
    d = tmp_path / "sw"
    d.mkdir()
    finals = _two_key_sweep(d)
    sweep = read_sweep(d)
    pts = summarize(sweep)
    assert [p.n_done for p in pts] == [3, 3, 3, 2, 3] and pts[3].n_failed == 1
    assert pts[3].stats.mean == pytest.approx(np.mean(list(finals[3].values())))
    lines = format_table(sweep, pts).splitlines()
    assert sum(ln.startswith("|") for ln in lines) == 2 + 5 and lines[1].startswith("|---")


def _err(path) -> str:
    with pytest.raises(ConfigError) as e:
        write_report(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_one_line_errors(tmp_path):
    assert "not found" in _err(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "not a directory" in _err(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no sweep.csv (not a sweep directory; run neuroprobe sweep first)" in _err(empty)

    d = tmp_path / "pending"
    d.mkdir()
    spec = {"name": "s", "config": "/c.toml", "grid": {"rule.lr": ["0.1"]}, "points": [], "seeds": [0, 1],
            "set": [], "batch_seeds": "auto"}
    _write_sweep(d, spec, ["rule.lr"], [
        {"point": 0, "rule.lr": "0.1", "seed": 0, "run": "r0", "status": "failed", "error": "ConfigError: bad"},
        {"point": 0, "rule.lr": "0.1", "seed": 1, "run": "r0", "status": "pending"}])
    msg = _err(d)
    assert "no finished run" in msg and "1 failed" in msg and "ConfigError: bad" in msg

    (d / "sweep.csv").write_text("point,rule.lr,seed,run\n0,0.1,0,r0\n")
    assert "not a sweep table" in _err(d)
    (d / "sweep.csv").write_text("point,rule.lr," + ",".join(TAIL) + "\n0,0.1,zero,r,m,1.0,1,done,\n")
    assert "column 'seed'" in _err(d) and "'zero'" in _err(d)
    (d / "sweep.csv").write_text("point,other," + ",".join(TAIL) + "\n0,0.1,0,r,m,1.0,1,done,\n")
    assert "grid key" in _err(d)
    (d / "sweep.toml").write_text("grid = [")
    assert "sweep.toml" in _err(d)


def test_extra_sections_come_first_on_the_page(tmp_path):
    """write_report(sections=...) (make demo's spiking results): title, text, table cells and figures of
    each section precede the sweep; a missing figure is skipped, not an error."""
    d = tmp_path / "sw"
    d.mkdir()
    _two_key_sweep(d)
    fig = tmp_path / "extra.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(1, 1))
    plt.savefig(fig)
    plt.close("all")
    sec = {"title": "Distal <reward>", "text": "a & b", "table": [["precision", "rank"], ["float", "0.991"]],
           "figures": [(fig, "extra figure"), (tmp_path / "missing.png", "not there")]}
    res = write_report(d, out=tmp_path / "rep", sections=[sec], title="neuroprobe demo")
    html = res["html"].read_text()
    page = _Page()
    page.feed(html)
    page.close()
    text = "".join(page.text)
    assert text.index("Distal <reward>") < text.index("Sweep: ") < text.index("Failed runs")
    assert "neuroprobe demo" in text and "a & b" in text and "Distal &lt;reward&gt;" in html
    assert page.cells[:2] == ["float", "0.991"]
    assert len(page.imgs) == len(res["figures"]) + 1
    assert base64.b64decode(page.imgs[0].split(",", 1)[1]) == fig.read_bytes()


def test_best_chooses_a_grid_key_per_setting_of_the_others(tmp_path):
    """--best rule.lr: per rule.noise_std the lr with the largest mean final (numpy on the finals),
    the off-grid point kept; --minimize the smallest; a non-grid key is a one-line error."""
    d = tmp_path / "sw"
    d.mkdir()
    finals = _two_key_sweep(d)
    means = {p: np.mean(list(v.values())) for p, v in finals.items()}
    lr_of = {0: "0.01", 1: "0.01", 2: "0.05", 3: "0.05"}
    noise_of = {0: "0.001", 1: "0.01", 2: "0.001", 3: "0.01"}
    for minimize, pick in ((False, max), (True, min)):
        res = write_report(d, out=tmp_path / f"rep{minimize}", best="rule.lr", minimize=minimize)
        rows = _read_table_csv(res["table_csv"])
        on = [r for r in rows if r["on_grid"] == "1"]
        assert len(on) == 2 and [r for r in rows if r["on_grid"] == "0"][0]["rule.lr"] == "0.2"
        for r in on:
            cand = [p for p in range(4) if noise_of[p] == r["rule.noise_std"]]
            want = pick(cand, key=lambda p: means[p])
            assert int(r["point"]) == want and r["rule.lr"] == lr_of[want]
            assert float(r["mean"]) == pytest.approx(means[want], rel=1e-12)
        assert "rule.lr chosen per setting" in res["table_md"].read_text()
        assert not any(p.name == "heatmap.png" for p in res["figures"])  # one key left: no heat map
    with pytest.raises(ConfigError, match="--best rule.order: not a grid key"):
        write_report(d, best="rule.order")
