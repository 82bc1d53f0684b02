"""Small spiking network files shared by the spiking tests (75 LIF neurons: fast to simulate)."""

SMALL_NET = """
[network]
dt = 1e-3
[[population]]
name = "exc"
size = 60
kind = "lif"
sign = "excitatory"
[population.lif]
tau_mem = 20e-3
tau_syn = 5e-3
noise = "membrane"
noise_std = 0.8
[[population]]
name = "inh"
size = 15
kind = "lif"
sign = "inhibitory"
[population.lif]
tau_mem = 10e-3
noise = "membrane"
noise_std = 0.8
[[projection]]
pre = "exc"
post = "exc"
p = 0.2
weight = 0.1
w_max = 0.4
[[projection]]
pre = "inh"
post = "exc"
p = 0.2
weight = 0.1
"""
