"""A :class:`~neuroprobe.spiking.SpikingNetwork` compiled into flat NumPy arrays for the numba kernels.

Neurons are numbered globally (the hash noise's numbering): populations in spec order, all kinds,
each a contiguous segment ``pop_off[P] .. pop_off[P + 1]``. Every float constant is the torch
engine's own value (:func:`neuroprobe.neurons.lif._consts`, Python scalars rounded to the network
dtype as torch rounds them), so the kernels repeat the torch engine's arithmetic operation for
operation.

Projections keep the torch :class:`~neuroprobe.spiking.Projection`'s synapse order (CSR by pre,
sorted by (pre, post)), concatenated: projection j owns synapses ``syn_off[j] ..`` and rows
``row_off[j] ..`` of ``rowptr`` (absolute synapse indices), its accumulation buffer is the block
``out_off[j] .. out_off[j] + n_post`` of one per-trial output vector (the torch engine's merged
output space). Weight slot ``syn_off[j] + s`` is the torch projection's synapse ``s``.

Tables (float arrays in the network dtype ``F``, integer arrays int64 unless stated):

* ``fc (P, NF)`` float constants per population (columns ``FC_*``), ``ic (P, NI)`` integer ones
  (``IC_*``), ``fd (P, ND)`` float64 ones (``FD_*``: the Izhikevich noise amplitude, used in
  float64 as the torch engine does), ``noise_tab (P, 1021)``: the membrane-noise current of byte
  sum s at ``s + 510`` (``dtype(s) · dtype(σ / NOISE_SD_BYTES)``, computed by torch);
* Izhikevich populations keep u in the ``i`` state array (they have no synaptic current);
* ``pois_p (B, N_all)``: Poisson spike probability per trial and neuron, computed by torch on the
  (B, N) tensor the torch engine uses;
* ``pre_ptr / pre_list``: the projections leaving population P (projection order);
  ``in_ptr / in_list``: those entering it (projection order: the order their currents are summed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ConfigError
from ...neurons.inputs import poisson_probability
from ...neurons.izhikevich import _consts as _izh_consts
from ...neurons.lif import _consts
from ...spiking.network import SpikingNetwork

__all__ = ["EventNet", "compile_network", "compile_state", "KIND_LIF", "KIND_POISSON", "KIND_INPUT", "KIND_IZH",
           "DTYPES"]

KIND_LIF, KIND_POISSON, KIND_INPUT, KIND_IZH = 0, 1, 2, 3
_KINDS = {"lif": KIND_LIF, "poisson": KIND_POISSON, "input": KIND_INPUT, "izhikevich": KIND_IZH}
NEURON_KINDS = ("lif", "izhikevich")
NOISE_NONE, NOISE_MEMBRANE, NOISE_ESCAPE, NOISE_UNIFORM = 0, 1, 2, 3
DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

# fc columns (network dtype)
FC_C_MEM, FC_C_SYN, FC_V_LEAK, FC_V_TH, FC_V_RESET, FC_I_EXT, FC_ESC_K, FC_ESC_VTH, FC_DELTA_U, FC_CLAMP, \
    FC_ZERO, FC_ONE = range(12)
# Izhikevich populations (the torch engine's 0-dim constants, neurons/izhikevich.py _consts)
FC_IZ_K2, FC_IZ_K1, FC_IZ_K0, FC_IZ_HALF, FC_IZ_A, FC_IZ_B, FC_IZ_C, FC_IZ_D, FC_IZ_VPEAK = range(12, 21)
NF = 21
# fd columns (float64)
FD_NOISE_AMP = 0
ND = 1
# ic columns
IC_CUBA, IC_VLZ, IC_REFR, IC_RHO_RESET, IC_NOISE, IC_IEXT, IC_INPUT_COL, IC_CUR_COL = range(8)
NI = 8


@dataclass
class EventNet:
    """The compiled network (see the module docstring); ``names``/``sizes``/``kinds`` per population."""

    names: list
    sizes: list
    kinds: list
    dtype: type
    B: int
    n_all: int
    pop_off: np.ndarray
    pop_kind: np.ndarray
    pop_of: np.ndarray  # (N_all,) population of each neuron (int32)
    fc: np.ndarray
    ic: np.ndarray
    fd: np.ndarray
    noise_tab: np.ndarray
    pois_p: np.ndarray
    pre_ptr: np.ndarray
    pre_list: np.ndarray
    in_ptr: np.ndarray
    in_list: np.ndarray
    row_off: np.ndarray
    syn_off: np.ndarray
    out_off: np.ndarray
    n_out: int
    rowptr: np.ndarray
    post: np.ndarray  # (S_tot,) int32 post neuron within its population
    weight: np.ndarray  # (S_tot,) F, signed (the plastic projection's entries are its initial weights)
    proj_names: list
    input_cols: dict  # input population -> first column in the chunk's input array
    n_input_cols: int

    def offset(self, name: str) -> int:
        return int(self.pop_off[self.names.index(name)])

    def projection_index(self, name: str) -> int:
        if name not in self.proj_names:
            raise ConfigError(f"unknown projection {name!r}; have {self.proj_names}")
        return self.proj_names.index(name)


def _item(x: torch.Tensor) -> float:
    return float(x.item())


def compile_network(net: SpikingNetwork, batch: int, dtype: torch.dtype | None = None,
                    currents: tuple = (), plastic: tuple = ()) -> EventNet:
    """Flatten ``net`` for ``batch`` trials in ``dtype`` (default the network's; float32 or float64).

    currents: LIF or Izhikevich populations that receive a given current each step (columns of the
    chunk's current array, in this order). plastic: the names of the plastic projections (their
    per-trial weights live in the simulator; here trial 0's stand in). Non-plastic projections must
    share their weights across trials."""
    dtype = dtype or net.dtype
    if dtype not in DTYPES:
        raise ConfigError(f"event engine dtype = {dtype}: allowed float32, float64")
    F = DTYPES[dtype]
    spec, cpu = net.spec, torch.device("cpu")
    pops = list(spec.populations)
    P = len(pops)
    names = [p.name for p in pops]
    sizes = [p.size for p in pops]
    pop_off = np.zeros(P + 1, dtype=np.int64)
    pop_off[1:] = np.cumsum(sizes)
    n_all = int(pop_off[-1])
    pop_of = np.repeat(np.arange(P, dtype=np.int32), sizes)
    fc = np.zeros((P, NF), dtype=F)
    ic = np.full((P, NI), -1, dtype=np.int64)
    fd = np.zeros((P, ND), dtype=np.float64)
    noise_tab = np.zeros((P, 1021), dtype=F)
    pois_p = np.zeros((batch, n_all), dtype=F)
    input_cols, n_in = {}, 0
    for k, p in enumerate(pops):
        fc[k, FC_ZERO], fc[k, FC_ONE] = 0.0, 1.0
        if p.kind == "input":
            input_cols[p.name], n_in = n_in, n_in + p.size
            ic[k, IC_INPUT_COL] = input_cols[p.name]
        elif p.kind == "poisson":
            rates = torch.full((batch, p.size), p.rate, dtype=dtype)  # the torch engine's (B, N) tensor
            pois_p[:, pop_off[k]:pop_off[k + 1]] = poisson_probability(rates, spec.dt).numpy()
        elif p.kind == "izhikevich":
            iz = p.izhikevich
            c = _izh_consts(iz, dtype, cpu)
            for col, x in ((FC_IZ_K2, c.k2), (FC_IZ_K1, c.k1), (FC_IZ_K0, c.k0), (FC_IZ_HALF, c.half),
                           (FC_IZ_A, c.a), (FC_IZ_B, c.b), (FC_IZ_C, c.c), (FC_IZ_D, c.d), (FC_IZ_VPEAK, c.v_peak)):
                fc[k, col] = _item(x)
            fc[k, FC_I_EXT] = F(p.i_ext)
            ic[k, IC_IEXT] = int(bool(p.i_ext))
            uniform = iz.noise == "uniform" and iz.noise_amp > 0
            ic[k, IC_NOISE] = NOISE_UNIFORM if uniform else NOISE_NONE
            fd[k, FD_NOISE_AMP] = iz.noise_amp
        else:
            lp = p.lif
            c = _consts(lp, dtype, cpu)
            fc[k, FC_C_MEM], fc[k, FC_C_SYN] = _item(c.c_mem), _item(c.c_syn)
            fc[k, FC_V_LEAK], fc[k, FC_V_TH], fc[k, FC_V_RESET] = _item(c.v_leak), _item(c.v_th), _item(c.v_reset)
            fc[k, FC_I_EXT] = F(p.i_ext)  # torch adds the Python scalar rounded to the dtype
            # escape: -expm1(dtype(-dt·rho0) · exp(min((v − dtype(v_th)) / dtype(delta_u), 50)))
            fc[k, FC_ESC_K] = F(-lp.dt * lp.rho0)
            fc[k, FC_ESC_VTH], fc[k, FC_DELTA_U], fc[k, FC_CLAMP] = F(lp.v_th), F(lp.delta_u), F(50.0)
            ic[k, IC_CUBA] = int(lp.tau_syn > 0)
            ic[k, IC_VLZ] = int(c.v_leak_zero)
            ic[k, IC_REFR] = int(c.refractory)
            ic[k, IC_RHO_RESET] = lp.refractory_steps
            membrane = lp.noise == "membrane" and lp.noise_std > 0
            ic[k, IC_NOISE] = NOISE_MEMBRANE if membrane else NOISE_ESCAPE if lp.noise == "escape" else NOISE_NONE
            ic[k, IC_IEXT] = int(bool(p.i_ext))
            noise_tab[k] = (torch.arange(-510, 511, dtype=torch.int64).to(dtype) * c.hash_c).numpy()
    for j, name in enumerate(currents):
        k = names.index(name) if name in names else -1
        if k < 0 or pops[k].kind not in NEURON_KINDS:
            raise ConfigError(f"given current for {name!r}: not a LIF or Izhikevich population; have "
                              f"{[p.name for p in pops if p.kind in NEURON_KINDS]}")
        ic[k, IC_CUR_COL] = sum(sizes[names.index(c)] for c in currents[:j])
    projs = list(net.projections)
    J = len(projs)
    row_off, syn_off, out_off = (np.zeros(J, dtype=np.int64) for _ in range(3))
    rowptrs, posts, weights = [], [], []
    r = s = o = 0
    for j, pr in enumerate(projs):
        row_off[j], syn_off[j], out_off[j] = r, s, o
        rowptrs.append(pr.rowptr.cpu().numpy().astype(np.int64) + s)
        posts.append(pr.post.cpu().numpy().astype(np.int32))
        w = pr.weight.detach().cpu()
        if w.dim() == 2:
            if pr.name not in plastic and not bool((w == w[:1]).all()):
                raise ConfigError(f"projection {pr.name}: per-trial weights that differ are only supported on the "
                                  "plastic projection of the event engine")
            w = w[0]
        weights.append(w.to(dtype).numpy())
        r, s, o = r + pr.n_pre + 1, s + pr.n_synapses, o + pr.n_post
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt)  # noqa: E731
    pre_lists = [[j for j, pr in enumerate(projs) if pr.spec.pre == n] for n in names]
    in_lists = [[j for j, pr in enumerate(projs) if pr.spec.post == n] for n in names]
    ptr = lambda ls: np.concatenate([[0], np.cumsum([len(x) for x in ls])]).astype(np.int64)  # noqa: E731
    return EventNet(
        names=names, sizes=sizes, kinds=[p.kind for p in pops], dtype=F, B=int(batch), n_all=n_all,
        pop_off=pop_off, pop_kind=np.array([_KINDS[p.kind] for p in pops], dtype=np.int64), pop_of=pop_of,
        fc=fc, ic=ic, fd=fd, noise_tab=noise_tab, pois_p=pois_p,
        pre_ptr=ptr(pre_lists), pre_list=np.array(sum(pre_lists, []), dtype=np.int64),
        in_ptr=ptr(in_lists), in_list=np.array(sum(in_lists, []), dtype=np.int64),
        row_off=row_off, syn_off=syn_off, out_off=out_off, n_out=max(o, 1),
        rowptr=cat(rowptrs, np.int64), post=cat(posts, np.int32), weight=cat(weights, F),
        proj_names=[pr.name for pr in projs], input_cols=input_cols, n_input_cols=n_in)


def compile_state(en: EventNet, net: SpikingNetwork, state: dict | None = None) -> dict:
    """The kernels' neuron state for ``en.B`` trials: resting (``state`` None) or taken from a torch
    engine state (``net.init_state`` layout; the spikes of its last step are propagated next).

    Returns ``{"v", "i": (B, N_all) F (u of Izhikevich neurons in "i"), "rho": (B, N_all) int32,
    "spk": (B, N_all) int32 the last step's spiking neurons (global index ascending), "nspk": (B,)
    int64 their number}``."""
    B, N, F = en.B, en.n_all, en.dtype
    v, i = np.zeros((B, N), dtype=F), np.zeros((B, N), dtype=F)
    rho = np.zeros((B, N), dtype=np.int32)
    z = np.zeros((B, N), dtype=bool)
    for k, name in enumerate(en.names):
        sl = slice(int(en.pop_off[k]), int(en.pop_off[k + 1]))
        p = net.pops[name]
        if p.kind == "lif":
            if state is None:
                v[:, sl] = F(p.lif.v_leak)
            else:
                s = state["lif"][name]
                v[:, sl], i[:, sl] = s.v.detach().cpu().numpy(), s.i.detach().cpu().numpy()
                rho[:, sl] = s.rho.detach().cpu().numpy()
        elif p.kind == "izhikevich":
            if state is None:
                v[:, sl], i[:, sl] = F(p.izhikevich.c), F(p.izhikevich.b * p.izhikevich.c)  # izhikevich_init
            else:
                s = state["izhikevich"][name]
                v[:, sl], i[:, sl] = s.v.detach().cpu().numpy(), s.u.detach().cpu().numpy()
        if state is not None:
            z[:, sl] = state["z"][name].detach().cpu().numpy() != 0
    spk = np.zeros((B, N), dtype=np.int32)
    nspk = np.zeros(B, dtype=np.int64)
    for b in range(B):
        idx = np.flatnonzero(z[b])
        spk[b, :idx.size], nspk[b] = idx, idx.size
    return {"v": v, "i": i, "rho": rho, "spk": spk, "nspk": nspk}
