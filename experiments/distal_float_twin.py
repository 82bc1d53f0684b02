"""The float twin of an on-chip distal-reward deployment: what quantisation alone changes.

Runs the torch float engine (float64, norse's step, the float ``CascadeRSTDP`` with its peak-1
kernel and SGD) on the deployed network with *the chip's* membrane noise (the fixed point's hash
noise converted to current) and *the chip's* reward protocol (``FixedDistalReward``: the same
coincidence test and hashed delays; dopamine = its integer value × the float dopamine per unit).
Differences from the Lava run are then the quantisation of the network and the rule (and the
divergence it seeds), not different noise or reward timing.

    python experiments/distal_float_twin.py runs/distal_lava_order6_v2

Runs through neuroprobe's run loop (``neuroprobe.learners.given_inputs``) in the run directory
``<deploy_dir>/torch-float-twin`` (checkpointed; an interrupted twin resumes where it stopped) and
writes ``metrics_torch_float_twin.csv`` (the distal-reward metrics format) into the deploy
directory; ``experiments/distal_lava_report.py`` plots it beside Lava.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neuroprobe.config import load_experiment  # noqa: E402
from neuroprobe.deploy import _checkpoint_every, deployed_network, distal_protocol  # noqa: E402
from neuroprobe.learners.given_inputs import float_distal_parts, run_side  # noqa: E402
from neuroprobe.rules.rstdp import CascadeRSTDP  # noqa: E402
from neuroprobe.spiking import SpikingNetwork  # noqa: E402
from neuroprobe.backends.fixed.network import FixedPointNetwork, noiseless_spec  # noqa: E402

OUT_NAME = "metrics_torch_float_twin.csv"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deploy_dir")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    d = Path(args.deploy_dir)
    exp = load_experiment(d / "config.toml")
    rep = json.loads((d / "deploy.json").read_text())
    r, t, dp = exp.rule, exp.task, rep["distal_params"]
    T, seed = int(rep["steps"]), int(exp.seed)
    net, inputs, _ = deployed_network(exp, T)  # the deployed network and its input spikes (same draws as deploy)
    fx = FixedPointNetwork.from_float(net, noise_seed=seed)
    dt = net.spec.dt
    fnet = SpikingNetwork(noiseless_spec(net.spec), torch.Generator().manual_seed(seed), dtype=torch.float64)
    for a, b in zip(fnet.projections, net.projections):
        assert torch.equal(a.pre, b.pre) and torch.equal(a.weight, b.weight)
    proj = fnet.projection(r.projection)
    rule = CascadeRSTDP(proj, 1, order=r.order, delay=r.delay, dt=dt, tau_plus=r.tau_plus, tau_minus=r.tau_minus,
                        a_plus=r.a_plus, a_minus=r.a_minus, normalize=None if r.normalize == "none" else r.normalize)
    every = max(1, int(round(float(t.report_every) / dt)))
    parts = float_distal_parts(
        fnet, proj, rule, distal_protocol(dp), inputs, T, every, seed, int(rep["rewarded_synapse"]), lr=float(r.lr),
        unit=float(t.dopamine_amp) / dp["amp"], currents=lambda s: {n: fx.noise_as_current(n, s, 1) for n in fx.noise})
    # the run directory resumes only the same job: this config, these steps and this reward protocol
    job = hashlib.sha256((d / "config.toml").read_bytes() + json.dumps(
        {"steps": T, "distal_params": dp, "rewarded": rep["rewarded_synapse"]}, sort_keys=True).encode()).hexdigest()
    side = d / "torch-float-twin"
    run_side(parts, side, {**exp.to_toml_dict(), "deploy": {"side": "torch-float-twin", "steps": T}}, job, seed,
             _checkpoint_every(exp, T), progress=not args.no_progress)
    data = (side / "metrics.csv").read_bytes()
    (d / OUT_NAME).write_bytes(data)
    print(data.decode().splitlines()[-1])
    print(f"wrote {d / OUT_NAME}")


if __name__ == "__main__":
    main()
