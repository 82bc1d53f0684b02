"""CET-delayed credit: a credit signal that arrives D steps late meets a cascading eligibility trace.

At step t the network sees x_t; the local credit of layer l, g_l,t (its pre-activation error,
∂loss/∂h_l, (B, n_out)), is emitted and reaches the layer D_l steps later through
:class:`~neuroprobe.modulators.DelayedBroadcast`. Meanwhile each synapse keeps an eligibility
trace E of its presynaptic activity. When g_l,t−D arrives it is paired with the trace *now*:

    grad W_l = Σ_b g_l,t−D,b ⊗ E_l,t,b          E_l,t = CET[x_l−1]_t  (factorised, "presynaptic")

A trace kernel peaking at D (a cascade of order n with delay D) makes E_t ≈ x_t−D, the activity
that caused the credit. ``trace_on="synapse"`` keeps a per-synapse trace of f'(h_l) ⊗ x_l−1 and pairs it
with ∂loss/∂x_l (the postsynaptic factor stays at the synapse; memory B·n_out·n_in). Both use f' once.
``trace_on="synapse_preact"`` is the CET authors' form: hidden layers trace f'(h_l) ⊗ x_l−1 per
synapse and pair it with the delayed *pre-activation* error ∂loss/∂h_l, which already contains
f'(h_l,t−D), so f' enters twice; the output layer traces x_l−1 alone:

    grad W_l = Σ_b g_l,t−D,b ⊙ CET[f'(h_l) ⊗ x_l−1]_t,b        g = ∂loss/∂h_l  (hidden layers)

``credit_lag="D-1"`` reads the credit of D_l − 1 steps back while the trace kernel still peaks at
D_l (the CET authors' RL code); the default "D" reads the credit of D_l steps back. Biases are never
traced: their gradient is the arriving pre-activation error, in every mode. Trace kinds:
"cascade" (order, normalize), "exponential" (order 1), "perfect" (pure delay line, the upper bound),
"ltp_ltd", "none" (no trace; with D = 0 this is exact backprop).

``salience = s`` is the CET paper's salience gate (its retrograde setting, Section 4.2 and B.2):
only the samples whose loss is among the top fraction s of recent losses pass. Their activity
enters the traces and their credit is emitted; every other sample's trace input and credit are
zero. The threshold is the (1 − s) quantile (linear interpolation, as ``torch.quantile``) of the
per-sample losses of the last ⌈W/B⌉ steps of all B streams, the current step included (W =
``salience_window`` samples, default 1280: the authors take the quantile over their batch of 1280
samples, their time axis). The gated loss is Σ_b m_b ℓ_b / (s·B), the mean over the salient
samples in expectation (the authors average the loss over the kept samples). ``output_credit =
"immediate"`` gives the output layer its credit without delay: with ``delay_mode = "retrograde"``
the delays are 0, D, 2D, … from the output, the paper's retrograde setting.

The rule writes ``param.grad`` (cost convention: an optimizer step descends the loss).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._args import check_batch, check_int, check_number
from ..errors import ConfigError
from ..modulators.broadcast import DelayedBroadcast, layer_delays
from ..network import RateNetwork
from ..neurons.rate import ACTIVATION_GRADS
from ..traces import TRACE_KINDS, make_trace

TRACE_ON = ("presynaptic", "synapse", "synapse_preact")
CREDIT_LAGS = ("D", "D-1")
OUTPUT_CREDITS = ("delayed", "immediate")
SALIENCE_WINDOW = 1280  # samples: the CET authors' batch (their time axis) in the retrograde setting


def trace_shapes(sizes: list[int], batch: int, trace_on: str) -> list[tuple[int, ...]]:
    """Shape of each layer's eligibility trace for layer sizes [n_in, …, n_out]: (B, n_in) factorised,
    (B, n_out, n_in) per synapse ("synapse"; "synapse_preact" except its output layer, which traces
    x alone)."""
    n = len(sizes) - 1
    return [(batch, n_in) if trace_on == "presynaptic" or (trace_on == "synapse_preact" and l == n - 1)
            else (batch, n_out, n_in) for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]


def credit_lags(delays: list[int], credit_lag: str) -> list[int]:
    """Steps back the arriving credit comes from, per layer: D_l ("D") or D_l − 1 ("D-1")."""
    if credit_lag not in CREDIT_LAGS:
        raise ConfigError(f"rule.credit_lag = {credit_lag!r}: allowed {list(CREDIT_LAGS)}")
    if credit_lag == "D":
        return list(delays)
    if min(delays) < 1:
        raise ConfigError(f"rule.credit_lag = 'D-1' needs every layer's delay >= 1 (got {delays}): set rule.delay >= 1")
    return [d - 1 for d in delays]


def cet_layer_delays(n_layers: int, delay: int, delay_mode: str, output_credit: str = "delayed") -> list[int]:
    """Where each layer's trace kernel peaks (input layer first): :func:`layer_delays`, or with
    ``output_credit = "immediate"`` the output layer at 0 and the stack shifted down by D
    (constant: D, …, D, 0; retrograde: (L−1)·D, …, D, 0, the CET paper's Section 4.2)."""
    if output_credit not in OUTPUT_CREDITS:
        raise ConfigError(f"rule.output_credit = {output_credit!r}: allowed {list(OUTPUT_CREDITS)}")
    if output_credit == "delayed":
        return layer_delays(n_layers, delay, delay_mode)
    if delay_mode == "retrograde":
        return layer_delays(n_layers, 0, delay_mode, step=delay)
    return layer_delays(n_layers, delay, delay_mode)[:-1] + [0]


def salience_gate(window: Tensor, losses: Tensor, keep: float) -> Tensor:
    """The salient samples of a step: losses (B,) at or above the (1 − keep) quantile (linear
    interpolation) of ``window`` (the recent losses, these included; any shape). Returns a bool
    mask (B,). keep = 0.0125 passes the top 1.25 % (16 of a window of 1280 distinct losses)."""
    return losses >= torch.quantile(window.flatten(), 1.0 - keep)


class SalienceGate:
    """The stateful part of the salience gate: a ring buffer of the last ``steps`` steps' losses
    (steps, B); ``__call__(losses)`` stores the step's losses and returns :func:`salience_gate`
    over the filled part (the first steps of a run see a shorter window)."""

    def __init__(self, keep: float, batch: int, window: int, dtype: torch.dtype, device: torch.device):
        self.keep = check_number("rule.salience", keep, gt=0, le=1)
        window = check_int("rule.salience_window", window, ge=1)
        self.steps = -(-window // batch)  # whole steps of B losses covering the window
        self.losses = torch.zeros(self.steps, batch, dtype=dtype, device=device)
        self.filled, self.pos = 0, 0

    def __call__(self, losses: Tensor) -> Tensor:
        self.losses[self.pos] = losses
        self.pos = (self.pos + 1) % self.steps
        self.filled = min(self.filled + 1, self.steps)
        return salience_gate(self.losses[: self.filled], losses, self.keep)  # order does not matter

    def state_dict(self) -> dict:
        return {"losses": self.losses.clone(), "filled": self.filled, "pos": self.pos}

    def load_state_dict(self, d: dict) -> None:
        if tuple(d["losses"].shape) != tuple(self.losses.shape):
            raise ConfigError(f"salience state of shape {tuple(d['losses'].shape)} does not fit this run's "
                              f"{tuple(self.losses.shape)} (rule.salience_window / task.batch changed)")
        self.losses = d["losses"].to(device=self.losses.device, dtype=self.losses.dtype).clone()
        self.filled, self.pos = int(d["filled"]), int(d["pos"])


class CETDelayed:
    """Delayed-credit supervised rule with per-layer eligibility traces.

    Args:
        net: a RateNetwork without model axis; inputs are (B, n_in), B parallel streams.
        batch: B.
        delay: D in steps (credit latency of the last layer).
        delay_mode: "constant" or "retrograde" (delays stack with depth).
        trace: one of TRACE_KINDS; order, normalize, beta: the cascade's parameters. Each layer's
            trace peaks at that layer's own delay D_l.
        trace_on: "presynaptic" (factorised, B·n_in per layer), "synapse" (B·n_out·n_in) or
            "synapse_preact" (the authors' form, f' twice; B·n_out·n_in, the output layer B·n_in).
        credit_lag: "D" (the credit of D_l steps back meets the kernel peaking at D_l) or "D-1"
            (the credit of D_l − 1 steps back, the CET authors' RL code; needs D_l >= 1).
        salience: None (off) or s in (0, 1]: only samples whose loss is in the top fraction s of
            the last ``salience_window`` losses (whole steps of B) pass their trace input and credit.
        salience_window: W in samples (None: 1280, the CET authors' batch).
        output_credit: "delayed" (the output layer's credit is delayed like the others) or
            "immediate" (no delay at the output layer; retrograde delays 0, D, 2D, …).
    """

    def __init__(self, net: RateNetwork, batch: int, delay: int = 0, delay_mode: str = "constant",
                 trace: str = "cascade", order: int = 1, normalize: str | None = "peak", beta: float | None = None,
                 trace_on: str = "presynaptic", diagnostics: bool = True, credit_lag: str = "D",
                 salience: float | None = None, salience_window: int | None = None, output_credit: str = "delayed"):
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
        self.delays = cet_layer_delays(len(net.layers), delay, delay_mode, output_credit)  # where each kernel peaks
        self.credit_lag, self.output_credit = credit_lag, output_credit
        self.lags = credit_lags(self.delays, credit_lag)                # how old the arriving credit is
        self.broadcast = DelayedBroadcast(self.lags)
        # the bias's presynaptic activity is the constant 1: its credit is the pre-activation error,
        # delayed like the rest (in "synapse" mode that differs from the post-activation credit)
        self.bias_broadcast = DelayedBroadcast(self.lags) if trace_on == "synapse" else None
        dt = {"dtype": net.layers[0].weight.dtype, "device": net.layers[0].weight.device}
        self.salience = None if salience is None else check_number("rule.salience", salience, gt=0, le=1)
        self.gate = None
        if salience is not None:
            self.gate = SalienceGate(salience, batch, SALIENCE_WINDOW if salience_window is None else salience_window,
                                     **dt)
        self.last_salient = batch  # samples that passed the gate at the last step
        self.traces = []
        sizes = [net.layers[0].in_features] + [layer.out_features for layer in net.layers]
        self._shapes = trace_shapes(sizes, batch, trace_on)
        # the exact gradient pairs the credit with x (pre-activation credit) or f'⊗x (post-activation)
        self._true_shapes = trace_shapes(sizes, batch, "synapse" if trace_on == "synapse" else "presynaptic")
        for shape, d in zip(self._shapes, self.delays):
            kind = trace if d > 0 else "none"  # no delay: the credit meets the activity it belongs to
            kw = {"beta": beta} if beta and kind in ("cascade", "exponential") else {}
            self.traces.append(make_trace(kind, shape, order=order, delay=d if kind != "none" else None,
                                          normalize=normalize, **kw, **dt))
        # diagnostic: a perfect delay line of presynaptic activity, as old as the arriving credit,
        # gives the true delayed gradient
        self.diagnostics = diagnostics
        self._true_x = ([make_trace("perfect", shape, delay=d, **dt) for shape, d in zip(self._true_shapes, self.lags)]
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
            if self.gate is None:
                loss = target = torch.nn.functional.cross_entropy(logits, y, reduction="sum") / self.batch
            else:
                per = torch.nn.functional.cross_entropy(logits, y, reduction="none")  # (B,)
                loss = per.sum() / self.batch  # reported: every sample's loss
                mask = self.gate(per.detach())
                self.last_salient = int(mask.sum())
                # the salient samples only; / (s·B): their mean in expectation, as the authors' mean
                target = (per * mask).sum() / (self.salience * self.batch)
            if self.trace_on != "synapse":
                targets = sweep.preacts                          # credit ∂loss/∂h_l
            else:
                targets = sweep.inputs[1:] + [sweep.logits]     # credit ∂loss/∂x_l (post-activation)
            credit = [c.squeeze(-2).detach() for c in torch.autograd.grad(target, targets)]
        inputs = [i.squeeze(-2).detach() for i in sweep.inputs]
        if self.trace_on == "synapse":
            fps = [ACTIVATION_GRADS[net.activation_of(l)](h.squeeze(-2).detach()) for l, h in enumerate(sweep.preacts)]
            us = [fp.unsqueeze(-1) * x_.unsqueeze(-2) for fp, x_ in zip(fps, inputs)]
            bias_arrived = self.bias_broadcast.push([c * fp for c, fp in zip(credit, fps)])
            true_us = us
        elif self.trace_on == "synapse_preact":
            last = len(net.layers) - 1  # the output layer traces x alone
            us = [x_ if l == last else
                  ACTIVATION_GRADS[net.activation_of(l)](sweep.preacts[l].squeeze(-2).detach()).unsqueeze(-1)
                  * x_.unsqueeze(-2) for l, x_ in enumerate(inputs)]
            true_us = inputs
        else:
            us = true_us = inputs
        if self.gate is not None:  # the salience signal zeros the non-salient samples' trace input
            m = mask.to(us[0].dtype)
            us = [u * m.view(-1, *([1] * (u.dim() - 1))) for u in us]
        arrived = self.broadcast.push(credit)
        if self.trace_on != "synapse":
            bias_arrived = arrived
        eligibility = [tr.step(u) for tr, u in zip(self.traces, us)]
        exact = [tr.step(u) for tr, u in zip(self._true_x, true_us)] if self.diagnostics else None
        self.last_alignment = {}
        for l, layer in enumerate(net.layers):
            g = arrived[l]
            if g is None:  # the first L_l steps (L_l the credit's lag): nothing has arrived yet
                layer.weight.grad = torch.zeros_like(layer.weight)
                if layer.bias is not None:
                    layer.bias.grad = torch.zeros_like(layer.bias)
                continue
            layer.weight.grad = self._pair(g, eligibility[l])
            if layer.bias is not None:
                layer.bias.grad = bias_arrived[l].sum(0)
            # with the gate, a step whose arriving credit belongs to no salient sample updates nothing:
            # its cosine is undefined, so it is left out of the alignment (as the filling steps are)
            if self.diagnostics and (self.gate is None or bool(g.any())):
                true = self._pair(g, exact[l])
                self.last_alignment[net.layer_names[l]] = float(
                    torch.nn.functional.cosine_similarity(layer.weight.grad.flatten(), true.flatten(), dim=0))
        acc = (logits.argmax(-1) == y).float().mean().item()
        return {"loss": float(loss.detach()), "accuracy": acc}

    def _pair(self, g: Tensor, e: Tensor) -> Tensor:
        """Σ_b g_b ⊗ e_b (factorised) or Σ_b g_b ⊙ e_b (per synapse): (B, n_out) with (B, n_in) or
        (B, n_out, n_in) -> (n_out, n_in)."""
        return g.transpose(0, 1) @ e if e.dim() == 2 else torch.einsum("bo,boi->oi", g, e)

    def state_dict(self) -> dict:
        d = {"broadcast": self.broadcast.state_dict(),
             "bias_broadcast": self.bias_broadcast.state_dict() if self.bias_broadcast else None, "traces": [t.state_dict() for t in self.traces],
             "true_x": [t.state_dict() for t in self._true_x] if self._true_x else None}
        if self.gate is not None:  # only with the gate: checkpoints without it keep their keys
            d["salience"] = self.gate.state_dict()
        return d

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
        if self.gate is not None:
            if "salience" not in d:
                raise ConfigError("the checkpoint's CET state has no salience gate, but rule.salience is set")
            self.gate.load_state_dict(d["salience"])
