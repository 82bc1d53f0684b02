"""Reward-modulated rules on rate networks in RL tasks: NRL, RMHL, weight perturbation, forward
gradient and REINFORCE (the backprop baseline), each a config class registered as a rule.

All five share one agent (the rule's noisy forward pass samples the actions and grows the
eligibility) and one learner (at reward times δ = RPE(reward) gates the eligibility into
``.grad``; plain SGD applies it: with per-seed masked updates a stateful optimizer would still move
the weights of seeds whose gradient is zero this step).
"""
from __future__ import annotations

from typing import Annotated, Callable, ClassVar, Literal

import torch
from pydantic import Field

from ..config.base import PosFloat, StrictBool, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..protocols import BuildContext, ModuleAgent, RuleLearner, RunParts, Transition

__all__ = ["NRLConfig", "RMHLConfig", "WPConfig", "FGConfig", "BPConfig", "RuleAgent", "RewardLearner",
           "build_rate_rl"]

Passes = Annotated[StrictInt, Field(ge=1, le=4096)]


class RuleAgent(ModuleAgent):
    """Agent of a rate rule: ``rule.act`` does the (clean and noisy) passes and samples actions."""

    def __init__(self, rule, device: torch.device):
        self.rule, self.net, self.device = rule, rule.net, device
        self.dtype = self.net.layers[0].weight.dtype

    def act(self, obs):
        a = self.rule.act(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        return a.cpu().numpy()


class RewardLearner(RuleLearner):
    """δ-gated update of a :class:`~neuroprobe.rules.base.RewardModulatedRule`.

    ``every_step``: reinforced by each step's reward (copies within budget); otherwise by the
    episode's return on the step it ends.
    """

    def __init__(self, rule, every_step: bool):
        self.rule, self.every_step = rule, every_step

    def learn(self, tr: Transition) -> bool:
        active = torch.as_tensor(tr.info["active"])
        if self.every_step:
            self.rule.reinforce(torch.as_tensor(tr.reward), active)
            return True
        done = tr.info["done"]
        if not done.any():
            return False
        self.rule.reinforce(torch.as_tensor(tr.info["return"]), active & torch.as_tensor(done))
        return True


def build_rate_rl(exp, ctx: BuildContext, make_rule: Callable) -> RunParts:
    """Parts of an RL run on a rate network: ``make_rule(net, rpe, generator)`` gives the rule."""
    from ..modulators.rpe import RewardPredictionError
    from ..network import RateNetwork
    from ..rate_monitors import rate_monitors
    from ..reporters import EpisodeReporter, episode_summary
    from ..tasks import make_vector_env
    from ..tasks.episodic import EpisodicVectorTask

    S, t, m = exp.seeds, exp.task, exp.modulator
    net = RateNetwork(exp.model_spec, batch=S, generator=ctx.generator).to(ctx.device)
    rpe = RewardPredictionError(batch=S, smoothing=m.smoothing, scale=m.scale, init=m.init)
    rule = make_rule(net, rpe, ctx.generator)
    opt = torch.optim.SGD(net.parameters(), lr=exp.rule.lr)
    envs = make_vector_env(t.name, S, seed=exp.seed, reward_delay=t.reward_delay if t.reward_delay > 0 else None)
    rows = exp.run.rolling
    return RunParts(
        agent=RuleAgent(rule, ctx.device), learner=RewardLearner(rule, t.reward == "every_step"),
        task=EpisodicVectorTask(envs, t.episodes), reporter=EpisodeReporter(exp.seed, S, t.episodes, rows),
        optimizer=opt, description=f"{exp.rule.name.upper()} · {t.name} · {S} seeds", unit="ep",
        hint="lower rule.lr or rule.noise_std", summary=lambda m: episode_summary(m, rows),
        callbacks=rate_monitors(exp, net))


class _RateRLRule(RuleConfig):
    families: ClassVar[tuple[str, ...]] = ("rl",)

    def make_rule(self, net, rpe, generator):  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return build_rate_rl(exp, ctx, self.make_rule)


@register_rule
class NRLConfig(_RateRLRule):
    """Noise-based reward-modulated learning: node perturbation gated by the RPE."""

    name: Literal["nrl"]
    noise_std: PosFloat = 1e-3
    """σ of the node noise ξ added to every pre-activation."""
    passes: Passes = 1
    """Noisy passes per step (variant "authors": noise-free approximating passes, plus one noisy pass)."""
    clean_pass: StrictBool = True
    """Also run a noise-free pass (its activity is ρ in the eligibility)."""
    noise_norm: Literal["global", "layer"] = "global"
    """ξ/‖ξ‖² normalised over the whole network or per layer."""
    variant: Literal["paper", "authors"] = "paper"
    """Noisy-passes-only mode (clean_pass = false). "paper": K noisy passes, each one's ρ measured
    against the mean of their log π̃(a) (section 3.3). "authors": the NRL authors' code, whose K
    approximating passes draw no noise (each equals the clean pass), plus one noisy pass:
    ρ = log π̃(a) − log((1/K) Σ_k π_k(a)), the action sampled from the last approximating pass; this
    equals the clean-pass rule with one noisy pass. "authors" needs clean_pass = false."""
    lr_scale: Literal["none", "n_out"] = "none"
    """"none": W_l += η δ e_l (the paper's Eq. 16). "n_out": each layer's gradient (weights and
    biases, output layer included) times its number of output units (the NRL authors' later code:
    64x and 2x on a 4-64-2 net)."""

    def check(self, exp) -> None:
        if self.variant == "authors" and self.clean_pass:
            raise ValueError("'rule.variant' = 'authors' is the noisy-passes-only mode: it needs rule.clean_pass = false")

    def make_rule(self, net, rpe, generator):
        from ..rules import NRL

        return NRL(net, noise_std=self.noise_std, passes=self.passes, clean_pass=self.clean_pass,
                   noise_norm=self.noise_norm, rpe=rpe, generator=generator, variant=self.variant,
                   lr_scale=self.lr_scale)


@register_rule
class RMHLConfig(_RateRLRule):
    """Reward-modulated Hebbian learning (exploratory noise, Hebbian eligibility)."""

    name: Literal["rmhl"]
    noise_std: PosFloat = 1e-1
    """σ of the exploratory node noise."""

    def make_rule(self, net, rpe, generator):
        from ..rules import RMHL

        return RMHL(net, noise_std=self.noise_std, rpe=rpe, generator=generator)


@register_rule
class WPConfig(_RateRLRule):
    """Weight perturbation."""

    name: Literal["wp"]
    noise_std: PosFloat = 1e-3
    """σ of the weight perturbation."""
    passes: Passes = 1
    """Perturbed passes per step."""

    def make_rule(self, net, rpe, generator):
        from ..rules import WeightPerturbation

        return WeightPerturbation(net, noise_std=self.noise_std, passes=self.passes, rpe=rpe, generator=generator)


@register_rule
class FGConfig(_RateRLRule):
    """Forward gradient: K random tangents per step, jvp of log π."""

    name: Literal["fg"]
    passes: Passes = 1
    """K random tangent directions per step."""

    def make_rule(self, net, rpe, generator):
        from ..rules import ForwardGradient

        return ForwardGradient(net, passes=self.passes, rpe=rpe, generator=generator)


@register_rule
class BPConfig(_RateRLRule):
    """REINFORCE with backprop (the BP baseline)."""

    name: Literal["bp"]

    def make_rule(self, net, rpe, generator):
        from ..rules import Reinforce

        return Reinforce(net, rpe=rpe, generator=generator)
