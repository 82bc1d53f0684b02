"""Brian2 export of a spiking network: the same populations, synapses and R-STDP as the torch engine.

Brian2 is imported only in this module (a missing Brian2 raises one-line ConfigError). Entry points:

- :func:`to_brian2` builds a :class:`Brian2Model` (a ``brian2.Network`` plus what is needed to read
  it back) from a :class:`~neuroprobe.spiking.SpikingSpec` or a built
  :class:`~neuroprobe.spiking.SpikingNetwork` (whose connectivity and weights are copied).
- :func:`run_brian2` builds, runs and returns the recordings as a dict of numpy arrays in the
  layout of the torch run's ``recordings.npz`` (:mod:`neuroprobe.monitors`):
  ``spikes/<pop>`` (T, N) uint8, ``<variable>/<pop>`` (T, n) float32, ``eligibility/<proj>`` and
  ``weight/<proj>`` (T, n_synapses) float32, plus ``time/<key>``, ``indices/<key>``, ``meta/dt``.
- :func:`save_recordings` writes such a dict (the monitors module's atomic writer).

Model (dimensionless voltages and currents, times in seconds; one Brian2 ``Clock`` of ``spec.dt``)::

    CubaLIF:  dv/dt = (v_leak - v + I_syn)/tau_mem : 1 (unless refractory)
              dI_syn/dt = -I_syn/tau_syn           : 1  (torch's "i"; "i" is Brian2's index)
              I_in                                 : 1  (jumps of this step: Σ w of arriving spikes + i_ext)
    LIF:      dv/dt = (I_in + v_leak - v)/tau_mem : 1 (unless refractory)
              I_in                                : 1
    threshold "v > v_th", reset "v = v_reset", method "euler"; synapses: on_pre "I_in_post += w".
    Izhikevich (mV, ms; :mod:`neuroprobe.neurons.izhikevich`):
              v, u : 1   I_in : 1 (jumps of this step: Σ w of arriving spikes)
              threshold "v >= v_peak", reset "v = c; u = u + d", custom state update (below).

Izhikevich populations: the state update of step t is Izhikevich's two half-steps, written as one
binary operation per statement (Brian2 passes expressions through sympy, which reorders sums;
single operations keep the torch engine's rounding exactly, on the "numpy" target)::

    _I = I_in (+ i_ext) (+ given current row t) (+ noise)      the torch engine's order
    v = v + 0.5·((((0.04·v + 5)·v + 140) − u) + _I)   twice
    u = u + a·((b·v) − u)

then "v >= v_peak" spikes in the thresholds slot and the reset acts in the resets slot of step t,
before the state update of step t + 1: the torch engine's reset at the start of step t + 1.
``I_in`` is cleared after the state update and collects the jumps of step t's spikes (slot
"synapses"), consumed at step t + 1: the one-step delay. Monitors of v and u record in slot
"before_resets": the values after the step, before the reset, as the torch state holds them.
Noise: ``noise_amp·(rand() − 0.5)`` (Brian2's random numbers), or with ``noise_seed`` the torch
engine's hash noise of trial 0 (``run.rng = "hash"``), precomputed for ``steps`` steps as a
``TimedArray``; given currents (``currents``) likewise. With both, a float64 torch network and
exactly representable weights (sums of spikes' jumps independent of the order), spikes, v and u
equal the torch engine's exactly.

Schedule: how Brian2's per-step slots reproduce the torch step ``t`` (Brian2 step ``t`` runs at
time ``t·dt``; a spike of torch step ``t`` is a Brian2 spike at ``t·dt``)::

    Brian2 slot (step t)        operation                                    torch step t
    before_groups   run_regularly  CubaLIF: I_syn += I_in (+ σ·randn)       i' = i + i_in
                                   LIF:     I_in += σ·randn                 i_in (+ noise)
    groups          state update   Euler with the values of step t−1       v_d, i_n (norse Euler)
                                   (v frozen while refractory)              refractory hold of v
                    Synapses       STDP traces decay, cascade state ← M·s   x *= e^{-dt/τ+}, s ← M s
    after_groups    run_regularly  I_in = i_ext                             input consumed
                    StateMonitor   "i" recorded here (before new jumps)     i(t)
    thresholds      thresholder    v > v_th and not refractory → spike     z(t)
                    SpikeGenerator "input" spikes of step t                 inputs[t]
    synapses        pathways       STDP coincidence into s1 (order −5),    c(t), state += e_0 c
                                   trace increments x, y += 1 (order −4),   x += z_pre, y += z_post
                    run_regularly  w ← clip(w + lr·d(t)·scale·s_n) (−3)     w ← w + η d e; clamp_
                    pathway "pre"  I_in_post += w (order −1; spikes of t)  delivered at step t+1
    resets          reset          v = v_reset                              v_n
    end             StateMonitors  v, eligibility, weight recorded          state after step t

The one-step synaptic delay of the torch engine (projections deliver the spikes of step t−1) comes
from the schedule itself: synapses act in slot "synapses" of step t, *after* the state update of
step t, so the jump ``I_in`` (zero Brian2 delay) is consumed by the state update of step t+1.
Accumulating jumps in ``I_in`` and adding them to ``I_syn`` just before the state update reproduces
norse's ``i' = i + i_in`` followed by Euler with ``i'``; Brian2's explicit Euler evaluates both
right-hand sides with the old values, as norse does, so the update is the same expression (equal
to a few ulp: sympy orders the terms differently).

Refractoriness: norse's counter ρ = round(t_ref/dt) is set at a spike of step k; v is held and
spikes are suppressed in steps k+1 … k+ρ. Brian2 evaluates
``not_refractory = timestep(t − lastspike) >= timestep(refractory)`` at the start of each state
update, so ``refractory = (ρ + 1)·dt`` freezes exactly the steps k+1 … k+ρ: the same steps (v held at
v_reset, the synaptic current keeps evolving, inputs arriving then are lost in both). ``rho`` is not
a Brian2 variable; monitors for it are computed from the spikes with norse's counter update.

Plasticity (cascade-trace R-STDP, :class:`neuroprobe.rules.rstdp.CascadeRSTDP` maths) lives on the
plastic projection's Synapses as synaptic variables: pre/post STDP traces ``x``, ``y`` per synapse
(equal to the per-neuron traces) and the cascade states ``s1 … sn``::

    dx/dt = -x/tau_plus : 1 (clock-driven)      ds1/dt = -ca*s1 : 1 (clock-driven)
    dy/dt = -y/tau_minus : 1 (clock-driven)     ds{k}/dt = -ca*s{k} + cb*s{k-1} : 1 (clock-driven)

with ``ca = a/dt`` (a = ``CascadeKernel.step_rate(dt)`` = (n−1)/delay_steps; order 1:
1/delay_steps) and ``cb = 1/dt``, i.e. the cascade's ``A = −aI + S`` per second. These linear equations are integrated exactly by a closed
form (``M = expm(A)``, lower triangular ``M[i, j] = e^{−a}/(i−j)!``, the coefficients of
``CascadeKernel.transition(dt)``, :class:`~neuroprobe.spec.CascadeKernel`): Brian2's symbolic "exact" integrator gives
the same update but spends tens of seconds in sympy for order 6. Coincidences are added to ``s1`` by the
pathways ``pre_c`` (``s1 -= a_minus*y``) and ``post_c`` (``s1 += a_plus*x``) before the trace
increments (``pre_x``, ``post_y``): a pre and a post spike in the same step do not pair. The weight
update runs every step after them and before the transmission pathway ``pre``, so the spikes of
step t are transmitted with the weight updated at step t, as in the torch loop (step, rule,
update, then the next step propagates). The dopamine is a ``TimedArray`` ``d(t)`` of one value per
step.

"input" populations are ``SpikeGeneratorGroup`` s (spike of step t at t·dt, emitted in the
thresholds slot like a LIF spike); "poisson" populations are ``PoissonGroup`` s with the per-step
probability of the torch engine, 1 − exp(−rate·dt) (different random numbers, same statistics; so
are membrane noise ``σ·randn()`` and escape noise, a threshold ``rand() < p(v)``).

Targets: "numpy" (default) and "cython" (runtime code generation, also used for the code run while
building; raises ConfigError if Cython cannot compile here; the first run compiles every code object,
minutes, then cached in ~/.cython), and "cpp_standalone" (compiles a C++ project in a temporary
directory, minutes; one ``run`` per model; Brian2 is set back to its runtime device afterwards).

Brian2 logs every generated code object at DEBUG level: under a handler that formats everything
(pytest's log capture) this slows a run several-fold; raise the "brian2" logger's level there.
"""
from __future__ import annotations

import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import ConfigError, ShapeError
from ..spiking.spec import SIGNS, SpikingSpec

__all__ = ["to_brian2", "run_brian2", "save_recordings", "Brian2Model", "TARGETS", "PLASTICITY_KEYS",
           "brian2_available"]

TARGETS = ("numpy", "cython", "cpp_standalone")
PLASTICITY_KEYS = ("projection", "order", "delay", "normalize", "tau_plus", "tau_minus", "a_plus", "a_minus", "lr")
_PLASTICITY_REQUIRED = ("projection", "order", "delay", "tau_plus", "tau_minus", "a_plus", "a_minus", "lr")
_NEURON_VARIABLES = ("v", "i", "rho", "u")
_LIF_VARIABLES = ("v", "i", "rho")
_IZHIKEVICH_VARIABLES = ("v", "u")
_SYNAPSE_VARIABLES = ("eligibility", "weight")

# slot orders inside Brian2's "synapses" slot of the plastic projection (see the module docstring)
_ORDER_COINCIDENCE, _ORDER_TRACES, _ORDER_WEIGHT, _ORDER_TRANSMIT = -5, -4, -3, -1


def brian2_available() -> bool:
    try:
        import brian2  # noqa: F401
    except Exception:
        return False
    return True


def _b2():
    try:
        import brian2
    except Exception:  # ImportError or a broken install
        raise ConfigError("the Brian2 backend needs the brian2 package: pip install brian2") from None
    return brian2


def _safe(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else f"p_{s}"


# --------------------------------------------------------------------------- inputs / validation


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class _Plasticity:
    projection: str
    order: int
    delay: float  # seconds
    normalize: str | None
    tau_plus: float
    tau_minus: float
    a_plus: float
    a_minus: float
    lr: float


def _check_plasticity(plasticity: Mapping[str, Any], spec: SpikingSpec) -> _Plasticity:
    if not isinstance(plasticity, Mapping):
        raise ConfigError(f"plasticity must be a dict with keys {list(PLASTICITY_KEYS)} (got {plasticity!r})")
    bad = sorted(set(plasticity) - set(PLASTICITY_KEYS))
    if bad:
        raise ConfigError(f"plasticity: unknown key(s) {bad}; allowed {list(PLASTICITY_KEYS)}")
    missing = [k for k in _PLASTICITY_REQUIRED if k not in plasticity]
    if missing:
        raise ConfigError(f"plasticity: missing key(s) {missing}; required {list(_PLASTICITY_REQUIRED)}")
    names = [pr.name for pr in spec.projections]
    if plasticity["projection"] not in names:
        raise ConfigError(f"plasticity.projection = {plasticity['projection']!r}: unknown projection; have {names}")
    order = plasticity["order"]
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ConfigError(f"plasticity.order = {order!r}: must be an integer >= 1")
    vals = {}
    for k in ("delay", "tau_plus", "tau_minus", "a_plus", "a_minus", "lr"):
        v = plasticity[k]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
            raise ConfigError(f"plasticity.{k} = {v!r}: must be a finite number")
        vals[k] = float(v)
    for k in ("delay", "tau_plus", "tau_minus"):
        if vals[k] <= 0:
            raise ConfigError(f"plasticity.{k} = {vals[k]!r}: must be a positive number of seconds")
    if vals["delay"] < spec.dt:
        raise ConfigError(f"plasticity.delay = {vals['delay']} s is shorter than dt = {spec.dt} s")
    if vals["a_plus"] < 0 or vals["a_minus"] < 0:
        raise ConfigError(f"plasticity.a_plus / a_minus must be >= 0 (got {vals['a_plus']}, {vals['a_minus']})")
    normalize = plasticity.get("normalize", "peak")
    if normalize == "none":
        normalize = None
    if normalize not in ("peak", "area", None):
        raise ConfigError(f"plasticity.normalize = {normalize!r}: allowed 'peak', 'area' or None")
    return _Plasticity(plasticity["projection"], int(order), normalize=normalize, **vals)


def _connectivity(spec_or_net: Any, spec: SpikingSpec, weights: Mapping[str, Any] | None, seed: int
                  ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(pre, post, signed weight) per projection: from ``weights`` (an array with the network's
    connectivity, or a (pre, post, weight) triple / mapping), else from the torch network."""
    weights = dict(weights or {})
    names = [pr.name for pr in spec.projections]
    bad = sorted(set(weights) - set(names))
    if bad:
        raise ConfigError(f"weights for unknown projection(s) {bad}; have {names}")
    net = None if isinstance(spec_or_net, SpikingSpec) else spec_or_net
    out = {}
    for pr in spec.projections:
        given = weights.get(pr.name)
        pre = post = w = None
        if isinstance(given, Mapping):
            miss = [k for k in ("pre", "post", "weight") if k not in given]
            if miss:
                raise ConfigError(f"weights[{pr.name!r}]: missing key(s) {miss}; give 'pre', 'post', 'weight'")
            pre, post, w = (given[k] for k in ("pre", "post", "weight"))
        elif isinstance(given, tuple):
            if len(given) != 3:
                raise ConfigError(f"weights[{pr.name!r}]: a tuple must be (pre, post, weight)")
            pre, post, w = given
        else:
            w = given
        if pre is None:
            if net is None:  # the torch network's connectivity for this seed
                import torch

                from ..spiking.network import SpikingNetwork
                net = SpikingNetwork(spec, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
            proj = net.projection(pr.name)
            pre, post = proj.pre, proj.post
            if w is None:
                w = proj.weight
        pre, post = _as_numpy(pre).astype(np.int64).ravel(), _as_numpy(post).astype(np.int64).ravel()
        w = _as_numpy(w).astype(np.float64)
        if w.ndim == 2:
            if w.shape[0] != 1:
                raise ShapeError(f"weights[{pr.name!r}] has per-trial weights {w.shape}: Brian2 runs one trial; "
                                 "pass one row")
            w = w[0]
        n_pre, n_post = spec.population(pr.pre).size, spec.population(pr.post).size
        if not (pre.shape == post.shape == w.shape):
            raise ShapeError(f"weights[{pr.name!r}]: pre {pre.shape}, post {post.shape} and weight {w.shape} "
                             "must have the same shape (S,)")
        if pre.size and (pre.min() < 0 or pre.max() >= n_pre or post.min() < 0 or post.max() >= n_post):
            raise ConfigError(f"weights[{pr.name!r}]: synapse indices out of range ({n_pre} pre, {n_post} post)")
        out[pr.name] = (pre, post, w)
    return out


def _parse_monitors(monitors: Iterable[Any] | None, spec: SpikingSpec, plastic: str | None) -> list[tuple]:
    """(variable, target, indices | None, every) per entry. Entries: "v/exc", (variable, target),
    (variable, target, indices), a dict with those keys (+ every), or a neuroprobe.monitors
    StateMonitor / SpikeMonitor."""
    out = []
    pops = {p.name: p for p in spec.populations}
    projs = {pr.name: pr for pr in spec.projections}
    for m in monitors or ():
        every = 1
        if isinstance(m, str):
            if m.count("/") != 1:
                raise ConfigError(f"monitor {m!r}: write '<variable>/<population or projection>'")
            var, target = m.split("/")
            idx = None
        elif isinstance(m, Mapping):
            bad = sorted(set(m) - {"variable", "population", "indices", "every"})
            if bad or "variable" not in m or "population" not in m:
                raise ConfigError(f"monitor {dict(m)!r}: keys 'variable', 'population' (+ 'indices', 'every')")
            var, target, idx, every = m["variable"], m["population"], m.get("indices"), m.get("every", 1)
        elif isinstance(m, tuple) and len(m) in (2, 3):
            var, target, idx = (*m, None) if len(m) == 2 else m
        elif hasattr(m, "variable") and hasattr(m, "population"):
            var, target, idx, every = m.variable, m.population, getattr(m, "indices", None), getattr(m, "every", 1)
        else:
            raise ConfigError(f"monitor {m!r}: give '<variable>/<target>', (variable, target[, indices]) or a dict")
        if idx is not None:
            idx = _as_numpy(idx).astype(np.int64).ravel()
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ConfigError(f"monitor {var}/{target}: every = {every!r} must be an integer >= 1")
        if var == "spikes":
            if target not in pops:
                raise ConfigError(f"monitor spikes/{target}: unknown population; have {list(pops)}")
            size = pops[target].size
        elif var in _NEURON_VARIABLES:
            kinds = {"lif": _LIF_VARIABLES, "izhikevich": _IZHIKEVICH_VARIABLES}
            if target not in pops or pops[target].kind not in kinds:
                raise ConfigError(f"monitor {var}/{target}: not a neuron population; have "
                                  f"{[p for p in pops if pops[p].kind in kinds]}")
            if var not in kinds[pops[target].kind]:
                raise ConfigError(f"monitor {var}/{target}: a {pops[target].kind!r} population records "
                                  f"{list(kinds[pops[target].kind])}")
            size = pops[target].size
        elif var in _SYNAPSE_VARIABLES:
            if target not in projs:
                raise ConfigError(f"monitor {var}/{target}: unknown projection; have {list(projs)}")
            if var == "eligibility" and target != plastic:
                raise ConfigError(f"monitor eligibility/{target}: the projection is not plastic")
            size = None
        else:
            raise ConfigError(f"monitor variable {var!r}: allowed {['spikes', *_NEURON_VARIABLES, *_SYNAPSE_VARIABLES]}")
        if idx is not None and size is not None and idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ConfigError(f"monitor {var}/{target}: index out of range (size {size})")
        out.append((var, target, idx, int(every)))
    keys = [f"{v}/{t}" for v, t, _, _ in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"monitors: {dup} requested more than once")
    return out


# --------------------------------------------------------------------------- model


@dataclass
class Brian2Model:
    """A built Brian2 network and what is needed to read it back.

    Attributes: ``network`` (brian2.Network), ``groups`` {population: NeuronGroup |
    SpikeGeneratorGroup | PoissonGroup}, ``synapses`` {projection: Synapses}, ``spec``, ``target``,
    ``steps`` (default run length), ``plasticity`` (validated settings or None) and the monitors.
    """

    network: Any
    groups: dict
    synapses: dict
    spec: SpikingSpec
    target: str
    steps: int | None
    plasticity: _Plasticity | None
    cascade_scale: float
    spike_monitors: dict
    state_monitors: dict  # key -> (brian2 StateMonitor, brian2 variable, indices, every, scale)
    requested: list
    directory: str | None = None
    steps_run: int = 0
    max_steps: int | None = None  # the length of precomputed TimedArrays (given currents, hash noise)
    _done: bool = field(default=False, repr=False)

    def run(self, steps: int | None = None) -> "Brian2Model":
        """Advance ``steps`` steps (default: the length of the given inputs)."""
        b2 = _b2()
        steps = self.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ConfigError(f"steps = {steps!r}: give a positive number of steps (no input arrays set the length)")
        if self.max_steps is not None and self.steps_run + int(steps) > self.max_steps:
            raise ConfigError(f"steps = {steps}: the given currents / hash noise cover {self.max_steps} steps "
                              f"({self.steps_run} done); build the model with longer ones")
        if self.target == "cpp_standalone":
            if self._done:
                raise ConfigError("a cpp_standalone model runs once; build a new one with to_brian2")
            try:
                self.network.run(int(steps) * self.spec.dt * b2.second, namespace={})
            except Exception as e:
                _reset_standalone(b2, self.directory)
                raise ConfigError(f"target 'cpp_standalone' failed to build or run: {type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}") from None
            self._done = True
        else:
            old = b2.prefs.codegen.target
            b2.prefs.codegen.target = self.target
            try:
                self.network.run(int(steps) * self.spec.dt * b2.second, namespace={})
            finally:
                b2.prefs.codegen.target = old
        self.steps_run += int(steps)
        return self

    def recordings(self, float_dtype: Any = np.float32) -> dict[str, np.ndarray]:
        """The recordings in the torch ``recordings.npz`` layout (see the module docstring); state
        values as ``float_dtype`` (float32 like the torch monitors; float64 for exact comparisons)."""
        dt, T = self.spec.dt, self.steps_run
        out: dict[str, np.ndarray] = {}
        spikes = {}
        for name, mon in self.spike_monitors.items():
            n = self.spec.population(name).size
            z = np.zeros((T, n), dtype=np.uint8)
            st = np.rint(np.asarray(mon.t_[:]) / dt).astype(np.int64)
            ii = np.asarray(mon.i[:], dtype=np.int64)
            keep = st < T
            z[st[keep], ii[keep]] = 1
            spikes[name] = z
        requested_spikes = {t: (idx, every) for v, t, idx, every in self.requested if v == "spikes"}
        for name, z in spikes.items():
            idx, every = requested_spikes.get(name, (None, 1))
            self._put(out, f"spikes/{name}", z, idx, every, dt)
        for var, target, idx, every in self.requested:
            if var == "spikes":
                continue
            key = f"{var}/{target}"
            if var == "rho":
                data = _rho_from_spikes(spikes[target], self.spec.population(target).lif.refractory_steps)
            elif var == "i" and self.spec.population(target).lif.model == "lif":
                data = np.zeros((T, self.spec.population(target).size))  # no synaptic current state
            else:  # the Brian2 monitor recorded only the requested columns
                mon, bvar, cols, _, scale = self.state_monitors[key]
                data = np.asarray(getattr(mon, bvar)[:], dtype=np.float64).T[:T] * scale  # (T, n)
                self._put(out, key, data.astype(float_dtype), None, every, dt, cols)
                continue
            self._put(out, key, data.astype(float_dtype), idx, every, dt)
        out["meta/dt"] = np.asarray(dt, dtype=np.float64)
        out["meta/backend"] = np.asarray("brian2")
        out["meta/target"] = np.asarray(self.target)
        return out

    @staticmethod
    def _put(out: dict, key: str, data: np.ndarray, idx: np.ndarray | None, every: int, dt: float,
             cols: np.ndarray | None = None) -> None:
        if idx is not None:
            data, cols = data[:, idx], idx
        elif cols is None:
            cols = np.arange(data.shape[1])
        rows = np.arange(0, data.shape[0], every)
        out[key] = data[rows]
        out[f"time/{key}"] = rows.astype(np.float64) * dt
        out[f"indices/{key}"] = np.asarray(cols, dtype=np.int64)


def _rho_from_spikes(z: np.ndarray, R: int) -> np.ndarray:
    """norse's refractory counter after each step, from the spikes (T, N)."""
    rho = np.zeros(z.shape, dtype=np.float64)
    if R <= 0:
        return rho
    r = np.zeros(z.shape[1])
    for t in range(z.shape[0]):
        r = np.where(z[t] > 0, float(R), np.maximum(r - 1.0, 0.0))
        rho[t] = r
    return rho


def _cascade_updater(order: int):
    """Exact (closed-form) integration of the STDP traces and the linear cascade over one step."""

    def cascade_exact(equations, variables=None, method_options=None):
        lines = ["_x = x * decay_plus", "_y = y * decay_minus"]
        for k in range(1, order + 1):
            terms = [f"m_{k - j} * s{j}" for j in range(1, k + 1)]  # M[k-1, j-1] = e^{-a}/(k-j)!
            lines.append(f"_s{k} = " + " + ".join(reversed(terms)))
        lines += ["x = _x", "y = _y"] + [f"s{k} = _s{k}" for k in range(1, order + 1)]
        return "\n".join(lines)

    return cascade_exact


def _reset_standalone(b2, directory: str | None) -> None:
    """Back to Brian2's runtime device after a cpp_standalone model (its project directory removed)."""
    from brian2.devices.device import reset_device

    try:
        b2.device.reinit()
    except Exception:
        pass
    reset_device("runtime")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def to_brian2(spec: Any, weights: Mapping[str, Any] | None = None, plasticity: Mapping[str, Any] | None = None,
              input_spikes: Mapping[str, Any] | None = None, dopamine: Any = None, monitors: Iterable[Any] | None = None,
              target: str = "numpy", *, seed: int = 0, steps: int | None = None,
              currents: Mapping[str, Any] | None = None, noise_seed: int | None = None) -> Brian2Model:
    """Build the Brian2 network of a spiking network.

    Args:
        spec: a :class:`SpikingSpec`, or a built :class:`~neuroprobe.spiking.SpikingNetwork` (its
            connectivity and current weights are copied).
        weights: per projection name: a signed weight array (S,) (or (1, S)) with the network's
            connectivity, or ``(pre, post, weight)`` / ``{"pre", "post", "weight"}``. Projections
            not given take the torch network's (for a SpikingSpec: ``SpikingNetwork(spec,
            torch.Generator().manual_seed(seed))``).
        plasticity: cascade R-STDP on one projection: keys ``projection``, ``order``, ``delay`` (s),
            ``normalize`` ("peak" default | "area" | None), ``tau_plus``, ``tau_minus`` (s),
            ``a_plus``, ``a_minus``, ``lr``.
        input_spikes: per "input" population its spikes (T, N) in {0, 1} (required for each).
        dopamine: (T,) third factor per step (default 0: eligibility only, weights fixed); or a
            callable ``f(step, spikes) -> float`` for closed-loop tasks (runtime targets only),
            called every step after the thresholds with ``spikes`` {population: indices of the
            neurons that spiked in this step}; its value gates this step's weight update
            (what the torch loop does with the task's dopamine).
        monitors: extra recordings: ``"v/exc"``, ``(variable, target, indices)``, dicts with keys
            variable/population/indices/every, or neuroprobe.monitors monitors. Variables "v", "i",
            "rho" (LIF populations), "v", "u" (Izhikevich populations: after the step, before the
            reset of a spike), "eligibility", "weight" (projections; indices = synapses),
            "spikes" (column selection). Spikes of every population are always recorded; with
            plasticity, "eligibility" and "weight" of the plastic projection too (all synapses)
            unless requested otherwise.
        target: "numpy" | "cython" | "cpp_standalone".
        seed: connectivity seed when ``spec`` is a SpikingSpec and a projection's edges are not given.
        steps: default run length (else the length of input_spikes / dopamine / currents).
        currents: per Izhikevich population a given input current (T, N), row t added at step t
            (the torch engine's ``inputs[pop]``); the model then runs at most T steps.
        noise_seed: draw the uniform noise of Izhikevich populations from the counter-based hash
            as the torch engine's ``rng="hash"`` trial 0 with this seed (precomputed for ``steps``
            steps, which must be known); default: Brian2's ``rand()``. LIF noise and Poisson spikes
            keep Brian2's random numbers (refused with LIF noise).
    """
    b2 = _b2()
    if target not in TARGETS:
        raise ConfigError(f"target = {target!r}: allowed {list(TARGETS)}")
    net_in = spec
    if not isinstance(spec, SpikingSpec):
        if not hasattr(spec, "spec") or not isinstance(spec.spec, SpikingSpec):
            raise ConfigError(f"to_brian2 needs a SpikingSpec or a SpikingNetwork (got {type(spec).__name__})")
        spec = spec.spec
    pops = {p.name: p for p in spec.populations}
    plastic = _check_plasticity(plasticity, spec) if plasticity is not None else None
    requested = _parse_monitors(monitors, spec, plastic.projection if plastic else None)
    if plastic is not None:
        have = {(v, t) for v, t, _, _ in requested}
        for v in ("eligibility", "weight"):
            if (v, plastic.projection) not in have:
                requested.append((v, plastic.projection, None, 1))
    conn = _connectivity(net_in, spec, weights, seed)

    # lengths of the given inputs
    input_spikes = dict(input_spikes or {})
    bad = sorted(set(input_spikes) - {n for n, p in pops.items() if p.kind == "input"})
    if bad:
        raise ConfigError(f"input_spikes for {bad}: not 'input' populations; have "
                          f"{[n for n, p in pops.items() if p.kind == 'input']}")
    lengths = set()
    for name, p in pops.items():
        if p.kind == "input":
            if name not in input_spikes:
                raise ConfigError(f"population {name!r} is an 'input' population: pass its spikes in input_spikes")
            x = _as_numpy(input_spikes[name])
            if x.ndim != 2 or x.shape[1] != p.size:
                raise ShapeError(f"input_spikes[{name!r}] has shape {x.shape}, expected (T, {p.size})")
            if not np.isin(x, (0, 1)).all():
                raise ConfigError(f"input_spikes[{name!r}]: values must be 0 or 1 (one spike per neuron and step)")
            input_spikes[name] = x
            lengths.add(x.shape[0])
    if callable(dopamine) and target == "cpp_standalone":
        raise ConfigError("a closed-loop dopamine callable needs a runtime target ('numpy' or 'cython')")
    if dopamine is not None and not callable(dopamine):
        dopamine = _as_numpy(dopamine).astype(np.float64).ravel()
        lengths.add(dopamine.shape[0])
        if dopamine.size == 0 or not np.isfinite(dopamine).all():
            raise ConfigError("dopamine must be a non-empty finite array (T,)")
    currents = dict(currents or {})
    izh = [n for n, p in pops.items() if p.kind == "izhikevich"]
    bad = sorted(set(currents) - set(izh))
    if bad:
        raise ConfigError(f"currents for {bad}: given currents are for Izhikevich populations; have {izh}")
    for name, x in currents.items():
        x = _as_numpy(x).astype(np.float64)
        if x.ndim != 2 or x.shape[1] != pops[name].size or x.shape[0] < 1:
            raise ShapeError(f"currents[{name!r}] has shape {x.shape}, expected (T, {pops[name].size})")
        if not np.isfinite(x).all():
            raise ConfigError(f"currents[{name!r}]: values must be finite")
        currents[name] = x
        lengths.add(x.shape[0])
    if len(lengths) > 1:
        raise ShapeError(f"input_spikes, dopamine and currents have different lengths {sorted(lengths)}")
    if steps is None and lengths:
        steps = lengths.pop()
    hash_noise = {}
    if noise_seed is not None:
        if isinstance(noise_seed, bool) or not isinstance(noise_seed, (int, np.integer)) \
                or not 0 <= noise_seed < 2 ** 32:
            raise ConfigError(f"noise_seed = {noise_seed!r}: must be an integer in [0, 2**32)")
        noisy_lif = [n for n, p in pops.items() if p.kind == "lif" and (p.lif.noise == "escape" or
                                                                         p.lif.noise_std > 0)]
        if noisy_lif:
            raise ConfigError(f"noise_seed: the Brian2 export draws hash noise for Izhikevich populations only; "
                              f"LIF populations {noisy_lif} have noise")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ConfigError("noise_seed: give steps (the hash noise is precomputed for the run)")
        hash_noise = _hash_noise_tables(spec, int(noise_seed), int(steps))
    max_steps = min([x.shape[0] for x in currents.values()] + [x.shape[0] for x in hash_noise.values()], default=None)

    directory = None
    if target == "cython":
        try:
            from brian2.codegen.runtime.cython_rt import CythonCodeObject
            ok = CythonCodeObject.is_available()
        except Exception:
            ok = False
        if not ok:
            raise ConfigError("target 'cython': Cython cannot compile here (needs Cython and a C++ compiler); "
                              "use target='numpy'")
    if target == "cpp_standalone":
        directory = tempfile.mkdtemp(prefix="neuroprobe_brian2_")
        b2.set_device("cpp_standalone", directory=directory, build_on_run=True, with_output=False)
    old_target = b2.prefs.codegen.target
    if target != "cpp_standalone":  # also for the code run while building (connect, assignments)
        b2.prefs.codegen.target = target
    try:
        model = _build(b2, spec, pops, conn, plastic, input_spikes, dopamine, requested, target, steps, directory,
                       currents, hash_noise)
        model.max_steps = max_steps
    except Exception:
        if target == "cpp_standalone":
            _reset_standalone(b2, directory)
        raise
    finally:
        b2.prefs.codegen.target = old_target
    return model


def _hash_noise_tables(spec: SpikingSpec, noise_seed: int, steps: int) -> dict[str, np.ndarray]:
    """{Izhikevich population with uniform noise: (steps, N) float64}: the torch engine's hash noise
    of trial 0 (seed ``noise_seed``, 1-based step t in row t − 1, global neuron indices)."""
    import torch

    from ..neurons.izhikevich import izhikevich_noise
    from ..neurons.lif import HashKey

    out, off = {}, 0
    seeds = torch.tensor([[noise_seed]], dtype=torch.int64)
    for p in spec.populations:
        if p.kind == "izhikevich" and p.izhikevich.noise == "uniform" and p.izhikevich.noise_amp > 0:
            index = torch.arange(off, off + p.size, dtype=torch.int64)
            rows = [izhikevich_noise(p.izhikevich, (1, p.size), torch.float64, hash_key=HashKey(seeds, t, index))[0]
                    for t in range(1, steps + 1)]
            out[p.name] = torch.stack(rows).numpy()
        off += p.size
    return out


def _build(b2, spec, pops, conn, plastic, input_spikes, dopamine, requested, target, steps, directory,
           currents=None, hash_noise=None):
    dt = spec.dt
    second = b2.second
    clock = b2.Clock(dt=dt * second, name="np_clock_*")
    groups, syns, objects = {}, {}, []
    for name, p in pops.items():
        sname = _safe(name)
        if p.kind == "input":
            x = input_spikes[name]
            t_idx, n_idx = np.nonzero(x)
            g = b2.SpikeGeneratorGroup(p.size, n_idx.astype(np.int64), t_idx.astype(np.float64) * dt * second,
                                       clock=clock, name=f"np_{sname}_*")
        elif p.kind == "poisson":
            # Brian2 spikes with probability rates·dt per step; the torch engine with 1 − exp(−rate·dt)
            g = b2.PoissonGroup(p.size, rates=-math.expm1(-p.rate * dt) / dt * b2.Hz, clock=clock,
                                name=f"np_{sname}_*")
        elif p.kind == "izhikevich":
            g = _izhikevich_group(b2, p, clock, sname, dt, (currents or {}).get(name), (hash_noise or {}).get(name))
        else:
            g = _lif_group(b2, p, clock, sname)
        groups[name] = g
        objects.append(g)

    scale = 1.0
    for pr in spec.projections:
        pre, post, w = conn[pr.name]
        src, tgt = groups[pr.pre], groups[pr.post]
        sname = _safe(pr.name.replace("->", "_to_"))
        if plastic is not None and pr.name == plastic.projection:
            S, scale = _plastic_synapses(b2, spec, pr, src, tgt, clock, sname, plastic, dopamine)
        else:
            S = b2.Synapses(src, tgt, model="w : 1", on_pre="I_in_post += w", clock=clock, namespace={},
                            name=f"np_{sname}_*")
        if pre.size:
            S.connect(i=pre, j=post)
            S.w[:] = w
        else:
            S.active = False
        syns[pr.name] = S
        objects.append(S)

    spike_monitors = {name: b2.SpikeMonitor(g, record=True, name=f"np_spikes_{_safe(name)}_*")
                      for name, g in groups.items()}
    objects += list(spike_monitors.values())
    state_monitors = {}
    for var, target_name, idx, every in requested:
        if var in ("spikes", "rho") or (var == "i" and pops[target_name].lif.model == "lif"):
            continue
        key = f"{var}/{target_name}"
        if var in _NEURON_VARIABLES and pops[target_name].kind == "izhikevich":
            grp, n = groups[target_name], pops[target_name].size
            bvar, when, sc = var, "before_resets", 1.0  # after the step, before the reset (torch's state)
        elif var in _NEURON_VARIABLES:
            grp, n = groups[target_name], pops[target_name].size
            bvar, when, sc = ("v", "end", 1.0) if var == "v" else ("I_syn", "after_groups", 1.0)
        else:
            grp = syns[target_name]
            n = len(conn[target_name][0])
            if var == "weight":
                bvar, when, sc = "w", "end", 1.0
            else:
                bvar, when, sc = f"s{plastic.order}", "end", scale
        cols = np.arange(n) if idx is None else idx
        if cols.size and cols.max() >= n:
            raise ConfigError(f"monitor {key}: index {int(cols.max())} out of range (it has {n} entries)")
        if cols.size == 0:
            raise ConfigError(f"monitor {key}: nothing to record")
        mon = b2.StateMonitor(grp, bvar, record=cols, when=when, order=10, clock=clock,
                              name=f"np_mon_{_safe(key)}_*")
        state_monitors[key] = (mon, bvar, cols, every, sc)
        objects.append(mon)
    if callable(dopamine) and plastic is not None:
        objects.append(_closed_loop(b2, groups, pops, syns[plastic.projection], dopamine, clock))
    network = b2.Network(*objects, name="np_network_*")
    return Brian2Model(network=network, groups=groups, synapses=syns, spec=spec, target=target, steps=steps,
                       plasticity=plastic, cascade_scale=scale, spike_monitors=spike_monitors,
                       state_monitors=state_monitors, requested=requested, directory=directory)


def _lif_group(b2, p, clock, sname):
    lif = p.lif
    second = b2.second
    unless = " (unless refractory)" if lif.refractory_steps > 0 else ""
    if lif.model == "cuba_lif":
        eqs = (f"dv/dt = (v_leak - v + I_syn)/tau_mem : 1{unless}\n"
               "dI_syn/dt = -I_syn/tau_syn : 1\n"
               "I_in : 1")
    else:
        eqs = (f"dv/dt = (I_in + v_leak - v)/tau_mem : 1{unless}\n"
               "I_in : 1")
    ns = {"tau_mem": lif.tau_mem * second, "v_leak": lif.v_leak, "v_th": lif.v_th, "v_reset": lif.v_reset,
          "i_ext": float(p.i_ext), "sigma": lif.noise_std, "rho0": lif.rho0 * b2.Hz, "delta_u": lif.delta_u}
    if lif.model == "cuba_lif":
        ns["tau_syn"] = lif.tau_syn * second
    if lif.noise == "escape":
        # norse/torch: no hard threshold; spike with p = 1 − exp(−dt·rho0·exp(min((v − v_th)/δu, 50)))
        threshold = "rand() < 1 - exp(-dt*rho0*exp(clip((v - v_th)/delta_u, -1e300, 50)))"
    else:
        threshold = "v > v_th"
    refractory = (lif.refractory_steps + 1) * lif.dt * second if lif.refractory_steps > 0 else False
    g = b2.NeuronGroup(p.size, eqs, threshold=threshold, reset="v = v_reset", refractory=refractory,
                       method="euler", clock=clock, namespace=ns, name=f"np_{sname}_*")
    g.v = lif.v_leak
    g.I_in = float(p.i_ext)
    noise = " + sigma*randn()" if lif.noise == "membrane" and lif.noise_std > 0 else ""
    if lif.model == "cuba_lif":
        g.run_regularly(f"I_syn += I_in{noise}", when="before_groups", clock=clock, name=f"np_{sname}_jump_*")
    elif noise:
        g.run_regularly(f"I_in += {noise[3:]}", when="before_groups", clock=clock, name=f"np_{sname}_noise_*")
    g.run_regularly("I_in = i_ext", when="after_groups", clock=clock, name=f"np_{sname}_consume_*")
    return g


def _izhikevich_group(b2, p, clock, sname, dt, given=None, noise_table=None):
    """A NeuronGroup of Izhikevich neurons updated exactly as the torch engine (module docstring)."""
    iz = p.izhikevich
    eqs = ("dv/dt = (((0.04*v + 5)*v + 140 - u) + I_in)/t_unit : 1\n"  # documents the model; the state
           "du/dt = a*(b*v - u)/t_unit : 1\n"  # update is _izhikevich_updater's code
           "I_in : 1")
    ns = {"a": iz.a, "b": iz.b, "c": iz.c, "d": iz.d, "v_peak": iz.v_peak, "i_ext": float(p.i_ext),
          "noise_amp": iz.noise_amp, "t_unit": b2.ms}
    terms = []
    if p.i_ext:
        terms.append("_I = _I + i_ext")
    if given is not None:
        ns["given_current"] = b2.TimedArray(given, dt=dt * b2.second, name=f"np_{sname}_current_*")
        terms.append("_I = _I + given_current(t, i)")
    if noise_table is not None:
        ns["hash_noise"] = b2.TimedArray(noise_table, dt=dt * b2.second, name=f"np_{sname}_noise_*")
        terms.append("_I = _I + hash_noise(t, i)")
    elif iz.noise == "uniform" and iz.noise_amp > 0:
        terms += ["_n = rand()", "_n = _n - 0.5", "_n = _n*noise_amp", "_I = _I + _n"]
    g = b2.NeuronGroup(p.size, eqs, threshold="v >= v_peak", reset="v = c\nu = u + d",
                       method=_izhikevich_updater(terms), clock=clock, namespace=ns, name=f"np_{sname}_*")
    g.v = iz.c
    g.u = iz.b * iz.c  # the torch engine's initial u (one float64 product)
    g.I_in = 0.0
    g.run_regularly("I_in = 0", when="after_groups", clock=clock, name=f"np_{sname}_consume_*")
    return g


def _izhikevich_updater(input_terms: list[str]):
    """Izhikevich's two half-steps and the u update as abstract code, one binary operation per
    statement (so that no reordering by Brian2's sympy pass changes the rounding)."""

    def izhikevich_half_steps(equations, variables=None, method_options=None):
        half = ["_h = 0.04*v", "_h = _h + 5", "_h = _h*v", "_h = _h + 140", "_h = _h - u", "_h = _h + _I",
                "_h = 0.5*_h", "v = v + _h"]
        return "\n".join(["_I = I_in", *input_terms, *half, *half,
                          "_g = b*v", "_g = _g - u", "_g = a*_g", "u = u + _g"])

    return izhikevich_half_steps


def _plastic_synapses(b2, spec, pr, src, tgt, clock, sname, pl: _Plasticity, dopamine):
    from ..spec.kernel import CascadeKernel
    from ..traces.kernels import normalization_scale

    dt, n = spec.dt, pl.order
    kernel = CascadeKernel(n, pl.delay, pl.normalize)  # the cascade's rate and transition
    a = kernel.step_rate(dt)
    M = kernel.transition(dt)
    scale = normalization_scale("cascade", kernel.normalize, n, kernel.delay_steps(dt))
    sign = SIGNS[spec.population(pr.pre).sign]
    eqs = ["w : 1", "dx/dt = -x/tau_plus : 1 (clock-driven)", "dy/dt = -y/tau_minus : 1 (clock-driven)",
           "ds1/dt = -ca*s1 : 1 (clock-driven)"]
    eqs += [f"ds{k}/dt = -ca*s{k} + cb*s{k - 1} : 1 (clock-driven)" for k in range(2, n + 1)]
    closed = callable(dopamine)
    d = np.zeros(1) if dopamine is None or closed else dopamine
    ns = {"tau_plus": pl.tau_plus * b2.second, "tau_minus": pl.tau_minus * b2.second,
          "ca": a / dt * b2.Hz, "cb": 1.0 / dt * b2.Hz,
          "decay_plus": math.exp(-dt / pl.tau_plus), "decay_minus": math.exp(-dt / pl.tau_minus),
          "a_plus": pl.a_plus, "a_minus": pl.a_minus, "lr": pl.lr, "e_scale": scale, "sgn": sign,
          "w_lo": pr.w_min, "w_hi": min(pr.w_max, 1e300),
          "dopamine": b2.TimedArray(d, dt=dt * b2.second, name=f"np_dopamine_{sname}_*")}
    ns.update({f"m_{k}": float(M[k, 0]) for k in range(n)})
    if closed:
        eqs.append("d_now : 1 (shared)")  # set every step by the closed-loop task (_closed_loop)
    S = b2.Synapses(src, tgt, model="\n".join(eqs),
                    on_pre={"pre": "I_in_post += w", "pre_c": "s1 -= a_minus*y", "pre_x": "x += 1"},
                    on_post={"post_c": "s1 += a_plus*x", "post_y": "y += 1"},
                    method=_cascade_updater(n), clock=clock, namespace=ns, name=f"np_{sname}_*")
    S.pre_c.order = S.post_c.order = _ORDER_COINCIDENCE
    S.pre_x.order = S.post_y.order = _ORDER_TRACES
    S.pre.order = _ORDER_TRANSMIT
    d_expr = "d_now" if closed else "dopamine(t)"
    update = (f"w = sgn*clip(sgn*(w + lr*{d_expr}*(e_scale*s{n})), w_lo, w_hi)"
              if spec.population(pr.pre).sign != "none" else  # free-signed synapses: bound |w|, keep the sign
              f"w = w + lr*{d_expr}*(e_scale*s{n})\nw = sign(w)*clip(abs(w), w_lo, w_hi)")
    S.run_regularly(update, when="synapses",
                    order=_ORDER_WEIGHT, clock=clock, name=f"np_{sname}_weight_*")
    return S, scale


def _closed_loop(b2, groups, pops, S, fn, clock):
    """A network_operation after the thresholds of every step: reads the step's spikes of every
    LIF population from Brian2's spike space and sets the plastic synapses' ``d_now`` to
    ``fn(step, spikes)`` before their weight update (slot "synapses") of the same step."""
    lif = {n: g for n, g in groups.items() if pops[n].kind in ("lif", "izhikevich")}
    state = {"step": 0}

    def op():
        spikes = {}
        for n, g in lif.items():
            space = g.variables["_spikespace"].get_value()
            spikes[n] = np.asarray(space[: int(space[-1])], dtype=np.int64)
        S.d_now = float(fn(state["step"], spikes))
        state["step"] += 1

    return b2.NetworkOperation(op, when="thresholds", order=100, clock=clock, name="np_closed_loop_*")


def run_brian2(spec: Any, weights: Mapping[str, Any] | None = None, plasticity: Mapping[str, Any] | None = None,
               input_spikes: Mapping[str, Any] | None = None, dopamine: Any = None,
               monitors: Iterable[Any] | None = None, target: str = "numpy", *, seed: int = 0,
               steps: int | None = None, float_dtype: Any = np.float32, currents: Mapping[str, Any] | None = None,
               noise_seed: int | None = None) -> dict[str, np.ndarray]:
    """Build (:func:`to_brian2`, same arguments), run ``steps`` steps and return the recordings
    (layout of the torch ``recordings.npz``; state values as ``float_dtype``)."""
    model = to_brian2(spec, weights, plasticity, input_spikes, dopamine, monitors, target, seed=seed, steps=steps,
                      currents=currents, noise_seed=noise_seed)
    try:
        model.run()
        return model.recordings(float_dtype)
    finally:
        if target == "cpp_standalone":
            _reset_standalone(_b2(), model.directory)


def save_recordings(recordings: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write recordings to ``path`` (``.npz``, or a directory: ``<dir>/recordings.npz``) with the
    torch monitors' writer (:func:`neuroprobe.monitors.save_recordings`, atomic); returns the path."""
    try:
        from ..monitors import save_recordings as _write
    except ImportError:  # pragma: no cover - monitors module absent
        path = Path(path)
        if path.is_dir():
            path = path / "recordings.npz"
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in recordings.items()})
        return path
    return _write(path, recordings)
