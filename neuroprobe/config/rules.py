"""Base of rule configs and the registry of rules.

A rule is one module: its config class (deriving from :class:`RuleConfig`, with ``name`` a
``Literal``) decorated with :func:`register_rule`, and the config's :meth:`RuleConfig.build`, which
assembles the run's parts (agent, learner, task, optimizer, reporter) for an experiment. The
experiment model's ``rule`` union is rebuilt from the registry, so a rule registered from any module
(or a test file) is accepted by ``neuroprobe run`` and appears in ``neuroprobe schema``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .base import PosFloat, StrictModel

if TYPE_CHECKING:  # pragma: no cover
    from ..protocols import BuildContext, RunParts

__all__ = ["RuleConfig", "RULE_CONFIGS", "register_rule"]


class RuleConfig(StrictModel):
    """Base of rule configs: ``name`` (the union tag) and the learning rate."""

    families: ClassVar[tuple[str, ...]] = ()
    """Task families the rule applies to ('rl', 'supervised', 'spiking')."""
    lr: PosFloat
    """Learning rate of the optimizer that applies the rule's ``.grad``."""

    def check(self, exp: Any) -> None:
        """Cross-field checks against the whole experiment; raise ValueError with one line naming the keys."""

    def build(self, exp: Any, ctx: "BuildContext") -> "RunParts":  # pragma: no cover - abstract
        raise NotImplementedError(f"rule {getattr(self, 'name', '?')!r} has no build()")


RULE_CONFIGS: dict[str, type[RuleConfig]] = {}


def register_rule(cls: type[RuleConfig]) -> type[RuleConfig]:
    """Class decorator: make ``cls`` (a RuleConfig with ``name: Literal["…"]``) a rule of experiments."""
    from typing import get_args

    from . import experiment

    tags = get_args(cls.model_fields["name"].annotation)
    if not tags:
        raise TypeError(f"{cls.__name__}.name must be a Literal of the rule's name(s)")
    for tag in tags:
        RULE_CONFIGS[tag] = cls
    experiment.invalidate()
    return cls
