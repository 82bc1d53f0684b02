"""The distal-reward run on Brian2: the run loop's parts for ``run.backend = "brian2"``.

:class:`Brian2DistalAgent` runs the same network as the torch engine (connectivity and initial
weights from :func:`neuroprobe.backends.distal_network`, so the rewarded and sampled synapses are
the same), the same cascade R-STDP and the same reward protocol, driven in closed loop by
Brian2's network operation. Trials run one after another, each in chunks of one report interval
per loop step; Brian2's random numbers are seeded per trial (``brian2.seed(seed + trial)``), so a
run is reproducible and resumes at trial boundaries (an interrupted trial is rerun from its
start). Same metrics columns, each row :func:`~neuroprobe.reporters_spiking.distal_row`'s;
``recordings.npz`` holds trial 0's ``[monitor]`` spikes and states over the last
``run.record_last`` seconds and the watched weights every report.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError, NonFiniteError
from ..protocols import BuildContext, NullLearner, RunParts

__all__ = ["Brian2DistalAgent", "compile_distal"]


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
        from ..reporters_spiking import distal_row
        from ..tasks.distal_reward import DistalReward
        from .brian2 import _b2, to_brian2

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
            w = np.asarray(self.model.synapses[proj.name].w[:], dtype=np.float64)
            steps_in_row = (step - 1) % every + 1
            self.rows.append(distal_row(step * dt, exp.seed + b, w, s_idx, int(protocol.rewards[0]),
                                        int(protocol.coincidences[0]), {p: (counts[p], sizes[p]) for p in lif},
                                        steps_in_row, dt))
            for p in lif:
                counts[p] = 0

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
        w0 = proj.weight.detach()
        weights = {proj.name: (w0[b] if w0.dim() == 2 else w0).cpu().numpy().astype(np.float64)}
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


def compile_distal(exp, ctx: BuildContext) -> RunParts:
    """The distal-reward run on Brian2 (the registry's ``("brian2", "float")``)."""
    from ..callbacks import RecordingsCallback
    from ..reporters_spiking import ChunkRowsReporter, distal_summary
    from ..tasks.distal_loop import TrialChunks
    from . import distal_network
    from .brian2 import _b2

    _b2()  # a missing Brian2 is one line before anything runs
    net, proj, rewarded, sample = distal_network(exp, ctx.generator, "cpu")
    B, sch = exp.seeds, exp.schedule
    task = TrialChunks(B, sch.total, sch.report_every)
    agent = Brian2DistalAgent(exp, net, proj, rewarded, sample, task)
    return RunParts(agent=agent, learner=NullLearner(), task=task, reporter=ChunkRowsReporter(exp.spiking_spec, task, B),
                    optimizer=None, description=f"R-STDP n={exp.rule.order} · distal reward · Brian2 · {B} trials",
                    unit="step", callbacks=[RecordingsCallback(agent.recordings)], hint="lower rule.lr",
                    summary=distal_summary)
