"""The distal-reward run on Lava (``run.backend = "lava"``): Lava's jobs, then the run directory.

Fixed point (``run.precision = "fixed"``): the setup of the torch fixed-point run
(:func:`~neuroprobe.backends.fixed.distal_run.fixed_distal_setup`: same draws, same integers) as a
Lava fixed_pt job per trial (``fixed_job``: the network, its cascade R-STDP on chip
(``CascadeRSTDPConn``) and the reward protocol on chip (``DistalRewardSource``); noise seed
``seed + trial``). The metrics rows come from Lava's weight and reward snapshots every report and
its spikes; they are byte-identical to the torch fixed-point run's.

Float (``run.precision = "float"``): the float network (float64, shared weights) as a Lava
floating_pt job per trial (``float_job``: no noise, no refractory period, ``v_reset = 0``; what
cannot be mapped is one line). Lava's floating_pt models have no plastic connection, so the
weights stay as they are; the rows' ``rewards``/``coincidences`` are what the float reward
protocol (:class:`~neuroprobe.tasks.distal_reward.DistalReward`, seed ``seed + 1000 + trial``, as
on Brian2) counts on Lava's spikes.

Through the loop: trials run as one chunk (:class:`~neuroprobe.tasks.distal_loop.TrialChunks`
of one trial of T steps, in chunks of one report): the agent's first step runs every trial's job
(or reuses its result: ``lava/trial-<b>.npz`` in the run directory holds each finished job's
result with its digest, so a run interrupted after Lava finished reruns nothing on Lava), each
step returns the rows of one report (all trials, in the order of the torch engine), the reporter
writes them. ``rate_<population>`` needs every spike: Lava records the LIF populations' spikes
for runs of at most :data:`SPIKE_CELLS` steps × neurons; longer runs write ``nan`` rates (the
runner has no per-report spike counter). ``recordings.npz``: trial 0's ``[monitor]`` spikes over
the last ``run.record_last`` seconds and the watched weights at every report.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError
from ...protocols import BuildContext, Callback, NullLearner, RunParts

__all__ = ["LavaDistalAgent", "compile_distal", "SPIKE_CELLS", "lava_timeout"]

SPIKE_CELLS = 10_000_000  # steps x LIF neurons whose every spike Lava records (Monitors keep them in memory)


def lava_timeout(steps: int) -> float:
    """Seconds before a Lava job is killed: 5 min plus 0.1 s per step (Lava's fixed_pt simulation
    runs a 1000-neuron network at about 70 steps/s)."""
    return 300.0 + 0.1 * int(steps)


def _digest(job: dict, arrays: dict) -> str:
    h = hashlib.sha256(json.dumps(job, sort_keys=True).encode())
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def run_cached(job: dict, arrays: dict, path: Path | None, timeout: float, progress: bool, desc: str) -> dict:
    """Run ``job`` on Lava, or reuse ``path`` when it holds the result of the very same job."""
    from . import run_job

    digest = _digest(job, arrays)
    if path is not None and path.is_file():
        try:
            with np.load(path) as f:
                if str(f["job_hash"]) == digest:
                    print(f"reusing the Lava result of the same job in {path}")
                    return {k: f[k] for k in f.files if k != "job_hash"}
        except (OSError, ValueError, KeyError):
            pass  # a torn or foreign file: run again
    res = run_job(job, arrays, timeout=timeout, progress=progress, desc=desc)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.npz")
        np.savez(tmp, job_hash=np.array(digest), **res)
        tmp.replace(path)
    return res


class LavaDistalAgent:
    """Runs the trials' Lava jobs on its first step and then hands out one report's rows per step.

    ``obs = (0, t)`` (:class:`TrialChunks` over one trial of T steps in chunks of ``every``): the
    rows of the report at step ``t + every`` (or T). ``out``: the run directory (set when the loop
    starts; Lava's results are cached there)."""

    def __init__(self, exp, precision: str, setup, task, rows_of):
        self.exp, self.precision, self.su, self.task, self.rows_of = exp, precision, setup, task, rows_of
        self.out: Path | None = None
        self.rows: list[list[dict]] | None = None
        self.recorded: dict = {}

    def act(self, obs):
        if self.rows is None:
            self.rows, self.recorded = self.rows_of(self.out)
        t = int(obs[1])
        return self.rows[t // self.su.every]

    def recordings(self) -> dict:
        return dict(self.recorded)

    def parameters(self):
        return []

    def constrain(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, s: dict) -> None:
        pass


class _RunDir(Callback):
    """Tells the agent the run directory when the loop starts; writes its recordings at the end."""

    name = "lava"

    def __init__(self, agent: LavaDistalAgent):
        self.agent = agent

    def on_start(self, loop) -> None:
        self.agent.out = Path(loop.run.path)

    def on_end(self, loop) -> None:
        from ...monitors import save_recordings

        rec = self.agent.recordings()
        if rec:
            save_recordings(Path(loop.run.path) / "recordings.npz", rec)


class _Setup:
    """What the Lava run needs besides the jobs: steps, report interval, rewarded and watched synapses."""

    def __init__(self, steps, every, rewarded, sample):
        self.steps, self.every, self.rewarded, self.sample = steps, every, rewarded, sample


def _report_steps(T: int, every: int) -> list[int]:
    steps = list(range(every, T + 1, every))
    if not steps or steps[-1] != T:
        steps.append(T)
    return steps


def _spike_pops(exp) -> list[str]:
    return [e if isinstance(e, str) else e.population for e in exp.monitor.spikes]


def compile_distal(exp, ctx: BuildContext) -> RunParts:
    """The distal-reward run on Lava (the registry's ``("lava", "fixed")`` and ``("lava", "float")``)."""
    from ...reporters_spiking import ChunkRowsReporter, distal_row, distal_summary
    from ...tasks.distal_loop import TrialChunks
    from .. import distal_recordings_meta
    from . import lava_status

    st = lava_status()
    if not st["ok"]:
        raise ConfigError(f"run.backend = 'lava' needs the Lava environment: {st['detail']}")
    precision = exp.run.precision
    spec, B = exp.spiking_spec, exp.seeds
    dt = spec.dt
    T, every = exp.schedule.total, exp.schedule.report_every
    seed = int(exp.seed)
    lif = [p.name for p in spec.populations if p.kind == "lif"]
    sizes = {p.name: p.size for p in spec.populations}
    full = T * sum(sizes[p] for p in lif) <= SPIKE_CELLS
    rl = exp.run.record_last
    K = T if rl <= 0 else min(T, int(round(rl / dt)))
    mon_pops = _spike_pops(exp)
    timeout = lava_timeout(T)
    progress = bool(exp.run.progress)
    report_steps = _report_steps(T, every)

    if precision == "fixed":
        from ..fixed.distal_run import fixed_distal_setup
        from ..fixed.rstdp import FixedCascadeRSTDP

        su = fixed_distal_setup(exp, ctx.generator)
        fx, proj = su.fx, su.proj
        rule = FixedCascadeRSTDP(proj, 1, su.prm)  # trial 0's initial accumulators (the same for every trial)
        w0 = rule.w_acc[0].numpy().copy()
        rewarded, sample, inputs = su.rewarded, su.sample, su.inputs
        pre_pop, post_pop, pname = proj.pre_pop, proj.post_pop, proj.name
    else:
        from ...neurons.inputs import poisson_spikes
        from .. import distal_network
        from . import float_job
        from ..fixed.distal_run import inputs_spec

        if not full:
            raise ConfigError(f"run.backend = 'lava' with run.precision = 'float' records every spike (the reward "
                              f"protocol runs on the host): {T} steps x {sum(sizes[p] for p in lif)} LIF neurons is "
                              f"more than {SPIKE_CELLS}; shorten task.duration")
        net, fproj, rewarded, sample = distal_network(exp, ctx.generator, "cpu", torch.float64, spec=inputs_spec(spec))
        inputs = {p.name: poisson_spikes(torch.full((T, B * p.size), p.rate, dtype=torch.float64), dt,
                                         ctx.generator).to(torch.uint8).view(T, B, p.size)
                  for p in spec.populations if p.kind == "poisson"}
        float_job(net, T, {k: v[:, 0].numpy() for k, v in inputs.items()})  # what cannot be mapped: one line now
        pre_pop, post_pop, pname = fproj.spec.pre, fproj.spec.post, fproj.name
        w_float = fproj.weight.detach().double().abs().numpy()
    watch = torch.cat([rewarded[:1], sample[sample != rewarded[0]]]).numpy()

    def trial_job(b: int) -> tuple[dict, dict, str]:
        x = {k: v[:, b].numpy() for k, v in inputs.items()}
        record = {"spikes": lif} if full else {}
        if precision == "fixed":
            from ..lava import fixed_job

            job, arrays = fixed_job(fx, T, x, record=record,
                                    plastic={pname: {"params": su.prm.as_dict(), "w_acc": w0}},
                                    distal={"pre_pop": pre_pop, "post_pop": post_pop, "params": su.dparams[b]},
                                    report_every=every)
            job["noise_seed"] = seed + b
            desc = f"Lava fixed_pt · trial {b}"
        else:
            job, arrays = float_job(net, T, x, record=record)
            desc = f"Lava floating_pt · trial {b}"
        window = [p for p in mon_pops if not (full and p in lif)]
        if window and b == 0:
            job["record_window"] = {"steps": K, "spikes": window}
        return job, arrays, desc

    def trial_rows(b: int, res: dict) -> list[dict]:
        """The rows of trial b at every report, from its Lava result."""
        k = int(rewarded[b])
        counts = {p: (res[f"spikes/{p}"] if full else None) for p in lif}
        if precision == "fixed":
            W, R = res[f"w_hist/{pname}"], res["rewards_hist"]
        else:
            from ...tasks.distal_reward import DistalReward

            t = exp.task
            protocol = DistalReward(fproj.pre[k:k + 1], fproj.post[k:k + 1], dt, window=t.window,
                                    delay_min=t.delay_min, delay_max=t.delay_max, dopamine_tau=t.dopamine_tau,
                                    dopamine_amp=t.dopamine_amp,
                                    generator=torch.Generator().manual_seed(seed + 1000 + b))
            zp = torch.from_numpy(res[f"spikes/{pre_pop}"].astype(np.float32))
            zq = torch.from_numpy(res[f"spikes/{post_pop}"].astype(np.float32))
            R = []
            for s in range(T):
                protocol.step(zp[s:s + 1], zq[s:s + 1])
                if s + 1 in report_steps:
                    R.append((int(protocol.rewards[0]), int(protocol.coincidences[0])))
        rows, prev = [], 0
        for i, s in enumerate(report_steps):
            if precision == "fixed":
                w = np.abs(W[i].astype(np.float64)) / 2 ** su.prm.frac_bits * proj.scale_w
            else:
                w = w_float
            spikes = ({p: (float(counts[p][prev:s].sum()), sizes[p]) for p in lif} if full
                      else {p: (float("nan"), sizes[p]) for p in lif})
            rows.append(distal_row(s * dt, seed + b, w, k, R[i][0], R[i][1], spikes, s - prev, dt))
            prev = s
        return rows

    def recordings(res: dict) -> dict:
        """Trial 0's recordings: [monitor] spikes over the last K steps, the watched weights per report."""
        rec = {}
        for p in mon_pops:
            data = res[f"spikes/{p}"][-K:] if f"spikes/{p}" in res else res[f"window/{p}"]
            rec[f"spikes/{p}"] = np.asarray(data, dtype=np.uint8)
            rec[f"time/spikes/{p}"] = np.arange(T - len(data), T) * dt
            rec[f"indices/spikes/{p}"] = np.arange(sizes[p], dtype=np.int64)
        key = f"weight/{pname}"
        if precision == "fixed":
            W = res[f"w_hist/{pname}"][:, watch].astype(np.float64)
            rec[key] = (np.abs(W) / 2 ** su.prm.frac_bits * proj.scale_w).astype(np.float32)
        else:
            rec[key] = np.tile(w_float[watch].astype(np.float32), (len(report_steps), 1))
        rec[f"time/{key}"] = np.asarray(report_steps, dtype=np.float64) * dt
        rec[f"indices/{key}"] = watch.astype(np.int64)
        rec["meta/dt"] = np.asarray(dt, dtype=np.float64)
        for k, v in {**distal_recordings_meta(exp), "backend": np.array("lava"),
                     "precision": np.array(precision)}.items():
            rec[f"meta/{k}"] = np.asarray(v)
        return rec

    def rows_of(out: Path | None) -> tuple[list[list[dict]], dict]:
        per_trial, rec = [], {}
        for b in range(B):
            job, arrays, desc = trial_job(b)
            res = run_cached(job, arrays, out / "lava" / f"trial-{b}.npz" if out is not None else None, timeout,
                             progress, desc)
            per_trial.append(trial_rows(b, res))
            if b == 0:
                rec = recordings(res)
        return [[per_trial[b][i] for b in range(B)] for i in range(len(report_steps))], rec

    task = TrialChunks(1, T, every)
    agent = LavaDistalAgent(exp, precision, _Setup(T, every, rewarded, sample), task, rows_of)
    return RunParts(agent=agent, learner=NullLearner(), task=task, reporter=ChunkRowsReporter(spec, task, 1),
                    optimizer=None, description=f"R-STDP · distal reward · Lava {precision} · {B} trials",
                    unit="step", callbacks=[_RunDir(agent)], hint="lower rule.lr", summary=distal_summary)
