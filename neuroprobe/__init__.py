"""neuroprobe: networks that learn with cascading eligibility traces, node perturbation and
reward-prediction errors. See README.md."""
from . import io, modulators, monitors, neurons, probes, rules, spec, spiking, traces
from .errors import ConfigError, NeuroprobeError, ShapeError
from .monitors import MonitorSet, SpikeMonitor, StateMonitor
from .network import NetworkSpec, RateNetwork, build_network, network_from_toml
from .rules import CascadeRSTDP, ProbeRule, SpikingNRL
from .spiking import SpikingNetwork, load_spiking_spec

__version__ = "0.1.0"
__all__ = ["traces", "neurons", "modulators", "probes", "rules", "spec", "spiking", "monitors", "io", "RateNetwork",
           "NetworkSpec", "build_network", "network_from_toml", "SpikingNetwork", "load_spiking_spec", "CascadeRSTDP",
           "SpikingNRL", "ProbeRule", "MonitorSet", "SpikeMonitor", "StateMonitor", "NeuroprobeError", "ConfigError",
           "ShapeError"]
