"""Spiking CartPole learned by probe bundles (rule ``spiking_probe``): B weight-perturbed branches per generation.

One window = one generation: B branches of one LIF policy run as one batch, branch b with the
synapse weights θ + δw_b (:class:`~neuroprobe.rules.spiking_probe.SpikingProbeRule`: antithetic
low-rank probes, optionally ``rule.null_branches`` unperturbed ones), each on its own copy of
CartPole-v1 (:class:`GenerationWindows`, a :class:`~neuroprobe.tasks.probe_windows.CommonSeedWindows`);
a branch whose pole fell idles until every branch is done. ``rule.starts = "shared"`` (default): every
branch of a generation starts from the same state; ``"per_pair"``: the two branches of a ± pair start
from one state, different pairs (and each null branch) from different ones, so one generation's
update averages over B/2 start states while each pair still compares its ± probes from the same
start (with antithetic pairs only the difference within a pair moves θ:
Σ_b f_b δw_b = Σ_pairs (f_+ − f_−) δw_+). Per environment step the agent
(:class:`SpikingProbeAgent`) rate-codes the observation as the spiking NRL policy does
(``task.neurons_per_dim`` Gaussian tuning curves per dimension up to ``task.max_rate`` Hz, Poisson
spikes for ``task.steps_per_action`` network steps of dt) and the action is the half of the "out"
population that spiked more (ties: the halves' mean membrane potential). With
``rule.common_inputs`` the branches draw their Poisson spikes from ONE uniform per input neuron and
step (common random numbers: two branches that see the same observation get the same spikes), so
branches differ through their weights and the trajectories these produce. At a generation's end the
learner credits the returns (``rule.update``), SGD steps θ and the probes are renewed; the network
state is reset at the start of every generation.

Episodes are counted honestly: a generation is B episodes. ``task.episodes`` is the budget in
episodes, rounded up to whole generations (ceil(episodes / B) generations are played);
``metrics.csv`` has one row per branch-episode, ``episode,seed,generation,branch,return,length``
(episode = generation·B + branch), so the rolling mean of ``run.rolling`` rows is the mean return of
the last episodes played. ``rule.stop_return`` > 0 ends the run once that rolling mean reaches it
(at a generation's end).
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from ..backends.torch_run import SpikingNetAgent, step_generator, tree_to
from ..config.base import NonNegFloat, PosFloat, StrictBool, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..protocols import BuildContext, RunParts
from ..reporters import _ReturnsReporter, episode_summary
from ..tasks.probe_windows import CommonSeedWindows
from .probe import ProbeWindowLearner
from .spiking_nrl import OBS_HIGH, OBS_LOW, check_spiking_cartpole_network

__all__ = ["SpikingProbeConfig", "SpikingProbeAgent", "SpikingProbeLearner", "GenerationReporter", "GenerationWindows",
           "build_spiking_probe", "probe_summary", "start_groups", "SOLVED"]

SOLVED = 475.0  # CartPole-v1's reward threshold (Gymnasium's spec.reward_threshold)


class SpikingProbeAgent(SpikingNetAgent):
    """The branches' LIF policy: per generation the branch weights θ + δw_b and a fresh network state;
    per environment step ``steps_per_action`` network steps and the spike-count decision.

    ``parameters()`` are θ (what the optimizer steps and the non-finite guard watches); the
    projections' (B, S) weights are derived from θ and the probes at each generation's start.
    """

    def __init__(self, net, rule, generator: torch.Generator, steps_per_action: int, neurons_per_dim: int,
                 max_rate: float, common_inputs: bool = True):
        super().__init__(net, rule.branches, generator, rule.projections, clamp=False)
        self.rule = rule
        self.K, self.npd, self.max_rate = int(steps_per_action), int(neurons_per_dim), float(max_rate)
        self.common_inputs = bool(common_inputs)
        self.half = net.pops["out"].size // 2
        self.low, self.high = torch.tensor(OBS_LOW, dtype=net.dtype), torch.tensor(OBS_HIGH, dtype=net.dtype)
        self.new_window = True  # the next act starts a generation

    def _input_spikes(self, p: torch.Tensor) -> torch.Tensor:
        """Poisson spikes (B, n) with probabilities p (B, n): one uniform per input neuron shared by
        every branch (common_inputs), else independent uniforms."""
        shape = (1, p.shape[1]) if self.common_inputs else p.shape
        u = torch.rand(shape, generator=self.generator, dtype=p.dtype, device=p.device)
        return (u < p).to(p.dtype)

    def act(self, obs):
        from ..neurons.inputs import poisson_probability, rate_code

        net, B, half, dev = self.net, self.B, self.half, self.net.device
        if self.new_window:
            self.state = net.init_state(B)  # every generation starts from rest
            self.rule.load_branch_weights()
            self.new_window = False
        rates = rate_code(torch.as_tensor(obs, dtype=net.dtype), self.low, self.high, self.npd, self.max_rate)
        p = poisson_probability(rates.to(dev), net.spec.dt)
        counts = torch.zeros(B, 2, dtype=net.dtype, device=dev)
        with torch.no_grad():
            for _ in range(self.K):
                z, self.state = net.step(self.state, {"obs": self._input_spikes(p)}, self.generator)
                counts += z["out"].view(B, 2, half).sum(-1)
            v_out = self.state["lif"]["out"].v.view(B, 2, half).mean(-1)
        return (counts + 1e-3 * v_out).argmax(-1).cpu().numpy()

    def end_window(self) -> None:
        self.new_window = True

    def parameters(self):
        return list(self.rule.theta)

    def named_parameters(self):
        return [(f"{p.name}.theta", th) for p, th in zip(self.rule.projections, self.rule.theta)]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "theta": [th.detach().clone() for th in self.rule.theta],
                "new_window": self.new_window}

    def load_state_dict(self, s: dict) -> None:
        super().load_state_dict(s)
        with torch.no_grad():  # in place: the optimizer holds these tensors
            for th, v in zip(self.rule.theta, s["theta"], strict=True):
                th.copy_(v.to(th.device))
        self.new_window = bool(s["new_window"])


class SpikingProbeLearner(ProbeWindowLearner):
    """At a generation's end: ``rule.update(returns)`` (θ.grad); after the optimizer step new probes
    (``rule.end_window``) and a new generation for the agent."""

    def update(self, returns: torch.Tensor) -> None:
        self.rule.update(returns)  # every branch carries its own probe: no assignment

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, s: dict) -> None:
        self.rule.load_state_dict(tree_to(s, torch.device("cpu")))


def start_groups(branches: int, null_branches: int) -> np.ndarray:
    """(B,) start-state group of every branch for ``rule.starts = "per_pair"``: each null branch its
    own, each ± pair of perturbed branches one (branches n0 + 2i and n0 + 2i + 1 share group n0 + i)."""
    b = np.arange(branches)
    return np.where(b < null_branches, b, null_branches + (b - null_branches) // 2)


class GenerationWindows(CommonSeedWindows):
    """:class:`CommonSeedWindows` (one window = one generation) that also finishes once ``stop()``.

    ``groups`` (B,) ints: branches of one group start from one state, groups from different ones
    (reset seed ``window_seed(seed, window) + group``); None: every branch from the same state.
    """

    def __init__(self, envs, windows: int, stop=None, groups: np.ndarray | None = None):
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        super().__init__(envs, windows)
        self.stop = stop

    def _reset_envs(self):
        from ..rules.probe import window_seed

        if self.groups is None:
            return super()._reset_envs()
        base = window_seed(self.seed, self.window)
        obs, _ = self.envs.reset(seed=[int((base + g) % (2**31 - 1)) for g in self.groups])
        return obs

    def finished(self) -> bool:
        return super().finished() or (self.stop is not None and bool(self.stop()))


class GenerationReporter(_ReturnsReporter):
    """One row ``episode,seed,generation,branch,return,length`` per branch-episode (B rows per
    generation, at its end); the schedule and the progress bar count episodes."""

    columns = ["episode", "seed", "generation", "branch", "return", "length"]
    key = ["episode", "seed"]

    def __init__(self, seed: int, branches: int, episodes: int, rolling: int):
        super().__init__(rolling)
        self.seed, self.B, self.E = seed, int(branches), int(episodes)

    def rows(self, tr) -> list[dict]:
        info = tr.info
        if not info["window_end"]:
            return []
        g, out = int(info["window"]), []
        for b, (r, n) in enumerate(zip(info["return"], info["length"])):
            out.append({"episode": g * self.B + b, "seed": self.seed, "generation": g, "branch": b,
                        "return": float(r), "length": int(n)})
            self._finished(float(r))
        return out

    def rolling_mean(self) -> float:
        """Mean return of the last ``rolling`` episodes (−inf before the first)."""
        return float(np.mean(self.recent)) if self.recent else -np.inf

    def progress(self) -> tuple[int, int]:
        return self.done, self.E

    def schedule_count(self) -> int:
        return self.done

    def where(self) -> str:
        return f"generation {self.done // self.B} (episode {self.done})"

    def postfix(self) -> str:
        return f"gen {self.done // self.B} · {super().postfix()}" if self.recent else ""


def probe_summary(m: dict, rolling: int = 50, branches: int = 1, target: float = SOLVED) -> dict:
    """:func:`~neuroprobe.reporters.episode_summary` plus generations and the first generation (and
    the episodes played by its end) at whose end the mean return of the last ``rolling`` episodes
    reached ``target`` (None if never): checked at generation ends only, as ``rule.stop_return`` is
    (a generation's B episodes run at once; their order in the file is the branches')."""
    from ..plotting import rolling_mean

    s = episode_summary(m, rolling)
    ret = np.asarray(m["return"], dtype=float)
    roll = rolling_mean(ret, rolling)
    i = np.arange(len(ret))
    ends = ((i + 1) % branches == 0) & (i >= rolling - 1)  # generation ends with `rolling` episodes behind them
    hit = np.flatnonzero((roll >= target) & ends)
    first = int(hit[0]) + 1 if hit.size else None  # episodes played when it was reached
    s.update({"generations": int(len(ret) // branches), "branches": int(branches), "target": float(target),
              "episodes_to_target": first,
              "generations_to_target": None if first is None else int(-(-first // branches))})
    return s


def build_spiking_probe(exp, ctx: BuildContext) -> RunParts:
    from ..rules.spiking_probe import SpikingProbeRule
    from ..spiking import SpikingNetwork
    from ..tasks import make_vector_env

    spec, t, r, gen = exp.spiking_spec, exp.task, exp.rule, ctx.generator
    B = r.branches
    net = SpikingNetwork(spec, gen, batch=B, device=ctx.device, propagation=exp.run.propagation)
    rule = SpikingProbeRule(list(net.projections), B, rank=r.rank, scale=r.scale, fitness=r.fitness,
                            null_branches=r.null_branches, seed=exp.seed)
    opt = torch.optim.SGD(rule.theta, lr=r.lr)
    agent = SpikingProbeAgent(net, rule, step_generator(gen, net.device, exp.seed), t.steps_per_action,
                              t.neurons_per_dim, t.max_rate, common_inputs=r.common_inputs)
    rows = exp.run.rolling
    generations = -(-t.episodes // B)  # the budget in whole generations of B episodes (rounded up)
    reporter = GenerationReporter(exp.seed, B, generations * B, rows)
    stop = None
    if r.stop_return > 0:
        stop = lambda: len(reporter.recent) >= rows and reporter.rolling_mean() >= r.stop_return  # noqa: E731
    groups = start_groups(B, r.null_branches) if r.starts == "per_pair" else None
    task = GenerationWindows(make_vector_env("CartPole-v1", B, seed=exp.seed), generations, stop, groups)
    return RunParts(agent=agent, learner=SpikingProbeLearner(rule, agent), task=task, reporter=reporter,
                    optimizer=opt, description=f"spiking PROBE · CartPole-v1 · {B} branches", unit="ep",
                    hint="lower rule.lr or rule.scale",
                    summary=lambda m: probe_summary(m, rows, B))


Count = Annotated[StrictInt, Field(ge=1, le=100_000)]


@register_rule
class SpikingProbeConfig(RuleConfig):
    """Probe bundles on a spiking network: B antithetic weight-perturbed branches per generation, credit
    by their returns (evolution strategies with low-rank probes; neuroprobe.rules.spiking_probe)."""

    families: ClassVar[tuple[str, ...]] = ("spiking",)
    name: Literal["spiking_probe"]
    branches: Annotated[StrictInt, Field(ge=2, le=100_000)] = 32
    """B branches per generation (episodes per generation)."""
    null_branches: Annotated[StrictInt, Field(ge=0, le=100_000)] = 0
    """Unperturbed branches among the B (they play θ itself; no credit)."""
    rank: Count = 1
    """Rank r of every probe (<= min(n_post, n_pre) of each projection)."""
    scale: PosFloat = 0.05
    """σ, the std of every synapse's perturbation."""
    fitness: Literal["none", "std", "rank"] = "rank"
    """Credit per branch: return minus the mean, that over its std, or centred ranks."""
    starts: Literal["shared", "per_pair"] = "shared"
    """Start states of a generation: one for all branches, or one per ± pair of branches (and per null branch)."""
    common_inputs: StrictBool = True
    """Branches share the uniforms of their Poisson input spikes (common random numbers)."""
    stop_return: NonNegFloat = 0.0
    """End the run once the mean return of the last run.rolling episodes reaches this (0 = never)."""

    def check(self, exp) -> None:
        t, spec = exp.task, exp.spiking_spec
        if t.name != "spiking_cartpole":
            raise ValueError(f"'rule.name' = 'spiking_probe' applies to task 'spiking_cartpole' only (got task "
                             f"{t.name!r})")
        if (exp.run.backend, exp.run.precision) != ("torch", "float"):
            raise ValueError(f"'run.backend' = {exp.run.backend!r}, 'run.precision' = {exp.run.precision!r}: rule "
                             f"'spiking_probe' runs on the torch engine in float")
        if exp.run.rng == "hash":
            raise ValueError("'run.rng' = 'hash': rule 'spiking_probe' draws its noise from the run's generator "
                             "(run.rng = 'auto' or 'generator')")
        if exp.seeds != 1:
            raise ValueError(f"'seeds' = {exp.seeds}: rule 'spiking_probe' runs one seed per process (its batch is "
                             f"the branches); use --seed S")
        K = self.branches - self.null_branches
        if K < 2 or K % 2:
            raise ValueError(f"'rule.null_branches' = {self.null_branches} with 'rule.branches' = {self.branches} "
                             f"leaves {K} perturbed branches: they come in ± pairs, so it must be even and >= 2")
        f, pops = check_spiking_cartpole_network(exp)
        self._check_memory(exp, pops)
        for pr in spec.projections:
            if pops[pr.pre].sign != "none":
                raise ValueError(f"{f}: projection {pr.pre}->{pr.post}: rule 'spiking_probe' learns free-signed "
                                 f"weights; population {pr.pre!r} has sign {pops[pr.pre].sign!r} (use sign = \"none\")")
            n = min(pops[pr.pre].size, pops[pr.post].size)
            if self.rank > n:
                raise ValueError(f"'rule.rank' = {self.rank}: must be <= {n} = min(pre, post size) of projection "
                                 f"{pr.pre}->{pr.post}")

    def _check_memory(self, exp, pops) -> None:
        from ..config.experiment import refuse_over_memory

        syn = sum(pr.p * pops[pr.pre].size * pops[pr.post].size for pr in exp.spiking_spec.projections)
        neurons = sum(p.size for p in pops.values())
        # branch weights (B, S) and their float64 probes (K, S, r) while drawn; B network states
        n = self.branches * syn * (2 + self.rank) + 8 * self.branches * neurons
        refuse_over_memory(8 * n, f"rule 'spiking_probe' with rule.branches = {self.branches}, rule.rank = "
                                  f"{self.rank} would hold about {{}} GiB of branch weights and probes")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return build_spiking_probe(exp, ctx)
