"""NEST 3.10 counterpart of the benchmark network of ``benchmarks/bench_event.py``, run in a worker
process that the benchmark drives step chunk by step chunk (so NEST's timings interleave with the
other simulators' although NEST has one global kernel per process).

The model, mapped onto NEST (``iaf_psc_exp``, exact integration) from neuroprobe's CubaLIF (Euler):

* units: our voltage v (threshold 1, reset 0, leak 0) is NEST's V_m in mV (E_L = V_reset = 0,
  V_th = 1); our current i (membrane resistance 1, ``dv/dt = (−v + i)/tau_mem``) is NEST's I_syn in
  pA when ``C_m = tau_m`` numerically (pF, ms): ``dV/dt = −V/tau_m + I/C_m``. A synaptic weight w
  (our jump of i) is w pA (negative for inhibitory synapses, which NEST routes to ``I_syn_in``;
  ``tau_syn_ex = tau_syn_in``). No refractory period (``t_ref = 0``), like the benchmark network.
* synaptic delay: ours delivers the spikes of step t−1 at step t, where they enter v in the same
  step (i' = i + jump, then the Euler step of v with i'); NEST's minimum delay is one resolution
  step and a spike arriving at step t is added to I_syn after V_m's update, so it reaches V_m one
  step later than ours (0.1 ms; a few % of tau_syn).
* integration: NEST propagates V_m and I_syn exactly over a step (``P22``, ``P21``, ``P11``),
  ours with one Euler step (``dt/tau_mem``, ``dt/tau_syn``): at dt = 0.1 ms, tau_mem 20 ms, tau_syn
  5 ms the per-step decay factors differ by O((dt/tau)²) = 2e-4 relative, and the postsynaptic
  potential of one synaptic jump w peaks at 0.1582·w in ours against 0.1575·w exactly (+0.5 %), both
  about 9.2 ms after the jump.
* membrane noise: ours adds σ·ξ (ξ ~ N(0, 1), fresh per neuron and step) to the synaptic current
  i every step, which then decays with tau_syn. NEST: one ``noise_generator`` (a fresh Gaussian
  current per target and step of ``dt = resolution``) into receptor 1 of ``iaf_psc_exp``, which
  filters it through the excitatory synaptic kernel: ``I_syn_ex += (1 − P11ex)·I_1`` per step, so a
  noise current of standard deviation ``σ/(1 − exp(−dt/tau_syn))`` gives the same kick σ·ξ per
  step (one step later, as the synaptic input). Its random numbers are NEST's own.
* order-1 R-STDP on exc→exc: ``stdp_dopamine_synapse`` (all-to-all STDP traces ``Kplus`` with
  ``tau_plus``, the post neuron's ``tau_minus``; eligibility c with ``tau_c = delay``; dopamine
  n with ``tau_n``; ``dw/dt = c·(n − b)``, integrated exactly between events, clipped to
  [Wmin, Wmax] at events). The benchmark's tonic dopamine d (the torch and Brian2 models apply
  ``w ← clip(w + lr·d·e)`` every step) is NEST's baseline with no dopamine spikes: ``b = −d`` and
  ``A± = lr·a±/dt_ms`` so that ``c·(n − b)·dt`` per step equals ``lr·d·e``. Optional dopamine
  spikes (``dopamine_rate`` Hz, Poisson) reach the ``volume_transmitter`` through a parrot
  neuron. ``deliver_interval`` (in min-delay steps) sets how often the volume transmitter brings
  every plastic synapse up to date; the weights do not depend on it (each synapse integrates the
  dopamine history in closed form when a presynaptic spike arrives), its cost does: NEST's default
  of 1 updates all plastic synapses every step.
* trials: B copies of the network in one NEST kernel (same synapses, independent noise), as the
  batched engines run B trials on one structure.

Worker protocol (``python benchmarks/nest_models.py --worker``): one JSON configuration line on
stdin (see :func:`build`), then commands ``run K`` (simulate K steps), ``rate K`` (simulate K steps,
reply the mean firing rate in Hz), ``quit``. Replies are single lines ``@@ {json}`` on stdout (NEST
prints its banner there too).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPLY = "@@ "


def nest_neuron_params(tau_mem: float, tau_syn: float, v_th: float, v_reset: float, tau_minus: float) -> dict:
    """``iaf_psc_exp`` parameters of a CubaLIF population (times in s → ms; C_m = tau_m: pA ≡ our current)."""
    tm = tau_mem * 1e3
    return dict(C_m=tm, tau_m=tm, tau_syn_ex=tau_syn * 1e3, tau_syn_in=tau_syn * 1e3, E_L=0.0, V_reset=float(v_reset),
                V_th=float(v_th), V_m=0.0, t_ref=0.0, I_e=0.0, tau_minus=tau_minus * 1e3)


def noise_current_std(sigma: float, dt: float, tau_syn: float) -> float:
    """Standard deviation (pA) of NEST's ``noise_generator`` current into receptor 1 whose kick to
    I_syn per step, ``(1 − exp(−dt/tau_syn))·I``, has our membrane noise's σ."""
    return sigma / -math.expm1(-dt / tau_syn)


def build(cfg: dict) -> dict:
    """Build the network of ``cfg`` in a fresh NEST kernel; returns handles.

    cfg keys: ``npz`` (file with ``n_exc``, ``n`` and per projection ``{k}_pre``, ``{k}_post``,
    ``{k}_w`` for k in ee, ei, ie, ii: population-local indices and signed weights), ``dt`` (s),
    ``tau_mem``, ``tau_syn``, ``v_th``, ``v_reset``, ``sigma``, ``batch``, ``threads``, ``seed``,
    ``plastic`` (bool: order-1 R-STDP on exc→exc) and with it ``tau_plus``, ``tau_minus``,
    ``delay`` (tau_c), ``a_plus``, ``a_minus``, ``lr``, ``dopamine`` (tonic), ``w_max``,
    ``tau_n``, ``dopamine_rate`` (Hz), ``deliver_interval``.
    """
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    dt_ms = cfg["dt"] * 1e3
    nest.set(resolution=dt_ms, local_num_threads=int(cfg.get("threads", 1)), rng_seed=int(cfg.get("seed", 1)) + 1,
             print_time=False)
    data = np.load(cfg["npz"])
    n, ne, B = int(data["n"]), int(data["n_exc"]), int(cfg["batch"])
    params = nest_neuron_params(cfg["tau_mem"], cfg["tau_syn"], cfg["v_th"], cfg["v_reset"],
                                cfg.get("tau_minus", 20e-3))
    pop = nest.Create("iaf_psc_exp", n * B, params=params)
    ids = np.asarray(pop.tolist(), dtype=np.int64)
    offset = {"e": 0, "i": ne}
    if cfg.get("plastic"):
        vt = nest.Create("volume_transmitter", params={"deliver_interval": int(cfg["deliver_interval"])})
        lr, d = cfg["lr"], cfg["dopamine"]
        nest.CopyModel("stdp_dopamine_synapse", "bench_dopa",
                       {"volume_transmitter": vt, "tau_plus": cfg["tau_plus"] * 1e3, "tau_c": cfg["delay"] * 1e3,
                        "tau_n": cfg["tau_n"] * 1e3, "b": -d, "A_plus": lr * cfg["a_plus"] / dt_ms,
                        "A_minus": lr * cfg["a_minus"] / dt_ms, "Wmin": 0.0, "Wmax": float(cfg["w_max"])})
        if cfg.get("dopamine_rate", 0.0) > 0:
            pg = nest.Create("poisson_generator", params={"rate": float(cfg["dopamine_rate"])})
            parrot = nest.Create("parrot_neuron")
            nest.Connect(pg, parrot)
            nest.Connect(parrot, vt)
    t0 = time.perf_counter()
    for k in ("ee", "ei", "ie", "ii"):
        pre = data[f"{k}_pre"].astype(np.int64) + offset[k[0]]
        post = data[f"{k}_post"].astype(np.int64) + offset[k[1]]
        w = data[f"{k}_w"].astype(np.float64)
        model = "bench_dopa" if (k == "ee" and cfg.get("plastic")) else "static_synapse"
        delay = np.full(pre.size, dt_ms)
        for b in range(B):
            nest.Connect(ids[pre + b * n], ids[post + b * n], "one_to_one",
                         syn_spec={"synapse_model": model, "weight": w, "delay": delay})
    connect_s = time.perf_counter() - t0
    if cfg["sigma"] > 0:
        ng = nest.Create("noise_generator", params={"mean": 0.0, "dt": dt_ms,
                                                    "std": noise_current_std(cfg["sigma"], cfg["dt"], cfg["tau_syn"])})
        nest.Connect(ng, pop, syn_spec={"receptor_type": 1, "delay": dt_ms})
    rec = nest.Create("spike_recorder")
    nest.Connect(pop, rec)
    nest.Prepare()
    return {"nest": nest, "rec": rec, "n_total": n * B, "dt_ms": dt_ms, "connect_s": connect_s,
            "n_synapses": int(nest.GetKernelStatus("num_connections"))}


def worker() -> None:
    """Serve the protocol of the module docstring on stdin/stdout."""
    t0 = time.perf_counter()
    h = build(json.loads(sys.stdin.readline()))
    nest = h["nest"]
    reply = lambda d: print(REPLY + json.dumps(d), flush=True)  # noqa: E731
    reply({"setup_s": time.perf_counter() - t0, "connect_s": h["connect_s"], "n_synapses": h["n_synapses"],
           "version": nest.__version__})
    for line in sys.stdin:
        cmd, *arg = line.split()
        if cmd == "quit":
            break
        k = int(arg[0])
        before = int(h["rec"].n_events)
        t = time.perf_counter()
        nest.Run(k * h["dt_ms"])
        el = time.perf_counter() - t
        spikes = int(h["rec"].n_events) - before
        if cmd == "rate":
            reply({"rate": spikes / (h["n_total"] * k * h["dt_ms"] * 1e-3), "s": el})
        else:
            reply({"s": el})
    nest.Cleanup()


class NestSim:
    """Client side: a NEST network in a worker process, driven like the benchmark's other
    simulations (``run(steps)``, ``rate(steps)``); ``close()`` ends the worker.

    Args: ``cfg`` as :func:`build` (without ``npz``); ``synapses``: the npz contents (arrays).
    """

    fixed_cost = False

    def __init__(self, cfg: dict, synapses: dict, n: int, batch: int, timeout: float = 1800.0):
        self.n, self.batch = n, batch
        fd, self._npz = tempfile.mkstemp(suffix=".npz", prefix="bench_event_nest_")
        os.close(fd)
        np.savez(self._npz, **synapses)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._send(json.dumps({**cfg, "npz": self._npz}))
        self.info = self._reply()

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"NEST worker ended (exit code {self.proc.wait()})")

    def run(self, steps: int) -> None:
        self._send(f"run {int(steps)}")
        self._reply()

    def rate(self, steps: int) -> float:
        self._send(f"rate {int(steps)}")
        return float(self._reply()["rate"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("quit")
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        if os.path.exists(self._npz):
            os.remove(self._npz)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def nest_version() -> str | None:
    """NEST's version in a subprocess (importing NEST here would start its kernel in this process), or None."""
    out = subprocess.run([sys.executable, "-c", "import nest; print('@@', nest.__version__)"], capture_output=True,
                         text=True)
    for line in out.stdout.splitlines():
        if line.startswith("@@"):
            return line.split()[1]
    return None


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        sys.exit("usage: python benchmarks/nest_models.py --worker  (driven by benchmarks/bench_event.py)")
