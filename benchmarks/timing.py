"""Shared benchmark harness: interleaved timing rounds, medians, and table output.

Side-by-side measurement (DESIGN.md): every candidate runs once per round, rounds repeat, and the
median per candidate is reported, so all candidates see the same machine load.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_block(fn: Callable[[], object], inner: int, device: torch.device | None = None) -> float:
    """Seconds per call of ``fn``, averaged over ``inner`` back-to-back calls (GPU-synchronised)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / inner


def measure(candidates: dict[str, Callable[[], object]], repeats: int, inner: int,
            device: torch.device | None = None) -> dict[str, float]:
    """Median seconds per call of each candidate over ``repeats`` interleaved rounds (after a warm-up)."""
    for fn in candidates.values():
        time_block(fn, max(inner // 4, 1), device)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(time_block(fn, inner, device))
    return {name: statistics.median(s) for name, s in samples.items()}


def emit(table: str, out: str | None) -> None:
    """Print the markdown table and, if asked, write it to ``out``."""
    print(table, end="")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(table)
