"""The distal-reward run in the torch fixed-point engine (``run.backend = "torch"``,
``run.precision = "fixed"``), and the setup it shares with Lava.

:func:`fixed_distal_setup` compiles a distal-reward experiment into Loihi's integers, with the
parameter mapping of ``neuroprobe deploy``: the float network of every engine
(:func:`neuroprobe.backends.distal_network`, float64, Poisson populations as pre-drawn input
populations) quantised by :meth:`FixedPointNetwork.from_float` (membrane noise: the counter-based
hash noise, seed ``seed + trial``), the integer cascade R-STDP (:func:`fixed_rstdp_params`, the
float dopamine ``task.dopamine_amp`` ↔ :data:`AMP_INT` integer units per reward) and the integer
reward protocol (:class:`FixedDistalReward`, :func:`distal_params`). Draws from the run's
generator: those of ``distal_network`` (network, rewarded synapses, sampled synapses), then the
Poisson inputs ((T, B, N), B trials).

:func:`compile_distal` runs it through the loop, B trials as one batch (one loop step = one
network step): agent :class:`NetworkAgent` (the integer network), task :class:`GivenInputs` (inputs
and the integer protocol; the reward is the integer dopamine), learner
:class:`FixedRSTDPLearner` (weights change in place), reporter
:class:`~neuroprobe.reporters_spiking.DistalReporter` (weights in float units:
``|w_acc| / 2**frac_bits · scale_w``), ``[monitor]`` recordings ("spikes" and "v", in float
voltage units) and the watched weights every report. Lava's fixed_pt run of the same setup
(:mod:`neuroprobe.backends.lava.run`) gives byte-identical metrics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ConfigError
from ...protocols import BuildContext, RunParts
from .distal_reward import FixedDistalReward
from .network import FixedPointNetwork, FixedProjection
from .parts import FixedRSTDPLearner, GivenInputs, NetworkAgent
from .rstdp import FixedCascadeRSTDP, FixedRSTDPParams, fixed_rstdp_params

__all__ = ["AMP_INT", "FixedDistalSetup", "fixed_distal_setup", "inputs_spec", "distal_params", "compile_distal",
           "MAX_INPUT_CELLS"]

AMP_INT = 2 ** 14  # integer dopamine per reward (see distal_params)
MAX_INPUT_CELLS = 2 ** 31  # pre-drawn Poisson inputs (steps x trials x neurons, one byte each)


def inputs_spec(spec):
    """The spec with Poisson populations turned into input populations (spikes pre-drawn)."""
    from ...spiking.spec import PopulationSpec, SpikingSpec

    pops = tuple(PopulationSpec(p.name, p.size, "input", sign=p.sign) if p.kind == "poisson" else p
                 for p in spec.populations)
    return SpikingSpec(pops, spec.projections, spec.dt, spec.engine, spec.extra)


def distal_params(exp, dt: float, pre: int, post: int, seed: int) -> dict:
    """The on-chip reward protocol's integer parameters (``FixedDistalReward``/``DistalRewardSource``)
    for one trial: its rewarded synapse ``pre -> post`` and its hash ``seed``.

    The float task's dopamine d (amp per reward, decaying with tau_d) ↔ integer AMP_INT per reward.
    A large amp keeps the truncating decay exponential: with amp = 64 and r_d = 20 (tau_d = 0.2 s),
    trunc(d·4076/4096) = d − 1 for every d ≤ 204, a linear fall to 0 in 64 ms that delivered ~6×
    less dopamine than the float task."""
    t = exp.task
    return {"pre": int(pre), "post": int(post), "seed": int(seed),
            "window": max(1, round(float(t.window) / dt)), "delay_min": max(1, round(float(t.delay_min) / dt)),
            "delay_max": max(1, round(float(t.delay_max) / dt)),
            "r_d": max(1, round(4096 * (1 - np.exp(-dt / float(t.dopamine_tau))))), "amp": AMP_INT}


@dataclass
class FixedDistalSetup:
    """A distal-reward experiment compiled to integers (see the module docstring).

    net: the float network (float64, inputs spec); fx: its fixed-point twin; proj: fx's plastic
    projection; prm: the integer rule's parameters; rewarded (B,), sample: synapse indices;
    inputs: per input population (T, B, N) uint8 spikes; dparams: per trial the protocol's integer
    parameters; steps, every: run length and report interval (steps)."""

    net: object
    fx: FixedPointNetwork
    proj: FixedProjection
    prm: FixedRSTDPParams
    rewarded: torch.Tensor
    sample: torch.Tensor
    inputs: dict
    dparams: list
    steps: int
    every: int

    def protocol(self) -> FixedDistalReward:
        """The integer reward protocol of the B trials (a fresh one)."""
        d = self.dparams
        return FixedDistalReward(torch.tensor([p["pre"] for p in d]), torch.tensor([p["post"] for p in d]),
                                 torch.tensor([p["seed"] for p in d]), d[0]["window"], d[0]["delay_min"],
                                 d[0]["delay_max"], d[0]["r_d"], d[0]["amp"])

    def float_weights(self, w_acc: torch.Tensor) -> torch.Tensor:
        """|weights| in float units from integer accumulators (any shape)."""
        return w_acc.double().abs() / 2 ** self.prm.frac_bits * self.proj.scale_w


def fixed_distal_setup(exp, generator: torch.Generator) -> FixedDistalSetup:
    from ...neurons.inputs import poisson_spikes
    from .. import distal_network

    spec, r, t, B = exp.spiking_spec, exp.rule, exp.task, exp.seeds
    dt, T, every = spec.dt, exp.schedule.total, exp.schedule.report_every
    net, fproj, rewarded, sample = distal_network(exp, generator, "cpu", torch.float64, spec=inputs_spec(spec))
    inputs = {}
    for p in spec.populations:
        if p.kind == "poisson":
            if T * B * p.size > MAX_INPUT_CELLS:
                raise ConfigError(f"population {p.name!r}: the fixed-point engine pre-draws Poisson inputs, "
                                  f"{T} steps x {B} trials x {p.size} neurons is too many (at most "
                                  f"{MAX_INPUT_CELLS}); shorten task.duration or use fewer seeds")
            x = poisson_spikes(torch.full((T, B * p.size), p.rate, dtype=torch.float64), dt, generator)
            inputs[p.name] = x.to(torch.uint8).view(T, B, p.size)
    fx = FixedPointNetwork.from_float(net, noise_seed=int(exp.seed))
    proj = fx.projection(r.projection)
    prm = fixed_rstdp_params(proj, dt, int(r.order), float(r.delay), float(r.tau_plus), float(r.tau_minus),
                             float(r.a_plus), float(r.a_minus), float(r.lr), fproj.spec.w_min, fproj.spec.w_max,
                             fproj.sign, float(t.dopamine_amp) / AMP_INT)
    dparams = [distal_params(exp, dt, proj.pre[k], proj.post[k], int(exp.seed) + b)
               for b, k in enumerate(rewarded.tolist())]
    return FixedDistalSetup(net, fx, proj, prm, rewarded, sample, inputs, dparams, T, every)


def compile_distal(exp, ctx: BuildContext) -> RunParts:
    """The distal-reward run in the torch fixed-point engine (the registry's ``("torch", "fixed")``)."""
    from ...callbacks import MonitorsCallback
    from ...reporters_spiking import DistalReporter, distal_summary
    from .. import distal_monitor_sets, distal_recordings_meta

    su = fixed_distal_setup(exp, ctx.generator)
    spec, B, T, every = exp.spiking_spec, exp.seeds, su.steps, su.every
    fx, proj = su.fx, su.proj
    rule = FixedCascadeRSTDP(proj, B, su.prm)
    protocol = su.protocol()
    agent = NetworkAgent(fx, batch=B)
    task = GivenInputs(su.inputs, T, torch.bool, protocol=protocol, pops=(proj.pre_pop, proj.post_pop), batch=B)

    def weights() -> torch.Tensor:
        return su.float_weights(rule.w_acc)

    reporter = DistalReporter(spec, None, protocol, su.rewarded, exp.seed, T, every, weights=weights)
    rewarded, sample = su.rewarded, su.sample
    detail, wmon, record_from = distal_monitor_sets(exp, proj.name, rewarded, sample, T)

    def lookup(var: str, pop: str) -> torch.Tensor:
        if var == "weight" and pop == proj.name:
            return weights()
        if var == "dopamine":
            return protocol.dopamine[:, None].double()
        if var == "spikes":
            return agent.state["z"][pop]
        if var == "v" and pop in fx.lif:
            return fx.voltage(agent.state, pop)
        raise ConfigError(f"[monitor] {var!r} of {pop!r}: the fixed-point engine records 'spikes' (any population), "
                          f"'v' (LIF populations) and the plastic projection's 'weight'")

    for m in detail:  # what the fixed point cannot record is one line before the run starts
        lookup(m.variable, m.population)
    monitors = MonitorsCallback([(detail, record_from), (wmon, 0)], lookup, clock=lambda: task.t - 1,
                                meta={**distal_recordings_meta(exp), "backend": np.array("torch"),
                                      "precision": np.array("fixed")})
    return RunParts(agent=agent, learner=FixedRSTDPLearner(rule, proj.pre_pop, proj.post_pop), task=task,
                    reporter=reporter, optimizer=None,
                    description=f"R-STDP n={su.prm.order} · distal reward · fixed point · {B} trials", unit="step",
                    callbacks=[monitors], hint="lower rule.lr", summary=distal_summary)
