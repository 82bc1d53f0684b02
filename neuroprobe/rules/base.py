"""Base class of reward-modulated rules: eligibility accumulation and the δ-gated update.

A rule is used in two calls per step (Gymnasium loop):

    a = rule.act(obs)                 # forward pass(es), sample actions, accumulate eligibility
    ...env.step(a)...
    rule.reinforce(reward, mask)      # at reward times: δ = RPE(reward); param.grad = −δ·e; e ← 0

Learning rules behave like gradients (docs/architecture.md): ``reinforce`` writes the *negated* ascent
direction into ``param.grad`` (cost convention), so ``torch.optim.SGD(lr=η).step()`` performs
W ← W + η δ e. Entries of models outside ``mask`` get a zero gradient and keep their eligibility.

``lr_scale = "n_out"`` multiplies the gradient of every parameter of layer l by that layer's number
of output units n_l (the NRL authors' later training code: W_l ← W_l + η·n_l·δ·e_l); the default
"none" is the papers' W_l ← W_l + η δ e_l. The factor is applied to ``.grad`` itself, so any
optimizer sees it.

Leading axes: the network may hold M models (one per seed, ``batch=M``); obs is then (M, n_in),
actions (M,), reward and mask (M,). Without models obs is (n_in,) and reward a scalar.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from ..modulators.rpe import RewardPredictionError
from ..network import RateNetwork

LR_SCALES = ("none", "n_out")


def layer_lr_scales(net: RateNetwork, mode: str = "none") -> list[float]:
    """Factor per entry of ``net.parameters()`` (weights and biases, in that order): 1.0 for
    ``"none"``; for ``"n_out"`` the number of output units of the parameter's layer (a bias shares
    its layer's factor)."""
    if mode not in LR_SCALES:
        raise ConfigError(f"rule.lr_scale = {mode!r}: allowed {list(LR_SCALES)}")
    out = []
    for layer in net.layers:
        f = float(layer.out_features) if mode == "n_out" else 1.0
        out += [f] if layer.bias is None else [f, f]
    return out


class RewardModulatedRule:
    name = "base"

    def __init__(self, net: RateNetwork, rpe: RewardPredictionError | None = None,
                 generator: torch.Generator | None = None, lr_scale: str = "none"):
        if not isinstance(net, RateNetwork):
            raise ConfigError(f"net = {type(net).__name__}: must be a RateNetwork")
        if rpe is not None and not isinstance(rpe, RewardPredictionError):
            raise ConfigError(f"rpe = {type(rpe).__name__}: must be a RewardPredictionError or None")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator = {type(generator).__name__}: must be a torch.Generator or None")
        self.net = net
        self.lead = tuple(net.layers[0].weight.shape[:-2])
        self.rpe = rpe if rpe is not None else RewardPredictionError(batch=max(1, _numel(self.lead)))
        self.generator = generator
        self.params = [p for p in net.parameters()]
        self.elig = [torch.zeros_like(p) for p in self.params]
        self.lr_scale = lr_scale
        self._scales = layer_lr_scales(net, lr_scale)

    # --- to be provided by subclasses -----------------------------------------------------
    def act(self, obs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------
    def _params_by_layer(self) -> list[tuple[int, bool]]:
        """(layer index, is_bias) for each entry of self.params, in net.parameters() order."""
        out = []
        for l, layer in enumerate(self.net.layers):
            out.append((l, False))
            if layer.bias is not None:
                out.append((l, True))
        return out

    def _accumulate(self, dw: list[Tensor], db: list[Tensor] | None) -> None:
        for e, (l, is_bias) in zip(self.elig, self._params_by_layer()):
            if is_bias:
                if db is not None:
                    e.add_(db[l])
            else:
                e.add_(dw[l])

    def reinforce(self, reward: Tensor | float, mask: Tensor | None = None) -> Tensor:
        """Gate the eligibility by δ = RPE(reward) for models in ``mask``; write param.grad.

        Returns δ (M,) (zeros outside the mask).
        """
        m = _numel(self.lead)
        reward = torch.as_tensor(reward, dtype=torch.float64).reshape(m)
        mask = torch.ones(m, dtype=torch.bool) if mask is None else torch.as_tensor(mask).reshape(m)
        delta = self.rpe(reward, mask)
        for p, e, f in zip(self.params, self.elig, self._scales):
            d = delta.to(dtype=p.dtype, device=p.device).reshape(self.lead + (1,) * (p.dim() - len(self.lead)))
            p.grad = -(d * e) if f == 1.0 else -(d * e) * f
            mk = mask.to(p.device)
            mk = mk.reshape(self.lead + (1,) * (p.dim() - len(self.lead))) if self.lead else mk.reshape(())
            e.masked_fill_(mk, 0.0)
        return delta

    def state_dict(self) -> dict:
        return {"elig": [e.clone() for e in self.elig], "rpe": self.rpe.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        for e, s in zip(self.elig, d["elig"]):
            e.copy_(s)
        self.rpe.load_state_dict(d["rpe"])


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
