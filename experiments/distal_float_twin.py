"""The float twin of an on-chip distal-reward deployment: what quantisation alone changes.

Runs the torch float engine (float64, norse's step, the float ``CascadeRSTDP`` with its peak-1
kernel and SGD) on the deployed network with *the chip's* membrane noise (the fixed point's hash
noise converted to current) and *the chip's* reward protocol (``FixedDistalReward``: the same
coincidence test and hashed delays; dopamine = its integer value × the float dopamine per unit).
Differences from the Lava run are then the quantisation of the network and the rule (and the
divergence it seeds), not different noise or reward timing.

    python experiments/distal_float_twin.py runs/distal_lava_order6_v2

Writes ``metrics_torch_float_twin.csv`` (the distal-reward metrics format) into the deploy
directory; ``experiments/distal_lava_report.py`` plots it beside Lava.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.experiments.config import load_config  # noqa: E402
from neuroprobe.experiments.deploy import _inputs_spec  # noqa: E402
from neuroprobe.neurons.inputs import poisson_spikes  # noqa: E402
from neuroprobe.rules.rstdp import CascadeRSTDP  # noqa: E402
from neuroprobe.spiking import SpikingNetwork, load_spiking_spec  # noqa: E402
from neuroprobe.spiking.fixed import FixedPointNetwork, noiseless_spec  # noqa: E402
from neuroprobe.tasks.distal_reward import FixedDistalReward  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deploy_dir")
    args = ap.parse_args()
    d = Path(args.deploy_dir)
    cfg = load_config(d / "config.toml")
    rep = json.loads((d / "deploy.json").read_text())
    r, t, dp = cfg["rule"], cfg["task"], rep["distal_params"]
    spec = _inputs_spec(load_spiking_spec(cfg["network"]["file"]))
    T = int(rep["steps"])
    gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    net = SpikingNetwork(spec, gen, dtype=torch.float64)  # the deployed network (same draws as deploy)
    orig = load_spiking_spec(cfg["network"]["file"])
    inputs = {p.name: poisson_spikes(torch.full((T, p.size), p.rate, dtype=torch.float64), spec.dt, gen)
              for p in orig.populations if p.kind == "poisson"}  # the deploy's pre-drawn input spikes
    fx = FixedPointNetwork.from_float(net, noise_seed=int(cfg.get("seed", 0)))
    quiet = noiseless_spec(spec)
    fnet = SpikingNetwork(quiet, torch.Generator().manual_seed(int(cfg.get("seed", 0))), dtype=torch.float64)
    for a, b in zip(fnet.projections, net.projections):
        assert torch.equal(a.pre, b.pre) and torch.equal(a.weight, b.weight)
    proj = fnet.projection(r["projection"])
    rule = CascadeRSTDP(proj, 1, order=r["order"], delay=r["delay"], dt=spec.dt, tau_plus=r["tau_plus"],
                        tau_minus=r["tau_minus"], a_plus=r["a_plus"], a_minus=r["a_minus"],
                        normalize=None if r["normalize"] == "none" else r["normalize"])
    unit = float(t["dopamine_amp"]) / dp["amp"]
    task = FixedDistalReward(torch.tensor([dp["pre"]]), torch.tensor([dp["post"]]), torch.tensor([dp["seed"]]),
                             dp["window"], dp["delay_min"], dp["delay_max"], dp["r_d"], dp["amp"])
    k = int(rep["rewarded_synapse"])
    every = max(1, int(round(float(t.get("report_every", 1.0)) / spec.dt)))
    rows = ["time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences"]
    st = fnet.init_state(1)
    lr = float(r["lr"])
    with torch.no_grad():
        for step in tqdm(range(T), desc="float twin", unit="step", mininterval=2.0):
            cur = {n: fx.noise_as_current(n, step + 1, 1) for n in fx.noise}
            cur.update({n: x[step:step + 1] for n, x in inputs.items()})
            z, st = fnet.step(st, cur)
            rule.step(z["exc"], z["exc"])
            dop = task.step(z["exc"], z["exc"])
            if bool((dop != 0).any()):
                rule.reinforce(dop.double() * unit)
                proj.weight.add_(proj.weight.grad, alpha=-lr)
                proj.clamp_()
            if (step + 1) % every == 0 or step + 1 == T:
                w = proj.weight.detach().abs().double().view(-1).numpy()
                o = np.delete(w, k)
                rows.append(f"{(step + 1) * spec.dt:.3f},{cfg.get('seed', 0)},{w[k]:.6g},{o.mean():.6g},"
                            f"{np.percentile(o, 99):.6g},{(o < w[k]).mean():.6g},{int(task.rewards[0])},"
                            f"{int(task.coincidences[0])}")
    (d / "metrics_torch_float_twin.csv").write_text("\n".join(rows) + "\n")
    print(rows[-1])
    print(f"wrote {d / 'metrics_torch_float_twin.csv'}")


if __name__ == "__main__":
    main()
