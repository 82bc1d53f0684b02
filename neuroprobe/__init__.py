"""neuroprobe: networks that learn with cascading eligibility traces, node perturbation and
reward-prediction errors. See README.md."""
from . import modulators, neurons, probes, rules, traces
from .errors import ConfigError, NeuroprobeError, ShapeError
from .network import NetworkSpec, RateNetwork, build_network, network_from_toml

__version__ = "0.1.0"
__all__ = ["traces", "neurons", "modulators", "probes", "rules", "RateNetwork", "NetworkSpec", "build_network",
           "network_from_toml", "NeuroprobeError", "ConfigError", "ShapeError"]
