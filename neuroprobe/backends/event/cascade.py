"""Lazy cascade eligibility and dopamine-gated weights in closed form (numba), per synapse.

The every-step rule (:class:`~neuroprobe.rules.rstdp.CascadeRSTDP` with the torch SGD step and the
projection's clamp) does, at step ``t`` for trial ``b`` and synapse ``s``::

    x ← M x + e_0 c_t                 (M = CascadeKernel.transition(dt), n × n)
    e_t = scale · x[n−1]              (scale = CascadeKernel.grid_scale(dt))
    if d_t != 0: w ← clamp(w + lr · d_t · e_t, lo, hi)

Between two coincidences (``c = 0``) this is linear in ``x``, so a synapse is only touched when it
has an input (:func:`explicit_step`) or its weight is read (:func:`advance_to`, :func:`flush_all`);
the steps in between are skipped in closed form:

* **state**: ``M^k = e^(−a k) expm(k S)``, i.e. ``(M^k)[i, j] = E^k k^(i−j)/(i−j)!`` with
  ``E = M[0, 0]`` (the float the every-step engine multiplies by, so ``E^k`` is its decay over
  ``k`` steps: no drift of ``k·ulp(a)`` between the two).
* **weight**: dopamine is piecewise geometric, ``d = pv·γ^(t − pt)`` on a piece (pieces below).
  Over ``c`` steps of one piece, starting from the state ``x`` and dopamine ``D`` at the first step,
  ``Σ_j d_j e_j = scale·D·Σ_i x_i G_c[n−1−i]`` with the all-positive
  ``G_c[m] = Σ_{j=1..c} γ^(j−1) E^j j^m/m!``.
* **tonic dopamine** (``lazy_constants(..., tonic=…)``, Izhikevich's ``0.002 + DA``): a constant
  added to the pieces' dopamine, ``d_t = tonic + pv·γ^(t − pt)``. Its part of a chunk is the same
  sum with ``γ = 1``, ``scale·tonic·Σ_i x_i G1_c[n−1−i]`` (``G1`` tabulated like ``G``); the bound
  and sign arguments below hold unchanged because every step's dopamine keeps one sign (tonic
  >= 0 and pieces >= 0).
* **tables** (:func:`lazy_constants`): ``A_c[k] = E^c c^k/k!`` (the Toeplitz columns of ``M^c``),
  ``G_c`` and ``γ^c`` for every chunk length ``c = 1 … lmax`` and ``c = lmax·2^p``. An interval is
  split greedily into such chunks (a few for typical intervals, one for ``<= lmax`` steps); each
  chunk is an ``O(n²)`` Toeplitz mat-vec plus an ``O(n)`` dot product, no ``exp`` at run time.
  ``G`` of the long chunks comes from the stable composition
  ``G_{c1+c2}[m] = G_{c1}[m] + γ^c1 Σ_{l<=m} A_c1[m−l] G_c2[l]`` (positive terms only; the closed
  form of the geometric-polynomial sum cancels catastrophically).
* **clamping**: per-step clamping equals one clamp at the end of a chunk when the chunk's
  increments have one sign (and ``w`` starts within ``[lo, hi]``), and is a no-op when
  ``w ± Σ|increments|`` stays inside (``Σ|increments| <= |D| Σ_i |x_i| G_c[n−1−i]``, the first test,
  enough almost always). Otherwise the sign of ``e`` on the chunk is certified from
  ``P(k) = Σ_i x_i k^(n−1−i)/(n−1−i)! = P+(k) − P−(k)`` (``P±`` nondecreasing with nonnegative
  coefficients; ``sign e_k = sign P(k)``): ``P+(1) >= P−(c)`` ⇒ ``e >= 0``, ``P−(1) >= P+(c)`` ⇒
  ``e <= 0``. A chunk that fails both is cut into runs of one sign through the derivatives: from
  the lowest ``P^(d)`` certified on the chunk, each lower derivative is monotone on the current
  run, so it keeps its sign or changes it once (found by binary search, which shortens the run).
* **an input step** (order ``n >= 2``): ``c`` enters ``x[0]`` only, and step ``t``'s eligibility
  ``x_t[n−1] = (M x_{t−1})[n−1]`` does not depend on it, so the explicit step is the lazy advance to
  ``t`` (one table row) followed by ``x[0] += c``. Order 1 advances to ``t − 1`` and takes step
  ``t`` explicitly (its ``e_t`` includes ``c``).
* **cost**: the common interval (at most ``lmax`` steps on the latest dopamine piece, no bound
  within reach, or one clamp at the end of a path of one sign) is :func:`_fast`, written out flat
  and inlined into the engine's per-synapse loop (:func:`_touch`): a call would pass each of the
  eleven arrays as its exploded struct, which cost more than the arithmetic. Everything else
  (longer intervals, piece boundaries, sign changes near a bound) is :func:`_advance_general`.

Dopamine pieces of trial ``b``: ``pt (B, P) int64`` start steps (nondecreasing; the last of equal
starts wins), ``pv (B, P) float64`` the dopamine at those steps, ``pn (B,) int64`` how many are
valid. On piece ``k``, ``d_t = pv[b, k]·γ^(t − pt[b, k])`` for ``pt[b, k] <= t < pt[b, k+1]``;
before the first piece ``d = 0`` (the state only decays). Steps ``t`` are 1-based.

State: ``X (B, S, n) float64`` as of step ``T (B, S) int64`` (after that step's update),
``W (B, S)`` weights in the network dtype (computed in float64, stored once per call). Calls on
different ``(b, s)`` touch disjoint memory (safe in ``prange``). Accuracy: the every-step update
to float64 rounding (tests/test_event_cascade.py: relative 1e-12 against a NumPy reference).
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from numba import njit, prange

from ...errors import ConfigError
from ...spec.kernel import CascadeKernel

__all__ = ["lazy_constants", "advance_to", "explicit_step", "flush_all", "flush_trial", "flush_range", "KF_FIELDS",
           "tab_columns"]

# kf: float64 constants; the inverse factorials 1/m! (m = 0 … n−1) follow the named fields
KF_FIELDS = ("order", "lmax", "npow", "gamma", "lr_scale", "lo", "hi", "scale", "lr", "lr_scale_tonic")
_N, _LMAX, _NPOW, _GAMMA, _LRS, _LO, _HI, _SCALE, _LR, _TONIC = range(10)
_INVF = len(KF_FIELDS)
_NPOW_DEFAULT = 44  # chunks up to lmax·2^44 steps (a state has long decayed to 0 by then)
# integer arguments as int64, not as literals: numba compiles a callee once more for a literal
_ZERO, _ONE = np.int64(0), np.int64(1)

# No NRT (numba's reference counting): nothing here allocates, and a function compiled with NRT
# increfs/decrefs every array argument on entry/exit (an atomic call each, ~100 ns per call with
# 11 arrays: more than the work). Without it a call costs what its arithmetic costs.
_jit = njit(cache=True, _nrt=False, error_model="numpy")
# the hot path inlined into its callers (numba IR inlining): a call passes every array as its
# exploded struct (~10 words each), more than the O(n²) arithmetic of a typical touch
_inline = njit(cache=True, _nrt=False, error_model="numpy", inline="always")


def tab_columns(order: int) -> dict:
    """Column slices of a row of ``tab`` (the row of chunk length ``c``): ``A`` the ``n`` entries
    ``E^c c^k/k!``, ``G`` the ``n`` sums ``G_c[m]``, ``gamma_c`` the column of ``γ^c``,
    ``gamma_lc`` the column of ``γ^(lmax·c)`` (rows ``c <= lmax`` only: with ``gamma_c`` the
    dopamine decay over up to ``lmax²`` steps is a product of two table entries, no ``pow``), and
    ``G1`` the ``n`` sums ``G_c[m]`` with ``γ = 1`` (the tonic dopamine's; zero without one)."""
    n = int(order)
    return {"A": slice(0, n), "G": slice(n, 2 * n), "gamma_c": 2 * n, "gamma_lc": 2 * n + 1,
            "G1": slice(2 * n + 2, 3 * n + 2)}


def _pos(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not (v > 0 and math.isfinite(v)):
        raise ConfigError(f"{name} = {v!r}: must be a positive finite number")
    return float(v)


def _neumaier_prefix(terms: np.ndarray) -> np.ndarray:
    """Prefix sums along axis 0 of a (L, n) array of nonnegative terms, compensated (Neumaier):
    relative error ~2 ulp instead of L ulp of a plain cumulative sum."""
    out = np.empty_like(terms)
    s = np.zeros(terms.shape[1])
    comp = np.zeros(terms.shape[1])
    for j in range(terms.shape[0]):
        v = terms[j]
        t = s + v
        comp += np.where(np.abs(s) >= np.abs(v), (s - t) + v, (v - t) + s)
        s = t
        out[j] = s + comp
    return out


def _toeplitz_cols(E: float, c: float, n: int) -> np.ndarray:
    """``E^c c^k/k!`` for ``k = 0 … n−1`` (float64), accurate to a few ulp; in log space where
    ``E^c`` would be subnormal (where its own digits run out)."""
    Ec = math.pow(E, c)
    k = np.arange(n)
    if Ec > 1e-280:
        with np.errstate(over="ignore"):
            ck = np.array([float(c) ** int(i) / math.factorial(int(i)) for i in k])
        if np.all(np.isfinite(ck)):
            return Ec * ck
    logE = math.log(E)
    return np.array([math.exp(c * logE + i * math.log(c) - math.lgamma(i + 1)) for i in range(n)])


def lazy_constants(kernel: CascadeKernel, dt: float, gamma: float, lr: float, lo: float, hi: float, *,
                   lmax: int = 1024, tonic: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Constants ``(kf, tab)`` of the lazy cascade for one plastic projection.

    Args:
        kernel: the rule's :class:`~neuroprobe.spec.CascadeKernel` (its transition over ``dt`` and
            its ``grid_scale(dt)`` are the every-step engine's).
        dt: step (s). gamma: the dopamine's decay per step (``exp(−dt/τ_d)`` as the protocol
            computes it, in (0, 1]; 1 = tonic). lr: learning rate (the SGD step).
        lo, hi: signed weight bounds (Dale sign applied: ``[−w_max, −w_min]`` for inhibitory).
        lmax: chunk lengths ``1 … lmax`` are tabulated directly (intervals up to ``lmax`` steps cost
            one chunk), longer ones as ``lmax·2^p``.
        tonic: a constant dopamine added to the pieces' (``d_t = tonic + pv·γ^(t − pt)``, from step 1
            on), >= 0; it must have the pieces' sign (their values must be >= 0 where it is > 0: the
            clamping certificates need every step's dopamine of one sign). 0: none (then the
            ``G1`` columns stay zero and the arithmetic is the one without this option, bit for bit).

    Returns:
        ``kf`` float64 ``(len(KF_FIELDS) + n,)``: the fields of :data:`KF_FIELDS` then ``1/m!``;
        ``tab`` float64 ``(lmax + npow, 3n + 2)``: row ``c − 1`` for ``c <= lmax``, row
        ``lmax − 1 + p`` for ``c = lmax·2^p``; columns as :func:`tab_columns`.
    """
    if not isinstance(kernel, CascadeKernel):
        raise ConfigError(f"kernel = {type(kernel).__name__}: must be a CascadeKernel")
    dt = _pos("dt", dt)
    if isinstance(gamma, bool) or not isinstance(gamma, Real) or not 0 < gamma <= 1:
        raise ConfigError(f"gamma = {gamma!r}: the dopamine decay per step must be in (0, 1]")
    if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr):
        raise ConfigError(f"lr = {lr!r}: must be a finite number")
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(v):
            raise ConfigError(f"{name} = {v!r}: must be a number (±inf for no bound)")
    if not lo <= hi:
        raise ConfigError(f"weight bounds lo = {lo}, hi = {hi}: need lo <= hi")
    if isinstance(lmax, bool) or not isinstance(lmax, Integral) or not 1 <= lmax <= 2 ** 16:
        raise ConfigError(f"lmax = {lmax!r}: must be an integer in [1, 65536]")
    if isinstance(tonic, bool) or not isinstance(tonic, Real) or not (tonic >= 0 and math.isfinite(tonic)):
        raise ConfigError(f"tonic = {tonic!r}: the tonic dopamine must be a finite number >= 0")
    n, lmax, gamma = kernel.order, int(lmax), float(gamma)
    M = np.asarray(kernel.transition(dt), dtype=np.float64)
    E = float(M[0, 0])  # the every-step decay factor, bit for bit
    scale = float(kernel.grid_scale(dt))
    npow = _NPOW_DEFAULT
    tab = np.zeros((lmax + npow, 3 * n + 2))
    # direct rows c = 1 … lmax; c = 1 is the every-step transition itself
    tab[0, :n] = M[:, 0]
    for c in range(2, lmax + 1):
        tab[c - 1, :n] = _toeplitz_cols(E, c, n)
    j = np.arange(1, lmax + 1, dtype=np.float64)
    with np.errstate(under="ignore"):
        gj = np.power(gamma, j - 1) * np.power(E, j)  # γ^(j−1) E^j
        terms = gj[:, None] * np.array([[float(jj) ** m / math.factorial(m) for m in range(n)] for jj in j])
    terms[0] = M[:, 0]  # G_1 = A_1: one step is the every-step engine's
    tab[:lmax, n:2 * n] = _neumaier_prefix(terms)
    tab[:lmax, 2 * n] = np.power(gamma, j)
    with np.errstate(under="ignore"):
        tab[:lmax, 2 * n + 1] = [math.pow(gamma, float(lmax) * c) for c in range(1, lmax + 1)]
    # doubling rows c = lmax·2^p from the row of c/2 (positive composition)
    for p in range(1, npow + 1):
        r_half, r = lmax - 2 + p, lmax - 1 + p
        c_half = lmax * 2 ** (p - 1)
        A, G, gc = tab[r_half, :n], tab[r_half, n:2 * n], tab[r_half, 2 * n]
        tab[r, :n] = _toeplitz_cols(E, 2.0 * c_half, n)
        tab[r, n:2 * n] = [math.fsum([G[m]] + [gc * A[m - l] * G[l] for l in range(m + 1)]) for m in range(n)]
        tab[r, 2 * n] = math.pow(gamma, 2.0 * c_half)
    if tonic > 0:  # G1: the sums of G with γ = 1 (the tonic dopamine does not decay), built the same way
        with np.errstate(under="ignore"):
            terms1 = np.power(E, j)[:, None] * np.array([[float(jj) ** m / math.factorial(m) for m in range(n)]
                                                          for jj in j])
        terms1[0] = M[:, 0]
        g1 = slice(2 * n + 2, 3 * n + 2)
        tab[:lmax, g1] = _neumaier_prefix(terms1)
        for p in range(1, npow + 1):
            r_half, r = lmax - 2 + p, lmax - 1 + p
            A, G = tab[r_half, :n], tab[r_half, g1]
            tab[r, g1] = [math.fsum([G[m]] + [A[m - l] * G[l] for l in range(m + 1)]) for m in range(n)]
    kf = np.zeros(_INVF + n)
    kf[_N], kf[_LMAX], kf[_NPOW], kf[_GAMMA] = n, lmax, npow, gamma
    kf[_LRS], kf[_LO], kf[_HI], kf[_SCALE], kf[_LR] = float(lr) * scale, float(lo), float(hi), scale, float(lr)
    kf[_TONIC] = float(lr) * scale * float(tonic)
    kf[_INVF:] = [1.0 / math.factorial(m) for m in range(n)]
    return kf, tab


# ---------------------------------------------------------------- compiled kernels


@_jit
def _chunk(R, lmax, npow):
    """Greedy chunk of the remaining ``R >= 1`` steps: ``(length, table row)``."""
    if R <= lmax:
        return R, R - 1
    q = R // lmax
    p = 0
    while p < npow and (q >> (p + 1)) > 0:
        p += 1
    return lmax << p, lmax - 1 + p


@_jit
def _propagate(X, b, s, n, tab, r):
    """``x ← M^c x`` in place (row ``r`` of chunk ``c``): lower-triangular Toeplitz, so going down
    from the last state each new entry reads only old ones."""
    for i in range(n - 1, -1, -1):
        acc = 0.0
        for j in range(i + 1):
            acc += tab[r, i - j] * X[b, s, j]
        X[b, s, i] = acc


@_jit
def _sums(X, b, s, n, tab, r):
    """``(Σ_i x_i G_c[n−1−i], Σ_i |x_i| G_c[n−1−i])`` of the state before chunk row ``r``."""
    inc = 0.0
    mag = 0.0
    for i in range(n):
        v = X[b, s, i] * tab[r, 2 * n - 1 - i]
        inc += v
        mag += abs(v)
    return inc, mag


@_jit
def _sums1(X, b, s, n, tab, r):
    """:func:`_sums` with the tonic dopamine's ``G1_c`` (``γ = 1``)."""
    inc = 0.0
    mag = 0.0
    for i in range(n):
        v = X[b, s, i] * tab[r, 3 * n + 1 - i]
        inc += v
        mag += abs(v)
    return inc, mag


@_jit
def _is_zero(X, b, s, n):
    for i in range(n):
        if X[b, s, i] != 0.0:
            return False
    return True


@_jit
def _cert(X, b, s, n, j, c, kf):
    """P± certificate of ``P^(j)`` (the ``j``-th derivative of ``e``'s polynomial,
    ``Σ_m x[n−1−m−j] k^m/m!``) on the real lags ``[1, c]``: True if it provably keeps one sign."""
    p1 = 0.0
    m1 = 0.0
    pc = 0.0
    mc = 0.0
    ck = 1.0
    fc = float(c)
    for m in range(n - j):
        v = X[b, s, n - 1 - m - j]
        f = kf[_INVF + m]
        vp = max(v, 0.0)  # branch-free split (signs are unpredictable)
        vm = max(-v, 0.0)
        p1 += vp * f
        m1 += vm * f
        g = ck * f
        pc += vp * g
        mc += vm * g
        ck *= fc
    return p1 >= mc or m1 >= pc


@_jit
def _nonneg(X, b, s, n, j, k, kf):
    """``P^(j)(k) >= 0`` (lag ``k`` from the current state)."""
    acc = 0.0
    ck = 1.0
    fk = float(k)
    for m in range(n - j):
        acc += X[b, s, n - 1 - m - j] * (ck * kf[_INVF + m])
        ck *= fk
    return acc >= 0.0


@_jit
def _run_length(X, b, s, n, R, kf):
    """A length ``g`` in ``[1, R]`` over which ``e`` provably keeps one sign (``P`` one-signed on the
    lags ``1 … g``). Start from the lowest derivative ``P^(d)`` certified on ``[1, R]``; going down,
    ``P^(j)`` is monotone on ``[1, g]`` (``P^(j+1)`` is one-signed there), so it keeps its sign if
    both ends agree, else changes it once: ``g`` shrinks to the last lag before that change
    (binary search). O(n²) plus ``d`` binary searches of O(n) evaluations; no storage."""
    d = _ZERO
    while d < n - 1 and not _cert(X, b, s, n, d, R, kf):
        d += 1
    g = R
    for j in range(d - 1, -1, -1):
        if _cert(X, b, s, n, j, g, kf):
            continue
        first = _nonneg(X, b, s, n, j, _ONE, kf)
        if _nonneg(X, b, s, n, j, g, kf) == first:
            continue
        lo = 1
        hi = g  # class(lo) == first != class(hi)
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if _nonneg(X, b, s, n, j, mid, kf) == first:
                lo = mid
            else:
                hi = mid
        g = lo
    return g


@_jit
def _decay(X, b, s, n, L, kf, tab):
    """``L`` steps without dopamine: the state only decays."""
    lmax = int(kf[_LMAX])
    npow = int(kf[_NPOW])
    R = L
    while R > 0:
        c, r = _chunk(R, lmax, npow)
        _propagate(X, b, s, n, tab, r)
        R -= c
        if R > 0 and _is_zero(X, b, s, n):
            break


@_jit
def _monotone_steps(X, b, s, n, L, D, w, kf, tab):
    """``L`` steps whose increments have one sign (greedy chunks, one clamp each: exact when ``w``
    starts within the bounds or ``L = 1``). Propagates the state; returns ``(w, D)``."""
    lmax = int(kf[_LMAX])
    npow = int(kf[_NPOW])
    lo = kf[_LO]
    hi = kf[_HI]
    tn = kf[_TONIC]
    R = L
    while R > 0:
        c, r = _chunk(R, lmax, npow)
        inc, mag = _sums(X, b, s, n, tab, r)
        inc *= D
        if tn != 0.0:
            inc1, mag1 = _sums1(X, b, s, n, tab, r)
            inc += inc1 * tn
        w = min(max(w + inc, lo), hi)
        _propagate(X, b, s, n, tab, r)
        D *= tab[r, 2 * n]
        R -= c
    return w, D


@_jit
def _split_by_sign(X, b, s, n, c, D, w, kf, tab):
    """``c`` steps whose path may be clamped and whose ``e`` may change sign: cut into runs of one
    sign (:func:`_run_length`), each applied with one clamp per chunk. Propagates the
    state; returns the weight."""
    lo = kf[_LO]
    hi = kf[_HI]
    pos = 0
    while pos < c:
        R = c - pos
        if not (lo <= w and w <= hi):
            ell = 1  # per-step semantics: the first dopamine step clamps w into the bounds
        else:
            ell = _run_length(X, b, s, n, R, kf)
        w, D = _monotone_steps(X, b, s, n, ell, D, w, kf, tab)
        pos += ell
    return w


@_jit
def _dopamine(X, b, s, n, L, D, w, kf, tab):
    """``L`` steps of one dopamine piece; ``D = lr·scale·d`` at the first step (plus the tonic
    dopamine's constant ``lr·scale·tonic``, if any). Returns ``(w, number of chunks that had to
    be split by sign)``."""
    lmax = int(kf[_LMAX])
    npow = int(kf[_NPOW])
    lo = kf[_LO]
    hi = kf[_HI]
    tn = kf[_TONIC]
    R = L
    nsplit = 0
    while R > 0:
        c, r = _chunk(R, lmax, npow)
        inc, mag = _sums(X, b, s, n, tab, r)
        inc *= D
        mag *= abs(D)
        if tn != 0.0:  # the tonic part: the same sums with γ = 1
            inc1, mag1 = _sums1(X, b, s, n, tab, r)
            inc += inc1 * tn
            mag += mag1 * abs(tn)
        if lo <= w - mag and w + mag <= hi:  # the path cannot reach a bound: no clamp happens
            w += inc
            _propagate(X, b, s, n, tab, r)
        elif c == 1 or (lo <= w and w <= hi and _cert(X, b, s, n, _ZERO, c, kf)):  # monotone path: one clamp
            w = min(max(w + inc, lo), hi)
            _propagate(X, b, s, n, tab, r)
        else:
            w = _split_by_sign(X, b, s, n, c, D, w, kf, tab)
            nsplit += 1
        D *= tab[r, 2 * n]
        R -= c
    return w, nsplit


@_jit
def _piece_at(pt, b, npieces, t):
    """Index of the last piece of trial ``b`` starting at or before step ``t`` (−1: none). The
    latest piece first: a synapse is mostly touched again before the next reward."""
    if npieces == 0 or pt[b, npieces - 1] <= t:
        return npieces - 1
    lo = 0
    hi = npieces - 1  # answer in [lo − 1, hi − 1]: first index with pt > t, minus one
    while lo < hi:
        mid = (lo + hi) >> 1
        if pt[b, mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@_inline
def _gamma_pow(q, n, kf, tab):
    """``γ^q`` (``q >= 0`` steps) from the table: one entry up to ``lmax`` steps, the product of two
    (``γ^(lmax·h)·γ^(q − lmax·h)``, a few ulp like ``pow``'s one) up to ``lmax²``, else ``pow``."""
    lmax = int(kf[_LMAX])
    if q <= lmax:
        return 1.0 if q == 0 else tab[q - 1, 2 * n]
    h = q // lmax
    if h > lmax:
        return math.pow(kf[_GAMMA], float(q))
    g = tab[h - 1, 2 * n + 1]
    q -= h * lmax
    return g * tab[q - 1, 2 * n] if q > 0 else g


@_jit
def _piece_d(pt, pv, b, k, t, n, kf, tab):
    """``lr·scale·d_t`` on piece ``k`` at step ``t`` (0 before the first piece, ``k < 0``)."""
    if k < 0:
        return 0.0
    return kf[_LRS] * pv[b, k] * _gamma_pow(t - pt[b, k], n, kf, tab)


@_jit
def _advance_general(X, T, W, b, s, t_to, pt, pv, pn, kf, tab):
    """:func:`_advance` for any interval: any number of pieces and chunks, clamping certified or
    split by sign. Returns the number of chunks that had to be split by sign."""
    t = T[b, s]
    if t_to <= t:
        return 0
    n = X.shape[2]
    lo = kf[_LO]
    hi = kf[_HI]
    w = np.float64(W[b, s])
    if _is_zero(X, b, s, n) and lo <= w and w <= hi:  # nothing left to decay or to learn
        T[b, s] = t_to
        return 0
    npieces = pn[b]
    k = _piece_at(pt, b, npieces, t + 1)
    changed = False
    nsplit = 0
    while t < t_to:
        end = t_to
        if k + 1 < npieces and pt[b, k + 1] - 1 < end:
            end = pt[b, k + 1] - 1  # this piece ends where the next begins
        if end > t:
            D = _piece_d(pt, pv, b, k, t + 1, n, kf, tab)
            if D == 0.0 and kf[_TONIC] == 0.0:
                _decay(X, b, s, n, end - t, kf, tab)
            else:
                w, nr = _dopamine(X, b, s, n, end - t, D, w, kf, tab)
                nsplit += nr
                changed = True
            t = end
        k += 1
    if changed:
        W[b, s] = w
    T[b, s] = t_to
    return nsplit


@_inline
def _fast(X, T, W, b, s, t_to, pt, pv, pn, kf, tab):
    """The common case of :func:`advance_to`, written out flat (it is inlined into the per-synapse
    loops, where a call would pass every array as its exploded struct, ~10 words each: more than
    the arithmetic): at most ``lmax`` steps (one table row ``r``), all on the latest dopamine piece,
    and no clamping, or one clamp at the end of a path of one sign (:func:`_dopamine`'s first two
    cases). Returns False, having changed nothing, where the interval needs :func:`_advance_general`
    (longer, crossing a piece, clamped and changing sign)."""
    t = T[b, s]
    L = t_to - t
    if L <= 0:
        return True
    lmax = int(kf[_LMAX])
    if L > lmax:
        return False
    n = X.shape[2]
    r = L - 1
    D = 0.0  # lr·scale·d at step t + 1
    k = pn[b] - 1
    if k >= 0:
        q = t + 1 - pt[b, k]  # steps since the latest piece began
        if q < 0:  # it begins after step t + 1: a piece boundary may lie inside the interval
            return False
        D = kf[_LRS] * pv[b, k] * _gamma_pow(q, n, kf, tab)
    tn = kf[_TONIC]
    if D != 0.0 or tn != 0.0:
        w = np.float64(W[b, s])
        lo = kf[_LO]
        hi = kf[_HI]
        inc = 0.0  # Σ_i x_i G_L[n−1−i] and its magnitude (_sums)
        mag = 0.0
        for i in range(n):
            v = X[b, s, i] * tab[r, 2 * n - 1 - i]
            inc += v
            mag += abs(v)
        mag *= abs(D)
        inc *= D
        if tn != 0.0:  # the tonic dopamine's part (_sums1)
            inc1 = 0.0
            mag1 = 0.0
            for i in range(n):
                v = X[b, s, i] * tab[r, 3 * n + 1 - i]
                inc1 += v
                mag1 += abs(v)
            inc += inc1 * tn
            mag += mag1 * abs(tn)
        if lo <= w - mag and w + mag <= hi:  # the path cannot reach a bound
            W[b, s] = w + inc
        elif L == 1:
            W[b, s] = min(max(w + inc, lo), hi)
        elif lo <= w and w <= hi:  # a weight at a bound pushed on it or pulled off it: e of one sign?
            p1 = 0.0  # _cert(X, b, s, n, 0, L, kf), the P± certificate on the lags 1 … L
            m1 = 0.0
            pc = 0.0
            mc = 0.0
            ck = 1.0
            fc = float(L)
            for m in range(n):
                v = X[b, s, n - 1 - m]
                f = kf[_INVF + m]
                vp = max(v, 0.0)
                vm = max(-v, 0.0)
                p1 += vp * f
                m1 += vm * f
                g = ck * f
                pc += vp * g
                mc += vm * g
                ck *= fc
            if p1 >= mc or m1 >= pc:  # one sign: per-step clamping is one clamp at the end
                W[b, s] = min(max(w + inc, lo), hi)
            else:
                return False
        else:
            return False
    for i in range(n - 1, -1, -1):  # x ← M^L x (_propagate)
        acc = 0.0
        for j in range(i + 1):
            acc += tab[r, i - j] * X[b, s, j]
        X[b, s, i] = acc
    T[b, s] = t_to
    return True


@_jit
def _advance(X, T, W, b, s, t_to, pt, pv, pn, kf, tab):
    """:func:`advance_to`, returning the number of chunks that had to be split by sign (diagnostics)."""
    if _fast(X, T, W, b, s, t_to, pt, pv, pn, kf, tab):
        return 0
    return _advance_general(X, T, W, b, s, t_to, pt, pv, pn, kf, tab)


@_inline
def _touch(X, T, W, b, s, t, c, d_t, pt, pv, pn, kf, tab):
    """:func:`explicit_step` without its check, inlined into the kernel's per-synapse loops. For
    order ``n >= 2`` the input enters ``x[0]`` only and step ``t``'s eligibility
    ``x_t[n−1] = (M x_{t−1})[n−1]`` does not depend on it: the step is the lazy advance to ``t``
    (dopamine of step ``t`` from the pieces) plus ``x[0] += c``. Order 1 (``e`` includes ``c``):
    advance to ``t − 1``, then the explicit step with ``d_t``."""
    n = X.shape[2]
    t_lazy = t if n >= 2 else t - 1
    if T[b, s] < t_lazy and not _fast(X, T, W, b, s, t_lazy, pt, pv, pn, kf, tab):
        _advance_general(X, T, W, b, s, t_lazy, pt, pv, pn, kf, tab)
    if n >= 2:
        X[b, s, 0] += c
        return
    x = X[b, s, 0] * tab[0, 0] + c
    X[b, s, 0] = x
    if d_t != 0.0:
        w = W[b, s] + ((x * kf[_SCALE]) * d_t) * kf[_LR]
        W[b, s] = min(max(w, kf[_LO]), kf[_HI])
    T[b, s] = t


@_jit
def advance_to(X, T, W, b, s, t_to, pt, pv, pn, kf, tab):
    """Bring synapse ``(b, s)`` from step ``T[b, s]`` to ``t_to`` (no coincidence in between):
    ``X[b, s]``, ``W[b, s]`` as the every-step rule would leave them after step ``t_to`` (per-step
    clamping included); sets ``T[b, s] = t_to``. No-op if ``t_to <= T[b, s]``."""
    _advance(X, T, W, b, s, t_to, pt, pv, pn, kf, tab)


@_jit
def explicit_step(X, T, W, b, s, t, c, d_t, pt, pv, pn, kf, tab):
    """Step ``t`` of synapse ``(b, s)`` with coincidence ``c``: :func:`advance_to` ``t − 1``, then
    ``x ← M x + e_0 c``, ``e = scale·x[n−1]`` and, if ``d ≠ 0``, ``w ← clamp(w + lr·(d·e))`` (the
    every-step operations). ``d_t`` is the protocol's dopamine at step ``t``; order ``n >= 2`` takes
    it from the pieces instead (the same value to rounding; see :func:`_touch`), so the pieces
    must cover step ``t``. A synapse takes at most one explicit step per step (sum its
    coincidences first): ``T[b, s] >= t`` raises."""
    if T[b, s] >= t:
        raise ValueError("explicit_step: the synapse is already at or past step t")
    _touch(X, T, W, b, s, t, c, d_t, pt, pv, pn, kf, tab)


@_jit
def flush_range(X, T, W, b, s0, s1, t_to, pt, pv, pn, kf, tab):
    """:func:`advance_to` ``t_to`` for the synapses ``s0 … s1 − 1`` of trial ``b`` (one plastic
    projection's block when several share the arrays, each with its own ``kf``)."""
    for s in range(s0, s1):
        _advance(X, T, W, b, s, t_to, pt, pv, pn, kf, tab)


@_jit
def flush_trial(X, T, W, b, t_to, pt, pv, pn, kf, tab):
    """:func:`advance_to` ``t_to`` for every synapse of trial ``b`` (serial: for use inside a
    caller's own ``prange`` over trials)."""
    for s in range(T.shape[1]):
        _advance(X, T, W, b, s, t_to, pt, pv, pn, kf, tab)


@njit(cache=True, parallel=True)
def flush_all(X, T, W, t_to, pt, pv, pn, kf, tab):
    """:func:`advance_to` ``t_to`` for every ``(b, s)``, in parallel over all of them (each is
    independent: the result does not depend on the thread count). Call it from serial code: with
    numba's default workqueue threading layer a ``prange`` inside another one aborts."""
    B, S = T.shape
    for i in prange(B * S):
        b = i // S
        _advance(X, T, W, b, i - b * S, t_to, pt, pv, pn, kf, tab)
