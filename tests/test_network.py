"""Tests of neuroprobe.network: shapes, forward pass against hand-written references, node noise,
TOML model files and spec validation."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from neuroprobe.errors import ConfigError
from neuroprobe.network import (
    NetworkSpec,
    RateNetwork,
    build_network,
    network_from_toml,
    spec_from_dict,
    spec_from_toml,
)

ROOT = Path(__file__).resolve().parents[1]
ALL_MODEL_FILES = sorted((ROOT / "models").glob("*.toml"))
MODEL_FILES = [p for p in ALL_MODEL_FILES if "[[population]]" not in p.read_text()]  # rate models
SPIKING_MODEL_FILES = [p for p in ALL_MODEL_FILES if p not in MODEL_FILES]
F64 = torch.float64



def _net(sizes, batch=None, bias=False, seed=0, dtype=F64, init="xavier_normal"):
    spec = NetworkSpec(list(sizes), bias=bias, init=init)
    return RateNetwork(spec, batch=batch, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomize_biases(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=layer.bias.dtype))


def _hand_forward(x, weights, biases, noise=None):
    """Hand-written MLP: LeakyReLU(slope 0.1) hidden layers, softmax readout (explicit formulas)."""
    h = None
    for l, (w, b) in enumerate(zip(weights, biases)):
        h = x @ w.T
        if b is not None:
            h = h + b
        if noise is not None:
            h = h + noise[l]
        x = torch.where(h >= 0, h, 0.1 * h)
    z = torch.exp(h - h.max(-1, keepdim=True).values)
    return z / z.sum(-1, keepdim=True), h


# ----------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("bias", [False, True])
def test_shapes_without_model_axis(bias):
    net = _net([4, 16, 8, 3], bias=bias)
    assert net.layer_names == ["fc1", "fc2", "fc3"]
    assert net.layer_sizes == [16, 8, 3]
    assert [tuple(l.weight.shape) for l in net.layers] == [(16, 4), (8, 16), (3, 8)]
    if bias:
        assert [tuple(l.bias.shape) for l in net.layers] == [(16,), (8,), (3,)]
    else:
        assert all(l.bias is None for l in net.layers)
    assert net(torch.randn(4, dtype=F64)).shape == (3,)
    assert net(torch.randn(5, 4, dtype=F64)).shape == (5, 3)
    sw = net.sweep(torch.randn(5, 7, 4, dtype=F64))  # 5 states x 7 passes
    assert [tuple(t.shape) for t in sw.inputs] == [(5, 7, 4), (5, 7, 16), (5, 7, 8)]
    assert [tuple(t.shape) for t in sw.preacts] == [(5, 7, 16), (5, 7, 8), (5, 7, 3)]
    assert sw.logits.shape == sw.output.shape == (5, 7, 3)
    noise = net.sample_noise((5, 7), 0.1, torch.Generator().manual_seed(0))
    assert [tuple(n.shape) for n in noise] == [(5, 7, 16), (5, 7, 8), (5, 7, 3)]
    assert all(n.dtype == F64 for n in noise)


@pytest.mark.parametrize("bias", [False, True])
def test_shapes_with_model_axis(bias):
    M = 3
    net = _net([4, 16, 2], batch=M, bias=bias)
    assert [tuple(l.weight.shape) for l in net.layers] == [(M, 16, 4), (M, 2, 16)]
    if bias:
        assert [tuple(l.bias.shape) for l in net.layers] == [(M, 16), (M, 2)]
    assert net(torch.randn(M, 4, dtype=F64)).shape == (M, 2)
    sw = net.sweep(torch.randn(M, 6, 4, dtype=F64))  # 6 passes per model
    assert sw.output.shape == (M, 6, 2)
    assert sw.inputs[1].shape == (M, 6, 16)
    # the models are independent copies, not the same weights
    assert not torch.equal(net.layers[0].weight[0], net.layers[0].weight[1])


def test_model_axis_equals_independent_networks():
    """Model m of a batched network computes exactly what a network holding only W[m] computes."""
    M = 3
    net = _net([4, 16, 2], batch=M, bias=True)
    _randomize_biases(net)
    x = torch.randn(M, 5, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    out = net.sweep(x).output  # (M, 5, 2)
    for m in range(M):
        single = _net([4, 16, 2], bias=True)
        with torch.no_grad():
            for ls, lb in zip(single.layers, net.layers):
                ls.weight.copy_(lb.weight[m])
                ls.bias.copy_(lb.bias[m])
        torch.testing.assert_close(single(x[m]), out[m], rtol=1e-12, atol=1e-14)


def test_seeded_init_is_reproducible_and_xavier_scaled():
    a, b = _net([4, 64, 2], seed=5), _net([4, 64, 2], seed=5)
    c = _net([4, 64, 2], seed=6)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    # xavier normal: std sqrt(2 / (fan_in + fan_out)); 64*400 samples pin it to ~1%
    big = _net([400, 64, 2], seed=0)
    w = big.layers[0].weight.detach()
    assert abs(float(w.std()) / (2.0 / (400 + 64)) ** 0.5 - 1) < 0.03
    ku = _net([400, 64, 2], init="kaiming_uniform").layers[0].weight.detach()
    assert float(ku.abs().max()) <= 1 / 400**0.5
    assert float(ku.abs().max()) > 0.95 / 400**0.5


# ----------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_equals_hand_computation(batch, bias):
    net = _net([4, 16, 8, 3], batch=batch, bias=bias, seed=2)
    _randomize_biases(net)
    g = torch.Generator().manual_seed(4)
    # with a model axis, forward takes (…, M, n_in): row m goes to model m
    lead = () if batch is None else (batch,)
    x = torch.randn((5,) + lead + (4,), dtype=F64, generator=g)
    got = net(x)
    if batch is None:
        want, _ = _hand_forward(x, [l.weight for l in net.layers], [l.bias for l in net.layers])
    else:
        want = torch.stack([
            _hand_forward(x[:, m], [l.weight[m] for l in net.layers],
                          [None if l.bias is None else l.bias[m] for l in net.layers])[0]
            for m in range(batch)], dim=1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got.sum(-1), torch.ones(got.shape[:-1], dtype=F64))


def test_forward_equals_nn_linear_reference():
    net = _net([4, 64, 2], bias=True, seed=7, dtype=torch.float32)
    _randomize_biases(net)
    ref = nn.Sequential(nn.Linear(4, 64), nn.LeakyReLU(0.1), nn.Linear(64, 2), nn.Softmax(dim=-1))
    with torch.no_grad():
        ref[0].weight.copy_(net.layers[0].weight)
        ref[0].bias.copy_(net.layers[0].bias)
        ref[2].weight.copy_(net.layers[1].weight)
        ref[2].bias.copy_(net.layers[1].bias)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(net(x), ref(x), rtol=1e-6, atol=1e-7)
    # the leaky slope matters: a plain ReLU reference must disagree
    relu_ref = nn.Sequential(ref[0], nn.ReLU(), ref[2], nn.Softmax(dim=-1))
    assert not torch.allclose(net(x), relu_ref(x), atol=1e-4)


def test_identity_readout_returns_logits():
    spec = NetworkSpec([3, 5, 2], readout="identity", activation="tanh")
    net = RateNetwork(spec, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.randn(4, 3, dtype=F64)
    w1, w2 = net.layers[0].weight, net.layers[1].weight
    torch.testing.assert_close(net(x), torch.tanh(x @ w1.T) @ w2.T, rtol=1e-12, atol=1e-14)


def test_noise_is_added_to_the_preactivation():
    M, P = 2, 3
    net = _net([4, 16, 3], batch=M, bias=True, seed=1)
    _randomize_biases(net)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(M, 4, dtype=F64, generator=g).unsqueeze(-2).expand(M, P, 4)
    noise = net.sample_noise((M, P), 0.5, g)
    sw = net.sweep(x, noise)
    for m in range(M):
        w1, b1 = net.layers[0].weight[m], net.layers[0].bias[m]
        w2, b2 = net.layers[1].weight[m], net.layers[1].bias[m]
        h1 = x[m] @ w1.T + b1 + noise[0][m]
        x1 = torch.where(h1 >= 0, h1, 0.1 * h1)
        h2 = x1 @ w2.T + b2 + noise[1][m]
        torch.testing.assert_close(sw.preacts[0][m], h1, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(sw.inputs[1][m], x1, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(sw.logits[m], h2, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(sw.output[m], torch.softmax(h2, -1), rtol=1e-12, atol=1e-14)
    # the noise really changes the passes (and a zero noise gives the clean pass)
    clean = net.sweep(x)
    assert not torch.allclose(clean.logits, sw.logits)
    zero = net.sweep(x, [torch.zeros_like(n) for n in noise])
    torch.testing.assert_close(zero.output, clean.output, rtol=0, atol=0)


def test_noise_broadcasts_over_passes_and_has_requested_std():
    net = _net([4, 200, 3])
    noise = net.sample_noise((50,), 0.3, torch.Generator().manual_seed(0))
    assert abs(float(noise[0].std()) / 0.3 - 1) < 0.03
    assert abs(float(noise[0].mean())) < 0.02
    # a (n_out,) noise vector broadcasts to every pass
    x = torch.randn(6, 4, dtype=F64)
    xi = [torch.full((200,), 0.25, dtype=F64), torch.zeros(3, dtype=F64)]
    sw = net.sweep(x, xi)
    torch.testing.assert_close(sw.preacts[0], x @ net.layers[0].weight.T + 0.25)


# ----------------------------------------------------------------------------------- TOML models


@pytest.mark.parametrize("path", SPIKING_MODEL_FILES, ids=[p.name for p in SPIKING_MODEL_FILES])
def test_every_spiking_model_file_loads(path):
    from neuroprobe.spiking import SpikingNetwork, load_spiking_spec

    raw = tomllib.loads(path.read_text())
    spec = load_spiking_spec(path)
    assert [p.name for p in spec.populations] == [p["name"] for p in raw["population"]]
    net = SpikingNetwork(spec, torch.Generator().manual_seed(0))
    assert len(net.projections) == len(raw.get("projection", []))


@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.name for p in MODEL_FILES])
def test_every_model_file_loads(path):
    raw = tomllib.loads(path.read_text())["network"]
    spec = spec_from_toml(path)
    assert spec.sizes == raw["sizes"]
    assert spec.activation == raw["activation"] and spec.readout == raw["readout"]
    assert spec.bias == raw["bias"] and spec.init == raw["init"]
    assert spec.name == path.stem
    net = build_network(path, batch=2, seed=0)
    sizes = raw["sizes"]
    assert [tuple(l.weight.shape) for l in net.layers] == [(2, o, i) for i, o in zip(sizes[:-1], sizes[1:])]
    assert all((l.bias is not None) == raw["bias"] for l in net.layers)
    out = net(torch.randn(2, sizes[0]))
    assert out.shape == (2, sizes[-1])
    torch.testing.assert_close(out.sum(-1), torch.ones(2))
    # network_from_toml is the same builder; same seed, same weights
    again = network_from_toml(str(path), batch=2, seed=0)
    assert torch.equal(again.layers[0].weight, net.layers[0].weight)


def test_build_network_from_dict_and_spec():
    a = build_network({"sizes": [3, 4, 2]}, seed=1)
    b = build_network(NetworkSpec([3, 4, 2]), seed=1)
    assert torch.equal(a.layers[1].weight, b.layers[1].weight)
    assert a.spec.activation == "leaky_relu" and a.spec.readout == "softmax" and a.spec.bias is False


# ----------------------------------------------------------------------------------- bad specs


def _one_line_naming(excinfo, key):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    assert key in msg, msg
    return msg


@pytest.mark.parametrize("d, key", [
    ({"sizes": [4]}, "sizes"),
    ({"sizes": [4, 0, 2]}, "sizes"),
    ({"sizes": [4, 2.5, 2]}, "sizes"),
    ({"sizes": [4, True, 2]}, "sizes"),
    ({"sizes": "4,64,2"}, "sizes"),
    ({"sizes": [4, 8, 2], "activation": "sigmoid"}, "activation"),
    ({"sizes": [4, 8, 2], "readout": "argmax"}, "readout"),
    ({"sizes": [4, 8, 2], "init": "orthogonal"}, "init"),
    ({"sizes": [4, 8, 2], "bias": "yes"}, "bias"),
    ({"sizes": [4, 8, 2], "hidden": 3}, "hidden"),
    ({"activation": "tanh"}, "sizes"),
])
def test_bad_spec_dict_raises_config_error(d, key):
    with pytest.raises(ConfigError) as ei:
        spec_from_dict(d)
    _one_line_naming(ei, key)


def test_bad_model_files(tmp_path):
    with pytest.raises(ConfigError) as ei:
        spec_from_toml(tmp_path / "nope.toml")
    _one_line_naming(ei, "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nsizes = [4, 8, 2\n")
    with pytest.raises(ConfigError) as ei:
        spec_from_toml(bad)
    _one_line_naming(ei, "bad.toml")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[network]\nsizes = [4, 8, 2]\nactivation = "swish"\n')
    with pytest.raises(ConfigError) as ei:
        build_network(wrong)
    msg = _one_line_naming(ei, "activation")
    assert "swish" in msg
    # a file without a [network] table is read at top level
    flat = tmp_path / "flat.toml"
    flat.write_text("sizes = [2, 3]\n")
    assert spec_from_toml(flat).sizes == [2, 3]


def test_network_constructor_validates_spec():
    with pytest.raises(ConfigError) as ei:
        RateNetwork(NetworkSpec([4, 8, 2], activation="gelu"))
    _one_line_naming(ei, "activation")
