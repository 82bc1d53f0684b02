"""Cascade-trace R-STDP on the distal-reward problem (Izhikevich 2007), on the torch engine or Brian2.

Torch engine (``run.backend = "torch"``): B trials (``seeds``) run as one batch on one network
structure; each trial has its own weights of the plastic projection, its own rewarded synapse,
noise and rewards. One loop step is one network step of dt:

* agent (:class:`SpikingNetAgent`): the network steps; the action is its spikes;
* task (:class:`~neuroprobe.tasks.distal_loop.DistalRewardTask`): the reward protocol turns the
  rewarded synapse's coincidences into delayed rewards; the reward is the dopamine d (B,);
* learner (:class:`RSTDPLearner`): :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` updates its traces
  from the plastic projection's pre/post spikes; where d ≠ 0 it writes ``weight.grad = −d·e``,
  SGD steps and the agent clamps the weights to the projection's bounds;
* reporter (:class:`~neuroprobe.reporters_spiking.DistalReporter`): a row per trial every
  ``task.report_every`` seconds;
* callback (:class:`~neuroprobe.callbacks.MonitorsCallback`): ``[monitor]`` over the last
  ``run.record_last`` seconds, and the weights of the rewarded synapse and of a fixed sample of
  200 others every report (``weight/<projection>``, ``meta/highlight/<projection>`` marking the
  rewarded one of trial 0), saved to ``recordings.npz``.

Brian2 (``run.backend = "brian2"``, :class:`Brian2DistalAgent`): the same network (connectivity and
initial weights from the torch builder, so the rewarded and sampled synapses are the same), the
same cascade R-STDP and the same reward protocol, driven in closed loop by Brian2's network
operation. Trials run one after another, each in chunks of one report interval per loop step;
Brian2's random numbers are seeded per trial (``brian2.seed(seed + trial)``), so a run is
reproducible and resumes at trial boundaries (an interrupted trial is rerun from its start). Same
metrics columns; ``recordings.npz`` holds trial 0's ``[monitor]`` spikes and states over the last
``run.record_last`` seconds and the watched weights every report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, StrictStr

from ..config.base import NonNegFloat, PosFloat, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..errors import ConfigError, NonFiniteError
from ..protocols import BuildContext, ModuleAgent, NullLearner, RuleLearner, RunParts, Transition

__all__ = ["RSTDPConfig", "SpikingNetAgent", "RSTDPLearner", "Brian2DistalAgent", "build_distal",
           "build_distal_torch", "build_distal_brian2", "step_generator", "tree_to",
           "N_SAMPLE"]

N_SAMPLE = 200  # other synapses whose weights are recorded


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
    """:class:`~neuroprobe.rules.rstdp.CascadeRSTDP` on the step's spikes; reinforced where d ≠ 0."""

    def __init__(self, rule, pre: str, post: str):
        self.rule, self.pre, self.post = rule, pre, post

    def learn(self, tr: Transition) -> bool:
        z, d = tr.action, tr.reward
        with torch.no_grad():
            self.rule.step(z[self.pre], z[self.post])
        if bool((d != 0).any()):
            self.rule.reinforce(d.to(self.rule.projection.weight.dtype))
            return True
        return False

    def load_state_dict(self, s: dict) -> None:
        self.rule.load_state_dict(tree_to(s, self.rule.projection.weight.device))


# ------------------------------------------------------------------------------------------ build
def build_distal(exp, generator: torch.Generator, device):
    """(network, projection, rule, protocol, rewarded, sample) of a distal-reward experiment; the
    draws from ``generator`` in the order of the original builder (connectivity and weights, the
    rewarded synapses, the sampled others)."""
    from ..rules.rstdp import CascadeRSTDP
    from ..spiking import SpikingNetwork
    from ..tasks.distal_reward import DistalReward

    spec, B, r, t = exp.spiking_spec, exp.seeds, exp.rule, exp.task
    net = SpikingNetwork(spec, generator, batch=None, device=device, propagation=exp.run.propagation)
    proj = net.projection(r.projection)
    with torch.no_grad():  # per-trial weights only where plasticity acts
        proj.weight = torch.nn.Parameter(proj.weight.detach().expand(B, -1).clone())
    rule = CascadeRSTDP(proj, B, order=r.order, delay=r.delay, dt=spec.dt, tau_plus=r.tau_plus,
                        tau_minus=r.tau_minus, a_plus=r.a_plus, a_minus=r.a_minus,
                        normalize=None if r.normalize == "none" else r.normalize)
    rewarded = torch.randint(0, proj.n_synapses, (B,), generator=generator)
    protocol = DistalReward(proj.pre[rewarded].cpu(), proj.post[rewarded].cpu(), spec.dt, window=t.window,
                            delay_min=t.delay_min, delay_max=t.delay_max, dopamine_tau=t.dopamine_tau,
                            dopamine_amp=t.dopamine_amp, generator=generator)
    sample = torch.randperm(proj.n_synapses, generator=generator)[:N_SAMPLE]
    return net, proj, rule, protocol, rewarded, sample


def _recordings_meta(exp) -> dict:
    r = exp.rule
    meta = {f"highlight/{r.projection}": np.array([0]), "kernel/delay_s": np.array(r.delay),
            "kernel/orders": np.array(sorted({1, 2, 6, r.order}))}
    meta.update({f"v_th/{p.name}": np.array(p.lif.v_th) for p in exp.spiking_spec.populations if p.kind == "lif"})
    return meta


def build_distal_torch(exp, ctx: BuildContext) -> RunParts:
    from ..callbacks import MonitorsCallback
    from ..monitors import MonitorSet, StateMonitor, monitors_from_config
    from ..reporters_spiking import DistalReporter, distal_summary
    from ..tasks.distal_loop import DistalRewardTask

    net, proj, rule, protocol, rewarded, sample = build_distal(exp, ctx.generator, ctx.device)
    spec, B, sch = exp.spiking_spec, exp.seeds, exp.schedule
    dt, n_steps, every = spec.dt, sch.total, sch.report_every
    agent = SpikingNetAgent(net, B, step_generator(ctx.generator, net.device, exp.seed), [proj])
    task = DistalRewardTask(protocol, proj.spec.pre, proj.spec.post, n_steps)
    opt = torch.optim.SGD([proj.weight], lr=exp.rule.lr)
    reporter = DistalReporter(spec, proj, protocol, rewarded, exp.seed, n_steps, every)

    # [monitor] recordings cover the last run.record_last seconds (a whole hour of rasters is
    # unreadable and large); the weights of the watched synapses are recorded every report
    watch = torch.cat([rewarded[:1], sample[sample != rewarded[0]]])
    detail = MonitorSet(monitors_from_config(exp.monitor.as_table()), dt)
    weights = MonitorSet([StateMonitor("weight", proj.name, indices=watch.tolist(), every=every)], dt)
    rl = exp.run.record_last
    record_from = 0 if rl <= 0 else n_steps - int(round(rl / dt))

    def lookup(var: str, pop: str) -> torch.Tensor:
        if var == "weight" and pop == proj.name:
            return proj.weight.detach()
        if var == "eligibility" and pop == proj.name:
            return rule.eligibility
        if var == "dopamine":
            return protocol.dopamine[:, None]
        return net.variable(agent.state, pop, var)

    monitors = MonitorsCallback([(detail, record_from), (weights, 0)], lookup,
                                clock=lambda: protocol.step_index - 1, meta=_recordings_meta(exp))
    return RunParts(agent=agent, learner=RSTDPLearner(rule, proj.spec.pre, proj.spec.post), task=task,
                    reporter=reporter, optimizer=opt,
                    description=f"R-STDP n={rule.order} · distal reward · {B} trials", unit="step",
                    callbacks=[monitors], hint="lower rule.lr", summary=distal_summary)


# ------------------------------------------------------------------------------------------ Brian2
class Brian2DistalAgent:
    """Runs the distal-reward trials on Brian2, one trial after another, in chunks.

    ``act((trial, t))`` simulates the next ``task.next_chunk()`` steps of trial ``trial`` (building
    its Brian2 model when ``t == 0``, after ``brian2.seed(seed + trial)``); the reward protocol runs
    in Brian2's closed loop and writes the metrics rows of the report steps; the action is those
    rows. Trial 0's recordings are kept (and checkpointed) for ``recordings.npz``.
    """

    def __init__(self, exp, net, proj, rewarded, sample, task):
        self.exp, self.net, self.proj, self.rewarded, self.task = exp, net, proj, rewarded, task
        self.spec = exp.spiking_spec
        self.dt = self.spec.dt
        self.n_steps, self.every = exp.schedule.total, exp.schedule.report_every
        self.lif = [p.name for p in self.spec.populations if p.kind == "lif"]
        self.watch = torch.cat([rewarded[:1], sample[sample != rewarded[0]]]).tolist()
        r = exp.rule
        self.plasticity = {"projection": proj.name, "order": r.order, "delay": r.delay,
                           "normalize": None if r.normalize == "none" else r.normalize, "tau_plus": r.tau_plus,
                           "tau_minus": r.tau_minus, "a_plus": r.a_plus, "a_minus": r.a_minus, "lr": r.lr}
        rl = exp.run.record_last
        self.keep = self.n_steps if rl <= 0 else min(self.n_steps, int(round(rl / self.dt)))
        mon = exp.monitor.as_table()
        self.spike_pops = [e if isinstance(e, str) else e["population"] for e in mon.get("spikes", [])]
        self.state_monitors = [{k: st[k] for k in ("variable", "population", "indices", "every") if k in st}
                               for st in mon.get("state", [])]
        self.recorded: dict[str, np.ndarray] = {}  # trial 0's recordings (numeric arrays)
        self.target = "numpy"
        self.model = None
        self.rows: list[dict] = []
        self.trials_done = 0

    # one trial ---------------------------------------------------------------------------------
    def _start(self, b: int) -> None:
        from ..backends.brian2 import _b2, to_brian2
        from ..tasks.distal_reward import DistalReward

        exp, t, proj, dt = self.exp, self.exp.task, self.proj, self.dt
        protocol = DistalReward(proj.pre[self.rewarded[b:b + 1]].cpu(), proj.post[self.rewarded[b:b + 1]].cpu(), dt,
                                window=t.window, delay_min=t.delay_min, delay_max=t.delay_max,
                                dopamine_tau=t.dopamine_tau, dopamine_amp=t.dopamine_amp,
                                generator=torch.Generator().manual_seed(exp.seed + 1000 + b))
        pre_pop, post_pop = proj.spec.pre, proj.spec.post
        n_pre, n_post = self.net.pops[pre_pop].size, self.net.pops[post_pop].size
        counts = {p: 0 for p in self.lif}
        s_idx = int(self.rewarded[b])
        every, n_steps, lif, sizes = self.every, self.n_steps, self.lif, {p: self.net.pops[p].size for p in self.lif}

        def report(step: int) -> None:  # the row of the step just finished, read inside Brian2's step
            w = np.abs(np.asarray(self.model.synapses[proj.name].w[:], dtype=np.float64))
            others = np.delete(w, s_idx)
            steps_in_row = (step - 1) % every + 1
            row = {"time": step * dt, "seed": exp.seed + b, "w_rewarded": float(w[s_idx]),
                   "w_mean": float(others.mean()), "w_p99": float(np.quantile(others, 0.99)),
                   "rank": float((others < w[s_idx]).mean()), "rewards": int(protocol.rewards[0]),
                   "coincidences": int(protocol.coincidences[0])}
            row.update({f"rate_{p}": counts[p] / (sizes[p] * steps_in_row * dt) for p in lif})
            for p in lif:
                counts[p] = 0
            self.rows.append(row)

        def dopamine(step, spikes):
            zp = np.zeros((1, n_pre), dtype=np.float32)
            zq = np.zeros((1, n_post), dtype=np.float32)
            zp[0, spikes[pre_pop]] = 1
            zq[0, spikes[post_pop]] = 1
            d = float(protocol.step(torch.from_numpy(zp), torch.from_numpy(zq))[0])
            for p in lif:
                counts[p] += len(spikes[p])
            if step % every == every - 1 or step == n_steps - 1:
                report(step + 1)
            return d

        # the eligibility is not saved: one column keeps Brian2 from recording every synapse every step
        monitors = [{"variable": "weight", "population": proj.name, "indices": self.watch, "every": every},
                    {"variable": "eligibility", "population": proj.name, "indices": [s_idx], "every": n_steps}]
        if b == 0:
            monitors += self.state_monitors
        weights = {proj.name: proj.weight[b].detach().cpu().numpy().astype(np.float64)}
        b2 = _b2()
        b2.seed(int(exp.seed) + b)  # Brian2's own random numbers (membrane noise): one stream per trial
        self.model = to_brian2(self.net, weights=weights, plasticity=self.plasticity, dopamine=dopamine,
                               monitors=monitors, seed=exp.seed + b, steps=n_steps)
        self.target = self.model.target

    def _finish(self, b: int) -> None:
        if b == 0:
            keep = self.keep
            for k, v in self.model.recordings().items():
                if v.dtype.kind in "US":  # meta/backend, meta/target: added when saving
                    continue
                if k.startswith(("spikes/", "time/spikes/")) or k.startswith(("v/", "i/", "time/v/", "time/i/")):
                    if k.split("/")[-1] in self.spike_pops or not k.startswith(("spikes", "time/spikes")):
                        v = v[-keep:] if v.ndim >= 1 and v.shape[0] >= keep else v
                        self.recorded[k] = v
                elif not k.startswith(("eligibility/", "time/eligibility/", "indices/eligibility/")):
                    self.recorded[k] = v
        self.model = None
        self.trials_done = b + 1

    def act(self, obs):
        b, t = int(obs[0]), int(obs[1])
        if t == 0 or self.model is None:
            self._start(b)
        steps = self.task.next_chunk()
        self.rows = []
        self.model.run(steps)
        w = np.asarray(self.model.synapses[self.proj.name].w[:])
        if not np.isfinite(w).all():
            raise NonFiniteError(f"weights became NaN/Inf ({self.proj.name}, trial {b})")
        if t + steps >= self.n_steps:
            self._finish(b)
        return self.rows

    def recordings(self) -> dict:
        if not self.recorded:
            return {}
        out = dict(self.recorded)
        out[f"meta/highlight/{self.proj.name}"] = np.array([0])
        out["meta/backend"] = np.array("brian2")
        out["meta/target"] = np.array(self.target)
        return out

    # the protocol of agents --------------------------------------------------------------------
    def parameters(self):
        return []

    def constrain(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"recorded": dict(self.recorded), "target": self.target, "n_steps": self.n_steps,
                "trials_done": self.trials_done}

    def load_state_dict(self, s: dict) -> None:
        if int(s["n_steps"]) != self.n_steps and int(s["trials_done"]) > 0:
            raise ConfigError(f"task.duration cannot change when a run on Brian2 resumes: its completed trials ran "
                              f"{int(s['n_steps']) * self.dt:g} s each (now {self.n_steps * self.dt:g} s)")
        rec = {}
        for k, v in s["recorded"].items():
            rec[k] = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        self.recorded, self.target, self.model = rec, str(s["target"]), None
        self.trials_done = int(s["trials_done"])


def build_distal_brian2(exp, ctx: BuildContext) -> RunParts:
    from ..backends.brian2 import _b2
    from ..callbacks import RecordingsCallback
    from ..reporters_spiking import Brian2DistalReporter, distal_summary
    from ..tasks.distal_loop import TrialChunks

    _b2()  # a missing Brian2 is one line before anything runs
    net, proj, rule, protocol, rewarded, sample = build_distal(exp, ctx.generator, "cpu")
    B, sch = exp.seeds, exp.schedule
    task = TrialChunks(B, sch.total, sch.report_every)
    agent = Brian2DistalAgent(exp, net, proj, rewarded, sample, task)
    return RunParts(agent=agent, learner=NullLearner(), task=task, reporter=Brian2DistalReporter(exp.spiking_spec, task, B),
                    optimizer=None, description=f"R-STDP n={exp.rule.order} · distal reward · Brian2 · {B} trials",
                    unit="step", callbacks=[RecordingsCallback(agent.recordings)], hint="lower rule.lr",
                    summary=distal_summary)


# ------------------------------------------------------------------------------------------ config
@register_rule
class RSTDPConfig(RuleConfig):
    """Reward-modulated STDP with a cascade eligibility trace (distal reward; torch engine or Brian2)."""

    families: ClassVar[tuple[str, ...]] = ("spiking",)
    name: Literal["rstdp"]
    projection: Annotated[StrictStr, Field(min_length=1, max_length=200)] = "exc->exc"
    """The plastic projection ("pre->post")."""
    order: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    """Cascade states n (1 = the classic exponential eligibility trace)."""
    delay: Annotated[PosFloat, Field(le=1e4)] = 1.0
    """Kernel peak (s); order 1: the trace's time constant."""
    normalize: Literal["peak", "area", "none"] = "peak"
    """Normalisation of the eligibility kernel."""
    tau_plus: Annotated[PosFloat, Field(le=1e4)] = 20e-3
    """Time constant (s) of the presynaptic STDP trace."""
    tau_minus: Annotated[PosFloat, Field(le=1e4)] = 20e-3
    """Time constant (s) of the postsynaptic STDP trace."""
    a_plus: NonNegFloat = 1.0
    """Amplitude of potentiation (pre before post)."""
    a_minus: NonNegFloat = 1.5
    """Amplitude of depression (post before pre)."""

    def check(self, exp) -> None:
        t, spec = exp.task, exp.spiking_spec
        if t.name != "distal_reward":
            raise ValueError(f"'rule.name' = 'rstdp' applies to task 'distal_reward' only (got task {t.name!r})")
        names = [f"{pr.pre}->{pr.post}" for pr in spec.projections]
        if self.projection not in names:
            raise ValueError(f"'rule.projection' = {self.projection!r} is not a projection of "
                             f"{Path(exp.network.file).name}; have {names}")
        if self.delay < spec.dt:
            raise ValueError(f"'rule.delay' = {self.delay} s is shorter than the network's dt = {spec.dt} s")
        if t.projection != self.projection:
            raise ValueError(f"'task.projection' = {t.projection!r} and 'rule.projection' = {self.projection!r} must "
                             f"name the same projection")
        if t.delay_min > t.delay_max:
            raise ValueError(f"'task.delay_min' = {t.delay_min} exceeds 'task.delay_max' = {t.delay_max}")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        if exp.run.backend == "brian2":
            return build_distal_brian2(exp, ctx)
        return build_distal_torch(exp, ctx)
