"""Figures of spiking recordings: plot_recordings on a synthetic recordings.npz, and `neuroprobe plot`."""
import numpy as np
import pytest

from neuroprobe.cli import main
from neuroprobe.errors import ConfigError
from neuroprobe.monitors import save_recordings
from neuroprobe.plotting import plot_kernels, plot_recordings, plot_run, plot_weights

DT = 1e-3


def _synthetic(rng, T=300):
    rec = {"meta/dt": np.float64(DT)}
    for pop, n, p in (("exc", 20, 0.02), ("inh", 5, 0.05)):
        rec[f"spikes/{pop}"] = (rng.random((T, n)) < p).astype(np.uint8)
        rec[f"time/spikes/{pop}"] = np.arange(T) * DT
        rec[f"indices/spikes/{pop}"] = np.arange(n)
    rec["rate/exc"] = (rec["spikes/exc"].sum(1) / 20 / DT).astype(np.float32)
    rec["time/rate/exc"] = np.arange(T) * DT
    rec["v/exc"] = rng.random((T // 2, 3)).astype(np.float32)
    rec["time/v/exc"] = np.arange(0, T, 2) * DT
    rec["indices/v/exc"] = np.array([0, 4, 9])
    rec["meta/v_th/exc"] = np.float64(1.0)
    for var in ("weight", "eligibility"):
        rec[f"{var}/exc->exc"] = np.cumsum(rng.normal(size=(T // 10, 30)), 0).astype(np.float32)
        rec[f"time/{var}/exc->exc"] = np.arange(0, T, 10) * DT
        rec[f"indices/{var}/exc->exc"] = np.arange(100, 130)
    rec["meta/highlight/exc->exc"] = np.array([3])
    return rec


def _check_files(paths, stems):
    names = {p.name for p in paths}
    for stem in stems:
        for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
            assert f"{stem}.{fmt}" in names, names
            p = next(p for p in paths if p.name == f"{stem}.{fmt}")
            data = p.read_bytes()
            assert len(data) > 1000 and data.startswith(magic)


def test_plot_recordings_writes_png_and_pdf(tmp_path):
    save_recordings(tmp_path / "recordings.npz", _synthetic(np.random.default_rng(0)))
    paths = plot_recordings(tmp_path)
    _check_files(paths, ["raster", "membrane", "weights", "traces"])
    assert all(p.parent == tmp_path for p in paths)


def test_plot_recordings_other_variables_and_kernels(tmp_path):
    rec = {"meta/dt": np.float64(DT), "i/exc": np.ones((10, 2), np.float32), "rate/exc": np.ones(10, np.float32),
           "meta/kernel/delay_s": np.float64(0.05), "meta/kernel/orders": np.array([1, 2, 6])}
    save_recordings(tmp_path / "recordings.npz", rec)
    _check_files(plot_recordings(tmp_path), ["rate", "state_i", "kernels"])


def test_plot_kernels_peaks_at_delay():
    fig = plot_kernels(orders=(2, 6), delay_s=0.05, dt=1e-3)
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel().endswith("(s)") and ax.get_legend() is not None
    peaks = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [float(p.get_xdata()[0]) for p in peaks] == pytest.approx([0.05, 0.05])


def test_plot_weights_bad_highlight():
    rec = _synthetic(np.random.default_rng(1))
    with pytest.raises(ConfigError, match="highlight"):
        plot_weights(rec, "exc->exc", highlight=[99])


def test_cli_plot_spiking_run_dir(tmp_path, capsys):
    rec = {k: v for k, v in _synthetic(np.random.default_rng(2)).items() if "exc->exc" not in k}
    save_recordings(tmp_path / "recordings.npz", rec)
    assert main(["plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "raster.png" in out and "raster.pdf" in out
    assert not (tmp_path / "learning_curve.png").exists()


def test_plot_run_with_metrics_and_recordings(tmp_path):
    (tmp_path / "metrics.csv").write_text("episode,seed,return,length\n0,0,1.0,5\n1,0,2.0,5\n")
    save_recordings(tmp_path / "recordings.npz", {"meta/dt": np.float64(DT),
                                                  "spikes/exc": np.eye(4, dtype=np.uint8)})
    names = {p.name for p in plot_run(tmp_path)}
    assert {"learning_curve.png", "raster.png", "raster.pdf"} <= names


def test_cli_plot_corrupt_recordings(tmp_path, capsys):
    (tmp_path / "recordings.npz").write_bytes(b"garbage")
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.splitlines()) == 1
