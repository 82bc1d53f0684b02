"""Checks of public constructor arguments: each raises :class:`~neuroprobe.errors.ConfigError` with
one line naming the argument (``rule.noise_std = nan: must be a finite number > 0``). No torch."""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from .errors import ConfigError

__all__ = ["check_number", "check_int", "check_batch", "MAX_SIZE"]

MAX_SIZE = 1_000_000  # sizes and batch axes: neuroprobe.config.base.MAX_SIZE


def check_number(name: str, value: Any, *, gt: float | None = None, ge: float | None = None,
                 le: float | None = None, finite: bool = True) -> float:
    """``value`` as a float; a real number (not a bool), finite unless ``finite=False`` (then +inf
    passes, NaN never), and within the bounds; else a ConfigError naming ``name``."""
    bounds = " and ".join(s for s in ((f"> {gt:g}" if gt is not None else ""), (f">= {ge:g}" if ge is not None else ""),
                                      (f"<= {le:g}" if le is not None else "")) if s)
    want = ("a finite number" if finite else "a number") + (f" {bounds}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} = {value!r}: must be {want}")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)) or (gt is not None and not v > gt) \
            or (ge is not None and not v >= ge) or (le is not None and not v <= le):
        raise ConfigError(f"{name} = {value!r}: must be {want}")
    return v


def check_int(name: str, value: Any, *, ge: int = 1, le: int | None = None) -> int:
    """``value`` as an int (an integer, not a bool or float) in ``ge .. le``; else a ConfigError naming ``name``."""
    ok = isinstance(value, Integral) and not isinstance(value, bool) and value >= ge and (le is None or value <= le)
    if not ok:
        rng = f">= {ge}" if le is None else f"in {ge} .. {le}"
        raise ConfigError(f"{name} = {value!r}: must be an integer {rng}")
    return int(value)


def check_batch(value: Any, name: str = "batch", allow_none: bool = False) -> int | None:
    """A batch axis: an integer in 1 .. 1_000_000 (or None where ``allow_none``)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, Integral) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE
    if not ok:
        raise ConfigError(f"{name} = {value!r}: must be an integer in 1 .. {MAX_SIZE}"
                          + (" or None" if allow_none else ""))
    return int(value)
