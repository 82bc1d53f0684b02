"""Cost of one cascading-eligibility-trace step relative to an MLP forward pass, and trace memory.

Measures, side by side in one process (interleaved rounds, median over repeats):

* one CET step of the whole network: a ``CascadeTrace.step`` on every layer's presynaptic
  activity (shapes ``(B, 784)``, ``(B, 512)``, ``(B, 512)``), for several orders;
* the forward pass of the same 784-512-512-10 LeakyReLU network (``neuroprobe.RateNetwork``) on a
  batch of ``B``;

and reports the time ratio "CET step / forward", plus the state memory of the factorised
per-presynaptic-unit trace ``(B, n_in)`` against a per-synapse trace ``(B, n_out, n_in)`` (the
latter computed on the ``meta`` device, so nothing that large is allocated).

    python benchmarks/bench_cet_step.py [--quick] [--device cpu] [--out table.md]
"""

from __future__ import annotations

import argparse
import platform
from typing import Callable

import torch

from timing import add_timing_args, apply_timing_args, emit, measure  # benchmarks/timing.py (this script's folder is on sys.path)

from neuroprobe.network import build_network
from neuroprobe.traces import CascadeTrace


def run(args: argparse.Namespace) -> str:
    device = torch.device(args.device)
    torch.manual_seed(0)
    mlp = build_network({"sizes": [784, 512, 512, 10], "bias": True}, seed=0).to(device)
    x = torch.randn(args.batch, 784, device=device)
    inputs = [torch.rand(args.batch, n, device=device) for n in (784, 512, 512)]
    net_traces = {order: [CascadeTrace(order, args.delay, tuple(u.shape), device=device) for u in inputs]
                  for order in args.orders}
    traces = {order: CascadeTrace(order, args.delay, (args.batch, args.n_in), device=device) for order in args.orders}

    def forward() -> object:
        with torch.no_grad():
            return mlp(x)

    candidates: dict[str, Callable[[], object]] = {"forward": forward}
    for order, trs in net_traces.items():
        candidates[f"cet{order}"] = lambda trs=trs: [t.step(u) for t, u in zip(trs, inputs)]

    med = measure(candidates, args.repeats, args.inner, device)

    mib = 2.0**20
    lines = [
        f"CET step (all 3 layers' presynaptic traces) vs forward of the 784-512-512-10 network (B={args.batch}; "
        f"memory columns: one layer, n_in={args.n_in}, n_out={args.n_out}; "
        f"delay={args.delay}, float32, device={device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"median of {args.repeats} x {args.inner} calls)",
        "",
        "| order | CET step (us) | forward (us) | CET step / forward | factorised trace (B, n_in) (MiB) "
        "| per-synapse trace (B, n_out, n_in) (MiB) | per-synapse / factorised |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for order, trace in traces.items():
        per_synapse = CascadeTrace(order, args.delay, (args.batch, args.n_out, args.n_in), device="meta").nbytes
        lines.append(
            f"| {order} | {med[f'cet{order}'] * 1e6:.1f} | {med['forward'] * 1e6:.1f} "
            f"| {med[f'cet{order}'] / med['forward']:.3f} | {trace.nbytes / mib:.3f} "
            f"| {per_synapse / mib:.1f} | {per_synapse / trace.nbytes:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2, 6, 10])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-in", type=int, default=512)
    parser.add_argument("--n-out", type=int, default=512)
    parser.add_argument("--delay", type=float, default=5.0, help="trace delay in steps")
    add_timing_args(parser, repeats=(21, 5), inner=(200, 50), threads=None)
    args = parser.parse_args(argv)
    apply_timing_args(args)
    table = run(args)
    emit(table, args.out)


if __name__ == "__main__":
    main()
