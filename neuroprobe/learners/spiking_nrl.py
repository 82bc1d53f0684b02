"""Spiking CartPole: a LIF policy learned by node perturbation (membrane noise + RPE), rule ``spiking_nrl``.

B trials (``seeds``) run as one batch, each with its own weights and CartPole copy. Per
environment step (one loop step) the agent (:class:`SpikingPolicyAgent`) rate-codes the observation
(``task.neurons_per_dim`` Gaussian tuning curves per dimension, up to ``task.max_rate`` Hz) into
Poisson spikes of the "obs" population for ``task.steps_per_action`` network steps; the action is
the half of the "out" population that spiked more (ties broken by the halves' mean membrane
potential). The noise currents of the noisy LIF populations are the perturbations: after every
network step the learner's hook (:meth:`SpikingNRLLearner.substep`) accumulates ξ·z_pre
(:class:`~neuroprobe.rules.spiking_nrl.SpikingNRL`), and at each episode's end the RPE of the
return gates it (SGD applies ``.grad``). Task: :class:`~neuroprobe.tasks.episodic.EpisodicVectorTask`
over CartPole-v1; metrics: ``episode, seed, return, length`` per finished episode
(:class:`~neuroprobe.reporters.EpisodeReporter`).
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch

from ..config.rules import RuleConfig, register_rule
from ..protocols import BuildContext, RuleLearner, RunParts, Transition
from ..backends.torch_run import SpikingNetAgent, step_generator, tree_to

__all__ = ["SpikingNRLConfig", "SpikingPolicyAgent", "SpikingNRLLearner", "OBS_LOW", "OBS_HIGH"]

OBS_LOW = (-2.4, -3.0, -0.21, -3.5)  # CartPole's observation range used for the rate code
OBS_HIGH = (2.4, 3.0, 0.21, 3.5)


def check_spiking_cartpole_network(exp) -> tuple[str, dict]:
    """Check that the network has what task 'spiking_cartpole' drives: an input population 'obs' of
    4 x task.neurons_per_dim neurons and a LIF population 'out' with an even size (two actions).

    Returns (the network file's name, {population name: population spec}) for further checks;
    raises ValueError naming the missing or mis-sized population."""
    from pathlib import Path

    t, spec = exp.task, exp.spiking_spec
    f = Path(exp.network.file).name
    pops = {p.name: p for p in spec.populations}
    need = {"obs": ("input", 4 * t.neurons_per_dim), "out": ("lif", None)}
    for name, (kind, size) in need.items():
        p = pops.get(name)
        if p is None or p.kind != kind or (size is not None and p.size != size):
            raise ValueError(f"{f}: task 'spiking_cartpole' needs a population {name!r} of kind {kind!r}"
                             + (f" and size {size} (4 x task.neurons_per_dim = {t.neurons_per_dim})"
                                if size else ""))
    if pops["out"].size % 2:
        raise ValueError(f"{f}: population 'out' has {pops['out'].size} neurons: needs an even number (two "
                         f"actions)")
    return f, pops


class SpikingPolicyAgent(SpikingNetAgent):
    """Network + rate-code/Poisson encoder + ``steps_per_action`` sub-steps + action decoding.

    ``substep(z_prev, noise)`` is called after every network step with the spikes the step's input
    came from and the noise it injected (the learner's eligibility hook).
    """

    def __init__(self, net, batch: int, generator: torch.Generator, plastic: list, steps_per_action: int,
                 neurons_per_dim: int, max_rate: float, substep=None):
        super().__init__(net, batch, generator, plastic, clamp=False)
        self.K, self.npd, self.max_rate = int(steps_per_action), int(neurons_per_dim), float(max_rate)
        self.substep = substep
        self.half = net.pops["out"].size // 2
        dt = net.dtype
        self.low, self.high = torch.tensor(OBS_LOW, dtype=dt), torch.tensor(OBS_HIGH, dtype=dt)

    def act(self, obs):
        from ..neurons.inputs import poisson_spikes, rate_code

        net, B, half, dev = self.net, self.B, self.half, self.net.device
        rates = rate_code(torch.as_tensor(obs, dtype=net.dtype), self.low, self.high, self.npd, self.max_rate)
        if dev.type != "cpu":
            rates = rates.to(dev)
        counts = torch.zeros(B, 2, dtype=net.dtype, device=dev)
        with torch.no_grad():
            for _ in range(self.K):
                z_prev = self.state["z"]
                z, self.state = net.step(self.state, {"obs": poisson_spikes(rates, net.spec.dt, self.generator)},
                                         self.generator)
                if self.substep is not None:
                    self.substep(z_prev, self.state["noise"])
                counts += z["out"].view(B, 2, half).sum(-1)
            v_out = self.state["lif"]["out"].v.view(B, 2, half).mean(-1)
        return (counts + 1e-3 * v_out).argmax(-1).cpu().numpy()


class SpikingNRLLearner(RuleLearner):
    """Eligibility ξ·z_pre grown per network step (:meth:`substep`, called by the agent) for the trials
    still within their budget; at episode ends δ = RPE(return) gates it into ``.grad``."""

    def __init__(self, rule, task, device: torch.device):
        self.rule, self.task, self.device = rule, task, device

    def substep(self, z_prev, noise) -> None:
        active = torch.as_tensor(self.task.episodes < self.task.E)
        self.rule.accumulate(z_prev, noise, active if self.device.type == "cpu" else active.to(self.device))

    def learn(self, tr: Transition) -> bool:
        done = tr.info["done"]
        if not done.any():
            return False
        mask = torch.as_tensor(tr.info["active"]) & torch.as_tensor(done)
        ret = torch.as_tensor(tr.info["return"])
        if self.device.type != "cpu":  # δ and the eligibility meet on the network's device
            self._rpe_to(self.device)
            ret, mask = ret.to(self.device), mask.to(self.device)
        self.rule.reinforce(ret, mask)
        return True

    def _rpe_to(self, device: torch.device) -> None:
        rpe = self.rule.rpe
        rpe.baseline, rpe.seen, rpe.var = rpe.baseline.to(device), rpe.seen.to(device), rpe.var.to(device)

    def load_state_dict(self, s: dict) -> None:
        self.rule.load_state_dict(tree_to(s, self.device))
        if self.device.type != "cpu":
            self._rpe_to(self.device)


def build_spiking_cartpole(exp, ctx: BuildContext) -> RunParts:
    from ..modulators.rpe import RewardPredictionError
    from ..reporters import EpisodeReporter, episode_summary
    from ..rules.spiking_nrl import SpikingNRL
    from ..spiking import SpikingNetwork
    from ..tasks import make_vector_env
    from ..tasks.episodic import EpisodicVectorTask

    spec, B, t, gen = exp.spiking_spec, exp.seeds, exp.task, ctx.generator
    net = SpikingNetwork(spec, gen, batch=B, device=ctx.device, propagation=exp.run.propagation)
    plastic = [p for p in net.projections if spec.population(p.spec.post).lif.noise == "membrane"]
    with torch.no_grad():  # free-signed Gaussian weights, one set per trial
        for p in plastic:
            w = p.spec.weight_std * torch.randn(p.weight.shape, generator=gen, dtype=p.weight.dtype)
            p.weight.copy_(w.to(p.weight.device))
    sigma = {p.name: spec.population(p.spec.post).lif.noise_std for p in plastic}
    rule = SpikingNRL(plastic, sigma, B, RewardPredictionError(batch=B, scale="abs_reward"))
    opt = torch.optim.SGD([p.weight for p in rule.projections], lr=exp.rule.lr)
    task = EpisodicVectorTask(make_vector_env("CartPole-v1", B, seed=exp.seed), t.episodes)
    learner = SpikingNRLLearner(rule, task, net.device)
    agent = SpikingPolicyAgent(net, B, step_generator(gen, net.device, exp.seed), plastic, t.steps_per_action,
                               t.neurons_per_dim, t.max_rate, substep=learner.substep)
    rows = exp.run.rolling
    return RunParts(agent=agent, learner=learner, task=task, reporter=EpisodeReporter(exp.seed, B, t.episodes, rows),
                    optimizer=opt, description=f"spiking NRL · CartPole-v1 · {B} trials", unit="ep",
                    hint="lower rule.lr", summary=lambda m: episode_summary(m, rows))


@register_rule
class SpikingNRLConfig(RuleConfig):
    """Node perturbation on a spiking network: membrane-noise currents gated by the RPE of the return."""

    families: ClassVar[tuple[str, ...]] = ("spiking",)
    name: Literal["spiking_nrl"]

    def check(self, exp) -> None:
        t, spec = exp.task, exp.spiking_spec
        if t.name != "spiking_cartpole":
            raise ValueError(f"'rule.name' = 'spiking_nrl' applies to task 'spiking_cartpole' only (got task "
                             f"{t.name!r}; distal_reward is learned by rule 'rstdp')")
        if exp.run.backend != "torch":
            raise ValueError(f"'run.backend' = {exp.run.backend!r}: task 'spiking_cartpole' runs on the torch engine "
                             f"(Brian2 runs task 'distal_reward')")
        f, pops = check_spiking_cartpole_network(exp)
        noisy = [pr for pr in spec.projections if pops[pr.post].kind == "lif" and pops[pr.post].lif.noise == "membrane"]
        if not noisy:
            raise ValueError(f"{f}: rule 'spiking_nrl' learns the projections into populations with membrane noise "
                             f"(lif.noise = \"membrane\", noise_std > 0); this network has none")
        for pr in noisy:
            if not pops[pr.post].lif.noise_std > 0:
                raise ValueError(f"{f}: population {pr.post!r} has lif.noise = \"membrane\" with noise_std = "
                                 f"{pops[pr.post].lif.noise_std}: rule 'spiking_nrl' needs noise_std > 0")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return build_spiking_cartpole(exp, ctx)
