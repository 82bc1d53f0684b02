"""Run components of deployments: networks stepped on given inputs, frozen or learning with the
chip's rule, run by :class:`~neuroprobe.loop.Loop` (so the torch side of ``neuroprobe deploy``
and the float twin of an on-chip run are resumable run directories like any other run).

* :class:`GivenInputs` (task): T steps of pre-drawn input spikes (plus optional per-step currents,
  e.g. the chip's membrane noise for a float twin); with a reward protocol
  (:class:`~neuroprobe.tasks.distal_reward.FixedDistalReward`) the step's reward is its dopamine;
* :class:`NetworkAgent` (agent): a :class:`~neuroprobe.spiking.SpikingNetwork` or
  :class:`~neuroprobe.backends.fixed.network.FixedPointNetwork` stepped on the task's inputs; acts = spikes;
* learners: :class:`NullLearner` (frozen network), :class:`FixedRSTDPLearner` (the integer
  cascade R-STDP, :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP`, weights changed in
  place) and :class:`FloatRSTDPLearner` (the float ``CascadeRSTDP``: ``.grad`` at reward steps,
  applied by SGD);
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

from ..io.state import restore_like
from ..loop import Loop
from ..rundir import RunDir
from ..protocols import Callback, ModuleAgent, NullLearner, RuleLearner, RunParts, Transition

__all__ = ["GivenInputs", "NetworkAgent", "NullLearner", "FixedRSTDPLearner", "FloatRSTDPLearner",
           "DistalReporter", "SpikeCountReporter", "Agreement", "fixed_distal_parts", "float_distal_parts",
           "open_loop_parts", "run_side", "protocol_state", "load_protocol_state"]


# ---------------------------------------------------------------------------------- task
def protocol_state(p) -> dict:
    """State of a :class:`~neuroprobe.tasks.distal_reward.FixedDistalReward` (it has no state_dict)."""
    return {"t": p.t, "last_pre": p.last_pre.clone(), "schedule": p.schedule.clone(), "dopamine": p.dopamine.clone(),
            "coincidences": p.coincidences.clone(), "rewards": p.rewards.clone()}


def load_protocol_state(p, s: dict) -> None:
    p.t = int(s["t"])
    for k in ("last_pre", "schedule", "dopamine", "coincidences", "rewards"):
        setattr(p, k, s[k].clone())


class GivenInputs:
    """T steps of given inputs (Task protocol, one trial).

    inputs: per input population its (T, N) spikes; ``dtype``: what the network takes (bool for the
    fixed point, float64 for float). currents: ``t -> {population: (1, N) current}`` for the 1-based
    step t (added to the observation). protocol: a reward protocol stepped with the spikes of
    ``pops = (pre, post)``; its dopamine is the step's reward (else 0). ``info["t"]``: the step
    just done (1-based)."""

    def __init__(self, inputs: Mapping[str, Tensor], steps: int, dtype: torch.dtype,
                 currents: Callable[[int], dict] | None = None, protocol=None, pops: tuple[str, str] | None = None):
        self.inputs, self.T, self.dtype = dict(inputs), int(steps), dtype
        self.currents, self.protocol, self.pops = currents, protocol, pops
        self.t = 0
        self._zero = torch.zeros(1, dtype=torch.int64)

    def _obs(self, t: int) -> dict:
        i = min(t, self.T - 1)  # after the last step: the last inputs again (the loop keeps an observation)
        obs = {}
        if self.currents is not None:
            obs.update(self.currents(i + 1))
        obs.update({k: v[i:i + 1].to(self.dtype, copy=True) for k, v in self.inputs.items()})
        return obs

    def reset(self, seed: int):
        self.t = 0
        return self._obs(0), {}

    def step(self, z):
        if self.protocol is not None:
            pre, post = self.pops
            reward = self.protocol.step(z[pre], z[post])
        else:
            reward = self._zero
        self.t += 1
        done = torch.tensor([self.t >= self.T])
        return self._obs(self.t), reward, done, torch.zeros(1, dtype=torch.bool), {"t": self.t}

    def finished(self) -> bool:
        return self.t >= self.T

    def state_dict(self) -> dict:
        return {"t": self.t, "protocol": protocol_state(self.protocol) if self.protocol is not None else None}

    def load_state_dict(self, s: dict) -> None:
        self.t = int(s["t"])
        if self.protocol is not None:
            load_protocol_state(self.protocol, s["protocol"])


# ---------------------------------------------------------------------------------- agent
class NetworkAgent(ModuleAgent):
    """A network stepped on the task's inputs, one trial; ``plastic``: float projections whose
    weights a learner changes (clamped to their bounds after each update)."""

    def __init__(self, net, plastic: tuple = ()):
        self.net, self.plastic = net, tuple(plastic)
        self.fixed = hasattr(net, "fixed_projections")
        self.state = net.init_state(1)

    def act(self, obs):
        with torch.no_grad():
            z, self.state = self.net.step(self.state, obs)
        return z

    def voltage(self, name: str) -> Tensor:
        """(N,) membrane potential of trial 0 in the float model's voltage units."""
        return self.net.voltage(self.state, name)[0] if self.fixed else self.state["lif"][name].v[0]

    def constrain(self) -> None:
        with torch.no_grad():
            for pr in self.plastic:
                pr.clamp_()

    def state_dict(self) -> dict:
        if self.fixed:
            return {"state": self.state, "w_mant": {pr.name: pr.w_mant for pr in self.net.fixed_projections}}
        return {"state": self.state, "net": self.net.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.state = restore_like(self.net.init_state(1), s["state"])
        if self.fixed:
            for pr in self.net.fixed_projections:
                pr.w_mant = s["w_mant"][pr.name].clone()
        else:
            self.net.load_state_dict(s["net"])


# ---------------------------------------------------------------------------------- learners
class FixedRSTDPLearner(RuleLearner):
    """The integer cascade R-STDP on chip: ``rule.step(pre spikes, post spikes, dopamine)`` every
    step; the weights change in place (no ``.grad``, no optimizer)."""

    def __init__(self, rule, pre: str, post: str):
        self.rule, self.pre, self.post = rule, pre, post

    def learn(self, tr: Transition) -> bool:
        z = tr.action
        self.rule.step(z[self.pre], z[self.post], tr.reward)
        return False

    def state_dict(self) -> dict:
        r = self.rule
        return {"x": r.x.clone(), "y": r.y.clone(), "e": r.e.clone(), "w_acc": r.w_acc.clone()}

    def load_state_dict(self, s: dict) -> None:
        r = self.rule
        r.x, r.y, r.e, r.w_acc = (s[k].clone() for k in ("x", "y", "e", "w_acc"))
        r.proj.w_mant = r.w_acc >> r.p.frac_bits


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
    ``counts() -> (rewards, coincidences)``; numbers formatted as the deploy metrics always were."""

    columns = ["time", "seed", "w_rewarded", "w_mean", "w_p99", "rank", "rewards", "coincidences"]
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


def distal_row(time: float, seed: int, w: np.ndarray, k: int, rewards: int, coincidences: int) -> dict:
    """One distal-reward metrics row from |weights| ``w`` (float units) and the rewarded index ``k``."""
    others = np.delete(w, k)
    return {"time": f"{time:.3f}", "seed": seed, "w_rewarded": f"{w[k]:.6g}", "w_mean": f"{others.mean():.6g}",
            "w_p99": f"{np.percentile(others, 99):.6g}", "rank": f"{(others < w[k]).mean():.6g}",
            "rewards": int(rewards), "coincidences": int(coincidences)}


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
