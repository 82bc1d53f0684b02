"""Tests of neuroprobe.traces: kernels, stateful traces, batched filtering (no wall-clock)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal, stats

from neuroprobe.errors import ConfigError, NeuroprobeError, ShapeError
from neuroprobe.traces import (
    CascadeTrace,
    ExponentialTrace,
    IdentityTrace,
    LtpLtdTrace,
    PerfectTrace,
    apply_kernel,
    cascade_filter,
    cascade_kernel,
    cascade_step,
    cascade_transition,
    delay_step,
    exponential_kernel,
    kernel_area,
    kernel_peak,
    ltp_ltd_kernel,
    ltp_ltd_taus,
    make_trace,
    perfect_kernel,
)

F64 = torch.float64


def _run(trace, u: torch.Tensor) -> torch.Tensor:
    """Step ``trace`` over the time axis 0 of ``u`` (a loop over time only)."""
    return torch.stack([trace.step(ut) for ut in u])


def _all_traces(shape, dtype=F64):
    return [
        CascadeTrace(1, 4.0, shape, dtype=dtype),
        CascadeTrace(6, 7.5, shape, normalize="peak", dtype=dtype),
        CascadeTrace(10, 12, shape, normalize=None, dtype=dtype),
        ExponentialTrace(None, shape, beta=0.7, dtype=dtype),
        LtpLtdTrace(6, shape, ratio=3.0, dtype=dtype),
        PerfectTrace(5, shape, dtype=dtype),
        PerfectTrace(0, shape, dtype=dtype),
        IdentityTrace(shape, dtype=dtype),
    ]


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("order", range(1, 11))
@pytest.mark.parametrize("delay", [1, 3, 7.5, 20])
@pytest.mark.parametrize("normalize", ["area", "peak"])
def test_cascade_kernel_matches_scipy_gamma(order, delay, normalize):
    length = 400
    k = np.arange(length, dtype=np.float64)
    rate = 1.0 / delay if order == 1 else (order - 1) / delay
    ref = stats.gamma(a=order, scale=1.0 / rate).pdf(k)
    ref = ref / (ref.sum() if normalize == "area" else ref.max())
    h = cascade_kernel(order, delay, length, normalize=normalize).numpy()
    np.testing.assert_allclose(h, ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("order", range(2, 11))
def test_cascade_kernel_argmax_is_delay(order):
    for delay in range(1, 31):
        h = cascade_kernel(order, delay, 4 * delay + 10)
        assert int(h.argmax()) == delay
        assert h[0] == 0


def test_kernel_normalisations_and_raw_values():
    h = cascade_kernel(4, 6, 100, normalize="area")
    assert math.isclose(float(h.sum()), 1.0, rel_tol=1e-12)
    h = cascade_kernel(4, 6, 100, normalize="peak")
    assert math.isclose(float(h.max()), 1.0, rel_tol=1e-12)
    # raw: k^(n-1) exp(-a k) / (n-1)!
    raw = cascade_kernel(4, 6, 100, normalize=None)
    k = torch.arange(100, dtype=F64)
    torch.testing.assert_close(raw, k**3 * torch.exp(-0.5 * k) / 6, rtol=1e-13, atol=0)
    # order 1: beta^k with beta = exp(-1/delay) unless given
    torch.testing.assert_close(exponential_kernel(3.0, 50, normalize=None), math.exp(-1 / 3) ** k[:50])
    torch.testing.assert_close(cascade_kernel(1, None, 50, normalize=None, beta=0.9), 0.9 ** k[:50])
    torch.testing.assert_close(cascade_kernel(1, None, 5, normalize=None, beta=0.0), torch.tensor([1.0, 0, 0, 0, 0], dtype=F64))
    assert cascade_kernel(3, 5, 10, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("order", [1, 2, 5, 10])
def test_transition_is_expm_and_impulse_response_is_erlang(order):
    delay = 6.0
    a = 1.0 / delay if order == 1 else (order - 1) / delay
    shift = torch.diag(torch.ones(order - 1, dtype=F64), -1)
    expm = torch.linalg.matrix_exp(-a * torch.eye(order, dtype=F64) + shift)
    m = cascade_transition(order, delay)
    torch.testing.assert_close(m, expm, rtol=1e-13, atol=1e-15)
    x = torch.zeros(order, dtype=F64)
    x[0] = 1.0
    resp = []
    for _ in range(60):
        resp.append(x[-1].item())
        x = m @ x
    torch.testing.assert_close(torch.tensor(resp, dtype=F64), cascade_kernel(order, delay, 60, normalize=None), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind,kw", [("cascade", dict(order=1, delay=5)), ("cascade", dict(order=3, delay=4.5)),
                                     ("cascade", dict(order=10, delay=30)), ("exponential", dict(beta=0.99)),
                                     ("ltp_ltd", dict(delay=8, ratio=2.5))])
def test_infinite_support_area_and_peak(kind, kw):
    length = 20000
    if kind == "ltp_ltd":
        raw = ltp_ltd_kernel(kw["delay"], length, kw["ratio"], normalize=None)
    else:
        raw = cascade_kernel(kw.get("order", 1), kw.get("delay"), length, normalize=None, beta=kw.get("beta"))
    assert math.isclose(kernel_area(kind, **kw), float(raw.sum()), rel_tol=1e-11)
    assert math.isclose(kernel_peak(kind, **kw), float(raw.max()), rel_tol=1e-13)


def test_perfect_and_ltp_ltd_kernels():
    torch.testing.assert_close(perfect_kernel(3, 6), torch.tensor([0, 0, 0, 1.0, 0, 0], dtype=F64))
    assert perfect_kernel(6, 6).sum() == 0
    for ratio in (1.5, 2.0, 4.0):
        for delay in range(2, 31):
            tau1, tau2 = ltp_ltd_taus(delay, ratio)
            assert tau1 > tau2 and math.isclose(tau1 / tau2, ratio)
            assert int(ltp_ltd_kernel(delay, 6 * delay, ratio).argmax()) == delay
    h = ltp_ltd_kernel(5, 80, normalize="peak")
    assert math.isclose(float(h.max()), 1.0) and h[0] == 0


# --------------------------------------------------------------------------- stateful traces


@pytest.mark.parametrize("order", [1, 2, 6, 10])
@pytest.mark.parametrize("normalize", ["area", "peak", None])
def test_cascade_trace_equals_direct_convolution(order, normalize):
    gen = torch.Generator().manual_seed(order)
    steps, delay, shape = 300, 7, (3, 4, 5)  # batch axis + two extra dims
    u = torch.randn((steps, *shape), generator=gen, dtype=F64)
    trace = CascadeTrace(order, delay, shape, normalize=normalize, dtype=F64)
    y = _run(trace, u)
    # reference kernel: finite kernel long enough that its normalisation equals the trace's one
    h = cascade_kernel(order, delay, 5000, normalize=normalize).numpy()[:steps]
    ref = signal.lfilter(h, [1.0], u.numpy(), axis=0)
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-10)
    ref_np = np.convolve(u[:, 1, 2, 3].numpy(), h)[:steps]
    np.testing.assert_allclose(y[:, 1, 2, 3].numpy(), ref_np, rtol=0, atol=1e-10)
    torch.testing.assert_close(trace.kernel(steps), torch.from_numpy(h), rtol=1e-10, atol=1e-13)


def test_cascade_step_is_pure_and_memory_is_state_only():
    state = torch.randn(2, 3, 4, dtype=F64)
    before = state.clone()
    u = torch.randn(2, 3, dtype=F64)
    new, out = cascade_step(state, u, cascade_transition(4, 5.0), scale=2.0)
    torch.testing.assert_close(state, before, rtol=0, atol=0)
    torch.testing.assert_close(out, 2.0 * new[..., -1])
    m = cascade_transition(4, 5.0)
    ref = state @ m.T
    ref[..., 0] += u
    torch.testing.assert_close(new, ref, rtol=1e-14, atol=1e-15)  # GEMM vs matmul order: entries near 0 differ by ~1e-17
    for shape in [(), (0, 3)]:  # scalar trace, empty batch
        new, out = cascade_step(torch.ones((*shape, 4), dtype=F64), torch.ones(shape, dtype=F64), m)
        assert new.shape == (*shape, 4) and out.shape == shape
    trace = CascadeTrace(6, 5, (32, 512))
    assert trace.state.shape == (32, 512, 6) and trace.nbytes == 32 * 512 * 6 * 4
    big = CascadeTrace(10, 5, (32, 512, 784), device="meta")  # no allocation
    assert big.nbytes == 32 * 512 * 784 * 10 * 4
    assert IdentityTrace((4, 4)).nbytes == 0 and PerfectTrace(7, (2, 3)).nbytes == 2 * 3 * 7 * 4


@pytest.mark.parametrize("method", ["fft", "toeplitz", "auto"])
@pytest.mark.parametrize("steps", [1, 50, 300])
def test_apply_and_cascade_filter_match_recurrence(method, steps):
    gen = torch.Generator().manual_seed(steps)
    shape = (2, 3)
    u = torch.randn((steps, *shape), generator=gen, dtype=F64)
    for trace in _all_traces(shape):
        trace.step(torch.randn(shape, generator=gen, dtype=F64))  # non-zero start state
        before = trace.state_dict()["state"]
        ya = trace.apply(u, method=method)
        torch.testing.assert_close(trace.state, before, rtol=0, atol=0)  # apply leaves state alone
        torch.testing.assert_close(ya, _run(trace, u), rtol=0, atol=1e-10, msg=repr(trace))
    ref = _run(CascadeTrace(6, 9, shape, normalize="peak", dtype=F64), u)
    torch.testing.assert_close(cascade_filter(u, 6, 9, "peak", method=method), ref, rtol=0, atol=1e-10)
    # time on another axis
    ut = u.movedim(0, 2)
    torch.testing.assert_close(cascade_filter(ut, 6, 9, "peak", dim=2, method=method), ref.movedim(0, 2), rtol=0, atol=1e-10)


def test_apply_kernel_fft_toeplitz_agree_and_short_kernel():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(400, 7, generator=gen, dtype=F64)
    h = torch.randn(30, generator=gen, dtype=F64)
    a = apply_kernel(u, h, method="fft")
    b = apply_kernel(u, h, method="toeplitz")
    ref = signal.lfilter(h.numpy(), [1.0], u.numpy(), axis=0)
    np.testing.assert_allclose(a.numpy(), ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(b.numpy(), ref, atol=1e-10, rtol=0)
    assert apply_kernel(u.float(), h, method="fft").dtype == torch.float32


def test_perfect_trace_is_exact_delay():
    u = torch.randn(40, 3, 2)
    for delay in (0, 1, 5, 39, 45):
        y = _run(PerfectTrace(delay, (3, 2)), u)
        assert torch.equal(y[delay:], u[: max(40 - delay, 0)])
        assert torch.count_nonzero(y[:delay]) == 0
    new, out = delay_step(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([4.0]))
    assert torch.equal(out, torch.tensor([1.0])) and torch.equal(new, torch.tensor([[2.0, 3.0, 4.0]]))
    assert torch.equal(_run(make_trace("none", (3, 2)), u), u)


def test_ltp_ltd_trace_impulse_peak():
    for delay, ratio in [(4, 2.0), (10, 1.5), (17, 5.0)]:
        trace = LtpLtdTrace(delay, (2,), ratio=ratio, normalize="peak", dtype=F64)
        u = torch.zeros(6 * delay, 2, dtype=F64)
        u[0] = 1.0
        y = _run(trace, u)
        assert int(y[:, 0].argmax()) == delay
        assert math.isclose(float(y[:, 1].max()), 1.0, rel_tol=1e-12)


def test_state_dict_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(3)
    shape = (4, 3)
    u1 = torch.randn((25, *shape), generator=gen)
    u2 = torch.randn((30, *shape), generator=gen)
    for trace, fresh in zip(_all_traces(shape, torch.float32), _all_traces(shape, torch.float32)):
        _run(trace, u1)
        sd = trace.state_dict()
        assert all(isinstance(v, torch.Tensor) for v in sd.values())
        y_cont = _run(trace, u2)
        fresh.load_state_dict(sd)
        assert torch.equal(_run(fresh, u2), y_cont), repr(trace)
        trace.reset()
        assert torch.count_nonzero(trace.state) == 0


def test_to_and_make_trace():
    trace = CascadeTrace(3, 4, (2, 2)).to(dtype=F64)
    assert trace.state.dtype == F64 and trace.transition.dtype == F64
    assert trace.step(torch.ones(2, 2)).dtype == F64
    assert isinstance(make_trace("cascade", (2,), order=6, delay=4), CascadeTrace)
    assert isinstance(make_trace("exponential", (2,), beta=0.9), ExponentialTrace)
    assert isinstance(make_trace("ltp_ltd", (2,), delay=4, ratio=3.0), LtpLtdTrace)
    assert isinstance(make_trace("perfect", (2,), delay=4), PerfectTrace)
    assert make_trace("cascade", (2,), order=2, delay=4, normalize="none").scale == 1.0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: cascade_kernel(0, 5, 10), ConfigError, "order"),
        (lambda: cascade_kernel(2.5, 5, 10), ConfigError, "order"),
        (lambda: cascade_kernel(3, 0, 10), ConfigError, "delay"),
        (lambda: cascade_kernel(3, -2, 10), ConfigError, "delay"),
        (lambda: cascade_kernel(3, 5, 0), ConfigError, "length"),
        (lambda: cascade_kernel(3, 5, 10, normalize="sum"), ConfigError, "normalize"),
        (lambda: cascade_kernel(3, 5, 1), ConfigError, "too short"),
        (lambda: cascade_kernel(3, 5, 10, beta=0.9), ConfigError, "beta"),
        (lambda: exponential_kernel(None, 10, beta=1.0), ConfigError, "beta"),
        (lambda: perfect_kernel(2.5, 10), ConfigError, "delay"),
        (lambda: ltp_ltd_kernel(5, 10, ratio=1.0), ConfigError, "ratio"),
        (lambda: CascadeTrace(6, 5, (2, 3)).step(torch.zeros(3, 2)), ShapeError, "u: expected shape"),
        (lambda: CascadeTrace(6, 5, (2, 3)).apply(torch.zeros(2, 3)), ShapeError, "sequence"),
        (lambda: PerfectTrace(-1, (2,)), ConfigError, "delay"),
        (lambda: CascadeTrace(2, 5, (2, -1)), ConfigError, "shape"),
        (lambda: make_trace("magic", (2,)), ConfigError, "kind"),
        (lambda: make_trace("cascade", (2,), order=2, delay=3, ratio=2.0), ConfigError, "ratio"),
        (lambda: CascadeTrace(2, 5, (2,)).load_state_dict({"state": torch.zeros(2, 3)}), ShapeError, "state"),
        (lambda: apply_kernel(torch.zeros(5), torch.ones(5), method="slow"), ConfigError, "method"),
        (lambda: apply_kernel(torch.zeros(5), torch.ones(2, 2)), ShapeError, "kernel"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert isinstance(info.value, NeuroprobeError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("order", [1, 2, 6, 10])
def test_cascade_rate_and_transition_come_from_cascade_kernel(order):
    """The step-unit functions delegate to neuroprobe.spec.CascadeKernel (the one definition of the
    cascade's rate and transition): the same numbers, bit for bit, with the delay in steps (dt = 1)
    and in seconds."""
    from neuroprobe.spec import CascadeKernel
    from neuroprobe.traces.kernels import decay_rate

    for delay_steps, dt in ((7.5, 1.0), (50.0, 1e-3), (2000.0, 1e-3)):
        k = CascadeKernel(order, delay_steps * dt)
        assert decay_rate(order, k.delay / dt) == k.step_rate(dt)
        assert torch.equal(cascade_transition(order, k.delay / dt), torch.from_numpy(k.transition(dt)))
    assert CascadeKernel(order, 3.0).rate == ((order - 1) / 3.0 if order > 1 else 1 / 3.0)
