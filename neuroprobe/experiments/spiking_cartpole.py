"""Spiking CartPole: a LIF policy learned by node perturbation (membrane noise + RPE).

B trials (``seeds``) run as one batch, each with its own weights and CartPole copy. Per
environment step the observation is rate-coded (``task.neurons_per_dim`` Gaussian tuning curves
per dimension, up to ``task.max_rate`` Hz) into Poisson spikes of the "obs" population for
``task.steps_per_action`` network steps; the action is the half of the "out" population that
spiked more (ties broken by the halves' mean membrane potential). The noise currents of the
hidden and output neurons are the perturbations: :class:`~neuroprobe.rules.spiking_nrl.SpikingNRL`
accumulates ξ·z_pre and at each episode's end the RPE of the return gates it.

Metrics: ``episode, seed, return, length`` per finished episode (as the rate RL loop).
"""
from __future__ import annotations

import pickle

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..modulators.rpe import RewardPredictionError
from ..neurons.inputs import poisson_spikes, rate_code
from ..rules.spiking_nrl import SpikingNRL
from ..spiking import SpikingNetwork, load_spiking_spec
from ..tasks import make_vector_env
from .rl import write_finished
from .rundir import RunDir

COLUMNS = ["episode", "seed", "return", "length"]
OBS_LOW = (-2.4, -3.0, -0.21, -3.5)  # CartPole's observation range used for the rate code
OBS_HIGH = (2.4, 3.0, 0.21, 3.5)


def build_spiking_cartpole(cfg: dict, generator: torch.Generator):
    spec = load_spiking_spec(cfg["network"]["file"])
    B, t = cfg["seeds"], cfg["task"]
    need = {"obs": ("input", 4 * t["neurons_per_dim"]), "out": ("lif", None)}
    for name, (kind, size) in need.items():
        p = next((q for q in spec.populations if q.name == name), None)
        if p is None or p.kind != kind or (size is not None and p.size != size):
            raise ConfigError(f"{cfg['network']['file']}: spiking_cartpole needs a population {name!r} of kind {kind!r}"
                              + (f" and size {size} (4 x task.neurons_per_dim)" if size else ""))
    out = spec.population("out")
    if out.size % 2:
        raise ConfigError(f"population 'out' has {out.size} neurons: needs an even number (two actions)")
    net = SpikingNetwork(spec, generator, batch=B, device=cfg["device"], propagation=cfg["run"]["propagation"])
    plastic = [p for p in net.projections if spec.population(p.spec.post).lif.noise == "membrane"]
    with torch.no_grad():  # free-signed Gaussian weights, one set per trial
        for p in plastic:
            p.weight.copy_(p.spec.weight_std * torch.randn(p.weight.shape, generator=generator, dtype=p.weight.dtype))
    sigma = {p.name: spec.population(p.spec.post).lif.noise_std for p in plastic}
    rule = SpikingNRL(plastic, sigma, B, RewardPredictionError(batch=B, scale="abs_reward"))
    return spec, net, rule


def run_spiking_cartpole(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    torch.set_num_threads(cfg["run"]["threads"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    spec, net, rule = build_spiking_cartpole(cfg, gen)
    B, E, t = cfg["seeds"], cfg["task"]["episodes"], cfg["task"]
    opt = torch.optim.SGD([p.weight for p in rule.projections], lr=cfg["rule"]["lr"])
    envs = make_vector_env("CartPole-v1", B, seed=cfg["seed"])
    obs, _ = envs.reset(seed=cfg["seed"])
    episodes, ret, length = np.zeros(B, dtype=np.int64), np.zeros(B), np.zeros(B, dtype=np.int64)
    state = net.init_state(B)
    rows = 0
    ckpt = run.load_checkpoint() if resume else None
    if ckpt is not None:
        net.load_state_dict(ckpt["net"])
        rule.load_state_dict(ckpt["rule"])
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])
        envs.envs = pickle.loads(ckpt["envs"])
        obs, episodes, ret, length, rows, state = (ckpt["obs"], ckpt["episodes"], ckpt["ret"], ckpt["length"],
                                                    ckpt["rows"], ckpt["state"])
    metrics = run.open_metrics(COLUMNS, keep_rows=rows)
    half = spec.population("out").size // 2
    dtype = net.dtype
    recent: list[float] = []
    k_ckpt, last_ckpt = int(cfg["run"]["checkpoint_every"]), rows

    def checkpoint() -> None:
        run.save_checkpoint({"net": net.state_dict(), "rule": rule.state_dict(), "opt": opt.state_dict(),
                             "gen": gen.get_state(), "envs": pickle.dumps(envs.envs), "obs": obs, "episodes": episodes,
                             "ret": ret, "length": length, "rows": metrics.rows, "state": state})

    bar = tqdm(total=B * E, initial=int(episodes.clip(max=E).sum()), unit="ep", disable=not cfg["run"]["progress"],
               desc=f"spiking NRL · CartPole-v1 · {B} trials", dynamic_ncols=True)
    try:
        while (episodes < E).any():
            active = torch.as_tensor(episodes < E)
            rates = rate_code(torch.as_tensor(obs, dtype=dtype), torch.tensor(OBS_LOW, dtype=dtype),
                              torch.tensor(OBS_HIGH, dtype=dtype), t["neurons_per_dim"], t["max_rate"])
            counts = torch.zeros(B, 2, dtype=dtype)
            with torch.no_grad():
                for _ in range(t["steps_per_action"]):
                    z_prev = state["z"]
                    z, state = net.step(state, {"obs": poisson_spikes(rates, spec.dt, gen)}, gen)
                    rule.accumulate(z_prev, state["noise"], active)
                    counts += z["out"].view(B, 2, half).sum(-1)
                v_out = state["lif"]["out"].v.view(B, 2, half).mean(-1)
            a = (counts + 1e-3 * v_out).argmax(-1)
            obs, r, term, trunc, _ = envs.step(a.numpy())
            done = term | trunc
            ret += r
            length += 1
            if not done.any():
                continue
            mask = active & torch.as_tensor(done)
            rule.reinforce(torch.as_tensor(ret), mask)
            opt.step()
            recent = write_finished(metrics, done, episodes, E, ret, length, cfg, recent, bar)
            ret[done], length[done] = 0.0, 0
            if metrics.rows // k_ckpt > last_ckpt // k_ckpt:
                checkpoint()
                last_ckpt = metrics.rows
            if recent:
                bar.set_postfix_str(f"last-{len(recent)} return {np.mean(recent):.1f}")
        checkpoint()
    finally:
        bar.close()
        metrics.close()
        envs.close()
    return {"episodes": int(episodes.sum())}
