"""Rate networks: a stack of rate layers with node noise, batched over models and passes.

Shapes used throughout (DESIGN.md: batch is a first-class axis):

* ``M``  — independent models (one network per seed); present when ``n_models`` is set.
  Weights then have shape (M, n_out, n_in) and every state tensor leads with M.
* ``P``  — parallel passes on the same input: the clean pass and K noisy passes, or N noise
  samples in the alignment diagnostic.

A network is described once (:class:`NetworkSpec`, loadable from TOML in ``models/``) and built
by :func:`build_network`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .neurons.rate import ACTIVATIONS, READOUTS, rate_layer_step


@dataclass
class NetworkSpec:
    """What a rate network is: layer sizes, activation, readout, bias, initialisation."""

    sizes: list[int]
    activation: str = "leaky_relu"
    readout: str = "softmax"
    bias: bool = False
    init: str = "xavier_normal"
    name: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self, where: str = "model") -> "NetworkSpec":
        if not isinstance(self.sizes, list) or len(self.sizes) < 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.sizes
        ):
            raise ConfigError(f"{where}.sizes = {self.sizes!r}: must be a list of >= 2 positive integers, e.g. [4, 64, 2]")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"{where}.activation = {self.activation!r}: allowed {sorted(ACTIVATIONS)}")
        if self.readout not in READOUTS:
            raise ConfigError(f"{where}.readout = {self.readout!r}: allowed {list(READOUTS)}")
        if self.init not in INITS:
            raise ConfigError(f"{where}.init = {self.init!r}: allowed {sorted(INITS)}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"{where}.bias = {self.bias!r}: must be true or false")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


MODEL_KEYS = {"sizes", "activation", "readout", "bias", "init", "name"}


def spec_from_dict(d: dict, where: str = "model") -> NetworkSpec:
    unknown = set(d) - MODEL_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {sorted(MODEL_KEYS)}")
    if "sizes" not in d:
        raise ConfigError(f"{where}: missing key 'sizes' (list of layer sizes, e.g. [4, 64, 2])")
    return NetworkSpec(**d).validate(where)


def spec_from_toml(path: str | Path) -> NetworkSpec:
    """Load a network description from a TOML file (see ``models/``)."""
    from .tomlio import read_toml

    data = read_toml(path, "model file")
    data = data.get("network", data)
    return spec_from_dict(data, where=str(path))


def _xavier_normal(shape: tuple[int, ...], gen: torch.Generator | None, dtype) -> Tensor:
    fan_out, fan_in = shape[-2], shape[-1]
    return torch.randn(shape, generator=gen, dtype=dtype) * math.sqrt(2.0 / (fan_in + fan_out))


def _xavier_uniform(shape, gen, dtype) -> Tensor:
    fan_out, fan_in = shape[-2], shape[-1]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound


def _kaiming_uniform(shape, gen, dtype) -> Tensor:  # nn.Linear's default
    bound = 1.0 / math.sqrt(shape[-1])
    return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound


INITS = {"xavier_normal": _xavier_normal, "xavier_uniform": _xavier_uniform, "kaiming_uniform": _kaiming_uniform}


class NetworkPass(NamedTuple):
    """Everything a local rule needs from one forward sweep (lists are per layer, input first).

    inputs[l]:  presynaptic activity of layer l, (…, P, n_in_l)
    preacts[l]: (noisy) pre-activation h̃ of layer l, (…, P, n_out_l)
    logits:     preacts[-1]
    output:     readout (softmax probabilities or identity), (…, P, n_out)
    """

    inputs: list[Tensor]
    preacts: list[Tensor]
    logits: Tensor
    output: Tensor


class RateLayer(nn.Module):
    """Holds one layer's weight (M?, n_out, n_in) and optional bias (M?, n_out)."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None

    @property
    def in_features(self) -> int:
        return self.weight.shape[-1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[-2]


class RateNetwork(nn.Module):
    """Feed-forward rate network; layers are named ``fc1``, ``fc2``, …

    Args:
        spec: the network description.
        n_models: if given, M independent copies (one per seed) stored as one batched tensor.
        generator: torch.Generator for the initial weights (reproducible runs).
    """

    def __init__(self, spec: NetworkSpec, n_models: int | None = None, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.spec = spec.validate()
        self.n_models = n_models
        lead = (n_models,) if n_models is not None else ()
        layers = []
        for n_in, n_out in zip(spec.sizes[:-1], spec.sizes[1:]):
            w = INITS[spec.init](lead + (n_out, n_in), generator, dtype)
            b = torch.zeros(lead + (n_out,), dtype=dtype) if spec.bias else None
            layers.append(RateLayer(w, b))
        self.layers = nn.ModuleList(layers)

    @property
    def layer_names(self) -> list[str]:
        return [f"fc{i + 1}" for i in range(len(self.layers))]

    @property
    def layer_sizes(self) -> list[int]:
        return list(self.spec.sizes[1:])

    def activation_of(self, l: int) -> str:
        """Activation of layer l: the hidden activation, or identity for the readout layer's pre-softmax."""
        return self.spec.activation if l < len(self.layers) - 1 else "identity"

    def sweep(self, x: Tensor, noise: list[Tensor | None] | None = None,
              weights: list[Tensor] | None = None, biases: list[Tensor | None] | None = None) -> NetworkPass:
        """Run all layers on x (…, P, n_in), adding noise[l] (broadcastable to (…, P, n_out_l)) to each pre-activation.

        ``weights``/``biases`` optionally replace the layer parameters (weight perturbation): same
        shapes plus any extra broadcast axes.
        """
        inputs, preacts = [], []
        for l, layer in enumerate(self.layers):
            inputs.append(x)
            w = layer.weight if weights is None else weights[l]
            b = layer.bias if biases is None else biases[l]
            x, h = rate_layer_step(x, w, b, None if noise is None else noise[l], self.activation_of(l))
            preacts.append(h)
        out = torch.softmax(h, dim=-1) if self.spec.readout == "softmax" else h
        return NetworkPass(inputs, preacts, h, out)

    def forward(self, x: Tensor) -> Tensor:
        """Clean pass; x (…, n_in) -> readout (…, n_out). Works like nn.Sequential for M = None."""
        return self.sweep(x.unsqueeze(-2)).output.squeeze(-2)

    def sample_noise(self, lead: tuple[int, ...], std: float, generator: torch.Generator | None) -> list[Tensor]:
        """Gaussian node noise ξ_l ~ N(0, std²) of shape lead + (n_out_l,) for every layer."""
        p = self.layers[0].weight
        return [torch.randn(lead + (m,), generator=generator, dtype=p.dtype, device=p.device) * std
                for m in self.layer_sizes]


def build_network(spec: NetworkSpec | dict | str | Path, n_models: int | None = None,
                  seed: int | None = None, generator: torch.Generator | None = None) -> RateNetwork:
    """Build a RateNetwork from a spec, a dict, or a TOML path."""
    if isinstance(spec, (str, Path)):
        spec = spec_from_toml(spec)
    elif isinstance(spec, dict):
        spec = spec_from_dict(spec)
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)
    return RateNetwork(spec, n_models=n_models, generator=generator)


network_from_toml = build_network
