"""The event engine's float simulator: chunks of steps of B trials in compiled code
(:mod:`neuroprobe.backends.event.kernels`), with the torch engine's spikes.

Built from a :class:`~neuroprobe.spiking.SpikingNetwork` (its connectivity, weights and
parameters), optionally with cascade R-STDP on one or more projections (an
:class:`~neuroprobe.spec.RSTDPSpec` or a list of them, one kernel) and a dopamine source: the
distal-reward protocol (:class:`DistalParams`), a constant tonic dopamine, or both (the rule then
sees ``tonic + d``: Izhikevich's ``0.002 + DA``). Noise is the counter-based hash
(:mod:`neuroprobe.neurons.hash_rng`), trial b with seed ``noise_seed + b``: in float64 the spikes
equal those of ``SpikingNetwork(..., rng="hash", noise_seed=noise_seed)`` driven by
:mod:`neuroprobe.backends.torch_run`'s loop (the R-STDP weights to float64 rounding).

Chunk simulator interface (shared with :class:`~.fixed_sim.FixedEventSimulator`)::

    sim = EventSimulator(net, batch=B, rule=spec, distal=DistalParams(...))
    out = sim.run(steps, record_from, rec_spikes=("exc",), rec_v=("exc",))
    out["counts"][pop]  (B,) int64 spikes of each LIF or Izhikevich population in the chunk
    out["spikes"][pop]  (T_rec, N) uint8 of trial 0; out["v"][pop] (T_rec, N) float64 (after the step;
                        Izhikevich: before the reset of a spike, as the torch state)
    out["t0"]           0-based step of the first recorded row (recorded: steps >= record_from)
    sim.weights()       (B, S) float64 signed weights of the first plastic projection (up to date;
                        weights(name) another's)
    sim.dopamine, sim.rewards, sim.coincidences   (B,) arrays of the protocol (dopamine: the phasic
                        part; sim.tonic the constant added to it)
    sim.state_dict(), sim.load_state_dict(d)      exact resume
    sim.compile_seconds  JIT compilation (first use) or cache load time of the kernels
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

from ..._args import check_batch
from ...errors import ConfigError, ShapeError
from ...spec.rules import RSTDPSpec
from ...spiking.network import SpikingNetwork
from ...tasks.distal_reward import window_steps
from . import kernels
from .cascade import lazy_constants
from .network import compile_network, compile_state

__all__ = ["EventSimulator", "DistalParams"]

_FAR = -10 ** 9


@dataclass(frozen=True)
class DistalParams:
    """The float distal-reward protocol (:class:`~neuroprobe.tasks.distal_reward.DistalReward`) with
    hash delays: per trial its rewarded synapse ``pre[b] -> post[b]`` (neuron indices in the pre and
    post populations of ``projection``); window, delay_min, delay_max, dopamine_tau in seconds;
    dopamine_amp per delivered reward. On a hit of trial b at 1-based step t the delay is
    ``delay_min + (delay_max − delay_min)·u`` with ``u = (hash_uniform32(noise_seed + b, t, N_all) +
    0.5)/2**32``."""

    projection: str
    pre: tuple
    post: tuple
    window: float = 10e-3
    delay_min: float = 1.0
    delay_max: float = 3.0
    dopamine_tau: float = 0.2
    dopamine_amp: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "pre", tuple(int(i) for i in np.asarray(self.pre).reshape(-1)))
        object.__setattr__(self, "post", tuple(int(i) for i in np.asarray(self.post).reshape(-1)))
        if len(self.pre) != len(self.post):
            raise ConfigError(f"distal pre/post: {len(self.pre)} and {len(self.post)} entries; need one per trial")
        if not 0 <= self.delay_min <= self.delay_max:
            raise ConfigError(f"task.delay_min/delay_max = {self.delay_min}, {self.delay_max}: need "
                              "0 <= min <= max (s)")
        if self.window <= 0 or self.dopamine_tau <= 0:
            raise ConfigError("task.window and task.dopamine_tau must be > 0 s")


def _np(x, dtype) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(a, dtype=dtype).copy()


class EventSimulator:
    """B trials of a spiking network on the event engine (see the module docstring).

    Args:
        net: the network (connectivity, weights, parameters; its ``noise_seed`` is the default).
        batch: number of trials B.
        noise_seed: hash seed of trial 0 (default ``net.noise_seed``).
        dtype: torch.float32 | torch.float64 (default the network's).
        rule: cascade R-STDP on ``rule.projection`` (per-trial weights; ``lr`` the SGD step), or a
            list of specs (one per plastic projection, one kernel; their synapses in blocks of the
            shared state, the distal protocol's projection first).
        distal: the distal-reward protocol (its projection must be plastic, if a rule is given).
        tonic_dopamine: without ``distal``, a constant dopamine from step 1 (benchmarks); with it,
            a constant >= 0 added to the protocol's dopamine in every weight update.
        state: a torch engine state (``net.init_state(B)`` layout) to start from (default: rest).
        currents: LIF populations that receive a given current each step (``run(currents=…)``).
        parallel: trials in parallel threads when B > 1 (``numba.get_num_threads()`` of them;
            the results do not depend on it).
    """

    def __init__(self, net: SpikingNetwork, batch: int = 1, *, noise_seed: int | None = None,
                 dtype: torch.dtype | None = None, rule: RSTDPSpec | None = None, distal: DistalParams | None = None,
                 tonic_dopamine: float | None = None, state: dict | None = None, currents: Iterable[str] = (),
                 parallel: bool = True):
        if not isinstance(net, SpikingNetwork):
            raise ConfigError(f"net = {type(net).__name__}: must be a SpikingNetwork")
        B = self.B = check_batch(batch)
        seed = getattr(net, "noise_seed", 0) if noise_seed is None else noise_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
            raise ConfigError(f"noise_seed = {seed!r}: must be an integer in [0, 2**32)")
        self.noise_seed, self.parallel, self.net = seed, bool(parallel), net
        self._pool = None
        if self.parallel and B > 1:
            import numba

            self._pool = ThreadPoolExecutor(max_workers=max(1, min(B, numba.get_num_threads())))
        self.currents = tuple(currents)
        plastic = tuple(getattr(r, "projection", None) for r in (rule if isinstance(rule, (list, tuple)) else
                                                                 [rule] if rule is not None else []))
        if tonic_dopamine is not None and distal is not None:
            td = tonic_dopamine
            if isinstance(td, bool) or not isinstance(td, (int, float)) or not (td >= 0 and math.isfinite(td)):
                raise ConfigError(f"tonic_dopamine = {td!r}: must be a finite number >= 0 (added to the protocol's "
                                  "dopamine)")
            if td > 0 and distal.dopamine_amp < 0:
                raise ConfigError(f"tonic_dopamine = {td} with dopamine_amp = {distal.dopamine_amp}: the tonic and "
                                  "the phasic dopamine must have one sign")
        en = self.en = compile_network(net, B, dtype, self.currents, plastic)
        self.F, self.dt = en.dtype, float(net.spec.dt)
        self.lif_pops = [n for n, k in zip(en.names, en.kinds) if k == "lif"]
        self.input_pops = [n for n, k in zip(en.names, en.kinds) if k == "input"]
        s = compile_state(en, net, state)
        self.t = int(state.get("t", 0)) if state is not None else 0
        N = en.n_all
        self.v, self.i, self.rho, self.spk, self.nspk = s["v"], s["i"], s["rho"], s["spk"], s["nspk"]
        self.seeds = (seed + np.arange(B, dtype=np.int64)).astype(np.int64)
        self._zflag = np.zeros((B, N), dtype=np.uint8)
        for b in range(B):
            self._zflag[b, self.spk[b, :self.nspk[b]]] = 1
        self._spk_cur = np.zeros((B, N), dtype=np.int32)
        self._buf = np.zeros((B, en.n_out), dtype=self.F)
        self._net_args = (en.pop_off, en.pop_kind, en.pop_of, en.fc, en.ic, en.fd, en.noise_tab, en.pois_p, en.pre_ptr,
                          en.pre_list, en.in_ptr, en.in_list, en.row_off, en.syn_off, en.out_off, en.rowptr, en.post,
                          en.weight)
        self._setup_plasticity(net, rule, distal, tonic_dopamine)
        self._setup_protocol(net, distal, tonic_dopamine)
        t0 = time.perf_counter()
        self._warm_up()
        self.compile_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ set-up
    def _setup_plasticity(self, net, rule, distal, tonic) -> None:
        B, F = self.B, self.F
        rules = self._rules(rule, distal)
        self.rules = rules
        self.rule = rules[0] if rules else None
        if not rules:
            if distal is not None and distal.projection not in self.en.proj_names:
                self.en.projection_index(distal.projection)  # one-line error naming the projections
            self.pj = -1
            self.proj = None
            self.plastic = ()
            self._blocks = {}
            self.W = np.zeros((B, 1), dtype=F)
            self.x_pre = self.y_post = np.zeros((B, 1), dtype=F)
            self._plc = np.zeros((1, 5), dtype=F)
            self._pli = np.zeros((1, len(kernels.PLI_FIELDS)), dtype=np.int64)
            self._pjmap = np.full(len(self.en.proj_names), -1, dtype=np.int64)
            z64 = np.zeros(2, dtype=np.int64)
            z32 = np.zeros(1, dtype=np.int32)
            self._ptabs = (z64, z32, z32, z64, z32)
            self.X = np.zeros((B, 1, 1))
            self.T = np.zeros((B, 1), dtype=np.int64)
            self.kf, self.tab = np.zeros((1, 1)), np.zeros((1, 1))
            return
        en = self.en
        self.pj = en.projection_index(rules[0].projection)
        projs = [net.projection(r.projection) for r in rules]
        self.proj = projs[0]
        self.plastic = tuple(p.name for p in projs)
        n = rules[0].kernel.order
        gamma = math.exp(-self.dt / distal.dopamine_tau) if distal is not None else 1.0
        tonic_kf = float(tonic) if (distal is not None and tonic is not None) else 0.0
        ws, plc, pli, kfs, self._blocks = [], [], [], [], {}
        cps, ins, pres, rps, posts = [], [], [], [], []
        self._pjmap = np.full(len(en.proj_names), -1, dtype=np.int64)
        soff = cp0 = rp0 = xo = yo = 0
        for k, (r, proj) in enumerate(zip(rules, projs)):
            if proj.free_sign:
                raise ConfigError(f"projection {proj.name}: plasticity on free-signed weights is not supported by "
                                  "the event engine (give the pre population a Dale sign)")
            w = proj.weight.detach().cpu()
            w = w.expand(B, -1) if w.dim() == 1 else w
            if w.shape[0] != B:
                raise ShapeError(f"projection {proj.name} has per-trial weights for {w.shape[0]} trials, not {B}")
            ws.append(w.to(torch.float64))
            S = proj.n_synapses
            self._pjmap[en.projection_index(proj.name)] = k
            self._blocks[proj.name] = (soff, S)
            dec_plus, dec_minus = math.exp(-self.dt / r.tau_plus), math.exp(-self.dt / r.tau_minus)
            # the torch rule's Python scalars, rounded to the dtype as torch rounds them
            plc.append([r.a_plus, -r.a_minus, dec_plus, dec_minus, 1.0])
            pli.append([en.offset(proj.spec.pre), proj.n_pre, en.offset(proj.spec.post), proj.n_post, soff, S,
                        cp0, rp0, xo, yo])
            # the synapse tables with this block's synapse indices (pointers into the shared arrays)
            cps.append(_np(proj.colptr, np.int64) + soff)
            ins.append(_np(proj.by_post, np.int32) + soff)
            pres.append(_np(proj.pre, np.int32))
            rps.append(_np(proj.rowptr, np.int64) + soff)
            posts.append(_np(proj.post, np.int32))
            lo, hi = proj.spec.w_min, proj.spec.w_max
            if proj.sign < 0:
                lo, hi = -hi, -lo
            kf, tab = lazy_constants(r.kernel, self.dt, gamma, r.lr, lo, hi, tonic=tonic_kf)
            kfs.append(kf)
            soff, cp0, rp0 = soff + S, cp0 + proj.n_post + 1, rp0 + proj.n_pre + 1
            xo, yo = xo + proj.n_pre, yo + proj.n_post
        self.W = _np(torch.cat(ws, 1), F)
        self.X = np.zeros((B, soff, n))
        self.T = np.full((B, soff), self.t, dtype=np.int64)
        self.x_pre = np.zeros((B, xo), dtype=F)
        self.y_post = np.zeros((B, yo), dtype=F)
        self._plc = np.array(plc, dtype=F)
        self._pli = np.array(pli, dtype=np.int64)
        self._ptabs = (np.concatenate(cps), np.concatenate(ins).astype(np.int32), np.concatenate(pres),
                       np.concatenate(rps), np.concatenate(posts))
        self.kf, self.tab = np.ascontiguousarray(kfs), tab  # tab depends on the kernel, dt and γ only

    def _rules(self, rule, distal) -> list:
        """The plastic projections' specs, the distal projection's first; one-line errors."""
        if rule is None:
            return []
        rules = list(rule) if isinstance(rule, (list, tuple)) else [rule]
        if not rules:
            raise ConfigError("rule = []: give an RSTDPSpec (or several, one per plastic projection)")
        for r in rules:
            if not isinstance(r, RSTDPSpec):
                raise ConfigError(f"rule = {type(r).__name__}: must be an RSTDPSpec (or a list of them)")
            self.en.projection_index(r.projection)  # one-line error naming the projections
        names = [r.projection for r in rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"rule projections {names}: each projection at most once")
        k0 = rules[0].kernel
        if any(r.kernel != k0 for r in rules):
            raise ConfigError(f"rule kernels differ ({[r.kernel for r in rules]}): the plastic projections share "
                              "one eligibility kernel")
        if distal is not None:
            if distal.projection not in names:
                raise ConfigError(f"distal projection {distal.projection!r} is not plastic (the rule's "
                                  f"projections: {names})")
            rules.sort(key=lambda r: r.projection != distal.projection)  # stable: the rewarded projection first
        return rules

    def _setup_protocol(self, net, distal, tonic) -> None:
        B = self.B
        self.distal = distal
        self.tonic = 0.0
        if distal is not None and tonic is not None:  # Izhikevich's 0.002 + DA: the rule sees tonic + phasic
            self.tonic = float(tonic)
        self.dmode = kernels.DMODE_DISTAL if distal is not None else kernels.DMODE_TONIC if tonic is not None \
            else kernels.DMODE_NONE
        self.dopamine = np.zeros(B)
        self.rewards = np.zeros(B, dtype=np.int64)
        self.coincidences = np.zeros(B, dtype=np.int64)
        self.last_pre = np.full(B, _FAR, dtype=np.int64)
        # dopamine pieces carried between chunks: at most the last one (all synapses are flushed)
        self.pt = np.zeros((B, 1), dtype=np.int64)
        self.pv = np.zeros((B, 1))
        self.pn = np.zeros(B, dtype=np.int64)
        if distal is None:
            self.rew_pre = self.rew_post = np.zeros(B, dtype=np.int64)
            self.schedule = np.zeros((B, 1), dtype=np.int64)
            self._prf = np.array([self.dt, 0.0, 0.0, 1.0, 0.0, 0.0])
            self._pri = np.array([0, 1, self.en.n_all], dtype=np.int64)
            if tonic is not None:
                self.dopamine[:] = float(tonic)
                self.pt[:, 0], self.pv[:, 0], self.pn[:] = 1, float(tonic), 1
            return
        if len(distal.pre) != B:
            raise ConfigError(f"distal protocol: {len(distal.pre)} rewarded synapses for {B} trials")
        pre_pop, post_pop = distal.projection.split("->")
        npre, npost = net.pops[pre_pop].size, net.pops[post_pop].size
        if not all(0 <= i < npre for i in distal.pre) or not all(0 <= j < npost for j in distal.post):
            raise ConfigError(f"distal protocol: rewarded neurons outside the populations ({npre}, {npost} neurons)")
        self.rew_pre = np.array(distal.pre, dtype=np.int64) + self.en.offset(pre_pop)
        self.rew_post = np.array(distal.post, dtype=np.int64) + self.en.offset(post_pop)
        H = int(round(distal.delay_max / self.dt)) + 2  # the float protocol's ring buffer
        self.schedule = np.zeros((B, H), dtype=np.int64)
        self._prf = np.array([self.dt, distal.delay_min, distal.delay_max, math.exp(-self.dt / distal.dopamine_tau),
                              distal.dopamine_amp, self.tonic])
        self._pri = np.array([window_steps(distal.window, self.dt), H, self.en.n_all], dtype=np.int64)

    # ------------------------------------------------------------------ the compiled call
    def _args(self, steps: int, inp, cur, rec_from, zcol, vcol, rec_z, rec_v, counts, pt, pv, plastic: bool):
        st = (self.v, self.i, self.rho, self.spk, self.nspk, self._zflag, self._spk_cur, self._buf, self.seeds,
              counts)
        io = (inp, cur, np.int64(rec_from), zcol, vcol, rec_z, rec_v)
        pl = (bool(plastic), self._pjmap, self.W, self.x_pre, self.y_post, self._plc, self._pli,
              *self._ptabs, self.X, self.T, pt, pv, self.pn, self.kf, self.tab, np.zeros(self.B, dtype=self.F))
        pr = (np.int64(self.dmode), self.rew_pre, self.rew_post, self.last_pre, self.schedule, self.dopamine,
              self.coincidences, self.rewards, self._prf, self._pri)
        return self._net_args, st, io, pl, pr

    def _io_arrays(self, steps: int, T_rec: int, rec_spikes, rec_v):
        en, P = self.en, len(self.en.names)
        zcol, vcol = np.full(P, -1, dtype=np.int64), np.full(P, -1, dtype=np.int64)
        nz = nv = 0
        for name in rec_spikes:
            k = self._pop(name)
            zcol[k], nz = nz, nz + en.sizes[k]
        for name in rec_v:
            k = self._pop(name)
            if en.kinds[k] not in ("lif", "izhikevich"):
                raise ConfigError(f"population {name!r} has no voltage (not a LIF or Izhikevich population)")
            vcol[k], nv = nv, nv + en.sizes[k]
        return zcol, vcol, np.zeros((T_rec, nz), dtype=np.uint8), np.zeros((T_rec, nv))

    def _pop(self, name: str) -> int:
        if name not in self.en.names:
            raise ConfigError(f"unknown population {name!r}; have {self.en.names}")
        return self.en.names.index(name)

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels with this simulator's argument types."""
        inp = np.zeros((1, self.B, max(self.en.n_input_cols, 1)), dtype=np.uint8)
        cur = np.zeros((1, self.B, 1), dtype=self.F)
        zcol, vcol, rec_z, rec_v = self._io_arrays(0, 0, (), ())
        counts = np.zeros((self.B, len(self.en.names)), dtype=np.int64)
        args = self._args(0, inp, cur, 0, zcol, vcol, rec_z, rec_v, counts, self.pt.copy(), self.pv.copy(), False)
        kernels.run_chunk(0, self.t, *args, compile_only=True)

    # ------------------------------------------------------------------ public interface
    def run(self, steps: int, record_from: int | None = None, rec_spikes: Iterable[str] = (),
            rec_v: Iterable[str] = (), inputs: Mapping[str, np.ndarray] | None = None,
            currents: Mapping[str, np.ndarray] | None = None) -> dict:
        """Simulate ``steps`` steps in compiled code.

        record_from: first 0-based step (of the whole run) whose spikes/voltages of trial 0 are
            recorded for the populations ``rec_spikes`` / ``rec_v`` (default: every step of the chunk).
        inputs: per "input" population its spikes (steps, B, N), 0/1 (required for each).
        currents: per population named at construction (``currents=``) its current (steps, B, N).
        """
        steps = int(steps)
        if steps < 0:
            raise ConfigError(f"steps = {steps}: must be >= 0")
        en, B = self.en, self.B
        rec_spikes, rec_v = tuple(rec_spikes), tuple(rec_v)
        t_start = self.t
        rec_abs = t_start if record_from is None else max(int(record_from), t_start)
        T_rec = max(0, t_start + steps - rec_abs)
        inp = self._given(inputs or {}, self.input_pops, en.input_cols, en.n_input_cols, steps, np.uint8, "inputs")
        cur_cols = {n: sum(en.sizes[self._pop(c)] for c in self.currents[:i]) for i, n in enumerate(self.currents)}
        ncur = sum(en.sizes[self._pop(c)] for c in self.currents)
        cur = self._given(currents or {}, list(self.currents), cur_cols, ncur, steps, self.F, "currents")
        zcol, vcol, rec_z, rec_vv = self._io_arrays(steps, T_rec, rec_spikes, rec_v)
        counts = np.zeros((B, len(en.names)), dtype=np.int64)
        # dopamine pieces: the carried one, then at most one per step of the chunk
        pt = np.zeros((B, steps + 1), dtype=np.int64)
        pv = np.zeros((B, steps + 1))
        pt[:, :1], pv[:, :1] = self.pt, self.pv
        plastic = self.pj >= 0
        args = self._args(steps, inp, cur, rec_abs - t_start, zcol, vcol, rec_z, rec_vv, counts, pt, pv, plastic)
        kernels.run_chunk(steps, t_start, *args, pool=self._pool)
        self.t = t_start + steps
        last = np.maximum(self.pn - 1, 0)
        self.pt, self.pv = pt[np.arange(B), last][:, None].copy(), pv[np.arange(B), last][:, None].copy()
        self.pn = np.minimum(self.pn, 1)
        neurons = ("lif", "izhikevich")
        out = {"counts": {n: counts[:, k].copy() for k, n in enumerate(en.names) if en.kinds[k] in neurons},
               "spikes": {n: rec_z[:, zcol[self._pop(n)]:zcol[self._pop(n)] + en.sizes[self._pop(n)]]
                          for n in rec_spikes},
               "v": {n: rec_vv[:, vcol[self._pop(n)]:vcol[self._pop(n)] + en.sizes[self._pop(n)]] for n in rec_v},
               "t0": rec_abs}
        return out

    def _given(self, given: Mapping, names: list, cols: dict, ncols: int, steps: int, dtype, what: str) -> np.ndarray:
        """The chunk's (steps, B, ncols) array of given spikes/currents (a (1, B, 1) dummy if none)."""
        bad = sorted(set(given) - set(names))
        if bad:
            raise ConfigError(f"{what} for {bad}: allowed {names}")
        if not names:
            return np.zeros((1, self.B, 1), dtype=dtype)
        out = np.zeros((max(steps, 1), self.B, max(ncols, 1)), dtype=dtype)
        for name in names:
            if name not in given:
                if what == "inputs":
                    raise ConfigError(f"population {name!r} is an 'input' population: pass its spikes in inputs")
                continue
            x = given[name]
            x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            size = self.en.sizes[self._pop(name)]
            if x.shape != (steps, self.B, size):
                raise ShapeError(f"{what}[{name!r}] has shape {x.shape}, expected {(steps, self.B, size)}")
            if what == "inputs" and not np.isin(x, (0, 1)).all():
                raise ConfigError(f"inputs[{name!r}]: spikes must be 0 or 1")
            out[:steps, :, cols[name]:cols[name] + size] = x
        return out

    def _block(self, projection: str | None) -> slice:
        if self.pj < 0:
            raise ConfigError("this simulator has no plastic projection (rule=None)")
        name = self.plastic[0] if projection is None else projection
        if name not in self._blocks:
            raise ConfigError(f"projection {name!r} is not plastic here; plastic: {list(self.plastic)}")
        s0, S = self._blocks[name]
        return slice(s0, s0 + S)

    def weights(self, projection: str | None = None) -> np.ndarray:
        """(B, S) float64 signed weights of a plastic projection (default: the first, the distal
        protocol's) (up to date: flushed every chunk)."""
        return self.W[:, self._block(projection)].astype(np.float64)

    def eligibility(self, projection: str | None = None) -> np.ndarray:
        """(B, S) float64 eligibility ``scale · x[n−1]`` of a plastic projection (default: the first)."""
        sl = self._block(projection)
        from .cascade import KF_FIELDS

        return self.X[:, sl, -1] * self.kf[0, KF_FIELDS.index("scale")]

    _STATE = ("v", "i", "rho", "spk", "nspk", "W", "X", "T", "x_pre", "y_post", "dopamine", "rewards", "coincidences",
              "last_pre", "schedule", "pt", "pv", "pn")

    def state_dict(self) -> dict:
        """Copies of every state array, the step count and the seed (exact resume)."""
        return {"t": self.t, "noise_seed": self.noise_seed, **{k: getattr(self, k).copy() for k in self._STATE}}

    def load_state_dict(self, d: Mapping) -> None:
        """Restore :meth:`state_dict`'s output (same network, batch, dtype and plasticity)."""
        for k in self._STATE:
            cur, new = getattr(self, k), np.asarray(d[k])
            if new.shape != cur.shape:
                raise ShapeError(f"state {k!r} has shape {new.shape}, expected {cur.shape}")
            setattr(self, k, np.ascontiguousarray(new, dtype=cur.dtype).copy())
        if int(d["noise_seed"]) != self.noise_seed:
            raise ConfigError(f"state noise_seed {int(d['noise_seed'])} differs from this simulator's "
                              f"{self.noise_seed}")
        self.t = int(d["t"])
        self._zflag[:] = 0
        for b in range(self.B):
            self._zflag[b, self.spk[b, :self.nspk[b]]] = 1
