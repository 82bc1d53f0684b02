"""The distal-reward run on the event-driven CPU engine (the registry's ``("event", "float")`` and
``("event", "fixed")``).

The engine simulates whole chunks of steps in compiled code (:mod:`~neuroprobe.backends.event.sim`
in float, :mod:`~neuroprobe.backends.event.fixed_sim` in Loihi's integers), B trials at once. One
loop step is one chunk; chunks end where something outside the compiled code must look at the
state: a report (``task.report_every``), a watched-weights sample, a checkpoint, the end of the run.

* agent (:class:`EventAgent`): runs the chunk the task asks for; the action is the chunk's
  result (spike counts per LIF population and trial, and the recordings of trial 0 when the chunk
  lies in the ``run.record_last`` window);
* task (:class:`EventChunks`): the schedule of chunks; the protocol (rewards, dopamine) runs inside
  the compiled chunk, so the task only counts steps;
* learner: none from outside (the plasticity runs inside the chunk); the agent checks the weights
  are finite after every chunk;
* reporter (:class:`EventDistalReporter`): the rows of :func:`~neuroprobe.reporters_spiking.distal_row`,
  the same cells as every other engine;
* callback (:class:`EventMonitors`): replays the chunk's recordings into the ``[monitor]`` sets and
  samples the watched weights, so ``recordings.npz`` has the torch engine's layout.

Draws: the network, the rewarded synapses and the sampled synapses come from
:func:`neuroprobe.backends.distal_network` (the same draws as every engine); noise, Poisson inputs
and reward delays are counter-based hash numbers (``run.rng = "hash"``), the same the torch engine
draws with ``run.rng = "hash"``: in float64 the two give identical spikes.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ...errors import ConfigError, NonFiniteError
from ...protocols import BuildContext, NullLearner, RunParts
from ...spiking.spec import NEURON_KINDS

__all__ = ["EventAgent", "EventChunks", "EventDistalReporter", "EventMonitors", "compile_distal",
           "chunk_boundaries"]

RECORDABLE = ("spikes", "v", "weight")


def chunk_boundaries(n_steps: int, every: int, checkpoint_every: int, record_from: int) -> list[int]:
    """Sorted 1-based step counts at which a chunk must end: every report (multiples of ``every``),
    the step after each (the watched weights are sampled after 0-based steps ``k·every``), each
    checkpoint multiple, the start of the recording window, and ``n_steps``."""
    b = set(range(every, n_steps + 1, every)) | set(range(1, n_steps + 1, every))
    if checkpoint_every > 0:
        b |= set(range(checkpoint_every, n_steps + 1, checkpoint_every))
    if 0 < record_from < n_steps:
        b.add(record_from)
    b.add(n_steps)
    return sorted(x for x in b if 0 < x <= n_steps)


class EventChunks:
    """Task: ``n_steps`` network steps in chunks ending at ``boundaries`` (see :func:`chunk_boundaries`).
    ``t``: the steps done; :meth:`next_chunk` the length of the next chunk (the agent asks for it:
    a resumed run with a longer budget has new boundaries). Observations are None."""

    def __init__(self, n_steps: int, boundaries: list[int], batch: int):
        self.n_steps, self.boundaries, self.B = int(n_steps), list(boundaries), int(batch)
        self.t = 0
        self._next = 0

    def next_chunk(self) -> int:
        """Steps of the next chunk (0 when the run is done)."""
        return self._chunk()

    def _chunk(self) -> int:
        while self._next < len(self.boundaries) and self.boundaries[self._next] <= self.t:
            self._next += 1
        if self._next >= len(self.boundaries):
            return 0
        return self.boundaries[self._next] - self.t

    def reset(self, seed: int):
        self._next = 0
        return None, {}

    def step(self, result):
        self.t += int(result["steps"])
        done = np.full(self.B, self.t >= self.n_steps)
        return None, np.zeros(self.B), done, np.zeros(self.B, dtype=bool), {"t": self.t}

    def finished(self) -> bool:
        return self.t >= self.n_steps

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, s: dict) -> None:
        self.t, self._next = int(s["t"]), 0


class EventAgent:
    """Runs chunks of the event engine's simulator (float or fixed point).

    sim: an ``EventSimulator`` / ``FixedEventSimulator`` (``run(steps, record_from, rec_spikes,
    rec_v)``, ``weights()``, ``state_dict``/``load_state_dict``); task: the chunk schedule; record_from: the first 0-based
    step recorded; rec_spikes, rec_v: populations whose spikes / membrane potentials are recorded."""

    def __init__(self, sim, task: EventChunks, record_from: int, rec_spikes: list[str], rec_v: list[str],
                 projection: str):
        self.sim, self.task, self.record_from = sim, task, int(record_from)
        self.rec_spikes, self.rec_v, self.projection = list(rec_spikes), list(rec_v), projection
        self.seconds = 0.0  # wall time inside the simulator (for the summary's speed)

    def act(self, obs):
        steps = self.task.next_chunk()
        t0 = self.sim.t
        start = time.perf_counter()
        res = self.sim.run(steps, self.record_from, self.rec_spikes, self.rec_v)
        self.seconds += time.perf_counter() - start
        for name in (None, *getattr(self.sim, "plastic", ())[1:]):  # every plastic projection
            if not np.isfinite(self.sim.weights() if name is None else self.sim.weights(name)).all():
                raise NonFiniteError(f"weights became NaN/Inf ({name or self.projection})")
        return {**res, "steps": steps, "t0_chunk": t0}

    def parameters(self):
        return []

    def constrain(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"sim": self.sim.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.sim.load_state_dict(_numpy_tree(s["sim"]))


def _numpy_tree(obj):
    """A checkpoint's tree with tensors as NumPy arrays (the simulators keep NumPy state)."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _numpy_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numpy_tree(v) for v in obj]
    return obj


class EventDistalReporter:
    """Distal-reward rows of the event engine: one row per trial at every report step, from the
    chunk's spike counts, the simulator's weights and its protocol counters."""

    key = ["time", "seed"]

    def __init__(self, spec, sim, rewarded: torch.Tensor, seed: int, n_steps: int, every: int, task: EventChunks):
        from ...reporters_spiking import distal_columns

        self.columns = distal_columns(spec)
        self.sim, self.rewarded, self.task = sim, rewarded, task
        self.seed, self.n_steps, self.every, self.dt = int(seed), int(n_steps), int(every), spec.dt
        self.B = int(rewarded.numel())
        self.sizes = {p.name: p.size for p in spec.populations if p.kind in NEURON_KINDS}
        self.steps_in_row = 0
        self.counts = self._zeros()
        self._postfix = ""

    def _zeros(self) -> dict:
        return {p: np.zeros(self.B, dtype=np.int64) for p in self.sizes}

    def rows(self, tr) -> list[dict]:
        from ...reporters_spiking import distal_rows

        res = tr.action
        for p in self.sizes:
            self.counts[p] += np.asarray(res["counts"][p], dtype=np.int64)
        self.steps_in_row += int(res["steps"])
        step = self.task.t
        if not (step % self.every == 0 or step == self.n_steps):
            return []
        out, self._postfix = distal_rows(step * self.dt, self.seed, self.sim.weights(), self.rewarded,
                                         np.asarray(self.sim.rewards), np.asarray(self.sim.coincidences), self.counts,
                                         self.sizes, self.steps_in_row, self.dt)
        self.counts = self._zeros()
        self.steps_in_row = 0
        return out

    def progress(self) -> tuple[int, int]:
        return self.task.t, self.n_steps

    def schedule_count(self) -> int:
        return self.task.t

    def where(self) -> str:
        return f"t = {self.task.t * self.dt:.3f} s"

    def postfix(self) -> str:
        return self._postfix

    def state_dict(self) -> dict:
        return {"steps_in_row": self.steps_in_row, "counts": {p: torch.from_numpy(c.copy()) for p, c in self.counts.items()}}

    def load_state_dict(self, s: dict) -> None:
        self.steps_in_row = int(s["steps_in_row"])
        self.counts = {p: np.asarray(_numpy_tree(s["counts"][p]), dtype=np.int64).copy() for p in self.sizes}


class EventMonitors:
    """Callback: the ``[monitor]`` set replayed from the chunk's recordings (trial 0), and the watched
    weights sampled at the steps the torch engine samples them; ``recordings.npz`` at the end.

    detail: the ``[monitor]`` MonitorSet (records 0-based steps >= record_from); weights: the
    watched-weights MonitorSet; dtype: the torch dtype the torch engine records spikes and v in."""

    name = "monitors"

    def __init__(self, detail, weights, record_from: int, sim, projection: str, dtype: torch.dtype, meta: dict,
                 filename: str = "recordings.npz"):
        from ...callbacks import MonitorsCallback

        self.sim, self.projection, self.dtype, self.record_from = sim, projection, dtype, int(record_from)
        self.detail, self.weights = detail, weights
        self._inner = MonitorsCallback([(detail, record_from), (weights, 0)], lambda v, p: None, lambda: -1, meta,
                                       filename)

    def on_start(self, loop) -> None:
        pass

    def on_step(self, loop, tr) -> None:
        res = tr.action
        t0, steps = int(res["t0_chunk"]), int(res["steps"])
        last = t0 + steps - 1  # 0-based index of the chunk's last step
        if len(self.detail) and last >= self.record_from:
            first = int(res.get("t0", max(t0, self.record_from)))
            spikes, v = res.get("spikes", {}), res.get("v", {})
            for k in range(max(first, t0), last + 1):
                i = k - first

                def lookup(var: str, pop: str, i=i) -> torch.Tensor:
                    src = spikes if var == "spikes" else v
                    return torch.from_numpy(np.asarray(src[pop][i])).to(self.dtype)[None]
                self.detail.record(k, lookup)
        if self.weights.monitors[0].due(last):
            w = torch.from_numpy(self.sim.weights())
            self.weights.record(last, lambda var, pop: w)

    def on_end(self, loop) -> None:
        self._inner.on_end(loop)

    def state_dict(self) -> dict:
        return self._inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._inner.load_state_dict(state)


def _recorded(exp) -> tuple[list[str], list[str]]:
    """Populations whose spikes and v the ``[monitor]`` needs (trial 0); one-line errors for what the
    event engine does not record."""
    rec_spikes, rec_v = [], []
    mon = exp.monitor
    for e in list(mon.spikes) + list(mon.rate):
        pop = e if isinstance(e, str) else e.population
        if not isinstance(e, str) and e.batch_index != 0:
            raise ConfigError(f"[monitor] {pop!r}: batch_index = {e.batch_index}: the event engine records trial 0")
        if pop not in rec_spikes:
            rec_spikes.append(pop)
    for e in mon.state:
        if e.variable not in ("v", "spikes"):
            raise ConfigError(f"[monitor] state {e.variable!r} of {e.population!r}: the event engine records "
                              f"{list(RECORDABLE)} (run.backend = 'event')")
        if e.batch_index != 0:
            raise ConfigError(f"[monitor] {e.population!r}: batch_index = {e.batch_index}: the event engine records "
                              "trial 0")
        target = rec_v if e.variable == "v" else rec_spikes
        if e.population not in target:
            target.append(e.population)
    return rec_spikes, rec_v


def _float_sim(exp, ctx: BuildContext):
    """(sim, spec, projection name, rewarded, sample) of the float event engine."""
    from ...spec import CascadeKernel, RSTDPSpec
    from .. import distal_network, run_dtype
    from .sim import DistalParams, EventSimulator

    from ..torch_run import set_rewarded_weight

    B, r, t = exp.seeds, exp.rule, exp.task
    net, proj, rewarded, sample = distal_network(exp, ctx.generator, "cpu", run_dtype(exp))
    # the rewarded projection first (the reported weights), then the other plastic ones in their order
    names = [proj.name] + [n for n in r.projections if n != proj.name]
    rules = [RSTDPSpec(projection=n, kernel=CascadeKernel(r.order, r.delay, r.normalize), lr=r.lr,
                       tau_plus=r.tau_plus, tau_minus=r.tau_minus, a_plus=r.a_plus, a_minus=r.a_minus) for n in names]
    set_rewarded_weight(proj, rewarded, t.rewarded_weight)  # per-trial weights of the rewarded projection
    distal = DistalParams(proj.name, proj.pre[rewarded].tolist(), proj.post[rewarded].tolist(), window=t.window,
                          delay_min=t.delay_min, delay_max=t.delay_max, dopamine_tau=t.dopamine_tau,
                          dopamine_amp=t.dopamine_amp)
    sim = EventSimulator(net, batch=B, noise_seed=int(exp.seed), rule=rules[0] if len(rules) == 1 else rules,
                         distal=distal, tonic_dopamine=t.tonic_dopamine if t.tonic_dopamine else None)
    return sim, proj.name, rewarded, sample


def _fixed_sim(exp, ctx: BuildContext):
    from ..fixed.distal_run import fixed_distal_setup
    from .fixed_sim import FixedEventSimulator

    su = fixed_distal_setup(exp, ctx.generator)
    sim = FixedEventSimulator(su)
    sim.compile()  # compiled now (or loaded from numba's cache), so the progress bar can say how long it took
    return sim, su.proj.name, su.rewarded, su.sample


def compile_distal(exp, ctx: BuildContext) -> RunParts:
    """The distal-reward run on the event engine, float or fixed point (``run.precision``)."""
    from ...reporters_spiking import distal_summary
    from .. import distal_monitor_sets, distal_recordings_meta, run_dtype
    from . import available

    if not available():  # a missing numba is one line before anything is built
        raise ConfigError("run.backend = 'event' needs numba (pip install numba); it does not import here")
    import numba

    rec_spikes, rec_v = _recorded(exp)
    # run.threads: threads over the trials (each trial sequential: results do not depend on it)
    numba.set_num_threads(max(1, min(int(exp.run.threads), numba.config.NUMBA_NUM_THREADS)))
    fixed = exp.run.precision == "fixed"
    sim, pname, rewarded, sample = (_fixed_sim if fixed else _float_sim)(exp, ctx)
    spec, B, sch = exp.spiking_spec, exp.seeds, exp.schedule
    n_steps, every = sch.total, sch.report_every
    detail, wmon, record_from = distal_monitor_sets(exp, pname, rewarded, sample, n_steps)
    task = EventChunks(n_steps, chunk_boundaries(n_steps, every, sch.checkpoint_every, record_from), B)
    agent = EventAgent(sim, task, record_from, rec_spikes, rec_v, pname)
    reporter = EventDistalReporter(spec, sim, rewarded, exp.seed, n_steps, every, task)
    meta = {**distal_recordings_meta(exp), "backend": np.array("event"), "precision": np.array(exp.run.precision)}
    monitors = EventMonitors(detail, wmon, record_from, sim, pname, torch.float64 if fixed else run_dtype(exp), meta)
    what = "fixed point" if fixed else exp.run.dtype
    if len(exp.rule.projections) > 1:
        what += f" · plastic {', '.join(exp.rule.projections)}"
    if exp.task.tonic_dopamine:
        what += f" · tonic dopamine {exp.task.tonic_dopamine:g}"
    return RunParts(agent=agent, learner=NullLearner(), task=task, reporter=reporter, optimizer=None,
                    description=f"R-STDP n={exp.rule.order} · distal reward · event engine ({what}) · {B} trials"
                                f" · kernels ready in {sim.compile_seconds:.1f} s",
                    unit="step", callbacks=[monitors], hint="lower rule.lr", summary=distal_summary)
