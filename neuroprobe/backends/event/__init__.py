"""The event-driven CPU engine: spiking networks and cascade plasticity compiled with numba.

The same specs as the torch engine (:class:`~neuroprobe.spiking.SpikingNetwork`), simulated by
compiled loops instead of tensor kernels: a whole chunk of steps runs inside one ``@njit`` call
(no Python per step), B independent trials in parallel (``prange`` over trials; each trial's
arithmetic is sequential, so results do not depend on the number of threads).

* neurons: LIF and CubaLIF with refractory periods, membrane and escape noise, Poisson and given
  input populations; the torch engine's operations in its order, with its constants
  (:mod:`.network` compiles the network into flat arrays), float32 or float64;
* noise: the counter-based hash of :mod:`neuroprobe.neurons.hash_rng` (:mod:`.hashrng` is its numba
  twin), so that with ``SpikingNetwork(..., rng="hash")`` both engines produce identical spikes in
  float64;
* synapses: each projection as CSR by pre; only the synapses of neurons that spiked are touched
  (propagation costs the events, not the connectivity);
* plasticity: cascade R-STDP advanced lazily per synapse between its events (:mod:`.cascade`),
  with the distal-reward protocol's dopamine, all inside the chunk;
* :class:`.sim.EventSimulator` wraps it (float); :mod:`.fixed_sim` the integer (Loihi) variant.

numba is optional: :func:`available` says whether this engine can run here.
"""
from __future__ import annotations

import importlib.util

__all__ = ["available"]


def available() -> bool:
    """True when numba can be imported (the engine's only dependency beyond NumPy and torch)."""
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        import numba  # noqa: F401  (importable, and its NumPy is supported)
    except Exception:  # a broken install (e.g. a NumPy it does not support) counts as absent
        return False
    return True
