"""Run components of deployments: networks stepped on given inputs, frozen or learning with the
chip's rule, run by :class:`~neuroprobe.loop.Loop` (so the torch side of ``neuroprobe deploy``
and the float twin of an on-chip run are resumable run directories like any other run).

* :class:`GivenInputs` (task) and :class:`NetworkAgent` (agent): networks stepped on pre-drawn
  inputs, with an optional reward protocol (defined in :mod:`neuroprobe.backends.fixed.parts`,
  re-exported here);
* learners: :class:`NullLearner` (frozen network), :class:`FixedRSTDPLearner` (the integer
  cascade R-STDP, :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP`, weights changed in
  place; from :mod:`neuroprobe.backends.fixed.parts`) and :class:`FloatRSTDPLearner` (the float
  ``CascadeRSTDP``: ``.grad`` at reward steps, applied by SGD);
* reporters: :class:`DistalReporter` (the distal-reward rows ``time,seed,w_rewarded,w_mean,w_p99,
  rank,rewards,coincidences`` every ``every`` steps and at the last) and :class:`SpikeCountReporter`;
* :class:`Agreement` (callback): compares the torch engine step by step with a reference run
  (Lava's recordings), keeping only counters, so the comparison survives an interruption;
* :func:`run_side`: runs such parts in a run directory, resuming its checkpoint when it belongs
  to the same job.

These are adapters, not rules: no config is registered.
"""
from __future__ import annotations

import tomllib
from typing import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from ..backends.fixed.parts import (FixedRSTDPLearner, GivenInputs, NetworkAgent, load_protocol_state,
                                    protocol_state)
from ..loop import Loop
from ..protocols import Callback, NullLearner, RuleLearner, RunParts, Transition
from ..reporters_spiking import DISTAL_COLUMNS, distal_row
from ..rundir import RunDir

__all__ = ["GivenInputs", "NetworkAgent", "NullLearner", "FixedRSTDPLearner", "FloatRSTDPLearner",
           "DistalReporter", "SpikeCountReporter", "Agreement", "fixed_distal_parts", "float_distal_parts",
           "open_loop_parts", "run_side", "protocol_state", "load_protocol_state", "distal_row"]


# ---------------------------------------------------------------------------------- learners
class FloatRSTDPLearner(RuleLearner):
    """The float ``CascadeRSTDP``: eligibility every step; at steps with dopamine d ≠ 0,
    ``.grad = −(d · unit) · e`` (``unit``: float dopamine per unit of the task's reward), applied by
    the optimizer (SGD: ``w −= lr · grad``)."""

    def __init__(self, rule, pre: str, post: str, unit: float = 1.0):
        self.rule, self.pre, self.post, self.unit = rule, pre, post, float(unit)

    def learn(self, tr: Transition) -> bool:
        z = tr.action
        with torch.no_grad():
            self.rule.step(z[self.pre], z[self.post])
            d = tr.reward
            if not bool((d != 0).any()):
                return False
            self.rule.reinforce(d.double() * self.unit)
        return True


# ---------------------------------------------------------------------------------- reporters
class _StepReporter:
    """Counts steps of a T-step run; a row every ``every`` steps and at the last step."""

    def __init__(self, steps: int, every: int, dt: float, seed: int):
        self.T, self.every, self.dt, self.seed = int(steps), int(every), float(dt), int(seed)
        self.t = 0

    def _due(self) -> bool:
        return self.t % self.every == 0 or self.t == self.T

    def progress(self) -> tuple[int, int]:
        return self.t, self.T

    def schedule_count(self) -> int:
        return self.t

    def where(self) -> str:
        return f"t = {self.t * self.dt:.3f} s"

    def postfix(self) -> str:
        return ""

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, s: dict) -> None:
        self.t = int(s["t"])


class DistalReporter(_StepReporter):
    """The distal-reward rows: the rewarded synapse ``k``'s |weight| against the others (float
    units, from ``weights()``: (S,) float64 |w| of trial 0) and the protocol's counts
    ``counts() -> (rewards, coincidences)``; each row is
    :func:`~neuroprobe.reporters_spiking.distal_row`'s (the one row of every engine)."""

    columns = DISTAL_COLUMNS
    key = ["time", "seed"]

    def __init__(self, steps: int, every: int, dt: float, seed: int, rewarded: int,
                 weights: Callable[[], np.ndarray], counts: Callable[[], tuple[int, int]]):
        super().__init__(steps, every, dt, seed)
        self.k, self.weights, self.counts = int(rewarded), weights, counts
        self.last = ""

    def rows(self, tr: Transition) -> list[dict]:
        self.t += 1
        if not self._due():
            return []
        row = distal_row(self.t * self.dt, self.seed, self.weights(), self.k, *self.counts())
        self.last = f"w* {row['w_rewarded']} (rank {row['rank']})"
        return [row]

    def postfix(self) -> str:
        return self.last


class SpikeCountReporter(_StepReporter):
    """Rows ``time,seed,spikes_<pop>…``: the spikes of each population since the previous row."""

    key = ["time", "seed"]

    def __init__(self, steps: int, every: int, dt: float, seed: int, pops: list[str]):
        super().__init__(steps, every, dt, seed)
        self.pops = list(pops)
        self.columns = ["time", "seed"] + [f"spikes_{p}" for p in self.pops]
        self.count = {p: 0 for p in self.pops}

    def rows(self, tr: Transition) -> list[dict]:
        self.t += 1
        for p in self.pops:
            self.count[p] += int(tr.action[p].sum())
        if not self._due():
            return []
        row = {"time": f"{self.t * self.dt:.3f}", "seed": self.seed, **{f"spikes_{p}": self.count[p] for p in self.pops}}
        self.count = {p: 0 for p in self.pops}
        return [row]

    def state_dict(self) -> dict:
        return {"t": self.t, "count": dict(self.count)}

    def load_state_dict(self, s: dict) -> None:
        self.t = int(s["t"])
        self.count = {p: int(s["count"][p]) for p in self.pops}


# ---------------------------------------------------------------------------------- agreement
class Agreement(Callback):
    """Compares the torch engine with a reference run (Lava's recordings) as the loop goes.

    spikes: per population the reference's (K, N) spikes of the last K steps of the T-step run;
    voltages: per population the reference's (K, N) voltages (float model units) of the same steps;
    weights: ``(history (R, S), current () -> (S,) array, every)``: the reference's weights at each
    report (every ``every`` steps and the last) against the torch engine's. Only counters are kept
    (and checkpointed); :meth:`report` gives them."""

    name = "agreement"

    def __init__(self, steps: int, agent: NetworkAgent, spikes: Mapping[str, np.ndarray] | None = None,
                 voltages: Mapping[str, np.ndarray] | None = None, weights: tuple | None = None):
        self.T, self.agent = int(steps), agent
        self.spikes, self.voltages = dict(spikes or {}), dict(voltages or {})
        self.weights = weights
        self.K = {p: len(a) for p, a in self.spikes.items()}
        self.t = 0
        self.reset()

    def reset(self) -> None:
        self.mismatch = {p: 0 for p in self.spikes}
        self.count = {p: 0 for p in self.spikes}     # torch spikes in the compared steps
        self.max_dv = {p: 0.0 for p in self.voltages}
        self.reports = 0
        self.reports_equal = 0

    def on_step(self, loop: Loop, tr: Transition) -> None:
        self.t += 1
        t = self.t
        for p, ref in self.spikes.items():
            i = t - (self.T - self.K[p]) - 1
            if i >= 0:
                ours = tr.action[p][0].to(torch.uint8).numpy()
                self.mismatch[p] += int((ours != ref[i]).sum())
                self.count[p] += int(ours.sum())
        for p, ref in self.voltages.items():
            i = t - (self.T - len(ref)) - 1
            if i >= 0:
                dv = float(np.abs(ref[i] - self.agent.voltage(p).numpy()).max())
                self.max_dv[p] = max(self.max_dv[p], dv)
        if self.weights is not None:
            hist, current, every = self.weights
            if t % every == 0 or t == self.T:
                if self.reports < len(hist) and np.array_equal(hist[self.reports], current()):
                    self.reports_equal += 1
                self.reports += 1

    def report(self) -> dict:
        out = {"spikes": {p: {"mismatches": self.mismatch[p], "torch_spikes": self.count[p],
                              "compared": int(self.spikes[p].size)} for p in self.spikes},
               "max_abs_dv": dict(self.max_dv)}
        if self.weights is not None:
            n = len(self.weights[0])
            out["weights_identical_all_reports"] = self.reports == n and self.reports_equal == n
        return out

    def state_dict(self) -> dict:
        return {"t": self.t, "mismatch": dict(self.mismatch), "count": dict(self.count), "max_dv": dict(self.max_dv),
                "reports": self.reports, "reports_equal": self.reports_equal}

    def load_state_dict(self, s: dict) -> None:
        if not s:
            return
        self.t, self.reports, self.reports_equal = int(s["t"]), int(s["reports"]), int(s["reports_equal"])
        self.mismatch = {p: int(s["mismatch"][p]) for p in self.spikes}
        self.count = {p: int(s["count"][p]) for p in self.spikes}
        self.max_dv = {p: float(s["max_dv"][p]) for p in self.voltages}


# ---------------------------------------------------------------------------------- parts
def open_loop_parts(model, inputs: Mapping[str, Tensor], steps: int, every: int, seed: int,
                    reference: dict | None = None, description: str = "torch") -> RunParts:
    """A frozen network (float or fixed point) on given inputs; rows of spike counts.
    reference: ``{"spikes": …, "voltages": …}`` for :class:`Agreement`."""
    fixed = hasattr(model, "fixed_projections")
    agent = NetworkAgent(model)
    lif = [p.name for p in model.spec.populations if p.kind == "lif"]
    cbs = [Agreement(steps, agent, **(reference or {}))]
    return RunParts(agent=agent, learner=NullLearner(),
                    task=GivenInputs(inputs, steps, torch.bool if fixed else torch.float64),
                    reporter=SpikeCountReporter(steps, every, model.spec.dt, seed, lif), optimizer=None,
                    description=description, unit="step", callbacks=cbs)


def fixed_distal_parts(fx, rule, protocol, inputs: Mapping[str, Tensor], steps: int, every: int, seed: int,
                       rewarded: int, reference: dict | None = None, description: str = "torch fixed-point"
                       ) -> RunParts:
    """The distal-reward protocol and the integer R-STDP (``rule``: a FixedCascadeRSTDP on one of
    ``fx``'s projections) on the fixed-point network, given inputs, one trial."""
    proj = rule.proj
    agent = NetworkAgent(fx)
    frac, scale_w = rule.p.frac_bits, proj.scale_w

    def weights() -> np.ndarray:
        return np.abs(rule.w_acc[0].numpy().astype(np.int32).astype(np.float64)) / 2 ** frac * scale_w

    def counts() -> tuple[int, int]:
        return int(protocol.rewards[0]), int(protocol.coincidences[0])

    ref = dict(reference or {})
    hist = ref.pop("w_hist", None)
    if hist is not None:
        ref["weights"] = (hist, lambda: rule.w_acc[0].numpy().astype(np.int32), every)
    return RunParts(agent=agent, learner=FixedRSTDPLearner(rule, proj.pre_pop, proj.post_pop),
                    task=GivenInputs(inputs, steps, torch.bool, protocol=protocol, pops=(proj.pre_pop, proj.post_pop)),
                    reporter=DistalReporter(steps, every, fx.spec.dt, seed, rewarded, weights, counts), optimizer=None,
                    description=description, unit="step", callbacks=[Agreement(steps, agent, **ref)])


def float_distal_parts(net, proj, rule, protocol, inputs: Mapping[str, Tensor], steps: int, every: int, seed: int,
                       rewarded: int, lr: float, unit: float, currents: Callable[[int], dict] | None = None,
                       description: str = "float twin") -> RunParts:
    """The float twin: ``net`` (float) with ``currents`` (the chip's noise), the chip's reward protocol
    (integer dopamine × ``unit``) and the float cascade R-STDP ``rule`` on ``proj`` with SGD(lr)."""
    agent = NetworkAgent(net, plastic=(proj,))

    def weights() -> np.ndarray:
        w = proj.weight.detach().abs().double()
        return (w[0] if w.dim() == 2 else w).view(-1).numpy()

    def counts() -> tuple[int, int]:
        return int(protocol.rewards[0]), int(protocol.coincidences[0])

    return RunParts(agent=agent, learner=FloatRSTDPLearner(rule, proj.spec.pre, proj.spec.post, unit),
                    task=GivenInputs(inputs, steps, torch.float64, currents=currents, protocol=protocol,
                                     pops=(proj.spec.pre, proj.spec.post)),
                    reporter=DistalReporter(steps, every, net.spec.dt, seed, rewarded, weights, counts),
                    optimizer=torch.optim.SGD([proj.weight], lr=lr), description=description, unit="step",
                    hint="lower rule.lr")


# ---------------------------------------------------------------------------------- running
def run_side(parts: RunParts, path, config: dict, job: str, seed: int, checkpoint_every: int,
             progress: bool = True) -> bool:
    """Run ``parts`` in the run directory ``path`` (locked while it runs). ``config`` is written to
    its config.toml with a ``[deploy]`` table naming the ``job`` (a digest of everything the run
    depends on); a checkpoint there of the same job is resumed (a finished one just reloaded),
    anything else is started afresh. Returns True if it resumed."""
    run = RunDir(path)
    run.lock()
    try:
        state = None
        if run.checkpoint_path.exists():
            old = None
            if run.config_path.is_file():
                try:
                    old = tomllib.loads(run.config_path.read_text()).get("deploy", {}).get("job")
                except (tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError):
                    old = None
            if old == job:
                state = run.load_checkpoint()
                print(f"resuming {run.path} from its checkpoint ({state['loop'].get('where')})")
            else:
                run.checkpoint_path.unlink()  # another job's: never resumed under this config
        run.write_config({**config, "deploy": {**config.get("deploy", {}), "job": job}})
        gen = torch.Generator().manual_seed(int(seed))
        Loop(parts, run, int(seed), gen, max(1, int(checkpoint_every)), progress).run_loop(state)
        return state is not None
    finally:
        run.unlock()
