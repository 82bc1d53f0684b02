"""Spiking networks: populations, sparse projections, the torch-engine network."""
from .network import NetworkState, Projection, SpikingNetwork
from .projection import PROPAGATION_METHODS, csr_rowptr, propagate, random_connectivity
from .spec import PopulationSpec, ProjectionSpec, SpikingSpec, load_spiking_spec, spec_from_dict

__all__ = ["SpikingNetwork", "Projection", "NetworkState", "PopulationSpec", "ProjectionSpec", "SpikingSpec",
           "load_spiking_spec", "spec_from_dict", "propagate", "random_connectivity", "csr_rowptr",
           "PROPAGATION_METHODS"]
