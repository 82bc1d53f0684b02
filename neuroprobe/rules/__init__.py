"""Learning rules. Each writes its update, negated, into ``param.grad`` (cost convention), so any
``torch.optim`` optimizer applies it and backprop baselines compare like for like."""
from .base import RewardModulatedRule
from .cet import CETDelayed
from .forward_gradient import ForwardGradient, directional_derivative, fg_step
from .estimators import log_prob_of, node_perturbation_increment, noise_norms, sample_actions
from .nrl import NRL, nrl_step
from .reinforce import Reinforce
from .rmhl import RMHL, rmhl_step
from .weight_perturbation import WeightPerturbation, wp_step

RL_RULES = {"nrl": NRL, "rmhl": RMHL, "wp": WeightPerturbation, "bp": Reinforce, "fg": ForwardGradient}

__all__ = ["RewardModulatedRule", "NRL", "RMHL", "WeightPerturbation", "ForwardGradient", "Reinforce", "CETDelayed", "RL_RULES",
           "nrl_step", "rmhl_step", "wp_step", "fg_step", "directional_derivative", "log_prob_of", "node_perturbation_increment", "noise_norms",
           "sample_actions"]
