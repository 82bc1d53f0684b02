"""Rule 'probe' (directional credit over B counterfactual branches per window), as run components.

RL (:func:`build_probe_rl`): one window = one episode run by B branches at once
(:class:`~neuroprobe.tasks.probe_windows.CommonSeedWindows`, common-seed resets). The agent draws the
window's assignment A (B, M) at its first step; each step it draws ONE uniform from the run's
generator and every branch samples its action from its own softmax policy by inverse CDF with that
uniform (and shares the node noise, if any), so branches differ only through their probes. At the
window's end the learner credits the branches' returns (``rule.update``: advantages, optionally
divided by their std, ``[modulator] scale``), SGD steps, and ``rule.end_window`` renews the probes.
Rows: ``episode,seed,return,length,forward_passes``
(:class:`~neuroprobe.reporters.WindowReporter`).

Supervised (:func:`build_probe_supervised`): one window = one stream step; S = ``task.batch``
streams show x_t (S, n_in), all B branches see them in one batch and keep their log-probabilities
(B, S, C). The labels arrive ``task.label_delay`` = D steps later; a FIFO (learner state) holds the
windows whose labels are on their way, each with its A and a snapshot of the probes that produced
it (``end_window`` renews the probes every step). When window t − D's labels arrive, each branch's
outcome is R_b = −(1/S) Σ_s CE(p_b,s, y_s) and the rule's update runs on that window with that
window's probes; the optimizer steps. During the first D steps nothing is credited and the
optimizer does not step; the probes are still renewed every step. Rows every ``task.eval_every``
steps: ``step,accuracy,train_loss,train_accuracy,forward_passes`` (the null branches' loss and
accuracy over the windows credited since the last row; forward passes B × S per step).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from ..config.base import Finite, NonNegFloat, PosFloat, Size, StrictBool, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..rate_monitors import rate_monitors
from ..protocols import BuildContext, ModuleAgent, RuleLearner, RunParts, Transition

__all__ = ["ProbeConfig", "ProbeWindowAgent", "ProbeWindowLearner", "ProbeStreamAgent", "ProbeStreamLearner",
           "build_probe_rl", "build_probe_supervised", "branch_log_probs", "branch_outcomes", "unperturbed"]


# ---------------------------------------------------------------------------------- RL: episode windows
class ProbeWindowAgent(ModuleAgent):
    """Branch actions of a window: its assignment A (drawn at the window's first step) and common
    uniform inverse-CDF sampling (one uniform per step from the run's generator)."""

    def __init__(self, rule, generator: torch.Generator):
        self.rule, self.net, self.generator = rule, rule.net, generator
        w = rule.net.layers[0].weight
        self.dtype, self.device = w.dtype, w.device
        self.assignment: Tensor | None = None   # the current (or just finished) window's A (B, M)
        self.new_window = True                   # the next act starts a window (draws A)

    def act(self, obs):
        from ..rules.probe import inverse_cdf_actions

        if self.new_window:
            self.assignment = self.rule.assignment()
            self.new_window = False
        probs = self.rule.policy(torch.as_tensor(obs, dtype=self.dtype, device=self.device), self.assignment,
                                 self.generator)
        u = torch.rand((), generator=self.generator, dtype=torch.float64)
        return inverse_cdf_actions(probs, u).cpu().numpy()

    def end_window(self) -> None:
        self.new_window = True

    def state_dict(self) -> dict:
        return {**super().state_dict(), "assignment": self.assignment, "new_window": self.new_window}

    def load_state_dict(self, s: dict) -> None:
        super().load_state_dict(s)
        self.assignment = None if s["assignment"] is None else s["assignment"].clone()
        self.new_window = bool(s["new_window"])


class ProbeWindowLearner(RuleLearner):
    """At a window's end: ``rule.update(returns, A)`` (writes ``.grad``); after the optimizer step,
    ``rule.end_window()`` (probe bookkeeping, new probes)."""

    def __init__(self, rule, agent: ProbeWindowAgent):
        self.rule, self.agent = rule, agent
        self.ended = False

    def learn(self, tr: Transition) -> bool:
        self.ended = bool(tr.info["window_end"])
        if not self.ended:
            return False
        self.update(torch.as_tensor(tr.info["return"]))
        return True

    def update(self, returns: torch.Tensor) -> None:
        """The rule's update from the window's (B,) returns (writes ``.grad``)."""
        self.rule.update(returns, self.agent.assignment)

    def end_step(self) -> None:
        if self.ended:
            self.rule.end_window()
            self.agent.end_window()
            self.ended = False


def build_probe_rl(exp, ctx: BuildContext) -> RunParts:
    from ..network import RateNetwork
    from ..reporters import WindowReporter, episode_summary
    from ..rules.probe import rule_from_config
    from ..tasks import make_vector_env
    from ..tasks.probe_windows import CommonSeedWindows

    t = exp.task
    net = RateNetwork(exp.model_spec, generator=ctx.generator).to(ctx.device)
    rule = rule_from_config(exp.rule, net, seed=exp.seed, advantage_scale=exp.modulator.scale)
    opt = torch.optim.SGD(net.parameters(), lr=exp.rule.lr)
    B = rule.branches
    envs = make_vector_env(t.name, B, seed=exp.seed, reward_delay=t.reward_delay if t.reward_delay > 0 else None)
    agent = ProbeWindowAgent(rule, ctx.generator)
    rows = exp.run.rolling
    return RunParts(agent=agent, learner=ProbeWindowLearner(rule, agent), task=CommonSeedWindows(envs, t.episodes),
                    reporter=WindowReporter(exp.seed, t.episodes, rows, lambda: agent.assignment), optimizer=opt,
                    description=f"PROBE · {t.name} · {B} branches", unit="ep",
                    hint="lower rule.lr or rule.scale", summary=lambda m: episode_summary(m, rows),
                    callbacks=rate_monitors(exp, net))


# ---------------------------------------------------------------------------------- supervised: label stream
def branch_log_probs(rule, x: Tensor, assignment: Tensor, generator: torch.Generator) -> Tensor:
    """x (S, n_in), assignment (B, M) -> log-probabilities (B, S, C) of every branch on every stream.

    Log-softmax of the logits (the stable form of the softmax readout: a cross-entropy from stored
    probabilities would overflow where a probability underflows to 0). Node noise (``noise_std`` > 0)
    is drawn per stream, shared by all branches.
    """
    from ..rules.probe import probed_sweep

    B, S = assignment.shape[0], x.shape[0]
    noise = rule.net.sample_noise((1, S), rule.noise_std, generator) if rule.noise_std > 0 else None
    with torch.no_grad():
        logits = probed_sweep(rule.net, x.expand(B, S, x.shape[-1]), assignment, rule.dictionaries, noise).logits
    return torch.log_softmax(logits, dim=-1)


def branch_outcomes(logp: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """logp (B, S, C), labels y (S,) -> (outcome (B,) = −mean cross-entropy over the S streams,
    accuracy (B,))."""
    B, S, _ = logp.shape
    yy = y.expand(B, S)
    ll = logp.gather(-1, yy.unsqueeze(-1)).squeeze(-1)  # (B, S) log p_b(y_s | x_s)
    return ll.to(torch.float64).mean(-1), (logp.argmax(-1) == yy).to(torch.float64).mean(-1)


def unperturbed(values: Tensor, assignment: Tensor) -> float:
    """Mean over the null branches (all identical), else over all branches."""
    null = (assignment == 0).all(dim=1)
    return float(values[null].mean() if bool(null.any()) else values.mean())


class ProbeStreamAgent(ModuleAgent):
    """Each step: the window's A and every branch's log-probabilities on the step's inputs; the
    action is ``(logp (B, S, C), A (B, M))``."""

    def __init__(self, rule, generator: torch.Generator):
        self.rule, self.net, self.generator = rule, rule.net, generator
        w = rule.net.layers[0].weight
        self.dtype, self.device = w.dtype, w.device

    def act(self, obs):
        A = self.rule.assignment()
        x = torch.as_tensor(obs).to(device=self.device, dtype=self.dtype)
        return branch_log_probs(self.rule, x, A, self.generator), A


class ProbeStreamLearner(RuleLearner):
    """The FIFO of windows whose labels have not arrived (oldest first, at most D + 1), credited when
    they do; ``last`` holds the credited window's null-branch loss and accuracy (None if none was)."""

    def __init__(self, rule, label_delay: int):
        self.rule, self.D = rule, int(label_delay)
        self.pending: deque = deque()  # (logp (B, S, C), A (B, M), probes or None)
        self.last: dict | None = None

    def learn(self, tr: Transition) -> bool:
        logp, A = tr.action
        # with D = 0 the window is credited at once, with the live probes: no snapshot needed
        self.pending.append((logp, A, self.rule.snapshot_probes() if self.D > 0 else None))
        self.last = None
        if not bool(torch.as_tensor(tr.info["valid"]).all()):
            return False
        logp_old, A_old, probes = self.pending.popleft()  # the labels of window step − D have arrived
        outcome, acc = branch_outcomes(logp_old, torch.as_tensor(tr.info["delayed_y"]).to(logp_old.device))
        self.rule.update(outcome, A_old, dictionaries=probes)
        self.last = {"loss": -unperturbed(outcome, A_old), "accuracy": unperturbed(acc, A_old)}
        return True

    def end_step(self) -> None:
        self.rule.end_window()

    def state_dict(self) -> dict:
        pending = [{"logp": lp.clone(), "A": A.clone(),
                    "probes": None if snap is None else [d.state_dict() for d in snap]}
                   for lp, A, snap in self.pending]
        return {"rule": self.rule.state_dict(), "pending": pending}

    def load_state_dict(self, s: dict) -> None:
        self.rule.load_state_dict(s["rule"])
        self.pending = deque()
        for e in s["pending"]:
            snap = None
            if e["probes"] is not None:
                snap = self.rule.snapshot_probes()  # same configuration; every state tensor is replaced below
                for d, st in zip(snap, e["probes"]):
                    d.load_state_dict(st)
            self.pending.append((e["logp"].clone(), e["A"].clone(), snap))
        self.last = None


def build_probe_supervised(exp, ctx: BuildContext) -> RunParts:
    from ..network import RateNetwork
    from ..reporters import StreamReporter, stream_summary
    from ..rules.probe import rule_from_config
    from ..tasks.streams import LabelStreamTask
    from .cet import held_out_accuracy, make_stream

    t = exp.task
    net = RateNetwork(exp.model_spec, generator=ctx.generator).to(ctx.device)
    stream = make_stream(exp, label_delay=t.label_delay)
    x_test, y_test = stream.test_set()
    rule = rule_from_config(exp.rule, net, seed=exp.seed, advantage_scale=exp.modulator.scale)
    opt = torch.optim.SGD(net.parameters(), lr=exp.rule.lr)
    B = rule.branches
    learner = ProbeStreamLearner(rule, t.label_delay)
    reporter = StreamReporter(t.steps, t.eval_every, stats=lambda: learner.last,
                              evaluate=lambda: held_out_accuracy(net, x_test, y_test), passes_per_step=B * t.batch)
    return RunParts(agent=ProbeStreamAgent(rule, ctx.generator), learner=learner,
                    task=LabelStreamTask(stream, t.steps), reporter=reporter, optimizer=opt,
                    description=f"PROBE · {t.name} · {B} branches · D={t.label_delay}", unit="step",
                    hint="lower rule.lr or rule.scale", summary=stream_summary, callbacks=rate_monitors(exp, rule.net))


# ---------------------------------------------------------------------------------- the config
Count = Annotated[StrictInt, Field(ge=1, le=100_000)]


@register_rule
class ProbeConfig(RuleConfig):
    """Probe bundles: B counterfactual branches per window, K probes of rank r per layer, credit by
    directional traces (neuroprobe.rules.probe)."""

    families: ClassVar[tuple[str, ...]] = ("rl", "supervised")
    name: Literal["probe"]
    branches: Size = 32
    """B counterfactual branches per window."""
    num_probes: Count = 8
    """K probes per layer (even when antithetic)."""
    rank: Count = 1
    """Rank r of each probe."""
    scale: PosFloat = 0.05
    """σ, the entry std of each probe."""
    scheduler: Literal["random", "round_robin", "blockwise", "uncertainty", "diversity"] = "random"
    """How branches are assigned probes (the assignment A, B x layers)."""
    null_fraction: Annotated[Finite, Field(ge=0, lt=1)] = 0.125
    """Fraction f of all-null (unperturbed) branches, in [0, 1)."""
    history: Count = 1
    """P windows of credit in the directional trace."""
    decay: Annotated[Finite, Field(ge=0, le=1)] = 1.0
    """λ, the weight λ^j of the credit of j windows ago (kernel = "none"), in [0, 1]."""
    kernel: Literal["none", "cascade"] = "none"
    """Window weights: λ^j (none) or a cascade kernel peaking rule.kernel_delay windows back."""
    kernel_order: Annotated[StrictInt, Field(ge=1, le=1000)] = 6
    """Order n of the cascade kernel."""
    kernel_delay: PosFloat = 2.0
    """Peak of the cascade kernel (windows)."""
    baseline: Literal["null", "mean"] = "null"
    """Advantage baseline: the null branches' outcome, or the mean over the branches."""
    antithetic: StrictBool = True
    """Probes in ± pairs."""
    regime: Literal["pure", "semi_persistent", "learned_subspace"] = "pure"
    """Probe dictionary regime."""
    noise_std: NonNegFloat = 0.0
    """Node noise shared by all branches (0 = off)."""

    def check(self, exp) -> None:
        if exp.seeds != 1:
            raise ValueError(f"'seeds' = {exp.seeds}: rule 'probe' runs one seed per process; use --seed S")
        if self.antithetic and self.num_probes % 2:
            raise ValueError(f"'rule.num_probes' = {self.num_probes} must be even with rule.antithetic = true "
                             f"(± pairs)")
        if self.baseline == "null" and self.null_fraction == 0:
            raise ValueError("'rule.baseline' = 'null' needs 'rule.null_fraction' > 0 (all-null branches); raise it "
                             "or use baseline = 'mean'")
        if self.null_fraction > 0 and math.ceil(self.null_fraction * self.branches - 1e-12) >= self.branches:
            raise ValueError(f"'rule.null_fraction' = {self.null_fraction} leaves no perturbed branch out of "
                             f"rule.branches = {self.branches}; lower it or add branches")
        if self.kernel == "cascade" and self.kernel_order >= 2 and self.kernel_delay > self.history - 1:
            raise ValueError(f"'rule.kernel_delay' = {self.kernel_delay} must be <= rule.history - 1 = "
                             f"{self.history - 1} (the kernel's peak must fall inside the history)")
        self._check_memory(exp)

    def _check_memory(self, exp) -> None:
        from ..config.experiment import refuse_over_memory

        sizes = exp.model_spec.sizes
        probes = sum(self.num_probes * self.rank * (n_in + n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        n = probes * (self.history + 2)  # the live dictionaries, the traces' P windows, a snapshot
        if exp.family == "supervised":  # the FIFO: D + 1 windows of log-probabilities and probes
            n += (exp.task.label_delay + 1) * (self.branches * exp.task.batch * sizes[-1] + probes)
        refuse_over_memory(8 * n, f"rule 'probe' with rule.num_probes = {self.num_probes}, rule.rank = {self.rank}, "
                                  f"rule.history = {self.history} would hold about {{}} GiB of probes and traces")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        if exp.family == "rl":
            return build_probe_rl(exp, ctx)
        return build_probe_supervised(exp, ctx)
