"""Rate networks: a stack of rate layers with node noise, batched over models and passes.

Shapes used throughout (docs/architecture.md: batch is a first-class axis):

* ``M``  — independent models (one network per seed), the batch axis; present when ``batch`` is set.
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

from ._args import check_batch
from ._rng import randn
from .errors import ConfigError
from .neurons.rate import rate_layer_step


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
        """Check the description (pydantic :class:`~neuroprobe.config.networks.RateNetworkFile`);
        a bad value is one :class:`ConfigError` line naming ``where`` and the key."""
        from .config.networks import RateNetworkFile, validate_file

        validate_file(RateNetworkFile, self.to_dict(), where)
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


MODEL_KEYS = {"sizes", "activation", "readout", "bias", "init", "name"}


def _spec_from_model(m) -> NetworkSpec:
    return NetworkSpec(sizes=list(m.sizes), activation=m.activation, readout=m.readout, bias=m.bias, init=m.init,
                       name=m.name)


def spec_from_dict(d: dict, where: str = "model") -> NetworkSpec:
    """Validate a parsed rate-network table (keys of :data:`MODEL_KEYS`) and build its NetworkSpec;
    a bad value is one :class:`ConfigError` line naming ``where`` and the key."""
    from .config.networks import RateNetworkFile, validate_file

    return _spec_from_model(validate_file(RateNetworkFile, d, where))


def spec_from_toml(path: str | Path) -> NetworkSpec:
    """Load a network description from a TOML file (see ``models/``): a ``[network]`` table, or the
    keys at top level."""
    from .config.networks import RateModelFile, RateNetworkFile, validate_file
    from .tomlio import read_toml

    data = read_toml(path, "model file")
    if "network" in data:
        return _spec_from_model(validate_file(RateModelFile, data, str(path)).network)
    return _spec_from_model(validate_file(RateNetworkFile, data, str(path)))


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
        batch: if given, M independent copies (one per seed) stored as one batched tensor (the
            network's batch axis, ``net.batch``); None = one model without a batch axis.
        generator: torch.Generator for the initial weights (reproducible runs).
    """

    def __init__(self, spec: NetworkSpec, batch: int | None = None, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(spec, NetworkSpec):
            raise ConfigError(f"spec = {type(spec).__name__}: must be a NetworkSpec (build_network also takes a "
                              "dict or a TOML path)")
        self.spec = spec.validate()
        self.batch = check_batch(batch, allow_none=True)
        lead = (batch,) if batch is not None else ()
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
        return [randn(lead + (m,), generator, p.dtype, p.device) * std
                for m in self.layer_sizes]


def build_network(spec: NetworkSpec | dict | str | Path, batch: int | None = None,
                  seed: int | None = None, generator: torch.Generator | None = None) -> RateNetwork:
    """Build a RateNetwork from a spec, a dict, or a TOML path; ``batch`` M models (one per seed)
    or None."""
    if isinstance(spec, (str, Path)):
        spec = spec_from_toml(spec)
    elif isinstance(spec, dict):
        spec = spec_from_dict(spec)
    if generator is None and seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed = {seed!r}: must be an integer >= 0")
        generator = torch.Generator().manual_seed(seed)
    return RateNetwork(spec, batch=batch, generator=generator)


network_from_toml = build_network
