"""Rate neurons: activation functions and the pure layer step used by every rate network.

A rate layer maps presynaptic activity x (…, n_in) to a pre-activation h = x Wᵀ + b (…, n_out),
adds node noise ξ (the stochastic-neuron perturbation of node perturbation), and applies the
activation: x' = f(h + ξ). Weights may carry leading "model" axes (one independent network per
seed): W (…, n_out, n_in) broadcasts against x (…, P, n_in) by ordinary matmul broadcasting.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import ConfigError

LEAKY_SLOPE = 0.1  # the NRL authors' LeakyReLU slope

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "leaky_relu": lambda h: torch.nn.functional.leaky_relu(h, LEAKY_SLOPE),
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda h: h,
}


def _leaky_relu_grad(h: Tensor) -> Tensor:
    return torch.where(h >= 0, torch.ones_like(h), torch.full_like(h, LEAKY_SLOPE))


ACTIVATION_GRADS: dict[str, Callable[[Tensor], Tensor]] = {
    "leaky_relu": _leaky_relu_grad,
    "tanh": lambda h: 1.0 - torch.tanh(h) ** 2,
    "relu": lambda h: (h > 0).to(h.dtype),
    "identity": torch.ones_like,
}

READOUTS = ("softmax", "identity")


def check_activation(name: str, key: str = "activation") -> str:
    """Return `name` if it is a known activation, else raise a one-line ConfigError."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"{key} = {name!r} is not a known activation; allowed: {sorted(ACTIVATIONS)}")
    return name


def rate_layer_step(
    x: Tensor, weight: Tensor, bias: Tensor | None, noise: Tensor | None, activation: str
) -> tuple[Tensor, Tensor]:
    """One rate layer, pure.

    Args:
        x: presynaptic activity (…, P, n_in), P parallel passes (clean and noisy) or samples.
        weight: (…, n_out, n_in); leading axes broadcast against x's leading axes.
        bias: (…, n_out) or None.
        noise: node noise ξ added to the pre-activation, broadcastable to (…, P, n_out), or None.
        activation: name in ACTIVATIONS.

    Returns:
        (output f(h + ξ), pre-activation h + ξ), both (…, P, n_out).
    """
    h = torch.matmul(x, weight.transpose(-1, -2))
    if bias is not None:
        h = h + bias.unsqueeze(-2)
    if noise is not None:
        h = h + noise
    return ACTIVATIONS[activation](h), h
