"""Summary statistics over seeds for the sweep report: mean, sample sd, bootstrap interval of the mean.

The interval is scipy's percentile bootstrap (:func:`scipy.stats.bootstrap`, ``method="percentile"``)
with a fixed seeded generator, so the same finals always give the same interval (the report is
reproducible). Two cases scipy does not handle the way a report needs are decided here: one value
has no interval (``None``), and values that are all equal have the degenerate interval ``[v, v]``
(every resample has that mean; asking scipy would only risk a degenerate-data warning).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE", "SeedStats", "bootstrap_ci", "seed_stats"]

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # one fixed seed for every interval: reports are reproducible, independent of point order
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SeedStats:
    """Finals of one grid point over its seeds.

    n: number of finite finals; mean: their mean (NaN when n = 0); sd: sample standard deviation
    (ddof = 1; NaN when n < 2); ci: (low, high) bootstrap interval of the mean, None when n < 2.
    """

    n: int
    mean: float
    sd: float
    ci: tuple[float, float] | None


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE, n_resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (1-D, finite); None for fewer than 2.

    Resamples the values with replacement ``n_resamples`` times with ``np.random.default_rng(seed)``
    and takes the (1 - confidence)/2 and (1 + confidence)/2 percentiles of the resampled means.
    """
    x = np.asarray(values, dtype=float).ravel()
    if len(x) < 2:
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    from scipy.stats import bootstrap  # imported here: scipy is slow to import and only this needs it

    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seed_stats(values: Sequence[float]) -> SeedStats:
    """Mean, sd (ddof = 1) and bootstrap interval of the finite entries of ``values`` (NaNs dropped)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    return SeedStats(n=n, mean=mean, sd=sd, ci=bootstrap_ci(x))
