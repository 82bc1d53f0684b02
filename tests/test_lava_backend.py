"""Equivalence of the torch engine's fixed-point mode with Lava's fixed_pt ProcessModels (bit for
bit, with and without learning), of the float mode with Lava's floating_pt (tolerance), and the
Lava driver's failure modes (missing interpreter, crash, timeout).

Lava runs in .venv-lava (``make lava``, part of ``make test``). Without it these tests fail,
unless NEUROPROBE_SKIP_LAVA=1 says to skip them on purpose.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.backends.lava import LavaError, fixed_job, float_job, lava_status, run_job
from neuroprobe.backends.lava.driver import RUNNER
from neuroprobe.errors import ConfigError
from neuroprobe.backends.fixed.lif import LoihiLIFParameters, hash_noise, loihi_lif_step
from neuroprobe.backends.fixed.rstdp import FixedCascadeRSTDP, fixed_rstdp_params
from neuroprobe.spiking import SpikingNetwork, spec_from_dict
from neuroprobe.backends.fixed.network import FixedPointNetwork, quantization_report

STEPS = 1000
_status = lava_status()
needs_lava = pytest.mark.lava  # skipped only by NEUROPROBE_SKIP_LAVA=1 (tests/conftest.py)


def _lif(**kw):
    return {"tau_mem": 20e-3, "tau_syn": 5e-3, "v_th": 1.0, "v_reset": 0.0, **kw}


def make_net(noise: float = 0.0, v_leak: float = 0.0) -> SpikingNetwork:
    spec = spec_from_dict({
        "network": {"dt": 1e-3, "engine": "torch"},
        "population": [
            {"name": "in", "size": 30, "kind": "input"},
            {"name": "exc", "size": 40, "kind": "lif", "sign": "excitatory",
             "lif": _lif(noise="membrane" if noise else "none", noise_std=noise)},
            {"name": "inh", "size": 12, "kind": "lif", "sign": "inhibitory",
             "lif": _lif(tau_syn=0.0, tau_mem=10e-3, v_leak=v_leak)}],
        "projection": [
            {"pre": "in", "post": "exc", "p": 0.3, "weight": 1.0, "weight_std": 0.3, "w_max": 2.0},
            {"pre": "exc", "post": "exc", "p": 0.2, "weight": 0.3, "weight_std": 0.1, "w_max": 1.0},
            {"pre": "exc", "post": "inh", "p": 0.3, "weight": 0.5, "weight_std": 0.1},
            {"pre": "inh", "post": "exc", "p": 0.3, "weight": 1.0}]})
    return SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=torch.float64)


def input_spikes(rate: float = 0.1) -> torch.Tensor:
    return torch.rand(STEPS, 30, generator=torch.Generator().manual_seed(1)) < rate


def run_fixed_torch(fx: FixedPointNetwork, x: torch.Tensor, rules=None, dopamine=None) -> dict:
    s = fx.init_state(1)
    rec = {k: [] for k in ("spikes/exc", "spikes/inh", "v/exc", "v/inh", "u/exc")}
    for t in range(STEPS):
        z, s = fx.step(s, {"in": x[t:t + 1]})
        for name, (pre, post, rule) in (rules or {}).items():
            rule.step(z[pre], z[post], dopamine[t])
        for pop in ("exc", "inh"):
            rec[f"spikes/{pop}"].append(z[pop][0])
            rec[f"v/{pop}"].append(s["v"][pop][0])
        rec["u/exc"].append(s["u"]["exc"][0])
    return {k: torch.stack(v).numpy().astype(np.uint8 if k.startswith("spikes") else np.int64) for k, v in rec.items()}


@needs_lava
def test_lava_environment_works():
    assert _status["ok"], _status["detail"]
    assert _status["version"] == "0.10.0"


@needs_lava
def test_fixed_point_bit_identical_to_lava_fixed_pt():
    net = make_net(noise=0.5, v_leak=0.2)  # noise (hash-based) into exc, a bias on inh
    fx = FixedPointNetwork.from_float(net, noise_seed=7)
    assert fx.lif["inh"].bias_mant != 0 and "exc" in fx.noise
    x = input_spikes()
    ref = run_fixed_torch(fx, x)
    assert 0.01 < ref["spikes/exc"].mean() < 0.5 and ref["spikes/inh"].mean() > 0.01  # both populations active
    job, arrays = fixed_job(fx, STEPS, {"in": x.numpy()},
                            record={"spikes": ["exc", "inh"], "v": ["exc", "inh"], "u": ["exc"]})
    out = run_job(job, arrays, timeout=300)
    for key, val in ref.items():
        np.testing.assert_array_equal(out[key], val, err_msg=key)


@needs_lava
def test_plastic_weights_bit_identical_to_lava():
    """Cascade R-STDP of order 1, 2 and 6 (three projections), a random dopamine signal."""
    net = make_net(noise=0.5)
    fx = FixedPointNetwork.from_float(net, noise_seed=3)
    x = input_spikes()
    dop = torch.randint(-20, 40, (STEPS,), generator=torch.Generator().manual_seed(2))
    rules, plastic = {}, {}
    for name, order in (("in->exc", 1), ("exc->exc", 6), ("exc->inh", 2)):
        pr = fx.projection(name)
        prm = fixed_rstdp_params(pr, 1e-3, order, 0.05, 20e-3, 20e-3, 1.0, 1.2, 2e-4, 0.0, pr_wmax(net, name), 1.0,
                                 0.01)
        rule = FixedCascadeRSTDP(pr, 1, prm)
        pre, post = name.split("->")
        rules[name] = (pre, post, rule)
        plastic[name] = {"params": prm.as_dict(), "w_acc": rule.w_acc[0].numpy().copy()}
    job, arrays = fixed_job(fx, STEPS, {"in": x.numpy()}, record={"spikes": ["exc", "inh"]}, plastic=plastic,
                            dopamine=dop.numpy())
    ref = run_fixed_torch(fx, x, rules, dop)
    out = run_job(job, arrays, timeout=300)
    np.testing.assert_array_equal(out["spikes/exc"], ref["spikes/exc"])
    for name, (_, _, rule) in rules.items():
        w_end = rule.w_acc[0].numpy()
        changed = int((w_end != plastic[name]["w_acc"]).sum())
        assert changed > 0.2 * w_end.size, (name, changed)  # learning did something
        assert (w_end > rule.p.lo).any() and (w_end < rule.p.hi).any()  # not all at a bound
        np.testing.assert_array_equal(out[f"w_acc/{name}"], w_end, err_msg=name)


def pr_wmax(net: SpikingNetwork, name: str) -> float:
    return net.projection(name).spec.w_max


@needs_lava
def test_float_mode_matches_lava_floating_pt():
    net = make_net(v_leak=0.2)
    x = input_spikes()
    s, spikes, volts = net.init_state(1), [], []
    with torch.no_grad():
        for t in range(STEPS):
            z, s = net.step(s, {"in": x[t:t + 1].double()})
            spikes.append(z["exc"][0].numpy())
            volts.append(s["lif"]["exc"].v[0].numpy())
    job, arrays = float_job(net, STEPS, {"in": x.numpy()}, record={"spikes": ["exc"], "v": ["exc"]})
    out = run_job(job, arrays, timeout=300)
    np.testing.assert_array_equal(out["spikes/exc"], np.array(spikes, dtype=np.uint8))
    np.testing.assert_allclose(out["v/exc"], np.array(volts), rtol=0, atol=1e-12)  # float64 both; order of sums


def test_loihi_lif_step_against_a_transcription_of_lava():
    """loihi_lif_step vs a line-by-line NumPy transcription of PyLifModelBitAcc (wrap and saturation)."""
    rng = np.random.default_rng(0)
    p = LoihiLIFParameters(du=300, dv=700, vth=2000, bias_mant=-37, bias_exp=3)
    u = rng.integers(-2 ** 23 + 1, 2 ** 23, 5000)
    v = rng.integers(-2 ** 23 + 1, 2 ** 23, 5000)
    a = rng.integers(-2 ** 16, 2 ** 16, 5000)
    s, u_t, v_t = loihi_lif_step(torch.as_tensor(a), torch.as_tensor(u), torch.as_tensor(v), p)
    m = 2 ** 23
    dc = np.int64(u) * (4096 - (p.du + 1))
    dc = np.int32(np.sign(dc) * np.right_shift(np.abs(dc), 12)) + np.left_shift(a, 6)
    w = np.where(dc > m, dc - 2 * m, dc)
    w = np.where(w <= -m, dc + 2 * m, w)
    dv = np.int64(v) * (4096 - p.dv)
    dv = np.int32(np.sign(dv) * np.right_shift(np.abs(dv), 12))
    vn = np.clip(dv + w + (p.bias_mant << p.bias_exp), -m + 1, m - 1)
    sn = vn > (p.vth << 6)
    vn[sn] = 0
    np.testing.assert_array_equal(u_t.numpy(), w)
    np.testing.assert_array_equal(v_t.numpy(), vn)
    np.testing.assert_array_equal(s.numpy(), sn)
    assert (w != dc).any() and (np.abs(dv + w) >= m).any()  # wrap and saturation were exercised


def test_hash_noise_same_in_torch_and_numpy():
    spec = importlib.util.spec_from_file_location("intmath", RUNNER.parent / "intmath.py")
    intmath = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(intmath)
    idx = np.arange(5000)
    for seed, step in ((0, 1), (7, 123456), (2 ** 31 + 5, 2 ** 33)):
        np.testing.assert_array_equal(hash_noise(seed, step, torch.as_tensor(idx), 91, 8).numpy(),
                                      intmath.hash_noise(seed, step, idx, 91, 8))
    n = hash_noise(1, 1, torch.arange(100_000), 256, 8).double()
    assert abs(n.mean()) < 2 and 145 < n.std() < 151  # Irwin–Hall of 4 bytes: sd 147.8


def test_quantization_report_and_unmappable_networks():
    net = make_net()
    rep = quantization_report(net, FixedPointNetwork.from_float(net))
    assert rep["populations"]["exc"]["decay_v_rel_err"] < 2e-3
    assert all(r["max_rel_err"] < 0.05 for r in rep["projections"].values())
    bad = spec_from_dict({"network": {"dt": 1e-3}, "population": [
        {"name": "a", "size": 3, "kind": "lif", "lif": _lif(t_ref=2e-3)}]})
    with pytest.raises(ConfigError, match="population 'a'.*refractory"):
        FixedPointNetwork.from_float(SpikingNetwork(bad))
    bad = spec_from_dict({"network": {"dt": 1e-3}, "population": [
        {"name": "b", "size": 3, "kind": "lif", "lif": _lif(v_reset=-0.1)}]})
    with pytest.raises(ConfigError, match="population 'b'.*v_reset"):
        FixedPointNetwork.from_float(SpikingNetwork(bad))
    bad = spec_from_dict({"network": {"dt": 1e-3}, "population": [
        {"name": "p", "size": 3, "kind": "poisson", "rate": 5.0},
        {"name": "c", "size": 3, "kind": "lif", "lif": _lif()}], "projection": [{"pre": "p", "post": "c"}]})
    with pytest.raises(ConfigError, match="population 'p'.*Poisson"):
        FixedPointNetwork.from_float(SpikingNetwork(bad))


def test_mixed_sign_weights_use_lavas_full_range():
    """A mixed-sign projection is quantised to Lava Dense's mixed range: even mantissas in
    [−256, 254] (not ±126), left unchanged by Lava's weight handling; single-sign ones to 0..255."""
    from neuroprobe.backends.fixed.network import lava_dense_weights

    spec = spec_from_dict({"network": {"dt": 1e-3}, "population": [
        {"name": "a", "size": 40, "kind": "lif", "sign": "none", "lif": _lif()},
        {"name": "b", "size": 30, "kind": "lif", "sign": "excitatory", "lif": _lif()}], "projection": [
        {"pre": "a", "post": "b", "p": 0.5, "weight": 0.1, "weight_std": 1.0},
        {"pre": "b", "post": "a", "p": 0.5, "weight": 0.5, "weight_std": 0.2}]})
    net = SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=torch.float64)
    fx = FixedPointNetwork.from_float(net)
    mixed, single = fx.projection("a->b"), fx.projection("b->a")
    w = net.projection("a->b").weight.detach()
    assert (w > 0).any() and (w < 0).any()
    m = mixed.w_mant
    assert (m % 2 == 0).all() and int(m.min()) >= -256 and int(m.max()) <= 254
    assert max(-int(m.min()), int(m.max())) > 126  # the full range: beyond the old ±126
    assert int(single.w_mant.max()) > 127 and int(single.w_mant.min()) >= 0
    for fp in (mixed, single):
        assert torch.equal(lava_dense_weights(fp.dense()), fp.dense())
    # the rounding error is at most one LSB pair (2·2**exp), in the float model's units
    err = (m.double() * mixed.scale_w - w).abs().max()
    assert err <= mixed.scale_w * (1 + 1e-9)


def test_missing_lava_interpreter_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROPROBE_LAVA_PYTHON", str(tmp_path / "nope" / "python"))
    assert not lava_status()["ok"] and "no Lava interpreter" in lava_status()["detail"]
    with pytest.raises(LavaError, match="no Lava interpreter at .*make lava"):
        run_job({"precision": "fixed", "steps": 1, "populations": [], "projections": []}, {})


def test_lava_timeout_kills_the_whole_process_group(monkeypatch, tmp_path):
    """A 'Lava' that hangs (and has a child that hangs) is killed with its children at the timeout."""
    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nsleep 300\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("NEUROPROBE_LAVA_PYTHON", str(fake))
    t0 = time.monotonic()
    with pytest.raises(LavaError, match="timed out after 2 s"):
        run_job({"precision": "fixed", "steps": 1, "populations": [], "projections": []}, {}, timeout=2)
    assert time.monotonic() - t0 < 30
    child = int(pidfile.read_text())
    for _ in range(50):  # the kill is asynchronous: wait for the child to be reaped/gone
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the runner's child process survived the timeout")


@needs_lava
def test_runner_failure_is_one_line():
    job = {"precision": "fixed", "steps": 5, "populations": [{"name": "x", "size": 2, "kind": "weird"}],
           "projections": []}
    with pytest.raises(LavaError, match=r"Lava run failed \(exit 2\): lava runner: ValueError: population x"):
        run_job(job, {}, timeout=120)


@needs_lava
def test_info_reports_the_lava_environment(capsys):
    from neuroprobe.cli import main

    assert main(["info"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("lava"))
    assert "ok: lava-nc 0.10.0 on Python 3.10" in line


def test_info_says_when_lava_is_missing(monkeypatch, tmp_path, capsys):
    from neuroprobe.cli import main

    monkeypatch.setenv("NEUROPROBE_LAVA_PYTHON", str(tmp_path / "none"))
    assert main(["info"]) == 0
    assert "lava          missing: no Lava interpreter" in capsys.readouterr().out
