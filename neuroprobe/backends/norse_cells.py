"""norse's functional LIF steps, behind one small interface (norse is imported only here).

The torch engine computes spiking dynamics with norse's functional steps when norse is installed
(``lif_feed_forward_step`` for CubaLIF, ``lif_box_feed_forward_step`` for LIF without a synaptic
current, ``compute_refractory_update`` for the refractory period), so the same code runs on CPU
and GPU. Without norse, :mod:`neuroprobe.neurons.lif` falls back to its own transcription of the
same equations (tested equal to norse's cells).

norse's parameter tuples (0-dim tensors of the state's dtype and device) are built once per
(parameters, dtype, device) and cached: building them costs more than the step itself. While
autograd records, the threshold is norse's SuperSpike (``method="super"``, its surrogate gradient);
otherwise norse's plain ``"heaviside"`` method, whose forward value is the same (SuperSpike's
forward is the Heaviside step) without the cost of an autograd Function call.
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


@lru_cache(maxsize=1)
def _norse():
    """norse's functions and classes, imported once."""
    from norse.torch.functional import lif, lif_box, lif_refrac

    return lif, lif_box, lif_refrac


def _method() -> str:
    return "super" if torch.is_grad_enabled() else "heaviside"


@lru_cache(maxsize=256)
def _cached_params(tau_mem_inv: float, tau_syn_inv: float, v_leak: float, v_th: float, v_reset: float,
                   dtype: torch.dtype, device: torch.device, method: str = "super"):
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    return _norse()[0].LIFParameters(tau_syn_inv=t(tau_syn_inv), tau_mem_inv=t(tau_mem_inv), v_leak=t(v_leak),
                                     v_th=t(v_th), v_reset=t(v_reset), method=method, alpha=t(100.0))


@lru_cache(maxsize=256)
def _cached_box_params(tau_mem_inv: float, v_leak: float, v_th: float, v_reset: float, dtype: torch.dtype,
                       device: torch.device, method: str):
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    return _norse()[1].LIFBoxParameters(tau_mem_inv=t(tau_mem_inv), v_leak=t(v_leak), v_th=t(v_th),
                                        v_reset=t(v_reset), method=method, alpha=t(100.0))


@lru_cache(maxsize=256)
def _cached_refrac_params(rho_reset: int, dtype: torch.dtype, device: torch.device, method: str):
    lif = _norse()[0].LIFParameters(method=method)  # only its threshold method is read by the update
    return _norse()[2].LIFRefracParameters(lif=lif, rho_reset=torch.as_tensor(float(rho_reset), dtype=dtype,
                                                                              device=device))


def _params(tau_mem_inv: float, tau_syn_inv: float, v_leak: float, v_th: float, v_reset: float, like: Tensor):
    """norse ``LIFParameters`` in the dtype and device of ``like`` (cached; do not modify)."""
    return _cached_params(float(tau_mem_inv), float(tau_syn_inv), float(v_leak), float(v_th), float(v_reset),
                          like.dtype, like.device)


def cuba_step(i_in: Tensor, v: Tensor, i: Tensor, tau_mem_inv: float, tau_syn_inv: float, v_leak: float,
              v_th: float, v_reset: float, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """norse ``lif_feed_forward_step``; returns (z, v_new, i_new)."""
    lif = _norse()[0]
    p = _cached_params(tau_mem_inv, tau_syn_inv, v_leak, v_th, v_reset, v.dtype, v.device, _method())
    z, s = lif.lif_feed_forward_step(i_in, lif.LIFFeedForwardState(v=v, i=i), p, dt)
    return z, s.v, s.i


def box_step(i_in: Tensor, v: Tensor, tau_mem_inv: float, v_leak: float, v_th: float, v_reset: float,
             dt: float) -> tuple[Tensor, Tensor]:
    """norse ``lif_box_feed_forward_step`` (no synaptic current); returns (z, v_new)."""
    lif_box = _norse()[1]
    p = _cached_box_params(tau_mem_inv, v_leak, v_th, v_reset, v.dtype, v.device, _method())
    z, s = lif_box.lif_box_feed_forward_step(i_in, lif_box.LIFBoxFeedForwardState(v=v), p, dt)
    return z, s.v


def refractory_update(z: Tensor, v_new: Tensor, v_old: Tensor, rho: Tensor, rho_reset: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """norse ``compute_refractory_update``: while rho > 0 the voltage is held and spikes are
    suppressed; a spike sets rho to ``rho_reset`` steps. Returns (z, v, rho)."""
    lif, _, lif_refrac = _norse()
    p = _cached_refrac_params(int(rho_reset), v_new.dtype, v_new.device, _method())
    # the synaptic current of the state is not read by the update: v_old stands in for it
    state = lif_refrac.LIFRefracFeedForwardState(lif.LIFFeedForwardState(v=v_old, i=v_old), rho)
    v, z, rho = lif_refrac.compute_refractory_update(state, z, v_new, p)
    return z, v, rho
