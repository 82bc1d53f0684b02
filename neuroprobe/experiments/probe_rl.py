"""The RL loop of rule 'probe': one window = one episode, run by B counterfactual branches at once.

Common random numbers: the B environments of a window are all reset with the same seed
(:func:`~neuroprobe.rules.probe.window_seed` of (run seed, window index)), so they share the start
state; each step draws ONE uniform from the run's generator and every branch samples its action
from its own softmax policy by inverse CDF with that uniform (and shares the node noise, if any).
Branches therefore differ only through their probes: all-null branches follow identical
trajectories. A branch whose episode has ended idles (masked) until every branch is done.

The branch outcome is its episode return (the sum of the rewards received; ``task.reward`` does not
change it, and delayed rewards still pending at the end arrive on the last step). After the window
the rule writes ``.grad`` (advantages optionally divided by their std, ``[modulator] scale = "std"``) (:meth:`~neuroprobe.rules.probe.ProbeRule.update`), SGD steps, and the
probes are renewed.

Metrics: one row per window, ``episode,seed,return,length,forward_passes``, where return/length are
those of the unperturbed policy, i.e. of the all-null branches (they are identical); without null
branches (``null_fraction = 0``) the mean return of all branches and their rounded mean length.
``forward_passes`` is the window's cost in single-sample network forwards: B × the longest
branch's length (idle branches ride along in the batch), for budget comparisons between rules.
"""
from __future__ import annotations

import pickle

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, NonFiniteError
from ..network import RateNetwork
from ..rules.probe import ProbeRule, inverse_cdf_actions, rule_from_config, window_seed
from ..tasks import make_vector_env
from .build import build_optimizer, network_spec
from .rl import COLUMNS as RL_COLUMNS
from .rl import check_finite, stop_message

COLUMNS = RL_COLUMNS + ["forward_passes"]
from .rundir import RunDir, learner_state, restore_learner


def run_window(rule: ProbeRule, envs, assignment: torch.Tensor, env_seed: int, generator: torch.Generator,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in all B branches (common random numbers); returns (returns (B,), lengths (B,))."""
    B = rule.branches
    obs, _ = envs.reset(seed=[env_seed] * B)
    dtype = rule.net.layers[0].weight.dtype
    active = np.ones(B, dtype=bool)
    ret = np.zeros(B, dtype=np.float64)
    length = np.zeros(B, dtype=np.int64)
    while active.any():
        probs = rule.policy(torch.as_tensor(obs, dtype=dtype), assignment, generator)
        u = torch.rand((), generator=generator, dtype=torch.float64)
        a = inverse_cdf_actions(probs, u)
        obs, r, term, trunc, _ = envs.step(a.numpy())
        ret += np.where(active, r, 0.0)
        length += active
        active &= ~(term | trunc)
    return ret, length


def window_row(A: torch.Tensor, ret: np.ndarray, length: np.ndarray) -> tuple[float, int]:
    """(return, length) of the unperturbed policy: the null branches', else the branch mean."""
    null = (A == 0).all(dim=1).numpy()
    if null.any():
        i = int(np.flatnonzero(null)[0])
        return float(ret[i]), int(length[i])
    return float(ret.mean()), int(round(float(length.mean())))


def run_probe_rl(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    torch.set_num_threads(cfg["run"]["threads"])
    E, seed = cfg["task"]["episodes"], cfg["seed"]
    gen = torch.Generator().manual_seed(seed)
    net = RateNetwork(network_spec(cfg), generator=gen)
    rule = rule_from_config(cfg, net)
    opt = build_optimizer(cfg, net)
    B = rule.branches
    delay = cfg["task"]["reward_delay"]
    envs = make_vector_env(cfg["task"]["name"], B, seed=seed, reward_delay=delay if delay > 0 else None)
    if envs.single_observation_space.shape[-1] != net.layers[0].in_features or \
            envs.single_action_space.n != net.layer_sizes[-1]:
        raise ConfigError(f"model sizes {net.spec.sizes} do not fit task {cfg['task']['name']}")
    window, rows = 0, 0
    ckpt = run.load_checkpoint() if resume else None
    if ckpt is not None:
        restore_learner(ckpt, net, opt, rule, gen)
        envs.envs = pickle.loads(ckpt["envs"])  # every window starts with a seeded reset; kept for wrappers' state
        window, rows = ckpt["window"], ckpt["rows"]
    metrics = run.open_metrics(COLUMNS, keep_rows=rows)
    k_ckpt = cfg["run"]["checkpoint_every"]
    recent: list[float] = []
    bar = tqdm(total=E, initial=min(window, E), unit="ep", disable=not cfg["run"]["progress"],
               desc=f"PROBE · {cfg['task']['name']} · {B} branches", dynamic_ncols=True)

    def checkpoint() -> None:
        run.save_checkpoint({**learner_state(net, opt, rule, gen), "envs": pickle.dumps(envs.envs), "window": window,
                             "rows": metrics.rows})

    try:
        while window < E:
            A = rule.assignment()
            try:
                ret, length = run_window(rule, envs, A, window_seed(seed, window), gen)
            except NonFiniteError as e:
                raise NonFiniteError(stop_message(str(e), f"episode {window}", run)) from None
            rule.update(torch.as_tensor(ret), A)
            opt.step()
            check_finite(net, f"episode {window}", run)
            rule.end_window()
            r0, l0 = window_row(A, ret, length)
            metrics.write({"episode": window, "seed": seed, "return": r0, "length": l0,
                           "forward_passes": int(B * length.max())})
            recent = (recent + [r0])[-cfg["run"]["rolling"]:]
            window += 1
            bar.update(1)
            bar.set_postfix_str(f"last-{len(recent)} return {np.mean(recent):.1f}")
            if window % k_ckpt == 0:  # between windows: the state is whole
                checkpoint()
        checkpoint()
    finally:
        bar.close()
        metrics.close()
        envs.close()
    return {"episodes": window}
