"""ProbedLinear forward and a full probe window against nn.Linear, materialised weights and BP.

Measures, side by side in one process (interleaved rounds, median over repeats, float32):

1. one layer, B branches, ``n x n`` weight, K probes of rank r (default B=256, n=1024, K=16, r=2):
   * ``nn.Linear`` forward, unperturbed (reference);
   * ``ProbedLinear`` forward with a random assignment over 0..K (``mode="mask"`` and ``"gather"``);
   * materialising each branch's weight ``W + ΔW_{a_b}`` and applying it with ``torch.bmm``
     (in chunks of ``--chunk`` branches, so at most chunk·n² floats are alive);
2. a full probe window of a 2-layer ``n``-wide MLP (tanh hidden layer, squared-error reward per
   branch): refresh the probes, B-branch forward through two ProbedLinear layers with a random
   assignment matrix (B, 2), baseline-subtracted reward μ, per-module directional coefficients,
   directional trace (history P) -> ``.grad`` -> SGD step; against one unperturbed batched forward
   of the same MLP (``nn.Linear``) and one BP forward+backward of the same batch.

It also reports the memory of one layer's probe dictionary + trace history against a dense
per-window history.

    python benchmarks/bench_probed_linear.py [--quick] [--threads 1] [--out table.md]
"""

from __future__ import annotations

import argparse
import platform
from typing import Callable

import torch
from torch import nn

from timing import add_timing_args, apply_timing_args, emit, measure  # benchmarks/timing.py (this script's folder is on sys.path)

from neuroprobe.probes.dictionary import ProbeDictionary
from neuroprobe.probes.directional import DirectionalTrace, module_coefficients
from neuroprobe.probes.probed_linear import ProbedLinear


def run(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    B, n, K, r = args.batch, args.width, args.num_probes, args.rank
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, n, generator=g)
    a = torch.randint(0, K + 1, (B,), generator=g)

    # ---------------------------------------------------------------- 1. one layer
    lin = nn.Linear(n, n)
    pl_mask = ProbedLinear(n, n, num_probes=K, rank=r, scale=1e-2, mode="mask")
    pl_gather = ProbedLinear(n, n, num_probes=K, rank=r, scale=1e-2, mode="gather")
    for pl in (pl_mask, pl_gather):
        pl.load_state_dict(lin.state_dict())

    def materialised() -> torch.Tensor:
        d = pl_mask.dictionary
        U, V = d.factors()
        Uz = torch.cat([torch.zeros(1, n, r), U])
        Vz = torch.cat([torch.zeros(1, n, r), V])
        out = []
        for s in range(0, B, args.chunk):  # loop over chunks of branches only to bound memory
            ab = a[s : s + args.chunk]
            Wb = lin.weight + d.coef * torch.bmm(Uz[ab], Vz[ab].transpose(1, 2))  # (chunk, n, n)
            out.append(torch.bmm(Wb, x[s : s + args.chunk, :, None])[..., 0] + lin.bias)
        return torch.cat(out)

    with torch.no_grad():
        err = (pl_mask(x, a) - materialised()).abs().max().item()
        err_g = (pl_gather(x, a) - materialised()).abs().max().item()
        layer = measure(
            {
                "nn.Linear": lambda: lin(x),
                "ProbedLinear mask": lambda: pl_mask(x, a),
                "ProbedLinear gather": lambda: pl_gather(x, a),
                "materialised bmm": materialised,
            },
            args.repeats,
            args.inner,
        )

    # ---------------------------------------------------------------- 2. probe window of a 2-layer MLP
    l1 = ProbedLinear(n, n, num_probes=K, rank=r, scale=1e-2, module_id=0)
    l2 = ProbedLinear(n, n, num_probes=K, rank=r, scale=1e-2, module_id=1)
    ref1, ref2 = nn.Linear(n, n), nn.Linear(n, n)
    ref1.load_state_dict(l1.state_dict())
    ref2.load_state_dict(l2.state_dict())
    target = torch.randn(B, n, generator=g)
    traces = {P: [DirectionalTrace(K, history=P, decay=0.9) for _ in range(2)] for P in args.histories}
    opt = torch.optim.SGD(list(l1.parameters()) + list(l2.parameters()), lr=1e-3)
    opt_bp = torch.optim.SGD(list(ref1.parameters()) + list(ref2.parameters()), lr=1e-3)

    def window(P: int) -> None:
        with torch.no_grad():
            l1.refresh()
            l2.refresh()
            A = torch.randint(0, K + 1, (B, 2))
            y = l2(torch.tanh(l1(x, A[:, 0])), A[:, 1])
            reward = -0.5 * torch.linalg.vector_norm(y - target, dim=-1).square()  # (B,)
            mu = (reward - reward.mean())[:, None].expand(B, 2)  # baseline-subtracted, same for both modules
            for layer_, tr, e in zip((l1, l2), traces[P], module_coefficients(mu, None, A, K)):
                tr.push(e, layer_)
                tr.write_grad(layer_)
            opt.step()

    def forward_only() -> None:
        with torch.no_grad():
            ref2(torch.tanh(ref1(x)))

    def bp_step() -> None:
        opt_bp.zero_grad(set_to_none=True)
        loss = 0.5 * (ref2(torch.tanh(ref1(x))) - target).pow(2).sum(-1).mean()
        loss.backward()

    cands: dict[str, Callable[[], object]] = {"forward": forward_only, "BP fwd+bwd": bp_step}
    for P in args.histories:
        cands[f"window P={P}"] = lambda P=P: window(P)
    win = measure(cands, args.repeats, max(args.inner // 4, 1))

    # ---------------------------------------------------------------- memory
    mib = 2.0**20
    mem_rows = []
    for P in args.histories:
        d = ProbeDictionary(n, n, num_probes=K, rank=r, regime="semi_persistent", max_age=10**6, yield_quantile=None, redundancy_threshold=1.0)
        dk = ProbeDictionary(n, n, num_probes=K, rank=r, keyed=True)
        tr, trk = DirectionalTrace(K, history=P), DirectionalTrace(K, history=P)
        for _ in range(P + 1):
            tr.push(torch.randn(K, dtype=torch.float64), d)
            trk.push(torch.randn(K, dtype=torch.float64), dk)
            d.refresh()
            dk.refresh()
        dense = P * n * n * 4
        mem_rows.append((P, (d.nbytes + tr.nbytes) / mib, (dk.nbytes + trk.nbytes) / mib, dense / mib))

    head = (
        f"B={B}, {n}x{n}, K={K}, r={r}, float32, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{platform.processor() or platform.machine()}; median of {args.repeats} interleaved rounds; "
        f"max |ProbedLinear - materialised| = {max(err, err_g):.2e}"
    )
    base = layer["nn.Linear"]
    lines = [head, "", "| one layer | time (ms) | throughput vs nn.Linear | x slower than ProbedLinear (mask) |", "|---|---:|---:|---:|"]
    for name, t in layer.items():
        lines.append(f"| {name} | {t * 1e3:.3f} | {base / t:.3f} | {t / layer['ProbedLinear mask']:.1f} |")
    fwd, bp = win["forward"], win["BP fwd+bwd"]
    lines += ["", f"| 2-layer {n}-wide MLP, B={B} | time (ms) | / unperturbed forward | / BP fwd+bwd |", "|---|---:|---:|---:|"]
    for name, t in win.items():
        lines.append(f"| {name} | {t * 1e3:.3f} | {t / fwd:.3f} | {t / bp:.3f} |")
    lines += [
        "",
        f"| memory of one {n}x{n} layer | dictionary + trace, persistent probes (MiB) | keyed probes (MiB) | dense history P·n² (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for P, m1, m2, m3 in mem_rows:
        lines.append(f"| P={P} | {m1:.3f} | {m2:.4f} | {m3:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="branches B")
    parser.add_argument("--width", type=int, default=1024, help="layer width n (weights n x n)")
    parser.add_argument("--num-probes", type=int, default=16, help="K")
    parser.add_argument("--rank", type=int, default=2, help="r")
    parser.add_argument("--histories", type=int, nargs="+", default=[1, 4], help="trace history P of the window rows")
    parser.add_argument("--chunk", type=int, default=32, help="branches materialised at once in the bmm baseline")
    add_timing_args(parser, repeats=(15, 5), inner=(20, 4), threads=1)
    args = parser.parse_args(argv)
    apply_timing_args(args)
    table = run(args)
    emit(table, args.out)


if __name__ == "__main__":
    main()
