"""Neuron models. Rate populations live in :mod:`neuroprobe.neurons.rate`."""
from .rate import ACTIVATION_GRADS, ACTIVATIONS, LEAKY_SLOPE, READOUTS, rate_layer_step

__all__ = ["ACTIVATIONS", "ACTIVATION_GRADS", "LEAKY_SLOPE", "READOUTS", "rate_layer_step"]
