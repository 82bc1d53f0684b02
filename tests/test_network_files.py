"""Network files (rate ``models/mlp_*.toml`` and spiking ``models/snn_*.toml``) are validated by the
pydantic models of :mod:`neuroprobe.config.networks`: every bad value is one ConfigError line
naming the file and the key; the shipped files load to the same spec objects as before."""
from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path

import pytest

from neuroprobe.config import networks as files
from neuroprobe.errors import ConfigError
from neuroprobe.network import INITS, NetworkSpec, build_network, spec_from_dict, spec_from_toml
from neuroprobe.neurons.lif import ENGINES, NOISE_KINDS, LIFParameters
from neuroprobe.neurons.rate import ACTIVATIONS, READOUTS
from neuroprobe.spiking import PopulationSpec, ProjectionSpec, SpikingSpec, load_spiking_spec
from neuroprobe.spiking import spec_from_dict as spiking_from_dict
from neuroprobe.spiking.spec import POPULATION_KINDS, SIGNS

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = math.nan, math.inf


# ----------------------------------------------------------------------------- writing TOML by hand


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == INF else "-inf" if v == -INF else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(v)


def _table(lines: list[str], d: dict, header: str | None, array: bool = False) -> None:
    if header is not None:
        lines.append(f"[[{header}]]" if array else f"[{header}]")
    subs = []
    for k, v in d.items():
        if isinstance(v, dict):
            subs.append((k, v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            subs.append((k, v))
        else:
            lines.append(f"{k} = {_value(v)}")
    for k, v in subs:
        name = f"{header}.{k}" if header else k
        if isinstance(v, dict):
            _table(lines, v, name)
        else:
            for item in v:
                _table(lines, item, name, array=True)


def _toml(d: dict) -> str:
    lines: list[str] = []
    _table(lines, d, None)
    return "\n".join(lines) + "\n"


def _set(d: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(d)
    x = d
    for k in path[:-1]:
        x = x[k]
    x[path[-1]] = value
    return d


def _one_line(ei, *words) -> str:
    msg = str(ei.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


# ----------------------------------------------------------------------------- the name tables


def test_file_models_name_the_runtime_choices():
    assert set(files.ACTIVATION_NAMES) == set(ACTIVATIONS)
    assert tuple(files.READOUT_NAMES) == tuple(READOUTS)
    assert set(files.INIT_NAMES) == set(INITS)
    assert tuple(files.POPULATION_KINDS) == tuple(POPULATION_KINDS)
    assert set(files.SIGN_NAMES) == set(SIGNS)
    assert tuple(files.NOISE_KINDS) == tuple(NOISE_KINDS)
    assert tuple(files.ENGINE_NAMES) == tuple(ENGINES)


# ----------------------------------------------------------------------------- rate files

RATE = {"network": {"name": "t", "sizes": [4, 8, 2], "activation": "tanh", "readout": "softmax", "bias": False,
                    "init": "xavier_normal"}}


def test_rate_file_round_trip(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text(_toml(RATE))
    assert spec_from_toml(p) == NetworkSpec([4, 8, 2], activation="tanh", name="t")


@pytest.mark.parametrize("key, value, words", [
    ("sizes", [4, NAN, 2], ["sizes[1]", "nan"]),
    ("sizes", [4, INF, 2], ["sizes[1]", "inf"]),
    ("sizes", [4, 8.0, 2], ["sizes[1]", "integer"]),
    ("sizes", [4, 2_000_000, 2], ["sizes[1]", "1000000"]),
    ("sizes", [4, 10**15, 2], ["sizes[1]"]),
    ("sizes", [4, -8, 2], ["sizes[1]", ">= 1"]),
    ("sizes", [4, 0, 2], ["sizes[1]", ">= 1"]),
    ("sizes", [4], ["sizes", "at least 2"]),
    ("sizes", "4,8,2", ["sizes", "list"]),
    ("sizes", [4, True, 2], ["sizes[1]", "integer"]),
    ("bias", "no", ["bias", "'no'", "true or false"]),
    ("bias", 1, ["bias", "true or false"]),
    ("activation", "swish", ["activation", "swish", "leaky_relu"]),
    ("activation", 3, ["activation"]),
    ("readout", "argmax", ["readout", "softmax"]),
    ("init", "orthogonal", ["init", "xavier_normal"]),
    ("name", 7, ["name", "string"]),
    ("hidden", 3, ["unknown key", "hidden", "allowed", "sizes", "activation"]),
])
def test_bad_rate_files(tmp_path, key, value, words):
    p = tmp_path / "bad_rate.toml"
    p.write_text(_toml(_set(RATE, ("network", key), value)))
    with pytest.raises(ConfigError) as ei:
        spec_from_toml(p)
    msg = _one_line(ei, "bad_rate.toml", f"network.{key}", *words)
    assert msg.startswith(str(p))
    with pytest.raises(ConfigError) as ei:  # build_network goes the same way
        build_network(p)
    _one_line(ei, "bad_rate.toml", key)


def test_rate_file_unknown_top_level_key(tmp_path):
    p = tmp_path / "top.toml"
    p.write_text(_toml({"layers": 3, **RATE}))
    with pytest.raises(ConfigError) as ei:
        spec_from_toml(p)
    _one_line(ei, "top.toml", "unknown key 'layers'", "allowed: network")


def test_rate_file_missing_sizes(tmp_path):
    p = tmp_path / "nosizes.toml"
    p.write_text('[network]\nactivation = "tanh"\n')
    with pytest.raises(ConfigError) as ei:
        spec_from_toml(p)
    _one_line(ei, "nosizes.toml", "network.sizes", "missing")


def test_rate_spec_validate_for_python_callers():
    with pytest.raises(ConfigError) as ei:
        NetworkSpec([4, 8, 2], bias="yes").validate()
    _one_line(ei, "bias")
    with pytest.raises(ConfigError) as ei:
        spec_from_dict({"sizes": [4, 8, 2], "activation": float("nan")}, where="inline")
    _one_line(ei, "inline", "activation")


# ----------------------------------------------------------------------------- spiking files

SNN = {
    "network": {"dt": 1e-3, "engine": "torch"},
    "population": [
        {"name": "exc", "size": 20, "kind": "lif", "sign": "excitatory", "i_ext": 0.1,
         "lif": {"tau_mem": 20e-3, "tau_syn": 5e-3, "v_th": 1.0, "v_reset": 0.0, "t_ref": 2e-3,
                 "noise": "membrane", "noise_std": 0.5}},
        {"name": "poi", "size": 10, "kind": "poisson", "rate": 20.0, "sign": "excitatory"},
        {"name": "inp", "size": 5, "kind": "input"},
    ],
    "projection": [
        {"pre": "poi", "post": "exc", "p": 0.5, "weight": 0.2, "weight_std": 0.05, "fixed_indegree": False,
         "autapses": False, "w_min": 0.0, "w_max": 1.0},
        {"pre": "exc", "post": "exc", "p": 0.1, "weight": 0.1},
    ],
}


def test_spiking_file_round_trip(tmp_path):
    p = tmp_path / "n.toml"
    p.write_text(_toml(SNN))
    spec = load_spiking_spec(p)
    assert spec.dt == 1e-3 and spec.engine == "torch"
    exc = spec.population("exc")
    assert exc.lif == LIFParameters(tau_mem=20e-3, tau_syn=5e-3, t_ref=2e-3, noise="membrane", noise_std=0.5, dt=1e-3)
    assert spec.population("poi").lif is None and spec.population("poi").rate == 20.0
    assert spec.projections[1] == ProjectionSpec("exc", "exc", p=0.1, weight=0.1, w_max=math.inf)


P0, L0, R0 = ("population", 0), ("population", 0, "lif"), ("projection", 0)


@pytest.mark.parametrize("path, value, key, words", [
    # [network]
    (("network", "dt"), NAN, "network.dt", ["finite"]),
    (("network", "dt"), INF, "network.dt", ["finite"]),
    (("network", "dt"), -1e-3, "network.dt", ["> 0"]),
    (("network", "dt"), 0, "network.dt", ["> 0"]),
    (("network", "dt"), "1ms", "network.dt", ["number"]),
    (("network", "engine"), "brian2", "network.engine", ["norse", "torch"]),
    (("network", "threads"), 2, "network.threads", ["unknown key", "allowed", "dt", "engine"]),
    # [[population]]
    (P0 + ("size",), 2_000_000, "population[0].size", ["1000000"]),
    (P0 + ("size",), 2**70, "population[0].size", []),
    (P0 + ("size",), -1, "population[0].size", [">= 1"]),
    (P0 + ("size",), 0, "population[0].size", [">= 1"]),
    (P0 + ("size",), 8.5, "population[0].size", ["integer"]),
    (P0 + ("size",), "8", "population[0].size", ["integer"]),
    (P0 + ("size",), True, "population[0].size", ["integer"]),
    (P0 + ("kind",), "adex", "population[0].kind", ["lif", "poisson", "input", "izhikevich"]),
    (P0 + ("name",), "", "population[0].name", ["non-empty"]),
    (P0 + ("name",), "a/b", "population[0].name", ["'/'"]),
    (P0 + ("name",), 3, "population[0].name", ["string"]),
    (P0 + ("name",), "poi", "population[1].name", ["unique"]),
    (P0 + ("sign",), "positive", "population[0].sign", ["excitatory"]),
    (P0 + ("i_ext",), INF, "population[0].i_ext", ["finite"]),
    (P0 + ("i_ext",), NAN, "population[0].i_ext", ["finite"]),
    (("population", 1, "rate"), NAN, "population[1].rate", ["finite"]),
    (("population", 1, "rate"), -5.0, "population[1].rate", [">= 0"]),
    (("population", 1, "lif"), {"tau_mem": 0.02}, "population[1].kind", ["poisson", "lif"]),
    (P0 + ("neurons",), 3, "population[0].neurons", ["unknown key", "allowed", "size", "kind", "lif"]),
    # [population.lif]
    (L0 + ("tau_mem",), NAN, "population[0].lif.tau_mem", ["finite"]),
    (L0 + ("tau_mem",), INF, "population[0].lif.tau_mem", ["finite"]),
    (L0 + ("tau_mem",), -0.02, "population[0].lif.tau_mem", ["> 0"]),
    (L0 + ("tau_mem",), 0, "population[0].lif.tau_mem", ["> 0"]),
    (L0 + ("tau_mem",), 1e-4, "population[0].lif.tau_mem", ["dt"]),
    (L0 + ("tau_syn",), -1.0, "population[0].lif.tau_syn", [">= 0"]),
    (L0 + ("tau_syn",), 1e-4, "population[0].lif.tau_syn", ["dt"]),
    (L0 + ("t_ref",), -1e-3, "population[0].lif.t_ref", [">= 0"]),
    (L0 + ("v_th",), NAN, "population[0].lif.v_th", ["finite"]),
    (L0 + ("v_reset",), 2.0, "population[0].lif.v_reset", ["v_th"]),
    (L0 + ("noise",), "white", "population[0].lif.noise", ["membrane", "escape"]),
    (L0 + ("noise",), True, "population[0].lif.noise", []),
    (L0 + ("noise_std",), -0.1, "population[0].lif.noise_std", [">= 0"]),
    (L0 + ("noise_std",), NAN, "population[0].lif.noise_std", ["finite"]),
    (L0 + ("dt",), 1e-3, "population[0].lif.dt", ["unknown key", "[network]", "tau_mem"]),
    (L0 + ("tau",), 0.02, "population[0].lif.tau", ["unknown key", "allowed", "tau_mem", "tau_syn"]),
    # [[projection]]
    (R0 + ("autapses",), "no", "projection[0].autapses", ["'no'", "true or false"]),
    (R0 + ("autapses",), 0, "projection[0].autapses", ["true or false"]),
    (R0 + ("fixed_indegree",), "true", "projection[0].fixed_indegree", ["true or false"]),
    (R0 + ("p",), NAN, "projection[0].p", ["finite"]),
    (R0 + ("p",), 0, "projection[0].p", ["> 0"]),
    (R0 + ("p",), 1.5, "projection[0].p", ["<= 1"]),
    (R0 + ("p",), -0.1, "projection[0].p", ["> 0"]),
    (R0 + ("weight",), -0.1, "projection[0].weight", [">= 0"]),
    (R0 + ("weight",), INF, "projection[0].weight", ["finite"]),
    (R0 + ("weight_std",), NAN, "projection[0].weight_std", ["finite"]),
    (R0 + ("w_max",), INF, "projection[0].w_max", ["finite"]),
    (R0 + ("w_max",), NAN, "projection[0].w_max", ["finite"]),
    (R0 + ("w_max",), -1.0, "projection[0].w_max", [">= 0"]),
    (R0 + ("w_min",), 1.5, "projection[0].w_max", ["w_min"]),
    (R0 + ("post",), "ghost", "projection[0].post", ["no such population", "exc"]),
    (R0 + ("pre",), "ghost", "projection[0].pre", ["no such population"]),
    (R0 + ("post",), "inp", "projection[0].post", ["'input'", "lif"]),
    (R0 + ("pre",), 3, "projection[0].pre", ["string"]),
    (R0 + ("delay",), 1.0, "projection[0].delay", ["unknown key", "allowed", "autapses", "w_max"]),
    (("projection", 1, "pre"), "poi", "projection[1]", ["poi->exc"]),
    # the file
    (("synapses",), 3, "synapses", ["unknown key", "allowed", "network", "population", "projection"]),
    (("population",), [], "population", ["at least 1"]),
])
def test_bad_spiking_files(tmp_path, path, value, key, words):
    p = tmp_path / "bad_snn.toml"
    p.write_text(_toml(_set(SNN, path, value)))
    with pytest.raises(ConfigError) as ei:
        load_spiking_spec(p)
    msg = _one_line(ei, "bad_snn.toml", f"'{key}", *words)
    assert msg.startswith(str(p))


def test_spiking_file_missing_population(tmp_path):
    p = tmp_path / "empty.toml"
    p.write_text("[network]\ndt = 1e-3\n")
    with pytest.raises(ConfigError) as ei:
        load_spiking_spec(p)
    _one_line(ei, "empty.toml", "population", "missing")


def test_string_boolean_no_longer_turns_autapses_on():
    d = _set(SNN, R0 + ("autapses",), "no")
    with pytest.raises(ConfigError) as ei:
        spiking_from_dict(d, src="dict")
    _one_line(ei, "dict", "projection[0].autapses")
    assert spiking_from_dict(_set(SNN, R0 + ("autapses",), True)).projections[0].autapses is True


def test_python_dicts_keep_numbers_as_floats():
    d = _set(_set(SNN, ("population", 1, "rate"), 20), L0 + ("v_th",), 2)
    spec = spiking_from_dict(d)
    assert isinstance(spec.population("poi").rate, float) and spec.population("poi").rate == 20.0
    assert isinstance(spec.population("exc").lif.v_th, float)


# ----------------------------------------------------------------------------- LIFParameters.from_dict


@pytest.mark.parametrize("d, key, words", [
    ({"tau_mem": NAN}, "tau_mem", ["finite"]),
    ({"noise_std": INF}, "noise_std", ["finite"]),
    ({"dt": 0.1}, "dt", ["tau_mem", "unstable"]),
    ({"dt": 1e-3, "tau_syn": 1e-4}, "dt", ["tau_syn"]),
    ({"noise": "escape", "rho0": 0.0}, "rho0", ["escape"]),
    ({"t_ref": "2ms"}, "t_ref", ["number"]),
    ({"tau": 0.02}, "tau", ["unknown key", "allowed", "tau_mem", "dt"]),
])
def test_lif_parameters_from_dict(d, key, words):
    with pytest.raises(ConfigError) as ei:
        LIFParameters.from_dict(d, where="population 'x'")
    _one_line(ei, "population 'x'", key, *words)


# ----------------------------------------------------------------------------- the shipped files


def _expected(raw: dict) -> SpikingSpec:
    """The spec the hand-written loader built before the pydantic models (floats as floats)."""
    net = raw.get("network", {})
    dt = float(net.get("dt", 1e-3))
    pops = []
    for p in raw["population"]:
        p = dict(p)
        if p.get("kind", "lif") == "lif":
            p["lif"] = LIFParameters(**{k: (v if k == "noise" else float(v)) for k, v in p.get("lif", {}).items()},
                                     dt=dt)
        for k in ("rate", "i_ext"):
            if k in p:
                p[k] = float(p[k])
        pops.append(PopulationSpec(**p))
    projs = [ProjectionSpec(**{k: (float(v) if k in ("p", "weight", "weight_std", "w_min", "w_max") else v)
                               for k, v in r.items()}) for r in raw.get("projection", [])]
    return SpikingSpec(tuple(pops), tuple(projs), dt=dt, engine=net.get("engine"))


def _types(spec: SpikingSpec) -> list:
    out = [type(spec.dt)]
    for p in spec.populations:
        out += [type(p.size), type(p.rate), type(p.i_ext)]
        if p.lif is not None:
            out += [type(v) for v in p.lif.to_dict().values()]
    for r in spec.projections:
        out += [type(getattr(r, k)) for k in ("p", "weight", "weight_std", "w_min", "w_max", "autapses")]
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "models").glob("snn_*.toml")), ids=lambda p: p.name)
def test_shipped_spiking_files_load_identically(path):
    raw = tomllib.loads(path.read_text())
    spec, want = load_spiking_spec(path), _expected(raw)
    assert spec == want and spec.engine == want.engine
    assert _types(spec) == _types(want)


@pytest.mark.parametrize("path", sorted((ROOT / "models").glob("mlp_*.toml")), ids=lambda p: p.name)
def test_shipped_rate_files_load_identically(path):
    raw = tomllib.loads(path.read_text())["network"]
    spec = spec_from_toml(path)
    assert spec == NetworkSpec(**raw)
    assert all(type(s) is int for s in spec.sizes) and type(spec.bias) is bool
