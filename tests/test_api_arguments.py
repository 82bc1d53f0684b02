"""Public constructors check their arguments: a bad value raises neuroprobe's own error
(ConfigError/ShapeError, both NeuroprobeError) with one line naming the argument."""
from __future__ import annotations

import math

import pytest
import torch

import neuroprobe as npb
from neuroprobe.errors import NeuroprobeError
from neuroprobe.modulators import RewardPredictionError, layer_delays
from neuroprobe.network import NetworkSpec, RateNetwork, build_network
from neuroprobe.probes import ProbedLinear
from neuroprobe.rules import (NRL, RMHL, CascadeRSTDP, CETDelayed, ForwardGradient, ProbeRule, SpikingNRL,
                              WeightPerturbation)
from neuroprobe.spiking import SpikingNetwork, spec_from_dict
from neuroprobe.traces import CascadeTrace, LtpLtdTrace, PerfectTrace

NAN, INF = math.nan, math.inf


def _net(batch=None):
    return RateNetwork(NetworkSpec([3, 4, 2]), batch=batch, generator=torch.Generator().manual_seed(0))


_SPEC = spec_from_dict({"network": {"dt": 1e-3, "engine": "torch"},
                        "population": [{"name": "a", "size": 5, "kind": "input"},
                                       {"name": "b", "size": 4, "kind": "lif",
                                        "lif": {"noise": "membrane", "noise_std": 0.5}}],
                        "projection": [{"pre": "a", "post": "b", "p": 1.0}]})


def _proj(batch=None):
    return SpikingNetwork(_SPEC, torch.Generator().manual_seed(0), batch=batch).projection("a->b")


CASES = [
    # rate network, batch axis
    ("RateNetwork batch=0", lambda: _net(0), "batch"),
    ("RateNetwork batch=-1", lambda: _net(-1), "batch"),
    ("RateNetwork batch=1.5", lambda: _net(1.5), "batch"),
    ("RateNetwork batch=True", lambda: _net(True), "batch"),
    ("RateNetwork spec dict", lambda: RateNetwork({"sizes": [3, 2]}), "spec"),
    ("build_network batch=0", lambda: build_network({"sizes": [3, 2]}, batch=0), "batch"),
    ("build_network sizes 0", lambda: build_network({"sizes": [3, 0]}), "sizes"),
    ("build_network sizes 1.5", lambda: build_network({"sizes": [3, 1.5]}), "sizes"),
    ("build_network seed -1", lambda: build_network({"sizes": [3, 2]}, seed=-1), "seed"),
    # rate rules
    ("NRL noise_std=nan", lambda: NRL(_net(), noise_std=NAN), "noise_std"),
    ("NRL noise_std=inf", lambda: NRL(_net(), noise_std=INF), "noise_std"),
    ("NRL noise_std=-1", lambda: NRL(_net(), noise_std=-1.0), "noise_std"),
    ("NRL noise_std=0", lambda: NRL(_net(), noise_std=0.0), "noise_std"),
    ("NRL noise_std str", lambda: NRL(_net(), noise_std="1e-3"), "noise_std"),
    ("NRL passes=0", lambda: NRL(_net(), passes=0), "passes"),
    ("NRL passes=1.5", lambda: NRL(_net(), passes=1.5), "passes"),
    ("NRL passes=1 no clean", lambda: NRL(_net(), passes=1, clean_pass=False), "passes"),
    ("NRL clean_pass str", lambda: NRL(_net(), clean_pass="no"), "clean_pass"),
    ("NRL noise_norm", lambda: NRL(_net(), noise_norm="unit"), "noise_norm"),
    ("NRL net", lambda: NRL("net"), "net"),
    ("RMHL noise_std=nan", lambda: RMHL(_net(), noise_std=NAN), "noise_std"),
    ("RMHL noise_std=inf", lambda: RMHL(_net(), noise_std=INF), "noise_std"),
    ("RMHL noise_std=-1", lambda: RMHL(_net(), noise_std=-1.0), "noise_std"),
    ("WP noise_std=nan", lambda: WeightPerturbation(_net(), noise_std=NAN), "noise_std"),
    ("WP noise_std=-1", lambda: WeightPerturbation(_net(), noise_std=-1.0), "noise_std"),
    ("WP passes=2.0", lambda: WeightPerturbation(_net(), passes=2.0), "passes"),
    ("FG passes=0", lambda: ForwardGradient(_net(), passes=0), "passes"),
    ("rule rpe", lambda: NRL(_net(), rpe=0.5), "rpe"),
    # probe rule
    ("ProbeRule noise_std=nan", lambda: ProbeRule(_net(), noise_std=NAN), "noise_std"),
    ("ProbeRule noise_std=inf", lambda: ProbeRule(_net(), noise_std=INF), "noise_std"),
    ("ProbeRule noise_std=-1", lambda: ProbeRule(_net(), noise_std=-1.0), "noise_std"),
    ("ProbeRule branches=0", lambda: ProbeRule(_net(), branches=0), "branches"),
    ("ProbeRule scale=nan", lambda: ProbeRule(_net(), scale=NAN), "scale"),
    ("ProbeRule num_probes=0", lambda: ProbeRule(_net(), num_probes=0), "num_probes"),
    ("ProbeRule null_fraction=nan", lambda: ProbeRule(_net(), null_fraction=NAN), "null_fraction"),
    ("ProbeRule kernel_delay=nan", lambda: ProbeRule(_net(), kernel="cascade", kernel_delay=NAN), "kernel_delay"),
    ("ProbeRule batched net", lambda: ProbeRule(_net(2)), "batch"),
    # delayed-credit rule
    ("CETDelayed batch=0", lambda: CETDelayed(_net(), batch=0), "batch"),
    ("CETDelayed delay=nan", lambda: CETDelayed(_net(), batch=2, delay=NAN), "delay"),
    ("CETDelayed delay=-1", lambda: CETDelayed(_net(), batch=2, delay=-1), "delay"),
    ("CETDelayed order=0", lambda: CETDelayed(_net(), batch=2, delay=3, order=0), "order"),
    ("CETDelayed batched net", lambda: CETDelayed(_net(2), batch=2), "batch"),
    # traces
    ("CascadeTrace order=0", lambda: CascadeTrace(order=0, delay=5, shape=(2,)), "order"),
    ("CascadeTrace order=2.5", lambda: CascadeTrace(order=2.5, delay=5, shape=(2,)), "order"),
    ("CascadeTrace delay=nan", lambda: CascadeTrace(order=3, delay=NAN, shape=(2,)), "delay"),
    ("CascadeTrace delay=inf", lambda: CascadeTrace(order=3, delay=INF, shape=(2,)), "delay"),
    ("CascadeTrace delay=0", lambda: CascadeTrace(order=3, delay=0, shape=(2,)), "delay"),
    ("CascadeTrace shape=-1", lambda: CascadeTrace(order=3, delay=5, shape=(-1,)), "shape"),
    ("CascadeTrace beta=nan", lambda: CascadeTrace(order=1, delay=None, shape=(2,), beta=NAN), "beta"),
    ("CascadeTrace normalize", lambda: CascadeTrace(order=2, delay=5, shape=(2,), normalize="max"), "normalize"),
    ("PerfectTrace delay=nan", lambda: PerfectTrace(NAN, (2,)), "delay"),
    ("LtpLtdTrace ratio=nan", lambda: LtpLtdTrace(3, (2,), ratio=NAN), "ratio"),
    ("layer_delays delay=nan", lambda: layer_delays(2, NAN), "delay"),
    # modulator
    ("RPE smoothing=nan", lambda: RewardPredictionError(smoothing=NAN), "smoothing"),
    ("RPE smoothing=0", lambda: RewardPredictionError(smoothing=0.0), "smoothing"),
    ("RPE smoothing=2", lambda: RewardPredictionError(smoothing=2.0), "smoothing"),
    ("RPE batch=0", lambda: RewardPredictionError(batch=0), "batch"),
    ("RPE init=nan", lambda: RewardPredictionError(init=NAN), "init"),
    ("RPE eps=-1", lambda: RewardPredictionError(eps=-1.0), "eps"),
    # probes
    ("ProbedLinear num_probes=0", lambda: ProbedLinear(4, 4, num_probes=0), "num_probes"),
    ("ProbedLinear rank=0", lambda: ProbedLinear(4, 4, rank=0), "rank"),
    ("ProbedLinear scale=nan", lambda: ProbedLinear(4, 4, scale=NAN), "scale"),
    ("ProbedLinear in_features=0", lambda: ProbedLinear(0, 4), "in_features"),
    # spiking network and rules
    ("SpikingNetwork batch=0", lambda: SpikingNetwork(_SPEC, batch=0), "batch"),
    ("SpikingNetwork batch=-2", lambda: SpikingNetwork(_SPEC, batch=-2), "batch"),
    ("SpikingNetwork spec dict", lambda: SpikingNetwork({"population": []}), "spec"),
    ("init_state batch=0", lambda: SpikingNetwork(_SPEC).init_state(0), "batch"),
    ("CascadeRSTDP batch=0", lambda: CascadeRSTDP(_proj(), batch=0), "batch"),
    ("CascadeRSTDP order=0", lambda: CascadeRSTDP(_proj(), batch=1, order=0), "order"),
    ("CascadeRSTDP delay=nan", lambda: CascadeRSTDP(_proj(), batch=1, delay=NAN), "delay"),
    ("CascadeRSTDP delay=0", lambda: CascadeRSTDP(_proj(), batch=1, delay=0.0), "delay"),
    ("CascadeRSTDP delay<dt", lambda: CascadeRSTDP(_proj(), batch=1, delay=1e-4, dt=1e-3), "delay"),
    ("CascadeRSTDP dt=nan", lambda: CascadeRSTDP(_proj(), batch=1, dt=NAN), "dt"),
    ("CascadeRSTDP dt=-1", lambda: CascadeRSTDP(_proj(), batch=1, dt=-1.0), "dt"),
    ("CascadeRSTDP tau_plus=nan", lambda: CascadeRSTDP(_proj(), batch=1, tau_plus=NAN), "tau_plus"),
    ("CascadeRSTDP tau_minus=0", lambda: CascadeRSTDP(_proj(), batch=1, tau_minus=0.0), "tau_minus"),
    ("CascadeRSTDP a_plus=nan", lambda: CascadeRSTDP(_proj(), batch=1, a_plus=NAN), "a_plus"),
    ("CascadeRSTDP a_minus=-1", lambda: CascadeRSTDP(_proj(), batch=1, a_minus=-1.0), "a_minus"),
    ("CascadeRSTDP projection", lambda: CascadeRSTDP("a->b", batch=1), "projection"),
    ("CascadeRSTDP trials", lambda: CascadeRSTDP(_proj(batch=2), batch=3), "trials"),
    ("SpikingNRL sigma=nan", lambda: SpikingNRL([_proj(2)], {"a->b": NAN}, batch=2), "noise_std"),
    ("SpikingNRL sigma=inf", lambda: SpikingNRL([_proj(2)], {"a->b": INF}, batch=2), "noise_std"),
    ("SpikingNRL sigma=-1", lambda: SpikingNRL([_proj(2)], {"a->b": -1.0}, batch=2), "noise_std"),
    ("SpikingNRL sigma missing", lambda: SpikingNRL([_proj(2)], {}, batch=2), "noise_std"),
    ("SpikingNRL batch=0", lambda: SpikingNRL([_proj(2)], {"a->b": 0.5}, batch=0), "batch"),
]


@pytest.mark.parametrize("make, arg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_raises_neuroprobe_error_naming_it(make, arg):
    with pytest.raises(NeuroprobeError) as ei:
        make()
    assert isinstance(ei.value, (npb.ConfigError, npb.ShapeError))
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert arg in msg, msg


def test_good_arguments_still_build():
    net = _net(2)
    assert net.batch == 2 and _net().batch is None
    assert not hasattr(net, "n_models")
    NRL(net, noise_std=1e-3, passes=2)
    RMHL(net, noise_std=0.1)
    WeightPerturbation(net, noise_std=1e-3, passes=1)
    ProbeRule(_net(), kernel="cascade", kernel_delay=2.0, history=8)
    CETDelayed(_net(), batch=2, delay=3, order=2)
    RewardPredictionError(batch=3, smoothing=1, init=0)
    CascadeRSTDP(_proj(), batch=1, order=2, delay=0.5)
    SpikingNRL([_proj(2)], {"a->b": 0.5}, batch=2)
    with pytest.raises(TypeError):  # the old keyword is gone, no alias
        RateNetwork(NetworkSpec([3, 2]), n_models=2)
    with pytest.raises(TypeError):
        build_network({"sizes": [3, 2]}, n_models=2)
