"""Compiled (numba) kernels of the event engine in Loihi's integer arithmetic.

The integer network of :class:`~neuroprobe.backends.fixed.network.FixedPointNetwork`, the integer
cascade R-STDP of :class:`~neuroprobe.backends.fixed.rstdp.FixedCascadeRSTDP` and the integer
distal-reward protocol of :class:`~neuroprobe.backends.fixed.distal_reward.FixedDistalReward`,
bit for bit (tests/test_event_fixed.py compares every state variable every step). A whole chunk of
steps of a range of independent trials runs in :func:`run_trials`, which releases the GIL: the
simulator runs the B trials in parallel threads (a trial's result does not depend on the thread
count: trials share nothing). Threads rather than ``prange``: the parallel (OpenMP) variant doubled
the first compile (~12 s → ~30 s here) and its idle workers spin against the rest of the process.

Step t (1-based) of one trial, as the torch fixed-point run orders it (agent → task → learner)::

    network   a[post] = Σ_projections shift(Σ_{pre spiked at t−1} w_mant, weight_exp)
              (+ hash membrane noise), then the Loihi LIF step (24-bit u wraps, v saturates);
              input populations emit their given spikes of step t
    protocol  the step's spikes of the rewarded synapse → integer dopamine d_t
    rule      traces decay; coincidences on the synapses of neurons that spiked; cascade step of
              every plastic synapse (exact integer arithmetic leaves no closed form to skip it);
              e_1 += c << c_shift; if d_t != 0: w_acc ← clip(w_acc + (d_t·lr·e_n) >> lr_shift)

Cost: the cascade step of every plastic synapse dominates (order × S stage updates per step and
trial; 1000-neuron distal network, order 6: ~0.1 ms of ~0.12 ms per step). Its states are stored
as int32 (``e_bits`` <= 32, so they fit: half the memory of int64, the (order, S) states of one
trial stay in L2) and computed in int64, one contiguous row per stage so that LLVM vectorises the
loop. A trial without dopamine this step skips the weight update.

Array conventions (all int64 unless stated; "global" neuron index = population offset + index):

* ``pop_off`` (P + 1,) population offsets in spec order; ``pop_lif`` (P,) 1 for LIF, 0 for input;
  ``lif_par`` (P, 6): 4096 − (du + 1), 4096 − dv, vth << 6, bias_mant << bias_exp, noise mantissa,
  noise shift (−1: no noise).
* projections ``prj`` (Q, 6): pre pop, post pop, weight_exp, plastic (0/1), rowptr base, synapse
  base; ``rowptr`` concatenated CSR by pre (n_pre + 1 per projection, absolute positions into
  ``syn_post``/``syn_w``); ``syn_post`` local post index; ``syn_w`` column of the synapse in
  ``wm`` (static, (B, S_static) mantissas) or, for the plastic projection, its index in ``w``.
* plastic projection: ``pl`` (see :data:`PL_FIELDS`), ``ppre``/``ppost`` (S,), ``in_ptr``/
  ``in_syn`` CSR by post; ``out_ptr``/``out_syn`` CSR by pre; state ``x`` (B, n_pre), ``y``
  (B, n_post), ``e`` (B, order, S) int32, ``w`` (B, S) accumulators.
* protocol ``dp`` (see :data:`DP_FIELDS`), state ``last_pre``, ``dop``, ``coin``, ``rew`` (B,),
  ``pending`` (B, horizon).
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["run_trials", "hash_uniform32", "hash_noise", "PL_FIELDS", "DP_FIELDS", "LIF_FIELDS",
           "PRJ_FIELDS"]

LIF_FIELDS = ("u_factor", "v_factor", "vth", "bias", "noise_mant", "noise_shift")
PRJ_FIELDS = ("pre_pop", "post_pop", "weight_exp", "plastic", "rowptr_base", "syn_base")
PL_FIELDS = ("pre_pop", "post_pop", "order", "r", "r_shift", "e_max", "x_factor", "y_factor", "impulse",
             "a_plus", "a_minus", "c_shift", "lr_mant", "lr_shift", "frac_bits", "lo", "hi")
DP_FIELDS = ("window", "delay_min", "delay_max", "r_d", "amp", "horizon")

_M32 = np.uint64(0xFFFFFFFF)
_U16 = np.uint64(16)
_U15 = np.uint64(15)
_MAX_UV = 2 ** 23
_NEVER = -10 ** 9


# ---------------------------------------------------------------- counter-based hash (lowbias32)
@njit(cache=True, inline="always")
def _lowbias32(x):
    x = x ^ (x >> _U16)
    x = (x * np.uint64(0x7FEB352D)) & _M32
    x = x ^ (x >> _U15)
    x = (x * np.uint64(0x846CA68B)) & _M32
    return x ^ (x >> _U16)


@njit(cache=True, inline="always")
def _hash_key(seed, step):
    """The per-(seed, step) key of hash_uniform32 (uint64 < 2**32)."""
    s = np.uint64(np.int64(seed) & np.int64(0xFFFFFFFF))
    st = np.uint64(np.int64(step) & np.int64(0xFFFFFFFF))
    return _lowbias32((s * np.uint64(0x9E3779B1) + st) & _M32)


@njit(cache=True, inline="always")
def _hash_with_key(key, index):
    """hash_uniform32 as int64 in [0, 2**32) for a key from _hash_key."""
    return np.int64(_lowbias32((np.uint64(index) + key * np.uint64(0x85EBCA6B)) & _M32))


@njit(cache=True)
def hash_uniform32(seed: int, step: int, index: int) -> int:
    """backends/fixed/lif.py's ``hash_uniform32`` for one (seed, step, index), int64 in [0, 2**32)."""
    return _hash_with_key(_hash_key(seed, step), index)


@njit(cache=True, inline="always")
def _noise_of(h, mant, shift):
    s = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255) - 510
    return (s * mant) >> shift


@njit(cache=True)
def hash_noise(seed: int, step: int, index: int, mant: int, shift: int) -> int:
    """backends/fixed/lif.py's ``hash_noise`` for one neuron."""
    return _noise_of(hash_uniform32(seed, step, index), mant, shift)


@njit(cache=True, inline="always")
def _decay(x, factor):
    """trunc(x·factor / 4096) (Lava's sign(y)·(|y| >> 12))."""
    y = x * factor
    return y >> 12 if y >= 0 else -((-y) >> 12)


# ---------------------------------------------------------------- one trial, n steps
@njit(cache=True)
def _network_step(b, t, pop_off, pop_lif, lif_par, prj, rowptr, syn_post, syn_w, wm, pl, w,
                  inputs, in_col, noise_seed, z, u, v, a, buf, spk, spk_ptr):
    """Step t of trial b's network: the spikes of step t − 1 (their list spk[:spk_ptr[P]], sorted,
    population p's from spk_ptr[p]) → z (N_all,) this step's spikes, u, v updated; the new spike
    list replaces the old (which is read before it is overwritten)."""
    P = pop_lif.shape[0]
    n_all = pop_off[P]
    for i in range(n_all):
        a[i] = 0
    frac = pl[14]
    for q in range(prj.shape[0]):
        p_pre, p_post, wexp, plastic, rbase = prj[q, 0], prj[q, 1], prj[q, 2], prj[q, 3], prj[q, 4]
        k0, k1 = spk_ptr[p_pre], spk_ptr[p_pre + 1]
        if k0 == k1:
            continue
        post_off, n_post = pop_off[p_post], pop_off[p_post + 1] - pop_off[p_post]
        for j in range(n_post):
            buf[j] = 0
        pre_off = pop_off[p_pre]
        for k in range(k0, k1):
            i = spk[k] - pre_off
            for m in range(rowptr[rbase + i], rowptr[rbase + i + 1]):
                if plastic:
                    buf[syn_post[m]] += w[b, syn_w[m]] >> frac
                else:
                    buf[syn_post[m]] += wm[b, syn_w[m]]
        if wexp >= 0:
            for j in range(n_post):
                a[post_off + j] += buf[j] << wexp
        else:
            for j in range(n_post):
                a[post_off + j] += buf[j] >> (-wexp)
    T_in = inputs.shape[0]
    row = min(t - 1, T_in - 1)  # after the given inputs end, the last step's again (as GivenInputs)
    n = 0
    for p in range(P):
        spk_ptr[p] = n
        o0, o1 = pop_off[p], pop_off[p + 1]
        if pop_lif[p] == 0:
            for i in range(o0, o1):
                s = inputs[row, b, in_col[i]] if T_in > 0 else 0
                z[i] = 1 if s != 0 else 0
                if s != 0:
                    spk[n] = i
                    n += 1
            continue
        uf, vf, vth, bias = lif_par[p, 0], lif_par[p, 1], lif_par[p, 2], lif_par[p, 3]
        nm, nsh = lif_par[p, 4], lif_par[p, 5]
        key = _hash_key(noise_seed + b, t)
        for i in range(o0, o1):
            ai = a[i]
            if nsh >= 0:
                ai += _noise_of(_hash_with_key(key, i), nm, nsh)
            cur = _decay(u[b, i], uf) + (ai << 6)
            if cur > _MAX_UV:
                cur -= 2 * _MAX_UV
            elif cur <= -_MAX_UV:
                cur += 2 * _MAX_UV
            u[b, i] = cur
            vv = _decay(v[b, i], vf) + cur + bias
            vv = min(max(vv, -_MAX_UV + 1), _MAX_UV - 1)
            if vv > vth:
                z[i] = 1
                v[b, i] = 0
                spk[n] = i
                n += 1
            else:
                z[i] = 0
                v[b, i] = vv
    spk_ptr[P] = n


@njit(cache=True)
def _protocol_step(b, t, z, pop_off, pl, dp, dseed, dpre, dpost, last_pre, pending, dop, coin, rew):
    """FixedDistalReward.step of trial b at step t → the new dopamine (also stored in dop[b])."""
    pre_fired = z[pop_off[pl[0]] + dpre[b]] != 0
    post_fired = z[pop_off[pl[1]] + dpost[b]] != 0
    lag = t - last_pre[b]
    hit = post_fired and 1 <= lag and lag <= dp[0]
    if pre_fired:
        last_pre[b] = t
    elif hit:
        last_pre[b] = _NEVER  # one reward per pairing
    H = dp[5]
    if hit:
        h = hash_uniform32(dseed[b], t, 0)
        delay = dp[1] + h % (dp[2] - dp[1] + 1)
        pending[b, (t + delay) % H] += 1
        coin[b] += 1
    delivered = pending[b, t % H]
    pending[b, t % H] = 0
    rew[b] += delivered
    dop[b] = _decay(dop[b], 4096 - dp[3]) + dp[4] * delivered
    return dop[b]


@njit(cache=True)
def _stage(dst, src, n, r, half, r_shift, e_max):
    """dst += round((src − dst)·r / 2**r_shift), saturating (1-D rows: a loop LLVM vectorises)."""
    for s in range(n):
        old = np.int64(dst[s])
        val = old + (((np.int64(src[s]) - old) * r + half) >> r_shift)
        dst[s] = min(max(val, -e_max), e_max)


@njit(cache=True)
def _stage0(dst, n, r, half, r_shift, e_max):
    """The first stage (e_0 ≡ 0): dst += round(−dst·r / 2**r_shift), saturating."""
    for s in range(n):
        old = np.int64(dst[s])
        val = old + ((half - old * r) >> r_shift)
        dst[s] = min(max(val, -e_max), e_max)


@njit(cache=True)
def _cascade_sweep(eb, S, order, r, r_shift, e_max):
    """Every stage of every synapse: e_k += round((e_{k−1} − e_k)·r / 2**r_shift) (old values,
    e_0 ≡ 0, halves up), saturating to ±e_max. eb: (order, S) int32 of one trial, in place.
    Row by row (descending k, so e_{k−1} is still the old value): contiguous 1-D loops that LLVM
    vectorises (indexing the 2-D array directly defeats it); the (order, S) int32 states of
    63,681 synapses (1.5 MB) stay in L2."""
    half = np.int64(1) << (r_shift - 1)
    for k in range(order - 1, 0, -1):
        _stage(eb[k], eb[k - 1], S, r, half, r_shift, e_max)
    _stage0(eb[0], S, r, half, r_shift, e_max)


@njit(cache=True)
def _weight_update(wb, en, S, dl, lr_shift, lo, hi):
    """w ← clip(w + (dl·e_n) >> lr_shift, lo, hi) on one trial's (S,) rows (dl = d·lr_mant)."""
    for s in range(S):
        val = wb[s] + ((dl * np.int64(en[s])) >> lr_shift)
        wb[s] = min(max(val, lo), hi)


@njit(cache=True)
def _rule_step(b, z, z_pre_off, z_post_off, pl, ppre, ppost, out_ptr, out_syn, in_ptr, in_syn, x, y, e, w, d,
               spk, spk_ptr):
    """FixedCascadeRSTDP.step of trial b with the step's spikes z (global) and dopamine d."""
    pp, qp = pl[0], pl[1]
    order, r, r_shift, e_max = pl[2], pl[3], pl[4], pl[5]
    xf, yf, imp, a_plus, a_minus, c_shift = pl[6], pl[7], pl[8], pl[9], pl[10], pl[11]
    lr_mant, lr_shift, lo, hi = pl[12], pl[13], pl[15], pl[16]
    n_pre, n_post = x.shape[1], y.shape[1]
    S = w.shape[1]
    for i in range(n_pre):  # traces ≥ 0: the truncating decay is a plain shift
        x[b, i] = (x[b, i] * xf) >> 12
    for j in range(n_post):
        y[b, j] = (y[b, j] * yf) >> 12
    eb = e[b]
    _cascade_sweep(eb, S, order, r, r_shift, e_max)
    # coincidences (traces before this step's impulses), each synapse once:
    # c = a_plus·x[pre]·q[post] − a_minus·y[post]·s[pre]
    for k in range(spk_ptr[qp], spk_ptr[qp + 1]):  # post neurons that spiked
        j = spk[k] - z_post_off
        yj = a_minus * y[b, j]
        for m in range(in_ptr[j], in_ptr[j + 1]):
            s = in_syn[m]
            c = a_plus * x[b, ppre[s]]
            if z[z_pre_off + ppre[s]] != 0:
                c -= yj
            if c != 0:
                eb[0, s] = min(max(np.int64(eb[0, s]) + (c << c_shift), -e_max), e_max)
    for k in range(spk_ptr[pp], spk_ptr[pp + 1]):  # pre neurons that spiked, post silent
        i = spk[k] - z_pre_off
        for m in range(out_ptr[i], out_ptr[i + 1]):
            s = out_syn[m]
            j = ppost[s]
            if z[z_post_off + j] == 0:
                c = a_minus * y[b, j]
                if c != 0:
                    eb[0, s] = min(max(np.int64(eb[0, s]) - (c << c_shift), -e_max), e_max)
    for k in range(spk_ptr[pp], spk_ptr[pp + 1]):
        i = spk[k] - z_pre_off
        x[b, i] = min(x[b, i] + imp, 127)
    for k in range(spk_ptr[qp], spk_ptr[qp + 1]):
        j = spk[k] - z_post_off
        y[b, j] = min(y[b, j] + imp, 127)
    if d != 0:  # no dopamine, no change (w is always within [lo, hi])
        _weight_update(w[b], eb[order - 1], S, d * lr_mant, lr_shift, lo, hi)


@njit(cache=True)
def _run_trial(b, t0, n_steps, pop_off, pop_lif, lif_par, prj, rowptr, syn_post, syn_w, wm, inputs, in_col,
               noise_seed, z, u, v, pl, ppre, ppost, out_ptr, out_syn, in_ptr, in_syn, x, y, e, w,
               dp, dseed, dpre, dpost, last_pre, pending, dop, coin, rew,
               rec_from, spk_col, v_col, rec_spk, rec_v, counts):
    P = pop_lif.shape[0]
    n_all = pop_off[P]
    a = np.zeros(n_all, dtype=np.int64)
    buf = np.zeros(n_all, dtype=np.int64)
    spk = np.empty(n_all, dtype=np.int64)
    spk_ptr = np.zeros(P + 1, dtype=np.int64)
    # the spike list of the previous step, from z
    n = 0
    for p in range(P):
        spk_ptr[p] = n
        for i in range(pop_off[p], pop_off[p + 1]):
            if z[b, i] != 0:
                spk[n] = i
                n += 1
    spk_ptr[P] = n
    zb = z[b]
    pre_off, post_off = pop_off[pl[0]], pop_off[pl[1]]
    rec_spk_on = rec_spk.shape[1] > 0
    rec_v_on = rec_v.shape[1] > 0
    for step in range(n_steps):
        t = t0 + step + 1  # 1-based step number
        _network_step(b, t, pop_off, pop_lif, lif_par, prj, rowptr, syn_post, syn_w, wm, pl, w, inputs, in_col,
                      noise_seed, zb, u, v, a, buf, spk, spk_ptr)
        d = _protocol_step(b, t, zb, pop_off, pl, dp, dseed, dpre, dpost, last_pre, pending, dop, coin, rew)
        _rule_step(b, zb, pre_off, post_off, pl, ppre, ppost, out_ptr, out_syn, in_ptr, in_syn, x, y, e, w, d,
                   spk, spk_ptr)
        for p in range(P):
            counts[b, p] += spk_ptr[p + 1] - spk_ptr[p]
        if b == 0 and t - 1 >= rec_from:
            row = t - 1 - rec_from
            if rec_spk_on:
                for k in range(spk_ptr[P]):
                    c = spk_col[spk[k]]
                    if c >= 0:
                        rec_spk[row, c] = 1
            if rec_v_on:
                for i in range(n_all):
                    c = v_col[i]
                    if c >= 0:
                        rec_v[row, c] = v[0, i]


@njit(cache=True, nogil=True)
def run_trials(b0, b1, t0, n_steps, pop_off, pop_lif, lif_par, prj, rowptr, syn_post, syn_w, wm, inputs, in_col,
               noise_seed, z, u, v, pl, ppre, ppost, out_ptr, out_syn, in_ptr, in_syn, x, y, e, w,
               dp, dseed, dpre, dpost, last_pre, pending, dop, coin, rew,
               rec_from, spk_col, v_col, rec_spk, rec_v, counts):
    """Steps t0 + 1 .. t0 + n_steps of trials b0 .. b1 − 1, one after another, every state array
    updated in place (trial b touches only its own rows, so threads may run disjoint ranges of
    trials at once: the GIL is released, and the results do not depend on the split).

    Recording (trial 0): 0-based step t − 1 >= rec_from goes to row t − 1 − rec_from of rec_spk
    (uint8, columns spk_col[neuron], −1: not recorded) and rec_v (int64 v, columns v_col);
    counts (B, P) += spikes per population."""
    for b in range(b0, b1):
        _run_trial(b, t0, n_steps, pop_off, pop_lif, lif_par, prj, rowptr, syn_post, syn_w, wm, inputs, in_col,
                   noise_seed, z, u, v, pl, ppre, ppost, out_ptr, out_syn, in_ptr, in_syn, x, y, e, w,
                   dp, dseed, dpre, dpost, last_pre, pending, dop, coin, rew,
                   rec_from, spk_col, v_col, rec_spk, rec_v, counts)
