"""Eligibility traces: cascading (CET), exponential, LTP/LTD, perfect delay line, identity.

Functional core (pure tensor functions: kernels, ``cascade_step``, ``apply_kernel``) plus thin
stateful classes (``CascadeTrace`` & co., built by name with ``make_trace``).  Time is in steps;
state tensors are ``(*shape, state_size)`` with the batch axis leading.
"""

from neuroprobe.traces.batched import TOEPLITZ_MAX_STEPS, apply_kernel, cascade_filter
from neuroprobe.traces.cascade import (
    TRACE_KINDS,
    CascadeTrace,
    ExponentialTrace,
    IdentityTrace,
    LtpLtdTrace,
    PerfectTrace,
    Trace,
    cascade_step,
    delay_step,
    ltp_ltd_step,
    make_trace,
)
from neuroprobe.traces.kernels import (
    NORMALIZE_CHOICES,
    cascade_kernel,
    cascade_transition,
    check_normalize,
    decay_rate,
    exponential_kernel,
    kernel_area,
    kernel_peak,
    ltp_ltd_kernel,
    ltp_ltd_taus,
    normalization_scale,
    perfect_kernel,
)

__all__ = [
    "TOEPLITZ_MAX_STEPS",
    "apply_kernel",
    "cascade_filter",
    "TRACE_KINDS",
    "Trace",
    "CascadeTrace",
    "ExponentialTrace",
    "IdentityTrace",
    "LtpLtdTrace",
    "PerfectTrace",
    "cascade_step",
    "delay_step",
    "ltp_ltd_step",
    "make_trace",
    "NORMALIZE_CHOICES",
    "cascade_kernel",
    "cascade_transition",
    "check_normalize",
    "decay_rate",
    "exponential_kernel",
    "kernel_area",
    "kernel_peak",
    "ltp_ltd_kernel",
    "ltp_ltd_taus",
    "normalization_scale",
    "perfect_kernel",
]
