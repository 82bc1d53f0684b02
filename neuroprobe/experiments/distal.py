"""The distal-reward experiment loop (Izhikevich 2007) on the torch engine.

B trials (``seeds``) run as one batch on one network structure; each trial has its own weights
(per-trial weights of the plastic projection), its own rewarded synapse, noise and rewards. Per
step of dt: the network steps; the cascade R-STDP rule updates its traces from the plastic
projection's pre/post spikes; the protocol turns the rewarded synapse's coincidences into delayed
rewards and dopamine d (B,); where d ≠ 0 the rule writes ``weight.grad = −d·e`` and SGD steps;
weights are clamped to the projection's bounds.

Metrics, one row per trial every ``task.report_every`` seconds: ``time`` (s), ``seed``,
``w_rewarded``, ``w_mean`` and ``w_p99`` (mean and 99th percentile of the other synapses of the
projection), ``rank`` (fraction of other synapses below the rewarded one), ``rewards`` and
``coincidences`` (cumulative), ``rate_<population>`` (Hz, mean since the last row).
Monitors (``[monitor]``) record the last ``run.record_last`` seconds and are saved to ``recordings.npz``; the weights of the rewarded synapse and
of a fixed sample of 200 others are always recorded every report (``weight/<projection>``, with
``meta/highlight/<projection>`` marking the rewarded one of trial 0).
"""
from __future__ import annotations


import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import NonFiniteError
from ..rules.rstdp import CascadeRSTDP
from ..spiking import SpikingNetwork, load_spiking_spec
from ..tasks.distal_reward import DistalReward
from .rundir import RunDir

N_SAMPLE = 200  # other synapses whose weights are recorded


def build_distal(cfg: dict, generator: torch.Generator):
    """(spec, network, projection, rule, protocol, sampled synapse indices) for a distal-reward config."""
    spec = load_spiking_spec(cfg["network"]["file"])
    B, r, t = cfg["seeds"], cfg["rule"], cfg["task"]
    net = SpikingNetwork(spec, generator, batch=None, device=cfg["device"], propagation=cfg["run"]["propagation"])
    proj = net.projection(r["projection"])
    with torch.no_grad():  # per-trial weights only where plasticity acts
        proj.weight = torch.nn.Parameter(proj.weight.detach().expand(B, -1).clone())
    rule = CascadeRSTDP(proj, B, order=r["order"], delay=r["delay"], dt=spec.dt, tau_plus=r["tau_plus"],
                        tau_minus=r["tau_minus"], a_plus=r["a_plus"], a_minus=r["a_minus"],
                        normalize=None if r["normalize"] == "none" else r["normalize"])
    rewarded = torch.randint(0, proj.n_synapses, (B,), generator=generator)
    task = DistalReward(proj.pre[rewarded].cpu(), proj.post[rewarded].cpu(), spec.dt, window=t["window"],
                        delay_min=t["delay_min"], delay_max=t["delay_max"], dopamine_tau=t["dopamine_tau"],
                        dopamine_amp=t["dopamine_amp"], generator=generator)
    sample = torch.randperm(proj.n_synapses, generator=generator)[:N_SAMPLE]
    return spec, net, proj, rule, task, rewarded, sample


def columns(spec) -> list[str]:
    return (["time", "seed", "w_rewarded", "w_mean", "w_p99", "rank", "rewards", "coincidences"]
            + [f"rate_{p.name}" for p in spec.populations if p.kind == "lif"])


def run_distal(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    from ..monitors import MonitorSet, StateMonitor, monitors_from_config, save_recordings

    torch.set_num_threads(cfg["run"]["threads"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    spec, net, proj, rule, task, rewarded, sample = build_distal(cfg, gen)
    B, dt = cfg["seeds"], spec.dt
    opt = torch.optim.SGD([proj.weight], lr=cfg["rule"]["lr"])
    n_steps = int(round(cfg["task"]["duration"] / dt))
    every = max(1, int(round(cfg["task"]["report_every"] / dt)))
    k_ckpt = max(1, int(round(cfg["run"]["checkpoint_every"] / dt)))
    state = net.init_state(B)
    step, rows = 0, 0
    watch = torch.cat([rewarded[:1], sample[sample != rewarded[0]]])
    # [monitor] recordings cover the last run.record_last seconds (a whole hour of rasters is
    # unreadable and large); the weights of the watched synapses are recorded every report
    detail = MonitorSet(monitors_from_config(cfg["monitor"]), dt)
    weights = MonitorSet([StateMonitor("weight", proj.name, indices=watch.tolist(), every=every)], dt)
    record_from = 0 if cfg["run"]["record_last"] <= 0 else n_steps - int(round(cfg["run"]["record_last"] / dt))
    ckpt = run.load_checkpoint() if resume else None
    if ckpt is not None:
        net.load_state_dict(ckpt["net"])
        opt = torch.optim.SGD([proj.weight], lr=cfg["rule"]["lr"])
        rule.projection = proj
        rule.load_state_dict(ckpt["rule"])
        task.load_state_dict(ckpt["task"])
        gen.set_state(ckpt["gen"])
        state, step, rows = ckpt["state"], ckpt["step"], ckpt["rows"]
        detail, weights = ckpt["monitors"]
    metrics = run.open_metrics(columns(spec), keep_rows=rows)
    lif_pops = [p.name for p in spec.populations if p.kind == "lif"]
    spike_counts = {p: torch.zeros(B, dtype=torch.float64) for p in lif_pops}
    steps_in_row = 0
    pre_pop, post_pop = proj.spec.pre, proj.spec.post

    def lookup(var: str, pop: str) -> torch.Tensor:
        if var == "weight" and pop == proj.name:
            return proj.weight.detach()
        if var == "eligibility" and pop == proj.name:
            return rule.eligibility
        if var == "dopamine":
            return task.dopamine[:, None]
        return net.variable(state, pop, var)

    def checkpoint() -> None:
        run.save_checkpoint({"net": net.state_dict(), "rule": rule.state_dict(), "task": task.state_dict(),
                             "gen": gen.get_state(), "state": state, "step": step, "rows": metrics.rows,
                             "monitors": (detail, weights)})

    bar = tqdm(total=n_steps, initial=step, unit="step", disable=not cfg["run"]["progress"], dynamic_ncols=True,
               desc=f"R-STDP n={rule.order} · distal reward · {B} trials", unit_scale=True)
    try:
        while step < n_steps:
            with torch.no_grad():
                z, state = net.step(state, generator=gen)
                rule.step(z[pre_pop], z[post_pop])
                d = task.step(z[pre_pop], z[post_pop])
            if bool((d != 0).any()):
                rule.reinforce(d.to(proj.weight.dtype))
                opt.step()
                proj.clamp_()
            for p in lif_pops:
                spike_counts[p] += z[p].sum(1).double().cpu()
            steps_in_row += 1
            weights.record(step, lookup)
            if step >= record_from:
                detail.record(step, lookup)
            step += 1
            bar.update(1)
            if step % every == 0 or step == n_steps:
                w = proj.weight.detach().double().cpu()
                if not torch.isfinite(w).all():
                    raise NonFiniteError(f"weights became NaN/Inf at t = {step * dt:.3f} s; last checkpoint kept in "
                                         f"{run.path}")
                mag = w.abs()
                wr = mag[torch.arange(B), rewarded]
                mask = torch.ones_like(mag, dtype=torch.bool)
                mask[torch.arange(B), rewarded] = False
                others = mag[mask].view(B, -1)
                for b in range(B):
                    row = {"time": step * dt, "seed": cfg["seed"] + b, "w_rewarded": float(wr[b]),
                           "w_mean": float(others[b].mean()), "w_p99": float(others[b].quantile(0.99)),
                           "rank": float((others[b] < wr[b]).double().mean()), "rewards": int(task.rewards[b]),
                           "coincidences": int(task.coincidences[b])}
                    row.update({f"rate_{p}": float(spike_counts[p][b]) / (net.pops[p].size * steps_in_row * dt)
                                for p in lif_pops})
                    metrics.write(row)
                bar.set_postfix_str(f"w* {float(wr.mean()):.3f} vs p99 {float(others.quantile(0.99, dim=1).mean()):.3f}"
                                    f" · rewards {int(task.rewards.sum())}")
                spike_counts = {p: torch.zeros(B, dtype=torch.float64) for p in lif_pops}
                steps_in_row = 0
            if step % k_ckpt == 0 and step < n_steps:
                checkpoint()
        checkpoint()
    finally:
        bar.close()
        metrics.close()
    meta = {f"highlight/{proj.name}": np.array([0]), "kernel/delay_s": np.array(cfg["rule"]["delay"]),
            "kernel/orders": np.array(sorted({1, 2, 6, cfg["rule"]["order"]}))}
    meta.update({f"v_th/{p.name}": np.array(p.lif.v_th) for p in spec.populations if p.kind == "lif"})
    save_recordings(run.path / "recordings.npz", {**detail.recordings(meta), **weights.recordings()})
    return {"steps": step}
