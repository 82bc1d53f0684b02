"""Typed experiment configs (pydantic v2): one model per component, a JSON Schema, one-line errors."""
from .base import StrictModel, validate_or_raise, validation_message
from .experiment import (RESUME_SAFE_KEYS, Experiment, Schedule, apply_overrides, experiment_json_schema,
                         experiment_model, load_experiment, parse_value, validate_experiment)
from .rules import RULE_CONFIGS, RuleConfig, register_rule
from .tasks import TASK_CONFIGS, TaskConfig, register_task_config

__all__ = ["StrictModel", "validate_or_raise", "validation_message", "Experiment", "Schedule", "experiment_model",
           "load_experiment", "validate_experiment", "experiment_json_schema", "apply_overrides", "parse_value",
           "RESUME_SAFE_KEYS", "RuleConfig", "RULE_CONFIGS", "register_rule", "TaskConfig", "TASK_CONFIGS",
           "register_task_config"]
