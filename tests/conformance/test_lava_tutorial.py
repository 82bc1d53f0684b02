"""Lava's own way of writing a network, re-created in neuroprobe's fixed-point engine.

A Lava tutorial-style E/I network (80 excitatory + 20 inhibitory LIF neurons, one recurrent
``Dense`` with mixed-sign integer weights, a bias, random initial u and v, plus 20 input spike
trains through a second ``Dense`` with ``weight_exp`` and ``num_weight_bits``) is written once as
the integers a Lava user gives ``LIF`` and ``Dense``; Lava runs them in fixed_pt (a small script
in .venv-lava that builds the processes directly, not neuroprobe's runner), neuroprobe runs
``FixedPointNetwork.from_integers`` with ``FixedProjection.from_lava_dense``. Spikes, v and u
must be identical for 1000 steps. The weight handling alone (sign mode, clipping, LSB truncation,
``optimize_weight_bits``) is compared with Lava's ``lava.utils.weightutils`` on random matrices.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from neuroprobe.backends.fixed.lif import LoihiLIFParameters
from neuroprobe.backends.fixed.network import (FixedPointNetwork, FixedProjection, SignMode, determine_sign_mode,
                                               lava_dense_weights, optimize_weight_bits, quantize_weights)
from neuroprobe.backends.lava.driver import _run, lava_python
from neuroprobe.errors import ConfigError

STEPS = 1000
NE, NI, NIN = 80, 20, 20
N = NE + NI
# Lava's LIF(du=, dv=, vth=, bias_mant=, bias_exp=) in fixed_pt
LIF_INTS = dict(du=409, dv=205, vth=20000, bias_mant=800, bias_exp=6)
IN_EXP, IN_BITS = -1, 6  # the input Dense: Dense(weights=w_in, weight_exp=-1, num_weight_bits=6)

LAVA_NETWORK = textwrap.dedent('''
    import sys
    import numpy as np
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    f = np.load(sys.argv[1])
    T = int(f["steps"])
    du, dv, vth, bias_mant, bias_exp = (int(x) for x in f["lif"])
    ei = LIF(shape=(f["w_rec"].shape[0],), du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp,
             u=f["u0"], v=f["v0"])
    rec = Dense(weights=f["w_rec"])
    ei.s_out.connect(rec.s_in)
    rec.a_out.connect(ei.a_in)
    src = RingBuffer(data=f["x"])
    inp = Dense(weights=f["w_in"], weight_exp=int(f["in_exp"]), num_weight_bits=int(f["in_bits"]))
    src.s_out.connect(inp.s_in)
    inp.a_out.connect(ei.a_in)
    mons = {}
    for port in ("s_out", "v", "u"):
        mons[port] = Monitor()
        mons[port].probe(getattr(ei, port), T)
    ei.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        out = {port: np.asarray(m.get_data()[ei.name][port]) for port, m in mons.items()}
    finally:
        ei.stop()
    np.savez(sys.argv[2], spikes=out["s_out"].astype(np.uint8), v=np.rint(out["v"]).astype(np.int64),
             u=np.rint(out["u"]).astype(np.int64))
''')

LAVA_WEIGHTUTILS = textwrap.dedent('''
    import sys
    import numpy as np
    from lava.utils.weightutils import (SignMode, clip_weights, determine_sign_mode, optimize_weight_bits,
                                        truncate_weights)

    f = np.load(sys.argv[1])
    out = {}
    for i in range(int(f["n_dense"])):
        w = np.zeros(f[f"w/{i}"].shape, dtype=np.int32)
        w[:] = f[f"w/{i}"]                              # the int32 Var, as Lava's py_builder fills it
        m = int(f[f"mode/{i}"])
        # PyDenseModelBitAcc.run_spk, first step (lava/proc/dense/models.py)
        sign_mode = (SignMode(m) if m >= 0 else None) or determine_sign_mode(w)
        w = clip_weights(w, sign_mode, num_bits=8)
        w = truncate_weights(w, sign_mode, int(f[f"nwb/{i}"]))
        out[f"dense/{i}"] = w.astype(np.int64)
        out[f"mode/{i}"] = np.array(sign_mode.value)
    for i in range(int(f["n_opt"])):
        w = f[f"ow/{i}"]
        m = int(f[f"omode/{i}"])
        try:
            r = optimize_weight_bits(w.copy(), SignMode(m) if m >= 0 else determine_sign_mode(w),
                                     loihi2=bool(f[f"loihi2/{i}"]))
            out[f"ow/{i}"] = np.asarray(r.weights).astype(np.int64)
            out[f"obits/{i}"] = np.array([r.num_weight_bits, r.weight_exp])
        except (ValueError, OverflowError):
            out[f"oerr/{i}"] = np.array(1)
    np.savez(sys.argv[2], **out)
''')


def _lava(script: str, arrays: dict, tmp_path, timeout: float = 120) -> dict:
    """Run ``script JOB RESULT`` in the Lava environment (its own process group, killed on timeout)."""
    (tmp_path / "script.py").write_text(script)
    np.savez(tmp_path / "job.npz", **arrays)
    r = _run([str(lava_python()), str(tmp_path / "script.py"), str(tmp_path / "job.npz"), str(tmp_path / "out.npz")],
             timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as f:
        return {k: f[k] for k in f.files}


def tutorial_integers(seed: int = 0) -> dict:
    """The integers of the E/I network, as a Lava user writes them: (n_post, n_pre) weight
    matrices, 20 % connectivity, excitatory columns in [1, 299] and inhibitory ones in [−399, −1]
    (odd values and values beyond Dense's 8 bits included: Lava truncates and clips them)."""
    rng = np.random.default_rng(seed)
    conn = rng.random((N, N)) < 0.2
    np.fill_diagonal(conn, False)
    w = np.zeros((N, N), dtype=np.int64)
    w[:, :NE] = rng.integers(1, 300, (N, NE))
    w[:, NE:] = -rng.integers(1, 400, (N, NI))
    w_in = np.where(rng.random((N, NIN)) < 0.3, rng.integers(-100, 300, (N, NIN)), 0)
    x = (rng.random((STEPS, NIN)) < 0.05).astype(np.int64)
    return {"w_rec": np.where(conn, w, 0), "w_in": w_in, "x": x,
            "u0": rng.integers(-2000, 2000, N), "v0": rng.integers(0, LIF_INTS["vth"] << 6, N)}


def run_neuroprobe(ints: dict, lava_weight_handling: bool = True) -> dict:
    if lava_weight_handling:
        projs = [FixedProjection.from_lava_dense("ei->ei", "ei", "ei", ints["w_rec"]),
                 FixedProjection.from_lava_dense("in->ei", "in", "ei", ints["w_in"], IN_EXP, IN_BITS)]
    else:  # the given integers used as mantissas as they are (what the projection did before)
        projs = []
        for name, pre, w, exp in (("ei->ei", "ei", ints["w_rec"], 0), ("in->ei", "in", ints["w_in"], IN_EXP)):
            w = torch.as_tensor(w)
            post_i, pre_i = w.nonzero(as_tuple=True)
            projs.append(FixedProjection(name, pre, "ei", w.shape[1], w.shape[0], pre_i, post_i, w[post_i, pre_i],
                                         exp, 1.0))
    fx = FixedPointNetwork.from_integers({"in": NIN, "ei": N}, {"ei": LoihiLIFParameters(**LIF_INTS)}, projs)
    s = fx.init_state(1)
    s["u"]["ei"] = torch.as_tensor(ints["u0"])[None].clone()
    s["v"]["ei"] = torch.as_tensor(ints["v0"])[None].clone()
    x = torch.as_tensor(ints["x"]).bool()
    rec = {"spikes": [], "v": [], "u": []}
    for t in range(STEPS):
        z, s = fx.step(s, {"in": x[t:t + 1]})
        rec["spikes"].append(z["ei"][0])
        rec["v"].append(s["v"]["ei"][0])
        rec["u"].append(s["u"]["ei"][0])
    return {k: torch.stack(v).numpy().astype(np.uint8 if k == "spikes" else np.int64) for k, v in rec.items()}


@pytest.mark.lava
def test_lava_tutorial_ei_network_bit_identical(tmp_path):
    ints = tutorial_integers()
    ref = run_neuroprobe(ints)
    e_rate, i_rate = ref["spikes"][:, :NE].mean(), ref["spikes"][:, NE:].mean()
    assert 0.01 < e_rate < 0.5 and 0.01 < i_rate < 0.5, (e_rate, i_rate)  # both populations active, not saturated
    # Lava's handling changes many of the given weights (clipped, LSB truncated): the test means something
    for w, exp, bits in ((ints["w_rec"], 0, 8), (ints["w_in"], IN_EXP, IN_BITS)):
        handled = lava_dense_weights(w, bits).numpy()
        assert (handled != w).sum() > 0.3 * (w != 0).sum()
    naive = run_neuroprobe(ints, lava_weight_handling=False)
    assert (naive["spikes"] != ref["spikes"]).any()  # without it, the run diverges from Lava (step 19)

    out = _lava(LAVA_NETWORK, {"steps": STEPS, "lif": np.array([LIF_INTS[k] for k in
                                                                 ("du", "dv", "vth", "bias_mant", "bias_exp")]),
                               "w_rec": ints["w_rec"], "w_in": ints["w_in"], "x": ints["x"].T,
                               "u0": ints["u0"], "v0": ints["v0"], "in_exp": IN_EXP, "in_bits": IN_BITS}, tmp_path)
    for key in ("spikes", "v", "u"):
        assert out[key].shape == (STEPS, N)
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)


def _random_cases(rng) -> tuple[list, list]:
    """(Dense cases [(weights, sign mode value or −1, num_weight_bits)], optimize_weight_bits cases
    [(weights, sign mode value or −1, loihi2)])."""
    shape = (7, 9)
    mats = {
        "mixed": rng.integers(-400, 401, shape), "mixed_small": rng.integers(-3, 6, shape),
        "exc": rng.integers(0, 401, shape), "inh": rng.integers(-400, 1, shape), "zero": np.zeros(shape, np.int64),
        "float": rng.uniform(-300.7, 300.7, shape), "sparse_mixed": np.where(rng.random(shape) < 0.2,
                                                                              rng.integers(-300, 300, shape), 0)}
    dense = [(w, -1, b) for w in mats.values() for b in (8, 7, 5, 1, 0)]
    dense += [(mats[k], m.value, b) for k in ("mixed", "exc", "inh") for m in SignMode for b in (8, 6)]
    in_range = {"mixed": rng.integers(-256, 256, shape), "mixed_small": rng.integers(-3, 6, shape),
                "mixed_x4": rng.integers(-64, 64, shape) * 4, "exc": rng.integers(0, 256, shape),
                "exc_small": rng.integers(0, 9, shape), "inh": rng.integers(-255, 1, shape),
                "inh_x8": rng.integers(-31, 1, shape) * 8, "zero": np.zeros(shape, np.int64),
                "edge": np.array([[255, -3], [5, 7]]), "edge2": np.array([[254, -3], [6, 8]])}
    opt = [(w, -1, l2) for w in in_range.values() for l2 in (False, True)]
    opt += [(in_range["mixed"], SignMode.EXCITATORY.value, False), (in_range["exc"], SignMode.MIXED.value, True),
            (in_range["inh"], SignMode.INHIBITORY.value, False)]
    return dense, opt


@pytest.mark.lava
def test_weight_handling_matches_lava_weightutils(tmp_path):
    rng = np.random.default_rng(1)
    dense, opt = _random_cases(rng)
    # from_float's mixed-sign mantissas (Lava's full range) must come out of Lava's Dense unchanged
    real = torch.as_tensor(rng.normal(0.1, 1.0, (40, 30)))
    fromf = [quantize_weights(real * s)[0].numpy() for s in (1.0, 37.0, 1e-3)]
    # +0.01 rounds to 0, so Lava infers INHIBITORY and clips −256 to −255: quantize_weights does too
    fromf.append(quantize_weights(torch.tensor([[-256.0, 0.01, -3.0]]))[0].numpy())
    dense += [(m, -1, 8) for m in fromf]
    arrays = {"n_dense": len(dense), "n_opt": len(opt)}
    for i, (w, m, b) in enumerate(dense):
        arrays.update({f"w/{i}": w, f"mode/{i}": m, f"nwb/{i}": b})
    for i, (w, m, l2) in enumerate(opt):
        arrays.update({f"ow/{i}": w, f"omode/{i}": m, f"loihi2/{i}": l2})
    out = _lava(LAVA_WEIGHTUTILS, arrays, tmp_path)

    for i, (w, m, b) in enumerate(dense):
        mode = SignMode(m) if m >= 0 else None
        ours = lava_dense_weights(w, b, mode).numpy()
        np.testing.assert_array_equal(ours, out[f"dense/{i}"], err_msg=f"dense case {i} (mode {m}, bits {b})")
        if m < 0:
            assert determine_sign_mode(np.trunc(w)).value == int(out[f"mode/{i}"])
    for j, m in enumerate(fromf):
        np.testing.assert_array_equal(out[f"dense/{len(dense) - len(fromf) + j}"], m)  # Lava leaves them as they are
    assert all(max(-int(m.min()), int(m.max())) > 126 for m in fromf[:3])  # the full range, beyond the old ±126

    n_err = 0
    for i, (w, m, l2) in enumerate(opt):
        mode = SignMode(m) if m >= 0 else None
        if f"oerr/{i}" in out:
            n_err += 1
            with pytest.raises(ConfigError):
                optimize_weight_bits(w, mode, l2)
            continue
        ow, bits, exp = optimize_weight_bits(w, mode, l2)
        np.testing.assert_array_equal(ow.numpy(), out[f"ow/{i}"], err_msg=f"optimize case {i}")
        assert [bits, exp] == out[f"obits/{i}"].tolist(), f"optimize case {i}"
    assert 0 < n_err < len(opt)  # Lava refuses some (out of its sign mode's range, loihi2 with > 8 bits)


def test_weight_handling_rules_and_errors():
    """Lava's handling in a few numbers (independent of Lava): mixed clears the LSB flooring, clips to
    [−256, 255]; inhibitory truncates toward zero; from_float's mixed range reproduces those integers."""
    assert lava_dense_weights([[3, -3, 300, -300, 255, -1]]).tolist() == [[2, -4, 254, -256, 254, -2]]
    assert lava_dense_weights([[-3, -300, -7]], 7).tolist() == [[-2, -254, -6]]
    assert lava_dense_weights([[3, 300, 7]], 7).tolist() == [[2, 255 - 1, 6]]
    assert lava_dense_weights([[3, -5]], 8, "excitatory").tolist() == [[3, 0]]
    assert lava_dense_weights([[2.9, -2.9, 5.5]], 8).tolist() == [[2, -2, 4]]  # int32 Var: truncation first
    w = lava_dense_weights(np.random.default_rng(3).integers(-400, 400, (20, 20))).double()
    mant, exp = quantize_weights(w)
    assert exp == 0 and torch.equal(mant, w.long())  # the whole even range [−256, 254] at exponent 0
    with pytest.raises(ConfigError, match="num_weight_bits"):
        lava_dense_weights([[1]], 9)
    with pytest.raises(ConfigError, match="sign_mode"):
        lava_dense_weights([[1]], 8, "positive")
    with pytest.raises(ConfigError, match="2-D"):
        FixedProjection.from_lava_dense("a->b", "a", "b", np.ones((2, 2, 2)))
    with pytest.raises(ConfigError, match="does not match"):
        FixedPointNetwork.from_integers({"a": 3, "b": 2}, {"b": LoihiLIFParameters(du=0, dv=0, vth=1)},
                                        [FixedProjection.from_lava_dense("a->b", "a", "b", np.ones((2, 4)))])
