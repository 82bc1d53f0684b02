"""norse's functional LIF steps, behind one small interface (norse is imported only here).

The torch engine computes spiking dynamics with norse's functional steps when norse is installed
(``lif_feed_forward_step`` for CubaLIF, ``lif_box_feed_forward_step`` for LIF without a synaptic
current, ``compute_refractory_update`` for the refractory period), so the same code runs on CPU
and GPU. Without norse, :mod:`neuroprobe.neurons.lif` falls back to its own transcription of the
same equations (tested equal to norse's cells).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from ..errors import ConfigError


@lru_cache(maxsize=1)
def norse_available() -> bool:
    try:
        import norse.torch.functional.lif  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return False
    return True


def require_norse() -> None:
    if not norse_available():
        raise ConfigError("engine 'norse' needs the norse package: pip install norse==1.1.0 --no-deps nir nirtorch "
                          "(or set engine = \"torch\")")


def _params(tau_mem_inv: float, tau_syn_inv: float, v_leak: float, v_th: float, v_reset: float, like: Tensor):
    from norse.torch.functional.lif import LIFParameters

    t = lambda x: torch.as_tensor(x, dtype=like.dtype, device=like.device)  # noqa: E731
    return LIFParameters(tau_syn_inv=t(tau_syn_inv), tau_mem_inv=t(tau_mem_inv), v_leak=t(v_leak), v_th=t(v_th),
                         v_reset=t(v_reset), method="super", alpha=t(100.0))


def cuba_step(i_in: Tensor, v: Tensor, i: Tensor, tau_mem_inv: float, tau_syn_inv: float, v_leak: float,
              v_th: float, v_reset: float, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """norse ``lif_feed_forward_step``; returns (z, v_new, i_new)."""
    from norse.torch.functional.lif import LIFFeedForwardState, lif_feed_forward_step

    p = _params(tau_mem_inv, tau_syn_inv, v_leak, v_th, v_reset, v)
    z, s = lif_feed_forward_step(i_in, LIFFeedForwardState(v=v, i=i), p, dt)
    return z, s.v, s.i


def box_step(i_in: Tensor, v: Tensor, tau_mem_inv: float, v_leak: float, v_th: float, v_reset: float,
             dt: float) -> tuple[Tensor, Tensor]:
    """norse ``lif_box_feed_forward_step`` (no synaptic current); returns (z, v_new)."""
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step

    t = lambda x: torch.as_tensor(x, dtype=v.dtype, device=v.device)  # noqa: E731
    p = LIFBoxParameters(tau_mem_inv=t(tau_mem_inv), v_leak=t(v_leak), v_th=t(v_th), v_reset=t(v_reset),
                         method="super", alpha=t(100.0))
    z, s = lif_box_feed_forward_step(i_in, LIFBoxFeedForwardState(v=v), p, dt)
    return z, s.v


def refractory_update(z: Tensor, v_new: Tensor, v_old: Tensor, rho: Tensor, rho_reset: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """norse ``compute_refractory_update``: while rho > 0 the voltage is held and spikes are
    suppressed; a spike sets rho to ``rho_reset`` steps. Returns (z, v, rho)."""
    from norse.torch.functional.lif import LIFFeedForwardState
    from norse.torch.functional.lif_refrac import (LIFRefracFeedForwardState, LIFRefracParameters,
                                                   compute_refractory_update)

    p = LIFRefracParameters(rho_reset=torch.as_tensor(float(rho_reset), dtype=v_new.dtype, device=v_new.device))
    state = LIFRefracFeedForwardState(LIFFeedForwardState(v=v_old, i=torch.zeros_like(v_old)), rho)
    v, z, rho = compute_refractory_update(state, z, v_new, p)
    return z, v, rho
