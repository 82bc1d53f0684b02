"""Shared benchmark harness: interleaved timing rounds, medians, and table output.

Side-by-side measurement: every candidate runs once per round, rounds repeat, and the
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


def add_timing_args(parser, repeats: tuple[int, int], inner: tuple[int, int], threads: int | None) -> None:
    """The options every benchmark shares: --quick, --threads, --repeats, --inner, --out.

    ``repeats``/``inner``: (default, quick default); ``threads``: default (None = torch's own).
    """
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run, noisier numbers)")
    parser.add_argument("--threads", type=int, default=threads,
                        help=f"torch.set_num_threads (default: {threads if threads else 'torch' + chr(39) + 's'})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timing rounds (default {repeats[0]}, quick {repeats[1]})")
    parser.add_argument("--inner", type=int, default=None,
                        help=f"calls per timing block (default {inner[0]}, quick {inner[1]})")
    parser.add_argument("--out", default=None, help="also write the markdown table to this path")
    parser.set_defaults(_timing_defaults=(repeats, inner))


def apply_timing_args(args) -> None:
    """Fill --repeats/--inner from the quick or full defaults and set the thread count."""
    repeats, inner = args._timing_defaults
    args.repeats = args.repeats or (repeats[1] if args.quick else repeats[0])
    args.inner = args.inner or (inner[1] if args.quick else inner[0])
    if args.threads:
        torch.set_num_threads(args.threads)
