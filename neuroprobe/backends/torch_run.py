"""The torch float engine's compiler for the distal-reward experiment (the registry's
``("torch", "float")``): the network and its cascade R-STDP run as they are, in torch.

Torch engine, float (``run.backend = "torch"``, ``run.precision = "float"``; ``run.dtype``
float32 or float64; ``run.rng = "hash"``: the counter-based noise the event engine draws, so the
two engines give identical spikes in float64): B trials
(``seeds``) run as one batch on one network structure; each trial has its own weights of the
plastic projection, its own rewarded synapse, noise and rewards. One loop step is one network
step of dt:

* agent (:class:`SpikingNetAgent`): the network steps; the action is its spikes;
* task (:class:`~neuroprobe.tasks.distal_loop.DistalRewardTask`): the reward protocol turns the
  rewarded synapse's coincidences into delayed rewards; the reward is the dopamine d (B,), plus
  ``task.tonic_dopamine`` (Izhikevich's ``0.002 + DA``);
* learner (:class:`RSTDPLearner`): :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` updates its traces
  from the plastic projection's pre/post spikes (each plastic projection's, when
  ``rule.projection`` lists several); where d ≠ 0 it writes ``weight.grad = −d·e``,
  SGD steps and the agent clamps the weights to the projections' bounds;
* reporter (:class:`~neuroprobe.reporters_spiking.DistalReporter`): a row per trial every
  ``task.report_every`` seconds;
* callback (:class:`~neuroprobe.callbacks.MonitorsCallback`): ``[monitor]`` over the last
  ``run.record_last`` seconds, and the weights of the rewarded synapse and of a fixed sample of
  200 others every report (``weight/<projection>``, ``meta/highlight/<projection>`` marking the
  rewarded one of trial 0), saved to ``recordings.npz``.
"""
from __future__ import annotations

import torch

from ..protocols import BuildContext, ModuleAgent, RuleLearner, RunParts, Transition
from . import N_SAMPLE, distal_monitor_sets, distal_network, distal_recordings_meta as recordings_meta

__all__ = ["SpikingNetAgent", "RSTDPLearner", "build_distal", "compile_distal", "extra_rules", "set_rewarded_weight",
           "step_generator", "tree_to", "N_SAMPLE"]


# ------------------------------------------------------------------------------------------ agent
def step_generator(ctx_generator: torch.Generator, device: torch.device, seed: int) -> torch.Generator:
    """The generator of the network's noise: the run's (CPU) generator on the CPU; on another device
    a generator of that device seeded with the run's seed (torch draws CUDA noise only from a CUDA
    generator)."""
    if device.type == "cpu":
        return ctx_generator
    return torch.Generator(device=device).manual_seed(int(seed))


class SpikingNetAgent(ModuleAgent):
    """A :class:`~neuroprobe.spiking.SpikingNetwork` and its state; ``act`` is one network step.

    ``plastic``: the projections the learner changes (the NaN guard watches their weights;
    ``constrain`` clamps them to their bounds when ``clamp``). The network state (norse
    NamedTuples) is checkpointed as a plain tree and restored with ``net.init_state(B)`` as template.
    """

    def __init__(self, net, batch: int, generator: torch.Generator, plastic: list, clamp: bool = True):
        self.net, self.B, self.generator, self.plastic, self.clamp = net, int(batch), generator, list(plastic), clamp
        self.state = net.init_state(self.B)

    def act(self, obs):
        with torch.no_grad():
            z, self.state = self.net.step(self.state, generator=self.generator)
        return z

    def parameters(self):
        return [p.weight for p in self.plastic]

    def named_parameters(self):
        return [(f"{p.name}.weight", p.weight) for p in self.plastic]

    def constrain(self) -> None:
        if self.clamp:
            for p in self.plastic:
                p.clamp_()

    def state_dict(self) -> dict:
        s = {**super().state_dict(), "state": self.state}
        if self.generator.device.type != "cpu":  # the CPU generator is the run's (checkpointed by the loop)
            s["generator"] = self.generator.get_state()
        return s

    def load_state_dict(self, s: dict) -> None:
        from ..io.state import restore_like

        super().load_state_dict(s)
        dev = self.net.device
        state = restore_like(self.net.init_state(self.B), s["state"], path="agent.state")
        state["noise"] = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in state["noise"].items()}
        self.state = state
        if "generator" in s:
            self.generator.set_state(s["generator"].cpu().to(torch.uint8))


def tree_to(obj, device: torch.device):
    """A plain state tree with its tensors on ``device`` (checkpoints load on the CPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: tree_to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tree_to(v, device) for v in obj]
    return obj


class RSTDPLearner(RuleLearner):
    """:class:`~neuroprobe.rules.rstdp.CascadeRSTDP` on the step's spikes; reinforced where d ≠ 0.

    ``extra``: further ``(rule, pre, post)`` on other plastic projections (one rule config acting on
    several projections), stepped and reinforced after ``rule`` with the same dopamine."""

    def __init__(self, rule, pre: str, post: str, extra: list | tuple = ()):
        self.rule, self.pre, self.post = rule, pre, post
        self.extra = list(extra)

    def learn(self, tr: Transition) -> bool:
        z, d = tr.action, tr.reward
        rules = [(self.rule, self.pre, self.post), *self.extra]
        with torch.no_grad():
            for rule, pre, post in rules:
                rule.step(z[pre], z[post])
        if bool((d != 0).any()):
            for rule, _, _ in rules:
                rule.reinforce(d.to(rule.projection.weight.dtype))
            return True
        return False

    def state_dict(self) -> dict:
        s = self.rule.state_dict()
        if self.extra:  # only with several projections: a one-projection checkpoint keeps its layout
            s = {**s, "extra": [r.state_dict() for r, _, _ in self.extra]}
        return s

    def load_state_dict(self, s: dict) -> None:
        s = dict(s)
        extra = s.pop("extra", [])
        self.rule.load_state_dict(tree_to(s, self.rule.projection.weight.device))
        for (r, _, _), e in zip(self.extra, extra):
            r.load_state_dict(tree_to(e, r.projection.weight.device))


# ------------------------------------------------------------------------------------------ build
def _plastic_rule(exp, proj):
    """The float cascade R-STDP of ``exp.rule`` on ``proj``, whose weights become per trial."""
    from ..rules.rstdp import CascadeRSTDP

    B, r = exp.seeds, exp.rule
    with torch.no_grad():  # per-trial weights only where plasticity acts
        proj.weight = torch.nn.Parameter(proj.weight.detach().expand(B, -1).clone())
    return CascadeRSTDP(proj, B, order=r.order, delay=r.delay, dt=exp.spiking_spec.dt, tau_plus=r.tau_plus,
                        tau_minus=r.tau_minus, a_plus=r.a_plus, a_minus=r.a_minus,
                        normalize=None if r.normalize == "none" else r.normalize)


def extra_rules(exp, net, rewarded_projection: str) -> list:
    """``(rule, pre, post)`` on each plastic projection besides the rewarded one (``rule.projection``
    a list), in the listed order; empty for one projection."""
    names = [n for n in exp.rule.projections if n != rewarded_projection]
    out = []
    for name in names:
        p = net.projection(name)
        out.append((_plastic_rule(exp, p), p.spec.pre, p.spec.post))
    return out


def set_rewarded_weight(proj, rewarded: torch.Tensor, weight: float | None) -> None:
    """Set each trial's rewarded synapse to the magnitude ``weight`` (``task.rewarded_weight``;
    None: leave the draw). The projection's weights become per trial, (B, S) with B =
    ``rewarded.numel()``, if they are shared; the Dale sign applies (free-signed: +)."""
    if weight is None:
        return
    B = int(rewarded.numel())
    with torch.no_grad():
        w = proj.weight.detach()
        if w.dim() == 1:
            proj.weight = torch.nn.Parameter(w.expand(B, -1).clone())
        w = proj.weight
        b = torch.arange(B, device=w.device)
        w[b, rewarded.to(w.device)] = (1.0 if proj.free_sign else proj.sign) * float(weight)


def build_distal(exp, generator: torch.Generator, device):
    """(network, projection, rule, protocol, rewarded, sample) of a distal-reward experiment on the
    torch float engine: :func:`~neuroprobe.backends.distal_network`'s draws, per-trial weights of
    the plastic projection (the rewarded synapse at ``task.rewarded_weight`` if set), the float
    cascade R-STDP and the float reward protocol. ``rule`` is the rewarded projection's; with
    several plastic projections (``rule.projection`` a list) :func:`extra_rules` builds the others'."""
    from ..tasks.distal_reward import DistalReward

    spec, B, t = exp.spiking_spec, exp.seeds, exp.task
    net, proj, rewarded, sample = distal_network(exp, generator, device)
    rule = _plastic_rule(exp, proj)
    set_rewarded_weight(proj, rewarded, t.rewarded_weight)
    protocol = DistalReward(proj.pre[rewarded].cpu(), proj.post[rewarded].cpu(), spec.dt, window=t.window,
                            delay_min=t.delay_min, delay_max=t.delay_max, dopamine_tau=t.dopamine_tau,
                            dopamine_amp=t.dopamine_amp, generator=generator,
                            rng="hash" if exp.run.hash_rng else "generator",
                            seeds=int(exp.seed) + torch.arange(B), hash_index=sum(p.size for p in spec.populations))
    return net, proj, rule, protocol, rewarded, sample


def compile_distal(exp, ctx: BuildContext) -> RunParts:
    """The distal-reward run on the torch float engine (the registry's ``("torch", "float")``)."""
    from ..callbacks import MonitorsCallback
    from ..reporters_spiking import DistalReporter, distal_summary
    from ..tasks.distal_loop import DistalRewardTask

    net, proj, rule, protocol, rewarded, sample = build_distal(exp, ctx.generator, ctx.device)
    spec, B, sch = exp.spiking_spec, exp.seeds, exp.schedule
    n_steps, every = sch.total, sch.report_every
    extra = extra_rules(exp, net, proj.name)
    plastic = [proj] + [r.projection for r, _, _ in extra]
    agent = SpikingNetAgent(net, B, step_generator(ctx.generator, net.device, exp.seed), plastic)
    task = DistalRewardTask(protocol, proj.spec.pre, proj.spec.post, n_steps, tonic=exp.task.tonic_dopamine)
    opt = torch.optim.SGD([p.weight for p in plastic], lr=exp.rule.lr)
    reporter = DistalReporter(spec, proj, protocol, rewarded, exp.seed, n_steps, every)

    detail, weights, record_from = distal_monitor_sets(exp, proj.name, rewarded, sample, n_steps)

    def lookup(var: str, pop: str) -> torch.Tensor:
        if var == "weight" and pop == proj.name:
            return proj.weight.detach()
        if var == "eligibility" and pop == proj.name:
            return rule.eligibility
        if var == "dopamine":
            return protocol.dopamine[:, None]
        return net.variable(agent.state, pop, var)

    monitors = MonitorsCallback([(detail, record_from), (weights, 0)], lookup,
                                clock=lambda: protocol.step_index - 1, meta=recordings_meta(exp))
    return RunParts(agent=agent, learner=RSTDPLearner(rule, proj.spec.pre, proj.spec.post, extra), task=task,
                    reporter=reporter, optimizer=opt,
                    description=f"R-STDP n={rule.order} · distal reward · {B} trials", unit="step",
                    callbacks=[monitors], hint="lower rule.lr", summary=distal_summary)


