"""The event engine's compiled chunk driver (float): B trials × a chunk of steps in one numba call.

:func:`run_chunk` simulates ``steps`` steps of every trial (trials in parallel threads when B > 1:
the compiled loop releases the GIL; one trial's arithmetic is sequential and touches only its own
rows, so results do not depend on the thread count). Per trial, step t
(1-based) mirrors :meth:`SpikingNetwork.step <neuroprobe.spiking.SpikingNetwork.step>` and the
distal-reward loop of :mod:`neuroprobe.backends.torch_run`:

1. the spikes of step t − 1 (a list of global neuron indices, ascending) are propagated through the
   CSR-by-pre rows of every projection leaving their population into that projection's block of
   the trial's output vector (adding in pre-neuron order from 0, as the torch engine's event
   propagation sums); each LIF population sums its incoming blocks in projection order, then
   ``+ i_ext``, ``+ given current``, ``+ hash membrane noise``, and takes the torch engine's
   LIF/CubaLIF step (refractory period, escape noise) operation for operation; Izhikevich
   populations the same sum ``+ hash uniform noise`` and the torch engine's
   :func:`~neuroprobe.neurons.izhikevich.izhikevich_step` (reset of the previous step's spikes,
   two half-steps, u update; u kept in the ``i`` array); Poisson
   populations spike where the hash uniform is below p, input populations where their given
   spikes are nonzero; the new spikes form the next list (and a 0/1 flag per neuron);
2. the distal-reward protocol observes the rewarded synapse's pre/post spikes, schedules rewards
   with hash delays and updates the dopamine ``d ← d·γ + amp·delivered`` (``dmode`` 2; 1: a
   constant tonic dopamine; 0: none);
3. R-STDP on each plastic projection (one or more; their synapses in consecutive blocks of the
   shared ``X``/``T``/``W`` arrays, each with its own traces, tables and bounds, rows of ``pli``
   (:data:`PLI_FIELDS`), ``plc`` and ``kf``), with the dopamine ``tonic + d`` (``prf[5]``: a
   constant tonic dopamine added to the protocol's, Izhikevich's ``0.002 + DA``; the lazy
   updates add it through ``kf``'s ``lr_scale_tonic``): per-neuron STDP traces decay every step,
   the synapses of the neurons that spiked get their coincidence (``a+·x_pre`` at a post spike,
   ``−a−·y_post`` at a pre spike, traces before this step's spikes) and take an explicit cascade
   step (:func:`_plastic_step`, with :func:`~.cascade._touch` inlined: the lazy advance and the
   input of :func:`~.cascade.explicit_step`), then the traces add the spikes. Untouched synapses
   stay behind and are advanced in closed form when next touched, and at the end of the chunk
   (:func:`~.cascade.flush_range`, block by block). Dopamine is given to the lazy updates as pieces
   ``(pt, pv)``: a new piece at every step a reward was delivered (for order >= 2 the input step takes its
   dopamine from them too, in float64; order 1 uses the protocol's value in the network dtype).

Argument groups (tuples of arrays; dummies of the right types where a feature is off, so there is
one compiled specialisation per float dtype): ``net`` (:class:`~.network.EventNet`'s tables),
``st`` (neuron state and work buffers), ``io`` (given inputs, recording), ``pl`` (plasticity),
``pr`` (protocol). No allocation inside the step loop, and no reference counting: the kernels are
compiled without numba's runtime (``_nrt=False``; they allocate nothing), which would otherwise
count references to the arrays in the inlined per-synapse code, an atomic operation each.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cascade import _touch, flush_range
from .hashrng import byte_sum, hash_at, hash_key, hash_uniform32, uniform
from .network import (FC_C_MEM, FC_C_SYN, FC_CLAMP, FC_DELTA_U, FC_ESC_K, FC_ESC_VTH, FC_I_EXT, FC_IZ_A, FC_IZ_B,
                      FC_IZ_C, FC_IZ_D, FC_IZ_HALF, FC_IZ_K0, FC_IZ_K1, FC_IZ_K2, FC_IZ_VPEAK, FC_V_LEAK,
                      FC_V_RESET, FC_V_TH, FC_ZERO, FD_NOISE_AMP, IC_CUBA, IC_CUR_COL, IC_IEXT, IC_INPUT_COL,
                      IC_NOISE, IC_REFR, IC_RHO_RESET, IC_VLZ, KIND_INPUT, KIND_IZH, KIND_POISSON, NOISE_ESCAPE,
                      NOISE_MEMBRANE, NOISE_UNIFORM)

__all__ = ["run_chunk", "DMODE_NONE", "DMODE_TONIC", "DMODE_DISTAL", "PLI_FIELDS"]

DMODE_NONE, DMODE_TONIC, DMODE_DISTAL = 0, 1, 2
# per plastic projection k, the int64 row pli[k]: its populations (global offset and size of pre and
# post), its block of the shared synapse arrays (first synapse, count), where its CSR-by-post and
# CSR-by-pre pointer runs start in the concatenated tables, and where its neurons' traces start
PLI_FIELDS = ("gpre0", "npre", "gpost0", "npost", "soff", "nsyn", "cp0", "rp0", "xo", "yo")
(_GPRE0, _NPRE, _GPOST0, _NPOST, _SOFF, _NSYN, _CP0, _RP0, _XO, _YO) = range(len(PLI_FIELDS))
_FAR = -10 ** 9  # "no pre spike yet" of the protocol
_PF = 8  # prefetch distance (synapses) on the scattered in-synapses of a post neuron


@intrinsic
def _prefetch(typingctx, arr, flat):
    """Hint the cache to fetch element ``flat`` of the (C-contiguous) array's data (LLVM's
    prefetch: it never faults, so an address outside the array is harmless)."""
    sig = types.void(arr, flat)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        name = "llvm.prefetch.p0" if getattr(i8p, "is_opaque", False) else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name)
        # read (0), keep in all cache levels (3), data (1)
        builder.call(fn, [builder.bitcast(builder.gep(ary.data, [args[1]]), i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, _nrt=False)
def _lif_segment(P, g0, g1, k, key, fc, ic, noise_tab, in_ptr, in_list, out_off, vb, ib, rb, zb, bufb, cur, b,
                 sp, nb, row, zc, vc, rec_z, rec_v):
    """One LIF population's step (neurons g0..g1 of trial b); appends its spikes to ``sp`` from
    position ``nb``; returns the new count. The torch engine's ``torch_step_fn`` per neuron."""
    c_mem, c_syn, v_leak, v_th, v_reset = fc[P, FC_C_MEM], fc[P, FC_C_SYN], fc[P, FC_V_LEAK], fc[P, FC_V_TH], \
        fc[P, FC_V_RESET]
    i_ext, zero = fc[P, FC_I_EXT], fc[P, FC_ZERO]
    esc_k, esc_vth, delta_u, clamp = fc[P, FC_ESC_K], fc[P, FC_ESC_VTH], fc[P, FC_DELTA_U], fc[P, FC_CLAMP]
    cuba, vlz, refr_on = ic[P, IC_CUBA] != 0, ic[P, IC_VLZ] != 0, ic[P, IC_REFR] != 0
    rho_reset, noise, has_iext, ccol = ic[P, IC_RHO_RESET], ic[P, IC_NOISE], ic[P, IC_IEXT] != 0, ic[P, IC_CUR_COL]
    j0, j1 = in_ptr[P], in_ptr[P + 1]
    o0 = out_off[in_list[j0]] - g0 if j1 > j0 else 0
    ntab = noise_tab[P]
    for g in range(g0, g1):
        # synaptic input: the first incoming block, then the others in projection order (cleared as read)
        if j1 > j0:
            x = bufb[o0 + g]
            bufb[o0 + g] = zero
            for jj in range(j0 + 1, j1):
                o = out_off[in_list[jj]] - g0 + g
                x = x + bufb[o]
                bufb[o] = zero
        else:
            x = zero
        if has_iext:
            x = x + i_ext
        if ccol >= 0:
            x = x + cur[k, b, ccol + g - g0]
        if noise == NOISE_MEMBRANE:
            x = x + ntab[byte_sum(hash_at(key, g)) + 510]
        v = vb[g]
        if cuba:  # lif_feed_forward_step
            i_new = ib[g] + x
            if vlz:
                dv = i_new - v
            else:
                dv = (v_leak - v) + i_new
            v_d = dv * c_mem + v
            ib[g] = i_new * c_syn + i_new
        else:  # lif_box_feed_forward_step
            if vlz:
                dv = x - v
            else:
                dv = (x + v_leak) - v
            v_d = dv * c_mem + v
        if noise == NOISE_ESCAPE:  # no hard threshold: spike with the escape probability
            a = (v_d - esc_vth) / delta_u
            if a > clamp:
                a = clamp
            prob = -np.expm1(esc_k * np.exp(a))
            spike = uniform(hash_at(key, g)) < prob
        else:
            spike = v_d > v_th
        if refr_on:
            r = rb[g]
            if r > 0:
                spike = False
                v_new = v
            else:
                v_new = v_d
            if spike:
                v_new = v_reset
                rb[g] = rho_reset
            else:
                rb[g] = r - 1 if r > 0 else 0
        else:
            v_new = v_reset if spike else v_d
        vb[g] = v_new
        if spike:
            sp[nb] = g
            nb += 1
            zb[g] = 1
            if zc >= 0:
                rec_z[row, zc + g - g0] = 1
        if vc >= 0:
            rec_v[row, vc + g - g0] = v_new
    return nb


@njit(cache=True, _nrt=False)
def _izh_segment(P, g0, g1, k, key, fc, fd, ic, in_ptr, in_list, out_off, vb, ub, zb, bufb, cur, b, sp, nb, row, zc,
                 vc, rec_z, rec_v):
    """One Izhikevich population's step (neurons g0..g1 of trial b; u in ``ub``); appends its
    spikes to ``sp`` from position ``nb``; returns the new count. The torch engine's
    ``izhikevich_step`` per neuron, operation for operation."""
    k2, k1, k0, half = fc[P, FC_IZ_K2], fc[P, FC_IZ_K1], fc[P, FC_IZ_K0], fc[P, FC_IZ_HALF]
    a, bb, c, d, v_peak = fc[P, FC_IZ_A], fc[P, FC_IZ_B], fc[P, FC_IZ_C], fc[P, FC_IZ_D], fc[P, FC_IZ_VPEAK]
    i_ext, zero = fc[P, FC_I_EXT], fc[P, FC_ZERO]
    noise, has_iext, ccol = ic[P, IC_NOISE], ic[P, IC_IEXT] != 0, ic[P, IC_CUR_COL]
    amp = fd[P, FD_NOISE_AMP]
    j0, j1 = in_ptr[P], in_ptr[P + 1]
    o0 = out_off[in_list[j0]] - g0 if j1 > j0 else 0
    for g in range(g0, g1):
        if j1 > j0:  # the LIF segment's summation order
            x = bufb[o0 + g]
            bufb[o0 + g] = zero
            for jj in range(j0 + 1, j1):
                o = out_off[in_list[jj]] - g0 + g
                x = x + bufb[o]
                bufb[o] = zero
        else:
            x = zero
        if has_iext:
            x = x + i_ext
        if ccol >= 0:
            x = x + cur[k, b, ccol + g - g0]
        if noise == NOISE_UNIFORM:  # (ξ − 0.5)·amp in float64, rounded once to the network dtype
            x = x + vb.dtype.type((uniform(hash_at(key, g)) - 0.5) * amp)
        v = vb[g]
        u = ub[g]
        if v >= v_peak:  # the previous step's spike: reset now
            v = c
            u = u + d
        v = v + half * ((((k2 * v + k1) * v) + k0 - u) + x)
        v = v + half * ((((k2 * v + k1) * v) + k0 - u) + x)
        u = u + a * (bb * v - u)
        vb[g] = v
        ub[g] = u
        if v >= v_peak:
            sp[nb] = g
            nb += 1
            zb[g] = 1
            if zc >= 0:
                rec_z[row, zc + g - g0] = 1
        if vc >= 0:
            rec_v[row, vc + g - g0] = v
    return nb


@njit(cache=True, _nrt=False)
def _plastic_step(X, T, W, b, t, sp, nb, zb, xb, yb, p_colptr, p_inslot, p_pre, p_rowptr, p_post, gpre0, npre, gpost0,
                  npost, a_plus, neg_a_minus, d_t, pt, pv, pn, kf, tab):
    """Step t of the plastic synapses of the neurons that spiked (``sp[:nb]``, global indices),
    traces as before this step's spikes. Pass 0 (LTP): the synapses into each post neuron that
    spiked, coincidence ``a+·x_pre`` (``− a−·y_post`` too where the pre neuron spiked as well);
    pass 1 (LTD): the synapses out of each pre neuron that spiked whose post neuron did not (those
    took their step in pass 0), ``−a−·y_post``. One cascade step each (:func:`~.cascade._touch`,
    inlined: written once, so that it is compiled once)."""
    S, n = X.shape[1], X.shape[2]
    for ph in range(2):
        for q in range(nb):
            if ph == 0:
                jl = sp[q] - gpost0
                if jl < 0 or jl >= npost:
                    continue
                e0, e1 = p_colptr[jl], p_colptr[jl + 1]
            else:
                il = sp[q] - gpre0
                if il < 0 or il >= npre:
                    continue
                e0, e1 = p_rowptr[il], p_rowptr[il + 1]
            for e in range(e0, e1):
                if ph == 0:
                    if e + _PF < e1:  # the in-synapses are scattered: ask for their state a few synapses ahead
                        sf = p_inslot[e + _PF]
                        f = b * S + sf
                        _prefetch(X, f * n)
                        _prefetch(X, f * n + n - 1)
                        _prefetch(T, f)
                        _prefetch(W, f)
                        _prefetch(p_pre, sf)
                    s = p_inslot[e]
                    i = p_pre[s]
                    c = a_plus * xb[i]
                    if zb[gpre0 + i] != 0:
                        c = c + neg_a_minus * yb[jl]
                else:
                    s = e
                    j = p_post[s]
                    if zb[gpost0 + j] != 0:
                        continue
                    c = neg_a_minus * yb[j]
                _touch(X, T, W, b, s, t, np.float64(c), d_t, pt, pv, pn, kf, tab)


@njit(cache=True, _nrt=False)
def _trial(b, steps, t_start, net, st, io, pl, pr):
    """The whole chunk of one trial (see the module docstring)."""
    (pop_off, pop_kind, pop_of, fc, ic, fd, noise_tab, pois_p, pre_ptr, pre_list, in_ptr, in_list, row_off, syn_off,
     out_off, rowptr, post, weight) = net
    v, isyn, rho, spk_prev, nspk, zflag, spk_cur, buf, seeds, counts = st
    inp, cur, rec_from, zcol, vcol, rec_z, rec_v = io
    (plastic, pjmap, Wp, x_pre, y_post, plc, pli, p_colptr, p_inslot, p_pre, p_rowptr, p_post, X, T, pt, pv, pn, kf,
     tab, dscr) = pl
    dmode, rew_pre, rew_post, last_pre, schedule, dopamine, coinc, rewards, prf, pri = pr
    vb, ib, rb, zb, bufb, cb, pb = v[b], isyn[b], rho[b], zflag[b], buf[b], counts[b], pois_p[b]
    sp_a, sp_b = spk_prev[b], spk_cur[b]
    na = nspk[b]
    seed = seeds[b]
    n_pops = pop_kind.shape[0]
    Wb = Wp[b]
    K = plc.shape[0]  # plastic projections (their synapses in blocks of the shared arrays)
    # protocol constants; tonic: the constant dopamine added to the protocol's (0: none)
    dt, dmin, dmax, gamma, amp, tonic = prf[0], prf[1], prf[2], prf[3], prf[4], prf[5]
    win, H, n_all = pri[0], pri[1], pri[2]
    for k in range(steps):
        t = t_start + k + 1
        for q in range(na):
            zb[sp_a[q]] = 0
        # 1. propagate the spikes of step t - 1
        for q in range(na):
            g = sp_a[q]
            P = pop_of[g]
            li = g - pop_off[P]
            for jj in range(pre_ptr[P], pre_ptr[P + 1]):
                j = pre_list[jj]
                r = row_off[j] + li
                o = out_off[j]
                s0, s1 = rowptr[r], rowptr[r + 1]
                kj = pjmap[j]
                if kj >= 0:  # a plastic projection's per-trial weights (up to date: touched at t - 1)
                    base = pli[kj, _SOFF] - syn_off[j]
                    for s in range(s0, s1):
                        bufb[o + post[s]] += Wb[s + base]
                else:
                    for s in range(s0, s1):
                        bufb[o + post[s]] += weight[s]
        # neurons
        key = hash_key(seed, t)
        rec = b == 0 and k >= rec_from
        row = k - rec_from
        nb = np.int64(0)  # not the literal 0: callees would be compiled for it as well
        for P in range(n_pops):
            g0, g1 = pop_off[P], pop_off[P + 1]
            zc = zcol[P] if rec else -1
            vc = vcol[P] if rec else -1
            n0 = nb
            kind = pop_kind[P]
            if kind == KIND_INPUT:
                col = ic[P, IC_INPUT_COL] - g0
                for g in range(g0, g1):
                    if inp[k, b, col + g] != 0:
                        sp_b[nb] = g
                        nb += 1
                        zb[g] = 1
                        if zc >= 0:
                            rec_z[row, zc + g - g0] = 1
            elif kind == KIND_POISSON:
                for g in range(g0, g1):
                    if uniform(hash_at(key, g)) < pb[g]:
                        sp_b[nb] = g
                        nb += 1
                        zb[g] = 1
                        if zc >= 0:
                            rec_z[row, zc + g - g0] = 1
            elif kind == KIND_IZH:
                nb = _izh_segment(P, g0, g1, k, key, fc, fd, ic, in_ptr, in_list, out_off, vb, ib, zb, bufb, cur, b,
                                  sp_b, nb, row, zc, vc, rec_z, rec_v)
            else:
                nb = _lif_segment(P, g0, g1, k, key, fc, ic, noise_tab, in_ptr, in_list, out_off, vb, ib, rb, zb,
                                  bufb, cur, b, sp_b, nb, row, zc, vc, rec_z, rec_v)
            cb[P] += nb - n0
        # 2. reward protocol
        if dmode == DMODE_DISTAL:
            tt = t - 1  # the float protocol's 0-based step index
            lag = tt - last_pre[b]
            hit = zb[rew_post[b]] != 0 and lag > 0 and lag <= win
            if zb[rew_pre[b]] != 0:
                last_pre[b] = tt
            if hit:
                u = uniform(hash_uniform32(seed, t, n_all))
                delay = dmin + (dmax - dmin) * u
                ds = int(np.rint(delay / dt))  # Python's round: half to even
                if ds < 1:
                    ds = 1
                schedule[b, (tt + ds) % H] += 1
                coinc[b] += 1
                last_pre[b] = _FAR  # one reward per pairing
            slot = tt % H
            delivered = schedule[b, slot]
            schedule[b, slot] = 0
            rewards[b] += delivered
            dopamine[b] = dopamine[b] * gamma + amp * np.float64(delivered)
            if plastic and delivered > 0:  # a new dopamine piece starts here
                m = pn[b]
                pt[b, m] = t
                pv[b, m] = dopamine[b]
                pn[b] = m + 1
        # 3. plasticity, projection by projection (each its own traces and synapse block)
        if plastic:
            # the rule sees d in the weights' dtype (as torch_run's learner): tonic + phasic in float64
            if tonic != 0.0:
                dscr[b] = dopamine[b] + tonic
            else:
                dscr[b] = dopamine[b]
            d_t = np.float64(dscr[b])
            for kk in range(K):
                a_plus, neg_a_minus, dec_plus, dec_minus, one = plc[kk, 0], plc[kk, 1], plc[kk, 2], plc[kk, 3], \
                    plc[kk, 4]
                gpre0, npre, gpost0, npost = pli[kk, _GPRE0], pli[kk, _NPRE], pli[kk, _GPOST0], pli[kk, _NPOST]
                cp0, rp0, xo, yo = pli[kk, _CP0], pli[kk, _RP0], pli[kk, _XO], pli[kk, _YO]
                xb = x_pre[b, xo:xo + npre]
                yb = y_post[b, yo:yo + npost]
                for n in range(npre):
                    xb[n] = xb[n] * dec_plus
                for n in range(npost):
                    yb[n] = yb[n] * dec_minus
                _plastic_step(X, T, Wp, b, t, sp_b, nb, zb, xb, yb, p_colptr[cp0:cp0 + npost + 1], p_inslot, p_pre,
                              p_rowptr[rp0:rp0 + npre + 1], p_post, gpre0, npre, gpost0, npost, a_plus, neg_a_minus,
                              d_t, pt, pv, pn, kf[kk], tab)
                for q in range(nb):
                    g = sp_b[q]
                    if gpre0 <= g < gpre0 + npre:
                        xb[g - gpre0] = xb[g - gpre0] + one
                    if gpost0 <= g < gpost0 + npost:
                        yb[g - gpost0] = yb[g - gpost0] + one
        sp_a, sp_b = sp_b, sp_a
        na = nb
    if steps % 2 == 1:  # the last step's list sits in the other buffer
        for q in range(na):
            spk_prev[b, q] = spk_cur[b, q]
    nspk[b] = na
    if plastic:  # bring every synapse of the trial up to date (weights are read between chunks)
        for kk in range(K):
            s0 = pli[kk, _SOFF]
            flush_range(X, T, Wp, b, s0, s0 + pli[kk, _NSYN], t_start + steps, pt, pv, pn, kf[kk], tab)


@njit(cache=True, nogil=True, _nrt=False)
def _run_trials(b0, b1, steps, t_start, net, st, io, pl, pr):
    """Trials ``b0 .. b1 − 1``, one after another; without the GIL, so that threads can run
    disjoint ranges of trials at once (each trial touches only its own rows)."""
    for b in range(b0, b1):
        _trial(b, steps, t_start, net, st, io, pl, pr)


def run_chunk(steps: int, t_start: int, net: tuple, st: tuple, io: tuple, pl: tuple, pr: tuple,
              pool: ThreadPoolExecutor | None = None, compile_only: bool = False) -> None:
    """Advance every trial by ``steps`` steps from step ``t_start`` (steps done), in place; at the
    end every plastic synapse of every trial is brought up to date (flush).

    pool: run the trials in its threads (one task per trial; the compiled code releases the GIL),
    else one after another. compile_only: compile (or load from numba's cache) the kernel for these
    argument types, simulating nothing."""
    if compile_only:
        _run_trials(np.int64(0), np.int64(0), np.int64(0), np.int64(t_start), net, st, io, (False,) + pl[1:], pr)
        return
    if steps <= 0:
        return
    B = st[0].shape[0]
    args = (np.int64(steps), np.int64(t_start), net, st, io, pl, pr)
    if pool is None or B == 1:
        _run_trials(np.int64(0), np.int64(B), *args)
        return
    for f in [pool.submit(_run_trials, np.int64(b), np.int64(b + 1), *args) for b in range(B)]:
        f.result()


# ---------------------------------------------------------------- numba's cache and our dependencies
# numba's on-disk cache checks only the file a function is defined in, yet a cached kernel embeds the
# compiled code of the functions it calls in other files (the lazy cascade, the hash): after an edit
# of those it would keep running their old code. So the kernels of this file are dropped from the
# cache whenever the sources they link in change (a stamp file next to the cache).
_DEPENDENCIES = ("cascade.py", "hashrng.py", "network.py", "kernels.py")


def _drop_stale_cache() -> None:
    here = Path(__file__).resolve().parent
    stamp = hashlib.sha256(b"".join((here / f).read_bytes() for f in _DEPENDENCIES)).hexdigest()
    try:
        cache = Path(_run_trials._cache._cache_path)  # where numba keeps this file's kernels
        marker = cache / "kernels.dependencies.sha256"
        if marker.is_file() and marker.read_text() == stamp:
            return
        for f in cache.glob("kernels.*.nbi"):  # the index files: without them numba recompiles
            f.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        marker.write_text(stamp)
    except (AttributeError, OSError):  # another numba layout or a read-only cache: numba's own rules
        pass


_drop_stale_cache()
