"""The torch fixed-point backend: Loihi's integer arithmetic, bit for bit as Lava's ``fixed_pt``
models (integer LIF, Dense projections, the integer cascade R-STDP, hash noise and the integer
distal-reward protocol). Nothing outside :mod:`neuroprobe.backends` imports it directly; runs
reach it through the run configuration."""
