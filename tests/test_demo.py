"""`make demo` (experiments/demo.py) at a tiny size: every part runs and ends on one HTML page and a
printed summary whose numbers are the runs' own."""
from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.imgs = [], 0

    def handle_starttag(self, tag, attrs):
        self.imgs += tag == "img"

    def handle_data(self, data):
        self.text.append(data)


def test_demo_runs_every_part_and_writes_one_page(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(ROOT / "experiments" / "demo.py"), "--out", str(out), "--duration", "1.0",
           "--trials", "1", "--steps", "40", "--seeds", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    for d in ("distal_float", "distal_fixed"):
        assert (out / d / "summary.json").is_file() and (out / d / "raster.png").is_file()
    page = _Text()
    page.feed((out / "report" / "report.html").read_text())
    text = "".join(page.text)
    assert "Distal reward with a cascade eligibility trace" in text and "fixed point" in text
    assert page.imgs >= 5  # raster, membrane, weights, float vs fixed, and the sweep's figures
    summary = json.loads((out / "distal_fixed" / "summary.json").read_text())
    assert f"{summary['per_seed'][0]:.3f}" in res.stdout  # the printed rank is the run's
    quant = json.loads((out / "quantisation.json").read_text())["quantization_error"]["populations"]["exc"]
    assert f"{100 * quant['matched_within_1_step']:.1f} % matched" in res.stdout
    assert "report:" in res.stdout and (out / "cet_sweep" / "sweep.csv").is_file()
