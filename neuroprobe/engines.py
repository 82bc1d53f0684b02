"""The engines neuroprobe runs spiking networks on, and what each one computes.

Engines: ``"torch"`` (the float engine: :mod:`neuroprobe.spiking` and
:class:`~neuroprobe.rules.rstdp.CascadeRSTDP`), ``"event"`` (the event-driven compiled CPU engine:
:mod:`neuroprobe.backends.event`, float; its integer variant is bit-identical to "torch-fixed"), ``"torch-fixed"`` (Loihi integer arithmetic in torch:
:mod:`neuroprobe.backends.fixed`), ``"brian2"`` (:mod:`neuroprobe.backends.brian2`) and ``"lava"``
(Lava's fixed_pt ProcessModels: :mod:`neuroprobe.backends.lava`).

* :func:`available` lists them with their status.
* :func:`impulse_response` (and :func:`impulse_responses`, several kernels at once) returns the
  cascade eligibility an engine actually computes after one pre→post pairing, so what each engine
  does can be plotted and compared (tests/conformance/ does).

Example::

    from neuroprobe.engines import available, impulse_response
    from neuroprobe.spec import CascadeKernel

    k = CascadeKernel(order=6, delay=2.0)                        # peak 1 at 2 s
    h = impulse_response(k, "torch-fixed", dt=1e-3, steps=4000)  # h.argmax() == 2000
"""
from __future__ import annotations

import math
from dataclasses import replace
from numbers import Integral, Real
from typing import Iterable, Sequence

import numpy as np
import torch

from .errors import ConfigError, NeuroprobeError
from .spec.kernel import CascadeKernel

__all__ = ["ENGINES", "available", "impulse_response", "impulse_responses"]

ENGINES = ("torch", "event", "torch-fixed", "brian2", "lava")
_TAU_STEPS = 20  # STDP trace time constants of the pairing, in steps (any value: the pairing is divided out)


def available() -> list[tuple[str, str, str]]:
    """``[(name, status, detail), …]`` for every engine of :data:`ENGINES`; status ``"ok"`` or
    ``"missing"``, detail one line (version, or why it is missing). Lava is asked through
    :func:`neuroprobe.backends.lava.lava_status` (starts its interpreter: a few seconds)."""
    out = [("torch", "ok", f"torch {torch.__version__}, float64 or float32"),
           ("torch-fixed", "ok", "Loihi integer arithmetic in torch (neuroprobe.backends.fixed)")]
    from .backends.event import available as event_available

    if event_available():
        import numba

        out.insert(1, ("event", "ok", f"numba {numba.__version__}: event-driven CPU engine, float and fixed point"))
    else:
        out.insert(1, ("event", "missing", "numba does not import: pip install numba"))
    try:
        import brian2

        out.append(("brian2", "ok", f"brian2 {brian2.__version__}"))
    except Exception as e:  # ImportError or a broken install
        out.append(("brian2", "missing", f"brian2 does not import ({type(e).__name__}): pip install brian2"))
    from .backends.lava import lava_status

    st = lava_status()
    out.append(("lava", "ok" if st["ok"] else "missing", st["detail"]))
    return out


def _check(kernels: Sequence[CascadeKernel], engine: str, dt: float, steps: int) -> tuple[float, int]:
    if engine not in ENGINES:
        raise ConfigError(f"engine = {engine!r}: allowed {list(ENGINES)}")
    for k in kernels:
        if not isinstance(k, CascadeKernel):
            raise ConfigError(f"kernel = {k!r}: must be a neuroprobe.spec.CascadeKernel")
    if isinstance(dt, bool) or not isinstance(dt, Real) or not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt = {dt!r}: must be a positive number of seconds")
    if isinstance(steps, bool) or not isinstance(steps, Integral) or not 1 <= steps <= 10_000_000:
        raise ConfigError(f"steps = {steps!r}: must be an integer in 1 .. 10000000")
    return float(dt), int(steps)


def impulse_response(kernel: CascadeKernel, engine: str, dt: float, steps: int) -> np.ndarray:
    """The eligibility ``engine`` computes ``k = 0 … steps−1`` steps after one pre→post pairing,
    per unit of STDP coincidence (float64 ``(steps,)``; ``k = 0`` is the step of the post spike).

    Each engine's own cascade code is driven, with ``kernel``'s order, delay and normalisation:

    * ``"torch"``: :class:`~neuroprobe.rules.rstdp.CascadeRSTDP` (float64) on a one-synapse
      projection, a pre spike at step −1 and a post spike at step 0; its eligibility divided by
      the pairing's coincidence ``a_plus·e^(−dt/τ+)``.
    * ``"event"``: the event engine's lazy cascade (:mod:`neuroprobe.backends.event.cascade`): the
      state right after the pairing's coincidence, advanced in closed form to each lag ``k`` in one
      jump (what the engine does between a synapse's events), ``scale·x[n−1]`` per unit coincidence.
    * ``"torch-fixed"``: :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP` with
      :func:`~neuroprobe.backends.fixed.rstdp.fixed_rstdp_params`, the same pairing (then, without
      spikes or dopamine, the rule's step reduces to its integer cascade update); the integer
      ``e_n`` scaled back to float as the engine's learning-rate mapping does: per unit float
      coincidence, ``e_n / P`` with ``P`` the integer cascade's peak after a unit coincidence, times
      the float kernel's maximum under ``kernel.normalize`` (1 for "peak"; the fixed-point rule
      itself is peak-normalised).
    * ``"brian2"``: the Brian2 export (:func:`~neuroprobe.backends.brian2.run_brian2`, numpy
      target) of an input neuron driving a LIF neuron through the plastic synapse (a pre spike at
      step 0 makes the post neuron spike at step 1); the recorded eligibility from step 1 on,
      divided by the coincidence.
    * ``"lava"``: a Lava job (fixed_pt, ``CascadeRSTDPConn``, the torch-fixed parameters except the
      weight readout): ``steps`` one-to-one synapses whose pairings happen ``0 … steps−1`` steps
      before the last step, where one dopamine pulse with ``lr_mant = 1, lr_shift = 0`` adds every
      synapse's ``e_n`` to its weight accumulator; the weight changes are the integer response,
      scaled as for torch-fixed. Lava starts in seconds; use :func:`impulse_responses` for
      several kernels in one job.

    Errors: an unknown engine or bad argument is a ConfigError naming the allowed values; an
    engine that is not installed, one :class:`~neuroprobe.errors.NeuroprobeError` line.
    """
    return impulse_responses([kernel], engine, dt, steps)[0]


def impulse_responses(kernels: Iterable[CascadeKernel], engine: str, dt: float, steps: int) -> list[np.ndarray]:
    """:func:`impulse_response` for several kernels (one Lava job for all of them)."""
    kernels = list(kernels)
    dt, steps = _check(kernels, engine, dt, steps)
    if engine == "lava":
        return _lava(kernels, dt, steps)
    fn = {"torch": _torch, "event": _event, "torch-fixed": _torch_fixed, "brian2": _brian2}[engine]
    return [fn(k, dt, steps) for k in kernels]


# ------------------------------------------------------------------------------------------ torch
def _pair_network(dt: float):
    from .spiking import SpikingNetwork, spec_from_dict

    spec = spec_from_dict({
        "network": {"dt": dt},
        "population": [{"name": "pre", "size": 1, "kind": "input"},
                       {"name": "post", "size": 1, "kind": "lif",
                        "lif": {"tau_mem": 20 * dt, "tau_syn": 0.0, "v_th": 1.0, "v_reset": 0.0}}],
        "projection": [{"pre": "pre", "post": "post", "p": 1.0, "weight": 1000.0}]}, src="<impulse response>")
    return SpikingNetwork(spec, torch.Generator().manual_seed(0), dtype=torch.float64)


def _torch(kernel: CascadeKernel, dt: float, steps: int) -> np.ndarray:
    from .rules.rstdp import CascadeRSTDP

    proj = _pair_network(dt).projection("pre->post")
    tau = _TAU_STEPS * dt
    rule = CascadeRSTDP(proj, 1, kernel.order, kernel.delay, dt, tau_plus=tau, tau_minus=tau, a_plus=1.0,
                        a_minus=0.0, normalize=kernel.normalize)
    one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    rule.step(one, zero)  # pre spike (step −1)
    c = rule.a_plus * rule.decay_plus  # the coincidence of the pairing at step 0
    out = np.empty(steps)
    for t in range(steps):
        out[t] = float(rule.step(zero, one if t == 0 else zero)[0, 0])
    return out / c


def _event(kernel: CascadeKernel, dt: float, steps: int) -> np.ndarray:
    from .backends.event import available
    from .backends.event.cascade import KF_FIELDS, advance_to, explicit_step, lazy_constants

    if not available():
        raise NeuroprobeError("engine 'event' needs numba: pip install numba")
    kf, tab = lazy_constants(kernel, dt, 1.0, 0.0, -1.0, 1.0)
    n = kernel.order
    none_t, none_v, none_n = np.zeros((1, 1), np.int64), np.zeros((1, 1)), np.zeros(1, np.int64)
    X0, T0, W = np.zeros((1, 1, n)), np.zeros((1, 1), np.int64), np.zeros((1, 1))
    explicit_step(X0, T0, W, 0, 0, 1, 1.0, 0.0, none_t, none_v, none_n, kf, tab)  # unit coincidence at step 1
    scale = kf[KF_FIELDS.index("scale")]
    out = np.empty(steps)
    for k in range(steps):  # each lag from the pairing's state in one closed-form jump
        X, T = X0.copy(), T0.copy()
        advance_to(X, T, W, 0, 0, 1 + k, none_t, none_v, none_n, kf, tab)
        out[k] = scale * X[0, 0, n - 1]
    return out


# ------------------------------------------------------------------------------------ fixed point
def _peak_value(kernel: CascadeKernel, dt: float) -> float:
    """Maximum of the float engines' response under ``kernel.normalize`` (1 for "peak")."""
    if kernel.normalize == "peak":
        return 1.0
    return kernel.grid_scale(dt) / replace(kernel, normalize="peak").grid_scale(dt)


def _fixed_params(kernel: CascadeKernel, dt: float):
    from .backends.fixed.network import FixedProjection
    from .backends.fixed.rstdp import fixed_rstdp_params

    one = torch.zeros(1, dtype=torch.int64)
    proj = FixedProjection(name="pre->post", pre_pop="pre", post_pop="post", n_pre=1, n_post=1, pre=one, post=one,
                           w_mant=torch.zeros(1, dtype=torch.int64), weight_exp=0, scale_w=1.0)
    tau = _TAU_STEPS * dt
    prm = fixed_rstdp_params(proj, dt, kernel.order, kernel.delay, tau, tau, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0)
    return proj, prm


def _fixed_scale(kernel: CascadeKernel, dt: float, prm, c_int: int) -> float:
    """Float eligibility per integer e_n unit, for a pairing of integer coincidence ``c_int``."""
    from .backends.fixed.rstdp import integer_peak

    peak, _ = integer_peak(prm, int(1.5 * kernel.delay_steps(dt)) + 10 if kernel.order > 1 else 1)
    return prm.unit / ((c_int << prm.c_shift) * peak) * _peak_value(kernel, dt)


def _pair_coincidence(prm) -> int:
    """Integer coincidence of a pre spike one step before a post spike: a_plus·trunc(impulse·(4096 − dx)/4096)."""
    return prm.a_plus * ((prm.impulse * (4096 - prm.dx)) >> 12)


def _torch_fixed(kernel: CascadeKernel, dt: float, steps: int) -> np.ndarray:
    from .backends.fixed.rstdp import FixedCascadeRSTDP, _cascade_update

    proj, prm = _fixed_params(kernel, dt)
    rule = FixedCascadeRSTDP(proj, 1, prm)
    yes, no = torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.bool)
    rule.step(yes, no, 0)  # pre spike (step −1)
    rule.step(no, yes, 0)  # post spike (step 0): the pairing
    e = np.empty(steps, dtype=np.int64)
    e[0] = int(rule.e[-1, 0, 0])
    state = rule.e
    for t in range(1, steps):  # no spikes, no dopamine: the rule's step is its cascade update
        state = _cascade_update(state, prm.r, prm.r_shift, prm.e_max)
        e[t] = int(state[-1, 0, 0])
    return e.astype(np.float64) * _fixed_scale(kernel, dt, prm, _pair_coincidence(prm))


# ------------------------------------------------------------------------------------------ brian2
def _brian2(kernel: CascadeKernel, dt: float, steps: int) -> np.ndarray:
    import logging

    from .backends.brian2 import brian2_available, run_brian2

    if not brian2_available():
        raise NeuroprobeError("engine 'brian2' is not installed: pip install brian2")
    net = _pair_network(dt)
    tau = _TAU_STEPS * dt
    plasticity = {"projection": "pre->post", "order": kernel.order, "delay": kernel.delay,
                  "normalize": kernel.normalize, "tau_plus": tau, "tau_minus": tau, "a_plus": 1.0, "a_minus": 0.0,
                  "lr": 0.0}
    x = np.zeros((steps + 1, 1))
    x[0, 0] = 1  # pre spike at step 0 → post spike at step 1 (the pairing)
    logger = logging.getLogger("brian2")  # Brian2 logs every code object at DEBUG level: slow under a handler
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        rec = run_brian2(net, plasticity=plasticity, input_spikes={"pre": x}, float_dtype=np.float64)
    finally:
        logger.setLevel(level)
    z = rec["spikes/post"][:, 0]
    if z[1] != 1 or z.sum() != 1:
        raise NeuroprobeError(f"brian2 impulse response: the post neuron spiked at steps {np.nonzero(z)[0].tolist()}, "
                              "expected step 1 only")
    c = 1.0 * math.exp(-dt / tau)  # a_plus · x_pre one step after the pre spike
    return rec["eligibility/pre->post"][1:, 0].astype(np.float64) / c


# -------------------------------------------------------------------------------------------- lava
def _lava(kernels: list[CascadeKernel], dt: float, steps: int) -> list[np.ndarray]:
    """One Lava job: the input population "pre" and the LIF population "post" (``steps`` neurons
    each), connected one to one by a CascadeRSTDPConn per kernel with that kernel's integer
    parameters. Synapse j is paired at step T−1−j (pre spike at T−2−j, which makes post neuron j
    spike one step later through the synapses' own weights, 255 each); a dopamine of 1 at the last
    step T−1 with lr_mant = 1, lr_shift = 0 adds e_n(lag j) to w_acc_j."""
    from .backends.lava import run_job

    S, T = steps, steps + 1
    pre_data = np.zeros((S, T), dtype=np.int32)
    pre_data[np.arange(S), T - 2 - np.arange(S)] = 1
    dopamine = np.zeros(T, dtype=np.int64)
    dopamine[-1] = 1
    idx = np.arange(S, dtype=np.int64)
    w0 = np.full(S, 255 << 8, dtype=np.int64)
    arrays = {"in/pre": pre_data, "dopamine": dopamine, "idx": idx, "w0": w0}
    pops = [{"name": "pre", "size": S, "kind": "input", "data": "in/pre"},
            {"name": "post", "size": S, "kind": "lif", "du": 4095, "dv": 4095, "vth": 1, "bias_mant": 0,
             "bias_exp": 0, "noise": None}]
    projs, scales = [], []
    for i, k in enumerate(kernels):
        _, prm = _fixed_params(k, dt)
        params = {**prm.as_dict(), "lr_mant": 1, "lr_shift": 0, "lo": -(1 << 40), "hi": 1 << 40, "frac_bits": 8,
                  "weight_exp": 0}
        projs.append({"name": f"pre->post{i}", "pre": "pre", "post": "post", "n_pre": S, "n_post": S,
                      "weight_exp": 0, "plastic": {"pre_idx": "idx", "post_idx": "idx", "w_acc": "w0",
                                                   "params": {a: int(b) for a, b in params.items()}}})
        scales.append(_fixed_scale(k, dt, prm, _pair_coincidence(prm)))
    job = {"precision": "fixed", "steps": T, "noise_seed": 0, "populations": pops, "projections": projs,
           "record": {}, "dopamine": "dopamine", "report_every": None}
    out = run_job(job, arrays, timeout=max(120.0, 0.05 * T * len(kernels)))
    return [(out[f"w_acc/pre->post{i}"] - w0).astype(np.float64) * scales[i] for i in range(len(kernels))]
