"""Throughput of neuroprobe's run kinds on one device (a GPU, or the CPU as reference).

Everything is measured through the code a run executes: the experiment is loaded and validated
with ``device = <--device>``, its parts are built by the rule's ``build`` and stepped by
:class:`neuroprobe.loop.Loop` (metrics rows, the NaN guard and callbacks included; checkpoint writes
excluded). Each measurement follows an untimed warm-up run of the same configuration (CUDA
context, kernels, allocator); GPU timings are bracketed by ``torch.cuda.synchronize``.

* **rate NRL, CartPole** (experiments/nrl_cartpole.toml): S seeds batched in one run (S = 1, 64,
  1024), each running ``E`` episodes. Reported: loop steps (one loop step steps all S
  environments once), *environment steps per second summed over the S seeds* (S × loop steps /
  wall time), *episodes per second summed over the seeds* (finished episodes / wall time) and the
  share of the wall time spent inside the environments (Gymnasium's CPU ``SyncVectorEnv``).
* **probe window, digits** (experiments/probe_digits.toml): one window = one loop step: B = 4096
  counterfactual branches evaluate S = 32 streams in one batch (B × S forward passes of the
  64-128-128-10 network), the rule credits the branches and SGD steps. Reported: milliseconds per
  window (mean over the timed windows) and forward passes per second.
* **spiking, distal reward** (experiments/distal_reward.toml: models/snn_distal_reward.toml, 1000
  LIF neurons, 10 % connectivity, torch engine, float32, cascade R-STDP on exc→exc, the reward
  protocol) with B = 1, 64, 1024 trials batched. Reported: neuron-steps per second (1000 × B ×
  steps / wall time) and synaptic events per second: every spike of a presynaptic neuron counts
  its out-degree in each projection (counted on the device during the timed run by a callback:
  one small matrix-vector product per projection and step).

    python benchmarks/gpu_throughput.py --device cuda --out benchmarks/gpu_results.md
    python benchmarks/gpu_throughput.py --device cpu --quick          # smaller sizes, CPU reference

``--json`` prints the rows as JSON instead of the markdown table. ``--seeds``, ``--branches``,
``--trials`` replace the sizes (tests use tiny ones).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the checkout's neuroprobe
    sys.path.insert(0, str(ROOT))

from neuroprobe.config import load_experiment  # noqa: E402
from neuroprobe.loop import BuildContext, Callback, Loop  # noqa: E402
from neuroprobe.rundir import RunDir, read_metrics  # noqa: E402

FULL = {"seeds": (1, 64, 1024), "branches": (4096,), "trials": (1, 64, 1024)}
QUICK = {"seeds": (1, 8, 64), "branches": (256,), "trials": (1, 8, 64)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(config: str, overrides: list[str], device: torch.device):
    exp = load_experiment(ROOT / config, [*overrides, f"device={device}", "run.progress=false"])
    gen = torch.Generator().manual_seed(exp.seed)
    return exp, gen, exp.rule.build(exp, BuildContext(gen, torch.device(exp.device)))


def _timed_run(config: str, overrides: list[str], device: torch.device, callbacks=()) -> dict:
    """Build and run one experiment with the Loop in a temporary run directory; returns wall time
    (s), loop steps, the time spent in ``task.step`` (s), the metrics columns, the experiment and
    its parts."""
    exp, gen, parts = _build(config, overrides, device)
    parts.callbacks = [*parts.callbacks, *callbacks]
    env = {"s": 0.0}
    step = parts.task.step

    def timed_step(action):
        t = time.perf_counter()
        out = step(action)
        env["s"] += time.perf_counter() - t
        return out

    parts.task.step = timed_step
    with tempfile.TemporaryDirectory() as tmp:
        loop = Loop(parts, RunDir(tmp), exp.seed, gen, checkpoint_every=2**62, progress=False)
        loop.checkpoint = lambda: None  # checkpoint writes are I/O, not the device's work
        _sync(torch.device(exp.device))
        t0 = time.perf_counter()
        loop.run_loop(None)
        _sync(torch.device(exp.device))
        wall = time.perf_counter() - t0
        rows = read_metrics(loop.run.metrics_path)
    close = getattr(parts.task, "close", None)
    if close is not None:
        close()
    return {"wall": wall, "steps": loop.steps, "env": env["s"], "rows": rows, "exp": exp, "parts": parts}


# ------------------------------------------------------------------------------------------ rate NRL
def bench_rate_nrl(device: torch.device, seeds: tuple[int, ...], quick: bool) -> list[dict]:
    """Rate NRL on CartPole with S seeds batched; E episodes per seed (fewer for large S)."""
    out = []
    _timed_run("experiments/nrl_cartpole.toml", ["seeds=2", "task.episodes=2"], device)  # warm-up
    for S in seeds:
        E = 2 if S >= 256 else (4 if S >= 16 else (10 if quick else 30))
        r = _timed_run("experiments/nrl_cartpole.toml", [f"seeds={S}", f"task.episodes={E}"], device)
        out.append({"kind": "rate NRL CartPole", "seeds": S, "episodes_per_seed": E, "loop_steps": r["steps"],
                    "wall_s": r["wall"], "env_steps_per_s": S * r["steps"] / r["wall"],
                    "episodes_per_s": len(r["rows"]["return"]) / r["wall"], "env_share": r["env"] / r["wall"]})
    return out


# ------------------------------------------------------------------------------------------ probe
def bench_probe_window(device: torch.device, branches: tuple[int, ...], quick: bool) -> list[dict]:
    """One probe window on the digits stream = one loop step with B branches x S = 32 streams."""
    out = []
    _timed_run("experiments/probe_digits.toml", ["rule.branches=16", "task.steps=3", "task.eval_every=3"], device)
    for B in branches:
        n = 3 if (quick or device.type == "cpu") else 20
        over = [f"rule.branches={B}", f"task.steps={n}", f"task.eval_every={n}"]
        _timed_run("experiments/probe_digits.toml", [f"rule.branches={B}", "task.steps=1", "task.eval_every=1"],
                   device)  # warm-up at this size (allocations)
        r = _timed_run("experiments/probe_digits.toml", over, device)
        S = r["exp"].task.batch
        ms = 1e3 * r["wall"] / r["steps"]
        out.append({"kind": "probe window digits", "branches": B, "streams": S, "windows": r["steps"],
                    "ms_per_window": ms, "forward_passes_per_s": B * S / (ms / 1e3)})
    return out


# ------------------------------------------------------------------------------------------ spiking
class SynapticEvents(Callback):
    """Counts synaptic events on the device: each spike of a presynaptic neuron of a projection
    adds its out-degree in that projection (no host synchronisation until :meth:`total`)."""

    name = "synaptic_events"

    def __init__(self):
        self.events = self.spikes = None
        self.degrees = None

    def on_step(self, loop, tr) -> None:
        net = loop.parts.agent.net
        if self.degrees is None:
            self.degrees = [(p.spec.pre, torch.bincount(p.pre, minlength=p.n_pre).to(torch.float64))
                            for p in net.projections]
            self.events = torch.zeros((), dtype=torch.float64, device=net.device)
            self.spikes = torch.zeros((), dtype=torch.float64, device=net.device)
        z = tr.action
        for pre, deg in self.degrees:
            self.events += (z[pre].to(torch.float64) @ deg).sum()
        for spikes in z.values():
            self.spikes += spikes.sum()

    def totals(self) -> tuple[float, float]:
        """(synaptic events, spikes) counted so far."""
        return (0.0, 0.0) if self.events is None else (float(self.events), float(self.spikes))


def bench_spiking(device: torch.device, trials: tuple[int, ...], quick: bool) -> list[dict]:
    """The 1000-neuron distal-reward network (torch engine, float32) with B trials batched."""
    out = []
    base = ["monitor.spikes=[]", "monitor.rate=[]", "monitor.state=[]", "run.dtype=float32",
            "run.backend=torch", "run.precision=float"]
    _timed_run("experiments/distal_reward.toml", base + ["seeds=2", "task.duration=0.05",
                                                          "task.report_every=0.05"], device)
    for B in trials:
        steps = (200 if quick else 1000) if device.type == "cuda" else (50 if quick else 100)
        dur = steps * 1e-3
        over = base + [f"seeds={B}", f"task.duration={dur}", f"task.report_every={dur}"]
        ev = SynapticEvents()
        r = _timed_run("experiments/distal_reward.toml", over, device, callbacks=[ev])
        spec = r["exp"].spiking_spec
        n = sum(p.size for p in spec.populations)
        syn = sum(p.n_synapses for p in r["parts"].agent.net.projections)
        events, spikes = ev.totals()
        out.append({"kind": "spiking distal reward", "trials": B, "neurons": n, "synapses": syn, "steps": r["steps"],
                    "wall_s": r["wall"], "neuron_steps_per_s": n * B * r["steps"] / r["wall"],
                    "events_per_s": events / r["wall"], "rate_hz": spikes / (n * B * r["steps"] * spec.dt)})
    return out


# ------------------------------------------------------------------------------------------ table
def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def format_table(rows: list[dict], device: torch.device, threads: int) -> str:
    """The markdown table of all rows, with the device, torch version and date."""
    head = (f"neuroprobe throughput on {device} ({device_name(device)}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} CPU thread(s), {datetime.date.today().isoformat()}\n\n")
    lines = ["| measurement | size | steps | wall s | throughput | other |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "rate NRL CartPole":
            lines.append(f"| rate NRL CartPole | S = {r['seeds']} seeds, {r['episodes_per_seed']} episodes each | "
                         f"{r['loop_steps']} | {r['wall_s']:.2f} | {_fmt(r['env_steps_per_s'])} env-steps/s "
                         f"(all seeds) | {_fmt(r['episodes_per_s'])} episodes/s; {100 * r['env_share']:.0f} % "
                         f"of the time in the environments |")
        elif r["kind"] == "probe window digits":
            lines.append(f"| probe window (digits) | B = {r['branches']} branches x S = {r['streams']} streams | "
                         f"{r['windows']} | {r['windows'] * r['ms_per_window'] / 1e3:.2f} | "
                         f"{r['ms_per_window']:.1f} ms/window | {_fmt(r['forward_passes_per_s'])} forward "
                         f"passes/s |")
        else:
            lines.append(f"| spiking {r['neurons']} LIF, {r['synapses']} synapses | B = {r['trials']} trials | "
                         f"{r['steps']} | {r['wall_s']:.2f} | {_fmt(r['neuron_steps_per_s'])} neuron-steps/s | "
                         f"{_fmt(r['events_per_s'])} synaptic events/s ({r['rate_hz']:.1f} Hz) |")
    return head + "\n".join(lines) + "\n"


def run(device: str = "cpu", quick: bool = False, seeds=None, branches=None, trials=None,
        threads: int = 1, parts: tuple[str, ...] = ("rate", "probe", "spiking"), out: str | None = None,
        ) -> tuple[list[dict], str]:
    """All measurements on ``device``; returns (rows, markdown table). ``out``: the table is
    rewritten there after each part (a run stopped by a time limit keeps what it measured)."""
    dev = torch.device(device)
    torch.set_num_threads(threads)
    sizes = QUICK if quick else FULL
    benches = {"rate": (bench_rate_nrl, seeds or sizes["seeds"]),
               "probe": (bench_probe_window, branches or sizes["branches"]),
               "spiking": (bench_spiking, trials or sizes["trials"])}
    rows: list[dict] = []
    for name in parts:
        fn, size = benches[name]
        rows += fn(dev, tuple(size), quick)
        if out:
            Path(out).write_text(format_table(rows, dev, threads), encoding="utf-8")
    return rows, format_table(rows, dev, threads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps (smoke run)")
    ap.add_argument("--seeds", type=int, nargs="+", help="rate NRL batch sizes S (default 1 64 1024)")
    ap.add_argument("--branches", type=int, nargs="+", help="probe branches B (default 4096)")
    ap.add_argument("--trials", type=int, nargs="+", help="spiking trials B (default 1 64 1024)")
    ap.add_argument("--only", nargs="+", choices=["rate", "probe", "spiking"], default=["rate", "probe", "spiking"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as runs use)")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args = ap.parse_args(argv)
    from neuroprobe.errors import ConfigError

    try:
        torch.device(args.device)
    except RuntimeError:
        ap.error(f"--device {args.device!r}: use cpu, cuda or cuda:N")
    try:
        rows, table = run(args.device, args.quick, args.seeds, args.branches, args.trials, args.threads,
                          tuple(args.only), args.out)
    except ConfigError as e:  # e.g. --device cuda on a torch without CUDA: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=1) if args.json else table, end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
