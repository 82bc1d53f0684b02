"""Probe bundles: directional credit assignment with low-rank probe dictionaries.

Pieces (see docs/concepts.md, "Probe bundles"):

* :class:`ProbeDictionary` — per module, the null probe and K low-rank directions
  ΔW_k = (σ/√r) U_k V_kᵀ (pure, semi-persistent or learned-subspace; keyed and antithetic options);
* :class:`ProbedLinear` — a drop-in ``nn.Linear`` whose ``forward(x, assignment)`` runs B branches,
  each with its own probe, for the cost of one shared product plus a low-rank correction;
* the assignment matrix A (B × M, entries 0..K_m) with :func:`assignment_stats`, and the
  schedulers that emit it (:func:`make_scheduler`);
* routing of branch outcomes into per-module modulatory signals μ (:func:`branch_advantage`,
  :func:`route`, :class:`DelayedRouter`);
* :class:`DirectionalTrace` — K coefficients per window, combined over P windows with decay λ or a
  cascade kernel, written to ``.grad``.
"""
from .assignment import assignment_stats, pairwise_mutual_information
from .dictionary import ProbeDictionary, keyed_generator, lowrank_sum
from .directional import DirectionalTrace, directional_coefficients, history_weights, module_coefficients
from .probed_linear import ProbedLinear
from .routing import (CreditStatistics, DelayedRouter, Delivery, branch_advantage, distance_weights, participation,
                      precision_weights, route, temporal_weights)
from .schedulers import (SCHEDULERS, BlockwiseBundledScheduler, DiversityScheduler, RandomScheduler,
                         RoundRobinScheduler, Scheduler, UncertaintyWeightedScheduler, make_scheduler)

__all__ = [
    "ProbeDictionary", "keyed_generator", "lowrank_sum", "ProbedLinear", "assignment_stats",
    "pairwise_mutual_information", "Scheduler", "RandomScheduler", "RoundRobinScheduler",
    "BlockwiseBundledScheduler", "UncertaintyWeightedScheduler", "DiversityScheduler", "SCHEDULERS",
    "make_scheduler", "branch_advantage", "route", "distance_weights", "temporal_weights", "precision_weights",
    "participation", "CreditStatistics", "DelayedRouter", "Delivery", "DirectionalTrace",
    "directional_coefficients", "module_coefficients", "history_weights",
]
