"""Rule 'cet_ac': the CET paper's actor-critic RL experiment (CartPole; actor by delayed CET credit,
critic by backprop), :class:`~neuroprobe.rules.cet_actor_critic.CETActorCritic`.

``rule.envs`` copies of the task's environment run on the batch axis; every ``rule.rollout`` steps
the learner writes ``.grad`` (actor: its accumulated CET credit plus the exact entropy gradient;
critic: backprop on the λ-return) and Adam (eps 1e-5) steps, with the learning rate annealed
linearly to 0 over the run (``rule.anneal_lr``, the authors' CartPole setting). The run lasts
``rule.total_steps`` environment steps, all copies together (the paper's "total number of samples",
rounded down to whole rollouts), or until every copy has finished ``task.episodes`` episodes,
whichever comes first. One row per finished episode in ``metrics.csv`` (all copies, in the order
they end), as every RL run:

    episode      index of the episode (0, 1, … over all copies); seed: the run's seed
    return, length   the episode's return and length
    step         environment steps so far (all copies); update: updates so far
and, as the mean over the updates made since the previous row (NaN if none; updates after the last
episode end are not written):
    lr           the learning rate; value_loss: ½ mean (V − R)²; entropy: mean policy entropy
    align        cosine between the actor's CET update and the exact delayed policy gradient (all
                 layers), align_fc<l> per layer; NaN before any credit has arrived
    step_align_fc<l>  the CET authors' measure: per step, the cosine between the step's CET term
                 g_t−L ⊗ E_t and the exact g_t−L ⊗ u_t−L (all environments), averaged over the rollout
    grad_norm    the global gradient norm before clipping

``summary.json``: the mean return of the last 50 episodes (the paper's metric) and the mean of each
alignment column over the updates. ``run.checkpoint_every`` counts episodes per environment copy
(the task's unit, as in every RL run).
"""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from ..config.base import Finite, NonNegFloat, PosFloat, StrictBool, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..protocols import BuildContext, ModuleAgent, RuleLearner, RunParts, Transition
from ..tasks.episodic import EpisodicVectorTask

__all__ = ["CETActorCriticConfig", "ActorCriticAgent", "ActorCriticLearner", "StepBudgetTask", "ACEpisodeReporter",
           "ac_summary", "build_cet_ac", "LAST_EPISODES"]

LAST_EPISODES = 50  # the paper's metric: mean return of the last 50 episodes


class ActorCriticAgent(ModuleAgent):
    """Actor and critic (``self.net``: a ModuleDict); ``act`` samples the actions through the rule."""

    def __init__(self, rule, device: torch.device):
        self.rule, self.device = rule, device
        self.net = torch.nn.ModuleDict({"actor": rule.actor, "critic": rule.critic})

    def act(self, obs):
        return self.rule.act(torch.as_tensor(obs)).cpu().numpy()


class ActorCriticLearner(RuleLearner):
    """Feeds each step's reward and end flags to the rule; at the end of a rollout sets the
    (annealed) learning rate and returns True, so the loop steps the optimizer."""

    def __init__(self, rule, optimizer: torch.optim.Optimizer, lr: float, anneal: bool, updates: int):
        self.rule, self.optimizer, self.lr, self.anneal, self.updates = rule, optimizer, lr, anneal, updates

    def learn(self, tr: Transition) -> bool:
        done = np.logical_or(tr.terminated, tr.truncated)
        if not self.rule.observe(torch.as_tensor(np.asarray(tr.reward, dtype=np.float64)),
                                 torch.as_tensor(done), torch.as_tensor(tr.next_obs)):
            return False
        k = self.rule.updates  # this is update k = 1 .. N: the authors' lr · (1 − k/(N + 1))
        lr = self.lr * (1.0 - k / (self.updates + 1)) if self.anneal else self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.rule.last["lr"] = lr
        return True


class StepBudgetTask(EpisodicVectorTask):
    """:class:`EpisodicVectorTask` that also ends after ``steps`` vector steps (``steps`` × B
    environment steps)."""

    def __init__(self, envs, episodes: int, steps: int):
        super().__init__(envs, episodes)
        self.max_steps, self.t = int(steps), 0

    def step(self, action):
        self.t += 1
        return super().step(action)

    def finished(self) -> bool:
        return self.t >= self.max_steps or super().finished()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "t": self.t}

    def load_state_dict(self, s: dict) -> None:
        super().load_state_dict(s)
        self.t = int(s["t"])


class ACEpisodeReporter:
    """One row per finished episode (module docstring); the update columns hold the mean over the
    updates made since the previous row (NaN if none)."""

    key = ["episode"]

    def __init__(self, seed: int, rule, task: StepBudgetTask, layer_names: list[str]):
        self.seed, self.rule, self.task = seed, rule, task
        self.B = task.B
        self.layer_names = list(layer_names)
        self.stats = (["lr", "value_loss", "entropy", "align"] + [f"align_{n}" for n in self.layer_names]
                      + [f"step_align_{n}" for n in self.layer_names] + ["grad_norm"])
        self.columns = ["episode", "seed", "return", "length", "step", "update"] + self.stats
        self.total = task.max_steps * self.B
        self.episodes, self.steps = 0, 0
        self.recent: list[float] = []
        self._clear()

    def _clear(self) -> None:
        self.sums = {c: 0.0 for c in self.stats}
        self.counts = {c: 0 for c in self.stats}

    def _update_stats(self) -> dict[str, float]:
        st = self.rule.last
        align = st.get("alignment", {})
        out = {"lr": st.get("lr"), "value_loss": st.get("value_loss"), "entropy": st.get("entropy"),
               "align": align.get("all"), "grad_norm": st.get("grad_norm")}
        out.update({f"align_{n}": align.get(n) for n in self.layer_names})
        out.update({f"step_align_{n}": align.get(f"step_{n}") for n in self.layer_names})
        return out

    def rows(self, tr) -> list[dict]:
        info = tr.info
        self.steps += self.B
        if tr.updated:
            for c, v in self._update_stats().items():
                if v is not None and math.isfinite(v):
                    self.sums[c] += v
                    self.counts[c] += 1
        out = []
        for s in np.flatnonzero(info["finished"]):
            r = float(info["return"][s])
            row = {"episode": self.episodes, "seed": self.seed, "return": r, "length": int(info["length"][s]),
                   "step": self.steps, "update": self.rule.updates}
            row.update({c: self.sums[c] / self.counts[c] if self.counts[c] else math.nan for c in self.stats})
            self._clear()
            out.append(row)
            self.recent = (self.recent + [r])[-LAST_EPISODES:]
            self.episodes += 1
        return out

    def progress(self) -> tuple[int, int]:
        return self.steps, self.total

    def schedule_count(self) -> int:
        return self.episodes // self.B

    def where(self) -> str:
        return f"step {self.steps} (episode {self.episodes})"

    def postfix(self) -> str:
        return f"last-{len(self.recent)} return {np.mean(self.recent):.1f}" if self.recent else ""

    def state_dict(self) -> dict:
        return {"episodes": self.episodes, "steps": self.steps, "recent": list(self.recent),
                "sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, s: dict) -> None:
        self.episodes, self.steps = int(s["episodes"]), int(s["steps"])
        self.recent = [float(x) for x in s["recent"]]
        self.sums = {c: float(s["sums"][c]) for c in self.stats}
        self.counts = {c: int(s["counts"][c]) for c in self.stats}


def ac_summary(m: dict) -> dict:
    """summary.json: the mean return of the last 50 episodes (``per_seed``: one seed), the episodes
    and steps run, and each alignment column's mean over the run's updates (``mean_<column>``: the
    rows' values weighted by the number of updates each covers)."""
    ret = np.asarray(m.get("return", []), dtype=float)
    last = float(ret[-LAST_EPISODES:].mean()) if len(ret) else math.nan
    out = {"metric": f"mean return of the last {LAST_EPISODES} episodes", "per_seed": [last], "mean": last,
           "std": 0.0, "episodes": len(ret), "steps": int(m["step"][-1]) if len(ret) else 0,
           "updates": int(m["update"][-1]) if len(ret) else 0}
    if len(ret):
        upd = np.asarray(m["update"], dtype=float)
        k = np.diff(upd, prepend=0.0)  # updates each row covers
        for c in m:
            if c == "align" or c.startswith("align_") or c.startswith("step_align_"):
                v = np.asarray(m[c], dtype=float)
                ok = np.isfinite(v) & (k > 0)
                out[f"mean_{c}"] = float((v[ok] * k[ok]).sum() / k[ok].sum()) if ok.any() else math.nan
    return out


def _actor_critic_nets(exp, ctx: BuildContext):
    """Actor (model.sizes, the first size doubled with split_inputs; no biases) and critic (same
    hidden sizes, biases, one linear output), initialised as rule.init says."""
    from ..network import NetworkSpec, RateNetwork
    from ..rules.cet_actor_critic import orthogonal_init

    r, spec = exp.rule, exp.model_spec
    sizes = list(spec.sizes)
    if r.split_inputs:
        sizes[0] *= 2
    init = spec.init
    actor = RateNetwork(NetworkSpec(sizes, activation=spec.activation, readout="softmax", bias=False, init=init),
                        generator=ctx.generator)
    critic = RateNetwork(NetworkSpec(sizes[:-1] + [1], activation=spec.activation, readout="identity", bias=True,
                                     init=init), generator=ctx.generator)
    if r.init == "orthogonal":
        n = len(actor.layers)
        orthogonal_init(actor, [math.sqrt(2.0)] * n, ctx.generator)
        orthogonal_init(critic, [math.sqrt(2.0)] * (n - 1) + [1.0], ctx.generator)
    return actor.to(ctx.device), critic.to(ctx.device)


def build_cet_ac(exp, ctx: BuildContext) -> RunParts:
    from ..rate_monitors import rate_monitors
    from ..rules.cet_actor_critic import CETActorCritic
    from ..tasks import make_vector_env

    t, r = exp.task, exp.rule
    actor, critic = _actor_critic_nets(exp, ctx)
    rule = CETActorCritic(actor, critic, envs=r.envs, rollout=r.rollout, gamma=r.gamma, lam=r.gae_lambda,
                          ent_coef=r.ent_coef, vf_coef=r.vf_coef,
                          max_grad_norm=r.max_grad_norm if r.max_grad_norm > 0 else None,
                          delay=r.delay, delay_mode=r.delay_mode, trace=r.trace, order=r.order,
                          normalize=None if r.normalize == "none" else r.normalize, beta=r.beta or None,
                          trace_on=r.trace_on, credit_lag=r.credit_lag, output_credit=r.output_credit,
                          split_inputs=r.split_inputs, diagnostics=r.alignment, generator=ctx.generator)
    params = list(actor.parameters()) + list(critic.parameters())
    opt = torch.optim.Adam(params, lr=r.lr, eps=r.adam_eps)
    updates = r.total_steps // (r.envs * r.rollout)
    learner = ActorCriticLearner(rule, opt, r.lr, r.anneal_lr, updates)
    envs = make_vector_env(t.name, r.envs, seed=exp.seed, reward_delay=t.reward_delay if t.reward_delay > 0 else None)
    task = StepBudgetTask(envs, t.episodes, updates * r.rollout)
    reporter = ACEpisodeReporter(exp.seed, rule, task, actor.layer_names)
    trace = "backprop" if r.trace == "none" and r.delay == 0 else f"{r.trace} n={r.order} D={r.delay}"
    return RunParts(agent=ActorCriticAgent(rule, ctx.device), learner=learner, task=task, reporter=reporter,
                    optimizer=opt, description=f"CET actor-critic · {t.name} · {trace}", unit="step",
                    hint="lower rule.lr", summary=ac_summary, callbacks=rate_monitors(exp, actor))


@register_rule
class CETActorCriticConfig(RuleConfig):
    """Actor-critic (the CET paper's RL experiment): the actor learns through policy-gradient credit
    that reaches each layer D_l steps late and meets its cascading eligibility trace; the critic
    learns by backprop on the λ-return. ``lr`` is Adam's (actor and critic), annealed to 0."""

    families: ClassVar[tuple[str, ...]] = ("rl",)
    name: Literal["cet_ac"]
    total_steps: Annotated[StrictInt, Field(ge=1, le=10_000_000_000)] = 100_000
    """Environment steps of the run, all copies together (the paper's "total number of samples":
    5,000,000 on CartPole); rounded down to whole rollouts of envs x rollout steps."""
    envs: Annotated[StrictInt, Field(ge=1, le=4096)] = 4
    """Parallel environment copies (the batch axis)."""
    rollout: Annotated[StrictInt, Field(ge=1, le=100_000)] = 128
    """Steps per copy between updates ("number of steps to accumulate a policy gradient")."""
    gamma: Annotated[Finite, Field(ge=0, le=1)] = 0.99
    """Discount."""
    gae_lambda: Annotated[Finite, Field(ge=0, le=1)] = 0.95
    """λ of the λ-return (critic) and of the actor's RL eligibility traces."""
    ent_coef: NonNegFloat = 0.01
    """Entropy bonus (its gradient is exact, undelayed, as in the authors' code)."""
    vf_coef: NonNegFloat = 0.5
    """Weight of the value loss ½ mean (V − R)²."""
    max_grad_norm: NonNegFloat = 0.5
    """Clip of the global gradient norm, actor and critic together (0 = no clipping)."""
    adam_eps: PosFloat = 1e-5
    """Adam's epsilon."""
    anneal_lr: StrictBool = True
    """Anneal the learning rate linearly to 0 over the run (update k of N: lr (1 − k/(N+1)))."""
    split_inputs: StrictBool = True
    """Encode each observation x as [max(x, 0), max(−x, 0)] (the authors' positive inputs; doubles the
    first layer's inputs of actor and critic)."""
    init: Literal["orthogonal", "model"] = "orthogonal"
    """Initial weights: orthogonal with gain √2 (critic output 1), the authors' layer_init; or model.init."""
    alignment: StrictBool = True
    """Keep the exact delayed policy gradient (a perfect delay line) and log the cosine per update."""
    delay: Annotated[StrictInt, Field(ge=0, le=100_000)] = 0
    """D, the credit latency of the actor's layers (steps)."""
    delay_mode: Literal["constant", "retrograde"] = "constant"
    """Every actor layer gets D (constant), or the delays stack with depth: D, 2D, ... from the output."""
    output_credit: Literal["delayed", "immediate"] = "delayed"
    """"immediate": the output layer gets its credit at once (retrograde: 0, D, 2D, ... from the output)."""
    trace: Literal["cascade", "exponential", "perfect", "ltp_ltd", "none"] = "cascade"
    """Eligibility trace kind ("perfect": a delay line, the upper bound; "none" with D = 0 is backprop)."""
    order: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    """Order n of the cascade."""
    normalize: Literal["area", "peak", "none"] = "peak"
    """Normalisation of the cascade kernel (the paper's CartPole setting: peak)."""
    beta: Annotated[Finite, Field(ge=0, lt=1)] = 0.0
    """Order 1 only: decay per step of the classic trace (0 = exp(-1/D)); the paper tunes it in
    {0.5, 0.7, 0.9, 0.99}."""
    trace_on: Literal["presynaptic", "synapse", "synapse_preact"] = "presynaptic"
    """What the trace holds, as rule 'cet': x ("presynaptic"), f'(h)·x with the post-activation credit
    ("synapse"), f'(h)·x with the pre-activation credit ("synapse_preact", the CET authors' code)."""
    credit_lag: Literal["D", "D-1"] = "D"
    """Age of the credit that meets the kernel peaking at D_l: D_l ("D") or D_l − 1 ("D-1", the authors'
    RL code; needs rule.delay >= 1)."""

    def check(self, exp) -> None:
        from ..config.experiment import refuse_over_memory
        from ..rules.cet import cet_layer_delays, credit_lags, trace_shapes

        t, spec = exp.task, exp.model_spec
        if exp.seeds != 1:
            raise ValueError(f"'seeds' = {exp.seeds}: rule 'cet_ac' runs one seed per run (its batch axis is "
                             f"rule.envs); sweep seeds with neuroprobe sweep --seeds N")
        if t.reward != "every_step":
            raise ValueError(f"'task.reward' = {t.reward!r}: rule 'cet_ac' (an actor-critic) learns from every "
                             f"step's reward; set task.reward = \"every_step\"")
        if spec.bias:
            raise ValueError("'model.bias' = true: rule 'cet_ac' traces weights only; its actor has no biases (as "
                             "the CET authors'; the critic gets biases of its own): set model.bias = false")
        if spec.readout != "softmax":
            raise ValueError(f"'model.readout' = {spec.readout!r}: rule 'cet_ac' needs a softmax policy")
        if self.total_steps < self.envs * self.rollout:
            raise ValueError(f"'rule.total_steps' = {self.total_steps}: shorter than one rollout (rule.envs x "
                             f"rule.rollout = {self.envs * self.rollout} steps)")
        if self.beta and not (self.trace == "exponential" or (self.trace == "cascade" and self.order == 1)):
            raise ValueError(f"'rule.beta' = {self.beta}: only for an order-1 cascade or exponential trace "
                             f"(rule.order = {self.order}, rule.trace = {self.trace!r})")
        if self.output_credit == "immediate" and self.credit_lag == "D-1":
            raise ValueError("'rule.credit_lag' = 'D-1' needs every layer delayed; rule.output_credit = 'immediate' "
                             "gives the output layer no delay (use credit_lag = 'D')")
        sizes = list(spec.sizes)
        if self.split_inputs:
            sizes[0] *= 2
        delays = cet_layer_delays(len(sizes) - 1, self.delay, self.delay_mode, self.output_credit)
        try:
            lags = credit_lags(delays, self.credit_lag)
        except Exception as e:  # noqa: BLE001  (a ConfigError: one line naming the key)
            raise ValueError(str(e)) from None
        B = self.envs
        per = [math.prod(s[1:]) for s in trace_shapes(sizes, 1, self.trace_on)]
        true = [math.prod(s[1:]) for s in trace_shapes(sizes, 1, "synapse" if self.trace_on == "synapse"
                                                       else "presynaptic")]
        syn = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
        # traces (order states), exact delay lines (lag), credit lines (lag x n_out), RL traces z (x2)
        n = sum(B * (p * self.order + (q * lag if self.alignment else 0) + (o + 2) * lag + 2 * s)
                for p, q, lag, o, s in zip(per, true, lags, sizes[1:], syn))
        refuse_over_memory(4 * n, f"'rule.delay' = {self.delay} with rule.order = {self.order}, rule.envs = {B} and "
                                  f"rule.trace_on = {self.trace_on!r} would hold about {{}} GiB of traces")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return build_cet_ac(exp, ctx)
