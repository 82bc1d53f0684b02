"""Lava jobs from neuroprobe networks: what the runner (lava_side/runner.py) builds and runs.

``fixed_job`` deploys a :class:`~neuroprobe.backends.fixed.network.FixedPointNetwork` to Lava's fixed_pt
ProcessModels (LIF, Dense, RingBuffer inputs, HashNoise, CascadeRSTDPConn for plastic
projections); ``float_job`` deploys a float :class:`~neuroprobe.spiking.SpikingNetwork` to the
floating_pt models with the same mapping in real numbers (u = k·i', weights scaled by
k = dt/tau_mem of the post population, bias = k·v_leak; see ``spiking/fixed.py``).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ...errors import ConfigError
from ..fixed.network import FixedPointNetwork
from ...spiking.network import SpikingNetwork

__all__ = ["fixed_job", "float_job"]


def _inputs(spec, inputs: Mapping[str, np.ndarray], steps: int, arrays: dict) -> dict[str, dict]:
    """Per input population its job entry; inputs[name]: (T, N) spikes."""
    out = {}
    for p in spec.populations:
        if p.kind == "input":
            if p.name not in inputs:
                raise ConfigError(f"population {p.name!r} is an 'input' population: give its spikes (T, N)")
            x = np.asarray(inputs[p.name])
            if x.shape != (steps, p.size):
                raise ConfigError(f"inputs[{p.name!r}] has shape {x.shape}, expected {(steps, p.size)}")
            arrays[f"in/{p.name}"] = x.T.astype(np.int32)  # RingBuffer wants (N, T)
            out[p.name] = {"name": p.name, "size": p.size, "kind": "input", "data": f"in/{p.name}"}
        elif p.kind == "poisson":
            raise ConfigError(f"population {p.name!r}: Poisson populations are not deployed; make it kind 'input' "
                              "and give its spikes")
        elif p.kind == "izhikevich":
            raise ConfigError(f"population {p.name!r}: Izhikevich populations are not deployed to Lava (Loihi's "
                              "neurons are CUBA LIF)")
    return out


def fixed_job(net: FixedPointNetwork, steps: int, inputs: Mapping[str, np.ndarray] | None = None,
              record: Mapping[str, list[str]] | None = None, plastic: Mapping[str, dict] | None = None,
              dopamine: np.ndarray | None = None, distal: dict | None = None,
              report_every: int | None = None) -> tuple[dict, dict]:
    """(job, arrays) for the fixed_pt run of ``net``. plastic: {projection: {"params": ints,
    "w_acc": (S,) int64}} (see backends/fixed/rstdp.py); the third factor is either ``dopamine``
    ((T,) ints, given) or ``distal`` ({"pre_pop", "post_pop", "params"}: the distal-reward protocol
    computed on chip, see backends/fixed/distal_reward.FixedDistalReward); ``report_every``: snapshot the
    plastic weights (and rewards) every k steps."""
    arrays: dict[str, np.ndarray] = {}
    ins = _inputs(net.spec, inputs or {}, steps, arrays)
    pops = []
    for p in net.spec.populations:
        if p.kind == "lif":
            q = net.lif[p.name]
            noise = None
            if p.name in net.noise:
                noise = [*net.noise[p.name], net._offset[p.name]]
            pops.append({"name": p.name, "size": p.size, "kind": "lif", "du": q.du, "dv": q.dv, "vth": q.vth,
                         "bias_mant": q.bias_mant, "bias_exp": q.bias_exp, "noise": noise})
        else:
            pops.append(ins[p.name])
    projs = []
    plastic = plastic or {}
    for fp in net.fixed_projections:
        if fp.w_mant.dim() != 1 and fp.w_mant.shape[0] != 1:
            raise ConfigError(f"projection {fp.name}: per-trial weights cannot be deployed (Lava runs one trial)")
        entry = {"name": fp.name, "pre": fp.pre_pop, "post": fp.post_pop, "n_pre": fp.n_pre, "n_post": fp.n_post,
                 "weight_exp": fp.weight_exp, "plastic": None}
        if fp.name in plastic:
            pl = plastic[fp.name]
            arrays[f"pre/{fp.name}"] = fp.pre.numpy().astype(np.int64)
            arrays[f"post/{fp.name}"] = fp.post.numpy().astype(np.int64)
            arrays[f"wacc/{fp.name}"] = np.asarray(pl["w_acc"], dtype=np.int64)
            entry["plastic"] = {"pre_idx": f"pre/{fp.name}", "post_idx": f"post/{fp.name}",
                                "w_acc": f"wacc/{fp.name}", "params": {k: int(v) for k, v in pl["params"].items()}}
        else:
            arrays[f"w/{fp.name}"] = fp.dense().reshape(fp.n_post, fp.n_pre).numpy().astype(np.int32)
            entry["weights"] = f"w/{fp.name}"
        projs.append(entry)
    unknown = set(plastic) - {fp.name for fp in net.fixed_projections}
    if unknown:
        raise ConfigError(f"plastic projections {sorted(unknown)} not in the network")
    job = {"precision": "fixed", "steps": int(steps), "noise_seed": int(net.noise_seed), "populations": pops,
           "projections": projs, "record": dict(record or {}), "dopamine": None}
    job["report_every"] = int(report_every) if report_every else None
    if distal is not None:
        job["distal"] = {"pre_pop": distal["pre_pop"], "post_pop": distal["post_pop"],
                         "params": {k: int(v) for k, v in distal["params"].items()}}
    elif plastic:
        if dopamine is None or len(dopamine) != steps:
            raise ConfigError(f"plastic projections need a dopamine array of {steps} steps (or a distal protocol)")
        arrays["dopamine"] = np.asarray(dopamine, dtype=np.int64)
        job["dopamine"] = "dopamine"
    return job, arrays


def float_job(net: SpikingNetwork, steps: int, inputs: Mapping[str, np.ndarray] | None = None,
              record: Mapping[str, list[str]] | None = None) -> tuple[dict, dict]:
    """(job, arrays) for the floating_pt run of ``net`` (shared weights, no noise, no refractory
    period, v_reset = 0; ConfigError naming what cannot be mapped)."""
    arrays: dict[str, np.ndarray] = {}
    spec = net.spec
    ins = _inputs(spec, inputs or {}, steps, arrays)
    pops, k = [], {}
    for p in spec.populations:
        if p.kind != "lif":
            pops.append(ins[p.name])
            continue
        lp = p.lif
        where = f"population {p.name!r}"
        if lp.t_ref > 0 or lp.v_reset != 0 or lp.noise != "none" and lp.noise_std > 0 or lp.noise == "escape":
            raise ConfigError(f"{where}: float deployment needs t_ref = 0, v_reset = 0 and no noise "
                              f"(got t_ref {lp.t_ref}, v_reset {lp.v_reset}, noise {lp.noise!r})")
        if lp.tau_syn > 0 and p.i_ext:
            raise ConfigError(f"{where}: i_ext with tau_syn > 0 is not expressible as a Loihi bias")
        k[p.name] = spec.dt / lp.tau_mem
        du = spec.dt / lp.tau_syn if lp.tau_syn > 0 else 1.0
        bias = k[p.name] * (lp.v_leak + (p.i_ext if lp.tau_syn == 0 else 0.0))
        pops.append({"name": p.name, "size": p.size, "kind": "lif", "du": du, "dv": k[p.name], "vth": lp.v_th,
                     "bias": bias, "v0": lp.v_leak, "noise": None})
    projs = []
    for pr in net.projections:
        if pr.weight.dim() != 1:
            raise ConfigError(f"projection {pr.name}: per-trial weights cannot be deployed (Lava runs one trial)")
        arrays[f"w/{pr.name}"] = (pr.dense().double() * k[pr.spec.post]).numpy()
        projs.append({"name": pr.name, "pre": pr.spec.pre, "post": pr.spec.post, "weights": f"w/{pr.name}",
                      "weight_exp": 0, "plastic": None})
    job = {"precision": "float", "steps": int(steps), "populations": pops, "projections": projs,
           "record": dict(record or {}), "dopamine": None}
    return job, arrays

