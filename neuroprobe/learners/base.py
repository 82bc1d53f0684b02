"""Base classes of the agent and learner adapters (the protocols are in :mod:`neuroprobe.loop`).

* :class:`ModuleAgent`: an agent over one torch module ``self.net``: its parameters, no
  constraint, its state ``{"net": net.state_dict()}``; subclasses define ``act`` and override what
  differs (a constraint that clamps, state beyond the net's);
* :class:`RuleLearner`: a learner over a rule ``self.rule``: nothing at the end of a step, its
  state the rule's; subclasses define ``learn``;
* :class:`NullLearner`: learns nothing (a frozen network, or one that learns inside the agent).
"""
from __future__ import annotations

from ..loop import Transition

__all__ = ["ModuleAgent", "RuleLearner", "NullLearner"]


class ModuleAgent:
    """Agent protocol over the module ``self.net`` (set by the subclass), except ``act``."""

    def parameters(self):
        return self.net.parameters()

    def named_parameters(self):
        return self.net.named_parameters()

    def constrain(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.net.load_state_dict(s["net"])


class RuleLearner:
    """Learner protocol over the rule ``self.rule`` (set by the subclass), except ``learn``."""

    def end_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, s: dict) -> None:
        self.rule.load_state_dict(s)


class NullLearner:
    """Learns nothing: a frozen network, or one whose learning happens inside the agent (Brian2's
    synapses)."""

    def learn(self, tr: Transition) -> bool:
        return False

    def end_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, s: dict) -> None:
        pass
