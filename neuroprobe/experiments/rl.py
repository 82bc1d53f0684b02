"""The reinforcement-learning loop: M seeds as M independent models in one batch.

Each seed has its own network (weights (M, n_out, n_in)), environment copy and RPE baseline; all
advance in lock step through one batched forward per step. Episodes end at different times per
seed; a seed's update uses only its own finished episode (masked), so seeds never mix. A seed
that has done its ``episodes`` stops learning and logging (its environment idles until all finish).
"""
from __future__ import annotations

import pickle

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, NonFiniteError
from ..network import RateNetwork
from ..tasks import make_vector_env
from .build import build_optimizer, build_rl_rule, network_spec
from .rundir import RunDir, learner_state, restore_learner

COLUMNS = ["episode", "seed", "return", "length"]


def stop_message(what: str, where: str, run: RunDir) -> str:
    return (f"{what} at {where}; stopped; last good checkpoint kept at {run.checkpoint_path} "
            f"(lower rule.lr or rule.noise_std)")


def check_finite(net: RateNetwork, where: str, run: RunDir) -> None:
    for name, p in net.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(stop_message(f"weights became NaN/Inf ({name})", where, run))


def write_finished(metrics, done: np.ndarray, episodes: np.ndarray, E: int, ret: np.ndarray, length: np.ndarray,
                   cfg: dict, recent: list[float], bar) -> list[float]:
    """One metrics row per seed whose episode just ended (and is within the budget of E); advances
    ``episodes`` in place; returns the rolling window of recent returns."""
    for s in np.flatnonzero(done & (episodes < E)):
        metrics.write({"episode": int(episodes[s]), "seed": cfg["seed"] + int(s), "return": float(ret[s]),
                       "length": int(length[s])})
        recent = (recent + [float(ret[s])])[-cfg["run"]["rolling"]:]
        episodes[s] += 1
        bar.update(1)
    return recent


def run_rl(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    torch.set_num_threads(cfg["run"]["threads"])  # tiny tensors: extra threads only add sync overhead
    S, E = cfg["seeds"], cfg["task"]["episodes"]
    gen = torch.Generator().manual_seed(cfg["seed"])
    net = RateNetwork(network_spec(cfg), n_models=S, generator=gen)
    rule = build_rl_rule(cfg, net, gen)
    opt = build_optimizer(cfg, net)
    delay = cfg["task"]["reward_delay"]
    envs = make_vector_env(cfg["task"]["name"], S, seed=cfg["seed"], reward_delay=delay if delay > 0 else None)
    obs, _ = envs.reset(seed=cfg["seed"])
    n_obs = obs.shape[-1]
    if n_obs != net.layers[0].in_features or envs.single_action_space.n != net.layer_sizes[-1]:
        raise ConfigError(f"model sizes {net.spec.sizes} do not fit task {cfg['task']['name']} "
                              f"(observations {n_obs}, actions {envs.single_action_space.n})")
    episodes = np.zeros(S, dtype=np.int64)
    ret = np.zeros(S, dtype=np.float64)
    length = np.zeros(S, dtype=np.int64)
    rows = 0
    ckpt = run.load_checkpoint() if resume else None
    if ckpt is not None:
        restore_learner(ckpt, net, opt, rule, gen)
        envs.envs = pickle.loads(ckpt["envs"])  # sub-envs carry their state and RNG; autoreset has no pending state in 0.29
        obs, episodes, ret, length, rows = ckpt["obs"], ckpt["episodes"], ckpt["ret"], ckpt["length"], ckpt["rows"]
    metrics = run.open_metrics(COLUMNS, keep_rows=rows)
    every_step = cfg["task"]["reward"] == "every_step"
    k_ckpt = cfg["run"]["checkpoint_every"]
    recent: list[float] = []
    last_ckpt = rows
    bar = tqdm(total=S * E, initial=int(episodes.clip(max=E).sum()), unit="ep", disable=not cfg["run"]["progress"],
               desc=f"{cfg['rule']['name'].upper()} · {cfg['task']['name']} · {S} seeds", dynamic_ncols=True)

    def checkpoint() -> None:
        run.save_checkpoint({**learner_state(net, opt, rule, gen), "envs": pickle.dumps(envs.envs), "obs": obs, "episodes": episodes,
                             "ret": ret, "length": length, "rows": metrics.rows})

    try:
        while (episodes < E).any():
            active = torch.as_tensor(episodes < E)
            try:
                a = rule.act(torch.as_tensor(obs, dtype=torch.float32))
            except NonFiniteError as e:
                raise NonFiniteError(stop_message(str(e), f"episode {int(episodes.max())}", run)) from None
            obs, r, term, trunc, _ = envs.step(a.numpy())
            done = term | trunc
            ret += r
            length += 1
            if every_step:
                rule.reinforce(torch.as_tensor(r), active)
                opt.step()
            elif done.any():
                rule.reinforce(torch.as_tensor(ret), active & torch.as_tensor(done))
                opt.step()
            else:
                continue
            check_finite(net, f"episode {int(episodes.max())}", run)
            recent = write_finished(metrics, done, episodes, E, ret, length, cfg, recent, bar)
            ret[done] = 0.0
            length[done] = 0
            if metrics.rows // k_ckpt > last_ckpt // k_ckpt:  # only between steps: the state is whole
                checkpoint()
                last_ckpt = metrics.rows
            if done.any() and recent:
                bar.set_postfix_str(f"last-{len(recent)} return {np.mean(recent):.1f}")
        checkpoint()
    finally:
        bar.close()
        metrics.close()
    return {"episodes": int(episodes.sum())}
