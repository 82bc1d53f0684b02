"""Rule 'cet': supervised delayed credit on a label stream (CET paper, "batch index used as time").

S = ``task.batch`` parallel streams each present one input per step; the credit of step t reaches
each layer D_l steps later and meets that layer's eligibility trace
(:class:`~neuroprobe.rules.CETDelayed`). The learner runs the network on the step's inputs with
their labels (the credit needs them), writes ``.grad``, and the optimizer (SGD or Adam) steps every
step (with zero gradients during the first D steps). Every ``task.eval_every`` steps (and at the
last) a row is written: test accuracy on the held-out split, the training loss/accuracy since the
last row, and the cosine between the rule's update and the exact delayed gradient per layer
(``align_<layer>``, mean since the last row).
"""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Optional

import torch
from pydantic import Field

from ..config.base import Finite, StrictInt
from ..config.rules import RuleConfig, register_rule
from ..rate_monitors import rate_monitors
from ..protocols import BuildContext, ModuleAgent, RuleLearner, RunParts, Transition

__all__ = ["CETConfig", "CETAgent", "CETLearner", "build_cet", "held_out_accuracy", "make_stream"]


class CETAgent(ModuleAgent):
    """The network of a CET run; ``act`` hands the step's inputs (on the network's device and dtype)
    to the learner, which runs the network with the labels (its credit needs them)."""

    def __init__(self, net, device: torch.device):
        self.net, self.device = net, device
        self.dtype = net.layers[0].weight.dtype

    def act(self, obs):
        return torch.as_tensor(obs).to(device=self.device, dtype=self.dtype)


class CETLearner(RuleLearner):
    """``rule.step(x, y)`` every step (writes ``.grad``); ``last`` holds the step's loss, accuracy and
    per-layer alignment for the reporter."""

    def __init__(self, rule, device: torch.device):
        self.rule, self.device = rule, device
        self.last: dict | None = None

    def learn(self, tr: Transition) -> bool:
        stats = self.rule.step(tr.action, torch.as_tensor(tr.info["y"]).to(self.device))
        self.last = {"loss": stats["loss"], "accuracy": stats["accuracy"],
                     "alignment": dict(self.rule.last_alignment)}
        return True


def held_out_accuracy(net, x_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Accuracy of the (unperturbed) network on the held-out split."""
    w = net.layers[0].weight
    with torch.no_grad():
        pred = net(x_test.to(device=w.device, dtype=w.dtype)).argmax(-1).cpu()
    return (pred == y_test).float().mean().item()


def make_stream(exp, label_delay: int = 0):
    """The run's training stream (seeded with the run's seed), checked against the network's sizes."""
    from ..errors import ConfigError
    from ..tasks import SupervisedStream

    t = exp.task
    stream = SupervisedStream(t.batch, split="train", seed=exp.seed, label_delay=label_delay, dataset=t.dataset)
    sizes = exp.model_spec.sizes
    if stream.n_features != sizes[0] or stream.n_classes != sizes[-1]:
        raise ConfigError(f"'model.sizes' = {list(sizes)} does not fit dataset {t.dataset!r} "
                          f"({stream.n_features} features, {stream.n_classes} classes)")
    return stream


def build_cet(exp, ctx: BuildContext) -> RunParts:
    from ..network import RateNetwork
    from ..reporters import StreamReporter, stream_summary
    from ..rules import CETDelayed
    from ..tasks.streams import LabelStreamTask

    t, r = exp.task, exp.rule
    net = RateNetwork(exp.model_spec, generator=ctx.generator).to(ctx.device)
    stream = make_stream(exp)
    x_test, y_test = stream.test_set()
    rule = CETDelayed(net, batch=t.batch, delay=r.delay, delay_mode=r.delay_mode, trace=r.trace, order=r.order,
                      normalize=None if r.normalize == "none" else r.normalize, beta=r.beta or None,
                      trace_on=r.trace_on, credit_lag=r.credit_lag, salience=r.salience,
                      salience_window=r.salience_window, output_credit=r.output_credit)
    opt = (torch.optim.Adam if r.optimizer == "adam" else torch.optim.SGD)(net.parameters(), lr=r.lr)
    learner = CETLearner(rule, ctx.device)
    reporter = StreamReporter(t.steps, t.eval_every, stats=lambda: learner.last,
                              evaluate=lambda: held_out_accuracy(net, x_test, y_test), layer_names=net.layer_names)
    return RunParts(agent=CETAgent(net, ctx.device), learner=learner, task=LabelStreamTask(stream, t.steps),
                    reporter=reporter, optimizer=opt, description=f"CET · {r.trace} n={r.order} D={r.delay}",
                    unit="step", hint="lower rule.lr", summary=stream_summary, callbacks=rate_monitors(exp, net))


@register_rule
class CETConfig(RuleConfig):
    """CET-delayed credit: the credit of step t reaches each layer D_l steps later and meets its
    eligibility trace (a cascade of order n peaking at D_l)."""

    families: ClassVar[tuple[str, ...]] = ("supervised",)
    name: Literal["cet"]
    optimizer: Literal["sgd", "adam"] = "sgd"
    """Optimizer applying the rule's ``.grad``."""
    delay: Annotated[StrictInt, Field(ge=0, le=100_000)] = 0
    """D, the credit latency of the last layer (steps)."""
    delay_mode: Literal["constant", "retrograde"] = "constant"
    """Every layer gets D (constant), or the delays stack with depth: D, 2D, 3D, ... from the output."""
    trace: Literal["cascade", "exponential", "perfect", "ltp_ltd", "none"] = "cascade"
    """Eligibility trace kind ("perfect": a pure delay line, the upper bound; "none" with D = 0 is backprop)."""
    order: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    """Order n of the cascade."""
    normalize: Literal["area", "peak", "none"] = "peak"
    """Normalisation of the cascade kernel."""
    beta: Annotated[Finite, Field(ge=0, lt=1)] = 0.0
    """Decay per step of the cascade's stages, in [0, 1) (0 = chosen so the kernel peaks at D)."""
    trace_on: Literal["presynaptic", "synapse", "synapse_preact"] = "presynaptic"
    """Trace of the presynaptic activity x paired with the pre-activation error ∂loss/∂h ("presynaptic",
    factorised), of f'(h)·x per synapse paired with the post-activation error ∂loss/∂x ("synapse",
    memory batch x n_out x n_in): f' once in both. "synapse_preact": the CET authors' form, f'(h)·x per
    synapse (x alone at the output layer) paired with the pre-activation error, so f' enters twice."""
    credit_lag: Literal["D", "D-1"] = "D"
    """Age of the credit that meets the trace kernel peaking at D_l: D_l steps ("D") or D_l − 1 steps
    ("D-1", the CET authors' RL code; needs rule.delay >= 1)."""
    salience: Optional[Annotated[Finite, Field(gt=0, le=1)]] = None
    """The CET paper's salience gate (its retrograde setting): only the samples whose loss is in the top
    fraction ``salience`` of the recent losses (0.0125: the paper's top 1.25 %) pass their trace input
    and credit; unset = off. The threshold is the (1 − salience) quantile of the losses of the last
    ⌈salience_window / task.batch⌉ steps of all streams."""
    salience_window: Optional[Annotated[StrictInt, Field(ge=1, le=10_000_000)]] = None
    """Number of recent per-sample losses (rounded up to whole steps of task.batch) the salience
    threshold is taken over; unset = 1280, the CET authors' batch. Only with rule.salience."""
    output_credit: Literal["delayed", "immediate"] = "delayed"
    """"delayed": the output layer's credit is delayed like the others'. "immediate": the output layer
    gets its credit at once (no trace); with delay_mode = "retrograde" the delays are 0, D, 2D, ... from
    the output, the CET paper's retrograde setting (constant: D for every layer but the output)."""

    def check(self, exp) -> None:
        from ..config.experiment import refuse_over_memory
        from ..rules.cet import cet_layer_delays, trace_shapes

        if self.credit_lag == "D-1" and self.delay < 1:
            raise ValueError(f"'rule.credit_lag' = 'D-1' needs rule.delay >= 1 (got {self.delay})")
        if self.credit_lag == "D-1" and self.output_credit == "immediate":
            raise ValueError("'rule.credit_lag' = 'D-1' needs every layer delayed; rule.output_credit = 'immediate' "
                             "gives the output layer no delay (use credit_lag = 'D')")
        if self.salience_window is not None and self.salience is None:
            raise ValueError(f"'rule.salience_window' = {self.salience_window} needs rule.salience (the gate is off)")
        sizes = exp.model_spec.sizes
        batch = exp.task.batch
        delays = cet_layer_delays(len(sizes) - 1, self.delay, self.delay_mode, self.output_credit)
        per = [math.prod(s[1:]) for s in trace_shapes(list(sizes), 1, self.trace_on)]
        # the trace (order + 1 states), the exact-gradient delay line (D_l + 1) and the credit buffers (D_l)
        n = sum(batch * (p * (self.order + 1 + d + 1) + n_out * d)
                for p, d, n_out in zip(per, delays, sizes[1:]))
        refuse_over_memory(4 * n, f"'rule.delay' = {self.delay} with rule.order = {self.order}, task.batch = {batch} "
                                  f"and rule.trace_on = {self.trace_on!r} would hold about {{}} GiB of traces")

    def build(self, exp, ctx: BuildContext) -> RunParts:
        return build_cet(exp, ctx)
