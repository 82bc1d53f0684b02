"""Spiking-network simulation speed: neuroprobe's torch engine vs raw norse vs Brian2, side by side.

One network for every simulator: N LIF neurons (80 % excitatory, 20 % inhibitory), 5 % random
connectivity (the synapses and weights of the neuroprobe network are given to every simulator),
current-based LIF (CubaLIF: tau_mem 20 ms, tau_syn 5 ms, threshold 1, reset 0), dt = 0.1 ms, driven
by a membrane-noise current (σ·ξ added to the synaptic current every step), inhibition 5x excitation:
irregular activity at a few Hz. Optionally cascade R-STDP on exc→exc (order 1 and 6: STDP
coincidences into a cascade eligibility of ``order`` states per synapse, a tonic dopamine and a
weight update w ← clip(w + lr·d·e) every step).

Simulators (all single-threaded by default, ``--threads``):

* ``neuroprobe``: :class:`neuroprobe.spiking.SpikingNetwork` (engine "torch", propagation "auto"),
  float32, with :class:`neuroprobe.rules.rstdp.CascadeRSTDP` (``step``, ``reinforce``), the SGD
  update ``w.add_(w.grad, alpha=-lr)`` and ``Projection.clamp_`` for plasticity; also
  B = 4 and 16 independent trials as one batch.
* ``norse``: what a norse user writes: ``norse.torch.LIFCell`` on all N neurons and the signed
  recurrent weights as one ``torch.sparse_csr_tensor`` (``W @ z`` each step), float32; no plasticity.
* ``brian2-numpy`` / ``brian2-cython``: an equivalent Brian2 network (runtime targets, float64):
  one NeuronGroup (Euler), ``run_regularly`` noise, one ``Synapses`` per projection with a weight per
  synapse and ``on_pre="I_post += w"``; for plasticity event-driven STDP traces and the cascade
  states as synaptic variables updated each step with the exact cascade transition, plus the
  dopamine-gated weight update. Build and compilation time is excluded (a warm-up ``run`` first).
* ``brian2-cpp_standalone``: the same network compiled to C++ (in a subprocess; its own measured
  run time, not interleaved with the others).

Every candidate simulates in chunks of steps, interleaved with the others (``timing.measure``:
rounds, medians); slow candidates simulate fewer than 10 000 steps (the table says how many) and
are normalised per step. Reported: ms per step, neuron-steps per second (N·B per step), firing
rate (Hz).

    python benchmarks/bench_spiking.py [--quick] [--sizes 1000 10000] [--out docs/bench_spiking.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np
import torch

from timing import add_timing_args, apply_timing_args, emit, measure  # benchmarks/timing.py (this script's folder is on sys.path)

from neuroprobe.rules.rstdp import CascadeRSTDP
from neuroprobe.spiking import SpikingNetwork, spec_from_dict
from neuroprobe.traces.kernels import cascade_transition

DT = 1e-4
TAU_MEM, TAU_SYN, V_TH, V_RESET = 20e-3, 5e-3, 1.0, 0.0
SIGMA, W_EXC, G_INH, P_CONN = 0.25, 0.2, 5.0, 0.05
PLAST = dict(delay=50e-3, tau_plus=20e-3, tau_minus=20e-3, a_plus=1.0, a_minus=1.5, w_max=1.0)
DOPAMINE, LR = 1e-3, 1e-3  # tonic dopamine and learning rate: small, the activity stays the same


def make_spec(n: int):
    ne = int(round(0.8 * n))
    lif = {"tau_mem": TAU_MEM, "tau_syn": TAU_SYN, "v_th": V_TH, "v_reset": V_RESET, "noise": "membrane",
           "noise_std": SIGMA}
    return spec_from_dict({
        "network": {"dt": DT, "engine": "torch"},
        "population": [{"name": "exc", "size": ne, "kind": "lif", "sign": "excitatory", "lif": lif},
                       {"name": "inh", "size": n - ne, "kind": "lif", "sign": "inhibitory", "lif": lif}],
        "projection": [{"pre": a, "post": b, "p": P_CONN, "weight": W_EXC * (G_INH if a == "inh" else 1.0),
                        "w_max": PLAST["w_max"]} for a in ("exc", "inh") for b in ("exc", "inh")]})


def make_net(n: int, seed: int = 0) -> SpikingNetwork:
    return SpikingNetwork(make_spec(n), torch.Generator().manual_seed(seed), propagation="auto")


def connectivity(net: SpikingNetwork) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    return [(p.spec.pre, p.spec.post, p.pre.numpy(), p.post.numpy(), p.weight.detach().double().numpy())
            for p in net.projections]


class Sim:
    """A simulation that keeps its state between ``run(steps)`` calls and counts its spikes.
    ``fixed_cost``: each ``run`` call has a sizeable cost of its own (Brian2's per-run() set-up),
    separated from the per-step cost by timing two chunk lengths."""

    n: int
    batch = 1
    fixed_cost = False

    def _step(self):
        raise NotImplementedError

    @torch.no_grad()
    def run(self, steps: int) -> None:
        for _ in range(steps):
            self._step()

    def rate(self, steps: int) -> float:
        """Mean firing rate (Hz) over ``steps`` further steps (not timed)."""
        raise NotImplementedError


class NeuroprobeSim(Sim):
    def __init__(self, n: int, batch: int = 1, order: int | None = None):
        self.n, self.batch = n, batch
        self.net = make_net(n)
        self.gen = torch.Generator().manual_seed(1)
        self.state = self.net.init_state(batch)
        self.rule = None
        if order is not None:
            proj = self.net.projection("exc->exc")
            self.rule = CascadeRSTDP(proj, batch, order=order, delay=PLAST["delay"], dt=DT,
                                     tau_plus=PLAST["tau_plus"], tau_minus=PLAST["tau_minus"],
                                     a_plus=PLAST["a_plus"], a_minus=PLAST["a_minus"])
            self.d = torch.full((batch,), DOPAMINE)
            self.proj = proj

    def _step(self) -> dict:
        z, self.state = self.net.step(self.state, generator=self.gen)
        if self.rule is not None:
            self.rule.step(z["exc"], z["exc"])
            self.rule.reinforce(self.d)  # weight.grad = −d·e
            self.proj.weight.add_(self.proj.weight.grad, alpha=-LR)  # torch.optim.SGD's update, w/o its overhead
            self.proj.clamp_()
        return z

    @torch.no_grad()
    def rate(self, steps: int) -> float:
        count = 0.0
        for _ in range(steps):
            z = self._step()
            count += float(z["exc"].sum() + z["inh"].sum())
        return count / (self.n * self.batch * steps * DT)


class NorseSim(Sim):
    """The natural norse version: one LIFCell for all neurons, sparse CSR recurrent weights."""

    def __init__(self, n: int):
        import norse.torch as nt
        from norse.torch.functional.lif import LIFParameters

        self.n = n
        net = make_net(n)
        ne = net.pops["exc"].size
        off = {"exc": 0, "inh": ne}
        rows, cols, vals = [], [], []
        for pre_pop, post_pop, pre, post, w in connectivity(net):
            rows.append(post + off[post_pop])
            cols.append(pre + off[pre_pop])
            vals.append(w)
        idx = torch.as_tensor(np.stack([np.concatenate(rows), np.concatenate(cols)]))
        self.W = torch.sparse_coo_tensor(idx, torch.as_tensor(np.concatenate(vals), dtype=torch.float32),
                                         (n, n), check_invariants=True).coalesce().to_sparse_csr()
        p = LIFParameters(tau_syn_inv=torch.as_tensor(1 / TAU_SYN), tau_mem_inv=torch.as_tensor(1 / TAU_MEM),
                          v_leak=torch.as_tensor(0.0), v_th=torch.as_tensor(V_TH), v_reset=torch.as_tensor(V_RESET))
        self.cell = nt.LIFCell(p, dt=DT)
        self.gen = torch.Generator().manual_seed(1)
        self.z = torch.zeros(1, n)
        self.s = None

    def _step(self) -> torch.Tensor:
        i_in = (self.W @ self.z.T).T + SIGMA * torch.randn(1, self.n, generator=self.gen)
        self.z, self.s = self.cell(i_in, self.s)
        return self.z

    @torch.no_grad()
    def rate(self, steps: int) -> float:
        return sum(float(self._step().sum()) for _ in range(steps)) / (self.n * steps * DT)


def brian2_network(n: int, order: int | None):
    """The Brian2 version of the network (current device and target). Returns (network, spike monitor)."""
    import brian2 as b2

    net_np = make_net(n)
    ne = net_np.pops["exc"].size
    ns = {"tau_mem": TAU_MEM * b2.second, "tau_syn": TAU_SYN * b2.second, "v_th": V_TH, "v_reset": V_RESET,
          "sigma": SIGMA}
    G = b2.NeuronGroup(n, """dv/dt = (-v + I)/tau_mem : 1
                             dI/dt = -I/tau_syn : 1""", threshold="v > v_th", reset="v = v_reset",
                       method="euler", namespace=ns, dt=DT * b2.second)
    G.run_regularly("I += sigma*randn()", when="before_groups")  # membrane-noise current, every step
    groups = {"exc": G[:ne], "inh": G[ne:]}
    objs = [G]
    for pre_pop, post_pop, pre, post, w in connectivity(net_np):
        plastic = order is not None and pre_pop == post_pop == "exc"
        if not plastic:
            S = b2.Synapses(groups[pre_pop], groups[post_pop], "w : 1", on_pre="I_post += w", dt=DT * b2.second)
        else:
            M = cascade_transition(order, PLAST["delay"] / DT, None, torch.float64, "cpu").numpy()
            scale = float(CascadeRSTDP(net_np.projection("exc->exc"), 1, order=order, delay=PLAST["delay"], dt=DT)
                          .trace.scale)
            states = "\n".join(f"s{k} : 1" for k in range(1, order + 1))
            model = f"""w : 1
                        {states}
                        dapre/dt = -apre/tau_plus : 1 (event-driven)
                        dapost/dt = -apost/tau_minus : 1 (event-driven)"""
            S = b2.Synapses(groups[pre_pop], groups[post_pop], model, dt=DT * b2.second,
                            on_pre="I_post += w\ns1 -= a_minus*apost\napre += 1",
                            on_post="s1 += a_plus*apre\napost += 1",
                            namespace={"tau_plus": PLAST["tau_plus"] * b2.second,
                                       "tau_minus": PLAST["tau_minus"] * b2.second,
                                       "a_plus": PLAST["a_plus"], "a_minus": PLAST["a_minus"], "w_max": PLAST["w_max"],
                                       "lr_d_scale": LR * DOPAMINE * scale,
                                       **{f"m{i}{j}": float(M[i, j]) for i in range(order) for j in range(i + 1)}})
            # the exact cascade transition s <- M s (lower triangular: update the last state first),
            # then the dopamine-gated weight update, every step
            lines = [f"s{i + 1} = " + " + ".join(f"m{i}{j}*s{j + 1}" for j in range(i + 1))
                     for i in reversed(range(order))]
            S.run_regularly("\n".join(lines), when="groups")
            S.run_regularly(f"w = clip(w + lr_d_scale*s{order}, 0, w_max)", when="after_synapses")
        S.connect(i=pre, j=post)
        S.w = w
        objs.append(S)
    mon = b2.SpikeMonitor(G, record=False)
    return b2.Network(*objs, mon), mon


class Brian2Sim(Sim):
    fixed_cost = True

    def __init__(self, n: int, target: str, order: int | None = None):
        import brian2 as b2

        b2.prefs.codegen.target = target
        self.n, self.b2, self.target = n, b2, target
        self.net, self.mon = brian2_network(n, order)
        self.net.run(2 * DT * b2.second)  # code generation / compilation happen here, excluded

    def run(self, steps: int) -> None:
        self.b2.prefs.codegen.target = self.target  # read when each run() creates its code objects
        self.net.run(steps * DT * self.b2.second)

    def rate(self, steps: int) -> float:
        before = int(self.mon.num_spikes)
        self.run(steps)
        return (int(self.mon.num_spikes) - before) / (self.n * steps * DT)


def cpp_standalone_worker(n: int, order: int | None, steps: int) -> dict:
    """Build and run the network with Brian2's cpp_standalone device (called in a subprocess)."""
    import brian2 as b2

    directory = tempfile.mkdtemp(prefix="bench_spiking_cpp_")
    b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    t0 = time.perf_counter()
    net, mon = brian2_network(n, order)
    net.run(steps * DT * b2.second)
    b2.device.build(directory=directory, compile=True, run=True)
    total = time.perf_counter() - t0
    run_time = b2.device._last_run_time
    return {"run_s": run_time, "build_s": total - run_time, "rate": int(mon.num_spikes) / (n * steps * DT),
            "steps": steps}


def run_cpp_standalone(n: int, order: int | None, steps: int, timeout: float) -> dict | str:
    cmd = [sys.executable, os.path.abspath(__file__), "--_cpp-worker", str(n), str(order or 0), str(steps)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {err[:200]}"
    return json.loads(lines[-1])


def _chunking(sims: dict[str, Sim], max_steps: int, rounds: int, seconds_per_call: float,
              fixed_cap: int) -> dict[str, int]:
    """Steps per timed call for each candidate: about ``seconds_per_call`` of simulation, at most
    max_steps / rounds (a candidate simulates at most max_steps steps in the timed rounds). For a
    candidate with a fixed cost per call (Brian2's run() set-up) the call also lasts at least twice
    that cost, up to ``fixed_cap`` steps (a 1 s simulation is one run() call)."""
    chunks = {}
    for name, sim in sims.items():
        t0 = time.perf_counter()
        sim.run(1)
        t1 = time.perf_counter()
        k = 50 if sim.fixed_cost else 20
        sim.run(k)
        t2 = time.perf_counter()
        fixed = (t1 - t0) if sim.fixed_cost else 0.0
        per_step = max(((t2 - t1) - fixed) / k, (t2 - t1) / k * 0.05, 1e-7)
        want = max(seconds_per_call, 2 * fixed) / per_step
        cap = max(max_steps // rounds, min(fixed_cap, round(2 * fixed / per_step))) if sim.fixed_cost \
            else max_steps // rounds
        chunks[name] = int(max(8, min(cap, round(want))))
    return chunks


def machine_load() -> str:
    try:
        a, b, c = os.getloadavg()
        return f"{a:.2f} / {b:.2f} / {c:.2f}"
    except OSError:
        return "n/a"


def run(args: argparse.Namespace) -> str:
    import brian2

    logging.getLogger("brian2").setLevel(logging.ERROR)
    started = datetime.datetime.now().astimezone()
    load_before = machine_load()
    rows = []
    notes = []
    for n in args.sizes:
        sims: dict[str, Sim] = {}
        meta: dict[str, tuple] = {}  # name -> (simulator, plasticity, batch)
        setup: dict[str, float] = {}

        def add(name, factory, simulator, plasticity, batch=1):
            t = time.perf_counter()
            try:
                sims[name] = factory()
            except Exception as e:  # a target that does not build here is reported, not fatal
                notes.append(f"N={n} {name}: not run ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
                return
            setup[name] = time.perf_counter() - t
            meta[name] = (simulator, plasticity, batch)

        add("neuroprobe", lambda: NeuroprobeSim(n), "neuroprobe (torch engine)", "none")
        for b in args.batches:
            if b != 1:
                add(f"neuroprobe B={b}", lambda b=b: NeuroprobeSim(n, batch=b), "neuroprobe (torch engine)", "none", b)
        add("norse", lambda: NorseSim(n), "raw norse (LIFCell + sparse CSR)", "none")
        for target in args.brian2_targets:
            add(f"brian2-{target}", lambda t=target: Brian2Sim(n, t), f"Brian2 {target}", "none")
        for order in args.orders:
            add(f"neuroprobe o{order}", lambda o=order: NeuroprobeSim(n, order=o), "neuroprobe (torch engine)",
                f"cascade R-STDP, order {order}")
            for target in args.brian2_targets:
                add(f"brian2-{target} o{order}", lambda t=target, o=order: Brian2Sim(n, t, o), f"Brian2 {target}",
                    f"cascade R-STDP, order {order}")
        chunks = _chunking(sims, args.max_steps, args.repeats, args.seconds_per_call, args.fixed_cap)
        cands: dict[str, Callable[[], object]] = {}
        for name, sim in sims.items():
            cands[name] = lambda s=sim, k=chunks[name]: s.run(k)
            if sim.fixed_cost:  # a one-step call too: its time is the fixed cost per call
                cands[name + "|short"] = lambda s=sim: s.run(1)
        med = measure(cands, args.repeats, 1)
        for name, sim in sims.items():
            k = chunks[name]
            steps = k * args.repeats
            note = f"setup {setup[name]:.1f} s"
            print(f"[bench_spiking] N={n} {name}: chunk {k}, median {med[name]:.4f} s"
                  + (f", short {med[name + '|short']:.4f} s" if sim.fixed_cost else ""), file=sys.stderr)
            if sim.fixed_cost:
                diff = med[name] - med[name + "|short"]
                if diff <= 0.1 * med[name]:  # too noisy to separate: keep the fixed cost in
                    per_step, overhead = med[name] / k, float("nan")
                else:
                    per_step, overhead = diff / (k - 1), med[name + "|short"]
                steps += args.repeats
                note += (f"; + {overhead * 1e3:.0f} ms per run() call, excluded" if overhead == overhead
                         else "; per-run() cost not separable, included")
            else:
                per_step = med[name] / k
            rate = sim.rate(min(args.rate_steps, max(k, 200)))  # about one timed call's worth of steps
            simulator, plasticity, batch = meta[name]
            rows.append((n, simulator, plasticity, batch, steps, per_step, n * batch / per_step, rate, note))
        sims.clear()  # free this size's networks before the next
        cands.clear()
        if args.cpp_standalone:
            for order in [None] + (list(args.orders) if args.cpp_plastic else []):
                steps = args.cpp_steps
                res = run_cpp_standalone(n, order, steps, args.cpp_timeout)
                plast = "none" if order is None else f"cascade R-STDP, order {order}"
                if isinstance(res, str):
                    notes.append(f"N={n} Brian2 cpp_standalone ({plast}): {res}")
                    continue
                per_step = res["run_s"] / res["steps"]
                rows.append((n, "Brian2 cpp_standalone", plast, 1, res["steps"], per_step, n / per_step, res["rate"],
                             f"build {res['build_s']:.0f} s; own run, not interleaved"))
    load_after = machine_load()
    try:
        import norse
        norse_version = getattr(norse, "__version__", "?")
    except Exception:
        norse_version = "not installed"
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + sys.argv[1:])
    lines = [
        f"Spiking-network simulation speed (generated by `{cmd}`)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M %Z}; machine: {platform.machine()}, {os.cpu_count()} cores "
        f"(shared); load average (1/5/15 min) before: {load_before}, after: {load_after}",
        f"- torch {torch.__version__} ({torch.get_num_threads()} thread(s)), norse {norse_version}, "
        f"brian2 {brian2.__version__}, numpy {np.__version__}, Python {platform.python_version()}",
        f"- network: N LIF neurons (80 % exc / 20 % inh), p = {P_CONN} random connectivity, CubaLIF "
        f"(tau_mem {TAU_MEM * 1e3:g} ms, tau_syn {TAU_SYN * 1e3:g} ms), dt = {DT * 1e3:g} ms, membrane noise "
        f"σ = {SIGMA}, w_exc = {W_EXC}, w_inh = −{G_INH:g}·w_exc; plasticity: cascade R-STDP on exc→exc "
        f"(delay {PLAST['delay'] * 1e3:g} ms) with a weight update every step",
        f"- timing: chunks of steps per candidate, {args.repeats} interleaved rounds, median; \"steps\" = steps "
        f"simulated in the timed rounds (1 s of biological time = {int(round(1 / DT))} steps; fewer for slow "
        "candidates, normalised per step); neuroprobe and norse float32, Brian2 float64; "
        "setup = construction (+ code generation and compilation for Brian2, excluded from the timing); "
        "Brian2's fixed cost per run() call (set-up of its code objects) is timed separately (a one-step run()) "
        "and excluded from ms/step (a 1 s simulation is one run() call)",
        "",
        "| N | simulator | plasticity | B | steps | ms / step | neuron-steps / s | rate (Hz) | notes |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for n, sim, plast, b, steps, per_step, nss, rate, note in rows:
        lines.append(f"| {n} | {sim} | {plast} | {b} | {steps} | {per_step * 1e3:.3f} | {nss:.3g} | {rate:.2f} "
                     f"| {note} |")
    lines.append("")
    lines += [f"- {x}" for x in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_cpp-worker":
        n, order, steps = int(argv[1]), int(argv[2]) or None, int(argv[3])
        logging.getLogger("brian2").setLevel(logging.ERROR)
        print(json.dumps(cpp_standalone_worker(n, order, steps)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--orders", type=int, nargs="*", default=[1, 6], help="cascade orders with plasticity")
    parser.add_argument("--brian2-targets", nargs="*", default=["numpy", "cython"])
    parser.add_argument("--no-cpp-standalone", dest="cpp_standalone", action="store_false")
    parser.add_argument("--cpp-plastic", action="store_true", help="also build cpp_standalone with plasticity")
    parser.add_argument("--cpp-steps", type=int, default=None, help="steps simulated by cpp_standalone")
    parser.add_argument("--cpp-timeout", type=float, default=900.0)
    parser.add_argument("--max-steps", type=int, default=None, help="most steps per candidate in the timed rounds")
    parser.add_argument("--seconds-per-call", type=float, default=None)
    parser.add_argument("--fixed-cap", type=int, default=None,
                        help="most steps per call for Brian2 (to amortise its per-run() cost; default 1 s)")
    parser.add_argument("--rate-steps", type=int, default=2000)
    add_timing_args(parser, repeats=(5, 3), inner=(1, 1), threads=1)
    args = parser.parse_args(argv)
    apply_timing_args(args)
    args.max_steps = args.max_steps or (600 if args.quick else int(round(1 / DT)))
    args.seconds_per_call = args.seconds_per_call or (0.5 if args.quick else 3.0)
    args.fixed_cap = args.fixed_cap or (2000 if args.quick else int(round(1 / DT)))
    args.cpp_steps = args.cpp_steps or (2000 if args.quick else int(round(1 / DT)))
    if args.quick:
        args.rate_steps = min(args.rate_steps, 500)
    emit(run(args), args.out)


if __name__ == "__main__":
    main()
