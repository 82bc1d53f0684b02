"""The distal-reward experiment on Brian2 (``neuroprobe run CONFIG --backend brian2``).

The same network (connectivity and initial weights from the torch builder, so the rewarded
synapse and the sampled synapses are the same), the same cascade R-STDP, and the same reward
protocol (:class:`~neuroprobe.tasks.distal_reward.DistalReward`) driven in closed loop from Brian2's
spikes by a network operation (:func:`neuroprobe.backends.brian2.to_brian2` with a dopamine
callable). Trials run one after another (Brian2 simulates one network); membrane noise comes from
Brian2's own random numbers, so runs agree with the torch engine in distribution, not spike for
spike (the exact cross-check with given inputs is in tests/test_brian2_backend.py).

Writes the same ``metrics.csv`` columns and ``recordings.npz`` layout as the torch loop (the
``[monitor]`` spikes and states of trial 0 over the last ``run.record_last`` seconds, and the
watched weights every report).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..tasks.distal_reward import DistalReward
from .distal import build_distal, columns
from .rundir import RunDir


def run_distal_brian2(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    from ..backends.brian2 import to_brian2
    from ..monitors import save_recordings

    if resume:
        raise ConfigError("--backend brian2 runs cannot be resumed (Brian2 keeps no checkpoint); start a new run")
    gen = torch.Generator().manual_seed(cfg["seed"])
    spec, net, proj, rule, task, rewarded, sample = build_distal(cfg, gen)
    B, dt, t = cfg["seeds"], spec.dt, cfg["task"]
    r = cfg["rule"]
    n_steps = int(round(t["duration"] / dt))
    every = max(1, int(round(t["report_every"] / dt)))
    metrics = run.open_metrics(columns(spec), keep_rows=0)
    lif_pops = [p.name for p in spec.populations if p.kind == "lif"]
    plasticity = {"projection": proj.name, "order": r["order"], "delay": r["delay"],
                  "normalize": None if r["normalize"] == "none" else r["normalize"], "tau_plus": r["tau_plus"],
                  "tau_minus": r["tau_minus"], "a_plus": r["a_plus"], "a_minus": r["a_minus"], "lr": r["lr"]}
    watch = torch.cat([rewarded[:1], sample[sample != rewarded[0]]]).tolist()
    record_last = cfg["run"]["record_last"]
    keep = n_steps if record_last <= 0 else min(n_steps, int(round(record_last / dt)))
    recordings = {}
    bar = tqdm(total=B * n_steps, unit="step", disable=not cfg["run"]["progress"], dynamic_ncols=True, unit_scale=True,
               desc=f"R-STDP n={r['order']} · distal reward · Brian2 · {B} trials")
    try:
        for b in range(B):
            protocol = DistalReward(proj.pre[rewarded[b:b + 1]].cpu(), proj.post[rewarded[b:b + 1]].cpu(), dt,
                                    window=t["window"], delay_min=t["delay_min"], delay_max=t["delay_max"],
                                    dopamine_tau=t["dopamine_tau"], dopamine_amp=t["dopamine_amp"],
                                    generator=torch.Generator().manual_seed(cfg["seed"] + 1000 + b))
            pre_pop, post_pop = proj.spec.pre, proj.spec.post
            n_pre, n_post = net.pops[pre_pop].size, net.pops[post_pop].size
            counts = {p: 0 for p in lif_pops}
            s_idx = int(rewarded[b])
            model_box = {}

            def dopamine(step, spikes, protocol=protocol, counts=counts, s_idx=s_idx, b=b):
                zp = np.zeros((1, n_pre), dtype=np.float32)
                zq = np.zeros((1, n_post), dtype=np.float32)
                zp[0, spikes[pre_pop]] = 1
                zq[0, spikes[post_pop]] = 1
                d = float(protocol.step(torch.from_numpy(zp), torch.from_numpy(zq))[0])
                for p in lif_pops:
                    counts[p] += len(spikes[p])
                if step % every == every - 1 or step == n_steps - 1:  # the report of the step just finished
                    report(step + 1, b, s_idx, protocol, counts)
                if step % 1000 == 999:
                    bar.update(1000)
                return d

            def report(step, b, s_idx, protocol, counts):
                w = np.abs(np.asarray(model_box["model"].synapses[proj.name].w[:], dtype=np.float64))
                others = np.delete(w, s_idx)
                steps_in_row = (step - 1) % every + 1
                row = {"time": step * dt, "seed": cfg["seed"] + b, "w_rewarded": float(w[s_idx]),
                       "w_mean": float(others.mean()), "w_p99": float(np.quantile(others, 0.99)),
                       "rank": float((others < w[s_idx]).mean()), "rewards": int(protocol.rewards[0]),
                       "coincidences": int(protocol.coincidences[0])}
                row.update({f"rate_{p}": counts[p] / (net.pops[p].size * steps_in_row * dt) for p in lif_pops})
                for p in lif_pops:
                    counts[p] = 0
                metrics.write(row)

            monitors = [{"variable": "weight", "population": proj.name, "indices": watch, "every": every}]
            if b == 0:
                monitors += [{k: st[k] for k in ("variable", "population", "indices", "every") if k in st}
                             for st in cfg["monitor"].get("state", [])]
            weights = {proj.name: proj.weight[b].detach().cpu().numpy().astype(np.float64)}
            model = to_brian2(net, weights=weights, plasticity=plasticity, dopamine=dopamine, monitors=monitors,
                              seed=cfg["seed"] + b, steps=n_steps)
            model_box["model"] = model
            model.run(n_steps)
            bar.update(n_steps - (n_steps // 1000) * 1000)
            if b == 0:
                rec = model.recordings()
                for k, v in rec.items():
                    if k.startswith(("spikes/", "time/spikes/")) or (k.startswith(("v/", "i/", "time/v/", "time/i/"))):
                        if k.split("/")[-1] in cfg["monitor"].get("spikes", []) or not k.startswith(("spikes", "time/spikes")):
                            v = v[-keep:] if v.ndim >= 1 and v.shape[0] >= keep else v
                            recordings[k] = v
                    elif not k.startswith(("eligibility/", "time/eligibility/")):
                        recordings[k] = v
    finally:
        bar.close()
        metrics.close()
    recordings[f"meta/highlight/{proj.name}"] = np.array([0])
    recordings["meta/backend"] = np.array("brian2")
    save_recordings(run.path / "recordings.npz", recordings)
    return {"steps": n_steps}
