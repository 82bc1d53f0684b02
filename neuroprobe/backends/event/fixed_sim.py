"""The event engine's fixed-point (Loihi integer) distal-reward simulator: chunks of steps of B
trials in compiled code (:mod:`neuroprobe.backends.event.fixed_kernels`), bit-identical to the
torch fixed-point run (:func:`neuroprobe.backends.fixed.distal_run.compile_distal`) and therefore
to Lava fixed_pt.

Built from a :class:`~neuroprobe.backends.fixed.distal_run.FixedDistalSetup` (the integer
network, its plastic projection, the rule's and the protocol's integer parameters, the pre-drawn
inputs). Build it before a torch :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP` on the
same setup, or from a setup of its own: the torch rule rewrites ``proj.w_mant``.

Chunk simulator interface (shared with the float simulator)::

    sim = FixedEventSimulator(setup)
    out = sim.run(steps, record_from, rec_spikes=("exc",), rec_v=("exc",))
    out["counts"][pop]  (B,) spikes of each LIF population in the chunk
    out["spikes"][pop]  (T_rec, N) uint8 of trial 0, out["v"][pop] (T_rec, N) float64 (voltage units)
    out["t0"]           0-based step of the first recorded row (recorded: steps >= record_from)
    sim.weights()       (B, S) float64 |w| of the plastic projection (FixedDistalSetup.float_weights)
    sim.dopamine, sim.rewards, sim.coincidences   (B,) int64 of the protocol
    sim.state_dict(), sim.load_state_dict(d)      exact resume
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numba
import numpy as np

from ...errors import ConfigError
from . import fixed_kernels as fk

__all__ = ["FixedEventSimulator"]

_NEVER = -10 ** 9
_STATE = ("z", "u", "v", "x", "y", "e", "w", "last_pre", "pending", "dop", "coin", "rew")


def _np(x, dtype=np.int64) -> np.ndarray:
    """A C-contiguous NumPy copy of a tensor/array."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return np.ascontiguousarray(a, dtype=dtype).copy()


def _csr(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr (n + 1,), items): the indices of ``keys`` grouped by key (stable)."""
    items = np.argsort(keys, kind="stable").astype(np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr, items


class FixedEventSimulator:
    """B trials of the integer distal-reward run (see the module docstring).

    setup: a FixedDistalSetup (``fixed_distal_setup(exp, generator)``); parallel: trials in
    parallel threads when B > 1 (``numba.get_num_threads()`` of them at most; the results do not
    depend on it). State arrays (attributes,
    NumPy): ``z`` (B, N_all) uint8 last spikes, ``u``, ``v`` (B, N_all) int64 (global neuron index
    = population offset + index, spec order), ``x`` (B, n_pre), ``y`` (B, n_post), ``e`` (B, order,
    S) int32 cascade, ``w`` (B, S) int64 weight accumulators (``w_acc``), the protocol's
    ``last_pre``, ``pending`` (B, horizon) rewards due, ``dop``, ``coin``, ``rew``. ``state_dict()``
    holds them all and ``t``."""

    def __init__(self, setup, parallel: bool = True):
        fx, proj, prm = setup.fx, setup.proj, setup.prm
        dps = list(setup.dparams)
        self.B = B = len(dps)
        if B < 1:
            raise ConfigError("the event fixed-point engine needs at least one trial")
        self.setup, self.scale, self.parallel = setup, int(fx.scale), bool(parallel)
        pops = list(fx.spec.populations)
        self.pop_names = [p.name for p in pops]
        self.pop_index = {p.name: i for i, p in enumerate(pops)}
        for p in pops:
            if p.kind not in ("lif", "input"):
                raise ConfigError(f"population {p.name!r} of kind {p.kind!r}: the fixed-point engine takes 'lif' "
                                  "and 'input' populations")
        sizes = np.array([p.size for p in pops], dtype=np.int64)
        self.pop_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.pop_lif = np.array([p.kind == "lif" for p in pops], dtype=np.int64)
        self.lif_pops = [p.name for p in pops if p.kind == "lif"]
        self.lif_par = np.zeros((len(pops), len(fk.LIF_FIELDS)), dtype=np.int64)
        for i, p in enumerate(pops):
            if p.kind != "lif":
                continue
            q = fx.lif[p.name]
            mant, shift = fx.noise.get(p.name, (0, -1))
            self.lif_par[i] = (4096 - (q.du + 1), 4096 - q.dv, q.effective_vth, q.effective_bias, mant, shift)
        self._build_projections(fx, proj, B)
        self._build_rule(proj, prm, B)
        self._build_inputs(setup.inputs, B)
        self._build_protocol(dps, B)
        self.noise_seed = int(fx.noise_seed)
        n_all = int(self.pop_off[-1])
        self.z = np.zeros((B, n_all), dtype=np.uint8)
        self.u = np.zeros((B, n_all), dtype=np.int64)
        self.v = np.zeros((B, n_all), dtype=np.int64)
        self.t = 0
        self.compile_seconds: float | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_threads = 0

    # ------------------------------------------------------------ construction
    def _build_projections(self, fx, proj, B: int) -> None:
        rows, rowptr, syn_post, syn_w, wm = [], [], [], [], []
        n_rowptr, n_syn, n_static = 0, 0, 0
        self.plastic_name = proj.name
        for pr in fx.fixed_projections:
            pre, post = _np(pr.pre), _np(pr.post)
            S = len(pre)
            ptr, items = _csr(pre, pr.n_pre)
            plastic = pr is proj
            if plastic:
                cols = items
            else:
                w = _np(pr.w_mant)
                w = np.broadcast_to(w, (B, S)) if w.ndim == 1 or w.shape[0] == 1 else w
                if w.shape != (B, S):
                    raise ConfigError(f"projection {pr.name}: weights of shape {w.shape}, expected ({B}, {S})")
                wm.append(w)
                cols = items + n_static
                n_static += S
            rows.append((self.pop_index[pr.pre_pop], self.pop_index[pr.post_pop], int(pr.weight_exp), int(plastic),
                         n_rowptr, n_syn))
            rowptr.append(ptr + n_syn)
            syn_post.append(post[items])
            syn_w.append(cols)
            n_rowptr += pr.n_pre + 1
            n_syn += S
        if proj not in fx.fixed_projections:
            raise ConfigError(f"plastic projection {proj.name!r} is not one of the network's")
        self.prj = np.array(rows, dtype=np.int64).reshape(-1, len(fk.PRJ_FIELDS))
        cat = lambda xs: np.ascontiguousarray(np.concatenate(xs) if xs else np.zeros(0), dtype=np.int64)  # noqa: E731
        self.rowptr, self.syn_post, self.syn_w = cat(rowptr), cat(syn_post), cat(syn_w)
        self.wm = np.ascontiguousarray(np.concatenate(wm, axis=1) if wm else np.zeros((B, 0)), dtype=np.int64)

    def _build_rule(self, proj, prm, B: int) -> None:
        if prm.weight_exp != proj.weight_exp:
            raise ConfigError(f"fixed R-STDP weight_exp {prm.weight_exp} != projection {proj.name}'s {proj.weight_exp}")
        self.prm = prm
        self.ppre, self.ppost = _np(proj.pre), _np(proj.post)
        S = len(self.ppre)
        self.out_ptr, self.out_syn = _csr(self.ppre, proj.n_pre)
        self.in_ptr, self.in_syn = _csr(self.ppost, proj.n_post)
        self.pl = np.array([self.pop_index[proj.pre_pop], self.pop_index[proj.post_pop], prm.order, prm.r,
                            prm.r_shift, prm.e_max, 4096 - prm.dx, 4096 - prm.dy, prm.impulse, prm.a_plus,
                            prm.a_minus, prm.c_shift, prm.lr_mant, prm.lr_shift, prm.frac_bits, prm.lo, prm.hi],
                           dtype=np.int64)
        w0 = _np(proj.w_mant)
        w0 = np.broadcast_to(w0, (B, S)) if w0.ndim == 1 or w0.shape[0] == 1 else w0
        # FixedCascadeRSTDP's initial accumulators: (mantissa << frac_bits) within [lo, hi]
        self.w = np.ascontiguousarray(np.clip(w0 << prm.frac_bits, prm.lo, prm.hi), dtype=np.int64)
        self.x = np.zeros((B, proj.n_pre), dtype=np.int64)
        self.y = np.zeros((B, proj.n_post), dtype=np.int64)
        self.e = np.zeros((B, prm.order, S), dtype=np.int32)
        self.scale_w = float(proj.scale_w)

    def _build_inputs(self, inputs: dict, B: int) -> None:
        n_all = int(self.pop_off[-1])
        self.in_col = np.full(n_all, -1, dtype=np.int64)
        arrays, col = [], 0
        for name in self.pop_names:
            i = self.pop_index[name]
            if self.pop_lif[i]:
                continue
            if name not in inputs:
                raise ConfigError(f"input population {name!r}: no spikes given")
            a = inputs[name]
            a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
            n = int(self.pop_off[i + 1] - self.pop_off[i])
            if a.ndim != 3 or a.shape[1:] != (B, n):
                raise ConfigError(f"input population {name!r}: spikes of shape {a.shape}, expected (T, {B}, {n})")
            arrays.append(a)
            self.in_col[self.pop_off[i]:self.pop_off[i + 1]] = np.arange(col, col + n)
            col += n
        if not arrays:
            self.inputs = np.zeros((0, B, 0), dtype=np.uint8)
        elif len(arrays) == 1:  # no copy (an hour of Poisson inputs is large)
            self.inputs = np.ascontiguousarray(arrays[0], dtype=np.uint8)
        else:
            self.inputs = np.ascontiguousarray(np.concatenate(arrays, axis=2), dtype=np.uint8)

    def _build_protocol(self, dps: list, B: int) -> None:
        d0 = dps[0]
        for d in dps[1:]:
            if any(d[k] != d0[k] for k in ("window", "delay_min", "delay_max", "r_d", "amp")):
                raise ConfigError("fixed distal reward: every trial needs the same window, delays, r_d and amp")
        self.dp = np.array([d0["window"], d0["delay_min"], d0["delay_max"], d0["r_d"], d0["amp"],
                            d0["delay_max"] + 2], dtype=np.int64)
        self.dseed = np.array([d["seed"] for d in dps], dtype=np.int64)
        self.dpre = np.array([d["pre"] for d in dps], dtype=np.int64)
        self.dpost = np.array([d["post"] for d in dps], dtype=np.int64)
        self.last_pre = np.full(B, _NEVER, dtype=np.int64)
        self.pending = np.zeros((B, int(self.dp[5])), dtype=np.int64)
        self.dop = np.zeros(B, dtype=np.int64)
        self.coin = np.zeros(B, dtype=np.int64)
        self.rew = np.zeros(B, dtype=np.int64)

    # ------------------------------------------------------------ running
    def _cols(self, names: Iterable[str]) -> tuple[np.ndarray, dict]:
        col = np.full(int(self.pop_off[-1]), -1, dtype=np.int64)
        where, n = {}, 0
        for name in names:
            if name not in self.pop_index:
                raise ConfigError(f"population {name!r}: not in the network (has {self.pop_names})")
            i = self.pop_index[name]
            o0, o1 = int(self.pop_off[i]), int(self.pop_off[i + 1])
            col[o0:o1] = np.arange(n, n + o1 - o0)
            where[name] = (n, n + o1 - o0)
            n += o1 - o0
        return col, where

    def _call(self, t0: int, steps: int, rec_from: int, spk_col, v_col, rec_spk, rec_v, counts) -> None:
        args = (t0, steps, self.pop_off, self.pop_lif, self.lif_par, self.prj, self.rowptr, self.syn_post,
                self.syn_w, self.wm, self.inputs, self.in_col, self.noise_seed, self.z, self.u, self.v, self.pl,
                self.ppre, self.ppost, self.out_ptr, self.out_syn, self.in_ptr, self.in_syn, self.x, self.y, self.e,
                self.w, self.dp, self.dseed, self.dpre, self.dpost, self.last_pre, self.pending, self.dop, self.coin,
                self.rew, rec_from, spk_col, v_col, rec_spk, rec_v, counts)
        threads = min(self.B, numba.get_num_threads()) if self.parallel and steps > 0 else 1
        if threads <= 1:
            fk.run_trials(0, self.B, *args)
            return
        if self._pool is None or self._pool_threads != threads:
            self._pool, self._pool_threads = ThreadPoolExecutor(max_workers=threads), threads
        for f in [self._pool.submit(fk.run_trials, b, b + 1, *args) for b in range(self.B)]:
            f.result()

    def compile(self) -> float:
        """Compile (or load from numba's cache) the chunk kernel; the seconds the first call took
        (``compile_seconds``)."""
        if self.compile_seconds is None:
            n_all = int(self.pop_off[-1])
            none = np.full(n_all, -1, dtype=np.int64)
            counts = np.zeros((self.B, len(self.pop_names)), dtype=np.int64)
            t = time.perf_counter()
            self._call(self.t, 0, 0, none, none, np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.int64), counts)
            self.compile_seconds = time.perf_counter() - t
        return self.compile_seconds

    def run(self, steps: int, record_from: int = 0, rec_spikes: Iterable[str] = (),
            rec_v: Iterable[str] = ()) -> dict:
        """Run ``steps`` steps (see the module docstring). ``record_from``: the first 0-based step
        (of the whole run) to record."""
        steps = int(steps)
        if steps < 0:
            raise ConfigError(f"steps = {steps}: must be >= 0")
        rec_v = list(rec_v)
        for name in rec_v:
            if name in self.pop_index and not self.pop_lif[self.pop_index[name]]:
                raise ConfigError(f"'v' of {name!r}: only LIF populations have a membrane potential "
                                  f"({self.lif_pops})")
        self.compile()
        t0 = self.t
        first = max(int(record_from), t0)
        rows = max(0, t0 + steps - first)
        spk_col, spk_where = self._cols(rec_spikes)
        v_col, v_where = self._cols(rec_v)
        rec_spk = np.zeros((rows if spk_where else 0, sum(b - a for a, b in spk_where.values())), dtype=np.uint8)
        rec_vv = np.zeros((rows if v_where else 0, sum(b - a for a, b in v_where.values())), dtype=np.int64)
        counts = np.zeros((self.B, len(self.pop_names)), dtype=np.int64)
        self._call(t0, steps, first, spk_col, v_col, rec_spk, rec_vv, counts)
        self.t = t0 + steps
        return {"counts": {p: counts[:, self.pop_index[p]].copy() for p in self.lif_pops},
                "spikes": {p: rec_spk[:, a:b] for p, (a, b) in spk_where.items()},
                "v": {p: rec_vv[:, a:b].astype(np.float64) / self.scale for p, (a, b) in v_where.items()},
                "t0": first}

    # ------------------------------------------------------------ read-outs
    def weights(self) -> np.ndarray:
        """(B, S) float64 |w| of the plastic projection in float units, as
        ``FixedDistalSetup.float_weights(w_acc)`` (what the torch fixed run reports)."""
        return np.abs(self.w).astype(np.float64) / 2 ** self.prm.frac_bits * self.scale_w

    def voltage(self, pop: str) -> np.ndarray:
        """(B, N) membrane potential of LIF population ``pop`` in float voltage units."""
        i = self.pop_index[pop]
        return self.v[:, self.pop_off[i]:self.pop_off[i + 1]].astype(np.float64) / self.scale

    def pop_state(self, var: str, pop: str) -> np.ndarray:
        """(B, N) slice of ``z``, ``u`` or ``v`` for population ``pop``."""
        i = self.pop_index[pop]
        return getattr(self, var)[:, self.pop_off[i]:self.pop_off[i + 1]]

    @property
    def dopamine(self) -> np.ndarray:
        return self.dop

    @property
    def rewards(self) -> np.ndarray:
        return self.rew

    @property
    def coincidences(self) -> np.ndarray:
        return self.coin

    def state_dict(self) -> dict:
        return {"t": self.t, **{k: getattr(self, k).copy() for k in _STATE}}

    def load_state_dict(self, d: dict) -> None:
        for k in _STATE:
            cur = getattr(self, k)
            new = np.asarray(d[k])
            if new.shape != cur.shape:
                raise ConfigError(f"event fixed-point state {k!r}: shape {new.shape}, expected {cur.shape}")
            setattr(self, k, np.ascontiguousarray(new, dtype=cur.dtype).copy())
        self.t = int(d["t"])
