"""Rule ``cet_ac``: the λ-trace replayed once per rollout against a pass over z every step.

The CET actor-critic keeps an RL eligibility trace z (B × n_out × n_in per actor layer). With
factorised cascade traces it can either update z and the rollout's sum every step (three passes over
z per step and layer) or keep the rollout's arrived credit and replay it at the rollout's end in two
matrix products (``replay_lambda_trace``, the default). Both run here side by side on the CartPole
actor of the CET paper (8-256-256-2, 4 environments, rollouts of 128 steps, order-5 cascade at
D = 160, alignment diagnostics on), on random observations, interleaved rounds, median per call of
one rollout; the table also gives the largest difference of the resulting weight gradients.

    python benchmarks/bench_cet_ac_replay.py [--quick] [--threads 1] [--out table.md]
"""
from __future__ import annotations

import argparse
import platform

import torch

from timing import add_timing_args, apply_timing_args, emit, measure  # benchmarks/timing.py (this script's folder is on sys.path)

from neuroprobe.network import NetworkSpec, RateNetwork
from neuroprobe.rules.cet_actor_critic import CETActorCritic


def make_rule(replay: bool, order: int, delay: int) -> CETActorCritic:
    """The paper's CartPole actor and critic (split inputs: 8 inputs), seed 0; ``replay=False``
    switches every layer to the per-step update."""
    g = torch.Generator().manual_seed(0)
    actor = RateNetwork(NetworkSpec([8, 256, 256, 2], activation="relu", readout="softmax", bias=False), generator=g)
    critic = RateNetwork(NetworkSpec([8, 256, 256, 1], activation="relu", readout="identity", bias=True), generator=g)
    rule = CETActorCritic(actor, critic, envs=4, rollout=128, delay=delay, order=order, split_inputs=False,
                          generator=torch.Generator().manual_seed(1))
    if not replay:
        rule._replay = [False] * len(rule._replay)
        rule._replay_true = [False] * len(rule._replay_true)
    return rule


def rollout_fn(rule: CETActorCritic, obs: torch.Tensor, rew: torch.Tensor, done: torch.Tensor):
    """One call = one rollout (T steps of all B environments) on a fixed random stream."""
    state = {"k": 0}

    def run() -> None:
        for _ in range(rule.T):
            k = state["k"] % (obs.shape[0] - 1)
            rule.act(obs[k])
            rule.observe(rew[k], done[k], obs[k + 1])
            state["k"] += 1
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--delay", type=int, default=160)
    add_timing_args(ap, repeats=(5, 2), inner=(2, 1), threads=1)
    args = ap.parse_args()
    apply_timing_args(args)
    gen = torch.Generator().manual_seed(2)
    obs = torch.randn(4097, 4, 8, generator=gen)
    rew, done = torch.ones(4097, 4), (torch.rand(4097, 4, generator=gen) < 0.02).float()
    rules = {name: make_rule(name == "replay", args.order, args.delay) for name in ("per-step", "replay")}
    t = measure({name: rollout_fn(r, obs, rew, done) for name, r in rules.items()}, args.repeats, args.inner)
    # both rules saw the same stream: their gradients differ by float rounding only
    diff = max(float((a.weight.grad - b.weight.grad).abs().max() / b.weight.grad.abs().max())
               for a, b in zip(rules["per-step"].actor.layers, rules["replay"].actor.layers))
    steps = rules["replay"].B * rules["replay"].T
    table = (f"CET actor-critic, 8-256-256-2, order {args.order}, D = {args.delay}, {torch.get_num_threads()} thread(s), "
             f"{platform.processor() or platform.machine()}\n\n"
             "| λ-trace update | ms per rollout (512 env steps), median | env steps/s | speed-up |\n|---|---|---|---|\n")
    for name in ("per-step", "replay"):
        table += (f"| {name} | {1e3 * t[name]:.0f} | {steps / t[name]:.0f} | "
                  f"{t['per-step'] / t[name]:.2f}× |\n")
    table += f"\nLargest gradient difference, relative to the gradient's largest entry: {diff:.1e}\n"
    emit(table, args.out)


if __name__ == "__main__":
    main()
