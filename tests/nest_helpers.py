"""NEST's ``stdp_dopamine_synapse`` driven by given spike trains, and its continuous-time closed
form (for tests/test_event_nest.py; needs NEST only when :func:`nest_dopamine_stdp` is called).

Times are the times *at the synapse* in ms: a presynaptic spike at t, a postsynaptic spike reaching
the synapse at t, a dopamine spike counted by the volume transmitter at t. NEST's synapse treats
its delay d as dendritic (a postsynaptic spike emitted at t − d reaches the synapse at t), so with
every delay d = one resolution step the network is::

    spike_generator (t − d) → parrot_neuron "pre"  (fires at t)
    spike_generator (t − 2d) → parrot_neuron "post" (fires at t − d; seen by the synapse at t)
    spike_generator (t − 2d) → parrot_neuron → volume_transmitter (dopamine spike at t)
    pre ─ stdp_dopamine_synapse (delay d, receptor 1: the post parrot does not repeat it) → post

The weights are read after simulating exactly to ``end``: the volume transmitter's last update of
every synapse (its ``deliver_interval`` of 1 min-delay step) brings them to ``end``.

NEST runs in a child process (``python tests/nest_helpers.py``, arguments as JSON on stdin): its
bundled OpenMP runtime and numba's (the event engine's ``prange``, threading layer "omp") crash
when both are initialised in one process (NEST's ``ResetKernel`` segfaults after a parallel numba
call), and pytest may run the event engine's tests in the same worker before these.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np

__all__ = ["nest_available", "nest_dopamine_stdp", "closed_form_weights", "pair_jumps"]
_REPLY = "@@ "


def nest_available() -> bool:
    """NEST is installed (checked without importing it into this process)."""
    return importlib.util.find_spec("nest") is not None


def _grid(times, resolution: float) -> np.ndarray:
    """Times on NEST's grid (NEST rejects off-grid spike times); sorted, float64."""
    return np.round(np.sort(np.asarray(times, dtype=np.float64)) / resolution) * resolution


def nest_dopamine_stdp(pre: list, post: list, dopamine, end: float, resolution: float, *, w0: float, tau_c: float,
                       tau_n: float, tau_plus: float, tau_minus: float, a_plus: float, a_minus: float,
                       b: float = 0.0, w_min: float = 0.0, w_max: float = 1e6) -> np.ndarray:
    """Weights ``(n_pre, n_post)`` at ``end`` (ms) of all-to-all ``stdp_dopamine_synapse`` from
    ``len(pre)`` parrots to ``len(post)`` parrots; ``pre[i]``, ``post[j]``, ``dopamine``: spike
    times (ms) at the synapse (module docstring), each > 2 resolution steps. Times in ms. Runs
    NEST in a child process."""
    args = {"pre": [np.asarray(p, float).tolist() for p in pre], "post": [np.asarray(q, float).tolist() for q in post],
            "dopamine": np.asarray(dopamine, float).tolist(), "end": end, "resolution": resolution,
            "params": dict(w0=w0, tau_c=tau_c, tau_n=tau_n, tau_plus=tau_plus, tau_minus=tau_minus, a_plus=a_plus,
                           a_minus=a_minus, b=b, w_min=w_min, w_max=w_max)}
    out = subprocess.run([sys.executable, __file__], input=json.dumps(args), capture_output=True, text=True,
                         timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(_REPLY)]
    if out.returncode or not lines:
        raise RuntimeError(f"NEST child failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return np.array(json.loads(lines[-1][len(_REPLY):]), dtype=np.float64)


def _run_nest(pre: list, post: list, dopamine, end: float, resolution: float, *, w0: float, tau_c: float,
              tau_n: float, tau_plus: float, tau_minus: float, a_plus: float, a_minus: float, b: float, w_min: float,
              w_max: float) -> np.ndarray:
    """:func:`nest_dopamine_stdp`'s work, in the child process."""
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    nest.set(resolution=resolution, local_num_threads=1, print_time=False)
    d = resolution
    pre_n = nest.Create("parrot_neuron", len(pre))
    post_n = nest.Create("parrot_neuron", len(post), params={"tau_minus": tau_minus})
    for node, times, shift in [(pre_n[k], t, d) for k, t in enumerate(pre)] + \
                              [(post_n[k], t, 2 * d) for k, t in enumerate(post)]:
        gen = nest.Create("spike_generator", params={"spike_times": _grid(times, d) - shift})
        nest.Connect(gen, node, syn_spec={"delay": d})
    vt = nest.Create("volume_transmitter")
    dopa = nest.Create("parrot_neuron")
    gen = nest.Create("spike_generator", params={"spike_times": _grid(dopamine, d) - 2 * d})
    nest.Connect(gen, dopa, syn_spec={"delay": d})
    nest.Connect(dopa, vt, syn_spec={"delay": d})
    nest.CopyModel("stdp_dopamine_synapse", "test_dopa_synapse",
                   {"volume_transmitter": vt, "tau_c": tau_c, "tau_n": tau_n, "tau_plus": tau_plus, "A_plus": a_plus,
                    "A_minus": a_minus, "b": b, "Wmin": w_min, "Wmax": w_max})
    nest.Connect(pre_n, post_n, "all_to_all",
                 syn_spec={"synapse_model": "test_dopa_synapse", "weight": w0, "delay": d, "receptor_type": 1})
    nest.Simulate(end)
    conns = nest.GetConnections(source=pre_n, synapse_model="test_dopa_synapse")
    src, tgt = np.asarray(conns.source), np.asarray(conns.target)
    W = np.full((len(pre), len(post)), np.nan)
    W[src - pre_n[0].global_id, tgt - post_n[0].global_id] = np.asarray(conns.weight)
    return W


def pair_jumps(pre_t: np.ndarray, post_t: np.ndarray, tau_plus: float, tau_minus: float, a_plus: float,
               a_minus: float) -> list[tuple[float, float]]:
    """Eligibility jumps ``(time, c)`` of one synapse under all-to-all STDP: at a post spike
    ``+A+ Σ_{pre < post} exp(−Δ/τ+)``, at a pre spike ``−A− Σ_{post < pre} exp(−Δ/τ−)`` (spikes at
    the same time do not pair)."""
    jumps = [(float(q), a_plus * float(np.exp(-(q - pre_t[pre_t < q]) / tau_plus).sum())) for q in post_t]
    jumps += [(float(p), -a_minus * float(np.exp(-(p - post_t[post_t < p]) / tau_minus).sum())) for p in pre_t]
    return jumps


def closed_form_weights(pre: list, post: list, dopamine, end: float, *, w0: float, tau_c: float, tau_n: float,
                        tau_plus: float, tau_minus: float, a_plus: float, a_minus: float, b: float = 0.0,
                        absolute: bool = False) -> np.ndarray:
    """``w0 + ∫_0^end c(t) (n(t) − b) dt`` (no bounds) in closed form: c(t) = Σ c_k e^(−(t−t_k)/τ_c)
    from :func:`pair_jumps`, n(t) = Σ_j e^(−(t−t_j)/τ_n)/τ_n. ``absolute``: ``∫ |c_k|·|n − b|``
    summed over the jumps instead (the size of the weight change, for error bounds; b <= 0). Times in ms."""
    dopamine = np.asarray(dopamine, dtype=np.float64)
    rate = 1.0 / tau_c + 1.0 / tau_n
    W = np.zeros((len(pre), len(post)))
    for i, p in enumerate(pre):
        for j, q in enumerate(post):
            total = 0.0
            for tk, ck in pair_jumps(np.asarray(p, float), np.asarray(q, float), tau_plus, tau_minus, a_plus, a_minus):
                a = np.maximum(tk, dopamine)
                ok = a < end
                a = a[ok]
                part = np.exp(-(a - tk) / tau_c - (a - dopamine[ok]) / tau_n) * -np.expm1(-rate * (end - a)) / rate
                ck = abs(ck) if absolute else ck
                total += ck / tau_n * part.sum()
                if b != 0.0 and tk < end:  # the baseline: −b·c_k·τ_c·(1 − e^(−(end − t_k)/τ_c))
                    total += (abs(b) if absolute else -b) * ck * tau_c * -np.expm1(-(end - tk) / tau_c)
            W[i, j] = total if absolute else w0 + total
    return W


if __name__ == "__main__":  # the child process of nest_dopamine_stdp
    a = json.loads(sys.stdin.read())
    W = _run_nest(a["pre"], a["post"], a["dopamine"], a["end"], a["resolution"], **a["params"])
    print(_REPLY + json.dumps(W.tolist()), flush=True)
