"""NIR (Neuromorphic Intermediate Representation) export and import of spiking networks.

:func:`export_nir` writes a :class:`~neuroprobe.spiking.SpikingNetwork` (its actual weights and
connectivity) as a NIR graph (``nir.write``, HDF5) plus a JSON sidecar with what NIR cannot
express; :func:`import_nir` reads a NIR graph (``nir.read``), from neuroprobe, norse or another
tool, back into a :class:`~neuroprobe.spiking.SpikingSpec` and a ``SpikingNetwork``.

Mapping (``n`` = population size; every neuron parameter is an array of shape (n,))::

    neuroprobe                          NIR node (name)
    population kind "input"/"poisson"   Input(shape (n,))                     (pop name)
    population kind "lif", tau_syn > 0  CubaLIF(tau_mem, tau_syn, r=1, v_leak, v_threshold=v_th,
                                                v_reset, w_in=1 | tau_syn/dt) (pop name)
    population kind "lif", tau_syn = 0  LIF(tau=tau_mem, r=1, v_leak, v_threshold=v_th, v_reset)
    projection pre -> post              Linear(weight (n_post, n_pre), signed) ("<pre>-><post>";
                                        a repeated pair gets "#2", "#3", ...)
                                        edges pre -> projection -> post
    i_ext != 0 of a LIF population      its first incoming projection is written as
                                        Affine(weight, bias = i_ext · ones(n))
    every LIF population                Output(shape (n,)) ("<pop>.out"), edge pop -> "<pop>.out"

Discretisation (norse's, see :mod:`neuroprobe.neurons.lif`): the output of a Linear/Affine node
at a step (weights · spikes + bias) is the per-step input ``i_in`` of the post population: a jump
of the synaptic current for CubaLIF (``i' = i + i_in``, norse's ``LIFCell``), the drive of the
membrane for LIF (``v_d = v + dt/tau (v_leak − v + i_in)``, norse's ``LIFBoxCell``). Time
constants: NIR ``tau = time_scaling_factor · tau`` (s); the default 1 gives seconds (NIR's
definition; norse's ``from_nir`` reads ``tau_inv = 1/tau``); norse 1.1.0's ``to_nir`` writes
``dt / tau_inv``, i.e. ``time_scaling_factor = dt``: import such files with
``time_scaling_factor=dt``. ``r = 1``. CubaLIF's ``w_in`` is read in one of two conventions
(``cuba_input``): "jump" (default; norse's ``to_nir``: ``w_in = 1`` means the input jumps the
synaptic current by itself) or "euler" (norse's ``from_nir``, snnTorch: the input is held over one
Euler step of NIR's ``tau_syn dI/dt = −I + w_in·S``, so the jump is ``w_in·dt/tau_syn`` times the
input and ``w_in = tau_syn/dt`` means a jump by the input). LIF is the same in both. A node's ``r``
and ``w_in`` scale are folded into the weights and bias of its incoming projections (exact in
real arithmetic: the neuron equations are linear in the input; no multiplication where the
scale is 1).

Timing: a neuroprobe projection delivers the spikes of the previous step (one dt of synaptic
delay, see :class:`~neuroprobe.spiking.SpikingNetwork`), while a NIR executor such as norse's
passes a Linear's output on within the same step. For a population fed by Input nodes only,
neuroprobe driven by inputs x[0..T) equals the zero-delay model driven by the inputs delayed by
one step (zero input at its step 0): spikes of step t are the same (a constant bias is applied
from step 0 in both). Each further Linear on a path adds one more step. NIR graphs written here
carry no Delay node (norse cannot load one); the sidecar records ``synaptic_delay_steps = 1``.

Sidecar ``<path>.neuroprobe.json`` (``path`` is the NIR file, e.g. ``net.nir`` ->
``net.nir.neuroprobe.json``), a JSON object:

- ``format``: ``"neuroprobe-nir-sidecar"``; ``version``: 2 (int; version 1 is read too).
- ``graph``: file name of the NIR graph it was written with (information only).
- ``dt``: integration step (s); ``engine``: ``"norse"`` | ``"torch"`` | null (the spec's).
- ``time_scaling_factor``: NIR tau = factor · tau in seconds (1.0 by default).
- ``cuba_input``: ``"jump"`` | ``"euler"``, the convention CubaLIF's ``w_in`` was written in.
- ``synaptic_delay_steps``: 1 (every projection delivers the previous step's spikes).
- ``populations``: list in spec order, each ``{"name", "size", "kind"`` ("lif" | "input" |
  "poisson"), ``"sign"`` ("excitatory" | "inhibitory" | "none"), ``"i_ext"`` (constant input per
  step), ``"rate"`` (Hz, poisson), ``"lif"}``; ``lif`` is null for input/poisson populations and
  otherwise ``{"v_reset", "t_ref"`` (s), ``"noise"`` ("none" | "membrane" | "escape"),
  ``"noise_std", "rho0"`` (1/s), ``"delta_u"}`` (v_reset repeats the graph's value and is checked
  against it: a mismatch means the sidecar belongs to another graph).
- ``projections``: list in spec order, each ``{"node"`` (its NIR node name), ``"pre", "post",
  "p", "weight", "weight_std", "fixed_indegree", "autapses", "w_min", "w_max"`` (null = no upper
  bound), ``"zero_weight_synapses"}``: [[pre, post], ...] synapses whose weight is exactly 0 (the
  dense NIR matrix cannot tell them from absent synapses; plasticity can grow them again).
- ``rule``: the plasticity rule spec's ``to_dict()`` (:class:`~neuroprobe.spec.RSTDPSpec`,
  :class:`~neuroprobe.spec.SpikingNRLSpec`; a ``"type"`` tag, e.g. ``{"type": "rstdp",
  "projection": "exc->exc", "kernel": {"type": "cascade_kernel", "order": 6, "delay": 2.0,
  "normalize": "peak"}, "lr": …, "tau_plus": …}``) or null; version-1 sidecars stored the rule's
  config table (``{"name": "rstdp", "order": 6, ...}``), which is read through the same validation.
  ``extra``: any JSON object given to :func:`export_nir`, or null.

Import: populations come from Input / LIF / CubaLIF nodes (Input nodes first, then neurons, each
in order of first appearance in the edge list), projections from Linear / Affine nodes between a
source (Input, LIF, CubaLIF) and a LIF / CubaLIF node (a direct source -> LIF edge is a one-to-one
projection of weight 1; a Linear/Affine feeding an Output directly, a weighted readout without
neurons, is refused), with exactly the graph's nonzero weights (plus the sidecar's zero-weight
synapses), sorted by (pre, post) like neuroprobe's own synapses. Neuron parameters must be
uniform over a node (one value per population). An Affine bias becomes the post population's
i_ext, which neuroprobe adds to the same per-step input as the synaptic input: exact for LIF and
for CubaLIF in the convention above, as long as the bias is uniform over the node (else
ConfigError). With the sidecar: kind, sign, rate, t_ref and noise, the projection statistics and
bounds, the zero-weight synapses, engine, rule and extra come from it, i_ext from the graph's
Affine biases where a population has some (else from the sidecar), everything else from the
graph. Without a sidecar: Input nodes become "input" populations, the Dale sign of a population
is "excitatory" / "inhibitory" when all its outgoing nonzero weights are > 0 / < 0 (else "none",
weights stored signed), i_ext is the sum of the biases of its incoming Affine nodes, t_ref = 0
and no noise, the projection statistics (p, weight, weight_std) describe the imported weights,
w_min = 0, w_max = inf, and a Linear without nonzero weight gives no projection. Every problem is
one :class:`ConfigError` line naming the file and the node.

Parameters of shape (1,) (how several exporters write a scalar) are read as scalars: the
population's size then comes from the other parameters or the weights, as norse reads them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..neurons.lif import LIFParameters
from ..spec.rules import RSTDPSpec, SpikingNRLSpec, rule_from_dict
from ..spiking.network import Projection, SpikingNetwork
from ..spiking.projection import csr_rowptr
from ..spiking.spec import PopulationSpec, ProjectionSpec, SpikingSpec

__all__ = ["export_nir", "import_nir", "NIRImport", "sidecar_path", "SIDECAR_SUFFIX", "SIDECAR_FORMAT",
           "SIDECAR_VERSION", "SUPPORTED_NODES", "CUBA_INPUTS"]

SIDECAR_SUFFIX = ".neuroprobe.json"
SIDECAR_FORMAT = "neuroprobe-nir-sidecar"
SIDECAR_VERSION = 2
SUPPORTED_NODES = ("LIF", "CubaLIF", "Affine", "Linear", "Input", "Output")
CUBA_INPUTS = ("jump", "euler")

_NEURONS = (nir.LIF, nir.CubaLIF)
_SOURCES = (nir.Input, nir.LIF, nir.CubaLIF)
_CONNECTIONS = (nir.Linear, nir.Affine)
_SUPPORTED = (nir.LIF, nir.CubaLIF, nir.Affine, nir.Linear, nir.Input, nir.Output)
# per node type: its neuron parameters, in the order NIR lists them
_PARAMS = {nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"),
           nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")}
_SIDE_LIF = ("v_reset", "t_ref", "noise", "noise_std", "rho0", "delta_u")


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of a NIR file: ``net.nir`` -> ``net.nir.neuroprobe.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ============================================================================================ export

def export_nir(network: SpikingNetwork, path: str | Path, *, rule: RSTDPSpec | SpikingNRLSpec | dict | None = None,
               extra: dict | None = None,
               trial: int | None = None, time_scaling_factor: float = 1.0, cuba_input: str = "jump") -> Path:
    """Write ``network`` as a NIR graph at ``path`` and its sidecar ``<path>.neuroprobe.json``.

    Args:
        network: the network; its current weights and connectivity are written.
        path: the NIR file to write (HDF5, conventionally ``*.nir``).
        rule: the plasticity rule: an :class:`~neuroprobe.spec.RSTDPSpec` or
            :class:`~neuroprobe.spec.SpikingNRLSpec`, or its dict (``to_dict()``'s form or the rule's
            config table, ``{"name": "rstdp", ...}``, validated by
            :func:`~neuroprobe.spec.rule_from_dict`); stored in the sidecar as the spec's dict.
        extra: any JSON-serialisable dict, stored in the sidecar.
        trial: which trial's weights to write when projections hold per-trial weights (B, S)
            (may be left out when B = 1).
        time_scaling_factor: NIR tau = factor · tau (s); 1 = seconds (NIR, norse's ``from_nir``),
            ``dt`` = what norse 1.1.0's ``to_nir`` writes.
        cuba_input: how CubaLIF's ``w_in`` is written: "jump" (``w_in = 1``: a step's input jumps
            the synaptic current; norse's ``to_nir``) or "euler" (``w_in = tau_syn/dt``: the input
            is held over one Euler step of NIR's ODE; norse's ``from_nir``, snnTorch).

    Returns:
        ``Path(path)``.
    """
    if not isinstance(network, SpikingNetwork):
        raise ConfigError(f"export_nir: network must be a SpikingNetwork (got {type(network).__name__})")
    if not (time_scaling_factor > 0 and math.isfinite(time_scaling_factor)):
        raise ConfigError(f"export_nir: time_scaling_factor = {time_scaling_factor!r}: must be a positive number")
    _check_cuba_input(cuba_input, "export_nir")
    izh = [p.name for p in network.spec.populations if p.kind == "izhikevich"]
    if izh:
        raise ConfigError(f"export_nir: Izhikevich populations {izh} have no NIR node (NIR has LIF, CubaLIF, IF, LI)")
    path = Path(path)
    nodes, edges, proj_side = _graph_parts(network, path, trial, time_scaling_factor, cuba_input)
    # type_check=False: NIR's type inference would add Input nodes in front of LIF populations
    # without incoming edges; the shapes are consistent by construction
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    spec = network.spec
    side = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "graph": path.name, "dt": spec.dt,
            "engine": spec.engine, "time_scaling_factor": float(time_scaling_factor), "cuba_input": cuba_input,
            "synaptic_delay_steps": 1,
            "populations": [_population_sidecar(p) for p in spec.populations], "projections": proj_side,
            "rule": None if rule is None else _rule_spec(rule, "export_nir").to_dict(),
            "extra": _json_object(extra, "extra")}
    text = json.dumps(side, indent=1, allow_nan=False)  # serialise before writing anything
    nir.write(path, graph)
    sidecar_path(path).write_text(text + "\n")
    return path


def _graph_parts(network: SpikingNetwork, path: Path, trial: int | None, tsf: float, cuba_input: str
                 ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]], list[dict]]:
    """NIR nodes and edges of the network (populations, then projections in spec order, then
    outputs), and the sidecar entries of the projections."""
    spec = network.spec
    nodes: dict[str, nir.NIRNode] = {p.name: _population_node(p, tsf, cuba_input, spec.dt) for p in spec.populations}
    edges: list[tuple[str, str]] = []
    biased: set[str] = set()
    proj_side = []
    for proj, name in zip(network.projections, _projection_node_names(network)):
        _check_free(name, nodes, path)
        W = _export_weight(proj, trial)  # (n_post, n_pre)
        post = network.pops[proj.spec.post]
        if post.i_ext != 0.0 and post.name not in biased:  # the graph's only way to carry a constant input
            biased.add(post.name)
            nodes[name] = nir.Affine(W, np.full(post.size, post.i_ext, dtype=np.float64))
        else:
            nodes[name] = nir.Linear(W)
        edges += [(proj.spec.pre, name), (name, proj.spec.post)]
        proj_side.append(_projection_sidecar(proj, name, W))
    for pop in spec.populations:
        if pop.kind == "lif":
            out = f"{pop.name}.out"
            _check_free(out, nodes, path)
            nodes[out] = nir.Output(np.array([pop.size]))
            edges.append((pop.name, out))
    return nodes, edges, proj_side


def _check_cuba_input(cuba_input: Any, where: str) -> None:
    if cuba_input not in CUBA_INPUTS:
        raise ConfigError(f"{where}: cuba_input = {cuba_input!r}: allowed {list(CUBA_INPUTS)}")


def _population_node(pop: PopulationSpec, tsf: float, cuba_input: str, dt: float) -> nir.NIRNode:
    """Input for input/poisson populations; CubaLIF or LIF with (n,) float64 parameters (float64
    keeps the spec's values exactly)."""
    n = pop.size
    if pop.kind != "lif":
        return nir.Input(np.array([n]))
    p = pop.lif

    def full(x: float) -> np.ndarray:
        return np.full(n, x, dtype=np.float64)

    if p.tau_syn > 0:
        w_in = 1.0 if cuba_input == "jump" else p.tau_syn / dt  # "euler": dt/tau_syn · w_in = 1 (_input_scale)
        return nir.CubaLIF(tau_syn=full(tsf * p.tau_syn), tau_mem=full(tsf * p.tau_mem), r=full(1.0),
                           v_leak=full(p.v_leak), v_threshold=full(p.v_th), v_reset=full(p.v_reset), w_in=full(w_in))
    return nir.LIF(tau=full(tsf * p.tau_mem), r=full(1.0), v_leak=full(p.v_leak), v_threshold=full(p.v_th),
                   v_reset=full(p.v_reset))


def _projection_node_names(network: SpikingNetwork) -> list[str]:
    """``"<pre>-><post>"``; the k-th repeat of a pair gets ``"#k"`` (NIR names must be unique)."""
    seen: dict[str, int] = {}
    names = []
    for proj in network.projections:
        base = proj.spec.name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def _check_free(name: str, nodes: dict, path: Path) -> None:
    if name in nodes:
        raise ConfigError(f"{path}: NIR node name {name!r} is used twice (a population is named like a projection "
                          "or an output node); rename the population")


def _export_weight(proj: Projection, trial: int | None) -> np.ndarray:
    """The signed dense (n_post, n_pre) matrix of one trial: float32 (float64 for float64 nets)."""
    W = proj.dense()
    if W.dim() == 3:
        B = W.shape[0]
        if trial is None and B != 1:
            raise ConfigError(f"projection {proj.name}: per-trial weights (batch {B}); pass trial=k to export one "
                              "trial's weights")
        k = 0 if trial is None else trial
        if not 0 <= k < B:
            raise ConfigError(f"export_nir: trial = {trial!r}: projection {proj.name} has {B} trials")
        W = W[k]
    return W.to(torch.float64 if W.dtype == torch.float64 else torch.float32).cpu().numpy()


def _projection_sidecar(proj: Projection, node: str, W: np.ndarray) -> dict:
    s = proj.spec
    post, pre = proj.post.cpu().numpy(), proj.pre.cpu().numpy()
    zero = W[post, pre] == 0  # synapses that exist with weight 0 (invisible in the dense matrix)
    return {"node": node, "pre": s.pre, "post": s.post, "p": s.p, "weight": s.weight, "weight_std": s.weight_std,
            "fixed_indegree": s.fixed_indegree, "autapses": s.autapses, "w_min": s.w_min,
            "w_max": None if math.isinf(s.w_max) else s.w_max,
            "zero_weight_synapses": [[int(a), int(b)] for a, b in zip(pre[zero], post[zero])]}


def _population_sidecar(pop: PopulationSpec) -> dict:
    lif = None if pop.lif is None else {k: getattr(pop.lif, k) for k in _SIDE_LIF}
    return {"name": pop.name, "size": pop.size, "kind": pop.kind, "sign": pop.sign, "i_ext": pop.i_ext,
            "rate": pop.rate, "lif": lif}


def _rule_spec(rule: Any, where: Any) -> RSTDPSpec | SpikingNRLSpec:
    """A rule spec from a spec or its dict (validated); ConfigError prefixed with ``where``."""
    if not isinstance(rule, (RSTDPSpec, SpikingNRLSpec, dict)):
        raise ConfigError(f"{where}: rule must be an RSTDPSpec, a SpikingNRLSpec or its dict "
                          f"(got {type(rule).__name__})")
    try:
        return rule_from_dict(rule)
    except ConfigError as e:
        raise ConfigError(f"{where}: {_one_line(e)}") from None


def _json_object(d: dict | None, what: str) -> dict | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ConfigError(f"export_nir: {what} must be a dict (got {type(d).__name__})")
    try:
        return json.loads(json.dumps(d, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"export_nir: {what} must be JSON-serialisable (finite numbers, strings, lists, dicts): "
                          f"{_one_line(e)}") from None


# ============================================================================================ import

@dataclass
class NIRImport:
    """What :func:`import_nir` returns.

    network: the SpikingNetwork (float32, CPU) with the graph's connectivity and weights.
    spec: its SpikingSpec. rule: the sidecar's plasticity rule (:class:`~neuroprobe.spec.RSTDPSpec`
    or :class:`~neuroprobe.spec.SpikingNRLSpec`), or None. outputs:
    populations connected to Output nodes (edge order). extra: the sidecar's ``extra`` or None.
    nodes: NIR node name -> neuroprobe name (population, or projection ``"pre->post"``).
    """

    network: SpikingNetwork
    spec: SpikingSpec
    rule: RSTDPSpec | SpikingNRLSpec | None
    outputs: list[str]
    extra: dict | None = None
    nodes: dict[str, str] = field(default_factory=dict)


@dataclass
class _Conn:
    """One projection found in the graph: NIR node (or direct edge) name, its end populations,
    weight (n_post, n_pre) float64 and bias (n_post,) or None (r and w_in not yet folded in)."""

    name: str
    pre: str
    post: str
    weight: np.ndarray | None  # None: a direct edge (one-to-one, weight 1), built once sizes are known
    bias: np.ndarray | None


@dataclass
class _Graph:
    src: str
    pops: dict[str, Any]  # name -> Input / LIF / CubaLIF node, in population order
    sizes: dict[str, int]
    params: dict[str, dict[str, np.ndarray]]  # neuron nodes: parameter arrays
    conns: list[_Conn]
    outputs: list[str]


def import_nir(path: str | Path | nir.NIRGraph, *, dt: float | None = None, sidecar: bool = True,
               time_scaling_factor: float | None = None, cuba_input: str | None = None) -> NIRImport:
    """Read a NIR graph into a SpikingSpec and a SpikingNetwork.

    Args:
        path: a NIR file, or a ``nir.NIRGraph`` in memory (e.g. from ``norse.torch.to_nir``; no
            sidecar then).
        dt: integration step (s); needed when there is no sidecar (which holds dt); must agree
            with the sidecar's when both are given.
        sidecar: read ``<path>.neuroprobe.json`` when it exists (False: ignore it).
        time_scaling_factor: NIR tau = factor · tau (s); default: the sidecar's, else 1. Graphs
            written by norse 1.1.0's ``to_nir`` need ``time_scaling_factor=dt``.
        cuba_input: how CubaLIF's ``w_in`` is read: "jump" (norse's ``to_nir``: the input of a
            step, times w_in, jumps the synaptic current) or "euler" (snnTorch, norse's
            ``from_nir``: the jump is w_in · dt/tau_syn times the input); default: the sidecar's,
            else "jump".

    Returns:
        :class:`NIRImport` (network, spec, rule, outputs, extra, nodes).
    """
    src, graph, side_file = _read(path)
    side = _read_sidecar(side_file) if sidecar and side_file is not None and side_file.is_file() else None
    g = _parse(graph, src)
    dt, tsf, cuba_input = _settings(src, side, side_file, dt, time_scaling_factor, cuba_input)
    conns = _fold_inputs(g, dt, tsf, cuba_input)
    spec, synapses, node_map = _build_spec(g, conns, side, side_file, dt, tsf)
    # connectivity and weights are replaced below; a private generator keeps the global RNG untouched
    net = SpikingNetwork(spec, generator=torch.Generator().manual_seed(0))
    for proj, (pre, post, w) in zip(net.projections, synapses):
        _set_connectivity(proj, pre, post, w)
    rule = None if side is None or side.get("rule") is None else _rule_spec(side["rule"], side_file)
    return NIRImport(net, spec, rule, g.outputs, None if side is None else side.get("extra"), node_map)


def _settings(src: str, side: dict | None, side_file: Path | None, dt: float | None, tsf: float | None,
              cuba_input: str | None) -> tuple[float, float, str]:
    """dt, time_scaling_factor and cuba_input: the argument, else the sidecar's, else the default
    (dt has none); an argument and the sidecar must agree."""
    if cuba_input is not None:
        _check_cuba_input(cuba_input, "import_nir")
    stored = (None, None, None) if side is None else (float(_req(side, "dt", side_file)),
                                                      float(side.get("time_scaling_factor", 1.0)),
                                                      side.get("cuba_input", "jump"))
    dt = _agree("dt", dt, stored[0], side_file)
    if dt is None:
        raise ConfigError(f"{src}: dt is needed (no sidecar {SIDECAR_SUFFIX} holds it): pass import_nir(..., dt=...)")
    if not (dt > 0 and math.isfinite(dt)):
        raise ConfigError(f"{src}: dt = {dt!r}: must be a positive number of seconds")
    tsf = _agree("time_scaling_factor", tsf, stored[1], side_file)
    tsf = 1.0 if tsf is None else tsf
    if not (tsf > 0 and math.isfinite(tsf)):
        raise ConfigError(f"{src}: time_scaling_factor = {tsf!r}: must be a positive number")
    cuba_input = _agree("cuba_input", cuba_input, stored[2], side_file) or "jump"
    _check_cuba_input(cuba_input, str(side_file))
    return dt, tsf, cuba_input


# ------------------------------------------------------------------------------------ reading

def _read(path: str | Path | nir.NIRGraph) -> tuple[str, nir.NIRGraph, Path | None]:
    """(name for messages, graph, sidecar path or None)."""
    if isinstance(path, nir.NIRGraph):
        return "<NIRGraph>", path, None
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such NIR file")
    try:
        # type_check=False: NIR's type inference rejects valid files (norse 1.1.0 writes its Input
        # with the sample data's batch axis) and adds nodes; the checks below name the node instead
        graph = nir.read(path, type_check=False)
    except Exception as e:  # noqa: BLE001 - any failure: find the node at fault, else name the file
        raise _unreadable(path, e) from None
    if not isinstance(graph, nir.NIRGraph):
        raise ConfigError(f"{path}: holds a single {type(graph).__name__} node, not a NIR graph")
    return str(path), graph, sidecar_path(path)


def _unreadable(path: Path, err: Exception) -> ConfigError:
    """The error for a file nir.read failed on: the node at fault when there is one (nir.read's own
    message does not name it), else the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                return ConfigError(f"{path}: not a NIR file (an HDF5 file without NIR's 'node' group)")
            d = nir.serialization.hdf2dict(f["node"])
    except Exception:  # noqa: BLE001 - not HDF5 at all
        return ConfigError(f"{path}: not a NIR file (cannot be read as HDF5): {_one_line(err)}")
    nodes = d.get("nodes") if isinstance(d, dict) else None
    for name, nd in (nodes if isinstance(nodes, dict) else {}).items():
        kind = nd.get("type") if isinstance(nd, dict) else None
        if kind not in SUPPORTED_NODES:
            return _unsupported(str(path), name, kind)
        try:
            nir.dict2NIRNode(dict(nd))
        except Exception as e:  # noqa: BLE001 - e.g. NIR's assertion on parameter shapes
            return ConfigError(f"{path}: node {name!r} ({kind}): invalid node: {_one_line(e)}")
    return ConfigError(f"{path}: cannot read the NIR graph: {_one_line(err)}")


def _unsupported(src: str, name: str, kind: Any) -> ConfigError:
    return ConfigError(f"{src}: node {name!r} has type {kind}, which neuroprobe cannot import; supported types: "
                       f"{', '.join(SUPPORTED_NODES)}")


def _read_sidecar(path: Path) -> dict:
    try:
        side = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable sidecar: {_one_line(e)}") from None
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT:
        raise ConfigError(f"{path}: not a neuroprobe NIR sidecar (expected \"format\": \"{SIDECAR_FORMAT}\")")
    version = side.get("version")
    if not isinstance(version, int) or not 1 <= version <= SIDECAR_VERSION:
        raise ConfigError(f"{path}: sidecar version {version!r}: this neuroprobe reads versions 1..{SIDECAR_VERSION}")
    return side


def _req(d: dict, key: str, where: Any) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: sidecar entry lacks key {key!r}")
    return d[key]


def _agree(name: str, given: Any, stored: Any, side_file: Path | None) -> Any:
    """The argument, else the sidecar's value; both given must agree."""
    if isinstance(given, (int, float)):
        given = float(given)
    if given is not None and stored is not None and given != stored:
        raise ConfigError(f"{side_file}: {name} = {stored!r} in the sidecar but {name} = {given!r} was passed "
                          "(pass sidecar=False to override the sidecar)")
    return given if given is not None else stored


def _array(x: Any) -> np.ndarray:
    """A node parameter as a numpy array (norse's to_nir leaves torch tensors in the nodes)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ------------------------------------------------------------------------------------ graph analysis

def _parse(graph: nir.NIRGraph, src: str) -> _Graph:
    """Check the graph's structure and shapes; find populations, projections and outputs."""
    nodes, edges = graph.nodes, [(str(a), str(b)) for a, b in graph.edges]
    preds, succs = _adjacency(nodes, edges, src)
    order = list(dict.fromkeys([n for e in edges for n in e] + list(nodes)))  # first appearance in the edges
    pop_names = ([n for n in order if isinstance(nodes[n], nir.Input)]
                 + [n for n in order if isinstance(nodes[n], _NEURONS)])  # inputs first, then neurons
    if not pop_names:
        raise ConfigError(f"{src}: the graph has no Input, LIF or CubaLIF node (no population)")
    sizes, params = {}, {}
    for n in pop_names:
        if isinstance(nodes[n], nir.Input):
            sizes[n] = _input_size(n, nodes[n], src)
        else:
            params[n], size = _neuron_params(n, nodes[n], src)
            if size is not None:
                sizes[n] = size
    conns, outputs = _wiring(nodes, edges, preds, succs, src)
    _infer_sizes(conns, sizes)
    for n in params:  # (1,)-shaped parameters and nothing else giving a size: one neuron
        if n not in sizes and any(a.shape == (1,) for a in params[n].values()):
            sizes[n] = 1
    for n in pop_names:
        if n not in sizes:
            raise ConfigError(f"{src}: node {n!r} ({type(nodes[n]).__name__}): its size cannot be determined (scalar "
                              "parameters and no Linear/Affine node connected to it)")
    for c in conns:
        _check_shape(c, sizes, nodes, src)
    return _Graph(src, {n: nodes[n] for n in pop_names}, sizes, params, conns, outputs)


def _adjacency(nodes: dict, edges: list[tuple[str, str]], src: str
               ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Supported node types, edges between existing nodes, no duplicate edge; (predecessors,
    successors) of every node."""
    for name, node in nodes.items():
        if type(node) not in _SUPPORTED:
            raise _unsupported(src, name, type(node).__name__)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise ConfigError(f"{src}: edge {a!r} -> {b!r} names node {end!r}, which is not in the graph "
                                  f"(nodes: {sorted(nodes)})")
        if b in succs[a]:
            raise ConfigError(f"{src}: edge {a!r} -> {b!r} appears twice")
        preds[b].append(a)
        succs[a].append(b)
    return preds, succs


def _wiring(nodes: dict, edges: list[tuple[str, str]], preds: dict, succs: dict, src: str
            ) -> tuple[list[_Conn], list[str]]:
    """Projections (Linear/Affine nodes and direct source -> neuron edges, in order of first
    appearance) and output populations."""
    conns, outputs, done = [], [], set()
    for a, b in edges:
        na, nb = nodes[a], nodes[b]
        for c in (a, b):
            if isinstance(nodes[c], _CONNECTIONS) and c not in done:
                done.add(c)
                conns.append(_connection(c, nodes, preds[c], succs[c], src))
        if isinstance(na, nir.Output):
            raise ConfigError(f"{src}: Output node {a!r} has an outgoing edge to {b!r}")
        if isinstance(nb, nir.Input):
            raise ConfigError(f"{src}: Input node {b!r} has an incoming edge from {a!r}")
        if isinstance(na, _SOURCES) and isinstance(nb, _NEURONS):
            conns.append(_Conn(f"{a}->{b}", a, b, None, None))  # direct edge: one-to-one, weight 1
        elif isinstance(nb, nir.Output):
            if len(preds[b]) != 1:
                raise ConfigError(f"{src}: Output node {b!r} has {len(preds[b])} incoming edges ({preds[b]}); "
                                  "neuroprobe reads one population per Output")
            if isinstance(na, _SOURCES):
                outputs.append(a)
    return conns, outputs


def _input_size(name: str, node: nir.Input, src: str) -> int:
    """Size of an Input node: shape (n,), or (B, n) whose leading axis is a batch axis (norse
    1.1.0's to_nir writes the sample data's shape)."""
    shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
    if len(shape) in (1, 2) and shape[-1] > 0:
        return shape[-1]
    raise ConfigError(f"{src}: Input node {name!r} has shape {shape}; expected (n,) (or (batch, n))")


def _neuron_params(name: str, node: Any, src: str) -> tuple[dict[str, np.ndarray], int | None]:
    """Parameter arrays of a LIF/CubaLIF node and the size they give: all scalars (size None) or
    one shape (n,). A parameter of shape (1,) is a scalar (several exporters write scalars so)."""
    arrs = {}
    for k in _PARAMS[type(node)]:
        a = _array(getattr(node, k))
        arrs[k] = a if a.dtype.kind == "f" else a.astype(np.float64)  # float32 stays float32: see _time_constant
    shapes = {a.shape for a in arrs.values() if a.ndim > 0 and a.shape != (1,)}  # (1,): a scalar
    if any(a.ndim > 1 for a in arrs.values()) or len(shapes) > 1:
        raise ConfigError(f"{src}: node {name!r} ({type(node).__name__}): parameters have inconsistent shapes "
                          f"{ {k: a.shape for k, a in arrs.items()} }; expected scalars or one shape (n,)")
    for k, a in arrs.items():
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{src}: node {name!r} ({type(node).__name__}): parameter {k} is not finite")
    return arrs, (shapes.pop()[0] if shapes else None)


def _connection(c: str, nodes: dict, ins: list[str], outs: list[str], src: str) -> _Conn:
    """A Linear/Affine node between a source population and a LIF/CubaLIF population."""
    kind = type(nodes[c]).__name__
    where = f"{src}: node {c!r} ({kind})"
    if len(ins) != 1 or not isinstance(nodes[ins[0]], _SOURCES):
        raise ConfigError(f"{where} must have exactly one incoming edge, from an Input, LIF or CubaLIF node "
                          f"(incoming: {ins})")
    if len(outs) == 1 and isinstance(nodes[outs[0]], nir.Output):
        raise ConfigError(f"{where} feeds Output {outs[0]!r} directly: a neuroprobe projection ends in a LIF or "
                          "CubaLIF population (a weighted readout without neurons has no equivalent)")
    if len(outs) != 1 or not isinstance(nodes[outs[0]], _NEURONS):
        raise ConfigError(f"{where} must have exactly one outgoing edge, to a LIF or CubaLIF node (outgoing: {outs})")
    W = _array(nodes[c].weight)
    if W.ndim != 2:
        raise ConfigError(f"{where}: weight has shape {W.shape}; expected a matrix (n_post, n_pre)")
    bias = None
    if isinstance(nodes[c], nir.Affine) and nodes[c].bias is not None:
        b = _array(nodes[c].bias)
        if b.ndim > 1 or b.size not in (1, W.shape[0]):
            raise ConfigError(f"{where}: bias has shape {b.shape}; expected ({W.shape[0]},)")
        bias = np.broadcast_to(b.astype(np.float64).reshape(-1), (W.shape[0],))
    if not (np.all(np.isfinite(W)) and (bias is None or np.all(np.isfinite(bias)))):
        raise ConfigError(f"{where}: weight or bias is not finite")
    return _Conn(c, ins[0], outs[0], W.astype(np.float64), bias)


def _infer_sizes(conns: list[_Conn], sizes: dict[str, int]) -> None:
    """Sizes of neuron nodes with scalar parameters, from the weights (or direct edges) they touch."""
    for _ in range(len(conns) + 1):  # direct edges may pass a size along a chain
        changed = False
        for c in conns:
            if c.weight is not None:
                for pop, n in ((c.post, c.weight.shape[0]), (c.pre, c.weight.shape[1])):
                    if pop not in sizes:
                        sizes[pop], changed = n, True
            else:
                for a, b in ((c.pre, c.post), (c.post, c.pre)):
                    if a in sizes and b not in sizes:
                        sizes[b], changed = sizes[a], True
        if not changed:
            return


def _check_shape(c: _Conn, sizes: dict[str, int], nodes: dict, src: str) -> None:
    n_pre, n_post = sizes[c.pre], sizes[c.post]
    if c.weight is None:
        if n_pre != n_post:
            raise ConfigError(f"{src}: edge {c.pre!r} -> {c.post!r} connects {n_pre} to {n_post} neurons directly "
                              "(one-to-one needs equal sizes)")
        return
    if c.weight.shape != (n_post, n_pre):
        raise ConfigError(f"{src}: node {c.name!r} ({type(nodes[c.name]).__name__}): weight shape "
                          f"{c.weight.shape} does not fit {c.pre!r} ({n_pre} neurons) -> {c.post!r} ({n_post} neurons); "
                          f"expected {(n_post, n_pre)}")


def _input_scale(g: _Graph, name: str, dt: float, tsf: float, cuba_input: str) -> np.ndarray:
    """(n,) factor from a node's input to neuroprobe's i_in: r for LIF; r·w_in ("jump") or
    r·w_in·dt/tau_syn ("euler") for CubaLIF (written w_in / (tau_syn/dt): exactly r when w_in was
    written as tau_syn/dt)."""
    p = g.params[name]
    scale = p["r"].astype(np.float64)
    if "w_in" in p:
        w_in = p["w_in"].astype(np.float64)
        scale = scale * (w_in if cuba_input == "jump" else w_in / (_time_constant(g, name, "tau_syn", tsf) / dt))
    return np.broadcast_to(scale, (g.sizes[name],))


def _fold_inputs(g: _Graph, dt: float, tsf: float, cuba_input: str) -> list[_Conn]:
    """Projections with the post node's input scale (:func:`_input_scale`) folded into weight and
    bias (the neuron equations are linear in the input), direct edges made explicit (diagonal)."""
    out = []
    for c in g.conns:
        n_post = g.sizes[c.post]
        scale = _input_scale(g, c.post, dt, tsf, cuba_input)
        W = np.diag(np.ones(n_post)) if c.weight is None else c.weight
        bias = c.bias
        if not np.all(scale == 1.0):  # multiply only where needed: exact weights otherwise
            W = W * scale[:, None]
            bias = None if bias is None else bias * scale
        out.append(_Conn(c.name, c.pre, c.post, W, bias))
    return out


# ------------------------------------------------------------------------------------ spec

def _uniform(g: _Graph, name: str, key: str) -> float:
    """One value of a neuron parameter (neuroprobe populations share their parameters)."""
    a = g.params[name][key]
    v = float(a.reshape(-1)[0])
    if not np.all(a == a.reshape(-1)[0]):
        raise ConfigError(f"{g.src}: node {name!r} ({type(g.pops[name]).__name__}): parameter {key} varies across "
                          f"neurons ({float(a.min())} .. {float(a.max())}); a neuroprobe population has one value per "
                          "parameter (split the node)")
    return v


def _time_constant(g: _Graph, name: str, key: str, tsf: float) -> float:
    """tau in seconds = NIR tau / time_scaling_factor, > 0. A float32 parameter is turned into
    the rate 1/tau in float32, as norse computes it (``tau_inv = 1 / tau``), and tau = 1/rate:
    neuroprobe's float32 rate ``1/tau`` is then that same float32 number."""
    v = _uniform(g, name, key)
    if not v > 0:
        raise ConfigError(f"{g.src}: node {name!r} ({type(g.pops[name]).__name__}): {key} = {v} must be > 0")
    a = g.params[name][key].reshape(-1)[0]
    if a.dtype == np.float32:
        return 1.0 / float(np.float32(tsf) / a)  # float32 / float32: a float32 rate
    return v / tsf


def _lif_parameters(g: _Graph, name: str, dt: float, tsf: float, side_lif: dict | None) -> LIFParameters:
    node = g.pops[name]
    where = f"{g.src}: node {name!r} ({type(node).__name__})"
    if isinstance(node, nir.CubaLIF):
        tau_mem, tau_syn = _time_constant(g, name, "tau_mem", tsf), _time_constant(g, name, "tau_syn", tsf)
        if not tau_syn > 0:
            raise ConfigError(f"{where}: tau_syn = {tau_syn!r} must be > 0 (use a LIF node for no synaptic current)")
    else:
        tau_mem, tau_syn = _time_constant(g, name, "tau", tsf), 0.0
    short = min(tau_mem, tau_syn) if tau_syn > 0 else tau_mem
    if short < dt:
        hint = ("; graphs written by norse 1.1.0's to_nir store dt·tau: import them with time_scaling_factor=dt"
                if tsf == 1.0 else "")
        raise ConfigError(f"{where}: time constant {short:g} s is shorter than dt = {dt:g} s (unstable Euler step)"
                          f"{hint}")
    v_reset = _uniform(g, name, "v_reset")
    kw = dict(tau_mem=tau_mem, tau_syn=tau_syn, v_th=_uniform(g, name, "v_threshold"), v_reset=v_reset,
              v_leak=_uniform(g, name, "v_leak"), dt=dt)
    if side_lif is not None:
        if float(_req(side_lif, "v_reset", where)) != v_reset:
            raise ConfigError(f"{where}: v_reset = {v_reset} in the graph but {side_lif['v_reset']} in the sidecar "
                              "(does the sidecar belong to this graph? pass sidecar=False to ignore it)")
        kw.update({k: _req(side_lif, k, where) for k in _SIDE_LIF if k != "v_reset"})
    try:
        return LIFParameters.from_dict(kw, where=where)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _synapses(c: _Conn, zero_pairs: list | None, side_file: Path | None) -> tuple[Tensor, Tensor, Tensor]:
    """(pre, post, weight) of a projection: the nonzero weights, plus listed zero-weight synapses;
    sorted by (pre, post) as random_connectivity orders them."""
    mask = c.weight != 0
    n_post, n_pre = mask.shape
    for pair in zero_pairs or ():
        pre, post = (int(x) for x in pair)
        if not (0 <= pre < n_pre and 0 <= post < n_post):
            raise ConfigError(f"{side_file}: projection {c.name!r}: zero-weight synapse {list(pair)} is outside the "
                              f"{n_pre} x {n_post} populations")
        mask[post, pre] = True
    post, pre = np.nonzero(mask)
    order = np.lexsort((post, pre))
    pre, post = pre[order], post[order]
    return (torch.as_tensor(pre, dtype=torch.long), torch.as_tensor(post, dtype=torch.long),
            torch.as_tensor(c.weight[post, pre]))


def _weight_signs(g: _Graph, conns: list[_Conn]) -> dict[str, set[str]]:
    """Per population, the signs among its outgoing nonzero weights: a subset of {"excitatory",
    "inhibitory"} (all > 0: Dale "excitatory"; all < 0: "inhibitory"; mixed or none: "none")."""
    found: dict[str, set[str]] = {n: set() for n in g.pops}
    for c in conns:
        if np.any(c.weight > 0):
            found[c.pre].add("excitatory")
        if np.any(c.weight < 0):
            found[c.pre].add("inhibitory")
    return found


def _i_ext(g: _Graph, conns: list[_Conn], name: str) -> float | None:
    """Sum of the (uniform) biases of the Affine nodes into a population; None if it has none."""
    total = None
    for c in conns:
        if c.post == name and c.bias is not None:
            b = float(c.bias[0])
            if not np.all(c.bias == c.bias[0]):
                raise ConfigError(f"{g.src}: node {c.name!r} (Affine): bias varies across the neurons of {name!r} "
                                  f"({float(c.bias.min())} .. {float(c.bias.max())}); neuroprobe's constant input "
                                  "i_ext is one value per population")
            total = b if total is None else total + b
    return total


def _build_spec(g: _Graph, conns: list[_Conn], side: dict | None, side_file: Path | None, dt: float, tsf: float
                ) -> tuple[SpikingSpec, list[tuple[Tensor, Tensor, Tensor]], dict[str, str]]:
    """The SpikingSpec (sidecar fields where present), each projection's synapses, node names."""
    side_pops, side_projs = _sidecar_entries(g, conns, side, side_file)
    pops = _population_specs(g, conns, side_pops, side_file, dt, tsf)
    projs, synapses, node_map = [], [], {n: n for n in g.pops}
    by_name = {c.name: c for c in conns}
    for cname in (list(side_projs) if side_projs is not None else [c.name for c in conns]):
        c = by_name[cname]
        s = None if side_projs is None else side_projs[cname]
        pre, post, w = _synapses(c, None if s is None else s.get("zero_weight_synapses"), side_file)
        if s is None and pre.numel() == 0:
            continue  # an all-zero matrix: no synapse (a ProjectionSpec needs p > 0)
        projs.append(_projection_spec(g, c, s, pre, post, w, side_file))
        synapses.append((pre, post, w))
        node_map[cname] = projs[-1].name
    try:
        spec = SpikingSpec(tuple(pops), tuple(projs), dt=dt, engine=None if side is None else side.get("engine"))
    except ConfigError as e:
        raise ConfigError(f"{g.src}: {e}") from None
    return spec, synapses, node_map


def _population_specs(g: _Graph, conns: list[_Conn], side_pops: dict | None, side_file: Path | None, dt: float,
                      tsf: float) -> list[PopulationSpec]:
    """One PopulationSpec per population node: the sidecar's order and fields where present."""
    signs = _weight_signs(g, conns)
    pops = []
    for name in (list(side_pops) if side_pops is not None else list(g.pops)):
        s = None if side_pops is None else side_pops[name]
        where = f"{side_file}: population {name!r}"
        kind = "lif" if isinstance(g.pops[name], _NEURONS) else "input" if s is None else _req(s, "kind", where)
        sign = (next(iter(signs[name])) if len(signs[name]) == 1 else "none") if s is None else _req(s, "sign", where)
        if sign != "none" and signs[name] - {sign}:
            raise ConfigError(f"{where} is {sign!r} in the sidecar but its weights in the graph have the other sign "
                              "(pass sidecar=False to ignore the sidecar)")
        i_ext = _i_ext(g, conns, name)
        if i_ext is None:  # no Affine into it: the graph has no constant input for it, the sidecar may
            i_ext = 0.0 if s is None else float(s.get("i_ext", 0.0))
        lif = _lif_parameters(g, name, dt, tsf, None if s is None else s.get("lif") or {}) if kind == "lif" else None
        try:
            pops.append(PopulationSpec(name=name, size=g.sizes[name], kind=kind, lif=lif, sign=sign, i_ext=i_ext,
                                       rate=0.0 if s is None else float(s.get("rate", 0.0))))
        except ConfigError as e:
            raise ConfigError(f"{g.src}: node {name!r}: {e}") from None
    return pops


def _projection_spec(g: _Graph, c: _Conn, s: dict | None, pre: Tensor, post: Tensor, w: Tensor,
                     side_file: Path | None) -> ProjectionSpec:
    if s is not None:
        kw = {k: _req(s, k, f"{side_file}: projection {c.name!r}")
              for k in ("p", "weight", "weight_std", "fixed_indegree", "autapses", "w_min", "w_max")}
        kw["w_max"] = math.inf if kw["w_max"] is None else float(kw["w_max"])
    else:  # statistics of the imported weights (describe them; connectivity comes from the graph)
        mag = w.abs().double()
        n_pre, n_post = g.sizes[c.pre], g.sizes[c.post]
        kw = {"p": pre.numel() / (n_pre * n_post), "weight": float(mag.mean()),
              "weight_std": float(mag.std(unbiased=False)), "fixed_indegree": False,
              "autapses": bool(c.pre == c.post and bool((pre == post).any()))}
    try:
        return ProjectionSpec(pre=c.pre, post=c.post, **kw)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{g.src}: node {c.name!r}: {_one_line(e)}") from None


def _sidecar_entries(g: _Graph, conns: list[_Conn], side: dict | None, side_file: Path | None
                     ) -> tuple[dict | None, dict | None]:
    """The sidecar's populations and projections by name, checked against the graph."""
    if side is None:
        return None, None
    pops = _entries(side, "populations", "name", side_file)
    projs = _entries(side, "projections", "node", side_file)
    if set(pops) != set(g.pops):
        raise ConfigError(f"{side_file}: sidecar populations {sorted(pops)} do not match the graph's {sorted(g.pops)} "
                          "(pass sidecar=False to ignore the sidecar)")
    if set(projs) != {c.name for c in conns}:
        raise ConfigError(f"{side_file}: sidecar projections {sorted(projs)} do not match the graph's "
                          f"{sorted(c.name for c in conns)} (pass sidecar=False to ignore the sidecar)")
    for name, p in pops.items():
        is_neuron = isinstance(g.pops[name], _NEURONS)
        if (p.get("kind") == "lif") != is_neuron or p.get("size") != g.sizes[name]:
            raise ConfigError(f"{side_file}: population {name!r} is kind {p.get('kind')!r} size {p.get('size')} in the "
                              f"sidecar but a {type(g.pops[name]).__name__} node of size {g.sizes[name]} in the graph")
    return pops, projs


def _entries(side: dict, key: str, name: str, side_file: Path | None) -> dict[str, dict]:
    """A sidecar list of objects by their name."""
    items = _req(side, key, side_file)
    if not (isinstance(items, list) and all(isinstance(d, dict) and name in d for d in items)):
        raise ConfigError(f"{side_file}: sidecar {key!r} must be a list of objects with a {name!r}")
    return {d[name]: d for d in items}


def _set_connectivity(proj: Projection, pre: Tensor, post: Tensor, weight: Tensor) -> None:
    """Replace a projection's random synapses by the given ones (sorted by pre, then post), with
    the buffers Projection.__init__ builds (rowptr, by_post, colptr)."""
    proj.pre, proj.post = pre.contiguous(), post.contiguous()  # registered buffers: assignment replaces them
    proj.rowptr = csr_rowptr(proj.pre, proj.n_pre)
    proj.by_post = torch.argsort(proj.post, stable=True)
    proj.colptr = csr_rowptr(proj.post[proj.by_post], proj.n_post)
    proj.weight = nn.Parameter(weight.to(proj.weight.dtype))
