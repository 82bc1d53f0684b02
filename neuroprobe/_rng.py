"""Random draws that give the same numbers on every device.

Draws happen on the generator's own device (the run's generator is a CPU ``torch.Generator``) and
the result moves to where it is used, so a run on a GPU draws the same noise as on the CPU and
the CPU tests exercise the very code the GPU path runs (the move is a no-op on the CPU).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["randn", "multinomial"]


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def randn(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
          device: torch.device | str | None = None) -> Tensor:
    """N(0, 1) of ``shape`` drawn on the generator's device, returned on ``device``."""
    x = torch.randn(shape, generator=generator, dtype=dtype, device=_gen_device(generator))
    return x if device is None else x.to(device)


def multinomial(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One categorical sample per row of probs (n, A), drawn on the generator's device, returned
    on probs' device."""
    return torch.multinomial(probs.to(_gen_device(generator)), 1, generator=generator).to(probs.device)
