"""Learning rules. Each writes its update, negated, into ``param.grad`` (cost convention), so any
``torch.optim`` optimizer applies it and backprop baselines compare like for like.

Rate networks: :class:`NRL`, :class:`RMHL`, :class:`WeightPerturbation`, :class:`ForwardGradient`,
:class:`Reinforce` (reward-modulated, ``RL_RULES``), :class:`CETDelayed` (delayed supervised credit),
:class:`ProbeRule` (counterfactual probe branches). Spiking networks: :class:`CascadeRSTDP`
(cascade-trace R-STDP), :class:`SpikingNRL` (node perturbation with membrane noise).
"""
from .base import RewardModulatedRule
from .cet import CETDelayed
from .forward_gradient import ForwardGradient, directional_derivative, fg_step
from .estimators import log_prob_of, node_perturbation_increment, noise_norms, sample_actions
from .nrl import NRL, nrl_step
from .probe import ProbeRule
from .reinforce import Reinforce
from .rmhl import RMHL, rmhl_step
from .rstdp import CascadeRSTDP
from .spiking_nrl import SpikingNRL
from .weight_perturbation import WeightPerturbation, wp_step

RL_RULES = {"nrl": NRL, "rmhl": RMHL, "wp": WeightPerturbation, "bp": Reinforce, "fg": ForwardGradient}

__all__ = ["RewardModulatedRule", "NRL", "RMHL", "WeightPerturbation", "ForwardGradient", "Reinforce", "CETDelayed",
           "ProbeRule", "CascadeRSTDP", "SpikingNRL", "RL_RULES", "nrl_step", "rmhl_step", "wp_step", "fg_step",
           "directional_derivative", "log_prob_of", "node_perturbation_increment", "noise_norms", "sample_actions"]
