"""Engine conformance, the cascade eligibility kernel: for orders 1–10 and delays 0.05, 0.2 and 2 s
at dt = 1 ms, what every engine computes after one pre→post pairing
(:func:`neuroprobe.engines.impulse_response`) peaks within one step of the configured delay (order
1: decays monotonically and falls to 1/e of its start within one step of ``delay``, its time
constant); the float engines equal the closed form to 1e-9 relative; the integer engines equal
the real-arithmetic model of their own forward-Euler chain within its rounding bound.

This suite fails on the integer kernel before the fix (``r = round(4096·n·dt/delay)``, 12-bit
rate, 24-bit states, ``c_shift`` 8; checked by running it on a copy of the package with that code
restored): test_kernel_peaks_at_the_configured_delay failed for torch-fixed and lava alike, with
peak − delay in steps, for orders 1 (1/e point; ">=3": not reached in the test's window, 5 and 48
steps late on a long one) … 10::

    delay 0.05 s:   0   −26   −17   −13   −11    −9    −8    −7    −6    −5
    delay 0.2 s:  >=3  −101   −66   −51   −40   −34   −29   −26   −22   −21
    delay 2 s:    >=3  −982  −642  −472  −369  −300  −252  −215  −186  −163

(order 6, 2 s: the peak at 1.70 s; order 2: 1.02 s), while torch and brian2 were exact (0). Now
every entry is 0 for every engine, except order 1's 1/e point, which is at ``delay`` or one step
after it (the first step at or below 1/e). The wider states matter too: with the corrected rate
but 24-bit states the rounding alone moved the peaks at 2 s by −21 … −6 steps.
"""
import math

import numpy as np
import pytest
from scipy.special import gammaln

from neuroprobe.backends.fixed.rstdp import chain_rate_bits
from neuroprobe.engines import impulse_responses
from neuroprobe.spec import CascadeKernel

from .conftest import FLOAT_ENGINES

DT = 1e-3
ORDERS = range(1, 11)
DELAYS = (0.05, 0.2, 2.0)


def _steps(delay: float) -> int:
    return math.ceil(delay / DT) + 3  # just past the peak (and past order 1's 1/e point)


def _closed_form(order: int, delay: float, steps: int) -> np.ndarray:
    """Peak-normalised cascade kernel at lags k·dt, written out independently of neuroprobe:
    (k/D)^(n−1) e^(−(n−1)(k−D)/D) (order 1: e^(−k/D)), D = delay/dt."""
    D, k = delay / DT, np.arange(steps, dtype=np.float64)
    if order == 1:
        return np.exp(-k / D)
    return np.array([(kk / D) ** (order - 1) * math.exp(-(order - 1) * (kk - D) / D) for kk in k])


def _chain(order: int, rate: float, steps: int) -> np.ndarray:
    """The forward-Euler chain e_k ← e_k + r (e_{k−1} − e_k) in real arithmetic: its last stage k
    steps after a unit input, C(k, n−1) r^(n−1) (1−r)^(k−n+1)."""
    k = np.arange(steps, dtype=np.float64)
    m = np.maximum(k - order + 2, 1.0)
    log = (gammaln(k + 1) - gammaln(order) - gammaln(m) + (order - 1) * math.log(rate)
           + (k - order + 1) * math.log1p(-rate))
    return np.where(k >= order - 1, np.exp(log), 0.0)


def _peak_error(order: int, delay: float, h: np.ndarray) -> int:
    """Steps between the response's peak (order 1: its first step at or below h[0]/e) and delay."""
    D = round(delay / DT)
    if order == 1:
        assert np.all(np.diff(h) <= 0), "order 1 must decay monotonically"
        below = np.nonzero(h <= h[0] / math.e)[0]
        return int(below[0]) - D if below.size else len(h) - D
    return int(np.argmax(h)) - D


@pytest.mark.parametrize("delay", DELAYS)
def test_kernel_peaks_at_the_configured_delay(engine, delay):
    steps = _steps(delay)
    kernels = [CascadeKernel(n, delay, "peak") for n in ORDERS]
    responses = impulse_responses(kernels, engine, DT, steps)
    errors = {k.order: _peak_error(k.order, delay, h) for k, h in zip(kernels, responses)}
    assert all(abs(e) <= 1 for e in errors.values()), f"{engine}, delay {delay} s: peak − delay (steps) {errors}"
    for k, h in zip(kernels, responses):
        assert h.dtype == np.float64 and h.shape == (steps,)
        if engine in FLOAT_ENGINES:
            ref = _closed_form(k.order, delay, steps)
            np.testing.assert_allclose(h, ref, rtol=0, atol=1e-9 * ref.max(), err_msg=f"{engine} order {k.order}")
            cont = k.impulse_response(np.arange(steps) * DT)  # CascadeKernel's own closed form
            np.testing.assert_allclose(h, cont, rtol=0, atol=1e-9, err_msg=f"{engine} order {k.order}")
        else:
            # the integer chain against its real-arithmetic model at the engine's own rate r/2**r_shift:
            # each step rounds every stage by at most half a unit and the stage update is a convex
            # combination, so after k steps |e_int − e_real| <= k/2 units; the unit coincidence is
            # 2**26 units (the pairing's is within 10 % of it) and the peak P >= 2**26·max(chain)
            r, r_shift = chain_rate_bits(k, DT)
            ref = _chain(k.order, r / 2 ** r_shift, steps + 2 * round(delay / DT))
            ref_max = ref.max()
            ref = ref[:steps] / ref_max
            bound = 1.1 * (steps + 1.5 * delay / DT + 10) / 2 / (2 ** 26 * ref_max * 0.99)
            np.testing.assert_allclose(h, ref, rtol=0, atol=bound, err_msg=f"{engine} order {k.order}")


@pytest.mark.parametrize("normalize", ["area", None])
def test_normalisations(engine, normalize):
    """"area" and None: the float engines give CascadeKernel's closed form on the grid
    (sampled_response) to 1e-9; the fixed-point rule is peak-normalised and its response is scaled
    to the same maximum."""
    kernels = [CascadeKernel(n, 0.02, normalize) for n in (1, 2, 6)]
    steps = 40
    for k, h in zip(kernels, impulse_responses(kernels, engine, DT, steps)):
        ref = k.sampled_response(DT, steps)
        if engine in FLOAT_ENGINES:
            np.testing.assert_allclose(h, ref, rtol=0, atol=1e-9 * ref.max(), err_msg=f"order {k.order}")
        else:
            assert h.max() == pytest.approx(ref.max(), rel=1e-5)  # the pairing rounds unlike a unit input
            assert int(np.argmax(h)) == int(np.argmax(ref))


def test_kernel_spec_closed_forms():
    """CascadeKernel's definitions against independent computations: the continuous response
    peaks at delay (order >= 2) with value 1 ("peak") and integrates to 1 ("area"); the transition
    is expm(dt·A) (scipy); the grid's area normalisation sums the sampled kernel to 1."""
    from scipy.integrate import trapezoid
    from scipy.linalg import expm

    for n in (1, 2, 3, 6, 10):
        k = CascadeKernel(n, 0.2)
        t = np.linspace(0, 4, 400_001)
        h = k.impulse_response(t)
        if n >= 2:
            assert abs(t[np.argmax(h)] - 0.2) <= 1e-5 and h.max() == pytest.approx(1.0, abs=1e-12)
        area = CascadeKernel(n, 0.2, "area").impulse_response(t)
        assert trapezoid(area, t) == pytest.approx(1.0, rel=1e-6)
        a_dt = k.rate * DT
        A = -a_dt * np.eye(n) + np.eye(n, k=-1)
        np.testing.assert_allclose(k.transition(DT), expm(A), rtol=1e-12, atol=1e-300)
        s = CascadeKernel(n, 0.2, "area").sampled_response(DT, 20_000)
        assert s.sum() == pytest.approx(1.0, rel=1e-9)
        # the integer engines' rate: the Euler chain's maximum is at delay/dt
        r = k.chain_rate(DT)
        if n >= 2:
            assert int(np.argmax(_chain(n, r, 400))) == 200


def test_kernel_spec_round_trip_and_errors():
    from neuroprobe.errors import ConfigError

    k = CascadeKernel(6, 2.0, "none")
    assert k.normalize is None and CascadeKernel.from_dict(k.to_dict()) == k
    assert k.to_dict() == {"type": "cascade_kernel", "order": 6, "delay": 2.0, "normalize": None}
    assert k.rate == 2.5 and k.peak_time == 2.0 and CascadeKernel(1, 0.5).peak_time == 0.0
    for bad in ({"order": 0, "delay": 1.0}, {"order": 2, "delay": -1.0}, {"order": 2.5, "delay": 1.0},
                {"order": 2, "delay": 1.0, "normalize": "max"}, {"order": 2, "delay": 1.0, "extra": 1},
                {"type": "rstdp", "order": 2, "delay": 1.0}, {"order": 2}):
        with pytest.raises(ConfigError) as ei:
            CascadeKernel.from_dict(bad)
        assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="integer cascade needs delay"):
        CascadeKernel(10, 0.005).chain_rate(1e-3)


def test_engine_arguments():
    from neuroprobe.engines import ENGINES, available, impulse_response
    from neuroprobe.errors import ConfigError

    k = CascadeKernel(2, 0.01)
    with pytest.raises(ConfigError, match=r"engine = 'nest': allowed \['torch', 'event', 'torch-fixed', 'brian2', 'lava'\]"):
        impulse_response(k, "nest", DT, 10)
    for kw in ({"dt": 0.0}, {"dt": float("nan")}, {"steps": 0}, {"steps": 2.5}):
        args = {"dt": DT, "steps": 10, **kw}
        with pytest.raises(ConfigError):
            impulse_response(k, "torch", args["dt"], args["steps"])
    with pytest.raises(ConfigError, match="CascadeKernel"):
        impulse_response({"order": 2, "delay": 0.01}, "torch", DT, 10)
    rows = available()
    assert [row[0] for row in rows] == list(ENGINES) and all(row[1] in ("ok", "missing") for row in rows)
    assert rows[0][1] == rows[1][1] == "ok" and all(isinstance(row[2], str) and "\n" not in row[2] for row in rows)


def test_missing_engine_is_one_line(monkeypatch):
    import sys

    from neuroprobe.errors import NeuroprobeError

    monkeypatch.setitem(sys.modules, "brian2", None)  # import brian2 -> ImportError
    from neuroprobe.engines import impulse_response

    with pytest.raises(NeuroprobeError, match="pip install brian2") as ei:
        impulse_response(CascadeKernel(2, 0.01), "brian2", DT, 10)
    assert "\n" not in str(ei.value)
    monkeypatch.setenv("NEUROPROBE_LAVA_PYTHON", "/nonexistent/python")
    with pytest.raises(NeuroprobeError, match="no Lava interpreter") as ei:
        impulse_response(CascadeKernel(2, 0.01), "lava", DT, 10)
    assert "\n" not in str(ei.value)
