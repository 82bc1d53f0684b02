"""Modulatory signals: reward-prediction error and its delayed, per-layer broadcast."""
from .broadcast import DelayedBroadcast, layer_delays
from .rpe import SCALES, RewardPredictionError

__all__ = ["RewardPredictionError", "SCALES", "DelayedBroadcast", "layer_delays"]
