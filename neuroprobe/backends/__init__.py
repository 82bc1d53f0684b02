"""Engines a neuroprobe network runs on. Only modules in this package import a backend library
(norse, Brian2, Lava); everything above talks to them through these modules.

The registry :data:`BACKENDS` maps ``(run.backend, run.precision)`` to the module that compiles a
spiking experiment's network and plasticity (today: the distal-reward experiment, rule ``rstdp``)
into the parts the run loop drives (:class:`~neuroprobe.protocols.RunParts`: agent, learner, task,
reporter, callbacks). Every such module has ``compile_distal(exp, ctx) -> RunParts``:

=====================  ==========================================  ==========================================
(backend, precision)   module                                      what runs
=====================  ==========================================  ==========================================
("torch", "float")     ``neuroprobe.backends.torch_run``            the torch engine (float32), B trials batched
("torch", "fixed")     ``neuroprobe.backends.fixed.distal_run``     Loihi's integers in torch, B trials batched
("event", "float")     ``neuroprobe.backends.event.run``            event-driven compiled CPU engine (numba)
("event", "fixed")     ``neuroprobe.backends.event.run``            the same engine in Loihi's integers
("brian2", "float")    ``neuroprobe.backends.brian2_run``           Brian2, trials one after another
("lava", "fixed")      ``neuroprobe.backends.lava.run``             Lava fixed_pt (on-chip learning), per trial
("lava", "float")      ``neuroprobe.backends.lava.run``             Lava floating_pt, frozen weights, per trial
=====================  ==========================================  ==========================================

:func:`distal_network` makes the draws every engine shares (connectivity
and initial weights, each trial's rewarded synapse, the sampled synapses whose weights are
recorded), so every engine runs the same network from the same seed.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["BACKENDS", "backend_module", "compile_distal", "distal_network", "distal_recordings_meta", "run_dtype",
           "distal_monitor_sets", "N_SAMPLE"]

BACKENDS: dict[tuple[str, str], str] = {
    ("torch", "float"): "neuroprobe.backends.torch_run",
    ("torch", "fixed"): "neuroprobe.backends.fixed.distal_run",
    ("event", "float"): "neuroprobe.backends.event.run",
    ("event", "fixed"): "neuroprobe.backends.event.run",
    ("brian2", "float"): "neuroprobe.backends.brian2_run",
    ("lava", "fixed"): "neuroprobe.backends.lava.run",
    ("lava", "float"): "neuroprobe.backends.lava.run",
}

N_SAMPLE = 200  # synapses besides the rewarded one whose weights are recorded


def backend_module(backend: str, precision: str) -> ModuleType:
    """The module compiling runs for ``(backend, precision)`` (imported on first use)."""
    from ..errors import ConfigError

    try:
        name = BACKENDS[(backend, precision)]
    except KeyError:
        raise ConfigError(f"run.backend = {backend!r} with run.precision = {precision!r}: no such engine; "
                          f"have {sorted(BACKENDS)}") from None
    return importlib.import_module(name)


def compile_distal(exp, ctx):
    """The run parts of a distal-reward experiment on the engine its ``[run]`` names."""
    return backend_module(exp.run.backend, exp.run.precision).compile_distal(exp, ctx)


def distal_network(exp, generator, device="cpu", dtype=None, spec=None):
    """``(net, proj, rewarded, sample)``: the float network of a distal-reward experiment (shared
    weights), its rewarded projection (``task.projection``: the rule's, or one of its plastic
    projections), each trial's rewarded synapse (B,) and N_SAMPLE other synapses, drawn from
    ``generator`` in this order (every engine makes the same draws).
    ``spec``: the network spec to build (default the experiment's)."""
    import torch

    from ..spiking import SpikingNetwork

    run = exp.run
    net = SpikingNetwork(spec if spec is not None else exp.spiking_spec, generator, batch=None, device=device,
                         dtype=dtype or run_dtype(exp), propagation=run.propagation,
                         rng="hash" if run.hash_rng else "generator", noise_seed=int(exp.seed))
    proj = net.projection(exp.task.projection)
    rewarded = torch.randint(0, proj.n_synapses, (exp.seeds,), generator=generator)
    sample = torch.randperm(proj.n_synapses, generator=generator)[:N_SAMPLE]
    return net, proj, rewarded, sample


def run_dtype(exp):
    """The torch dtype of ``run.dtype`` (float32 or float64)."""
    import torch

    return torch.float64 if exp.run.dtype == "float64" else torch.float32


def distal_monitor_sets(exp, projection: str, rewarded, sample, steps: int):
    """``(detail, weights, record_from)``: the ``[monitor]`` set, recording from step ``record_from``
    (the run's last ``run.record_last`` seconds: an hour of rasters is unreadable and large), and the
    set recording the weights of trial 0's rewarded synapse and the sampled ones every report."""
    import torch

    from ..monitors import MonitorSet, StateMonitor, monitors_from_config

    dt, every = exp.spiking_spec.dt, exp.schedule.report_every
    watch = torch.cat([rewarded[:1], sample[sample != rewarded[0]]])
    detail = MonitorSet(monitors_from_config(exp.monitor.as_table()), dt)
    weights = MonitorSet([StateMonitor("weight", projection, indices=watch.tolist(), every=every)], dt)
    rl = exp.run.record_last
    record_from = 0 if rl <= 0 else steps - int(round(rl / dt))
    return detail, weights, record_from


def distal_recordings_meta(exp) -> dict:
    """The ``meta/`` entries of a distal-reward run's recordings.npz: the highlighted (rewarded)
    synapse of trial 0, the kernel's delay and the orders plotted, each LIF population's threshold."""
    import numpy as np

    r = exp.rule
    meta = {f"highlight/{exp.task.projection}": np.array([0]), "kernel/delay_s": np.array(r.delay),
            "kernel/orders": np.array(sorted({1, 2, 6, r.order}))}
    meta.update({f"v_th/{p.name}": np.array(p.lif.v_th) for p in exp.spiking_spec.populations if p.kind == "lif"})
    return meta
