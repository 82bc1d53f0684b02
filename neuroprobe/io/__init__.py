"""Exchange formats: NIR (Neuromorphic Intermediate Representation) export and import of spiking
networks (:mod:`neuroprobe.io.nir`, see docs/nir.md); plain checkpoint state, loadable with
``torch.load(weights_only=True)`` (:mod:`neuroprobe.io.state`).

The NIR functions are imported on first use, so that ``import neuroprobe.io`` does not load nir
and h5py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["export_nir", "import_nir", "NIRImport", "to_plain", "restore_like", "is_plain", "env_state",
           "load_env_state"]
_STATE = ("to_plain", "restore_like", "is_plain", "env_state", "load_env_state")

if TYPE_CHECKING:
    from .nir import NIRImport, export_nir, import_nir
    from .state import env_state, is_plain, load_env_state, restore_like, to_plain


def __getattr__(name: str) -> Any:
    if name in _STATE:
        from . import state

        return getattr(state, name)
    if name in __all__:
        from . import nir

        return getattr(nir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
