"""CET-delayed credit: a credit signal that arrives D steps late meets a cascading eligibility trace.

At step t the network sees x_t; the local credit of layer l, g_l,t (its pre-activation error,
∂loss/∂h_l, (B, n_out)), is emitted and reaches the layer D_l steps later through
:class:`~neuroprobe.modulators.DelayedBroadcast`. Meanwhile each synapse keeps an eligibility
trace E of its presynaptic activity. When g_l,t−D arrives it is paired with the trace *now*:

    grad W_l = Σ_b g_l,t−D,b ⊗ E_l,t,b          E_l,t = CET[x_l−1]_t  (factorised, "presynaptic")

A trace kernel peaking at D (a cascade of order n with delay D) makes E_t ≈ x_t−D, the activity
that caused the credit. ``trace_on="synapse"`` keeps a per-synapse trace of f'(h_l) ⊗ x_l−1 and pairs it
with ∂loss/∂x_l (the postsynaptic factor stays at the synapse; memory B·n_out·n_in). Trace kinds:
"cascade" (order, normalize), "exponential" (order 1), "perfect" (pure delay line, the upper bound),
"ltp_ltd", "none" (no trace; with D = 0 this is exact backprop).

The rule writes ``param.grad`` (cost convention: an optimizer step descends the loss).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._args import check_batch, check_int
from ..errors import ConfigError
from ..modulators.broadcast import DelayedBroadcast, layer_delays
from ..network import RateNetwork
from ..neurons.rate import ACTIVATION_GRADS
from ..traces import TRACE_KINDS, make_trace

TRACE_ON = ("presynaptic", "synapse")


class CETDelayed:
    """Delayed-credit supervised rule with per-layer eligibility traces.

    Args:
        net: a RateNetwork without model axis; inputs are (B, n_in), B parallel streams.
        batch: B.
        delay: D in steps (credit latency of the last layer).
        delay_mode: "constant" or "retrograde" (delays stack with depth).
        trace: one of TRACE_KINDS; order, normalize, beta: the cascade's parameters. Each layer's
            trace peaks at that layer's own delay D_l.
        trace_on: "presynaptic" (factorised, B·n_in per layer) or "synapse" (B·n_out·n_in).
    """

    def __init__(self, net: RateNetwork, batch: int, delay: int = 0, delay_mode: str = "constant",
                 trace: str = "cascade", order: int = 1, normalize: str | None = "peak", beta: float | None = None,
                 trace_on: str = "presynaptic", diagnostics: bool = True):
        if not isinstance(net, RateNetwork):
            raise ConfigError(f"net = {type(net).__name__}: must be a RateNetwork")
        if net.batch is not None:
            raise ConfigError(f"net.batch = {net.batch}: CETDelayed expects a network without a batch axis of models "
                              "(build it with batch=None; CETDelayed's own batch is the number of input streams)")
        batch = check_batch(batch)
        delay = check_int("delay", delay, ge=0)
        if trace not in TRACE_KINDS:
            raise ConfigError(f"rule.trace = {trace!r}: allowed {list(TRACE_KINDS)}")
        if trace_on not in TRACE_ON:
            raise ConfigError(f"rule.trace_on = {trace_on!r}: allowed {list(TRACE_ON)}")
        self.net, self.batch, self.trace_kind, self.trace_on = net, batch, trace, trace_on
        self.delays = layer_delays(len(net.layers), delay, delay_mode)
        self.broadcast = DelayedBroadcast(self.delays)
        # the bias's presynaptic activity is the constant 1: its credit is the pre-activation error,
        # delayed like the rest (in "synapse" mode that differs from the post-activation credit)
        self.bias_broadcast = DelayedBroadcast(self.delays) if trace_on == "synapse" else None
        dt = {"dtype": net.layers[0].weight.dtype, "device": net.layers[0].weight.device}
        self.traces = []
        self._shapes = [(batch, layer.in_features) if trace_on == "presynaptic"
                        else (batch, layer.out_features, layer.in_features) for layer in net.layers]
        for shape, d in zip(self._shapes, self.delays):
            kind = trace if d > 0 else "none"  # no delay: the credit meets the activity it belongs to
            kw = {"beta": beta} if beta and kind in ("cascade", "exponential") else {}
            self.traces.append(make_trace(kind, shape, order=order, delay=d if kind != "none" else None,
                                          normalize=normalize, **kw, **dt))
        # diagnostic: a perfect delay line of presynaptic activity gives the true delayed gradient
        self.diagnostics = diagnostics
        self._true_x = ([make_trace("perfect", shape, delay=d, **dt) for shape, d in zip(self._shapes, self.delays)]
                        if diagnostics else None)
        self.last_alignment: dict[str, float] = {}

    def step(self, x: Tensor, y: Tensor) -> dict:
        """Present one batch x (B, n_in) with labels y (B,); write param.grad. Returns loss and accuracy."""
        n_in = self.net.layers[0].in_features
        if tuple(x.shape) != (self.batch, n_in):
            raise ConfigError(f"input shape {tuple(x.shape)} != expected (batch={self.batch}, n_in={n_in})")
        net = self.net
        with torch.enable_grad():
            sweep = net.sweep(x.unsqueeze(-2))  # (B, 1, ·)
            logits = sweep.logits.squeeze(-2)
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum") / self.batch
            if self.trace_on == "presynaptic":
                targets = sweep.preacts                          # credit ∂loss/∂h_l
            else:
                targets = sweep.inputs[1:] + [sweep.logits]     # credit ∂loss/∂x_l (post-activation)
            credit = [c.squeeze(-2).detach() for c in torch.autograd.grad(loss, targets)]
        inputs = [i.squeeze(-2).detach() for i in sweep.inputs]
        if self.trace_on == "synapse":
            fps = [ACTIVATION_GRADS[net.activation_of(l)](h.squeeze(-2).detach()) for l, h in enumerate(sweep.preacts)]
            us = [fp.unsqueeze(-1) * x_.unsqueeze(-2) for fp, x_ in zip(fps, inputs)]
            bias_arrived = self.bias_broadcast.push([c * fp for c, fp in zip(credit, fps)])
        else:
            us = inputs
        arrived = self.broadcast.push(credit)
        if self.trace_on == "presynaptic":
            bias_arrived = arrived
        eligibility = [tr.step(u) for tr, u in zip(self.traces, us)]
        exact = [tr.step(u) for tr, u in zip(self._true_x, us)] if self.diagnostics else None
        self.last_alignment = {}
        for l, layer in enumerate(net.layers):
            g = arrived[l]
            if g is None:  # the first D_l steps: nothing has arrived yet
                layer.weight.grad = torch.zeros_like(layer.weight)
                if layer.bias is not None:
                    layer.bias.grad = torch.zeros_like(layer.bias)
                continue
            layer.weight.grad = self._pair(g, eligibility[l])
            if layer.bias is not None:
                layer.bias.grad = bias_arrived[l].sum(0)
            if self.diagnostics:
                true = self._pair(g, exact[l])
                self.last_alignment[net.layer_names[l]] = float(
                    torch.nn.functional.cosine_similarity(layer.weight.grad.flatten(), true.flatten(), dim=0))
        acc = (logits.argmax(-1) == y).float().mean().item()
        return {"loss": float(loss.detach()), "accuracy": acc}

    def _pair(self, g: Tensor, e: Tensor) -> Tensor:
        """Σ_b g_b ⊗ e_b: (B, n_out) with (B, n_in) or (B, n_out, n_in) -> (n_out, n_in)."""
        return g.transpose(0, 1) @ e if e.dim() == 2 else torch.einsum("bo,boi->oi", g, e)

    def state_dict(self) -> dict:
        return {"broadcast": self.broadcast.state_dict(),
                "bias_broadcast": self.bias_broadcast.state_dict() if self.bias_broadcast else None, "traces": [t.state_dict() for t in self.traces],
                "true_x": [t.state_dict() for t in self._true_x] if self._true_x else None}

    def load_state_dict(self, d: dict) -> None:
        self.broadcast.load_state_dict(d["broadcast"])
        if self.bias_broadcast is not None:
            self.bias_broadcast.load_state_dict(d["bias_broadcast"])
        dev = self.net.layers[0].weight.device  # checkpoints load on the CPU; the credit meets the traces here
        for b in (self.broadcast, self.bias_broadcast):
            if b is not None:
                b.buffers = [[t.to(dev) for t in buf] for buf in b.buffers]
        for t, s in zip(self.traces, d["traces"]):
            t.load_state_dict(s)
        if self._true_x and d.get("true_x"):
            for t, s in zip(self._true_x, d["true_x"]):
                t.load_state_dict(s)
