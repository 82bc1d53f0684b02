"""The event-driven CPU engine against the torch engine, Brian2 and NEST, side by side.

The network of ``benchmarks/bench_spiking.py`` (its spec, Brian2 models and torch candidate are
reused): N CubaLIF neurons, 80 % excitatory / 20 % inhibitory, tau_mem 20 ms, tau_syn 5 ms,
dt = 0.1 ms, membrane-noise current σ·ξ every step, inhibition 5× excitation; 5 % random
connectivity below ``--indegree-from`` (default 100 000), fixed in-degree 100 (80 exc + 20 inh
inputs per neuron) from there on; optionally cascade R-STDP on exc→exc (orders 1 and 6, delay
50 ms, tonic dopamine, a weight update ``w ← clip(w + lr·d·e)`` every step).

Candidates (one thread each unless ``--threads``):

* ``event``: :class:`neuroprobe.backends.event.sim.EventSimulator` (numba; float64 and float32;
  B = 1 and 16 trials, per-trial weights; hash noise; lazy cascade plasticity with the tonic
  dopamine). Its first-call JIT compile time (cached on disk afterwards) is reported apart.
* ``torch``: the torch engine as ``bench_spiking.py`` runs it (float32, B = 1 and 16).
* ``Brian2`` numpy / cython (interleaved; build and per-``run()`` costs excluded as in
  ``bench_spiking.py``) and cpp_standalone (its own subprocess, not interleaved; build time reported apart).
* ``NEST``: ``iaf_psc_exp`` + ``noise_generator`` (+ ``stdp_dopamine_synapse`` for order 1) in a
  worker process driven chunk by chunk, so its timings interleave with the others'
  (``benchmarks/nest_models.py`` documents the parameter mapping and how NEST's model differs).

Timing: per group (one N, one plasticity) every candidate simulates chunks of steps in
interleaved rounds (``timing.measure``), medians, per step; slow candidates simulate fewer steps
(the table's "steps"). Synaptic events/s = spikes × mean out-degree per second of wall time
(from the measured rate and S/N). A second table varies the drive σ at one size (about 2, 5 and
20 Hz) for the cost against the firing rate. The Markdown report (``--out``) is rewritten after
every group (partial results survive an interrupted run); the cost-growth plot goes to ``--plot``.

    python benchmarks/bench_event.py [--quick] [--sizes 1000 10000 100000] [--out docs/bench_event.md]
"""
from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np
import torch

import bench_spiking as bs  # benchmarks/bench_spiking.py: the network, its Brian2 models, the torch candidate
from nest_models import NestSim  # benchmarks/nest_models.py
from timing import add_timing_args, apply_timing_args, measure

import neuroprobe.spiking.network as _netmod
from neuroprobe.backends.event.sim import EventSimulator
from neuroprobe.spec.kernel import CascadeKernel
from neuroprobe.spec.rules import RSTDPSpec

DT, PLAST, LR, DOPAMINE = bs.DT, bs.PLAST, bs.LR, bs.DOPAMINE
SIGMA_BASE = bs.SIGMA
RATE_SIGMAS = {2: 0.225, 5: 0.325, 20: 0.9}  # drive for ~2, 5, 20 Hz at N = 10 000 (event engine, measured)
INDEGREE = 100
TAU_N = 0.2  # NEST's dopamine trace time constant (no dopamine spikes: the tonic dopamine is its baseline b)
DENSE_LIMIT = 4e8  # above n_pre·n_post this many, the benchmark samples connectivity in row chunks
ALL_SIMULATORS = ("event", "torch", "brian2-numpy", "brian2-cython", "cpp", "nest")
PLAST_NAME = {None: "none", 1: "R-STDP order 1", 6: "R-STDP order 6"}
ONE_SECOND = int(round(1.0 / DT))  # steps of 1 s of biological time


# ------------------------------------------------------------------------------------ network set-up
def configure(n: int, sigma: float, indegree_from: int) -> None:
    """Point ``bench_spiking``'s network (used by every candidate) at drive ``sigma`` and, from
    ``indegree_from`` neurons on, fixed in-degree ``INDEGREE`` instead of 5 % connectivity."""
    bs.SIGMA = sigma
    bs.make_spec = _make_spec_indegree if n >= indegree_from else _ORIG_MAKE_SPEC


_ORIG_MAKE_SPEC = bs.make_spec


def _make_spec_indegree(n: int):
    ne = int(round(0.8 * n))
    lif = {"tau_mem": bs.TAU_MEM, "tau_syn": bs.TAU_SYN, "v_th": bs.V_TH, "v_reset": bs.V_RESET, "noise": "membrane",
           "noise_std": bs.SIGMA}
    return bs.spec_from_dict({
        "network": {"dt": DT, "engine": "torch"},
        "population": [{"name": "exc", "size": ne, "kind": "lif", "sign": "excitatory", "lif": lif},
                       {"name": "inh", "size": n - ne, "kind": "lif", "sign": "inhibitory", "lif": lif}],
        # p·n_pre = INDEGREE·(size of the pre population)/n inputs from each population: 80 exc + 20 inh
        "projection": [{"pre": a, "post": b, "p": INDEGREE / n, "fixed_indegree": True,
                        "weight": bs.W_EXC * (bs.G_INH if a == "inh" else 1.0), "w_max": PLAST["w_max"]}
                       for a in ("exc", "inh") for b in ("exc", "inh")]})


_ORIG_RC = _netmod.random_connectivity
_MEMO: dict = {}


def _chunked_connectivity(n_pre, n_post, p, generator=None, allow_autapses=True, same_population=False,
                          fixed_indegree=False, rows=512):
    """``random_connectivity``'s distribution sampled in row chunks (the package's version draws the
    whole n_pre × n_post score matrix: 25 GB at N = 100 000). Fixed in-degree: the k smallest of
    each row's uniform scores (``topk``; the package's full ``argsort`` takes minutes here and
    may break float32 ties differently)."""
    if fixed_indegree:
        k = max(1, int(round(p * n_pre)))
        pres = []
        for r0 in range(0, n_post, rows):
            r1 = min(n_post, r0 + rows)
            scores = torch.rand(r1 - r0, n_pre, generator=generator)
            if same_population and not allow_autapses:
                idx = torch.arange(r0, min(r1, n_pre))
                scores[idx - r0, idx] = 2.0
            pres.append(torch.topk(scores, k, dim=1, largest=False, sorted=True).indices)
        pre = torch.cat(pres).reshape(-1)
        post = torch.arange(n_post)[:, None].expand(-1, k).reshape(-1)
    else:
        pre_l, post_l = [], []
        for r0 in range(0, n_pre, rows):
            r1 = min(n_pre, r0 + rows)
            mask = torch.rand(r1 - r0, n_post, generator=generator) < p
            if same_population and not allow_autapses:
                idx = torch.arange(r0, min(r1, n_post))
                mask[idx - r0, idx] = False
            a, b = mask.nonzero(as_tuple=True)
            pre_l.append(a + r0)
            post_l.append(b)
        pre, post = torch.cat(pre_l), torch.cat(post_l)
    order = torch.argsort(pre * n_post + post)
    return pre[order].contiguous(), post[order].contiguous()


def _shared_connectivity(n_pre, n_post, p, generator=None, allow_autapses=True, same_population=False,
                         fixed_indegree=False):
    """The package's ``random_connectivity`` (or the chunked sampler above for huge populations),
    remembered by its arguments and the generator's state: every candidate of one size builds its
    own network from the same seed, so the synapses are drawn once (the generator is left in the
    state the draw leaves it in)."""
    state = generator.get_state() if generator is not None else None
    key = (n_pre, n_post, p, allow_autapses, same_population, fixed_indegree,
           None if state is None else hashlib.sha1(state.numpy().tobytes()).hexdigest())
    if state is not None and key in _MEMO:
        pre, post, after = _MEMO[key]
        generator.set_state(after)
        return pre.clone(), post.clone()
    fn = _chunked_connectivity if n_pre * n_post > DENSE_LIMIT else _ORIG_RC
    pre, post = fn(n_pre, n_post, p, generator, allow_autapses=allow_autapses, same_population=same_population,
                   fixed_indegree=fixed_indegree)
    if state is not None:
        _MEMO[key] = (pre, post, generator.get_state())
    return pre, post


_netmod.random_connectivity = _shared_connectivity


def network_synapses(n: int) -> dict:
    """The network's synapses for NEST: per projection population-local pre/post and signed weights."""
    net = bs.make_net(n)
    out = {"n": np.int64(n), "n_exc": np.int64(net.pops["exc"].size)}
    for p in net.projections:
        k = p.spec.pre[0] + p.spec.post[0]
        out[f"{k}_pre"] = p.pre.numpy().astype(np.int32)
        out[f"{k}_post"] = p.post.numpy().astype(np.int32)
        out[f"{k}_w"] = p.weight.detach().double().numpy()
    return out


def n_synapses(n: int) -> int:
    return sum(p.n_synapses for p in bs.make_net(n).projections)


# ------------------------------------------------------------------------------------ candidates
class EventSim(bs.Sim):
    """The event engine on the benchmark network: ``run(steps)`` is one compiled chunk. With
    plasticity each chunk ends by bringing every plastic synapse up to date (a cost per call,
    separated from the cost per step like Brian2's per-run() cost)."""

    def __init__(self, n: int, batch: int, dtype: torch.dtype, order: int | None):
        self.n, self.batch = n, batch
        self.fixed_cost = order is not None
        rule = None if order is None else RSTDPSpec(
            "exc->exc", CascadeKernel(order, PLAST["delay"]), LR, tau_plus=PLAST["tau_plus"],
            tau_minus=PLAST["tau_minus"], a_plus=PLAST["a_plus"], a_minus=PLAST["a_minus"])
        self.sim = EventSimulator(bs.make_net(n), batch, dtype=dtype, rule=rule,
                                  tonic_dopamine=None if order is None else DOPAMINE, parallel=batch > 1)
        self.compile_seconds = self.sim.compile_seconds

    def run(self, steps: int) -> None:
        self.sim.run(steps)

    def rate(self, steps: int) -> float:
        out = self.sim.run(steps)
        return float(sum(int(c.sum()) for c in out["counts"].values())) / (self.n * self.batch * steps * DT)


def nest_config(order: int | None, batch: int, threads: int, deliver_interval: int) -> dict:
    cfg = {"dt": DT, "tau_mem": bs.TAU_MEM, "tau_syn": bs.TAU_SYN, "v_th": bs.V_TH, "v_reset": bs.V_RESET,
           "sigma": bs.SIGMA, "batch": batch, "threads": threads, "seed": 1, "plastic": order == 1,
           "tau_minus": PLAST["tau_minus"]}
    if order == 1:
        cfg.update(tau_plus=PLAST["tau_plus"], delay=PLAST["delay"], a_plus=PLAST["a_plus"], a_minus=PLAST["a_minus"],
                   lr=LR, dopamine=DOPAMINE, w_max=PLAST["w_max"], tau_n=TAU_N, dopamine_rate=0.0,
                   deliver_interval=deliver_interval)
    return cfg


def candidates(n: int, order: int | None, args, rate_scan: bool = False) -> dict:
    """name -> (factory, simulator, precision, batch) of one group."""
    sims = set(args.simulators)
    c: dict = {}
    big = n >= args.indegree_from
    batches = [1] if rate_scan else args.batches
    if "event" in sims:
        for b in batches:
            for dt_name, dt in (("float64", torch.float64), ("float32", torch.float32)):
                if (order is not None or rate_scan) and dt_name == "float32" and b > 1:
                    continue  # plastic B = 16 in float64 only (the cascade state is float64 in both)
                if order is not None and b > 1 and big:
                    continue  # 16 trials' cascade states: 6.5 GB at order 6 (memory shared with the others)
                if rate_scan and dt_name == "float32":
                    continue
                c[f"event {dt_name} B={b}"] = (lambda b=b, dt=dt: EventSim(n, b, dt, order), "event engine (numba)",
                                               dt_name, b)
    slow_scan = rate_scan and order is not None and args.quick  # quick scan with plasticity: event and NEST only
    if "torch" in sims and not slow_scan:
        for b in batches:
            if b > 1 and order is not None and (args.quick and n > 1000 or n >= args.indegree_from):
                continue  # B = 16 with plasticity: 16× the every-step update; full runs below 100 000 only
            c[f"torch B={b}"] = (lambda b=b: bs.NeuroprobeSim(n, batch=b, order=order), "torch engine", "float32", b)
    for target in ("numpy", "cython"):
        if f"brian2-{target}" not in sims:
            continue
        if target == "numpy" and (order is not None or rate_scan or big) or slow_scan:
            continue  # numpy: no plasticity, below 100 000 (bench_spiking.py has its plastic numbers)
        c[f"brian2-{target}"] = (lambda t=target: bs.Brian2Sim(n, t, order), f"Brian2 {target}", "float64", 1)
    if "cpp" in sims and (order is None or args.cpp_plastic and not rate_scan) and not (rate_scan and args.quick):
        steps = args.cpp_steps if (n < args.indegree_from and order is None) else max(args.cpp_steps // 5, 1000)
        c["brian2-cpp"] = (lambda: CppSim(n, order, steps, bs.SIGMA, args.indegree_from), "Brian2 cpp_standalone",
                           "float64", 1)
    if "nest" in sims and order in (None, 1):
        for b in batches:
            if b > 1 and (n > 1000 and (order is not None or args.quick) or big):
                continue  # B = 16 copies: memory and build time; N = 1000 (and 10 000 without plasticity, full)
            c[f"nest B={b}"] = (lambda b=b: NestSim(nest_config(order, b, args.threads, args.deliver_interval),
                                                    network_synapses(n), n, b), "NEST 3.10", "float64", b)
        if order == 1 and n == min(args.sizes) and not rate_scan and args.nest_default_interval:
            c["nest B=1 di=1"] = (lambda: NestSim(nest_config(1, 1, args.threads, 1), network_synapses(n), n, 1),
                                  "NEST 3.10 (deliver_interval 1)", "float64", 1)
    return c


# ------------------------------------------------------------------------------------ measurement
def rate_steps(n: int, batch: int, args, per_step: float, spikes: int) -> int:
    """Steps of the (untimed) rate measurement: about ``spikes`` spikes at 3 Hz, at most
    ``--rate-steps`` and about 5 s of simulation, at least 50."""
    want = min(np.ceil(spikes / (n * batch * 3.0 * DT)), args.rate_steps, 5.0 / per_step)
    return int(max(50, want))


def measure_group(n: int, sigma: float, order: int | None, args, rows: list, notes: list,
                  rate_scan: bool = False) -> None:
    """Time one group's candidates side by side; append a row per candidate."""
    configure(n, sigma, args.indegree_from)
    S = n_synapses(n)
    sims: dict = {}
    meta: dict = {}
    setup: dict = {}
    for name, (factory, simulator, precision, batch) in candidates(n, order, args, rate_scan).items():
        t = time.perf_counter()
        try:
            sims[name] = factory()
        except Exception as e:  # a candidate that does not build here is reported, not fatal
            notes.append(f"N={n} σ={sigma} {name} ({PLAST_NAME[order]}): not run ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})")
            continue
        setup[name] = time.perf_counter() - t
        meta[name] = (simulator, precision, batch)
        log(f"N={n} σ={sigma} {PLAST_NAME[order]}: built {name} in {setup[name]:.1f} s")
    if not sims:
        return
    chunks = bs._chunking({k: v for k, v in sims.items() if not isinstance(v, CppSim)}, args.max_steps,
                          args.repeats, args.seconds_per_call, args.fixed_cap)
    for name, sim in sims.items():  # past the start from rest (untimed; a few chunks for slow candidates)
        if isinstance(sim, CppSim):
            chunks[name] = sim.steps  # every call runs the binary over all its steps
        else:
            sim.run(min(args.settle_steps, 4 * chunks[name]))
    cands: dict[str, Callable[[], object]] = {}
    for name, sim in sims.items():
        cands[name] = lambda s=sim, k=chunks[name]: s.run(k)
        if sim.fixed_cost:
            cands[name + "|short"] = lambda s=sim: s.run(1)
    med = measure(cands, args.repeats, 1)
    for name, sim in sims.items():
        k = chunks[name]
        steps = k * args.repeats
        simulator, precision, batch = meta[name]
        note = [f"setup {setup[name]:.1f} s"]
        if isinstance(sim, EventSim):
            note = [f"setup {setup[name]:.1f} s, of which JIT compile/cache load {sim.compile_seconds:.1f} s",
                    "hash noise"]
        if isinstance(sim, CppSim):
            note = [f"build {setup[name]:.0f} s (excluded); the binary's own timer of its loop over "
                    f"{sim.steps} steps from t = 0, re-run every round"]
        if isinstance(sim, NestSim):
            note.append(f"{sim.info['n_synapses']} NEST connections")
            if name.endswith("di=1"):
                note.append("volume transmitter deliver_interval 1 (NEST's default)")
            elif order == 1:
                note.append(f"deliver_interval {args.deliver_interval}")
        per_call = float("nan")
        if sim.fixed_cost:
            diff = med[name] - med[name + "|short"]
            if diff <= 0.1 * med[name]:
                per_step = med[name] / k
                note.append(f"per-call cost not separable, included (chunks of {k} steps)")
            else:
                per_step, per_call = diff / (k - 1), med[name + "|short"]
                if isinstance(sim, EventSim):  # real work: amortised over 1 s chunks, included
                    per_step += per_call / ONE_SECOND
                    note.append(f"incl. the flush of every plastic synapse at the end of each chunk "
                                f"({per_call * 1e3:.0f} ms per chunk) amortised over 1 s chunks")
                else:
                    note.append(f"+ {per_call * 1e3:.0f} ms per run() call, excluded")
            steps += args.repeats
        elif isinstance(sim, CppSim):
            per_step = float(np.median(sim.times[-args.repeats:])) / k
        else:
            per_step = med[name] / k
        rate = sim.rate(rate_steps(n, batch, args, per_step, 10000 if rate_scan else 2000))
        rows.append(dict(n=n, sigma=sigma, simulator=simulator, precision=precision, plasticity=PLAST_NAME[order],
                         order=order, batch=batch, steps=steps, per_step=per_step, per_call=per_call, rate=rate,
                         synapses=S, note="; ".join(note), rate_scan=rate_scan))
        log(f"N={n} σ={sigma} {PLAST_NAME[order]} {name}: chunk {k}, {per_step * 1e3:.4f} ms/step "
            f"(per call {per_call * 1e3:.1f} ms), {rate:.2f} Hz")
    for sim in sims.values():
        if isinstance(sim, (NestSim, CppSim)):
            sim.close()
    sims.clear()
    cands.clear()
    gc.collect()


REPLY = "@@ "


def cpp_server(argv: list[str]) -> None:
    """``--_cpp-server N ORDER STEPS SIGMA INDEGREE_FROM``: build the network with Brian2's
    cpp_standalone device (one thread) for STEPS steps and run it; reply ``@@ {json}`` (build time,
    run time, rate); then re-run the compiled binary at every ``run`` line on stdin, replying its
    own timer of the simulation loop; ``quit`` removes the build directory."""
    import brian2 as b2

    n, order, steps, sigma, indegree_from = int(argv[0]), int(argv[1]) or None, int(argv[2]), float(argv[3]), \
        int(argv[4])
    logging.getLogger("brian2").setLevel(logging.ERROR)
    configure(n, sigma, indegree_from)
    directory = tempfile.mkdtemp(prefix="bench_event_cpp_")
    reply = lambda d: print(REPLY + json.dumps(d), flush=True)  # noqa: E731
    try:
        b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        t0 = time.perf_counter()
        net, mon = bs.brian2_network(n, order)
        net.run(steps * DT * b2.second)
        b2.device.build(directory=directory, compile=True, run=True, with_output=False)
        total = time.perf_counter() - t0
        run_time = b2.device._last_run_time
        reply({"run_s": run_time, "build_s": total - run_time, "rate": int(mon.num_spikes) / (n * steps * DT),
               "synapses": sum(int(len(o)) for o in net.objects if isinstance(o, b2.Synapses))})
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            b2.device.run(directory=directory, with_output=False)
            reply({"run_s": b2.device._last_run_time})
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class CppSim(bs.Sim):
    """Brian2 cpp_standalone, built once in a server process (:func:`cpp_server`); every ``run``
    re-runs the compiled binary over its fixed number of steps from t = 0 (whatever ``steps`` is
    asked), so that its timings interleave with the other candidates'. Reported: the binary's own
    timer of its simulation loop (Brian2's ``last_run_time``: process start and file I/O excluded)."""

    def __init__(self, n: int, order: int | None, steps: int, sigma: float, indegree_from: int):
        self.n, self.batch, self.steps = n, 1, steps
        cmd = [sys.executable, os.path.abspath(__file__), "--_cpp-server", str(n), str(order or 0), str(steps),
               str(sigma), str(indegree_from)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, cwd=os.path.dirname(os.path.abspath(__file__)))
        self.info = self._reply()
        self.times: list[float] = [self.info["run_s"]]

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        err = (self.proc.stderr.read().strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cpp_standalone server ended (exit {self.proc.wait()}): {err[:200]}")

    def run(self, steps: int) -> None:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.times.append(float(self._reply()["run_s"]))

    def rate(self, steps: int) -> float:
        return float(self.info["rate"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=120)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


# ------------------------------------------------------------------------------------ report
def log(msg: str) -> None:
    print(f"[bench_event] {msg}", file=sys.stderr, flush=True)


def machine_load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _find(rows, n, simulator, plasticity, batch=1, precision=None, sigma=None, rate_scan=False):
    for r in rows:
        if (r["n"] == n and r["simulator"] == simulator and r["plasticity"] == plasticity and r["batch"] == batch
                and r["rate_scan"] == rate_scan and (precision is None or r["precision"] == precision)
                and (sigma is None or r["sigma"] == sigma)):
            return r
    return None


def targets(rows: list, args) -> list[str]:
    """The issue's speed targets, met or not, from the measured rows (ratios of ms/step)."""
    out = []
    ev = "event engine (numba)"

    def ratio(n, other, plast, goal, what, precision="float64", other_precision=None):
        a = _find(rows, n, ev, plast, precision=precision, rate_scan=False)
        b = _find(rows, n, other, plast, precision=other_precision, rate_scan=False)
        if a is None or b is None:
            out.append(f"- {what} at N = {n}: not measured in this run")
            return
        r = b["per_step"] / a["per_step"]
        out.append(f"- {what} at N = {n}: event {precision} {a['per_step'] * 1e3:.4f} ms/step vs "
                   f"{other} {b['per_step'] * 1e3:.4f} → **{r:.1f}×** (target ≥ {goal:g}×): "
                   f"**{'met' if r >= goal else 'not met'}**")

    for n in (1000, 10000):
        ratio(n, "Brian2 cpp_standalone", "none", 1, "No plasticity, one trial, vs Brian2 cpp_standalone")
    ratio(10000, "Brian2 cython", "R-STDP order 6", 10, "Order-6 R-STDP, one trial, vs Brian2 cython")
    ratio(10000, "torch engine", "R-STDP order 6", 10, "Order-6 R-STDP, one trial, vs the torch engine")
    for n in sorted({r["n"] for r in rows if not r["rate_scan"]}):
        ratio(n, "NEST 3.10", "R-STDP order 1", 1, "Order-1 R-STDP, one trial, vs NEST stdp_dopamine_synapse")
    return out


def render(rows: list, notes: list, args, started, load_before, versions: dict, final: bool,
           load_now: str | None = None) -> str:
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + sys.argv[1:])
    head = ["# Benchmark: the event engine against torch, Brian2 and NEST", "",
            f"Generated by `{cmd}`" + ("" if final else " — **partial: the run is still going (or was interrupted)**"), "",
            f"- date: {started:%Y-%m-%d %H:%M %Z}; machine: {platform.machine()} "
            f"({platform.processor() or 'cpu'}), {os.cpu_count()} cores (shared with other jobs); load average "
            f"(1/5/15 min) before: {load_before}, "
            f"{'now' if load_now is None else 'after'}: {load_now or machine_load()}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"- threads: {args.threads} per simulator (torch intra-op, numba prange, NEST local_num_threads, "
            "Brian2 cpp_standalone OpenMP off)",
            f"- network: N CubaLIF neurons (80 % exc, 20 % inh; tau_mem {bs.TAU_MEM * 1e3:g} ms, tau_syn "
            f"{bs.TAU_SYN * 1e3:g} ms, dt {DT * 1e3:g} ms, no refractory period), w_exc {bs.W_EXC}, w_inh "
            f"−{bs.G_INH:g}·w_exc, membrane noise σ = {SIGMA_BASE} (main table); connectivity "
            f"{bs.P_CONN:g} random below N = {args.indegree_from}, fixed in-degree {INDEGREE} from there on",
            f"- plasticity: cascade R-STDP on exc→exc (delay {PLAST['delay'] * 1e3:g} ms, tau± "
            f"{PLAST['tau_plus'] * 1e3:g} ms, A+ {PLAST['a_plus']}, A− {PLAST['a_minus']}), tonic dopamine "
            f"{DOPAMINE}, lr {LR}, weights clipped to [0, {PLAST['w_max']}]: torch and Brian2 update every "
            "synapse every step, the event engine lazily (closed form between events), NEST's "
            "stdp_dopamine_synapse (order 1) between presynaptic spikes",
            f"- timing: {args.repeats} interleaved rounds per group, median; steps = steps in the timed rounds "
            "(fewer for slow candidates, normalised per step); neuron-steps/s = N·B/(s/step); synaptic events/s "
            "= rate·dt·S·B/(s/step) with S the synapse count; costs per call are separated from costs per step "
            "(a 1-step call timed too): Brian2's per-run() set-up is excluded (as in bench_spiking.py), the event "
            "engine's flush of every plastic synapse at the end of a chunk is included, amortised over 1 s chunks "
            f"({ONE_SECOND} steps); Brian2 cpp_standalone's build and the event engine's JIT compile (first call, "
            "cached on disk) are reported apart; rates are measured untimed after the timed rounds",
            ""]
    cols = ("| N | simulator | precision | plasticity | B | steps | ms / step | neuron-steps / s | syn. events / s "
            "| rate (Hz) | notes |\n|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|")

    def line(r, with_sigma=False):
        ev = r["rate"] * DT * r["synapses"] * r["batch"] / r["per_step"]
        first = f"| {r['n']} | " + (f"{r['sigma']} | " if with_sigma else "")
        return (first + f"{r['simulator']} | {r['precision']} | {r['plasticity']} | {r['batch']} | {r['steps']} | "
                f"{r['per_step'] * 1e3:.4f} | {r['n'] * r['batch'] / r['per_step']:.3g} | {ev:.3g} | "
                f"{r['rate']:.2f} | {r['note']} |")

    body = ["## Cost against N", "", cols]
    body += [line(r) for r in rows if not r["rate_scan"]]
    scan = [r for r in rows if r["rate_scan"]]
    if scan:
        body += ["", f"## Cost against the firing rate (N = {scan[0]['n']}, drive σ varied)", "",
                 cols.replace("| N |", "| N | σ |").replace("|---:|---|", "|---:|---:|---|", 1)]
        body += [line(r, True) for r in sorted(scan, key=lambda r: (r["plasticity"], r["simulator"], r["sigma"]))]
    body += ["", "## Targets (ratios of ms/step measured side by side)", ""] + targets(rows, args)
    body += ["", "## Growth", ""] + growth(rows)
    if args.plot:
        body += ["", f"![cost growth](figures/{os.path.basename(args.plot)})", ""]
    body += ["", "## How the models differ", "",
             "- The event engine and the torch engine simulate the same equations (Euler CubaLIF, the "
             "torch engine's operation order); the event engine draws its noise from the counter-based hash, "
             "the torch engine here from torch's generator: same statistics, different numbers.",
             "- Brian2 simulates the same equations (Euler) with the same synapses in float64 (bench_spiking.py).",
             "- NEST's iaf_psc_exp integrates exactly (a synaptic jump's PSP peaks 0.5 % lower than with our "
             "Euler step at dt = 0.1 ms), adds arriving spikes after the membrane update (one step later than "
             "ours) and draws its own noise (noise_generator through the synaptic filter, scaled to the same "
             "kick per step); see benchmarks/nest_models.py. Its firing rate is measured like everyone's and "
             "shown in the table.",
             "- NEST's stdp_dopamine_synapse is the order-1 rule in continuous time (exact integration of "
             "dw/dt = c·(n − b) between spikes); the tonic dopamine is its baseline b (no dopamine spikes). "
             "tests/test_event_nest.py checks the event engine's lazy order-1 rule against it."]
    body += [""] + [f"- {x}" for x in notes]
    return "\n".join(head + body) + "\n"


def growth(rows: list) -> list[str]:
    """Exponent of ms/step ∝ N^k between consecutive sizes, per simulator (main table, B = 1)."""
    sizes = sorted({(r["n"], r["synapses"]) for r in rows if not r["rate_scan"]})
    out = ["- synapses S: " + ", ".join(f"{s:,} at N = {n:,}" for n, s in sizes)
           + " (the exponents below compare ms/step with N; S grows as N² at 5 % connectivity and as N at "
           "fixed in-degree)"] if sizes else []
    keys = sorted({(r["simulator"], r["precision"], r["plasticity"]) for r in rows if not r["rate_scan"]
                   and r["batch"] == 1})
    for sim, prec, plast in keys:
        pts = sorted((r["n"], r["per_step"]) for r in rows if not r["rate_scan"] and r["batch"] == 1
                     and (r["simulator"], r["precision"], r["plasticity"]) == (sim, prec, plast))
        if len(pts) < 2:
            continue
        parts = [f"N {a:g}→{c:g}: ×{d / b:.1f} (N^{np.log(d / b) / np.log(c / a):.2f})"
                 for (a, b), (c, d) in zip(pts, pts[1:])]
        out.append(f"- {sim} {prec}, {plast}: " + "; ".join(parts))
    return out


COLORS = {("event engine (numba)", "float64"): "tab:blue", ("event engine (numba)", "float32"): "tab:cyan",
          "torch engine": "tab:orange", "Brian2 numpy": "tab:olive", "Brian2 cython": "tab:green",
          "Brian2 cpp_standalone": "darkgreen", "NEST 3.10": "tab:red", "NEST 3.10 (deliver_interval 1)": "tab:pink"}
STYLES = {"none": "-", "R-STDP order 1": ":", "R-STDP order 6": "--"}


def _color(sim: str, prec: str) -> str:
    return COLORS.get((sim, prec)) or COLORS.get(sim, "black")


def plot(rows: list, path: str) -> None:
    """ms/step against N (log-log; one line per simulator, B = 1), without and with plasticity, and
    against the firing rate at the scan's size; one colour per simulator, one line style per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    main = [r for r in rows if not r["rate_scan"] and r["batch"] == 1]
    for ax, plasts in ((axes[0], ("none",)), (axes[1], ("R-STDP order 1", "R-STDP order 6"))):
        keys = sorted({(r["simulator"], r["precision"], r["plasticity"]) for r in main if r["plasticity"] in plasts})
        for sim, prec, plast in keys:
            pts = sorted((r["n"], r["per_step"] * 1e3) for r in main
                         if (r["simulator"], r["precision"], r["plasticity"]) == (sim, prec, plast))
            label = f"{sim} {prec}" + ("" if plast == "none" else f", {plast.replace('R-STDP ', '')}")
            ax.plot(*zip(*pts), STYLES[plast], marker="o", color=_color(sim, prec), label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (neurons)")
        ax.set_ylabel("ms per step (one trial)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("no plasticity")
    axes[1].set_title("cascade R-STDP on exc→exc (dotted: order 1, dashed: order 6)")
    scan = [r for r in rows if r["rate_scan"]]
    for sim, prec, plast in sorted({(r["simulator"], r["precision"], r["plasticity"]) for r in scan}):
        pts = sorted((r["rate"], r["per_step"] * 1e3) for r in scan
                     if (r["simulator"], r["precision"], r["plasticity"]) == (sim, prec, plast))
        axes[2].plot(*zip(*pts), STYLES[plast], marker="o", color=_color(sim, prec), label=f"{sim}, {plast}")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("firing rate (Hz)")
    axes[2].set_ylabel("ms per step (one trial)")
    axes[2].set_title(f"cost against the rate (N = {scan[0]['n']})" if scan else "cost against the rate")
    axes[2].grid(True, which="both", alpha=0.3)
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7, loc="best", framealpha=0.6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict:
    import brian2
    import numba

    from nest_models import nest_version

    return {"torch": torch.__version__, "numba": numba.__version__, "brian2": brian2.__version__,
            "NEST": nest_version() or "not installed", "numpy": np.__version__, "Python": platform.python_version()}


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_cpp-server":
        cpp_server(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="N (default 1000 10000 100000; quick: "
                                                                            "1000 10000)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--orders", type=int, nargs="*", default=[1, 6])
    parser.add_argument("--simulators", nargs="+", default=list(ALL_SIMULATORS), choices=ALL_SIMULATORS)
    parser.add_argument("--indegree-from", type=int, default=100_000,
                        help=f"from this N on: fixed in-degree {INDEGREE} instead of 5 %% connectivity")
    parser.add_argument("--rate-size", type=int, default=10000, help="N of the firing-rate scan (0: no scan)")
    parser.add_argument("--deliver-interval", type=int, default=1000,
                        help="NEST volume_transmitter deliver_interval (min-delay steps) for order 1")
    parser.add_argument("--no-nest-default-interval", dest="nest_default_interval", action="store_false",
                        help="skip the NEST candidate with deliver_interval 1 (the default) at the smallest N")
    parser.add_argument("--cpp-plastic", action="store_true", help="also build cpp_standalone with plasticity")
    parser.add_argument("--cpp-steps", type=int, default=None,
                        help="steps of each cpp_standalone run (default 10000, quick 2000; a fifth with "
                             "plasticity and from --indegree-from on, at least 1000)")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seconds-per-call", type=float, default=None)
    parser.add_argument("--fixed-cap", type=int, default=None)
    parser.add_argument("--rate-steps", type=int, default=5000, help="most steps of a rate measurement")
    parser.add_argument("--settle-steps", type=int, default=None,
                        help="untimed steps after the start from rest (default 1000; quick 300)")
    parser.add_argument("--plot", default="docs/figures/bench_event_cost.png", help="cost-growth figure ('' = none)")
    parser.add_argument("--json", default=None, help="also save the measured rows here (rewritten after each group)")
    parser.add_argument("--render", default=None, metavar="JSON",
                        help="no simulation: rewrite --out and --plot from rows saved by --json")
    parser.add_argument("--resume", default=None, metavar="JSON",
                        help="start from the rows saved by an interrupted run (--json), measuring only the "
                             "groups it lacks (their date and load are this run's)")
    add_timing_args(parser, repeats=(5, 3), inner=(1, 1), threads=1)
    args = parser.parse_args(argv)
    apply_timing_args(args)
    args.sizes = args.sizes or ([1000, 10000] if args.quick else [1000, 10000, 100000])
    args.max_steps = args.max_steps or (6000 if args.quick else 30000)
    args.seconds_per_call = args.seconds_per_call or (0.3 if args.quick else 2.0)
    args.fixed_cap = args.fixed_cap or (2000 if args.quick else 10000)
    args.cpp_steps = args.cpp_steps or (2000 if args.quick else 10000)
    args.settle_steps = args.settle_steps if args.settle_steps is not None else (300 if args.quick else 1000)
    if args.quick:
        args.rate_steps = min(args.rate_steps, 1000)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    logging.getLogger("brian2").setLevel(logging.ERROR)
    started = datetime.datetime.now().astimezone()
    load_before = machine_load()
    rows: list = []
    notes: list = []
    if args.render:  # re-render a finished (or interrupted) run
        with open(args.render, encoding="utf-8") as fh:
            saved = json.load(fh)
        rows, notes, vers, load_before = saved["rows"], saved["notes"], saved["versions"], saved["load_before"]
        started = datetime.datetime.fromisoformat(saved["started"])
        sys.argv = saved["argv"]
        args.repeats, args.indegree_from = saved["repeats"], saved["indegree_from"]
        text = render(rows, notes, args, started, load_before, vers, True, saved["load_now"])
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        if args.plot and rows:
            plot(rows, args.plot)
        print(text, end="")
        return
    vers = versions()
    if args.resume:
        with open(args.resume, encoding="utf-8") as fh:
            saved = json.load(fh)
        rows, notes = saved["rows"], saved["notes"]
        notes.append(f"resumed: groups measured from {saved['started'][:16]} (load before "
                     f"{saved['load_before']}) to the interruption, the rest from {started:%Y-%m-%d %H:%M}")
        started = datetime.datetime.fromisoformat(saved["started"])
    done = {(r["n"], r["sigma"], r["plasticity"], r["rate_scan"]) for r in rows}

    def group(n: int, sigma: float, order, rate_scan: bool = False) -> None:
        if (n, sigma, PLAST_NAME[order], rate_scan) in done:
            log(f"N={n} σ={sigma} {PLAST_NAME[order]}: already measured (--resume)")
            return
        measure_group(n, sigma, order, args, rows, notes, rate_scan)
        write(False)

    def write(final: bool) -> None:
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump({"rows": rows, "notes": notes, "versions": vers, "load_before": load_before,
                           "started": started.isoformat(), "argv": sys.argv, "load_now": machine_load(),
                           "repeats": args.repeats, "indegree_from": args.indegree_from}, fh, indent=1)
        text = render(rows, notes, args, started, load_before, vers, final)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        if args.plot and rows:
            plot(rows, args.plot)
        if final:
            print(text, end="")

    for n in args.sizes:
        for order in [None] + list(args.orders):
            group(n, SIGMA_BASE, order)
        _MEMO.clear()
    if args.rate_size:
        for hz, sigma in RATE_SIGMAS.items():
            for order in [None] + list(args.orders):
                group(args.rate_size, sigma, order, rate_scan=True)
        _MEMO.clear()
    write(True)


if __name__ == "__main__":
    main()
